//! What the generic reconciler needs to know about a managed kind, implemented once per kind.

use std::time::Duration;

use k8s_openapi::NamespaceResourceScope;
use kube::Resource;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::api::{
    CommonStatus, CtwaTracking, CtwaTrackingStatus, DeletionPolicy, EXTERNAL_ID_ANNOTATION,
    ManagementPolicy, PAUSED_ANNOTATION, PostbackEvent, RESYNC_INTERVAL_ANNOTATION,
    SignalsConversionEvent, SignalsConversionEventStatus, SignalsKeyword, SignalsKeywordStatus,
    SignalsPostback, SignalsPostbackStatus, XWebEventTag, XWebEventTagStatus,
};

/// The resync of kinds whose upstream cannot be read back (the Hub's tracking switch, a
/// campaign's conversion): each resync is a write, so once an hour is enough.
pub const WRITE_ONLY_RESYNC: Duration = Duration::from_secs(3600);

/// The least drift-check interval an annotation can ask for (SPEC 7.1).
pub const RESYNC_FLOOR: Duration = Duration::from_secs(10);

/// A kind's typed status: the common part the reconciler writes, plus the kind's own fields
/// that its adapter fills.
pub trait KindStatus:
    Serialize + DeserializeOwned + Default + Clone + std::fmt::Debug + Send + Sync + 'static
{
    fn common(&self) -> &CommonStatus;
    fn common_mut(&mut self) -> &mut CommonStatus;
}

