//! ConversionBridge end to end: the real API server, the operator in-process, the fakes.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use common::events::{
    bridge, checkpoint, expected_conversion, now_s, patch_spec, received_counts, spread, status_i64,
};
use common::{Env, condition, env};
use ctwa_operator::api::ConversionBridge;
use jiff::{Timestamp, ToSpan};
use serde_json::{Value, json};

#[tokio::test]
async fn ten_thousand_mixed_events_become_exactly_the_configured_conversions() {
    let env = env("bridge-10k").await;
    let tag = env.fake.insert_tag("acc1", "purchase", "PURCHASE", 30, 1);
    let now = Timestamp::now();
    let start = now - 2.hours();
    let types = ["converted", "keyword", "button", "link", "list"];
    let events = spread(
        "ev",
        10_000,
        start + 1.second(),
        now - 5.seconds(),
        &common::events::TYPES,
        0,
    );
    env.seed(&events);
    let wanted: Vec<_> = events
        .iter()
        .filter(|g| types.contains(&g.event["type"].as_str().unwrap()))
        .collect();
    let last = wanted.iter().map(|g| g.at).max().unwrap();

    env.create::<ConversionBridge>(bridge(
        "b",
        start,
        json!({"source": {"signals": {"eventTypes": types}},
               "destination": {"x": {"eventId": tag}}}),
    ))
    .await;
    let expected_n = wanted.len() as i64;
    let o = env
        .wait_for_long::<ConversionBridge>("b", |o| {
            status_i64(o, "eventsForwarded") == expected_n
                && o["status"]["checkpoint"]
                    .as_str()
                    .and_then(|c| c.parse::<Timestamp>().ok())
                    .is_some_and(|c| c > last)
        })
        .await;

    // Exactly the configured types, each once, mapped field by field.
    let received = env.fake.conversions();
    let counts = received_counts(&received);
    let want_ids: HashSet<&str> = wanted.iter().map(|g| g.id.as_str()).collect();
    let got_ids: HashSet<&str> = counts.keys().map(String::as_str).collect();
    assert_eq!(got_ids, want_ids);
    assert!(
        counts.values().all(|&n| n == 1),
        "no duplicates without restarts"
    );
    let by_id: BTreeMap<&str, &Value> = received
        .iter()
        .map(|c| {
            (
                c.conversion["conversion_id"].as_str().unwrap(),
                &c.conversion,
            )
        })
        .collect();
    for g in &wanted {
        assert_eq!(
            *by_id[g.id.as_str()],
            expected_conversion(g, &tag),
            "{}",
            g.id
        );
    }
    assert!(received.iter().all(|c| c.pixel_id == "pix1"));

    // Full batches while the backlog lasts: only the last one may be partial.
    let mut sizes: BTreeMap<u64, usize> = BTreeMap::new();
    for c in &received {
        *sizes.entry(c.batch).or_default() += 1;
    }
    let sizes: Vec<usize> = sizes.into_values().collect();
    assert_eq!(sizes.len(), wanted.len().div_ceil(500), "{sizes:?}");
    assert!(
        sizes[..sizes.len() - 1].iter().all(|&s| s == 500),
        "{sizes:?}"
    );

    // Status counters match what X received.
    assert_eq!(status_i64(&o, "eventsReceived"), expected_n);
    assert_eq!(status_i64(&o, "eventsRejected"), 0);
    assert_eq!(status_i64(&o, "eventsDuplicate"), 0);
    assert_eq!(status_i64(&o, "batchesSent"), sizes.len() as i64);
    let o = env
        .wait_for::<ConversionBridge>("b", "Ready", |o| {
            condition(o, "Ready") == Some(("True".into(), "Available".into()))
        })
        .await;
    assert_eq!(
        condition(&o, "SourceHealthy"),
        Some(("True".into(), "Available".into()))
    );
    assert_eq!(
        condition(&o, "DestinationHealthy"),
        Some(("True".into(), "Available".into()))
    );
    assert!(o["status"]["lastPollTime"].is_string());
    assert!(o["status"]["lastForwardTime"].is_string());
    assert!(o["status"].get("postbackPath").is_none());

    // The bridge metrics tell the same story.
    let text = env.metrics_text().await;
    let metric = |name: &str, outcome: &str| -> f64 {
        common::sample(&text, name, &[("bridge", "b"), ("outcome", outcome)])
            .unwrap_or_else(|| panic!("{name} {outcome} missing in:\n{text}"))
    };
    assert_eq!(
        metric("ctwa_bridge_events_total", "forwarded"),
        expected_n as f64
    );
    assert_eq!(
        metric("ctwa_bridge_events_total", "received"),
        expected_n as f64
    );
    assert_eq!(
        metric("ctwa_bridge_batches_total", "sent"),
        sizes.len() as f64
    );
    assert!(text.contains("ctwa_bridge_lag_seconds{"));
    assert!(text.contains("ctwa_rate_limit_remaining{api=\"x-ads\",account=\"pix1\"}"));
    assert!(text.contains(
        "ctwa_upstream_requests_total{api=\"signals\",operation=\"list_events\",code=\"200\"}"
    ));

    // Later polls re-read the lookback window without sending anything again.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(env.fake.conversion_count(), wanted.len());
}

