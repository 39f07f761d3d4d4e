//! `ctwa-operator check`: can the operator work here? Run by `helm test` from the operator's
//! own image and ServiceAccount, and by hand when something does not converge.
//!
//! It asks what the operator itself would ask — the CRDs served, every permission the
//! operator uses granted, every Secret the objects reference readable, every upstream
//! answering — and prints one line per question. A Secret is only fetched, never printed.

use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ApiResource, DynamicObject, ListParams, PostParams};
use serde_json::Value;

use crate::api::all_crds;

/// What to check.
#[derive(Clone, Debug)]
pub struct CheckConfig {
    /// The watched namespaces; empty means all (permissions are checked cluster-wide).
    pub namespaces: Vec<String>,
    /// Base URLs of the upstream APIs.
    pub upstreams: Vec<(&'static str, String)>,
    /// How long one upstream may take to answer.
    pub timeout: Duration,
    /// The leader Lease (namespace, name), when leader election is on.
    pub lease: Option<(String, String)>,
    /// `--shards`: above 1, the shard and member Leases (any name in that namespace, listed).
    pub shards: u32,
}

/// One answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub ok: bool,
    pub what: String,
    /// Why it failed, or a detail worth knowing.
    pub detail: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mark = if self.ok { "ok  " } else { "FAIL" };
        if self.detail.is_empty() {
            write!(f, "{mark} {}", self.what)
        } else {
            write!(f, "{mark} {}: {}", self.what, self.detail)
        }
    }
}

fn found(ok: bool, what: impl Into<String>, detail: impl Into<String>) -> Finding {
    Finding {
        ok,
        what: what.into(),
        detail: detail.into(),
    }
}

/// The permissions the operator uses in a watched namespace (the chart grants exactly
/// these; `tests/check_command.rs` holds the two together).
pub fn required_permissions() -> Vec<(&'static str, String, &'static str)> {
    let mut needed = Vec::new();
    for crd in all_crds() {
        let plural = crd.spec.names.plural.clone();
        for verb in ["get", "list", "watch", "patch", "update"] {
            needed.push(("ctwa.dev", plural.clone(), verb));
        }
        needed.push(("ctwa.dev", format!("{plural}/status"), "patch"));
        needed.push(("ctwa.dev", format!("{plural}/finalizers"), "update"));
    }
    for verb in ["get", "list", "watch", "create"] {
        needed.push(("", "secrets".to_string(), verb));
    }
    for verb in ["create", "patch"] {
        needed.push(("events.k8s.io", "events".to_string(), verb));
    }
    needed
}

/// Every check, in order: CRDs, permissions, referenced Secrets, upstreams.
pub async fn run(client: &kube::Client, config: &CheckConfig) -> Vec<Finding> {
    let mut findings = crds(client).await;
    let scopes: Vec<Option<String>> = if config.namespaces.is_empty() {
        vec![None]
    } else {
        config.namespaces.iter().cloned().map(Some).collect()
    };
    for scope in &scopes {
        findings.extend(permissions(client, scope.as_deref(), required_permissions(), "").await);
    }
    if let Some((namespace, name)) = &config.lease {
        // With shards the Leases' names are not known in advance (one per replica).
        let (resource, verbs, purpose): (String, &[&str], &str) = if config.shards > 1 {
            (
                "leases".into(),
                &["get", "list", "update", "patch"],
                " for the shard Leases",
            )
        } else {
            (
                format!("leases/{LEASE_NAME}{name}"),
                &["get", "update", "patch"],
                " for the leader Lease",
            )
        };
        let needed = verbs
            .iter()
            .map(|verb| ("coordination.k8s.io", resource.clone(), *verb))
            .chain([("coordination.k8s.io", "leases".to_string(), "create")]);
        findings.extend(permissions(client, Some(namespace), needed.collect(), purpose).await);
    }
    for scope in &scopes {
        findings.extend(referenced_secrets(client, scope.as_deref()).await);
    }
    findings.extend(upstreams(config).await);
    findings
}

async fn crds(client: &kube::Client) -> Vec<Finding> {
    let mut out = Vec::new();
    for crd in all_crds() {
        let version = &crd.spec.versions[0].name;
        let group_version = format!("{}/{version}", crd.spec.group);
        let what = format!("CRD {}", crd.metadata.name.clone().unwrap_or_default());
        out.push(match client.list_api_group_resources(&group_version).await {
            Ok(list) if list.resources.iter().any(|r| r.name == crd.spec.names.plural) => {
                found(true, what, "")
            }
            Ok(_) => found(false, what, format!("not served under {group_version}: apply crds/ or install the chart with crds.enabled=true")),
            Err(e) => found(false, what, format!("{group_version} is not served ({})", short(&e))),
        });
    }
    out
}

/// Marks a named object in a permission of [`permissions`]: `leases/=ctwa` is the Lease
/// named `ctwa`, where `leases/status` is a subresource.
const LEASE_NAME: &str = "=";

