//! End-to-end benchmarks on the local control plane with the fakes (issue 7). Not part of
//! `make test`; `make bench` runs them and assembles BENCHMARKS.md from what they write to
//! `target/bench/*.md`. Nothing here asserts a time.
//!
//! `cargo bench --bench e2e -- [convergence] [throughput] [side-by-side] [budget]`
//! (all when none is named). `CTWA_BENCH_STEADY_SECS` shortens the steady-state window.

use std::collections::{BTreeMap, HashMap};
use std::process::{Child, Command};
use std::time::{Duration, Instant, SystemTime};

use ctwa_testenv::events::{bridge_manifest, merge};
use ctwa_testenv::{
    DIALOG_PASSWORD, DIALOG_USERNAME, Env, X_ACCESS_TOKEN, X_ACCESS_TOKEN_SECRET, X_CONSUMER_KEY,
    X_CONSUMER_SECRET, repo_root,
};
use fake_upstreams::{FakeUpstreams, FaultRule, XRateLimits};
use futures::StreamExt;
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
         | operator peak RSS | {peak:.1} MiB |\n",
        elapsed.as_secs_f64(),
        events_total as f64 / elapsed.as_secs_f64(),
        received as f64 / (requests.max(1) * 500) as f64,
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
}
