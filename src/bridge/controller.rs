//! The ConversionBridge controller: resolves a bridge's spec and the objects it references
//! (Secrets, the event tag, its postback token) into a worker configuration and hands it to
//! the [`Supervisor`]. It makes no upstream calls itself; the worker does.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::Action;
use kube::runtime::reflector;
use kube::runtime::{Controller, PredicateConfig, WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use rand::RngCore;

use super::mapping::{EventFilter, Mapper};
use super::source::{self, PollSpec};
use super::state::Phase;
use super::supervisor::{Desired, Supervisor};
use super::worker::WorkerConfig;
use crate::api::{ConversionBridge, SignalsEventType, XWebEventTag, postback_token_secret};
use crate::metrics::Metrics;
use crate::runtime::backoff::Backoff;
use crate::runtime::conditions::{READY, Reason, find};
use crate::runtime::duration::parse_duration;
use crate::runtime::failure::Failure;
use crate::runtime::scope::{KubeError, Scope, referencing, shard_acquisitions};
use crate::upstream::budget::BudgetRegistry;
use crate::upstream::clients::{DialogUpstream, XUpstream, secret_data};
use crate::upstream::secret::SecretString;

/// How often a bridge's references are checked again without any change.
const RECHECK: Duration = Duration::from_secs(300);
/// X's per-account budget window.
const BUDGET_WINDOW: Duration = Duration::from_secs(15 * 60);

/// What the bridge controller works with.
pub struct BridgeContext {
    pub kube: kube::Client,
    pub supervisor: Arc<Supervisor>,
    pub dialog: DialogUpstream,
    pub x: XUpstream,
    /// One conversions budget per X account, shared by every bridge that sends to it.
    pub budgets: Arc<BudgetRegistry>,
    pub metrics: Arc<Metrics>,
}

/// Reconcile triggers: spec (generation), deletion and identity. The operator's own status
/// writes do not trigger anything.
fn trigger_hash(bridge: &ConversionBridge) -> Option<u64> {
    let mut h = DefaultHasher::new();
    (
        bridge.meta().generation,
        bridge.meta().deletion_timestamp.is_some(),
        bridge.uid(),
    )
        .hash(&mut h);
    Some(h.finish())
}

/// Runs the bridge controller in `scope` until its shutdown fires.
pub async fn run(ctx: Arc<BridgeContext>, scope: Scope) {
    let (bridges, secrets, tags): (
        Api<ConversionBridge>,
        Api<PartialObjectMeta<Secret>>,
        Api<XWebEventTag>,
    ) = (scope.api(), scope.api(), scope.api());
    let (reader, writer) = reflector::store();
    ctx.supervisor.watch_catalog(reader.clone());
    let supervisor = ctx.supervisor.clone();
    let objects = watcher(bridges, watcher::Config::default())
        .default_backoff()
        .reflect(writer)
        .inspect(move |event| {
            // Deleted bridges never reach reconcile: stop their workers here.
            if let Ok(watcher::Event::Delete(bridge)) = event {
                supervisor.remove(&bridge.namespace().unwrap_or_default(), &bridge.name_any());
            }
        })
        .applied_objects()
        .predicate_filter(trigger_hash, PredicateConfig::default());
    let store = reader.clone();
    let secret_changes = watcher(secrets, watcher::Config::default())
        .default_backoff()
        .touched_objects();
    let tag_store = reader.clone();
    let gained = reader.clone();
    let tag_changes = watcher(tags, watcher::Config::default())
        .default_backoff()
        .touched_objects();
    let mut controller = Controller::for_stream(objects, reader);
    if scope.shards.count() > 1 {
        controller = controller.reconcile_on(shard_acquisitions(scope.shards.clone())(gained));
    }
    controller
        .watches_stream(secret_changes, move |secret| {
            referencing(&store, &secret, uses_secret)
        })
        .watches_stream(tag_changes, move |tag| {
            referencing(&tag_store, &tag, |b: &ConversionBridge, name| {
                b.spec
                    .destination
                    .x
                    .event_tag_ref
                    .as_ref()
                    .is_some_and(|r| r.name == name)
            })
        })
        .graceful_shutdown_on(scope.shutdown.clone().cancelled_owned())
        .run(reconcile, error_policy, ctx)
        .for_each(|_| std::future::ready(()))
        .await;
}

/// A bridge that cannot run: stalled until the user acts, or waiting for something to change.
fn hold(failure: Failure) -> Desired {
    let stalls = failure.stalls();
    let (reason, message) = failure.into_parts();
    Desired::Hold(if stalls {
        Phase::Stalled { reason, message }
    } else {
        Phase::Waiting { reason, message }
    })
}

fn uses_secret(bridge: &ConversionBridge, name: &str) -> bool {
    bridge.spec.source.signals.secret_ref.name == name
        || bridge.spec.destination.x.secret_ref.name == name
        || postback_token_secret(&bridge.name_any()) == name
}

async fn reconcile(
    bridge: Arc<ConversionBridge>,
    ctx: Arc<BridgeContext>,
) -> Result<Action, KubeError> {
    // Another process's shard runs it (this one is woken when it gains the shard).
    let shards = ctx.supervisor.shards();
    let Some(_busy) = shards.enter(
        bridge.meta().namespace.as_deref().unwrap_or_default(),
        &bridge.name_any(),
    ) else {
        return Ok(Action::await_change());
    };
    let started = std::time::Instant::now();
    let result = reconcile_once(bridge, &ctx).await;
    let outcome = match &result {
        Ok((_, outcome)) => *outcome,
        Err(_) => "error",
    };
    ctx.metrics
        .reconcile("ConversionBridge", outcome, started.elapsed());
    result.map(|(action, _)| action)
}

async fn reconcile_once(
    bridge: Arc<ConversionBridge>,
    ctx: &BridgeContext,
) -> Result<(Action, &'static str), KubeError> {
    if bridge.meta().deletion_timestamp.is_some() {
        ctx.supervisor
            .remove(&bridge.namespace().unwrap_or_default(), &bridge.name_any());
        return Ok((Action::await_change(), "success"));
    }
    let desired = match resolve(&bridge, ctx).await {
        Ok(desired) => desired,
        Err(Resolve::Kube(e)) => return Err(e),
        Err(Resolve::Failed(failure)) => hold(failure),
    };
    // A problem with the postback token holds the bridge and shows in its status; a
    // suspended bridge needs no token.
    let mut token = None;
    let desired = match desired {
        Desired::Run { .. } if bridge.spec.source.postbacks.enabled => {
            match ensure_token(&bridge, &ctx.kube).await {
                Ok(t) => {
                    token = Some(t);
                    desired
                }
                Err(failure) => hold(failure),
            }
        }
        other => other,
    };
    let outcome = match &desired {
        Desired::Run { .. } => "success",
        Desired::Hold(Phase::Stalled { .. }) => "terminal",
        Desired::Hold(_) => "waiting",
    };
    let recheck = match &desired {
        Desired::Hold(Phase::Waiting { .. }) => Duration::from_secs(15),
        _ => RECHECK,
    };
    ctx.supervisor.ensure(&bridge, desired, token);
    Ok((Action::requeue(recheck), outcome))
}

fn error_policy(bridge: Arc<ConversionBridge>, error: &KubeError, _: Arc<BridgeContext>) -> Action {
    tracing::warn!(bridge = %bridge.name_any(), %error, "bridge reconcile failed");
    Action::requeue(Duration::from_secs(5))
}

enum Resolve {
    Kube(KubeError),
    Failed(Failure),
}

impl From<kube::Error> for Resolve {
    fn from(e: kube::Error) -> Self {
        Resolve::Kube(KubeError(e))
    }
}

impl From<Failure> for Resolve {
    fn from(f: Failure) -> Self {
        Resolve::Failed(f)
    }
}

async fn secret(api: &Api<Secret>, name: &str) -> Result<Secret, Resolve> {
    api.get_opt(name).await?.ok_or_else(|| {
        Failure::terminal(Reason::SecretNotFound, format!("Secret {name:?} not found")).into()
    })
}

fn duration(field: &str, text: &str) -> Result<Duration, Resolve> {
    parse_duration(text)
        .map_err(|e| Failure::terminal(Reason::UpstreamRejected, format!("{field}: {e}")).into())
}

/// The worker configuration the spec asks for, or why there is none.
async fn resolve(bridge: &ConversionBridge, ctx: &BridgeContext) -> Result<Desired, Resolve> {
    let spec = &bridge.spec;
    if spec.suspend {
        return Ok(Desired::Hold(Phase::Suspended));
    }
    let namespace = bridge.namespace().unwrap_or_default();
    let secrets: Api<Secret> = Api::namespaced(ctx.kube.clone(), &namespace);
    let signals = &spec.source.signals;
    let x = &spec.destination.x;

    let dialog_secret = secret(&secrets, &signals.secret_ref.name).await?;
    let signals_client = ctx
        .dialog
        .budgeted_signals_client(&signals.client_id, &signals.app_id, &dialog_secret)
        .map_err(Failure::from)?;
    let x_secret = secret(&secrets, &x.secret_ref.name).await?;
    let event_id = match (&x.event_id, &x.event_tag_ref) {
        (Some(id), _) => id.clone(),
        (None, Some(reference)) => tag_id(&ctx.kube, &namespace, &reference.name).await?,
        (None, None) => {
            return Err(Failure::terminal(
                Reason::UpstreamRejected,
                "exactly one of eventId or eventTagRef must be set",
            )
            .into());
        }
    };
    let budget = ctx.budgets.budget(
        &format!("x/{}", x.pixel_id),
        spec.rate_limit.events_per15_min.max(1) as u64,
        BUDGET_WINDOW,
    );
    let x_client = ctx
        .x
        .client(&x_secret)
        .map_err(Failure::from)?
        .with_budget(budget.clone());

    let single = |values: Vec<String>| (values.len() == 1).then(|| values[0].clone());
    let type_names: Vec<String> = signals
        .event_types
        .iter()
        .filter_map(|t| serde_json::to_value(t).ok()?.as_str().map(String::from))
        .collect();
    let config = WorkerConfig {
        namespace: namespace.clone(),
        name: bridge.name_any(),
        signals: signals_client,
        x: x_client,
        budget,
        pixel_id: x.pixel_id.clone(),
        mapper: Mapper::new(
            EventFilter {
                app_id: signals.app_id.clone(),
                time_zone: match signals.time_zone.as_str() {
                    "UTC" => None,
                    name => Some(jiff::tz::TimeZone::get(name).map_err(|_| {
                        Failure::terminal(
                            Reason::UpstreamRejected,
                            format!("timeZone: {name:?} is not an IANA time zone name"),
                        )
                    })?),
                },
                types: signals
                    .event_types
                    .iter()
                    .copied()
                    .collect::<std::collections::HashSet<SignalsEventType>>(),
                ad_ids: signals.ad_ids.iter().cloned().collect(),
            },
            &event_id,
        ),
        poll: PollSpec {
            start: bridge.start_time(),
            lookback: duration("lookback", &signals.lookback)?,
            interval: duration("pollInterval", &signals.poll_interval)?,
            phase: source::phase_of(&bridge.uid().unwrap_or_default()),
            event_type: single(type_names),
            ad_id: single(signals.ad_ids.clone()),
        },
        max_batch: spec.batching.max_batch_size.clamp(1, 500) as usize,
        flush_interval: duration("flushInterval", &spec.batching.flush_interval)?,
        backoff: Backoff::BRIDGE,
    };
    let mut h = DefaultHasher::new();
    (
        bridge.meta().generation,
        dialog_secret.resource_version(),
        x_secret.resource_version(),
        event_id,
    )
        .hash(&mut h);
    Ok(Desired::Run {
        fingerprint: h.finish(),
        config: Box::new(config),
    })
}

/// The `tagId` of the referenced XWebEventTag. A tag that has one keeps the bridge forwarding
/// while it is briefly not Ready (a failed drift check, SPEC 7.2); only a tag without an id,
/// one being deleted, or one found missing upstream holds the bridge.
async fn tag_id(kube: &kube::Client, namespace: &str, name: &str) -> Result<String, Resolve> {
    let tags: Api<XWebEventTag> = Api::namespaced(kube.clone(), namespace);
    let waiting = |why: &str| -> Resolve {
        Failure::Waiting {
            reason: Reason::DependencyNotReady,
            message: format!("XWebEventTag {name:?} {why}"),
        }
        .into()
    };
    let Some(tag) = tags.get_opt(name).await? else {
        return Err(waiting("does not exist"));
    };
    if tag.meta().deletion_timestamp.is_some() {
        return Err(waiting("is being deleted"));
    }
    let status = tag.status.unwrap_or_default();
    let gone_upstream = find(&status.common.conditions, READY)
        .is_some_and(|c| c.status != "True" && c.reason == Reason::NotFound.as_str());
    match status.tag_id {
        Some(id) if !id.is_empty() && !gone_upstream => Ok(id),
        Some(_) => Err(waiting("was not found upstream")),
        None => Err(waiting("has no tagId yet")),
    }
}

/// The bridge's postback token, from its Secret; the Secret is created (owned by the bridge,
/// so it goes with it) with 32 random bytes when absent.
async fn ensure_token(
    bridge: &ConversionBridge,
    kube: &kube::Client,
) -> Result<SecretString, Failure> {
    let name = postback_token_secret(&bridge.name_any());
    read_or_create_token(bridge, kube)
        .await
        .map_err(|e| match e {
            TokenError::Invalid(message) => Failure::terminal(Reason::InvalidCredentials, message),
            TokenError::Kube(e) => Failure::Transient {
                reason: Reason::DependencyNotReady,
                message: format!(
                    "the postback token Secret {name:?} could not be read or created: {e}"
                ),
                retry_after: None,
            },
        })
}

enum TokenError {
    /// The Secret exists but holds no usable token: only the user can fix it.
    Invalid(String),
    Kube(kube::Error),
}

impl From<kube::Error> for TokenError {
    fn from(e: kube::Error) -> Self {
        TokenError::Kube(e)
    }
}

async fn read_or_create_token(
    bridge: &ConversionBridge,
    kube: &kube::Client,
) -> Result<SecretString, TokenError> {
    let namespace = bridge.namespace().unwrap_or_default();
    let name = postback_token_secret(&bridge.name_any());
    let secrets: Api<Secret> = Api::namespaced(kube.clone(), &namespace);
    for _ in 0..2 {
        if let Some(secret) = secrets.get_opt(&name).await? {
            let data = secret_data(&secret);
            if let Some(token) = data
                .get("token")
                .and_then(|t| String::from_utf8(t.clone()).ok())
                && !token.is_empty()
            {
                return Ok(SecretString::new(token));
            }
            return Err(TokenError::Invalid(format!(
                "the postback token Secret {name:?} has no non-empty key \"token\""
            )));
        }
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let owner = OwnerReference {
            api_version: ConversionBridge::api_version(&()).into_owned(),
            kind: ConversionBridge::kind(&()).into_owned(),
            name: bridge.name_any(),
            uid: bridge.uid().unwrap_or_default(),
            controller: Some(true),
            block_owner_deletion: None,
        };
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(namespace.clone()),
                owner_references: Some(vec![owner]),
                labels: Some(
                    [(
                        "app.kubernetes.io/managed-by".to_string(),
                        "ctwa-operator".to_string(),
                    )]
                    .into(),
                ),
                ..Default::default()
            },
            string_data: Some([("token".to_string(), token.clone())].into()),
            type_: Some("Opaque".into()),
            ..Default::default()
        };
        match secrets.create(&PostParams::default(), &secret).await {
            Ok(_) => return Ok(SecretString::new(token)),
            // Created concurrently: read it on the next round.
            Err(kube::Error::Api(e)) if e.code == 409 => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(TokenError::Kube(kube::Error::Service(
        format!("Secret {name:?} could not be read or created").into(),
    )))
}
