//! CtwaTracking, XWebEventTag and SignalsPostback end to end: the operator against the real
//! API server and the fakes.

mod common;

use common::{condition, env, ready, ready_with};
use ctwa_operator::api::{CtwaTracking, SignalsKeyword, SignalsPostback, XWebEventTag};
use fake_upstreams::PostbackKind;
use kube::api::{DeleteParams, Patch, PatchParams};
use serde_json::json;

fn tag(name: &str) -> serde_json::Value {
    json!({
        "apiVersion": "ctwa.dev/v1alpha1", "kind": "XWebEventTag", "metadata": {"name": name},
        "spec": {"accountId": "acc1", "name": "WhatsApp purchase", "type": "PURCHASE", "clickWindow": 30,
                 "viewThroughWindow": 1, "secretRef": {"name": "x-ads"}}
    })
}

#[tokio::test]
async fn ctwa_tracking_enable_disable_and_delete() {
    let env = env("ctt").await;
    env.create::<CtwaTracking>(json!({
        "apiVersion": "ctwa.dev/v1alpha1", "kind": "CtwaTracking", "metadata": {"name": "main"},
        "spec": {"partnerId": "p1", "clientId": "c1", "channelId": "ch1", "secretRef": {"name": "dialog360"}}
    }))
    .await;
    let o = env.wait_for::<CtwaTracking>("main", "Ready", ready).await;
    assert_eq!(o["status"]["enabled"], true);
    assert_eq!(env.fake.ctwa_enabled("p1", "c1", "ch1"), Some(true));

    let patch = json!({"spec": {"enabled": false}});
    env.api::<CtwaTracking>()
        .patch("main", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    env.wait_for::<CtwaTracking>("main", "disabled", |o| {
        ready(o) && o["status"]["enabled"] == false
    })
    .await;
    assert_eq!(env.fake.ctwa_enabled("p1", "c1", "ch1"), Some(false));

    env.api::<CtwaTracking>()
        .patch(
            "main",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"enabled": true}})),
        )
        .await
        .unwrap();
    env.wait_for::<CtwaTracking>("main", "enabled again", |o| {
        ready(o) && o["status"]["enabled"] == true
    })
    .await;
    env.api::<CtwaTracking>()
        .delete("main", &DeleteParams::default())
        .await
        .unwrap();
    env.wait_gone::<CtwaTracking>("main").await;
    assert_eq!(
        env.fake.ctwa_enabled("p1", "c1", "ch1"),
        Some(false),
        "Delete disables tracking"
    );
}

#[tokio::test]
async fn unknown_channel_is_stalled_upstream_rejected() {
    let env = env("ctt-404").await;
    env.create::<CtwaTracking>(json!({
        "apiVersion": "ctwa.dev/v1alpha1", "kind": "CtwaTracking", "metadata": {"name": "x"},
        "spec": {"partnerId": "p1", "clientId": "c1", "channelId": "nope", "secretRef": {"name": "dialog360"}}
    }))
    .await;
    let o = env
        .wait_for::<CtwaTracking>("x", "Stalled", |o| {
            condition(o, "Stalled") == Some(("True".into(), "UpstreamRejected".into()))
        })
        .await;
    assert_eq!(condition(&o, "Ready").unwrap().0, "False");
}

