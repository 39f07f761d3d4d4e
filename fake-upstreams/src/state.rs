//! Everything the fakes remember. One mutex guards it all: the fakes serve tests, not
//! production traffic, and one lock keeps every request's effect atomic.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::faults::FaultRule;

/// A Signals keyword as the API returns it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Keyword {
    pub id: String,
    pub keyword: String,
    pub ad_id: Option<String>,
    pub is_shared: bool,
    pub status: String,
}

/// A campaign's conversion as set with Signals' `POST .../converted_events`: which event
/// counts as the campaign's `converted` event. One per (client, app, campaign_id); a new POST
/// replaces it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ConvertedEvent {
    pub client: String,
    pub app: String,
    pub campaign_id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub type_id: Option<String>,
    pub type_value: Option<String>,
}

/// An X web event tag as the API returns it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Tag {
    pub id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub tag_type: String,
    pub click_window: i64,
    pub view_through_window: i64,
    pub retargeting_enabled: bool,
    pub status: String,
    pub deleted: bool,
    pub created_at: String,
    pub updated_at: String,
}

/// OAuth 1.0a credentials the fake X accepts, and the accounts they may use.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct XCredentials {
    pub consumer_key: String,
    pub consumer_secret: String,
    pub access_token: String,
    pub access_token_secret: String,
}

/// Which of the three postback URLs of an ad.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum PostbackKind {
    Ad,
    Keyword(String),
    SessionStart,
}

/// One request as the fake saw it (never with credentials).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RequestRecord {
    pub api: String,
    pub operation: String,
    pub method: String,
    pub path: String,
    pub query: String,
    /// The host name the client used (without the port); tells clients apart in tests.
    #[serde(default)]
    pub host: String,
    /// Which credential sent it, never the secret itself: for the Hub and Signals the Hub user
    /// the Bearer token was issued to (`static-N` for the N-th static token), for X
    /// `<consumer key>/<access token>` (both public halves of OAuth 1.0a); empty when the
    /// request carried none the fake knows (a `/token` login, a bad token).
    #[serde(default)]
    pub credential: String,
    /// HTTP status answered; 0 when the connection was dropped on purpose.
    pub status: u16,
    #[serde(with = "system_time_secs")]
    pub at: SystemTime,
}

/// One conversion the fake X accepted.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ReceivedConversion {
    /// Which accepted request brought it (0, 1, 2, ... in order of arrival).
    pub batch: u64,
    pub pixel_id: String,
    pub conversion: Value,
    #[serde(with = "system_time_secs")]
    pub at: SystemTime,
}

/// Budgets of the fake X, per account.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct XRateLimits {
    /// Conversions per window per account (each conversion is one unit).
    pub conversions: u64,
    /// Other requests per window per account.
    pub requests: u64,
    pub window_seconds: u64,
}

impl Default for XRateLimits {
    fn default() -> Self {
        Self {
            conversions: 60_000,
            requests: 2_000,
            window_seconds: 900,
        }
    }
}

/// How one credential loads one API: when its requests arrived, and how many were being
/// answered at once.
#[derive(Debug, Default)]
pub(crate) struct Load {
    pub arrivals: Vec<Instant>,
    pub in_flight: usize,
    pub peak_in_flight: usize,
}

/// How one credential loaded one API ([`crate::FakeUpstreams::credential_load`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CredentialLoad {
    /// Requests that arrived (counted on arrival, before faults and authentication).
    pub requests: usize,
    /// The most requests that arrived within any window of the length asked for (sliding,
    /// not aligned to clock seconds).
    pub max_in_window: usize,
    /// The most requests being answered at once.
    pub peak_in_flight: usize,
    /// Requests being answered right now.
    pub in_flight: usize,
}

