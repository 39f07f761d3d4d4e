//! SignalsConversionEvent ↔ the campaign's conversion in Signals (`POST converted_events`).
//!
//! The API can set a campaign's conversion but neither read nor remove it. So, as for
//! CtwaTracking, a change is applied at once and asserted again, quietly, once per resync;
//! `type` is checked against the app's `event_types` only when something changed, and a
//! deletion leaves the conversion as it is.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;

use crate::api::{
    AppliedConversion, ConversionEventType, SignalsConversionEvent, SignalsConversionEventStatus,
};
use crate::managed::external::{Drift, ExternalResource, Observation, Resolved};
use crate::managed::ownership::object_key;
use crate::runtime::conditions::Reason;
use crate::runtime::failure::Failure;
use crate::upstream::clients::DialogUpstream;
use crate::upstream::signals::{ConvertedEvent, SignalsClient};

/// How long a conversion this process just sent is trusted over a cache that may not show
/// the status write yet: a reconcile queued during the POST must not send it twice.
const JUST_SENT: Duration = Duration::from_secs(5);

pub struct SignalsConversionEventAdapter {
    upstream: DialogUpstream,
    sent: SentLog,
}

/// Object key → what this process sent for it last.
#[derive(Default)]
struct SentLog(Mutex<HashMap<String, Sent>>);

/// A conversion this process sent: for which generation, what, and when.
struct Sent {
    generation: Option<i64>,
    applied: AppliedConversion,
    at: Instant,
}

impl SignalsConversionEventAdapter {
    pub fn new(upstream: DialogUpstream) -> Self {
        Self {
            upstream,
            sent: SentLog::default(),
        }
    }
}

impl SentLog {
    /// How `want` compares with what was sent: sent by this process moments ago (nothing to
    /// do, whatever the cache shows yet: a reconcile queued during the POST may see the status
    /// write or not), recorded in the status for this generation (assert it again, quietly,
    /// when due), or neither (a change to send).
    fn drift(&self, obj: &SignalsConversionEvent, want: &AppliedConversion) -> Drift {
        let generation = obj.metadata.generation;
        let just_sent = {
            let mut sent = self.0.lock().unwrap_or_else(|e| e.into_inner());
            sent.retain(|_, s| s.at.elapsed() < JUST_SENT);
            sent.get(&object_key(obj))
                .is_some_and(|s| s.generation == generation && &s.applied == want)
        };
        let in_status = obj.status.as_ref().is_some_and(|s| {
            s.applied.as_ref() == Some(want) && s.common.observed_generation == generation
        });
        match (just_sent, in_status) {
            (true, _) => Drift::None,
            (false, true) => Drift::Unknown,
            (false, false) => Drift::Differs,
        }
    }

    fn remember(&self, obj: &SignalsConversionEvent, applied: &AppliedConversion) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).insert(
            object_key(obj),
            Sent {
                generation: obj.metadata.generation,
                applied: applied.clone(),
                at: Instant::now(),
            },
        );
    }
}

type Observed = Observation<(), SignalsConversionEventStatus>;

/// The conversion the spec asks for, with keywordRef resolved to the keyword's id.
fn desired(obj: &SignalsConversionEvent, refs: &Resolved) -> Result<AppliedConversion, Failure> {
    let s = &obj.spec;
    let type_id = match (&s.type_id, &s.keyword_ref) {
        (Some(id), _) => Some(id.clone()),
        (None, Some(_)) => refs.keyword_id.clone(),
        (None, None) => None,
    };
    if s.event_type == ConversionEventType::Keyword && type_id.is_none() {
        return Err(Failure::terminal(
            Reason::UpstreamRejected,
            "type keyword needs typeId or keywordRef",
        ));
    }
    Ok(AppliedConversion {
        event_type: s.event_type.as_str().to_string(),
        type_id,
        type_value: s.type_value.clone(),
    })
}

fn observation(applied: AppliedConversion, drift: Drift) -> Observed {
    Observation {
        external_id: None,
        drift,
        status: SignalsConversionEventStatus {
            applied: Some(applied),
            ..Default::default()
        },
        upstream: (),
    }
}

impl ExternalResource<SignalsConversionEvent> for SignalsConversionEventAdapter {
    type Client = SignalsClient;
    type Upstream = ();

    fn connect(
        &self,
        obj: &SignalsConversionEvent,
        secret: &Secret,
    ) -> Result<SignalsClient, Failure> {
        Ok(self
            .upstream
            .budgeted_signals_client(&obj.spec.client_id, &obj.spec.app_id, secret)?)
    }

