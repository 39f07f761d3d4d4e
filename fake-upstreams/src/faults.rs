//! Fault injection: added latency, 5xx, 429, timeouts, dropped connections and canned
//! answers, per route, per path and per request body.

use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rand::Rng;
use serde::{Deserialize, Serialize};

/// A fault rule. It matches a request when `api`, `operation`, `path_contains` and
/// `body_contains` (those that are set) agree with the request; the first matching rule with
/// budget left applies.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct FaultRule {
    /// `hub`, `signals` or `x`; None matches every API.
    pub api: Option<String>,
    /// An operation name such as `signals.create_keyword`; None matches every operation.
    pub operation: Option<String>,
    /// Only requests whose path contains this text (a pixel id, an app id), so that one test
    /// can give different bridges different faults.
    pub path_contains: Option<String>,
    /// Only requests whose body contains this text (a conversion id), so that a
    /// per-conversion error hits exactly the requests carrying that conversion.
    pub body_contains: Option<String>,
    /// Added to every matching request.
    pub latency_ms: u64,
    /// Share (0..1) of matching requests answered with 500, 502 or 503.
    pub error_rate: f64,
    /// Share answered with 429 (`Retry-After` and, on X, `x-rate-limit-reset` as below).
    pub rate_limit_rate: f64,
    /// `Retry-After` of injected 429s (default `1`).
    pub retry_after: Option<String>,
    /// `x-rate-limit-reset` of injected X 429s, in seconds from now (default 2; negative is a
    /// reset in the past, as a server with a skewed clock sends).
    pub rate_limit_reset_offset_secs: Option<i64>,
    /// Share held for `timeout_ms` and then answered with 504.
    pub timeout_rate: f64,
    /// How long a timed-out request is held (default 30 s).
    pub timeout_ms: Option<u64>,
    /// Share whose connection is closed without any HTTP response.
    pub drop_rate: f64,
    /// The answer given when the rule fires with [`Outcome::Respond`].
    pub respond: Option<Canned>,
    /// Share answered with `respond`. With `respond` set and every rate 0, every matching
    /// request is answered with it: a rule of only `respond` and `remaining` is the common
    /// case and should not need a rate.
    pub respond_rate: f64,
    /// Apply to the next N matching requests only.
    pub remaining: Option<u64>,
    /// The request takes effect first and only then fails (a write that succeeded but whose
    /// answer was lost).
    pub after_effect: bool,
}

/// A fixed answer: status, body bytes as given, content type and extra headers.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Canned {
    pub status: u16,
    pub body: String,
    /// None: `application/json` for a body starting with `{` or `[`, `text/html;
    /// charset=utf-8` for any other non-empty body, no header for an empty body. `Some("")`
    /// sends no content type at all.
    pub content_type: Option<String>,
    /// Added as given, after the content type.
    pub headers: Vec<(String, String)>,
}

/// What happens to one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Pass,
    ServerError(u16),
    RateLimited,
    Timeout(Duration),
    Drop,
    /// Answered with the rule's `respond`.
    Respond,
}

impl FaultRule {
    /// Whether the rule has budget left and its `api` and `operation` fit; the path and body
    /// filters are left to [`FaultRule::matches_request`].
    pub fn matches(&self, api: &str, operation: &str) -> bool {
        self.remaining != Some(0)
            && self.api.as_deref().is_none_or(|a| a == api)
            && self.operation.as_deref().is_none_or(|o| o == operation)
    }

    /// [`FaultRule::matches`], and the request's path and body contain the texts asked for.
    pub fn matches_request(&self, api: &str, operation: &str, path: &str, body: &[u8]) -> bool {
        self.matches(api, operation)
            && self
                .path_contains
                .as_deref()
                .is_none_or(|p| path.contains(p))
            && self
                .body_contains
                .as_deref()
                .is_none_or(|b| contains(body, b.as_bytes()))
    }

    /// The share answered with `respond`, 1 when it is the rule's only effect.
    fn effective_respond_rate(&self) -> f64 {
        if self.respond.is_none() {
            return 0.0;
        }
        let others = self.error_rate + self.rate_limit_rate + self.timeout_rate + self.drop_rate;
        if self.respond_rate == 0.0 && others == 0.0 {
            1.0
        } else {
            self.respond_rate
        }
    }

