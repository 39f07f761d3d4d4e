//! Helpers of the SPEC 7.1 tests of the managed kinds (tests/managed_ownership.rs,
//! tests/managed_lifecycle.rs, tests/managed_budget.rs): manifests, waits in any namespace, a
//! second watched namespace, Events about one object, and a list of problems that a test
//! reports all at once, so that one run on broken code shows every defect it meets.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use super::common::{self, Env};

pub use ctwa_testenv::{Kind, condition_full};

// --- manifests ---

/// A SignalsKeyword on app c1/a1 (ad-scoped unless `ad` is None, then shared).
pub fn keyword(name: &str, text: &str, ad: Option<&str>) -> Value {
    let mut spec = json!({"clientId": "c1", "appId": "a1", "keyword": text,
                          "secretRef": {"name": "dialog360"}});
    match ad {
        Some(ad) => spec["adId"] = json!(ad),
        None => spec["shared"] = json!(true),
    }
    json!({
        "apiVersion": "ctwa.dev/v1alpha1", "kind": "SignalsKeyword",
        "metadata": {"name": name}, "spec": spec
    })
}

/// An XWebEventTag in account acc1.
pub fn tag(name: &str, tag_name: &str, click_window: i64) -> Value {
    json!({
        "apiVersion": "ctwa.dev/v1alpha1", "kind": "XWebEventTag", "metadata": {"name": name},
        "spec": {"accountId": "acc1", "name": tag_name, "type": "PURCHASE",
                 "clickWindow": click_window, "viewThroughWindow": 1,
                 "secretRef": {"name": "x-ads"}}
    })
}

/// A SignalsPostback of app c1/a1 on ad `ad`; `event` is `Ad`, `SessionStart` or
/// `Keyword` (then `keyword_id` is its `keywordId`).
pub fn postback(name: &str, ad: &str, event: &str, keyword_id: Option<&str>, url: &str) -> Value {
    let mut spec = json!({"clientId": "c1", "appId": "a1", "adId": ad, "event": event,
                          "url": url, "secretRef": {"name": "dialog360"}});
    if let Some(id) = keyword_id {
        spec["keywordId"] = json!(id);
    }
    json!({
        "apiVersion": "ctwa.dev/v1alpha1", "kind": "SignalsPostback",
        "metadata": {"name": name}, "spec": spec
    })
}

/// A CtwaTracking of channel p1/c1/ch1.
pub fn tracking(name: &str, enabled: bool) -> Value {
    json!({
        "apiVersion": "ctwa.dev/v1alpha1", "kind": "CtwaTracking", "metadata": {"name": name},
        "spec": {"partnerId": "p1", "clientId": "c1", "channelId": "ch1", "enabled": enabled,
                 "secretRef": {"name": "dialog360"}}
    })
}

/// The manifest with one more annotation.
pub fn annotated(mut manifest: Value, key: &str, value: &str) -> Value {
    manifest["metadata"]["annotations"][key] = json!(value);
    manifest
}

/// The manifest with a 10 s `ctwa.dev/resync-interval`, the floor of SPEC 7.1.
pub fn resync_10s(manifest: Value) -> Value {
    annotated(manifest, "ctwa.dev/resync-interval", "10s")
}

// --- the Kubernetes side ---

pub async fn create_in<K: Kind>(client: &kube::Client, ns: &str, manifest: Value) -> K {
    let obj: K = serde_json::from_value(manifest).unwrap();
    Api::<K>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &obj)
        .await
        .unwrap_or_else(|e| panic!("creating {} in {ns}: {e}", obj.name_any()))
}

pub async fn get_in<K: Kind>(client: &kube::Client, ns: &str, name: &str) -> Option<Value> {
    Api::<K>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
        .unwrap()
        .map(|o| serde_json::to_value(o).unwrap())
}

