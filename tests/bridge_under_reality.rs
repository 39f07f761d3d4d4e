//! ConversionBridge against what X, Signals and operations really do (SPEC 7.2): every error
//! X documents, proxies' HTML pages, rate limits that say "now", a Signals clock behind ours,
//! short pages, a payload that makes X fail, bad postbacks, spec edits and Secret touches.
//! Each test asserts what a user sees: events delivered or kept (never silently rejected),
//! `eventsRejected`, the conditions and the request counts.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::events::{
    Generated, bridge, checkpoint, event, now_s, patch_spec, received_counts, recent, spread,
    status_i64,
};
use common::{Env, condition, env, env_without_operator};
use ctwa_operator::api::{ConversionBridge, XWebEventTag};
use fake_upstreams::x_errors::{self, ErrorKind};
use fake_upstreams::{Canned, FaultRule};
use jiff::{Timestamp, ToSpan};
use serde_json::{Value, json};

/// `n` valid events of app `app`, ids `<prefix>-<i>`, dated over the last minutes.
fn events_of(app: &str, prefix: &str, n: u64, start: Timestamp) -> Vec<Generated> {
    let mut events = spread(
        prefix,
        n,
        start + 1.second(),
        Timestamp::now() - 10.seconds(),
        &["converted"],
        0,
    );
    for g in &mut events {
        g.event["app_id"] = json!(app);
    }
    events
}

/// A bridge reading its own app `app` of client c1.
fn bridge_on(name: &str, app: &str, start: Timestamp, tag: &str) -> Value {
    bridge(
        name,
        start,
        json!({"source": {"signals": {"appId": app}},
               "destination": {"x": {"eventId": tag}}}),
    )
}

fn ids_delivered(env: &Env, prefix: &str) -> HashSet<String> {
    env.fake
        .distinct_conversion_ids()
        .into_iter()
        .filter(|id| id.starts_with(prefix))
        .collect()
}

/// One bridge per error X documents, the error aimed at that bridge's requests only. A
/// configuration error stalls its bridge and keeps every event; a per-conversion error
/// rejects exactly the conversion it concerns; "too many" splits and loses nothing.
#[tokio::test]
async fn every_documented_x_error_holds_or_rejects_exactly_what_it_should() {
    let env = env("bridge-x-errors").await;
    let tag = env.fake.insert_tag("acc1", "purchase", "PURCHASE", 30, 1);
    let start = now_s() - 5.minutes();
    let mut cases = x_errors::documented()
        .into_iter()
        .map(|e| (e.kind, x_errors::canned(&e), e.body.clone()))
        .collect::<Vec<_>>();
    // A 413 from a proxy: the request was too big.
    cases.push((
        ErrorKind::TooLarge,
        Canned {
            status: 413,
            ..Default::default()
        },
        "413".into(),
    ));
    for (i, (kind, canned, _)) in cases.iter().enumerate() {
        let app = format!("app{i}");
        let prefix = format!("x-b{i}-");
        let events = events_of(&app, &format!("x-b{i}"), 10, start);
        env.fake
            .seed_events("c1", &app, events.iter().map(|g| g.event.clone()).collect());
        let body_contains = match kind {
            // Only the requests carrying conversion 3 are refused.
            ErrorKind::PerConversion => format!("\"x-b{i}-3\""),
            _ => prefix.clone(),
        };
        env.fake.set_fault(FaultRule {
            operation: Some("x.send_conversions".into()),
            body_contains: Some(body_contains),
            respond: Some(canned.clone()),
            remaining: (*kind == ErrorKind::TooLarge).then_some(1),
            ..Default::default()
        });
        env.create::<ConversionBridge>(bridge_on(&format!("b{i}"), &app, start, &tag))
            .await;
    }
    for (i, (kind, _, body)) in cases.iter().enumerate() {
        let name = format!("b{i}");
        let prefix = format!("x-b{i}-");
        match kind {
            ErrorKind::Configuration => {
                let o = env
                    .wait_for::<ConversionBridge>(&name, "Stalled", |o| {
                        condition(o, "Stalled").is_some_and(|c| c.0 == "True")
                    })
                    .await;
                assert_eq!(
                    condition(&o, "DestinationHealthy").map(|c| c.0),
                    Some("False".into()),
                    "{body}"
                );
                assert_eq!(status_i64(&o, "eventsRejected"), 0, "{body}");
                assert_eq!(checkpoint(&o), Some(start), "{body}");
                assert!(ids_delivered(&env, &prefix).is_empty(), "{body}");
            }
            ErrorKind::PerConversion => {
                let o = env
                    .wait_for::<ConversionBridge>(&name, "all settled", |o| {
                        status_i64(o, "eventsForwarded") + status_i64(o, "eventsRejected") == 10
                    })
                    .await;
                assert_eq!(status_i64(&o, "eventsRejected"), 1, "{body}");
                assert_eq!(
                    o["status"]["recentRejections"][0]["eventId"],
                    json!(format!("x-b{i}-3")),
                    "{body}"
                );
                let delivered = ids_delivered(&env, &prefix);
                assert_eq!(delivered.len(), 9, "{body}");
                assert!(!delivered.contains(&format!("x-b{i}-3")), "{body}");
            }
            ErrorKind::TooLarge => {
                let o = env
                    .wait_for::<ConversionBridge>(&name, "all forwarded", |o| {
                        status_i64(o, "eventsForwarded") == 10
                    })
                    .await;
                assert_eq!(status_i64(&o, "eventsRejected"), 0, "{body}");
                assert_eq!(ids_delivered(&env, &prefix).len(), 10, "{body}");
            }
        }
    }
}

