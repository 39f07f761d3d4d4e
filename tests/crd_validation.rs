//! Invalid manifests and invalid updates are rejected by the real API server, through the
//! CRD schema and its CEL rules, with a message that tells the user what is wrong.

use ctwa_testenv::{TestNamespace, client, create, replace};
use serde_json::{Value, json};

fn tracking() -> Value {
    json!({
        "apiVersion": "ctwa.dev/v1alpha1", "kind": "CtwaTracking",
        "metadata": {"name": "tracking"},
        "spec": {"partnerId": "p1", "clientId": "c1", "channelId": "ch1", "secretRef": {"name": "dialog360"}}
    })
}

fn keyword() -> Value {
    json!({
        "apiVersion": "ctwa.dev/v1alpha1", "kind": "SignalsKeyword",
        "metadata": {"name": "keyword"},
        "spec": {"clientId": "c1", "appId": "a1", "keyword": "order confirmed", "adId": "ad1",
                 "secretRef": {"name": "dialog360"}}
    })
}

fn postback() -> Value {
    json!({
        "apiVersion": "ctwa.dev/v1alpha1", "kind": "SignalsPostback",
        "metadata": {"name": "postback"},
        "spec": {"clientId": "c1", "appId": "a1", "adId": "ad1", "event": "Keyword",
                 "keywordId": "kw1", "url": "https://hooks.example.com/ctwa",
                 "secretRef": {"name": "dialog360"}}
    })
}

fn tag() -> Value {
    json!({
        "apiVersion": "ctwa.dev/v1alpha1", "kind": "XWebEventTag",
        "metadata": {"name": "tag"},
        "spec": {"accountId": "acc1", "name": "Purchase", "type": "PURCHASE", "clickWindow": 7,
                 "viewThroughWindow": 1, "secretRef": {"name": "x-ads"}}
    })
}

fn bridge() -> Value {
    json!({
        "apiVersion": "ctwa.dev/v1alpha1", "kind": "ConversionBridge",
        "metadata": {"name": "bridge"},
        "spec": {
            "source": {"signals": {"clientId": "c1", "appId": "a1", "secretRef": {"name": "dialog360"}}},
            "destination": {"x": {"pixelId": "o8z6j", "eventId": "o87ne", "secretRef": {"name": "x-ads"}}}
        }
    })
}

fn set(path: &'static str, value: Value) -> impl Fn(&mut Value) {
    move |object: &mut Value| {
        let (parent, key) = path.rsplit_once('/').expect("pointer with a parent");
        object
            .pointer_mut(parent)
            .unwrap_or_else(|| panic!("{parent} exists"))
            .as_object_mut()
            .expect("parent is an object")
            .insert(key.to_string(), value.clone());
    }
}

fn remove(path: &'static str) -> impl Fn(&mut Value) {
    move |object: &mut Value| {
        let (parent, key) = path.rsplit_once('/').expect("pointer with a parent");
        object
            .pointer_mut(parent)
            .and_then(Value::as_object_mut)
            .expect("parent is an object")
            .remove(key);
    }
}

fn both(a: impl Fn(&mut Value), b: impl Fn(&mut Value)) -> impl Fn(&mut Value) {
    move |object: &mut Value| {
        a(object);
        b(object);
    }
}

/// `Create`: the mutated base is rejected on creation. `Update`: the base is created, then the
/// mutated base is rejected as an update.
enum Step {
    Create,
    Update,
}

struct Case {
    name: &'static str,
    base: fn() -> Value,
    step: Step,
    mutate: Box<dyn Fn(&mut Value)>,
    /// Parts the API server's message must contain (field path and explanation).
    expect: &'static [&'static str],
}

fn case(
    name: &'static str,
    base: fn() -> Value,
    step: Step,
    mutate: impl Fn(&mut Value) + 'static,
    expect: &'static [&'static str],
) -> Case {
    Case {
        name,
        base,
        step,
        mutate: Box::new(mutate),
        expect,
    }
}

