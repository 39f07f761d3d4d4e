use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub const GROUP: &str = "ctwa.dev";
pub const VERSION: &str = "v1alpha1";
pub const CATEGORY: &str = "ctwa";

pub const FINALIZER: &str = "ctwa.dev/finalizer";
pub const EXTERNAL_ID_ANNOTATION: &str = "ctwa.dev/external-id";
pub const PAUSED_ANNOTATION: &str = "ctwa.dev/paused";
pub const RESYNC_INTERVAL_ANNOTATION: &str = "ctwa.dev/resync-interval";

/// Upstream identifiers end up in URL paths, so they are restricted to a safe alphabet.
pub const ID_PATTERN: &str = "^[A-Za-z0-9_-]+$";

/// A reference to a Secret in the same namespace as the object.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct SecretReference {
    /// Name of the Secret, in the same namespace as this object, that holds the upstream
    /// credentials.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// A reference to another object of this operator in the same namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct LocalObjectReference {
    /// Name of the referenced object, in the same namespace as this object.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// What happens upstream when the Kubernetes object is deleted.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum DeletionPolicy {
    /// Remove or disable the upstream object before the Kubernetes object goes away.
    #[default]
    Delete,
    /// Leave the upstream object as it is.
    Orphan,
}

/// Whether the operator writes upstream or only reads.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ManagementPolicy {
    /// Create, update and delete the upstream object to match the spec.
    #[default]
    Manage,
    /// Only find the upstream object and report it in status.observed; never write or delete.
    Observe,
}

/// Status fields shared by every kind.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CommonStatus {
    /// The metadata.generation that the status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready, Reconciling and Stalled (kstatus-compatible), plus kind-specific conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The last successful sync with upstream: for a managed kind, the last reconcile that
    /// wrote upstream or changed the status (re-reads alone leave it, so that steady state
    /// writes nothing); for a ConversionBridge, the last successful poll or forward.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_time: Option<Time>,
}

pub(crate) fn default_true() -> bool {
    true
}