/// A proxy in front of X answers 400 with an HTML page: nothing is rejected, the bridge says
/// it is being refused, retries, and delivers everything once the proxy lets it through.
#[tokio::test]
async fn an_html_400_from_a_proxy_is_retried_and_rejects_nothing() {
    let env = env("bridge-html-400").await;
    let tag = env.fake.insert_tag("acc1", "purchase", "PURCHASE", 30, 1);
    let start = now_s() - 5.minutes();
    env.seed(&events_of("a1", "h", 50, start));
    env.fake.set_fault(FaultRule {
        operation: Some("x.send_conversions".into()),
        respond: Some(x_errors::html_400()),
        remaining: Some(4),
        ..Default::default()
    });
    env.create::<ConversionBridge>(bridge_on("b", "a1", start, &tag))
        .await;
    let o = env
        .wait_for::<ConversionBridge>("b", "refused", |o| {
            condition(o, "DestinationHealthy") == Some(("False".into(), "UpstreamRejected".into()))
        })
        .await;
    assert_eq!(
        condition(&o, "Ready"),
        Some(("False".into(), "UpstreamRejected".into()))
    );
    assert_ne!(
        condition(&o, "Stalled").map(|c| c.0),
        Some("True".into()),
        "an unexplained refusal is retried, not a stall"
    );
    let o = env
        .wait_for_long::<ConversionBridge>("b", |o| status_i64(o, "eventsForwarded") == 50)
        .await;
    assert_eq!(status_i64(&o, "eventsRejected"), 0);
    assert_eq!(env.fake.distinct_conversion_count(), 50);
    env.wait_for::<ConversionBridge>("b", "Ready", |o| {
        condition(o, "Ready") == Some(("True".into(), "Available".into()))
    })
    .await;
}

