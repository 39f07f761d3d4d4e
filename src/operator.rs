//! `ctwa-operator run`: builds the shared clients and runs the controllers, the bridges and
//! the two HTTP listeners (metrics and postbacks).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{WatchStreamExt, watcher};
use tokio_util::sync::CancellationToken;

use crate::api::{CtwaTracking, SignalsKeyword, SignalsPostback, XWebEventTag};
use crate::bridge::controller::BridgeContext;
use crate::bridge::delivery::RetryPolicy;
use crate::bridge::supervisor::Supervisor;
use crate::controllers::ctwa_tracking::CtwaTrackingAdapter;
use crate::controllers::signals_keyword::SignalsKeywordAdapter;
use crate::controllers::signals_postback::SignalsPostbackAdapter;
use crate::controllers::x_web_event_tag::XWebEventTagAdapter;
use crate::controllers::{DialogUpstream, XUpstream};
use crate::metrics::Metrics;
use crate::reconcile::controller::{self, Trigger};
use crate::server::{self, Health};
use crate::upstream::budget::BudgetRegistry;
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
}

/// Runs every controller until the process is asked to stop.
pub async fn run(client: kube::Client, config: OperatorConfig) -> anyhow::Result<()> {
    install_crypto_provider();
    let metrics = Arc::new(Metrics::new());
    let transport = Transport::from_config(&HttpConfig::default())?.with_observer(metrics.clone());
    let tokens = Arc::new(HubTokenProvider::new(transport.clone(), &config.hub_url)?);
    let dialog = DialogUpstream {
        transport: transport.clone(),
        tokens,
        hub_url: config.hub_url.clone(),
        signals_url: config.signals_url.clone(),
    };
    let x = XUpstream {
        transport,
        x_ads_url: config.x_ads_url.clone(),
    };
    let scopes: Vec<Option<String>> = if config.namespaces.is_empty() {
        vec![None]
    } else {
        config.namespaces.iter().cloned().map(Some).collect()
    };
    let resync = config.resync_interval;
    let supervisor = Supervisor::new(
        client.clone(),
        Recorder::new(client.clone(), Reporter::from("ctwa-operator")),
        metrics.clone(),
        config.bridge_status_interval,
    );
    let bridges = Arc::new(BridgeContext {
        kube: client.clone(),
        supervisor: supervisor.clone(),
        dialog: dialog.clone(),
        x: x.clone(),
        budgets: Arc::new(BudgetRegistry::new()),
        retry: RetryPolicy::default(),
    });

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
            crate::bridge::receiver::router(supervisor.clone()),
            stop_servers.clone(),
        ),
    ));

    let mut tasks = Vec::new();
    for scope in scopes {
        let ns = || scope.clone();
        tasks.push(
            controller::run::<CtwaTracking, _>(
                client.clone(),
                CtwaTrackingAdapter(dialog.clone()),
                resync,
                ns(),
                vec![],
            )
            .boxed(),
        );
        tasks.push(
            controller::run::<SignalsKeyword, _>(
                client.clone(),
                SignalsKeywordAdapter(dialog.clone()),
                resync,
                ns(),
                vec![],
            )
            .boxed(),
        );
        tasks.push(
            controller::run::<SignalsPostback, _>(
                client.clone(),
                SignalsPostbackAdapter {
                    upstream: dialog.clone(),
                    kube: client.clone(),
                    public_base_url: config.public_base_url.clone(),
                },
                resync,
                ns(),
                vec![
                    keyword_changes(client.clone(), scope.as_deref()),
                    bridge_changes(client.clone(), scope.as_deref()),
                ],
            )
            .boxed(),
        );
        tasks.push(
            controller::run::<XWebEventTag, _>(
                client.clone(),
                XWebEventTagAdapter(x.clone()),
                resync,
                ns(),
                vec![],
            )
            .boxed(),
        );
        tasks.push(crate::bridge::controller::run(bridges.clone(), ns()).boxed());
    }
    health.set_ready(true);
    // Every controller returns on SIGTERM/SIGINT.
    futures::future::join_all(tasks).await;
    health.set_ready(false);
    supervisor.shutdown().await;
    stop_servers.cancel();
    let _ = servers.await;
    Ok(())
}

/// A postback to a bridge follows it: enabling postbacks or recreating the bridge triggers
/// the postbacks that reference it. Status writes do not (they change neither).
fn bridge_changes(client: kube::Client, namespace: Option<&str>) -> Trigger<SignalsPostback> {
    let api: Api<crate::api::ConversionBridge> = match namespace {
        Some(ns) => Api::namespaced(client, ns),
        None => Api::all(client),
    };
    Box::new(move |postbacks| {
        watcher(api, watcher::Config::default())
            .default_backoff()
            .touched_objects()
            .predicate_filter(
                |b: &crate::api::ConversionBridge| {
                    use std::hash::{Hash, Hasher};
                    let mut h = std::collections::hash_map::DefaultHasher::new();
                    (b.uid(), b.spec.source.postbacks.enabled).hash(&mut h);
                    Some(h.finish())
                },
                Default::default(),
            )
            .filter_map(|r| std::future::ready(r.ok()))
            .flat_map(move |bridge| {
                let refs: Vec<ObjectRef<SignalsPostback>> = postbacks
                    .state()
                    .into_iter()
                    .filter(|p| {
                        p.namespace() == bridge.namespace()
                            && p.spec
                                .bridge_ref
                                .as_ref()
                                .is_some_and(|r| r.name == bridge.name_any())
                    })
                    .map(|p| ObjectRef::from_obj(p.as_ref()))
                    .collect();
                futures::stream::iter(refs)
            })
            .boxed()
    })
}

/// A postback follows its keyword: any change of a SignalsKeyword (a new id, Ready) triggers
/// the postbacks that reference it.
fn keyword_changes(client: kube::Client, namespace: Option<&str>) -> Trigger<SignalsPostback> {
    let api: Api<SignalsKeyword> = match namespace {
        Some(ns) => Api::namespaced(client, ns),
        None => Api::all(client),
    };
    Box::new(move |postbacks| {
        watcher(api, watcher::Config::default())
            .default_backoff()
            .touched_objects()
            .filter_map(|r| std::future::ready(r.ok()))
            .flat_map(move |keyword| {
                let refs: Vec<ObjectRef<SignalsPostback>> = postbacks
                    .state()
                    .into_iter()
                    .filter(|p| {
                        p.namespace() == keyword.namespace()
                            && p.spec
                                .keyword_ref
                                .as_ref()
                                .is_some_and(|r| r.name == keyword.name_any())
                    })
                    .map(|p| ObjectRef::from_obj(p.as_ref()))
                    .collect();
                futures::stream::iter(refs)
            })
            .boxed()
    })
}
