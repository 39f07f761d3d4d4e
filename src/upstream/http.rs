//! The shared HTTP client and request plumbing used by every upstream client.

use std::sync::{Arc, Once};
use std::time::Duration;

use reqwest::header::HeaderMap;
use serde::Deserialize;
use tokio::time::Instant;

use crate::upstream::error::{Api, UpstreamError};

/// Default total request timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Default connect timeout.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// `User-Agent` sent on every request.
pub const USER_AGENT: &str = concat!("ctwa-operator/", env!("CARGO_PKG_VERSION"));

/// Install ring as the process-wide rustls provider (kube uses ring; mixing
/// providers panics). Safe to call many times; an already installed provider is kept.
pub fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Err means a provider is already installed: keep it.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// Settings of the shared HTTP client.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Total time allowed for one request.
    pub timeout: Duration,
    /// Time allowed to establish a connection.
    pub connect_timeout: Duration,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            timeout: DEFAULT_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
        }
    }
}

/// Build the one reqwest client shared by all upstream clients.
pub fn build_client(config: &HttpConfig) -> Result<reqwest::Client, reqwest::Error> {
    install_crypto_provider();
    reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .timeout(config.timeout)
        .connect_timeout(config.connect_timeout)
        .build()
}

/// What happened to one request, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestOutcome {
    /// The upstream answered with this HTTP status.
    Status(u16),
    /// The request timed out.
    Timeout,
    /// Connection or transfer failure.
    ConnectionError,
    /// The request could not be built.
    InvalidRequest,
}

/// Observes every upstream request (metrics hook). The default does nothing.
pub trait RequestObserver: Send + Sync + 'static {
    /// Called once per HTTP request, after the response headers arrived or the request failed.
    fn observe(
        &self,
        api: Api,
        operation: &'static str,
        outcome: RequestOutcome,
        elapsed: Duration,
    ) {
        let _ = (api, operation, outcome, elapsed);
    }
}

/// An observer that does nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoopObserver;

impl RequestObserver for NoopObserver {}

/// The shared client plus the observer: cheap to clone, one per process.
#[derive(Clone)]
pub struct Transport {
    client: reqwest::Client,
    observer: Arc<dyn RequestObserver>,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport").finish_non_exhaustive()
    }
}

/// A successful response, body read.
#[derive(Debug)]
pub(crate) struct RawResponse {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Transport {
    /// Wrap a client with the no-op observer.
    pub fn new(client: reqwest::Client) -> Self {
        Transport {
            client,
            observer: Arc::new(NoopObserver),
        }
    }

    /// Build the default client ([`HttpConfig::default`]).
    pub fn from_config(config: &HttpConfig) -> Result<Self, reqwest::Error> {
        Ok(Self::new(build_client(config)?))
    }

    /// Replace the observer.
    pub fn with_observer(mut self, observer: Arc<dyn RequestObserver>) -> Self {
        self.observer = observer;
        self
    }

    /// The underlying client, to build requests.
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// Send a request; a non-2xx status becomes an [`UpstreamError::Status`].
    /// The full body is returned for 2xx responses.
    pub(crate) async fn execute(
        &self,
        api: Api,
        operation: &'static str,
        request: reqwest::RequestBuilder,
    ) -> Result<RawResponse, UpstreamError> {
        self.send(api, operation, request)
            .await?
            .success(api, operation)
    }

    /// Send a request and read the whole answer, whatever its status (for callers that learn
    /// from the headers of error answers too); only transport failures are errors.
    pub(crate) async fn send(
        &self,
        api: Api,
        operation: &'static str,
        request: reqwest::RequestBuilder,
    ) -> Result<RawResponse, UpstreamError> {
        let started = Instant::now();
        let result = request.send().await;
        let response = match result {
            Ok(r) => r,
            Err(e) => {
                let err = UpstreamError::from_reqwest(api, operation, e);
                let outcome = match &err {
                    UpstreamError::Timeout { .. } => RequestOutcome::Timeout,
                    UpstreamError::InvalidRequest { .. } => RequestOutcome::InvalidRequest,
                    _ => RequestOutcome::ConnectionError,
                };
                self.observer
                    .observe(api, operation, outcome, started.elapsed());
                return Err(err);
            }
        };
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.bytes().await;
        self.observer.observe(
            api,
            operation,
            RequestOutcome::Status(status),
            started.elapsed(),
        );
        let body = body.map_err(|e| UpstreamError::from_reqwest(api, operation, e))?;
        Ok(RawResponse {
            status,
            headers,
            body: body.to_vec(),
        })
    }
}

impl RawResponse {
    /// The response itself when it is a 2xx, else its [`UpstreamError::Status`].
    pub(crate) fn success(self, api: Api, operation: &'static str) -> Result<Self, UpstreamError> {
        if (200..300).contains(&self.status) {
            Ok(self)
        } else {
            Err(UpstreamError::from_response(
                api,
                operation,
                self.status,
                &self.headers,
                &self.body,
            ))
        }
    }

