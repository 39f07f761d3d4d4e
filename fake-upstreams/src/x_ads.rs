//! The X Ads API: OAuth 1.0a, per-account rate budgets, web event tags and the Conversion API.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::oauth;
use crate::state::{Inner, ReceivedConversion, Tag, Window};
use crate::{Shared, error_body, now_rfc3339};

type Params = HashMap<String, String>;

pub const TAG_TYPES: &[&str] = &[
    "ADDED_PAYMENT_INFO",
    "ADD_TO_CART",
    "ADD_TO_WISHLIST",
    "CHECKOUT_INITIATED",
    "CONTENT_VIEW",
    "CUSTOM",
    "DOWNLOAD",
    "PRODUCT_CUSTOMIZATION",
    "PURCHASE",
    "SEARCH",
    "SIGN_UP",
    "SITE_VISIT",
    "START_TRIAL",
    "SUBSCRIBE",
];

pub fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route(
            "/accounts/{account}/web_event_tags",
            get(list_tags).post(create_tag),
        )
        .route(
            "/accounts/{account}/web_event_tags/{id}",
            get(get_tag).put(update_tag).delete(delete_tag),
        )
        .route("/measurement/conversions/{pixel}", post(send_conversions))
}

fn unauthorized() -> Response {
    error_body(
        "x",
        StatusCode::UNAUTHORIZED,
        "UNAUTHORIZED_ACCESS",
        "This request is not properly authorized.",
    )
}

fn invalid(message: &str, parameter: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({"errors": [{"code": "INVALID_PARAMETER", "message": message, "parameter": parameter}],
                    "request": {"params": {}}})),
    )
        .into_response()
}

fn epoch_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Checks the OAuth signature, the account grant and the rate budget before a request runs.
/// Returns the `x-rate-limit-*` headers for the response.
pub(crate) fn admit(
    shared: &Shared,
    parts: &Parts,
    host: &str,
    operation: &str,
    body: &Bytes,
) -> Result<Vec<(&'static str, String)>, Response> {
    let header = parts
        .headers
        .get("authorization")
        .and_then(|h| h.to_str().ok())
        .ok_or_else(unauthorized)?;
    let oauth_params = oauth::parse_header(header).ok_or_else(unauthorized)?;
    let get = |name: &str| {
        oauth_params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let mut inner = shared.lock();
    let (credentials, accounts) = inner
        .x_credentials
        .iter()
        .find(|(c, _)| {
            Some(c.consumer_key.as_str()) == get("oauth_consumer_key")
                && Some(c.access_token.as_str()) == get("oauth_token")
        })
        .cloned()
        .ok_or_else(unauthorized)?;
    if get("oauth_signature_method") != Some("HMAC-SHA1") {
        return Err(unauthorized());
    }
    let stamp: u64 = get("oauth_timestamp")
        .and_then(|t| t.parse().ok())
        .ok_or_else(unauthorized)?;
    if stamp.abs_diff(epoch_secs(SystemTime::now())) > 300 {
        return Err(unauthorized());
    }
    let base_url = format!("http://{}{}", host.to_ascii_lowercase(), parts.uri.path());
    let query = oauth::parse_query(parts.uri.query().unwrap_or(""));
    let expected = oauth::signature(
        parts.method.as_str(),
        &base_url,
        &query,
        &oauth_params,
        &credentials.consumer_secret,
        &credentials.access_token_secret,
    );
    if !oauth::constant_time_eq(&expected, get("oauth_signature").unwrap_or("")) {
        return Err(unauthorized());
    }

    let segs: Vec<&str> = parts.uri.path().trim_matches('/').split('/').collect();
    let account = match segs.get(2..) {
        Some(["accounts", account, ..]) => account.to_string(),
        Some(["measurement", "conversions", pixel]) => {
            inner.account_of_pixel(pixel).ok_or_else(|| {
                error_body(
                    "x",
                    StatusCode::NOT_FOUND,
                    "NOT_FOUND",
                    &format!("pixel_id ({pixel}) not found"),
                )
            })?
        }
        _ => {
            return Err(error_body(
                "x",
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
                "Not found",
            ));
        }
    };
    if !accounts.contains(&account) {
        return Err(error_body(
            "x",
            StatusCode::FORBIDDEN,
            "UNAUTHORIZED_CLIENT_APPLICATION",
            "The user is not authorized to access this ads account",
        ));
    }

    let (kind, units, limit) = if operation == "x.send_conversions" {
        let units = serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|v| v["conversions"].as_array().map(Vec::len))
            .unwrap_or(1)
            .max(1) as u64;
        ("conversions", units, inner.x_limits.conversions)
    } else {
        ("requests", 1, inner.x_limits.requests)
    };
    let window = Duration::from_secs(inner.x_limits.window_seconds.max(1));
    let now = SystemTime::now();
    let w = inner.x_windows.entry((account, kind)).or_insert(Window {
        started: now,
        used: 0,
    });
    if now.duration_since(w.started).unwrap_or_default() >= window {
        *w = Window {
            started: now,
            used: 0,
        };
    }
    let reset = epoch_secs(w.started + window);
    if w.used + units > limit {
        let mut response = error_body(
            "x",
            StatusCode::TOO_MANY_REQUESTS,
            "TOO_MANY_REQUESTS",
            "Rate limit exceeded",
        );
        for (k, v) in rate_headers(limit, limit.saturating_sub(w.used), reset) {
            if let Ok(v) = v.parse() {
                response.headers_mut().insert(k, v);
            }
        }
        return Err(response);
    }
    w.used += units;
    Ok(rate_headers(limit, limit - w.used, reset))
}

