//! What an object's references resolve to, read once before its adapter runs: the keyword id
//! of a referenced SignalsKeyword, the postback endpoint of a referenced ConversionBridge.

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::Api;

use super::external::{BridgeEndpoint, Resolved};
use super::resource::{Managed, Reference};
use crate::api::{ConversionBridge, SignalsKeyword, postback_token_secret};
use crate::runtime::conditions::{Reason, is_ready};
use crate::runtime::failure::Failure;
use crate::upstream::secret::SecretString;

/// Resolves every reference of `obj`; a reference that is not ready yet is `Waiting`.
pub async fn resolve<K: Managed>(kube: &kube::Client, obj: &K) -> Result<Resolved, Failure> {
    let namespace = obj.namespace().unwrap_or_default();
    let mut resolved = Resolved::default();
    for reference in obj.references() {
        match reference {
            Reference::Keyword(name) => {
                resolved.keyword_id = Some(keyword_id(kube, &namespace, &name).await?);
            }
            Reference::Bridge(name) => {
                resolved.bridge = Some(bridge_endpoint(kube, &namespace, &name).await?);
            }
        }
    }
    Ok(resolved)
}

fn waiting(message: String) -> Failure {
    Failure::Waiting {
        reason: Reason::DependencyNotReady,
        message,
    }
}

fn unavailable(what: String, e: kube::Error) -> Failure {
    Failure::Transient {
        reason: Reason::UpstreamUnavailable,
        message: format!("reading {what}: {e}"),
        retry_after: None,
    }
}

/// The `keywordId` of the SignalsKeyword once it is Ready.
async fn keyword_id(kube: &kube::Client, namespace: &str, name: &str) -> Result<String, Failure> {
    let keywords: Api<SignalsKeyword> = Api::namespaced(kube.clone(), namespace);
    let keyword = keywords
        .get_opt(name)
        .await
        .map_err(|e| unavailable(format!("SignalsKeyword {name:?}"), e))?;
    keyword
        .and_then(|k| k.status)
        .filter(|s| is_ready(&s.common.conditions))
        .and_then(|s| s.keyword_id)
        .ok_or_else(|| waiting(format!("SignalsKeyword {name:?} is not Ready yet")))
}

/// The bridge's endpoint, once the bridge takes postbacks and its token exists.
async fn bridge_endpoint(
    kube: &kube::Client,
    namespace: &str,
    name: &str,
) -> Result<BridgeEndpoint, Failure> {
    let what = || format!("ConversionBridge {name:?}");
    let bridges: Api<ConversionBridge> = Api::namespaced(kube.clone(), namespace);
    match bridges
        .get_opt(name)
        .await
        .map_err(|e| unavailable(what(), e))?
    {
        None => return Err(waiting(format!("ConversionBridge {name:?} not found"))),
        Some(b) if !b.spec.source.postbacks.enabled => {
            return Err(waiting(format!(
                "ConversionBridge {name:?} does not take postbacks (spec.source.postbacks.enabled is false)"
            )));
        }
        Some(_) => {}
    }
    let secrets: Api<Secret> = Api::namespaced(kube.clone(), namespace);
    let token = secrets
        .get_opt(&postback_token_secret(name))
        .await
        .map_err(|e| unavailable(what(), e))?
        .and_then(|s| crate::upstream::clients::secret_data(&s).remove("token"))
        .and_then(|t| String::from_utf8(t).ok())
        .filter(|t| !t.is_empty());
    let Some(token) = token else {
        return Err(waiting(format!(
            "the postback token of ConversionBridge {name:?} does not exist yet"
        )));
    };
    Ok(BridgeEndpoint {
        namespace: namespace.to_string(),
        name: name.to_string(),
        token: SecretString::new(token),
    })
}
