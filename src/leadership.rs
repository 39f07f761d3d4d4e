//! The leader Lease: holding it (kube-lease-manager), and telling the other processes where
//! the holder takes postbacks (SPEC 7.2: postbacks reach the worker).
//!
//! The holder writes two annotations on its Lease: its identity and its postback URL. A
//! follower trusts the URL only while the identity equals the Lease's `holderIdentity`, so a
//! crashed leader's address is never used once another process has taken over.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;
use tokio::sync::watch;

/// Where the leader Lease lives and how long it lasts.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    /// This process's identity in the Lease (the pod name in a cluster).
    pub identity: String,
    pub duration: Duration,
    /// How the other replicas reach this process's postback receiver while it leads, e.g.
    /// `http://10.0.3.7:8081`; None: followers answer postbacks with 503.
    pub postback_url: Option<String>,
}

/// `--postback-advertise-url`: an http(s) URL. The chart writes `http://$(POD_IP):8081`, which
/// on an IPv6 cluster is `http://fd00::7:8081`; the address is put in brackets then.
pub fn advertise_url(text: &str) -> Result<String, String> {
    let bracketed = text.split_once("://").and_then(|(scheme, rest)| {
        let (host, port) = rest.trim_end_matches('/').rsplit_once(':')?;
        host.parse::<std::net::Ipv6Addr>()
            .ok()
            .map(|ip| format!("{scheme}://[{ip}]:{port}"))
    });
    let text = bracketed.as_deref().unwrap_or(text);
    let url = url::Url::parse(text).map_err(|e| format!("{text:?} is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(format!("{text:?} is not an http:// or https:// URL"));
    }
    Ok(text.trim_end_matches('/').to_string())
}

/// The holder's identity, next to [`POSTBACK_URL`]: the URL is current only for that holder.
pub const POSTBACK_HOLDER: &str = "ctwa.dev/postback-holder";
/// The holder's postback receiver.
pub const POSTBACK_URL: &str = "ctwa.dev/postback-url";

/// What holding a Lease gives: whether this process holds it now, and the background task
/// that takes and renews it (closing the channel makes the task release it).
pub type HeldLease = (
    watch::Receiver<bool>,
    tokio::task::JoinHandle<kube_lease_manager::Result<kube_lease_manager::LeaseManager>>,
);

/// Starts taking and renewing Lease `name` as `config.identity`, with `config`'s duration
/// (renewed a third of it before it expires): the leader Lease, a shard's or a member's.
pub async fn hold_lease(
    client: kube::Client,
    config: &LeaseConfig,
    name: &str,
) -> anyhow::Result<HeldLease> {
    let seconds = config.duration.as_secs().max(2);
    let manager = kube_lease_manager::LeaseManagerBuilder::new(client, name)
        .with_namespace(&config.namespace)
        .with_identity(&config.identity)
        .with_duration(seconds)
        .with_grace((seconds / 3).max(1))
        .with_field_manager("ctwa-operator")
        .build()
        .await?;
    Ok(manager.watch().await)
}

/// The leader Lease, held by kube-lease-manager's background task.
pub struct Leadership {
    state: watch::Receiver<bool>,
    task: tokio::task::JoinHandle<kube_lease_manager::Result<kube_lease_manager::LeaseManager>>,
}

impl Leadership {
    pub async fn start(client: kube::Client, config: &LeaseConfig) -> anyhow::Result<Self> {
        let (state, task) = hold_lease(client, config, &config.name).await?;
        tracing::info!(lease = %config.name, namespace = %config.namespace, identity = %config.identity, "waiting for the leader lease");
        Ok(Leadership { state, task })
    }

    pub async fn acquired(&mut self) {
        while !*self.state.borrow_and_update() {
            if self.state.changed().await.is_err() {
                return std::future::pending().await;
            }
        }
    }

    pub async fn lost(&mut self) {
        while *self.state.borrow_and_update() {
            if self.state.changed().await.is_err() {
                return;
            }
        }
    }

    /// Closing the channel makes the background task release the Lease.
    pub async fn release(self) {
        drop(self.state);
        match self.task.await {
            Ok(Ok(_)) => tracing::info!("leader lease released"),
            Ok(Err(e)) => tracing::warn!(error = %e, "releasing the leader lease failed"),
            Err(e) => tracing::warn!(error = %e, "the lease task failed"),
        }
    }
}

/// Publishes this process's postback URL on the Lease it now holds, retrying until it lands
/// or `stop` fires. Only the annotations are written (a merge patch under its own field
/// manager), so the lease manager's writes of `spec` never remove them.
pub async fn advertise(
    client: kube::Client,
    config: LeaseConfig,
    stop: tokio_util::sync::CancellationToken,
) {
    let Some(url) = config.postback_url.clone() else {
        return;
    };
    let leases: Api<Lease> = Api::namespaced(client, &config.namespace);
    let patch = Patch::Merge(json!({
        "metadata": {"annotations": {POSTBACK_HOLDER: config.identity, POSTBACK_URL: url}}
    }));
    let params = PatchParams {
        field_manager: Some("ctwa-operator-postbacks".into()),
        ..Default::default()
    };
    loop {
        match leases.patch(&config.name, &params, &patch).await {
            Ok(_) => {
                tracing::info!("postback URL published on the leader lease");
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "publishing the postback URL on the lease failed; retrying")
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
    }
}

/// How long a follower reuses what it read from the Lease: short, since a handover should
/// cost seconds of 503 at most, and a GET per two seconds per follower is nothing.
const FRESH: Duration = Duration::from_secs(2);

/// Where the holder of a Lease takes postbacks, read from the Lease (see [`advertise`]): the
/// leader Lease, or with `--shards` the Lease of a bridge's shard.
pub struct LeaderDirectory {
    leases: Api<Lease>,
    cached: Mutex<HashMap<String, (Instant, Option<String>)>>,
}

impl LeaderDirectory {
    pub fn new(client: kube::Client, config: &LeaseConfig) -> Self {
        LeaderDirectory {
            leases: Api::namespaced(client, &config.namespace),
            cached: Mutex::new(HashMap::new()),
        }
    }

    /// The postback URL of the holder of Lease `name`, when it has published one; `refresh`
    /// skips the cache (after the cached address failed).
    pub async fn holder_url(&self, name: &str, refresh: bool) -> Option<String> {
        if !refresh {
            let cached = self.cached.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((at, url)) = cached.get(name)
                && at.elapsed() < FRESH
            {
                return url.clone();
            }
        }
        let url = match self.leases.get_opt(name).await {
            Ok(lease) => lease.as_ref().and_then(published_url),
            Err(e) => {
                tracing::debug!(error = %e, "reading the leader lease failed");
                None
            }
        };
        self.cached
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_string(), (Instant::now(), url.clone()));
        url
    }
}

/// The URL the current holder published; None while the holder has not published one (it
/// just took over, or the annotations are a former holder's).
pub fn published_url(lease: &Lease) -> Option<String> {
    let holder = lease.spec.as_ref()?.holder_identity.as_deref()?;
    let annotations = lease.metadata.annotations.as_ref()?;
    (annotations.get(POSTBACK_HOLDER).map(String::as_str) == Some(holder))
        .then(|| annotations.get(POSTBACK_URL).cloned())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::coordination::v1::LeaseSpec;

    fn lease(holder: Option<&str>, annotations: &[(&str, &str)]) -> Lease {
        Lease {
            metadata: kube::api::ObjectMeta {
                annotations: Some(
                    annotations
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: holder.map(str::to_string),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn advertised_urls() {
        assert_eq!(
            advertise_url("http://10.0.3.7:8081").as_deref(),
            Ok("http://10.0.3.7:8081")
        );
        assert_eq!(
            advertise_url("http://fd00:10:244::7:8081").as_deref(),
            Ok("http://[fd00:10:244::7]:8081")
        );
        assert_eq!(
            advertise_url("http://[fd00::7]:8081/").as_deref(),
            Ok("http://[fd00::7]:8081")
        );
        assert!(advertise_url("10.0.3.7:8081").is_err());
        assert!(advertise_url("ftp://10.0.3.7:8081").is_err());
        assert!(advertise_url("http://:8081").is_err());
    }

    #[test]
    fn only_the_current_holders_url_counts() {
        let url = "http://10.0.0.1:8081";
        let published = [(POSTBACK_HOLDER, "a-1"), (POSTBACK_URL, url)];
        assert_eq!(
            published_url(&lease(Some("a-1"), &published)).as_deref(),
            Some(url)
        );
        // b took over and has not published yet: a's address is not used.
        assert_eq!(published_url(&lease(Some("b-2"), &published)), None);
        // Released: nobody holds it.
        assert_eq!(published_url(&lease(None, &published)), None);
        assert_eq!(published_url(&lease(Some("a-1"), &[])), None);
        assert_eq!(
            published_url(&lease(Some("a-1"), &[(POSTBACK_HOLDER, "a-1")])),
            None
        );
    }
}
