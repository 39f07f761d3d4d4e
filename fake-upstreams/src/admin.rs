//! The admin HTTP API, for the demo and for tests in other processes (see the crate docs).

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::Shared;
use crate::faults::FaultRule;
use crate::state::XRateLimits;

pub fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/requests", get(requests).delete(clear_requests))
        .route("/conversions", get(conversions))
        .route("/faults", post(add_fault).delete(clear_faults))
        .route("/events/{client}/{app}", post(seed_events))
        .route("/state", get(state))
        .route("/x-rate-limit", post(x_rate_limit))
        .route("/token-ttl", post(token_ttl))
        .route("/signals-clock", post(signals_clock))
        .route("/signals-max-page", post(signals_max_page))
        .route(
            "/signals-event-types/{client}/{app}",
            post(signals_event_types),
        )
}

async fn requests(State(s): State<Arc<Shared>>) -> Json<Value> {
    Json(json!(s.lock().requests))
}

async fn clear_requests(State(s): State<Arc<Shared>>) -> StatusCode {
    s.lock().requests.clear();
    StatusCode::NO_CONTENT
}

async fn conversions(State(s): State<Arc<Shared>>) -> Json<Value> {
    Json(json!(s.lock().conversions))
}

async fn add_fault(State(s): State<Arc<Shared>>, Json(rule): Json<FaultRule>) -> StatusCode {
    s.lock().faults.push(rule);
    StatusCode::NO_CONTENT
}

async fn clear_faults(State(s): State<Arc<Shared>>) -> StatusCode {
    s.lock().faults.clear();
    StatusCode::NO_CONTENT
}

async fn seed_events(
    State(s): State<Arc<Shared>>,
    Path((client, app)): Path<(String, String)>,
    Json(events): Json<Vec<Value>>,
) -> StatusCode {
    crate::signals::seed_events(&mut s.lock(), &client, &app, events);
    StatusCode::NO_CONTENT
}

async fn state(State(s): State<Arc<Shared>>) -> Json<Value> {
    let inner = s.lock();
    let keywords: Vec<Value> = inner
        .keywords
        .iter()
        .map(|((client, app), ks)| json!({"client": client, "app": app, "keywords": ks}))
        .collect();
    let postbacks: Vec<Value> = inner
        .postbacks
        .iter()
        .map(|((client, app, ad, kind), url)| json!({"client": client, "app": app, "ad": ad, "kind": kind, "url": url}))
        .collect();
    let channels: Vec<Value> = inner
        .channels
        .iter()
        .map(|((p, c, ch), enabled)| json!({"partner": p, "client": c, "channel": ch, "ctwa_enabled": enabled}))
        .collect();
    Json(json!({
        "keywords": keywords,
        "postbacks": postbacks,
        "channels": channels,
        "tags": inner.tags,
        "x_accounts": inner.x_accounts,
        "events": inner.events.iter().map(|((c, a), es)| json!({"client": c, "app": a, "count": es.len()})).collect::<Vec<_>>(),
        "conversions": inner.conversions.len(),
        "converted_events": inner.converted_events.values().collect::<Vec<_>>(),
    }))
}

async fn x_rate_limit(State(s): State<Arc<Shared>>, Json(limits): Json<XRateLimits>) -> StatusCode {
    let mut inner = s.lock();
    inner.x_limits = limits;
    inner.x_windows.clear();
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
struct Ttl {
    seconds: u64,
}

async fn token_ttl(State(s): State<Arc<Shared>>, Json(ttl): Json<Ttl>) -> StatusCode {
    s.lock().token_ttl = Some(Duration::from_secs(ttl.seconds));
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
struct ClockOffset {
    offset_seconds: i64,
}

async fn signals_clock(State(s): State<Arc<Shared>>, Json(c): Json<ClockOffset>) -> StatusCode {
    s.lock().signals_clock_offset = c.offset_seconds;
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
struct MaxPage {
    max: Option<usize>,
}

async fn signals_max_page(State(s): State<Arc<Shared>>, Json(m): Json<MaxPage>) -> StatusCode {
    s.lock().signals_max_page = m.max;
    StatusCode::NO_CONTENT
}

async fn signals_event_types(
    State(s): State<Arc<Shared>>,
    Path((client, app)): Path<(String, String)>,
    Json(values): Json<Vec<String>>,
) -> StatusCode {
    s.lock().signals_event_types.insert((client, app), values);
    StatusCode::NO_CONTENT
}
