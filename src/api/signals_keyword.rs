use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{CommonStatus, DeletionPolicy, ManagementPolicy, SecretReference};

/// A tracked conversion keyword in 360dialog's Signals API.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "ctwa.dev",
    version = "v1alpha1",
    kind = "SignalsKeyword",
    plural = "signalskeywords",
    singular = "signalskeyword",
    shortname = "skw",
    category = "ctwa",
    namespaced,
    status = "SignalsKeywordStatus",
    doc = "SignalsKeyword is one tracked conversion keyword in 360dialog's Signals API, scoped to one ad or shared by all numbers of the account.",
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
    printcolumn(name = "Keyword-ID", type_ = "string", json_path = ".status.keywordId"),
    printcolumn(
        name = "Keyword",
        type_ = "string",
        json_path = ".spec.keyword",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "!(self.shared && has(self.adId))", "message": "adId must not be set when shared is true: a shared keyword applies to every ad and number of the account"},
    {"rule": "has(self.adId) == has(oldSelf.adId) && (!has(self.adId) || self.adId == oldSelf.adId)", "message": "adId is immutable"}
]))]
pub struct SignalsKeywordSpec {
    /// 360dialog client id. Immutable.
    #[schemars(length(min = 1, max = 128), regex(pattern = super::common::ID_PATTERN))]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": "clientId is immutable"}]))]
    pub client_id: String,
    /// Signals app id. Immutable.
    #[schemars(length(min = 1, max = 128), regex(pattern = super::common::ID_PATTERN))]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": "appId is immutable"}]))]
    pub app_id: String,
    /// The keyword text to track in conversations. Changing it replaces the upstream keyword
    /// (the old one is archived and a new id is recorded).
    #[schemars(length(min = 1, max = 256))]
    pub keyword: String,
    /// The ad this keyword is scoped to. Immutable; must be absent when `shared` is true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128), regex(pattern = super::common::ID_PATTERN))]
    pub ad_id: Option<String>,
    /// A shared keyword applies to all numbers of the account. Immutable.
    #[serde(default)]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": "shared is immutable"}]))]
    pub shared: bool,
    /// Manage converges the upstream keyword; Observe only reads it into status.observed.
    #[serde(default)]
    pub management_policy: ManagementPolicy,
    /// Secret with the 360dialog credentials: `username` and `password`, or `token`.
    pub secret_ref: SecretReference,
    /// Delete removes the upstream keyword when this object is deleted; Orphan leaves it.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
}

/// Observed state of a SignalsKeyword.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SignalsKeywordStatus {
    #[serde(flatten)]
    pub common: CommonStatus,
    /// Id of the upstream keyword in force.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyword_id: Option<String>,
    /// Ids of keywords this object used before, most recent first (at most 10).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 10))]
    pub previous_keyword_ids: Vec<String>,
    /// The upstream keyword as last read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed: Option<ObservedKeyword>,
}

/// A keyword as the Signals API reports it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObservedKeyword {
    /// Upstream keyword id.
    pub id: String,
    /// Keyword text.
    pub keyword: String,
    /// The ad the keyword is scoped to, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ad_id: Option<String>,
    /// Whether the keyword is shared by all numbers of the account.
    pub shared: bool,
    /// `active` or `archived`.
    pub status: String,
}
