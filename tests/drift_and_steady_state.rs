//! Resync: drift behind the operator's back is repaired; a converged object costs one read
//! per interval and no writes; a paused object costs nothing.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{env, ready};
use ctwa_operator::api::{SignalsKeyword, XWebEventTag};
use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};

fn keyword(name: &str, resync: &str) -> Value {
    json!({
        "apiVersion": "ctwa.dev/v1alpha1", "kind": "SignalsKeyword",
        "metadata": {"name": name, "annotations": {"ctwa.dev/resync-interval": resync}},
        "spec": {"clientId": "c1", "appId": "a1", "keyword": name, "adId": "ad1", "secretRef": {"name": "dialog360"}}
    })
}

fn tag(name: &str, resync: &str) -> Value {
    json!({
        "apiVersion": "ctwa.dev/v1alpha1", "kind": "XWebEventTag",
        "metadata": {"name": name, "annotations": {"ctwa.dev/resync-interval": resync}},
        "spec": {"accountId": "acc1", "name": name, "type": "PURCHASE", "clickWindow": 30,
                 "viewThroughWindow": 1, "secretRef": {"name": "x-ads"}}
    })
}

/// The shortest resync SPEC 7.1 allows: tests that wait for resyncs use it.
const RESYNC: &str = "10s";
/// One resync interval with its jitter (±10%), and room for a busy machine.
const ONE_RESYNC: Duration = Duration::from_secs(25);

#[tokio::test]
async fn drift_is_repaired_at_the_next_resync() {
    let env = env("drift").await;
    env.create::<SignalsKeyword>(keyword("gone", RESYNC)).await;
    env.create::<XWebEventTag>(tag("edited", RESYNC)).await;
    let k = env.wait_for::<SignalsKeyword>("gone", "Ready", ready).await;
    let t = env.wait_for::<XWebEventTag>("edited", "Ready", ready).await;

    let old = k["status"]["keywordId"].as_str().unwrap().to_string();
    env.fake.remove_keyword("c1", "a1", &old);
    let tag_id = t["status"]["tagId"].as_str().unwrap().to_string();
    env.fake.edit_tag("acc1", &tag_id, |t| t.click_window = 1);

    env.wait_until::<SignalsKeyword>(
        "gone",
        "re-created",
        |o| ready(o) && o["status"]["keywordId"] != old.as_str(),
        ONE_RESYNC,
    )
    .await;
    let active: Vec<_> = env
        .fake
        .keywords("c1", "a1")
        .into_iter()
        .filter(|k| k.status == "active")
        .collect();
    assert_eq!(active.len(), 1, "exactly one keyword again");
    for _ in 0..ONE_RESYNC.as_millis() / 100 {
        if env.fake.tags("acc1")[0].click_window == 30 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        env.fake.tags("acc1")[0].click_window,
        30,
        "the tag was put back"
    );
    let put = env
        .fake
        .requests()
        .into_iter()
        .find(|r| r.operation == "x.update_tag")
        .unwrap();
    assert_eq!(put.query, "click_window=30");
}

/// Creating an object costs a lookup and a create: the reconcile triggered by the operator's
/// own external-id annotation does not read upstream again before the resync is due.
#[tokio::test]
async fn creation_costs_two_upstream_requests() {
    let env = env("create-cost").await;
    let names: Vec<String> = (0..5).map(|i| format!("cost-{i}")).collect();
    for n in &names {
        env.create::<SignalsKeyword>(keyword(n, "1h")).await;
        env.create::<XWebEventTag>(tag(n, "1h")).await;
    }
    for n in &names {
        env.wait_for::<SignalsKeyword>(n, "Ready", ready).await;
        env.wait_for::<XWebEventTag>(n, "Ready", ready).await;
    }
    // Give the echo of the annotation write time to arrive and be handled.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut per_operation: HashMap<String, usize> = HashMap::new();
    for r in env.fake.requests() {
        *per_operation.entry(r.operation).or_default() += 1;
    }
    per_operation.remove("hub.token");
    let expected: HashMap<String, usize> = [
        "signals.list_keywords",
        "signals.create_keyword",
        "x.list_tags",
        "x.create_tag",
    ]
    .into_iter()
    .map(|op| (op.to_string(), names.len()))
    .collect();
    assert_eq!(per_operation, expected);
}

