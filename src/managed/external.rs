//! The adapter each managed kind implements: how to read, create, update and delete its
//! upstream object, typed. Everything else — finalizers, adoption (by id, then natural key),
//! ownership, references, "already gone", Observe mode, conditions, Events, backoff — is the
//! generic reconciler's, so an adapter knows nothing about Kubernetes.

use std::future::Future;

use k8s_openapi::api::core::v1::Secret;

use super::resource::Managed;
use crate::runtime::failure::Failure;
use crate::upstream::secret::SecretString;

/// How the upstream object compares with the spec.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Drift {
    /// It matches.
    None,
    /// It differs: update it (an `Updating` Event, a status write).
    Differs,
    /// It cannot be read back (the Hub has no read endpoint): assert it again, quietly — no
    /// Event and no status write unless the status changes.
    Unknown,
}

/// What the adapter found (or left) upstream.
#[derive(Clone, Debug)]
pub struct Observation<U, S> {
    /// Its upstream id, recorded in `ctwa.dev/external-id`; None for kinds without ids.
    pub external_id: Option<String>,
    pub drift: Drift,
    /// The kind's status fields as they should read now; the reconciler fills the common part.
    pub status: S,
    /// The upstream object as read, for the adapter's own `update` (saves a second read).
    pub upstream: U,
}

/// A ConversionBridge's postback endpoint, once it takes postbacks and its token exists.
#[derive(Clone, Debug)]
pub struct BridgeEndpoint {
    pub namespace: String,
    pub name: String,
    pub token: SecretString,
}

/// What the object's references resolved to (see `Managed::references`).
#[derive(Clone, Debug, Default)]
pub struct Resolved {
    /// The referenced SignalsKeyword's keyword id.
    pub keyword_id: Option<String>,
    /// The referenced ConversionBridge's endpoint.
    pub bridge: Option<BridgeEndpoint>,
}

pub type Observed<A, K> = Observation<<A as ExternalResource<K>>::Upstream, <K as Managed>::Status>;

pub trait ExternalResource<K: Managed>: Send + Sync + 'static {
    /// A client bound to the object's credentials.
    type Client: Send + Sync;
    /// The upstream object as the client returns it.
    type Upstream: Send + Sync;

    /// Builds a client from the object's Secret (Terminal failure on missing keys).
    fn connect(&self, obj: &K, secret: &Secret) -> Result<Self::Client, Failure>;

    /// The keys under which `obj` claims an upstream object: its natural key and every id it
    /// knows. Two objects sharing a key compete for one upstream object (SPEC 7.1).
    fn claims(&self, obj: &K) -> Vec<String>;

    /// The upstream id the status recorded, for kinds with ids.
    fn recorded_id(&self, _obj: &K) -> Option<String> {
        None
    }

    /// Whether the status shows that the operator wrote something upstream for `obj` that a
    /// deletion would have to remove (for kinds without ids).
    fn wrote_upstream(&self, _obj: &K) -> bool {
        false
    }

    /// Whether the upstream object can be removed at all. When it cannot (Signals has no delete
    /// for a campaign's conversion), a deletion makes no upstream call under either policy.
    fn can_delete(&self) -> bool {
        true
    }

    /// Reads the upstream object with this id; None when it no longer counts (archived,
    /// deleted). A 404 of its own is the reconciler's to interpret.
    fn get(
        &self,
        _client: &Self::Client,
        _obj: &K,
        _refs: &Resolved,
        _id: &str,
    ) -> impl Future<Output = Result<Option<Observed<Self, K>>, Failure>> + Send {
        async { Ok(None) }
    }

    /// Finds the upstream object by natural key; None when there is none.
    fn find(
        &self,
        client: &Self::Client,
        obj: &K,
        refs: &Resolved,
    ) -> impl Future<Output = Result<Option<Observed<Self, K>>, Failure>> + Send;

    fn create(
        &self,
        client: &Self::Client,
        obj: &K,
        refs: &Resolved,
    ) -> impl Future<Output = Result<Observed<Self, K>, Failure>> + Send;

    fn update(
        &self,
        client: &Self::Client,
        obj: &K,
        refs: &Resolved,
        observed: &Observed<Self, K>,
    ) -> impl Future<Output = Result<Observed<Self, K>, Failure>> + Send;

    /// Removes or disables the upstream object with id `id` (kinds with ids), or the one the
    /// spec and `refs` point at.
    fn delete(
        &self,
        client: &Self::Client,
        obj: &K,
        refs: &Resolved,
        id: Option<&str>,
    ) -> impl Future<Output = Result<(), Failure>> + Send;
}