async fn set_x_secret(env: &Env, consumer_secret: &str) {
    let secrets: kube::Api<k8s_openapi::api::core::v1::Secret> = env.api();
    secrets
        .patch(
            "x-ads",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"stringData": {"consumer-secret": consumer_secret}})),
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn configuration_errors_stall_until_the_spec_or_secret_is_fixed() {
    let env = env("bridge-config").await;
    let tag = env.fake.insert_tag("acc1", "purchase", "PURCHASE", 30, 1);
    let now = now_s();
    let start = now - 10.minutes();
    let first = spread(
        "a",
        300,
        start + 1.second(),
        now - 5.seconds(),
        &["converted"],
        0,
    );
    env.seed(&first);

    // An event_id X does not know: Stalled, nothing sent, checkpoint where it started.
    env.create::<ConversionBridge>(bridge(
        "b",
        start,
        json!({"destination": {"x": {"eventId": "nosuchtag"}}}),
    ))
    .await;
    let o = env
        .wait_for::<ConversionBridge>("b", "Stalled", |o| {
            condition(o, "Stalled") == Some(("True".into(), "UpstreamRejected".into()))
        })
        .await;
    assert_eq!(
        condition(&o, "DestinationHealthy").map(|c| c.0),
        Some("False".into())
    );
    assert_eq!(condition(&o, "Ready").map(|c| c.0), Some("False".into()));
    assert_eq!(checkpoint(&o), Some(start));
    tokio::time::sleep(Duration::from_secs(6)).await;
    let o = env.api::<ConversionBridge>().get("b").await.unwrap();
    assert_eq!(o.status.unwrap().checkpoint.map(|t| t.0), Some(start));
    assert!(env.fake.conversions().is_empty());

    // Fixing the spec resumes forwarding from the checkpoint.
    patch_spec(&env, "b", json!({"destination": {"x": {"eventId": tag}}})).await;
    env.wait_for_long::<ConversionBridge>("b", |o| {
        status_i64(o, "eventsForwarded") == 300
            && condition(o, "Ready") == Some(("True".into(), "Available".into()))
    })
    .await;
    assert_eq!(env.fake.distinct_conversion_count(), 300);

    // X answers 401: Stalled with InvalidCredentials, the checkpoint stays. The new worker
    // re-sends nothing it forwarded already, so X's answer comes with the next new events.
    set_x_secret(&env, "wrong").await;
    let now = Timestamp::now();
    let second = spread("b", 100, now - 3.seconds(), now, &["converted"], 0);
    env.seed(&second);
    let o = env
        .wait_for::<ConversionBridge>("b", "Stalled", |o| {
            condition(o, "Stalled") == Some(("True".into(), "InvalidCredentials".into()))
        })
        .await;
    let stalled_at = checkpoint(&o).unwrap();
    assert!(
        stalled_at <= now - 3.seconds(),
        "{stalled_at} passed unsent events"
    );
    tokio::time::sleep(Duration::from_secs(6)).await;
    let o = env.api::<ConversionBridge>().get("b").await.unwrap();
    assert_eq!(o.status.unwrap().checkpoint.map(|t| t.0), Some(stalled_at));
    assert_eq!(env.fake.distinct_conversion_count(), 300);

    // Fixing the Secret resumes forwarding; nothing is lost.
    set_x_secret(&env, common::X_CONSUMER_SECRET).await;
    env.wait_for_long::<ConversionBridge>("b", |o| {
        condition(o, "Ready") == Some(("True".into(), "Available".into()))
            && checkpoint(o).is_some_and(|c| c > now)
    })
    .await;
    let ids = env.fake.distinct_conversion_ids();
    assert!(first.iter().chain(&second).all(|g| ids.contains(&g.id)));
    assert_eq!(ids.len(), 400);
}

