//! The Helm chart: lint, render with default and non-default values, validate every rendering
//! against the real API server, and run the operator with exactly the chart's RBAC.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
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
    template_with(helm, namespace, values, None)
}

/// `helm template` with `--set` values and, optionally, a values file (for lists of objects,
/// which `--set` spells badly).
fn template_with(
    helm: &str,
    namespace: &str,
    values: &[&str],
    values_yaml: Option<&str>,
) -> Result<String, String> {
    static FILES: AtomicUsize = AtomicUsize::new(0);
    let mut cmd = Command::new(helm);
    // The control plane of the tests runs 1.34.
    cmd.args([
        "template",
        "ctwa",
        CHART,
        "--namespace",
        namespace,
        "--kube-version",
        "1.34.4",
    ]);
    let file = values_yaml.map(|yaml| {
        let path = std::env::temp_dir().join(format!(
            "ctwa-chart-values-{}-{}.yaml",
            std::process::id(),
            FILES.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&path, yaml).unwrap();
        path
    });
    if let Some(path) = &file {
        cmd.arg("--values").arg(path);
    }
    for v in values {
        cmd.args(["--set", v]);
    }
    let result = match run(&mut cmd, None) {
        (true, out, _) => Ok(out),
        (false, _, err) => Err(err),
    };
    if let Some(path) = file {
        let _ = std::fs::remove_file(path);
    }
    result
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

/// Server-side dry run of a rendering. The ServiceAccount is created for real first: the API
/// server admits the `helm test` Pod only when its ServiceAccount exists.
fn dry_run(rendered: &str) {
    let accounts: Vec<Value> = documents(rendered)
        .into_iter()
        .filter(|d| d["kind"] == "ServiceAccount")
        .collect();
    if !accounts.is_empty() {
        kubectl_apply(
            &json!({"apiVersion": "v1", "kind": "List", "items": accounts}).to_string(),
            false,
        );
    }
    kubectl_apply(rendered, true);
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
            let resources = strs(&rule["resources"]);
            let verbs = strs(&rule["verbs"]);
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

const FULLNAME: &str = "ctwa-ctwa-operator";

fn strs(v: &Value) -> Vec<&str> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

fn named<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

fn deployment_pod(docs: &[Value]) -> &Value {
    &named(docs, "Deployment", FULLNAME)["spec"]["template"]["spec"]
}

fn check_pod(docs: &[Value]) -> &Value {
    named(docs, "Pod", &format!("{FULLNAME}-check"))
}

fn env_names(container: &Value) -> Vec<&str> {
    container["env"]
        .as_array()
        .map(|a| a.iter().filter_map(|e| e["name"].as_str()).collect())
        .unwrap_or_default()
}

/// Metrics stay inside the cluster: only the ClusterIP metrics Service carries port 8080, and
/// the postbacks Service (which may be a LoadBalancer or sit behind the Ingress) carries 8081 only.
fn assert_metrics_private(docs: &[Value]) {
    let services = of_kind(docs, "Service");
    assert_eq!(services.len(), 2, "{services:?}");
    for svc in &services {
        let name = svc["metadata"]["name"].as_str().unwrap();
        let ports = svc["spec"]["ports"].as_array().unwrap();
        let exposes_metrics = ports
            .iter()
            .any(|p| p["port"] == 8080 || p["targetPort"] == 8080 || p["targetPort"] == "metrics");
        if name == format!("{FULLNAME}-metrics") {
            assert_eq!(svc["spec"]["type"], "ClusterIP", "{svc}");
            assert_eq!(ports.len(), 1, "{svc}");
            assert!(exposes_metrics, "{svc}");
        } else {
            assert_eq!(name, format!("{FULLNAME}-postbacks"));
            assert!(!exposes_metrics, "{svc}");
            assert_eq!(ports.len(), 1, "{svc}");
            assert_eq!(ports[0]["port"], 8081, "{svc}");
            assert_eq!(ports[0]["targetPort"], "postbacks", "{svc}");
        }
    }
    for ingress in of_kind(docs, "Ingress") {
        for rule in ingress["spec"]["rules"].as_array().unwrap() {
            for path in rule["http"]["paths"].as_array().unwrap() {
                assert_eq!(path["path"], "/postbacks", "{ingress}");
                let backend = &path["backend"]["service"];
                assert_eq!(
                    backend["name"],
                    format!("{FULLNAME}-postbacks"),
                    "{ingress}"
                );
                assert_eq!(backend["port"]["name"], "postbacks", "{ingress}");
            }
        }
        assert!(ingress["spec"]["defaultBackend"].is_null(), "{ingress}");
    }
}

/// `helm test` checks what the operator uses: the same upstreams and namespaces, the same
/// ServiceAccount, image, security contexts and extra environment.
fn assert_check_pod_matches_operator(docs: &[Value]) {
    let pod = deployment_pod(docs);
    let operator = &pod["containers"][0];
    let check = check_pod(docs);
    assert_eq!(check["metadata"]["annotations"]["helm.sh/hook"], "test");
    assert_eq!(
        check["metadata"]["annotations"]["helm.sh/hook-delete-policy"],
        "before-hook-creation,hook-succeeded"
    );
    // Not one of the operator's Pods: no Service, budget or NetworkPolicy may select it.
    assert!(check["metadata"]["labels"]["app.kubernetes.io/name"].is_null());
    let spec = &check["spec"];
    assert_eq!(spec["restartPolicy"], "Never");
    assert_eq!(spec["serviceAccountName"], pod["serviceAccountName"]);
    assert_eq!(spec["securityContext"], pod["securityContext"]);
    assert_eq!(spec["imagePullSecrets"], pod["imagePullSecrets"]);
    let container = &spec["containers"][0];
    assert_eq!(container["image"], operator["image"]);
    assert_eq!(container["securityContext"], operator["securityContext"]);
    let shared = |a: &str| {
        [
            "--signals-url=",
            "--hub-url=",
            "--x-ads-url=",
            "--namespace=",
            "--leader-election-namespace=",
            "--lease-name=",
            "--shards=",
        ]
        .iter()
        .any(|p| a.starts_with(p))
    };
    let args = strs(&container["args"]);
    assert_eq!(args[0], "check");
    let expected: Vec<&str> = strs(&operator["args"])
        .into_iter()
        .filter(|a| shared(a))
        .collect();
    assert_eq!(args[1..], expected[..]);
    let lease = usize::from(operator_args_have(operator, "--leader-election"));
    assert_eq!(
        expected.len(),
        3 + 2 * lease
            + usize::from(operator_args_have(operator, "--shards=6"))
            + args
                .iter()
                .filter(|a| a.starts_with("--namespace="))
                .count()
    );
    // Every extra variable of the operator (a proxy) applies to the check too.
    let operator_env = operator["env"].as_array().unwrap();
    for e in container["env"].as_array().into_iter().flatten() {
        assert!(operator_env.contains(e), "{e}");
    }
    let builtin = ["POD_NAME", "POD_NAMESPACE", "POD_IP"];
    let extra = operator_env
        .iter()
        .filter(|e| !builtin.contains(&e["name"].as_str().unwrap()))
        .count();
    assert_eq!(container["env"].as_array().map_or(0, Vec::len), extra);
}

fn operator_args_have(container: &Value, arg: &str) -> bool {
    strs(&container["args"]).contains(&arg)
}

fn crd_count() -> usize {
    std::fs::read_dir(repo_root().join(CHART).join("files/crds"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "yaml")
        })
        .count()
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
    dry_run(&rendered);
    let docs = documents(&rendered);
    assert_least_privilege(&docs);
    assert_metrics_private(&docs);
    assert_check_pod_matches_operator(&docs);
    let deployment = named(&docs, "Deployment", FULLNAME);
    assert_eq!(deployment["spec"]["replicas"], 2);
    let selector = &deployment["spec"]["selector"]["matchLabels"];
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["securityContext"]["runAsUser"], 65532);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    assert_eq!(
        pod["topologySpreadConstraints"],
        json!([{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
                "whenUnsatisfiable": "ScheduleAnyway", "labelSelector": {"matchLabels": selector}}])
    );
    let container = &pod["containers"][0];
    assert_eq!(
        container["image"],
        "ghcr.io/ctwa-operator/ctwa-operator:0.1.0"
    );
    let sc = &container["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]));
    let args = strs(&container["args"]);
    assert!(args.contains(&"--leader-election"), "{args:?}");
    // Followers forward postbacks to the URL the leader advertises on its Lease.
    assert!(
        args.contains(&"--postback-advertise-url=http://$(POD_IP):8081"),
        "{args:?}"
    );
    assert!(container["env"].as_array().unwrap().contains(
        &json!({"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}})
    ));
    let lease_role = named(&docs, "Role", &format!("{FULLNAME}-leader-election"));
    assert!(lease_role["rules"].as_array().unwrap().iter().any(|r| {
        strs(&r["resourceNames"]) == [FULLNAME]
            && ["get", "update", "patch"]
                .iter()
                .all(|v| strs(&r["verbs"]).contains(v))
    }));
    let pdb = named(&docs, "PodDisruptionBudget", FULLNAME);
    assert_eq!(pdb["spec"]["maxUnavailable"], 1);
    assert!(pdb["spec"]["minAvailable"].is_null());
    assert_eq!(&pdb["spec"]["selector"]["matchLabels"], selector);
    // The CRDs are templates (upgraded by helm upgrade), labelled and kept on uninstall; the
    // operator and the aggregated roles cover every kind the chart installs.
    let crds = of_kind(&docs, "CustomResourceDefinition");
    assert_eq!(crds.len(), crd_count());
    let operator_role = named(&docs, "ClusterRole", FULLNAME);
    let view = named(&docs, "ClusterRole", &format!("{FULLNAME}-view"));
    let edit = named(&docs, "ClusterRole", &format!("{FULLNAME}-edit"));
    for crd in &crds {
        let meta = &crd["metadata"];
        assert_eq!(
            meta["annotations"]["helm.sh/resource-policy"], "keep",
            "{meta}"
        );
        assert_eq!(meta["labels"]["app.kubernetes.io/managed-by"], "Helm");
        assert_eq!(meta["labels"]["helm.sh/chart"], "ctwa-operator-0.2.0");
        let plural = crd["spec"]["names"]["plural"].as_str().unwrap();
        for role in [operator_role, view, edit] {
            for suffix in ["", "/status", "/finalizers"] {
                if role != operator_role && !suffix.is_empty() {
                    continue;
                }
                let resource = format!("{plural}{suffix}");
                assert!(
                    role["rules"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|r| strs(&r["resources"]).contains(&resource.as_str())),
                    "{resource} missing in {}",
                    role["metadata"]["name"]
                );
            }
        }
    }
    let labels = |r: &Value, key: &str| r["metadata"]["labels"][key] == "true";
    for key in ["view", "edit", "admin"] {
        assert!(labels(
            view,
            &format!("rbac.authorization.k8s.io/aggregate-to-{key}")
        ));
    }
    assert!(labels(edit, "rbac.authorization.k8s.io/aggregate-to-edit"));
    assert!(labels(edit, "rbac.authorization.k8s.io/aggregate-to-admin"));
    assert!(!labels(edit, "rbac.authorization.k8s.io/aggregate-to-view"));
    assert_eq!(strs(&view["rules"][0]["verbs"]), ["get", "list", "watch"]);
    assert!(!strs(&edit["rules"][0]["verbs"]).contains(&"get"));
    assert!(of_kind(&docs, "NetworkPolicy").is_empty());
    assert!(of_kind(&docs, "Ingress").is_empty());

    // CRDs left to someone else; kept CRDs only when asked; roles for people optional; one
    // replica needs no budget.
    let rendered = template(
        &helm,
        "ctwa-chart-default",
        &[
            "crds.enabled=false",
            "rbac.aggregatedRoles=false",
            "replicaCount=1",
        ],
    )
    .unwrap();
    dry_run(&rendered);
    let docs = documents(&rendered);
    assert!(of_kind(&docs, "CustomResourceDefinition").is_empty());
    assert_eq!(of_kind(&docs, "ClusterRole").len(), 1);
    assert!(of_kind(&docs, "PodDisruptionBudget").is_empty());
    let rendered = template(&helm, "ctwa-chart-default", &["crds.keep=false"]).unwrap();
    let docs = documents(&rendered);
    let crds = of_kind(&docs, "CustomResourceDefinition");
    assert_eq!(crds.len(), crd_count());
    assert!(
        crds.iter()
            .all(|c| c["metadata"]["annotations"]["helm.sh/resource-policy"].is_null())
    );

    // Sharded: the flag, Leases the replicas list and take (shard and member Leases, in the
    // release namespace only), a budget that moves one replica's shards at a time.
    let rendered = template(&helm, "ctwa-chart-default", &["shards=6", "replicaCount=3"]).unwrap();
    dry_run(&rendered);
    let docs = documents(&rendered);
    assert_least_privilege(&docs);
    assert_check_pod_matches_operator(&docs);
    let args = strs(&deployment_pod(&docs)["containers"][0]["args"]);
    assert!(args.contains(&"--shards=6"), "{args:?}");
    let lease_role = named(&docs, "Role", &format!("{FULLNAME}-leader-election"));
    assert_eq!(lease_role["metadata"]["namespace"], "ctwa-chart-default");
    let lease_rules = lease_role["rules"].as_array().unwrap();
    assert!(lease_rules.iter().any(|r| {
        strs(&r["resources"]) == ["leases"]
            && strs(&r["verbs"]) == ["get", "list", "update", "patch"]
    }));
    assert!(
        lease_rules
            .iter()
            .all(|r| !strs(&r["verbs"]).contains(&"delete")),
        "{lease_rules:?}"
    );
    assert_eq!(
        named(&docs, "PodDisruptionBudget", FULLNAME)["spec"]["maxUnavailable"],
        1
    );
    let refused = template(
        &helm,
        "ctwa-chart-default",
        &["shards=6", "leaderElection.enabled=false"],
    )
    .unwrap_err();
    assert!(
        refused.contains("shards above 1 needs leaderElection.enabled"),
        "{refused}"
    );
    let default = template(&helm, "ctwa-chart-default", &[]).unwrap();
    assert!(
        !default.contains("--shards"),
        "one shard: no flag, as before"
    );

    // Every optional part switched on, scoped to two namespaces.
    for ns in ["ctwa-chart-a", "ctwa-chart-b", "ctwa-chart-full"] {
        namespace(ns);
    }
    kubectl_apply(SERVICE_MONITOR_CRD, false);
    kubectl_apply(
        &SERVICE_MONITOR_CRD
            .replace("servicemonitor", "prometheusrule")
            .replace("ServiceMonitor", "PrometheusRule"),
        false,
    );
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
            "monitoring.prometheusRule.enabled=true",
            "monitoring.grafanaDashboard.enabled=true",
            "networkPolicy.enabled=true",
            "pdb.enabled=true",
            "pdb.minAvailable=2",
            "postbackService.type=LoadBalancer",
            "replicaCount=3",
        ],
    )
    .unwrap();
    dry_run(&rendered);
    let docs = documents(&rendered);
    assert_least_privilege(&docs);
    assert_metrics_private(&docs);
    assert_check_pod_matches_operator(&docs);
    for kind in [
        "Ingress",
        "ServiceMonitor",
        "PrometheusRule",
        "NetworkPolicy",
        "PodDisruptionBudget",
    ] {
        assert!(docs.iter().any(|d| d["kind"] == kind), "no {kind}");
    }
    let pdb = named(&docs, "PodDisruptionBudget", FULLNAME);
    assert_eq!(pdb["spec"]["minAvailable"], 2);
    assert!(pdb["spec"]["maxUnavailable"].is_null());
    let monitor = named(&docs, "ServiceMonitor", FULLNAME);
    let metrics_service = named(&docs, "Service", &format!("{FULLNAME}-metrics"));
    let selected = monitor["spec"]["selector"]["matchLabels"]
        .as_object()
        .unwrap();
    assert!(
        selected
            .iter()
            .all(|(k, v)| &metrics_service["metadata"]["labels"][k] == v)
    );
    let postbacks_service = named(&docs, "Service", &format!("{FULLNAME}-postbacks"));
    assert!(
        !selected
            .iter()
            .all(|(k, v)| &postbacks_service["metadata"]["labels"][k] == v)
    );
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "metrics");
    // The bridge series carry the bridge's namespace: it must not become exported_namespace.
    assert_eq!(monitor["spec"]["endpoints"][0]["honorLabels"], true);
    let dashboard = named(&docs, "ConfigMap", &format!("{FULLNAME}-dashboard"));
    assert_eq!(dashboard["metadata"]["labels"]["grafana_dashboard"], "1");
    // Only the ClusterRoles for people remain cluster-wide; the operator gets Roles.
    let cluster_roles: Vec<&str> = of_kind(&docs, "ClusterRole")
        .iter()
        .filter_map(|d| d["metadata"]["name"].as_str())
        .collect();
    assert_eq!(
        cluster_roles,
        [format!("{FULLNAME}-view"), format!("{FULLNAME}-edit")]
    );
    let roles: Vec<&str> = docs
        .iter()
        .filter(|d| d["kind"] == "Role")
        .filter_map(|d| d["metadata"]["namespace"].as_str())
        .collect();
    assert_eq!(
        roles,
        vec!["ctwa-chart-a", "ctwa-chart-b", "ctwa-chart-full"]
    );
    let check_args = strs(&check_pod(&docs)["spec"]["containers"][0]["args"]);
    assert!(
        check_args.contains(&"--namespace=ctwa-chart-a"),
        "{check_args:?}"
    );
    assert!(
        check_args.contains(&"--namespace=ctwa-chart-b"),
        "{check_args:?}"
    );

    // values.schema.json rejects bad values.
    for bad in [
        "replicaCount=two",
        "logFormat=xml",
        "unknownKey=1",
        "service.type=LoadBalancer",
        "image.digest=latest",
        "postbackService.type=ExternalName",
        "crds.keep=yes",
    ] {
        let err = template(&helm, "ctwa-chart-default", &[bad]).unwrap_err();
        assert!(err.contains("schema"), "{bad}: {err}");
    }
}

/// The values a production install sets: a pinned image, a proxy, extra flags, pod metadata,
/// placement, NetworkPolicy peers and egress rules, and `global` (from a parent chart).
#[tokio::test]
async fn the_chart_renders_production_values_that_the_api_server_accepts() {
    ctwa_testenv::client().await;
    let helm = helm();
    namespace("ctwa-chart-prod");
    let digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    let values = format!(
        r#"
global:
  imageRegistry: registry.example.com
image:
  digest: "{digest}"
  tag: "9.9.9"
imagePullSecrets: [{{"name": "regcred"}}]
upstream:
  signalsUrl: http://signals.example.internal
  hubUrl: http://hub.example.internal/api/v2
  xAdsUrl: http://x.example.internal/12
watchNamespaces: [ctwa-chart-prod]
extraArgs: ["--bridge-max-seen-ids=500000"]
extraEnv:
  - name: HTTPS_PROXY
    value: http://proxy.example.internal:3128
  - name: NO_PROXY
    value: 10.0.0.0/8
volumes: [{{"name": "ca", "configMap": {{"name": "corporate-ca"}}}}]
volumeMounts: [{{"name": "ca", "mountPath": "/etc/ssl/certs/corporate-ca.pem", "subPath": "ca.pem", "readOnly": true}}]
podLabels:
  team: growth
  app.kubernetes.io/name: not-the-selector
podAnnotations:
  example.com/owner: growth
serviceAccount:
  annotations:
    iam.example.com/role: ctwa
priorityClassName: system-cluster-critical
topologySpreadConstraints:
  - maxSkew: 1
    topologyKey: topology.kubernetes.io/zone
    whenUnsatisfiable: DoNotSchedule
podSecurityContext:
  runAsNonRoot: true
  runAsUser: 10001
  runAsGroup: 10001
  fsGroup: 10001
  seccompProfile: {{"type": "RuntimeDefault"}}
postbackService:
  type: LoadBalancer
  annotations:
    service.beta.kubernetes.io/aws-load-balancer-internal: "false"
networkPolicy:
  enabled: true
  metrics:
    from:
      - namespaceSelector:
          matchLabels: {{"kubernetes.io/metadata.name": monitoring}}
  postbacks:
    from:
      - namespaceSelector:
          matchLabels: {{"kubernetes.io/metadata.name": ingress-nginx}}
        podSelector:
          matchLabels: {{"app.kubernetes.io/name": ingress-nginx}}
  egress:
    - ports: [{{"port": 53, "protocol": "UDP"}}, {{"port": 53, "protocol": "TCP"}}]
    - to: [{{"ipBlock": {{"cidr": "10.0.0.1/32"}}}}]
      ports: [{{"port": 443, "protocol": "TCP"}}]
"#
    );
    let rendered = template_with(&helm, "ctwa-chart-prod", &[], Some(&values)).unwrap();
    dry_run(&rendered);
    let docs = documents(&rendered);
    assert_least_privilege(&docs);
    assert_metrics_private(&docs);
    assert_check_pod_matches_operator(&docs);

    let deployment = named(&docs, "Deployment", FULLNAME);
    let pod_template = &deployment["spec"]["template"];
    let pod = &pod_template["spec"];
    let container = &pod["containers"][0];
    // A digest pins the image; the tag is ignored.
    assert_eq!(
        container["image"],
        format!("ghcr.io/ctwa-operator/ctwa-operator@{digest}")
    );
    assert_eq!(pod["imagePullSecrets"], json!([{"name": "regcred"}]));
    let args = strs(&container["args"]);
    assert_eq!(args.last(), Some(&"--bridge-max-seen-ids=500000"));
    assert!(args.contains(&"--signals-url=http://signals.example.internal"));
    assert!(args.contains(&"--namespace=ctwa-chart-prod"));
    let env = env_names(container);
    assert_eq!(
        env,
        [
            "POD_NAME",
            "POD_NAMESPACE",
            "POD_IP",
            "HTTPS_PROXY",
            "NO_PROXY"
        ]
    );
    assert_eq!(
        env_names(&check_pod(&docs)["spec"]["containers"][0]),
        ["HTTPS_PROXY", "NO_PROXY"]
    );
    // The proxy's CA bundle reaches the check as well as the operator.
    let check = &check_pod(&docs)["spec"];
    assert_eq!(check["volumes"], pod["volumes"]);
    assert_eq!(pod["volumes"][0]["configMap"]["name"], "corporate-ca");
    assert_eq!(
        check["containers"][0]["volumeMounts"],
        container["volumeMounts"]
    );
    assert_eq!(container["volumeMounts"][0]["name"], "ca");
    // No Service links: they would inject CTWA_-prefixed variables, which the binary reads as flags.
    assert_eq!(pod["enableServiceLinks"], false);
    assert_eq!(check["enableServiceLinks"], false);
    // podLabels add labels but cannot take the Pods out of their own selector.
    let labels = &pod_template["metadata"]["labels"];
    assert_eq!(labels["team"], "growth");
    for (k, v) in deployment["spec"]["selector"]["matchLabels"]
        .as_object()
        .unwrap()
    {
        assert_eq!(&labels[k], v);
    }
    assert_eq!(
        pod_template["metadata"]["annotations"]["example.com/owner"],
        "growth"
    );
    assert_eq!(pod["priorityClassName"], "system-cluster-critical");
    assert_eq!(pod["securityContext"]["fsGroup"], 10001);
    let spread = &pod["topologySpreadConstraints"];
    assert_eq!(spread.as_array().unwrap().len(), 1);
    assert_eq!(spread[0]["topologyKey"], "topology.kubernetes.io/zone");
    assert_eq!(
        spread[0]["labelSelector"]["matchLabels"],
        deployment["spec"]["selector"]["matchLabels"]
    );
    let sa = named(&docs, "ServiceAccount", FULLNAME);
    assert_eq!(
        sa["metadata"]["annotations"]["iam.example.com/role"],
        "ctwa"
    );
    let postbacks = named(&docs, "Service", &format!("{FULLNAME}-postbacks"));
    assert_eq!(postbacks["spec"]["type"], "LoadBalancer");
    assert_eq!(
        postbacks["metadata"]["annotations"]["service.beta.kubernetes.io/aws-load-balancer-internal"],
        "false"
    );

    // NetworkPolicy: postbacks from the operator's own Pods (forwarding to the leader) and the
    // ingress controller; metrics from the monitoring namespace only; egress as listed, plus
    // the forwarding.
    let policy = named(&docs, "NetworkPolicy", FULLNAME);
    let selector = &deployment["spec"]["selector"]["matchLabels"];
    let own = json!([{"podSelector": {"matchLabels": selector}}]);
    assert_eq!(strs(&policy["spec"]["policyTypes"]), ["Ingress", "Egress"]);
    let ingress = policy["spec"]["ingress"].as_array().unwrap();
    let port = |rule: &Value| rule["ports"][0]["port"].as_i64().unwrap();
    assert_eq!(ingress.len(), 3, "{policy}");
    assert!(ingress.iter().any(|r| r["from"] == own && port(r) == 8081));
    assert!(ingress.iter().any(|r| port(r) == 8081
        && r["from"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/name"]
            == "ingress-nginx"));
    let metrics_rules: Vec<&Value> = ingress.iter().filter(|r| port(r) == 8080).collect();
    assert_eq!(metrics_rules.len(), 1);
    assert_eq!(
        metrics_rules[0]["from"],
        json!([{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}])
    );
    let egress = policy["spec"]["egress"].as_array().unwrap();
    assert_eq!(egress.len(), 3, "{policy}");
    assert!(egress.iter().any(|r| r["to"] == own && port(r) == 8081));
    assert!(egress.iter().any(|r| port(r) == 53));

    // Defaults of the NetworkPolicy: scrapes only from Prometheus Pods, no egress rules; an
    // explicitly empty list closes the metrics port.
    let rendered = template(&helm, "ctwa-chart-prod", &["networkPolicy.enabled=true"]).unwrap();
    dry_run(&rendered);
    let docs = documents(&rendered);
    let policy = named(&docs, "NetworkPolicy", FULLNAME);
    assert_eq!(strs(&policy["spec"]["policyTypes"]), ["Ingress"]);
    let ingress = policy["spec"]["ingress"].as_array().unwrap();
    assert_eq!(ingress.len(), 2, "{policy}");
    assert_eq!(ingress[0]["from"], own);
    assert_eq!(
        ingress[1]["from"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/name"],
        "prometheus"
    );
    let rendered = template_with(
        &helm,
        "ctwa-chart-prod",
        &["networkPolicy.enabled=true"],
        Some("networkPolicy: {metrics: {from: []}}"),
    )
    .unwrap();
    let docs = documents(&rendered);
    let policy = named(&docs, "NetworkPolicy", FULLNAME);
    let ingress = policy["spec"]["ingress"].as_array().unwrap();
    assert_eq!(ingress.len(), 1, "{policy}");
    assert_eq!(port(&ingress[0]), 8081);
}

/// Helm drops keys whose value is null.
fn without_nulls(v: Value) -> Value {
    match v {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, without_nulls(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(without_nulls).collect()),
        other => other,
    }
}

/// The chart's default values as Helm reads them: a copy of the chart whose only template
/// prints `.Values` as JSON.
fn helm_values(helm: &str) -> Value {
    let copy = std::env::temp_dir().join(format!("ctwa-chart-values-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&copy);
    std::fs::create_dir_all(copy.join("templates")).unwrap();
    for file in ["Chart.yaml", "values.yaml", "values.schema.json"] {
        std::fs::copy(repo_root().join(CHART).join(file), copy.join(file)).unwrap();
    }
    std::fs::write(
        copy.join("templates/values.yaml"),
        "values: {{ .Values | toJson | quote }}\n",
    )
    .unwrap();
    let (ok, out, err) = run(
        Command::new(helm)
            .arg("template")
            .arg("x")
            .arg(&copy)
            .args(["--kube-version", "1.34.4"]),
        None,
    );
    std::fs::remove_dir_all(&copy).unwrap();
    assert!(ok, "{err}");
    let doc = documents(&out).remove(0);
    without_nulls(serde_json::from_str(doc["values"].as_str().unwrap()).unwrap())
}

/// README.md lists every value of values.yaml, and the check notices when it does not.
#[test]
fn the_chart_readme_is_generated_from_values_yaml() {
    let script = repo_root().join("scripts/gen-chart-readme.py");
    let check = |chart: &std::path::Path| {
        Command::new("python3")
            .arg(&script)
            .arg("--check")
            .arg("--chart")
            .arg(chart)
            .output()
            .unwrap()
    };
    let out = check(&repo_root().join(CHART));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The defaults in the README are what Helm reads from values.yaml.
    let out = Command::new("python3")
        .arg(&script)
        .arg("--print-values")
        .output()
        .unwrap();
    assert!(out.status.success());
    let parsed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(without_nulls(parsed), helm_values(&helm()));

    let copy = std::env::temp_dir().join(format!("ctwa-chart-readme-{}", std::process::id()));
    std::fs::create_dir_all(&copy).unwrap();
    for file in ["values.yaml", "values.schema.json", "README.md"] {
        std::fs::copy(repo_root().join(CHART).join(file), copy.join(file)).unwrap();
    }
    let values = std::fs::read_to_string(copy.join("values.yaml")).unwrap();
    // A changed description: the README is out of date.
    std::fs::write(
        copy.join("values.yaml"),
        values.replace("# -- Image pull policy.", "# -- How the image is pulled."),
    )
    .unwrap();
    let out = check(&copy);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("out of date"));
    // A value without a description.
    std::fs::write(copy.join("values.yaml"), format!("{values}\nextraKey: 1\n")).unwrap();
    let out = check(&copy);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("value extraKey has no `# --` description")
    );
    std::fs::remove_dir_all(&copy).unwrap();
}

/// A stand-in for the Prometheus Operator's ServiceMonitor CRD (its schema does not matter
/// here); the PrometheusRule one is made from it by renaming.
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
    let fakes = env.operator_config(Duration::from_secs(600));
    let rendered = template(
        &helm,
        &release_ns,
        &[
            &format!("watchNamespaces={{{}}}", env.ns.name),
            &format!("upstream.signalsUrl={}", fakes.signals_url),
            &format!("upstream.hubUrl={}", fakes.hub_url),
            &format!("upstream.xAdsUrl={}", fakes.x_ads_url),
        ],
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

    // `helm test`: the check Pod's command, as the operator's ServiceAccount, passes.
    let docs = documents(&rendered);
    let args = strs(&check_pod(&docs)["spec"]["containers"][0]["args"])
        .into_iter()
        .map(str::to_string)
        .collect::<Vec<_>>();
    let out = tokio::process::Command::new(common::OPERATOR_BIN)
        .args(&args)
        .env("KUBECONFIG", kubeconfig_path())
        .env(
            "KUBE_RS_DEBUG_IMPERSONATE_USER",
            format!("system:serviceaccount:{release_ns}:ctwa-ctwa-operator"),
        )
        .output()
        .await
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{args:?}:\n{report}");
    for line in [
        format!("ok   RBAC in namespace {}: ", env.ns.name),
        format!("ok   RBAC in namespace {release_ns} for the leader Lease: "),
        format!("ok   Secret {}/dialog360: ", env.ns.name),
        format!("ok   Secret {}/x-ads: ", env.ns.name),
    ] {
        assert!(
            report.lines().any(|l| l.starts_with(&line)),
            "{line} in:\n{report}"
        );
    }
}

fn kubectl(args: &[&str]) -> (bool, String, String) {
    run(Command::new("kubectl").args(args), None)
}

/// A real `helm install`, `upgrade` and `uninstall`: the CRDs of a 0.1 install (no Helm metadata)
/// are adopted after the README's upgrade step, the aggregated roles reach the built-in `edit`
/// and `view` roles, and uninstalling keeps the CRDs (and with them every object).
#[tokio::test]
async fn helm_adopts_upgrades_and_keeps_the_crds_on_uninstall() {
    ctwa_testenv::client().await;
    let helm = helm();
    let (release, ns) = ("ctwa-e2e", "ctwa-chart-e2e");
    namespace(ns);
    // A release left by an earlier, failed run (its CRDs are kept).
    run(
        Command::new(&helm).args(["uninstall", release, "--namespace", ns, "--wait"]),
        None,
    );
    let crds: Vec<String> = documents(&template(&helm, ns, &[]).unwrap())
        .iter()
        .filter(|d| d["kind"] == "CustomResourceDefinition")
        .map(|d| format!("crd/{}", d["metadata"]["name"].as_str().unwrap()))
        .collect();
    assert_eq!(crds.len(), crd_count());

    // Without Helm's ownership metadata the CRDs (installed like chart 0.1 did) are refused...
    for crd in &crds {
        let (ok, _, err) = kubectl(&[
            "annotate",
            crd,
            "meta.helm.sh/release-name-",
            "meta.helm.sh/release-namespace-",
        ]);
        assert!(ok, "{err}");
        let (ok, _, err) = kubectl(&["label", crd, "app.kubernetes.io/managed-by-"]);
        assert!(ok, "{err}");
    }
    let install = |extra: &[&str]| {
        let mut cmd = Command::new(&helm);
        cmd.args(["upgrade", "--install", release, CHART, "--namespace", ns]);
        cmd.args(extra);
        run(&mut cmd, None)
    };
    let (ok, _, err) = install(&[]);
    assert!(!ok, "installed over CRDs Helm does not own");
    assert!(err.contains("invalid ownership metadata"), "{err}");
    // ...and adopted after the upgrade step of the chart README.
    for crd in &crds {
        let (ok, _, err) = kubectl(&[
            "label",
            crd,
            "app.kubernetes.io/managed-by=Helm",
            "--overwrite",
        ]);
        assert!(ok, "{err}");
        let (ok, _, err) = kubectl(&[
            "annotate",
            crd,
            &format!("meta.helm.sh/release-name={release}"),
            &format!("meta.helm.sh/release-namespace={ns}"),
            "--overwrite",
        ]);
        assert!(ok, "{err}");
    }
    let (ok, out, err) = install(&[]);
    assert!(ok, "helm install failed:\n{out}\n{err}");
    let (ok, out, err) = kubectl(&["get", &crds[0], "-o", "json"]);
    assert!(ok, "{err}");
    let crd: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        crd["metadata"]["annotations"]["helm.sh/resource-policy"],
        "keep"
    );
    assert_eq!(
        crd["metadata"]["labels"]["helm.sh/chart"],
        "ctwa-operator-0.2.0"
    );

    // The aggregated roles: an editor of a namespace edits ctwa.dev objects there (never their
    // status), a viewer reads them. The controller-manager aggregates asynchronously.
    let workload_ns = "ctwa-chart-e2e-apps";
    namespace(workload_ns);
    for (user, role) in [("alice", "edit"), ("bob", "view")] {
        let binding = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": user, "namespace": workload_ns},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}]});
        kubectl_apply(&binding.to_string(), false);
    }
    let can = |user: &str, verb: &str, resource: &str| {
        let (_, out, _) = kubectl(&[
            "auth",
            "can-i",
            verb,
            resource,
            "-n",
            workload_ns,
            "--as",
            user,
        ]);
        out.trim() == "yes"
    };
    let mut aggregated = false;
    for _ in 0..60 {
        if can("alice", "create", "conversionbridges.ctwa.dev")
            && can("bob", "list", "conversionbridges.ctwa.dev")
        {
            aggregated = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(aggregated, "the ctwa.dev rules never reached edit and view");
    for resource in crds.iter().map(|c| c.trim_start_matches("crd/")) {
        assert!(can("alice", "delete", resource), "{resource}");
        assert!(can("bob", "watch", resource), "{resource}");
        assert!(!can("bob", "create", resource), "{resource}");
    }
    // Status is the operator's to write.
    let (_, out, _) = kubectl(&[
        "auth",
        "can-i",
        "update",
        "conversionbridges.ctwa.dev",
        "--subresource=status",
        "-n",
        workload_ns,
        "--as",
        "alice",
    ]);
    assert_eq!(out.trim(), "no");

    // An upgrade with other values, then an uninstall that keeps the CRDs.
    let (ok, out, err) = install(&[
        "--set",
        "replicaCount=3",
        "--set",
        "networkPolicy.enabled=true",
    ]);
    assert!(ok, "helm upgrade failed:\n{out}\n{err}");
    let (ok, out, err) = run(
        Command::new(&helm).args(["uninstall", release, "--namespace", ns]),
        None,
    );
    assert!(ok, "helm uninstall failed:\n{out}\n{err}");
    assert!(out.contains("kept due to the resource policy"), "{out}");
    for crd in &crds {
        let (ok, _, err) = kubectl(&["get", crd]);
        assert!(ok, "{crd} was deleted with the release: {err}");
    }
    let (_, out, _) = kubectl(&["get", "deploy", "-n", ns, "-o", "name"]);
    assert!(out.trim().is_empty(), "{out}");
}
