//! What a user sees with kubectl: `kubectl get ctwa -A` lists all six kinds with their
//! printer columns, and `kubectl explain` documents the fields.

use ctwa_testenv::{TestNamespace, apply, client, kubectl, read_yaml_documents, repo_root};
use kube::api::{Patch, PatchParams};
use serde_json::json;

#[tokio::test]
async fn get_ctwa_lists_every_kind_with_printer_columns() {
    let client = client().await;
    let ns = TestNamespace::create(&client, "kubectl").await;
    for entry in std::fs::read_dir(repo_root().join("examples")).expect("examples/") {
        for doc in read_yaml_documents(&entry.expect("entry").path()) {
            apply(&client, &ns.name, &doc)
                .await
                .expect("example accepted");
        }
    }
    // Give one object a status, as the operator would, to see the columns filled in.
    let keyword = json!({"apiVersion": "ctwa.dev/v1alpha1", "kind": "SignalsKeyword",
                         "metadata": {"name": "order-confirmed"}});
    let api = ctwa_testenv::dynamic_api(&client, &ns.name, &keyword)
        .await
        .expect("api");
    let status = json!({"apiVersion": "ctwa.dev/v1alpha1", "kind": "SignalsKeyword",
        "status": {"keywordId": "kw-4711", "conditions": [{
            "type": "Ready", "status": "True", "reason": "Available", "message": "in sync",
            "lastTransitionTime": "2026-11-01T00:00:00Z"}]}});
    api.patch_status(
        "order-confirmed",
        &PatchParams::apply("ctwa-test").force(),
        &Patch::Apply(&status),
    )
    .await
    .expect("status subresource accepts conditions");

    let all = kubectl(&["get", "ctwa", "-A"]);
    for (resource, name) in [
        ("ctwatracking.ctwa.dev", "main-number"),
        ("signalskeyword.ctwa.dev", "order-confirmed"),
        ("signalspostback.ctwa.dev", "order-confirmed-postback"),
        (
            "signalsconversionevent.ctwa.dev",
            "order-confirmed-conversion",
        ),
        ("xwebeventtag.ctwa.dev", "purchase"),
        ("conversionbridge.ctwa.dev", "ctwa-to-x"),
    ] {
        assert!(
            all.contains(&format!("{resource}/{name}")),
            "`kubectl get ctwa -A` lacks {resource}/{name}:\n{all}"
        );
    }

    let namespaced = kubectl(&["get", "ctwa", "-n", &ns.name]);
    for header in [
        "READY   REASON   CHANNEL   ENABLED   AGE",
        "READY   REASON      KEYWORD-ID   AGE",
        "READY   REASON   EVENT     AD",
        "READY   REASON   CAMPAIGN   TYPE   AGE",
        "READY   REASON   TAG-ID   TYPE       AGE",
        "READY   FORWARDED   REJECTED   LAG   AGE",
    ] {
        let words: Vec<&str> = header.split_whitespace().collect();
        let found = namespaced.lines().any(|line| {
            line.split_whitespace()
                .skip(1)
                .take(words.len())
                .eq(words.iter().copied())
        });
        assert!(found, "no table with the columns {words:?}:\n{namespaced}");
    }
    let keyword_line = namespaced
        .lines()
        .find(|l| l.starts_with("signalskeyword.ctwa.dev/order-confirmed"))
        .expect("keyword listed");
    let cells: Vec<&str> = keyword_line.split_whitespace().collect();
    assert_eq!(
        &cells[1..4],
        ["True", "Available", "kw-4711"],
        "{keyword_line}"
    );

    // Short names work too.
    for short in ["ctt", "skw", "spb", "sce", "xwet", "cbr"] {
        let out = kubectl(&["get", short, "-n", &ns.name, "-o", "name"]);
        assert_eq!(out.lines().count(), 1, "kubectl get {short}: {out}");
    }
    ns.delete().await;
}

#[tokio::test]
async fn explain_documents_the_fields() {
    let _ = client().await;
    let out = kubectl(&["explain", "xwebeventtags.spec.clickWindow"]);
    assert!(
        out.contains("Post-engagement attribution window in days"),
        "{out}"
    );
    let out = kubectl(&["explain", "conversionbridges.spec.source.signals.lookback"]);
    assert!(out.contains("reads again"), "{out}");
    let out = kubectl(&["explain", "signalspostbacks.status.urlSha256"]);
    assert!(out.contains("SHA-256"), "{out}");
    // kubectl wraps descriptions: compare with the line breaks taken out.
    let out = kubectl(&["explain", "signalsconversionevents.spec.deletionPolicy"]);
    let words = out.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(words.contains("conversion is left as it is"), "{out}");
}
