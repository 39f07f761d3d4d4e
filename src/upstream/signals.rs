//! 360dialog Signals API: keywords, postback URLs, events (SPEC 6.2).
//!
//! Every path is under `/v1/clients/{client_id}/apps/{app_id}`; Bearer auth via
//! [`HubTokenProvider`] (one retry with a fresh token on 401).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::upstream::budget::RequestBudget;
use crate::upstream::error::{Api, UpstreamError};
use crate::upstream::http::{
    RawResponse, SuccessBody, Transport, join_url, parse_base_url, string_or_number,
};
use crate::upstream::hub_auth::{DialogAuth, HubTokenProvider};
use crate::upstream::secret::SecretString;

/// Largest page for keyword lists.
pub const KEYWORDS_MAX_LIMIT: u32 = 100;
/// Largest page for event lists.
pub const EVENTS_MAX_LIMIT: u32 = 1000;

/// Keyword status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeywordStatus {
    /// Tracked.
    Active,
    /// Replaced or deleted.
    Archived,
    /// Switched off.
    Inactive,
    /// Switched off.
    Disabled,
    /// Missing, or a status this client does not know.
    #[serde(other)]
    Unknown,
}

impl KeywordStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            KeywordStatus::Active => "active",
            KeywordStatus::Archived => "archived",
            KeywordStatus::Inactive => "inactive",
            KeywordStatus::Disabled => "disabled",
            KeywordStatus::Unknown => "unknown",
        }
    }

    /// Whether the keyword still counts: the vendor documents few bodies, so only the
    /// statuses that say so mean gone; a missing or unknown one counts as active (SPEC 7.1).
    pub fn is_live(&self) -> bool {
        !matches!(
            self,
            KeywordStatus::Archived | KeywordStatus::Inactive | KeywordStatus::Disabled
        )
    }
}

/// A tracked keyword.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Keyword {
    /// Upstream id.
    #[serde(deserialize_with = "string_or_number::deserialize")]
    pub id: String,
    /// Keyword text.
    pub keyword: String,
    /// Ad id, `None` for shared keywords.
    #[serde(default, deserialize_with = "string_or_number::option")]
    pub ad_id: Option<String>,
    /// Shared by all numbers.
    #[serde(default)]
    pub is_shared: bool,
    /// Status.
    #[serde(default = "unknown_status")]
    pub status: KeywordStatus,
}

fn unknown_status() -> KeywordStatus {
    KeywordStatus::Unknown
}

/// Filter for [`SignalsClient::list_keywords`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeywordFilter {
    /// Only keywords of this ad.
    pub ad_id: Option<String>,
    /// Only shared (true) or per-ad (false) keywords.
    pub is_shared: Option<bool>,
    /// Only keywords with this status.
    pub status: Option<KeywordStatus>,
}

/// One page of a list.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    /// Items of this page.
    pub data: Vec<T>,
    /// Total matching items.
    pub total_count: u64,
    /// Offset of this page.
    pub offset: u64,
    /// Page size.
    pub limit: u64,
    /// The response's `Date` header: the upstream's clock when it answered.
    pub server_date: Option<jiff::Timestamp>,
}

/// A page of the events list before decoding: events decoded from it may borrow their text
/// from its body instead of copying every field.
pub struct EventsPage {
    response: RawResponse,
    offset: u64,
    server_date: Option<jiff::Timestamp>,
}

impl EventsPage {
    const OP: &str = "list_events";

    /// A page a test double serves: `body` as Signals would send it.
    pub fn from_json(
        body: &serde_json::Value,
        offset: u64,
        server_date: Option<jiff::Timestamp>,
    ) -> Self {
        EventsPage {
            response: RawResponse {
                status: 200,
                headers: Default::default(),
                body: body.to_string().into_bytes(),
            },
            offset,
            server_date,
        }
    }

    /// The page's events as `T`.
    pub fn decode<'a, T: Deserialize<'a>>(&'a self) -> Result<Page<T>, UpstreamError> {
        let raw: RawList<T> = self.response.json(Api::Signals, Self::OP)?;
        let mut page = finish_page(raw.into(), self.offset);
        page.server_date = self.server_date;
        Ok(page)
    }
}

/// A list as Signals documents it (`{"data": [...], "total_count": ...}`), or a bare array.
/// Told apart by the first token rather than `#[serde(untagged)]`, which would buffer every
/// page (the bridge's hot path) into an intermediate tree and decode it a second time.
enum RawList<T> {
    Page(RawPage<T>),
    Bare(Vec<T>),
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for RawList<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for Visitor<T> {
            type Value = RawList<T>;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a list object ({\"data\": [...]}) or an array")
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                seq: A,
            ) -> Result<Self::Value, A::Error> {
                Vec::deserialize(serde::de::value::SeqAccessDeserializer::new(seq))
                    .map(RawList::Bare)
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<Self::Value, A::Error> {
                RawPage::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(RawList::Page)
            }
        }
        d.deserialize_any(Visitor(std::marker::PhantomData))
    }
}

