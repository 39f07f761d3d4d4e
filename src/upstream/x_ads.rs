//! X Ads API: web event tags and conversions (SPEC 6.3), OAuth 1.0a signed.
//!
//! Every request is signed over method, URL and query parameters (JSON bodies
//! excluded), after it waited for its budget (a signature made before a long wait would carry
//! a stale timestamp).
//!
//! X limits each endpoint family separately, so the client paces each with its own budget
//! ([`XAdsClient::with_budget`]): tag calls (`accounts/{id}/web_event_tags…`) with the
//! credential's [`RequestBudget`] (at most 4 in flight, none while X said nothing remains),
//! conversions with the account's [`RateBudget`] (units = conversions). Each budget learns from
//! the `x-rate-limit-*` headers of every answer of its family, 429s included, and only of it.

use std::sync::Arc;
use std::time::SystemTime;

use reqwest::header::HeaderMap;
use serde::Deserialize;

use crate::runtime::digest::Sha256Hex;
use crate::upstream::budget::{InFlight, RateBudget, RequestBudget, RequestPermit};
use crate::upstream::error::{
    Api, ErrorClass, UpstreamError, rate_limit_limit, rate_limit_remaining, rate_limit_reset,
};
use crate::upstream::http::{RawResponse, Transport, join_url, parse_base_url, string_or_number};
use crate::upstream::oauth;
use crate::upstream::secret::XCredentials;

/// A web event tag.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Tag {
    /// Tag id.
    #[serde(deserialize_with = "string_or_number::deserialize")]
    pub id: String,
    /// Name.
    #[serde(default)]
    pub name: String,
    /// Tag type (e.g. `PURCHASE`).
    #[serde(default, rename = "type")]
    pub tag_type: Option<String>,
    /// Post-engagement attribution window in days.
    #[serde(default)]
    pub click_window: Option<u32>,
    /// Post-view attribution window in days.
    #[serde(default)]
    pub view_through_window: Option<u32>,
    /// Retargeting enabled.
    #[serde(default)]
    pub retargeting_enabled: Option<bool>,
    /// Status as reported.
    #[serde(default)]
    pub status: Option<String>,
    /// Deleted.
    #[serde(default)]
    pub deleted: bool,
    /// Creation time as reported.
    #[serde(default)]
    pub created_at: Option<String>,
    /// Update time as reported.
    #[serde(default)]
    pub updated_at: Option<String>,
}

/// Parameters of a new tag (sent in the query string).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagParams {
    /// Name.
    pub name: String,
    /// Type.
    pub tag_type: String,
    /// Click window (days).
    pub click_window: u32,
    /// View-through window (days).
    pub view_through_window: u32,
    /// Retargeting enabled.
    pub retargeting_enabled: bool,
}

/// Changed fields of a tag; `None` fields are not sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TagUpdate {
    /// New name.
    pub name: Option<String>,
    /// New type.
    pub tag_type: Option<String>,
    /// New click window.
    pub click_window: Option<u32>,
    /// New view-through window.
    pub view_through_window: Option<u32>,
    /// New retargeting flag.
    pub retargeting_enabled: Option<bool>,
}

impl TagUpdate {
    /// True when nothing changed.
    pub fn is_empty(&self) -> bool {
        self.query().is_empty()
    }

    fn query(&self) -> Vec<(String, String)> {
        let mut q = Vec::new();
        if let Some(v) = self.click_window {
            q.push(("click_window".into(), v.to_string()));
        }
        if let Some(v) = &self.name {
            q.push(("name".into(), v.clone()));
        }
        if let Some(v) = self.retargeting_enabled {
            q.push(("retargeting_enabled".into(), v.to_string()));
        }
        if let Some(v) = &self.tag_type {
            q.push(("type".into(), v.clone()));
        }
        if let Some(v) = self.view_through_window {
            q.push(("view_through_window".into(), v.to_string()));
        }
        q
    }
}

impl From<&TagParams> for TagUpdate {
    fn from(p: &TagParams) -> Self {
        TagUpdate {
            name: Some(p.name.clone()),
            tag_type: Some(p.tag_type.clone()),
            click_window: Some(p.click_window),
            view_through_window: Some(p.view_through_window),
            retargeting_enabled: Some(p.retargeting_enabled),
        }
    }
}

