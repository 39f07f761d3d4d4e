//! Shared by the controller tests: a namespace of their own on the real API server, the
//! fakes, and the operator running in-process scoped to that namespace.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use ctwa_operator::operator::{OperatorConfig, run};
use ctwa_testenv::{TestNamespace, client};
use fake_upstreams::{FakeUpstreams, XCredentials};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

pub mod events;

pub struct Env {
    pub fake: FakeUpstreams,
    pub ns: TestNamespace,
    pub client: kube::Client,
    /// Where the operator's postback receiver listens.
    pub postback_addr: SocketAddr,
    /// Where the operator's `/metrics` listens.
    pub metrics_addr: SocketAddr,
    operator: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

/// A loopback address with a port that was free a moment ago.
pub fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Some(operator) = &self.operator {
            operator.abort();
        }
    }
}

/// The test credentials: distinctive, so that the log scan (tests/log_secrets.rs) finds them
/// if they ever leak.
pub const DIALOG_PASSWORD: &str = "dialog-pw-S3cr3t";
pub const X_CONSUMER_SECRET: &str = "x-consumer-S3cr3t";
pub const X_ACCESS_TOKEN_SECRET: &str = "x-token-S3cr3t";

/// Where `make test` collects every log of the run (trace level), if it does.
pub fn log_dir() -> Option<std::path::PathBuf> {
    std::env::var_os("CTWA_TEST_LOG_DIR").map(std::path::PathBuf::from)
}

/// In-process operators log at trace level into the log directory.
fn init_logging() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let Some(dir) = log_dir() else { return };
        std::fs::create_dir_all(&dir).unwrap();
        let name = std::env::current_exe()
            .ok()
            .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "tests".into());
        let file =
            std::fs::File::create(dir.join(format!("{name}-{}.log", std::process::id()))).unwrap();
        let _ = tracing_subscriber::fmt()
            .with_env_filter("trace")
            .with_ansi(false)
            .with_writer(std::sync::Mutex::new(file))
            .try_init();
    });
}

/// Output of an operator child process: the log directory, or nowhere.
pub fn child_output() -> std::process::Stdio {
    let Some(dir) = log_dir() else {
        return std::process::Stdio::null();
    };
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("operator-processes.log"))
        .map(std::process::Stdio::from)
        .unwrap()
}

pub async fn env(prefix: &str) -> Env {
    env_with(prefix, Duration::from_secs(600)).await
}

pub async fn env_with(prefix: &str, resync: Duration) -> Env {
    let mut env = env_without_operator(prefix).await;
    env.start_operator(resync);
    env
}

impl Env {
    /// The `run` configuration for this environment.
    pub fn operator_config(&self, resync: Duration) -> OperatorConfig {
        OperatorConfig {
            resync_interval: resync,
            signals_url: self.fake.signals_url(),
            hub_url: self.fake.hub_url(),
            x_ads_url: self.fake.x_url(),
            namespaces: vec![self.ns.name.clone()],
            metrics_addr: self.metrics_addr,
            postback_addr: self.postback_addr,
            public_base_url: Some(format!("http://{}", self.postback_addr)),
            bridge_status_interval: Duration::from_secs(1),
            leader_election: None,
            shutdown_grace: Duration::from_secs(20),
            bridge_max_seen_ids: ctwa_operator::bridge::dedupe::DEFAULT_MAX_SEEN_IDS,
            signals_requests_per_second: 10,
        }
    }

    /// Run the operator in this process (stopped when the Env is dropped).
    pub fn start_operator(&mut self, resync: Duration) {
        let config = self.operator_config(resync);
        self.operator = Some(tokio::spawn(run(self.client.clone(), config)));
    }

    /// Run the operator in this process with its own client and configuration.
    pub fn start_operator_with(&mut self, client: kube::Client, config: OperatorConfig) {
        self.operator = Some(tokio::spawn(run(client, config)));
    }

    /// The operator binary as a child process with `args` and environment `envs`, its output
    /// in the log directory.
    pub fn spawn_operator(&self, args: Vec<String>, envs: &[(&str, &str)]) -> std::process::Child {
        std::process::Command::new(env!("CARGO_BIN_EXE_ctwa-operator"))
            .args(args)
            .envs(envs.iter().copied())
            .env("KUBECONFIG", ctwa_testenv::kubeconfig_path())
            .stdout(child_output())
            .stderr(child_output())
            .spawn()
            .expect("the operator binary starts")
    }

    /// Seed `events` into the Signals events list of app c1/a1.
    pub fn seed(&self, events: &[events::Generated]) {
        self.fake
            .seed_events("c1", "a1", events.iter().map(|g| g.event.clone()).collect());
    }

    /// The flags that make `ctwa-operator run` talk to this environment.
    pub fn operator_args(&self) -> Vec<String> {
        let c = self.operator_config(Duration::from_secs(600));
        vec![
            "run".into(),
            format!("--namespace={}", self.ns.name),
            format!("--signals-url={}", c.signals_url),
            format!("--hub-url={}", c.hub_url),
            format!("--x-ads-url={}", c.x_ads_url),
            format!("--metrics-addr={}", c.metrics_addr),
            format!("--postback-addr={}", c.postback_addr),
            format!(
                "--public-base-url={}",
                c.public_base_url.unwrap_or_default()
            ),
            "--bridge-status-interval=1s".into(),
            format!(
                "--log-level={}",
                if log_dir().is_some() { "trace" } else { "warn" }
            ),
            "--log-format=json".into(),
        ]
    }
}

