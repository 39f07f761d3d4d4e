//! One owner per upstream object (SPEC 7.1): among the objects of one kind, in every watched
//! namespace, that claim the same upstream object, exactly one manages it.
//!
//! The owner is the object that already holds it (it reconciled the current spec and was not
//! turned away), then the older, then the first by namespace/name. The facts come from the
//! objects themselves, so every replica and every restart elects the same owner.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};

use futures::channel::mpsc;
use jiff::Timestamp;
use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;

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

/// The objects of one kind in every watched namespace (one controller per namespace), indexed
/// by what they claim, so that ownership is decided across namespaces at the cost of the
/// handful of objects sharing a claim, not of every object of the kind. The index follows the
/// controllers' watch events, as their caches do.
pub struct Peers<K: Managed> {
    index: Mutex<Index<K>>,
    /// Per controller: where to send the objects it should reconcile again.
    wake: RwLock<Vec<mpsc::UnboundedSender<ObjectRef<K>>>>,
}

struct Index<K: Managed> {
    /// Competing objects by uid.
    by_uid: HashMap<String, Entry<K>>,
    /// Claim → the uids claiming it.
    by_claim: HashMap<String, HashSet<String>>,
    /// Per controller, during a re-list: the uids it listed so far.
    relisting: HashMap<usize, HashSet<String>>,
}

struct Entry<K: Managed> {
    claimant: Arc<Claimant>,
    /// The controller whose cache holds it.
    member: usize,
    reference: ObjectRef<K>,
}

impl<K: Managed> Default for Peers<K> {
    fn default() -> Self {
        Self {
            index: Mutex::new(Index {
                by_uid: HashMap::new(),
                by_claim: HashMap::new(),
                relisting: HashMap::new(),
            }),
            wake: RwLock::new(Vec::new()),
        }
    }
}

impl<K: Managed> Index<K> {
    fn remove(&mut self, uid: &str) {
        let Some(old) = self.by_uid.remove(uid) else {
            return;
        };
        for claim in &old.claimant.claims {
            if let Some(uids) = self.by_claim.get_mut(claim) {
                uids.remove(uid);
                if uids.is_empty() {
                    self.by_claim.remove(claim);
                }
            }
        }
    }

    fn put(&mut self, member: usize, obj: &K, claims: &dyn Fn(&K) -> Vec<String>) {
        let Some(uid) = obj.meta().uid.clone() else {
            return;
        };
        self.remove(&uid);
        if !competes(obj) {
            return;
        }
        let claimant = Arc::new(Claimant::of(obj, claims(obj)));
        for claim in &claimant.claims {
            self.by_claim
                .entry(claim.clone())
                .or_default()
                .insert(uid.clone());
        }
        self.by_uid.insert(
            uid,
            Entry {
                claimant,
                member,
                reference: ObjectRef::from_obj(obj),
            },
        );
    }

    /// The competitors of `me`: every other indexed object sharing one of its claims.
    fn competitors(&self, me: &Claimant) -> Vec<&Entry<K>> {
        let mut uids: Vec<&String> = me
            .claims
            .iter()
            .filter_map(|c| self.by_claim.get(c))
            .flatten()
            .collect();
        uids.sort();
        uids.dedup();
        uids.into_iter()
            .filter_map(|uid| self.by_uid.get(uid))
            .filter(|e| e.claimant.key != me.key)
            .collect()
    }
}

impl<K: Managed> Peers<K> {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Adds one controller: its number (for [`Peers::observe`]) and the stream of the objects
    /// it is to reconcile again.
    pub fn join(&self) -> (usize, mpsc::UnboundedReceiver<ObjectRef<K>>) {
        let (tx, rx) = mpsc::unbounded();
        let mut wake = self.wake.write().unwrap_or_else(|e| e.into_inner());
        wake.push(tx);
        (wake.len() - 1, rx)
    }

    /// Follows one watch event of controller `member`.
    pub fn observe(
        &self,
        member: usize,
        event: &watcher::Event<K>,
        claims: &dyn Fn(&K) -> Vec<String>,
    ) {
        let mut index = self.index.lock().unwrap_or_else(|e| e.into_inner());
        match event {
            watcher::Event::Apply(obj) => index.put(member, obj, claims),
            watcher::Event::Delete(obj) => {
                if let Some(uid) = obj.meta().uid.as_deref() {
                    index.remove(uid);
                }
            }
            watcher::Event::Init => {
                index.relisting.insert(member, HashSet::new());
            }
            watcher::Event::InitApply(obj) => {
                index.put(member, obj, claims);
                if let (Some(listed), Some(uid)) =
                    (index.relisting.get_mut(&member), obj.meta().uid.clone())
                {
                    listed.insert(uid);
                }
            }
            watcher::Event::InitDone => {
                // What was deleted while the watch was down is not in the new list.
                let listed = index.relisting.remove(&member).unwrap_or_default();
                let gone: Vec<String> = index
                    .by_uid
                    .iter()
                    .filter(|(uid, e)| e.member == member && !listed.contains(*uid))
                    .map(|(uid, _)| uid.clone())
                    .collect();
                for uid in gone {
                    index.remove(&uid);
                }
            }
        }
    }

    /// The namespace/name of the object that owns what `obj` claims, if not `obj` itself.
    pub fn owner_other_than(&self, obj: &K, claims: &dyn Fn(&K) -> Vec<String>) -> Option<String> {
        let me = Claimant::of(obj, claims(obj));
        let index = self.index.lock().unwrap_or_else(|e| e.into_inner());
        let others = index.competitors(&me);
        owner(&me, others.iter().map(|e| e.claimant.as_ref())).map(|c| c.key.clone())
    }

    /// Wakes the objects that compete with `obj`, which is letting go of what it held.
    pub fn release(&self, obj: &K, claims: &dyn Fn(&K) -> Vec<String>) {
        let me = Claimant::of(obj, claims(obj));
        let woken: Vec<(usize, ObjectRef<K>)> = {
            let index = self.index.lock().unwrap_or_else(|e| e.into_inner());
            index
                .competitors(&me)
                .into_iter()
                .map(|e| (e.member, e.reference.clone()))
                .collect()
        };
        let wake = self.wake.read().unwrap_or_else(|e| e.into_inner());
        for (member, reference) in woken {
            if let Some(tx) = wake.get(member) {
                let _ = tx.unbounded_send(reference);
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