/// Another object of this operator that an object depends on, in its own namespace. The
/// generic reconciler resolves it before the adapter runs and reconciles the object again
/// when it changes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reference {
    /// A SignalsKeyword, for its keyword id once Ready.
    Keyword(String),
    /// A ConversionBridge, for its postback endpoint and token.
    Bridge(String),
}

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
    type Status: KindStatus;

    /// The Secret (same namespace) with the upstream credentials.
    fn secret_name(&self) -> &str;
    fn deletion_policy(&self) -> DeletionPolicy;
    fn management_policy(&self) -> ManagementPolicy {
        ManagementPolicy::Manage
    }
    /// The status, if one was written yet.
    fn status(&self) -> Option<&Self::Status>;
    /// The common part of the status, if a status was written yet.
    fn common_status(&self) -> Option<&CommonStatus> {
        self.status().map(KindStatus::common)
    }
    /// The objects this one depends on.
    fn references(&self) -> Vec<Reference> {
        Vec::new()
    }
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

    /// The drift-check interval, and what is wrong with the `ctwa.dev/resync-interval`
    /// annotation if it cannot be used as written: an unparsable value gives the global
    /// interval, one below [`RESYNC_FLOOR`] is raised to it. Neither fails the object; the
    /// reconciler reports the problem in an Event.
    fn resync_interval(&self, global: Duration) -> (Duration, Option<String>) {
        let Some(text) = annotation(self, RESYNC_INTERVAL_ANNOTATION) else {
            return (Self::default_resync(global), None);
        };
        match crate::runtime::duration::parse_duration(text) {
            Ok(d) if d < RESYNC_FLOOR => (
                RESYNC_FLOOR,
                Some(format!(
                    "{RESYNC_INTERVAL_ANNOTATION} {text:?} is below the floor of 10s: using 10s"
                )),
            ),
            Ok(d) => (d, None),
            // SPEC 7.1: the global interval, whatever the kind's own default.
            Err(e) => (
                global,
                Some(format!(
                    "{RESYNC_INTERVAL_ANNOTATION}: {e}; using the global --resync-interval ({}s)",
                    global.as_secs()
                )),
            ),
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
    type Status = CtwaTrackingStatus;
    fn secret_name(&self) -> &str {
        &self.spec.secret_ref.name
    }
    fn deletion_policy(&self) -> DeletionPolicy {
        self.spec.deletion_policy
    }
    fn status(&self) -> Option<&CtwaTrackingStatus> {
        self.status.as_ref()
    }
    fn default_resync(_global: Duration) -> Duration {
        WRITE_ONLY_RESYNC
    }
}

impl Managed for SignalsConversionEvent {
    type Status = SignalsConversionEventStatus;
    fn secret_name(&self) -> &str {
        &self.spec.secret_ref.name
    }
    fn deletion_policy(&self) -> DeletionPolicy {
        self.spec.deletion_policy
    }
    fn status(&self) -> Option<&SignalsConversionEventStatus> {
        self.status.as_ref()
    }
    /// Follows its keyword (keywordRef).
    fn references(&self) -> Vec<Reference> {
        self.spec
            .keyword_ref
            .iter()
            .map(|r| Reference::Keyword(r.name.clone()))
            .collect()
    }
    fn default_resync(_global: Duration) -> Duration {
        WRITE_ONLY_RESYNC
    }
}

/// The kinds with a `managementPolicy` share every accessor.
macro_rules! managed_with_policy {
    ($($kind:ty : $status:ty $(=> $extra:ident)?),*) => {$(
        impl Managed for $kind {
            type Status = $status;
            fn secret_name(&self) -> &str {
                &self.spec.secret_ref.name
            }
            $(fn references(&self) -> Vec<Reference> {
                $extra(self)
            })?
            fn deletion_policy(&self) -> DeletionPolicy {
                self.spec.deletion_policy
            }
            fn management_policy(&self) -> ManagementPolicy {
                self.spec.management_policy
            }
            fn status(&self) -> Option<&$status> {
                self.status.as_ref()
            }
        }
    )*};
}

managed_with_policy!(
    SignalsKeyword: SignalsKeywordStatus,
    SignalsPostback: SignalsPostbackStatus => postback_references,
    XWebEventTag: XWebEventTagStatus
);

/// A postback follows its keyword (event Keyword with keywordRef) and its bridge.
fn postback_references(postback: &SignalsPostback) -> Vec<Reference> {
    let spec = &postback.spec;
    let keyword = spec
        .keyword_ref
        .as_ref()
        .filter(|_| spec.event == PostbackEvent::Keyword)
        .map(|r| Reference::Keyword(r.name.clone()));
    let bridge = spec
        .bridge_ref
        .as_ref()
        .filter(|_| spec.url.is_none())
        .map(|r| Reference::Bridge(r.name.clone()));
    keyword.into_iter().chain(bridge).collect()
}

/// Every kind's status carries the common part flattened.
macro_rules! kind_status {
    ($($status:ty),*) => {$(
        impl KindStatus for $status {
            fn common(&self) -> &CommonStatus {
                &self.common
            }
            fn common_mut(&mut self) -> &mut CommonStatus {
                &mut self.common
            }
        }
    )*};
}

kind_status!(
    CtwaTrackingStatus,
    SignalsConversionEventStatus,
    SignalsKeywordStatus,
    SignalsPostbackStatus,
    XWebEventTagStatus
);

/// Whether a change of the Secret `name` (same namespace) concerns `obj`: its credentials, or
/// the token Secret of a bridge it references.
pub fn uses_secret<K: Managed>(obj: &K, name: &str) -> bool {
    obj.secret_name() == name
        || obj.references().iter().any(
            |r| matches!(r, Reference::Bridge(b) if crate::api::postback_token_secret(b) == name),
        )
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
        assert_eq!(kw.resync_interval(global), (global, None));
        let with = |kw: &mut SignalsKeyword, v: &str| {
            kw.metadata.annotations =
                Some([(RESYNC_INTERVAL_ANNOTATION.to_string(), v.to_string())].into());
        };
        with(&mut kw, "15s");
        assert_eq!(kw.resync_interval(global), (Duration::from_secs(15), None));
        for short in ["1ms", "5s", "9999ms"] {
            with(&mut kw, short);
            let (d, problem) = kw.resync_interval(global);
            assert_eq!(d, RESYNC_FLOOR, "{short}");
            assert!(problem.unwrap().contains("floor"), "{short}");
        }
        with(&mut kw, "soon");
        let (d, problem) = kw.resync_interval(global);
        assert_eq!(d, global);
        assert!(problem.unwrap().contains("not a duration like 90s"));
        with(&mut kw, "0s");
        assert_eq!(kw.resync_interval(global).0, global);
        assert_eq!(CtwaTracking::default_resync(global), WRITE_ONLY_RESYNC);
        assert!(!kw.is_paused());
    }
}