    /// A campaign has one conversion.
    fn claims(&self, obj: &SignalsConversionEvent) -> Vec<String> {
        let s = &obj.spec;
        vec![format!(
            "conversion:{}/{}/{}",
            s.client_id, s.app_id, s.campaign_id
        )]
    }

    fn wrote_upstream(&self, obj: &SignalsConversionEvent) -> bool {
        obj.status.as_ref().is_some_and(|s| s.applied.is_some())
    }

    /// The API has no delete for a campaign's conversion.
    fn can_delete(&self) -> bool {
        false
    }

    /// Nothing sent yet: none (so the first POST reads as a create). Otherwise what
    /// [`SentLog::drift`] says.
    async fn find(
        &self,
        _client: &SignalsClient,
        obj: &SignalsConversionEvent,
        refs: &Resolved,
    ) -> Result<Option<Observed>, Failure> {
        let want = desired(obj, refs)?;
        let drift = self.sent.drift(obj, &want);
        let sent_before = drift != Drift::Differs || self.wrote_upstream(obj);
        Ok(sent_before.then(|| observation(want, drift)))
    }

    async fn create(
        &self,
        client: &SignalsClient,
        obj: &SignalsConversionEvent,
        refs: &Resolved,
    ) -> Result<Observed, Failure> {
        let want = desired(obj, refs)?;
        self.update(client, obj, refs, &observation(want, Drift::Differs))
            .await
    }

    /// Sends the conversion; a change is first checked against the app's event types, so an
    /// unknown type is named with the ones the app offers.
    async fn update(
        &self,
        client: &SignalsClient,
        obj: &SignalsConversionEvent,
        refs: &Resolved,
        observed: &Observed,
    ) -> Result<Observed, Failure> {
        let want = desired(obj, refs)?;
        if observed.drift == Drift::Differs {
            let offered = client.list_event_types().await?;
            if !offered.iter().any(|t| t.value == want.event_type) {
                let names: Vec<&str> = offered.iter().map(|t| t.value.as_str()).collect();
                return Err(Failure::terminal(
                    Reason::UpstreamRejected,
                    format!(
                        "type {:?} is not an event type of Signals app {:?}; it offers: {}",
                        want.event_type,
                        obj.spec.app_id,
                        names.join(", ")
                    ),
                ));
            }
        }
        client
            .set_converted_event(&ConvertedEvent {
                campaign_id: obj.spec.campaign_id.clone(),
                event_type: want.event_type.clone(),
                type_id: want.type_id.clone(),
                type_value: want.type_value.clone(),
            })
            .await?;
        if observed.drift == Drift::Differs {
            self.sent.remember(obj, &want);
        }
        Ok(observation(want, observed.drift))
    }

    /// Never called: `can_delete` is false.
    async fn delete(
        &self,
        _client: &SignalsClient,
        _obj: &SignalsConversionEvent,
        _refs: &Resolved,
        _id: Option<&str>,
    ) -> Result<(), Failure> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conversion(with_status: bool) -> SignalsConversionEvent {
        let mut o: SignalsConversionEvent = serde_json::from_value(serde_json::json!({
            "apiVersion": "ctwa.dev/v1alpha1", "kind": "SignalsConversionEvent",
            "metadata": {"name": "c", "namespace": "n", "generation": 1},
            "spec": {"clientId": "c", "appId": "a", "campaignId": "camp", "type": "conversation",
                     "secretRef": {"name": "s"}}
        }))
        .unwrap();
        if with_status {
            let mut status = SignalsConversionEventStatus {
                applied: Some(want()),
                ..Default::default()
            };
            status.common.observed_generation = Some(1);
            o.status = Some(status);
        }
        o
    }

    fn want() -> AppliedConversion {
        AppliedConversion {
            event_type: "conversation".into(),
            type_id: None,
            type_value: None,
        }
    }

    #[test]
    fn what_was_just_sent_is_not_sent_again_whatever_the_cache_shows() {
        let adapter = SentLog::default();
        assert_eq!(adapter.drift(&conversion(false), &want()), Drift::Differs);
        assert_eq!(adapter.drift(&conversion(true), &want()), Drift::Unknown);
        adapter.remember(&conversion(false), &want());
        // A reconcile queued during the POST, with the cache before or after the status write.
        assert_eq!(adapter.drift(&conversion(false), &want()), Drift::None);
        assert_eq!(adapter.drift(&conversion(true), &want()), Drift::None);
        // Something else is still a change.
        let other = AppliedConversion {
            event_type: "engagement".into(),
            ..want()
        };
        assert_eq!(adapter.drift(&conversion(true), &other), Drift::Differs);
    }
}
