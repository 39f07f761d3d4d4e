//! Sharding (`--shards N`): the work of one operator spread over its replicas, on Kubernetes
//! Leases.
//!
//! Every object and bridge belongs to shard `fnv1a(namespace/name) mod N`; shard `i` is held
//! through Lease `<lease-name>-<i>` (kube-lease-manager, as the leader Lease). Each replica
//! also holds a member Lease `<lease-name>-member-<identity>`; the live members, sorted by
//! identity, deal the shards out in turn (shard `i` to member `i mod M`), so every replica
//! computes the same fair share and a replica that comes or goes moves only what must move.
//!
//! Every replica watches everything (so ownership is still decided across all objects), but
//! reconciles objects and runs bridges only for the shards it holds. A shard is let go in
//! order: no new work starts on it, the work under way finishes, its bridges deliver what
//! they read and write their checkpoints, and only then is its Lease released — so no two
//! processes ever run one bridge. A shard's Lease is taken only once it is free or expired.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use futures::future::BoxFuture;
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use kube::api::ListParams;
use tokio::sync::{Notify, broadcast, watch};
use tokio_util::sync::CancellationToken;

use crate::leadership::LeaseConfig;
use crate::runtime::digest::fnv1a;

/// The shard of the object `namespace/name` among `count`.
pub fn shard_of(namespace: &str, name: &str, count: u32) -> u32 {
    if count <= 1 {
        return 0;
    }
    let bytes = namespace.bytes().chain([b'/']).chain(name.bytes());
    (fnv1a(bytes) % u64::from(count)) as u32
}

/// The Lease of shard `shard` (`<lease-name>-<shard>`); with one shard, the leader Lease.
pub fn shard_lease(lease_name: &str, shard: u32, count: u32) -> String {
    if count <= 1 {
        lease_name.to_string()
    } else {
        format!("{lease_name}-{shard}")
    }
}

/// The member Lease of identity `identity`: its name made a valid object name.
pub fn member_lease(lease_name: &str, identity: &str) -> String {
    let slug: String = identity
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let slug = slug.trim_matches('-');
    // Lease names are at most 253 characters; keep the identity's hash when it is cut.
    let tail = format!("{:08x}", fnv1a(identity.bytes()) as u32);
    let head: String = slug.chars().take(200).collect();
    format!("{lease_name}-member-{head}-{tail}")
}

/// Shard `shard` goes to the member at `shard mod M` of the sorted live members.
pub fn assignee(members: &[String], shard: u32) -> Option<&str> {
    (!members.is_empty()).then(|| members[shard as usize % members.len()].as_str())
}

/// The shards this process holds, and the work under way in each.
pub struct Shards {
    count: u32,
    state: Mutex<Held>,
    idle: Notify,
    acquired: broadcast::Sender<u32>,
}

#[derive(Default)]
struct Held {
    shards: BTreeSet<u32>,
    busy: HashMap<u32, usize>,
}

/// Work on one shard under way; its shard is not let go before it ends.
pub struct Busy {
    shards: Arc<Shards>,
    shard: u32,
}

impl Drop for Busy {
    fn drop(&mut self) {
        let mut state = self.shards.lock();
        if let Some(n) = state.busy.get_mut(&self.shard) {
            *n = n.saturating_sub(1);
        }
        drop(state);
        self.shards.idle.notify_waiters();
    }
}

impl Shards {
    /// One shard, held: no sharding (one process, or the leader with `--shards 1`).
    pub fn whole() -> Arc<Self> {
        let shards = Self::new(1);
        shards.gain(0);
        shards
    }

