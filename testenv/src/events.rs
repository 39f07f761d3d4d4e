//! Signals events for the bridge tests and benches, ConversionBridge manifests, and what X
//! must receive for them.

use std::collections::HashMap;

use ctwa_operator::runtime::digest::sha256_hex;
use jiff::Timestamp;
use serde_json::{Value, json};

use crate::fixture::{APP_ID, CLIENT_ID, DIALOG_SECRET, X_PIXEL, X_SECRET};

/// Every documented Signals event type (the fake's list).
pub use fake_upstreams::SIGNALS_EVENT_TYPES as TYPES;

/// One generated event and whether the bridge can map it.
#[derive(Clone, Debug)]
pub struct Generated {
    pub id: String,
    pub event: Value,
    pub valid: bool,
    pub at: Timestamp,
}

/// A Signals event of `type_` dated `at`; `valid: false` gives it a phone number that
/// cannot be normalised.
pub fn event(id: &str, type_: &str, at: Timestamp, index: u64, valid: bool) -> Generated {
    let phone = if valid {
        format!("1555{:07}", index % 10_000_000)
    } else {
        "12-34".to_string()
    };
    let date = at.strftime("%Y-%m-%dT%H:%M:%S%.3f").to_string();
    Generated {
        id: id.to_string(),
        event: json!({
            "id": id, "app_id": "a1", "ad_id": "ad1", "campaign_id": "camp1",
            "phone": phone, "type": type_, "type_id": format!("t{}", index % 7),
            "type_value": format!("value {index}"), "date": date
        }),
        valid,
        at,
    }
}

/// `n` events spread evenly over `[from, to)`, types round-robin, every `invalid_every`-th
/// one invalid (0: none).
pub fn spread(
    prefix: &str,
    n: u64,
    from: Timestamp,
    to: Timestamp,
    types: &[&str],
    invalid_every: u64,
) -> Vec<Generated> {
    let span = (to - from).get_seconds().max(1) as f64;
    (0..n)
        .map(|i| {
            let offset = span * i as f64 / n as f64;
            let at = from
                .checked_add(jiff::SignedDuration::from_secs_f64(offset))
                .unwrap();
            let valid = invalid_every == 0 || i % invalid_every != invalid_every - 1;
            event(
                &format!("{prefix}-{i}"),
                types[i as usize % types.len()],
                at,
                i,
                valid,
            )
        })
        .collect()
}

/// `n` valid `converted` events spread over the last `span`.
pub fn recent(prefix: &str, n: u64, span: jiff::Span) -> Vec<Generated> {
    let now = Timestamp::now();
    spread(prefix, n, now - span, now, &["converted"], 0)
}

/// The conversion X must receive for a generated event.
pub fn expected_conversion(g: &Generated, event_id: &str) -> Value {
    let phone = g.event["phone"].as_str().unwrap();
    json!({
        "conversion_time": g.at.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
        "event_id": event_id,
        "identifiers": [{"hashed_phone_number": sha256_hex(&format!("+{phone}"))}],
        "conversion_id": g.id,
        "description": format!("{}:{}", g.event["type"].as_str().unwrap(), g.event["type_value"].as_str().unwrap()),
    })
}

/// How many times X received each conversion id.
pub fn received_counts(
    conversions: &[fake_upstreams::ReceivedConversion],
) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for c in conversions {
        *counts
            .entry(
                c.conversion["conversion_id"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
            )
            .or_insert(0) += 1;
    }
    counts
}

/// A ConversionBridge manifest reading the fixture's app (client c1, app a1, Secret
/// dialog360, polled every 5 s from `start`) and sending to its pixel (pix1, Secret x-ads) in
/// batches of up to 500 flushed every second, with `spec_extra` merged into the spec. The
/// rest is the CRD's defaults.
pub fn bridge_manifest(name: &str, start: Timestamp, spec_extra: Value) -> Value {
    let mut spec = json!({
        "source": {
            "signals": {
                "clientId": CLIENT_ID, "appId": APP_ID, "secretRef": {"name": DIALOG_SECRET},
                "pollInterval": "5s", "startTime": start.to_string()
            }
        },
        "destination": {"x": {"pixelId": X_PIXEL, "secretRef": {"name": X_SECRET}}},
        "batching": {"maxBatchSize": 500, "flushInterval": "1s"}
    });
    merge(&mut spec, spec_extra);
    json!({
        "apiVersion": "ctwa.dev/v1alpha1", "kind": "ConversionBridge",
        "metadata": {"name": name}, "spec": spec
    })
}

/// [`bridge_manifest`] for `converted` events only, re-read over a 30 s lookback, with
/// `spec_extra` merged into the spec.
pub fn bridge(name: &str, start: Timestamp, spec_extra: Value) -> Value {
    let mut manifest = bridge_manifest(
        name,
        start,
        json!({"source": {"signals": {"eventTypes": ["converted"], "lookback": "30s"}}}),
    );
    merge(&mut manifest["spec"], spec_extra);
    manifest
}

/// JSON merge (objects merged key by key, everything else replaced).
pub fn merge(target: &mut Value, patch: Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                merge(t.entry(k).or_insert(Value::Null), v);
            }
        }
        (t, p) => *t = p,
    }
}

/// The bridge's checkpoint is past `t`: every event dated before `t` is settled.
pub fn checkpoint_past(t: Timestamp) -> impl Fn(&Value) -> bool {
    move |o| {
        o["status"]["checkpoint"]
            .as_str()
            .and_then(|c| c.parse::<Timestamp>().ok())
            .is_some_and(|c| c > t)
    }
}

/// Now, to the second (the resolution of metav1.Time).
pub fn now_s() -> Timestamp {
    Timestamp::from_second(Timestamp::now().as_second()).unwrap()
}

/// An integer field of a bridge's status, -1 when absent.
pub fn status_i64(o: &Value, field: &str) -> i64 {
    o["status"][field].as_i64().unwrap_or(-1)
}

/// A bridge's `status.checkpoint`.
pub fn checkpoint(o: &Value) -> Option<Timestamp> {
    o["status"]["checkpoint"].as_str()?.parse().ok()
}

/// Merge-patches a bridge's spec.
pub async fn patch_spec(env: &crate::Env, name: &str, spec: Value) {
    env.api::<ctwa_operator::api::ConversionBridge>()
        .patch(
            name,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({ "spec": spec })),
        )
        .await
        .unwrap();
}
