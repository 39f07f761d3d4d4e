//! `ctwa-operator run`: builds the shared clients, serves metrics and postbacks, and — while it
//! holds the leader lease — runs the controllers and the bridges.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use kube::ResourceExt;
use tokio_util::sync::CancellationToken;

use crate::api::{
    ConversionBridge, CtwaTracking, SignalsConversionEvent, SignalsKeyword, SignalsPostback,
    XWebEventTag,
};
use crate::bridge::controller::BridgeContext;
use crate::bridge::supervisor::Supervisor;
use crate::leadership::{LeaderDirectory, Leadership};
use crate::managed::controller;
use crate::managed::kinds::ctwa_tracking::CtwaTrackingAdapter;
use crate::managed::kinds::signals_conversion_event::SignalsConversionEventAdapter;
use crate::managed::kinds::signals_keyword::SignalsKeywordAdapter;
use crate::managed::kinds::signals_postback::SignalsPostbackAdapter;
use crate::managed::kinds::x_web_event_tag::XWebEventTagAdapter;
use crate::managed::ownership::Peers;
use crate::managed::resource::{Managed, Reference};
use crate::metrics::Metrics;
use crate::runtime::conditions::is_ready;
use crate::runtime::events::Events;
use crate::runtime::scope::{Scope, Trigger, follow};
use crate::server::{self, Health};
use crate::sharding::{ShardConfig, Shards, StopShard};
use crate::upstream::budget::BudgetRegistry;
use crate::upstream::clients::{DialogUpstream, XUpstream};
use crate::upstream::http::{HttpConfig, Transport, install_crypto_provider};
use crate::upstream::hub_auth::HubTokenProvider;

/// Settings of a running operator (the `run` flags).
#[derive(Clone, Debug)]
pub struct OperatorConfig {
    pub resync_interval: Duration,
    pub signals_url: String,
    pub hub_url: String,
    pub x_ads_url: String,
    /// Namespaces to watch; empty means all.
    pub namespaces: Vec<String>,
    /// `/metrics`, `/healthz`, `/readyz`.
    pub metrics_addr: SocketAddr,
    /// The postback receiver.
    pub postback_addr: SocketAddr,
    /// How Signals reaches the postback receiver; needed by `SignalsPostback.bridgeRef`.
    pub public_base_url: Option<String>,
    /// Least time between two status writes of one bridge.
    pub bridge_status_interval: Duration,
    /// Only the holder of this Lease reconciles and runs bridges; None: no election.
    pub leader_election: Option<LeaseConfig>,
    /// How long in-flight batches may take to finish on shutdown.
    pub shutdown_grace: Duration,
    /// Forwarded event ids one bridge remembers at most (`--bridge-max-seen-ids`).
    pub bridge_max_seen_ids: usize,
    /// Signals requests per second per 360dialog credential (`--signals-requests-per-second`).
    pub signals_requests_per_second: u32,
    /// `--shards`: above 1, the work is spread over shards held on Leases (needs
    /// `leader_election`).
    pub shards: u32,
}

pub use crate::leadership::LeaseConfig;

/// Runs until SIGTERM/SIGINT (a clean exit) or until the leader lease is lost (an error,
/// so that the process restarts as a follower).
pub async fn run(client: kube::Client, config: OperatorConfig) -> anyhow::Result<()> {
    run_until(client, config, shutdown_signal()).await
}

