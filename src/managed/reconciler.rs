//! The generic managed-resource reconciler: one flow for every managed kind.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};

use super::controller::trigger_hash;
use super::external::{ExternalResource, Observation};
use super::resource::{Managed, ManagedExt};
use crate::api::{DeletionPolicy, EXTERNAL_ID_ANNOTATION, FINALIZER, ManagementPolicy};
use crate::metrics::Metrics;
use crate::runtime::backoff::KeyedBackoff;
use crate::runtime::conditions::{self, Health, Reason, apply_health};
use crate::runtime::failure::Failure;
use crate::runtime::scope::KubeError;

/// What every reconcile of one kind shares.
pub struct Context<A> {
    pub client: kube::Client,
    pub recorder: Recorder,
    pub adapter: A,
    pub backoff: KeyedBackoff,
    /// Global drift-check interval (`--resync-interval`).
    pub resync: Duration,
    /// Objects for which the ReconcilePaused Event was already emitted.
    paused_noted: Mutex<HashSet<String>>,
    /// Objects whose `ctwa.dev/external-id` this process just wrote, with the trigger hash the
    /// write produces: the reconcile that write triggers has nothing left to do upstream.
    echoes: Mutex<HashMap<String, u64>>,
    pub metrics: Arc<Metrics>,
}

impl<A> Context<A> {
    pub fn new(
        client: kube::Client,
        recorder: Recorder,
        adapter: A,
        resync: Duration,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            client,
            recorder,
            metrics,
            adapter,
            backoff: KeyedBackoff::default(),
            resync,
            paused_noted: Mutex::new(HashSet::new()),
            echoes: Mutex::new(HashMap::new()),
        }
    }
}

fn key<K: Resource>(obj: &K) -> String {
    format!(
        "{}/{}",
        obj.meta().namespace.as_deref().unwrap_or(""),
        obj.meta().name.as_deref().unwrap_or("")
    )
}

/// Entry point for `Controller::run`: one reconcile, counted and timed.
pub async fn reconcile<K, A>(obj: Arc<K>, ctx: Arc<Context<A>>) -> Result<Action, KubeError>
where
    K: Managed,
    A: ExternalResource<K>,
{
    let started = std::time::Instant::now();
    let outcome = RECONCILE_OUTCOME
        .scope(std::cell::Cell::new("success"), async {
            let result = reconcile_once(obj, &ctx).await;
            if result.is_err() {
                RECONCILE_OUTCOME.with(|o| o.set("error"));
            }
            (result, RECONCILE_OUTCOME.with(|o| o.get()))
        })
        .await;
    ctx.metrics
        .reconcile(&K::kind(&()), outcome.1, started.elapsed());
    outcome.0
}

tokio::task_local! {
    /// How the current reconcile ended, for `ctwa_reconcile_total{result}`.
    static RECONCILE_OUTCOME: std::cell::Cell<&'static str>;
}

fn note_outcome(outcome: &'static str) {
    let _ = RECONCILE_OUTCOME.try_with(|o| o.set(outcome));
}

async fn reconcile_once<K, A>(obj: Arc<K>, ctx: &Arc<Context<A>>) -> Result<Action, KubeError>
where
    K: Managed,
    A: ExternalResource<K>,
{
    let ctx = ctx.clone();
    let key = key(obj.as_ref());
    // Taken by whichever reconcile comes next, so that none outlives its object.
    let echo = ctx
        .echoes
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&key);
    if obj.meta().deletion_timestamp.is_some() {
        return finalize(&obj, &ctx).await;
    }
    if obj.is_paused() {
        let first = ctx
            .paused_noted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key);
        if first {
            publish(
                &ctx,
                obj.as_ref(),
                EventType::Normal,
                Reason::ReconcilePaused,
                "ctwa.dev/paused is true: no upstream calls",
            )
            .await;
        }
        note_outcome("paused");
        return Ok(Action::await_change());
    }
    ctx.paused_noted
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&key);

    let resync = match obj.resync_interval(ctx.resync) {
        Ok(d) => d,
        Err(message) => {
            publish(
                &ctx,
                obj.as_ref(),
                EventType::Warning,
                Reason::UpstreamRejected,
                &message,
            )
            .await;
            K::default_resync(ctx.resync)
        }
    };
    if echo.is_some() && echo == trigger_hash(obj.as_ref()) {
        // The external-id annotation this process wrote after creating the object, and
        // nothing else changed: the upstream object was synced moments ago.
        return Ok(Action::requeue(jittered(resync)));
    }
    match sync(obj.as_ref(), &ctx).await {
        Ok((health, observation, wrote, echo)) => {
            ctx.backoff.reset(&key);
            write_status(obj.as_ref(), &ctx, &health, &observation.status, wrote).await?;
            if let Some(hash) = echo {
                ctx.echoes
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(key, hash);
            }
            Ok(Action::requeue(jittered(resync)))
        }
        Err(SyncError::Kube(e)) => Err(e),
        Err(SyncError::Failed(failure)) => {
            write_status(
                obj.as_ref(),
                &ctx,
                &failure.health(),
                &Default::default(),
                false,
            )
            .await?;
            note_outcome(match failure {
                Failure::Transient { .. } => "transient",
                Failure::Terminal { .. } => "terminal",
                Failure::Waiting { .. } => "waiting",
            });
            Ok(match failure {
                Failure::Transient { retry_after, .. } => {
                    Action::requeue(ctx.backoff.next_delay(&key, retry_after))
                }
                Failure::Terminal { .. } => Action::await_change(),
                Failure::Waiting { .. } => Action::requeue(Duration::from_secs(30)),
            })
        }
    }
}

