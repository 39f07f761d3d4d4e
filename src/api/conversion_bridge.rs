use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{CommonStatus, LocalObjectReference, SecretReference};

/// Go-style durations (`90s`, `5m`, `1h30m`), the format `kubectl` users know from core kinds.
pub const DURATION_PATTERN: &str = r"^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$";

/// Forwards Click-to-WhatsApp conversions from 360dialog Signals to the X Conversion API.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "ctwa.dev",
    version = "v1alpha1",
    kind = "ConversionBridge",
    plural = "conversionbridges",
    singular = "conversionbridge",
    shortname = "cbr",
    category = "ctwa",
    namespaced,
    status = "ConversionBridgeStatus",
    doc = "ConversionBridge reads Click-to-WhatsApp events from 360dialog Signals, hashes the phone numbers and forwards them as conversions to the X Conversion API in batches.",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason",
        priority = 1
    ),
    printcolumn(
        name = "Forwarded",
        type_ = "integer",
        json_path = ".status.eventsForwarded"
    ),
    printcolumn(
        name = "Rejected",
        type_ = "integer",
        json_path = ".status.eventsRejected"
    ),
    printcolumn(
        name = "Lag",
        type_ = "integer",
        json_path = ".status.lagSeconds",
        description = "Seconds between now and the checkpoint"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct ConversionBridgeSpec {
    /// true stops polling and forwarding and keeps the checkpoint; false resumes from it.
    #[serde(default)]
    pub suspend: bool,
    /// Where conversions come from.
    pub source: BridgeSource,
    /// Where conversions go.
    pub destination: BridgeDestination,
    /// How conversions are grouped into requests.
    #[serde(default)]
    pub batching: Batching,
    /// The request budget towards X.
    #[serde(default)]
    pub rate_limit: RateLimit,
}

/// Where conversions come from.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BridgeSource {
    /// The Signals events list: the ledger that is polled from the checkpoint.
    pub signals: SignalsSource,
    /// Instant postbacks from Signals, for low latency (the events list stays the ledger).
    #[serde(default)]
    pub postbacks: PostbackSource,
}

/// The Signals events list of one app.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SignalsSource {
    /// 360dialog client id. Immutable.
    #[schemars(length(min = 1, max = 128), regex(pattern = super::common::ID_PATTERN))]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": "clientId is immutable"}]))]
    pub client_id: String,
    /// Signals app id. Immutable.
    #[schemars(length(min = 1, max = 128), regex(pattern = super::common::ID_PATTERN))]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": "appId is immutable"}]))]
    pub app_id: String,
    /// Secret with the 360dialog credentials: `username` and `password`, or `token`.
    pub secret_ref: SecretReference,
    /// Which Signals event types become conversions.
    #[serde(default = "default_event_types")]
    #[schemars(length(min = 1, max = 9), extend("x-kubernetes-list-type" = "set"))]
    pub event_types: Vec<SignalsEventType>,
    /// Only events of these ads are forwarded; empty means every ad.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 1000), inner(length(min = 1, max = 128), regex(pattern = super::common::ID_PATTERN)))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub ad_ids: Vec<String>,
    /// How often the events list is read (Go duration, at least 5s).
    #[serde(default = "default_poll_interval")]
    #[schemars(length(max = 32), regex(pattern = DURATION_PATTERN))]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "duration(self) >= duration('5s')", "message": "pollInterval must be at least 5s"}]))]
    pub poll_interval: String,
    /// Events dated before this are ignored. Default: the object's creation time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    /// Window behind the checkpoint that every poll reads again, to catch events that arrive
    /// late (Go duration, at most 48h: X de-duplicates a conversion_id for 48 hours).
    #[serde(default = "default_lookback")]
    #[schemars(length(max = 32), regex(pattern = DURATION_PATTERN))]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "duration(self) <= duration('48h')", "message": "lookback must be at most 48h"}]))]
    pub lookback: String,
    /// IANA time zone of event dates that carry no offset (the events list shows dates like
    /// `2026-11-02T10:15:30`). `conversion_time` is always sent in UTC.
    #[serde(default = "default_time_zone")]
    #[schemars(
        length(min = 1, max = 64),
        regex(pattern = r"^[A-Za-z][A-Za-z0-9_+\-/]*$")
    )]
    pub time_zone: String,
}

/// Signals event types (section 6.2 of the spec).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SignalsEventType {
    Button,
    ButtonReply,
    Conversation,
    Converted,
    Engagement,
    Keyword,
    Link,
    List,
    ListReply,
}

/// The postback receiver for this bridge.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PostbackSource {
    /// Accept instant postbacks at /postbacks/<namespace>/<name>/<token>.
    #[serde(default)]
    pub enabled: bool,
}

