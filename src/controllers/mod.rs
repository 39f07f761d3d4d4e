//! One adapter per managed kind: how its upstream object is found, created, updated and
//! deleted. The flow around them is the generic reconciler's (`crate::reconcile`).

pub mod ctwa_tracking;
pub mod signals_keyword;
pub mod signals_postback;
pub mod x_web_event_tag;

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;

use crate::reconcile::failure::Failure;
use crate::upstream::http::Transport;
use crate::upstream::hub_auth::{DialogAuth, HubTokenProvider};
use crate::upstream::secret::DialogCredentials;

/// What the 360dialog adapters share: one HTTP client and one token cache per process.
#[derive(Clone)]
pub struct DialogUpstream {
    pub transport: Transport,
    pub tokens: Arc<HubTokenProvider>,
    pub hub_url: String,
    pub signals_url: String,
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
