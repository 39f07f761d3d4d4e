//! When bridges poll: each at its own place in the interval (from its uid), kept across a
//! restart, and a restarted operator neither polls every bridge at once nor flips their Ready.

mod common;

use std::collections::HashMap;
use std::process::{Child, Command};
use std::time::{Duration, Instant, UNIX_EPOCH};

use common::{env_without_operator, ready};
use ctwa_operator::api::ConversionBridge;
use ctwa_testenv::events::{bridge, now_s};
use jiff::ToSpan;
use serde_json::json;

const BRIDGES: usize = 8;
const INTERVAL: f64 = 10.0;

/// Seconds into the interval of every events-list read of each app, in order.
fn poll_offsets(env: &common::Env, after: f64) -> HashMap<String, Vec<f64>> {
    let mut by_app: HashMap<String, Vec<f64>> = HashMap::new();
    for r in env.fake.requests() {
        if r.operation != "signals.list_events" {
            continue;
        }
        let at = r.at.duration_since(UNIX_EPOCH).unwrap().as_secs_f64();
        // Only a poll's first page: later pages of one poll come right after it.
        if at < after || r.query.contains("offset=") && !r.query.contains("offset=0") {
            continue;
        }
        let app = r
            .path
            .split('/')
            .find(|s| s.starts_with("app-"))
            .unwrap_or_default();
        by_app
            .entry(app.to_string())
            .or_default()
            .push(at % INTERVAL);
    }
    by_app
}

/// The distance between two places in the interval, around its end.
fn apart(a: f64, b: f64) -> f64 {
    let d = (a - b).rem_euclid(INTERVAL);
    d.min(INTERVAL - d)
}

fn now_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn sigterm(child: &mut Child) {
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
}

#[tokio::test]
async fn a_restart_keeps_every_bridge_ready_and_in_its_poll_slot() {
    let env = env_without_operator("schedule").await;
    let tag = env.fake.insert_tag("acc1", "purchase", "PURCHASE", 30, 1);
    for i in 0..BRIDGES {
        env.create::<ConversionBridge>(bridge(
            &format!("b{i}"),
            now_s() - 1.minute(),
            json!({"source": {"signals": {"appId": format!("app-{i}"), "pollInterval": "10s"}},
                   "destination": {"x": {"eventId": tag}}}),
        ))
        .await;
    }
    let mut op = env.spawn_operator(env.run_args(), &[]);
    for i in 0..BRIDGES {
        env.wait_for_long::<ConversionBridge>(&format!("b{i}"), ready)
            .await;
    }
    // Two more rounds: every bridge has found its place.
    tokio::time::sleep(Duration::from_secs_f64(2.5 * INTERVAL)).await;
    let steady_from = now_secs() - 1.5 * INTERVAL;
    let before = poll_offsets(&env, steady_from);
    assert_eq!(before.len(), BRIDGES, "every bridge polls: {before:?}");
    for (app, offsets) in &before {
        assert!(
            offsets.windows(2).all(|w| apart(w[0], w[1]) < 1.0),
            "{app} polls at one place in its interval: {offsets:?}"
        );
    }
    let transitions = |list: &[ConversionBridge]| -> HashMap<String, (String, String)> {
        list.iter()
            .map(|b| {
                let status = b.status.as_ref().unwrap();
                let c = status
                    .common
                    .conditions
                    .iter()
                    .find(|c| c.type_ == "Ready")
                    .unwrap();
                (
                    b.metadata.name.clone().unwrap(),
                    (c.status.clone(), format!("{:?}", c.last_transition_time)),
                )
            })
            .collect()
    };
    let ready_before = transitions(
        &env.api::<ConversionBridge>()
            .list(&Default::default())
            .await
            .unwrap()
            .items,
    );

    sigterm(&mut op);
    let exit = loop {
        if let Some(status) = op.try_wait().unwrap() {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(exit.success(), "{exit:?}");
    let restarted = now_secs();
    let mut op = env.spawn_operator(env.run_args(), &[]);
    // Ready is never False while the new process settles in.
    let watch = Instant::now();
    while watch.elapsed() < Duration::from_secs_f64(2.5 * INTERVAL) {
        let list = env
            .api::<ConversionBridge>()
            .list(&Default::default())
            .await
            .unwrap();
        let now = transitions(&list.items);
        for (name, (status, _)) in &now {
            assert_eq!(
                status, "True",
                "{name} flipped Ready after the restart: {now:?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let ready_after = transitions(
        &env.api::<ConversionBridge>()
            .list(&Default::default())
            .await
            .unwrap()
            .items,
    );
    assert_eq!(ready_after, ready_before, "no Ready transition at all");

    // Each bridge polls at the place it had, not all at once when the process starts.
    let after = poll_offsets(&env, restarted);
    for (app, offsets) in &after {
        let place = before[app][0];
        assert!(
            offsets.iter().all(|o| apart(*o, place) < 1.5),
            "{app} polled at {offsets:?} after the restart, {place:.2} before"
        );
    }
    assert_eq!(after.len(), BRIDGES, "every bridge polls again: {after:?}");
    op.kill().ok();
    op.wait().ok();
}
