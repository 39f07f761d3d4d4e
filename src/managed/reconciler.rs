//! The generic managed-resource reconciler: one flow for every managed kind.
//!
//! Each reconcile: deletion or pause first; then ownership (one owner per upstream object);
//! then the references, the credentials, and the adapter — observe by id, then by natural
//! key; create, update or leave alone; record the id; report.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::ResourceExt;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use serde_json::json;

use super::assertions::Assertions;
use super::controller::trigger_hash;
use super::credentials::{Credentials, Found};
use super::external::{Drift, ExternalResource, Observed, Resolved};
use super::ownership::{Peers, object_key};
use super::references;
use super::resource::{Managed, ManagedExt, RESYNC_FLOOR};
use super::status::{add_finalizer, api, has_finalizer, publish, remove_finalizer, write_status};
use crate::api::{DeletionPolicy, EXTERNAL_ID_ANNOTATION, ManagementPolicy};
use crate::metrics::Metrics;
use crate::runtime::backoff::KeyedBackoff;
use crate::runtime::conditions::{Health, Reason};
use crate::runtime::events::Events;
use crate::runtime::failure::Failure;
use crate::runtime::scope::KubeError;
use crate::sharding::Shards;

/// How often an object refused as `AlreadyManaged` looks again (no upstream calls), besides
/// being woken when the owner lets go.
const OWNER_RECHECK: Duration = RESYNC_FLOOR;

/// What every reconcile of one kind shares.
pub struct Context<K: Managed, A> {
    pub client: kube::Client,
    pub events: Events,
    pub adapter: A,
    pub backoff: KeyedBackoff,
    /// Global drift-check interval (`--resync-interval`).
    pub resync: Duration,
    pub metrics: Arc<Metrics>,
    /// Every object of this kind in every watched namespace, for ownership.
    pub peers: Arc<Peers<K>>,
    /// Only objects of the shards this process holds are reconciled here.
    pub shards: Arc<Shards>,
    credentials: Credentials,
    /// Notices already given once per object (a pause, an unusable annotation value).
    noted: Mutex<HashSet<String>>,
    /// Objects whose `ctwa.dev/external-id` this process just wrote, with the trigger hash the
    /// write produces: the reconcile that write triggers has nothing left to do upstream.
    echoes: Mutex<HashMap<String, u64>>,
    /// When write-only upstream objects were last asserted.
    asserted: Assertions,
}

impl<K: Managed, A> Context<K, A> {
    pub fn new(
        client: kube::Client,
        adapter: A,
        resync: Duration,
        metrics: Arc<Metrics>,
        peers: Arc<Peers<K>>,
        shards: Arc<Shards>,
        credentials: Credentials,
    ) -> Self {
        Self {
            events: Events::new(&client),
            client,
            adapter,
            backoff: KeyedBackoff::default(),
            resync,
            metrics,
            peers,
            shards,
            credentials,
            noted: Mutex::new(HashSet::new()),
            echoes: Mutex::new(HashMap::new()),
            asserted: Assertions::default(),
        }
    }

    /// True the first time `notice` is given (until `forget`).
    fn first_notice(&self, notice: String) -> bool {
        self.noted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(notice)
    }

    fn forget_notices(&self, key: &str, kind: &str) {
        let prefix = format!("{key}|{kind}");
        self.noted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|n| !n.starts_with(&prefix));
    }
}

impl<K: Managed, A: ExternalResource<K>> Context<K, A> {
    fn claims(&self) -> impl Fn(&K) -> Vec<String> + '_ {
        |o: &K| self.adapter.claims(o)
    }

    /// The owner of what `obj` claims, when it is another object.
    fn other_owner(&self, obj: &K) -> Option<String> {
        self.peers.owner_other_than(obj, &self.claims())
    }

    async fn event(&self, obj: &K, type_: EventType, reason: Reason, note: &str) {
        publish(&self.events, obj, type_, reason, note).await;
    }

    async fn status(
        &self,
        obj: &K,
        health: &Health,
        fields: Option<K::Status>,
        force: bool,
    ) -> Result<(), KubeError> {
        write_status(&self.client, &self.events, obj, health, fields, force).await
    }
}

