//! 360dialog Hub Bearer tokens: `POST {hub}/token {"username","password"}`.
//!
//! Tokens are cached per credential id (e.g. `namespace/secret-name`) and a
//! fingerprint of the credential values, so a rotated Secret gets a new token.
//! A token is refreshed at 80% of its `expires_in`, and on a 401 (one retry).
//! Concurrent callers for the same credential share one fetch.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::upstream::error::{Api, UpstreamError};
use crate::upstream::http::{Transport, join_url, parse_base_url};
use crate::upstream::secret::{DialogCredentials, SecretString};

/// Lifetime assumed when the Hub omits `expires_in`.
const DEFAULT_EXPIRES_IN: u64 = 3600;

/// 360dialog credentials plus the id they are cached under.
#[derive(Clone, Debug)]
pub struct DialogAuth {
    /// Stable id of the credential source, e.g. `namespace/secret-name`.
    pub id: String,
    /// The credentials (formats redacted).
    pub credentials: DialogCredentials,
}

impl DialogAuth {
    /// Pair an id with credentials.
    pub fn new(id: impl Into<String>, credentials: DialogCredentials) -> Self {
        DialogAuth {
            id: id.into(),
            credentials,
        }
    }
}

struct CachedToken {
    token: SecretString,
    refresh_at: Instant,
}

type Slot = Arc<Mutex<Option<CachedToken>>>;

/// Obtains and caches Hub Bearer tokens. One per process, shared by Hub and Signals clients.
pub struct HubTokenProvider {
    transport: Transport,
    hub_url: url::Url,
    /// credential id -> (fingerprint, slot). A new fingerprint replaces the slot.
    slots: StdMutex<HashMap<String, (String, Slot)>>,
}

impl fmt::Debug for HubTokenProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HubTokenProvider")
            .field("hub_url", &self.hub_url.as_str())
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

impl HubTokenProvider {
    /// A provider for the Hub at `hub_url` (`--hub-url`).
    pub fn new(transport: Transport, hub_url: &str) -> Result<Self, UpstreamError> {
        Ok(HubTokenProvider {
            transport,
            hub_url: parse_base_url(Api::Hub, hub_url)?,
            slots: StdMutex::new(HashMap::new()),
        })
    }

    fn slot(&self, auth: &DialogAuth) -> Slot {
        let fingerprint = auth.credentials.fingerprint();
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        match slots.get(&auth.id) {
            Some((fp, slot)) if *fp == fingerprint => slot.clone(),
            _ => {
                let slot: Slot = Arc::new(Mutex::new(None));
                slots.insert(auth.id.clone(), (fingerprint, slot.clone()));
                slot
            }
        }
    }

    /// Forget the cached token of a credential (e.g. when its Secret is deleted).
    pub fn forget(&self, id: &str) {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.remove(id);
    }

    /// A Bearer token for these credentials: the ready token, a cached one, or a fresh one.
    pub async fn bearer(&self, auth: &DialogAuth) -> Result<SecretString, UpstreamError> {
        let (username, password) = match &auth.credentials {
            DialogCredentials::Token(token) => return Ok(token.clone()),
            DialogCredentials::UsernamePassword { username, password } => (username, password),
        };
        let slot = self.slot(auth);
        let mut cached = slot.lock().await;
        if let Some(c) = cached.as_ref()
            && Instant::now() < c.refresh_at
        {
            return Ok(c.token.clone());
        }
        let (token, expires_in) = self.fetch(username, password).await?;
        let lifetime = Duration::from_secs(expires_in).mul_f64(0.8);
        *cached = Some(CachedToken {
            token: token.clone(),
            refresh_at: Instant::now() + lifetime,
        });
        Ok(token)
    }

    /// Drop the cached token if it still is `stale` (another caller may have refreshed it).
    pub async fn invalidate(&self, auth: &DialogAuth, stale: &SecretString) {
        let slot = self.slot(auth);
        let mut cached = slot.lock().await;
        if cached.as_ref().is_some_and(|c| c.token == *stale) {
            *cached = None;
        }
    }

