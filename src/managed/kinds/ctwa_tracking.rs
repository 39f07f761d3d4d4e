//! CtwaTracking ↔ CTWA tracking of a channel at the 360dialog Hub.
//!
//! The Hub has no read endpoint, so "observe" cannot see drift: every reconcile (a spec
//! change, or once per resync interval, default 1h) asserts the desired state again.

use k8s_openapi::api::core::v1::Secret;
use serde_json::{Map, json};

use super::DialogUpstream;
use crate::api::CtwaTracking;
use crate::managed::external::{ExternalResource, Observation};
use crate::runtime::failure::Failure;
use crate::upstream::hub::HubClient;

pub struct CtwaTrackingAdapter(pub DialogUpstream);

fn applied(enabled: bool) -> Observation {
    let mut status = Map::new();
    status.insert("enabled".into(), json!(enabled));
    Observation {
        exists: true,
        up_to_date: true,
        external_id: None,
        status,
        upstream: serde_json::Value::Null,
    }
}

impl ExternalResource<CtwaTracking> for CtwaTrackingAdapter {
    type Client = HubClient;

    fn connect(&self, _obj: &CtwaTracking, secret: &Secret) -> Result<HubClient, Failure> {
        let up = &self.0;
        Ok(HubClient::new(
            up.transport.clone(),
            &up.hub_url,
            up.tokens.clone(),
            DialogUpstream::auth(secret)?,
        )?)
    }

    /// Unknown upstream state: always "exists, needs asserting".
    async fn observe(
        &self,
        _client: &HubClient,
        _obj: &CtwaTracking,
    ) -> Result<Observation, Failure> {
        Ok(Observation {
            exists: true,
            up_to_date: false,
            ..Default::default()
        })
    }

    async fn create(&self, client: &HubClient, obj: &CtwaTracking) -> Result<Observation, Failure> {
        self.update(client, obj, &Observation::default()).await
    }

    async fn update(
        &self,
        client: &HubClient,
        obj: &CtwaTracking,
        _observed: &Observation,
    ) -> Result<Observation, Failure> {
        let s = &obj.spec;
        if s.enabled {
            client
                .enable_ctwa(&s.partner_id, &s.client_id, &s.channel_id)
                .await?;
        } else {
            client
                .disable_ctwa(&s.partner_id, &s.client_id, &s.channel_id)
                .await?;
        }
        Ok(applied(s.enabled))
    }

    /// Deletion with policy Delete switches tracking off; an unknown channel is already off.
    async fn delete(&self, client: &HubClient, obj: &CtwaTracking) -> Result<(), Failure> {
        let s = &obj.spec;
        super::gone_is_ok(
            client
                .disable_ctwa(&s.partner_id, &s.client_id, &s.channel_id)
                .await,
        )
    }
}