/// Entry point for `Controller::run`: one reconcile, counted and timed.
pub async fn reconcile<K, A>(obj: Arc<K>, ctx: Arc<Context<K, A>>) -> Result<Action, KubeError>
where
    K: Managed,
    A: ExternalResource<K>,
{
    // Another process's shard: it reconciles the object (this one is woken when it gains
    // the shard). Nothing is counted: nothing was done.
    let Some(_busy) = ctx.shards.enter(
        obj.meta().namespace.as_deref().unwrap_or_default(),
        &obj.name_any(),
    ) else {
        return Ok(Action::await_change());
    };
    let started = std::time::Instant::now();
    let (result, outcome) = match reconcile_once(&obj, &ctx).await {
        Ok((action, outcome)) => (Ok(action), outcome),
        Err(e) => (Err(e), "error"),
    };
    ctx.metrics
        .reconcile(&K::kind(&()), outcome, started.elapsed());
    result
}

/// After a Kubernetes API error: retry with the same per-object backoff.
pub fn error_policy<K: Managed, A>(
    obj: Arc<K>,
    error: &KubeError,
    ctx: Arc<Context<K, A>>,
) -> Action {
    tracing::warn!(object = %object_key(obj.as_ref()), %error, "reconcile failed");
    Action::requeue(ctx.backoff.next_delay(&object_key(obj.as_ref()), None))
}

/// `ctwa_reconcile_total{result}` of a reconcile that failed upstream.
fn outcome_of(failure: &Failure) -> &'static str {
    match failure {
        Failure::Transient { .. } => "transient",
        Failure::Terminal { .. } | Failure::Gone { .. } => "terminal",
        Failure::Waiting { .. } => "waiting",
    }
}

/// When to try again after `failure`.
fn retry_after<K: Managed, A>(ctx: &Context<K, A>, key: &str, failure: &Failure) -> Action {
    match failure {
        Failure::Transient { retry_after, .. } => {
            Action::requeue(ctx.backoff.next_delay(key, *retry_after))
        }
        Failure::Terminal { .. } | Failure::Gone { .. } => Action::await_change(),
        Failure::Waiting { .. } => Action::requeue(Duration::from_secs(30)),
    }
}

