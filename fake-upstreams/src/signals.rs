//! The 360dialog Signals API: keywords, instant-postback URLs, the events list, campaign
//! conversions (`converted_events`) and the event types.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::state::{ConvertedEvent, Inner, Keyword, PostbackKind};
use crate::{Shared, error_body};

type Params = HashMap<String, String>;

pub fn routes() -> Router<Arc<Shared>> {
    let app = "/v1/clients/{client}/apps/{app}";
    Router::new()
        .route(
            &format!("{app}/keywords"),
            get(list_keywords).post(create_keyword),
        )
        .route(
            &format!("{app}/keywords/shared"),
            post(create_shared_keyword),
        )
        .route(
            &format!("{app}/keywords/{{id}}"),
            get(get_keyword).patch(patch_keyword).delete(delete_keyword),
        )
        .route(
            &format!("{app}/ads/{{ad}}/signal"),
            get(get_ad_postback).post(set_ad_postback),
        )
        .route(
            &format!("{app}/ads/{{ad}}/keywords/{{kw}}/signal"),
            get(get_keyword_postback).post(set_keyword_postback),
        )
        .route(
            &format!("{app}/ads/{{ad}}/events/session_start/signal"),
            get(get_session_postback).post(set_session_postback),
        )
        .route(&format!("{app}/events"), get(list_events))
        .route(
            &format!("{app}/converted_events"),
            post(set_converted_event),
        )
        .route(&format!("{app}/event_types"), get(list_event_types))
}

/// The documented event types, in the documented order: an app's `event_types` answer unless
/// restricted ([`crate::FakeUpstreams::set_signals_event_types`]).
pub const EVENT_TYPES: [&str; 9] = [
    "button",
    "button_reply",
    "conversation",
    "converted",
    "engagement",
    "keyword",
    "link",
    "list",
    "list_reply",
];

/// An event as seeded, with the sort key derived from its `date` and `id`, and the fields the
/// list filters on, so that a page is answered from an index (the bridge benchmarks page
/// through a million events).
#[derive(Clone, Debug)]
pub struct StoredEvent {
    pub at: Option<jiff::Timestamp>,
    pub raw_date: String,
    pub id: String,
    /// The event as JSON text, serialised once at seed time: pages are concatenations.
    json: String,
    ad_id: String,
    event_type: String,
    type_id: String,
}

impl StoredEvent {
    fn key(&self) -> (Option<jiff::Timestamp>, &str, &str) {
        (self.at, &self.raw_date, &self.id)
    }
}

fn scalar(value: &Value, name: &str) -> String {
    match &value[name] {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The events of one app, sorted by (date, id), with an index per event type: the bridge
/// filters on a type and pages through a backlog of a million events, and each page must cost
/// a binary search rather than a scan.
#[derive(Debug, Default)]
pub struct EventLog {
    events: Vec<StoredEvent>,
    /// event type → positions in `events`, ascending.
    by_type: HashMap<String, Vec<usize>>,
}

impl EventLog {
    pub fn len(&self) -> usize {
        self.events.len()
    }

    fn index_from(&mut self, start: usize) {
        for (i, e) in self.events.iter().enumerate().skip(start) {
            self.by_type
                .entry(e.event_type.clone())
                .or_default()
                .push(i);
        }
    }
}

/// A string field, or a number's text; None for anything else (absent, null, an object).
fn text_of<'a>(value: &'a Value, name: &str) -> Option<std::borrow::Cow<'a, str>> {
    match &value[name] {
        Value::String(s) => Some(s.as_str().into()),
        Value::Number(n) => Some(n.to_string().into()),
        _ => None,
    }
}

