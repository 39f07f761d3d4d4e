//! SignalsConversionEvent end to end (SPEC 1.6): the operator against the real API server and
//! the fake Signals, which keeps each campaign's conversion and lists the events it counts a
//! second time as `converted`.

mod common;

use std::time::{Duration, Instant};

use common::{condition, env, ready};
use ctwa_operator::api::{ConversionBridge, SignalsConversionEvent, SignalsKeyword, XWebEventTag};
use ctwa_testenv::events::{bridge, now_s};
use ctwa_testenv::{Kind, condition_full};
use fake_upstreams::ConvertedEvent;
use kube::api::{DeleteParams, Patch, PatchParams};
use serde_json::{Value, json};

fn conversion(name: &str, campaign: &str, spec: Value) -> Value {
    let mut manifest = json!({
        "apiVersion": "ctwa.dev/v1alpha1", "kind": "SignalsConversionEvent",
        "metadata": {"name": name},
        "spec": {"clientId": "c1", "appId": "a1", "campaignId": campaign,
                 "secretRef": {"name": "dialog360"}}
    });
    ctwa_testenv::events::merge(&mut manifest["spec"], spec);
    manifest
}

fn keyword(name: &str, text: &str) -> Value {
    json!({
        "apiVersion": "ctwa.dev/v1alpha1", "kind": "SignalsKeyword", "metadata": {"name": name},
        "spec": {"clientId": "c1", "appId": "a1", "keyword": text, "adId": "ad1",
                 "secretRef": {"name": "dialog360"}}
    })
}

/// The fake's record of campaign `campaign` of the fixture's app.
fn upstream(env: &common::Env, campaign: &str) -> Option<ConvertedEvent> {
    env.fake
        .converted_events()
        .into_iter()
        .find(|c| c.client == "c1" && c.app == "a1" && c.campaign_id == campaign)
}

fn posts(env: &common::Env) -> usize {
    env.request_count("signals.set_converted_event", Some(200))
}

async fn patch<K: Kind>(env: &common::Env, name: &str, patch: Value) {
    env.api::<K>()
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
}

#[tokio::test]
async fn create_and_every_change_is_one_post() {
    let env = env("sce").await;
    env.create::<SignalsConversionEvent>(conversion(
        "ordered",
        "camp1",
        json!({"type": "button", "typeId": "btn1", "typeValue": "product ordered"}),
    ))
    .await;
    let o = env
        .wait_for::<SignalsConversionEvent>("ordered", "Ready", ready)
        .await;
    assert_eq!(
        o["status"]["applied"],
        json!({"type": "button", "typeId": "btn1", "typeValue": "product ordered"})
    );
    let up = upstream(&env, "camp1").expect("the campaign's conversion is set");
    assert_eq!(
        (
            up.event_type.as_str(),
            up.type_id.as_deref(),
            up.type_value.as_deref()
        ),
        ("button", Some("btn1"), Some("product ordered"))
    );
    assert_eq!(posts(&env), 1);
    assert_eq!(env.request_count("signals.list_event_types", Some(200)), 1);

    // A new type: validated and sent once.
    patch::<SignalsConversionEvent>(
        &env,
        "ordered",
        json!({"spec": {"type": "link", "typeId": "lnk1", "typeValue": null}}),
    )
    .await;
    env.wait_for::<SignalsConversionEvent>("ordered", "type link", |o| {
        ready(o) && o["status"]["applied"]["type"] == "link"
    })
    .await;
    let up = upstream(&env, "camp1").unwrap();
    assert_eq!(
        (up.event_type.as_str(), up.type_id.as_deref(), up.type_value),
        ("link", Some("lnk1"), None)
    );
    assert_eq!(posts(&env), 2);

    // From typeId to keywordRef: the keyword's id is what is sent.
    env.create::<SignalsKeyword>(keyword("order", "order confirmed"))
        .await;
    let kw = env
        .wait_for::<SignalsKeyword>("order", "Ready", ready)
        .await;
    let kid = kw["status"]["keywordId"].as_str().unwrap().to_string();
    patch::<SignalsConversionEvent>(
        &env,
        "ordered",
        json!({"spec": {"type": "keyword", "typeId": null, "keywordRef": {"name": "order"}}}),
    )
    .await;
    env.wait_for::<SignalsConversionEvent>("ordered", "the keyword", |o| {
        ready(o) && o["status"]["applied"]["typeId"] == kid.as_str()
    })
    .await;
    assert_eq!(
        upstream(&env, "camp1").unwrap().type_id.as_deref(),
        Some(kid.as_str())
    );
    // Give a queued reconcile the time to repeat itself: each change is one POST.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        posts(&env),
        3,
        "{:?}",
        env.operations("signals.set_converted")
    );
    let reasons = env.event_reasons().await;
    assert!(reasons.iter().any(|r| r == "Creating"), "{reasons:?}");
    assert!(reasons.iter().any(|r| r == "Updating"), "{reasons:?}");
}