    /// `count` shards, none held yet.
    pub fn new(count: u32) -> Arc<Self> {
        Arc::new(Shards {
            count: count.max(1),
            state: Mutex::new(Held::default()),
            idle: Notify::new(),
            acquired: broadcast::channel(64).0,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Held> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn count(&self) -> u32 {
        self.count
    }

    pub fn of(&self, namespace: &str, name: &str) -> u32 {
        shard_of(namespace, name, self.count)
    }

    pub fn holds(&self, namespace: &str, name: &str) -> bool {
        self.lock().shards.contains(&self.of(namespace, name))
    }

    pub fn held(&self) -> BTreeSet<u32> {
        self.lock().shards.clone()
    }

    /// Work on `namespace/name` begins; None when its shard is not held here.
    pub fn enter(self: &Arc<Self>, namespace: &str, name: &str) -> Option<Busy> {
        let shard = self.of(namespace, name);
        let mut state = self.lock();
        if !state.shards.contains(&shard) {
            return None;
        }
        *state.busy.entry(shard).or_default() += 1;
        Some(Busy {
            shards: self.clone(),
            shard,
        })
    }

    /// Shards acquired from now on: their objects are to be reconciled here.
    pub fn acquisitions(&self) -> broadcast::Receiver<u32> {
        self.acquired.subscribe()
    }

    pub fn gain(&self, shard: u32) {
        if self.lock().shards.insert(shard) {
            let _ = self.acquired.send(shard);
        }
    }

    /// No new work starts on `shard`; returns once the work under way ended, or after
    /// `grace`.
    pub async fn quiesce(&self, shard: u32, grace: Duration) {
        self.lock().shards.remove(&shard);
        let ended = async {
            loop {
                let idle = self.idle.notified();
                if self.lock().busy.get(&shard).copied().unwrap_or(0) == 0 {
                    return;
                }
                idle.await;
            }
        };
        if tokio::time::timeout(grace, ended).await.is_err() {
            tracing::warn!(
                shard,
                "work on the shard did not end within the grace period"
            );
        }
    }
}

/// What the shard keeper needs from the rest of the process.
pub struct ShardConfig {
    pub lease: LeaseConfig,
    pub count: u32,
    /// How long a shard's work may take to end before its Lease is let go.
    pub grace: Duration,
}

/// Stops a shard's bridges: drained (deliver and write checkpoints), or at once when the
/// shard was lost.
pub type StopShard = Arc<dyn Fn(u32, bool) -> BoxFuture<'static, ()> + Send + Sync>;

/// One shard Lease this process is taking or holds.
struct Held1 {
    state: watch::Receiver<bool>,
    task: tokio::task::JoinHandle<kube_lease_manager::Result<kube_lease_manager::LeaseManager>>,
    advertising: Option<CancellationToken>,
}

/// Holds this process's fair share of the shards until `stop` fires; then lets every shard
/// go in order (the caller has stopped the controllers and drained the bridges by then).
pub async fn keep(
    client: kube::Client,
    config: ShardConfig,
    shards: Arc<Shards>,
    stop_shard: StopShard,
    metrics: Arc<crate::metrics::Metrics>,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let lease = &config.lease;
    let leases: Api<Lease> = Api::namespaced(client.clone(), &lease.namespace);
    let member = start_lease(&client, lease, &member_lease(&lease.name, &lease.identity)).await?;
    let tick = (lease.duration / 4).clamp(Duration::from_millis(500), Duration::from_secs(5));
    let mut taking: HashMap<u32, Held1> = HashMap::new();
    let mut blocked: Option<String> = None;
    tracing::info!(shards = config.count, identity = %lease.identity, "taking a fair share of the shards");
    loop {
        match leases.list(&ListParams::default()).await {
            Ok(list) => {
                let view = View::of(&list.items, lease, config.count);
                if view.announce {
                    announce(&leases, lease, config.count).await;
                }
                if view.blocked != blocked {
                    match &view.blocked {
                        Some(why) => tracing::warn!(%why, "holding no shard"),
                        None if blocked.is_some() => {
                            tracing::info!("taking a share of the shards again")
                        }
                        None => {}
                    }
                    blocked = view.blocked.clone();
                }
                step(&client, &config, &shards, &stop_shard, &view, &mut taking).await;
                metrics.set_shards_held(shards.held().len());
            }
            Err(e) => tracing::warn!(error = %e, "listing the shard leases failed"),
        }
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(tick) => {}
        }
    }
    for (shard, held) in taking.drain() {
        shards.quiesce(shard, config.grace).await;
        stop_shard(shard, false).await;
        release(held).await;
    }
    metrics.set_shards_held(0);
    release(member).await;
    Ok(())
}

/// The shard count a replica announces on its member Lease.
pub const SHARDS_ANNOTATION: &str = "ctwa.dev/shards";

/// A live holder of a Lease.
struct Holder {
    identity: String,
    /// When it took the Lease: the longest-running member decides the shard count.
    since: SystemTime,
}

fn live_holder(lease: &Lease, now: SystemTime) -> Option<Holder> {
    let spec = lease.spec.as_ref()?;
    let identity = spec.holder_identity.clone().filter(|h| !h.is_empty())?;
    let renewed = spec.renew_time.as_ref()?.0;
    let seconds = u64::try_from(spec.lease_duration_seconds?).ok()?;
    let until = SystemTime::from(renewed) + Duration::from_secs(seconds);
    let since = spec
        .acquire_time
        .as_ref()
        .map(|t| SystemTime::from(t.0))
        .unwrap_or(SystemTime::from(renewed));
    (until > now).then_some(Holder { identity, since })
}

/// What the Leases say: the live members, who holds each shard, and whether this process
/// may hold shards at all.
struct View {
    /// Live members sharding like this process, sorted: they deal the shards out.
    members: Vec<String>,
    /// Shard → its live holder.
    holders: HashMap<u32, String>,
    /// Why this process must hold nothing now, if it must: replicas with another shard
    /// count (a rollout that changes `--shards`) or a leader of `--shards 1` are running,
    /// and they were there first.
    blocked: Option<String>,
    /// This process's member Lease lacks its shard count.
    announce: bool,
}

impl View {
    fn of(items: &[Lease], lease: &LeaseConfig, count: u32) -> Self {
        let now = SystemTime::now();
        let named = |name: &str| {
            items
                .iter()
                .find(|l| l.metadata.name.as_deref() == Some(name))
        };
        let member_prefix = format!("{}-member-", lease.name);
        let own = member_lease(&lease.name, &lease.identity);
        let mut members = vec![lease.identity.clone()];
        // The longest-running member (and its count) among those that announced one.
        let mut eldest: Option<(SystemTime, String, u32)> = None;
        let mut announce = true;
        for l in items {
            let name = l.metadata.name.as_deref().unwrap_or_default();
            if !name.starts_with(&member_prefix) {
                continue;
            }
            let announced = l
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(SHARDS_ANNOTATION))
                .and_then(|v| v.parse::<u32>().ok());
            if name == own {
                announce = announced != Some(count);
            }
            let (Some(holder), Some(theirs)) = (live_holder(l, now), announced) else {
                continue;
            };
            if theirs == count {
                members.push(holder.identity.clone());
            }
            let key = (holder.since, holder.identity.clone(), theirs);
            if eldest
                .as_ref()
                .is_none_or(|e| (key.0, &key.1) < (e.0, &e.1))
            {
                eldest = Some(key);
            }
        }
        members.sort();
        members.dedup();
        let mut blocked =
            eldest
                .filter(|(_, _, theirs)| *theirs != count)
                .map(|(_, who, theirs)| {
                    format!("{who} runs with --shards {theirs} and was there first")
                });
        if let Some(leader) = named(&lease.name).and_then(|l| live_holder(l, now)) {
            blocked = Some(format!(
                "{} leads with --shards 1 (Lease {})",
                leader.identity, lease.name
            ));
        }
        let holders = (0..count)
            .filter_map(|shard| {
                let holder = live_holder(named(&shard_lease(&lease.name, shard, count))?, now)?;
                Some((shard, holder.identity))
            })
            .collect();
        View {
            members,
            holders,
            blocked,
            announce,
        }
    }
}

/// One round: let go of what is no longer this process's share, take what is and is free,
/// and note what was gained or lost.
async fn step(
    client: &kube::Client,
    config: &ShardConfig,
    shards: &Arc<Shards>,
    stop_shard: &StopShard,
    view: &View,
    taking: &mut HashMap<u32, Held1>,
) {
    let me = config.lease.identity.as_str();
    for shard in 0..config.count {
        let wanted = view.blocked.is_none() && assignee(&view.members, shard) == Some(me);
        let holds = shards.held().contains(&shard);
        match (wanted, taking.contains_key(&shard)) {
            (true, false) => {
                // Free, expired, or (after a restart under the same identity) ours already.
                let free = view.holders.get(&shard).is_none_or(|h| h == me);
                if free {
                    let name = shard_lease(&config.lease.name, shard, config.count);
                    match start_lease(client, &config.lease, &name).await {
                        Ok(held) => {
                            taking.insert(shard, held);
                        }
                        Err(e) => {
                            tracing::warn!(shard, error = %e, "taking the shard lease failed")
                        }
                    }
                }
            }
            (false, true) => {
                // Another member's share now: hand it over in order.
                if holds {
                    tracing::info!(shard, "handing the shard over");
                    shards.quiesce(shard, config.grace).await;
                    stop_shard(shard, false).await;
                }
                if let Some(held) = taking.remove(&shard) {
                    release(held).await;
                }
            }
            _ => {}
        }
        let Some(held) = taking.get_mut(&shard) else {
            continue;
        };
        let has_it = *held.state.borrow();
        if has_it && !holds {
            tracing::info!(shard, "shard acquired");
            let mut lease = config.lease.clone();
            lease.name = shard_lease(&config.lease.name, shard, config.count);
            let advertising = CancellationToken::new();
            tokio::spawn(crate::leadership::advertise(
                client.clone(),
                lease,
                advertising.clone(),
            ));
            held.advertising = Some(advertising);
            shards.gain(shard);
        } else if !has_it && holds {
            // Lost (not renewed in time): someone else may run it already, stop at once.
            tracing::warn!(shard, "shard lease lost");
            shards.quiesce(shard, Duration::ZERO).await;
            stop_shard(shard, true).await;
            if let Some(held) = taking.remove(&shard) {
                release(held).await;
            }
        }
    }
}

/// Writes this process's shard count on its member Lease (its own annotation, merged, so
/// the lease manager's writes of `spec` keep it).
async fn announce(leases: &Api<Lease>, lease: &LeaseConfig, count: u32) {
    let patch = kube::api::Patch::Merge(serde_json::json!({
        "metadata": {"annotations": {SHARDS_ANNOTATION: count.to_string()}}
    }));
    let params = kube::api::PatchParams {
        field_manager: Some("ctwa-operator-shards".into()),
        ..Default::default()
    };
    let name = member_lease(&lease.name, &lease.identity);
    if let Err(e) = leases.patch(&name, &params, &patch).await {
        tracing::debug!(error = %e, "announcing the shard count failed; retrying");
    }
}

async fn start_lease(
    client: &kube::Client,
    config: &LeaseConfig,
    name: &str,
) -> anyhow::Result<Held1> {
    let (state, task) = crate::leadership::hold_lease(client.clone(), config, name).await?;
    Ok(Held1 {
        state,
        task,
        advertising: None,
    })
}

/// Closing the channel makes the lease task release the Lease.
async fn release(held: Held1) {
    if let Some(advertising) = held.advertising {
        advertising.cancel();
    }
    drop(held.state);
    match held.task.await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "releasing a lease failed"),
        Err(e) => tracing::warn!(error = %e, "a lease task failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_spread_over_the_shards_the_same_way_everywhere() {
        let mut per_shard = [0u32; 6];
        for i in 0..6_000 {
            per_shard[shard_of("team-a", &format!("bridge-{i}"), 6) as usize] += 1;
        }
        assert!(
            per_shard.iter().all(|n| (800..1_200).contains(n)),
            "{per_shard:?}"
        );
        assert_eq!(shard_of("a", "b", 6), shard_of("a", "b", 6));
        assert_ne!(shard_of("ab", "c", 1 << 20), shard_of("a", "bc", 1 << 20));
        assert_eq!(shard_of("a", "b", 1), 0);
    }

