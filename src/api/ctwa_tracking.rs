use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{CommonStatus, DeletionPolicy, SecretReference, default_true};

/// CTWA (Click-to-WhatsApp) tracking for one WhatsApp channel, switched on or off at the
/// 360dialog Hub.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "ctwa.dev",
    version = "v1alpha1",
    kind = "CtwaTracking",
    plural = "ctwatrackings",
    singular = "ctwatracking",
    shortname = "ctt",
    category = "ctwa",
    namespaced,
    status = "CtwaTrackingStatus",
    doc = "CtwaTracking turns Click-to-WhatsApp ad tracking on or off for one WhatsApp channel (number) at the 360dialog Hub.",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(name = "Channel", type_ = "string", json_path = ".spec.channelId"),
    printcolumn(name = "Enabled", type_ = "boolean", json_path = ".status.enabled"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct CtwaTrackingSpec {
    /// 360dialog partner id. Immutable.
    #[schemars(length(min = 1, max = 128), regex(pattern = super::common::ID_PATTERN))]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": "partnerId is immutable"}]))]
    pub partner_id: String,
    /// 360dialog client id. Immutable.
    #[schemars(length(min = 1, max = 128), regex(pattern = super::common::ID_PATTERN))]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": "clientId is immutable"}]))]
    pub client_id: String,
    /// WhatsApp channel id (the number's channel at the Hub). Immutable.
    #[schemars(length(min = 1, max = 128), regex(pattern = super::common::ID_PATTERN))]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": "channelId is immutable"}]))]
    pub channel_id: String,
    /// Whether CTWA tracking should be on (true) or off (false) for the channel.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Secret with the 360dialog credentials: `username` and `password`, or `token`.
    pub secret_ref: SecretReference,
    /// Delete calls disable_ctwa when this object is deleted; Orphan leaves tracking as it is.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
}

/// Observed state of a CtwaTracking.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CtwaTrackingStatus {
    #[serde(flatten)]
    pub common: CommonStatus,
    /// The tracking state last applied at the Hub.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}
