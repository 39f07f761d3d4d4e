//! SignalsKeyword end to end: the operator (in-process, scoped to the test's namespace)
//! against the real API server and the fake Signals API.

mod common;

use common::{condition, env, ready};
use ctwa_operator::api::SignalsKeyword;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

fn keyword(name: &str, text: &str) -> Value {
    json!({
        "apiVersion": "ctwa.dev/v1alpha1", "kind": "SignalsKeyword",
        "metadata": {"name": name},
        "spec": {"clientId": "c1", "appId": "a1", "keyword": text, "adId": "ad1", "secretRef": {"name": "dialog360"}}
    })
}

#[tokio::test]
async fn create_update_delete() {
    let env = env("skw-crud").await;
    env.create::<SignalsKeyword>(keyword("order", "order confirmed"))
        .await;
    let o = env
        .wait_for::<SignalsKeyword>("order", "Ready", ready)
        .await;
    let upstream = env.fake.keywords("c1", "a1");
    assert_eq!(upstream.len(), 1);
    let id = upstream[0].id.clone();
    assert_eq!(o["status"]["keywordId"], id.as_str());
    assert_eq!(
        o["metadata"]["annotations"]["ctwa.dev/external-id"],
        id.as_str()
    );
    assert_eq!(o["metadata"]["finalizers"], json!(["ctwa.dev/finalizer"]));

    // A change of text goes through PATCH: new id, the old one archived and remembered.
    let patch = json!({"spec": {"keyword": "order shipped"}});
    env.api::<SignalsKeyword>()
        .patch("order", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let o = env
        .wait_for::<SignalsKeyword>("order", "the new keyword", |o| {
            ready(o) && o["status"]["keywordId"] != id.as_str()
        })
        .await;
    assert_eq!(o["status"]["previousKeywordIds"], json!([id]));
    assert_eq!(env.operations("signals.patch_keyword").len(), 1);
    let upstream = env.fake.keywords("c1", "a1");
    assert_eq!(upstream.iter().filter(|k| k.status == "active").count(), 1);
    assert_eq!(
        upstream.iter().find(|k| k.id == id).unwrap().status,
        "archived"
    );

    // Delete removes the upstream keyword before the object goes.
    env.api::<SignalsKeyword>()
        .delete("order", &DeleteParams::default())
        .await
        .unwrap();
    env.wait_gone::<SignalsKeyword>("order").await;
    let new_id = o["status"]["keywordId"].as_str().unwrap();
    assert!(
        !env.fake.keywords("c1", "a1").iter().any(|k| k.id == new_id),
        "upstream keyword deleted"
    );
}

#[tokio::test]
async fn adoption_by_natural_key_creates_nothing() {
    let env = env("skw-adopt").await;
    let existing = env
        .fake
        .insert_keyword("c1", "a1", "hello", Some("ad1"), false);
    env.create::<SignalsKeyword>(keyword("hello", "hello"))
        .await;
    let o = env
        .wait_for::<SignalsKeyword>("hello", "Ready", ready)
        .await;
    assert_eq!(o["status"]["keywordId"], existing.as_str());
    assert!(
        env.operations("signals.create").is_empty(),
        "no create request"
    );
}

#[tokio::test]
async fn missing_secret_stalls_and_recovers_when_it_appears() {
    let env = env("skw-secret").await;
    let mut k = keyword("k", "hi");
    k["spec"]["secretRef"]["name"] = json!("later");
    env.create::<SignalsKeyword>(k).await;
    let o = env
        .wait_for::<SignalsKeyword>("k", "Stalled", |o| {
            condition(o, "Stalled") == Some(("True".into(), "SecretNotFound".into()))
        })
        .await;
    assert_eq!(
        condition(&o, "Ready"),
        Some(("False".into(), "SecretNotFound".into()))
    );
    let secret: Secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "later"},
        "stringData": {"username": "u", "password": common::DIALOG_PASSWORD}
    }))
    .unwrap();
    Api::<Secret>::namespaced(env.client.clone(), &env.ns.name)
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    env.wait_for::<SignalsKeyword>("k", "Ready after the Secret appeared", ready)
        .await;
}