    #[test]
    fn members_deal_the_shards_out_in_turn() {
        let members: Vec<String> = ["p-a", "p-b", "p-c"].map(String::from).to_vec();
        let share = |m: &str| (0..6).filter(|s| assignee(&members, *s) == Some(m)).count();
        assert_eq!([share("p-a"), share("p-b"), share("p-c")], [2, 2, 2]);
        let four: Vec<String> = ["p-a", "p-b", "p-c", "p-d"].map(String::from).to_vec();
        let shares: Vec<usize> = four
            .iter()
            .map(|m| (0..6).filter(|s| assignee(&four, *s) == Some(m)).count())
            .collect();
        assert_eq!(shares, [2, 2, 1, 1]);
        assert_eq!(assignee(&[], 0), None);
    }

    #[test]
    fn lease_names_are_valid_object_names() {
        assert_eq!(shard_lease("ctwa", 3, 6), "ctwa-3");
        assert_eq!(shard_lease("ctwa", 0, 1), "ctwa");
        let name = member_lease("ctwa", "Pod_7/x.1");
        assert!(name.starts_with("ctwa-member-pod-7-x-1-"), "{name}");
        assert!(
            name.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        );
        assert!(member_lease("ctwa", &"x".repeat(400)).len() <= 253);
    }

    fn lease(name: &str, holder: &str, since_secs_ago: u64, shards: Option<u32>) -> Lease {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
        let ago =
            |s: u64| MicroTime(jiff::Timestamp::now() - jiff::SignedDuration::from_secs(s as i64));
        Lease {
            metadata: kube::api::ObjectMeta {
                name: Some(name.into()),
                annotations: shards
                    .map(|n| [(SHARDS_ANNOTATION.to_string(), n.to_string())].into()),
                ..Default::default()
            },
            spec: Some(k8s_openapi::api::coordination::v1::LeaseSpec {
                holder_identity: Some(holder.into()),
                acquire_time: Some(ago(since_secs_ago)),
                renew_time: Some(ago(1)),
                lease_duration_seconds: Some(15),
                ..Default::default()
            }),
        }
    }