/// [`run`] with the stop signal supplied by the caller (tests).
pub async fn run_until(
    client: kube::Client,
    config: OperatorConfig,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    install_crypto_provider();
    let sharded = match (&config.leader_election, config.shards) {
        (_, 0 | 1) => None,
        (Some(lease), count) => Some(ShardConfig {
            lease: lease.clone(),
            count,
            grace: config.shutdown_grace,
        }),
        (None, _) => anyhow::bail!("--shards above 1 needs leader election"),
    };
    let shards = match &sharded {
        Some(s) => Shards::new(s.count),
        None => Shards::whole(),
    };
    let shutdown = CancellationToken::new();
    let on_stop = shutdown.clone();
    tokio::spawn(async move {
        stop.await;
        tracing::info!("shutting down");
        on_stop.cancel();
    });

    let metrics = Arc::new(Metrics::new());
    let transport = Transport::from_config(&HttpConfig::default())?.with_observer(metrics.clone());
    let tokens = Arc::new(HubTokenProvider::new(transport.clone(), &config.hub_url)?);
    let dialog = DialogUpstream {
        transport: transport.clone(),
        tokens,
        hub_url: config.hub_url.clone(),
        signals_url: config.signals_url.clone(),
        signals_budgets: Arc::new(crate::upstream::budget::RequestBudgets::new(
            config.signals_requests_per_second,
        )),
    };
    let x = XUpstream {
        transport,
        x_ads_url: config.x_ads_url.clone(),
        tag_budgets: Arc::new(crate::upstream::budget::RequestBudgets::unmetered()),
    };
    let supervisor = Supervisor::new(
        client.clone(),
        Events::new(&client),
        metrics.clone(),
        config.bridge_status_interval,
        config.bridge_max_seen_ids,
        shards.clone(),
    );

    // Followers serve too: /healthz, /readyz and a receiver that hands postbacks to the
    // leader (or answers 503 when nobody has published where postbacks go).
    let forwarder = match &config.leader_election {
        Some(lease) if lease.postback_url.is_some() => {
            Some(crate::bridge::forward::Forwarder::new(
                LeaderDirectory::new(client.clone(), lease),
                lease.name.clone(),
                shards.count(),
            )?)
        }
        Some(_) => {
            tracing::warn!(
                "leader election without --postback-advertise-url: followers answer postbacks with 503"
            );
            None
        }
        None => None,
    };
    let health = Health::new();
    let stop_servers = CancellationToken::new();
    let metrics_listener = server::bind(config.metrics_addr).await?;
    let postback_listener = server::bind(config.postback_addr).await?;
    tracing::info!(metrics = %metrics_listener.local_addr()?, postbacks = %postback_listener.local_addr()?, "listening");
    let servers = tokio::spawn(futures::future::join(
        server::serve(
            metrics_listener,
            server::metrics_router(metrics.clone(), health.clone()),
            stop_servers.clone(),
        ),
        server::serve(
            postback_listener,
            crate::bridge::receiver::router(supervisor.clone(), forwarder),
            stop_servers.clone(),
        ),
    ));
    health.set_ready(true);

    if let Some(sharding) = sharded {
        let result = lead_shards(
            &client,
            &config,
            &shutdown,
            &metrics,
            dialog,
            x,
            &supervisor,
            sharding,
        )
        .await;
        health.set_ready(false);
        stop_servers.cancel();
        let _ = servers.await;
        return result;
    }
    let mut lease = match &config.leader_election {
        Some(lease) => Some(Leadership::start(client.clone(), lease).await?),
        None => None,
    };
    let result = match &mut lease {
        Some(l) => {
            tokio::select! {
                _ = shutdown.cancelled() => Ok(()),
                _ = l.acquired() => {
                    let lease = config.leader_election.clone().expect("a lease is configured");
                    tokio::spawn(crate::leadership::advertise(client.clone(), lease, shutdown.child_token()));
                    lead(&client, &config, &shutdown, &metrics, dialog, x, &supervisor, Some(l)).await
                }
            }
        }
        None => {
            lead(
                &client,
                &config,
                &shutdown,
                &metrics,
                dialog,
                x,
                &supervisor,
                None,
            )
            .await
        }
    };

    health.set_ready(false);
    metrics.set_leader(false);
    if let Some(l) = lease {
        l.release().await;
    }
    stop_servers.cancel();
    let _ = servers.await;
    result
}

/// With `--shards`: the controllers run from the start and work on the shards this process
/// holds, which the shard keeper takes and lets go; on SIGTERM the bridges are drained before
/// the shard Leases are released.
#[allow(clippy::too_many_arguments)]
async fn lead_shards(
    client: &kube::Client,
    config: &OperatorConfig,
    shutdown: &CancellationToken,
    metrics: &Arc<Metrics>,
    dialog: DialogUpstream,
    x: XUpstream,
    supervisor: &Arc<Supervisor>,
    sharding: ShardConfig,
) -> anyhow::Result<()> {
    let grace = sharding.grace;
    let stop_shard: StopShard = {
        let supervisor = supervisor.clone();
        Arc::new(move |shard, now| {
            let supervisor = supervisor.clone();
            let grace = if now { Duration::ZERO } else { grace };
            async move { supervisor.stop_shard(shard, grace).await }.boxed()
        })
    };
    let stop_keeper = CancellationToken::new();
    let keeper = tokio::spawn(crate::sharding::keep(
        client.clone(),
        sharding,
        supervisor.shards(),
        stop_shard,
        metrics.clone(),
        stop_keeper.clone(),
    ));
    let result = lead(
        client, config, shutdown, metrics, dialog, x, supervisor, None,
    )
    .await;
    stop_keeper.cancel();
    match keeper.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "the shard keeper failed"),
        Err(e) => tracing::warn!(error = %e, "the shard keeper task failed"),
    }
    result
}