/// After a Kubernetes API error: retry with the same per-object backoff.
pub fn error_policy<K: Managed, A>(obj: Arc<K>, error: &KubeError, ctx: Arc<Context<A>>) -> Action {
    tracing::warn!(object = %key(obj.as_ref()), %error, "reconcile failed");
    Action::requeue(ctx.backoff.next_delay(&key(obj.as_ref()), None))
}

enum SyncError {
    Kube(KubeError),
    Failed(Failure),
}

impl From<Failure> for SyncError {
    fn from(f: Failure) -> Self {
        SyncError::Failed(f)
    }
}

impl From<kube::Error> for SyncError {
    fn from(e: kube::Error) -> Self {
        SyncError::Kube(KubeError(e))
    }
}

/// Makes upstream match `obj`: the health to report, what was observed, whether upstream was
/// written, and the trigger hash of the external-id annotation written (if one was).
async fn sync<K, A>(
    obj: &K,
    ctx: &Context<A>,
) -> Result<(Health, Observation, bool, Option<u64>), SyncError>
where
    K: Managed,
    A: ExternalResource<K>,
{
    let observe_only = obj.management_policy() == ManagementPolicy::Observe;
    if observe_only {
        remove_finalizer(obj, ctx).await?;
    } else {
        add_finalizer(obj, ctx).await?;
    }
    let client = connect(obj, ctx).await?;
    let observed = ctx.adapter.observe(&client, obj).await?;
    if observe_only {
        let health = if observed.exists {
            Health::Ready {
                reason: Reason::Observed,
                message: "upstream object found (Observe mode: never written)".into(),
            }
        } else {
            Health::NotReady {
                reason: Reason::NotFound,
                message: "no matching upstream object (Observe mode: nothing is created)".into(),
            }
        };
        return Ok((health, observed, false, None));
    }
    let (observation, wrote, verb) = if !observed.exists {
        (
            ctx.adapter.create(&client, obj).await?,
            true,
            Some(Reason::Creating),
        )
    } else if !observed.up_to_date {
        (
            ctx.adapter.update(&client, obj, &observed).await?,
            true,
            Some(Reason::Updating),
        )
    } else {
        (observed, false, None)
    };
    let mut echo = None;
    if let Some(id) = &observation.external_id
        && obj.external_id() != Some(id.as_str())
    {
        // Recorded right after the write, so that a crash before the status write still
        // finds the object by id instead of creating a duplicate.
        let patch = json!({"metadata": {"annotations": {EXTERNAL_ID_ANNOTATION: id}}});
        let patched = api::<K>(ctx, obj)
            .patch(
                &obj.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await?;
        echo = trigger_hash(&patched);
    }
    if let Some(reason) = verb {
        publish(
            ctx,
            obj,
            EventType::Normal,
            reason,
            &format!(
                "upstream object {}",
                if reason == Reason::Creating {
                    "created"
                } else {
                    "updated"
                }
            ),
        )
        .await;
    }
    Ok((
        Health::Ready {
            reason: Reason::Available,
            message: "upstream matches the spec".into(),
        },
        observation,
        wrote,
        echo,
    ))
}

async fn connect<K, A>(obj: &K, ctx: &Context<A>) -> Result<A::Client, SyncError>
where
    K: Managed,
    A: ExternalResource<K>,
{
    let secrets: Api<Secret> =
        Api::namespaced(ctx.client.clone(), &obj.namespace().unwrap_or_default());
    match secrets.get_opt(obj.secret_name()).await? {
        Some(secret) => Ok(ctx.adapter.connect(obj, &secret)?),
        None => Err(Failure::terminal(
            Reason::SecretNotFound,
            format!(
                "Secret {:?} not found in namespace {:?}",
                obj.secret_name(),
                obj.namespace().unwrap_or_default()
            ),
        )
        .into()),
    }
}

/// Deletion: the upstream object goes first (unless Orphan or Observe), then the finalizer.
async fn finalize<K, A>(obj: &Arc<K>, ctx: &Arc<Context<A>>) -> Result<Action, KubeError>
where
    K: Managed,
    A: ExternalResource<K>,
{
    if !obj.finalizers().iter().any(|f| f == FINALIZER) {
        return Ok(Action::await_change());
    }
    let keep_upstream = obj.deletion_policy() == DeletionPolicy::Orphan
        || obj.management_policy() == ManagementPolicy::Observe;
    if !keep_upstream {
        let result: Result<(), SyncError> = async {
            let client = connect(obj.as_ref(), ctx).await?;
            ctx.adapter.delete(&client, obj.as_ref()).await?;
            Ok(())
        }
        .await;
        match result {
            Ok(()) => {}
            Err(SyncError::Kube(e)) => return Err(e),
            Err(SyncError::Failed(failure)) => {
                write_status(
                    obj.as_ref(),
                    ctx,
                    &failure.health(),
                    &Default::default(),
                    false,
                )
                .await?;
                return Ok(match failure {
                    Failure::Terminal { .. } => Action::await_change(),
                    Failure::Transient { retry_after, .. } => {
                        Action::requeue(ctx.backoff.next_delay(&key(obj.as_ref()), retry_after))
                    }
                    Failure::Waiting { .. } => {
                        Action::requeue(ctx.backoff.next_delay(&key(obj.as_ref()), None))
                    }
                });
            }
        }
        publish(
            ctx,
            obj.as_ref(),
            EventType::Normal,
            Reason::Deleting,
            "upstream object deleted",
        )
        .await;
    }
    remove_finalizer(obj.as_ref(), ctx).await?;
    Ok(Action::await_change())
}

fn api<K: Managed>(ctx: &Context<impl Sized>, obj: &K) -> Api<K> {
    Api::namespaced(ctx.client.clone(), &obj.namespace().unwrap_or_default())
}

async fn add_finalizer<K: Managed, A>(obj: &K, ctx: &Context<A>) -> Result<(), kube::Error> {
    if obj.finalizers().iter().any(|f| f == FINALIZER) {
        return Ok(());
    }
    let mut finalizers = obj.finalizers().to_vec();
    finalizers.push(FINALIZER.to_string());
    patch_finalizers(obj, ctx, finalizers).await
}

async fn remove_finalizer<K: Managed, A>(obj: &K, ctx: &Context<A>) -> Result<(), kube::Error> {
    if !obj.finalizers().iter().any(|f| f == FINALIZER) {
        return Ok(());
    }
    let finalizers: Vec<String> = obj
        .finalizers()
        .iter()
        .filter(|f| *f != FINALIZER)
        .cloned()
        .collect();
    patch_finalizers(obj, ctx, finalizers).await
}

/// Replaces the finalizer list at the object's resourceVersion, so a concurrent change of the
/// list is never lost (the write fails and the reconcile runs again).
async fn patch_finalizers<K: Managed, A>(
    obj: &K,
    ctx: &Context<A>,
    finalizers: Vec<String>,
) -> Result<(), kube::Error> {
    let patch =
        json!({"metadata": {"finalizers": finalizers, "resourceVersion": obj.resource_version()}});
    api::<K>(ctx, obj)
        .patch(
            &obj.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
    Ok(())
}

/// Writes `.status` only when it differs from what is stored, and emits an Event when the
/// Ready condition changes.
async fn write_status<K: Managed, A>(
    obj: &K,
    ctx: &Context<A>,
    health: &Health,
    fields: &serde_json::Map<String, Value>,
    wrote_upstream: bool,
) -> Result<(), KubeError> {
    let current = serde_json::to_value(obj)
        .ok()
        .and_then(|v| v.get("status").cloned())
        .unwrap_or(json!({}));
    let mut next = current.as_object().cloned().unwrap_or_default();
    let now = Time(jiff::Timestamp::now());
    let generation = obj.meta().generation;
    let mut conds = obj
        .common_status()
        .map(|s| s.conditions.clone())
        .unwrap_or_default();
    let before =
        conditions::find(&conds, conditions::READY).map(|c| (c.status.clone(), c.reason.clone()));
    apply_health(&mut conds, health, generation, &now);
    next.insert("observedGeneration".into(), json!(generation));
    next.insert(
        "conditions".into(),
        serde_json::to_value(&conds).unwrap_or_default(),
    );
    for (k, v) in fields {
        next.insert(k.clone(), v.clone());
    }
    if Value::Object(next.clone()) == current && !wrote_upstream {
        return Ok(());
    }
    // Refreshed only together with another change, so that steady state writes nothing.
    if health.is_ready() {
        next.insert("lastSyncTime".into(), json!(now));
    }
    let patch = json!({"status": next});
    api::<K>(ctx, obj)
        .patch_status(
            &obj.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
    let after = (
        if health.is_ready() { "True" } else { "False" }.to_string(),
        health.reason().as_str().to_string(),
    );
    if before.as_ref() != Some(&after) {
        let type_ = if matches!(health, Health::Ready { .. } | Health::NotReady { .. }) {
            EventType::Normal
        } else {
            EventType::Warning
        };
        publish(ctx, obj, type_, health.reason(), health.message()).await;
    }
    Ok(())
}

async fn publish<K: Managed, A>(
    ctx: &Context<A>,
    obj: &K,
    type_: EventType,
    reason: Reason,
    note: &str,
) {
    let event = Event {
        type_,
        reason: reason.as_str().into(),
        note: Some(note.chars().take(1000).collect()),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &obj.object_ref(&())).await {
        tracing::debug!(error = %e, "event not recorded");
    }
}

/// Spreads resyncs of objects created together over ±10% of the interval.
fn jittered(d: Duration) -> Duration {
    d.mul_f64(0.9 + 0.2 * crate::runtime::backoff::jitter_fraction())
}
