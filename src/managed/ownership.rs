//! One owner per upstream object (SPEC 7.1): among the objects of one kind, in every watched
//! namespace, that claim the same upstream object, exactly one manages it.
//!
//! The owner is the object that already holds it (it reconciled the current spec and was not
//! turned away), then the older, then the first by namespace/name. The facts come from the
//! objects themselves, so every replica and every restart elects the same owner.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use futures::channel::mpsc;
use jiff::Timestamp;
use kube::ResourceExt;
use kube::runtime::reflector::{ObjectRef, Store};

use super::resource::Managed;
use crate::api::{FINALIZER, ManagementPolicy};
use crate::runtime::conditions::{self, Reason};

/// One object's bid for upstream objects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claimant {
    /// namespace/name
    pub key: String,
    pub holds: bool,
    pub created: Option<Timestamp>,
    pub claims: Vec<String>,
}

impl Claimant {
    pub fn of<K: Managed>(obj: &K, claims: Vec<String>) -> Self {
        Claimant {
            key: object_key(obj),
            holds: holds(obj),
            created: obj.creation_timestamp().map(|t| t.0),
            claims,
        }
    }

    fn rank(&self) -> (bool, Option<Timestamp>, &str) {
        (!self.holds, self.created, &self.key)
    }

    fn competes_with(&self, other: &Claimant) -> bool {
        self.key != other.key && self.claims.iter().any(|c| other.claims.contains(c))
    }
}

/// The competitor that owns what `me` claims, or None when `me` is the owner.
pub fn owner<'a>(
    me: &Claimant,
    others: impl IntoIterator<Item = &'a Claimant>,
) -> Option<&'a Claimant> {
    others
        .into_iter()
        .filter(|o| o.competes_with(me))
        .filter(|o| o.rank() < me.rank())
        .min_by(|a, b| a.rank().cmp(&b.rank()))
}

/// namespace/name
pub fn object_key<K: kube::Resource>(obj: &K) -> String {
    format!(
        "{}/{}",
        obj.meta().namespace.as_deref().unwrap_or(""),
        obj.meta().name.as_deref().unwrap_or("")
    )
}

/// The object manages its upstream object now: it carries the finalizer, its status
/// describes the current generation, and that status was not an `AlreadyManaged` refusal.
fn holds<K: Managed>(obj: &K) -> bool {
    let Some(status) = obj.common_status() else {
        return false;
    };
    obj.finalizers().iter().any(|f| f == FINALIZER)
        && status.observed_generation == obj.meta().generation
        && conditions::find(&status.conditions, conditions::READY)
            .is_some_and(|c| c.reason != Reason::AlreadyManaged.as_str())
}

/// Whether `obj` competes for upstream objects at all: Observe mode only reads and may share,
/// and an object whose finalizer is gone is on its way out. A paused owner stays the owner.
fn competes<K: Managed>(obj: &K) -> bool {
    let leaving =
        obj.meta().deletion_timestamp.is_some() && !obj.finalizers().iter().any(|f| f == FINALIZER);
    obj.management_policy() == ManagementPolicy::Manage && !leaving
}

/// The caches of every controller of one kind (one per watched namespace), so that ownership
/// is decided across namespaces, with a way to wake each one's objects.
pub struct Peers<K: Managed> {
    members: RwLock<Vec<Member<K>>>,
    /// Claimants by uid, with the resourceVersion they were computed for.
    claimants: Mutex<HashMap<String, (String, Arc<Claimant>)>>,
}

/// One controller's cache, and where to send the objects it should reconcile again.
type Member<K> = (Store<K>, mpsc::UnboundedSender<ObjectRef<K>>);

