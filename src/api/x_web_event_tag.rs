use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{CommonStatus, DeletionPolicy, ManagementPolicy, SecretReference};

/// A web event tag (single event tag) in an X Ads account.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "ctwa.dev",
    version = "v1alpha1",
    kind = "XWebEventTag",
    plural = "xwebeventtags",
    singular = "xwebeventtag",
    shortname = "xwet",
    category = "ctwa",
    namespaced,
    status = "XWebEventTagStatus",
    doc = "XWebEventTag is one web event tag (a single event tag) in an X Ads account; conversions are reported against its id.",
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
    printcolumn(name = "Tag-ID", type_ = "string", json_path = ".status.tagId"),
    printcolumn(name = "Type", type_ = "string", json_path = ".spec.type"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "self.viewThroughWindow <= self.clickWindow", "message": "viewThroughWindow must be less than or equal to clickWindow"}
]))]
pub struct XWebEventTagSpec {
    /// X Ads account id. Immutable.
    #[schemars(length(min = 1, max = 128), regex(pattern = super::common::ID_PATTERN))]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": "accountId is immutable"}]))]
    pub account_id: String,
    /// Name of the tag, unique among the account's tags (used to adopt an existing tag).
    #[schemars(length(min = 1, max = 255))]
    pub name: String,
    /// The conversion type the tag records.
    #[serde(rename = "type")]
    pub tag_type: WebEventTagType,
    /// Post-engagement attribution window in days: 1, 7, 14 or 30.
    #[schemars(extend("enum" = [1, 7, 14, 30]))]
    pub click_window: i32,
    /// Post-view attribution window in days: 0, 1, 7, 14 or 30, at most clickWindow.
    #[schemars(extend("enum" = [0, 1, 7, 14, 30]))]
    pub view_through_window: i32,
    /// Whether X builds a retargeting audience from this tag.
    #[serde(default)]
    pub retargeting_enabled: bool,
    /// Manage converges the upstream tag; Observe only reads it into status.observed.
    #[serde(default)]
    pub management_policy: ManagementPolicy,
    /// Secret with the X Ads OAuth 1.0a credentials: `consumer-key`, `consumer-secret`,
    /// `access-token`, `access-token-secret`.
    pub secret_ref: SecretReference,
    /// Delete deletes the upstream tag when this object is deleted; Orphan leaves it.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
}

/// Conversion types of an X web event tag.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum WebEventTagType {
    AddedPaymentInfo,
    AddToCart,
    AddToWishlist,
    CheckoutInitiated,
    ContentView,
    Custom,
    Download,
    ProductCustomization,
    Purchase,
    Search,
    SignUp,
    SiteVisit,
    StartTrial,
    Subscribe,
}

/// Observed state of an XWebEventTag.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct XWebEventTagStatus {
    #[serde(flatten)]
    pub common: CommonStatus,
    /// Id of the upstream web event tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag_id: Option<String>,
    /// The upstream tag as last read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed: Option<ObservedWebEventTag>,
}

/// A web event tag as the X Ads API reports it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObservedWebEventTag {
    /// Upstream tag id.
    pub id: String,
    /// Tag name.
    pub name: String,
    /// Conversion type.
    #[serde(rename = "type")]
    pub tag_type: String,
    /// Post-engagement attribution window in days.
    pub click_window: i32,
    /// Post-view attribution window in days.
    pub view_through_window: i32,
    /// Whether retargeting is enabled.
    pub retargeting_enabled: bool,
    /// Upstream status text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}