#[tokio::test]
async fn follows_the_keyword_id_under_keyword_ref() {
    let env = env("sce-kw").await;
    env.create::<SignalsConversionEvent>(conversion(
        "by-keyword",
        "camp1",
        json!({"type": "keyword", "keywordRef": {"name": "order"}}),
    ))
    .await;
    env.wait_for::<SignalsConversionEvent>("by-keyword", "DependencyNotReady", |o| {
        condition(o, "Ready") == Some(("False".into(), "DependencyNotReady".into()))
    })
    .await;
    assert_eq!(
        posts(&env),
        0,
        "nothing is sent before the keyword has an id"
    );

    env.create::<SignalsKeyword>(keyword("order", "order confirmed"))
        .await;
    let kw = env
        .wait_for::<SignalsKeyword>("order", "Ready", ready)
        .await;
    let first = kw["status"]["keywordId"].as_str().unwrap().to_string();
    env.wait_for::<SignalsConversionEvent>("by-keyword", "the first id", |o| {
        ready(o) && o["status"]["applied"]["typeId"] == first.as_str()
    })
    .await;

    // A new keyword text is a new keyword id upstream: the campaign's conversion follows.
    patch::<SignalsKeyword>(&env, "order", json!({"spec": {"keyword": "order shipped"}})).await;
    let o = env
        .wait_for::<SignalsConversionEvent>("by-keyword", "the new id", |o| {
            ready(o) && o["status"]["applied"]["typeId"] != first.as_str()
        })
        .await;
    let second = o["status"]["applied"]["typeId"].as_str().unwrap();
    let kw = env
        .wait_for::<SignalsKeyword>("order", "Ready", ready)
        .await;
    assert_eq!(kw["status"]["keywordId"], second);
    let up = upstream(&env, "camp1").unwrap();
    assert_eq!(
        (up.event_type.as_str(), up.type_id.as_deref()),
        ("keyword", Some(second))
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(posts(&env), 2, "one POST per keyword id");
}

#[tokio::test]
async fn a_type_the_app_does_not_offer_is_stalled() {
    let env = env("sce-type").await;
    env.fake
        .set_signals_event_types("c1", "a1", &["button", "keyword", "converted"]);
    env.create::<SignalsConversionEvent>(conversion("linked", "camp1", json!({"type": "link"})))
        .await;
    let o = env
        .wait_for::<SignalsConversionEvent>("linked", "Stalled", |o| {
            condition(o, "Stalled") == Some(("True".into(), "UpstreamRejected".into()))
        })
        .await;
    let (_, _, message) = condition_full(&o, "Ready").unwrap();
    assert!(
        message.contains("\"link\"") && message.contains("button, keyword, converted"),
        "{message}"
    );
    assert_eq!(posts(&env), 0, "an unknown type is never sent");
    assert_eq!(upstream(&env, "camp1"), None);

    // The user fixes the type: it is sent.
    patch::<SignalsConversionEvent>(
        &env,
        "linked",
        json!({"spec": {"type": "button", "typeId": "btn1"}}),
    )
    .await;
    env.wait_for::<SignalsConversionEvent>("linked", "Ready", ready)
        .await;
    assert_eq!(upstream(&env, "camp1").unwrap().event_type, "button");
}

#[tokio::test]
async fn resync_asserts_it_again_without_writing_status() {
    let env = env("sce-resync").await;
    let mut manifest = conversion("steady", "camp1", json!({"type": "conversation"}));
    manifest["metadata"]["annotations"] = json!({"ctwa.dev/resync-interval": "10s"});
    env.create::<SignalsConversionEvent>(manifest).await;
    let o = env
        .wait_for::<SignalsConversionEvent>("steady", "Ready", ready)
        .await;
    let version = o["metadata"]["resourceVersion"].clone();
    let start = Instant::now();
    let first = posts(&env);
    // Two resyncs of 10 s (±10 %): two more POSTs, and not sooner than two intervals allow.
    while posts(&env) < first + 2 {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no re-assertion: {:?}",
            env.operations("signals.set_converted")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        start.elapsed() >= Duration::from_secs(17),
        "re-asserted more often than once per interval: {:?} for 2",
        start.elapsed()
    );
    assert_eq!(
        env.request_count("signals.list_event_types", None),
        1,
        "the type is validated once per change, not per resync"
    );
    let now = env
        .api::<SignalsConversionEvent>()
        .get("steady")
        .await
        .unwrap();
    assert_eq!(
        serde_json::to_value(&now).unwrap()["metadata"]["resourceVersion"],
        version,
        "a re-assertion writes no status"
    );
}

#[tokio::test]
async fn one_owner_per_campaign() {
    let env = env("sce-own").await;
    env.create::<SignalsConversionEvent>(conversion(
        "first",
        "camp1",
        json!({"type": "button", "typeId": "btn1"}),
    ))
    .await;
    env.wait_for::<SignalsConversionEvent>("first", "Ready", ready)
        .await;
    env.create::<SignalsConversionEvent>(conversion(
        "second",
        "camp1",
        json!({"type": "link", "typeId": "lnk1"}),
    ))
    .await;
    let o = env
        .wait_for::<SignalsConversionEvent>("second", "AlreadyManaged", |o| {
            condition(o, "Ready") == Some(("False".into(), "AlreadyManaged".into()))
        })
        .await;
    let (_, _, message) = condition_full(&o, "Ready").unwrap();
    assert!(message.contains("first"), "{message}");
    assert_eq!(upstream(&env, "camp1").unwrap().event_type, "button");
    assert_eq!(posts(&env), 1, "the second object never writes");

    // Another campaign is another owner.
    env.create::<SignalsConversionEvent>(conversion(
        "other",
        "camp2",
        json!({"type": "engagement"}),
    ))
    .await;
    env.wait_for::<SignalsConversionEvent>("other", "Ready", ready)
        .await;

    // The first goes: the second takes the campaign over.
    env.api::<SignalsConversionEvent>()
        .delete("first", &DeleteParams::default())
        .await
        .unwrap();
    env.wait_gone::<SignalsConversionEvent>("first").await;
    env.wait_for_long::<SignalsConversionEvent>("second", ready)
        .await;
    assert_eq!(upstream(&env, "camp1").unwrap().event_type, "link");
}

#[tokio::test]
async fn deletion_calls_nothing_upstream_with_either_policy() {
    let env = env("sce-del").await;
    for (name, campaign, policy) in [("kept", "camp1", "Orphan"), ("dropped", "camp2", "Delete")] {
        env.create::<SignalsConversionEvent>(conversion(
            name,
            campaign,
            json!({"type": "engagement", "deletionPolicy": policy}),
        ))
        .await;
        env.wait_for::<SignalsConversionEvent>(name, "Ready", ready)
            .await;
    }
    let before = env.fake.requests().len();
    for name in ["kept", "dropped"] {
        env.api::<SignalsConversionEvent>()
            .delete(name, &DeleteParams::default())
            .await
            .unwrap();
        env.wait_gone::<SignalsConversionEvent>(name).await;
    }
    let after: Vec<String> = env.fake.requests()[before..]
        .iter()
        .map(|r| r.operation.clone())
        .collect();
    assert!(after.is_empty(), "a deletion called upstream: {after:?}");
    for campaign in ["camp1", "camp2"] {
        assert_eq!(
            upstream(&env, campaign).map(|c| c.event_type),
            Some("engagement".to_string()),
            "the campaign's conversion is left as it is"
        );
    }
}

/// The whole chain: a keyword, the campaign's conversion on it, a tag, a bridge forwarding
/// `converted` events to it. Keyword messages of the campaign become `converted` events and reach X;
/// the campaign's other events and other campaigns' keyword messages do not.
#[tokio::test]
async fn keyword_messages_reach_x_as_the_campaigns_conversions() {
    let env = env("sce-chain").await;
    env.create::<SignalsKeyword>(keyword("order", "order confirmed"))
        .await;
    let kw = env
        .wait_for::<SignalsKeyword>("order", "Ready", ready)
        .await;
    let kid = kw["status"]["keywordId"].as_str().unwrap().to_string();
    env.create::<SignalsConversionEvent>(conversion(
        "ordered",
        "camp1",
        json!({"type": "keyword", "keywordRef": {"name": "order"}}),
    ))
    .await;
    env.wait_for::<SignalsConversionEvent>("ordered", "Ready", ready)
        .await;
    let start = now_s() - jiff::SignedDuration::from_secs(60);
    env.create::<XWebEventTag>(json!({
        "apiVersion": "ctwa.dev/v1alpha1", "kind": "XWebEventTag", "metadata": {"name": "purchase"},
        "spec": {"accountId": "acc1", "name": "WhatsApp purchase", "type": "PURCHASE",
                 "clickWindow": 30, "viewThroughWindow": 1, "secretRef": {"name": "x-ads"}}
    }))
    .await;
    env.create::<ConversionBridge>(bridge(
        "to-x",
        start,
        json!({"destination": {"x": {"eventTagRef": {"name": "purchase"}}}}),
    ))
    .await;
    env.wait_for::<ConversionBridge>("to-x", "Ready", ready)
        .await;

    let at = now_s() - jiff::SignedDuration::from_secs(5);
    let date = at.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
    let event = |id: &str, campaign: &str, type_: &str, type_id: &str, phone: &str| {
        json!({"id": id, "app_id": "a1", "ad_id": "ad1", "campaign_id": campaign,
               "phone": phone, "type": type_, "type_id": type_id,
               "type_value": "order confirmed", "date": date})
    };
    let mut seeded = Vec::new();
    for i in 0..5 {
        seeded.push(event(
            &format!("m{i}"),
            "camp1",
            "keyword",
            &kid,
            &format!("+1 555 010 00{i:02}"),
        ));
    }
    seeded.push(event(
        "other-campaign",
        "camp9",
        "keyword",
        &kid,
        "+15550109999",
    ));
    seeded.push(event(
        "other-keyword",
        "camp1",
        "keyword",
        "kw-x",
        "+15550108888",
    ));
    seeded.push(event("a-button", "camp1", "button", "b1", "+15550107777"));
    env.fake.seed_events("c1", "a1", seeded);

    env.wait_received(5, Duration::from_secs(60)).await;
    // Let the bridge's checkpoint pass every seeded event: nothing else arrives.
    env.wait_for_long::<ConversionBridge>("to-x", ctwa_testenv::events::checkpoint_past(at))
        .await;
    let received = env.fake.conversions();
    let hashed: std::collections::BTreeSet<String> = received
        .iter()
        .filter_map(|c| {
            c.conversion["identifiers"][0]["hashed_phone_number"]
                .as_str()
                .map(String::from)
        })
        .collect();
    let expected: std::collections::BTreeSet<String> = (0..5)
        .map(|i| ctwa_operator::runtime::digest::sha256_hex(&format!("+1555010{:04}", i)))
        .collect();
    assert_eq!(hashed, expected, "{received:#?}");
}