/// One page of tags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagsPage {
    /// Tags.
    pub tags: Vec<Tag>,
    /// Cursor of the next page.
    pub next_cursor: Option<String>,
}

/// The hashed user identifiers of one conversion: a phone number, an email, or both. Sent
/// as X's list of one-key objects (`[{"hashed_phone_number": "..."}, {"hashed_email": "..."}]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Identifiers {
    /// SHA-256 of the E.164 phone number.
    pub hashed_phone_number: Option<Sha256Hex>,
    /// SHA-256 of the normalised email.
    pub hashed_email: Option<Sha256Hex>,
}

impl Identifiers {
    /// A phone number alone.
    pub fn phone(hash: Sha256Hex) -> Self {
        Identifiers {
            hashed_phone_number: Some(hash),
            hashed_email: None,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.hashed_phone_number.is_none() && self.hashed_email.is_none()
    }
}

/// `conversion_time`: X's `yyyy-MM-ddTHH:mm:ss.SSSZ`, always UTC, written straight into the
/// request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConversionTime(jiff::Timestamp);

impl ConversionTime {
    pub fn new(at: jiff::Timestamp) -> Self {
        ConversionTime(at)
    }
}

impl ConversionTime {
    /// The text, built digit by digit: the formatting machinery costs more per event than
    /// the rest of the mapping.
    fn text(&self) -> [u8; 24] {
        let t = jiff::tz::Offset::UTC.to_datetime(self.0);
        let mut out = *b"0000-00-00T00:00:00.000Z";
        let mut put = |at: usize, width: usize, value: u32| {
            let mut v = value;
            for i in (at..at + width).rev() {
                out[i] = b'0' + (v % 10) as u8;
                v /= 10;
            }
        };
        put(0, 4, u32::try_from(t.year()).unwrap_or(0));
        put(5, 2, u32::try_from(t.month()).unwrap_or(0));
        put(8, 2, u32::try_from(t.day()).unwrap_or(0));
        put(11, 2, u32::try_from(t.hour()).unwrap_or(0));
        put(14, 2, u32::try_from(t.minute()).unwrap_or(0));
        put(17, 2, u32::try_from(t.second()).unwrap_or(0));
        put(
            20,
            3,
            u32::try_from(t.subsec_nanosecond() / 1_000_000).unwrap_or(0),
        );
        out
    }
}

impl std::fmt::Display for ConversionTime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(std::str::from_utf8(&self.text()).unwrap_or_default())
    }
}

/// One conversion of `POST /measurement/conversions/{pixel_id}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conversion {
    pub conversion_time: ConversionTime,
    /// Web event tag id (shared by every conversion of a bridge).
    pub event_id: Arc<str>,
    pub identifiers: Identifiers,
    /// De-duplication id (the Signals event id); shared with the bridge's forwarded-id set.
    pub conversion_id: Arc<str>,
    /// Optional description.
    pub description: Option<String>,
}

impl Conversion {
    /// Appends this conversion as JSON. The time and the hashes are ASCII without anything to
    /// escape and go in as they are; only the ids and the description are escaped.
    fn write_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"conversion_time\":\"");
        out.extend_from_slice(&self.conversion_time.text());
        out.extend_from_slice(b"\",\"event_id\":");
        json_string(out, &self.event_id);
        out.extend_from_slice(b",\"identifiers\":[");
        let ids = [
            (
                &b"hashed_phone_number"[..],
                &self.identifiers.hashed_phone_number,
            ),
            (&b"hashed_email"[..], &self.identifiers.hashed_email),
        ];
        let mut first = true;
        for (key, hash) in ids {
            let Some(hash) = hash else { continue };
            if !first {
                out.push(b',');
            }
            first = false;
            out.extend_from_slice(b"{\"");
            out.extend_from_slice(key);
            out.extend_from_slice(b"\":\"");
            out.extend_from_slice(hash.as_str().as_bytes());
            out.extend_from_slice(b"\"}");
        }
        out.extend_from_slice(b"],\"conversion_id\":");
        json_string(out, &self.conversion_id);
        if let Some(description) = &self.description {
            out.extend_from_slice(b",\"description\":");
            json_string(out, description);
        }
        out.push(b'}');
    }
}