/// The `converted` copy of a seeded event, when it is what its campaign's conversion counts:
/// same campaign, same type and, when the conversion names one, same `type_id`. The copy is
/// the event with `"type": "converted"` and `"id": "<id>-converted"`, every other field as is.
/// A `converted` event is never copied again.
fn converted_copy(conversions: &HashMap<&str, &ConvertedEvent>, event: &Value) -> Option<Value> {
    let campaign = text_of(event, "campaign_id")?;
    let conversion = conversions.get(campaign.as_ref())?;
    let event_type = text_of(event, "type")?;
    if event_type == "converted" || event_type != conversion.event_type {
        return None;
    }
    if let Some(want) = &conversion.type_id
        && text_of(event, "type_id").as_deref() != Some(want.as_str())
    {
        return None;
    }
    let mut copy = event.clone();
    let id = format!("{}-converted", scalar(event, "id"));
    let fields = copy.as_object_mut()?;
    fields.insert("type".into(), Value::String("converted".into()));
    fields.insert("id".into(), Value::String(id));
    Some(copy)
}

/// Adds events to an app's log. An event that its campaign's conversion (as set so far)
/// counts is followed by its `converted` copy ([`converted_copy`]), so that the copy is sorted
/// and indexed like any event; events seeded before a conversion was set stay as they are.
pub(crate) fn seed_events(inner: &mut Inner, client: &str, app: &str, events: Vec<Value>) {
    let conversions: HashMap<&str, &ConvertedEvent> = inner
        .converted_events
        .range((client.to_string(), app.to_string(), String::new())..)
        .take_while(|((c, a, _), _)| c == client && a == app)
        .map(|((_, _, campaign), conversion)| (campaign.as_str(), conversion))
        .collect();
    let log = inner.events.entry((client.into(), app.into())).or_default();
    let before = log.events.len();
    for value in events {
        let copy = if conversions.is_empty() {
            None
        } else {
            converted_copy(&conversions, &value)
        };
        for value in std::iter::once(value).chain(copy) {
            let raw_date = value["date"].as_str().unwrap_or("").to_string();
            log.events.push(StoredEvent {
                at: parse_date(&raw_date),
                raw_date,
                id: scalar(&value, "id"),
                ad_id: scalar(&value, "ad_id"),
                event_type: scalar(&value, "type"),
                type_id: scalar(&value, "type_id"),
                json: value.to_string(),
            });
        }
    }
    // Appending events that sort after the existing ones needs no re-sort or re-index.
    let sorted = log.events[before.saturating_sub(1)..]
        .windows(2)
        .all(|w| w[0].key() <= w[1].key());
    if sorted {
        log.index_from(before);
    } else {
        log.events.sort_by(|a, b| a.key().cmp(&b.key()));
        log.by_type.clear();
        log.index_from(0);
    }
}

/// RFC 3339, or a civil `YYYY-MM-DDTHH:MM:SS[.fff]` taken as UTC.
pub fn parse_date(text: &str) -> Option<jiff::Timestamp> {
    if let Ok(t) = text.parse::<jiff::Timestamp>() {
        return Some(t);
    }
    let civil: jiff::civil::DateTime = text.parse().ok()?;
    civil
        .to_zoned(jiff::tz::TimeZone::UTC)
        .ok()
        .map(|z| z.timestamp())
}

fn unprocessable(field: &str, msg: &str) -> Response {
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        Json(json!({"detail": [{"loc": ["query", field], "msg": msg, "type": "value_error"}]})),
    )
        .into_response()
}

fn not_found(what: &str) -> Response {
    error_body(
        "signals",
        StatusCode::NOT_FOUND,
        "",
        &format!("{what} not found"),
    )
}

/// offset and limit within `1..=max_limit`, or the 422 the real API answers.
fn paging(
    params: &Params,
    default_limit: usize,
    max_limit: usize,
) -> Result<(usize, usize), Response> {
    let limit = match params.get("limit") {
        None => default_limit,
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=max_limit).contains(&n) => n,
            _ => {
                return Err(unprocessable(
                    "limit",
                    &format!("ensure this value is between 1 and {max_limit}"),
                ));
            }
        },
    };
    let offset = match params.get("offset") {
        None => 0,
        Some(v) => v
            .parse::<usize>()
            .map_err(|_| unprocessable("offset", "value is not a valid integer"))?,
    };
    Ok((offset, limit))
}