    fn config(identity: &str) -> LeaseConfig {
        LeaseConfig {
            namespace: "ns".into(),
            name: "ctwa".into(),
            identity: identity.into(),
            duration: Duration::from_secs(15),
            postback_url: None,
        }
    }

    #[test]
    fn replicas_with_another_shard_count_that_came_first_keep_the_work() {
        let old = lease(&member_lease("ctwa", "old-1"), "old-1", 600, Some(6));
        let new = lease(&member_lease("ctwa", "new-1"), "new-1", 5, Some(4));
        let leases = [old.clone(), new.clone()];
        let for_new = View::of(&leases, &config("new-1"), 4);
        assert!(
            for_new.blocked.as_deref().unwrap().contains("old-1"),
            "the newcomer waits"
        );
        assert!(!for_new.announce);
        let for_old = View::of(&leases, &config("old-1"), 6);
        assert!(for_old.blocked.is_none(), "the replicas there first go on");
        assert_eq!(
            for_old.members,
            ["old-1"],
            "the newcomer gets no share of theirs"
        );

        // A member that has not announced its count yet neither decides nor shares.
        let quiet = lease(&member_lease("ctwa", "a-1"), "a-1", 900, None);
        let view = View::of(&[quiet, new.clone()], &config("new-1"), 4);
        assert!(view.blocked.is_none());
        assert_eq!(view.members, ["new-1"]);

        // A leader of --shards 1 holds everything: nobody shards beside it.
        let leader = lease("ctwa", "solo-1", 60, None);
        let view = View::of(&[leader, new], &config("new-1"), 4);
        assert!(view.blocked.as_deref().unwrap().contains("solo-1"));
        // Expired leases count for nothing.
        let mut gone = lease(&member_lease("ctwa", "old-1"), "old-1", 600, Some(6));
        gone.spec.as_mut().unwrap().lease_duration_seconds = Some(0);
        let view = View::of(&[gone], &config("new-1"), 4);
        assert!(view.blocked.is_none());
        assert!(view.announce, "its own member Lease is not listed yet");
    }

    #[tokio::test]
    async fn a_shard_is_let_go_only_after_its_work_ends() {
        let shards = Shards::new(4);
        shards.gain(shard_of("ns", "a", 4));
        let busy = shards.enter("ns", "a").expect("held");
        let other = (0..100)
            .map(|i| format!("o{i}"))
            .find(|n| shards.of("ns", n) != shards.of("ns", "a"))
            .unwrap();
        assert!(shards.enter("ns", &other).is_none(), "not held");
        let shard = shards.of("ns", "a");
        let quiesce = {
            let shards = shards.clone();
            tokio::spawn(async move { shards.quiesce(shard, Duration::from_secs(30)).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!quiesce.is_finished(), "waits for the work under way");
        assert!(shards.enter("ns", "a").is_none(), "no new work meanwhile");
        drop(busy);
        tokio::time::timeout(Duration::from_secs(5), quiesce)
            .await
            .expect("let go once the work ended")
            .unwrap();
    }
}
