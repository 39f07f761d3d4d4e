//! End-to-end benchmarks on the local control plane with the fakes (issue 7). Not part of
//! `make test`; `make bench` runs them and assembles BENCHMARKS.md from what they write to
//! `target/bench/*.md`. Nothing here asserts a time.
//!
//! `cargo bench --bench e2e -- [convergence] [convergence-budget] [throughput] [side-by-side]
//! [budget] [scale]` (all when none is named). `CTWA_BENCH_STEADY_SECS` shortens the
//! steady-state window. The scale section's size and windows come from `CTWA_SCALE_BRIDGES`
//! (2000), `CTWA_SCALE_OBJECTS` (10000), `CTWA_SCALE_POLL_SECS` (60), `CTWA_SCALE_QUIET_SECS`
//! (60), `CTWA_SCALE_RESTART_SECS` (30), `CTWA_SCALE_EVENTS_PER_SEC` (10) and
//! `CTWA_SCALE_TIMEOUT_SECS` (900, for each wait).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use ctwa_testenv::events::{bridge_manifest, merge};
use ctwa_testenv::{
    CLIENT_ID, DIALOG_PASSWORD, DIALOG_USERNAME, Env, X_ACCESS_TOKEN, X_ACCESS_TOKEN_SECRET,
    X_CONSUMER_KEY, X_CONSUMER_SECRET, repo_root,
};
use fake_upstreams::{FakeUpstreams, FaultRule, XRateLimits};
use futures::StreamExt;
use kube::ResourceExt;
use kube::api::{Api, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::{Value, json};

const LATENCY_MS: u64 = 5;

/// A namespace with the test fixture (fakes, Secrets), the operator not yet started.
async fn bench_env(prefix: &str) -> Env {
    Env::without_operator(prefix, env!("CARGO_BIN_EXE_ctwa-operator")).await
}

/// `ms` of latency added to every upstream request (none for 0), and no other fault.
fn latency(fake: &FakeUpstreams, ms: u64) {
    fake.clear_faults();
    if ms > 0 {
        fake.set_fault(FaultRule {
            latency_ms: ms,
            ..Default::default()
        });
    }
}

/// The operator binary on `env`, warnings only, with `extra` flags.
fn operator(env: &Env, extra: &[&str]) -> Child {
    let mut args = env.run_args();
    args.push("--log-level=warn".into());
    args.extend(extra.iter().map(|a| a.to_string()));
    env.spawn_operator(args, &[])
}

/// (peak RSS MiB, current RSS MiB, CPU seconds) of a process.
fn proc_stats(pid: u32) -> (f64, f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kb = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of /proc/<pid>/stat (11 and 12 after the name).
    let cpu = (ticks(11) + ticks(12)) / clock_ticks();
    (kb("VmHWM:") / 1024.0, kb("VmRSS:") / 1024.0, cpu)
}

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

fn write_section(name: &str, markdown: &str) {
    let dir = repo_root().join("target/bench");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("{name}.md")), markdown).unwrap();
    println!("{markdown}");
}

/// Rows of the targets table of BENCHMARKS.md: (target, measured, met).
fn write_targets(name: &str, rows: &[(&str, String, bool)]) {
    let md: String = rows
        .iter()
        .map(|(target, measured, met)| {
            let verdict = if *met { "met" } else { "**missed**" };
            format!("| {target} | {measured} | {verdict} |\n")
        })
        .collect();
    write_section(&format!("t-{name}"), &md);
}