fn page(data: Vec<Value>, total: usize, offset: usize, limit: usize) -> Response {
    Json(json!({"data": data, "total_count": total, "offset": offset, "limit": limit}))
        .into_response()
}

async fn list_keywords(
    State(shared): State<Arc<Shared>>,
    Path((client, app)): Path<(String, String)>,
    Query(params): Query<Params>,
) -> Response {
    let (offset, limit) = match paging(&params, 20, 100) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let inner = shared.lock();
    let matching: Vec<&Keyword> = inner
        .keywords
        .get(&(client, app))
        .map(|ks| ks.iter().collect())
        .unwrap_or_default();
    let matching: Vec<&Keyword> = matching
        .into_iter()
        .filter(|k| {
            params
                .get("ad_id")
                .is_none_or(|a| k.ad_id.as_ref() == Some(a))
        })
        .filter(|k| {
            params
                .get("is_shared")
                .is_none_or(|s| s == &k.is_shared.to_string())
        })
        .filter(|k| params.get("status").is_none_or(|s| s == &k.status))
        .collect();
    let data = matching
        .iter()
        .skip(offset)
        .take(limit)
        .map(|k| json!(k))
        .collect();
    page(data, matching.len(), offset, limit)
}

#[derive(Deserialize)]
struct KeywordBody {
    keyword: String,
}

fn valid_text(body: &Option<Json<KeywordBody>>) -> Result<String, Response> {
    match body {
        Some(Json(b)) if !b.keyword.trim().is_empty() && b.keyword.len() <= 256 => Ok(b.keyword.clone()),
        _ => Err((
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"detail": [{"loc": ["body", "keyword"], "msg": "field required (1 to 256 characters)", "type": "value_error"}]})),
        )
            .into_response()),
    }
}

fn insert(
    shared: &Shared,
    client: String,
    app: String,
    text: String,
    ad_id: Option<String>,
    is_shared: bool,
) -> Response {
    let mut inner = shared.lock();
    let id = inner.next_id("kw");
    let keyword = Keyword {
        id,
        keyword: text,
        ad_id,
        is_shared,
        status: "active".into(),
    };
    inner
        .keywords
        .entry((client, app))
        .or_default()
        .push(keyword.clone());
    (StatusCode::CREATED, Json(keyword)).into_response()
}

async fn create_keyword(
    State(shared): State<Arc<Shared>>,
    Path((client, app)): Path<(String, String)>,
    Query(params): Query<Params>,
    body: Option<Json<KeywordBody>>,
) -> Response {
    let text = match valid_text(&body) {
        Ok(t) => t,
        Err(r) => return r,
    };
    let Some(ad_id) = params.get("ad_id").filter(|a| !a.is_empty()).cloned() else {
        return unprocessable("ad_id", "field required");
    };
    insert(&shared, client, app, text, Some(ad_id), false)
}

async fn create_shared_keyword(
    State(shared): State<Arc<Shared>>,
    Path((client, app)): Path<(String, String)>,
    body: Option<Json<KeywordBody>>,
) -> Response {
    match valid_text(&body) {
        Ok(text) => insert(&shared, client, app, text, None, true),
        Err(r) => r,
    }
}

/// The keyword `id`, if it is in the `ad_id` the request names (GET, PATCH and DELETE take
/// one, per the docs).
fn in_scope(k: &Keyword, id: &str, params: &Params) -> bool {
    k.id == id
        && params
            .get("ad_id")
            .is_none_or(|ad| k.ad_id.as_deref() == Some(ad))
}

