//! Upstream errors and their classification (SPEC section 3).
//!
//! [`classify_response`] is a pure function of (status, headers, body) so the
//! retry policy can be unit-tested without I/O.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::header::HeaderMap;

/// Which upstream API an error or request concerns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Api {
    /// 360dialog Hub (tokens, enable/disable CTWA).
    Hub,
    /// 360dialog Signals API.
    Signals,
    /// X (Twitter) Ads API.
    XAds,
}

impl Api {
    /// Stable lowercase name, suitable for metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Api::Hub => "hub",
            Api::Signals => "signals",
            Api::XAds => "x-ads",
        }
    }
}

impl fmt::Display for Api {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the caller should react to an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// 5xx, timeouts, connection errors: retry with backoff.
    Transient,
    /// 429: retry, not before `retry_at` when the upstream said when.
    RateLimited {
        /// When the upstream allows the next request, if it said so.
        retry_at: Option<SystemTime>,
    },
    /// Other 4xx, missing or invalid credentials: do not retry until the input changes.
    Terminal,
}

/// Longest upstream message kept in an error (messages end up in status and events).
const MAX_MESSAGE_CHARS: usize = 512;

/// An error from one upstream call.
///
/// Display never contains a URL, a credential or a request body: only the API,
/// the operation name, the HTTP status and the upstream's own error message.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The upstream answered with a non-success HTTP status.
    #[error("{api} {operation}: HTTP {status}{}", fmt_message(.message))]
    Status {
        /// API called.
        api: Api,
        /// Operation name (e.g. `create_keyword`).
        operation: &'static str,
        /// HTTP status code.
        status: u16,
        /// The upstream's message, when the body carried one.
        message: Option<String>,
        /// X's `errors[]` entries, when the body had them (empty for anything else, e.g. an
        /// HTML page from a proxy).
        errors: Vec<ErrorDetail>,
        /// Classification computed from status, headers and body.
        class: ErrorClass,
    },
    /// The request timed out.
    #[error("{api} {operation}: request timed out")]
    Timeout {
        /// API called.
        api: Api,
        /// Operation name.
        operation: &'static str,
    },
    /// Connecting or transferring failed (DNS, refused, reset, TLS).
    #[error("{api} {operation}: connection failed: {detail}")]
    Connection {
        /// API called.
        api: Api,
        /// Operation name.
        operation: &'static str,
        /// Description of the failure, without the URL.
        detail: String,
    },
    /// A success response whose body could not be decoded.
    #[error("{api} {operation}: unexpected response body: {detail}")]
    Decode {
        /// API called.
        api: Api,
        /// Operation name.
        operation: &'static str,
        /// HTTP status of the response.
        status: u16,
        /// Decoder message.
        detail: String,
    },
    /// The request could not be built or the client is misconfigured (bad base URL, ...).
    #[error("{api} {operation}: invalid request: {detail}")]
    InvalidRequest {
        /// API called.
        api: Api,
        /// Operation name.
        operation: &'static str,
        /// What is wrong.
        detail: String,
    },
    /// Credentials are missing or malformed (never contains a value).
    #[error("{api} {operation}: {source}")]
    Credentials {
        /// API called.
        api: Api,
        /// Operation name.
        operation: &'static str,
        /// The credential problem.
        #[source]
        source: crate::upstream::secret::CredentialsError,
    },
}

/// One entry of X's `{"errors": [{"code", "message", "parameter"}]}`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
    /// The request field the error is about; X leaves it empty for some errors.
    pub parameter: String,
}

/// X's error entries of a response body; empty when the body is not X's error shape.
pub fn error_details(body: &[u8]) -> Vec<ErrorDetail> {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else {
        return Vec::new();
    };
    let text = |e: &serde_json::Value, field: &str| {
        e.get(field)
            .and_then(|v| v.as_str())
            .map(|s| truncate(s.trim()))
            .unwrap_or_default()
    };
    value
        .get("errors")
        .and_then(|e| e.as_array())
        .map(|errors| {
            errors
                .iter()
                .filter(|e| e.is_object())
                .map(|e| ErrorDetail {
                    code: text(e, "code"),
                    message: text(e, "message"),
                    parameter: text(e, "parameter"),
                })
                .collect()
        })
        .unwrap_or_default()
}

fn fmt_message(message: &Option<String>) -> String {
    match message {
        Some(m) => format!(": {m}"),
        None => String::new(),
    }
}