    /// Draws the outcome for one request and spends one unit of `remaining`.
    pub fn draw(&mut self) -> Outcome {
        if let Some(n) = self.remaining.as_mut() {
            *n = n.saturating_sub(1);
        }
        let mut rng = rand::rng();
        let r: f64 = rng.random();
        let mut edge = self.error_rate;
        if r < edge {
            return Outcome::ServerError([500, 502, 503][rng.random_range(0..3)]);
        }
        edge += self.rate_limit_rate;
        if r < edge {
            return Outcome::RateLimited;
        }
        edge += self.timeout_rate;
        if r < edge {
            return Outcome::Timeout(Duration::from_millis(self.timeout_ms.unwrap_or(30_000)));
        }
        edge += self.drop_rate;
        if r < edge {
            return Outcome::Drop;
        }
        edge += self.effective_respond_rate();
        if r < edge {
            return Outcome::Respond;
        }
        Outcome::Pass
    }

    /// The answer for a failing outcome of this rule: its canned answer, or
    /// [`failure_response`] with the rule's `Retry-After` and reset offset.
    pub fn response(&self, api: &str, outcome: Outcome) -> Response {
        match (outcome, &self.respond) {
            (Outcome::Respond, Some(canned)) => canned.response(),
            _ => failure_response_with(
                api,
                outcome,
                self.retry_after.as_deref().unwrap_or("1"),
                self.rate_limit_reset_offset_secs.unwrap_or(2),
            ),
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

impl Canned {
    /// The answer as an HTTP response; a status that is not a valid code becomes 500, so a
    /// typo in a test shows up as a failure rather than a panic inside the fake.
    pub fn response(&self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = Response::new(Body::from(self.body.clone()));
        *response.status_mut() = status;
        let has_own_type = self
            .headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-type"));
        let content_type = match self.content_type.as_deref() {
            Some(ct) => Some(ct),
            None if has_own_type || self.body.is_empty() => None,
            None if self.body.trim_start().starts_with(['{', '[']) => Some("application/json"),
            None => Some("text/html; charset=utf-8"),
        };
        let headers = response.headers_mut();
        if let Some(ct) = content_type.filter(|ct| !ct.is_empty())
            && let Ok(v) = HeaderValue::from_str(ct)
        {
            headers.insert(header::CONTENT_TYPE, v);
        }
        for (k, v) in &self.headers {
            if let (Ok(k), Ok(v)) = (HeaderName::try_from(k.as_str()), HeaderValue::from_str(v)) {
                headers.append(k, v);
            }
        }
        response
    }
}

/// The answer for a failing outcome, in the shape of the API it imitates.
pub fn failure_response(api: &str, outcome: Outcome) -> Response {
    failure_response_with(api, outcome, "1", 2)
}

fn failure_response_with(
    api: &str,
    outcome: Outcome,
    retry_after: &str,
    reset_offset_secs: i64,
) -> Response {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    match outcome {
        Outcome::ServerError(code) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            crate::error_body(api, status, "SERVICE_UNAVAILABLE", "injected server error")
        }
        Outcome::RateLimited => {
            let mut resp = crate::error_body(
                api,
                StatusCode::TOO_MANY_REQUESTS,
                "TOO_MANY_REQUESTS",
                "Rate limit exceeded",
            );
            let headers = resp.headers_mut();
            if let Ok(v) = HeaderValue::from_str(retry_after) {
                headers.insert("retry-after", v);
            }
            if api == "x" {
                headers.insert("x-rate-limit-remaining", HeaderValue::from_static("0"));
                if let Ok(v) = HeaderValue::from_str(&(now + reset_offset_secs).to_string()) {
                    headers.insert("x-rate-limit-reset", v);
                }
            }
            resp
        }
        Outcome::Timeout(_) => (StatusCode::GATEWAY_TIMEOUT, "upstream timed out").into_response(),
        // Without a canned answer there is nothing to say but that the request went through.
        Outcome::Pass | Outcome::Drop | Outcome::Respond => StatusCode::OK.into_response(),
    }
}
