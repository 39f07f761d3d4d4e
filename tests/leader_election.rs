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
    /// Where this process takes postbacks.
    postbacks: String,
}

/// One operator process. The one on host 127.0.0.1 takes postbacks at the environment's
/// postback address; every process publishes its own address for the others, as the chart
/// makes each pod publish `http://$(POD_IP):8081`.
fn start(env: &Env, host: &str, extra: &[&str]) -> Operator {
    let postbacks = if host == "127.0.0.1" {
        env.postback_addr.to_string()
    } else {
        free_addr().to_string()
    };
    let mut args: Vec<String> = env
        .operator_args()
        .into_iter()
        .map(|a| match a.split_once('=') {
            Some((flag, url)) if flag.ends_with("-url") && flag != "--public-base-url" => {
                format!("{flag}={}", url.replace("127.0.0.1", host))
            }
            Some(("--metrics-addr", _)) => format!("--metrics-addr={}", free_addr()),
            Some(("--postback-addr", _)) => format!("--postback-addr={postbacks}"),
            _ => a,
        })
        .collect();
    args.extend(
        [
            "--leader-election".to_string(),
            format!("--leader-election-namespace={}", env.ns.name),
            "--lease-name=ctwa-test".into(),
            format!("--lease-duration={LEASE_SECS}s"),
            format!("--postback-advertise-url=http://{postbacks}"),
        ]
        .into_iter()
        .chain(extra.iter().map(|s| s.to_string())),
    );
    let child = env.spawn_operator(args, &[("POD_NAME", host)]);
    let identity_prefix = format!("{host}-{}", child.id());
    Operator {
        child,
        identity_prefix,
        postbacks,
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

async fn post(url: &str, body: &serde_json::Value, forwarded: bool) -> u16 {
    let mut request = reqwest::Client::new().post(url).json(body);
    if forwarded {
        request = request.header("x-ctwa-forwarded", "1");
    }
    match request.send().await {
        Ok(answer) => answer.status().as_u16(),
        Err(_) => 0,
    }
}

/// Posts until the answer is not `0` (not listening yet) or `503`, for at most `within`;
/// returns the answer and how many 503s came first.
async fn post_until_taken(url: &str, body: &serde_json::Value, within: Duration) -> (u16, usize) {
    let started = Instant::now();
    let mut unavailable = 0;
    loop {
        let code = post(url, body, false).await;
        if (code != 0 && code != 503) || started.elapsed() > within {
            return (code, unavailable);
        }
        unavailable += usize::from(code == 503);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// SPEC 7.2: with two processes, a postback sent to the follower is accepted and delivered
/// (the follower hands it to the leader), in steady state never answered 503; and after the
/// leader dies, the new leader takes them itself.
#[tokio::test]
async fn postbacks_sent_to_the_follower_reach_the_leader() {
    let env = env_without_operator("leader-postbacks").await;
    let tag = env.fake.insert_tag("acc1", "purchase", "PURCHASE", 30, 1);
    let mut a = start(&env, "127.0.0.1", &[]);
    wait_holder(&env, &a.identity_prefix, Duration::from_secs(20)).await;
    let b = start(&env, "localhost", &[]);
    env.create::<ConversionBridge>(bridge(
        "b",
        Timestamp::now() - 1.minute(),
        json!({"source": {"postbacks": {"enabled": true}},
               "destination": {"x": {"eventId": tag}}}),
    ))
    .await;
    let token = env.postback_token("b").await;
    env.wait_for::<ConversionBridge>("b", "Ready", ready).await;
    let path = format!("/postbacks/{}/b/{token}", env.ns.name);
    let via = |op: &Operator| format!("http://{}{path}", op.postbacks);
    let event = |id: &str| common::events::event(id, "converted", Timestamp::now(), 1, true).event;

    // The follower takes postbacks as soon as it listens; every one is accepted.
    let (code, _) = post_until_taken(&via(&b), &event("f-0"), Duration::from_secs(20)).await;
    assert_eq!(code, 202, "the follower's answer");
    let mut sent = vec!["f-0".to_string()];
    for i in 1..20 {
        let id = format!("f-{i}");
        let target = if i % 2 == 0 { via(&a) } else { via(&b) };
        assert_eq!(
            post(&target, &event(&id), false).await,
            202,
            "{id} to {target}"
        );
        sent.push(id);
    }
    // What the leader says is what the sender hears: a wrong token is the leader's 404.
    let wrong = format!(
        "http://{}/postbacks/{}/b/not-the-token",
        b.postbacks, env.ns.name
    );
    assert_eq!(post(&wrong, &event("x"), false).await, 404);
    // A request forwarded once is never forwarded again (no loop between two processes).
    assert_eq!(post(&via(&b), &event("loop"), true).await, 503);
    env.wait_for_long::<ConversionBridge>("b", |o| o["status"]["eventsForwarded"] == 20)
        .await;
    let ids = env.fake.distinct_conversion_ids();
    assert!(
        sent.iter().all(|id| ids.contains(id)),
        "every accepted postback reached X"
    );

    // The leader dies: within the handover the follower answers 503 (Signals retries), then
    // takes postbacks itself.
    a.child.kill().unwrap();
    a.child.wait().unwrap();
    wait_holder(
        &env,
        &b.identity_prefix,
        Duration::from_secs(2 * LEASE_SECS + 2),
    )
    .await;
    let (code, unavailable) =
        post_until_taken(&via(&b), &event("after"), Duration::from_secs(30)).await;
    assert_eq!(
        code, 202,
        "the new leader's answer after {unavailable} 503s"
    );
    env.wait_for_long::<ConversionBridge>("b", |o| {
        o["status"]["eventsForwarded"].as_u64() >= Some(21)
    })
    .await;
    assert!(env.fake.distinct_conversion_ids().contains("after"));
    // The token is in the path of every forwarded request; tests/log_secrets.rs checks that
    // neither process logged it.
    drop(b);
}