impl UpstreamError {
    /// How the caller should react (retry, wait, stall).
    pub fn class(&self) -> ErrorClass {
        match self {
            UpstreamError::Status { class, .. } => *class,
            UpstreamError::Timeout { .. } | UpstreamError::Connection { .. } => {
                ErrorClass::Transient
            }
            // A 2xx with a body we cannot read is most likely an upstream glitch.
            UpstreamError::Decode { .. } => ErrorClass::Transient,
            UpstreamError::InvalidRequest { .. } | UpstreamError::Credentials { .. } => {
                ErrorClass::Terminal
            }
        }
    }

    /// How long the upstream asked us to wait (429 with `Retry-After` or
    /// `x-rate-limit-reset`), from now.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self.class() {
            ErrorClass::RateLimited { retry_at: Some(at) } => {
                Some(at.duration_since(SystemTime::now()).unwrap_or_default())
            }
            _ => None,
        }
    }

    /// The API this error concerns.
    pub fn api(&self) -> Api {
        match self {
            UpstreamError::Status { api, .. }
            | UpstreamError::Timeout { api, .. }
            | UpstreamError::Connection { api, .. }
            | UpstreamError::Decode { api, .. }
            | UpstreamError::InvalidRequest { api, .. }
            | UpstreamError::Credentials { api, .. } => *api,
        }
    }

    /// The operation name this error concerns.
    pub fn operation(&self) -> &'static str {
        match self {
            UpstreamError::Status { operation, .. }
            | UpstreamError::Timeout { operation, .. }
            | UpstreamError::Connection { operation, .. }
            | UpstreamError::Decode { operation, .. }
            | UpstreamError::InvalidRequest { operation, .. }
            | UpstreamError::Credentials { operation, .. } => operation,
        }
    }

    /// HTTP status, when the upstream answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            UpstreamError::Status { status, .. } | UpstreamError::Decode { status, .. } => {
                Some(*status)
            }
            _ => None,
        }
    }

    /// True when the upstream said that the object this call is about does not exist: a 404
    /// in the vendor's own words about that object (SPEC 7.1), so a delete may count it as
    /// done and an observe as vanished. False for every other 404, which may hide an object
    /// that still exists, so that nothing is forgotten upstream:
    /// - the 404 of a call that is not about one object (lists, creates, the Hub's `/token`,
    ///   conversions);
    /// - a body that is not the vendor's error JSON (an HTML page, an empty body: a wrong base
    ///   URL or a proxy), or is, but does not name the object: the bare `Not Found` that a
    ///   web framework gives for an unknown route, a parent that is not found (`Client not
    ///   found` for a keyword), an unknown wording (treated as "not known to be gone");
    /// - X's `ROUTE_NOT_FOUND` (a wrong URL), and any X error about the account, such as
    ///   "User … does not have access to account …" or "… does not belong to provided account",
    ///   whatever its code.
    ///
    /// What counts as the object's own 404 (letter case ignored):
    /// - 360dialog (Signals keywords and postbacks, Hub channels): `{"detail": "<subject> not
    ///   found"}` whose subject names the object (`Keyword not found`, `Channel not found`);
    /// - X (tag get, update, delete): `{"errors": [...]}` whose every entry has code
    ///   `NOT_FOUND` and a message that does not concern the account
    ///   (`web_event_tag (o3bk1) not found`).
    pub fn is_not_found(&self) -> bool {
        let UpstreamError::Status {
            api,
            operation,
            status: 404,
            message,
            errors,
            ..
        } = self
        else {
            return false;
        };
        match own_object(*api, operation) {
            Some(OwnObject::Named(nouns)) => {
                errors.is_empty()
                    && message
                        .as_deref()
                        .is_some_and(|m| names_its_absence(m, nouns))
            }
            Some(OwnObject::XNotFound) => x_own_not_found(errors),
            None => false,
        }
    }

    /// True for a 401 or 403 (bad or expired credentials, no access).
    pub fn is_unauthorized(&self) -> bool {
        matches!(
            self,
            UpstreamError::Status {
                status: 401 | 403,
                ..
            }
        )
    }

    /// True for a 429.
    pub fn is_rate_limited(&self) -> bool {
        matches!(self.class(), ErrorClass::RateLimited { .. })
    }

    /// X's `errors[]` entries (empty when the body had none).
    pub fn error_details(&self) -> &[ErrorDetail] {
        match self {
            UpstreamError::Status { errors, .. } => errors,
            _ => &[],
        }
    }

    /// The upstream's own error message (from `detail` or `errors[].message`).
    pub fn upstream_message(&self) -> Option<&str> {
        match self {
            UpstreamError::Status { message, .. } => message.as_deref(),
            _ => None,
        }
    }

    /// Build a [`UpstreamError::Status`] from a response's parts.
    pub fn from_response(
        api: Api,
        operation: &'static str,
        status: u16,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Self {
        let (class, message) = classify_response(status, headers, body, SystemTime::now());
        UpstreamError::Status {
            api,
            operation,
            status,
            message,
            errors: error_details(body),
            class,
        }
    }

    /// Map a transport error from reqwest (the URL is dropped).
    pub fn from_reqwest(api: Api, operation: &'static str, err: reqwest::Error) -> Self {
        let err = err.without_url();
        if err.is_timeout() {
            UpstreamError::Timeout { api, operation }
        } else if err.is_builder() {
            UpstreamError::InvalidRequest {
                api,
                operation,
                detail: error_chain(&err),
            }
        } else if let Some(status) = err.status() {
            UpstreamError::Status {
                api,
                operation,
                status: status.as_u16(),
                message: None,
                errors: Vec::new(),
                class: classify_status(status.as_u16()),
            }
        } else if err.is_decode() {
            UpstreamError::Decode {
                api,
                operation,
                status: 200,
                detail: error_chain(&err),
            }
        } else {
            UpstreamError::Connection {
                api,
                operation,
                detail: error_chain(&err),
            }
        }
    }
}

