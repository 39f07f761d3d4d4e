//! The credential Secrets an object uses, with the last copy read of each kept in memory.
//!
//! The copy is used again while the controller's watch of Secret metadata shows the Secret at
//! the resourceVersion it was read at: ten thousand objects on forty Secrets read forty, not a
//! Secret per reconcile. A change moves the resourceVersion, and the watch that sees it
//! reconciles the objects using the Secret, which then read it again.
//!
//! `kubectl delete namespace` deletes the Secrets together with the objects that use them,
//! often first. The remembered copy lets those objects still remove their upstream objects
//! (SPEC 7.1). It is never written anywhere; a restart forgets it.

use std::collections::HashMap;
use std::sync::Mutex;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PartialObjectMeta};
use kube::runtime::reflector::{ObjectRef, Store};

/// Where a Secret's contents came from.
pub enum Found {
    /// As the API server has it: read just now, or read earlier at the resourceVersion the
    /// watch still shows.
    Live(Secret),
    /// Gone from the API server; the copy this process read last.
    Remembered(Secret),
    /// Gone, and never read by this process.
    Missing,
}

type Key = (String, String);

pub struct Credentials {
    /// The controller's cache of Secret metadata.
    watched: Store<PartialObjectMeta<Secret>>,
    last_read: Mutex<HashMap<Key, Secret>>,
}

impl Credentials {
    pub fn new(watched: Store<PartialObjectMeta<Secret>>) -> Self {
        Credentials {
            watched,
            last_read: Mutex::default(),
        }
    }

    fn last(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Secret>> {
        self.last_read.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The copy read last, when the watch shows the Secret unchanged since.
    fn unchanged(&self, (namespace, name): &Key) -> Option<Secret> {
        let watched = self.watched.get(&ObjectRef::new(name).within(namespace))?;
        let version = watched.metadata.resource_version.as_deref()?;
        let last = self.last();
        let copy = last.get(&(namespace.clone(), name.clone()))?;
        (copy.metadata.resource_version.as_deref() == Some(version)).then(|| copy.clone())
    }

    /// Reads `namespace/name`, remembering what it finds.
    pub async fn read(
        &self,
        client: &kube::Client,
        namespace: &str,
        name: &str,
    ) -> Result<Found, kube::Error> {
        let key = (namespace.to_string(), name.to_string());
        if let Some(secret) = self.unchanged(&key) {
            return Ok(Found::Live(secret));
        }
        let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
        Ok(match api.get_opt(name).await? {
            Some(secret) => {
                self.last().insert(key, secret.clone());
                Found::Live(secret)
            }
            None => match self.last().get(&key) {
                Some(secret) => Found::Remembered(secret.clone()),
                None => Found::Missing,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::runtime::reflector::{self, store::Writer};
    use kube::runtime::watcher;

    fn secret(version: &str, password: &str) -> Secret {
        serde_json::from_value(serde_json::json!({
            "metadata": {"namespace": "shop", "name": "signals", "resourceVersion": version},
            "stringData": {"password": password}
        }))
        .unwrap()
    }

    fn watch_shows(writer: &mut Writer<PartialObjectMeta<Secret>>, version: &str) {
        let meta: PartialObjectMeta<Secret> = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "PartialObjectMetadata",
            "metadata": {"namespace": "shop", "name": "signals", "resourceVersion": version}
        }))
        .unwrap();
        writer.apply_watcher_event(&watcher::Event::Apply(meta));
    }

    #[test]
    fn a_copy_is_used_only_while_the_watch_shows_its_resource_version() {
        let (store, mut writer) = reflector::store();
        let credentials = Credentials::new(store);
        let key = ("shop".to_string(), "signals".to_string());
        // Not watched yet (the first list still under way): read.
        credentials.last().insert(key.clone(), secret("7", "old"));
        assert!(credentials.unchanged(&key).is_none());

        watch_shows(&mut writer, "7");
        let copy = credentials.unchanged(&key).expect("unchanged since read");
        assert_eq!(copy.metadata.resource_version.as_deref(), Some("7"));

        // Rotated: the watch moves on, the copy is no longer the Secret.
        watch_shows(&mut writer, "8");
        assert!(credentials.unchanged(&key).is_none());
        let other = ("shop".to_string(), "x".to_string());
        assert!(credentials.unchanged(&other).is_none());
    }
}
