//! SignalsPostback ↔ an instant-postback URL in Signals.
//!
//! The URL may carry a token, so it is handled as a secret: status shows only its SHA-256,
//! and that hash is how the operator recognises a URL it set (SPEC 7.1).

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;

use crate::api::{ObservedPostback, PostbackEvent, SignalsPostback, SignalsPostbackStatus};
use crate::managed::external::{Drift, ExternalResource, Observation, Resolved};
use crate::runtime::conditions::Reason;
use crate::runtime::digest::sha256_hex;
use crate::runtime::failure::Failure;
use crate::upstream::clients::DialogUpstream;
use crate::upstream::secret::SecretString;
use crate::upstream::signals::{PostbackTarget, SignalsClient};

pub struct SignalsPostbackAdapter {
    pub upstream: DialogUpstream,
    /// How Signals reaches the operator's postback receiver (`--public-base-url`).
    pub public_base_url: Option<String>,
}

/// The URL hash the upstream target holds, if any.
type Observed = Observation<Option<String>, SignalsPostbackStatus>;

/// The keyword id in force: `keywordId`, or the referenced keyword's.
fn keyword_id(obj: &SignalsPostback, refs: &Resolved) -> Option<String> {
    if obj.spec.event != PostbackEvent::Keyword {
        return None;
    }
    obj.spec
        .keyword_id
        .clone()
        .or_else(|| refs.keyword_id.clone())
}

fn target(obj: &SignalsPostback, keyword_id: Option<&str>) -> Result<PostbackTarget, Failure> {
    let ad = obj.spec.ad_id.clone();
    Ok(match (obj.spec.event, keyword_id) {
        (PostbackEvent::Keyword, Some(id)) => PostbackTarget::Keyword {
            ad,
            keyword_id: id.into(),
        },
        (PostbackEvent::Keyword, None) => {
            return Err(Failure::terminal(
                Reason::UpstreamRejected,
                "event Keyword needs keywordRef or keywordId",
            ));
        }
        (PostbackEvent::SessionStart, _) => PostbackTarget::SessionStart { ad },
        (PostbackEvent::Ad, _) => PostbackTarget::Ad { ad },
    })
}

/// The keyword id the status recorded: the target the operator last set.
fn recorded_keyword(obj: &SignalsPostback) -> Option<String> {
    obj.status.as_ref().and_then(|s| s.keyword_id.clone())
}

/// The URL hash the operator set, as the status recorded it.
fn recorded_hash(obj: &SignalsPostback) -> Option<String> {
    obj.status.as_ref().and_then(|s| s.url_sha256.clone())
}

fn observation(
    obj: &SignalsPostback,
    refs: &Resolved,
    want: &str,
    have: Option<String>,
) -> Observed {
    let keyword_id = keyword_id(obj, refs);
    // A status that still records another target means the old one may need clearing.
    let moved = obj.spec.event == PostbackEvent::Keyword
        && recorded_keyword(obj).is_some_and(|old| Some(old) != keyword_id);
    let drift = if have.as_deref() == Some(want) && !moved {
        Drift::None
    } else {
        Drift::Differs
    };
    Observation {
        external_id: None,
        drift,
        status: SignalsPostbackStatus {
            keyword_id,
            url_sha256: Some(want.to_string()),
            observed: Some(ObservedPostback {
                url_set: have.is_some(),
                url_sha256: have.clone(),
            }),
            ..Default::default()
        },
        upstream: have,
    }
}

impl SignalsPostbackAdapter {
    /// The URL in force: `url`, or the bridge's endpoint under `--public-base-url`.
    fn url(&self, obj: &SignalsPostback, refs: &Resolved) -> Result<SecretString, Failure> {
        if let Some(url) = &obj.spec.url {
            return Ok(SecretString::new(url.clone()));
        }
        let Some(bridge) = &refs.bridge else {
            return Err(Failure::terminal(
                Reason::UpstreamRejected,
                "exactly one of url or bridgeRef must be set",
            ));
        };
        let Some(base) = &self.public_base_url else {
            return Err(Failure::terminal(
                Reason::UpstreamRejected,
                "bridgeRef needs the operator's --public-base-url, which is not set",
            ));
        };
        Ok(SecretString::new(format!(
            "{}/postbacks/{}/{}/{}",
            base.trim_end_matches('/'),
            bridge.namespace,
            bridge.name,
            bridge.token.expose()
        )))
    }

