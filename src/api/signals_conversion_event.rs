use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{CommonStatus, DeletionPolicy, LocalObjectReference, SecretReference};

/// The event that counts as a campaign's conversion in 360dialog's Signals API.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "ctwa.dev",
    version = "v1alpha1",
    kind = "SignalsConversionEvent",
    plural = "signalsconversionevents",
    singular = "signalsconversionevent",
    shortname = "sce",
    category = "ctwa",
    namespaced,
    status = "SignalsConversionEventStatus",
    doc = "SignalsConversionEvent picks the event that Signals counts as the conversion of one campaign (POST converted_events): from then on such events are also reported as type converted, which is what a ConversionBridge forwards by default.",
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
    printcolumn(name = "Campaign", type_ = "string", json_path = ".spec.campaignId"),
    printcolumn(name = "Type", type_ = "string", json_path = ".spec.type"),
    printcolumn(
        name = "Type-ID",
        type_ = "string",
        json_path = ".status.applied.typeId",
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
    {"rule": "self.type != 'keyword' || (has(self.typeId) != has(self.keywordRef))", "message": "type keyword needs exactly one of typeId (a keyword id) or keywordRef"},
    {"rule": "!has(self.keywordRef) || self.type == 'keyword'", "message": "keywordRef is only allowed when type is keyword"},
    {"rule": "!(self.type in ['button', 'button_reply', 'list', 'list_reply']) || has(self.typeId)", "message": "types button, button_reply, list and list_reply need typeId (the button or list item id)"}
]))]
pub struct SignalsConversionEventSpec {
    /// 360dialog client id. Immutable.
    #[schemars(length(min = 1, max = 128), regex(pattern = super::common::ID_PATTERN))]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": "clientId is immutable"}]))]
    pub client_id: String,
    /// Signals app id. Immutable.
    #[schemars(length(min = 1, max = 128), regex(pattern = super::common::ID_PATTERN))]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": "appId is immutable"}]))]
    pub app_id: String,
    /// The ad campaign whose conversion this is (the campaign_id of its events). Immutable.
    #[schemars(length(min = 1, max = 128), regex(pattern = super::common::ID_PATTERN))]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": "campaignId is immutable"}]))]
    pub campaign_id: String,
    /// The event type that counts as the campaign's conversion. It must be one the app offers
    /// (GET event_types); another is reported as Stalled with reason UpstreamRejected.
    #[serde(rename = "type")]
    pub event_type: ConversionEventType,
    /// The id of the event: the keyword id (type keyword), the button or list item id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    pub type_id: Option<String>,
    /// The value of the event, for example the button text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub type_value: Option<String>,
    /// For type keyword: a SignalsKeyword in the same namespace whose keyword id is used
    /// (followed when it changes). Exactly one of keywordRef and typeId.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyword_ref: Option<LocalObjectReference>,
    /// Secret with the 360dialog credentials: `username` and `password`, or `token`.
    pub secret_ref: SecretReference,
    /// The Signals API cannot remove a campaign's conversion, so a deletion never calls it:
    /// with either policy (Delete, the default, or Orphan) the campaign's conversion is left as
    /// it is. Point another SignalsConversionEvent at the campaign to change it.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
}

/// The Signals event types that can count as a campaign's conversion.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConversionEventType {
    Button,
    ButtonReply,
    Conversation,
    Engagement,
    Keyword,
    Link,
    List,
    ListReply,
}

impl ConversionEventType {
    /// The value the Signals API uses.
    pub fn as_str(self) -> &'static str {
        match self {
            ConversionEventType::Button => "button",
            ConversionEventType::ButtonReply => "button_reply",
            ConversionEventType::Conversation => "conversation",
            ConversionEventType::Engagement => "engagement",
            ConversionEventType::Keyword => "keyword",
            ConversionEventType::Link => "link",
            ConversionEventType::List => "list",
            ConversionEventType::ListReply => "list_reply",
        }
    }
}

/// Observed state of a SignalsConversionEvent.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SignalsConversionEventStatus {
    #[serde(flatten)]
    pub common: CommonStatus,
    /// What was last sent to Signals as the campaign's conversion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied: Option<AppliedConversion>,
}

/// A campaign's conversion as sent to Signals.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AppliedConversion {
    /// The event type.
    #[serde(rename = "type")]
    pub event_type: String,
    /// The event id (for keywordRef: the keyword id it resolved to).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub type_id: Option<String>,
    /// The event value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub type_value: Option<String>,
}