#[tokio::test]
async fn web_event_tag_create_update_with_only_changed_fields_and_delete() {
    let env = env("xwet").await;
    env.create::<XWebEventTag>(tag("purchase")).await;
    let o = env
        .wait_for::<XWebEventTag>("purchase", "Ready", ready)
        .await;
    let id = o["status"]["tagId"].as_str().unwrap().to_string();
    assert_eq!(o["metadata"]["annotations"]["ctwa.dev/external-id"], id);
    assert_eq!(env.fake.tags("acc1").len(), 1);

    let patch = json!({"spec": {"clickWindow": 7}});
    env.api::<XWebEventTag>()
        .patch("purchase", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    env.wait_for::<XWebEventTag>("purchase", "updated", |o| {
        ready(o) && o["status"]["observed"]["clickWindow"] == 7
    })
    .await;
    let put = env
        .fake
        .requests()
        .into_iter()
        .find(|r| r.operation == "x.update_tag")
        .expect("a PUT");
    assert_eq!(put.query, "click_window=7", "only the changed field");
    assert_eq!(env.fake.tags("acc1")[0].click_window, 7);

    env.api::<XWebEventTag>()
        .delete("purchase", &DeleteParams::default())
        .await
        .unwrap();
    env.wait_gone::<XWebEventTag>("purchase").await;
    assert!(env.fake.tags("acc1")[0].deleted);
}

#[tokio::test]
async fn web_event_tag_adopted_by_annotation_and_orphaned_on_delete() {
    let env = env("xwet-adopt").await;
    let existing = env
        .fake
        .insert_tag("acc1", "Some other name", "PURCHASE", 30, 1);
    let mut manifest = tag("adopted");
    manifest["metadata"]["annotations"] = json!({"ctwa.dev/external-id": existing});
    manifest["spec"]["deletionPolicy"] = json!("Orphan");
    env.create::<XWebEventTag>(manifest).await;
    let o = env
        .wait_for::<XWebEventTag>("adopted", "Ready", ready)
        .await;
    assert_eq!(o["status"]["tagId"], existing.as_str());
    assert!(
        env.operations("x.create_tag").is_empty(),
        "adoption creates nothing"
    );
    assert_eq!(
        env.fake.tags("acc1")[0].name,
        "WhatsApp purchase",
        "the name converged"
    );

    env.api::<XWebEventTag>()
        .delete("adopted", &DeleteParams::default())
        .await
        .unwrap();
    env.wait_gone::<XWebEventTag>("adopted").await;
    assert!(!env.fake.tags("acc1")[0].deleted, "Orphan leaves the tag");
    assert!(env.operations("x.delete_tag").is_empty());
}

#[tokio::test]
async fn observe_mode_only_reads() {
    let env = env("xwet-observe").await;
    let mut absent = tag("absent");
    absent["spec"]["managementPolicy"] = json!("Observe");
    env.create::<XWebEventTag>(absent).await;
    let o = env
        .wait_for::<XWebEventTag>("absent", "NotFound", |o| {
            condition(o, "Ready") == Some(("False".into(), "NotFound".into()))
        })
        .await;
    assert!(o["metadata"]["finalizers"].is_null());

    let existing = env.fake.insert_tag("acc1", "Observed tag", "SIGN_UP", 7, 0);
    let mut present = tag("present");
    present["spec"]["managementPolicy"] = json!("Observe");
    present["spec"]["name"] = json!("Observed tag");
    env.create::<XWebEventTag>(present).await;
    let o = env
        .wait_for::<XWebEventTag>("present", "Observed", ready_with("Observed"))
        .await;
    assert_eq!(o["status"]["observed"]["id"], existing.as_str());
    assert_eq!(o["status"]["observed"]["type"], "SIGN_UP");
    env.api::<XWebEventTag>()
        .delete("present", &DeleteParams::default())
        .await
        .unwrap();
    env.wait_gone::<XWebEventTag>("present").await;

    let writes: Vec<_> = env
        .operations("x.")
        .into_iter()
        .filter(|op| !op.contains("list") && !op.contains("get"))
        .collect();
    assert!(writes.is_empty(), "Observe mode wrote: {writes:?}");
    assert!(!env.fake.tags("acc1")[0].deleted);
}

#[tokio::test]
async fn postback_follows_its_keyword() {
    let env = env("spb").await;
    env.create::<SignalsPostback>(json!({
        "apiVersion": "ctwa.dev/v1alpha1", "kind": "SignalsPostback", "metadata": {"name": "pb"},
        "spec": {"clientId": "c1", "appId": "a1", "adId": "ad1", "event": "Keyword",
                 "keywordRef": {"name": "order"}, "url": "https://hooks.example.com/ctwa?token=s3cr3t",
                 "secretRef": {"name": "dialog360"}}
    }))
    .await;
    env.wait_for::<SignalsPostback>("pb", "DependencyNotReady", |o| {
        condition(o, "Ready") == Some(("False".into(), "DependencyNotReady".into()))
    })
    .await;

    env.create::<SignalsKeyword>(json!({
        "apiVersion": "ctwa.dev/v1alpha1", "kind": "SignalsKeyword", "metadata": {"name": "order"},
        "spec": {"clientId": "c1", "appId": "a1", "keyword": "order confirmed", "adId": "ad1", "secretRef": {"name": "dialog360"}}
    }))
    .await;
    let kw = env
        .wait_for::<SignalsKeyword>("order", "Ready", ready)
        .await;
    let first = kw["status"]["keywordId"].as_str().unwrap().to_string();
    let o = env.wait_for::<SignalsPostback>("pb", "Ready", ready).await;
    assert_eq!(o["status"]["keywordId"], first.as_str());
    let url = "https://hooks.example.com/ctwa?token=s3cr3t";
    assert_eq!(
        env.fake
            .postback_url("c1", "a1", "ad1", PostbackKind::Keyword(first.clone()))
            .as_deref(),
        Some(url)
    );
    assert_eq!(
        o["status"]["urlSha256"],
        ctwa_operator::runtime::digest::sha256_hex(url)
    );
    assert!(
        !o["status"].to_string().contains("s3cr3t"),
        "the URL never reaches status"
    );

    // A new keyword text means a new keyword id upstream; the postback moves with it.
    let patch = json!({"spec": {"keyword": "order shipped"}});
    env.api::<SignalsKeyword>()
        .patch("order", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let o = env
        .wait_for::<SignalsPostback>("pb", "the new keyword id", |o| {
            ready(o) && o["status"]["keywordId"] != first.as_str()
        })
        .await;
    let second = o["status"]["keywordId"].as_str().unwrap().to_string();
    assert_eq!(
        env.fake
            .postback_url("c1", "a1", "ad1", PostbackKind::Keyword(second))
            .as_deref(),
        Some(url)
    );

    env.api::<SignalsPostback>()
        .delete("pb", &DeleteParams::default())
        .await
        .unwrap();
    env.wait_gone::<SignalsPostback>("pb").await;
    let kid = o["status"]["keywordId"].as_str().unwrap().to_string();
    assert_eq!(
        env.fake
            .postback_url("c1", "a1", "ad1", PostbackKind::Keyword(kid)),
        None,
        "Delete clears the URL"
    );
}