async fn get_keyword(
    State(shared): State<Arc<Shared>>,
    Path((client, app, id)): Path<(String, String, String)>,
    Query(params): Query<Params>,
) -> Response {
    let inner = shared.lock();
    match inner
        .keywords
        .get(&(client, app))
        .and_then(|ks| ks.iter().find(|k| in_scope(k, &id, &params)))
    {
        Some(k) => Json(k).into_response(),
        None => not_found("Keyword"),
    }
}

/// Signals never edits a keyword in place: it archives the old one and returns a new one.
async fn patch_keyword(
    State(shared): State<Arc<Shared>>,
    Path((client, app, id)): Path<(String, String, String)>,
    Query(params): Query<Params>,
    body: Option<Json<KeywordBody>>,
) -> Response {
    let text = match valid_text(&body) {
        Ok(t) => t,
        Err(r) => return r,
    };
    let mut inner = shared.lock();
    let new_id = inner.next_id("kw");
    let Some(list) = inner.keywords.get_mut(&(client, app)) else {
        return not_found("Keyword");
    };
    let Some(old) = list.iter_mut().find(|k| in_scope(k, &id, &params)) else {
        return not_found("Keyword");
    };
    old.status = "archived".into();
    let new = Keyword {
        id: new_id,
        keyword: text,
        ad_id: old.ad_id.clone(),
        is_shared: old.is_shared,
        status: "active".into(),
    };
    list.push(new.clone());
    Json(new).into_response()
}

async fn delete_keyword(
    State(shared): State<Arc<Shared>>,
    Path((client, app, id)): Path<(String, String, String)>,
    Query(params): Query<Params>,
) -> Response {
    let mut inner = shared.lock();
    let Some(list) = inner.keywords.get_mut(&(client, app)) else {
        return not_found("Keyword");
    };
    let Some(pos) = list.iter().position(|k| in_scope(k, &id, &params)) else {
        return not_found("Keyword");
    };
    if params.get("delete").map(String::as_str) == Some("true") {
        list.remove(pos);
    } else {
        list[pos].status = "archived".into();
    }
    Json(json!({"success": true})).into_response()
}

#[derive(Deserialize)]
struct UrlBody {
    url: Option<String>,
}

fn get_postback(
    shared: &Shared,
    client: String,
    app: String,
    ad: String,
    kind: PostbackKind,
) -> Response {
    let url = shared
        .lock()
        .postbacks
        .get(&(client, app, ad, kind))
        .cloned();
    Json(json!({"url": url})).into_response()
}

fn set_postback(
    shared: &Shared,
    client: String,
    app: String,
    ad: String,
    kind: PostbackKind,
    body: Option<Json<UrlBody>>,
) -> Response {
    let Some(Json(body)) = body else {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"detail": [{"loc": ["body", "url"], "msg": "field required", "type": "value_error"}]})),
        )
            .into_response();
    };
    let key = (client, app, ad, kind);
    let mut inner = shared.lock();
    match body.url {
        Some(url) if url.starts_with("https://") || url.starts_with("http://") => {
            inner.postbacks.insert(key, url);
        }
        Some(_) => {
            return (
                StatusCode::UNPROCESSABLE_ENTITY,
                Json(json!({"detail": [{"loc": ["body", "url"], "msg": "invalid or missing URL scheme", "type": "value_error.url"}]})),
            )
                .into_response();
        }
        None => {
            inner.postbacks.remove(&key);
        }
    }
    Json(json!({"success": true})).into_response()
}