#[tokio::test]
async fn wrong_password_stalls_until_the_secret_is_fixed() {
    let env = env("skw-password").await;
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), &env.ns.name);
    let bad = json!({"stringData": {"username": "u", "password": "wrong"}});
    secrets
        .patch("dialog360", &PatchParams::default(), &Patch::Merge(&bad))
        .await
        .unwrap();
    env.create::<SignalsKeyword>(keyword("k", "hi")).await;
    env.wait_for::<SignalsKeyword>("k", "InvalidCredentials", |o| {
        condition(o, "Stalled") == Some(("True".into(), "InvalidCredentials".into()))
    })
    .await;
    let good = json!({"stringData": {"password": common::DIALOG_PASSWORD}});
    secrets
        .patch("dialog360", &PatchParams::default(), &Patch::Merge(&good))
        .await
        .unwrap();
    env.wait_for::<SignalsKeyword>("k", "Ready after the fix, without a restart", ready)
        .await;
}

/// `kubectl delete namespace` often deletes the Secret first: the credentials this process
/// read last still delete the keyword upstream (SPEC 7.1).
#[tokio::test]
async fn deletion_after_the_secret_went_uses_the_credentials_last_read() {
    let env = env("skw-remember").await;
    env.create::<SignalsKeyword>(keyword("k", "hi")).await;
    env.wait_for::<SignalsKeyword>("k", "Ready", ready).await;
    Api::<Secret>::namespaced(env.client.clone(), &env.ns.name)
        .delete("dialog360", &DeleteParams::default())
        .await
        .unwrap();
    env.api::<SignalsKeyword>()
        .delete("k", &DeleteParams::default())
        .await
        .unwrap();
    env.wait_gone::<SignalsKeyword>("k").await;
    assert!(
        env.fake
            .keywords("c1", "a1")
            .iter()
            .all(|k| k.status != "active"),
        "the keyword was deleted upstream with the remembered credentials"
    );
}

/// Credentials this process never read (say, after a restart mid-deletion) cannot delete
/// anything: a deletion of an object that knows its upstream id waits for Orphan.
#[tokio::test]
async fn deletion_with_credentials_never_read_waits_until_orphaned() {
    let mut env = common::env_without_operator("skw-orphan").await;
    let id = env
        .fake
        .insert_keyword("c1", "a1", "hi", Some("ad1"), false);
    let mut manifest = keyword("k", "hi");
    manifest["metadata"]["annotations"] = json!({"ctwa.dev/external-id": id});
    manifest["metadata"]["finalizers"] = json!(["ctwa.dev/finalizer"]);
    manifest["spec"]["secretRef"]["name"] = json!("never-existed");
    env.create::<SignalsKeyword>(manifest).await;
    env.start_operator(std::time::Duration::from_secs(600));
    env.api::<SignalsKeyword>()
        .delete("k", &DeleteParams::default())
        .await
        .unwrap();
    env.wait_for::<SignalsKeyword>("k", "Stalled while deleting, naming Orphan", |o| {
        condition(o, "Stalled") == Some(("True".into(), "SecretNotFound".into()))
            && o["status"]["conditions"][0]["message"]
                .as_str()
                .is_some_and(|m| m.contains("never read it") && m.contains("Orphan"))
    })
    .await;
    let orphan = json!({"spec": {"deletionPolicy": "Orphan"}});
    env.api::<SignalsKeyword>()
        .patch("k", &PatchParams::default(), &Patch::Merge(&orphan))
        .await
        .unwrap();
    env.wait_gone::<SignalsKeyword>("k").await;
    assert_eq!(
        env.fake
            .keywords("c1", "a1")
            .iter()
            .filter(|k| k.status == "active")
            .count(),
        1,
        "Orphan left the keyword upstream"
    );
}
