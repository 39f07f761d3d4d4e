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
use std::sync::{Arc, Mutex};
use std::time::Instant;

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

/// The copy of a Secret read last.
struct Copy {
    secret: Secret,
    /// When the read that found it (or found it gone) began.
    read_at: Instant,
    gone: bool,
}

pub struct Credentials {
    /// The controller's cache of Secret metadata.
    watched: Store<PartialObjectMeta<Secret>>,
    last_read: Mutex<HashMap<Key, Copy>>,
    /// One read of a Secret at a time: the reconciles that miss together (a thousand new
    /// objects on one Secret, a restart before the watch has listed) share one GET.
    reading: Mutex<HashMap<Key, Arc<tokio::sync::Mutex<()>>>>,
}

fn locked<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl Credentials {
    pub fn new(watched: Store<PartialObjectMeta<Secret>>) -> Self {
        Credentials {
            watched,
            last_read: Mutex::default(),
            reading: Mutex::default(),
        }
    }

    /// The copy read last, when the watch shows the Secret unchanged since.
    fn unchanged(&self, key: &Key) -> Option<Secret> {
        let (namespace, name) = key;
        let watched = self.watched.get(&ObjectRef::new(name).within(namespace))?;
        let version = watched.metadata.resource_version.as_deref()?;
        let last = locked(&self.last_read);
        let copy = last.get(key).filter(|copy| !copy.gone)?;
        (copy.secret.metadata.resource_version.as_deref() == Some(version))
            .then(|| copy.secret.clone())
    }

    /// What a read that began at or after `asked` found: as fresh as a read of one's own.
    fn read_since(&self, key: &Key, asked: Instant) -> Option<Found> {
        let last = locked(&self.last_read);
        let copy = last.get(key).filter(|copy| copy.read_at >= asked)?;
        let secret = copy.secret.clone();
        Some(if copy.gone {
            Found::Remembered(secret)
        } else {
            Found::Live(secret)
        })
    }

    /// Reads `namespace/name`, remembering what it finds.
    pub async fn read(
        &self,
        client: &kube::Client,
        namespace: &str,
        name: &str,
    ) -> Result<Found, kube::Error> {
        let asked = Instant::now();
        let key = (namespace.to_string(), name.to_string());
        if let Some(secret) = self.unchanged(&key) {
            return Ok(Found::Live(secret));
        }
        let gate = locked(&self.reading)
            .entry(key.clone())
            .or_default()
            .clone();
        let _turn = gate.lock().await;
        if let Some(found) = self.read_since(&key, asked) {
            return Ok(found);
        }
        let read_at = Instant::now();
        let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
        let live = api.get_opt(name).await?;
        let mut last = locked(&self.last_read);
        Ok(match live {
            Some(secret) => {
                let copy = Copy {
                    secret: secret.clone(),
                    read_at,
                    gone: false,
                };
                last.insert(key, copy);
                Found::Live(secret)
            }
            None => match last.get_mut(&key) {
                Some(copy) => {
                    copy.read_at = read_at;
                    copy.gone = true;
                    Found::Remembered(copy.secret.clone())
                }
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
        let copy = Copy {
            secret: secret("7", "old"),
            read_at: Instant::now(),
            gone: false,
        };
        locked(&credentials.last_read).insert(key.clone(), copy);
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
