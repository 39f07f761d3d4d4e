//! Postbacks that reach a follower are handed to the leader (SPEC 7.2): Signals, a load
//! balancer or an Ingress may pick any replica, and only the leader runs the bridges.
//!
//! The follower passes the request on unchanged (path, body) and answers with the leader's
//! status and body, so Signals sees exactly what the leader decided. A request that was
//! already forwarded once is never forwarded again: two processes that both believe the
//! other leads (seconds of a handover) answer 503 instead of bouncing it between them.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::leadership::LeaderDirectory;
use crate::sharding::{shard_lease, shard_of};

/// Marks a request a follower forwarded.
pub const FORWARDED: &str = "x-ctwa-forwarded";

/// Hands postbacks to the leader, or with `--shards` to the holder of the bridge's shard.
pub struct Forwarder {
    directory: LeaderDirectory,
    /// The leader Lease's name (the shard Leases' prefix) and the shard count.
    lease_name: String,
    shards: u32,
    http: reqwest::Client,
}

/// Why a postback could not be handed over; the receiver answers 503 for both.
#[derive(Debug, PartialEq, Eq)]
pub enum NotForwarded {
    /// No holder has published its address (nobody leads, or the new leader just started).
    NoLeader,
    /// The leader's address did not answer.
    Unreachable,
}

impl Forwarder {
    pub fn new(
        directory: LeaderDirectory,
        lease_name: String,
        shards: u32,
    ) -> anyhow::Result<Arc<Self>> {
        let http = reqwest::Client::builder()
            // Pod to pod: an egress proxy configured for the upstream APIs (HTTPS_PROXY,
            // HTTP_PROXY) must not see the postback token in the path.
            .no_proxy()
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(10))
            .build()?;
        Ok(Arc::new(Forwarder {
            directory,
            lease_name,
            shards,
            http,
        }))
    }

    /// Sends one postback to the leader and returns its answer. A failed address is looked
    /// up again once: the leader may have changed since it was cached.
    pub async fn forward(
        &self,
        segments: [&str; 3],
        body: Bytes,
    ) -> Result<Response, NotForwarded> {
        let shard = shard_of(segments[0], segments[1], self.shards);
        let lease = shard_lease(&self.lease_name, shard, self.shards);
        let mut refresh = false;
        loop {
            let base = self
                .directory
                .holder_url(&lease, refresh)
                .await
                .ok_or(NotForwarded::NoLeader)?;
            let Some(url) = postback_url(&base, segments) else {
                tracing::warn!("the leader published an unusable postback URL");
                return Err(NotForwarded::NoLeader);
            };
            let sent = self
                .http
                .post(url)
                .header(FORWARDED, "1")
                .header(header::CONTENT_TYPE, "application/json")
                .body(body.clone())
                .send()
                .await;
            match sent {
                Ok(answer) => return Ok(relay(answer).await),
                // The error would print the URL, and with it the token.
                Err(e) if refresh => {
                    tracing::warn!(error = %e.without_url(), "forwarding a postback to the leader failed");
                    return Err(NotForwarded::Unreachable);
                }
                Err(_) => refresh = true,
            }
        }
    }
}

/// `<base>/postbacks/<namespace>/<bridge>/<token>`, each segment encoded again as it was
/// decoded on the way in.
fn postback_url(base: &str, segments: [&str; 3]) -> Option<url::Url> {
    let mut url = url::Url::parse(base).ok()?;
    if !matches!(url.scheme(), "http" | "https") {
        return None;
    }
    url.path_segments_mut()
        .ok()?
        .pop_if_empty()
        .push("postbacks")
        .extend(segments);
    Some(url)
}

async fn relay(answer: reqwest::Response) -> Response {
    let status = StatusCode::from_u16(answer.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let content_type = answer.headers().get(reqwest::header::CONTENT_TYPE).cloned();
    let body = answer.bytes().await.unwrap_or_default();
    let mut response = (status, body).into_response();
    if let Some(value) = content_type.and_then(|v| HeaderValue::from_bytes(v.as_bytes()).ok()) {
        response.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_keep_every_segment_intact() {
        let url = postback_url("http://10.0.0.7:8081", ["ns", "b", "t/k?n#x"]).unwrap();
        assert_eq!(
            url.as_str(),
            "http://10.0.0.7:8081/postbacks/ns/b/t%2Fk%3Fn%23x"
        );
        let url = postback_url("http://10.0.0.7:8081/base/", ["ns", "b", "t"]).unwrap();
        assert_eq!(url.as_str(), "http://10.0.0.7:8081/base/postbacks/ns/b/t");
        assert!(postback_url("not a url", ["a", "b", "c"]).is_none());
        assert!(postback_url("file:///etc", ["a", "b", "c"]).is_none());
    }
}