fn rate_headers(limit: u64, remaining: u64, reset: u64) -> Vec<(&'static str, String)> {
    vec![
        ("x-rate-limit-limit", limit.to_string()),
        ("x-rate-limit-remaining", remaining.to_string()),
        ("x-rate-limit-reset", reset.to_string()),
    ]
}

fn wrap(params: &Params, data: Value) -> Response {
    Json(json!({"request": {"params": params}, "data": data})).into_response()
}

pub(crate) fn insert_tag(
    inner: &mut Inner,
    account: &str,
    name: &str,
    tag_type: &str,
    click: i64,
    view: i64,
    retargeting: bool,
) -> String {
    let id = inner.next_id("t");
    let now = now_rfc3339();
    inner.tags.entry(account.into()).or_default().push(Tag {
        id: id.clone(),
        name: name.into(),
        tag_type: tag_type.into(),
        click_window: click,
        view_through_window: view,
        retargeting_enabled: retargeting,
        status: "ACTIVE".into(),
        deleted: false,
        created_at: now.clone(),
        updated_at: now,
    });
    id
}

async fn list_tags(
    State(shared): State<Arc<Shared>>,
    Path(account): Path<String>,
    Query(params): Query<Params>,
) -> Response {
    let count = match params.get("count").map(|c| c.parse::<usize>()) {
        None => 200,
        Some(Ok(n)) if (1..=1000).contains(&n) => n,
        _ => return invalid("count must be between 1 and 1000", "count"),
    };
    // The cursor is opaque to clients; here it is the offset behind a prefix.
    let offset = match params.get("cursor") {
        None => 0,
        Some(c) => match c.strip_prefix("c").and_then(|n| n.parse::<usize>().ok()) {
            Some(n) => n,
            None => return invalid("cursor is invalid", "cursor"),
        },
    };
    let with_deleted = params.get("with_deleted").map(String::as_str) == Some("true");
    let ids: Option<Vec<&str>> = params
        .get("web_event_tag_ids")
        .map(|ids| ids.split(',').map(str::trim).collect());
    let inner = shared.lock();
    let all: Vec<&Tag> = inner
        .tags
        .get(&account)
        .map(|ts| {
            ts.iter()
                .filter(|t| with_deleted || !t.deleted)
                .filter(|t| ids.as_ref().is_none_or(|ids| ids.contains(&t.id.as_str())))
                .collect()
        })
        .unwrap_or_default();
    let data: Vec<Value> = all
        .iter()
        .skip(offset)
        .take(count)
        .map(|t| json!(t))
        .collect();
    let next = (offset + count < all.len()).then(|| format!("c{}", offset + count));
    Json(json!({"request": {"params": params}, "data": data, "next_cursor": next, "total_count": all.len()}))
        .into_response()
}

fn find_tag<'a>(inner: &'a mut Inner, account: &str, id: &str) -> Option<&'a mut Tag> {
    inner.tags.get_mut(account)?.iter_mut().find(|t| t.id == id)
}

