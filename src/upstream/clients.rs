//! Upstream clients built from a Kubernetes Secret, shared by every controller of a process:
//! one HTTP transport, one Hub token cache and one request budget per credential.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;

use super::budget::RequestBudgets;
use super::error::UpstreamError;
use super::http::Transport;
use super::hub::HubClient;
use super::hub_auth::{DialogAuth, HubTokenProvider};
use super::secret::{CredentialsError, DialogCredentials, XCredentials};
use super::signals::SignalsClient;
use super::x_ads::XAdsClient;

/// The namespace/name of a Secret: the key of its credential's token cache and budget.
pub fn credential_key(secret: &Secret) -> String {
    format!(
        "{}/{}",
        secret.namespace().unwrap_or_default(),
        secret.name_any()
    )
}

/// What the 360dialog adapters share: one HTTP client and one token cache per process.
#[derive(Clone)]
pub struct DialogUpstream {
    pub transport: Transport,
    pub tokens: Arc<HubTokenProvider>,
    pub hub_url: String,
    pub signals_url: String,
    /// One Signals request budget per 360dialog Secret, for every bridge and managed object
    /// that uses it (SPEC 7.1).
    pub signals_budgets: Arc<RequestBudgets>,
}

impl DialogUpstream {
    /// The 360dialog credentials of a Secret, keyed for the token cache by the Secret's
    /// namespace and name.
    pub fn auth(secret: &Secret) -> Result<DialogAuth, CredentialsError> {
        let credentials = DialogCredentials::from_secret_data(&secret_data(secret))?;
        Ok(DialogAuth::new(credential_key(secret), credentials))
    }

    /// A Signals client for one app, with the credentials of `secret`.
    pub fn signals_client(
        &self,
        client_id: &str,
        app_id: &str,
        secret: &Secret,
    ) -> Result<SignalsClient, ClientError> {
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
    ) -> Result<SignalsClient, ClientError> {
        let client = self.signals_client(client_id, app_id, secret)?;
        Ok(client.with_budget(self.signals_budgets.get(&credential_key(secret))))
    }

    /// A Hub client with the credentials of `secret`.
    pub fn hub_client(&self, secret: &Secret) -> Result<HubClient, ClientError> {
        Ok(HubClient::new(
            self.transport.clone(),
            &self.hub_url,
            self.tokens.clone(),
            Self::auth(secret)?,
        )?)
    }
}

/// Why no client could be built from a Secret.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(transparent)]
    Credentials(#[from] CredentialsError),
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
}

/// What the X clients share.
#[derive(Clone)]
pub struct XUpstream {
    pub transport: Transport,
    pub x_ads_url: String,
    /// One budget per X credential for the tag calls of every object and bridge, paced by
    /// X's `x-rate-limit-*` answers (SPEC 7.1).
    pub tag_budgets: Arc<RequestBudgets>,
}

impl XUpstream {
    /// An X Ads client with the credentials of `secret`, its tag calls within the
    /// credential's budget.
    pub fn client(&self, secret: &Secret) -> Result<XAdsClient, ClientError> {
        let credentials = XCredentials::from_secret_data(&secret_data(secret))?;
        let client = XAdsClient::new(self.transport.clone(), &self.x_ads_url, credentials)?;
        let budget = self.tag_budgets.get(&client.budget_key());
        Ok(client.with_budget(budget))
    }
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
