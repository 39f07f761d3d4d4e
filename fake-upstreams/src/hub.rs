//! The 360dialog Hub: Bearer tokens for username/password, and enable/disable_ctwa.

use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use rand::Rng;
use serde::Deserialize;
use serde_json::json;

use crate::{Shared, error_body};

pub fn routes() -> Router<Arc<Shared>> {
    Router::new().route("/token", post(token)).route(
        "/partners/{partner}/clients/{client}/channels/{channel}/{action}",
        post(set_ctwa),
    )
}

#[derive(Deserialize)]
struct Login {
    username: String,
    password: String,
}

async fn token(State(shared): State<Arc<Shared>>, body: Option<Json<Login>>) -> Response {
    let Some(Json(login)) = body else {
        return error_body(
            "hub",
            StatusCode::UNPROCESSABLE_ENTITY,
            "",
            "username and password are required",
        );
    };
    let mut inner = shared.lock();
    if inner.hub_users.get(&login.username) != Some(&login.password) {
        return error_body(
            "hub",
            StatusCode::UNAUTHORIZED,
            "",
            "Invalid username or password",
        );
    }
    // A recognisable prefix lets tests search logs for leaked tokens.
    let random: String = rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(40)
        .map(char::from)
        .collect();
    let token = format!("hubtok-{random}");
    let ttl = inner.token_ttl();
    inner
        .tokens
        .insert(token.clone(), Some(Instant::now() + ttl));
    inner.token_owners.insert(token.clone(), login.username);
    Json(json!({"access_token": token, "token_type": "Bearer", "expires_in": ttl.as_secs()}))
        .into_response()
}

async fn set_ctwa(
    State(shared): State<Arc<Shared>>,
    Path((partner, client, channel, action)): Path<(String, String, String, String)>,
) -> Response {
    let enabled = match action.as_str() {
        "enable_ctwa" => true,
        "disable_ctwa" => false,
        _ => return error_body("hub", StatusCode::NOT_FOUND, "", "Not Found"),
    };
    match shared.lock().channels.get_mut(&(partner, client, channel)) {
        Some(state) => {
            *state = enabled;
            Json(json!({"success": true})).into_response()
        }
        None => error_body("hub", StatusCode::NOT_FOUND, "", "Channel not found"),
    }
}