#[tokio::test]
async fn the_rate_budget_is_used_but_never_overrun() {
    let env = env("bridge-budget").await;
    let tag = env.fake.insert_tag("acc1", "purchase", "PURCHASE", 30, 1);
    // Not a multiple of the batch size, so the last request of the window must be smaller.
    let budget = 2_750;
    env.fake.set_x_rate_limits(fake_upstreams::XRateLimits {
        conversions: budget,
        requests: 2_000,
        window_seconds: 900,
    });
    let now = Timestamp::now();
    let start = now - 1.hour();
    let backlog = spread(
        "ev",
        6_000,
        start + 1.second(),
        now - 5.seconds(),
        &["converted"],
        0,
    );
    env.fake.seed_events(
        "c1",
        "a1",
        backlog.iter().map(|g| g.event.clone()).collect(),
    );
    env.create::<ConversionBridge>(bridge(
        "b",
        start,
        json!({"destination": {"x": {"eventId": tag}},
               "rateLimit": {"eventsPer15Min": budget}}),
    ))
    .await;
    env.wait_for_long::<ConversionBridge>("b", |o| {
        status_i64(o, "eventsForwarded") as f64 >= 0.9 * budget as f64
    })
    .await;
    // Give it time to overrun if it were going to.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let sent = env.fake.conversion_count() as u64;
    let refused = env
        .fake
        .requests()
        .into_iter()
        .filter(|r| r.operation == "x.send_conversions" && r.status == 429)
        .count();
    println!("budget {budget}: {sent} conversions accepted, {refused} requests refused with 429");
    assert_eq!(refused, 0, "the bridge provoked 429s");
    assert!(sent <= budget);
    assert!(
        sent as f64 >= 0.9 * budget as f64,
        "only {sent} of {budget} used"
    );
    let o = env.api::<ConversionBridge>().get("b").await.unwrap();
    assert_eq!(o.status.unwrap().events_forwarded as u64, sent);
}

#[tokio::test]
async fn suspend_stops_forwarding_and_resume_loses_nothing() {
    let env = env("bridge-suspend").await;
    let tag = env.fake.insert_tag("acc1", "purchase", "PURCHASE", 30, 1);
    let now = Timestamp::now();
    let start = now - 10.minutes();
    let first = spread(
        "a",
        200,
        start + 1.second(),
        now - 5.seconds(),
        &["converted"],
        0,
    );
    env.seed(&first);
    env.create::<ConversionBridge>(bridge(
        "b",
        start,
        json!({"destination": {"x": {"eventId": tag}}}),
    ))
    .await;
    env.wait_for_long::<ConversionBridge>("b", |o| status_i64(o, "eventsForwarded") == 200)
        .await;

    patch_spec(&env, "b", json!({"suspend": true})).await;
    let o = env
        .wait_for::<ConversionBridge>("b", "Suspended", |o| {
            condition(o, "Ready") == Some(("False".into(), "Suspended".into()))
        })
        .await;
    let held = checkpoint(&o).unwrap();
    // Events keep arriving while suspended.
    let now = Timestamp::now();
    let second = spread("b", 300, held, now, &["converted"], 0);
    env.seed(&second);
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert_eq!(env.fake.distinct_conversion_count(), 200);
    let o = env.api::<ConversionBridge>().get("b").await.unwrap();
    assert_eq!(o.status.unwrap().checkpoint.map(|t| t.0), Some(held));

    patch_spec(&env, "b", json!({"suspend": false})).await;
    env.wait_for_long::<ConversionBridge>("b", |o| {
        condition(o, "Ready") == Some(("True".into(), "Available".into()))
            && checkpoint(o).is_some_and(|c| c > now)
    })
    .await;
    let ids = env.fake.distinct_conversion_ids();
    assert!(first.iter().chain(&second).all(|g| ids.contains(&g.id)));
    assert_eq!(ids.len(), 500);
}