#[tokio::test]
async fn steady_state_reads_once_per_interval_and_writes_nothing() {
    let env = env("steady").await;
    let names: Vec<String> = (0..5).map(|i| format!("steady-{i}")).collect();
    for n in &names {
        env.create::<SignalsKeyword>(keyword(n, RESYNC)).await;
        env.create::<XWebEventTag>(tag(n, RESYNC)).await;
    }
    let mut versions = HashMap::new();
    for n in &names {
        let k = env.wait_for::<SignalsKeyword>(n, "Ready", ready).await;
        let t = env.wait_for::<XWebEventTag>(n, "Ready", ready).await;
        versions.insert(format!("k/{n}"), k["metadata"]["resourceVersion"].clone());
        versions.insert(format!("t/{n}"), t["metadata"]["resourceVersion"].clone());
    }
    // Let the creation settle (the first resync after creation), then watch three intervals.
    tokio::time::sleep(Duration::from_secs(12)).await;
    for n in &names {
        let k = env.api::<SignalsKeyword>().get(n).await.unwrap();
        let t = env.api::<XWebEventTag>().get(n).await.unwrap();
        versions.insert(format!("k/{n}"), json!(k.metadata.resource_version));
        versions.insert(format!("t/{n}"), json!(t.metadata.resource_version));
    }
    env.fake.clear_requests();
    tokio::time::sleep(Duration::from_secs(30)).await;
    let requests = env.fake.requests();
    let writes: Vec<_> = requests
        .iter()
        .filter(|r| r.method != "GET")
        .map(|r| r.operation.clone())
        .collect();
    assert!(writes.is_empty(), "steady state wrote upstream: {writes:?}");
    let reads = requests
        .iter()
        .filter(|r| r.operation != "hub.token")
        .count();
    // 10 objects, three 10 s intervals (±10% jitter) in 30 s: 2 to 4 reads each.
    println!("steady state: {reads} reads for 10 objects over 3 intervals");
    assert!(reads <= 40, "{reads} reads");
    assert!(reads >= 20, "resync did not read upstream: {reads}");
    for n in &names {
        let k = env.api::<SignalsKeyword>().get(n).await.unwrap();
        let t = env.api::<XWebEventTag>().get(n).await.unwrap();
        assert_eq!(
            json!(k.metadata.resource_version),
            versions[&format!("k/{n}")],
            "keyword {n} was rewritten"
        );
        assert_eq!(
            json!(t.metadata.resource_version),
            versions[&format!("t/{n}")],
            "tag {n} was rewritten"
        );
    }
}

#[tokio::test]
async fn paused_objects_cause_no_upstream_calls() {
    let env = env("paused").await;
    let mut k = keyword("held", RESYNC);
    k["metadata"]["annotations"]["ctwa.dev/paused"] = json!("true");
    env.create::<SignalsKeyword>(k).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        env.operations("signals.").is_empty(),
        "a paused object called upstream"
    );
    let reasons = env.event_reasons().await;
    assert_eq!(
        reasons.iter().filter(|r| *r == "ReconcilePaused").count(),
        1,
        "{reasons:?}"
    );

    let unpause = json!({"metadata": {"annotations": {"ctwa.dev/paused": null}}});
    env.api::<SignalsKeyword>()
        .patch("held", &PatchParams::default(), &Patch::Merge(&unpause))
        .await
        .unwrap();
    env.wait_for::<SignalsKeyword>("held", "Ready after unpausing", ready)
        .await;
}

