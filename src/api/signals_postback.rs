use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{
    CommonStatus, DeletionPolicy, LocalObjectReference, ManagementPolicy, SecretReference,
};

/// An instant-postback URL in 360dialog's Signals API.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "ctwa.dev",
    version = "v1alpha1",
    kind = "SignalsPostback",
    plural = "signalspostbacks",
    singular = "signalspostback",
    shortname = "spb",
    category = "ctwa",
    namespaced,
    status = "SignalsPostbackStatus",
    doc = "SignalsPostback sets one instant-postback URL in 360dialog's Signals API: for an ad, for a keyword of an ad, or for the session_start event of an ad.",
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
    printcolumn(name = "Event", type_ = "string", json_path = ".spec.event"),
    printcolumn(name = "Ad", type_ = "string", json_path = ".spec.adId"),
    printcolumn(
        name = "Keyword-ID",
        type_ = "string",
        json_path = ".status.keywordId",
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
    {"rule": "self.event != 'Keyword' || (has(self.keywordRef) != has(self.keywordId))", "message": "event Keyword needs exactly one of keywordRef or keywordId"},
    {"rule": "self.event == 'Keyword' || (!has(self.keywordRef) && !has(self.keywordId))", "message": "keywordRef and keywordId are only allowed when event is Keyword"},
    {"rule": "has(self.url) != has(self.bridgeRef)", "message": "exactly one of url or bridgeRef must be set"},
    {"rule": "!has(self.url) || (isURL(self.url) && url(self.url).getHostname() != '' && (url(self.url).getScheme() == 'https' || url(self.url).getScheme() == 'http'))", "message": "url must be an absolute https:// URL"},
    {"rule": "!has(self.url) || !self.url.lowerAscii().startsWith('http://') || self.allowInsecureUrl", "message": "url uses http://: use https://, or set allowInsecureUrl: true"}
]))]
pub struct SignalsPostbackSpec {
    /// 360dialog client id. Immutable.
    #[schemars(length(min = 1, max = 128), regex(pattern = super::common::ID_PATTERN))]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": "clientId is immutable"}]))]
    pub client_id: String,
    /// Signals app id. Immutable.
    #[schemars(length(min = 1, max = 128), regex(pattern = super::common::ID_PATTERN))]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": "appId is immutable"}]))]
    pub app_id: String,
    /// The ad whose events are posted back. Immutable.
    #[schemars(length(min = 1, max = 128), regex(pattern = super::common::ID_PATTERN))]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": "adId is immutable"}]))]
    pub ad_id: String,
    /// Which event triggers the postback. Immutable.
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": "event is immutable"}]))]
    pub event: PostbackEvent,
    /// For event Keyword: a SignalsKeyword in the same namespace whose keyword id is used
    /// (followed when it changes). Exactly one of keywordRef and keywordId.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyword_ref: Option<LocalObjectReference>,
    /// For event Keyword: an upstream keyword id. Exactly one of keywordRef and keywordId.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128), regex(pattern = super::common::ID_PATTERN))]
    pub keyword_id: Option<String>,
    /// The absolute https URL that Signals calls. Exactly one of url and bridgeRef. It may hold
    /// a token, so the operator never prints it; status shows only its SHA-256.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048))]
    pub url: Option<String>,
    /// Allow an http:// url (for tests and private networks only).
    #[serde(default)]
    pub allow_insecure_url: bool,
    /// A ConversionBridge in the same namespace: the URL becomes the bridge's postback endpoint
    /// under the operator's --public-base-url. Exactly one of url and bridgeRef.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bridge_ref: Option<LocalObjectReference>,
    /// Manage sets the URL upstream; Observe only reads it into status.observed.
    #[serde(default)]
    pub management_policy: ManagementPolicy,
    /// Secret with the 360dialog credentials: `username` and `password`, or `token`.
    pub secret_ref: SecretReference,
    /// Delete clears the upstream URL when this object is deleted; Orphan leaves it.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
}

/// The Signals event a postback is attached to.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum PostbackEvent {
    /// Any tracked event of the ad.
    Ad,
    /// A tracked keyword of the ad.
    Keyword,
    /// The start of a session that came from the ad.
    SessionStart,
}

/// Observed state of a SignalsPostback.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SignalsPostbackStatus {
    #[serde(flatten)]
    pub common: CommonStatus,
    /// The keyword id in force (resolved from keywordRef or copied from keywordId).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyword_id: Option<String>,
    /// Lowercase hex SHA-256 of the URL in force. The URL itself is never written to status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_sha256: Option<String>,
    /// The upstream postback as last read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed: Option<ObservedPostback>,
}

/// A postback as the Signals API reports it, without the URL itself.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObservedPostback {
    /// Whether a URL is set upstream.
    pub url_set: bool,
    /// Lowercase hex SHA-256 of the upstream URL, when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_sha256: Option<String>,
}
