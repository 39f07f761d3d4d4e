//! The metrics and health HTTP endpoint (`--metrics-addr`, SPEC section 4).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// Content type of `/metrics`: prometheus-client encodes OpenMetrics text.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Liveness/readiness flags shared with the rest of the process.
#[derive(Debug, Clone, Default)]
pub struct Health {
    ready: Arc<AtomicBool>,
}

impl Health {
    /// Not ready until the process says so.
    pub fn new() -> Self {
        Self::default()
    }

    /// Flip readiness (e.g. once the controllers run, or when leadership is lost).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    /// Whether `/readyz` answers 200.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }
}

#[derive(Clone)]
struct AppState {
    metrics: Arc<Metrics>,
    health: Health,
}

/// `/metrics` (text, content-type `application/openmetrics-text; version=1.0.0; charset=utf-8`),
/// `/healthz` (200 "ok" always), `/readyz` (200 "ok" when ready, else 503 "not ready").
pub fn metrics_router(metrics: Arc<Metrics>, health: Health) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(AppState { metrics, health })
}

async fn metrics_handler(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, OPENMETRICS_CONTENT_TYPE)],
        state.metrics.encode(),
    )
}

async fn readyz(State(state): State<AppState>) -> (StatusCode, &'static str) {
    if state.health.is_ready() {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready")
    }
}

/// Bind separately from [`serve`] so a bad address fails startup early and
/// tests can bind port 0 and learn the real port.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serve `router` on `listener` until `shutdown` is cancelled; in-flight
/// requests are allowed to finish.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::http::{HttpConfig, build_client};

    #[tokio::test]
    async fn answers_health_readiness_and_metrics() {
        let metrics = Arc::new(Metrics::new());
        metrics.reconcile("BridgeConfig", "ok", std::time::Duration::from_millis(3));
        let health = Health::new();
        let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(serve(
            listener,
            metrics_router(metrics, health.clone()),
            shutdown.clone(),
        ));
        let client = build_client(&HttpConfig::default()).unwrap();
        let get = |path: &str| client.get(format!("{base}{path}")).send();

        let r = get("/healthz").await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.text().await.unwrap(), "ok");

        let r = get("/readyz").await.unwrap();
        assert_eq!(r.status(), 503);
        assert_eq!(r.text().await.unwrap(), "not ready");
        health.set_ready(true);
        let r = get("/readyz").await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.text().await.unwrap(), "ok");

        let r = get("/metrics").await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(
            r.headers()[header::CONTENT_TYPE.as_str()],
            OPENMETRICS_CONTENT_TYPE
        );
        let body = r.text().await.unwrap();
        assert!(
            body.contains(r#"ctwa_reconcile_total{kind="BridgeConfig",result="ok"} 1"#),
            "{body}"
        );

        shutdown.cancel();
        server.await.unwrap().unwrap();
    }
}