async fn get_ad_postback(
    State(s): State<Arc<Shared>>,
    Path((client, app, ad)): Path<(String, String, String)>,
) -> Response {
    get_postback(&s, client, app, ad, PostbackKind::Ad)
}
async fn set_ad_postback(
    State(s): State<Arc<Shared>>,
    Path((client, app, ad)): Path<(String, String, String)>,
    body: Option<Json<UrlBody>>,
) -> Response {
    set_postback(&s, client, app, ad, PostbackKind::Ad, body)
}
async fn get_keyword_postback(
    State(s): State<Arc<Shared>>,
    Path((client, app, ad, kw)): Path<(String, String, String, String)>,
) -> Response {
    get_postback(&s, client, app, ad, PostbackKind::Keyword(kw))
}
async fn set_keyword_postback(
    State(s): State<Arc<Shared>>,
    Path((client, app, ad, kw)): Path<(String, String, String, String)>,
    body: Option<Json<UrlBody>>,
) -> Response {
    set_postback(&s, client, app, ad, PostbackKind::Keyword(kw), body)
}
async fn get_session_postback(
    State(s): State<Arc<Shared>>,
    Path((client, app, ad)): Path<(String, String, String)>,
) -> Response {
    get_postback(&s, client, app, ad, PostbackKind::SessionStart)
}
async fn set_session_postback(
    State(s): State<Arc<Shared>>,
    Path((client, app, ad)): Path<(String, String, String)>,
    body: Option<Json<UrlBody>>,
) -> Response {
    set_postback(&s, client, app, ad, PostbackKind::SessionStart, body)
}

const FILTER_FORMAT: &str = "%Y-%m-%dT%H:%M:%S";

/// A filter bound: `YYYY-MM-DDTHH:MM:SS` in UTC, as the real API takes it.
fn date_param(params: &Params, name: &str) -> Result<Option<(jiff::Timestamp, String)>, Response> {
    let Some(text) = params.get(name) else {
        return Ok(None);
    };
    let civil = jiff::civil::DateTime::strptime(FILTER_FORMAT, text).map_err(|_| {
        unprocessable(
            name,
            "invalid datetime format, expected YYYY-MM-DDTHH:MM:SS",
        )
    })?;
    let ts = civil
        .to_zoned(jiff::tz::TimeZone::UTC)
        .map_err(|_| unprocessable(name, "invalid datetime"))?
        .timestamp();
    Ok(Some((ts, text.clone())))
}

/// Dated events in date order: a run of the log, or a type's positions into it.
#[derive(Clone, Copy)]
enum Candidates<'a> {
    All(&'a [StoredEvent]),
    Indexed(&'a [StoredEvent], &'a [usize]),
}

impl<'a> Candidates<'a> {
    fn len(&self) -> usize {
        match self {
            Candidates::All(run) => run.len(),
            Candidates::Indexed(_, positions) => positions.len(),
        }
    }

    fn at(&self, i: usize) -> &'a StoredEvent {
        match *self {
            Candidates::All(run) => &run[i],
            Candidates::Indexed(events, positions) => &events[positions[i]],
        }
    }

    /// Those dated in `[from, to)`.
    fn between(self, from: Option<jiff::Timestamp>, to: Option<jiff::Timestamp>) -> Self {
        let first_not_before = |bound: Option<jiff::Timestamp>, default: usize| {
            bound.map_or(default, |b| {
                let (mut lo, mut hi) = (0, self.len());
                while lo < hi {
                    let mid = (lo + hi) / 2;
                    if self.at(mid).at < Some(b) {
                        lo = mid + 1;
                    } else {
                        hi = mid;
                    }
                }
                lo
            })
        };
        let start = first_not_before(from, 0);
        let end = first_not_before(to, self.len()).max(start);
        match self {
            Candidates::All(run) => Candidates::All(&run[start..end]),
            Candidates::Indexed(events, positions) => {
                Candidates::Indexed(events, &positions[start..end])
            }
        }
    }

    fn iter(self) -> impl Iterator<Item = &'a StoredEvent> {
        (0..self.len()).map(move |i| self.at(i))
    }
}

fn in_range(
    e: &StoredEvent,
    from: &Option<(jiff::Timestamp, String)>,
    to: &Option<(jiff::Timestamp, String)>,
) -> bool {
    match e.at {
        Some(at) => {
            from.as_ref().is_none_or(|(f, _)| at >= *f) && to.as_ref().is_none_or(|(t, _)| at < *t)
        }
        None => {
            let raw = e.raw_date.get(..19).unwrap_or(&e.raw_date);
            from.as_ref().is_none_or(|(_, f)| raw >= f.as_str())
                && to.as_ref().is_none_or(|(_, t)| raw < t.as_str())
        }
    }
}