fn cases() -> Vec<Case> {
    use Step::{Create, Update};
    vec![
        // CtwaTracking
        case(
            "immutable channelId",
            tracking,
            Update,
            set("/spec/channelId", json!("ch2")),
            &["spec.channelId", "channelId is immutable"],
        ),
        case(
            "immutable partnerId",
            tracking,
            Update,
            set("/spec/partnerId", json!("p2")),
            &["spec.partnerId", "partnerId is immutable"],
        ),
        case(
            "channelId with a slash",
            tracking,
            Create,
            set("/spec/channelId", json!("a/b")),
            &["spec.channelId", "should match"],
        ),
        case(
            "partnerId longer than 128",
            tracking,
            Create,
            set("/spec/partnerId", json!("p".repeat(129))),
            &["spec.partnerId", "may not be more than 128"],
        ),
        case(
            "missing secretRef",
            tracking,
            Create,
            remove("/spec/secretRef"),
            &["spec.secretRef", "Required value"],
        ),
        case(
            "unknown deletionPolicy",
            tracking,
            Create,
            set("/spec/deletionPolicy", json!("Destroy")),
            &[
                "spec.deletionPolicy",
                "Unsupported value: \"Destroy\"",
                "\"Delete\", \"Orphan\"",
            ],
        ),
        case(
            "enabled not a boolean",
            tracking,
            Create,
            set("/spec/enabled", json!("yes")),
            &["spec.enabled", "must be of type boolean"],
        ),
        case(
            "unknown field",
            tracking,
            Create,
            set("/spec/channel", json!("x")),
            &["unknown field \"spec.channel\""],
        ),
        // SignalsKeyword
        case(
            "shared keyword with adId",
            keyword,
            Create,
            set("/spec/shared", json!(true)),
            &["adId must not be set when shared is true"],
        ),
        case(
            "empty keyword",
            keyword,
            Create,
            set("/spec/keyword", json!("")),
            &["spec.keyword", "should be at least 1 chars long"],
        ),
        case(
            "keyword longer than 256",
            keyword,
            Create,
            set("/spec/keyword", json!("k".repeat(257))),
            &["spec.keyword", "may not be more than 256"],
        ),
        case(
            "changed adId",
            keyword,
            Update,
            set("/spec/adId", json!("ad2")),
            &["adId is immutable"],
        ),
        case(
            "removed adId",
            keyword,
            Update,
            remove("/spec/adId"),
            &["adId is immutable"],
        ),
        case(
            "changed appId",
            keyword,
            Update,
            set("/spec/appId", json!("a2")),
            &["spec.appId", "appId is immutable"],
        ),
        case(
            "unknown managementPolicy",
            keyword,
            Create,
            set("/spec/managementPolicy", json!("ReadOnly")),
            &[
                "spec.managementPolicy",
                "Unsupported value: \"ReadOnly\"",
                "\"Manage\", \"Observe\"",
            ],
        ),
        // SignalsPostback
        case(
            "Keyword postback with neither keywordRef nor keywordId",
            postback,
            Create,
            remove("/spec/keywordId"),
            &["event Keyword needs exactly one of keywordRef or keywordId"],
        ),
        case(
            "Keyword postback with both keywordRef and keywordId",
            postback,
            Create,
            set("/spec/keywordRef", json!({"name": "order-confirmed"})),
            &["event Keyword needs exactly one of keywordRef or keywordId"],
        ),
        case(
            "Ad postback with a keywordId",
            postback,
            Create,
            set("/spec/event", json!("Ad")),
            &["keywordRef and keywordId are only allowed when event is Keyword"],
        ),
        case(
            "both url and bridgeRef",
            postback,
            Create,
            set("/spec/bridgeRef", json!({"name": "bridge"})),
            &["exactly one of url or bridgeRef must be set"],
        ),
        case(
            "neither url nor bridgeRef",
            postback,
            Create,
            remove("/spec/url"),
            &["exactly one of url or bridgeRef must be set"],
        ),
        case(
            "http url without allowInsecureUrl",
            postback,
            Create,
            set("/spec/url", json!("http://hooks.example.com/ctwa")),
            &["url uses http://", "allowInsecureUrl: true"],
        ),
        case(
            "HTTP url in capitals without allowInsecureUrl",
            postback,
            Create,
            set("/spec/url", json!("HTTP://hooks.example.com/ctwa")),
            &["url uses http://", "allowInsecureUrl: true"],
        ),
        case(
            "relative url",
            postback,
            Create,
            set("/spec/url", json!("/hooks/ctwa")),
            &["url must be an absolute https:// URL"],
        ),
        case(
            "ftp url",
            postback,
            Create,
            set("/spec/url", json!("ftp://hooks.example.com/ctwa")),
            &["url must be an absolute https:// URL"],
        ),
        case(
            "unknown event",
            postback,
            Create,
            set("/spec/event", json!("Purchase")),
            &[
                "spec.event",
                "Unsupported value: \"Purchase\"",
                "\"Ad\", \"Keyword\", \"SessionStart\"",
            ],
        ),
        case(
            "changed event",
            postback,
            Update,
            both(set("/spec/event", json!("Ad")), remove("/spec/keywordId")),
            &["event is immutable"],
        ),
        // XWebEventTag
        case(
            "viewThroughWindow greater than clickWindow",
            tag,
            Create,
            set("/spec/viewThroughWindow", json!(14)),
            &["viewThroughWindow must be less than or equal to clickWindow"],
        ),
        case(
            "clickWindow 3",
            tag,
            Create,
            set("/spec/clickWindow", json!(3)),
            &[
                "spec.clickWindow",
                "Unsupported value: 3",
                "\"1\", \"7\", \"14\", \"30\"",
            ],
        ),
        case(
            "viewThroughWindow 2",
            tag,
            Create,
            set("/spec/viewThroughWindow", json!(2)),
            &["spec.viewThroughWindow", "Unsupported value: 2"],
        ),
        case(
            "unknown tag type",
            tag,
            Create,
            set("/spec/type", json!("LEAD")),
            &["spec.type", "Unsupported value: \"LEAD\"", "\"PURCHASE\""],
        ),
        case(
            "empty tag name",
            tag,
            Create,
            set("/spec/name", json!("")),
            &["spec.name", "should be at least 1 chars long"],
        ),
        case(
            "changed accountId",
            tag,
            Update,
            set("/spec/accountId", json!("acc2")),
            &["spec.accountId", "accountId is immutable"],
        ),
        case(
            "missing clickWindow",
            tag,
            Create,
            remove("/spec/clickWindow"),
            &["spec.clickWindow", "Required value"],
        ),
        // ConversionBridge
        case(
            "maxBatchSize 501",
            bridge,
            Create,
            set("/spec/batching", json!({"maxBatchSize": 501})),
            &[
                "spec.batching.maxBatchSize",
                "should be less than or equal to 500",
            ],
        ),
        case(
            "maxBatchSize 0",
            bridge,
            Create,
            set("/spec/batching", json!({"maxBatchSize": 0})),
            &[
                "spec.batching.maxBatchSize",
                "should be greater than or equal to 1",
            ],
        ),
        case(
            "pollInterval 1s",
            bridge,
            Create,
            set("/spec/source/signals/pollInterval", json!("1s")),
            &[
                "spec.source.signals.pollInterval",
                "pollInterval must be at least 5s",
            ],
        ),
        case(
            "pollInterval not a duration",
            bridge,
            Create,
            set("/spec/source/signals/pollInterval", json!("one minute")),
            &["spec.source.signals.pollInterval", "should match"],
        ),
        case(
            "lookback over 48h",
            bridge,
            Create,
            set("/spec/source/signals/lookback", json!("72h")),
            &["lookback must be at most 48h"],
        ),
        case(
            "flushInterval 10ms",
            bridge,
            Create,
            set("/spec/batching", json!({"flushInterval": "10ms"})),
            &["flushInterval must be between 100ms and 5m"],
        ),
        case(
            "both eventId and eventTagRef",
            bridge,
            Create,
            set(
                "/spec/destination/x/eventTagRef",
                json!({"name": "purchase"}),
            ),
            &[
                "spec.destination.x",
                "exactly one of eventId or eventTagRef must be set",
            ],
        ),
        case(
            "neither eventId nor eventTagRef",
            bridge,
            Create,
            remove("/spec/destination/x/eventId"),
            &["exactly one of eventId or eventTagRef must be set"],
        ),
        case(
            "unknown event type",
            bridge,
            Create,
            set(
                "/spec/source/signals/eventTypes",
                json!(["converted", "purchase"]),
            ),
            &[
                "spec.source.signals.eventTypes[1]",
                "Unsupported value: \"purchase\"",
            ],
        ),
        case(
            "duplicate event types",
            bridge,
            Create,
            set(
                "/spec/source/signals/eventTypes",
                json!(["converted", "converted"]),
            ),
            &["spec.source.signals.eventTypes[1]", "Duplicate value"],
        ),
        case(
            "empty event types",
            bridge,
            Create,
            set("/spec/source/signals/eventTypes", json!([])),
            &[
                "spec.source.signals.eventTypes",
                "should have at least 1 items",
            ],
        ),
        case(
            "startTime not a time",
            bridge,
            Create,
            set("/spec/source/signals/startTime", json!("yesterday")),
            &["spec.source.signals.startTime", "must be of type"],
        ),
        case(
            "eventsPer15Min 0",
            bridge,
            Create,
            set("/spec/rateLimit", json!({"eventsPer15Min": 0})),
            &[
                "spec.rateLimit.eventsPer15Min",
                "should be greater than or equal to 1",
            ],
        ),
        case(
            "changed source clientId",
            bridge,
            Update,
            set("/spec/source/signals/clientId", json!("c2")),
            &["spec.source.signals.clientId", "clientId is immutable"],
        ),
        case(
            "missing destination secretRef",
            bridge,
            Create,
            remove("/spec/destination/x/secretRef"),
            &["spec.destination.x.secretRef", "Required value"],
        ),
    ]
}

