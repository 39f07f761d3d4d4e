//! One worker per bridge: started, restarted on a new configuration, held while suspended,
//! waiting or stalled, and stopped when the bridge goes away. Each bridge also has a status
//! writer that turns its shared state into `status` at a bounded rate.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::FutureExt;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector;
use kube::{Resource, ResourceExt};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::dedupe::SeenSet;
use super::state::{
    BridgeState, DESTINATION_HEALTHY, Phase, Progress, SOURCE_HEALTHY, SideHealth, Snapshot,
};
use super::worker::{self, SharedSeen, WorkerConfig};
use crate::api::{ConversionBridge, ConversionBridgeStatus};
use crate::metrics::Metrics;
use crate::runtime::conditions::{READY, find};
use crate::runtime::events::Events;
use crate::sharding::Shards;
use crate::upstream::secret::SecretString;

/// Events a postback queue holds before the receiver answers 503.
pub const POSTBACK_QUEUE: usize = 10_000;
/// At most one `EventRejected` Kubernetes Event per bridge in this period.
const REJECTION_EVENT_PERIOD: Duration = Duration::from_secs(60);
/// A worker replaced by a new configuration first delivers what it holds, for at most this
/// long; its successor starts only after it stopped, so nothing is sent twice or skipped.
const HANDOVER_GRACE: Duration = Duration::from_secs(60);

/// What the controller decided for a bridge.
pub enum Desired {
    /// Run a worker with this configuration; `fingerprint` tells configurations apart.
    Run {
        fingerprint: u64,
        config: Box<WorkerConfig>,
    },
    /// No worker, for this reason.
    Hold(Phase),
}

/// Where the postback receiver hands events for one bridge.
#[derive(Clone)]
pub struct Inlet {
    pub token: SecretString,
    /// None while the bridge is not forwarding (the receiver answers 503).
    pub queue: Option<mpsc::Sender<Value>>,
}

struct Running {
    fingerprint: u64,
    /// Stop now, abandoning the batch in flight.
    cancel: CancellationToken,
    /// Stop taking events, deliver what is held, then stop.
    drain: CancellationToken,
    handle: JoinHandle<()>,
}

/// A bridge's status writer.
struct Writer {
    /// Stop without writing again (the bridge is gone).
    stop: CancellationToken,
    /// Write once more, then stop (shutdown).
    finish: CancellationToken,
    handle: JoinHandle<()>,
}

struct Entry {
    uid: String,
    state: Arc<BridgeState>,
    /// Forwarded ids, kept across workers for the life of the process.
    seen: SharedSeen,
    worker: Option<Running>,
    /// A worker on its way out (draining); the next one waits for it.
    retiring: Option<JoinHandle<()>>,
    token: Option<SecretString>,
    queue: Option<mpsc::Sender<Value>>,
    writer: Writer,
}

impl Entry {
    fn stop_worker(&mut self) {
        if let Some(w) = self.worker.take() {
            w.cancel.cancel();
        }
        self.queue = None;
    }

    /// Let the worker deliver what it holds and stop (cut short after [`HANDOVER_GRACE`]).
    fn retire_worker(&mut self) {
        self.queue = None;
        let Some(w) = self.worker.take() else {
            return;
        };
        w.drain.cancel();
        let cancel = w.cancel;
        let mut handle = w.handle;
        let previous = self.retiring.take();
        self.retiring = Some(tokio::spawn(async move {
            if tokio::time::timeout(HANDOVER_GRACE, &mut handle)
                .await
                .is_err()
            {
                cancel.cancel();
                let _ = handle.await;
            }
            if let Some(previous) = previous {
                let _ = previous.await;
            }
        }));
    }
}

/// The bridges of this process.
pub struct Supervisor {
    kube: kube::Client,
    events: Events,
    metrics: Arc<Metrics>,
    status_interval: Duration,
    /// `--bridge-max-seen-ids`.
    max_seen_ids: usize,
    entries: Mutex<HashMap<(String, String), Entry>>,
    /// Only the leader takes postbacks.
    active: AtomicBool,
    /// ...and of them, those for bridges of the shards this process holds.
    shards: Arc<Shards>,
    /// The bridge controllers' caches (one per watched namespace), to tell a bridge that
    /// does not exist from one not started yet.
    catalogs: Mutex<Vec<reflector::Store<ConversionBridge>>>,
}

