//! Leader election and graceful shutdown, with the operator binary run as child processes.
//!
//! The two processes reach the fakes under different host names (127.0.0.1 and localhost),
//! so the fakes' request log shows which process made each call.

mod common;

use std::collections::HashSet;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::events::{bridge, spread};
use common::{Env, env_without_operator, free_addr, ready};
use ctwa_operator::api::{ConversionBridge, SignalsKeyword};
use jiff::{Timestamp, ToSpan};
use k8s_openapi::api::coordination::v1::Lease;
use serde_json::json;

const LEASE_SECS: u64 = 4;

struct Operator {
    child: Child,
    identity_prefix: String,
}

fn start(env: &Env, host: &str, extra: &[&str]) -> Operator {
    let mut args: Vec<String> = env
        .operator_args()
        .into_iter()
        .map(|a| match a.split_once('=') {
            Some((flag, url)) if flag.ends_with("-url") && flag != "--public-base-url" => {
                format!("{flag}={}", url.replace("127.0.0.1", host))
            }
            Some(("--metrics-addr", _)) => format!("--metrics-addr={}", free_addr()),
            Some(("--postback-addr", _)) if host != "127.0.0.1" => {
                format!("--postback-addr={}", free_addr())
            }
            _ => a,
        })
        .collect();
    args.extend(
        [
            "--leader-election".to_string(),
            format!("--leader-election-namespace={}", env.ns.name),
            "--lease-name=ctwa-test".into(),
            format!("--lease-duration={LEASE_SECS}s"),
        ]
        .into_iter()
        .chain(extra.iter().map(|s| s.to_string())),
    );
    let child = env.spawn_operator(args, &[("POD_NAME", host)]);
    let identity_prefix = format!("{host}-{}", child.id());
    Operator {
        child,
        identity_prefix,
    }
}

async fn holder(env: &Env) -> Option<String> {
    let leases: kube::Api<Lease> = env.api();
    leases
        .get_opt("ctwa-test")
        .await
        .unwrap()?
        .spec?
        .holder_identity
}

async fn wait_holder(env: &Env, identity: &str, within: Duration) -> Duration {
    let started = Instant::now();
    while started.elapsed() < within {
        if holder(env).await.as_deref() == Some(identity) {
            return started.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "{identity} did not get the lease within {within:?}; holder: {:?}",
        holder(env).await
    );
}

fn hosts(env: &Env) -> HashSet<String> {
    env.fake.requests().into_iter().map(|r| r.host).collect()
}

#[tokio::test]
async fn only_the_leader_works_and_a_killed_leader_is_replaced() {
    let env = env_without_operator("leader").await;
    let tag = env.fake.insert_tag("acc1", "purchase", "PURCHASE", 30, 1);
    let mut a = start(&env, "127.0.0.1", &[]);
    wait_holder(&env, &a.identity_prefix, Duration::from_secs(20)).await;
    let b = start(&env, "localhost", &[]);

    for i in 0..5 {
        env.create::<SignalsKeyword>(json!({
            "apiVersion": "ctwa.dev/v1alpha1", "kind": "SignalsKeyword",
            "metadata": {"name": format!("k{i}")},
            "spec": {"clientId": "c1", "appId": "a1", "keyword": format!("word {i}"),
                     "adId": "ad1", "secretRef": {"name": "dialog360"}}
        }))
        .await;
    }
    let now = Timestamp::from_second(Timestamp::now().as_second()).unwrap();
    let first = spread("a", 500, now - 1.minute(), now, &["converted"], 0);
    env.seed(&first);
    env.create::<ConversionBridge>(bridge(
        "b",
        now - 2.minutes(),
        json!({"destination": {"x": {"eventId": tag}}}),
    ))
    .await;
    for i in 0..5 {
        env.wait_for::<SignalsKeyword>(&format!("k{i}"), "Ready", ready)
            .await;
    }
    env.wait_for_long::<ConversionBridge>("b", |o| o["status"]["eventsForwarded"] == 500)
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        hosts(&env),
        HashSet::from(["127.0.0.1".to_string()]),
        "the follower made upstream calls"
    );

    // SIGKILL the leader: the follower takes over within twice the lease duration.
    a.child.kill().unwrap();
    a.child.wait().unwrap();
    let took = wait_holder(
        &env,
        &b.identity_prefix,
        Duration::from_secs(2 * LEASE_SECS + 2),
    )
    .await;
    println!("handover after {took:?} (lease {LEASE_SECS}s)");
    assert!(
        took <= Duration::from_secs(2 * LEASE_SECS),
        "handover took {took:?}"
    );

    // The bridge continues from its checkpoint: new events arrive, nothing is lost.
    let now = Timestamp::now();
    let second = spread("b", 300, now - 2.seconds(), now, &["converted"], 0);
    env.seed(&second);
    env.wait_for_long::<ConversionBridge>("b", common::events::checkpoint_past(now))
        .await;
    let ids = env.fake.distinct_conversion_ids();
    assert!(first.iter().chain(&second).all(|g| ids.contains(&g.id)));
    assert!(hosts(&env).contains("localhost"));
    drop(b);
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn sigterm_delivers_what_is_in_flight_and_releases_the_lease() {
    let env = env_without_operator("sigterm").await;
    let tag = env.fake.insert_tag("acc1", "purchase", "PURCHASE", 30, 1);
    // Slow X: a batch is in flight when SIGTERM arrives.
    env.fake.set_fault(fake_upstreams::FaultRule {
        operation: Some("x.send_conversions".into()),
        latency_ms: 1_500,
        ..Default::default()
    });
    let now = Timestamp::from_second(Timestamp::now().as_second()).unwrap();
    let events = spread("ev", 3_000, now - 1.minute(), now, &["converted"], 0);
    env.seed(&events);
    env.create::<ConversionBridge>(bridge(
        "b",
        now - 2.minutes(),
        json!({"destination": {"x": {"eventId": tag}}}),
    ))
    .await;
    let mut op = start(&env, "127.0.0.1", &["--shutdown-grace=10s"]);
    // Wait until a batch is on its way to X.
    let started = Instant::now();
    while !env
        .fake
        .requests()
        .iter()
        .any(|r| r.operation == "x.send_conversions")
        && env.fake.conversions().is_empty()
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "nothing was sent"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let delivered_before = env.fake.conversion_count();
    let pid = op.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    // Wait without blocking the runtime: the fakes run on it.
    let exit = loop {
        if let Some(status) = op.child.try_wait().unwrap() {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(exit.success(), "a clean exit on SIGTERM: {exit:?}");
    let delivered = env.fake.conversion_count();
    assert!(
        delivered > delivered_before,
        "the batch in flight was delivered"
    );
    // The final status counts exactly what X received, and the lease is free.
    let o = env.api::<ConversionBridge>().get("b").await.unwrap();
    assert_eq!(o.status.unwrap().events_forwarded as usize, delivered);
    assert_eq!(holder(&env).await, None, "the lease was released");

    // A new process continues; nothing is lost.
    env.fake.clear_faults();
    let _op = start(&env, "127.0.0.1", &[]);
    env.wait_for_long::<ConversionBridge>("b", common::events::checkpoint_past(now))
        .await;
    let ids = env.fake.distinct_conversion_ids();
    assert!(events.iter().all(|g| ids.contains(&g.id)));
}