async fn reconcile_once<K, A>(
    obj: &Arc<K>,
    ctx: &Context<K, A>,
) -> Result<(Action, &'static str), KubeError>
where
    K: Managed,
    A: ExternalResource<K>,
{
    let obj = obj.as_ref();
    let key = object_key(obj);
    // Taken by whichever reconcile comes next, so that none outlives its object.
    let echo = ctx
        .echoes
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&key);
    if obj.meta().deletion_timestamp.is_some() {
        return finalize(obj, ctx).await;
    }
    if obj.is_paused() {
        if ctx.first_notice(format!("{key}|paused")) {
            ctx.event(
                obj,
                EventType::Normal,
                Reason::ReconcilePaused,
                "ctwa.dev/paused is true: no upstream calls",
            )
            .await;
        }
        return Ok((Action::await_change(), "paused"));
    }
    ctx.forget_notices(&key, "paused");

    let (resync, problem) = obj.resync_interval(ctx.resync);
    match problem {
        Some(problem) => {
            if ctx.first_notice(format!("{key}|annotation|{problem}")) {
                ctx.event(obj, EventType::Warning, Reason::InvalidAnnotation, &problem)
                    .await;
            }
        }
        None => ctx.forget_notices(&key, "annotation"),
    }
    if echo.is_some() && echo == trigger_hash(obj) {
        // The external-id annotation this process wrote after creating the object, and
        // nothing else changed: the upstream object was synced moments ago.
        return Ok((Action::requeue(jittered(resync)), "success"));
    }

    if obj.management_policy() == ManagementPolicy::Manage
        && let Some(owner) = ctx.other_owner(obj)
    {
        let health = Health::NotReady {
            reason: Reason::AlreadyManaged,
            message: format!(
                "the same upstream object is managed by {owner}; this object never writes or deletes it, and takes over when {owner} goes"
            ),
        };
        ctx.status(obj, &health, None, false).await?;
        return Ok((Action::requeue(OWNER_RECHECK), "waiting"));
    }

    match sync(obj, ctx, resync).await {
        Ok(synced) => {
            ctx.backoff.reset(&key);
            ctx.status(obj, &synced.health, synced.status, synced.wrote_upstream)
                .await?;
            if let Some(hash) = synced.echo {
                ctx.echoes
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(key, hash);
            }
            Ok((Action::requeue(jittered(resync)), "success"))
        }
        Err(SyncError::Kube(e)) => Err(e),
        Err(SyncError::Failed(failure)) => {
            let failure = failure.settled();
            ctx.status(obj, &failure.health(), None, false).await?;
            Ok((retry_after(ctx, &key, &failure), outcome_of(&failure)))
        }
    }
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

impl From<KubeError> for SyncError {
    fn from(e: KubeError) -> Self {
        SyncError::Kube(e)
    }
}

/// What a successful sync leaves to report.
struct Synced<S> {
    health: Health,
    /// The kind's status fields; None keeps them as they are.
    status: Option<S>,
    /// Upstream was written (the status is written too, with a new `lastSyncTime`).
    wrote_upstream: bool,
    /// The trigger hash of the external-id annotation written, if one was.
    echo: Option<u64>,
}

/// The id `obj` knows its upstream object by: the annotation, else the status.
fn known_id<K: Managed, A: ExternalResource<K>>(adapter: &A, obj: &K) -> Option<String> {
    obj.external_id()
        .map(String::from)
        .or_else(|| adapter.recorded_id(obj))
}

/// Finds the upstream object: by the id `obj` knows, then by natural key. An id whose object
/// is gone (its own 404, archived, deleted) falls back to the natural key, so a crash between
/// a create and the status write never leads to a duplicate.
async fn observe<K, A>(
    adapter: &A,
    client: &A::Client,
    obj: &K,
    refs: &Resolved,
) -> Result<Option<Observed<A, K>>, Failure>
where
    K: Managed,
    A: ExternalResource<K>,
{
    if let Some(id) = known_id(adapter, obj) {
        match adapter.get(client, obj, refs, &id).await {
            Ok(Some(found)) => return Ok(Some(found)),
            Ok(None) => {}
            Err(f) if f.is_gone() => {}
            Err(f) => return Err(f),
        }
    }
    adapter.find(client, obj, refs).await
}

/// Makes upstream match `obj`; a write-only object is asserted again only once per `resync`.
async fn sync<K, A>(
    obj: &K,
    ctx: &Context<K, A>,
    resync: Duration,
) -> Result<Synced<K::Status>, SyncError>
where
    K: Managed,
    A: ExternalResource<K>,
{
    let adapter = &ctx.adapter;
    let observe_only = obj.management_policy() == ManagementPolicy::Observe;
    if observe_only {
        remove_finalizer(&ctx.client, obj).await?;
    } else {
        add_finalizer(&ctx.client, obj).await?;
    }
    let refs = references::resolve(&ctx.client, obj).await?;
    let secret = match ctx
        .credentials
        .read(
            &ctx.client,
            &obj.namespace().unwrap_or_default(),
            obj.secret_name(),
        )
        .await?
    {
        Found::Live(secret) => secret,
        Found::Remembered(_) | Found::Missing => return Err(secret_not_found(obj).into()),
    };
    let client = adapter.connect(obj, &secret)?;
    let key = object_key(obj);
    let mut observed = observe(adapter, &client, obj, &refs).await?;
    if let Some(found) = observed.as_mut()
        && found.drift == Drift::Unknown
        && !ctx.asserted.due(&key, obj, resync)
    {
        found.drift = Drift::None;
    }
    if observe_only {
        return Ok(match observed {
            Some(found) => Synced {
                health: Health::Ready {
                    reason: Reason::Observed,
                    message: "upstream object found (Observe mode: never written)".into(),
                },
                status: Some(found.status),
                wrote_upstream: false,
                echo: None,
            },
            None => Synced {
                health: Health::NotReady {
                    reason: Reason::NotFound,
                    message: "no matching upstream object (Observe mode: nothing is created)"
                        .into(),
                },
                status: None,
                wrote_upstream: false,
                echo: None,
            },
        });
    }

    let writes = observed.as_ref().is_none_or(|o| o.drift != Drift::None);
    let (now, verb) = converge(adapter, &client, obj, &refs, observed).await?;
    if writes {
        ctx.asserted.record(&key, obj);
    }
    let echo = record_id(obj, ctx, now.external_id.as_deref()).await?;
    if let Some(reason) = verb {
        let note = if reason == Reason::Creating {
            "upstream object created"
        } else {
            "upstream object updated"
        };
        ctx.event(obj, EventType::Normal, reason, note).await;
    }
    Ok(Synced {
        health: Health::Ready {
            reason: Reason::Available,
            message: "upstream matches the spec".into(),
        },
        status: Some(now.status),
        wrote_upstream: verb.is_some(),
        echo,
    })
}

/// Brings upstream to the spec from what `observe` found: create, update (re-observing when
/// the object vanished between the read and the write, SPEC 7.1), or nothing. Returns the
/// upstream state and the Event reason when something visible was done.
async fn converge<K, A>(
    adapter: &A,
    client: &A::Client,
    obj: &K,
    refs: &Resolved,
    observed: Option<Observed<A, K>>,
) -> Result<(Observed<A, K>, Option<Reason>), Failure>
where
    K: Managed,
    A: ExternalResource<K>,
{
    let found = match observed {
        None => {
            return Ok((
                adapter.create(client, obj, refs).await?,
                Some(Reason::Creating),
            ));
        }
        Some(found) => found,
    };
    match found.drift {
        Drift::None => Ok((found, None)),
        // Asserted again without a sign: nothing visible happened.
        Drift::Unknown => Ok((adapter.update(client, obj, refs, &found).await?, None)),
        Drift::Differs => match adapter.update(client, obj, refs, &found).await {
            Ok(updated) => Ok((updated, Some(Reason::Updating))),
            Err(f) if f.is_gone() => match observe(adapter, client, obj, refs).await? {
                None => Ok((
                    adapter.create(client, obj, refs).await?,
                    Some(Reason::Creating),
                )),
                Some(again) if again.drift == Drift::None => Ok((again, None)),
                Some(again) => Ok((
                    adapter.update(client, obj, refs, &again).await?,
                    Some(Reason::Updating),
                )),
            },
            Err(f) => Err(f),
        },
    }
}

/// Records the upstream id in `ctwa.dev/external-id` right after the write, so that a crash
/// before the status write still finds the object by id instead of creating a duplicate.
/// Returns the trigger hash the write produces, unless the spec changed meanwhile: then the
/// reconcile it triggers must run in full (no edit is lost).
async fn record_id<K, A>(
    obj: &K,
    ctx: &Context<K, A>,
    id: Option<&str>,
) -> Result<Option<u64>, KubeError>
where
    K: Managed,
{
    let Some(id) = id.filter(|id| obj.external_id() != Some(*id)) else {
        return Ok(None);
    };
    let patch = json!({"metadata": {"annotations": {EXTERNAL_ID_ANNOTATION: id}}});
    let patched = api::<K>(&ctx.client, obj)
        .patch(
            &obj.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
    Ok((patched.meta().generation == obj.meta().generation)
        .then(|| trigger_hash(&patched))
        .flatten())
}

fn secret_not_found<K: Managed>(obj: &K) -> Failure {
    Failure::terminal(
        Reason::SecretNotFound,
        format!(
            "Secret {:?} not found in namespace {:?}",
            obj.secret_name(),
            obj.namespace().unwrap_or_default()
        ),
    )
}

/// Deletion: the upstream object goes first (unless Orphan, Observe, or owned by another
/// object), then the finalizer.
async fn finalize<K, A>(obj: &K, ctx: &Context<K, A>) -> Result<(Action, &'static str), KubeError>
where
    K: Managed,
    A: ExternalResource<K>,
{
    if !has_finalizer(obj) {
        return Ok((Action::await_change(), "success"));
    }
    let key = object_key(obj);
    let keep_upstream = !ctx.adapter.can_delete()
        || obj.deletion_policy() == DeletionPolicy::Orphan
        || obj.management_policy() == ManagementPolicy::Observe;
    if !keep_upstream && obj.is_paused() {
        let health = Health::NotReady {
            reason: Reason::ReconcilePaused,
            message: "deletion waits: ctwa.dev/paused is true (unpause it, or set deletionPolicy: Orphan to leave the upstream object)".into(),
        };
        ctx.status(obj, &health, None, false).await?;
        return Ok((Action::await_change(), "paused"));
    }
    let owner = ctx.other_owner(obj);
    if !keep_upstream && owner.is_none() {
        match delete_upstream(obj, ctx).await {
            Ok(note) => {
                ctx.event(obj, EventType::Normal, Reason::Deleting, &note)
                    .await
            }
            Err(SyncError::Kube(e)) => return Err(e),
            Err(SyncError::Failed(failure)) => {
                ctx.status(obj, &failure.health(), None, false).await?;
                let action = match &failure {
                    Failure::Waiting { .. } => Action::requeue(ctx.backoff.next_delay(&key, None)),
                    other => retry_after(ctx, &key, other),
                };
                return Ok((action, outcome_of(&failure)));
            }
        }
    }
    remove_finalizer(&ctx.client, obj).await?;
    ctx.backoff.reset(&key);
    ctx.asserted.forget(&key);
    ctx.peers.release(obj, &ctx.claims());
    Ok((Action::await_change(), "success"))
}

/// Removes the upstream object; the note for the Event says what happened.
async fn delete_upstream<K, A>(obj: &K, ctx: &Context<K, A>) -> Result<String, SyncError>
where
    K: Managed,
    A: ExternalResource<K>,
{
    let adapter = &ctx.adapter;
    let id = known_id(adapter, obj);
    let knows_upstream = id.is_some() || adapter.wrote_upstream(obj);
    let released = |why: &str| {
        Ok(format!(
            "nothing is known upstream and {why}: nothing to delete, finalizer released"
        ))
    };
    let found = ctx
        .credentials
        .read(
            &ctx.client,
            &obj.namespace().unwrap_or_default(),
            obj.secret_name(),
        )
        .await?;
    let secret = match found {
        Found::Live(secret) | Found::Remembered(secret) => secret,
        Found::Missing if !knows_upstream => {
            return released(&format!("Secret {:?} does not exist", obj.secret_name()));
        }
        Found::Missing => {
            return Err(Failure::terminal(
                Reason::SecretNotFound,
                format!(
                    "Secret {:?} not found in namespace {:?}, and this process never read it: the upstream object cannot be deleted; restore the Secret, or set deletionPolicy: Orphan to leave it",
                    obj.secret_name(),
                    obj.namespace().unwrap_or_default()
                ),
            )
            .into());
        }
    };
    let client = match adapter.connect(obj, &secret) {
        Ok(client) => client,
        Err(_) if !knows_upstream => {
            return released(&format!(
                "the credentials in Secret {:?} are unusable",
                obj.secret_name()
            ));
        }
        Err(f) => return Err(f.into()),
    };
    // A reference that no longer resolves (its keyword went first) leaves the adapter to
    // what the status recorded.
    let refs = references::resolve(&ctx.client, obj)
        .await
        .unwrap_or_default();
    match adapter.delete(&client, obj, &refs, id.as_deref()).await {
        Ok(()) => Ok("upstream object deleted".into()),
        Err(f) if f.is_gone() => Ok("upstream object already gone".into()),
        Err(Failure::Terminal {
            reason: Reason::InvalidCredentials,
            ..
        }) if !knows_upstream => released(&format!(
            "the credentials in Secret {:?} are rejected",
            obj.secret_name()
        )),
        Err(f) => Err(f.into()),
    }
}

/// Spreads resyncs of objects created together over ±10% of the interval.
fn jittered(d: Duration) -> Duration {
    d.mul_f64(0.9 + 0.2 * crate::runtime::backoff::jitter_fraction())
}

#[cfg(test)]
mod tests {
    //! The decisions of the generic reconciler, against a scripted adapter (no cluster).

    use std::collections::VecDeque;

    use super::*;
    use crate::api::{SignalsKeyword, SignalsKeywordStatus};
    use crate::managed::external::Observation;

    /// What a scripted call answers: an object with this drift, none, or a failure.
    #[derive(Clone, Debug)]
    enum Answer {
        Found(Drift),
        Nothing,
        Gone,
        Down,
    }
    use Answer::*;

    #[derive(Default)]
    struct Script {
        get: VecDeque<Answer>,
        find: VecDeque<Answer>,
        update: VecDeque<Answer>,
        calls: Mutex<Vec<&'static str>>,
    }

    struct Fake(Mutex<Script>);

    type Obs = Observation<(), SignalsKeywordStatus>;

    fn found(drift: Drift) -> Obs {
        Observation {
            external_id: Some("id-1".into()),
            drift,
            status: Default::default(),
            upstream: (),
        }
    }

    impl Fake {
        fn answer(&self, call: &'static str) -> Result<Option<Obs>, Failure> {
            let mut script = self.0.lock().unwrap();
            script.calls.lock().unwrap().push(call);
            let next = match call {
                "get" => script.get.pop_front(),
                "find" => script.find.pop_front(),
                _ => script.update.pop_front(),
            };
            match next.unwrap_or(Nothing) {
                Found(d) => Ok(Some(found(d))),
                Nothing => Ok(None),
                Gone => Err(Failure::Gone {
                    message: "404".into(),
                }),
                Down => Err(Failure::Transient {
                    reason: Reason::UpstreamUnavailable,
                    message: "503".into(),
                    retry_after: None,
                }),
            }
        }
        fn calls(&self) -> Vec<&'static str> {
            self.0.lock().unwrap().calls.lock().unwrap().clone()
        }
    }

    impl ExternalResource<SignalsKeyword> for Fake {
        type Client = ();
        type Upstream = ();
        fn connect(
            &self,
            _: &SignalsKeyword,
            _: &k8s_openapi::api::core::v1::Secret,
        ) -> Result<(), Failure> {
            Ok(())
        }
        fn claims(&self, _: &SignalsKeyword) -> Vec<String> {
            vec![]
        }
        fn recorded_id(&self, obj: &SignalsKeyword) -> Option<String> {
            obj.status.as_ref().and_then(|s| s.keyword_id.clone())
        }
        async fn get(
            &self,
            _: &(),
            _: &SignalsKeyword,
            _: &Resolved,
            _: &str,
        ) -> Result<Option<Obs>, Failure> {
            self.answer("get")
        }
        async fn find(
            &self,
            _: &(),
            _: &SignalsKeyword,
            _: &Resolved,
        ) -> Result<Option<Obs>, Failure> {
            self.answer("find")
        }
        async fn create(&self, _: &(), _: &SignalsKeyword, _: &Resolved) -> Result<Obs, Failure> {
            self.0.lock().unwrap().calls.lock().unwrap().push("create");
            Ok(found(Drift::None))
        }
        async fn update(
            &self,
            _: &(),
            _: &SignalsKeyword,
            _: &Resolved,
            _: &Obs,
        ) -> Result<Obs, Failure> {
            self.answer("update")
                .map(|o| o.unwrap_or_else(|| found(Drift::None)))
        }
        async fn delete(
            &self,
            _: &(),
            _: &SignalsKeyword,
            _: &Resolved,
            _: Option<&str>,
        ) -> Result<(), Failure> {
            Ok(())
        }
    }

    fn keyword(known_id: bool) -> SignalsKeyword {
        let mut k: SignalsKeyword = serde_json::from_value(serde_json::json!({
            "apiVersion": "ctwa.dev/v1alpha1", "kind": "SignalsKeyword",
            "metadata": {"name": "k", "namespace": "n"},
            "spec": {"clientId": "c", "appId": "a", "keyword": "k", "adId": "ad", "secretRef": {"name": "s"}}
        }))
        .unwrap();
        if known_id {
            k.status = Some(SignalsKeywordStatus {
                keyword_id: Some("id-1".into()),
                ..Default::default()
            });
        }
        k
    }

    #[tokio::test]
    async fn observe_then_converge_decides_like_the_spec_says() {
        struct Case {
            name: &'static str,
            known_id: bool,
            get: Vec<Answer>,
            find: Vec<Answer>,
            update: Vec<Answer>,
            calls: Vec<&'static str>,
            /// The Event reason, or the failure when it ends in one.
            outcome: Result<Option<Reason>, &'static str>,
        }
        let cases = vec![
            Case {
                name: "nothing by key: create",
                known_id: false,
                get: vec![],
                find: vec![Nothing],
                update: vec![],
                calls: vec!["find", "create"],
                outcome: Ok(Some(Reason::Creating)),
            },
            Case {
                name: "found by key, in sync: adopt, write nothing",
                known_id: false,
                get: vec![],
                find: vec![Found(Drift::None)],
                update: vec![],
                calls: vec!["find"],
                outcome: Ok(None),
            },
            Case {
                name: "known id, in sync: no natural-key search",
                known_id: true,
                get: vec![Found(Drift::None)],
                find: vec![],
                update: vec![],
                calls: vec!["get"],
                outcome: Ok(None),
            },
            Case {
                name: "known id gone (404): natural key, then create",
                known_id: true,
                get: vec![Gone],
                find: vec![Nothing],
                update: vec![],
                calls: vec!["get", "find", "create"],
                outcome: Ok(Some(Reason::Creating)),
            },
            Case {
                name: "known id archived: adopt by natural key",
                known_id: true,
                get: vec![Nothing],
                find: vec![Found(Drift::None)],
                update: vec![],
                calls: vec!["get", "find"],
                outcome: Ok(None),
            },
            Case {
                name: "reading by id fails: no create behind its back",
                known_id: true,
                get: vec![Down],
                find: vec![],
                update: vec![],
                calls: vec!["get"],
                outcome: Err("transient"),
            },
            Case {
                name: "drift: update",
                known_id: true,
                get: vec![Found(Drift::Differs)],
                find: vec![],
                update: vec![Found(Drift::None)],
                calls: vec!["get", "update"],
                outcome: Ok(Some(Reason::Updating)),
            },
            Case {
                name: "404 on update: re-observe and re-create, never Stalled",
                known_id: true,
                get: vec![Found(Drift::Differs), Gone],
                find: vec![Nothing],
                update: vec![Gone],
                calls: vec!["get", "update", "get", "find", "create"],
                outcome: Ok(Some(Reason::Creating)),
            },
            Case {
                name: "404 on update, back in sync when read again",
                known_id: true,
                get: vec![Found(Drift::Differs), Found(Drift::None)],
                find: vec![],
                update: vec![Gone],
                calls: vec!["get", "update", "get"],
                outcome: Ok(None),
            },
            Case {
                name: "unknown drift: asserted again without an Event",
                known_id: false,
                get: vec![],
                find: vec![Found(Drift::Unknown)],
                update: vec![Found(Drift::Unknown)],
                calls: vec!["find", "update"],
                outcome: Ok(None),
            },
            Case {
                name: "unknown drift, 404 on assert: the failure stands",
                known_id: false,
                get: vec![],
                find: vec![Found(Drift::Unknown)],
                update: vec![Gone],
                calls: vec!["find", "update"],
                outcome: Err("terminal"),
            },
            Case {
                name: "a failing update is reported, not retried here",
                known_id: true,
                get: vec![Found(Drift::Differs)],
                find: vec![],
                update: vec![Down],
                calls: vec!["get", "update"],
                outcome: Err("transient"),
            },
        ];
        for case in cases {
            let fake = Fake(Mutex::new(Script {
                get: case.get.into(),
                find: case.find.into(),
                update: case.update.into(),
                ..Default::default()
            }));
            let obj = keyword(case.known_id);
            let refs = Resolved::default();
            let result = async {
                let observed = observe(&fake, &(), &obj, &refs).await?;
                converge(&fake, &(), &obj, &refs, observed).await
            }
            .await;
            let outcome = result.map(|(_, verb)| verb).map_err(|f| outcome_of(&f));
            assert_eq!(outcome, case.outcome, "{}", case.name);
            assert_eq!(fake.calls(), case.calls, "{}", case.name);
        }
    }
}
