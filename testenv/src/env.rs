//! One test's or bench's world: a namespace of its own on the local control plane, the fakes
//! with the fixture's credentials, the Secrets that hold them, and the operator scoped to
//! that namespace, in this process or as a child process.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use ctwa_operator::operator::{OperatorConfig, run};
use fake_upstreams::FakeUpstreams;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DynamicObject, ListParams, PostParams};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::fixture::{APP_ID, CLIENT_ID, create_secrets, start_fakes};
use crate::{TestNamespace, child_output, events, free_addr, init_logging, kubeconfig_path};

/// The resync interval of an operator started without one: long enough that no test sees a
/// resync it did not ask for.
pub const DEFAULT_RESYNC: Duration = Duration::from_secs(600);

/// A namespaced kind whose objects the helpers below read and write as JSON.
pub trait Kind:
    Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
    + Clone
    + DeserializeOwned
    + serde::Serialize
    + std::fmt::Debug
{
}

impl<K> Kind for K where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug
{
}

/// A namespace, the fakes and the Secrets, and (once started) the operator.
pub struct Env {
    pub fake: FakeUpstreams,
    pub ns: TestNamespace,
    pub client: kube::Client,
    /// Where the operator's postback receiver listens.
    pub postback_addr: SocketAddr,
    /// Where the operator's `/metrics` listens.
    pub metrics_addr: SocketAddr,
    /// The `ctwa-operator` binary that [`Env::spawn_operator`] runs.
    operator_bin: PathBuf,
    operator: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Some(operator) = &self.operator {
            operator.abort();
        }
    }
}

impl Env {
    /// The namespace `<prefix>-<suffix>`, the Secrets and the fakes, for callers that run the
    /// operator themselves. `operator_bin` is the `ctwa-operator` binary for
    /// [`Env::spawn_operator`]: from a test or bench of the root crate,
    /// `env!("CARGO_BIN_EXE_ctwa-operator")`.
    pub async fn without_operator(prefix: &str, operator_bin: impl Into<PathBuf>) -> Env {
        init_logging();
        let client = crate::client().await;
        let ns = TestNamespace::create(&client, prefix).await;
        let fake = start_fakes().await;
        create_secrets(&client, &ns.name).await;
        Env {
            fake,
            ns,
            client,
            postback_addr: free_addr(),
            metrics_addr: free_addr(),
            operator_bin: operator_bin.into(),
            operator: None,
        }
    }

    /// As [`Env::without_operator`], with the operator running in this process.
    pub async fn with_operator(
        prefix: &str,
        operator_bin: impl Into<PathBuf>,
        resync: Duration,
    ) -> Env {
        let mut env = Env::without_operator(prefix, operator_bin).await;
        env.start_operator(resync);
        env
    }

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
            shards: 1,
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
    pub fn spawn_operator(&self, args: Vec<String>, envs: &[(&str, &str)]) -> Child {
        Command::new(&self.operator_bin)
            .args(args)
            .envs(envs.iter().copied())
            .env("KUBECONFIG", kubeconfig_path())
            .stdout(child_output())
            .stderr(child_output())
            .spawn()
            .expect("the operator binary starts")
    }

    /// `ctwa-operator run` with the flags that point it at this environment: its namespace,
    /// the fakes, and the metrics and postback addresses.
    pub fn run_args(&self) -> Vec<String> {
        let c = self.operator_config(DEFAULT_RESYNC);
        vec![
            "run".into(),
            format!("--namespace={}", self.ns.name),
            format!("--signals-url={}", c.signals_url),
            format!("--hub-url={}", c.hub_url),
            format!("--x-ads-url={}", c.x_ads_url),
            format!("--metrics-addr={}", c.metrics_addr),
            format!("--postback-addr={}", c.postback_addr),
        ]
    }

    /// The flags that make `ctwa-operator run` talk to this environment as the in-process
    /// operator does: [`Env::run_args`], the public base URL, a 1 s bridge status interval,
    /// and JSON logs (trace level into the log directory, warnings only without one).
    pub fn operator_args(&self) -> Vec<String> {
        let c = self.operator_config(DEFAULT_RESYNC);
        let mut args = self.run_args();
        args.extend([
            format!(
                "--public-base-url={}",
                c.public_base_url.unwrap_or_default()
            ),
            "--bridge-status-interval=1s".into(),
            format!(
                "--log-level={}",
                if crate::log_dir().is_some() {
                    "trace"
                } else {
                    "warn"
                }
            ),
            "--log-format=json".into(),
        ]);
        args
    }

    /// Seed `events` into the Signals events list of the fixture's app.
    pub fn seed(&self, events: &[events::Generated]) {
        self.fake.seed_events(
            CLIENT_ID,
            APP_ID,
            events.iter().map(|g| g.event.clone()).collect(),
        );
    }

