//! The chart's alerts and dashboard (charts/ctwa-operator/files/monitoring) only use metrics
//! that a running operator exports: after traffic through a ConversionBridge, every `ctwa_*`
//! name in those files is a sample name of `/metrics`. A histogram `x` is exported as
//! `x_bucket`, `x_sum` and `x_count` only, so the files must use those, and such a name must
//! belong to a histogram family. Whether the queries parse and the alerts fire is
//! scripts/check-monitoring.sh's job (promtool).

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::events::{bridge, spread};
use common::{condition, env, ready};
use ctwa_operator::api::{ConversionBridge, XWebEventTag};
use ctwa_testenv::repo_root;
use jiff::{Timestamp, ToSpan};
use serde_json::json;

const FILES: [&str; 2] = [
    "charts/ctwa-operator/files/monitoring/alerts.yaml",
    "charts/ctwa-operator/files/monitoring/dashboard.json",
];

/// Every match of `ctwa_[a-z_]+` in `text` (written out: the crate has no regex dependency).
/// A match ending in `_` is a prefix such as `ctwa_bridge_*` in prose, not a metric name.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("ctwa_") {
        // Inside a longer identifier (`xctwa_…`) it is not a name of ours.
        let inside = rest[..at]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        let tail = &rest[at + "ctwa_".len()..];
        let len = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
            .unwrap_or(tail.len());
        let name = &rest[at..at + "ctwa_".len() + len];
        if !inside && len > 0 && !name.ends_with('_') {
            names.insert(name.to_string());
        }
        rest = &tail[len..];
    }
    names
}

/// The sample names of a Prometheus text exposition, and the type of each family.
fn exposition(text: &str) -> (BTreeSet<String>, BTreeMap<String, String>) {
    let mut samples = BTreeSet::new();
    let mut types = BTreeMap::new();
    for line in text.lines() {
        if let Some(decl) = line.strip_prefix("# TYPE ") {
            let mut parts = decl.split_whitespace();
            if let (Some(family), Some(kind)) = (parts.next(), parts.next()) {
                types.insert(family.to_string(), kind.to_string());
            }
        } else if !line.starts_with('#') && !line.trim().is_empty() {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            samples.insert(line[..end].to_string());
        }
    }
    (samples, types)
}

/// Why `name`, used by a query, matches no series of the exposition (None: it does).
fn missing(
    name: &str,
    samples: &BTreeSet<String>,
    types: &BTreeMap<String, String>,
) -> Option<String> {
    let histogram = ["_bucket", "_sum", "_count"]
        .iter()
        .find_map(|suffix| name.strip_suffix(suffix))
        .filter(|family| types.contains_key(*family));
    match histogram {
        Some(family) if types[family] != "histogram" => Some(format!(
            "{name}: {family} is a {}, not a histogram",
            types[family]
        )),
        _ if samples.contains(name) => None,
        _ if types.get(name).is_some_and(|t| t == "histogram") => Some(format!(
            "{name} is a histogram: query {name}_bucket, _sum or _count"
        )),
        _ => Some(format!("{name} is not exported")),
    }
}

#[test]
fn metric_names_are_found_as_prometheus_spells_them() {
    let found = metric_names(
        r#"rate(ctwa_reconcile_duration_seconds_bucket{x="1"}[5m]) / ctwa_leader, xctwa_no, the ctwa_bridge_* series"#,
    );
    assert_eq!(
        found.into_iter().collect::<Vec<_>>(),
        ["ctwa_leader", "ctwa_reconcile_duration_seconds_bucket"]
    );
    let text = "# TYPE ctwa_d_seconds histogram\nctwa_d_seconds_bucket{le=\"1\"} 1\nctwa_d_seconds_count 1\n# TYPE ctwa_g gauge\nctwa_g 2\n";
    let (samples, types) = exposition(text);
    assert_eq!(missing("ctwa_d_seconds_bucket", &samples, &types), None);
    assert!(missing("ctwa_d_seconds", &samples, &types).is_some());
    assert!(missing("ctwa_d_seconds_sum", &samples, &types).is_some());
    assert!(missing("ctwa_g_count", &samples, &types).is_some());
    assert!(missing("ctwa_other", &samples, &types).is_some());
}

#[tokio::test]
async fn every_metric_of_the_alerts_and_the_dashboard_is_exported() {
    let mut used: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for file in FILES {
        let text = std::fs::read_to_string(repo_root().join(file))
            .unwrap_or_else(|e| panic!("reading {file}: {e}"));
        let names = metric_names(&text);
        assert!(!names.is_empty(), "no ctwa_ metric in {file}");
        for name in names {
            used.entry(name).or_default().push(file);
        }
    }

    // Traffic for every family: a tag (XWebEventTag reconciles, X Ads calls) and a bridge
    // that polls Signals and forwards to X (one event in ten cannot be mapped and is rejected).
    let env = env("monitoring").await;
    env.create::<XWebEventTag>(json!({
        "apiVersion": "ctwa.dev/v1alpha1", "kind": "XWebEventTag", "metadata": {"name": "purchase"},
        "spec": {"accountId": "acc1", "name": "Purchase", "type": "PURCHASE", "clickWindow": 30,
                 "viewThroughWindow": 1, "secretRef": {"name": "x-ads"}}
    }))
    .await;
    env.wait_for::<XWebEventTag>("purchase", "Ready", ready)
        .await;
    let now = Timestamp::from_second(Timestamp::now().as_second()).unwrap();
    env.seed(&spread("ev", 20, now - 1.minute(), now, &["converted"], 10));
    env.create::<ConversionBridge>(bridge(
        "b",
        now - 2.minutes(),
        json!({"destination": {"x": {"eventTagRef": {"name": "purchase"}}}}),
    ))
    .await;
    env.wait_for_long::<ConversionBridge>("b", |o| {
        o["status"]["eventsForwarded"] == 18
            && o["status"]["eventsRejected"] == 2
            && condition(o, "Ready") == Some(("True".into(), "Available".into()))
    })
    .await;

    let text = env.metrics_text().await;
    let (samples, types) = exposition(&text);
    let problems: Vec<String> = used
        .iter()
        .filter_map(|(name, files)| {
            missing(name, &samples, &types).map(|why| format!("{why} (used in {files:?})"))
        })
        .collect();
    assert!(
        problems.is_empty(),
        "the chart's monitoring uses metrics the operator does not export:\n{}\n\n/metrics:\n{text}",
        problems.join("\n")
    );
    env.delete_namespace().await;
}
