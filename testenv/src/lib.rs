//! Test and bench support: a real Kubernetes control plane (etcd + kube-apiserver +
//! kube-controller-manager) on loopback, started on demand by `scripts/control-plane.sh`, and
//! everything a test or bench of the operator sets up on it.
//!
//! - The control plane: [`client`] gives a client for a running API server with the
//!   project's CRDs installed. When the control plane cannot be started the call panics with
//!   the script's output: an integration test must fail loudly, never pass by skipping.
//!   [`TestNamespace`], [`apply`], [`create`], [`replace`], [`kubectl`] work on it.
//! - The fixture: the fakes with one Hub user, channel, X credential, account and pixel
//!   ([`start_fakes`]), and the Secrets with those credentials ([`create_secrets`]).
//! - [`Env`]: a namespace with the fixture, and the operator scoped to it, in this process
//!   or as a child process; waiting for objects, counting what the fakes received, reading
//!   the operator's `/metrics`.
//! - Reading status: [`condition`], [`ready`], [`ready_with`], [`ready_true`]; Prometheus
//!   text: [`sample`].
//! - [`events`]: Signals events, ConversionBridge manifests and what X must receive.
//! - Logs: [`log_dir`], [`init_logging`], [`child_output`].
#![forbid(unsafe_code)]

mod env;
pub mod events;
mod fixture;
mod logs;
mod status;

pub use env::{DEFAULT_RESYNC, Env, Kind};
pub use fixture::{
    APP_ID, CHANNEL_ID, CLIENT_ID, DIALOG_PASSWORD, DIALOG_SECRET, DIALOG_USERNAME, PARTNER_ID,
    X_ACCESS_TOKEN, X_ACCESS_TOKEN_SECRET, X_ACCOUNT, X_CONSUMER_KEY, X_CONSUMER_SECRET, X_PIXEL,
    X_SECRET, create_secrets, start_fakes, x_credentials,
};
pub use logs::{child_output, init_logging, log_dir};
pub use status::{condition, condition_full, ready, ready_true, ready_with, sample};

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

/// A loopback address with a port that was free a moment ago.
pub fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
}

/// Root of the repository (the parent of this crate).
pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("testenv lives inside the repository")
}

/// Starts the control plane unless it already runs and returns its kubeconfig path.
/// Runs the script once per test process; the script itself serialises concurrent test
/// binaries with a file lock.
pub fn ensure_control_plane() -> &'static Path {
    static KUBECONFIG: OnceLock<PathBuf> = OnceLock::new();
    KUBECONFIG.get_or_init(|| {
        let etcd =
            etcd_bin_vendored::etcd_bin_path().expect("etcd-bin-vendored supports this platform");
        let output = Command::new(repo_root().join("scripts/control-plane.sh"))
            .arg("up")
            .env("CTWA_ETCD_BIN", etcd)
            .output()
            .expect("scripts/control-plane.sh could not be executed");
        if !output.status.success() {
            panic!(
                "the local control plane could not start ({}):\n{}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            );
        }
        PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())
    })
}

/// Path of the kubeconfig for `kubectl` calls from tests.
pub fn kubeconfig_path() -> PathBuf {
    ensure_control_plane().to_path_buf()
}

/// A client for the local control plane with the CRDs from `crds/` installed and established.
pub async fn client() -> Client {
    let path = ensure_control_plane();
    let kubeconfig = Kubeconfig::read_from(path).expect("kubeconfig written by the script");
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("valid kubeconfig");
    let client = Client::try_from(config).expect("client from kubeconfig");
    install_crds(&client).await;
    client
}

/// Applies every CRD in `crds/` with server-side apply and waits until each is established.
pub async fn install_crds(client: &Client) {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let dir = repo_root().join("crds");
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("crds/ exists") {
        let path = entry.expect("readable crds/ entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("readable CRD file");
        let crd: CustomResourceDefinition = serde_saphyr::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not a CRD: {e}", path.display()));
        let name = crd.metadata.name.clone().expect("CRD has a name");
        api.patch(
            &name,
            &PatchParams::apply("ctwa-testenv").force(),
            &Patch::Apply(&crd),
        )
        .await
        .unwrap_or_else(|e| panic!("applying {}: {e}", path.display()));
        names.push(name);
    }
    for name in names {
        wait_established(&api, &name).await;
    }
}

async fn wait_established(api: &Api<CustomResourceDefinition>, name: &str) {
    for _ in 0..200 {
        let crd = api.get(name).await.expect("CRD readable");
        let established = crd
            .status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True");
        if established {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("CRD {name} was not established within 10s");
}

/// A namespace of its own for one test, so tests can run in parallel.
pub struct TestNamespace {
    pub name: String,
    client: Client,
}

impl TestNamespace {
    /// Creates `<prefix>-<random suffix>`.
    pub async fn create(client: &Client, prefix: &str) -> Self {
        let name = format!("{prefix}-{}", random_suffix());
        let ns: Namespace = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": { "name": name, "labels": { "ctwa.dev/test": "true" } }
        }))
        .expect("namespace object");
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .unwrap_or_else(|e| panic!("creating namespace {name}: {e}"));
        Self {
            name,
            client: client.clone(),
        }
    }

    /// Deletes the namespace (kube-controller-manager removes what is in it).
    pub async fn delete(self) {
        self.delete_now().await;
    }

    /// As [`TestNamespace::delete`], for a namespace that is part of something else.
    pub(crate) async fn delete_now(&self) {
        let _ = Api::<Namespace>::all(self.client.clone())
            .delete(&self.name, &DeleteParams::default())
            .await;
    }
}