/// The namespace, Secrets and fakes, for tests that run the operator themselves.
pub async fn env_without_operator(prefix: &str) -> Env {
    init_logging();
    let client = client().await;
    let ns = TestNamespace::create(&client, prefix).await;
    let fake = FakeUpstreams::start().await.unwrap();
    fake.add_hub_user("u", DIALOG_PASSWORD);
    fake.add_channel("p1", "c1", "ch1");
    fake.add_x_credentials(
        XCredentials {
            consumer_key: "ck".into(),
            consumer_secret: X_CONSUMER_SECRET.into(),
            access_token: "at".into(),
            access_token_secret: X_ACCESS_TOKEN_SECRET.into(),
        },
        &["acc1"],
    );
    fake.add_x_account("acc1", "pix1");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns.name);
    for (name, data) in [
        (
            "dialog360",
            json!({"username": "u", "password": DIALOG_PASSWORD}),
        ),
        (
            "x-ads",
            json!({"consumer-key": "ck", "consumer-secret": X_CONSUMER_SECRET, "access-token": "at", "access-token-secret": X_ACCESS_TOKEN_SECRET}),
        ),
    ] {
        let secret: Secret = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "stringData": data
        }))
        .unwrap();
        secrets
            .create(&PostParams::default(), &secret)
            .await
            .unwrap();
    }
    Env {
        fake,
        ns,
        client,
        postback_addr: free_addr(),
        metrics_addr: free_addr(),
        operator: None,
    }
}

impl Env {
    pub fn api<K>(&self) -> Api<K>
    where
        K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
    {
        Api::namespaced(self.client.clone(), &self.ns.name)
    }

    pub async fn create<K>(&self, manifest: Value) -> K
    where
        K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + serde::Serialize
            + std::fmt::Debug,
    {
        let obj: K = serde_json::from_value(manifest).unwrap();
        self.api::<K>()
            .create(&PostParams::default(), &obj)
            .await
            .unwrap()
    }

    /// Polls until `check` holds on the object (as JSON), or fails after 20 s with the last state.
    pub async fn wait_for<K>(&self, name: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value
    where
        K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + serde::Serialize
            + std::fmt::Debug,
    {
        self.wait_until::<K>(name, what, check, Duration::from_secs(20))
            .await
    }

    /// Like `wait_for`, with two minutes for runs through injected faults and restarts.
    pub async fn wait_for_long<K>(&self, name: &str, check: impl Fn(&Value) -> bool) -> Value
    where
        K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + serde::Serialize
            + std::fmt::Debug,
    {
        self.wait_until::<K>(name, "convergence", check, Duration::from_secs(120))
            .await
    }

    /// Waits until `check` holds, or fails after `timeout` with the last state.
    pub async fn wait_until<K>(
        &self,
        name: &str,
        what: &str,
        check: impl Fn(&Value) -> bool,
        timeout: Duration,
    ) -> Value
    where
        K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + serde::Serialize
            + std::fmt::Debug,
    {
        let api = self.api::<K>();
        let deadline = std::time::Instant::now() + timeout;
        let mut last = Value::Null;
        while std::time::Instant::now() < deadline {
            if let Some(o) = api.get_opt(name).await.unwrap() {
                let v = serde_json::to_value(&o).unwrap();
                if check(&v) {
                    return v;
                }
                last = v;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{name}: {what} not reached within {timeout:?}; last: {last:#}");
    }

    pub async fn wait_gone<K>(&self, name: &str)
    where
        K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + std::fmt::Debug,
    {
        for _ in 0..200 {
            if self.api::<K>().get_opt(name).await.unwrap().is_none() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let o = self.api::<K>().get_opt(name).await.unwrap();
        panic!(
            "{name} still exists after 20s: {:?}",
            o.map(|o| o.finalizers().to_vec())
        );
    }

    /// The reasons of every Event in the test's namespace.
    pub async fn event_reasons(&self) -> Vec<String> {
        let events: Api<k8s_openapi::api::events::v1::Event> =
            Api::namespaced(self.client.clone(), &self.ns.name);
        events
            .list(&kube::api::ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter_map(|e| e.reason)
            .collect()
    }

    pub fn operations(&self, prefix: &str) -> Vec<String> {
        self.fake
            .requests()
            .into_iter()
            .filter(|r| r.operation.starts_with(prefix))
            .map(|r| r.operation)
            .collect()
    }
}

/// One sample of a Prometheus text exposition: the first line of `family` whose labels
/// include every `(name, value)` of `labels`.
pub fn sample(text: &str, family: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{family}{{")) || l.starts_with(&format!("{family} ")))
        .find(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

impl Env {
    /// What the operator's `/metrics` says right now.
    pub async fn metrics_text(&self) -> String {
        reqwest::get(format!("http://{}/metrics", self.metrics_addr))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

/// `(status, reason)` of a condition type.
pub fn condition(o: &Value, type_: &str) -> Option<(String, String)> {
    o["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
        .map(|c| {
            (
                c["status"].as_str().unwrap_or("").to_string(),
                c["reason"].as_str().unwrap_or("").to_string(),
            )
        })
}

/// Ready=True with the given reason, for the current generation.
pub fn ready_with(reason: &'static str) -> impl Fn(&Value) -> bool {
    move |o| {
        condition(o, "Ready") == Some(("True".into(), reason.into()))
            && o["status"]["observedGeneration"] == o["metadata"]["generation"]
    }
}

pub fn ready(o: &Value) -> bool {
    ready_with("Available")(o)
}
