//! When write-only upstream objects were last asserted.
//!
//! An upstream object that cannot be read back (`Drift::Unknown`: Hub tracking, a campaign's
//! conversion) is asserted again once per resync. Reconciles come far more often than that —
//! the status write of the sync itself, a Secret's rotation, a referenced keyword becoming
//! Ready — and none of them is a reason to write upstream again. So the assertion is due
//! only when the last one is a resync interval old: by this process's memory, else (after a
//! restart) by the status's `lastSyncTime`, so that a restart does not re-send everything.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::resource::Managed;

/// A resync is jittered ±10 %: one that comes early is still due.
const EARLY: f64 = 0.85;

#[derive(Default)]
pub struct Assertions(Mutex<HashMap<String, Asserted>>);

struct Asserted {
    generation: Option<i64>,
    at: Instant,
}

impl Assertions {
    /// `obj` (under `key`) was just made to match upstream.
    pub fn record<K: Managed>(&self, key: &str, obj: &K) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).insert(
            key.to_string(),
            Asserted {
                generation: obj.meta().generation,
                at: Instant::now(),
            },
        );
    }

    pub fn forget(&self, key: &str) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
    }

    /// Whether `obj`'s upstream object is to be asserted again now. A `lastSyncTime` in the
    /// future (a skewed clock) counts as due: one write too many loses nothing.
    pub fn due<K: Managed>(&self, key: &str, obj: &K, resync: Duration) -> bool {
        let threshold = resync.mul_f64(EARLY);
        let remembered = self
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .filter(|a| a.generation == obj.meta().generation)
            .map(|a| a.at.elapsed());
        if let Some(elapsed) = remembered {
            return elapsed >= threshold;
        }
        let Some(last) = obj.common_status().and_then(|s| s.last_sync_time.as_ref()) else {
            return true;
        };
        let age = jiff::Timestamp::now().duration_since(last.0);
        match Duration::try_from(age) {
            Ok(age) => age >= threshold,
            Err(_) => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;
    use crate::api::{CtwaTracking, CtwaTrackingStatus};

    fn tracking(generation: i64, last_sync_ago: Option<i64>) -> CtwaTracking {
        let mut t: CtwaTracking = serde_json::from_value(serde_json::json!({
            "apiVersion": "ctwa.dev/v1alpha1", "kind": "CtwaTracking",
            "metadata": {"name": "t", "namespace": "n", "generation": generation},
            "spec": {"partnerId": "p", "clientId": "c", "channelId": "ch", "enabled": true,
                     "secretRef": {"name": "s"}}
        }))
        .unwrap();
        let mut status = CtwaTrackingStatus::default();
        status.common.last_sync_time = last_sync_ago
            .map(|secs| Time(jiff::Timestamp::now() - jiff::SignedDuration::from_secs(secs)));
        t.status = Some(status);
        t
    }

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn an_assertion_is_due_once_per_resync() {
        let a = Assertions::default();
        let fresh = tracking(1, Some(10));
        assert!(!a.due("n/t", &fresh, HOUR), "synced 10 s ago");
        assert!(a.due("n/t", &tracking(1, Some(3_300)), HOUR), "55 min ago");
        assert!(a.due("n/t", &tracking(1, None), HOUR), "never synced");
        assert!(
            a.due("n/t", &tracking(1, Some(-600)), HOUR),
            "a clock ahead"
        );

        // This process's memory wins over an old lastSyncTime (quiet assertions write none)...
        let old = tracking(1, Some(7_200));
        a.record("n/t", &old);
        assert!(!a.due("n/t", &old, HOUR));
        assert!(a.due("n/t", &old, Duration::ZERO));
        // ...for the generation it saw only.
        assert!(a.due("n/t", &tracking(2, Some(7_200)), HOUR));
        a.forget("n/t");
        assert!(a.due("n/t", &old, HOUR));
    }
}