/// A backlog goes out with several requests in flight (X's latency would otherwise bound the
/// bridge), never more than four, and the checkpoint still covers every event.
#[tokio::test]
async fn a_backlog_is_sent_with_up_to_four_requests_in_flight() {
    let env = env("bridge-in-flight").await;
    let tag = env.fake.insert_tag("acc1", "purchase", "PURCHASE", 30, 1);
    env.fake.set_fault(fake_upstreams::FaultRule {
        operation: Some("x.send_conversions".into()),
        latency_ms: 500,
        ..Default::default()
    });
    let now = Timestamp::now();
    let start = now - 1.hours();
    let events = spread(
        "f",
        5_000,
        start + 1.second(),
        now - 5.seconds(),
        &["converted"],
        0,
    );
    env.seed(&events);
    env.create::<ConversionBridge>(bridge(
        "b",
        start,
        json!({"destination": {"x": {"eventId": tag}}}),
    ))
    .await;
    let last = events.iter().map(|g| g.at).max().unwrap();
    env.wait_for_long::<ConversionBridge>("b", |o| {
        status_i64(o, "eventsForwarded") == 5_000 && checkpoint(o).is_some_and(|c| c > last)
    })
    .await;
    assert_eq!(env.fake.distinct_conversion_count(), 5_000);
    assert_eq!(env.fake.peak_concurrency("x.send_conversions"), 4);
}

/// Events that only exist as postbacks (not in the Signals list), so they can reach X only
/// through the receiver.
fn postback_events(prefix: &str, n: u64) -> Vec<Value> {
    let now = Timestamp::now();
    (0..n)
        .map(|i| common::events::event(&format!("{prefix}-{i}"), "converted", now, i, true).event)
        .collect()
}

async fn post(url: &str, body: impl Into<reqwest::Body>) -> (u16, String) {
    let response = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test]
