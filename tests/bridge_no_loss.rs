//! No loss: 20,000 events arrive over time while the operator is killed with SIGKILL five
//! times, X fails some requests with 5xx, 429 and a proxy's HTML 400, twice answers a
//! configuration 400 (fixed by a spec edit, then by a Secret touch), and a fifth of the
//! postbacks never arrive. In the end X has received every valid event, none of the invalid
//! ones, and repeats only of events inside the lookback window of a process restart: the
//! worker restarts of the edit and the Secret touch re-send nothing.

mod common;

use std::collections::HashSet;
use std::process::Child;
use std::time::Duration;

use common::events::{bridge, event, received_counts};
use common::{Env, env_without_operator};
use ctwa_operator::api::ConversionBridge;
use fake_upstreams::{FaultRule, x_errors};
use jiff::{Timestamp, ToSpan};
use serde_json::json;

const EVENTS: u64 = 20_000;
const ROUNDS: u64 = 40;
const INVALID_EVERY: u64 = 20;
const LOOKBACK_SECS: i64 = 30;

fn start_operator(env: &Env) -> Child {
    env.spawn_operator(env.operator_args(), &[])
}

#[tokio::test]
async fn sigkill_faults_and_dropped_postbacks_lose_nothing() {
    let env = env_without_operator("noloss").await;
    let tag = env.fake.insert_tag("acc1", "purchase", "PURCHASE", 30, 1);
    // Restarts re-send the lookback window (30 s at 500 events/s), far beyond X's default
    // 60,000 per 15 minutes: this test is about loss, not the budget.
    env.fake.set_x_rate_limits(fake_upstreams::XRateLimits {
        conversions: 10_000_000,
        requests: 100_000,
        window_seconds: 900,
    });
    let weather = || FaultRule {
        operation: Some("x.send_conversions".into()),
        error_rate: 0.10,
        rate_limit_rate: 0.03,
        respond: Some(x_errors::html_400()),
        respond_rate: 0.03,
        ..Default::default()
    };
    env.fake.set_fault(weather());
    let start = Timestamp::from_second(Timestamp::now().as_second()).unwrap();
    env.create::<ConversionBridge>(bridge(
        "b",
        start,
        json!({"source": {"postbacks": {"enabled": true},
                          "signals": {"lookback": format!("{LOOKBACK_SECS}s")}},
               "destination": {"x": {"eventId": tag}},
               "rateLimit": {"eventsPer15Min": 10_000_000}}),
    ))
    .await;
    let mut operator = start_operator(&env);
    let token = loop {
        let secrets: kube::Api<k8s_openapi::api::core::v1::Secret> = env.api();
        if let Some(s) = secrets.get_opt("b-postback-token").await.unwrap() {
            break String::from_utf8(s.data.unwrap()["token"].0.clone()).unwrap();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let url = format!(
        "http://{}/postbacks/{}/b/{token}",
        env.postback_addr, env.ns.name
    );

    // The producer: every round's events go into the Signals ledger; 80% are also posted.
    let fake = &env.fake;
    let producer = async {
        let http = reqwest::Client::new();
        let (mut all, mut posted, mut dropped) = (Vec::new(), 0u64, 0u64);
        for round in 0..ROUNDS {
            let per_round = EVENTS / ROUNDS;
            let now = Timestamp::now();
            let events: Vec<_> = (0..per_round)
                .map(|j| {
                    let i = round * per_round + j;
                    event(
                        &format!("ev-{i}"),
                        "converted",
                        now,
                        i,
                        !i.is_multiple_of(INVALID_EVERY),
                    )
                })
                .collect();
            fake.seed_events("c1", "a1", events.iter().map(|g| g.event.clone()).collect());
            for (k, chunk) in events.chunks(50).enumerate() {
                if k % 5 == 4 {
                    dropped += chunk.len() as u64;
                    continue;
                }
                let body: Vec<_> = chunk.iter().map(|g| g.event.clone()).collect();
                // The operator may be down or pushing back: the ledger still has them.
                if let Ok(r) = http.post(&url).json(&body).send().await
                    && r.status().as_u16() == 202
                {
                    posted += chunk.len() as u64;
                }
            }
            all.extend(events);
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        (all, posted, dropped)
    };
    let killer = async {
        let mut kills = Vec::new();
        for _ in 0..5 {
            tokio::time::sleep(Duration::from_secs(7)).await;
            operator.kill().unwrap();
            operator.wait().unwrap();
            kills.push(Timestamp::now());
            tokio::time::sleep(Duration::from_millis(500)).await;
            operator = start_operator(&env);
        }
        kills
    };
    // Twice X answers that the event tag is not a single event tag: the bridge stalls, and the
    // user's fix (a spec edit, then a Secret touch) resumes it.
    let spoiler = async {
        let single = x_errors::documented()
            .into_iter()
            .find(|e| e.status == 400 && e.body.contains("Event_id (o87ne)"))
            .expect("the documented SET error");
        let stall_once = || {
            fake.clear_faults();
            fake.set_fault(FaultRule {
                operation: Some("x.send_conversions".into()),
                respond: Some(x_errors::canned(&single)),
                remaining: Some(1),
                ..Default::default()
            });
            fake.set_fault(weather());
        };
        tokio::time::sleep(Duration::from_secs(10)).await;
        stall_once();
        tokio::time::sleep(Duration::from_secs(2)).await;
        env.api::<ConversionBridge>()
            .patch(
                "b",
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(json!({"spec": {"batching": {"flushInterval": "2s"}}})),
            )
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_secs(12)).await;
        stall_once();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let secrets: kube::Api<k8s_openapi::api::core::v1::Secret> = env.api();
        secrets
            .patch(
                "x-ads",
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(json!({"metadata": {"labels": {"rotated": "1"}}})),
            )
            .await
            .unwrap();
    };
    let ((all, posted, dropped), kills, ()) = tokio::join!(producer, killer, spoiler);
    println!(
        "{} events, {posted} taken as postbacks, {dropped} postbacks dropped",
        all.len()
    );
    let valid: HashSet<&str> = all
        .iter()
        .filter(|g| g.valid)
        .map(|g| g.id.as_str())
        .collect();
    let invalid: HashSet<&str> = all
        .iter()
        .filter(|g| !g.valid)
        .map(|g| g.id.as_str())
        .collect();
    let last = all.iter().map(|g| g.at).max().unwrap();

    let deadline = std::time::Instant::now() + Duration::from_secs(240);
    loop {
        let delivered = env.fake.distinct_conversion_ids();
        if valid.iter().all(|id| delivered.contains(*id)) {
            break;
        }
        if std::time::Instant::now() >= deadline {
            let o = env.api::<ConversionBridge>().get("b").await.unwrap();
            println!("{}", serde_json::to_string_pretty(&o.status).unwrap());
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} of {} valid events delivered",
            valid.iter().filter(|id| delivered.contains(**id)).count(),
            valid.len()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let o = env
        .wait_for_long::<ConversionBridge>("b", common::events::checkpoint_past(last))
        .await;
    operator.kill().unwrap();
    operator.wait().unwrap();

    let received = env.fake.conversions();
    let counts = received_counts(&received);
    let delivered: HashSet<&str> = counts.keys().map(String::as_str).collect();
    assert_eq!(
        delivered, valid,
        "delivered ids must equal the valid events"
    );
    assert!(delivered.is_disjoint(&invalid));

    // Repeats happen only for events inside the lookback window of a restart.
    let date = |id: &str| all.iter().find(|g| g.id == id).unwrap().at;
    let repeated: Vec<(&String, &usize)> = counts.iter().filter(|(_, n)| **n > 1).collect();
    let extra: usize = repeated.iter().map(|(_, n)| **n - 1).sum();
    println!(
        "{} conversions received for {} events: {} repeats of {} events, {} restarts",
        received.len(),
        delivered.len(),
        extra,
        repeated.len(),
        kills.len()
    );
    let slack = 15.seconds();
    for (id, _) in &repeated {
        let at = date(id);
        assert!(
            kills
                .iter()
                .any(|k| at >= *k - LOOKBACK_SECS.seconds() - slack && at <= *k + slack),
            "{id} (dated {at}) was repeated outside every restart's lookback window"
        );
    }

    let rejected = o["status"]["eventsRejected"].as_i64().unwrap();
    println!(
        "eventsRejected {rejected} for {} invalid events",
        invalid.len()
    );
    assert!(rejected >= invalid.len() as i64);
    // Nothing valid was ever rejected: every rejection names an invalid event.
    let rejections = o["status"]["recentRejections"].as_array().unwrap();
    for r in rejections {
        let id = r["eventId"].as_str().unwrap();
        assert!(invalid.contains(id), "valid event {id} was rejected: {r}");
    }
}
