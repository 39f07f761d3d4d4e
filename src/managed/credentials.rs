//! The credential Secrets an object uses, with the last copy read of each kept in memory.
//!
//! `kubectl delete namespace` deletes the Secrets together with the objects that use them,
//! often first. The remembered copy lets those objects still remove their upstream objects
//! (SPEC 7.1). It is never written anywhere; a restart forgets it.

use std::collections::HashMap;
use std::sync::Mutex;

use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;

/// Where a Secret's contents came from.
pub enum Found {
    /// Read from the API server just now.
    Live(Secret),
    /// Gone from the API server; the copy this process read last.
    Remembered(Secret),
    /// Gone, and never read by this process.
    Missing,
}

#[derive(Default)]
pub struct Credentials {
    last_read: Mutex<HashMap<(String, String), Secret>>,
}

impl Credentials {
    /// Reads `namespace/name`, remembering what it finds.
    pub async fn read(
        &self,
        client: &kube::Client,
        namespace: &str,
        name: &str,
    ) -> Result<Found, kube::Error> {
        let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
        let key = (namespace.to_string(), name.to_string());
        let last = || self.last_read.lock().unwrap_or_else(|e| e.into_inner());
        Ok(match api.get_opt(name).await? {
            Some(secret) => {
                last().insert(key, secret.clone());
                Found::Live(secret)
            }
            None => match last().get(&key) {
                Some(secret) => Found::Remembered(secret.clone()),
                None => Found::Missing,
            },
        })
    }
}