/// Polls `ns/name` until `check` holds; Err with the last state seen after `timeout`.
pub async fn wait_in<K: Kind>(
    client: &kube::Client,
    ns: &str,
    name: &str,
    check: impl Fn(&Value) -> bool,
    timeout: Duration,
) -> Result<Value, Value> {
    let deadline = Instant::now() + timeout;
    let mut last = Value::Null;
    loop {
        if let Some(v) = get_in::<K>(client, ns, name).await {
            if check(&v) {
                return Ok(v);
            }
            last = v;
        }
        if Instant::now() >= deadline {
            return Err(last);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Deletes `ns/name` (if it exists); does not wait.
pub async fn delete_in<K: Kind>(client: &kube::Client, ns: &str, name: &str) {
    let _ = Api::<K>::namespaced(client.clone(), ns)
        .delete(name, &DeleteParams::default())
        .await;
}

/// Waits until `ns/name` is gone; Err with its finalizers and conditions after `timeout`.
pub async fn wait_gone_in<K: Kind>(
    client: &kube::Client,
    ns: &str,
    name: &str,
    timeout: Duration,
) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        let Some(o) = get_in::<K>(client, ns, name).await else {
            return Ok(());
        };
        if Instant::now() >= deadline {
            return Err(format!(
                "{ns}/{name} still exists after {timeout:?}: finalizers {}, conditions {}",
                o["metadata"]["finalizers"], o["status"]["conditions"]
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Removes every finalizer of `ns/name`, so that a test that failed does not leave a
/// namespace Terminating behind.
pub async fn strip_finalizers<K: Kind>(client: &kube::Client, ns: &str, name: &str) {
    let patch = json!({"metadata": {"finalizers": null}});
    let _ = Api::<K>::namespaced(client.clone(), ns)
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await;
}

pub async fn merge_patch<K: Kind>(client: &kube::Client, ns: &str, name: &str, patch: Value) {
    Api::<K>::namespaced(client.clone(), ns)
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap_or_else(|e| panic!("patching {ns}/{name}: {e}"));
}

/// Ready=False, reason `AlreadyManaged`, with a message naming `owner` (`namespace/name`).
pub fn already_managed_by(owner: String) -> impl Fn(&Value) -> bool {
    move |o| {
        condition_full(o, "Ready").is_some_and(|(status, reason, message)| {
            status == "False" && reason == "AlreadyManaged" && message.contains(&owner)
        })
    }
}

/// Ready as `common::ready` says, in a short form for messages.
pub fn summary(o: &Value) -> String {
    format!(
        "generation {} observedGeneration {} Ready {:?}",
        o["metadata"]["generation"],
        o["status"]["observedGeneration"],
        condition_full(o, "Ready")
    )
}

/// A second namespace with the same credential Secrets as the Env's (deleted with the Env's
/// test never; like every test namespace it stays for inspection).
pub async fn second_namespace(env: &Env, prefix: &str) -> String {
    let ns = ctwa_testenv::TestNamespace::create(&env.client, prefix).await;
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), &ns.name);
    for (name, data) in [
        (
            "dialog360",
            json!({"username": "u", "password": common::DIALOG_PASSWORD}),
        ),
        (
            "x-ads",
            json!({"consumer-key": "ck", "consumer-secret": common::X_CONSUMER_SECRET,
                   "access-token": "at", "access-token-secret": common::X_ACCESS_TOKEN_SECRET}),
        ),
    ] {
        let secret: Secret = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "stringData": data
        }))
        .unwrap();
        secrets
            .create(&PostParams::default(), &secret)
            .await
            .unwrap();
    }
    ns.name
}

/// Deletes a namespace and waits until it is gone (kube-controller-manager's namespace
/// controller empties it first); Err with what is left after `timeout`.
pub async fn delete_namespace_and_wait(
    client: &kube::Client,
    ns: &str,
    timeout: Duration,
) -> Result<Duration, String> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let started = Instant::now();
    namespaces
        .delete(ns, &DeleteParams::default())
        .await
        .unwrap_or_else(|e| panic!("deleting namespace {ns}: {e}"));
    loop {
        let Some(n) = namespaces.get_opt(ns).await.unwrap() else {
            return Ok(started.elapsed());
        };
        if started.elapsed() >= timeout {
            let phase = n.status.and_then(|s| s.phase).unwrap_or_default();
            return Err(format!(
                "namespace {ns} still exists ({phase}) after {timeout:?}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

// --- Events ---

/// One Event about an object, as `kubectl events` would show it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub reason: String,
    pub type_: String,
    pub note: String,
    /// How many times it was published (the Recorder folds repeats into a series).
    pub count: i32,
    /// When it was last published.
    pub last: jiff::Timestamp,
}

/// Every Event in `ns` about the object `kind`/`name`.
pub async fn events_about(client: &kube::Client, ns: &str, kind: &str, name: &str) -> Vec<Seen> {
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), ns);
    events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| {
            e.regarding
                .as_ref()
                .is_some_and(|r| r.kind.as_deref() == Some(kind) && r.name.as_deref() == Some(name))
        })
        .map(|e| {
            let last = e
                .series
                .as_ref()
                .map(|s| s.last_observed_time.0)
                .or(e.event_time.as_ref().map(|t| t.0))
                .or(e.metadata.creation_timestamp.as_ref().map(|t| t.0))
                .unwrap_or(jiff::Timestamp::UNIX_EPOCH);
            Seen {
                reason: e.reason.unwrap_or_default(),
                type_: e.type_.unwrap_or_default(),
                note: e.note.unwrap_or_default(),
                count: e.series.map_or(1, |s| s.count),
                last,
            }
        })
        .collect()
}

/// How many times an Event with `reason` was published about the object.
pub fn published(events: &[Seen], reason: &str) -> i32 {
    events
        .iter()
        .filter(|e| e.reason == reason)
        .map(|e| e.count)
        .sum()
}

// --- the upstream side ---

/// Requests from index `since` of the fake's log that write (anything but GET and the Hub
/// login), as `operation path?query`.
pub fn writes_since(env: &Env, since: usize) -> Vec<String> {
    env.fake
        .requests()
        .into_iter()
        .skip(since)
        .filter(|r| r.method != "GET" && r.operation != "hub.token")
        .map(|r| format!("{} {}?{}", r.operation, r.path, r.query))
        .collect()
}

/// A list of writes in short: how many of each operation, and the first few in full.
pub fn brief(writes: &[String]) -> String {
    let mut counts: std::collections::BTreeMap<&str, usize> = Default::default();
    for w in writes {
        *counts
            .entry(w.split(' ').next().unwrap_or_default())
            .or_default() += 1;
    }
    let first: Vec<&String> = writes.iter().take(4).collect();
    format!("{} write(s) {counts:?}, first {first:?}", writes.len())
}

/// Active keywords of app c1/a1 with text `text`.
pub fn active_keywords(env: &Env, text: &str) -> Vec<String> {
    env.fake
        .keywords("c1", "a1")
        .into_iter()
        .filter(|k| k.status == "active" && k.keyword == text)
        .map(|k| k.id)
        .collect()
}

/// Waits for an upstream fact (the fakes' state) for at most `timeout`.
pub async fn eventually(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

// --- reporting ---

/// What a test found wrong; it goes on after a failed expectation where the next steps still
/// say something, and fails at the end with the whole list.
#[derive(Default)]
pub struct Problems(Vec<String>);

impl Problems {
    pub fn check(&mut self, ok: bool, what: impl FnOnce() -> String) {
        if !ok {
            let what = what();
            println!("PROBLEM: {what}");
            self.0.push(what);
        }
    }

    pub fn push(&mut self, what: String) {
        println!("PROBLEM: {what}");
        self.0.push(what);
    }

    /// Records a failed wait; returns the object when it succeeded.
    pub fn wait(&mut self, what: &str, result: Result<Value, Value>) -> Option<Value> {
        match result {
            Ok(v) => Some(v),
            Err(last) => {
                self.push(format!(
                    "{what}: not reached; last: {}",
                    if last.is_null() {
                        "object not found".to_string()
                    } else {
                        summary(&last)
                    }
                ));
                None
            }
        }
    }

    pub fn finish(self) {
        assert!(
            self.0.is_empty(),
            "{} problem(s):\n- {}",
            self.0.len(),
            self.0.join("\n- ")
        );
    }
}