/// A postback copy that cannot be mapped is counted as rejected, and the Signals list's
/// valid copy of the same event is still sent.
#[tokio::test]
async fn a_bad_postback_does_not_hide_the_ledger_copy() {
    let env = env("bridge-bad-postback").await;
    let tag = env.fake.insert_tag("acc1", "purchase", "PURCHASE", 30, 1);
    let start = now_s() - 1.minute();
    env.create::<ConversionBridge>(bridge(
        "b",
        start,
        json!({"source": {"postbacks": {"enabled": true}},
               "destination": {"x": {"eventId": tag}}}),
    ))
    .await;
    env.wait_for::<ConversionBridge>("b", "Ready", |o| {
        condition(o, "Ready") == Some(("True".into(), "Available".into()))
    })
    .await;
    let secrets: kube::Api<k8s_openapi::api::core::v1::Secret> = env.api();
    let secret = secrets.get("b-postback-token").await.unwrap();
    let token = String::from_utf8(secret.data.unwrap()["token"].0.clone()).unwrap();
    let url = format!(
        "http://{}/postbacks/{}/b/{token}",
        env.postback_addr, env.ns.name
    );
    let good = event(
        "pb-1",
        "converted",
        Timestamp::now() - 10.seconds(),
        1,
        true,
    );
    let mut bad = good.event.clone();
    bad["phone"] = json!("n/a");
    let answer = reqwest::Client::new()
        .post(&url)
        .json(&bad)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 202);
    env.wait_for::<ConversionBridge>("b", "the postback rejected", |o| {
        status_i64(o, "eventsRejected") == 1
    })
    .await;
    // The ledger has the event with a good phone number.
    env.seed(std::slice::from_ref(&good));
    let o = env
        .wait_for::<ConversionBridge>("b", "the ledger copy forwarded", |o| {
            status_i64(o, "eventsForwarded") == 1
        })
        .await;
    assert_eq!(status_i64(&o, "eventsRejected"), 1);
    assert!(env.fake.distinct_conversion_ids().contains("pb-1"));
}

/// A spec edit, Secret touches and a new event tag restart the worker; none of it re-sends
/// what was forwarded, and the new tag applies to events not sent yet.
#[tokio::test]
async fn spec_edits_secret_touches_and_a_new_tag_re_send_nothing() {
    let env = env("bridge-edits").await;
    let tag = env.fake.insert_tag("acc1", "purchase", "PURCHASE", 30, 1);
    let other = env.fake.insert_tag("acc1", "signup", "SIGN_UP", 30, 1);
    let start = now_s() - 10.minutes();
    let first = spread(
        "e1",
        400,
        start + 1.second(),
        Timestamp::now() - 10.seconds(),
        &["converted"],
        0,
    );
    env.seed(&first);
    env.create::<ConversionBridge>(bridge(
        "b",
        start,
        json!({"source": {"signals": {"lookback": "15m"}},
               "destination": {"x": {"eventId": tag}}}),
    ))
    .await;
    env.wait_for_long::<ConversionBridge>("b", |o| status_i64(o, "eventsForwarded") == 400)
        .await;

    let generation = |o: &Value| o["metadata"]["generation"].as_i64();
    patch_spec(&env, "b", json!({"batching": {"flushInterval": "2s"}})).await;
    let o = env.api::<ConversionBridge>().get("b").await.unwrap();
    let edited = serde_json::to_value(&o).unwrap();
    env.wait_for::<ConversionBridge>("b", "the edit observed", |o| {
        o["status"]["observedGeneration"].as_i64() == generation(&edited)
    })
    .await;
    let secrets: kube::Api<k8s_openapi::api::core::v1::Secret> = env.api();
    for name in ["x-ads", "dialog360"] {
        secrets
            .patch(
                name,
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(json!({"metadata": {"labels": {"touched": "yes"}}})),
            )
            .await
            .unwrap();
    }
    patch_spec(&env, "b", json!({"destination": {"x": {"eventId": other}}})).await;
    tokio::time::sleep(Duration::from_secs(8)).await;
    let second = recent("e2", 100, 5.seconds());
    env.seed(&second);
    env.wait_for_long::<ConversionBridge>("b", |o| status_i64(o, "eventsForwarded") == 500)
        .await;
    tokio::time::sleep(Duration::from_secs(6)).await;

    let received = env.fake.conversions();
    let counts = received_counts(&received);
    assert_eq!(counts.len(), 500);
    let repeated: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(repeated.is_empty(), "re-sent: {repeated:?}");
    for c in &received {
        let id = c.conversion["conversion_id"].as_str().unwrap();
        let want = if id.starts_with("e1-") { &tag } else { &other };
        assert_eq!(c.conversion["event_id"], json!(want), "{id}");
    }
}