    /// Decode the JSON body.
    pub(crate) fn json<'a, T: Deserialize<'a>>(
        &'a self,
        api: Api,
        operation: &'static str,
    ) -> Result<T, UpstreamError> {
        // An empty 2xx body is a success with nothing to say (SPEC 7.1): read it as `{}`.
        let body: &[u8] = if self.body.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            &self.body
        };
        serde_json::from_slice(body).map_err(|e| UpstreamError::Decode {
            api,
            operation,
            status: self.status,
            detail: e.to_string(),
        })
    }
}

/// Append percent-encoded path segments to a base URL (keeps the base's own path).
pub(crate) fn join_url(
    base: &url::Url,
    segments: &[&str],
    api: Api,
    operation: &'static str,
) -> Result<url::Url, UpstreamError> {
    let mut url = base.clone();
    url.set_query(None);
    url.set_fragment(None);
    {
        let mut path = url
            .path_segments_mut()
            .map_err(|()| UpstreamError::InvalidRequest {
                api,
                operation,
                detail: "base URL cannot have a path".to_string(),
            })?;
        path.pop_if_empty();
        path.extend(segments);
    }
    Ok(url)
}

/// Parse and check a base URL (http or https).
pub fn parse_base_url(api: Api, raw: &str) -> Result<url::Url, UpstreamError> {
    let url = url::Url::parse(raw).map_err(|e| UpstreamError::InvalidRequest {
        api,
        operation: "configure",
        detail: format!("invalid base URL: {e}"),
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.cannot_be_a_base() {
        return Err(UpstreamError::InvalidRequest {
            api,
            operation: "configure",
            detail: "base URL must be http(s)".to_string(),
        });
    }
    Ok(url)
}

/// `{"success": true}` responses (fields tolerated, value not enforced).
#[derive(Debug, serde::Deserialize)]
pub(crate) struct SuccessBody {
    #[serde(default)]
    #[allow(dead_code)]
    pub success: Option<bool>,
}

/// Deserialize an id that may be a JSON string or number into a `String`.
pub(crate) mod string_or_number {
    use serde::{Deserialize, Deserializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        S(String),
        I(i64),
        U(u64),
        F(f64),
    }

    fn to_string(raw: Raw) -> String {
        match raw {
            Raw::S(s) => s,
            Raw::I(i) => i.to_string(),
            Raw::U(u) => u.to_string(),
            Raw::F(f) => f.to_string(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        Raw::deserialize(d).map(to_string)
    }

    pub fn option<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        Option::<Raw>::deserialize(d).map(|o| o.map(to_string))
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn an_empty_2xx_body_reads_as_an_empty_object() {
        for body in [&b""[..], b"  \n"] {
            let raw = RawResponse {
                status: 200,
                headers: HeaderMap::new(),
                body: body.to_vec(),
            };
            let ok: super::SuccessBody = raw.json(Api::Signals, "delete_keyword").unwrap();
            assert_eq!(ok.success, None);
        }
    }

    use super::*;

    #[test]
    fn join_keeps_base_path_and_encodes() {
        let base = parse_base_url(Api::Signals, "http://127.0.0.1:8080/api/").unwrap();
        let url = join_url(&base, &["v1", "clients", "a b/c"], Api::Signals, "t").unwrap();
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:8080/api/v1/clients/a%20b%2Fc"
        );
        assert!(parse_base_url(Api::Hub, "mailto:x@y").is_err());
        assert!(parse_base_url(Api::Hub, "not a url").is_err());
    }

    #[test]
    fn client_builds_with_ring() {
        let t = Transport::from_config(&HttpConfig::default()).unwrap();
        assert!(format!("{t:?}").starts_with("Transport"));
        assert!(USER_AGENT.starts_with("ctwa-operator/"));
    }
}