#[tokio::test]
async fn invalid_manifests_are_rejected_with_a_clear_message() {
    let client = client().await;
    let ns = TestNamespace::create(&client, "validation").await;
    let cases = cases();
    assert!(cases.len() >= 25);

    let mut failures = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let mut object = (case.base)();
        // Each case gets objects of its own so that updates start from a fresh base.
        let name = format!("case-{i}");
        object["metadata"]["name"] = json!(name);
        let result = match case.step {
            Step::Create => {
                (case.mutate)(&mut object);
                create(&client, &ns.name, &object).await
            }
            Step::Update => {
                if let Err(e) = create(&client, &ns.name, &object).await {
                    failures.push(format!("{}: the valid base was rejected: {e}", case.name));
                    continue;
                }
                (case.mutate)(&mut object);
                replace(&client, &ns.name, &object).await
            }
        };
        match result {
            Ok(_) => failures.push(format!("{}: accepted, expected a rejection", case.name)),
            Err(kube::Error::Api(status)) => {
                let message = status.message.clone();
                let missing: Vec<_> = case
                    .expect
                    .iter()
                    .filter(|part| !message.contains(**part))
                    .collect();
                if !missing.is_empty() {
                    failures.push(format!(
                        "{}: message lacks {missing:?}; got: {message}",
                        case.name
                    ));
                }
                if status.code != 422 && status.code != 400 {
                    failures.push(format!(
                        "{}: HTTP {} instead of 422/400",
                        case.name, status.code
                    ));
                }
            }
            Err(e) => failures.push(format!("{}: unexpected error {e}", case.name)),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    ns.delete().await;
}

/// The bases themselves are valid, so every rejection above is due to its one change.
#[tokio::test]
async fn the_valid_bases_are_accepted() {
    let client = client().await;
    let ns = TestNamespace::create(&client, "bases").await;
    for base in [tracking, keyword, postback, tag, bridge] {
        let object = base();
        create(&client, &ns.name, &object)
            .await
            .unwrap_or_else(|e| panic!("{} rejected: {e}", object["kind"]));
    }
    // Allowed updates of mutable fields go through.
    let mut changed = keyword();
    changed["spec"]["keyword"] = json!("order shipped");
    replace(&client, &ns.name, &changed)
        .await
        .expect("keyword text is mutable");
    let mut insecure = postback();
    insecure["spec"]["url"] = json!("http://hooks.internal/ctwa");
    insecure["spec"]["allowInsecureUrl"] = json!(true);
    replace(&client, &ns.name, &insecure)
        .await
        .expect("http with allowInsecureUrl");
    ns.delete().await;
}
