//! Prometheus metrics (SPEC section 4), exposed by [`crate::server`].
//!
//! Labels only ever carry names (kinds, namespaces, bridges, API and account ids,
//! outcomes), never tokens or payloads: the recording API takes nothing else.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, text};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::upstream::error::Api;
use crate::upstream::http::{RequestObserver, RequestOutcome};

/// Histogram buckets in seconds: a fast API call is a few ms, a slow reconcile
/// (several upstream calls with retries) can take most of a minute.
const DURATION_BUCKETS: [f64; 15] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

/// prometheus-client writes label values verbatim, so a stray quote or newline
/// would corrupt the whole scrape; escape them as the exposition format requires.
fn label(value: &str) -> String {
    if !value.contains(['\\', '"', '\n']) {
        return value.to_string();
    }
    let mut out = String::with_capacity(value.len() + 2);
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReconcileLabels {
    kind: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamLabels {
    api: &'static str,
    operation: &'static str,
    code: Cow<'static, str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamDurationLabels {
    api: &'static str,
    operation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BridgeOutcomeLabels {
    namespace: String,
    bridge: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BridgeLabels {
    namespace: String,
    bridge: String,
}

impl BridgeLabels {
    fn new(namespace: &str, bridge: &str) -> Self {
        BridgeLabels {
            namespace: label(namespace),
            bridge: label(bridge),
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RateLimitLabels {
    api: String,
    account: String,
}

/// Every metric family of the operator; share it as `Arc<Metrics>`.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    reconcile_total: Family<ReconcileLabels, Counter>,
    reconcile_duration: Family<KindLabels, Histogram>,
    upstream_requests_total: Family<UpstreamLabels, Counter>,
    upstream_request_duration: Family<UpstreamDurationLabels, Histogram>,
    bridge_events_total: Family<BridgeOutcomeLabels, Counter>,
    bridge_batches_total: Family<BridgeOutcomeLabels, Counter>,
    bridge_lag: Family<BridgeLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    bridge_seen_ids_evicted: Family<BridgeLabels, Counter>,
    rate_limit_remaining: Family<RateLimitLabels, Gauge>,
    bridge_ready: Family<BridgeLabels, Gauge>,
    leader: Gauge,
    shards_held: Gauge,
    /// Families cannot be iterated, so [`Metrics::forget_bridge`] needs to know
    /// which outcome values may exist. A handful of strings, never per-bridge.
    bridge_outcomes: Mutex<BTreeSet<String>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every family registered (and no series yet).
    pub fn new() -> Self {
        let mut m = Metrics {
            registry: Registry::with_prefix("ctwa"),
            reconcile_total: Family::default(),
            reconcile_duration: Family::new_with_constructor(duration_histogram),
            upstream_requests_total: Family::default(),
            upstream_request_duration: Family::new_with_constructor(duration_histogram),
            bridge_events_total: Family::default(),
            bridge_batches_total: Family::default(),
            bridge_lag: Family::default(),
            bridge_seen_ids_evicted: Family::default(),
            rate_limit_remaining: Family::default(),
            bridge_ready: Family::default(),
            leader: Gauge::default(),
            shards_held: Gauge::default(),
            bridge_outcomes: Mutex::default(),
        };
        // Counters get their `_total` suffix and units their `_seconds` suffix
        // from prometheus-client itself.
        m.registry.register(
            "reconcile",
            "Reconciliations by resource kind and result",
            m.reconcile_total.clone(),
        );
        m.registry.register_with_unit(
            "reconcile_duration",
            "Time spent in one reconciliation",
            Unit::Seconds,
            m.reconcile_duration.clone(),
        );
        m.registry.register(
            "upstream_requests",
            "Upstream HTTP requests by API, operation and HTTP status or failure",
            m.upstream_requests_total.clone(),
        );
        m.registry.register_with_unit(
            "upstream_request_duration",
            "Upstream HTTP request latency until response headers or failure",
            Unit::Seconds,
            m.upstream_request_duration.clone(),
        );
        m.registry.register(
            "bridge_events",
            "Conversion events seen by a bridge, by outcome",
            m.bridge_events_total.clone(),
        );
        m.registry.register(
            "bridge_batches",
            "Conversion batches a bridge sent upstream, by outcome",
            m.bridge_batches_total.clone(),
        );
        m.registry.register_with_unit(
            "bridge_lag",
            "Age of the oldest event a bridge has not delivered yet",
            Unit::Seconds,
            m.bridge_lag.clone(),
        );
        m.registry.register(
            "bridge_seen_ids_evicted",
            "Forwarded event ids a bridge forgot early because its set reached --bridge-max-seen-ids",
            m.bridge_seen_ids_evicted.clone(),
        );
        m.registry.register(
            "rate_limit_remaining",
            "Requests left in the upstream's current rate-limit window",
            m.rate_limit_remaining.clone(),
        );
        m.registry.register(
            "bridge_ready",
            "1 while a bridge's Ready condition is True, else 0",
            m.bridge_ready.clone(),
        );
        // Every process exports it, so "nobody leads" is `max(ctwa_leader) < 1` and a
        // missing series means the process is down, not a follower.
        m.registry.register(
            "leader",
            "1 while this process holds the leader Lease (or runs without election), else 0",
            m.leader.clone(),
        );
        m.registry.register(
            "shards_held",
            "Shards this process holds with --shards above 1 (sum over the replicas: the shard count)",
            m.shards_held.clone(),
        );
        m
    }

    /// Record one finished reconciliation.
    pub fn reconcile(&self, kind: &str, result: &str, elapsed: Duration) {
        self.reconcile_total
            .get_or_create(&ReconcileLabels {
                kind: label(kind),
                result: label(result),
            })
            .inc();
        self.reconcile_duration
            .get_or_create(&KindLabels { kind: label(kind) })
            .observe(elapsed.as_secs_f64());
    }

    /// Count `count` events of one outcome for a bridge.
    pub fn bridge_events(&self, namespace: &str, bridge: &str, outcome: &str, count: u64) {
        self.bridge_events_total
            .get_or_create(&self.bridge_outcome(namespace, bridge, outcome))
            .inc_by(count);
    }

    /// Count one batch of one outcome for a bridge.
    pub fn bridge_batch(&self, namespace: &str, bridge: &str, outcome: &str) {
        self.bridge_batches_total
            .get_or_create(&self.bridge_outcome(namespace, bridge, outcome))
            .inc();
    }

    /// Set how far behind a bridge's delivery is.
    pub fn set_bridge_lag(&self, namespace: &str, bridge: &str, seconds: f64) {
        self.bridge_lag
            .get_or_create(&BridgeLabels::new(namespace, bridge))
            .set(seconds);
    }

    /// Count ids a bridge's forwarded-id set evicted because it was full.
    pub fn bridge_seen_ids_evicted(&self, namespace: &str, bridge: &str, count: u64) {
        self.bridge_seen_ids_evicted
            .get_or_create(&BridgeLabels::new(namespace, bridge))
            .inc_by(count);
    }

    /// Set whether a bridge's Ready condition is True.
    pub fn set_bridge_ready(&self, namespace: &str, bridge: &str, ready: bool) {
        self.bridge_ready
            .get_or_create(&BridgeLabels::new(namespace, bridge))
            .set(i64::from(ready));
    }

    /// Set whether this process leads.
    pub fn set_leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    /// Set how many shards this process holds; it leads while it holds any.
    pub fn set_shards_held(&self, held: usize) {
        self.shards_held
            .set(i64::try_from(held).unwrap_or(i64::MAX));
        self.set_leader(held > 0);
    }

    /// Set the requests left in an upstream rate-limit window.
    pub fn set_rate_limit_remaining(&self, api: &str, account: &str, remaining: i64) {
        self.rate_limit_remaining
            .get_or_create(&RateLimitLabels {
                api: label(api),
                account: label(account),
            })
            .set(remaining);
    }

    /// Drop every series of a deleted bridge.
    pub fn forget_bridge(&self, namespace: &str, bridge: &str) {
        let (namespace, bridge) = (label(namespace), label(bridge));
        let outcomes = self
            .bridge_outcomes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        for outcome in outcomes {
            let labels = BridgeOutcomeLabels {
                namespace: namespace.clone(),
                bridge: bridge.clone(),
                outcome,
            };
            self.bridge_events_total.remove(&labels);
            self.bridge_batches_total.remove(&labels);
        }
        let labels = BridgeLabels { namespace, bridge };
        self.bridge_seen_ids_evicted.remove(&labels);
        self.bridge_lag.remove(&labels);
        self.bridge_ready.remove(&labels);
    }

    /// Prometheus text exposition (OpenMetrics text as prometheus-client encodes it).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        text::encode(&mut out, &self.registry)
            .expect("writing plain string labels into a String cannot fail");
        out
    }

    /// Label set for the per-outcome bridge counters, remembering the outcome
    /// so that [`Metrics::forget_bridge`] can find the series again.
    fn bridge_outcome(&self, namespace: &str, bridge: &str, outcome: &str) -> BridgeOutcomeLabels {
        let outcome = label(outcome);
        let mut known = self
            .bridge_outcomes
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if !known.contains(&outcome) {
            known.insert(outcome.clone());
        }
        BridgeOutcomeLabels {
            namespace: label(namespace),
            bridge: label(bridge),
            outcome,
        }
    }
}

impl RequestObserver for Metrics {
    fn observe(
        &self,
        api: Api,
        operation: &'static str,
        outcome: RequestOutcome,
        elapsed: Duration,
    ) {
        let code = match outcome {
            RequestOutcome::Status(status) => Cow::Owned(status.to_string()),
            RequestOutcome::Timeout => Cow::Borrowed("timeout"),
            RequestOutcome::ConnectionError => Cow::Borrowed("connection_error"),
            RequestOutcome::InvalidRequest => Cow::Borrowed("invalid_request"),
        };
        let api = api.as_str();
        self.upstream_requests_total
            .get_or_create(&UpstreamLabels {
                api,
                operation,
                code,
            })
            .inc();
        self.upstream_request_duration
            .get_or_create(&UpstreamDurationLabels { api, operation })
            .observe(elapsed.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observe_everything(m: &Metrics) {
        m.reconcile("BridgeConfig", "ok", Duration::from_millis(12));
        m.observe(
            Api::Signals,
            "create_keyword",
            RequestOutcome::Status(201),
            Duration::from_millis(40),
        );
        m.bridge_events("ns1", "b1", "received", 3);
        m.bridge_batch("ns1", "b1", "sent");
        m.set_bridge_lag("ns1", "b1", 1.5);
        m.set_rate_limit_remaining("x-ads", "18ce54d4x5t", 42);
        m.set_bridge_ready("ns1", "b1", true);
        m.set_leader(true);
    }

    #[test]
    fn exposition_has_every_family() {
        let m = Metrics::new();
        observe_everything(&m);
        let text = m.encode();
        for family in [
            "ctwa_reconcile_total",
            "ctwa_reconcile_duration_seconds",
            "ctwa_upstream_requests_total",
            "ctwa_upstream_request_duration_seconds",
            "ctwa_bridge_events_total",
            "ctwa_bridge_batches_total",
            "ctwa_bridge_lag_seconds",
            "ctwa_rate_limit_remaining",
            "ctwa_bridge_ready",
            "ctwa_leader",
        ] {
            assert!(
                text.lines()
                    .any(|l| !l.starts_with('#') && l.starts_with(family)),
                "{family} missing from:\n{text}"
            );
        }
        for line in [
            r#"ctwa_reconcile_total{kind="BridgeConfig",result="ok"} 1"#,
            r#"ctwa_reconcile_duration_seconds_count{kind="BridgeConfig"} 1"#,
            r#"ctwa_reconcile_duration_seconds_bucket{le="0.025",kind="BridgeConfig"} 1"#,
            r#"ctwa_upstream_requests_total{api="signals",operation="create_keyword",code="201"} 1"#,
            r#"ctwa_bridge_events_total{namespace="ns1",bridge="b1",outcome="received"} 3"#,
            r#"ctwa_bridge_batches_total{namespace="ns1",bridge="b1",outcome="sent"} 1"#,
            r#"ctwa_bridge_lag_seconds{namespace="ns1",bridge="b1"} 1.5"#,
            r#"ctwa_rate_limit_remaining{api="x-ads",account="18ce54d4x5t"} 42"#,
            r#"ctwa_bridge_ready{namespace="ns1",bridge="b1"} 1"#,
            "ctwa_leader 1",
            "# TYPE ctwa_reconcile counter",
            "# UNIT ctwa_bridge_lag_seconds seconds",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing from:\n{text}"
            );
        }
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn forget_bridge_drops_only_that_bridge() {
        let m = Metrics::new();
        observe_everything(&m);
        m.bridge_events("ns1", "b2", "duplicate", 1);
        m.bridge_events("ns1", "b1", "rejected", 1);
        m.bridge_batch("ns1", "b1", "failed");
        m.forget_bridge("ns1", "b1");
        let text = m.encode();
        assert!(!text.contains(r#"bridge="b1""#), "{text}");
        assert!(text.contains(r#"{namespace="ns1",bridge="b2",outcome="duplicate"} 1"#));
        assert!(text.contains("ctwa_reconcile_total{"));
    }

    #[test]
    fn outcomes_map_to_codes() {
        let m = Metrics::new();
        let cases = [
            (RequestOutcome::Status(429), "429"),
            (RequestOutcome::Timeout, "timeout"),
            (RequestOutcome::ConnectionError, "connection_error"),
            (RequestOutcome::InvalidRequest, "invalid_request"),
        ];
        for (outcome, _) in cases {
            m.observe(Api::XAds, "post_conversions", outcome, Duration::ZERO);
        }
        let text = m.encode();
        for (_, code) in cases {
            let line = format!(
                r#"ctwa_upstream_requests_total{{api="x-ads",operation="post_conversions",code="{code}"}} 1"#
            );
            assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
        }
        assert!(text.contains(
            r#"ctwa_upstream_request_duration_seconds_count{api="x-ads",operation="post_conversions"} 4"#
        ));
    }

    #[test]
    fn label_values_are_escaped() {
        let m = Metrics::new();
        m.reconcile("K", "err \"x\"\nnext\\", Duration::ZERO);
        assert!(m.encode().contains(r#"result="err \"x\"\nnext\\"} 1"#));
    }
}