    /// The hash of the URL at `target`, if one is set.
    async fn read(
        client: &SignalsClient,
        target: &PostbackTarget,
    ) -> Result<Option<String>, Failure> {
        Ok(client
            .get_postback(target)
            .await?
            .map(|u| sha256_hex(u.expose())))
    }

    /// Clears `target` if it still holds the URL the operator set there.
    async fn clear_if_ours(
        client: &SignalsClient,
        obj: &SignalsPostback,
        target: &PostbackTarget,
    ) -> Result<(), Failure> {
        let ours = recorded_hash(obj);
        if ours.is_some() && Self::read(client, target).await? == ours {
            client.set_postback(target, None).await?;
        }
        Ok(())
    }
}

impl ExternalResource<SignalsPostback> for SignalsPostbackAdapter {
    type Client = SignalsClient;
    type Upstream = Option<String>;

    fn connect(&self, obj: &SignalsPostback, secret: &Secret) -> Result<SignalsClient, Failure> {
        Ok(self
            .upstream
            .budgeted_signals_client(&obj.spec.client_id, &obj.spec.app_id, secret)?)
    }

    /// The target: client/app/ad/event, and for event Keyword the keyword id — given, as
    /// last resolved, or (not resolved yet) the referenced keyword by name.
    fn claims(&self, obj: &SignalsPostback) -> Vec<String> {
        let s = &obj.spec;
        let base = format!(
            "postback:{}/{}/{}/{:?}",
            s.client_id, s.app_id, s.ad_id, s.event
        );
        if s.event != PostbackEvent::Keyword {
            return vec![base];
        }
        let ids = s.keyword_id.iter().cloned().chain(recorded_keyword(obj));
        let by_name = s.keyword_ref.iter().map(|r| {
            format!(
                "{base}/ref:{}/{}",
                obj.namespace().unwrap_or_default(),
                r.name
            )
        });
        ids.map(|id| format!("{base}/{id}"))
            .chain(by_name)
            .collect()
    }

    /// The operator set a URL that is still recorded.
    fn wrote_upstream(&self, obj: &SignalsPostback) -> bool {
        obj.status
            .as_ref()
            .and_then(|s| s.observed.as_ref())
            .is_some_and(|o| o.url_set && o.url_sha256 == recorded_hash(obj))
    }

    async fn find(
        &self,
        client: &SignalsClient,
        obj: &SignalsPostback,
        refs: &Resolved,
    ) -> Result<Option<Observed>, Failure> {
        let want = sha256_hex(self.url(obj, refs)?.expose());
        let target = target(obj, keyword_id(obj, refs).as_deref())?;
        let have = Self::read(client, &target).await?;
        Ok(have.is_some().then(|| observation(obj, refs, &want, have)))
    }

    async fn create(
        &self,
        client: &SignalsClient,
        obj: &SignalsPostback,
        refs: &Resolved,
    ) -> Result<Observed, Failure> {
        let none = observation(obj, refs, "", None);
        self.update(client, obj, refs, &none).await
    }

    /// Sets the URL at the target in force, after clearing the target the status recorded
    /// if the spec or the referenced keyword moved away from it.
    async fn update(
        &self,
        client: &SignalsClient,
        obj: &SignalsPostback,
        refs: &Resolved,
        _observed: &Observed,
    ) -> Result<Observed, Failure> {
        let url = self.url(obj, refs)?;
        let keyword = keyword_id(obj, refs);
        let target = target(obj, keyword.as_deref())?;
        if obj.spec.event == PostbackEvent::Keyword
            && let Some(old) = recorded_keyword(obj).filter(|old| Some(old) != keyword.as_ref())
        {
            Self::clear_if_ours(client, obj, &self::target(obj, Some(&old))?).await?;
        }
        client.set_postback(&target, Some(&url)).await?;
        let want = sha256_hex(url.expose());
        let mut done = observation(obj, refs, &want, Some(want.clone()));
        done.drift = Drift::None;
        Ok(done)
    }

    /// Clears the URL at the target in force (or the one the status recorded when the
    /// referenced keyword is gone), and only if it is the URL the operator set.
    async fn delete(
        &self,
        client: &SignalsClient,
        obj: &SignalsPostback,
        refs: &Resolved,
        _id: Option<&str>,
    ) -> Result<(), Failure> {
        let keyword = keyword_id(obj, refs).or_else(|| recorded_keyword(obj));
        if obj.spec.event == PostbackEvent::Keyword && keyword.is_none() {
            return Ok(());
        }
        Self::clear_if_ours(client, obj, &target(obj, keyword.as_deref())?).await
    }
}