async fn the_postback_receiver_takes_whole_requests_or_nothing() {
    let env = env("bridge-receiver").await;
    let tag = env.fake.insert_tag("acc1", "purchase", "PURCHASE", 30, 1);
    env.create::<ConversionBridge>(bridge(
        "pb",
        now_s() - 1.minute(),
        json!({"source": {"postbacks": {"enabled": true}},
               "destination": {"x": {"eventId": tag}}}),
    ))
    .await;
    let ns = env.ns.name.clone();
    env.wait_for::<ConversionBridge>("pb", "the postback path", |o| {
        o["status"]["postbackPath"] == format!("/postbacks/{ns}/pb/")
            && condition(o, "Ready") == Some(("True".into(), "Available".into()))
    })
    .await;
    let secrets: kube::Api<k8s_openapi::api::core::v1::Secret> = env.api();
    let secret = secrets.get("pb-postback-token").await.unwrap();
    let token = String::from_utf8(secret.data.unwrap()["token"].0.clone()).unwrap();
    assert!(token.len() >= 43, "32 random bytes");
    let owner = &secret.metadata.owner_references.unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("ConversionBridge", "pb")
    );
    let base = format!("http://{}/postbacks/{ns}", env.postback_addr);
    let url = format!("{base}/pb/{token}");

    // The three accepted shapes.
    let accepted = postback_events("ok", 6);
    for body in [
        accepted[0].clone(),
        json!([accepted[1], accepted[2]]),
        json!({"data": [accepted[3], accepted[4], accepted[5]]}),
    ] {
        assert_eq!(post(&url, body.to_string()).await.0, 202);
    }

    // Refused requests, each carrying events that must never reach X.
    let wrong_token = postback_events("wrong-token", 2);
    let (code, not_found) = post(
        &format!("{base}/pb/not-the-token"),
        json!(wrong_token).to_string(),
    )
    .await;
    assert_eq!(code, 404);
    let unknown = postback_events("unknown-bridge", 2);
    let (code, body) = post(
        &format!("{base}/nosuchbridge/{token}"),
        json!(unknown).to_string(),
    )
    .await;
    assert_eq!(
        (code, body),
        (404, not_found),
        "unknown bridge and wrong token look the same"
    );
    let big = postback_events("too-big", 1);
    let mut padded = big[0].clone();
    padded["padding"] = json!("x".repeat(2 * 1024 * 1024));
    assert_eq!(post(&url, padded.to_string()).await.0, 413);
    let malformed = postback_events("malformed", 2);
    assert_eq!(post(&url, format!("[{}, 42]", malformed[0])).await.0, 400);
    assert_eq!(
        post(&url, format!("{{\"data\": [{}", malformed[1])).await.0,
        400
    );

    env.wait_for::<ConversionBridge>("pb", "postbacks forwarded", |o| {
        status_i64(o, "eventsForwarded") == 6
    })
    .await;

    // A full queue: X answers slowly, so the queue fills and the receiver pushes back.
    env.fake.set_fault(fake_upstreams::FaultRule {
        operation: Some("x.send_conversions".into()),
        latency_ms: 4_000,
        ..Default::default()
    });
    let mut taken = Vec::new();
    let mut refused = Vec::new();
    for round in 0..8 {
        let events = postback_events(&format!("load{round}"), 2_500);
        match post(&url, json!(events).to_string()).await.0 {
            202 => taken.extend(events),
            503 => {
                refused.extend(events);
                break;
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert!(!refused.is_empty(), "the queue never filled");
    env.fake.clear_faults();
    let want = 6 + taken.len() as i64;
    env.wait_for_long::<ConversionBridge>("pb", |o| status_i64(o, "eventsForwarded") == want)
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    let ids = env.fake.distinct_conversion_ids();
    assert_eq!(ids.len() as i64, want);
    for e in accepted.iter().chain(&taken) {
        assert!(ids.contains(e["id"].as_str().unwrap()));
    }
    for e in wrong_token
        .iter()
        .chain(&unknown)
        .chain(&big)
        .chain(&malformed)
        .chain(&refused)
    {
        assert!(
            !ids.contains(e["id"].as_str().unwrap()),
            "{} was forwarded",
            e["id"]
        );
    }
}

#[tokio::test]
async fn a_postback_with_bridge_ref_points_signals_at_the_receiver() {
    let env = env("bridge-postback-ref").await;
    let tag = env.fake.insert_tag("acc1", "purchase", "PURCHASE", 30, 1);
    env.create::<ctwa_operator::api::SignalsPostback>(json!({
        "apiVersion": "ctwa.dev/v1alpha1", "kind": "SignalsPostback",
        "metadata": {"name": "to-bridge"},
        "spec": {"clientId": "c1", "appId": "a1", "adId": "ad1", "event": "Ad",
                 "bridgeRef": {"name": "pb"}, "secretRef": {"name": "dialog360"}}
    }))
    .await;
    // Without the bridge the postback waits for it.
    env.wait_for::<ctwa_operator::api::SignalsPostback>("to-bridge", "waiting", |o| {
        condition(o, "Ready") == Some(("False".into(), "DependencyNotReady".into()))
    })
    .await;
    env.create::<ConversionBridge>(bridge(
        "pb",
        now_s(),
        json!({"source": {"postbacks": {"enabled": true}},
               "destination": {"x": {"eventId": tag}}}),
    ))
    .await;
    let o = env
        .wait_for::<ctwa_operator::api::SignalsPostback>("to-bridge", "Ready", common::ready)
        .await;
    let secrets: kube::Api<k8s_openapi::api::core::v1::Secret> = env.api();
    let token = String::from_utf8(
        secrets
            .get("pb-postback-token")
            .await
            .unwrap()
            .data
            .unwrap()["token"]
            .0
            .clone(),
    )
    .unwrap();
    let url = format!(
        "http://{}/postbacks/{}/pb/{token}",
        env.postback_addr, env.ns.name
    );
    assert_eq!(
        env.fake
            .postback_url("c1", "a1", "ad1", fake_upstreams::PostbackKind::Ad)
            .as_deref(),
        Some(url.as_str())
    );
    // The token is in no status.
    assert!(!o.to_string().contains(&token));
    let bridge = env.api::<ConversionBridge>().get("pb").await.unwrap();
    assert!(!serde_json::to_string(&bridge).unwrap().contains(&token));

    // A new token (the Secret deleted) is followed by the postback URL.
    secrets
        .delete("pb-postback-token", &Default::default())
        .await
        .unwrap();
    env.wait_for::<ctwa_operator::api::SignalsPostback>("to-bridge", "a new URL", |_| {
        env.fake
            .postback_url("c1", "a1", "ad1", fake_upstreams::PostbackKind::Ad)
            .is_some_and(|u| u != url)
    })
    .await;
}
