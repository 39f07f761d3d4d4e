//! SignalsPostback ↔ an instant-postback URL in Signals.
//!
//! The URL may carry a token, so it is handled as a secret: status shows only its SHA-256.

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::Api;
use serde_json::{Map, json};

use super::DialogUpstream;
use crate::api::postback_token_secret;
use crate::api::{ConversionBridge, PostbackEvent, SignalsKeyword, SignalsPostback};
use crate::managed::external::{ExternalResource, Observation};
use crate::runtime::conditions::{Reason, is_ready};
use crate::runtime::digest::sha256_hex;
use crate::runtime::failure::Failure;
use crate::upstream::secret::SecretString;
use crate::upstream::signals::{PostbackTarget, SignalsClient};

pub struct SignalsPostbackAdapter {
    pub upstream: DialogUpstream,
    pub kube: kube::Client,
    /// How Signals reaches the operator's postback receiver (`--public-base-url`).
    pub public_base_url: Option<String>,
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
        let ready_id = keyword
            .and_then(|k| k.status)
            .filter(|s| is_ready(&s.common.conditions))
            .and_then(|s| s.keyword_id);
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
    /// `<public base URL>/postbacks/<namespace>/<bridge>/<token>`, once the bridge takes
    /// postbacks and its token exists.
    async fn bridge_url(
        &self,
        obj: &SignalsPostback,
        bridge: &str,
    ) -> Result<SecretString, Failure> {
        let Some(base) = &self.public_base_url else {
            return Err(Failure::terminal(
                Reason::UpstreamRejected,
                "bridgeRef needs the operator's --public-base-url, which is not set",
            ));
        };
        let namespace = obj.namespace().unwrap_or_default();
        let waiting = |message: String| Failure::Waiting {
            reason: Reason::DependencyNotReady,
            message,
        };
        let kube_error = |e: kube::Error| Failure::Transient {
            reason: Reason::UpstreamUnavailable,
            message: format!("reading ConversionBridge {bridge:?}: {e}"),
            retry_after: None,
        };
        let bridges: Api<ConversionBridge> = Api::namespaced(self.kube.clone(), &namespace);
        match bridges.get_opt(bridge).await.map_err(kube_error)? {
            None => return Err(waiting(format!("ConversionBridge {bridge:?} not found"))),
            Some(b) if !b.spec.source.postbacks.enabled => {
                return Err(waiting(format!(
                    "ConversionBridge {bridge:?} does not take postbacks (spec.source.postbacks.enabled is false)"
                )));
            }
            Some(_) => {}
        }
        let secrets: Api<Secret> = Api::namespaced(self.kube.clone(), &namespace);
        let token = secrets
            .get_opt(&postback_token_secret(bridge))
            .await
            .map_err(kube_error)?
            .and_then(|s| super::secret_data(&s).remove("token"))
            .and_then(|t| String::from_utf8(t).ok())
            .filter(|t| !t.is_empty());
        let Some(token) = token else {
            return Err(waiting(format!(
                "the postback token of ConversionBridge {bridge:?} does not exist yet"
            )));
        };
        Ok(SecretString::new(format!(
            "{}/postbacks/{namespace}/{bridge}/{token}",
            base.trim_end_matches('/')
        )))
    }

    async fn resolve(
        &self,
        client: &SignalsClient,
        obj: &SignalsPostback,
    ) -> Result<Resolved, Failure> {
        let keyword_id = self.keyword_id(obj).await?;
        let url = match (&obj.spec.url, &obj.spec.bridge_ref) {
            (Some(url), _) => SecretString::new(url.clone()),
            (None, Some(bridge)) => self.bridge_url(obj, &bridge.name).await?,
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