impl<T> From<RawList<T>> for RawPage<T> {
    fn from(list: RawList<T>) -> Self {
        match list {
            RawList::Page(page) => page,
            RawList::Bare(data) => RawPage {
                data,
                total_count: None,
                offset: None,
                limit: None,
            },
        }
    }
}

#[derive(Deserialize)]
struct RawPage<T> {
    #[serde(default = "Vec::new")]
    data: Vec<T>,
    #[serde(default)]
    total_count: Option<u64>,
    #[serde(default)]
    offset: Option<u64>,
    #[serde(default)]
    limit: Option<u64>,
}

/// Where a postback URL is attached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PostbackTarget {
    /// `/ads/{ad}/signal`.
    Ad {
        /// Ad id.
        ad: String,
    },
    /// `/ads/{ad}/keywords/{keyword_id}/signal`.
    Keyword {
        /// Ad id.
        ad: String,
        /// Keyword id.
        keyword_id: String,
    },
    /// `/ads/{ad}/events/session_start/signal`.
    SessionStart {
        /// Ad id.
        ad: String,
    },
}

impl PostbackTarget {
    fn segments(&self) -> Vec<&str> {
        match self {
            PostbackTarget::Ad { ad } => vec!["ads", ad, "signal"],
            PostbackTarget::Keyword { ad, keyword_id } => {
                vec!["ads", ad, "keywords", keyword_id, "signal"]
            }
            PostbackTarget::SessionStart { ad } => {
                vec!["ads", ad, "events", "session_start", "signal"]
            }
        }
    }
}

/// Query for [`SignalsClient::list_events`]; times are sent as UTC `YYYY-MM-DDTHH:MM:SS`.
#[derive(Debug, Clone, PartialEq)]
pub struct EventQuery {
    /// Inclusive start.
    pub date_from: jiff::Timestamp,
    /// Exclusive end.
    pub date_to: jiff::Timestamp,
    /// Only events of this ad.
    pub ad_id: Option<String>,
    /// Only events of this type (`converted`, `keyword`, ...).
    pub event_type: Option<String>,
    /// Only events of this type id.
    pub event_type_id: Option<String>,
}

fn signals_time(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%S").to_string()
}

/// A campaign's conversion, as `POST converted_events` takes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConvertedEvent {
    pub campaign_id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub type_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub type_value: Option<String>,
}

/// One entry of `GET event_types`: `{"name", "value"}`, where `value` is the event type.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct EventType {
    #[serde(default)]
    pub name: Option<String>,
    pub value: String,
}

#[derive(Deserialize)]
struct PostbackBody {
    #[serde(default)]
    url: Option<String>,
}

/// Client for one Signals app, bound to one credential.
#[derive(Debug, Clone)]
pub struct SignalsClient {
    transport: Transport,
    base: url::Url,
    client_id: String,
    app_id: String,
    tokens: Arc<HubTokenProvider>,
    auth: DialogAuth,
    /// The credential's request budget, shared with every other user of the Secret.
    budget: Option<Arc<RequestBudget>>,
}

impl SignalsClient {
    /// A client for `/v1/clients/{client_id}/apps/{app_id}` under `signals_url`.
    pub fn new(
        transport: Transport,
        signals_url: &str,
        client_id: impl Into<String>,
        app_id: impl Into<String>,
        tokens: Arc<HubTokenProvider>,
        auth: DialogAuth,
    ) -> Result<Self, UpstreamError> {
        Ok(SignalsClient {
            transport,
            base: parse_base_url(Api::Signals, signals_url)?,
            client_id: client_id.into(),
            app_id: app_id.into(),
            tokens,
            auth,
            budget: None,
        })
    }

    /// Make every request wait for `budget` (the credential's, SPEC 7.1).
    pub fn with_budget(mut self, budget: Arc<RequestBudget>) -> Self {
        self.budget = Some(budget);
        self
    }

