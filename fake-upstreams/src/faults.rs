//! Fault injection: added latency, 5xx, 429, timeouts and dropped connections, per route.

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use rand::Rng;
use serde::{Deserialize, Serialize};

/// A fault rule. It matches a request when `api` and `operation` (if set) equal the
/// request's; the first matching rule with budget left applies.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct FaultRule {
    /// `hub`, `signals` or `x`; None matches every API.
    pub api: Option<String>,
    /// An operation name such as `signals.create_keyword`; None matches every operation.
    pub operation: Option<String>,
    /// Added to every matching request.
    pub latency_ms: u64,
    /// Share (0..1) of matching requests answered with 500, 502 or 503.
    pub error_rate: f64,
    /// Share answered with 429 (reset one to two seconds ahead).
    pub rate_limit_rate: f64,
    /// Share held for `timeout_ms` and then answered with 504.
    pub timeout_rate: f64,
    /// How long a timed-out request is held (default 30 s).
    pub timeout_ms: Option<u64>,
    /// Share whose connection is closed without any HTTP response.
    pub drop_rate: f64,
    /// Apply to the next N matching requests only.
    pub remaining: Option<u64>,
    /// The request takes effect first and only then fails (a write that succeeded but whose
    /// answer was lost).
    pub after_effect: bool,
}

/// What happens to one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Pass,
    ServerError(u16),
    RateLimited,
    Timeout(Duration),
    Drop,
}

impl FaultRule {
    pub fn matches(&self, api: &str, operation: &str) -> bool {
        self.remaining != Some(0)
            && self.api.as_deref().is_none_or(|a| a == api)
            && self.operation.as_deref().is_none_or(|o| o == operation)
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
        Outcome::Pass
    }
}

/// The answer for a failing outcome, in the shape of the API it imitates.
pub fn failure_response(api: &str, outcome: Outcome) -> Response {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
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
            headers.insert("retry-after", HeaderValue::from_static("1"));
            if api == "x" {
                headers.insert("x-rate-limit-remaining", HeaderValue::from_static("0"));
                if let Ok(v) = HeaderValue::from_str(&(now + 2).to_string()) {
                    headers.insert("x-rate-limit-reset", v);
                }
            }
            resp
        }
        Outcome::Timeout(_) => (StatusCode::GATEWAY_TIMEOUT, "upstream timed out").into_response(),
        Outcome::Pass | Outcome::Drop => StatusCode::OK.into_response(),
    }
}