/// `text` as a JSON string (quoted and escaped).
fn json_string(out: &mut Vec<u8>, text: &str) {
    // Writing a string into memory cannot fail.
    serde_json::to_writer(&mut *out, text).unwrap_or_default();
}

/// The Conversion API request body, `{"conversions": [...]}`, written straight from the
/// conversions: no intermediate JSON tree, one allocation.
pub fn conversions_body(conversions: &[Conversion]) -> Vec<u8> {
    let mut body = Vec::with_capacity(18 + conversions.len() * 280);
    body.extend_from_slice(b"{\"conversions\":[");
    for (i, conversion) in conversions.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        conversion.write_json(&mut body);
    }
    body.extend_from_slice(b"]}");
    body
}

/// X's rate-limit headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RateLimitInfo {
    /// `x-rate-limit-limit`.
    pub limit: Option<u64>,
    /// `x-rate-limit-remaining`.
    pub remaining: Option<u64>,
    /// `x-rate-limit-reset`.
    pub reset: Option<SystemTime>,
}

impl RateLimitInfo {
    /// The `x-rate-limit-*` headers of an answer (absent or unreadable ones are `None`).
    pub fn from_headers(headers: &HeaderMap) -> Self {
        RateLimitInfo {
            limit: rate_limit_limit(headers),
            remaining: rate_limit_remaining(headers),
            reset: rate_limit_reset(headers),
        }
    }
}

/// A budget for [`XAdsClient::with_budget`]; which family it paces follows from its type.
#[derive(Debug, Clone)]
pub enum XBudget {
    /// The conversions family of one account: [`XAdsClient::send_conversions`] spends one unit
    /// per conversion (e.g. a bridge's `eventsPer15Min`, shared per pixel).
    Conversions(Arc<RateBudget>),
    /// The tags family of one credential (from [`RequestBudgets::unmetered`] keyed by
    /// [`XCredentials::budget_key`]): every tag call waits for it.
    ///
    /// [`RequestBudgets::unmetered`]: crate::upstream::budget::RequestBudgets::unmetered
    Tags(Arc<RequestBudget>),
}

impl From<Arc<RateBudget>> for XBudget {
    fn from(budget: Arc<RateBudget>) -> Self {
        XBudget::Conversions(budget)
    }
}

impl From<Arc<RequestBudget>> for XBudget {
    fn from(budget: Arc<RequestBudget>) -> Self {
        XBudget::Tags(budget)
    }
}

/// The endpoint families X limits separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    /// `accounts/{id}/web_event_tags…`, one request per unit.
    Tags,
    /// `measurement/conversions/{pixel}`, one unit per conversion.
    Conversions {
        /// Conversions in the request.
        units: u64,
    },
}

/// What a request holds of its family's budget until X answered.
enum Held<'a> {
    Nothing,
    Request { _permit: RequestPermit<'a> },
    Units { _spent: InFlight<'a> },
}

/// Result of a conversions batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversionsResult {
    /// `conversions_processed`.
    pub processed: u64,
    /// `debug_id`.
    pub debug_id: Option<String>,
    /// Rate-limit headers of the response.
    pub rate: RateLimitInfo,
}

#[derive(Deserialize)]
struct DataEnvelope<T> {
    data: T,
    #[serde(default)]
    next_cursor: Option<String>,
}

#[derive(Deserialize)]
struct ConversionsData {
    #[serde(default)]
    conversions_processed: u64,
    #[serde(default)]
    debug_id: Option<String>,
}

/// Client for the X Ads API with one set of credentials.
#[derive(Debug, Clone)]
pub struct XAdsClient {
    transport: Transport,
    base: url::Url,
    credentials: XCredentials,
    /// The conversions family's budget (the account's).
    budget: Option<Arc<RateBudget>>,
    /// The tags family's budget (the credential's).
    tags_budget: Option<Arc<RequestBudget>>,
}

