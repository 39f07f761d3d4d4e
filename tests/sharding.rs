//! `--shards`: operator processes share the objects and bridges out over shard Leases. Three
//! processes and six shards on the real control plane; the fake Signals counts the events-list
//! reads of each app answered at once, so a bridge run by two processes shows.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::process::Child;
use std::time::{Duration, Instant};

use common::events::{bridge, spread};
use common::{Env, env_without_operator, free_addr, ready, sample};
use ctwa_operator::api::{ConversionBridge, SignalsKeyword};
use ctwa_testenv::events::Generated;
use fake_upstreams::FaultRule;
use jiff::{Timestamp, ToSpan};
use k8s_openapi::api::coordination::v1::Lease;
use serde_json::json;

const LEASE_SECS: u64 = 4;
const SHARDS: u32 = 6;
const LEASE: &str = "ctwa-shards";
const BRIDGES: usize = 12;
const KEYWORDS: usize = 24;

struct Process {
    child: Child,
    name: String,
    metrics: SocketAddr,
    postbacks: SocketAddr,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One operator process named `name` (its POD_NAME), with its own metrics and postback
/// addresses, holding its share of the shards.
fn start(env: &Env, name: &str) -> Process {
    start_with(env, name, SHARDS)
}

fn start_with(env: &Env, name: &str, shards: u32) -> Process {
    let (metrics, postbacks) = (free_addr(), free_addr());
    let mut args: Vec<String> = env
        .operator_args()
        .into_iter()
        .map(|a| match a.split_once('=') {
            Some(("--metrics-addr", _)) => format!("--metrics-addr={metrics}"),
            Some(("--postback-addr", _)) => format!("--postback-addr={postbacks}"),
            _ => a,
        })
        .collect();
    args.extend([
        "--leader-election".to_string(),
        format!("--leader-election-namespace={}", env.ns.name),
        format!("--lease-name={LEASE}"),
        format!("--lease-duration={LEASE_SECS}s"),
        format!("--shards={shards}"),
        format!("--postback-advertise-url=http://{postbacks}"),
    ]);
    let child = env.spawn_operator(args, &[("POD_NAME", name)]);
    Process {
        child,
        name: name.to_string(),
        metrics,
        postbacks,
    }
}

/// Shard → the identity holding its Lease (expired or released ones left out).
async fn holders(env: &Env) -> BTreeMap<u32, String> {
    let leases: kube::Api<Lease> = env.api();
    let now = Timestamp::now();
    let mut out = BTreeMap::new();
    for shard in 0..SHARDS {
        let Some(lease) = leases.get_opt(&format!("{LEASE}-{shard}")).await.unwrap() else {
            continue;
        };
        let Some(spec) = lease.spec else { continue };
        let (Some(holder), Some(renewed), Some(secs)) = (
            spec.holder_identity.filter(|h| !h.is_empty()),
            spec.renew_time,
            spec.lease_duration_seconds,
        ) else {
            continue;
        };
        if renewed.0 + jiff::SignedDuration::from_secs(i64::from(secs)) > now {
            out.insert(shard, holder);
        }
    }
    out
}

/// How many shards each of `processes` holds (by the identity's POD_NAME prefix).
fn shares(holders: &BTreeMap<u32, String>, processes: &[&Process]) -> Vec<usize> {
    processes
        .iter()
        .map(|p| {
            let prefix = format!("{}-", p.name);
            holders.values().filter(|h| h.starts_with(&prefix)).count()
        })
        .collect()
}

/// Waits until every shard is held by one of `processes`, `expected` shards each; returns
/// how long that took.
async fn wait_shares(
    env: &Env,
    processes: &[&Process],
    expected: &[usize],
    within: Duration,
) -> Duration {
    let started = Instant::now();
    loop {
        let now = holders(env).await;
        let got = shares(&now, processes);
        if now.len() == SHARDS as usize && got == expected {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "shares {got:?}, expected {expected:?} within {within:?}: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn app(i: usize) -> String {
    format!("app-{i}")
}

/// `n` events of bridge `i`'s app, dated over `[from, to)`.
fn events_of(i: usize, prefix: &str, n: u64, from: Timestamp, to: Timestamp) -> Vec<Generated> {
    let mut events = spread(&format!("{prefix}-{i}"), n, from, to, &["converted"], 5);
    for g in &mut events {
        g.event["app_id"] = json!(app(i));
    }
    events
}

fn seed(env: &Env, i: usize, events: &[Generated]) {
    env.fake.seed_events(
        "c1",
        &app(i),
        events.iter().map(|g| g.event.clone()).collect(),
    );
}

/// Bridges on apps `app-0..` and keywords, with 200 events each in the last minute; returns
/// the events.
async fn declare(env: &Env) -> Vec<Vec<Generated>> {
    let tag = env.fake.insert_tag("acc1", "purchase", "PURCHASE", 30, 1);
    let now = Timestamp::now();
    let mut seeded = Vec::new();
    for i in 0..BRIDGES {
        let events = events_of(i, "first", 200, now - 1.minute(), now - 5.seconds());
        seed(env, i, &events);
        seeded.push(events);
        env.create::<ConversionBridge>(bridge(
            &format!("b{i}"),
            now - 2.minutes(),
            json!({"source": {"signals": {"appId": app(i)}, "postbacks": {"enabled": true}},
                   "destination": {"x": {"eventId": tag}}}),
        ))
        .await;
    }
    for i in 0..KEYWORDS {
        env.create::<SignalsKeyword>(json!({
            "apiVersion": "ctwa.dev/v1alpha1", "kind": "SignalsKeyword",
            "metadata": {"name": format!("k{i}")},
            "spec": {"clientId": "c1", "appId": "a1", "keyword": format!("word {i}"),
                     "adId": "ad1", "secretRef": {"name": "dialog360"}}
        }))
        .await;
    }
    seeded
}

/// Every valid event of `seeded` reached X, and nothing else did.
async fn wait_delivered(env: &Env, seeded: &[Vec<Generated>]) {
    let valid: HashSet<String> = seeded
        .iter()
        .flatten()
        .filter(|g| g.valid)
        .map(|g| g.id.clone())
        .collect();
    let started = Instant::now();
    loop {
        let got = env.fake.distinct_conversion_ids();
        if valid.iter().all(|id| got.contains(id)) {
            let foreign: Vec<_> = got.iter().filter(|id| !valid.contains(*id)).collect();
            assert!(
                foreign.is_empty(),
                "conversions of no valid event: {foreign:?}"
            );
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "{} of {} valid events delivered",
            valid.iter().filter(|id| got.contains(*id)).count(),
            valid.len()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// No app was ever read by two pollers at once: every bridge ran in one process at a time.
fn assert_one_poller_per_app(env: &Env) {
    for i in 0..BRIDGES {
        let peak = env.fake.peak_pollers("c1", &app(i));
        assert!(peak >= 1, "{} was never polled", app(i));
        assert_eq!(peak, 1, "{} was read by {peak} pollers at once", app(i));
    }
}

/// Slow events-list reads: two processes running one bridge would overlap (both poll it at
/// the same place in its interval).
fn slow_polls(env: &Env) {
    env.fake.set_fault(FaultRule {
        operation: Some("signals.list_events".into()),
        latency_ms: 300,
        ..Default::default()
    });
}

async fn metric(p: &Process, family: &str) -> f64 {
    let text = reqwest::get(format!("http://{}/metrics", p.metrics))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    sample(&text, family, &[]).unwrap_or_else(|| panic!("no {family} in {text}"))
}

#[tokio::test]
async fn three_processes_share_six_shards_and_run_each_bridge_once() {
    let env = env_without_operator("shards").await;
    slow_polls(&env);
    let seeded = declare(&env).await;
    let (a, b, c) = (
        start(&env, "op-a"),
        start(&env, "op-b"),
        start(&env, "op-c"),
    );
    let all = [&a, &b, &c];
    wait_shares(&env, &all, &[2, 2, 2], Duration::from_secs(30)).await;
    for i in 0..KEYWORDS {
        env.wait_for::<SignalsKeyword>(&format!("k{i}"), "Ready", ready)
            .await;
    }
    for i in 0..BRIDGES {
        env.wait_for_long::<ConversionBridge>(&format!("b{i}"), ready)
            .await;
    }
    wait_delivered(&env, &seeded).await;
    // Each keyword was created once, by whichever process holds its shard.
    assert_eq!(env.fake.keywords("c1", "a1").len(), KEYWORDS);
    let created = env
        .fake
        .requests()
        .iter()
        .filter(|r| r.operation == "signals.create_keyword" && (200..300).contains(&r.status))
        .count();
    assert_eq!(created, KEYWORDS, "a keyword was created twice");
    assert_one_poller_per_app(&env);

    // A postback reaches whichever process Signals (or a load balancer) picks; one that does
    // not hold the bridge's shard hands it to the one that does.
    let holding = holders(&env).await;
    for i in 0..3 {
        let name = format!("b{i}");
        let shard = ctwa_operator::sharding::shard_of(&env.ns.name, &name, SHARDS);
        let holder = &holding[&shard];
        let elsewhere = all
            .iter()
            .find(|p| !holder.starts_with(&format!("{}-", p.name)))
            .unwrap();
        let token = env.postback_token(&name).await;
        let mut event = events_of(
            i,
            "pushed",
            1,
            Timestamp::now() - 1.seconds(),
            Timestamp::now(),
        )
        .remove(0);
        event.event["phone"] = json!("15550001111");
        let answer = reqwest::Client::new()
            .post(format!(
                "http://{}/postbacks/{}/{name}/{token}",
                elsewhere.postbacks, env.ns.name
            ))
            .json(&event.event)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status().as_u16(), 202, "{:?}", answer.text().await);
        let started = Instant::now();
        while !env.fake.distinct_conversion_ids().contains(&event.id) {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "{} never arrived",
                event.id
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let mut held = 0.0;
    for p in all {
        let n = metric(p, "ctwa_shards_held").await;
        assert_eq!(n, 2.0, "{} holds {n} shards", p.name);
        assert_eq!(metric(p, "ctwa_leader").await, 1.0);
        held += n;
    }
    assert_eq!(held, f64::from(SHARDS));
}

#[tokio::test]
async fn a_killed_process_hands_over_and_a_new_one_rebalances_losing_nothing() {
    let env = env_without_operator("shards-move").await;
    slow_polls(&env);
    let mut seeded = declare(&env).await;
    let (mut a, b, c) = (
        start(&env, "op-a"),
        start(&env, "op-b"),
        start(&env, "op-c"),
    );
    wait_shares(&env, &[&a, &b, &c], &[2, 2, 2], Duration::from_secs(30)).await;
    wait_delivered(&env, &seeded).await;

    // SIGKILL: the others take its shards once their Leases expire.
    a.child.kill().unwrap();
    a.child.wait().unwrap();
    let took = wait_shares(
        &env,
        &[&b, &c],
        &[3, 3],
        Duration::from_secs(2 * LEASE_SECS + 2),
    )
    .await;
    println!("shards of the killed process moved after {took:?} (lease {LEASE_SECS}s)");
    assert!(took <= Duration::from_secs(2 * LEASE_SECS), "took {took:?}");
    let now = Timestamp::now();
    for (i, events) in seeded.iter_mut().enumerate() {
        let more = events_of(i, "second", 50, now - 3.seconds(), now);
        seed(&env, i, &more);
        events.extend(more);
    }
    wait_delivered(&env, &seeded).await;

    // A fourth process (third live one) joins while events keep coming: shares become
    // 2/2/2 and every bridge keeps polling through the handover.
    let d = start(&env, "op-d");
    let joined = Instant::now();
    let mut round = 0;
    while joined.elapsed() < Duration::from_secs(20) {
        let now = Timestamp::now();
        for (i, events) in seeded.iter_mut().enumerate() {
            let more = events_of(i, &format!("third{round}"), 5, now - 1.seconds(), now);
            seed(&env, i, &more);
            events.extend(more);
        }
        round += 1;
        tokio::time::sleep(Duration::from_secs(1)).await;
        if shares(&holders(&env).await, &[&b, &c, &d]) == [2, 2, 2] && round > 5 {
            break;
        }
    }
    wait_shares(&env, &[&b, &c, &d], &[2, 2, 2], Duration::from_secs(20)).await;
    wait_delivered(&env, &seeded).await;
    assert_one_poller_per_app(&env);
    // No bridge went unread for long while its shard moved: a handover is a drain and a
    // Lease, not a lease expiry.
    let reads: BTreeMap<String, Vec<f64>> = env
        .fake
        .requests()
        .into_iter()
        .filter(|r| r.operation == "signals.list_events")
        .filter(|r| r.at >= std::time::SystemTime::now() - joined.elapsed())
        .fold(BTreeMap::new(), |mut by_app, r| {
            let app = r.path.split('/').nth(6).unwrap_or_default().to_string();
            let at =
                r.at.duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_secs_f64();
            by_app.entry(app).or_insert_with(Vec::new).push(at);
            by_app
        });
    for (app, at) in &reads {
        let gap = at.windows(2).map(|w| w[1] - w[0]).fold(0.0, f64::max);
        assert!(gap < 12.0, "{app} went {gap:.1} s without a read");
    }
    assert_eq!(reads.len(), BRIDGES, "{reads:?}");
}

fn sigterm(p: &mut Process) {
    let pid = p.child.id().to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(status.success());
}

async fn exited(p: &mut Process) {
    while p.child.try_wait().unwrap().is_none() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A rollout that changes `--shards`: the replicas that were there first keep the work until
/// they go, so no bridge ever runs twice; the same for a `--shards 1` leader.
#[tokio::test]
async fn replicas_with_another_shard_count_wait_for_the_ones_there_first() {
    let env = env_without_operator("shards-roll").await;
    slow_polls(&env);
    let seeded = declare(&env).await;
    let mut leader = start_with(&env, "solo", 1);
    for i in 0..BRIDGES {
        env.wait_for_long::<ConversionBridge>(&format!("b{i}"), ready)
            .await;
    }
    let mut old = start(&env, "op-old");
    tokio::time::sleep(Duration::from_secs(2 * LEASE_SECS)).await;
    assert!(holders(&env).await.is_empty(), "sharded beside a leader");
    assert_eq!(metric(&old, "ctwa_shards_held").await, 0.0);
    assert_eq!(metric(&old, "ctwa_leader").await, 0.0);

    sigterm(&mut leader);
    exited(&mut leader).await;
    wait_shares(&env, &[&old], &[SHARDS as usize], Duration::from_secs(20)).await;
    wait_delivered(&env, &seeded).await;

    let new = start_with(&env, "op-new", 4);
    tokio::time::sleep(Duration::from_secs(2 * LEASE_SECS)).await;
    assert_eq!(
        metric(&new, "ctwa_shards_held").await,
        0.0,
        "the newcomer waits"
    );
    assert_eq!(metric(&old, "ctwa_shards_held").await, f64::from(SHARDS));

    sigterm(&mut old);
    exited(&mut old).await;
    let started = Instant::now();
    while metric(&new, "ctwa_shards_held").await < 4.0 {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the new replica did not take over"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let now = Timestamp::now();
    let mut seeded = seeded;
    for (i, events) in seeded.iter_mut().enumerate() {
        let more = events_of(i, "after", 20, now - 2.seconds(), now);
        seed(&env, i, &more);
        events.extend(more);
    }
    wait_delivered(&env, &seeded).await;
    assert_one_poller_per_app(&env);
}
