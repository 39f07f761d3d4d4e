//! `ctwa-operator run`: builds the shared clients and runs the controllers.

use std::sync::Arc;
use std::time::Duration;

use crate::api::SignalsKeyword;
use crate::controllers::DialogUpstream;
use crate::controllers::signals_keyword::SignalsKeywordAdapter;
use crate::reconcile::controller;
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
        transport,
        tokens,
        hub_url: config.hub_url.clone(),
        signals_url: config.signals_url.clone(),
    };
    let scopes: Vec<Option<&str>> = if config.namespaces.is_empty() {
        vec![None]
    } else {
        config
            .namespaces
            .iter()
            .map(|ns| Some(ns.as_str()))
            .collect()
    };
    let controllers = scopes.into_iter().map(|scope| {
        controller::run::<SignalsKeyword, _>(
            client.clone(),
            SignalsKeywordAdapter(dialog.clone()),
            config.resync_interval,
            scope,
        )
    });
    futures::future::join_all(controllers).await;
    Ok(())
}
