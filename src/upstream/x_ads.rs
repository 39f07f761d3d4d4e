//! X Ads API: web event tags and conversions (SPEC 6.3), OAuth 1.0a signed.
//!
//! Every request is signed over method, URL and query parameters (JSON bodies
//! excluded). Rate-limit headers of every response feed the optional [`RateBudget`].

use std::sync::Arc;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::upstream::budget::{InFlight, RateBudget};
use crate::upstream::error::{
    Api, UpstreamError, rate_limit_limit, rate_limit_remaining, rate_limit_reset,
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

/// A hashed user identifier: `{"hashed_phone_number": "..."}` or `{"hashed_email": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Identifier {
    /// SHA-256 of the E.164 phone number.
    HashedPhoneNumber(String),
    /// SHA-256 of the normalised email.
    HashedEmail(String),
}

/// One conversion of `POST /measurement/conversions/{pixel_id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conversion {
    /// `yyyy-MM-ddTHH:mm:ss.SSSZ`.
    pub conversion_time: String,
    /// Web event tag id.
    pub event_id: String,
    /// Hashed identifiers.
    pub identifiers: Vec<Identifier>,
    /// De-duplication id (the Signals event id).
    pub conversion_id: String,
    /// Optional description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// The Conversion API request body, `{"conversions": [...]}`, serialised straight from the
/// conversions (no intermediate JSON tree).
pub fn conversions_body(conversions: &[Conversion]) -> Result<Vec<u8>, serde_json::Error> {
    #[derive(serde::Serialize)]
    struct Body<'a> {
        conversions: &'a [Conversion],
    }
    serde_json::to_vec(&Body { conversions })
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
    budget: Option<Arc<RateBudget>>,
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
        })
    }

    /// Feed every response's rate-limit headers to `budget`, and have
    /// [`XAdsClient::send_conversions`] acquire one unit per conversion from it.
    pub fn with_budget(mut self, budget: Arc<RateBudget>) -> Self {
        self.budget = Some(budget);
        self
    }

    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        op: &'static str,
        method: reqwest::Method,
        segments: &[&str],
        query: Vec<(String, String)>,
        body: Option<Vec<u8>>,
        spent: Option<InFlight<'_>>,
    ) -> Result<(DataEnvelope<T>, RateLimitInfo), UpstreamError> {
        let (response, rate) = self
            .call_raw(op, method, segments, query, body, spent)
            .await?;
        Ok((response.json(Api::XAds, op)?, rate))
    }

    async fn call_raw(
        &self,
        op: &'static str,
        method: reqwest::Method,
        segments: &[&str],
        query: Vec<(String, String)>,
        body: Option<Vec<u8>>,
        spent: Option<InFlight<'_>>,
    ) -> Result<(RawResponse, RateLimitInfo), UpstreamError> {
        let mut url = join_url(&self.base, segments, Api::XAds, op)?;
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
        let result = self.transport.execute(Api::XAds, op, request).await;
        // Answered: the rate-limit headers below count this request.
        drop(spent);
        let response = match result {
            Ok(r) => r,
            Err(e) => {
                if let (Some(budget), UpstreamError::Status { .. }) = (&self.budget, &e)
                    && let crate::upstream::error::ErrorClass::RateLimited { retry_at: Some(at) } =
                        e.class()
                {
                    budget.observe_rate_limit(Some(0), Some(at));
                }
                return Err(e);
            }
        };
        let rate = RateLimitInfo {
            limit: rate_limit_limit(&response.headers),
            remaining: rate_limit_remaining(&response.headers),
            reset: rate_limit_reset(&response.headers),
        };
        if let Some(budget) = &self.budget {
            budget.observe_rate_limit(rate.remaining, rate.reset);
        }
        Ok((response, rate))
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
                None,
                None,
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
                None,
                None,
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
                None,
                None,
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
                None,
                None,
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
                None,
                None,
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
        let spent = match &self.budget {
            Some(budget) => Some(budget.acquire(conversions.len().max(1) as u64).await),
            None => None,
        };
        let body = conversions_body(conversions).map_err(|e| UpstreamError::InvalidRequest {
            api: Api::XAds,
            operation: "send_conversions",
            detail: e.to_string(),
        })?;
        let (response, rate) = self
            .call_raw(
                "send_conversions",
                reqwest::Method::POST,
                &["measurement", "conversions", pixel],
                Vec::new(),
                Some(body),
                spent,
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

    #[test]
    fn conversion_serialises_per_contract() {
        let c = Conversion {
            conversion_time: "2026-11-01T00:00:00.000Z".into(),
            event_id: "o87ne".into(),
            identifiers: vec![Identifier::HashedPhoneNumber("ab".into())],
            conversion_id: "ev1".into(),
            description: None,
        };
        assert_eq!(
            serde_json::to_value(&c).unwrap(),
            serde_json::json!({
                "conversion_time": "2026-11-01T00:00:00.000Z",
                "event_id": "o87ne",
                "identifiers": [{"hashed_phone_number": "ab"}],
                "conversion_id": "ev1"
            })
        );
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