async fn list_events(
    State(shared): State<Arc<Shared>>,
    Path((client, app)): Path<(String, String)>,
    Query(params): Query<Params>,
) -> Response {
    let (offset, limit) = match paging(&params, 100, 1000) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let (from, to) = match (
        date_param(&params, "date_from"),
        date_param(&params, "date_to"),
    ) {
        (Ok(f), Ok(t)) => (f, t),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    let (ad_id, event_type, type_id) = (
        params.get("ad_id"),
        params.get("event_type"),
        params.get("event_type_id"),
    );
    let inner = shared.lock();
    let empty = EventLog::default();
    let log = inner.events.get(&(client, app)).unwrap_or(&empty);
    let events = &log.events[..];
    // Candidates: every event, or the positions of the requested type. Undated events sort
    // first and are matched by their raw text; the dated ones are found by binary search.
    let positions: Option<&[usize]> =
        event_type.map(|t| log.by_type.get(t).map_or(&[][..], Vec::as_slice));
    let undated = events.partition_point(|e| e.at.is_none());
    let dated = match positions {
        None => Candidates::All(&events[undated..]),
        Some(p) => Candidates::Indexed(events, &p[p.partition_point(|&i| i < undated)..]),
    };
    let dated = dated.between(from.as_ref().map(|f| f.0), to.as_ref().map(|t| t.0));
    let wanted = |e: &&StoredEvent| {
        let is = |value: Option<&String>, have: &str| value.is_none_or(|v| v == have);
        is(ad_id, &e.ad_id) && is(event_type, &e.event_type) && is(type_id, &e.type_id)
    };
    let undated_matching: Vec<&StoredEvent> = events[..undated]
        .iter()
        .filter(|e| in_range(e, &from, &to))
        .filter(wanted)
        .collect();
    let all = || {
        undated_matching
            .iter()
            .copied()
            .chain(dated.iter().filter(wanted))
    };
    // The type is answered by the index; only the other filters need a count by scanning.
    let total = if ad_id.is_none() && type_id.is_none() {
        undated_matching.len() + dated.len()
    } else {
        all().count()
    };
    // The cap shortens the page only: `limit` is echoed as asked, as a server that caps
    // pages silently does, so that a client paging by `limit` skips events.
    let served = inner.signals_max_page.map_or(limit, |max| limit.min(max));
    let mut body = String::from(r#"{"data":["#);
    for (i, e) in all().skip(offset).take(served).enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(&e.json);
    }
    body.push_str(&format!(
        r#"],"total_count":{total},"offset":{offset},"limit":{limit}}}"#
    ));
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// A FastAPI validation error: 422 `{"detail": [...]}`.
fn invalid(detail: Vec<Value>) -> Response {
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        Json(json!({ "detail": detail })),
    )
        .into_response()
}

/// FastAPI's entry for a required field that is absent (`place`: `body` or `query`).
fn missing(place: &str, field: &str) -> Value {
    json!({"loc": [place, field], "msg": "field required", "type": "value_error.missing"})
}

/// A required query parameter that must be a filter bound (see [`date_param`]).
fn required_date(params: &Params, name: &str) -> Result<(jiff::Timestamp, String), Response> {
    date_param(params, name)?.ok_or_else(|| invalid(vec![missing("query", name)]))
}

/// The values an app's `event_types` answers, in order.
fn event_types_of(inner: &Inner, client: &str, app: &str) -> Vec<String> {
    match inner
        .signals_event_types
        .get(&(client.to_string(), app.to_string()))
    {
        Some(values) => values.clone(),
        None => EVENT_TYPES.iter().map(|v| v.to_string()).collect(),
    }
}

/// The human name of an event type: `button_reply` → `Button reply`.
fn type_name(value: &str) -> String {
    let text = value.replace('_', " ");
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => text,
    }
}

