//! One adapter per managed kind: how its upstream object is found, created, updated and
//! deleted. The flow around them is the generic reconciler's (`crate::managed`).

pub mod ctwa_tracking;
pub mod signals_keyword;
pub mod signals_postback;
pub mod x_web_event_tag;

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;

use crate::runtime::failure::Failure;
use crate::upstream::budget::RequestBudgets;
use crate::upstream::error::UpstreamError;
use crate::upstream::http::Transport;
use crate::upstream::hub_auth::{DialogAuth, HubTokenProvider};
use crate::upstream::secret::DialogCredentials;
use crate::upstream::signals::SignalsClient;

/// What the 360dialog adapters share: one HTTP client and one token cache per process.
#[derive(Clone)]
pub struct DialogUpstream {
    pub transport: Transport,
    pub tokens: Arc<HubTokenProvider>,
    pub hub_url: String,
    pub signals_url: String,
    /// One Signals request budget per 360dialog Secret (bridges use it; the managed kinds
    /// will share it too).
    pub signals_budgets: Arc<RequestBudgets>,
}

impl DialogUpstream {
    /// The 360dialog credentials of a Secret, keyed for the token cache by the Secret's
    /// namespace and name.
    pub fn auth(secret: &Secret) -> Result<DialogAuth, Failure> {
        let data = secret_data(secret);
        let credentials = DialogCredentials::from_secret_data(&data)?;
        Ok(DialogAuth::new(
            format!(
                "{}/{}",
                secret.namespace().unwrap_or_default(),
                secret.name_any()
            ),
            credentials,
        ))
    }
}

impl DialogUpstream {
    /// A Signals client for one app, with the credentials of `secret`.
    pub fn signals_client(
        &self,
        client_id: &str,
        app_id: &str,
        secret: &Secret,
    ) -> Result<SignalsClient, Failure> {
        Ok(SignalsClient::new(
            self.transport.clone(),
            &self.signals_url,
            client_id.to_string(),
            app_id.to_string(),
            self.tokens.clone(),
            Self::auth(secret)?,
        )?)
    }

    /// A Signals client for one app that waits for the request budget of `secret`, shared
    /// with every other client of that Secret (SPEC 7.1).
    pub fn budgeted_signals_client(
        &self,
        client_id: &str,
        app_id: &str,
        secret: &Secret,
    ) -> Result<SignalsClient, Failure> {
        let client = self.signals_client(client_id, app_id, secret)?;
        let credential = format!(
            "{}/{}",
            secret.namespace().unwrap_or_default(),
            secret.name_any()
        );
        Ok(client.with_budget(self.signals_budgets.get(&credential)))
    }
}

/// Deleting something that is already gone is a successful delete (SPEC section 3).
pub fn gone_is_ok<T>(result: Result<T, UpstreamError>) -> Result<(), Failure> {
    match result {
        Ok(_) => Ok(()),
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// What the X adapters share.
#[derive(Clone)]
pub struct XUpstream {
    pub transport: Transport,
    pub x_ads_url: String,
}

/// A Secret's `data` and `stringData` as bytes.
pub fn secret_data(secret: &Secret) -> BTreeMap<String, Vec<u8>> {
    let mut data: BTreeMap<String, Vec<u8>> = secret
        .data
        .as_ref()
        .map(|d| d.iter().map(|(k, v)| (k.clone(), v.0.clone())).collect())
        .unwrap_or_default();
    if let Some(string_data) = &secret.string_data {
        for (k, v) in string_data {
            data.insert(k.clone(), v.clone().into_bytes());
        }
    }
    data
}