    fn url(&self, op: &'static str, tail: &[&str]) -> Result<url::Url, UpstreamError> {
        let mut segments = vec!["v1", "clients", &self.client_id, "apps", &self.app_id];
        segments.extend_from_slice(tail);
        join_url(&self.base, &segments, Api::Signals, op)
    }

    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        op: &'static str,
        method: reqwest::Method,
        url: url::Url,
        query: &[(&str, String)],
        body: Option<serde_json::Value>,
    ) -> Result<T, UpstreamError> {
        self.call_raw(op, method, url, query, body)
            .await?
            .json::<T>(Api::Signals, op)
    }

    async fn call_raw(
        &self,
        op: &'static str,
        method: reqwest::Method,
        url: url::Url,
        query: &[(&str, String)],
        body: Option<serde_json::Value>,
    ) -> Result<RawResponse, UpstreamError> {
        let _permit = match &self.budget {
            Some(budget) => Some(budget.enter().await),
            None => None,
        };
        self.tokens
            .with_token(&self.auth, |token| {
                let mut request = self
                    .transport
                    .client()
                    .request(method.clone(), url.clone())
                    .bearer_auth(token.expose());
                if !query.is_empty() {
                    request = request.query(query);
                }
                if let Some(body) = &body {
                    request = request.json(body);
                }
                async move { self.transport.execute(Api::Signals, op, request).await }
            })
            .await
    }

    /// `GET /keywords?ad_id&is_shared&status&offset&limit` (limit clamped to 1..=100).
    pub async fn list_keywords(
        &self,
        filter: &KeywordFilter,
        offset: u64,
        limit: u32,
    ) -> Result<Page<Keyword>, UpstreamError> {
        const OP: &str = "list_keywords";
        let mut query = Vec::new();
        if let Some(ad) = &filter.ad_id {
            query.push(("ad_id", ad.clone()));
        }
        if let Some(shared) = filter.is_shared {
            query.push(("is_shared", shared.to_string()));
        }
        if let Some(status) = &filter.status {
            query.push(("status", status.as_str().to_string()));
        }
        query.push(("offset", offset.to_string()));
        query.push(("limit", limit.clamp(1, KEYWORDS_MAX_LIMIT).to_string()));
        let url = self.url(OP, &["keywords"])?;
        let raw: RawList<Keyword> = self
            .call(OP, reqwest::Method::GET, url, &query, None)
            .await?;
        Ok(finish_page(raw.into(), offset))
    }

    /// Every keyword matching `filter`, walking all pages.
    pub async fn list_all_keywords(
        &self,
        filter: &KeywordFilter,
    ) -> Result<Vec<Keyword>, UpstreamError> {
        all_pages(|offset| self.list_keywords(filter, offset, KEYWORDS_MAX_LIMIT)).await
    }

    /// `GET /keywords/{id}[?ad_id=]` (404 → [`UpstreamError::is_not_found`]). The docs list
    /// `ad_id` on GET, PATCH and DELETE: it is sent for an ad-scoped keyword.
    pub async fn get_keyword(
        &self,
        id: &str,
        ad_id: Option<&str>,
    ) -> Result<Keyword, UpstreamError> {
        const OP: &str = "get_keyword";
        let url = self.url(OP, &["keywords", id])?;
        self.call(OP, reqwest::Method::GET, url, &ad_query(ad_id), None)
            .await
    }

    /// `POST /keywords?ad_id=` `{"keyword"}`.
    pub async fn create_keyword(&self, ad_id: &str, text: &str) -> Result<Keyword, UpstreamError> {
        const OP: &str = "create_keyword";
        let url = self.url(OP, &["keywords"])?;
        let body = serde_json::json!({ "keyword": text });
        self.call(
            OP,
            reqwest::Method::POST,
            url,
            &[("ad_id", ad_id.to_string())],
            Some(body),
        )
        .await
    }

    /// `POST /keywords/shared` `{"keyword"}`.
    pub async fn create_shared_keyword(&self, text: &str) -> Result<Keyword, UpstreamError> {
        const OP: &str = "create_shared_keyword";
        let url = self.url(OP, &["keywords", "shared"])?;
        let body = serde_json::json!({ "keyword": text });
        self.call(OP, reqwest::Method::POST, url, &[], Some(body))
            .await
    }

    /// `PATCH /keywords/{id}` `{"keyword"}`: returns the new keyword (new id; the old is archived).
    pub async fn patch_keyword(
        &self,
        id: &str,
        ad_id: Option<&str>,
        text: &str,
    ) -> Result<Keyword, UpstreamError> {
        const OP: &str = "patch_keyword";
        let url = self.url(OP, &["keywords", id])?;
        let body = serde_json::json!({ "keyword": text });
        self.call(
            OP,
            reqwest::Method::PATCH,
            url,
            &ad_query(ad_id),
            Some(body),
        )
        .await
    }

    /// `DELETE /keywords/{id}?delete=true[&ad_id=]`.
    pub async fn delete_keyword(&self, id: &str, ad_id: Option<&str>) -> Result<(), UpstreamError> {
        const OP: &str = "delete_keyword";
        let url = self.url(OP, &["keywords", id])?;
        let mut query = ad_query(ad_id);
        query.push(("delete", "true".to_string()));
        let _: SuccessBody = self
            .call(OP, reqwest::Method::DELETE, url, &query, None)
            .await?;
        Ok(())
    }

    /// `GET .../signal` → the postback URL (secret: it may embed a token).
    pub async fn get_postback(
        &self,
        target: &PostbackTarget,
    ) -> Result<Option<SecretString>, UpstreamError> {
        const OP: &str = "get_postback";
        let url = self.url(OP, &target.segments())?;
        let body: PostbackBody = self.call(OP, reqwest::Method::GET, url, &[], None).await?;
        Ok(body.url.map(SecretString::new))
    }

    /// `POST .../signal` `{"url": ...}`; `None` clears it.
    pub async fn set_postback(
        &self,
        target: &PostbackTarget,
        url: Option<&SecretString>,
    ) -> Result<(), UpstreamError> {
        const OP: &str = "set_postback";
        let endpoint = self.url(OP, &target.segments())?;
        let body = serde_json::json!({ "url": url.map(SecretString::expose) });
        let _: SuccessBody = self
            .call(OP, reqwest::Method::POST, endpoint, &[], Some(body))
            .await?;
        Ok(())
    }

    /// `POST /converted_events` `{"campaign_id","type","type_id"?,"type_value"?}`: sets the
    /// event that counts as the campaign's conversion (replacing the one set before).
    pub async fn set_converted_event(&self, event: &ConvertedEvent) -> Result<(), UpstreamError> {
        const OP: &str = "set_converted_event";
        let url = self.url(OP, &["converted_events"])?;
        let body = serde_json::to_value(event).expect("a ConvertedEvent serialises");
        let _: SuccessBody = self
            .call(OP, reqwest::Method::POST, url, &[], Some(body))
            .await?;
        Ok(())
    }

    /// `GET /event_types` → the event types the app offers. The vendor lists `date_from` and
    /// `date_to` as required here too (as on the events list), so the last day is sent: an
    /// API that ignores them loses nothing, one that needs them answers.
    pub async fn list_event_types(&self) -> Result<Vec<EventType>, UpstreamError> {
        const OP: &str = "list_event_types";
        let url = self.url(OP, &["event_types"])?;
        let now = jiff::Timestamp::now();
        let day_ago = now - jiff::SignedDuration::from_hours(24);
        let query = [
            ("date_from", signals_time(day_ago)),
            ("date_to", signals_time(now)),
        ];
        self.call(OP, reqwest::Method::GET, url, &query, None).await
    }

    /// `GET /events?date_from&date_to&ad_id&event_type&event_type_id&limit&offset`
    /// (limit clamped to 1..=1000), each event decoded as `T`: raw JSON, or the bridge's
    /// `SignalsEvent`; either way one malformed event never fails the page.
    pub async fn list_events<T: serde::de::DeserializeOwned>(
        &self,
        query: &EventQuery,
        offset: u64,
        limit: u32,
    ) -> Result<Page<T>, UpstreamError> {
        self.events_page(query, offset, limit).await?.decode()
    }

    /// One page of the events list as it came, for events that borrow from it
    /// ([`EventsPage::decode`]).
    pub async fn events_page(
        &self,
        query: &EventQuery,
        offset: u64,
        limit: u32,
    ) -> Result<EventsPage, UpstreamError> {
        let mut params = vec![
            ("date_from", signals_time(query.date_from)),
            ("date_to", signals_time(query.date_to)),
        ];
        if let Some(ad) = &query.ad_id {
            params.push(("ad_id", ad.clone()));
        }
        if let Some(t) = &query.event_type {
            params.push(("event_type", t.clone()));
        }
        if let Some(t) = &query.event_type_id {
            params.push(("event_type_id", t.clone()));
        }
        params.push(("limit", limit.clamp(1, EVENTS_MAX_LIMIT).to_string()));
        params.push(("offset", offset.to_string()));
        let url = self.url(EventsPage::OP, &["events"])?;
        let response = self
            .call_raw(EventsPage::OP, reqwest::Method::GET, url, &params, None)
            .await?;
        let server_date = response
            .headers
            .get(reqwest::header::DATE)
            .and_then(|d| d.to_str().ok())
            .and_then(http_date);
        Ok(EventsPage {
            response,
            offset,
            server_date,
        })
    }

    /// Every event matching `query`, walking all pages of 1000.
    pub async fn list_all_events(
        &self,
        query: &EventQuery,
    ) -> Result<Vec<serde_json::Value>, UpstreamError> {
        all_pages(|offset| self.list_events(query, offset, EVENTS_MAX_LIMIT)).await
    }
}