/// How the object an operation is about says it does not exist.
enum OwnObject {
    /// 360dialog: a `detail` saying "<subject> not found", the subject naming one of these.
    Named(&'static [&'static str]),
    /// X: `errors[]` of code `NOT_FOUND` about neither the route nor the account.
    XNotFound,
}

/// The operations about one object, i.e. whose 404 can mean that object is gone (the
/// operation names of the clients in this module's siblings).
fn own_object(api: Api, operation: &str) -> Option<OwnObject> {
    match (api, operation) {
        (Api::Signals, "get_keyword" | "patch_keyword" | "delete_keyword") => {
            Some(OwnObject::Named(&["keyword"]))
        }
        // A postback URL lives on its ad, keyword or session-start event: with them, it is gone.
        (Api::Signals, "get_postback" | "set_postback") => {
            Some(OwnObject::Named(&["keyword", "ad", "signal", "postback"]))
        }
        (Api::Hub, "enable_ctwa" | "disable_ctwa") => Some(OwnObject::Named(&["channel"])),
        (Api::XAds, "get_tag" | "update_tag" | "delete_tag") => Some(OwnObject::XNotFound),
        _ => None,
    }
}

/// Subjects of a "not found" that are not the object but what it lives in, or the route.
const NOT_THE_OBJECT: &[&str] = &[
    "client", "app", "partner", "account", "user", "token", "route", "page", "path", "endpoint",
    "resource", "url", "file",
];

/// `message` says "<subject> not found" and the subject names one of `nouns` and nothing
/// that the object lives in. `Not Found` alone (a framework's unknown route) names nothing.
fn names_its_absence(message: &str, nouns: &[&str]) -> bool {
    let message = message.to_lowercase();
    let Some(at) = message.find("not found") else {
        return false;
    };
    let words: Vec<&str> = message[..at]
        .split(|c: char| !c.is_alphanumeric() && c != '_')
        .filter(|w| !w.is_empty())
        .collect();
    words.iter().any(|w| nouns.contains(w)) && !words.iter().any(|w| NOT_THE_OBJECT.contains(w))
}

/// X's body says the object is not found: every error is `NOT_FOUND`, none is about the
/// account ("does not have access to account", "does not belong to provided account").
fn x_own_not_found(errors: &[ErrorDetail]) -> bool {
    !errors.is_empty()
        && errors.iter().all(|e| {
            let message = e.message.to_lowercase();
            e.code.eq_ignore_ascii_case("NOT_FOUND")
                && !message.contains("account")
                && !message.contains("access")
        })
}

fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// Class of a status code alone (no headers: a 429 gets no `retry_at`).
pub fn classify_status(status: u16) -> ErrorClass {
    match status {
        429 => ErrorClass::RateLimited { retry_at: None },
        408 | 500..=599 => ErrorClass::Transient,
        _ => ErrorClass::Terminal,
    }
}

/// Classify a non-success response and extract the upstream's message.
///
/// - 5xx and 408: transient.
/// - 429: rate limited; `retry_at` from `Retry-After` (seconds, Signals) or
///   `x-rate-limit-reset` (epoch seconds, X), whichever is present (`Retry-After` first).
/// - other 4xx: terminal.
///
/// The message comes from `{"detail": "..."}`, `{"detail": [{"msg", "loc"}, ...]}`
/// (FastAPI validation errors; the `input` echo is deliberately dropped since it may
/// hold a URL with a token) or `{"errors": [{"message"}]}` (X).
pub fn classify_response(
    status: u16,
    headers: &HeaderMap,
    body: &[u8],
    now: SystemTime,
) -> (ErrorClass, Option<String>) {
    let class = match classify_status(status) {
        ErrorClass::RateLimited { .. } => ErrorClass::RateLimited {
            retry_at: retry_after(headers, now).or_else(|| rate_limit_reset(headers)),
        },
        other => other,
    };
    (class, extract_message(body))
}

fn header_u64(headers: &HeaderMap, name: &str) -> Option<u64> {
    headers.get(name)?.to_str().ok()?.trim().parse::<u64>().ok()
}

/// `Retry-After: <seconds>` relative to `now`.
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<SystemTime> {
    let secs = header_u64(headers, "retry-after")?;
    now.checked_add(Duration::from_secs(secs))
}

/// `x-rate-limit-reset: <epoch seconds>`.
pub fn rate_limit_reset(headers: &HeaderMap) -> Option<SystemTime> {
    let secs = header_u64(headers, "x-rate-limit-reset")?;
    UNIX_EPOCH.checked_add(Duration::from_secs(secs))
}

/// `x-rate-limit-limit`.
pub fn rate_limit_limit(headers: &HeaderMap) -> Option<u64> {
    header_u64(headers, "x-rate-limit-limit")
}

/// `x-rate-limit-remaining`.
pub fn rate_limit_remaining(headers: &HeaderMap) -> Option<u64> {
    header_u64(headers, "x-rate-limit-remaining")
}

/// Extract a human message from an upstream error body, if any.
pub fn extract_message(body: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let msg = if let Some(detail) = value.get("detail") {
        detail_message(detail)
    } else if let Some(errors) = value.get("errors").and_then(|e| e.as_array()) {
        let msgs: Vec<String> = errors
            .iter()
            .filter_map(|e| {
                let m = e.get("message").and_then(|m| m.as_str())?;
                Some(m.to_string())
            })
            .collect();
        (!msgs.is_empty()).then(|| msgs.join("; "))
    } else {
        value
            .get("message")
            .and_then(|m| m.as_str())
            .map(str::to_string)
    }?;
    Some(truncate(msg.trim()))
}

fn detail_message(detail: &serde_json::Value) -> Option<String> {
    match detail {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Array(items) => {
            let msgs: Vec<String> = items
                .iter()
                .filter_map(|item| match item {
                    serde_json::Value::String(s) => Some(s.clone()),
                    serde_json::Value::Object(o) => {
                        let msg = o.get("msg").and_then(|m| m.as_str())?;
                        let loc = o.get("loc").and_then(|l| l.as_array()).map(|l| {
                            l.iter()
                                .map(|p| match p {
                                    serde_json::Value::String(s) => s.clone(),
                                    other => other.to_string(),
                                })
                                .collect::<Vec<_>>()
                                .join(".")
                        });
                        Some(match loc {
                            Some(loc) if !loc.is_empty() => format!("{loc}: {msg}"),
                            _ => msg.to_string(),
                        })
                    }
                    _ => None,
                })
                .collect();
            (!msgs.is_empty()).then(|| msgs.join("; "))
        }
        _ => None,
    }
}

