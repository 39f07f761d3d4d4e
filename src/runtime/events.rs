//! Kubernetes Events, published through kube's `Recorder` spread over several of them.
//!
//! A `Recorder` remembers every Event it published in the last six minutes (to count a repeat
//! into the first one's series) and sweeps that whole memory on every publish. One recorder
//! for a kind made a burst of 10,000 objects quadratic: a quarter of the operator's CPU went to
//! the sweeps (BENCHMARKS.md section 7). The Events of one object always go through the same
//! recorder, so repeats are still counted, and each sweeps only its share.

use std::hash::BuildHasher;
use std::sync::Arc;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, Recorder, Reporter};

/// Enough that a share stays small with tens of thousands of objects; each costs a few
/// hundred bytes.
const RECORDERS: usize = 256;

#[derive(Clone)]
pub struct Events {
    recorders: Arc<[Recorder]>,
}

impl Events {
    pub fn new(client: &kube::Client) -> Self {
        let recorders = (0..RECORDERS)
            .map(|_| Recorder::new(client.clone(), Reporter::from("ctwa-operator")))
            .collect();
        Events { recorders }
    }

    /// Publishes `event` about the object `regarding` (a repeat within six minutes becomes a
    /// series on the first one).
    pub async fn publish(
        &self,
        event: &Event,
        regarding: &ObjectReference,
    ) -> Result<(), kube::Error> {
        self.recorders[share(regarding)]
            .publish(event, regarding)
            .await
    }
}

/// The recorder of `regarding`, fixed by its namespace and name.
fn share(regarding: &ObjectReference) -> usize {
    let hash =
        foldhash::fast::FixedState::default().hash_one((&regarding.namespace, &regarding.name));
    (hash % RECORDERS as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(namespace: &str, name: &str) -> ObjectReference {
        ObjectReference {
            namespace: Some(namespace.into()),
            name: Some(name.into()),
            ..Default::default()
        }
    }

    #[test]
    fn one_object_keeps_its_recorder_and_many_spread_over_all() {
        assert_eq!(share(&object("a", "k1")), share(&object("a", "k1")));
        let mut counts = [0usize; RECORDERS];
        for i in 0..RECORDERS * 40 {
            counts[share(&object("shop", &format!("k{i:05}")))] += 1;
        }
        // No recorder carries more than twice its fair share of a burst.
        assert!(counts.iter().all(|&n| n > 0 && n <= 80), "{counts:?}");
    }
}