/// The referenced XWebEventTag fails its drift checks (X errors on the tag endpoints) and is
/// not Ready for a while; it has a `tagId`, so the bridge keeps forwarding.
#[tokio::test]
async fn a_tag_with_an_id_keeps_the_bridge_forwarding_through_its_own_errors() {
    let env = env("bridge-tag-errors").await;
    env.create::<XWebEventTag>(json!({
        "apiVersion": "ctwa.dev/v1alpha1", "kind": "XWebEventTag",
        "metadata": {"name": "purchase", "annotations": {"ctwa.dev/resync-interval": "10s"}},
        "spec": {"accountId": "acc1", "name": "purchase", "type": "PURCHASE",
                 "clickWindow": 30, "viewThroughWindow": 1, "secretRef": {"name": "x-ads"}}
    }))
    .await;
    env.wait_for::<XWebEventTag>("purchase", "Ready", common::ready)
        .await;
    let start = now_s() - 1.minute();
    env.create::<ConversionBridge>(bridge(
        "b",
        start,
        json!({"destination": {"x": {"eventTagRef": {"name": "purchase"}}}}),
    ))
    .await;
    env.wait_for::<ConversionBridge>("b", "Ready", |o| {
        condition(o, "Ready") == Some(("True".into(), "Available".into()))
    })
    .await;
    for operation in ["x.get_tag", "x.list_tags"] {
        env.fake.set_fault(FaultRule {
            operation: Some(operation.into()),
            error_rate: 1.0,
            ..Default::default()
        });
    }
    // The next drift check (10 s resync, the floor of SPEC 7.1) meets the errors.
    env.wait_until::<XWebEventTag>(
        "purchase",
        "not Ready",
        |o| condition(o, "Ready").is_some_and(|c| c.0 == "False"),
        Duration::from_secs(30),
    )
    .await;
    let events = recent("t", 100, 3.seconds());
    env.seed(&events);
    let o = env
        .wait_for_long::<ConversionBridge>("b", |o| status_i64(o, "eventsForwarded") == 100)
        .await;
    assert_eq!(
        condition(&o, "Ready"),
        Some(("True".into(), "Available".into()))
    );
    let tag: XWebEventTag = env.api().get("purchase").await.unwrap();
    let ready =
        ctwa_operator::runtime::conditions::find(&tag.status.unwrap().common.conditions, "Ready")
            .cloned()
            .unwrap();
    assert_eq!(ready.status, "False", "the tag was still failing meanwhile");
}

/// 429s that say "retry now" (X's reset in the past, Signals' `Retry-After: 0`) do not make a
/// tight loop: the delay grows with the failures whatever the server asks for.
#[tokio::test]
async fn rate_limits_that_say_now_do_not_spin() {
    let env = env("bridge-429-now").await;
    let tag = env.fake.insert_tag("acc1", "purchase", "PURCHASE", 30, 1);
    let start = now_s() - 1.minute();
    env.seed(&events_of("a1", "r", 20, start));
    env.fake.set_fault(FaultRule {
        operation: Some("x.send_conversions".into()),
        rate_limit_rate: 1.0,
        rate_limit_reset_offset_secs: Some(-60),
        ..Default::default()
    });
    env.create::<ConversionBridge>(bridge_on("b", "a1", start, &tag))
        .await;
    // A second bridge whose Signals answers 429 with Retry-After: 0.
    env.fake.set_fault(FaultRule {
        operation: Some("signals.list_events".into()),
        path_contains: Some("/apps/a2/".into()),
        rate_limit_rate: 1.0,
        retry_after: Some("0".into()),
        ..Default::default()
    });
    env.create::<ConversionBridge>(bridge_on("b2", "a2", start, &tag))
        .await;
    tokio::time::sleep(Duration::from_secs(20)).await;
    let requests = env.fake.requests();
    let count = |op: &str, path: &str| {
        requests
            .iter()
            .filter(|r| r.operation == op && r.path.contains(path) && r.status == 429)
            .count()
    };
    let x = count("x.send_conversions", "/pix1");
    let signals = count("signals.list_events", "/apps/a2/");
    // 1 + 2 + 4 + 8 s and jitter: at most 5 tries in 20 s, each way.
    assert!((1..=6).contains(&x), "{x} X requests in 20 s");
    assert!(
        (1..=6).contains(&signals),
        "{signals} Signals requests in 20 s"
    );
    let o = env.api::<ConversionBridge>().get("b").await.unwrap();
    let o = serde_json::to_value(&o).unwrap();
    assert_eq!(
        condition(&o, "DestinationHealthy"),
        Some(("False".into(), "RateLimited".into()))
    );
    assert_eq!(status_i64(&o, "eventsRejected"), 0);
}

