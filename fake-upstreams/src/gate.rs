//! What every API request passes through: naming, fault injection, authentication, X's
//! rate budget and the request log.

use std::sync::Arc;
use std::time::SystemTime;

use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;

use crate::Shared;
use crate::faults::{Outcome, failure_response};
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
    method: Method,
    path: String,
    query: String,
    host: String,
}

pub async fn gate(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let (api, operation) = classify(&method, &path);
    let call = Call {
        api,
        operation,
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

    let _answering = Answering::start(&shared, operation);
    let (latency, outcome, after_effect) = {
        let mut inner = shared.lock();
        match inner.faults.iter_mut().find(|r| r.matches(api, operation)) {
            Some(rule) => (rule.latency_ms, rule.draw(), rule.after_effect),
            None => (0, Outcome::Pass, false),
        }
    };
    if latency > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(latency)).await;
    }

    let response = if outcome != Outcome::Pass && !after_effect {
        inject(&shared, &call, outcome).await
    } else {
        let response = serve(&shared, api, operation, request, next).await;
        if outcome == Outcome::Pass {
            response
        } else {
            inject(&shared, &call, outcome).await
        }
    };
    record(&shared, &call, response.status().as_u16());
    response
}

/// Counts a request as being answered until dropped (also when the connection is dropped).
struct Answering<'a> {
    shared: &'a Shared,
    operation: &'static str,
}

impl<'a> Answering<'a> {
    fn start(shared: &'a Shared, operation: &'static str) -> Self {
        let mut inner = shared.lock();
        let (now, peak) = inner.concurrency.entry(operation).or_default();
        *now += 1;
        *peak = (*peak).max(*now);
        Answering { shared, operation }
    }
}

impl Drop for Answering<'_> {
    fn drop(&mut self) {
        if let Some((now, _)) = self.shared.lock().concurrency.get_mut(self.operation) {
            *now = now.saturating_sub(1);
        }
    }
}

async fn inject(shared: &Shared, call: &Call, outcome: Outcome) -> Response {
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
            failure_response(call.api, outcome)
        }
        _ => failure_response(call.api, outcome),
    }
}

/// Authentication and X's budget, then the handler.
async fn serve(
    shared: &Shared,
    api: &str,
    operation: &str,
    request: Request,
    next: Next,
) -> Response {
    match api {
        "hub" if operation == "hub.token" => next.run(request).await,
        "hub" | "signals" => {
            let token = bearer(&request);
            if !token.is_some_and(|t| shared.lock().token_valid(&t)) {
                return crate::error_body(
                    api,
                    StatusCode::UNAUTHORIZED,
                    "UNAUTHORIZED",
                    "Invalid or expired token",
                );
            }
            next.run(request).await
        }
        "x" => {
            let (parts, body) = request.into_parts();
            let Ok(bytes) = to_bytes(body, MAX_BODY).await else {
                return crate::error_body(
                    api,
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "INVALID_REQUEST",
                    "body too large",
                );
            };
            let host = parts
                .headers
                .get("host")
                .and_then(|h| h.to_str().ok())
                .unwrap_or("")
                .to_string();
            let admission = crate::x_ads::admit(shared, &parts, &host, operation, &bytes);
            match admission {
                Err(response) => response,
                Ok(headers) => {
                    let mut response = next
                        .run(Request::from_parts(parts, Body::from(bytes)))
                        .await;
                    for (k, v) in headers {
                        if let Ok(v) = HeaderValue::from_str(&v) {
                            response.headers_mut().insert(k, v);
                        }
                    }
                    response
                }
            }
        }
        _ => next.run(request).await,
    }
}

fn bearer(request: &Request) -> Option<String> {
    request
        .headers()
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
        status,
        at: SystemTime::now(),
    });
}
