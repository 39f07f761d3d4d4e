//! 360dialog Hub: enable or disable CTWA tracking on one channel (SPEC 6.1).

use std::sync::Arc;

use crate::upstream::error::{Api, UpstreamError};
use crate::upstream::http::{SuccessBody, Transport, join_url, parse_base_url};
use crate::upstream::hub_auth::{DialogAuth, HubTokenProvider};

/// Client for the Hub's CTWA endpoints, bound to one credential.
#[derive(Debug, Clone)]
pub struct HubClient {
    transport: Transport,
    base: url::Url,
    tokens: Arc<HubTokenProvider>,
    auth: DialogAuth,
}

impl HubClient {
    /// A client for the Hub at `hub_url` using `auth` (tokens from `tokens`).
    pub fn new(
        transport: Transport,
        hub_url: &str,
        tokens: Arc<HubTokenProvider>,
        auth: DialogAuth,
    ) -> Result<Self, UpstreamError> {
        Ok(HubClient {
            transport,
            base: parse_base_url(Api::Hub, hub_url)?,
            tokens,
            auth,
        })
    }

    /// `POST /partners/{partner}/clients/{client}/channels/{channel}/enable_ctwa`.
    pub async fn enable_ctwa(
        &self,
        partner: &str,
        client: &str,
        channel: &str,
    ) -> Result<(), UpstreamError> {
        self.toggle("enable_ctwa", partner, client, channel).await
    }

    /// `POST /partners/{partner}/clients/{client}/channels/{channel}/disable_ctwa`.
    pub async fn disable_ctwa(
        &self,
        partner: &str,
        client: &str,
        channel: &str,
    ) -> Result<(), UpstreamError> {
        self.toggle("disable_ctwa", partner, client, channel).await
    }

    async fn toggle(
        &self,
        op: &'static str,
        partner: &str,
        client: &str,
        channel: &str,
    ) -> Result<(), UpstreamError> {
        let url = join_url(
            &self.base,
            &[
                "partners", partner, "clients", client, "channels", channel, op,
            ],
            Api::Hub,
            op,
        )?;
        self.tokens
            .with_token(&self.auth, |token| {
                let request = self
                    .transport
                    .client()
                    .post(url.clone())
                    .bearer_auth(token.expose());
                async move {
                    let response = self.transport.execute(Api::Hub, op, request).await?;
                    if !response.body.is_empty() {
                        let _: SuccessBody = response.json(Api::Hub, op)?;
                    }
                    Ok(())
                }
            })
            .await
    }
}