/// Signals' clock is two minutes behind the operator's and dates its events by it: the
/// checkpoint never passes what Signals has not listed yet, and every event is delivered.
#[tokio::test]
async fn a_signals_clock_behind_ours_loses_nothing() {
    let env = env("bridge-clock").await;
    let tag = env.fake.insert_tag("acc1", "purchase", "PURCHASE", 30, 1);
    env.fake.set_signals_clock_offset(-120);
    let start = now_s() - 10.minutes();
    env.create::<ConversionBridge>(bridge_on("b", "a1", start, &tag))
        .await;
    let mut ids = Vec::new();
    for i in 0..20u64 {
        let mut e = event(&format!("c-{i}"), "converted", Timestamp::now(), i, true).event;
        e["app_id"] = json!("a1");
        env.fake.record_event_now("c1", "a1", e);
        ids.push(format!("c-{i}"));
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let o = env
        .wait_for_long::<ConversionBridge>("b", |o| status_i64(o, "eventsForwarded") == 20)
        .await;
    assert!(
        checkpoint(&o).unwrap() <= env.fake.signals_now(),
        "the checkpoint passed Signals' own clock"
    );
    let delivered = env.fake.distinct_conversion_ids();
    assert!(ids.iter().all(|id| delivered.contains(id)));
}

/// A server that answers at most 100 events per page, whatever limit is asked for: paging
/// follows `total_count` and reads everything.
#[tokio::test]
async fn short_pages_are_followed_to_the_end() {
    let env = env("bridge-short-pages").await;
    let tag = env.fake.insert_tag("acc1", "purchase", "PURCHASE", 30, 1);
    env.fake.set_signals_max_page(Some(100));
    let start = now_s() - 30.minutes();
    let events = events_of("a1", "s", 1_500, start);
    env.seed(&events);
    env.create::<ConversionBridge>(bridge_on("b", "a1", start, &tag))
        .await;
    let last = events.iter().map(|g| g.at).max().unwrap();
    env.wait_for_long::<ConversionBridge>("b", |o| {
        status_i64(o, "eventsForwarded") == 1_500 && checkpoint(o).is_some_and(|c| c > last)
    })
    .await;
    assert_eq!(env.fake.distinct_conversion_count(), 1_500);
}

/// One conversion makes X fail (a 503 for every request carrying it): after five failures in
/// a row its batch is split, and everything else is delivered; it is kept, never rejected.
#[tokio::test]
async fn a_payload_that_makes_x_fail_holds_back_nothing_else() {
    let env = env("bridge-poison").await;
    let tag = env.fake.insert_tag("acc1", "purchase", "PURCHASE", 30, 1);
    let start = now_s() - 5.minutes();
    let events = events_of("a1", "p", 40, start);
    env.seed(&events);
    env.fake.set_fault(FaultRule {
        operation: Some("x.send_conversions".into()),
        body_contains: Some("\"p-1\"".into()),
        error_rate: 1.0,
        ..Default::default()
    });
    env.create::<ConversionBridge>(bridge(
        "b",
        start,
        json!({"destination": {"x": {"eventId": tag}},
               "batching": {"maxBatchSize": 2, "flushInterval": "1s"}}),
    ))
    .await;
    let others: HashSet<String> = events
        .iter()
        .map(|g| g.id.clone())
        .filter(|id| id != "p-1")
        .collect();
    // The first split comes after five failures: 31 to 62 s of growing delays.
    let deadline = std::time::Instant::now() + Duration::from_secs(150);
    loop {
        let delivered = env.fake.distinct_conversion_ids();
        if others.iter().all(|id| delivered.contains(id)) {
            assert!(!delivered.contains("p-1"));
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} of {} others delivered",
            others.iter().filter(|id| delivered.contains(*id)).count(),
            others.len()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let o = env
        .wait_for::<ConversionBridge>("b", "the status caught up", |o| {
            status_i64(o, "eventsForwarded") == 39
        })
        .await;
    let o: ConversionBridge = serde_json::from_value(o).unwrap();
    let status = o.status.unwrap();
    assert_eq!(status.events_rejected, 0);
    // The checkpoint waits behind the conversion still being retried.
    assert!(status.checkpoint.unwrap().0 < events[1].at + 1.second());
}

/// `DestinationHealthy` is Unknown until something was sent, and while the worker is held; a
/// postback token Secret without a token shows in status, and `suspend` still works.
#[tokio::test]
async fn health_tells_the_truth() {
    let env = env("bridge-health").await;
    let tag = env.fake.insert_tag("acc1", "purchase", "PURCHASE", 30, 1);
    env.create::<ConversionBridge>(bridge_on("b", "a1", now_s() - 5.minutes(), &tag))
        .await;
    let o = env
        .wait_for::<ConversionBridge>("b", "the first poll", |o| {
            condition(o, "SourceHealthy") == Some(("True".into(), "Available".into()))
        })
        .await;
    assert_eq!(
        condition(&o, "DestinationHealthy"),
        Some(("Unknown".into(), "Unknown".into())),
        "nothing was sent yet"
    );
    let now = Timestamp::now();
    env.seed(&spread("u", 5, now - 3.seconds(), now, &["converted"], 0));
    env.wait_for::<ConversionBridge>("b", "the first send", |o| {
        condition(o, "DestinationHealthy") == Some(("True".into(), "Available".into()))
    })
    .await;
    patch_spec(&env, "b", json!({"suspend": true})).await;
    env.wait_for::<ConversionBridge>("b", "held", |o| {
        condition(o, "Ready") == Some(("False".into(), "Suspended".into()))
            && condition(o, "DestinationHealthy").is_some_and(|c| c.0 == "Unknown")
    })
    .await;

    // A token Secret the user made, without the key `token`.
    let secrets: kube::Api<k8s_openapi::api::core::v1::Secret> = env.api();
    let secret: k8s_openapi::api::core::v1::Secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "p-postback-token"},
        "stringData": {"other": "x"}
    }))
    .unwrap();
    secrets
        .create(&kube::api::PostParams::default(), &secret)
        .await
        .unwrap();
    env.create::<ConversionBridge>(bridge(
        "p",
        now_s(),
        json!({"source": {"postbacks": {"enabled": true}},
               "destination": {"x": {"eventId": tag}}}),
    ))
    .await;
    let o = env
        .wait_for::<ConversionBridge>("p", "Stalled", |o| {
            condition(o, "Stalled").is_some_and(|c| c.0 == "True")
        })
        .await;
    let message = o["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .unwrap()["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(message.contains("p-postback-token"), "{message}");
    patch_spec(&env, "p", json!({"suspend": true})).await;
    env.wait_for::<ConversionBridge>("p", "Suspended", |o| {
        condition(o, "Ready") == Some(("False".into(), "Suspended".into()))
    })
    .await;
}

