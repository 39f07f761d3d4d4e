//! Per-credential load (arrivals in a sliding window, requests in flight) and a held request
//! that then succeeds: what the operator's budget and no-lost-edit tests measure with.

use std::time::{Duration, Instant};

use fake_upstreams::{FakeUpstreams, FaultRule};
use serde_json::{Value, json};

/// A client; the workspace builds reqwest with `rustls-no-provider`, so one provider must be
/// installed even for plain HTTP.
fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

async fn login(fake: &FakeUpstreams, user: &str, password: &str) -> String {
    let v: Value = http()
        .post(format!("{}/token", fake.hub_url()))
        .json(&json!({"username": user, "password": password}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["access_token"].as_str().unwrap().to_string()
}

async fn list_keywords(fake: &FakeUpstreams, token: &str) -> u16 {
    http()
        .get(format!(
            "{}/v1/clients/c1/apps/a1/keywords",
            fake.signals_url()
        ))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn load_is_counted_per_credential_in_a_sliding_window() {
    let fake = FakeUpstreams::start().await.unwrap();
    fake.add_hub_user("alice", "pw-a");
    fake.add_hub_user("bob", "pw-b");
    fake.add_static_token("static-token");
    let (alice, bob) = (
        login(&fake, "alice", "pw-a").await,
        login(&fake, "bob", "pw-b").await,
    );
    for _ in 0..5 {
        assert_eq!(list_keywords(&fake, &alice).await, 200);
    }
    assert_eq!(list_keywords(&fake, &bob).await, 200);
    assert_eq!(list_keywords(&fake, "static-token").await, 200);
    assert_eq!(list_keywords(&fake, "not-a-token").await, 401);
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    for _ in 0..3 {
        assert_eq!(list_keywords(&fake, &alice).await, 200);
    }

    let one_second = Duration::from_secs(1);
    let a = fake.credential_load("signals", "alice", one_second);
    assert_eq!(a.requests, 8);
    assert_eq!(
        a.max_in_window, 5,
        "the 5 first within 1 s, then 3 after a pause"
    );
    assert_eq!(a.peak_in_flight, 1, "one after the other");
    assert_eq!(a.in_flight, 0);
    assert_eq!(
        fake.credential_load("signals", "alice", Duration::from_secs(10))
            .max_in_window,
        8
    );
    assert_eq!(
        fake.credential_load("signals", "bob", one_second).requests,
        1
    );
    assert_eq!(
        fake.credential_load("signals", "static-1", one_second)
            .requests,
        1
    );
    assert_eq!(fake.credential_load("hub", "alice", one_second).requests, 0);

    // The request log names the credential, never the token.
    let credentials: Vec<String> = fake
        .requests()
        .into_iter()
        .filter(|r| r.operation == "signals.list_keywords")
        .map(|r| r.credential)
        .collect();
    assert_eq!(credentials.iter().filter(|c| *c == "alice").count(), 8);
    assert!(
        credentials.contains(&String::new()),
        "the bad token has none"
    );
    assert!(!credentials.iter().any(|c| c.contains("hubtok-")));

    fake.clear_credential_load();
    assert_eq!(
        fake.credential_load("signals", "alice", one_second)
            .requests,
        0
    );
}

/// A rule with only `latency_ms` holds the request and then lets it succeed; while it is held
/// it counts as in flight, per operation and per credential.
#[tokio::test]
async fn a_delay_rule_holds_a_request_and_lets_it_succeed() {
    let fake = FakeUpstreams::start().await.unwrap();
    fake.add_hub_user("alice", "pw-a");
    let token = login(&fake, "alice", "pw-a").await;
    fake.set_fault(FaultRule {
        operation: Some("signals.create_keyword".into()),
        latency_ms: 1_500,
        remaining: Some(1),
        ..Default::default()
    });
    let url = format!(
        "{}/v1/clients/c1/apps/a1/keywords?ad_id=ad1",
        fake.signals_url()
    );
    let create = |text: &'static str| {
        let (url, token) = (url.clone(), token.clone());
        async move {
            http()
                .post(url)
                .bearer_auth(token)
                .json(&json!({"keyword": text}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    let started = Instant::now();
    let held = tokio::spawn(create("held"));
    let deadline = Instant::now() + Duration::from_secs(5);
    while fake.in_flight("signals.create_keyword") == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(fake.in_flight("signals.create_keyword"), 1);
    assert_eq!(
        fake.credential_load("signals", "alice", Duration::from_secs(1))
            .in_flight,
        1
    );
    assert!(
        fake.keywords("c1", "a1").is_empty(),
        "not applied while held"
    );
    assert_eq!(held.await.unwrap(), 201);
    assert!(started.elapsed() >= Duration::from_millis(1_500));
    assert_eq!(fake.keywords("c1", "a1")[0].keyword, "held");
    assert_eq!(fake.in_flight("signals.create_keyword"), 0);

    // `remaining: 1`: the next create is not held.
    let t = Instant::now();
    assert_eq!(create("quick").await, 201);
    assert!(t.elapsed() < Duration::from_millis(1_000));
}
