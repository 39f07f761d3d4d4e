//! Where a controller runs and what it shares with the others of its process.

use std::sync::Arc;
use std::time::Duration;

use futures::stream::BoxStream;
use kube::Resource;
use kube::api::Api;
use kube::runtime::reflector::{ObjectRef, Store};
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::sharding::Shards;
use tokio::sync::broadcast;

/// Extra reconcile triggers of a kind, built from the kind's own cache (e.g. "the postbacks
/// that reference this keyword").
pub type Trigger<K> = Box<dyn FnOnce(Store<K>) -> BoxStream<'static, ObjectRef<K>> + Send>;

/// What every controller of a process shares.
#[derive(Clone)]
pub struct Scope {
    pub client: kube::Client,
    /// None: every namespace.
    pub namespace: Option<String>,
    /// Global drift-check interval.
    pub resync: Duration,
    pub metrics: Arc<Metrics>,
    /// Cancelled when the process stops (SIGTERM) or loses its leader lease.
    pub shutdown: CancellationToken,
    /// The shards this process works on (all of them without `--shards`).
    pub shards: Arc<Shards>,
}

impl Scope {
    /// An API for kind `K` in this scope.
    pub fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        match self.namespace.as_deref() {
            Some(ns) => Api::namespaced(self.client.clone(), ns),
            None => Api::all(self.client.clone()),
        }
    }
}

/// Errors that only the Kubernetes API causes (status or metadata writes); upstream failures
/// are reported in conditions instead.
#[derive(Debug, thiserror::Error)]
#[error("kubernetes API: {0}")]
pub struct KubeError(#[from] pub kube::Error);

/// The objects in `store` that reference `changed` by name in its namespace — the one mapper
/// behind every "this changed, so reconcile what uses it" (Secrets, keywords, bridges, tags).
pub fn referencing<K, R>(
    store: &Store<K>,
    changed: &R,
    refers: impl Fn(&K, &str) -> bool,
) -> Vec<ObjectRef<K>>
where
    K: Resource<DynamicType = ()> + Clone,
    R: Resource,
{
    let namespace = &changed.meta().namespace;
    let name = changed.meta().name.as_deref().unwrap_or_default();
    store
        .state()
        .into_iter()
        .filter(|o| &o.meta().namespace == namespace && refers(o, name))
        .map(|o| ObjectRef::from_obj(o.as_ref()))
        .collect()
}

/// A trigger that reconciles the objects referencing an `R` whenever `R` changes in a way
/// `significant` notices.
pub fn follow<K, R>(
    api: Api<R>,
    significant: fn(&R) -> Option<u64>,
    refers: fn(&K, &str) -> bool,
) -> Trigger<K>
where
    K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
    R: Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    use futures::StreamExt;
    use kube::runtime::{WatchStreamExt, watcher};
    Box::new(move |store| {
        watcher(api, watcher::Config::default())
            .default_backoff()
            .touched_objects()
            .predicate_filter(significant, Default::default())
            .filter_map(|r| std::future::ready(r.ok()))
            .flat_map(move |changed| futures::stream::iter(referencing(&store, &changed, refers)))
            .boxed()
    })
}

/// Reconciles every object of a shard this process has just acquired: it may have changed
/// while another process held the shard, or while nobody did.
pub fn shard_acquisitions<K>(shards: Arc<Shards>) -> Trigger<K>
where
    K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
{
    use futures::StreamExt;
    Box::new(move |store: Store<K>| {
        let acquired = futures::stream::unfold(
            (shards.acquisitions(), shards.clone()),
            |(mut rx, shards)| async move {
                let gained = match rx.recv().await {
                    Ok(shard) => vec![shard],
                    // Missed some: every shard held now.
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        shards.held().into_iter().collect()
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                };
                Some((futures::stream::iter(gained), (rx, shards)))
            },
        );
        acquired
            .flatten()
            .flat_map(move |shard| {
                let refs: Vec<ObjectRef<K>> = store
                    .state()
                    .iter()
                    .filter(|o| {
                        let m = o.meta();
                        shards.of(
                            m.namespace.as_deref().unwrap_or_default(),
                            m.name.as_deref().unwrap_or_default(),
                        ) == shard
                    })
                    .map(|o| ObjectRef::from_obj(o.as_ref()))
                    .collect();
                futures::stream::iter(refs)
            })
            .boxed()
    })
}