fn tag_not_found(id: &str) -> Response {
    error_body(
        "x",
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        &format!("web_event_tag ({id}) not found"),
    )
}

async fn get_tag(
    State(shared): State<Arc<Shared>>,
    Path((account, id)): Path<(String, String)>,
    Query(params): Query<Params>,
) -> Response {
    match find_tag(&mut shared.lock(), &account, &id) {
        Some(t) => wrap(&params, json!(t)),
        None => tag_not_found(&id),
    }
}

/// Validated tag fields from query parameters; `require_all` for creation.
fn tag_fields(params: &Params, require_all: bool) -> Result<TagFields, Response> {
    let window = |name: &str, allowed: &[i64]| -> Result<Option<i64>, Response> {
        match params.get(name) {
            None if require_all => Err(invalid(&format!("{name} is required"), name)),
            None => Ok(None),
            Some(v) => match v.parse::<i64>() {
                Ok(n) if allowed.contains(&n) => Ok(Some(n)),
                _ => Err(invalid(&format!("{name} must be one of {allowed:?}"), name)),
            },
        }
    };
    let name = match params.get("name") {
        None if require_all => return Err(invalid("name is required", "name")),
        Some(n) if n.is_empty() || n.len() > 255 => {
            return Err(invalid("name must be 1 to 255 characters", "name"));
        }
        other => other.cloned(),
    };
    let tag_type = match params.get("type") {
        None if require_all => return Err(invalid("type is required", "type")),
        Some(t) if !TAG_TYPES.contains(&t.as_str()) => {
            return Err(invalid(&format!("type ({t}) is not valid"), "type"));
        }
        other => other.cloned(),
    };
    let retargeting = match params.get("retargeting_enabled").map(String::as_str) {
        None => None,
        Some("true") => Some(true),
        Some("false") => Some(false),
        Some(_) => {
            return Err(invalid(
                "retargeting_enabled must be true or false",
                "retargeting_enabled",
            ));
        }
    };
    Ok(TagFields {
        name,
        tag_type,
        click: window("click_window", &[1, 7, 14, 30])?,
        view: window("view_through_window", &[0, 1, 7, 14, 30])?,
        retargeting,
    })
}

struct TagFields {
    name: Option<String>,
    tag_type: Option<String>,
    click: Option<i64>,
    view: Option<i64>,
    retargeting: Option<bool>,
}

async fn create_tag(
    State(shared): State<Arc<Shared>>,
    Path(account): Path<String>,
    Query(params): Query<Params>,
) -> Response {
    let f = match tag_fields(&params, true) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let (click, view) = (f.click.unwrap_or(30), f.view.unwrap_or(1));
    if view > click {
        return invalid(
            "view_through_window must be less than or equal to click_window",
            "view_through_window",
        );
    }
    let mut inner = shared.lock();
    let id = insert_tag(
        &mut inner,
        &account,
        f.name.as_deref().unwrap_or_default(),
        f.tag_type.as_deref().unwrap_or_default(),
        click,
        view,
        f.retargeting.unwrap_or(false),
    );
    let tag = find_tag(&mut inner, &account, &id)
        .map(|t| json!(t))
        .unwrap_or_default();
    (StatusCode::OK, wrap(&params, tag)).into_response()
}

async fn update_tag(
    State(shared): State<Arc<Shared>>,
    Path((account, id)): Path<(String, String)>,
    Query(params): Query<Params>,
) -> Response {
    let f = match tag_fields(&params, false) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let mut inner = shared.lock();
    let Some(tag) = find_tag(&mut inner, &account, &id).filter(|t| !t.deleted) else {
        return tag_not_found(&id);
    };
    let click = f.click.unwrap_or(tag.click_window);
    let view = f.view.unwrap_or(tag.view_through_window);
    if view > click {
        return invalid(
            "view_through_window must be less than or equal to click_window",
            "view_through_window",
        );
    }
    if let Some(n) = f.name {
        tag.name = n;
    }
    if let Some(t) = f.tag_type {
        tag.tag_type = t;
    }
    if let Some(r) = f.retargeting {
        tag.retargeting_enabled = r;
    }
    tag.click_window = click;
    tag.view_through_window = view;
    tag.updated_at = now_rfc3339();
    let tag = json!(tag);
    wrap(&params, tag)
}