/// The body of `POST converted_events`, validated as the real API's pydantic model would:
/// every problem is listed; `type` must be one of the app's event types.
fn conversion_body(
    body: &[u8],
    allowed: &[String],
) -> Result<(String, String, Option<String>, Option<String>), Response> {
    let value: Value = if body.iter().all(u8::is_ascii_whitespace) {
        Value::Object(Default::default())
    } else {
        serde_json::from_slice(body).map_err(|e| {
            invalid(vec![json!({"loc": ["body", e.column()], "msg": e.to_string(), "type": "value_error.jsondecode"})])
        })?
    };
    let Value::Object(fields) = value else {
        return Err(invalid(vec![
            json!({"loc": ["body"], "msg": "value is not a valid dict", "type": "type_error.dict"}),
        ]));
    };
    let mut errors = Vec::new();
    let mut text = |name: &str, required: bool| -> Option<String> {
        match fields.get(name) {
            Some(Value::String(s)) => Some(s.clone()),
            None if required => {
                errors.push(missing("body", name));
                None
            }
            Some(Value::Null) if required => {
                errors.push(json!({"loc": ["body", name], "msg": "none is not an allowed value", "type": "type_error.none.not_allowed"}));
                None
            }
            None | Some(Value::Null) => None,
            Some(_) => {
                errors.push(json!({"loc": ["body", name], "msg": "str type expected", "type": "type_error.str"}));
                None
            }
        }
    };
    let campaign_id = text("campaign_id", true);
    let event_type = text("type", true);
    let type_id = text("type_id", false);
    let type_value = text("type_value", false);
    if campaign_id.as_deref() == Some("") {
        errors.push(json!({"loc": ["body", "campaign_id"], "msg": "ensure this value has at least 1 characters", "type": "value_error.any_str.min_length"}));
    }
    if let Some(t) = &event_type
        && !allowed.contains(t)
    {
        let permitted: Vec<String> = allowed.iter().map(|v| format!("'{v}'")).collect();
        errors.push(json!({
            "loc": ["body", "type"],
            "msg": format!("value is not a valid enumeration member; permitted: {}", permitted.join(", ")),
            "type": "type_error.enum",
        }));
    }
    match (campaign_id, event_type) {
        (Some(c), Some(t)) if errors.is_empty() => Ok((c, t, type_id, type_value)),
        _ => Err(invalid(errors)),
    }
}

/// Sets (replaces) a campaign's conversion; events seeded from now on that it counts get
/// their `converted` copy (see [`seed_events`]).
async fn set_converted_event(
    State(shared): State<Arc<Shared>>,
    Path((client, app)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let mut inner = shared.lock();
    let allowed = event_types_of(&inner, &client, &app);
    let (campaign_id, event_type, type_id, type_value) = match conversion_body(&body, &allowed) {
        Ok(c) => c,
        Err(r) => return r,
    };
    inner.converted_events.insert(
        (client.clone(), app.clone(), campaign_id.clone()),
        ConvertedEvent {
            client,
            app,
            campaign_id,
            event_type,
            type_id,
            type_value,
        },
    );
    Json(json!({"success": true})).into_response()
}

/// The app's event types. The docs mark `date_from` and `date_to` as required (the list looks
/// copied from the events list); the fake holds clients to it.
async fn list_event_types(
    State(shared): State<Arc<Shared>>,
    Path((client, app)): Path<(String, String)>,
    Query(params): Query<Params>,
) -> Response {
    if let Err(r) = required_date(&params, "date_from").and(required_date(&params, "date_to")) {
        return r;
    }
    let values = event_types_of(&shared.lock(), &client, &app);
    let types: Vec<Value> = values
        .iter()
        .map(|v| json!({"name": type_name(v), "value": v}))
        .collect();
    Json(types).into_response()
}
