//! The Helm chart: lint, render with default and non-default values, validate every rendering
//! against the real API server, and run the operator with exactly the chart's RBAC.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::env_without_operator;
use common::events::bridge;
use ctwa_operator::api::{ConversionBridge, SignalsKeyword, SignalsPostback, XWebEventTag};
use ctwa_operator::operator::LeaseConfig;
use ctwa_testenv::{kubeconfig_path, repo_root};
use k8s_openapi::api::core::v1::Secret;
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::{Value, json};

const CHART: &str = "charts/ctwa-operator";

fn helm() -> String {
    let out = Command::new(repo_root().join("scripts/go-tool.sh"))
        .arg("helm")
        .stderr(Stdio::inherit())
        .output()
        .expect("scripts/go-tool.sh runs");
    assert!(out.status.success(), "installing helm failed");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn run(cmd: &mut Command, stdin: Option<&str>) -> (bool, String, String) {
    let mut child = cmd
        .current_dir(repo_root())
        .env("KUBECONFIG", kubeconfig_path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn template(helm: &str, namespace: &str, values: &[&str]) -> Result<String, String> {
    let mut cmd = Command::new(helm);
    // The control plane of the tests runs 1.34.
    cmd.args([
        "template",
        "ctwa",
        CHART,
        "--namespace",
        namespace,
        "--include-crds",
        "--kube-version",
        "1.34.4",
    ]);
    for v in values {
        cmd.args(["--set", v]);
    }
    match run(&mut cmd, None) {
        (true, out, _) => Ok(out),
        (false, _, err) => Err(err),
    }
}

fn kubectl_apply(manifests: &str, dry_run: bool) {
    let mut cmd = Command::new("kubectl");
    cmd.args(["apply", "-f", "-"]);
    if dry_run {
        cmd.arg("--dry-run=server");
    }
    let (ok, out, err) = run(&mut cmd, Some(manifests));
    assert!(ok, "kubectl apply failed:\n{err}\n{out}");
}

fn documents(yaml: &str) -> Vec<Value> {
    serde_saphyr::from_multiple::<Value>(yaml)
        .unwrap()
        .into_iter()
        .filter(|d| !d.is_null())
        .collect()
}

fn namespace(name: &str) {
    kubectl_apply(
        &format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n"),
        false,
    );
}

/// The chart must never let the operator delete or update Secrets.
fn assert_least_privilege(docs: &[Value]) {
    for d in docs
        .iter()
        .filter(|d| d["kind"] == "ClusterRole" || d["kind"] == "Role")
    {
        for rule in d["rules"].as_array().unwrap() {
            let resources: Vec<&str> = rule["resources"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(Value::as_str)
                .collect();
            let verbs: Vec<&str> = rule["verbs"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(Value::as_str)
                .collect();
            assert!(!verbs.contains(&"*") && !resources.contains(&"*"), "{rule}");
            if resources.contains(&"secrets") {
                assert!(
                    !verbs.contains(&"delete") && !verbs.contains(&"update"),
                    "{rule}"
                );
            }
        }
    }
}

#[tokio::test]
async fn the_chart_lints_renders_and_validates_on_the_api_server() {
    ctwa_testenv::client().await;
    let helm = helm();
    let (ok, out, err) = run(Command::new(&helm).args(["lint", CHART, "--strict"]), None);
    assert!(ok, "helm lint failed:\n{out}\n{err}");
    assert!(
        !out.contains("[WARNING]") && !out.contains("[ERROR]"),
        "{out}"
    );

    // Default values.
    namespace("ctwa-chart-default");
    let rendered = template(&helm, "ctwa-chart-default", &[]).unwrap();
    kubectl_apply(&rendered, true);
    let docs = documents(&rendered);
    assert_least_privilege(&docs);
    let deployment = docs.iter().find(|d| d["kind"] == "Deployment").unwrap();
    assert_eq!(deployment["spec"]["replicas"], 2);
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    let container = &pod["containers"][0];
    let sc = &container["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]));
    let args: Vec<&str> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(args.contains(&"--leader-election"), "{args:?}");
    assert!(docs.iter().any(|d| d["kind"] == "ClusterRole"));
    assert_eq!(
        docs.iter()
            .filter(|d| d["kind"] == "CustomResourceDefinition")
            .count(),
        5
    );

    // Every optional part switched on, scoped to two namespaces.
    for ns in ["ctwa-chart-a", "ctwa-chart-b", "ctwa-chart-full"] {
        namespace(ns);
    }
    kubectl_apply(SERVICE_MONITOR_CRD, false);
    let rendered = template(
        &helm,
        "ctwa-chart-full",
        &[
            "watchNamespaces={ctwa-chart-a,ctwa-chart-b}",
            "publicBaseUrl=https://ctwa.example.com",
            "ingress.enabled=true",
            "ingress.className=nginx",
            "ingress.host=ctwa.example.com",
            "ingress.tls.enabled=true",
            "ingress.tls.secretName=ctwa-tls",
            "serviceMonitor.enabled=true",
            "networkPolicy.enabled=true",
            "pdb.enabled=true",
            "replicaCount=3",
        ],
    )
    .unwrap();
    kubectl_apply(&rendered, true);
    let docs = documents(&rendered);
    assert_least_privilege(&docs);
    for kind in [
        "Ingress",
        "ServiceMonitor",
        "NetworkPolicy",
        "PodDisruptionBudget",
    ] {
        assert!(docs.iter().any(|d| d["kind"] == kind), "no {kind}");
    }
    assert!(!docs.iter().any(|d| d["kind"] == "ClusterRole"));
    let roles: Vec<&str> = docs
        .iter()
        .filter(|d| d["kind"] == "Role")
        .filter_map(|d| d["metadata"]["namespace"].as_str())
        .collect();
    assert_eq!(
        roles,
        vec!["ctwa-chart-a", "ctwa-chart-b", "ctwa-chart-full"]
    );

    // values.schema.json rejects bad values.
    for bad in ["replicaCount=two", "logFormat=xml", "unknownKey=1"] {
        let err = template(&helm, "ctwa-chart-default", &[bad]).unwrap_err();
        assert!(err.contains("schema"), "{bad}: {err}");
    }
}

const SERVICE_MONITOR_CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: servicemonitors.monitoring.coreos.com
spec:
  group: monitoring.coreos.com
  scope: Namespaced
  names: {kind: ServiceMonitor, listKind: ServiceMonitorList, plural: servicemonitors, singular: servicemonitor}
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          x-kubernetes-preserve-unknown-fields: true
"#;

/// A client that acts as the chart's ServiceAccount.
async fn impersonating(namespace: &str, service_account: &str) -> kube::Client {
    let kubeconfig = Kubeconfig::read_from(kubeconfig_path()).unwrap();
    let mut config =
        kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .unwrap();
    config.auth_info.impersonate = Some(format!(
        "system:serviceaccount:{namespace}:{service_account}"
    ));
    kube::Client::try_from(config).unwrap()
}

#[tokio::test]
async fn the_operator_converges_with_the_charts_rbac_and_no_more() {
    let mut env = env_without_operator("rbac").await;
    let helm = helm();
    let release_ns = format!("{}-op", env.ns.name);
    namespace(&release_ns);
    let rendered = template(
        &helm,
        &release_ns,
        &[&format!("watchNamespaces={{{}}}", env.ns.name)],
    )
    .unwrap();
    // RBAC and the ServiceAccount for real (the workload itself is run in-process).
    let rbac: Vec<Value> = documents(&rendered)
        .into_iter()
        .filter(|d| {
            ["ServiceAccount", "Role", "RoleBinding"].contains(&d["kind"].as_str().unwrap_or(""))
        })
        .collect();
    kubectl_apply(
        &json!({"apiVersion": "v1", "kind": "List", "items": rbac}).to_string(),
        false,
    );

    let operator = impersonating(&release_ns, "ctwa-ctwa-operator").await;
    let mut config = env.operator_config(Duration::from_secs(600));
    config.leader_election = Some(LeaseConfig {
        namespace: release_ns.clone(),
        name: "ctwa-ctwa-operator".into(),
        identity: "rbac-test".into(),
        duration: Duration::from_secs(15),
        // Publishing it on the Lease needs the chart's lease permissions too.
        postback_url: Some(format!("http://{}", env.postback_addr)),
    });
    env.start_operator_with(operator.clone(), config);

    let tag = env.create::<XWebEventTag>(json!({
        "apiVersion": "ctwa.dev/v1alpha1", "kind": "XWebEventTag", "metadata": {"name": "purchase"},
        "spec": {"accountId": "acc1", "name": "Purchase", "type": "PURCHASE", "clickWindow": 30,
                 "viewThroughWindow": 1, "secretRef": {"name": "x-ads"}}
    }))
    .await;
    env.create::<SignalsKeyword>(json!({
        "apiVersion": "ctwa.dev/v1alpha1", "kind": "SignalsKeyword", "metadata": {"name": "k"},
        "spec": {"clientId": "c1", "appId": "a1", "keyword": "order confirmed", "adId": "ad1",
                 "secretRef": {"name": "dialog360"}}
    }))
    .await;
    let now = jiff::Timestamp::from_second(jiff::Timestamp::now().as_second()).unwrap();
    env.create::<ConversionBridge>(bridge(
        "b",
        now,
        json!({"source": {"postbacks": {"enabled": true}},
               "destination": {"x": {"eventTagRef": {"name": tag.metadata.name.unwrap()}}}}),
    ))
    .await;
    env.create::<SignalsPostback>(json!({
        "apiVersion": "ctwa.dev/v1alpha1", "kind": "SignalsPostback", "metadata": {"name": "p"},
        "spec": {"clientId": "c1", "appId": "a1", "adId": "ad1", "event": "Ad",
                 "bridgeRef": {"name": "b"}, "secretRef": {"name": "dialog360"}}
    }))
    .await;
    env.wait_for_long::<XWebEventTag>("purchase", common::ready)
        .await;
    env.wait_for_long::<SignalsKeyword>("k", common::ready)
        .await;
    env.wait_for_long::<ConversionBridge>("b", |o| {
        common::condition(o, "Ready") == Some(("True".into(), "Available".into()))
    })
    .await;
    env.wait_for_long::<SignalsPostback>("p", common::ready)
        .await;
    assert!(env.event_reasons().await.iter().any(|r| r == "Available"));

    // No more than that: no Secret of another namespace, no deleting Secrets.
    let elsewhere: kube::Api<Secret> = kube::Api::namespaced(operator.clone(), &release_ns);
    let err = elsewhere.list(&Default::default()).await.unwrap_err();
    assert!(
        matches!(&err, kube::Error::Api(e) if e.code == 403),
        "{err}"
    );
    let here: kube::Api<Secret> = kube::Api::namespaced(operator.clone(), &env.ns.name);
    let err = here
        .delete("dialog360", &Default::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, kube::Error::Api(e) if e.code == 403),
        "{err}"
    );
    let all: kube::Api<Secret> = kube::Api::all(operator);
    assert!(all.list(&Default::default()).await.is_err());
}
