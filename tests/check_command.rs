//! `ctwa-operator check` (what `helm test` runs) against the real control plane: it finds
//! what would stop the operator — a missing Secret, an unreachable upstream, missing RBAC —
//! names it in one line, and exits 1; with everything in place it exits 0. The chart's test
//! Pod, with the chart's RBAC, is exercised in tests/helm_chart.rs.

mod common;

use common::{DIALOG_PASSWORD, Env, OPERATOR_BIN, env_without_operator, free_addr};
use ctwa_operator::api::SignalsKeyword;
use ctwa_testenv::kubeconfig_path;
use k8s_openapi::api::core::v1::ServiceAccount;
use serde_json::json;

/// Runs `check` for the environment's namespace; `user` impersonates another identity. The
/// fakes answer on this test's runtime, so the child is awaited, never waited for.
async fn check(env: &Env, extra: &[String], user: Option<&str>) -> (bool, String) {
    let c = env.operator_config(ctwa_testenv::DEFAULT_RESYNC);
    let defaults = [
        format!("--namespace={}", env.ns.name),
        format!("--signals-url={}", c.signals_url),
        format!("--hub-url={}", c.hub_url),
        format!("--x-ads-url={}", c.x_ads_url),
    ];
    let flag = |a: &String| a.split('=').next().unwrap_or_default().to_string();
    let overridden: Vec<String> = extra.iter().map(flag).collect();
    let mut cmd = tokio::process::Command::new(OPERATOR_BIN);
    cmd.arg("check")
        .args(defaults.iter().filter(|d| !overridden.contains(&flag(d))))
        .args(extra)
        .env("KUBECONFIG", kubeconfig_path())
        .env_remove("KUBE_RS_DEBUG_IMPERSONATE_USER");
    if let Some(user) = user {
        cmd.env("KUBE_RS_DEBUG_IMPERSONATE_USER", user);
    }
    let out = cmd.output().await.expect("ctwa-operator check runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    println!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    (out.status.success(), stdout)
}

fn keyword(name: &str, secret: &str) -> serde_json::Value {
    json!({
        "apiVersion": "ctwa.dev/v1alpha1", "kind": "SignalsKeyword",
        "metadata": {"name": name},
        "spec": {"clientId": "c1", "appId": "a1", "keyword": name, "adId": "ad1",
                 "secretRef": {"name": secret}}
    })
}

fn line<'a>(out: &'a str, prefix: &str) -> &'a str {
    out.lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line starting {prefix:?} in:\n{out}"))
}

#[tokio::test]
async fn check_names_what_would_stop_the_operator() {
    let env = env_without_operator("check").await;
    let ns = env.ns.name.clone();
    env.create::<SignalsKeyword>(keyword("good", "dialog360"))
        .await;
    env.create::<SignalsKeyword>(keyword("bad", "no-such-secret"))
        .await;

    // With full rights: the CRDs are served, RBAC is granted, one Secret is missing.
    let (passed, out) = check(&env, &[], None).await;
    assert!(!passed, "a missing Secret fails the check");
    for kind in [
        "ctwatrackings",
        "signalskeywords",
        "signalspostbacks",
        "xwebeventtags",
        "conversionbridges",
    ] {
        line(&out, &format!("ok   CRD {kind}.ctwa.dev"));
    }
    line(&out, &format!("ok   RBAC in namespace {ns}"));
    assert!(line(&out, &format!("ok   Secret {ns}/dialog360")).contains("SignalsKeyword/good"));
    assert_eq!(
        line(&out, &format!("FAIL Secret {ns}/no-such-secret")),
        format!(
            "FAIL Secret {ns}/no-such-secret: does not exist (referenced by SignalsKeyword/bad)"
        )
    );
    for api in ["Signals API", "360dialog Hub", "X Ads API"] {
        assert!(line(&out, &format!("ok   {api} at ")).contains("answered HTTP"));
    }
    assert!(out.contains("1 of "), "{out}");
    assert!(
        !out.contains(DIALOG_PASSWORD),
        "a Secret's content is never printed"
    );

    // An upstream that does not answer.
    let closed = free_addr();
    let (passed, out) = check(&env, &[format!("--x-ads-url=http://{closed}/12")], None).await;
    assert!(!passed);
    assert!(
        line(&out, "FAIL X Ads API at ").contains("could not connect"),
        "{out}"
    );

    // A ServiceAccount without the operator's RBAC: every missing permission is named.
    let accounts: kube::Api<ServiceAccount> = env.api();
    accounts
        .create(
            &Default::default(),
            &serde_json::from_value(json!({"metadata": {"name": "bare"}})).unwrap(),
        )
        .await
        .unwrap();
    let user = format!("system:serviceaccount:{ns}:bare");
    let (passed, out) = check(&env, &[], Some(&user)).await;
    assert!(!passed);
    let rbac = line(&out, &format!("FAIL RBAC in namespace {ns}"));
    for missing in [
        "get signalskeywords",
        "patch signalskeywords/status",
        "update conversionbridges/finalizers",
        "create secrets",
        "create events",
    ] {
        assert!(rbac.contains(missing), "{missing} not named in {rbac}");
    }
    let (_, out) = check(
        &env,
        &[
            "--lease-name=ctwa".into(),
            format!("--leader-election-namespace={ns}"),
        ],
        Some(&user),
    )
    .await;
    assert!(
        line(
            &out,
            &format!("FAIL RBAC in namespace {ns} for the leader Lease")
        )
        .contains("update leases ctwa"),
        "{out}"
    );

    // Everything in place: exit 0.
    env.api::<SignalsKeyword>()
        .delete("bad", &Default::default())
        .await
        .unwrap();
    let (passed, out) = check(&env, &[], None).await;
    assert!(passed, "{out}");
    assert!(out.lines().last().unwrap().starts_with("all "), "{out}");
}