/// The leader's work: every controller and bridge, until shutdown or a lost lease.
#[allow(clippy::too_many_arguments)]
async fn lead(
    client: &kube::Client,
    config: &OperatorConfig,
    shutdown: &CancellationToken,
    metrics: &Arc<Metrics>,
    dialog: DialogUpstream,
    x: XUpstream,
    supervisor: &Arc<Supervisor>,
    lease: Option<&mut Leadership>,
) -> anyhow::Result<()> {
    tracing::info!("leading: starting the controllers");
    let shards = supervisor.shards();
    if shards.count() == 1 {
        metrics.set_leader(true);
    }
    supervisor.set_active(true);
    let stop_controllers = shutdown.child_token();
    let bridges = Arc::new(BridgeContext {
        kube: client.clone(),
        supervisor: supervisor.clone(),
        dialog: dialog.clone(),
        x: x.clone(),
        budgets: Arc::new(BudgetRegistry::new()),
        metrics: metrics.clone(),
    });
    let namespaces: Vec<Option<String>> = if config.namespaces.is_empty() {
        vec![None]
    } else {
        config.namespaces.iter().cloned().map(Some).collect()
    };
    let mut tasks = Vec::new();
    // Ownership is decided across every watched namespace (SPEC 7.1).
    let tracking_peers = Peers::new();
    let keyword_peers = Peers::new();
    let postback_peers = Peers::new();
    let tag_peers = Peers::new();
    let conversion_peers = Peers::new();
    for namespace in namespaces {
        let scope = Scope {
            client: client.clone(),
            namespace,
            resync: config.resync_interval,
            metrics: metrics.clone(),
            shutdown: stop_controllers.clone(),
            shards: shards.clone(),
        };
        tasks.push(
            controller::run::<CtwaTracking, _>(
                scope.clone(),
                CtwaTrackingAdapter(dialog.clone()),
                vec![],
                tracking_peers.clone(),
            )
            .boxed(),
        );
        tasks.push(
            controller::run::<SignalsKeyword, _>(
                scope.clone(),
                SignalsKeywordAdapter(dialog.clone()),
                vec![],
                keyword_peers.clone(),
            )
            .boxed(),
        );
        tasks.push(
            controller::run::<SignalsPostback, _>(
                scope.clone(),
                SignalsPostbackAdapter {
                    upstream: dialog.clone(),
                    public_base_url: config.public_base_url.clone(),
                },
                postback_triggers(&scope),
                postback_peers.clone(),
            )
            .boxed(),
        );
        tasks.push(
            controller::run::<SignalsConversionEvent, _>(
                scope.clone(),
                SignalsConversionEventAdapter::new(dialog.clone()),
                vec![follow(
                    scope.api::<SignalsKeyword>(),
                    keyword_identity,
                    |c: &SignalsConversionEvent, name| {
                        c.references()
                            .contains(&Reference::Keyword(name.to_string()))
                    },
                )],
                conversion_peers.clone(),
            )
            .boxed(),
        );
        tasks.push(
            controller::run::<XWebEventTag, _>(
                scope.clone(),
                XWebEventTagAdapter(x.clone()),
                vec![],
                tag_peers.clone(),
            )
            .boxed(),
        );
        tasks.push(crate::bridge::controller::run(bridges.clone(), scope).boxed());
    }
    let controllers = futures::future::join_all(tasks);
    let lost = async {
        match lease {
            Some(l) => l.lost().await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = controllers => {
            // SIGTERM: stop taking postbacks, deliver what is in flight, write the checkpoints.
            supervisor.set_active(false);
            supervisor.drain(config.shutdown_grace).await;
            Ok(())
        }
        _ = lost => {
            // Another process leads now: stop at once, it takes over from the checkpoints.
            stop_controllers.cancel();
            supervisor.set_active(false);
            supervisor.drain(Duration::ZERO).await;
            anyhow::bail!("lost the leader lease")
        }
    }
}

/// SIGTERM or SIGINT.
async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
}

/// What an object referencing a SignalsKeyword cares about: which keyword it is, whether it
/// is Ready, its id, and whether it is being deleted. The keyword's other writes (its
/// conditions' messages, Events' timestamps, the external-id annotation) change none of it.
fn keyword_identity(k: &SignalsKeyword) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let status = k.status.as_ref();
    let ready = status.is_some_and(|s| is_ready(&s.common.conditions));
    let id = status.and_then(|s| s.keyword_id.as_deref());
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (k.uid(), ready, id, k.metadata.deletion_timestamp.is_some()).hash(&mut h);
    Some(h.finish())
}

/// A postback follows what it references: its SignalsKeyword's identity (a new id, Ready),
/// and of its ConversionBridge the changes that matter (recreated, postbacks on or off).
/// Status writes of a bridge change neither.
fn postback_triggers(scope: &Scope) -> Vec<Trigger<SignalsPostback>> {
    fn refers(postback: &SignalsPostback, name: &str, keyword: bool) -> bool {
        postback.references().iter().any(|r| match r {
            Reference::Keyword(k) => keyword && k == name,
            Reference::Bridge(b) => !keyword && b == name,
        })
    }
    fn bridge_identity(b: &ConversionBridge) -> Option<u64> {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (b.uid(), b.spec.source.postbacks.enabled).hash(&mut h);
        Some(h.finish())
    }
    vec![
        follow(
            scope.api::<SignalsKeyword>(),
            keyword_identity,
            |p, name| refers(p, name, true),
        ),
        follow(
            scope.api::<ConversionBridge>(),
            bridge_identity,
            |p, name| refers(p, name, false),
        ),
    ]
}
