//! Every manifest in examples/ is accepted by a real API server and reads back with the
//! schema defaults filled in.

use ctwa_operator::api::{
    ConversionBridge, ConversionEventType, CtwaTracking, DeletionPolicy, ManagementPolicy,
    SignalsConversionEvent, SignalsEventType, SignalsKeyword, SignalsPostback, XWebEventTag,
};
use ctwa_testenv::{TestNamespace, apply, client, read_yaml_documents, repo_root};
use kube::api::DynamicObject;

fn typed<T: serde::de::DeserializeOwned>(object: &DynamicObject) -> T {
    serde_json::from_value(serde_json::to_value(object).expect("serialisable"))
        .expect("stored object matches the Rust type")
}

#[tokio::test]
async fn examples_are_accepted_and_read_back_with_defaults() {
    let client = client().await;
    let ns = TestNamespace::create(&client, "examples").await;

    let mut files: Vec<_> = std::fs::read_dir(repo_root().join("examples"))
        .expect("examples/ exists")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().and_then(|e| e.to_str()) == Some("yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 8, "one manifest per kind plus two Secrets");

    let mut kinds = Vec::new();
    for file in &files {
        for doc in read_yaml_documents(file) {
            let stored = apply(&client, &ns.name, &doc)
                .await
                .unwrap_or_else(|e| panic!("{} was rejected: {e}", file.display()));
            let kind = doc["kind"].as_str().expect("kind").to_string();
            match kind.as_str() {
                "CtwaTracking" => {
                    let o: CtwaTracking = typed(&stored);
                    assert!(o.spec.enabled);
                    assert_eq!(o.spec.deletion_policy, DeletionPolicy::Delete);
                }
                "SignalsKeyword" => {
                    let o: SignalsKeyword = typed(&stored);
                    assert!(!o.spec.shared, "shared defaults to false");
                    assert_eq!(o.spec.management_policy, ManagementPolicy::Manage);
                }
                "SignalsPostback" => {
                    let o: SignalsPostback = typed(&stored);
                    assert!(
                        !o.spec.allow_insecure_url,
                        "allowInsecureUrl defaults to false"
                    );
                    assert_eq!(stored.data["spec"]["managementPolicy"], "Manage");
                    assert_eq!(o.spec.deletion_policy, DeletionPolicy::Delete);
                }
                "SignalsConversionEvent" => {
                    let o: SignalsConversionEvent = typed(&stored);
                    assert_eq!(o.spec.event_type, ConversionEventType::Keyword);
                    assert!(
                        o.spec.keyword_ref.is_some(),
                        "the example follows its keyword"
                    );
                    assert_eq!(o.spec.deletion_policy, DeletionPolicy::Delete);
                }
                "XWebEventTag" => {
                    let o: XWebEventTag = typed(&stored);
                    assert_eq!(stored.data["spec"]["managementPolicy"], "Manage");
                    assert!(o.spec.view_through_window <= o.spec.click_window);
                }
                "ConversionBridge" => {
                    let o: ConversionBridge = typed(&stored);
                    assert_eq!(
                        o.spec.source.signals.event_types,
                        [SignalsEventType::Converted],
                        "the example forwards what the SignalsConversionEvent makes"
                    );
                    assert_eq!(o.spec.batching.max_batch_size, 500);
                }
                "Secret" => {}
                other => panic!("unexpected kind {other} in examples/"),
            }
            kinds.push(kind);
        }
    }
    for kind in [
        "CtwaTracking",
        "SignalsKeyword",
        "SignalsPostback",
        "SignalsConversionEvent",
        "XWebEventTag",
        "ConversionBridge",
    ] {
        assert!(kinds.iter().any(|k| k == kind), "examples/ lacks a {kind}");
    }
    assert_eq!(kinds.iter().filter(|k| *k == "Secret").count(), 2);
    ns.delete().await;
}

/// A minimal manifest gets every documented default from the API server itself.
#[tokio::test]
async fn minimal_manifests_get_every_default() {
    let client = client().await;
    let ns = TestNamespace::create(&client, "defaults").await;

    let bridge = serde_json::json!({
        "apiVersion": "ctwa.dev/v1alpha1", "kind": "ConversionBridge",
        "metadata": {"name": "minimal"},
        "spec": {
            "source": {"signals": {"clientId": "c", "appId": "a", "secretRef": {"name": "s"}}},
            "destination": {"x": {"pixelId": "p", "eventId": "e", "secretRef": {"name": "x"}}}
        }
    });
    let stored = apply(&client, &ns.name, &bridge)
        .await
        .expect("minimal bridge accepted");
    let spec = &stored.data["spec"];
    assert_eq!(spec["suspend"], false);
    assert_eq!(
        spec["source"]["signals"]["eventTypes"],
        serde_json::json!(["converted"])
    );
    assert_eq!(spec["source"]["signals"]["pollInterval"], "60s");
    assert_eq!(spec["source"]["signals"]["lookback"], "5m");
    assert_eq!(spec["source"]["postbacks"]["enabled"], false);
    assert_eq!(spec["batching"]["maxBatchSize"], 500);
    assert_eq!(spec["batching"]["flushInterval"], "5s");
    assert_eq!(spec["rateLimit"]["eventsPer15Min"], 60000);

    let keyword = serde_json::json!({
        "apiVersion": "ctwa.dev/v1alpha1", "kind": "SignalsKeyword",
        "metadata": {"name": "minimal"},
        "spec": {"clientId": "c", "appId": "a", "keyword": "hello", "secretRef": {"name": "s"}}
    });
    let stored = apply(&client, &ns.name, &keyword)
        .await
        .expect("minimal keyword accepted");
    let spec = &stored.data["spec"];
    assert_eq!(spec["shared"], false);
    assert_eq!(spec["managementPolicy"], "Manage");
    assert_eq!(spec["deletionPolicy"], "Delete");

    let tracking = serde_json::json!({
        "apiVersion": "ctwa.dev/v1alpha1", "kind": "CtwaTracking",
        "metadata": {"name": "minimal"},
        "spec": {"partnerId": "p", "clientId": "c", "channelId": "ch", "secretRef": {"name": "s"}}
    });
    let stored = apply(&client, &ns.name, &tracking)
        .await
        .expect("minimal tracking accepted");
    assert_eq!(stored.data["spec"]["enabled"], true);
    assert_eq!(stored.data["spec"]["deletionPolicy"], "Delete");

    let tag = serde_json::json!({
        "apiVersion": "ctwa.dev/v1alpha1", "kind": "XWebEventTag",
        "metadata": {"name": "minimal"},
        "spec": {"accountId": "acc", "name": "n", "type": "SIGN_UP", "clickWindow": 7,
                 "viewThroughWindow": 0, "secretRef": {"name": "x"}}
    });
    let stored = apply(&client, &ns.name, &tag)
        .await
        .expect("minimal tag accepted");
    assert_eq!(stored.data["spec"]["retargetingEnabled"], false);
    assert_eq!(stored.data["spec"]["managementPolicy"], "Manage");

    let conversion = serde_json::json!({
        "apiVersion": "ctwa.dev/v1alpha1", "kind": "SignalsConversionEvent",
        "metadata": {"name": "minimal"},
        "spec": {"clientId": "c", "appId": "a", "campaignId": "cmp", "type": "conversation",
                 "secretRef": {"name": "s"}}
    });
    let stored = apply(&client, &ns.name, &conversion)
        .await
        .expect("minimal conversion event accepted");
    assert_eq!(stored.data["spec"]["deletionPolicy"], "Delete");
    assert!(stored.data["spec"].get("managementPolicy").is_none());
    ns.delete().await;
}