impl<K: Managed> Default for Peers<K> {
    fn default() -> Self {
        Self {
            members: RwLock::new(Vec::new()),
            claimants: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Managed> Peers<K> {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Adds one controller's cache; the stream yields the objects to reconcile again.
    pub fn join(&self, store: Store<K>) -> mpsc::UnboundedReceiver<ObjectRef<K>> {
        let (tx, rx) = mpsc::unbounded();
        self.members
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push((store, tx));
        rx
    }

    /// Every competing object but `obj`, each with its claimant (computed once per
    /// resourceVersion: this runs at every reconcile, over every object of the kind) and the
    /// controller whose cache holds it.
    fn competitors(
        &self,
        obj: &K,
        claims: &dyn Fn(&K) -> Vec<String>,
    ) -> Vec<(Arc<Claimant>, usize, Arc<K>)> {
        let me = object_key(obj);
        let members = self.members.read().unwrap_or_else(|e| e.into_inner());
        let mut known = self.claimants.lock().unwrap_or_else(|e| e.into_inner());
        let mut seen = 0;
        let mut found = Vec::new();
        for (i, (store, _)) in members.iter().enumerate() {
            for o in store.state() {
                seen += 1;
                if !competes(o.as_ref()) {
                    continue;
                }
                let meta = o.meta();
                let uid = meta.uid.as_deref().unwrap_or_default();
                let version = meta.resource_version.as_deref().unwrap_or_default();
                let claimant = match known.get(uid) {
                    Some((v, c)) if v == version => c.clone(),
                    _ => {
                        let c = Arc::new(Claimant::of(o.as_ref(), claims(o.as_ref())));
                        known.insert(uid.to_string(), (version.to_string(), c.clone()));
                        c
                    }
                };
                if claimant.key != me {
                    found.push((claimant, i, o));
                }
            }
        }
        // Forget objects that are gone, now and then.
        if known.len() > 2 * seen + 64 {
            let live: std::collections::HashSet<String> = members
                .iter()
                .flat_map(|(store, _)| store.state())
                .filter_map(|o| o.meta().uid.clone())
                .collect();
            known.retain(|uid, _| live.contains(uid));
        }
        found
    }

    /// The namespace/name of the object that owns what `obj` claims, if not `obj` itself.
    pub fn owner_other_than(&self, obj: &K, claims: &dyn Fn(&K) -> Vec<String>) -> Option<String> {
        let me = Claimant::of(obj, claims(obj));
        let others = self.competitors(obj, claims);
        owner(&me, others.iter().map(|(c, _, _)| c.as_ref())).map(|c| c.key.clone())
    }

    /// Wakes the objects that compete with `obj`, which is letting go of what it held.
    pub fn release(&self, obj: &K, claims: &dyn Fn(&K) -> Vec<String>) {
        let me = Claimant::of(obj, claims(obj));
        let others = self.competitors(obj, claims);
        let members = self.members.read().unwrap_or_else(|e| e.into_inner());
        for (claimant, i, other) in others {
            if claimant.competes_with(&me)
                && let Some((_, tx)) = members.get(i)
            {
                let _ = tx.unbounded_send(ObjectRef::from_obj(other.as_ref()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(key: &str, holds: bool, created: i64, claims: &[&str]) -> Claimant {
        Claimant {
            key: key.into(),
            holds,
            created: Some(Timestamp::from_second(created).unwrap()),
            claims: claims.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn the_owner_is_the_holder_then_the_older_then_the_first_name() {
        let cases: Vec<(&str, Claimant, Vec<Claimant>, Option<&str>)> = vec![
            ("alone", c("n/a", false, 10, &["k"]), vec![], None),
            (
                "no shared claim",
                c("n/a", false, 10, &["k"]),
                vec![c("n/b", true, 1, &["other"])],
                None,
            ),
            (
                "the holder wins over an older newcomer",
                c("n/old", false, 1, &["k"]),
                vec![c("n/new", true, 10, &["k"])],
                Some("n/new"),
            ),
            (
                "I hold: a newcomer does not matter",
                c("n/new", true, 10, &["k"]),
                vec![c("n/old", false, 1, &["k"])],
                None,
            ),
            (
                "two newcomers: the older",
                c("n/new", false, 10, &["k"]),
                vec![c("n/old", false, 1, &["k"])],
                Some("n/old"),
            ),
            (
                "two holders (a race): the older",
                c("n/new", true, 10, &["k"]),
                vec![c("n/old", true, 1, &["k"])],
                Some("n/old"),
            ),
            (
                "same age: the first name, across namespaces",
                c("b/x", false, 5, &["k"]),
                vec![c("a/x", false, 5, &["k"])],
                Some("a/x"),
            ),
            (
                "an id claim alone is enough",
                c("n/a", false, 10, &["text:a", "id:7"]),
                vec![c("n/b", true, 20, &["text:b", "id:7"])],
                Some("n/b"),
            ),
            (
                "the best of several",
                c("n/me", false, 30, &["k"]),
                vec![
                    c("n/x", false, 20, &["k"]),
                    c("n/y", true, 25, &["k"]),
                    c("n/z", false, 1, &["j"]),
                ],
                Some("n/y"),
            ),
        ];
        for (name, me, others, want) in cases {
            assert_eq!(
                owner(&me, others.iter()).map(|o| o.key.as_str()),
                want,
                "{name}"
            );
        }
    }
}