async fn delete_tag(
    State(shared): State<Arc<Shared>>,
    Path((account, id)): Path<(String, String)>,
    Query(params): Query<Params>,
) -> Response {
    let mut inner = shared.lock();
    let Some(tag) = find_tag(&mut inner, &account, &id).filter(|t| !t.deleted) else {
        return tag_not_found(&id);
    };
    tag.deleted = true;
    tag.updated_at = now_rfc3339();
    let tag = json!(tag);
    wrap(&params, tag)
}

fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// `yyyy-MM-ddTHH:mm:ss.SSSZ` exactly, with a real calendar date.
fn is_x_time(s: &str) -> bool {
    s.len() == 24
        && s.ends_with('Z')
        && s.as_bytes().get(19) == Some(&b'.')
        && jiff::civil::DateTime::strptime("%Y-%m-%dT%H:%M:%S%.fZ", s).is_ok()
}

/// Validates one conversion; the error is the whole request's answer.
fn check_conversion(inner: &Inner, account: &str, c: &Value) -> Result<(), Response> {
    let identifiers = c["identifiers"].as_array().filter(|ids| !ids.is_empty());
    let Some(identifiers) = identifiers else {
        return Err(invalid(
            "At least one user identifier must be provided",
            "identifiers",
        ));
    };
    for id in identifiers {
        let Some(fields) = id.as_object().filter(|f| !f.is_empty()) else {
            return Err(invalid(
                "At least one user identifier must be provided",
                "identifiers",
            ));
        };
        for key in ["hashed_email", "hashed_phone_number"] {
            if let Some(v) = fields.get(key) {
                let text = v
                    .as_str()
                    .map(String::from)
                    .unwrap_or_else(|| v.to_string());
                if !is_sha256_hex(&text) {
                    return Err(invalid(
                        &format!("{key} ({text}) is not a valid SHA-256 hash"),
                        key,
                    ));
                }
            }
        }
    }
    let time = match &c["conversion_time"] {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if !is_x_time(&time) {
        return Err(invalid(
            &format!(
                "Expected Time in yyyy-MM-ddTHH:mm:ss.SSSZ, got \"{time}\" for conversion_time"
            ),
            "conversion_time",
        ));
    }
    let event_id = c["event_id"].as_str().unwrap_or("");
    let known = inner
        .tags
        .get(account)
        .is_some_and(|ts| ts.iter().any(|t| t.id == event_id && !t.deleted));
    if !known {
        return Err(error_body(
            "x",
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            &format!("event_id ({event_id}) does not belong to provided account"),
        ));
    }
    Ok(())
}

async fn send_conversions(
    State(shared): State<Arc<Shared>>,
    Path(pixel): Path<String>,
    body: Bytes,
) -> Response {
    let Ok(mut body) = serde_json::from_slice::<Value>(&body) else {
        return invalid("Request body is not valid JSON", "conversions");
    };
    let Some(conversions) = body.get_mut("conversions").and_then(Value::as_array_mut) else {
        return invalid("conversions is required", "conversions");
    };
    let conversions = std::mem::take(conversions);
    if conversions.is_empty() {
        return invalid("conversions is required", "conversions");
    }
    if conversions.len() > 500 {
        return invalid("Conversion count limit is 500", "conversions");
    }
    let mut inner = shared.lock();
    let Some(account) = inner.account_of_pixel(&pixel) else {
        return error_body(
            "x",
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            &format!("pixel_id ({pixel}) not found"),
        );
    };
    for c in &conversions {
        if let Err(response) = check_conversion(&inner, &account, c) {
            return response;
        }
    }
    let at = SystemTime::now();
    for c in &conversions {
        if let Some(id) = c["conversion_id"].as_str() {
            inner.conversion_ids.insert(id.to_string());
        }
    }
    let batch = inner.conversion_batches;
    inner.conversion_batches += 1;
    let processed = conversions.len();
    inner
        .conversions
        .extend(conversions.into_iter().map(|c| ReceivedConversion {
            batch,
            pixel_id: pixel.clone(),
            conversion: c,
            at,
        }));
    let debug_id: u128 = rand::random();
    let hex = format!("{debug_id:032x}");
    let uuid = format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    );
    Json(json!({"request": {"params": {"pixel_id": pixel}},
                "data": {"conversions_processed": processed, "debug_id": uuid}}))
    .into_response()
}