fn random_suffix() -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{:x}{:x}{}", std::process::id(), nanos, n)
}

/// Server-side applies one object (as `kubectl apply --server-side` does, with strict field
/// validation) into `namespace` and returns what the API server stored.
pub async fn apply(
    client: &Client,
    namespace: &str,
    object: &serde_json::Value,
) -> Result<kube::api::DynamicObject, kube::Error> {
    let api = dynamic_api(client, namespace, object).await?;
    let name = object["metadata"]["name"]
        .as_str()
        .expect("object has metadata.name");
    let params = PatchParams {
        field_manager: Some("ctwa-test".into()),
        field_validation: Some(kube::api::ValidationDirective::Strict),
        force: true,
        ..Default::default()
    };
    api.patch(name, &params, &Patch::Apply(object)).await
}

/// An `Api<DynamicObject>` for the kind of `object`, found through discovery.
pub async fn dynamic_api(
    client: &Client,
    namespace: &str,
    object: &serde_json::Value,
) -> Result<Api<kube::api::DynamicObject>, kube::Error> {
    let api_version = object["apiVersion"]
        .as_str()
        .expect("object has apiVersion");
    let kind = object["kind"].as_str().expect("object has kind");
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let gvk = kube::api::GroupVersionKind::gvk(group, version, kind);
    let (resource, _) = kube::discovery::pinned_kind(client, &gvk).await?;
    Ok(Api::namespaced_with(client.clone(), namespace, &resource))
}

/// Every YAML document of a file, as JSON values.
pub fn read_yaml_documents(path: &Path) -> Vec<serde_json::Value> {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_saphyr::from_multiple::<serde_json::Value>(&text)
        .unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", path.display()))
        .into_iter()
        .filter(|doc| !doc.is_null())
        .collect()
}

/// Runs kubectl against the local control plane and returns its stdout, panicking with its
/// stderr when it fails.
pub fn kubectl(args: &[&str]) -> String {
    let output = Command::new("kubectl")
        .args(args)
        .env("KUBECONFIG", kubeconfig_path())
        .output()
        .expect("kubectl is installed");
    assert!(
        output.status.success(),
        "kubectl {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Creates one object the way `kubectl create` / client-side `kubectl apply` does: a POST
/// with strict field validation, so unknown fields are errors rather than silently dropped.
pub async fn create(
    client: &Client,
    namespace: &str,
    object: &serde_json::Value,
) -> Result<kube::api::DynamicObject, kube::Error> {
    let api = dynamic_api(client, namespace, object).await?;
    let url = format!("{}?fieldValidation=Strict", api.resource_url());
    send_json(client, http::Method::POST, url, object).await
}

/// Replaces one object (PUT of the whole object at its current resourceVersion) with strict
/// field validation, as `kubectl replace` does. Fields absent from `object` are removed.
pub async fn replace(
    client: &Client,
    namespace: &str,
    object: &serde_json::Value,
) -> Result<kube::api::DynamicObject, kube::Error> {
    let api = dynamic_api(client, namespace, object).await?;
    let name = object["metadata"]["name"]
        .as_str()
        .expect("object has metadata.name");
    let current = api.get(name).await?;
    let mut object = object.clone();
    object["metadata"]["resourceVersion"] = serde_json::json!(current.metadata.resource_version);
    let url = format!("{}/{name}?fieldValidation=Strict", api.resource_url());
    send_json(client, http::Method::PUT, url, &object).await
}

async fn send_json(
    client: &Client,
    method: http::Method,
    url: String,
    object: &serde_json::Value,
) -> Result<kube::api::DynamicObject, kube::Error> {
    let request = http::Request::builder()
        .method(method)
        .uri(url)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(serde_json::to_vec(object).expect("JSON object"))
        .expect("valid request");
    client.request(request).await
}

/// The requests the API server answered so far, by `"<VERB> <resource>[/<subresource>]"`, from
/// its own `apiserver_request_total` (every code, every client), for the resources named.
pub async fn apiserver_requests(
    client: &Client,
    resources: &[&str],
) -> std::collections::BTreeMap<String, f64> {
    let request = http::Request::get("/metrics")
        .body(Vec::new())
        .expect("valid request");
    let text = client.request_text(request).await.unwrap_or_default();
    let mut counts = std::collections::BTreeMap::new();
    for line in text.lines() {
        let Some(labels) = line.strip_prefix("apiserver_request_total{") else {
            continue;
        };
        let Some((labels, value)) = labels.rsplit_once("} ") else {
            continue;
        };
        let label = |name: &str| {
            labels
                .split(&format!("{name}=\""))
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .unwrap_or_default()
        };
        let resource = label("resource");
        if label("component") != "apiserver" || !resources.contains(&resource) {
            continue;
        }
        let subresource = label("subresource");
        let key = if subresource.is_empty() {
            format!("{} {resource}", label("verb"))
        } else {
            format!("{} {resource}/{subresource}", label("verb"))
        };
        *counts.entry(key).or_default() += value.trim().parse::<f64>().unwrap_or(0.0);
    }
    counts
}