/// Every bridge on one 360dialog Secret goes through that credential's Signals budget: the
/// requests per second and the requests in flight stay within it.
#[tokio::test]
async fn bridges_sharing_a_secret_share_its_signals_budget() {
    let mut env = env_without_operator("bridge-signals-budget").await;
    let tag = env.fake.insert_tag("acc1", "purchase", "PURCHASE", 30, 1);
    let mut config = env.operator_config(Duration::from_secs(600));
    config.signals_requests_per_second = 2;
    env.start_operator_with(env.client.clone(), config);
    env.fake.set_fault(FaultRule {
        operation: Some("signals.list_events".into()),
        latency_ms: 3_000,
        ..Default::default()
    });
    let start = now_s() - 30.minutes();
    for i in 0..6 {
        let app = format!("app{i}");
        let events = events_of(&app, &format!("g{i}"), 3_500, start);
        env.fake
            .seed_events("c1", &app, events.iter().map(|g| g.event.clone()).collect());
        env.create::<ConversionBridge>(bridge_on(&format!("b{i}"), &app, start, &tag))
            .await;
    }
    for i in 0..6 {
        env.wait_for_long::<ConversionBridge>(&format!("b{i}"), |o| {
            status_i64(o, "eventsForwarded") == 3_500
        })
        .await;
    }
    let mut times: Vec<f64> = env
        .fake
        .requests()
        .into_iter()
        .filter(|r| r.operation == "signals.list_events")
        .map(|r| {
            r.at.duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    // Answers are logged 3 s after they start; the spacing of starts is the same.
    let busiest = times
        .iter()
        .map(|t| times.iter().filter(|u| **u >= *t && **u < *t + 1.0).count())
        .max()
        .unwrap();
    println!(
        "{} list_events requests, at most {busiest} in one second",
        times.len()
    );
    assert!(times.len() >= 24, "{} requests", times.len());
    // A full bucket (2) and one second of refill (2).
    assert!(
        busiest <= 4,
        "{busiest} requests within one second at 2 per second"
    );
    let peak = env.fake.peak_concurrency("signals.list_events");
    assert!(
        peak <= 4,
        "{peak} Signals requests in flight on one credential"
    );
}

/// X accepted the conversions but its answer has no `data` envelope (a proxy's page): any 2xx
/// is a delivery, so nothing is sent again.
#[tokio::test]
async fn any_2xx_from_x_is_a_delivery() {
    let env = env("bridge-odd-2xx").await;
    let tag = env.fake.insert_tag("acc1", "purchase", "PURCHASE", 30, 1);
    let start = now_s() - 5.minutes();
    env.seed(&events_of("a1", "o", 30, start));
    env.fake.set_fault(FaultRule {
        operation: Some("x.send_conversions".into()),
        respond: Some(Canned {
            status: 200,
            body: "<html><body>OK</body></html>".into(),
            ..Default::default()
        }),
        after_effect: true,
        remaining: Some(1),
        ..Default::default()
    });
    env.create::<ConversionBridge>(bridge_on("b", "a1", start, &tag))
        .await;
    let o = env
        .wait_for_long::<ConversionBridge>("b", |o| status_i64(o, "eventsForwarded") == 30)
        .await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(env.fake.conversion_count(), 30, "nothing was sent twice");
    assert_eq!(
        condition(&o, "DestinationHealthy"),
        Some(("True".into(), "Available".into()))
    );
}

/// The forwarded-id set of a bridge is capped by `--bridge-max-seen-ids`; the oldest ids go
/// first and are counted in a metric. Nothing is lost: an evicted id read again is sent again
/// with the same `conversion_id`, which X de-duplicates.
#[tokio::test]
async fn the_forwarded_id_set_is_capped() {
    let mut env = env_without_operator("bridge-seen-cap").await;
    let tag = env.fake.insert_tag("acc1", "purchase", "PURCHASE", 30, 1);
    let mut config = env.operator_config(Duration::from_secs(600));
    config.bridge_max_seen_ids = 100;
    env.start_operator_with(env.client.clone(), config);
    let start = now_s() - 10.minutes();
    env.seed(&events_of("a1", "m", 300, start));
    env.create::<ConversionBridge>(bridge(
        "b",
        start,
        json!({"source": {"signals": {"lookback": "15m"}},
               "destination": {"x": {"eventId": tag}}}),
    ))
    .await;
    env.wait_for_long::<ConversionBridge>("b", |o| status_i64(o, "eventsForwarded") >= 300)
        .await;
    // Ids are forgotten by the periodic sweep (every 10 s), not at once.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let evicted = loop {
        let text = env.metrics_text().await;
        let evicted = common::sample(
            &text,
            "ctwa_bridge_seen_ids_evicted_total",
            &[("bridge", "b")],
        );
        match evicted {
            Some(n) if n >= 200.0 => break n,
            _ if std::time::Instant::now() >= deadline => {
                panic!("not enough evictions counted ({evicted:?}):\n{text}")
            }
            _ => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    };
    assert!(evicted >= 200.0, "{evicted} evicted");
    assert_eq!(env.fake.distinct_conversion_count(), 300);
}
