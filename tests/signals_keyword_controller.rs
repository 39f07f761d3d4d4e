//! SignalsKeyword end to end: the operator (in-process, scoped to the test's namespace)
//! against the real API server and the fake Signals API.

use std::time::Duration;

use ctwa_operator::api::SignalsKeyword;
use ctwa_operator::operator::{OperatorConfig, run};
use ctwa_testenv::{TestNamespace, client};
use fake_upstreams::FakeUpstreams;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;

struct Env {
    fake: FakeUpstreams,
    ns: TestNamespace,
    keywords: Api<SignalsKeyword>,
    operator: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Drop for Env {
    fn drop(&mut self) {
        self.operator.abort();
    }
}

async fn env(prefix: &str) -> Env {
    let client = client().await;
    let ns = TestNamespace::create(&client, prefix).await;
    let fake = FakeUpstreams::start().await.unwrap();
    fake.add_hub_user("u", "p");
    let secret: Secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "dialog360"},
        "stringData": {"username": "u", "password": "p"}
    }))
    .unwrap();
    Api::<Secret>::namespaced(client.clone(), &ns.name)
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let config = OperatorConfig {
        resync_interval: Duration::from_secs(600),
        signals_url: fake.signals_url(),
        hub_url: fake.hub_url(),
        x_ads_url: fake.x_url(),
        namespaces: vec![ns.name.clone()],
    };
    let operator = tokio::spawn(run(client.clone(), config));
    let keywords = Api::namespaced(client, &ns.name);
    Env {
        fake,
        ns,
        keywords,
        operator,
    }
}

fn keyword(name: &str, text: &str) -> SignalsKeyword {
    serde_json::from_value(json!({
        "apiVersion": "ctwa.dev/v1alpha1", "kind": "SignalsKeyword",
        "metadata": {"name": name},
        "spec": {"clientId": "c1", "appId": "a1", "keyword": text, "adId": "ad1", "secretRef": {"name": "dialog360"}}
    }))
    .unwrap()
}

async fn wait_for(
    api: &Api<SignalsKeyword>,
    name: &str,
    what: &str,
    check: impl Fn(&SignalsKeyword) -> bool,
) -> SignalsKeyword {
    let mut last = None;
    for _ in 0..150 {
        if let Some(o) = api.get_opt(name).await.unwrap() {
            if check(&o) {
                return o;
            }
            last = Some(o);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{name}: {what} not reached within 15s; last: {last:#?}");
}

fn ready_reason(o: &SignalsKeyword) -> Option<(String, String)> {
    o.status
        .as_ref()?
        .common
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| (c.status.clone(), c.reason.clone()))
}

fn is_ready(o: &SignalsKeyword) -> bool {
    ready_reason(o) == Some(("True".into(), "Available".into()))
        && o.status.as_ref().and_then(|s| s.common.observed_generation) == o.metadata.generation
}

#[tokio::test]
async fn create_update_delete() {
    let env = env("skw-crud").await;
    env.keywords
        .create(&PostParams::default(), &keyword("order", "order confirmed"))
        .await
        .unwrap();
    let o = wait_for(&env.keywords, "order", "Ready", is_ready).await;
    let upstream = env.fake.keywords("c1", "a1");
    assert_eq!(upstream.len(), 1);
    let id = upstream[0].id.clone();
    assert_eq!(
        o.status.as_ref().unwrap().keyword_id.as_deref(),
        Some(id.as_str())
    );
    assert_eq!(
        o.metadata.annotations.as_ref().unwrap()["ctwa.dev/external-id"],
        id
    );
    assert!(
        o.metadata
            .finalizers
            .as_ref()
            .unwrap()
            .contains(&"ctwa.dev/finalizer".to_string())
    );

    // A change of text goes through PATCH: new id, the old one archived and remembered.
    let patch = json!({"spec": {"keyword": "order shipped"}});
    env.keywords
        .patch("order", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let o = wait_for(&env.keywords, "order", "the new keyword", |o| {
        is_ready(o) && o.status.as_ref().unwrap().keyword_id.as_deref() != Some(id.as_str())
    })
    .await;
    let status = o.status.as_ref().unwrap();
    assert_eq!(status.previous_keyword_ids, vec![id.clone()]);
    assert!(
        env.fake
            .requests()
            .iter()
            .any(|r| r.operation == "signals.patch_keyword" && r.status == 200)
    );
    let upstream = env.fake.keywords("c1", "a1");
    assert_eq!(upstream.iter().filter(|k| k.status == "active").count(), 1);
    assert_eq!(
        upstream.iter().find(|k| k.id == id).unwrap().status,
        "archived"
    );

    // Delete removes the upstream keyword before the object goes.
    env.keywords
        .delete("order", &DeleteParams::default())
        .await
        .unwrap();
    for _ in 0..150 {
        if env.keywords.get_opt("order").await.unwrap().is_none() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        env.keywords.get_opt("order").await.unwrap().is_none(),
        "finalizer released"
    );
    let new_id = status.keyword_id.clone().unwrap();
    assert!(
        !env.fake.keywords("c1", "a1").iter().any(|k| k.id == new_id),
        "upstream keyword deleted"
    );
}

#[tokio::test]
async fn adoption_by_natural_key_creates_nothing() {
    let env = env("skw-adopt").await;
    let existing = env
        .fake
        .insert_keyword("c1", "a1", "hello", Some("ad1"), false);
    env.keywords
        .create(&PostParams::default(), &keyword("hello", "hello"))
        .await
        .unwrap();
    let o = wait_for(&env.keywords, "hello", "Ready", is_ready).await;
    assert_eq!(
        o.status.unwrap().keyword_id.as_deref(),
        Some(existing.as_str())
    );
    assert!(
        !env.fake
            .requests()
            .iter()
            .any(|r| r.operation.starts_with("signals.create")),
        "no create request"
    );
}

#[tokio::test]
async fn missing_secret_stalls_and_recovers_when_it_appears() {
    let env = env("skw-secret").await;
    let mut k = keyword("k", "hi");
    k.spec.secret_ref.name = "later".into();
    env.keywords
        .create(&PostParams::default(), &k)
        .await
        .unwrap();
    let o = wait_for(&env.keywords, "k", "Stalled", |o| {
        o.status.as_ref().is_some_and(|s| {
            s.common
                .conditions
                .iter()
                .any(|c| c.type_ == "Stalled" && c.status == "True" && c.reason == "SecretNotFound")
        })
    })
    .await;
    assert_eq!(
        ready_reason(&o),
        Some(("False".into(), "SecretNotFound".into()))
    );
    let secret: Secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "later"},
        "stringData": {"username": "u", "password": "p"}
    }))
    .unwrap();
    Api::<Secret>::namespaced(env.keywords.clone().into_client(), &env.ns.name)
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    wait_for(
        &env.keywords,
        "k",
        "Ready after the Secret appeared",
        is_ready,
    )
    .await;
}
