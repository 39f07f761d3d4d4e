//! The postback receiver (SPEC 4): `POST /postbacks/<namespace>/<bridge>/<token>`.
//!
//! A wrong token and an unknown bridge get the same 404, and the token comparison takes the
//! same time whatever the input, so the endpoint reveals neither. A request is taken whole or
//! not at all: queue room for all its events is reserved before any is queued, so a 503 or a
//! 400 never leaves part of a request behind.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::forward::{FORWARDED, Forwarder, NotForwarded};
use super::supervisor::Supervisor;

/// Largest body accepted (SPEC 4).
pub const MAX_BODY: usize = 1024 * 1024;

#[derive(Clone)]
struct Receiver {
    supervisor: Arc<Supervisor>,
    /// Hands postbacks to the leader while this process does not lead; None without leader
    /// election or without a published address (followers answer 503 then).
    forwarder: Option<Arc<Forwarder>>,
}

/// The receiver's routes.
pub fn router(supervisor: Arc<Supervisor>, forwarder: Option<Arc<Forwarder>>) -> Router {
    Router::new()
        .route("/postbacks/{namespace}/{bridge}/{token}", post(receive))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(Receiver {
            supervisor,
            forwarder,
        })
}

fn answer(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(json!({ "error": message }))).into_response()
}

/// Compare digests so that the time taken does not depend on where the inputs differ, nor
/// on their lengths.
fn token_matches(expected: &str, given: &str) -> bool {
    let a = Sha256::digest(expected.as_bytes());
    let b = Sha256::digest(given.as_bytes());
    a.as_slice().ct_eq(b.as_slice()).into()
}

/// The events of a body: one event object, an array of them, or `{"data": [...]}`.
pub fn parse_events(body: &[u8]) -> Result<Vec<Value>, &'static str> {
    let value: Value = serde_json::from_slice(body).map_err(|_| "body is not valid JSON")?;
    let events = match value {
        Value::Array(items) => items,
        Value::Object(mut object) => match object.remove("data") {
            Some(Value::Array(items)) => items,
            Some(_) => return Err("data must be an array of events"),
            None => vec![Value::Object(object)],
        },
        _ => return Err("body must be an event, an array of events or {\"data\": [...]}"),
    };
    if events.iter().any(|e| !e.is_object()) {
        return Err("every event must be a JSON object");
    }
    Ok(events)
}

async fn receive(
    State(receiver): State<Receiver>,
    Path((namespace, bridge, token)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let supervisor = receiver.supervisor;
    if !supervisor.runs(&namespace, &bridge) {
        let message = match receiver.forwarder {
            Some(_) if headers.contains_key(FORWARDED) => {
                "this replica is not the leader (forwarded once already); retry later"
            }
            Some(forwarder) => match forwarder.forward([&namespace, &bridge, &token], body).await {
                Ok(response) => return response,
                Err(NotForwarded::NoLeader) => "no leader is taking postbacks; retry later",
                Err(NotForwarded::Unreachable) => "the leader did not answer; retry later",
            },
            None => "this replica is not the leader; retry later",
        };
        return answer(StatusCode::SERVICE_UNAVAILABLE, message);
    }
    let inlet = supervisor.inlet(&namespace, &bridge);
    // Compare against something even for an unknown bridge, so both take as long.
    let expected = inlet.as_ref().map_or("\u{0}unknown", |i| i.token.expose());
    if !token_matches(expected, &token) || inlet.is_none() {
        // Right after this process took over, the bridge may exist without having been
        // started here yet: 503 (retry) rather than 404 (wrong URL) until every bridge has.
        // A wrong token gets the same 503 meanwhile, so neither answer reveals a bridge.
        if !supervisor.settled() {
            return answer(
                StatusCode::SERVICE_UNAVAILABLE,
                "the bridges are starting; retry later",
            );
        }
        return answer(StatusCode::NOT_FOUND, "not found");
    }
    let Some(queue) = inlet.and_then(|i| i.queue) else {
        return answer(
            StatusCode::SERVICE_UNAVAILABLE,
            "the bridge is not forwarding right now",
        );
    };
    let events = match parse_events(&body) {
        Ok(events) => events,
        Err(message) => return answer(StatusCode::BAD_REQUEST, message),
    };
    if events.is_empty() {
        return (StatusCode::ACCEPTED, axum::Json(json!({ "accepted": 0 }))).into_response();
    }
    let count = events.len();
    let Ok(permits) = queue.try_reserve_many(count) else {
        return answer(
            StatusCode::SERVICE_UNAVAILABLE,
            "the bridge's queue is full; retry later",
        );
    };
    for (permit, event) in permits.zip(events) {
        permit.send(event);
    }
    (
        StatusCode::ACCEPTED,
        axum::Json(json!({ "accepted": count })),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_three_body_shapes() {
        let one = parse_events(br#"{"id":"e1","type":"converted"}"#).unwrap();
        assert_eq!(one.len(), 1);
        let many = parse_events(br#"[{"id":"e1"},{"id":"e2"}]"#).unwrap();
        assert_eq!(many.len(), 2);
        let wrapped = parse_events(br#"{"data":[{"id":"e1"},{"id":"e2"},{"id":"e3"}]}"#).unwrap();
        assert_eq!(wrapped.len(), 3);
    }

    #[test]
    fn malformed_bodies() {
        for body in [
            &b"{not json"[..],
            b"42",
            b"\"text\"",
            b"[1,2]",
            br#"{"data": {"id": "e1"}}"#,
            br#"[{"id":"e1"}, null]"#,
        ] {
            assert!(
                parse_events(body).is_err(),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn tokens_compare_exactly() {
        assert!(token_matches("abc", "abc"));
        assert!(!token_matches("abc", "abd"));
        assert!(!token_matches("abc", "ab"));
        assert!(!token_matches("abc", ""));
    }
}