async fn convergence() {
    const KEYWORDS: usize = 1_000;
    const TAGS: usize = 200;
    let b = bench_env("bench-converge").await;
    latency(&b.fake, LATENCY_MS);
    // The operator's own speed: a Signals budget far above what the run needs. What the
    // default budget does to the same run is measured in `convergence_under_budget`.
    let mut op = operator(
        &b,
        &[
            "--resync-interval=60s",
            "--signals-requests-per-second=1000",
        ],
    );
    let started = Instant::now();
    let manifests: Vec<Value> = (0..KEYWORDS)
        .map(|i| json!({
            "apiVersion": "ctwa.dev/v1alpha1", "kind": "SignalsKeyword", "metadata": {"name": format!("k{i}")},
            "spec": {"clientId": "c1", "appId": "a1", "keyword": format!("keyword {i}"),
                     "adId": format!("ad{}", i % 50), "secretRef": {"name": "dialog360"}}
        }))
        .chain((0..TAGS).map(|i| json!({
            "apiVersion": "ctwa.dev/v1alpha1", "kind": "XWebEventTag", "metadata": {"name": format!("t{i}")},
            "spec": {"accountId": "acc1", "name": format!("tag {i}"), "type": "PURCHASE",
                     "clickWindow": 30, "viewThroughWindow": 1, "secretRef": {"name": "x-ads"}}
        })))
        .collect();
    let env = &b;
    futures::stream::iter(manifests)
        .for_each_concurrent(32, |m| async move {
            env.create_manifest(&m).await;
        })
        .await;
    let applied = started.elapsed();
    loop {
        let k = b.ready_count::<ctwa_operator::api::SignalsKeyword>().await;
        let t = b.ready_count::<ctwa_operator::api::XWebEventTag>().await;
        if k == KEYWORDS && t == TAGS {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let converged = started.elapsed();
    let (peak, _, cpu) = proc_stats(op.id());
    let signals = b.operation_counts("signals.");
    let x = b.operation_counts("x.");
    let hub = b.operation_counts("hub.");
    let mut md = format!(
        "## 1. Convergence: {KEYWORDS} SignalsKeyword + {TAGS} XWebEventTag applied at once\n\n\
         {LATENCY_MS} ms added to every upstream request; `--signals-requests-per-second=1000` \
         (section 1b has the default budget).\n\n\
         | figure | value |\n|---|---|\n\
         | all objects applied after | {:.1} s |\n\
         | all objects Ready after | **{:.1} s** |\n\
         | operator peak RSS | {peak:.1} MiB |\n\
         | operator CPU time until converged | {cpu:.2} s |\n\n\
         Upstream requests per object, by operation:\n\n| operation | requests | per object |\n|---|---|---|\n",
        applied.as_secs_f64(),
        converged.as_secs_f64()
    );
    for (op_name, n) in signals.iter().chain(&x).chain(&hub) {
        let per = if op_name.starts_with("x.") {
            TAGS
        } else {
            KEYWORDS
        };
        md += &format!("| `{op_name}` | {n} | {:.2} |\n", *n as f64 / per as f64);
    }
    write_section("1-convergence", &md);
    let created = |ops: &BTreeMap<String, usize>, per: usize| {
        ops.iter()
            .filter(|(op, _)| !op.starts_with("hub."))
            .map(|(_, n)| *n)
            .sum::<usize>() as f64
            / per as f64
    };
    let per_object = created(&signals, KEYWORDS).max(created(&x, TAGS));
    write_targets(
        "1-convergence",
        &[
            (
                "all 1,200 objects Ready within 30 s",
                format!("{:.1} s", converged.as_secs_f64()),
                converged <= Duration::from_secs(30),
            ),
            (
                "at most 2 upstream requests per object at creation",
                format!("{per_object:.2}"),
                per_object <= 2.0,
            ),
        ],
    );

    // 2. Steady state with a 60 s resync.
    let secs: u64 = std::env::var("CTWA_BENCH_STEADY_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    b.fake.clear_requests();
    let (_, _, cpu0) = proc_stats(op.id());
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let (peak, rss, cpu1) = proc_stats(op.id());
    let requests = b.fake.requests();
    let reads = requests.iter().filter(|r| r.method == "GET").count();
    let writes = requests.len() - reads;
    let intervals = secs as f64 / 60.0;
    let objects = (KEYWORDS + TAGS) as f64;
    let md = format!(
        "## 2. Steady state: {} objects, 60 s resync, {secs} s observed\n\n\
         | figure | value |\n|---|---|\n\
         | upstream reads per object per interval | {:.2} |\n\
         | upstream writes per object per interval | **{:.3}** |\n\
         | operator CPU while idle | {:.2} % of one core |\n\
         | operator RSS (peak so far) | {rss:.1} MiB ({peak:.1} MiB) |\n",
        KEYWORDS + TAGS,
        reads as f64 / objects / intervals,
        writes as f64 / objects / intervals,
        (cpu1 - cpu0) / secs as f64 * 100.0,
    );
    write_section("2-steady-state", &md);
    write_targets(
        "2-steady-state",
        &[
            (
                "zero upstream writes in steady state",
                format!("{writes}"),
                writes == 0,
            ),
            (
                "RSS at most 64 MiB with 1,200 objects",
                format!("{peak:.1} MiB peak"),
                peak <= 64.0,
            ),
        ],
    );
    let _ = op.kill();
    let _ = op.wait();
    b.delete_namespace().await;
}

/// 1b. The same keywords under the default Signals budget (10 requests per second per
/// Secret, at most 4 in flight, SPEC 7.1): how long convergence takes and what the fake saw.
async fn convergence_under_budget() {
    const KEYWORDS: usize = 1_000;
    let b = bench_env("bench-converge-budget").await;
    latency(&b.fake, LATENCY_MS);
    let mut op = operator(&b, &["--resync-interval=600s"]);
    let started = Instant::now();
    let env = &b;
    futures::stream::iter(0..KEYWORDS)
        .for_each_concurrent(32, |i| async move {
            env.create_manifest(&json!({
                "apiVersion": "ctwa.dev/v1alpha1", "kind": "SignalsKeyword", "metadata": {"name": format!("k{i}")},
                "spec": {"clientId": "c1", "appId": "a1", "keyword": format!("keyword {i}"),
                         "adId": format!("ad{}", i % 50), "secretRef": {"name": "dialog360"}}
            }))
            .await;
        })
        .await;
    while b.ready_count::<ctwa_operator::api::SignalsKeyword>().await < KEYWORDS {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let converged = started.elapsed();
    let user = ctwa_testenv::DIALOG_USERNAME;
    let second = b
        .fake
        .credential_load("signals", user, Duration::from_secs(1));
    let peak = second.max_in_window;
    let in_flight = second.peak_in_flight;
    let md = format!(
        "## 1b. Convergence under the default Signals budget: {KEYWORDS} SignalsKeyword on one Secret\n\n\
         | figure | value |\n|---|---|\n\
         | all Ready after | **{:.1} s** |\n\
         | Signals requests in any 1 s window, at most | {peak} (budget 10/s; a full bucket allows a burst of 2 s) |\n\
         | Signals requests in flight at most | {in_flight} (budget 4) |\n",
        converged.as_secs_f64()
    );
    write_section("1b-convergence-budget", &md);
    write_targets(
        "1b-convergence-budget",
        &[(
            "within the budget: any 1 s at most 25 (10/s plus the burst), at most 4 in flight",
            format!("{peak}/s, {in_flight} in flight"),
            peak <= 25 && in_flight <= 4,
        )],
    );
    let _ = op.kill();
    let _ = op.wait();
    b.delete_namespace().await;
}

fn converted_events(prefix: &str, n: u64, from: jiff::Timestamp, span_secs: f64) -> Vec<Value> {
    (0..n)
        .map(|i| {
            let at = from
                .checked_add(jiff::SignedDuration::from_secs_f64(span_secs * i as f64 / n as f64))
                .unwrap();
            json!({"id": format!("{prefix}-{i}"), "app_id": "a1", "ad_id": "ad1", "phone": format!("1555{:07}", i % 10_000_000),
                   "type": "converted", "type_value": "order", "date": at.strftime("%Y-%m-%dT%H:%M:%S%.3f").to_string()})
        })
        .collect()
}

/// The bench's bridge: to tag `event_id`, with a rate budget no run reaches.
fn bridge(name: &str, start: jiff::Timestamp, event_id: &str, extra: Value) -> Value {
    let mut m = bridge_manifest(
        name,
        start,
        json!({"destination": {"x": {"eventId": event_id}},
               "rateLimit": {"eventsPer15Min": 10_000_000}}),
    );
    merge(&mut m["spec"], extra);
    m
}

fn unlimited(fake: &FakeUpstreams) {
    fake.set_x_rate_limits(XRateLimits {
        conversions: 1_000_000_000_000,
        requests: 1_000_000_000,
        window_seconds: 900,
    });
}

async fn throughput() {
    // CTWA_BENCH_EVENTS shortens the run when profiling.
    let events_total: u64 = std::env::var("CTWA_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let b = bench_env("bench-throughput").await;
    unlimited(&b.fake);
    latency(&b.fake, LATENCY_MS);
    let tag = b.fake.insert_tag("acc1", "purchase", "PURCHASE", 30, 1);
    let now = jiff::Timestamp::now();
    let start = now - jiff::SignedDuration::from_hours(25);
    for chunk in 0..10u64 {
        let from = start + jiff::SignedDuration::from_secs((chunk * 8_640) as i64);
        let events = converted_events(&format!("c{chunk}"), events_total / 10, from, 8_640.0);
        b.fake.seed_events("c1", "a1", events);
    }
    // The default Signals budget (10 requests per second per Secret) would cap the catch-up
    // at 10,000 events/s; this measures the bridge itself, as the fake takes any rate.
    let mut op = operator(&b, &["--signals-requests-per-second=1000"]);
    let started = Instant::now();
    b.create_manifest(&bridge("bulk", start, &tag, json!({})))
        .await;
    let took = b
        .wait_received(events_total as usize, Duration::from_secs(3_600))
        .await;
    let elapsed = started.elapsed().max(took);
    let (peak, _, cpu) = proc_stats(op.id());
    let requests = b.request_count("x.send_conversions", Some(200));
    let pages = b.request_count("signals.list_events", None);
    let received = b.fake.conversion_count();
    let md = format!(
        "## 4. Bridge end to end: {events_total} events, rate limits off, {LATENCY_MS} ms upstream latency\n\n\
         | figure | value |\n|---|---|\n\
         | wall time | {:.1} s |\n\
         | throughput | **{:.0} events/s** |\n\
         | conversion requests sent | {requests} |\n\
         | batch fill ratio | {:.3} |\n\
         | events-list pages read | {pages} |\n\
         | operator CPU time | {cpu:.1} s |\n\
         | operator CPU per forwarded event | **{:.2} µs** |\n\
         | operator peak RSS | {peak:.1} MiB |\n",
        elapsed.as_secs_f64(),
        events_total as f64 / elapsed.as_secs_f64(),
        received as f64 / (requests.max(1) * 500) as f64,
        cpu * 1e6 / events_total as f64,
    );
    write_section("4-throughput", &md);
    let rate = events_total as f64 / elapsed.as_secs_f64();
    let fill = received as f64 / (requests.max(1) * 500) as f64;
    write_targets(
        "4-throughput",
        &[
            (
                "at least 50,000 events/s end to end",
                format!("{rate:.0} events/s"),
                rate >= 50_000.0,
            ),
            (
                "at least 99% batch fill with a backlog",
                format!("{:.1} %", fill * 100.0),
                fill >= 0.99,
            ),
            (
                "at most 3 µs operator CPU per forwarded event",
                format!("{:.2} µs", cpu * 1e6 / events_total as f64),
                cpu * 1e6 / events_total as f64 <= 3.0,
            ),
        ],
    );
    let _ = op.kill();
    let _ = op.wait();

    // Postback latency at 1000/s.
    let b2 = bench_env("bench-latency").await;
    unlimited(&b2.fake);
    latency(&b2.fake, LATENCY_MS);
    let tag = b2.fake.insert_tag("acc1", "purchase", "PURCHASE", 30, 1);
    let mut op = operator(&b2, &[]);
    b2.create_manifest(&bridge(
        "live",
        jiff::Timestamp::now(),
        &tag,
        json!({"source": {"postbacks": {"enabled": true}}}),
    ))
    .await;
    let token = b2.postback_token("live").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let url = b2.postback_url("live", &token);
    let http = reqwest::Client::new();
    let mut sent: HashMap<String, SystemTime> = HashMap::new();
    const SECONDS: u64 = 20;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    for round in 0..SECONDS * 10 {
        tick.tick().await;
        let now = jiff::Timestamp::now();
        let events: Vec<Value> = (0..100)
            .map(|j| {
                json!({"id": format!("live-{round}-{j}"), "app_id": "a1", "ad_id": "ad1", "phone": format!("1555{:07}", round * 100 + j),
                       "type": "converted", "date": now.strftime("%Y-%m-%dT%H:%M:%S%.3f").to_string()})
            })
            .collect();
        let at = SystemTime::now();
        let r = http.post(&url).json(&events).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 202);
        for e in &events {
            sent.insert(e["id"].as_str().unwrap().to_string(), at);
        }
    }
    b2.wait_received(sent.len(), Duration::from_secs(120)).await;
    let mut latencies: Vec<f64> = b2
        .fake
        .conversions()
        .iter()
        .filter_map(|c| {
            let id = c.conversion["conversion_id"].as_str()?;
            Some(c.at.duration_since(*sent.get(id)?).ok()?.as_secs_f64() * 1000.0)
        })
        .collect();
    latencies.sort_by(f64::total_cmp);
    let pct = |p: f64| latencies[((latencies.len() - 1) as f64 * p) as usize];
    let md = format!(
        "### Postback latency at 1,000 events/s for {SECONDS} s (maxBatchSize 500, flushInterval 1s)\n\n\
         | figure | value |\n|---|---|\n\
         | postbacks | {} |\n| p50 postback → arrival at X | **{:.0} ms** |\n| p99 | **{:.0} ms** |\n| max | {:.0} ms |\n",
        latencies.len(),
        pct(0.5),
        pct(0.99),
        pct(1.0)
    );
    write_section("4b-latency", &md);
    let _ = op.kill();
    let _ = op.wait();
    b.delete_namespace().await;
    b2.delete_namespace().await;
}

async fn side_by_side() {
    const EVENTS: u64 = 100_000;
    let b = bench_env("bench-side").await;
    unlimited(&b.fake);
    latency(&b.fake, LATENCY_MS);
    let tag = b.fake.insert_tag("acc1", "purchase", "PURCHASE", 30, 1);
    let now = jiff::Timestamp::now();
    let start = now - jiff::SignedDuration::from_hours(2);
    b.fake
        .seed_events("c1", "a1", converted_events("s", EVENTS, start, 3_600.0));
    let python = Command::new(repo_root().join("scripts/bench-python.sh"))
        .output()
        .expect("scripts/bench-python.sh");
    assert!(
        python.status.success(),
        "{}",
        String::from_utf8_lossy(&python.stderr)
    );
    let python = String::from_utf8(python.stdout).unwrap().trim().to_string();

    let fmt = |t: jiff::Timestamp| t.strftime("%Y-%m-%dT%H:%M:%S").to_string();
    let started = Instant::now();
    let out = Command::new(&python)
        .arg(repo_root().join("scripts/naive_forwarder.py"))
        .args([
            "--hub-url",
            &b.fake.hub_url(),
            "--signals-url",
            &b.fake.signals_url(),
            "--x-url",
            &b.fake.x_url(),
            "--client",
            "c1",
            "--app",
            "a1",
            "--pixel",
            "pix1",
            "--event-id",
            &tag,
            "--username",
            DIALOG_USERNAME,
            "--password",
            DIALOG_PASSWORD,
            "--consumer-key",
            X_CONSUMER_KEY,
            "--consumer-secret",
            X_CONSUMER_SECRET,
            "--access-token",
            X_ACCESS_TOKEN,
            "--access-token-secret",
            X_ACCESS_TOKEN_SECRET,
            "--date-from",
            &fmt(start - jiff::SignedDuration::from_secs(60)),
            "--date-to",
            &fmt(jiff::Timestamp::now()),
        ])
        .output()
        .expect("the naive forwarder runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let naive_time = started.elapsed();
    let naive_requests = b.request_count("x.send_conversions", None);
    assert_eq!(b.fake.distinct_conversion_count(), EVENTS as usize);

    // The bridge, against the same fake, for the same events (X keeps what it received, so
    // count this run's conversions separately).
    b.fake.clear_requests();
    let before = b.fake.conversion_count();
    // As in the throughput run: the fake takes any rate, and the default Signals budget (10
    // requests per second) would measure the budget rather than the bridge.
    let mut op = operator(&b, &["--signals-requests-per-second=1000"]);
    let started = Instant::now();
    b.create_manifest(&bridge(
        "side",
        start - jiff::SignedDuration::from_secs(60),
        &tag,
        json!({}),
    ))
    .await;
    while b.fake.conversion_count() - before < EVENTS as usize {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let bridge_time = started.elapsed();
    let bridge_requests = b.request_count("x.send_conversions", None);
    let md = format!(
        "## 5. Side by side: {EVENTS} events, the same fake, {LATENCY_MS} ms upstream latency\n\n\
         | | naive forwarder (Python, one conversion per request) | ctwa-operator bridge |\n|---|---|---|\n\
         | wall time | {:.1} s | {:.1} s |\n| requests to X | {naive_requests} | {bridge_requests} |\n\n\
         Wall-time ratio naive / bridge: **{:.1}×**; request-count ratio: **{:.0}×**.\n",
        naive_time.as_secs_f64(),
        bridge_time.as_secs_f64(),
        naive_time.as_secs_f64() / bridge_time.as_secs_f64(),
        naive_requests as f64 / bridge_requests.max(1) as f64,
    );
    write_section("5-side-by-side", &md);
    let speed = naive_time.as_secs_f64() / bridge_time.as_secs_f64();
    let fewer = naive_requests as f64 / bridge_requests.max(1) as f64;
    write_targets(
        "5-side-by-side",
        &[
            (
                "bridge at least 50× faster than the naive forwarder",
                format!("{speed:.1}×"),
                speed >= 50.0,
            ),
            (
                "at least 400× fewer requests",
                format!("{fewer:.0}×"),
                fewer >= 400.0,
            ),
        ],
    );
    let _ = op.kill();
    let _ = op.wait();
    b.delete_namespace().await;
}

async fn budget() {
    const BUDGET: u64 = 60_000;
    const SECONDS: u64 = 60;
    let b = bench_env("bench-budget").await;
    b.fake.set_x_rate_limits(XRateLimits {
        conversions: BUDGET,
        requests: 100_000,
        window_seconds: 900,
    });
    latency(&b.fake, LATENCY_MS);
    let tag = b.fake.insert_tag("acc1", "purchase", "PURCHASE", 30, 1);
    let now = jiff::Timestamp::now();
    let start = now - jiff::SignedDuration::from_hours(3);
    b.fake.seed_events(
        "c1",
        "a1",
        converted_events("r", 150_000, start, 3.0 * 3_600.0 - 60.0),
    );
    let mut op = operator(&b, &[]);
    b.create_manifest(&bridge(
        "budget",
        start,
        &tag,
        json!({"rateLimit": {"eventsPer15Min": BUDGET}}),
    ))
    .await;
    tokio::time::sleep(Duration::from_secs(SECONDS)).await;
    let used = b.fake.conversion_count();
    let refused = b.request_count("x.send_conversions", Some(429));
    let md = format!(
        "## 6. Rate budget: {BUDGET} conversions per 15 min per account, a 150,000-event backlog, {SECONDS} s observed\n\n\
         | figure | value |\n|---|---|\n\
         | conversions accepted in the window | {used} |\n| share of the budget used | **{:.1} %** |\n| 429 answers provoked | **{refused}** |\n",
        used as f64 / BUDGET as f64 * 100.0
    );
    write_section("6-budget", &md);
    let share = used as f64 / BUDGET as f64;
    write_targets(
        "6-budget",
        &[(
            "at least 90% of the rate budget used, no 429 of our own",
            format!("{:.1} %, {refused} × 429", share * 100.0),
            share >= 0.9 && refused == 0,
        )],
    );
    let _ = op.kill();
    let _ = op.wait();
    b.delete_namespace().await;
}

// --- 7. Scale -----------------------------------------------------------------------------

/// Bridges per 360dialog Secret. Each Secret has its own Signals budget (10 requests per
/// second, 4 in flight); ten bridges polling every 60 s need 1/6 of it, and their start-up
/// burst fits in the bucket, so the budget neither paces the bridges nor hides a herd.
const SCALE_BRIDGES_PER_SECRET: usize = 10;
/// SignalsKeyword objects per 360dialog Secret (one Signals app each): creating one costs two
/// Signals requests, so 200 of them need 40 s of their Secret's 10 requests per second.
const SCALE_KEYWORDS_PER_SECRET: usize = 200;
/// XWebEventTag objects per X credential (one account each): 500 requests to create them,
/// within the fake X's 2,000 requests per 15 minutes per account.
const SCALE_TAGS_PER_X_SECRET: usize = 250;
/// `--bridge-status-interval` of the run (the flag's default).
const SCALE_STATUS_INTERVAL: Duration = Duration::from_secs(5);
/// Two status writes of one bridge are compared by the times the API server stamped on the
/// operator's `status` entry of `managedFields`, which are whole seconds: they count as too
/// close only when this much closer than the interval.
const WATCH_SLACK: Duration = Duration::from_secs(1);
/// The resources whose API server requests the scale run counts.
const SCALE_RESOURCES: &[&str] = &["signalskeywords", "xwebeventtags", "secrets", "events"];

fn env_num<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The size of the scale run, from `CTWA_SCALE_*` (the defaults are the issue's).
struct ScaleSize {
    bridges: usize,
    keywords: usize,
    tags: usize,
    poll_secs: u64,
    quiet_secs: u64,
    restart_secs: u64,
    events_per_sec: f64,
    timeout: Duration,
}

impl ScaleSize {
    fn from_env() -> Self {
        let objects: usize = env_num("CTWA_SCALE_OBJECTS", 10_000);
        // One in five managed objects is an XWebEventTag, the rest are SignalsKeywords.
        let tags = objects / 5;
        ScaleSize {
            bridges: env_num("CTWA_SCALE_BRIDGES", 2_000),
            keywords: objects - tags,
            tags,
            poll_secs: env_num("CTWA_SCALE_POLL_SECS", 60),
            quiet_secs: env_num("CTWA_SCALE_QUIET_SECS", 60).max(1),
            restart_secs: env_num("CTWA_SCALE_RESTART_SECS", 30).max(1),
            events_per_sec: env_num("CTWA_SCALE_EVENTS_PER_SEC", 10.0),
            timeout: Duration::from_secs(env_num("CTWA_SCALE_TIMEOUT_SECS", 900)),
        }
    }
    fn objects(&self) -> usize {
        self.keywords + self.tags
    }
    fn full(&self) -> bool {
        self.bridges == 2_000 && self.objects() == 10_000
    }
}

fn scale_app(i: usize) -> String {
    format!("app-{i:04}")
}

/// What a watch on one kind in the bench's namespace saw.
#[derive(Default)]
struct Tracked {
    /// Objects that are Ready=True now.
    ready: HashSet<String>,
    /// The resourceVersion last seen of each object.
    versions: HashMap<String, String>,
    /// Every change of an object already seen (its resourceVersion moved). For a
    /// ConversionBridge, whose spec the bench writes only when creating it, every change is a
    /// status write of the operator.
    writes: Vec<Write>,
    /// Times the watch had to list again: the changes in between count as one.
    relists: usize,
}

/// One change seen by a watch.
struct Write {
    /// When the watch delivered it.
    seen: SystemTime,
    /// The API server's time of the last `status` write (`managedFields`, whole seconds).
    server: Option<SystemTime>,
    name: String,
}

/// The latest `time` of the object's `managedFields` entries for the `status` subresource.
fn status_write_time(o: &Value) -> Option<SystemTime> {
    o["metadata"]["managedFields"]
        .as_array()?
        .iter()
        .filter(|f| f["subresource"] == "status")
        .filter_map(|f| f["time"].as_str()?.parse::<jiff::Timestamp>().ok())
        .max()
        .map(SystemTime::from)
}

type Tracker = Arc<Mutex<Tracked>>;

fn tracked(t: &Tracker) -> std::sync::MutexGuard<'_, Tracked> {
    t.lock().unwrap_or_else(|p| p.into_inner())
}

/// Watches every object of `K` in the namespace of `api`.
fn track<K>(api: Api<K>) -> (Tracker, tokio::task::JoinHandle<()>)
where
    K: ctwa_testenv::Kind + Send + Sync + 'static,
{
    let tracker = Tracker::default();
    let t = tracker.clone();
    let handle = tokio::spawn(async move {
        let mut events = watcher(api, watcher::Config::default())
            .default_backoff()
            .boxed();
        let mut listed = false;
        while let Some(event) = events.next().await {
            let Ok(event) = event else { continue };
            let mut t = tracked(&t);
            match event {
                watcher::Event::Init if listed => t.relists += 1,
                watcher::Event::Init => {}
                watcher::Event::InitDone => listed = true,
                watcher::Event::Apply(o) | watcher::Event::InitApply(o) => {
                    let name = o.name_any();
                    let version = o.resource_version().unwrap_or_default();
                    let o = serde_json::to_value(&o).unwrap_or_default();
                    if ctwa_testenv::ready_true(&o) {
                        t.ready.insert(name.clone());
                    } else {
                        t.ready.remove(&name);
                    }
                    if let Some(old) = t.versions.insert(name.clone(), version.clone())
                        && old != version
                    {
                        t.writes.push(Write {
                            seen: SystemTime::now(),
                            server: status_write_time(&o),
                            name,
                        });
                    }
                }
                watcher::Event::Delete(o) => {
                    let name = o.name_any();
                    t.ready.remove(&name);
                    t.versions.remove(&name);
                }
            }
        }
    });
    (tracker, handle)
}

/// How long until `n` objects are Ready, counted from `since`; None after `limit`.
async fn until_ready(
    trackers: &[(&Tracker, usize)],
    since: Instant,
    limit: Duration,
) -> Option<Duration> {
    loop {
        if trackers.iter().all(|(t, n)| tracked(t).ready.len() >= *n) {
            return Some(since.elapsed());
        }
        if since.elapsed() > limit {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Counts per whole second of `[from, from + secs)`.
fn per_second(
    times: impl IntoIterator<Item = SystemTime>,
    from: SystemTime,
    secs: u64,
) -> Vec<usize> {
    let mut buckets = vec![0; secs as usize];
    for t in times {
        if let Ok(d) = t.duration_since(from)
            && let Some(b) = buckets.get_mut(d.as_secs() as usize)
        {
            *b += 1;
        }
    }
    buckets
}

/// (mean, max, max / mean) of per-second counts.
fn spread(buckets: &[usize]) -> (f64, usize, f64) {
    let total: usize = buckets.iter().sum();
    let mean = total as f64 / buckets.len().max(1) as f64;
    let max = buckets.iter().copied().max().unwrap_or(0);
    (mean, max, if mean > 0.0 { max as f64 / mean } else { 0.0 })
}

/// Of the writes seen within `[from, to)`: the closest two of one object, by the API server's
/// times, how many consecutive pairs came closer than `limit`, and how many writes carried no
/// new server time (compared by the time they were seen instead).
fn closest_writes(
    writes: &[Write],
    from: SystemTime,
    to: SystemTime,
    limit: Duration,
) -> (Option<Duration>, usize, usize) {
    let mut last: HashMap<&str, (SystemTime, Option<SystemTime>)> = HashMap::new();
    let (mut closest, mut close, mut unstamped) = (None::<Duration>, 0, 0);
    for w in writes.iter().filter(|w| w.seen >= from && w.seen < to) {
        if let Some((seen, server)) = last.insert(&w.name, (w.seen, w.server)) {
            let gap = match (server, w.server) {
                (Some(a), Some(b)) if b > a => b.duration_since(a).unwrap_or_default(),
                _ => {
                    unstamped += 1;
                    w.seen.duration_since(seen).unwrap_or_default()
                }
            };
            closest = Some(closest.map_or(gap, |c| c.min(gap)));
            if gap < limit {
                close += 1;
            }
        }
    }
    (closest, close, unstamped)
}

async fn scale_secret(env: &Env, name: &str, data: Value) {
    let secret: k8s_openapi::api::core::v1::Secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "stringData": data
    }))
    .unwrap();
    Api::namespaced(env.client.clone(), &env.ns.name)
        .create(&PostParams::default(), &secret)
        .await
        .unwrap_or_else(|e| panic!("creating Secret {name}: {e}"));
}

/// Until the operator's `/readyz` answers 200 (at most a minute).
async fn operator_ready(env: &Env) {
    let url = format!("http://{}/readyz", env.metrics_addr);
    for _ in 0..600 {
        if reqwest::get(&url)
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// SIGTERM, then wait for the exit (SIGKILL after a minute); how long it took.
async fn terminate(op: &mut Child) -> Duration {
    let started = Instant::now();
    let _ = Command::new("kill")
        .args(["-TERM", &op.id().to_string()])
        .status();
    while op.try_wait().ok().flatten().is_none() {
        if started.elapsed() > Duration::from_secs(60) {
            let _ = op.kill();
            let _ = op.wait();
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    started.elapsed()
}

/// Converted events at `per_sec` in total, round robin over the bridges' apps, dated by the
/// Signals clock as Signals dates what it records. Never ends.
async fn trickle(fake: &FakeUpstreams, apps: usize, per_sec: f64) {
    if per_sec <= 0.0 || apps == 0 {
        return std::future::pending().await;
    }
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / per_sec));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    for n in 0u64.. {
        tick.tick().await;
        let app = scale_app((n as usize).wrapping_mul(7_919) % apps);
        fake.record_event_now(
            CLIENT_ID,
            &app,
            json!({"id": format!("trickle-{n}"), "app_id": app, "ad_id": "ad1",
                   "phone": format!("1555{:07}", n % 10_000_000), "type": "converted", "type_value": "order"}),
        );
    }
}

fn secs(d: Option<Duration>) -> String {
    d.map_or("not within the timeout".into(), |d| {
        format!("{:.1} s", d.as_secs_f64())
    })
}

fn list(buckets: &[usize]) -> String {
    buckets
        .iter()
        .map(|n| n.to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Creates the scale run's managed objects, 32 at a time: one in five a tag, interleaved,
/// each name prefixed with `prefix`.
async fn create_scale_objects(env: &Env, size: &ScaleSize, prefix: &str) {
    use ctwa_operator::api::{SignalsKeyword, XWebEventTag};
    let order: Vec<(bool, usize)> = {
        let (mut k, mut t) = (0, 0);
        (0..size.objects())
            .map(|i| {
                if i % 5 == 4 && t < size.tags {
                    t += 1;
                    (true, t - 1)
                } else {
                    k += 1;
                    (false, k - 1)
                }
            })
            .collect()
    };
    futures::stream::iter(order)
        .for_each_concurrent(32, |(is_tag, j)| async move {
            if is_tag {
                let k = j / SCALE_TAGS_PER_X_SECRET;
                env.create::<XWebEventTag>(json!({
                    "apiVersion": "ctwa.dev/v1alpha1", "kind": "XWebEventTag", "metadata": {"name": format!("{prefix}t{j:05}")},
                    "spec": {"accountId": format!("xacc-{k}"), "name": format!("tag {j}"), "type": "PURCHASE",
                             "clickWindow": 30, "viewThroughWindow": 1, "secretRef": {"name": format!("x-{k}")}}
                }))
                .await;
            } else {
                let s = j / SCALE_KEYWORDS_PER_SECRET;
                env.create::<SignalsKeyword>(json!({
                    "apiVersion": "ctwa.dev/v1alpha1", "kind": "SignalsKeyword", "metadata": {"name": format!("{prefix}k{j:05}")},
                    "spec": {"clientId": CLIENT_ID, "appId": format!("kw-{s}"), "keyword": format!("keyword {j}"),
                             "adId": format!("ad{}", j % 50), "secretRef": {"name": format!("signals-k{s}")}}
                }))
                .await;
            }
        })
        .await;
}

/// How long the API server alone takes for the run's creates on this machine (no operator
/// running): the floor under "all objects Ready". The objects are deleted again before the
/// operator starts.
async fn apiserver_alone(env: &Env, size: &ScaleSize) -> Duration {
    use ctwa_operator::api::{SignalsKeyword, XWebEventTag};
    use kube::api::{DeleteParams, ListParams};
    let started = Instant::now();
    create_scale_objects(env, size, "alone-").await;
    let took = started.elapsed();
    eprintln!(
        "scale: the API server alone created the objects in {:.1} s",
        took.as_secs_f64()
    );
    let (keywords, tags) = (env.api::<SignalsKeyword>(), env.api::<XWebEventTag>());
    let (all, one) = (ListParams::default(), ListParams::default().limit(1));
    keywords
        .delete_collection(&DeleteParams::default(), &all)
        .await
        .unwrap();
    tags.delete_collection(&DeleteParams::default(), &all)
        .await
        .unwrap();
    while !keywords.list_metadata(&one).await.unwrap().items.is_empty()
        || !tags.list_metadata(&one).await.unwrap().items.is_empty()
    {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    took
}

/// Everything the scale run measured.
#[derive(Default)]
struct ScaleRun {
    bridges_applied: Duration,
    bridges_ready: Option<Duration>,
    objects_applied: Duration,
    objects_ready: Option<Duration>,
    /// The same creates with no operator running.
    apiserver_alone: Duration,
    /// Per keyword Secret, the most Signals requests in any 1 s and in flight, at most.
    object_budget: (usize, usize),
    object_429: usize,
    object_ops: BTreeMap<String, usize>,
    /// The API server's requests while the objects were created and converged.
    object_apiserver: BTreeMap<String, f64>,
    rss_idle: f64,
    rss_bridges: f64,
    /// Peak RSS while only the bridges ran.
    peak_bridges: f64,
    rss_objects: f64,
    rss_quiet: f64,
    peak: f64,
    idle_cpu: f64,
    quiet_polls: Vec<usize>,
    quiet_other_signals: usize,
    quiet_writes: Vec<usize>,
    closest: (Option<Duration>, usize, usize),
    shutdown_writes: usize,
    relists: usize,
    shutdown: Duration,
    restart_polls: Vec<usize>,
    restart_bridge_budget: usize,
    restart_min_ready: usize,
    restart_all_ready: Option<Duration>,
    restart_writes: Vec<usize>,
    restart_closest: (Option<Duration>, usize, usize),
    restart_cpu: f64,
    restart_rss: f64,
    restart_peak: f64,
    /// Requests per api after the restart, other than polls, conversions and Hub logins.
    restart_ops: BTreeMap<String, usize>,
    deleted: Option<Duration>,
}

/// 7. Many bridges and managed objects in one operator (issue 13).
async fn scale() {
    use ctwa_operator::api::{ConversionBridge, SignalsKeyword, XWebEventTag};
    let size = ScaleSize::from_env();
    let b = bench_env("bench-scale").await;
    latency(&b.fake, LATENCY_MS);
    let bridge_secrets = size.bridges.div_ceil(SCALE_BRIDGES_PER_SECRET);
    let keyword_secrets = size.keywords.div_ceil(SCALE_KEYWORDS_PER_SECRET);
    let x_secrets = size.tags.div_ceil(SCALE_TAGS_PER_X_SECRET);
    // Every 360dialog Secret holds its own Hub user, so the fake counts its load apart.
    let user = |kind: &str, i: usize| format!("scale-{kind}{i}");
    for (kind, n) in [("b", bridge_secrets), ("k", keyword_secrets)] {
        for i in 0..n {
            b.fake.add_hub_user(&user(kind, i), DIALOG_PASSWORD);
            scale_secret(
                &b,
                &format!("signals-{kind}{i}"),
                json!({"username": user(kind, i), "password": DIALOG_PASSWORD}),
            )
            .await;
        }
    }
    for k in 0..x_secrets {
        let credentials = fake_upstreams::XCredentials {
            consumer_key: format!("ck-{k}"),
            consumer_secret: X_CONSUMER_SECRET.into(),
            access_token: format!("at-{k}"),
            access_token_secret: X_ACCESS_TOKEN_SECRET.into(),
        };
        b.fake
            .add_x_credentials(credentials, &[format!("xacc-{k}").as_str()]);
        b.fake
            .add_x_account(&format!("xacc-{k}"), &format!("xpix-{k}"));
        scale_secret(
            &b,
            &format!("x-{k}"),
            json!({"consumer-key": format!("ck-{k}"), "consumer-secret": X_CONSUMER_SECRET,
                   "access-token": format!("at-{k}"), "access-token-secret": X_ACCESS_TOKEN_SECRET}),
        )
        .await;
    }
    // Every bridge forwards to the fixture's pixel; its X budgets are not what this measures.
    let tag = b
        .fake
        .insert_tag(ctwa_testenv::X_ACCOUNT, "scale", "PURCHASE", 30, 1);
    let start = ctwa_testenv::events::now_s() - jiff::SignedDuration::from_mins(5);
    for i in 0..size.bridges {
        let app = scale_app(i);
        let events = (0..2)
            .map(|j| {
                let at = jiff::Timestamp::now() - jiff::SignedDuration::from_secs(30 + 30 * j);
                json!({"id": format!("seed-{i}-{j}"), "app_id": app, "ad_id": "ad1",
                       "phone": format!("1556{:07}", i * 2 + j as usize), "type": "converted", "type_value": "order",
                       "date": at.strftime("%Y-%m-%dT%H:%M:%S").to_string()})
            })
            .collect();
        b.fake.seed_events(CLIENT_ID, &app, events);
    }
    let (bridges, bridge_watch) = track(b.api::<ConversionBridge>());
    let (keywords, keyword_watch) = track(b.api::<SignalsKeyword>());
    let (tags, tag_watch) = track(b.api::<XWebEventTag>());
    let status_interval = format!(
        "--bridge-status-interval={}s",
        SCALE_STATUS_INTERVAL.as_secs()
    );
    let args = [status_interval.as_str()];

    let run = async {
        let mut m = ScaleRun {
            apiserver_alone: apiserver_alone(&b, &size).await,
            ..ScaleRun::default()
        };
        let mut op = operator(&b, &args);
        operator_ready(&b).await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        m.rss_idle = proc_stats(op.id()).1;
        let process_start = SystemTime::now();

        // Bridges, 32 creates at once.
        let started = Instant::now();
        let env = &b;
        let tag = &tag;
        futures::stream::iter(0..size.bridges)
            .for_each_concurrent(32, |i| async move {
                let manifest = bridge_manifest(
                    &format!("b{i:04}"),
                    start,
                    json!({"source": {"signals": {"appId": scale_app(i),
                                                  "secretRef": {"name": format!("signals-b{}", i / SCALE_BRIDGES_PER_SECRET)},
                                                  "pollInterval": format!("{}s", size.poll_secs)}},
                           "destination": {"x": {"eventId": tag}},
                           "batching": {"maxBatchSize": 500, "flushInterval": "5s"}}),
                );
                env.create::<ConversionBridge>(manifest).await;
            })
            .await;
        m.bridges_applied = started.elapsed();
        m.bridges_ready = until_ready(&[(&bridges, size.bridges)], started, size.timeout).await;
        tokio::time::sleep(Duration::from_secs(5)).await;
        (m.peak_bridges, m.rss_bridges, _) = proc_stats(op.id());

        // Managed objects: one in five a tag, interleaved.
        b.fake.clear_requests();
        b.fake.clear_credential_load();
        let before = ctwa_testenv::apiserver_requests(&b.client, SCALE_RESOURCES).await;
        let started = Instant::now();
        create_scale_objects(env, &size, "").await;
        m.objects_applied = started.elapsed();
        eprintln!(
            "scale: objects created after {:.1} s",
            m.objects_applied.as_secs_f64()
        );
        m.objects_ready = until_ready(
            &[(&keywords, size.keywords), (&tags, size.tags)],
            started,
            size.timeout,
        )
        .await;
        eprintln!("scale: objects Ready after {}", secs(m.objects_ready));
        let after = ctwa_testenv::apiserver_requests(&b.client, SCALE_RESOURCES).await;
        m.object_apiserver = after
            .into_iter()
            .map(|(k, n)| {
                let was = before.get(&k).copied().unwrap_or(0.0);
                (k, n - was)
            })
            .filter(|(_, n)| *n > 0.0)
            .collect();
        for s in 0..keyword_secrets {
            let load = b
                .fake
                .credential_load("signals", &user("k", s), Duration::from_secs(1));
            m.object_budget.0 = m.object_budget.0.max(load.max_in_window);
            m.object_budget.1 = m.object_budget.1.max(load.peak_in_flight);
        }
        let requests = b.fake.requests();
        m.object_429 = requests.iter().filter(|r| r.status == 429).count();
        for r in &requests {
            if r.operation != "signals.list_events" && !r.operation.starts_with("x.send") {
                *m.object_ops.entry(r.operation.clone()).or_default() += 1;
            }
        }
        drop(requests);
        tokio::time::sleep(Duration::from_secs(5)).await;
        m.rss_objects = proc_stats(op.id()).1;

        // The quiet window: everything Ready, only the trickle and the polls.
        eprintln!("scale: quiet window of {} s begins", size.quiet_secs);
        b.fake.clear_requests();
        let from = SystemTime::now();
        let (_, _, cpu0) = proc_stats(op.id());
        tokio::time::sleep(Duration::from_secs(size.quiet_secs)).await;
        let (peak, rss, cpu1) = proc_stats(op.id());
        (m.peak, m.rss_quiet) = (peak, rss);
        m.idle_cpu = (cpu1 - cpu0) / size.quiet_secs as f64 * 100.0;
        let requests = b.fake.requests();
        let polls = requests
            .iter()
            .filter(|r| r.operation == "signals.list_events");
        m.quiet_polls = per_second(polls.map(|r| r.at), from, size.quiet_secs);
        m.quiet_other_signals = requests
            .iter()
            .filter(|r| r.api == "signals" && r.operation != "signals.list_events")
            .filter(|r| {
                r.at.duration_since(from)
                    .is_ok_and(|d| d.as_secs() < size.quiet_secs)
            })
            .count();
        drop(requests);
        m.quiet_writes = per_second(
            tracked(&bridges).writes.iter().map(|w| w.seen),
            from,
            size.quiet_secs,
        );

        // Restart: SIGTERM, then the same operator again.
        let term = SystemTime::now();
        m.shutdown = terminate(&mut op).await;
        b.fake.clear_requests();
        b.fake.clear_credential_load();
        let from = SystemTime::now();
        {
            let t = tracked(&bridges);
            m.closest = closest_writes(
                &t.writes,
                process_start,
                term,
                SCALE_STATUS_INTERVAL - WATCH_SLACK,
            );
            m.shutdown_writes = t
                .writes
                .iter()
                .filter(|w| w.seen >= term && w.seen < from)
                .count();
        }
        let restarted = Instant::now();
        op = operator(&b, &args);
        let mut last_short = None;
        m.restart_min_ready = size.bridges;
        while restarted.elapsed() < Duration::from_secs(size.restart_secs) {
            let ready = tracked(&bridges).ready.len();
            m.restart_min_ready = m.restart_min_ready.min(ready);
            if ready < size.bridges {
                last_short = Some(restarted.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        m.restart_cpu = proc_stats(op.id()).2;
        let to = SystemTime::now();
        let requests = b.fake.requests();
        let polls = requests
            .iter()
            .filter(|r| r.operation == "signals.list_events");
        m.restart_polls = per_second(polls.map(|r| r.at), from, size.restart_secs);
        for r in requests
            .iter()
            .filter(|r| r.operation != "signals.list_events")
        {
            if !r.operation.starts_with("x.send") && !r.operation.starts_with("hub.") {
                *m.restart_ops.entry(r.api.clone()).or_default() += 1;
            }
        }
        drop(requests);
        for s in 0..bridge_secrets {
            let load = b
                .fake
                .credential_load("signals", &user("b", s), Duration::from_secs(1));
            m.restart_bridge_budget = m.restart_bridge_budget.max(load.max_in_window);
        }
        // When every bridge was Ready again (the last sample that found one not Ready).
        m.restart_all_ready = if tracked(&bridges).ready.len() < size.bridges {
            until_ready(&[(&bridges, size.bridges)], restarted, size.timeout).await
        } else {
            Some(last_short.unwrap_or_default())
        };
        {
            let t = tracked(&bridges);
            m.restart_writes = per_second(t.writes.iter().map(|w| w.seen), from, size.restart_secs);
            m.restart_closest =
                closest_writes(&t.writes, from, to, SCALE_STATUS_INTERVAL - WATCH_SLACK);
            m.relists = t.relists;
        }
        (m.restart_peak, m.restart_rss, _) = proc_stats(op.id());

        // Delete everything while the operator runs, so that nothing is left with a finalizer.
        let deleting = Instant::now();
        b.delete_namespace().await;
        let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(b.client.clone());
        while deleting.elapsed() < Duration::from_secs(600) {
            if namespaces
                .get_opt(&b.ns.name)
                .await
                .ok()
                .flatten()
                .is_none()
            {
                m.deleted = Some(deleting.elapsed());
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let _ = op.kill();
        let _ = op.wait();
        m
    };
    let m = tokio::select! {
        m = run => m,
        _ = trickle(&b.fake, size.bridges, size.events_per_sec) => unreachable!("the trickle never ends"),
    };
    bridge_watch.abort();
    keyword_watch.abort();
    tag_watch.abort();
    scale_report(&size, &m, bridge_secrets, keyword_secrets, x_secrets);
}

fn scale_report(
    size: &ScaleSize,
    m: &ScaleRun,
    bridge_secrets: usize,
    keyword_secrets: usize,
    x_secrets: usize,
) {
    let (n, objects) = (size.bridges, size.objects());
    let interval = SCALE_STATUS_INTERVAL.as_secs();
    let (q_mean, q_max, q_ratio) = spread(&m.quiet_polls);
    // The seconds before the new process's first poll are its start-up (listing, starting the
    // bridges), reported apart: counted in the mean they would read as a herd that is not there.
    let first_poll = m.restart_polls.iter().position(|&n| n > 0).unwrap_or(0);
    let (r_mean, r_max, r_ratio) = spread(&m.restart_polls[first_poll..]);
    let (w_mean, w_max, _) = spread(&m.quiet_writes);
    let (rw_mean, rw_max, _) = spread(&m.restart_writes);
    let per_bridge_interval = w_mean * interval as f64 / n.max(1) as f64;
    let per_bridge_kib = (m.rss_bridges - m.rss_idle) * 1024.0 / n.max(1) as f64;
    let per_object_kib = (m.rss_objects - m.rss_bridges) * 1024.0 / objects.max(1) as f64;
    let closest = match (m.closest.0, m.restart_closest.0) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let close = m.closest.1 + m.restart_closest.1;
    let unstamped = m.closest.2 + m.restart_closest.2;
    let peak = m.peak.max(m.restart_peak);
    let restart_ops = m
        .restart_ops
        .iter()
        .map(|(api, n)| format!("{api} {n}"))
        .collect::<Vec<_>>()
        .join(", ");
    let closest_text = closest.map_or("no bridge wrote twice".into(), |d| {
        format!("{:.1} s", d.as_secs_f64())
    });
    let smoke = if size.full() {
        String::new()
    } else {
        "**Smoke size** (`CTWA_SCALE_BRIDGES`, `CTWA_SCALE_OBJECTS`): the targets are for 2,000 \
         bridges and 10,000 objects.\n\n"
            .into()
    };
    let restart_ready = if m.restart_min_ready >= n {
        "all stayed Ready".to_string()
    } else {
        format!(
            "{} of {n} Ready at the lowest; all Ready again after {}",
            m.restart_min_ready,
            secs(m.restart_all_ready)
        )
    };
    let mut md = format!(
        "## 7. Scale: {n} ConversionBridges and {objects} managed objects in one operator process\n\n\
         {smoke}{LATENCY_MS} ms added to every upstream request. Each bridge reads its own Signals app \
         (pollInterval {poll} s, flushInterval 5 s), {SCALE_BRIDGES_PER_SECRET} bridges per 360dialog \
         Secret ({bridge_secrets} Secrets), with a trickle of {rate} converted events per second \
         over all apps; all send to one pixel. Then {keywords} SignalsKeyword ({SCALE_KEYWORDS_PER_SECRET} \
         per Secret and app; Secrets: {keyword_secrets}) and {tags} XWebEventTag ({SCALE_TAGS_PER_X_SECRET} per \
         X credential and account; credentials: {x_secrets}), created 32 at a time. Budgets are the defaults: \
         10 Signals requests per second and 4 in flight per Secret (`--signals-requests-per-second`), \
         X paced by its answers; every Secret has its own Hub user so the fake counts its load apart. \
         `--bridge-status-interval={interval}s`, resync 10 min. Status writes are counted by a watch on \
         the namespace's ConversionBridges: every resourceVersion change of a bridge the bench only \
         created is a status write of the operator; two writes of one bridge are compared by the API \
         server's time of the operator's `status` entry in `managedFields` (whole seconds).\n\n\
         | figure | value |\n|---|---|\n\
         | bridges created after | {:.1} s |\n\
         | all bridges Ready after | **{}** |\n\
         | objects created after | {:.1} s |\n\
         | all objects Ready after (from the first create) | **{}** |\n\
         | all objects Ready after the last create | {} |\n\
         | the same creates with no operator running (the API server alone) | {:.1} s |\n\
         | Signals requests of one object Secret in any 1 s / in flight, at most | {} / {} |\n\
         | 429 answers while the objects were created | {} |\n\
         | operator RSS: started / with the bridges / with the objects / quiet window | {:.1} / {:.1} / {:.1} / {:.1} MiB |\n\
         | operator peak RSS (before the restart / after) | **{:.1} MiB** / {:.1} MiB |\n\
         | RSS per bridge / per managed object | **{per_bridge_kib:.0} KiB** / {per_object_kib:.1} KiB |\n\
         | operator CPU over the {quiet} s quiet window | **{:.2} % of one core** |\n\
         | Signals polls per second in the quiet window | mean {q_mean:.1} (bridges / pollInterval = {:.1}), max {q_max}, max/mean **{q_ratio:.2}** |\n\
         | other Signals requests in the quiet window | {} |\n\
         | ConversionBridge status writes per second in the quiet window | {w_mean:.1} (max {w_max} in one second) |\n\
         | status writes per bridge per {interval} s interval (quiet window) | **{per_bridge_interval:.3}** |\n\
         | closest two status writes of one bridge, either process | {closest_text} (pairs closer than {} s: {close}; compared by watch arrival for want of a server time: {unstamped}) |\n\
         | writes during the graceful shutdown (the final checkpoint) | {} |\n\
         | SIGTERM to exit | {:.1} s |\n\
         | after the restart: first poll after | {first_poll} s |\n\
         | after the restart: Signals polls per second, from the first poll to {restart} s | mean {r_mean:.1}, max {r_max}, max/mean **{r_ratio:.2}** |\n\
         | after the restart: Signals requests of one bridge Secret in any 1 s, at most | {} |\n\
         | after the restart: bridges | {restart_ready} |\n\
         | after the restart: status writes per second, first {restart} s | mean {rw_mean:.1}, max {rw_max} |\n\
         | after the restart: other upstream requests (the objects read again) | {restart_ops} |\n\
         | after the restart: operator CPU in the first {restart} s / RSS | {:.1} s / {:.1} MiB |\n\
         | watch relists (changes in between counted once) | {} |\n\
         | namespace deleted, operator running, after | {} |\n\n\
         Signals polls per second, quiet window: `{}`\n\n\
         Signals polls per second, first {restart} s after the restart: `{}`\n\n\
         Status writes per second, first {restart} s after the restart: `{}`\n\n\
         Upstream requests while the objects were created (polls and conversions left out):\n\n\
         | operation | requests | per object of its kind |\n|---|---|---|\n",
        m.bridges_applied.as_secs_f64(),
        secs(m.bridges_ready),
        m.objects_applied.as_secs_f64(),
        secs(m.objects_ready),
        secs(m.objects_ready.map(|d| d.saturating_sub(m.objects_applied))),
        m.apiserver_alone.as_secs_f64(),
        m.object_budget.0,
        m.object_budget.1,
        m.object_429,
        m.rss_idle,
        m.rss_bridges,
        m.rss_objects,
        m.rss_quiet,
        m.peak,
        m.restart_peak,
        m.idle_cpu,
        n as f64 / size.poll_secs.max(1) as f64,
        m.quiet_other_signals,
        (SCALE_STATUS_INTERVAL - WATCH_SLACK).as_secs(),
        m.shutdown_writes,
        m.shutdown.as_secs_f64(),
        m.restart_bridge_budget,
        m.restart_cpu,
        m.restart_rss,
        m.relists,
        secs(m.deleted),
        list(&m.quiet_polls),
        list(&m.restart_polls),
        list(&m.restart_writes),
        poll = size.poll_secs,
        rate = size.events_per_sec,
        keywords = size.keywords,
        tags = size.tags,
        quiet = size.quiet_secs,
        restart = size.restart_secs,
    );
    for (op_name, count) in &m.object_ops {
        let per = if op_name.starts_with("x.") {
            size.tags
        } else if op_name.starts_with("signals.") {
            size.keywords
        } else {
            objects
        };
        md += &format!(
            "| `{op_name}` | {count} | {:.2} |\n",
            *count as f64 / per.max(1) as f64
        );
    }
    md += "\nAPI server requests while the objects were created and converged, counted by the API \
           server (`apiserver_request_total`; the POSTs of the two kinds are the bench's creates, \
           the rest the operator's):\n\n| request | count | per managed object |\n|---|---|---|\n";
    for (request, count) in &m.object_apiserver {
        md += &format!(
            "| `{request}` | {count:.0} | {:.2} |\n",
            count / objects.max(1) as f64
        );
    }
    write_section("7-scale", &md);

    let sized = |what: &str| {
        if size.full() {
            what.to_string()
        } else {
            format!("{what} (smoke: {n} bridges, {objects} objects)")
        }
    };
    let ready_in_budget = m
        .objects_ready
        .is_some_and(|d| d <= Duration::from_secs(90))
        && m.object_budget.0 <= 25
        && m.object_budget.1 <= 4
        && m.object_429 == 0;
    let rows = [
        (
            sized("2,000 bridges in at most 256 MiB RSS"),
            format!(
                "{:.1} MiB peak with the bridges alone ({per_bridge_kib:.0} KiB per bridge); \
                 {peak:.1} MiB peak with the objects too",
                m.peak_bridges
            ),
            m.peak_bridges <= 256.0,
        ),
        (
            sized("idle CPU at most 10 % of one core"),
            format!("{:.2} %", m.idle_cpu),
            m.idle_cpu <= 10.0,
        ),
        (
            sized("Signals polls spread evenly: max/mean per second at most 2, steady state"),
            format!("{q_ratio:.2} (max {q_max}/s, mean {q_mean:.1}/s)"),
            q_ratio <= 2.0,
        ),
        (
            sized(&format!(
                "Signals polls spread evenly after a restart: max/mean at most 2, from the first poll to {} s",
                size.restart_secs
            )),
            format!(
                "{r_ratio:.2} (max {r_max}/s, mean {r_mean:.1}/s; first poll after {first_poll} s)"
            ),
            r_ratio <= 2.0,
        ),
        (
            sized("at most one status write per bridge per `--bridge-status-interval`"),
            format!(
                "{per_bridge_interval:.3} per bridge per {interval} s; pairs closer than {} s: {close}",
                (SCALE_STATUS_INTERVAL - WATCH_SLACK).as_secs()
            ),
            per_bridge_interval <= 1.0 && close == 0,
        ),
        (
            sized("10,000 objects Ready within 90 s under the per-credential budgets"),
            format!(
                "{} (the API server alone takes {:.1} s for the creates); \
                 at most {}/s and {} in flight per Secret, {} × 429",
                secs(m.objects_ready),
                m.apiserver_alone.as_secs_f64(),
                m.object_budget.0,
                m.object_budget.1,
                m.object_429
            ),
            ready_in_budget,
        ),
    ];
    let rows: Vec<(&str, String, bool)> = rows
        .iter()
        .map(|(t, measured, met)| (t.as_str(), measured.clone(), *met))
        .collect();
    write_targets("7-scale", &rows);
}

#[tokio::main]
async fn main() {
    ctwa_operator::upstream::http::install_crypto_provider();
    let wanted: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let run = |name: &str| wanted.is_empty() || wanted.iter().any(|w| w == name);
    if run("convergence") {
        convergence().await;
    }
    if run("convergence-budget") {
        convergence_under_budget().await;
    }
    if run("throughput") {
        throughput().await;
    }
    if run("side-by-side") {
        side_by_side().await;
    }
    if run("budget") {
        budget().await;
    }
    if run("scale") {
        scale().await;
    }
}
