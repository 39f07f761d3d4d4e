//! ConversionBridge end to end: the real API server, the operator in-process, the fakes.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use common::events::{bridge, expected_conversion, received_counts, spread};
use common::{Env, condition, env};
use ctwa_operator::api::ConversionBridge;
use jiff::{Timestamp, ToSpan};
use serde_json::{Value, json};

fn status_i64(o: &Value, field: &str) -> i64 {
    o["status"][field].as_i64().unwrap_or(-1)
}

async fn patch_spec(env: &Env, name: &str, spec: Value) {
    env.api::<ConversionBridge>()
        .patch(
            name,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({ "spec": spec })),
        )
        .await
        .unwrap();
}

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
    env.fake.seed_events(
        "c1",
        "a1",
        events.iter().map(|g| g.event.clone()).collect(),
    );
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
    assert!(counts.values().all(|&n| n == 1), "no duplicates without restarts");
    let by_id: BTreeMap<&str, &Value> = received
        .iter()
        .map(|c| (c.conversion["conversion_id"].as_str().unwrap(), &c.conversion))
        .collect();
    for g in &wanted {
        assert_eq!(*by_id[g.id.as_str()], expected_conversion(g, &tag), "{}", g.id);
    }
    assert!(received.iter().all(|c| c.pixel_id == "pix1"));

    // Full batches while the backlog lasts: only the last one may be partial.
    let mut sizes: BTreeMap<u64, usize> = BTreeMap::new();
    for c in &received {
        *sizes.entry(c.batch).or_default() += 1;
    }
    let sizes: Vec<usize> = sizes.into_values().collect();
    assert_eq!(sizes.len(), wanted.len().div_ceil(500), "{sizes:?}");
    assert!(sizes[..sizes.len() - 1].iter().all(|&s| s == 500), "{sizes:?}");

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

    // Later polls re-read the lookback window without sending anything again.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(env.fake.conversions().len(), wanted.len());
}
