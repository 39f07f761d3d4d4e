//! `ctwa-operator run`: builds the shared clients and runs the controllers.

use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{WatchStreamExt, watcher};

use crate::api::{CtwaTracking, SignalsKeyword, SignalsPostback, XWebEventTag};
use crate::controllers::ctwa_tracking::CtwaTrackingAdapter;
use crate::controllers::signals_keyword::SignalsKeywordAdapter;
use crate::controllers::signals_postback::SignalsPostbackAdapter;
use crate::controllers::x_web_event_tag::XWebEventTagAdapter;
use crate::controllers::{DialogUpstream, XUpstream};
use crate::reconcile::controller::{self, Trigger};
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
}

/// Runs every controller until the process is asked to stop.
pub async fn run(client: kube::Client, config: OperatorConfig) -> anyhow::Result<()> {
    install_crypto_provider();
    let transport = Transport::from_config(&HttpConfig::default())?;
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
                },
                resync,
                ns(),
                vec![keyword_changes(client.clone(), scope.as_deref())],
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
    }
    futures::future::join_all(tasks).await;
    Ok(())
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