#[tokio::test]
async fn postback_url_and_tracking_are_reasserted_at_resync() {
    use ctwa_operator::api::{CtwaTracking, SignalsPostback};
    use fake_upstreams::PostbackKind;
    let env = env("drift-pb").await;
    env.create::<SignalsPostback>(json!({
        "apiVersion": "ctwa.dev/v1alpha1", "kind": "SignalsPostback",
        "metadata": {"name": "pb", "annotations": {"ctwa.dev/resync-interval": RESYNC}},
        "spec": {"clientId": "c1", "appId": "a1", "adId": "ad1", "event": "Ad",
                 "url": "https://hooks.example.com/a", "secretRef": {"name": "dialog360"}}
    }))
    .await;
    env.create::<CtwaTracking>(json!({
        "apiVersion": "ctwa.dev/v1alpha1", "kind": "CtwaTracking",
        "metadata": {"name": "t", "annotations": {"ctwa.dev/resync-interval": RESYNC}},
        "spec": {"partnerId": "p1", "clientId": "c1", "channelId": "ch1", "secretRef": {"name": "dialog360"}}
    }))
    .await;
    env.wait_for::<SignalsPostback>("pb", "Ready", ready).await;
    env.wait_for::<CtwaTracking>("t", "Ready", ready).await;

    env.fake.set_postback_url(
        "c1",
        "a1",
        "ad1",
        PostbackKind::Ad,
        Some("https://elsewhere.example.com/x"),
    );
    // Switched off behind the operator's back (the Hub cannot be read, so it is re-asserted).
    env.fake.add_channel("p1", "c1", "ch1");
    assert_eq!(env.fake.ctwa_enabled("p1", "c1", "ch1"), Some(false));
    for _ in 0..ONE_RESYNC.as_millis() / 100 {
        let url_back = env
            .fake
            .postback_url("c1", "a1", "ad1", PostbackKind::Ad)
            .as_deref()
            == Some("https://hooks.example.com/a");
        if url_back && env.fake.ctwa_enabled("p1", "c1", "ch1") == Some(true) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "not repaired: url {:?}, ctwa {:?}",
        env.fake.postback_url("c1", "a1", "ad1", PostbackKind::Ad),
        env.fake.ctwa_enabled("p1", "c1", "ch1")
    );
}

/// What cannot be read back (Hub tracking, a campaign's conversion) is asserted once per
/// resync, not on every reconcile: a Secret's change reconciles every object using it, and
/// none of them writes upstream again for it.
#[tokio::test]
async fn write_only_objects_are_not_asserted_again_by_other_reconciles() {
    use ctwa_operator::api::{CtwaTracking, SignalsConversionEvent};
    use k8s_openapi::api::core::v1::Secret;
    let env = env("drift-wo").await;
    env.create::<CtwaTracking>(json!({
        "apiVersion": "ctwa.dev/v1alpha1", "kind": "CtwaTracking", "metadata": {"name": "t"},
        "spec": {"partnerId": "p1", "clientId": "c1", "channelId": "ch1", "secretRef": {"name": "dialog360"}}
    }))
    .await;
    env.create::<SignalsConversionEvent>(json!({
        "apiVersion": "ctwa.dev/v1alpha1", "kind": "SignalsConversionEvent", "metadata": {"name": "c"},
        "spec": {"clientId": "c1", "appId": "a1", "campaignId": "camp1", "type": "conversation",
                 "secretRef": {"name": "dialog360"}}
    }))
    .await;
    env.wait_for::<CtwaTracking>("t", "Ready", ready).await;
    env.wait_for::<SignalsConversionEvent>("c", "Ready", ready)
        .await;
    let writes = || {
        (
            env.request_count("hub.enable_ctwa", None),
            env.request_count("signals.set_converted_event", None),
        )
    };
    assert_eq!(writes(), (1, 1), "one write each to create");
    let reconciles = |text: &str| {
        ["CtwaTracking", "SignalsConversionEvent"].map(|kind| {
            common::sample(
                text,
                "ctwa_reconcile_total",
                &[("kind", kind), ("result", "success")],
            )
            .unwrap_or(0.0)
        })
    };
    let before = reconciles(&env.metrics_text().await);

    for round in 0..3 {
        let label = json!({"metadata": {"labels": {"touched": round.to_string()}}});
        env.api::<Secret>()
            .patch("dialog360", &PatchParams::default(), &Patch::Merge(&label))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let now = reconciles(&env.metrics_text().await);
        if now[0] >= before[0] + 3.0 && now[1] >= before[1] + 3.0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the Secret's changes were not reconciled: {before:?} → {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        writes(),
        (1, 1),
        "a reconcile without a reason wrote upstream"
    );
}