    pub fn api<K>(&self) -> Api<K>
    where
        K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
    {
        Api::namespaced(self.client.clone(), &self.ns.name)
    }

    pub async fn create<K>(&self, manifest: Value) -> K
    where
        K: Kind,
    {
        let obj: K = serde_json::from_value(manifest).unwrap();
        self.api::<K>()
            .create(&PostParams::default(), &obj)
            .await
            .unwrap()
    }

    /// Creates an object of any kind from its manifest as `kubectl create` does (strict
    /// field validation, see [`crate::create`]), panicking when the API server refuses it.
    pub async fn create_manifest(&self, manifest: &Value) -> DynamicObject {
        crate::create(&self.client, &self.ns.name, manifest)
            .await
            .unwrap_or_else(|e| panic!("creating {}: {e}", manifest["metadata"]["name"]))
    }

    /// Polls until `check` holds on the object (as JSON), or fails after 20 s with the last state.
    pub async fn wait_for<K>(&self, name: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value
    where
        K: Kind,
    {
        self.wait_until::<K>(name, what, check, Duration::from_secs(20))
            .await
    }

    /// Like `wait_for`, with two minutes for runs through injected faults and restarts.
    pub async fn wait_for_long<K>(&self, name: &str, check: impl Fn(&Value) -> bool) -> Value
    where
        K: Kind,
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
        K: Kind,
    {
        let api = self.api::<K>();
        let deadline = Instant::now() + timeout;
        let mut last = Value::Null;
        while Instant::now() < deadline {
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

    /// How many objects of kind `K` in the namespace are Ready=True (whatever the reason).
    pub async fn ready_count<K>(&self) -> usize
    where
        K: Kind,
    {
        self.api::<K>()
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .iter()
            .filter(|o| crate::ready_true(&serde_json::to_value(o).unwrap()))
            .count()
    }

    /// The token of a bridge's postback receiver, once the operator has written its Secret
    /// (fails after two minutes).
    pub async fn postback_token(&self, bridge: &str) -> String {
        let secrets: Api<Secret> = self.api();
        let name = format!("{bridge}-postback-token");
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Some(s) = secrets.get_opt(&name).await.unwrap()
                && let Some(t) = s.data.as_ref().and_then(|d| d.get("token"))
            {
                return String::from_utf8(t.0.clone()).unwrap();
            }
            assert!(Instant::now() < deadline, "no {name} within 120s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Where the operator receives postbacks for `bridge`.
    pub fn postback_url(&self, bridge: &str, token: &str) -> String {
        format!(
            "http://{}/postbacks/{}/{bridge}/{token}",
            self.postback_addr, self.ns.name
        )
    }

    /// The reasons of every Event in the test's namespace.
    pub async fn event_reasons(&self) -> Vec<String> {
        let events: Api<k8s_openapi::api::events::v1::Event> = self.api();
        events
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter_map(|e| e.reason)
            .collect()
    }

    /// The operations the fakes received whose name starts with `prefix`, in order.
    pub fn operations(&self, prefix: &str) -> Vec<String> {
        self.fake
            .requests()
            .into_iter()
            .filter(|r| r.operation.starts_with(prefix))
            .map(|r| r.operation)
            .collect()
    }

    /// How many requests the fakes received per operation, for operations starting with
    /// `prefix`.
    pub fn operation_counts(&self, prefix: &str) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for operation in self.operations(prefix) {
            *counts.entry(operation).or_insert(0) += 1;
        }
        counts
    }

    /// How many requests of `operation` the fakes received, answered with `status` if given.
    pub fn request_count(&self, operation: &str, status: Option<u16>) -> usize {
        self.fake
            .requests()
            .iter()
            .filter(|r| r.operation == operation && status.is_none_or(|s| r.status == s))
            .count()
    }

    /// Waits until X has received `n` distinct conversions and returns how long that took;
    /// fails after `limit`.
    pub async fn wait_received(&self, n: usize, limit: Duration) -> Duration {
        let started = Instant::now();
        while self.fake.distinct_conversion_count() < n {
            assert!(
                started.elapsed() < limit,
                "only {} of {n} after {limit:?}",
                self.fake.distinct_conversion_count()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        started.elapsed()
    }

    /// What the operator's `/metrics` says right now.
    pub async fn metrics_text(&self) -> String {
        reqwest::get(format!("http://{}/metrics", self.metrics_addr))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Deletes the namespace (kube-controller-manager removes what is in it).
    pub async fn delete_namespace(&self) {
        self.ns.delete_now().await;
    }
}