fn truncate(s: &str) -> String {
    if s.chars().count() <= MAX_MESSAGE_CHARS {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(MAX_MESSAGE_CHARS).collect();
        out.push('…');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_800_000_000)
    }

    #[test]
    fn server_errors_are_transient() {
        for s in [500, 502, 503, 504, 408] {
            let (class, _) = classify_response(s, &HeaderMap::new(), b"oops", now());
            assert_eq!(class, ErrorClass::Transient, "{s}");
        }
    }

    #[test]
    fn client_errors_are_terminal() {
        for s in [400, 401, 403, 404, 409, 422] {
            let (class, _) = classify_response(s, &HeaderMap::new(), b"", now());
            assert_eq!(class, ErrorClass::Terminal, "{s}");
        }
    }

    #[test]
    fn signals_429_uses_retry_after_seconds() {
        let (class, msg) = classify_response(
            429,
            &headers(&[("retry-after", "17")]),
            br#"{"detail":"Too many requests"}"#,
            now(),
        );
        assert_eq!(
            class,
            ErrorClass::RateLimited {
                retry_at: Some(now() + Duration::from_secs(17))
            }
        );
        assert_eq!(msg.as_deref(), Some("Too many requests"));
    }

    #[test]
    fn x_429_uses_rate_limit_reset_epoch() {
        let (class, msg) = classify_response(
            429,
            &headers(&[
                ("x-rate-limit-reset", "1800000900"),
                ("x-rate-limit-remaining", "0"),
            ]),
            br#"{"errors":[{"code":"TOO_MANY_REQUESTS","message":"Rate limit exceeded"}]}"#,
            now(),
        );
        assert_eq!(
            class,
            ErrorClass::RateLimited {
                retry_at: Some(UNIX_EPOCH + Duration::from_secs(1_800_000_900))
            }
        );
        assert_eq!(msg.as_deref(), Some("Rate limit exceeded"));
    }

    #[test]
    fn bare_429_has_no_retry_at() {
        let (class, msg) = classify_response(429, &headers(&[("retry-after", "x")]), b"", now());
        assert_eq!(class, ErrorClass::RateLimited { retry_at: None });
        assert_eq!(msg, None);
    }

    #[test]
    fn messages_are_extracted() {
        assert_eq!(
            extract_message(br#"{"detail":"Could not validate credentials"}"#).as_deref(),
            Some("Could not validate credentials")
        );
        assert_eq!(
            extract_message(
                br#"{"detail":[{"loc":["body","url"],"msg":"invalid url","input":"https://h/?token=SECRET"}]}"#
            )
            .as_deref(),
            Some("body.url: invalid url")
        );
        assert_eq!(
            extract_message(
                br#"{"errors":[{"code":"INVALID_PARAMETER","message":"Conversion count limit is 500","parameter":"conversions"},{"message":"second"}],"request":{}}"#
            )
            .as_deref(),
            Some("Conversion count limit is 500; second")
        );
        assert_eq!(extract_message(b"<html>bad gateway</html>"), None);
        assert_eq!(extract_message(br#"{"unrelated":1}"#), None);
        let long = format!(r#"{{"detail":"{}"}}"#, "a".repeat(2000));
        assert!(extract_message(long.as_bytes()).unwrap().chars().count() <= 513);
    }

    fn status(api: Api, operation: &'static str, status: u16, body: &str) -> UpstreamError {
        UpstreamError::from_response(api, operation, status, &HeaderMap::new(), body.as_bytes())
    }

    /// The Signals and Hub answers for a missing object, as the fakes give them (the vendor
    /// documents a 404 without its body; `{"detail": ...}` is its error shape).
    const SIGNALS_KEYWORD_404: &str = r#"{"detail":"Keyword not found"}"#;
    const HUB_CHANNEL_404: &str = r#"{"detail":"Channel not found"}"#;
    /// X's answer for a missing tag, as the fake gives it (X documents `NOT_FOUND`).
    const X_TAG_404: &str = r#"{"errors":[{"code":"NOT_FOUND","message":"web_event_tag (o3bk1) not found"}],"request":{"params":{}}}"#;
    /// X's documented "no access" answer (its 404 table, `\u003C` escapes as printed).
    const X_NO_ACCESS_404: &str = r#"{"errors":[{"code":"NOT_FOUND","message":"User <user_id> does not have access to account <account_id>. Type ‘sn <user_id>’ to get the handle of the user. Use ‘twurl accounts’ and ‘twurl set default \u003Cusername\u003E’ to change the user you’re using."}],"request":{"params":{"account_id":"18ce552mlaq"}}}"#;
    /// X's documented wrong-URL answer.
    const X_ROUTE_404: &str = r#"{"errors":[{"code":"ROUTE_NOT_FOUND","message":"The requested resource could not be found"}],"request":{"params":{"account_id":"18ce552mlaq"}}}"#;
    /// X's documented JSON example of an event id of another account, verbatim.
    const X_OTHER_ACCOUNT_404: &str = r#"{"errors":[{"code":"NOT_FOUND","message":"event_id (abc) does not belong to provided account","parameter":"event_id"},{"code":"INVALID_PARAMETER","message":"event_id (abc) is not a single event tag (SET)","parameter":"event_id"}],"request":{"params":{"account_id":"18ce55gze09"}}}"#;
    /// What a proxy or a wrong base URL answers.
    const NGINX_404: &str = "<html>\r\n<head><title>404 Not Found</title></head>\r\n<body>\r\n<center><h1>404 Not Found</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n";
    /// FastAPI's (and Starlette's) answer for an unknown route: the vendor's shape, no object.
    const FASTAPI_ROUTE_404: &str = r#"{"detail":"Not Found"}"#;

    const ONE_OBJECT_OPS: &[(Api, &str)] = &[
        (Api::Signals, "get_keyword"),
        (Api::Signals, "patch_keyword"),
        (Api::Signals, "delete_keyword"),
        (Api::Signals, "get_postback"),
        (Api::Signals, "set_postback"),
        (Api::Hub, "enable_ctwa"),
        (Api::Hub, "disable_ctwa"),
        (Api::XAds, "get_tag"),
        (Api::XAds, "update_tag"),
        (Api::XAds, "delete_tag"),
    ];

    #[test]
    fn the_objects_own_404_is_not_found() {
        for op in ["get_keyword", "patch_keyword", "delete_keyword"] {
            assert!(
                status(Api::Signals, op, 404, SIGNALS_KEYWORD_404).is_not_found(),
                "{op}"
            );
        }
        // A keyword postback whose keyword is gone is gone with it.
        assert!(status(Api::Signals, "set_postback", 404, SIGNALS_KEYWORD_404).is_not_found());
        for op in ["enable_ctwa", "disable_ctwa"] {
            assert!(
                status(Api::Hub, op, 404, HUB_CHANNEL_404).is_not_found(),
                "{op}"
            );
        }
        for op in ["get_tag", "update_tag", "delete_tag"] {
            assert!(status(Api::XAds, op, 404, X_TAG_404).is_not_found(), "{op}");
        }
        // Letter case is not part of the rule.
        assert!(
            status(
                Api::Signals,
                "delete_keyword",
                404,
                r#"{"detail":"keyword 42 NOT FOUND."}"#
            )
            .is_not_found()
        );
        assert!(
            status(
                Api::XAds,
                "delete_tag",
                404,
                r#"{"errors":[{"code":"not_found","message":"Not found"}]}"#
            )
            .is_not_found()
        );
    }

    #[test]
    fn a_404_that_is_not_the_vendors_json_is_not_not_found() {
        for &(api, op) in ONE_OBJECT_OPS {
            for body in [NGINX_404, "", "Not Found", "null", "[]", r#""Not Found""#] {
                let e = status(api, op, 404, body);
                assert!(!e.is_not_found(), "{api} {op} {body:?}");
                assert_eq!(e.class(), ErrorClass::Terminal);
            }
        }
    }

    #[test]
    fn a_404_that_does_not_name_the_object_is_not_not_found() {
        for &(api, op) in ONE_OBJECT_OPS {
            for body in [
                // A framework's unknown route (a wrong base URL on a FastAPI service).
                FASTAPI_ROUTE_404,
                r#"{"detail":"404: Not Found"}"#,
                // Unrecognised JSON: not known to be gone.
                r#"{"message":"no Route matched with those values"}"#,
                r#"{"message":"Not Found"}"#,
                r#"{"error":"not_found"}"#,
                r#"{"detail":"Keyword does not exist"}"#,
                r#"{"errors":[]}"#,
                // A parent, not the object.
                r#"{"detail":"Client not found"}"#,
                r#"{"detail":"App not found"}"#,
                r#"{"detail":"Partner not found"}"#,
                r#"{"detail":"Ad account not found"}"#,
                // X's documented answers that are not about the object.
                X_NO_ACCESS_404,
                X_ROUTE_404,
                X_OTHER_ACCOUNT_404,
            ] {
                let e = status(api, op, 404, body);
                assert!(!e.is_not_found(), "{api} {op} {body}");
            }
        }
        // One vendor's shape from the other's API.
        assert!(!status(Api::XAds, "get_tag", 404, SIGNALS_KEYWORD_404).is_not_found());
        assert!(!status(Api::Signals, "get_keyword", 404, X_TAG_404).is_not_found());
        // One object's words for another.
        assert!(!status(Api::Hub, "disable_ctwa", 404, SIGNALS_KEYWORD_404).is_not_found());
        assert!(!status(Api::Signals, "delete_keyword", 404, HUB_CHANNEL_404).is_not_found());
        // A not-found entry beside another error is not only "not found".
        let mixed = r#"{"errors":[{"code":"NOT_FOUND","message":"web_event_tag (o3bk1) not found"},{"code":"INVALID_PARAMETER","message":"name is too long","parameter":"name"}]}"#;
        assert!(!status(Api::XAds, "get_tag", 404, mixed).is_not_found());
    }

    #[test]
    fn x_no_access_is_never_not_found_whatever_its_status() {
        for s in [400, 403, 404] {
            for op in ["get_tag", "update_tag", "delete_tag", "send_conversions"] {
                let e = status(Api::XAds, op, s, X_NO_ACCESS_404);
                assert!(!e.is_not_found(), "{s} {op}");
                assert_eq!(e.class(), ErrorClass::Terminal);
            }
        }
        let e = status(Api::XAds, "delete_tag", 404, X_NO_ACCESS_404);
        assert!(
            e.upstream_message()
                .unwrap()
                .contains("twurl set default <username>’ to change the user")
        );
    }

    #[test]
    fn only_calls_about_one_object_have_a_not_found() {
        // Lists, creates, conversions and the Hub's token endpoint: a 404 there is about the
        // URL, the parent or the account, never a vanished object.
        for (api, op, body) in [
            (Api::Signals, "list_keywords", SIGNALS_KEYWORD_404),
            (Api::Signals, "create_keyword", SIGNALS_KEYWORD_404),
            (Api::Signals, "list_events", SIGNALS_KEYWORD_404),
            (Api::Hub, "token", FASTAPI_ROUTE_404),
            (Api::Hub, "token", HUB_CHANNEL_404),
            (Api::XAds, "list_tags", X_TAG_404),
            (Api::XAds, "create_tag", X_TAG_404),
            (Api::XAds, "send_conversions", X_TAG_404),
            (Api::XAds, "send_conversions", X_OTHER_ACCOUNT_404),
        ] {
            assert!(!status(api, op, 404, body).is_not_found(), "{api} {op}");
        }
        // Other statuses with the same words.
        for s in [400, 410, 422, 500] {
            assert!(!status(Api::Signals, "get_keyword", s, SIGNALS_KEYWORD_404).is_not_found());
            assert!(!status(Api::XAds, "get_tag", s, X_TAG_404).is_not_found());
        }
        // A 404 known only from the transport carries no body: not known to be gone.
        let bare = UpstreamError::Status {
            api: Api::Signals,
            operation: "delete_keyword",
            status: 404,
            message: None,
            errors: Vec::new(),
            class: ErrorClass::Terminal,
        };
        assert!(!bare.is_not_found());
    }

    #[test]
    fn error_helpers() {
        let e = UpstreamError::from_response(
            Api::Signals,
            "get_keyword",
            404,
            &HeaderMap::new(),
            br#"{"detail":"Keyword not found"}"#,
        );
        assert!(e.is_not_found());
        assert!(!e.is_unauthorized());
        assert_eq!(e.class(), ErrorClass::Terminal);
        assert_eq!(e.status(), Some(404));
        assert_eq!(e.upstream_message(), Some("Keyword not found"));
        assert_eq!(
            e.to_string(),
            "signals get_keyword: HTTP 404: Keyword not found"
        );
        for s in [401, 403] {
            let e = UpstreamError::from_response(Api::XAds, "get_tag", s, &HeaderMap::new(), b"");
            assert!(e.is_unauthorized());
            assert_eq!(e.to_string(), format!("x-ads get_tag: HTTP {s}"));
        }
        let t = UpstreamError::Timeout {
            api: Api::Hub,
            operation: "token",
        };
        assert_eq!(t.class(), ErrorClass::Transient);
        assert_eq!(t.status(), None);
    }
}