#[derive(Debug)]
pub(crate) struct Window {
    pub started: SystemTime,
    pub used: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Inner {
    pub hub_users: HashMap<String, String>,
    /// Bearer token → expiry (None: never expires).
    pub tokens: HashMap<String, Option<Instant>>,
    pub token_ttl: Option<Duration>,
    /// (partner, client, channel) → CTWA enabled.
    pub channels: HashMap<(String, String, String), bool>,
    /// (client, app) → keywords in creation order.
    pub keywords: BTreeMap<(String, String), Vec<Keyword>>,
    /// (client, app, ad, kind) → URL.
    pub postbacks: BTreeMap<(String, String, String, PostbackKind), String>,
    /// (client, app) → events sorted by (date, id).
    pub events: HashMap<(String, String), crate::signals::EventLog>,
    /// (client, app, campaign_id) → the campaign's conversion.
    pub converted_events: BTreeMap<(String, String, String), ConvertedEvent>,
    /// (client, app) → the values `event_types` answers; absent: all nine documented ones.
    pub signals_event_types: HashMap<(String, String), Vec<String>>,
    pub x_credentials: Vec<(XCredentials, HashSet<String>)>,
    /// account → pixel id.
    pub x_accounts: BTreeMap<String, String>,
    pub tags: BTreeMap<String, Vec<Tag>>,
    pub conversions: Vec<ReceivedConversion>,
    /// The distinct `conversion_id`s in `conversions`, kept as they arrive so that tests and
    /// benchmarks polling for progress do not rebuild the set under the lock.
    pub conversion_ids: std::collections::HashSet<String>,
    /// operation → (requests being answered now, the most there ever were at once).
    pub concurrency: HashMap<&'static str, (usize, usize)>,
    /// Events-list reads being answered per `client/app` (now, peak): one bridge reads its
    /// app one page at a time, so a peak above 1 means two processes ran it at once.
    pub pollers: HashMap<String, (usize, usize)>,
    /// Bearer token → the credential it stands for (see [`RequestRecord::credential`]).
    pub token_owners: HashMap<String, String>,
    /// (api, credential) → load: arrivals and requests in flight.
    pub credential_load: HashMap<(&'static str, String), Load>,
    /// Requests to the Conversion API accepted so far.
    pub conversion_batches: u64,
    pub requests: Vec<RequestRecord>,
    pub faults: Vec<FaultRule>,
    pub x_limits: XRateLimits,
    /// (account, "conversions" | "requests") → window.
    pub x_windows: HashMap<(String, &'static str), Window>,
    /// Seconds the fake Signals' clock runs ahead of real time (negative: behind).
    pub signals_clock_offset: i64,
    /// The most events one page of the events list holds, whatever `limit` asks for.
    pub signals_max_page: Option<usize>,
    pub next_id: u64,
}

impl Inner {
    pub fn next_id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}{}", self.next_id)
    }

    pub fn token_ttl(&self) -> Duration {
        self.token_ttl.unwrap_or(Duration::from_secs(86_400))
    }

    pub fn token_valid(&self, token: &str) -> bool {
        match self.tokens.get(token) {
            Some(None) => true,
            Some(Some(expiry)) => Instant::now() < *expiry,
            None => false,
        }
    }

    /// The fake Signals' clock: real time shifted by `signals_clock_offset`. An offset beyond
    /// jiff's range stops the clock at the range's end, since a test fake should not panic.
    pub fn signals_now(&self) -> jiff::Timestamp {
        let now = jiff::Timestamp::now();
        now.checked_add(jiff::SignedDuration::from_secs(self.signals_clock_offset))
            .unwrap_or(if self.signals_clock_offset > 0 {
                jiff::Timestamp::MAX
            } else {
                jiff::Timestamp::MIN
            })
    }

    pub fn account_of_pixel(&self, pixel: &str) -> Option<String> {
        self.x_accounts
            .iter()
            .find(|(_, p)| p.as_str() == pixel)
            .map(|(a, _)| a.clone())
    }
}

pub(crate) mod system_time_secs {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    pub fn serialize<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        let secs = t
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        s.serialize_f64(secs)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        let secs = f64::deserialize(d)?;
        Ok(UNIX_EPOCH + Duration::from_secs_f64(secs.max(0.0)))
    }
}