impl XAdsClient {
    /// A client for `x_ads_url` (`--x-ads-url`).
    pub fn new(
        transport: Transport,
        x_ads_url: &str,
        credentials: XCredentials,
    ) -> Result<Self, UpstreamError> {
        Ok(XAdsClient {
            transport,
            base: parse_base_url(Api::XAds, x_ads_url)?,
            credentials,
            budget: None,
            tags_budget: None,
        })
    }

    /// Pace one endpoint family with `budget`, shared with every other client given it:
    /// - an `Arc<RateBudget>` paces conversions: [`XAdsClient::send_conversions`] acquires one
    ///   unit per conversion, and the budget learns from the conversions answers;
    /// - an `Arc<RequestBudget>` (the credential's, `budgets.get(&credentials.budget_key())`
    ///   of a process-wide [`RequestBudgets::unmetered`]) paces every tag call: at most 4 in
    ///   flight, none while X said nothing remains (until its `x-rate-limit-reset`), and it
    ///   learns from the tag answers.
    ///
    /// Call it once per family to pace both.
    ///
    /// [`RequestBudgets::unmetered`]: crate::upstream::budget::RequestBudgets::unmetered
    pub fn with_budget(mut self, budget: impl Into<XBudget>) -> Self {
        match budget.into() {
            XBudget::Conversions(budget) => self.budget = Some(budget),
            XBudget::Tags(budget) => self.tags_budget = Some(budget),
        }
        self
    }

