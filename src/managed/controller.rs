//! Runs the generic reconciler for one kind: watches the kind and the Secrets it references.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::Resource;
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector;
use kube::runtime::{Controller, PredicateConfig, WatchStreamExt, watcher};

use super::credentials::Credentials;
use super::external::ExternalResource;
use super::ownership::Peers;
use super::reconciler::{Context, error_policy, reconcile};
use super::resource::{Managed, uses_secret};
use crate::api::{EXTERNAL_ID_ANNOTATION, PAUSED_ANNOTATION, RESYNC_INTERVAL_ANNOTATION};
use crate::runtime::scope::{Scope, Trigger, referencing, shard_acquisitions};

/// What triggers a reconcile: the spec (generation), deletion and the annotations the user
/// steers with. The operator's own status writes change none of these, so they never
/// trigger a reconcile of their own.
pub(super) fn trigger_hash<K: Resource>(obj: &K) -> Option<u64> {
    let meta = obj.meta();
    let annotations = meta.annotations.as_ref();
    let annotation = |k: &str| annotations.and_then(|a| a.get(k)).cloned();
    let mut h = DefaultHasher::new();
    (
        meta.generation,
        meta.deletion_timestamp.is_some(),
        annotation(PAUSED_ANNOTATION),
        annotation(EXTERNAL_ID_ANNOTATION),
        annotation(RESYNC_INTERVAL_ANNOTATION),
    )
        .hash(&mut h);
    Some(h.finish())
}

/// Runs the controller of kind `K` until `scope.shutdown` fires. `peers` is shared by the
/// controllers of `K` in every watched namespace (ownership is decided across them).
pub async fn run<K, A>(scope: Scope, adapter: A, triggers: Vec<Trigger<K>>, peers: Arc<Peers<K>>)
where
    K: Managed,
    A: ExternalResource<K>,
{
    let client = scope.client.clone();
    let api: Api<K> = scope.api();
    let secret_api: Api<PartialObjectMeta<Secret>> = scope.api();
    let (reader, writer) = reflector::store();
    let (secrets_seen, secrets_writer) = reflector::store();
    let (member, released) = peers.join();
    let ctx = Arc::new(Context::new(
        client,
        adapter,
        scope.resync,
        scope.metrics.clone(),
        peers,
        scope.shards.clone(),
        Credentials::new(secrets_seen),
    ));
    let indexer = ctx.clone();
    let objects = watcher(api, watcher::Config::default())
        .default_backoff()
        .reflect(writer)
        .inspect(move |event| {
            if let Ok(event) = event {
                let claims = |o: &K| indexer.adapter.claims(o);
                indexer.peers.observe(member, event, &claims);
            }
        })
        .applied_objects()
        .predicate_filter(trigger_hash, PredicateConfig::default());

    let store = reader.clone();
    // A Secret change (rotation, a fixed password) re-reconciles the objects using it. Only
    // metadata is watched (`PartialObjectMeta`): the contents are read when a reconcile needs
    // them.
    let secrets = watcher(secret_api, watcher::Config::default())
        .default_backoff()
        .reflect(secrets_writer)
        .touched_objects();

    let mut controller = Controller::for_stream(objects, reader.clone()).reconcile_on(released);
    let mut triggers = triggers;
    if scope.shards.count() > 1 {
        triggers.push(shard_acquisitions(scope.shards.clone()));
    }
    for trigger in triggers {
        controller = controller.reconcile_on(trigger(reader.clone()));
    }
    controller
        .watches_stream(secrets, move |secret| {
            referencing(&store, &secret, |o: &K, name| uses_secret(o, name))
        })
        .graceful_shutdown_on(scope.shutdown.clone().cancelled_owned())
        .run(reconcile, error_policy, ctx)
        .for_each(|_| std::future::ready(()))
        .await;
}
