//! What every API request passes through: naming, fault injection, authentication, X's
//! rate budget, the Signals clock's `Date` and the request log.

use std::sync::Arc;
use std::time::SystemTime;

use axum::body::{Body, Bytes, to_bytes};
use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;

use crate::Shared;
use crate::faults::{FaultRule, Outcome};
use crate::state::RequestRecord;

const MAX_BODY: usize = 16 * 1024 * 1024;

/// The api and a stable operation name for a request, from its method and path.
pub fn classify(method: &Method, path: &str) -> (&'static str, &'static str) {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let m = method.as_str();
    match segs.first().copied() {
        Some("hub") => match (m, segs.last().copied()) {
            ("POST", Some("token")) if segs.len() == 2 => ("hub", "hub.token"),
            ("POST", Some("enable_ctwa")) => ("hub", "hub.enable_ctwa"),
            ("POST", Some("disable_ctwa")) => ("hub", "hub.disable_ctwa"),
            _ => ("hub", "hub.unknown"),
        },
        Some("signals") => {
            // signals/v1/clients/{c}/apps/{a}/...
            let rest = segs.get(6..).unwrap_or(&[]);
            let op = match (m, rest) {
                ("GET", ["keywords"]) => "signals.list_keywords",
                ("POST", ["keywords"]) => "signals.create_keyword",
                ("POST", ["keywords", "shared"]) => "signals.create_shared_keyword",
                ("GET", ["keywords", _]) => "signals.get_keyword",
                ("PATCH", ["keywords", _]) => "signals.patch_keyword",
                ("DELETE", ["keywords", _]) => "signals.delete_keyword",
                ("GET", ["ads", .., "signal"]) => "signals.get_postback",
                ("POST", ["ads", .., "signal"]) => "signals.set_postback",
                ("GET", ["events"]) => "signals.list_events",
                ("POST", ["converted_events"]) => "signals.set_converted_event",
                ("GET", ["event_types"]) => "signals.list_event_types",
                _ => "signals.unknown",
            };
            ("signals", op)
        }
        Some("x") => {
            let rest = segs.get(2..).unwrap_or(&[]);
            let op = match (m, rest) {
                ("GET", ["accounts", _, "web_event_tags"]) => "x.list_tags",
                ("POST", ["accounts", _, "web_event_tags"]) => "x.create_tag",
                ("GET", ["accounts", _, "web_event_tags", _]) => "x.get_tag",
                ("PUT", ["accounts", _, "web_event_tags", _]) => "x.update_tag",
                ("DELETE", ["accounts", _, "web_event_tags", _]) => "x.delete_tag",
                ("POST", ["measurement", "conversions", _]) => "x.send_conversions",
                _ => "x.unknown",
            };
            ("x", op)
        }
        _ => ("unknown", "unknown"),
    }
}

/// One request as it goes into the log.
struct Call {
    api: &'static str,
    operation: &'static str,
    credential: String,
    method: Method,
    path: String,
    query: String,
    host: String,
}

pub async fn gate(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let (api, operation) = classify(&method, &path);
    let credential = credential_of(&shared, api, request.headers());
    let call = Call {
        api,
        operation,
        credential,
        query: request.uri().query().unwrap_or("").to_string(),
        host: request
            .headers()
            .get("host")
            .and_then(|h| h.to_str().ok())
            .map(|h| h.rsplit_once(':').map_or(h, |(name, _)| name))
            .unwrap_or("")
            .to_string(),
        method,
        path,
    };

    let _answering = Answering::start(&shared, api, operation, &call.credential, &call.path);
    // Rules may match on the body, so it is read before any rule is looked at.
    let (parts, body) = request.into_parts();
    let Ok(body) = to_bytes(body, MAX_BODY).await else {
        let response = crate::error_body(
            api,
            StatusCode::PAYLOAD_TOO_LARGE,
            "INVALID_REQUEST",
            "body too large",
        );
        let response = stamp_date(&shared, api, response);
        record(&shared, &call, response.status().as_u16());
        return response;
    };
    let (latency, fault) = {
        let mut inner = shared.lock();
        match inner
            .faults
            .iter_mut()
            .find(|r| r.matches_request(api, operation, &call.path, &body))
        {
            Some(rule) => {
                let outcome = rule.draw();
                // Cloned only when it fires: passing requests are the hot path of benchmarks.
                let fault = (outcome != Outcome::Pass).then(|| (outcome, rule.clone()));
                (rule.latency_ms, fault)
            }
            None => (0, None),
        }
    };
    if latency > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(latency)).await;
    }

    let response = match fault {
        None => serve(&shared, api, operation, parts, body, next).await,
        Some((outcome, rule)) => {
            if rule.after_effect {
                // The write lands; its answer is what gets lost.
                serve(&shared, api, operation, parts, body, next).await;
            }
            inject(&shared, &call, &rule, outcome).await
        }
    };
    let response = stamp_date(&shared, api, response);
    record(&shared, &call, response.status().as_u16());
    response
}

/// 360dialog answers with a `Date` from its own clock, which need not agree with the
/// client's; the fake's Signals clock stands in for it. A canned answer's own `Date` wins.
fn stamp_date(shared: &Shared, api: &str, mut response: Response) -> Response {
    if matches!(api, "hub" | "signals") && !response.headers().contains_key(header::DATE) {
        let now = shared.lock().signals_now();
        if let Ok(v) = HeaderValue::from_str(&crate::http_date(now)) {
            response.headers_mut().insert(header::DATE, v);
        }
    }
    response
}

