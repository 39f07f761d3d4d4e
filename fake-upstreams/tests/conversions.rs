//! Campaign conversions of the fake Signals: `POST converted_events`, `GET event_types`, and
//! the `converted` copies of events seeded after a conversion was set.

use fake_upstreams::{ConvertedEvent, FakeUpstreams, FaultRule, SIGNALS_EVENT_TYPES};
use reqwest::StatusCode;
use serde_json::{Value, json};

const APP: &str = "/v1/clients/c1/apps/a1";
const DATES: &str = "date_from=2026-01-01T00:00:00&date_to=2027-01-01T00:00:00";

/// A client; the workspace builds reqwest with `rustls-no-provider` (the operator chooses its
/// TLS provider), so one must be installed even for plain HTTP.
fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

async fn fake() -> FakeUpstreams {
    let fake = FakeUpstreams::start().await.unwrap();
    fake.add_static_token("t");
    fake
}

async fn set_conversion(fake: &FakeUpstreams, body: &str) -> (StatusCode, Value) {
    let r = http()
        .post(format!("{}{APP}/converted_events", fake.signals_url()))
        .bearer_auth("t")
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn get(fake: &FakeUpstreams, path: &str) -> (StatusCode, Value) {
    let r = http()
        .get(format!("{}{path}", fake.signals_url()))
        .bearer_auth("t")
        .send()
        .await
        .unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn admin_state(fake: &FakeUpstreams) -> Value {
    http()
        .get(format!("{}/state", fake.admin_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn admin_post(fake: &FakeUpstreams, path: &str, body: Value) {
    let status = http()
        .post(format!("{}{path}", fake.admin_url()))
        .json(&body)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, StatusCode::NO_CONTENT, "{path}");
}

fn event(id: &str, campaign: &str, event_type: &str, type_id: &str, phone: &str) -> Value {
    json!({
        "id": id,
        "app_id": "a1",
        "ad_id": "ad1",
        "campaign_id": campaign,
        "phone": phone,
        "type": event_type,
        "type_id": type_id,
        "type_value": "ready to order",
        "date": "2026-03-01T10:00:00",
    })
}

fn values(types: &Value) -> Vec<&str> {
    types
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["value"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn a_conversion_is_set_shown_and_replaced() {
    let fake = fake().await;
    let body = r#"{"campaign_id":"C1","type":"button","type_id":"b1","type_value":"order"}"#;
    let (status, answer) = set_conversion(&fake, body).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer, json!({"success": true}));
    // The same POST again is idempotent.
    assert_eq!(set_conversion(&fake, body).await.0, StatusCode::OK);
    assert_eq!(
        admin_state(&fake).await["converted_events"],
        json!([{"client": "c1", "app": "a1", "campaign_id": "C1", "type": "button",
                "type_id": "b1", "type_value": "order"}])
    );

    let (status, _) = set_conversion(&fake, r#"{"campaign_id":"C1","type":"keyword"}"#).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        fake.converted_events(),
        vec![ConvertedEvent {
            client: "c1".into(),
            app: "a1".into(),
            campaign_id: "C1".into(),
            event_type: "keyword".into(),
            type_id: None,
            type_value: None,
        }]
    );
    assert_eq!(
        admin_state(&fake).await["converted_events"][0],
        json!({"client": "c1", "app": "a1", "campaign_id": "C1", "type": "keyword",
               "type_id": null, "type_value": null})
    );
    let ops: Vec<String> = fake.requests().into_iter().map(|r| r.operation).collect();
    assert_eq!(ops, vec!["signals.set_converted_event"; 3]);
}

#[tokio::test]
async fn invalid_bodies_are_422_and_change_nothing() {
    let fake = fake().await;
    let (status, answer) = set_conversion(&fake, r#"{"type":"button"}"#).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        answer,
        json!({"detail": [{"loc": ["body", "campaign_id"], "msg": "field required",
                           "type": "value_error.missing"}]})
    );

    let (status, answer) = set_conversion(&fake, "").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let locs: Vec<&Value> = answer["detail"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| &d["loc"])
        .collect();
    assert_eq!(
        locs,
        vec![&json!(["body", "campaign_id"]), &json!(["body", "type"])]
    );

    let (status, answer) = set_conversion(&fake, r#"{"campaign_id":7,"type":"button"}"#).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(answer["detail"][0]["loc"], json!(["body", "campaign_id"]));
    assert_eq!(answer["detail"][0]["type"], "type_error.str");

    fake.set_signals_event_types("c1", "a1", &["button", "keyword"]);
    let (status, answer) = set_conversion(&fake, r#"{"campaign_id":"C1","type":"link"}"#).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        answer,
        json!({"detail": [{"loc": ["body", "type"],
            "msg": "value is not a valid enumeration member; permitted: 'button', 'keyword'",
            "type": "type_error.enum"}]})
    );
    assert!(fake.converted_events().is_empty());
    assert_eq!(admin_state(&fake).await["converted_events"], json!([]));
}

#[tokio::test]
async fn a_bad_token_is_401() {
    let fake = fake().await;
    let url = format!("{}{APP}/converted_events", fake.signals_url());
    let body = json!({"campaign_id": "C1", "type": "button"});
    let r = http().post(&url).json(&body).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = http()
        .post(&url)
        .bearer_auth("wrong")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = http()
        .get(format!("{}{APP}/event_types?{DATES}", fake.signals_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(fake.converted_events().is_empty());
}

#[tokio::test]
async fn event_types_default_restricted_and_strict_dates() {
    let fake = fake().await;
    let (status, types) = get(&fake, &format!("{APP}/event_types?{DATES}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(values(&types), SIGNALS_EVENT_TYPES.to_vec());
    assert_eq!(values(&types).len(), 9);
    assert_eq!(types[0], json!({"name": "Button", "value": "button"}));
    assert_eq!(
        types[8],
        json!({"name": "List reply", "value": "list_reply"})
    );

    admin_post(
        &fake,
        "/signals-event-types/c1/a1",
        json!(["keyword", "button_reply"]),
    )
    .await;
    let (_, types) = get(&fake, &format!("{APP}/event_types?{DATES}")).await;
    assert_eq!(
        types,
        json!([{"name": "Keyword", "value": "keyword"},
               {"name": "Button reply", "value": "button_reply"}])
    );
    // Another app keeps the default.
    let (_, types) = get(
        &fake,
        &format!("/v1/clients/c1/apps/a2/event_types?{DATES}"),
    )
    .await;
    assert_eq!(values(&types).len(), 9);

    let (status, answer) = get(
        &fake,
        &format!("{APP}/event_types?date_to=2027-01-01T00:00:00"),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(answer["detail"][0]["loc"], json!(["query", "date_from"]));
    let (status, answer) = get(
        &fake,
        &format!("{APP}/event_types?date_from=2026-01-01T00:00:00&date_to=tomorrow"),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(answer["detail"][0]["loc"], json!(["query", "date_to"]));
    let ops: Vec<String> = fake.requests().into_iter().map(|r| r.operation).collect();
    assert!(
        ops.iter().all(|o| o == "signals.list_event_types"),
        "{ops:?}"
    );
}

#[tokio::test]
async fn events_seeded_after_a_conversion_are_listed_again_as_converted() {
    let fake = fake().await;
    // Seeded before the conversion: never converted.
    fake.seed_events(
        "c1",
        "a1",
        vec![event("old", "C", "keyword", "K", "+491700000000")],
    );
    let (status, _) = set_conversion(
        &fake,
        r#"{"campaign_id":"C","type":"keyword","type_id":"K"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    fake.seed_events(
        "c1",
        "a1",
        vec![
            event("e1", "C", "keyword", "K", "+491711111111"),
            event("e2", "OTHER", "keyword", "K", "+491722222222"),
            event("e3", "C", "keyword", "K2", "+491733333333"),
        ],
    );
    // Seeded over the admin API too.
    admin_post(
        &fake,
        "/events/c1/a1",
        json!([event("e4", "C", "button", "K", "+491744444444")]),
    )
    .await;

    let (status, page) = get(&fake, &format!("{APP}/events?event_type=converted&{DATES}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["total_count"], 1);
    let mut want = event("e1", "C", "keyword", "K", "+491711111111");
    want["id"] = json!("e1-converted");
    want["type"] = json!("converted");
    assert_eq!(page["data"], json!([want]));

    // The originals are all listed as seeded, the copy next to its original.
    let (_, page) = get(&fake, &format!("{APP}/events?{DATES}")).await;
    let ids: Vec<&str> = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["e1", "e1-converted", "e2", "e3", "e4", "old"]);

    // A conversion without type_id counts every event of its type and campaign.
    set_conversion(&fake, r#"{"campaign_id":"C","type":"button"}"#).await;
    admin_post(
        &fake,
        "/events/c1/a1",
        json!([
            event("e5", "C", "button", "x", "+491755555555"),
            event("e6", "C", "keyword", "K", "+491766666666"),
        ]),
    )
    .await;
    let (_, page) = get(&fake, &format!("{APP}/events?event_type=converted&{DATES}")).await;
    let ids: Vec<&str> = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["e1-converted", "e5-converted"]);
}

#[tokio::test]
async fn a_fault_on_set_converted_event_is_answered() {
    let fake = fake().await;
    fake.set_fault(FaultRule {
        operation: Some("signals.set_converted_event".into()),
        respond: Some(fake_upstreams::Canned {
            status: 503,
            body: r#"{"detail":"unavailable"}"#.into(),
            ..Default::default()
        }),
        remaining: Some(1),
        ..FaultRule::default()
    });
    let body = r#"{"campaign_id":"C1","type":"button"}"#;
    let (status, _) = set_conversion(&fake, body).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(fake.converted_events().is_empty());
    let (status, _) = set_conversion(&fake, body).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(fake.converted_events().len(), 1);
    let statuses: Vec<(String, u16)> = fake
        .requests()
        .into_iter()
        .map(|r| (r.operation, r.status))
        .collect();
    assert_eq!(
        statuses,
        vec![
            ("signals.set_converted_event".to_string(), 503),
            ("signals.set_converted_event".to_string(), 200)
        ]
    );
}
