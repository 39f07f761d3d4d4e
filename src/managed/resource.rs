//! What the generic reconciler needs to know about a managed kind, implemented once per kind.

use std::time::Duration;

use k8s_openapi::NamespaceResourceScope;
use kube::Resource;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::api::{
    CommonStatus, CtwaTracking, DeletionPolicy, EXTERNAL_ID_ANNOTATION, ManagementPolicy,
    PAUSED_ANNOTATION, RESYNC_INTERVAL_ANNOTATION, SignalsKeyword, SignalsPostback, XWebEventTag,
};

/// A custom resource the generic reconciler can drive.
pub trait Managed:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + std::fmt::Debug
    + Serialize
    + DeserializeOwned
    + Send
    + Sync
    + 'static
{
    /// The Secret (same namespace) with the upstream credentials.
    fn secret_name(&self) -> &str;
    /// Whether a change of the Secret `name` (same namespace) concerns this object.
    fn uses_secret(&self, name: &str) -> bool {
        self.secret_name() == name
    }
    fn deletion_policy(&self) -> DeletionPolicy;
    fn management_policy(&self) -> ManagementPolicy {
        ManagementPolicy::Manage
    }
    /// The common part of the status, if a status was written yet.
    fn common_status(&self) -> Option<&CommonStatus>;
    /// How often upstream is re-read when nothing happens, unless the object overrides it.
    fn default_resync(global: Duration) -> Duration {
        global
    }
}

/// Accessors shared by every managed kind, derived from metadata.
pub trait ManagedExt: Managed {
    fn is_paused(&self) -> bool {
        annotation(self, PAUSED_ANNOTATION) == Some("true")
    }

    /// The upstream id the user or the operator recorded in `ctwa.dev/external-id`.
    fn external_id(&self) -> Option<&str> {
        annotation(self, EXTERNAL_ID_ANNOTATION).filter(|id| !id.is_empty())
    }

    /// The drift-check interval: the `ctwa.dev/resync-interval` annotation when it parses,
    /// else the kind's default. An unparsable annotation falls back rather than failing the
    /// object; the reconciler reports it in an Event.
    fn resync_interval(&self, global: Duration) -> Result<Duration, String> {
        match annotation(self, RESYNC_INTERVAL_ANNOTATION) {
            None => Ok(Self::default_resync(global)),
            Some(text) => crate::runtime::duration::parse_duration(text),
        }
    }
}

impl<T: Managed> ManagedExt for T {}

fn annotation<'a, K: Resource>(obj: &'a K, key: &str) -> Option<&'a str> {
    obj.meta()
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

impl Managed for CtwaTracking {
    fn secret_name(&self) -> &str {
        &self.spec.secret_ref.name
    }
    fn deletion_policy(&self) -> DeletionPolicy {
        self.spec.deletion_policy
    }
    fn common_status(&self) -> Option<&CommonStatus> {
        self.status.as_ref().map(|s| &s.common)
    }
    /// The Hub has no read endpoint, so each resync is a write: once an hour is enough.
    fn default_resync(_global: Duration) -> Duration {
        Duration::from_secs(3600)
    }
}

/// The kinds with a `managementPolicy` share every accessor.
macro_rules! managed_with_policy {
    ($($kind:ty $(=> uses_secret: $uses:path)?),*) => {$(
        impl Managed for $kind {
            fn secret_name(&self) -> &str {
                &self.spec.secret_ref.name
            }
            $(fn uses_secret(&self, name: &str) -> bool {
                $uses(self, name)
            })?
            fn deletion_policy(&self) -> DeletionPolicy {
                self.spec.deletion_policy
            }
            fn management_policy(&self) -> ManagementPolicy {
                self.spec.management_policy
            }
            fn common_status(&self) -> Option<&CommonStatus> {
                self.status.as_ref().map(|s| &s.common)
            }
        }
    )*};
}

managed_with_policy!(
    SignalsKeyword,
    SignalsPostback => uses_secret: postback_uses_secret,
    XWebEventTag
);

/// A postback to a bridge carries the bridge's token: it follows the token Secret too.
fn postback_uses_secret(postback: &SignalsPostback, name: &str) -> bool {
    postback.spec.secret_ref.name == name
        || postback
            .spec
            .bridge_ref
            .as_ref()
            .is_some_and(|b| crate::api::postback_token_secret(&b.name) == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resync_annotation_overrides_the_default() {
        let mut kw: SignalsKeyword = serde_json::from_value(serde_json::json!({
            "apiVersion": "ctwa.dev/v1alpha1", "kind": "SignalsKeyword",
            "metadata": {"name": "k", "namespace": "n"},
            "spec": {"clientId": "c", "appId": "a", "keyword": "k", "secretRef": {"name": "s"}}
        }))
        .unwrap();
        let global = Duration::from_secs(600);
        assert_eq!(kw.resync_interval(global).unwrap(), global);
        kw.metadata.annotations =
            Some([(RESYNC_INTERVAL_ANNOTATION.to_string(), "5s".to_string())].into());
        assert_eq!(kw.resync_interval(global).unwrap(), Duration::from_secs(5));
        assert_eq!(
            CtwaTracking::default_resync(global),
            Duration::from_secs(3600)
        );
        assert!(!kw.is_paused());
    }
}