    /// Run `call` with a Bearer token; on a 401 with username/password credentials,
    /// fetch a fresh token and run it exactly once more.
    pub async fn with_token<T, F, Fut>(
        &self,
        auth: &DialogAuth,
        mut call: F,
    ) -> Result<T, UpstreamError>
    where
        F: FnMut(SecretString) -> Fut,
        Fut: Future<Output = Result<T, UpstreamError>>,
    {
        let token = self.bearer(auth).await?;
        match call(token.clone()).await {
            Err(e)
                if e.status() == Some(401)
                    && matches!(auth.credentials, DialogCredentials::UsernamePassword { .. }) =>
            {
                self.invalidate(auth, &token).await;
                let fresh = self.bearer(auth).await?;
                call(fresh).await
            }
            other => other,
        }
    }

    async fn fetch(
        &self,
        username: &SecretString,
        password: &SecretString,
    ) -> Result<(SecretString, u64), UpstreamError> {
        const OP: &str = "token";
        let url = join_url(&self.hub_url, &["token"], Api::Hub, OP)?;
        let body = serde_json::json!({
            "username": username.expose(),
            "password": password.expose(),
        });
        let request = self.transport.client().post(url).json(&body);
        let response = self
            .transport
            .execute(Api::Hub, OP, request)
            .await
            .map_err(token_endpoint_error)?;
        let parsed: TokenResponse = response.json(Api::Hub, OP)?;
        if parsed.access_token.is_empty() {
            return Err(UpstreamError::Decode {
                api: Api::Hub,
                operation: OP,
                status: response.status,
                detail: "empty access_token".to_string(),
            });
        }
        Ok((
            SecretString::new(parsed.access_token),
            parsed.expires_in.unwrap_or(DEFAULT_EXPIRES_IN),
        ))
    }
}