    /// The key of this client's credential budget ([`XCredentials::budget_key`]).
    pub fn budget_key(&self) -> String {
        self.credentials.budget_key()
    }

    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        op: &'static str,
        method: reqwest::Method,
        segments: &[&str],
        query: Vec<(String, String)>,
    ) -> Result<(DataEnvelope<T>, RateLimitInfo), UpstreamError> {
        let (response, rate) = self
            .call_raw(op, Family::Tags, method, segments, query, None)
            .await?;
        Ok((response.json(Api::XAds, op)?, rate))
    }

    /// Wait for the family's budget, then sign and send; the budget learns from the answer.
    async fn call_raw(
        &self,
        op: &'static str,
        family: Family,
        method: reqwest::Method,
        segments: &[&str],
        query: Vec<(String, String)>,
        body: Option<Vec<u8>>,
    ) -> Result<(RawResponse, RateLimitInfo), UpstreamError> {
        let mut url = join_url(&self.base, segments, Api::XAds, op)?;
        let held = match (family, &self.tags_budget, &self.budget) {
            (Family::Tags, Some(budget), _) => Held::Request {
                _permit: budget.enter().await,
            },
            (Family::Conversions { units }, _, Some(budget)) => Held::Units {
                _spent: budget.acquire(units.max(1)).await,
            },
            _ => Held::Nothing,
        };
        let header = oauth::authorization_header(
            &self.credentials,
            method.as_str(),
            &url,
            &query,
            &oauth::nonce(),
            oauth::timestamp(),
        );
        if !query.is_empty() {
            url.set_query(Some(&oauth::encode_query(&query)));
        }
        let mut request = self
            .transport
            .client()
            .request(method, url)
            .header(reqwest::header::AUTHORIZATION, header);
        if let Some(body) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body);
        }
        let result = self.transport.send(Api::XAds, op, request).await;
        // Answered (or failed): the rate-limit headers below count this request.
        drop(held);
        let response = result?;
        let rate = RateLimitInfo::from_headers(&response.headers);
        let response = response.success(Api::XAds, op);
        self.learn(family, &rate, response.as_ref().err());
        Ok((response?, rate))
    }

    /// Feed one answer of `family` to that family's budget (and no other): its window, or on
    /// a 429 that nothing remains until the reset.
    fn learn(&self, family: Family, rate: &RateLimitInfo, error: Option<&UpstreamError>) {
        let budget = match family {
            Family::Tags => self.tags_budget.as_deref().map(RequestBudget::window),
            Family::Conversions { .. } => self.budget.as_deref(),
        };
        let Some(budget) = budget else {
            return;
        };
        match error.map(UpstreamError::class) {
            Some(ErrorClass::RateLimited { retry_at }) => {
                budget.observe_refusal(rate.reset.or(retry_at));
            }
            _ => budget.observe_rate_limit(rate.remaining, rate.reset),
        }
    }

    /// `GET /accounts/{account}/web_event_tags?count&cursor&with_deleted`.
    pub async fn list_tags(
        &self,
        account: &str,
        cursor: Option<&str>,
        count: Option<u32>,
        with_deleted: bool,
    ) -> Result<TagsPage, UpstreamError> {
        let mut q = Vec::new();
        if let Some(c) = count {
            q.push(("count".to_string(), c.clamp(1, 1000).to_string()));
        }
        if let Some(c) = cursor {
            q.push(("cursor".to_string(), c.to_string()));
        }
        if with_deleted {
            q.push(("with_deleted".to_string(), "true".to_string()));
        }
        let (env, _): (DataEnvelope<Vec<Tag>>, _) = self
            .call(
                "list_tags",
                reqwest::Method::GET,
                &["accounts", account, "web_event_tags"],
                q,
            )
            .await?;
        Ok(TagsPage {
            tags: env.data,
            next_cursor: env.next_cursor.filter(|c| !c.is_empty()),
        })
    }

    /// Every tag of the account, following cursors.
    pub async fn list_all_tags(
        &self,
        account: &str,
        with_deleted: bool,
    ) -> Result<Vec<Tag>, UpstreamError> {
        let mut all = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let page = self
                .list_tags(account, cursor.as_deref(), Some(1000), with_deleted)
                .await?;
            all.extend(page.tags);
            match page.next_cursor {
                Some(next) if Some(&next) != cursor.as_ref() => cursor = Some(next),
                _ => return Ok(all),
            }
        }
    }

    /// `GET /accounts/{account}/web_event_tags/{id}`.
    pub async fn get_tag(&self, account: &str, id: &str) -> Result<Tag, UpstreamError> {
        let (env, _) = self
            .call(
                "get_tag",
                reqwest::Method::GET,
                &["accounts", account, "web_event_tags", id],
                Vec::new(),
            )
            .await?;
        Ok(env.data)
    }

    /// `POST /accounts/{account}/web_event_tags?click_window&name&retargeting_enabled&type&view_through_window`.
    pub async fn create_tag(
        &self,
        account: &str,
        params: &TagParams,
    ) -> Result<Tag, UpstreamError> {
        let (env, _) = self
            .call(
                "create_tag",
                reqwest::Method::POST,
                &["accounts", account, "web_event_tags"],
                TagUpdate::from(params).query(),
            )
            .await?;
        Ok(env.data)
    }

    /// `PUT /accounts/{account}/web_event_tags/{id}?<changed fields>`.
    pub async fn update_tag(
        &self,
        account: &str,
        id: &str,
        changed: &TagUpdate,
    ) -> Result<Tag, UpstreamError> {
        let (env, _) = self
            .call(
                "update_tag",
                reqwest::Method::PUT,
                &["accounts", account, "web_event_tags", id],
                changed.query(),
            )
            .await?;
        Ok(env.data)
    }

    /// `DELETE /accounts/{account}/web_event_tags/{id}` → the tag with `deleted: true`.
    pub async fn delete_tag(&self, account: &str, id: &str) -> Result<Tag, UpstreamError> {
        let (env, _) = self
            .call(
                "delete_tag",
                reqwest::Method::DELETE,
                &["accounts", account, "web_event_tags", id],
                Vec::new(),
            )
            .await?;
        Ok(env.data)
    }

    /// `POST /measurement/conversions/{pixel}` `{"conversions": [...]}`.
    pub async fn send_conversions(
        &self,
        pixel: &str,
        conversions: &[Conversion],
    ) -> Result<ConversionsResult, UpstreamError> {
        let body = conversions_body(conversions);
        let (response, rate) = self
            .call_raw(
                "send_conversions",
                Family::Conversions {
                    units: conversions.len() as u64,
                },
                reqwest::Method::POST,
                &["measurement", "conversions", pixel],
                Vec::new(),
                Some(body),
            )
            .await?;
        // Any 2xx is a delivery (SPEC 7.2): re-sending what X accepted would only burn budget,
        // so an unexpected body is logged, never an error.
        let data = match serde_json::from_slice::<DataEnvelope<ConversionsData>>(&response.body) {
            Ok(envelope) => envelope.data,
            Err(e) => {
                tracing::warn!(status = response.status, error = %e, "X accepted conversions with an unexpected response body");
                ConversionsData {
                    conversions_processed: conversions.len() as u64,
                    debug_id: None,
                }
            }
        };
        Ok(ConversionsResult {
            processed: data.conversions_processed,
            debug_id: data.debug_id,
            rate,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::budget::RequestBudgets;
    use crate::upstream::http::HttpConfig;
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    use std::collections::{BTreeMap, VecDeque};
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::{Duration, UNIX_EPOCH};
    use tokio::time::Instant;

    /// One planned answer: status, `x-rate-limit-remaining`, `x-rate-limit-reset` as seconds
    /// from now (may be negative).
    type Plan = (u16, u64, i64);

    /// A stand-in for X that answers tag and conversion calls from a plan (then 200 with
    /// plenty remaining), taking `delay` per request, and records when each request arrived
    /// and how many were in flight at most.
    #[derive(Default)]
    struct StubX {
        plan: Mutex<VecDeque<Plan>>,
        arrivals: Mutex<Vec<(Instant, &'static str)>>,
        in_flight: AtomicUsize,
        peak: AtomicUsize,
        delay: Duration,
    }

    fn epoch_from_now(secs: i64) -> u64 {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        (now + secs).max(0) as u64
    }

    async fn answer(stub: Arc<StubX>, family: &'static str) -> axum::response::Response {
        stub.arrivals.lock().unwrap().push((Instant::now(), family));
        let n = stub.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        stub.peak.fetch_max(n, Ordering::SeqCst);
        tokio::time::sleep(stub.delay).await;
        stub.in_flight.fetch_sub(1, Ordering::SeqCst);
        let (status, remaining, reset) = stub
            .plan
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or((200, 1000, 900));
        let body = match (status, family) {
            (429, _) => {
                serde_json::json!({"errors": [{"code": "TOO_MANY_REQUESTS", "message": "Rate limit exceeded"}]})
            }
            (_, "tags") => {
                serde_json::json!({"request": {"params": {}}, "data": {"id": "o3bk1", "name": "n", "type": "PURCHASE", "deleted": false}})
            }
            _ => {
                serde_json::json!({"request": {"params": {}}, "data": {"conversions_processed": 1, "debug_id": "d"}})
            }
        };
        let mut response =
            (StatusCode::from_u16(status).unwrap(), axum::Json(body)).into_response();
        let headers = response.headers_mut();
        headers.insert("x-rate-limit-limit", "1000".parse().unwrap());
        headers.insert(
            "x-rate-limit-remaining",
            remaining.to_string().parse().unwrap(),
        );
        headers.insert(
            "x-rate-limit-reset",
            epoch_from_now(reset).to_string().parse().unwrap(),
        );
        response
    }

    async fn stub(stub: Arc<StubX>) -> String {
        let (tags, conversions) = (stub.clone(), stub);
        let router = axum::Router::new()
            .route(
                "/12/accounts/{account}/web_event_tags/{id}",
                axum::routing::get(move || answer(tags.clone(), "tags")),
            )
            .route(
                "/12/measurement/conversions/{pixel}",
                axum::routing::post(move || answer(conversions.clone(), "conversions")),
            );
        format!(
            "{}/12",
            crate::upstream::hub_auth::tests::serve(router).await
        )
    }

    fn credentials(access_token: &str) -> XCredentials {
        let data: BTreeMap<String, Vec<u8>> = [
            ("consumer-key", "ck"),
            ("consumer-secret", "cs"),
            ("access-token", access_token),
            ("access-token-secret", "ats"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
        .collect();
        XCredentials::from_secret_data(&data).unwrap()
    }

    fn client(url: &str, budgets: &RequestBudgets) -> XAdsClient {
        let transport = Transport::from_config(&HttpConfig::default()).unwrap();
        let client = XAdsClient::new(transport, url, credentials("at")).unwrap();
        let key = client.budget_key();
        client.with_budget(budgets.get(&key))
    }

    fn conversion() -> Conversion {
        Conversion {
            conversion_time: ConversionTime::new("2026-11-01T00:00:00Z".parse().unwrap()),
            event_id: "o87ne".into(),
            identifiers: Identifiers::phone(Sha256Hex::of(b"+11234567890")),
            conversion_id: "ev1".into(),
            description: None,
        }
    }

    /// Time from the end of the first call to the start of the second one at the server.
    async fn wait_after(planned: Plan) -> Duration {
        let x = Arc::new(StubX::default());
        x.plan.lock().unwrap().push_back(planned);
        let url = stub(x.clone()).await;
        let budgets = RequestBudgets::unmetered();
        let c = client(&url, &budgets);
        let first = c.get_tag("acc", "o3bk1").await;
        assert_eq!(first.is_ok(), planned.0 == 200, "{first:?}");
        let answered = Instant::now();
        c.get_tag("acc", "o3bk1").await.unwrap();
        let arrivals = x.arrivals.lock().unwrap();
        assert_eq!(arrivals.len(), 2);
        arrivals[1].0 - answered
    }

    #[tokio::test]
    async fn a_tag_call_waits_for_the_reset_when_x_said_nothing_remains() {
        // The reset is whole epoch seconds 2 s ahead (1 to 2 s away), plus the 1 s margin.
        let waited = wait_after((200, 0, 2)).await;
        assert!(
            waited >= Duration::from_millis(1900) && waited < Duration::from_secs(4),
            "{waited:?}"
        );
    }

    #[tokio::test]
    async fn a_429_makes_the_next_tag_call_wait_for_its_reset() {
        let waited = wait_after((429, 0, 2)).await;
        assert!(
            waited >= Duration::from_millis(1900) && waited < Duration::from_secs(4),
            "{waited:?}"
        );
    }

    #[tokio::test]
    async fn a_reset_in_the_past_does_not_hold_tag_calls() {
        let waited = wait_after((200, 0, -60)).await;
        assert!(waited < Duration::from_millis(500), "{waited:?}");
        // Remaining budget: no wait either.
        let waited = wait_after((200, 5, 60)).await;
        assert!(waited < Duration::from_millis(500), "{waited:?}");
    }

    #[tokio::test]
    async fn tags_and_conversions_are_paced_separately() {
        let x = Arc::new(StubX::default());
        let url = stub(x.clone()).await;
        let budgets = RequestBudgets::unmetered();
        let conversions = Arc::new(RateBudget::new(60_000, Duration::from_secs(900)));
        let c = client(&url, &budgets).with_budget(conversions.clone());
        // Tags exhausted for a minute: conversions still go out at once.
        x.plan.lock().unwrap().push_back((200, 0, 60));
        c.get_tag("acc", "o3bk1").await.unwrap();
        let start = Instant::now();
        c.send_conversions("pix", &[conversion()]).await.unwrap();
        assert!(start.elapsed() < Duration::from_millis(500));
        assert_eq!(budgets.get(&c.budget_key()).upstream_room(), Some(0));
        assert_eq!(conversions.upstream_room(), Some(1000));
        // Conversions exhausted: a fresh credential's tag calls are not held by them.
        let c = XAdsClient::new(
            Transport::from_config(&HttpConfig::default()).unwrap(),
            &url,
            credentials("another-user"),
        )
        .unwrap();
        let c = c
            .clone()
            .with_budget(budgets.get(&c.budget_key()))
            .with_budget(conversions.clone());
        x.plan.lock().unwrap().push_back((200, 0, 60));
        c.send_conversions("pix", &[conversion()]).await.unwrap();
        assert_eq!(conversions.upstream_room(), Some(0));
        let start = Instant::now();
        c.get_tag("acc", "o3bk1").await.unwrap();
        assert!(start.elapsed() < Duration::from_millis(500));
    }

    #[tokio::test]
    async fn at_most_four_tag_calls_are_in_flight_per_credential() {
        let x = Arc::new(StubX {
            delay: Duration::from_millis(150),
            ..Default::default()
        });
        let url = stub(x.clone()).await;
        let budgets = RequestBudgets::unmetered();
        // Two clients of one credential (two objects) share its cap.
        let (a, b) = (client(&url, &budgets), client(&url, &budgets));
        let calls: Vec<_> = (0..12)
            .map(|i| {
                let c = if i % 2 == 0 { a.clone() } else { b.clone() };
                tokio::spawn(async move { c.get_tag("acc", "o3bk1").await.map(|_| ()) })
            })
            .collect();
        for call in calls {
            call.await.unwrap().unwrap();
        }
        assert_eq!(x.arrivals.lock().unwrap().len(), 12);
        assert_eq!(x.peak.load(Ordering::SeqCst), 4);
        // Without a budget nothing is capped (the test would see it).
        x.peak.store(0, Ordering::SeqCst);
        let free = XAdsClient::new(
            Transport::from_config(&HttpConfig::default()).unwrap(),
            &url,
            credentials("at"),
        )
        .unwrap();
        let calls: Vec<_> = (0..8)
            .map(|_| {
                let c = free.clone();
                tokio::spawn(async move { c.get_tag("acc", "o3bk1").await.map(|_| ()) })
            })
            .collect();
        for call in calls {
            call.await.unwrap().unwrap();
        }
        assert!(x.peak.load(Ordering::SeqCst) > 4);
    }

    #[test]
    fn conversion_serialises_per_contract() {
        let c = Conversion {
            conversion_time: ConversionTime::new("2026-11-01T00:00:00Z".parse().unwrap()),
            event_id: "o87ne".into(),
            identifiers: Identifiers::phone(Sha256Hex::of(b"+11234567890")),
            conversion_id: "ev1".into(),
            description: None,
        };
        let mut both = c.clone();
        both.conversion_time = ConversionTime::new("2027-01-01T00:59:59.999Z".parse().unwrap());
        both.identifiers.hashed_email = Some(Sha256Hex::of(b"test@twitter.com"));
        both.conversion_id = "ev \"2\"\\\n".into();
        both.description = Some("converted:größe \u{1}".into());
        let body: serde_json::Value =
            serde_json::from_slice(&conversions_body(&[c, both])).expect("valid JSON");
        assert_eq!(
            body,
            serde_json::json!({"conversions": [{
                "conversion_time": "2026-11-01T00:00:00.000Z",
                "event_id": "o87ne",
                "identifiers": [{"hashed_phone_number": "1fa6b8d986d9b9cd01bf36951815158bbde9f520c0567c835dfe34783d0a4231"}],
                "conversion_id": "ev1"
            }, {
                "conversion_time": "2027-01-01T00:59:59.999Z",
                "event_id": "o87ne",
                "identifiers": [
                    {"hashed_phone_number": "1fa6b8d986d9b9cd01bf36951815158bbde9f520c0567c835dfe34783d0a4231"},
                    {"hashed_email": "d360d510a224510f373931ce2d6215a799f5a9c1cef221b0149b6b6b50cced62"}
                ],
                "conversion_id": "ev \"2\"\\\n",
                "description": "converted:größe \u{1}"
            }]})
        );
        assert_eq!(conversions_body(&[]), b"{\"conversions\":[]}");
    }

    #[test]
    fn tag_tolerates_unknown_fields() {
        let env: DataEnvelope<Tag> = serde_json::from_str(
            r#"{"request":{"params":{}},"data":{"id":"o87ne","name":"p","type":"PURCHASE","click_window":30,"view_through_window":1,"retargeting_enabled":true,"status":"ACTIVE","deleted":false,"created_at":"x","updated_at":"y","new_field":[1]}}"#,
        )
        .unwrap();
        assert_eq!(env.data.tag_type.as_deref(), Some("PURCHASE"));
        assert!(!env.data.deleted);
    }

    #[test]
    fn update_sends_only_changed_fields() {
        let u = TagUpdate {
            name: Some("new name".into()),
            ..Default::default()
        };
        assert_eq!(
            u.query(),
            vec![("name".to_string(), "new name".to_string())]
        );
        assert!(TagUpdate::default().is_empty());
    }
}
