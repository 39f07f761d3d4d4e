//! SignalsPostback ↔ an instant-postback URL in Signals.
//!
//! The URL may carry a token, so it is handled as a secret: status shows only its SHA-256.

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::Api;
use serde_json::{Map, json};

use super::DialogUpstream;
use crate::api::{PostbackEvent, SignalsKeyword, SignalsPostback};
use crate::bridge::identity::sha256_hex;
use crate::reconcile::conditions::Reason;
use crate::reconcile::external::{ExternalResource, Observation};
use crate::reconcile::failure::Failure;
use crate::upstream::secret::SecretString;
use crate::upstream::signals::{PostbackTarget, SignalsClient};

pub struct SignalsPostbackAdapter {
    pub upstream: DialogUpstream,
    pub kube: kube::Client,
}

/// A client plus what the spec resolves to: the target and the URL.
pub struct Resolved {
    client: SignalsClient,
    keyword_id: Option<String>,
    target: PostbackTarget,
    url: SecretString,
}

impl SignalsPostbackAdapter {
    /// The keyword id in force: `keywordId`, or the `keywordId` of the referenced
    /// SignalsKeyword once it is Ready.
    async fn keyword_id(&self, obj: &SignalsPostback) -> Result<Option<String>, Failure> {
        if obj.spec.event != PostbackEvent::Keyword {
            return Ok(None);
        }
        if let Some(id) = &obj.spec.keyword_id {
            return Ok(Some(id.clone()));
        }
        let Some(reference) = &obj.spec.keyword_ref else {
            return Err(Failure::terminal(
                Reason::UpstreamRejected,
                "event Keyword needs keywordRef or keywordId",
            ));
        };
        let keywords: Api<SignalsKeyword> =
            Api::namespaced(self.kube.clone(), &obj.namespace().unwrap_or_default());
        let keyword = keywords
            .get_opt(&reference.name)
            .await
            .map_err(|e| Failure::Transient {
                reason: Reason::UpstreamUnavailable,
                message: format!("reading SignalsKeyword {:?}: {e}", reference.name),
                retry_after: None,
            })?;
        let ready_id = keyword.and_then(|k| {
            let status = k.status?;
            let ready = status
                .common
                .conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            ready.then_some(status.keyword_id).flatten()
        });
        match ready_id {
            Some(id) => Ok(Some(id)),
            None => Err(Failure::Waiting {
                reason: Reason::DependencyNotReady,
                message: format!("SignalsKeyword {:?} is not Ready yet", reference.name),
            }),
        }
    }
}

fn target(obj: &SignalsPostback, keyword_id: Option<&str>) -> PostbackTarget {
    let ad = obj.spec.ad_id.clone();
    match (obj.spec.event, keyword_id) {
        (PostbackEvent::Keyword, Some(id)) => PostbackTarget::Keyword {
            ad,
            keyword_id: id.into(),
        },
        (PostbackEvent::SessionStart, _) => PostbackTarget::SessionStart { ad },
        _ => PostbackTarget::Ad { ad },
    }
}

fn observation(r: &Resolved, upstream: Option<&SecretString>) -> Observation {
    let want = sha256_hex(r.url.expose());
    let have = upstream.map(|u| sha256_hex(u.expose()));
    let mut status = Map::new();
    status.insert("keywordId".into(), json!(r.keyword_id));
    status.insert("urlSha256".into(), json!(want));
    status.insert(
        "observed".into(),
        json!({"urlSet": have.is_some(), "urlSha256": have}),
    );
    Observation {
        exists: upstream.is_some(),
        up_to_date: have.as_deref() == Some(want.as_str()),
        external_id: None,
        status,
        upstream: serde_json::Value::Null,
    }
}

impl ExternalResource<SignalsPostback> for SignalsPostbackAdapter {
    type Client = SignalsClient;

    fn connect(&self, obj: &SignalsPostback, secret: &Secret) -> Result<SignalsClient, Failure> {
        self.upstream
            .signals_client(&obj.spec.client_id, &obj.spec.app_id, secret)
    }

    async fn observe(
        &self,
        client: &SignalsClient,
        obj: &SignalsPostback,
    ) -> Result<Observation, Failure> {
        let r = self.resolve(client, obj).await?;
        let upstream = r.client.get_postback(&r.target).await?;
        Ok(observation(&r, upstream.as_ref()))
    }

    async fn create(
        &self,
        client: &SignalsClient,
        obj: &SignalsPostback,
    ) -> Result<Observation, Failure> {
        self.update(client, obj, &Observation::default()).await
    }

    async fn update(
        &self,
        client: &SignalsClient,
        obj: &SignalsPostback,
        _observed: &Observation,
    ) -> Result<Observation, Failure> {
        let r = self.resolve(client, obj).await?;
        r.client.set_postback(&r.target, Some(&r.url)).await?;
        Ok(observation(&r, Some(&r.url)))
    }

    /// Clears the URL of the target in force (by the keyword id recorded in status when the
    /// referenced keyword is gone).
    async fn delete(&self, client: &SignalsClient, obj: &SignalsPostback) -> Result<(), Failure> {
        let keyword_id = match self.keyword_id(obj).await {
            Ok(id) => id,
            Err(_) => obj.status.as_ref().and_then(|s| s.keyword_id.clone()),
        };
        if obj.spec.event == PostbackEvent::Keyword && keyword_id.is_none() {
            return Ok(());
        }
        super::gone_is_ok(
            client
                .set_postback(&target(obj, keyword_id.as_deref()), None)
                .await,
        )
    }
}

impl SignalsPostbackAdapter {
    async fn resolve(
        &self,
        client: &SignalsClient,
        obj: &SignalsPostback,
    ) -> Result<Resolved, Failure> {
        let keyword_id = self.keyword_id(obj).await?;
        let url = match (&obj.spec.url, &obj.spec.bridge_ref) {
            (Some(url), _) => SecretString::new(url.clone()),
            (None, Some(bridge)) => {
                // The bridge's receiver URL needs the ConversionBridge controller.
                return Err(Failure::Waiting {
                    reason: Reason::DependencyNotReady,
                    message: format!(
                        "ConversionBridge {:?}: bridge postback URLs are not served by this version",
                        bridge.name
                    ),
                });
            }
            (None, None) => {
                return Err(Failure::terminal(
                    Reason::UpstreamRejected,
                    "exactly one of url or bridgeRef must be set",
                ));
            }
        };
        Ok(Resolved {
            client: client.clone(),
            target: target(obj, keyword_id.as_deref()),
            keyword_id,
            url,
        })
    }
}