/// The credential a request carries, as [`RequestRecord::credential`] names it.
fn credential_of(shared: &Shared, api: &str, headers: &axum::http::HeaderMap) -> String {
    let authorization = headers
        .get("authorization")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    match api {
        "hub" | "signals" => authorization
            .strip_prefix("Bearer ")
            .and_then(|t| shared.lock().token_owners.get(t.trim()).cloned())
            .unwrap_or_default(),
        "x" => {
            let params = crate::oauth::parse_header(authorization).unwrap_or_default();
            let get = |name: &str| {
                params
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.clone())
            };
            match (get("oauth_consumer_key"), get("oauth_token")) {
                (Some(key), Some(token)) => format!("{key}/{token}"),
                _ => String::new(),
            }
        }
        _ => String::new(),
    }
}

/// Counts a request as being answered until dropped (also when the connection is dropped),
/// per operation and per credential.
struct Answering<'a> {
    shared: &'a Shared,
    operation: &'static str,
    credential: Option<(&'static str, String)>,
    /// For an events-list read, its `client/app`: two at once there are two pollers.
    poller_of: Option<String>,
}

impl<'a> Answering<'a> {
    fn start(
        shared: &'a Shared,
        api: &'static str,
        operation: &'static str,
        credential: &str,
        path: &str,
    ) -> Self {
        let mut inner = shared.lock();
        let poller_of = (operation == "signals.list_events").then(|| {
            // /signals/v1/clients/{client}/apps/{app}/events
            let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
            format!(
                "{}/{}",
                segments.get(3).copied().unwrap_or_default(),
                segments.get(5).copied().unwrap_or_default()
            )
        });
        if let Some(app) = &poller_of {
            let (now, peak) = inner.pollers.entry(app.clone()).or_default();
            *now += 1;
            *peak = (*peak).max(*now);
        }
        let (now, peak) = inner.concurrency.entry(operation).or_default();
        *now += 1;
        *peak = (*peak).max(*now);
        let credential = (!credential.is_empty()).then(|| (api, credential.to_string()));
        if let Some(key) = &credential {
            let load = inner.credential_load.entry(key.clone()).or_default();
            load.arrivals.push(std::time::Instant::now());
            load.in_flight += 1;
            load.peak_in_flight = load.peak_in_flight.max(load.in_flight);
        }
        Answering {
            shared,
            operation,
            credential,
            poller_of,
        }
    }
}

impl Drop for Answering<'_> {
    fn drop(&mut self) {
        let mut inner = self.shared.lock();
        if let Some((now, _)) = inner.concurrency.get_mut(self.operation) {
            *now = now.saturating_sub(1);
        }
        if let Some((now, _)) = self
            .poller_of
            .as_ref()
            .and_then(|app| inner.pollers.get_mut(app))
        {
            *now = now.saturating_sub(1);
        }
        if let Some(load) = self
            .credential
            .as_ref()
            .and_then(|key| inner.credential_load.get_mut(key))
        {
            load.in_flight = load.in_flight.saturating_sub(1);
        }
    }
}

async fn inject(shared: &Shared, call: &Call, rule: &FaultRule, outcome: Outcome) -> Response {
    match outcome {
        Outcome::Drop => {
            record(shared, call, 0);
            // Unwinding the connection task closes the socket without an HTTP answer, which
            // is what a client sees when a load balancer drops a connection.
            // resume_unwind skips the panic hook, so nothing is printed.
            std::panic::resume_unwind(Box::new("injected connection drop"));
        }
        Outcome::Timeout(hold) => {
            tokio::time::sleep(hold).await;
            rule.response(call.api, outcome)
        }
        _ => rule.response(call.api, outcome),
    }
}

/// Authentication and X's budget, then the handler.
async fn serve(
    shared: &Shared,
    api: &str,
    operation: &str,
    parts: Parts,
    body: Bytes,
    next: Next,
) -> Response {
    if api == "x" {
        return serve_x(shared, operation, parts, body, next).await;
    }
    let needs_token = matches!(api, "hub" | "signals") && operation != "hub.token";
    if needs_token && !bearer(&parts).is_some_and(|t| shared.lock().token_valid(&t)) {
        return crate::error_body(
            api,
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
            "Invalid or expired token",
        );
    }
    next.run(Request::from_parts(parts, Body::from(body))).await
}

async fn serve_x(
    shared: &Shared,
    operation: &str,
    parts: Parts,
    body: Bytes,
    next: Next,
) -> Response {
    let host = parts
        .headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("")
        .to_string();
    match crate::x_ads::admit(shared, &parts, &host, operation, &body) {
        Err(response) => response,
        Ok(headers) => {
            let mut response = next.run(Request::from_parts(parts, Body::from(body))).await;
            for (k, v) in headers {
                if let Ok(v) = HeaderValue::from_str(&v) {
                    response.headers_mut().insert(k, v);
                }
            }
            response
        }
    }
}

fn bearer(parts: &Parts) -> Option<String> {
    parts
        .headers
        .get("authorization")?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(|t| t.trim().to_string())
}

fn record(shared: &Shared, call: &Call, status: u16) {
    shared.lock().requests.push(RequestRecord {
        api: call.api.into(),
        operation: call.operation.into(),
        method: call.method.to_string(),
        path: call.path.clone(),
        query: call.query.clone(),
        host: call.host.clone(),
        credential: call.credential.clone(),
        status,
        at: SystemTime::now(),
    });
}