/// Where conversions go.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BridgeDestination {
    /// The X Conversion API.
    pub x: XDestination,
}

/// The X Conversion API of one pixel.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "has(self.eventId) != has(self.eventTagRef)", "message": "exactly one of eventId or eventTagRef must be set"}
]))]
pub struct XDestination {
    /// The X pixel id (the base id of the account's web event tags).
    #[schemars(length(min = 1, max = 128), regex(pattern = super::common::ID_PATTERN))]
    pub pixel_id: String,
    /// Id of a single event web event tag. Exactly one of eventId and eventTagRef.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128), regex(pattern = super::common::ID_PATTERN))]
    pub event_id: Option<String>,
    /// An XWebEventTag in the same namespace whose tagId is used. Exactly one of eventId and
    /// eventTagRef.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_tag_ref: Option<LocalObjectReference>,
    /// Secret with the X Ads OAuth 1.0a credentials: `consumer-key`, `consumer-secret`,
    /// `access-token`, `access-token-secret`.
    pub secret_ref: SecretReference,
}

/// How conversions are grouped into requests.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Batching {
    /// Most conversions per request to X (X accepts at most 500).
    #[serde(default = "default_max_batch_size")]
    #[schemars(range(min = 1, max = 500))]
    pub max_batch_size: i32,
    /// A partial batch is sent once its oldest conversion has waited this long (Go duration,
    /// 100ms to 5m).
    #[serde(default = "default_flush_interval")]
    #[schemars(length(max = 32), regex(pattern = DURATION_PATTERN))]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "duration(self) >= duration('100ms') && duration(self) <= duration('5m')", "message": "flushInterval must be between 100ms and 5m"}]))]
    pub flush_interval: String,
}

/// The name of the postback token Secret of the bridge named `bridge` (SPEC 4).
pub fn postback_token_secret(bridge: &str) -> String {
    format!("{bridge}-postback-token")
}

impl ConversionBridge {
    /// Nothing dated before this is forwarded: `startTime`, else the bridge's creation.
    pub fn start_time(&self) -> jiff::Timestamp {
        self.spec
            .source
            .signals
            .start_time
            .as_ref()
            .or(self.metadata.creation_timestamp.as_ref())
            .map_or_else(jiff::Timestamp::now, |t| t.0)
    }
}

impl Default for Batching {
    fn default() -> Self {
        Self {
            max_batch_size: default_max_batch_size(),
            flush_interval: default_flush_interval(),
        }
    }
}

/// The request budget towards X.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RateLimit {
    /// Conversions per 15 minutes per X account, shared by every bridge of the account
    /// (X's published budget is 60000).
    #[serde(default = "default_events_per_15_min")]
    #[schemars(range(min = 1, max = 10_000_000))]
    pub events_per15_min: i64,
}

impl Default for RateLimit {
    fn default() -> Self {
        Self {
            events_per15_min: default_events_per_15_min(),
        }
    }
}

fn default_event_types() -> Vec<SignalsEventType> {
    vec![SignalsEventType::Converted]
}
fn default_poll_interval() -> String {
    "60s".into()
}
fn default_lookback() -> String {
    "5m".into()
}
fn default_time_zone() -> String {
    "UTC".into()
}
fn default_max_batch_size() -> i32 {
    500
}
fn default_flush_interval() -> String {
    "5s".into()
}
fn default_events_per_15_min() -> i64 {
    60_000
}

/// Observed state of a ConversionBridge.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConversionBridgeStatus {
    #[serde(flatten)]
    pub common: CommonStatus,
    /// Every Signals event dated before this time has been forwarded or rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<Time>,
    /// Seconds between the last status write and the checkpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_seconds: Option<i64>,
    /// Events read from Signals (polls and postbacks).
    #[serde(default)]
    pub events_received: i64,
    /// Conversions accepted by X.
    #[serde(default)]
    pub events_forwarded: i64,
    /// Events that could not be mapped or that X rejected; never sent again.
    #[serde(default)]
    pub events_rejected: i64,
    /// Events seen again (re-read in the lookback window or both polled and posted back) and
    /// not sent twice.
    #[serde(default)]
    pub events_duplicate: i64,
    /// Requests to the X Conversion API that X accepted.
    #[serde(default)]
    pub batches_sent: i64,
    /// Last successful read of the Signals events list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_poll_time: Option<Time>,
    /// Last batch accepted by X.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_forward_time: Option<Time>,
    /// Path of the postback receiver for this bridge, without the token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postback_path: Option<String>,
    /// The most recent rejected events (at most 20), newest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20))]
    pub recent_rejections: Vec<Rejection>,
}

/// One rejected event.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Rejection {
    /// The Signals event id.
    pub event_id: String,
    /// Why it was rejected.
    pub reason: String,
    /// When it was rejected.
    pub time: Time,
}