impl Supervisor {
    pub fn new(
        kube: kube::Client,
        events: Events,
        metrics: Arc<Metrics>,
        status_interval: Duration,
        max_seen_ids: usize,
        shards: Arc<Shards>,
    ) -> Arc<Self> {
        Arc::new(Supervisor {
            kube,
            events,
            metrics,
            status_interval,
            max_seen_ids,
            entries: Mutex::new(HashMap::new()),
            active: AtomicBool::new(false),
            shards,
            catalogs: Mutex::new(Vec::new()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<(String, String), Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Make `bridge` match `desired`. `token` is its postback token, when postbacks are on.
    pub fn ensure(
        self: &Arc<Self>,
        bridge: &ConversionBridge,
        desired: Desired,
        token: Option<SecretString>,
    ) {
        let key = (bridge.namespace().unwrap_or_default(), bridge.name_any());
        let uid = bridge.uid().unwrap_or_default();
        let mut entries = self.lock();
        if entries.get(&key).is_some_and(|e| e.uid != uid) {
            // Deleted and created again under the same name: a new bridge.
            if let Some(mut old) = entries.remove(&key) {
                old.stop_worker();
                old.writer.stop.cancel();
            }
        }
        let entry = entries
            .entry(key.clone())
            .or_insert_with(|| self.new_entry(bridge, &key, uid));
        let postback_path = bridge
            .spec
            .source
            .postbacks
            .enabled
            .then(|| format!("/postbacks/{}/{}/", key.0, key.1));
        entry.token = token;
        entry.state.update(|s| {
            s.generation = bridge.meta().generation;
            s.postback_path = postback_path;
        });
        match desired {
            Desired::Hold(phase) => {
                entry.retire_worker();
                // Nothing is sent or read while held: neither side's health is known.
                entry.state.update(|s| {
                    s.phase = phase;
                    s.source = SideHealth::Unknown;
                    s.destination = SideHealth::Unknown;
                });
            }
            Desired::Run {
                fingerprint,
                config,
            } => {
                // The same configuration: keep the worker, and keep a stalled bridge stalled
                // until something changes.
                if entry
                    .worker
                    .as_ref()
                    .is_some_and(|w| w.fingerprint == fingerprint)
                {
                    return;
                }
                // A new configuration is unknown until it has been tried; the first worker
                // of a process keeps the health an earlier process reported for this
                // generation (no Ready flip on a restart; the worker keeps its poll slot).
                if entry.worker.is_some() {
                    entry.state.update(|s| {
                        s.source = SideHealth::Unknown;
                        s.destination = SideHealth::Unknown;
                    });
                }
                entry.retire_worker();
                entry.state.update(|s| s.phase = Phase::Running);
                let (tx, rx) = mpsc::channel(POSTBACK_QUEUE);
                let (cancel, drain) = (CancellationToken::new(), CancellationToken::new());
                let previous = entry.retiring.take();
                let run = worker::run(
                    *config,
                    entry.state.clone(),
                    self.metrics.clone(),
                    entry.seen.clone(),
                    rx,
                    cancel.clone(),
                    drain.clone(),
                );
                let handle = tokio::spawn(async move {
                    if let Some(previous) = previous {
                        let _ = previous.await;
                    }
                    run.await
                });
                entry.queue = Some(tx);
                entry.worker = Some(Running {
                    fingerprint,
                    cancel,
                    drain,
                    handle,
                });
            }
        }
    }

    fn new_entry(
        self: &Arc<Self>,
        bridge: &ConversionBridge,
        key: &(String, String),
        uid: String,
    ) -> Entry {
        let state = Arc::new(BridgeState::new(Snapshot {
            generation: bridge.meta().generation,
            phase: Phase::Running,
            source: healthy_before(bridge, SOURCE_HEALTHY),
            destination: healthy_before(bridge, DESTINATION_HEALTHY),
            postback_path: None,
            progress: Progress::resume(bridge.status.as_ref(), bridge.start_time()),
        }));
        let (stop, finish) = (CancellationToken::new(), CancellationToken::new());
        let handle = tokio::spawn(self.clone().write_status(
            key.clone(),
            bridge.object_ref(&()),
            bridge.status.clone(),
            state.clone(),
            stop.clone(),
            finish.clone(),
        ));
        let writer = Writer {
            stop,
            finish,
            handle,
        };
        Entry {
            uid,
            state,
            seen: Arc::new(std::sync::Mutex::new(SeenSet::new(self.max_seen_ids))),
            worker: None,
            retiring: None,
            token: None,
            queue: None,
            writer,
        }
    }

    /// Stop everything of a bridge that no longer exists.
    pub fn remove(&self, namespace: &str, name: &str) {
        if let Some(mut entry) = self
            .lock()
            .remove(&(namespace.to_string(), name.to_string()))
        {
            entry.stop_worker();
            entry.writer.stop.cancel();
            self.metrics.forget_bridge(namespace, name);
        }
    }

    /// Bridges this process runs, as (namespace, name).
    pub fn bridges(&self) -> Vec<(String, String)> {
        self.lock().keys().cloned().collect()
    }

    /// Whether this process leads (takes postbacks and runs bridges).
    pub fn is_active(&self) -> bool {
        self.active.load(Ordering::Acquire)
    }

    /// Whether this process runs bridge `namespace/name` (or would, once it exists).
    pub fn runs(&self, namespace: &str, name: &str) -> bool {
        self.is_active() && self.shards.holds(namespace, name)
    }

    pub fn shards(&self) -> Arc<Shards> {
        self.shards.clone()
    }

    pub fn set_active(&self, active: bool) {
        self.active.store(active, Ordering::Release);
    }

    /// A bridge controller's cache: [`Supervisor::settled`] consults it.
    pub fn watch_catalog(&self, store: reflector::Store<ConversionBridge>) {
        self.catalogs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(store);
    }

    /// Every bridge that exists has been started (or held): until then, a postback for a
    /// bridge this process does not know may be for one it is about to start — the first
    /// seconds after taking over — and is answered 503, not 404.
    pub fn settled(&self) -> bool {
        let catalogs = self
            .catalogs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if catalogs.is_empty() {
            return false;
        }
        let entries = self.lock();
        catalogs.iter().all(|catalog| {
            catalog
                .wait_until_ready()
                .now_or_never()
                .is_some_and(|r| r.is_ok())
                && catalog.state().iter().all(|bridge| {
                    let key = (bridge.namespace().unwrap_or_default(), bridge.name_any());
                    bridge.meta().deletion_timestamp.is_some()
                        || !self.shards.holds(&key.0, &key.1)
                        || entries
                            .get(&key)
                            .is_some_and(|e| Some(&e.uid) == bridge.uid().as_ref())
                })
        })
    }

    /// The postback inlet of a bridge, when it takes postbacks.
    pub fn inlet(&self, namespace: &str, name: &str) -> Option<Inlet> {
        let entries = self.lock();
        let entry = entries.get(&(namespace.to_string(), name.to_string()))?;
        let token = entry.token.clone()?;
        let queue = entry.queue.clone().filter(|_| {
            entry
                .worker
                .as_ref()
                .is_some_and(|w| !w.handle.is_finished())
        });
        Some(Inlet { token, queue })
    }

    /// Shutdown: every worker delivers what it holds (for at most `grace`, then it is
    /// stopped), and every bridge's status, with its checkpoint, is written one last time.
    pub async fn drain(&self, grace: Duration) {
        self.drain_where(grace, |_| true).await;
    }

    /// Stops the bridges of `shard` (handed over or lost): drained as on SIGTERM, or at once
    /// when `now` (another process may run them already).
    pub async fn stop_shard(&self, shard: u32, grace: Duration) {
        let shards = self.shards.clone();
        let stopped = self
            .drain_where(grace, move |(ns, name)| shards.of(ns, name) == shard)
            .await;
        // Their series are the new holder's to export now.
        for (ns, name) in stopped {
            self.metrics.forget_bridge(&ns, &name);
        }
    }

    /// Stops the bridges `pick` selects: they deliver what they read (for at most `grace`)
    /// and write their final status, and are forgotten. Returns which ones.
    async fn drain_where(
        &self,
        grace: Duration,
        pick: impl Fn(&(String, String)) -> bool,
    ) -> Vec<(String, String)> {
        let (keys, entries): (Vec<_>, Vec<Entry>) = {
            let mut all = self.lock();
            let keys: Vec<_> = all.keys().filter(|k| pick(k)).cloned().collect();
            keys.into_iter()
                .filter_map(|k| all.remove(&k).map(|e| (k, e)))
                .unzip()
        };
        let mut workers = Vec::new();
        for entry in &entries {
            if let Some(w) = &entry.worker {
                w.drain.cancel();
                workers.push(w.cancel.clone());
            }
        }
        // Workers being replaced are draining already; their successors wait for them.
        let (handles, writers): (Vec<_>, Vec<_>) = entries
            .into_iter()
            .map(|e| ([e.worker.map(|w| w.handle), e.retiring], e.writer))
            .unzip();
        let all = futures::future::join_all(handles.into_iter().flatten().flatten());
        tokio::pin!(all);
        if tokio::time::timeout(grace, &mut all).await.is_err() {
            tracing::warn!("in-flight batches did not finish within the shutdown grace period");
            workers.iter().for_each(CancellationToken::cancel);
            all.await;
        }
        for w in &writers {
            w.finish.cancel();
        }
        let writes = futures::future::join_all(writers.into_iter().map(|w| w.handle));
        if tokio::time::timeout(Duration::from_secs(10), writes)
            .await
            .is_err()
        {
            tracing::warn!("final bridge status writes did not finish");
        }
        keys
    }

    /// Writes `status` when the state changed, at most once per `status_interval`.
    async fn write_status(
        self: Arc<Self>,
        key: (String, String),
        reference: ObjectReference,
        mut written: Option<ConversionBridgeStatus>,
        state: Arc<BridgeState>,
        stop: CancellationToken,
        finish: CancellationToken,
    ) {
        let api: Api<ConversionBridge> = Api::namespaced(self.kube.clone(), &key.0);
        let request = kube::core::Request::new(api.resource_url());
        let uid = reference.uid.clone();
        let mut last_rejected = state.snapshot().progress.rejected;
        let mut last_rejection_event: Option<tokio::time::Instant> = None;
        loop {
            let snapshot = state.snapshot();
            let status = snapshot.render(written.as_ref(), Timestamp::now());
            self.metrics.set_bridge_lag(
                &key.0,
                &key.1,
                status.lag_seconds.unwrap_or_default() as f64,
            );
            let ready = find(&status.common.conditions, READY).is_some_and(|c| c.status == "True");
            self.metrics.set_bridge_ready(&key.0, &key.1, ready);
            if !same_ignoring_lag(written.as_ref(), &status) {
                match self
                    .patch_status(&request, &key.1, &StatusPatch::of(uid.as_deref(), &status))
                    .await
                {
                    Ok(()) => {
                        self.announce(&reference, written.as_ref(), &status).await;
                        written = Some(status);
                    }
                    Err(kube::Error::Api(e)) if e.code == 404 => {
                        self.remove(&key.0, &key.1);
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(bridge = %key.1, namespace = %key.0, error = %e, "writing bridge status failed")
                    }
                }
            }
            let rejected = snapshot.progress.rejected;
            if rejected > last_rejected
                && last_rejection_event.is_none_or(|t| t.elapsed() >= REJECTION_EVENT_PERIOD)
            {
                let latest = snapshot.progress.recent_rejections.front();
                let note = format!(
                    "{} event(s) rejected; latest {}: {}",
                    rejected - last_rejected,
                    latest.map_or("", |r| r.event_id.as_str()),
                    latest.map_or("", |r| r.reason.as_str()),
                );
                self.event(&reference, EventType::Warning, "EventRejected", &note)
                    .await;
                last_rejected = rejected;
                last_rejection_event = Some(tokio::time::Instant::now());
            }
            if finish.is_cancelled() {
                return;
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = finish.cancelled() => continue,
                _ = tokio::time::sleep(self.status_interval) => {}
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = finish.cancelled() => {}
                _ = state.changed() => {}
                // Refresh lag now and then even when nothing happens.
                _ = tokio::time::sleep(Duration::from_secs(60)) => {}
            }
        }
    }

    /// One status write. The object the API server answers with is not decoded: a few
    /// thousand bridges write every interval, and nothing here reads it.
    async fn patch_status(
        &self,
        request: &kube::core::Request,
        name: &str,
        patch: &StatusPatch<'_>,
    ) -> kube::Result<()> {
        let mut req = request
            .patch_subresource(
                "status",
                name,
                &PatchParams::default(),
                &Patch::Merge(patch),
            )
            .map_err(kube::Error::BuildRequest)?;
        req.extensions_mut().insert("patch_status");
        self.kube.request_text(req).await.map(drop)
    }

    /// An Event when Ready flips.
    async fn announce(
        &self,
        reference: &ObjectReference,
        before: Option<&ConversionBridgeStatus>,
        after: &ConversionBridgeStatus,
    ) {
        let ready = |s: Option<&ConversionBridgeStatus>| {
            s.and_then(|s| find(&s.common.conditions, READY))
                .map(|c| (c.status.clone(), c.reason.clone()))
        };
        let (old, new) = (ready(before), ready(after.into()));
        if old == new {
            return;
        }
        if let Some((status, reason)) = new {
            let message = find(&after.common.conditions, READY)
                .map(|c| c.message.clone())
                .unwrap_or_default();
            let type_ = if status == "True" || reason == "Suspended" || reason == "Creating" {
                EventType::Normal
            } else {
                EventType::Warning
            };
            self.event(reference, type_, &reason, &message).await;
        }
    }

    async fn event(&self, reference: &ObjectReference, type_: EventType, reason: &str, note: &str) {
        let event = Event {
            type_,
            reason: reason.into(),
            note: Some(note.chars().take(1000).collect()),
            action: "Forward".into(),
            secondary: None,
        };
        if let Err(e) = self.events.publish(&event, reference).await {
            tracing::debug!(error = %e, "event not recorded");
        }
    }
}

/// Lag moves every second; writing it alone would churn the object.
/// `Healthy` when the bridge's status reports condition `type_` True for its generation.
fn healthy_before(bridge: &ConversionBridge, type_: &str) -> SideHealth {
    let status = bridge.status.as_ref();
    let current = status.is_some_and(|s| s.common.observed_generation == bridge.meta().generation);
    let healthy = status
        .and_then(|s| find(&s.common.conditions, type_))
        .is_some_and(|c| c.status == "True");
    if current && healthy {
        SideHealth::Healthy
    } else {
        SideHealth::Unknown
    }
}

/// A bridge's status as a merge patch, serialised straight from the typed status.
#[derive(serde::Serialize, Debug)]
struct StatusPatch<'a> {
    metadata: UidPrecondition<'a>,
    status: StatusBody<'a>,
}

/// The uid makes the write fail rather than land on a bridge recreated under the same name.
#[derive(serde::Serialize, Debug)]
struct UidPrecondition<'a> {
    uid: Option<&'a str>,
}

#[derive(serde::Serialize, Debug)]
struct StatusBody<'a> {
    #[serde(flatten)]
    status: &'a ConversionBridgeStatus,
    /// A merge patch removes a field only when it says null: a bridge that stopped
    /// receiving postbacks must not keep advertising its old path.
    #[serde(rename = "postbackPath", skip_serializing_if = "Option::is_none")]
    cleared_postback_path: Option<()>,
}

impl<'a> StatusPatch<'a> {
    fn of(uid: Option<&'a str>, status: &'a ConversionBridgeStatus) -> Self {
        StatusPatch {
            metadata: UidPrecondition { uid },
            status: StatusBody {
                status,
                cleared_postback_path: status.postback_path.is_none().then_some(()),
            },
        }
    }
}

fn same_ignoring_lag(old: Option<&ConversionBridgeStatus>, new: &ConversionBridgeStatus) -> bool {
    old.is_some_and(|old| {
        let mut old = old.clone();
        old.lag_seconds = new.lag_seconds;
        old == *new
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn patch_json(uid: Option<&str>, status: &ConversionBridgeStatus) -> Value {
        serde_json::to_value(StatusPatch::of(uid, status)).unwrap()
    }

    #[test]
    fn status_patch_carries_the_uid_and_the_typed_status() {
        let status = ConversionBridgeStatus {
            events_forwarded: 7,
            postback_path: Some("/postbacks/ns/b".into()),
            ..Default::default()
        };
        let patch = patch_json(Some("u-1"), &status);
        assert_eq!(patch["metadata"], json!({"uid": "u-1"}));
        assert_eq!(patch["status"], serde_json::to_value(&status).unwrap());
        assert_eq!(patch["status"]["postbackPath"], "/postbacks/ns/b");
    }

    #[test]
    fn status_patch_clears_a_postback_path_that_went_away() {
        let status = ConversionBridgeStatus::default();
        let patch = patch_json(Some("u-1"), &status);
        let fields = patch["status"].as_object().unwrap();
        assert_eq!(fields.get("postbackPath"), Some(&Value::Null));
        assert_eq!(fields.get("eventsForwarded"), Some(&json!(0)));
    }
}