/// Every item of a paged list: pages are read from offset 0 until one is empty or the total
/// is reached.
async fn all_pages<T, F, Fut>(mut page_at: F) -> Result<Vec<T>, UpstreamError>
where
    F: FnMut(u64) -> Fut,
    Fut: std::future::Future<Output = Result<Page<T>, UpstreamError>>,
{
    let mut all = Vec::new();
    loop {
        let page = page_at(all.len() as u64).await?;
        let done = page.data.is_empty();
        all.extend(page.data);
        if done || all.len() as u64 >= page.total_count {
            return Ok(all);
        }
    }
}

fn ad_query(ad_id: Option<&str>) -> Vec<(&'static str, String)> {
    ad_id
        .map(|ad| ("ad_id", ad.to_string()))
        .into_iter()
        .collect()
}

fn finish_page<T>(raw: RawPage<T>, offset: u64) -> Page<T> {
    let len = raw.data.len() as u64;
    Page {
        total_count: raw.total_count.unwrap_or(offset + len),
        offset: raw.offset.unwrap_or(offset),
        limit: raw.limit.unwrap_or(len),
        data: raw.data,
        server_date: None,
    }
}

/// An HTTP `Date` header (IMF-fixdate, `Tue, 01 Dec 2026 22:50:21 GMT`).
pub fn http_date(text: &str) -> Option<jiff::Timestamp> {
    jiff::fmt::rfc2822::parse(text.trim())
        .ok()
        .map(|z| z.timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyword_tolerates_unknown_fields_and_numbers() {
        let k: Keyword = serde_json::from_str(
            r#"{"id":42,"keyword":"promo","ad_id":null,"is_shared":true,"status":"paused","new":1}"#,
        )
        .unwrap();
        assert_eq!(k.id, "42");
        assert_eq!(k.ad_id, None);
        assert_eq!(k.status, KeywordStatus::Unknown);
    }

    #[test]
    fn only_archived_inactive_or_disabled_mean_gone() {
        let status = |body: &str| serde_json::from_str::<Keyword>(body).unwrap().status;
        for gone in ["archived", "inactive", "disabled"] {
            let s = status(&format!(r#"{{"id":"1","keyword":"k","status":"{gone}"}}"#));
            assert!(!s.is_live(), "{gone}");
        }
        for live in [
            r#"{"id":"1","keyword":"k","status":"active"}"#,
            r#"{"id":"1","keyword":"k","status":"paused"}"#,
            r#"{"id":"1","keyword":"k"}"#,
        ] {
            assert!(status(live).is_live(), "{live}");
        }
    }

    #[test]
    fn a_list_may_be_a_page_or_a_bare_array() {
        let page: RawList<Keyword> = serde_json::from_str(
            r#"{"data":[{"id":"1","keyword":"a"}],"total_count":7,"offset":0,"limit":1}"#,
        )
        .unwrap();
        let page = finish_page(page.into(), 0);
        assert_eq!((page.data.len(), page.total_count), (1, 7));
        let bare: RawList<Keyword> =
            serde_json::from_str(r#"[{"id":"1","keyword":"a"},{"id":2,"keyword":"b"}]"#).unwrap();
        let bare = finish_page(bare.into(), 100);
        assert_eq!(bare.data[1].id, "2");
        assert_eq!(
            (bare.total_count, bare.offset),
            (102, 100),
            "a bare array is the last page"
        );
        let empty: RawList<Keyword> = serde_json::from_str("[]").unwrap();
        assert!(finish_page(empty.into(), 0).data.is_empty());
    }

    #[test]
    fn date_headers_are_read() {
        assert_eq!(
            http_date("Tue, 01 Dec 2026 22:50:21 GMT"),
            Some("2026-12-01T22:50:21Z".parse().unwrap())
        );
        assert_eq!(http_date("yesterday"), None);
    }

    #[test]
    fn time_format() {
        let t: jiff::Timestamp = "2026-11-01T12:34:56.789Z".parse().unwrap();
        assert_eq!(signals_time(t), "2026-11-01T12:34:56");
    }

    #[test]
    fn postback_paths() {
        let t = PostbackTarget::Keyword {
            ad: "a".into(),
            keyword_id: "k".into(),
        };
        assert_eq!(t.segments(), ["ads", "a", "keywords", "k", "signal"]);
    }
}
