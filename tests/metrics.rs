//! After traffic of every kind, `/metrics` shows every metric family of SPEC section 4, with
//! non-zero values where traffic happened.

mod common;

use common::events::{bridge, spread};
use common::{condition, env, ready, sample};
use ctwa_operator::api::{ConversionBridge, SignalsKeyword, XWebEventTag};
use jiff::{Timestamp, ToSpan};
use serde_json::json;

/// The value of the first sample of `family` whose labels contain every `labels` pair.
#[tokio::test]
async fn every_metric_family_reports_the_traffic() {
    let env = env("metrics").await;
    env.create::<SignalsKeyword>(json!({
        "apiVersion": "ctwa.dev/v1alpha1", "kind": "SignalsKeyword", "metadata": {"name": "k"},
        "spec": {"clientId": "c1", "appId": "a1", "keyword": "order confirmed", "adId": "ad1",
                 "secretRef": {"name": "dialog360"}}
    }))
    .await;
    env.create::<XWebEventTag>(json!({
        "apiVersion": "ctwa.dev/v1alpha1", "kind": "XWebEventTag", "metadata": {"name": "purchase"},
        "spec": {"accountId": "acc1", "name": "Purchase", "type": "PURCHASE", "clickWindow": 30,
                 "viewThroughWindow": 1, "secretRef": {"name": "x-ads"}}
    }))
    .await;
    env.wait_for::<SignalsKeyword>("k", "Ready", ready).await;
    env.wait_for::<XWebEventTag>("purchase", "Ready", ready)
        .await;

    let now = Timestamp::from_second(Timestamp::now().as_second()).unwrap();
    // Every 10th event has a bad phone number.
    let events = spread("ev", 200, now - 1.minute(), now, &["converted"], 10);
    env.seed(&events);
    env.create::<ConversionBridge>(bridge(
        "b",
        now - 2.minutes(),
        json!({"source": {"postbacks": {"enabled": true}},
               "destination": {"x": {"eventTagRef": {"name": "purchase"}}}}),
    ))
    .await;
    env.wait_for_long::<ConversionBridge>("b", |o| {
        o["status"]["eventsForwarded"] == 180
            && condition(o, "Ready") == Some(("True".into(), "Available".into()))
    })
    .await;
    // A postback of an event polled moments ago (inside the lookback window) is a duplicate.
    let secrets: kube::Api<k8s_openapi::api::core::v1::Secret> = env.api();
    let token = String::from_utf8(
        secrets.get("b-postback-token").await.unwrap().data.unwrap()["token"]
            .0
            .clone(),
    )
    .unwrap();
    let url = format!(
        "http://{}/postbacks/{}/b/{token}",
        env.postback_addr, env.ns.name
    );
    let status = reqwest::Client::new()
        .post(&url)
        .json(&events[198].event)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status.as_u16(), 202);
    env.wait_for::<ConversionBridge>("b", "a duplicate", |o| o["status"]["eventsDuplicate"] == 1)
        .await;

    let text = env.metrics_text().await;
    let positive = |family: &str, labels: &[(&str, &str)]| {
        let v = sample(&text, family, labels)
            .unwrap_or_else(|| panic!("no {family} {labels:?} in:\n{text}"));
        assert!(v > 0.0, "{family} {labels:?} is {v}");
    };
    for kind in ["SignalsKeyword", "XWebEventTag", "ConversionBridge"] {
        positive(
            "ctwa_reconcile_total",
            &[("kind", kind), ("result", "success")],
        );
        positive("ctwa_reconcile_duration_seconds_count", &[("kind", kind)]);
    }
    positive(
        "ctwa_upstream_requests_total",
        &[
            ("api", "signals"),
            ("operation", "create_keyword"),
            ("code", "201"),
        ],
    );
    positive(
        "ctwa_upstream_requests_total",
        &[
            ("api", "x-ads"),
            ("operation", "send_conversions"),
            ("code", "200"),
        ],
    );
    positive(
        "ctwa_upstream_request_duration_seconds_count",
        &[("api", "x-ads"), ("operation", "create_tag")],
    );
    for outcome in ["received", "forwarded", "rejected", "duplicate"] {
        positive(
            "ctwa_bridge_events_total",
            &[("bridge", "b"), ("outcome", outcome)],
        );
    }
    assert_eq!(
        sample(
            &text,
            "ctwa_bridge_events_total",
            &[("bridge", "b"), ("outcome", "rejected")]
        ),
        Some(20.0)
    );
    positive(
        "ctwa_bridge_batches_total",
        &[("bridge", "b"), ("outcome", "sent")],
    );
    assert!(sample(&text, "ctwa_bridge_lag_seconds", &[("bridge", "b")]).is_some());
    assert_eq!(
        sample(&text, "ctwa_bridge_ready", &[("bridge", "b")]),
        Some(1.0)
    );
    assert_eq!(sample(&text, "ctwa_leader", &[]), Some(1.0));
    positive(
        "ctwa_rate_limit_remaining",
        &[("api", "x-ads"), ("account", "pix1")],
    );
    // The postback token never shows up.
    assert!(!text.contains(&token));
}
