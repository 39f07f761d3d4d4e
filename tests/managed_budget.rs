//! SPEC 7.1, last rule: one budget per credential for every kind. A thousand SignalsKeyword on
//! one 360dialog Secret, created at once, queue behind the Signals budget of that credential
//! (`--signals-requests-per-second`, 10 in the test environment, at most 4 requests in flight)
//! instead of firing a thousand requests at once, and all become Ready. A restarted operator
//! (its start-up reconciles a thousand objects at once) keeps to the budget too. And the
//! thousand share the one Secret's contents: it is read from the API server a handful of times,
//! not once per reconcile.
//!
//! In its own test binary: it runs for minutes and should not share the machine with others.

mod common;
mod managed_support;

use std::time::{Duration, Instant};

use common::{Env, env_without_operator, free_addr, ready};
use ctwa_operator::api::SignalsKeyword;
use fake_upstreams::CredentialLoad;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams};
use managed_support::*;
use serde_json::Value;

const KEYWORDS: usize = 1_000;

/// An operator this test starts and stops itself.
struct Operator {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Operator {
    fn start(env: &Env) -> Self {
        let mut config = env.operator_config(Duration::from_secs(600));
        // A fresh process: its own listeners.
        config.metrics_addr = free_addr();
        config.postback_addr = free_addr();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(ctwa_operator::operator::run_until(
            env.client.clone(),
            config,
            async move {
                let _ = stopped.await;
            },
        ));
        Operator {
            stop: Some(stop),
            task,
        }
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(60), &mut self.task).await;
        self.task.abort();
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The load of credential `u` (the Secret dialog360) on Signals, in 1 s and 10 s windows.
fn load(env: &Env) -> (CredentialLoad, CredentialLoad) {
    (
        env.fake
            .credential_load("signals", "u", Duration::from_secs(1)),
        env.fake
            .credential_load("signals", "u", Duration::from_secs(10)),
    )
}

/// Checks one phase's load against the budget of `rps` requests per second.
fn check_budget(
    problems: &mut Problems,
    phase: &str,
    rps: usize,
    load: (CredentialLoad, CredentialLoad),
) {
    let (per_second, per_ten_seconds) = load;
    println!(
        "{phase}: {} Signals requests of the credential, at most {} in 1 s, {} in 10 s, {} in \
         flight at once",
        per_second.requests,
        per_second.max_in_window,
        per_ten_seconds.max_in_window,
        per_second.peak_in_flight
    );
    problems.check(per_second.peak_in_flight <= 4, || {
        format!(
            "{phase}: {} Signals requests of one credential in flight at once (at most 4)",
            per_second.peak_in_flight
        )
    });
    // A token bucket of `rps` that starts full lets `rps` go at once and `rps` more within
    // the same second: 2 × rps in any 1 s, rps more than 10 × rps in any 10 s. Half a
    // second's worth more for the scheduling of a busy machine.
    let (one, ten) = (2 * rps + rps / 2, 11 * rps + rps / 2);
    problems.check(per_second.max_in_window <= one, || {
        format!(
            "{phase}: {} Signals requests of one credential within 1 s (budget {rps}/s, at most \
             {one} with a full bucket)",
            per_second.max_in_window
        )
    });
    problems.check(per_ten_seconds.max_in_window <= ten, || {
        format!(
            "{phase}: {} Signals requests of one credential within 10 s (budget {rps}/s, at \
             most {ten})",
            per_ten_seconds.max_in_window
        )
    });
}

#[tokio::test]
async fn a_thousand_keywords_on_one_credential_stay_within_its_budget() {
    let env = env_without_operator("budget").await;
    let rps = env
        .operator_config(Duration::from_secs(600))
        .signals_requests_per_second as usize;
    // Every Signals answer takes 100 ms, as over a real network: requests that are not held
    // back pile up in flight.
    env.fake.set_fault(fake_upstreams::FaultRule {
        api: Some("signals".into()),
        latency_ms: 100,
        ..Default::default()
    });
    let secret_reads_before = secret_reads(&env).await;
    let operator = Operator::start(&env);
    // One ad per keyword: each natural-key lookup is a single short page.
    futures::stream::iter(0..KEYWORDS)
        .for_each_concurrent(16, |i| {
            let env = &env;
            async move {
                env.create::<SignalsKeyword>(keyword(
                    &format!("k{i}"),
                    &format!("keyword {i}"),
                    Some(&format!("ad{i}")),
                ))
                .await;
            }
        })
        .await;
    let created = Instant::now();
    println!("{KEYWORDS} keywords created; the budget is {rps} Signals requests per second");

    // A lookup and a create per keyword: 2 000 requests, 200 s at 10 per second. Twice
    // that, and two minutes more, for a busy machine.
    let patience = Duration::from_secs((4 * KEYWORDS / rps) as u64 + 120);
    let mut last_report = Instant::now();
    let ready_count = loop {
        let items: Vec<Value> = env
            .api::<SignalsKeyword>()
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .iter()
            .map(|k| serde_json::to_value(k).unwrap())
            .collect();
        let n = items.iter().filter(|o| ready(o)).count();
        if n == KEYWORDS || created.elapsed() > patience {
            break n;
        }
        if last_report.elapsed() > Duration::from_secs(30) {
            println!("{n} of {KEYWORDS} Ready after {:?}", created.elapsed());
            last_report = Instant::now();
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    };
    println!(
        "{ready_count} of {KEYWORDS} Ready after {:?}",
        created.elapsed()
    );
    let creation = load(&env);
    let creation_secret_reads = secret_reads(&env).await - secret_reads_before;
    println!("creation: {creation_secret_reads} Secret reads from the API server");
    let active = env
        .fake
        .keywords("c1", "a1")
        .iter()
        .filter(|k| k.status == "active")
        .count();

    // A new process: its start-up reconciles every object at once, a read each.
    operator.stop().await;
    env.fake.clear_credential_load();
    let since = env.fake.requests().len();
    let restarted = Instant::now();
    let operator = Operator::start(&env);
    let reads = |env: &Env| {
        env.fake
            .requests()
            .iter()
            .skip(since)
            .filter(|r| {
                r.operation == "signals.get_keyword" || r.operation == "signals.list_keywords"
            })
            .count()
    };
    let patience_restart = Duration::from_secs((2 * KEYWORDS / rps) as u64 + 120);
    let restart_done = eventually(patience_restart, || reads(&env) >= KEYWORDS).await;
    println!(
        "after the restart: {} reads in {:?}",
        reads(&env),
        restarted.elapsed()
    );
    let startup = load(&env);
    let startup_secret_reads =
        secret_reads(&env).await - secret_reads_before - creation_secret_reads;
    println!("start-up: {startup_secret_reads} Secret reads from the API server");
    operator.stop().await;
    cleanup(&env).await;

    let mut problems = Problems::default();
    problems.check(ready_count == KEYWORDS, || {
        format!("only {ready_count} of {KEYWORDS} keywords Ready after {patience:?}")
    });
    problems.check(active == KEYWORDS, || {
        format!("{active} active keywords upstream for {KEYWORDS} objects")
    });
    check_budget(&mut problems, "creation", rps, creation);
    // The reconciles that miss the copy together (the first ones, or all before the new
    // process's Secret watch has listed) share one read; later ones use the copy while the
    // watch shows the Secret unchanged.
    for (phase, reads) in [
        ("creation", creation_secret_reads),
        ("start-up", startup_secret_reads),
    ] {
        problems.check(reads <= 10.0, || {
            format!(
                "{phase}: {reads} Secret reads from the API server for {KEYWORDS} keywords on \
                 one Secret (at most 10)"
            )
        });
    }
    problems.check(restart_done, || {
        format!(
            "the restarted operator read {} of {KEYWORDS} keywords within {patience_restart:?}",
            reads(&env)
        )
    });
    check_budget(&mut problems, "start-up", rps, startup);
    problems.finish();
}

/// GETs of Secrets the API server has served, in this cluster. The test binary is the only
/// one running, and nothing else in it reads Secrets.
async fn secret_reads(env: &Env) -> f64 {
    ctwa_testenv::apiserver_requests(&env.client, &["secrets"])
        .await
        .get("GET secrets")
        .copied()
        .unwrap_or(0.0)
}

/// A thousand objects with finalizers are not left behind in the shared control plane.
async fn cleanup(env: &Env) {
    let _ = Api::<Namespace>::all(env.client.clone())
        .delete(&env.ns.name, &DeleteParams::default())
        .await;
    futures::stream::iter(0..KEYWORDS)
        .for_each_concurrent(16, |i| async move {
            strip_finalizers::<SignalsKeyword>(&env.client, &env.ns.name, &format!("k{i}")).await;
        })
        .await;
}