async fn permissions(
    client: &kube::Client,
    namespace: Option<&str>,
    needed: Vec<(&'static str, String, &'static str)>,
    purpose: &str,
) -> Vec<Finding> {
    let reviews: Api<SelfSubjectAccessReview> = Api::all(client.clone());
    let place = namespace.map_or("in every namespace".to_string(), |n| {
        format!("in namespace {n}")
    });
    let mut missing = Vec::new();
    for (group, resource, verb) in needed {
        let (resource, subresource, name) = match resource.split_once('/') {
            Some((r, s)) => match s.strip_prefix(LEASE_NAME) {
                Some(name) => (r.to_string(), None, Some(name.to_string())),
                None => (r.to_string(), Some(s.to_string()), None),
            },
            None => (resource, None, None),
        };
        let review = SelfSubjectAccessReview {
            spec: SelfSubjectAccessReviewSpec {
                resource_attributes: Some(ResourceAttributes {
                    group: Some(group.to_string()),
                    namespace: namespace.map(str::to_string),
                    resource: Some(resource.clone()),
                    subresource: subresource.clone(),
                    name: name.clone(),
                    verb: Some(verb.to_string()),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let asked = match (subresource, name) {
            (Some(s), _) => format!("{verb} {resource}/{s}"),
            (None, Some(n)) => format!("{verb} {resource} {n}"),
            (None, None) => format!("{verb} {resource}"),
        };
        let what = format!("RBAC {place}{purpose}");
        match reviews.create(&PostParams::default(), &review).await {
            Ok(answer) if answer.status.as_ref().is_some_and(|s| s.allowed) => {}
            Ok(_) => missing.push(asked),
            Err(e) => {
                return vec![found(
                    false,
                    what,
                    format!("cannot ask the API server ({})", short(&e)),
                )];
            }
        }
    }
    let what = format!("RBAC {place}{purpose}");
    if missing.is_empty() {
        vec![found(
            true,
            what,
            "every permission the operator uses is granted",
        )]
    } else {
        vec![found(
            false,
            what,
            format!("not allowed to {}", missing.join(", ")),
        )]
    }
}

/// Every `secretRef.name` anywhere in a spec: each kind names its Secrets there.
fn secret_refs(spec: &Value, out: &mut BTreeSet<String>) {
    match spec {
        Value::Object(map) => {
            for (key, child) in map {
                if key == "secretRef"
                    && let Some(name) = child.get("name").and_then(Value::as_str)
                {
                    out.insert(name.to_string());
                }
                secret_refs(child, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|i| secret_refs(i, out)),
        _ => {}
    }
}

async fn referenced_secrets(client: &kube::Client, namespace: Option<&str>) -> Vec<Finding> {
    // (namespace, secret) -> the objects that reference it
    let mut wanted: std::collections::BTreeMap<(String, String), Vec<String>> = Default::default();
    let mut out = Vec::new();
    for crd in all_crds() {
        let resource = ApiResource {
            group: crd.spec.group.clone(),
            version: crd.spec.versions[0].name.clone(),
            api_version: format!("{}/{}", crd.spec.group, crd.spec.versions[0].name),
            kind: crd.spec.names.kind.clone(),
            plural: crd.spec.names.plural.clone(),
        };
        let api: Api<DynamicObject> = match namespace {
            Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
            None => Api::all_with(client.clone(), &resource),
        };
        let objects = match api.list(&ListParams::default()).await {
            Ok(list) => list.items,
            // Reported by the CRD and RBAC checks already.
            Err(_) => continue,
        };
        for object in objects {
            let mut names = BTreeSet::new();
            secret_refs(&object.data["spec"], &mut names);
            let ns = object.metadata.namespace.clone().unwrap_or_default();
            let who = format!(
                "{}/{}",
                resource.kind,
                object.metadata.name.clone().unwrap_or_default()
            );
            for name in names {
                wanted
                    .entry((ns.clone(), name))
                    .or_default()
                    .push(who.clone());
            }
        }
    }
    for ((ns, name), users) in wanted {
        let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
        let what = format!("Secret {ns}/{name}");
        let users = format!("referenced by {}", users.join(", "));
        out.push(match secrets.get_metadata_opt(&name).await {
            Ok(Some(_)) => found(true, what, users),
            Ok(None) => found(false, what, format!("does not exist ({users})")),
            Err(e) => found(
                false,
                what,
                format!("cannot be read: {} ({users})", short(&e)),
            ),
        });
    }
    out
}

async fn upstreams(config: &CheckConfig) -> Vec<Finding> {
    crate::upstream::http::install_crypto_provider();
    // The proxy settings of the environment apply, as they do to the operator.
    let http = match reqwest::Client::builder().timeout(config.timeout).build() {
        Ok(http) => http,
        Err(e) => return vec![found(false, "HTTP client", e.to_string())],
    };
    let mut out = Vec::new();
    for (name, url) in &config.upstreams {
        let what = format!("{name} at {url}");
        // Any HTTP answer, even 401 or 404, proves the network path and TLS work.
        out.push(match http.get(url).send().await {
            Ok(answer) => found(
                true,
                what,
                format!("answered HTTP {}", answer.status().as_u16()),
            ),
            Err(e) => found(false, what, unreachable(&e)),
        });
    }
    out
}

fn unreachable(e: &reqwest::Error) -> String {
    use std::error::Error;
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "failed"
    };
    let mut cause = String::new();
    let mut source = e.source();
    while let Some(s) = source {
        cause = s.to_string();
        source = s.source();
    }
    if cause.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}: {cause}")
    }
}

fn short(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => format!("{} {}", s.code, s.message),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secret_refs_are_found_wherever_a_kind_puts_them() {
        let mut names = BTreeSet::new();
        secret_refs(
            &json!({
                "secretRef": {"name": "dialog"},
                "source": {"signals": {"secretRef": {"name": "dialog"}}},
                "destination": {"x": {"secretRef": {"name": "x-ads"}, "eventTagRef": {"name": "tag"}}}
            }),
            &mut names,
        );
        assert_eq!(names.into_iter().collect::<Vec<_>>(), ["dialog", "x-ads"]);
    }

    #[test]
    fn findings_read_as_one_line_each() {
        assert_eq!(found(true, "CRD a", "").to_string(), "ok   CRD a");
        assert_eq!(
            found(false, "Secret ns/x", "does not exist").to_string(),
            "FAIL Secret ns/x: does not exist"
        );
    }
}