/// What a failure of `POST {hub}/token` means. A 404 (or 405) there is not a missing object:
/// `--hub-url` is not the Hub's API base (the Signals API, for one, has no `/token`) or the
/// partner/account is wrong. It becomes a configuration error, terminal, that says so (never
/// [`UpstreamError::is_not_found`]); the URL itself is not repeated.
fn token_endpoint_error(e: UpstreamError) -> UpstreamError {
    match e {
        UpstreamError::Status {
            api,
            operation,
            status: status @ (404 | 405),
            message,
            ..
        } => UpstreamError::InvalidRequest {
            api,
            operation,
            detail: format!(
                "the Hub has no token endpoint there (HTTP {status}{}): check --hub-url, which \
                 must be the 360dialog Hub API base (e.g. https://hub.360dialog.io/api/v2, not \
                 the Signals API), and the partner the credentials belong to",
                message.map(|m| format!(": {m}")).unwrap_or_default()
            ),
        },
        other => other,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::upstream::error::ErrorClass;
    use crate::upstream::http::HttpConfig;
    use axum::Json;
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::{get, post};
    use std::sync::atomic::{AtomicU64, Ordering};

    /// A tiny fake Hub: issues `tok-N`, accepts only the latest token on `/whoami`.
    #[derive(Clone, Default)]
    pub(crate) struct FakeHub {
        pub issued: Arc<AtomicU64>,
        pub expires_in: u64,
    }

    pub(crate) async fn serve(router: axum::Router) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        format!("http://{addr}")
    }

    async fn start(hub: FakeHub) -> String {
        let token_hub = hub.clone();
        let check_hub = hub.clone();
        let router = axum::Router::new()
            .route(
                "/token",
                post(move |Json(body): Json<serde_json::Value>| {
                    let hub = token_hub.clone();
                    async move {
                        if body["username"] != "user" || body["password"] != "pass" {
                            return (
                                StatusCode::UNAUTHORIZED,
                                Json(serde_json::json!({"detail": "bad login"})),
                            );
                        }
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        let n = hub.issued.fetch_add(1, Ordering::SeqCst) + 1;
                        (
                            StatusCode::OK,
                            Json(serde_json::json!({
                                "access_token": format!("tok-{n}"),
                                "token_type": "Bearer",
                                "expires_in": hub.expires_in,
                                "extra": true
                            })),
                        )
                    }
                }),
            )
            .route(
                "/whoami",
                get(move |headers: HeaderMap| {
                    let hub = check_hub.clone();
                    async move {
                        let latest = format!("Bearer tok-{}", hub.issued.load(Ordering::SeqCst));
                        let got = headers
                            .get("authorization")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default();
                        if got == latest {
                            (StatusCode::OK, got.to_string())
                        } else {
                            (StatusCode::UNAUTHORIZED, "{\"detail\":\"expired\"}".into())
                        }
                    }
                }),
            );
        serve(router).await
    }

    fn auth(user: &str, pass: &str) -> DialogAuth {
        DialogAuth::new(
            "ns/dialog",
            DialogCredentials::UsernamePassword {
                username: SecretString::new(user),
                password: SecretString::new(pass),
            },
        )
    }

    fn provider(url: &str) -> HubTokenProvider {
        let transport = Transport::from_config(&HttpConfig::default()).unwrap();
        HubTokenProvider::new(transport, url).unwrap()
    }

    #[tokio::test]
    async fn concurrent_callers_share_one_fetch_and_cache() {
        let hub = FakeHub {
            expires_in: 86400,
            ..Default::default()
        };
        let url = start(hub.clone()).await;
        let p = Arc::new(provider(&url));
        let a = auth("user", "pass");
        let mut handles = Vec::new();
        for _ in 0..8 {
            let p = p.clone();
            let a = a.clone();
            handles.push(tokio::spawn(async move { p.bearer(&a).await.unwrap() }));
        }
        for h in handles {
            assert_eq!(h.await.unwrap().expose(), "tok-1");
        }
        assert_eq!(p.bearer(&a).await.unwrap().expose(), "tok-1");
        assert_eq!(hub.issued.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn expired_token_is_refreshed() {
        let hub = FakeHub {
            expires_in: 0,
            ..Default::default()
        };
        let url = start(hub.clone()).await;
        let p = provider(&url);
        let a = auth("user", "pass");
        assert_eq!(p.bearer(&a).await.unwrap().expose(), "tok-1");
        assert_eq!(p.bearer(&a).await.unwrap().expose(), "tok-2");
    }

    #[tokio::test]
    async fn rotated_secret_gets_new_token() {
        let hub = FakeHub {
            expires_in: 86400,
            ..Default::default()
        };
        let url = start(hub.clone()).await;
        let p = provider(&url);
        assert_eq!(
            p.bearer(&auth("user", "pass")).await.unwrap().expose(),
            "tok-1"
        );
        let err = p.bearer(&auth("user", "rotated")).await.unwrap_err();
        assert!(err.is_unauthorized());
        assert_eq!(err.to_string(), "hub token: HTTP 401: bad login");
        assert_eq!(
            p.bearer(&auth("user", "pass")).await.unwrap().expose(),
            "tok-2"
        );
    }

    /// A "Hub" at the wrong place: no `/token` route (an empty 404, as a plain web server or the
    /// Signals API give), a FastAPI-style `{"detail":"Not Found"}`, or `/token` for GET only.
    async fn wrong_hub(kind: &str) -> String {
        let router = match kind {
            "empty" => axum::Router::new(),
            "fastapi" => axum::Router::new().fallback(|| async {
                (
                    StatusCode::NOT_FOUND,
                    Json(serde_json::json!({"detail": "Not Found"})),
                )
            }),
            "vendor-words" => axum::Router::new().route(
                "/api/v2/token",
                post(|| async {
                    (
                        StatusCode::NOT_FOUND,
                        Json(serde_json::json!({"detail": "Channel not found"})),
                    )
                }),
            ),
            _ => axum::Router::new().route("/api/v2/token", get(|| async { "use POST" })),
        };
        serve(router).await
    }

    #[tokio::test]
    async fn a_404_from_the_token_endpoint_is_a_configuration_error_not_a_not_found() {
        for (kind, status) in [
            ("empty", 404),
            ("fastapi", 404),
            ("vendor-words", 404),
            ("get-only", 405),
        ] {
            let url = wrong_hub(kind).await;
            let p = Arc::new(provider(&format!("{url}/api/v2")));
            let err = p.bearer(&auth("user", "pass")).await.unwrap_err();
            assert!(!err.is_not_found(), "{kind}");
            assert!(!err.is_unauthorized(), "{kind}");
            assert_eq!(err.class(), ErrorClass::Terminal, "{kind}");
            assert!(
                matches!(err, UpstreamError::InvalidRequest { .. }),
                "{kind}: {err:?}"
            );
            let text = err.to_string();
            assert!(text.starts_with("hub token: "), "{text}");
            assert!(text.contains(&format!("HTTP {status}")), "{text}");
            assert!(text.contains("check --hub-url"), "{text}");
            // The configured URL (which could carry userinfo) is not repeated.
            assert!(!text.contains(&url), "{text}");
            assert!(!text.contains("127.0.0.1"), "{text}");

            // A delete that needs a token does not count the 404 as "already deleted".
            let transport = Transport::from_config(&HttpConfig::default()).unwrap();
            let hub = crate::upstream::hub::HubClient::new(
                transport,
                &format!("{url}/api/v2"),
                p.clone(),
                auth("user", "pass"),
            )
            .unwrap();
            let err = hub.disable_ctwa("p1", "c1", "ch1").await.unwrap_err();
            assert!(!err.is_not_found(), "{kind}");
            assert_eq!(err.class(), ErrorClass::Terminal, "{kind}");
        }
        let e = {
            let url = wrong_hub("fastapi").await;
            provider(&format!("{url}/api/v2"))
                .bearer(&auth("u", "p"))
                .await
                .unwrap_err()
        };
        assert_eq!(
            e.to_string(),
            "hub token: invalid request: the Hub has no token endpoint there (HTTP 404: Not \
             Found): check --hub-url, which must be the 360dialog Hub API base (e.g. \
             https://hub.360dialog.io/api/v2, not the Signals API), and the partner the \
             credentials belong to"
        );
    }

    #[tokio::test]
    async fn a_401_retries_once_with_a_fresh_token() {
        let hub = FakeHub {
            expires_in: 86400,
            ..Default::default()
        };
        let url = start(hub.clone()).await;
        let p = provider(&url);
        let a = auth("user", "pass");
        let transport = Transport::from_config(&HttpConfig::default()).unwrap();
        let whoami = format!("{url}/whoami");
        let call = |token: SecretString| {
            let req = transport.client().get(&whoami).bearer_auth(token.expose());
            let t = transport.clone();
            async move {
                let r = t.execute(Api::Hub, "whoami", req).await?;
                Ok::<_, UpstreamError>(String::from_utf8_lossy(&r.body).to_string())
            }
        };
        assert_eq!(p.with_token(&a, call).await.unwrap(), "Bearer tok-1");
        // Another client obtained a newer token: ours is now rejected once.
        hub.issued.fetch_add(1, Ordering::SeqCst);
        assert_eq!(p.with_token(&a, call).await.unwrap(), "Bearer tok-3");
        // A ready token is used as is and not retried.
        let ready = DialogAuth::new("ns/t", DialogCredentials::Token("stale".into()));
        let err = p.with_token(&ready, call).await.unwrap_err();
        assert_eq!(err.status(), Some(401));
        assert_eq!(hub.issued.load(Ordering::SeqCst), 3);
    }
}
