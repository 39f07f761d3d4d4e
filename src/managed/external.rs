//! The adapter each managed kind implements: how to find, create, update and delete its
//! upstream object. Everything else (finalizers, adoption, Observe mode, conditions, Events,
//! backoff) is the generic reconciler's.

use std::future::Future;

use k8s_openapi::api::core::v1::Secret;
use serde_json::{Map, Value};

use super::resource::Managed;
use crate::runtime::failure::Failure;

/// What the adapter found upstream.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Observation {
    /// The upstream object exists (and is usable: not archived or deleted).
    pub exists: bool,
    /// It matches the spec.
    pub up_to_date: bool,
    /// Its upstream id, recorded in `ctwa.dev/external-id`.
    pub external_id: Option<String>,
    /// Kind-specific status fields (camelCase keys), merged into `.status`.
    pub status: Map<String, Value>,
    /// The upstream object as read, for the adapter's own `update` (saves a second read).
    pub upstream: Value,
}

pub trait ExternalResource<K: Managed>: Send + Sync + 'static {
    /// A client bound to the object's credentials.
    type Client: Send + Sync;

    /// Builds a client from the object's Secret (Terminal failure on missing keys).
    fn connect(&self, obj: &K, secret: &Secret) -> Result<Self::Client, Failure>;

    /// Finds the upstream object: by `ctwa.dev/external-id` first, then by natural key.
    fn observe(
        &self,
        client: &Self::Client,
        obj: &K,
    ) -> impl Future<Output = Result<Observation, Failure>> + Send;

    fn create(
        &self,
        client: &Self::Client,
        obj: &K,
    ) -> impl Future<Output = Result<Observation, Failure>> + Send;

    fn update(
        &self,
        client: &Self::Client,
        obj: &K,
        observed: &Observation,
    ) -> impl Future<Output = Result<Observation, Failure>> + Send;

    /// Removes or disables the upstream object; "already gone" is success.
    fn delete(
        &self,
        client: &Self::Client,
        obj: &K,
    ) -> impl Future<Output = Result<(), Failure>> + Send;
}
