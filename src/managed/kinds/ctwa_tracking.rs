//! CtwaTracking ↔ CTWA tracking of a channel at the 360dialog Hub.
//!
//! The Hub has no read endpoint, so drift cannot be seen: a spec change is applied at once,
//! and once per resync interval (default 1 h) the desired state is asserted again, quietly.

use k8s_openapi::api::core::v1::Secret;

use crate::api::{CtwaTracking, CtwaTrackingStatus};
use crate::managed::external::{Drift, ExternalResource, Observation, Resolved};
use crate::runtime::failure::Failure;
use crate::upstream::clients::DialogUpstream;
use crate::upstream::hub::HubClient;

pub struct CtwaTrackingAdapter(pub DialogUpstream);

type Observed = Observation<(), CtwaTrackingStatus>;

fn applied(enabled: bool, drift: Drift) -> Observed {
    Observation {
        external_id: None,
        drift,
        status: CtwaTrackingStatus {
            enabled: Some(enabled),
            ..Default::default()
        },
        upstream: (),
    }
}

impl ExternalResource<CtwaTracking> for CtwaTrackingAdapter {
    type Client = HubClient;
    type Upstream = ();

    fn connect(&self, _obj: &CtwaTracking, secret: &Secret) -> Result<HubClient, Failure> {
        Ok(self.0.hub_client(secret)?)
    }

    fn claims(&self, obj: &CtwaTracking) -> Vec<String> {
        let s = &obj.spec;
        vec![format!(
            "channel:{}/{}/{}",
            s.partner_id, s.client_id, s.channel_id
        )]
    }

    /// Tracking was switched (on or off) for this object at least once.
    fn wrote_upstream(&self, obj: &CtwaTracking) -> bool {
        obj.status.as_ref().is_some_and(|s| s.enabled.is_some())
    }

    /// Unknown upstream state: what the status says was applied for this generation is
    /// asserted again quietly; anything else is a change to apply.
    async fn find(
        &self,
        _client: &HubClient,
        obj: &CtwaTracking,
        _refs: &Resolved,
    ) -> Result<Option<Observed>, Failure> {
        let applied_now = obj.status.as_ref().is_some_and(|s| {
            s.enabled == Some(obj.spec.enabled)
                && s.common.observed_generation == obj.metadata.generation
        });
        let drift = if applied_now {
            Drift::Unknown
        } else {
            Drift::Differs
        };
        Ok(Some(applied(obj.spec.enabled, drift)))
    }

    async fn create(
        &self,
        client: &HubClient,
        obj: &CtwaTracking,
        refs: &Resolved,
    ) -> Result<Observed, Failure> {
        self.update(
            client,
            obj,
            refs,
            &applied(obj.spec.enabled, Drift::Differs),
        )
        .await
    }

    async fn update(
        &self,
        client: &HubClient,
        obj: &CtwaTracking,
        _refs: &Resolved,
        observed: &Observed,
    ) -> Result<Observed, Failure> {
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
        Ok(applied(s.enabled, observed.drift))
    }

    /// Deletion with policy Delete switches tracking off; an unknown channel is already off.
    async fn delete(
        &self,
        client: &HubClient,
        obj: &CtwaTracking,
        _refs: &Resolved,
        _id: Option<&str>,
    ) -> Result<(), Failure> {
        let s = &obj.spec;
        Ok(client
            .disable_ctwa(&s.partner_id, &s.client_id, &s.channel_id)
            .await?)
    }
}
