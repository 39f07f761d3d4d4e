//! Canned answers, request filters and 429 details of fault rules; the Signals clock and
//! short pages. X requests here are unsigned on purpose: injected faults answer before
//! authentication, so an unsigned request that a rule catches gets the rule's answer and one
//! that it does not catch gets X's 401.

use fake_upstreams::faults::Canned;
use fake_upstreams::{FakeUpstreams, FaultRule, PostbackKind, x_errors};
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, DATE, RETRY_AFTER};
use serde_json::{Value, json};

const EVENTS: &str = "/v1/clients/c1/apps/a1/events?date_from=2026-01-01T00:00:00&date_to=2027-01-01T00:00:00&limit=1000";

/// A client; the workspace builds reqwest with `rustls-no-provider` (the operator chooses its
/// TLS provider), so one must be installed even for plain HTTP.
fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

async fn post_conversion(fake: &FakeUpstreams, pixel: &str, body: &str) -> reqwest::Response {
    http()
        .post(format!("{}/measurement/conversions/{pixel}", fake.x_url()))
        .header(CONTENT_TYPE, "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

async fn signals_get(fake: &FakeUpstreams, path: &str) -> reqwest::Response {
    http()
        .get(format!("{}{path}", fake.signals_url()))
        .bearer_auth("t")
        .send()
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

fn content_type(r: &reqwest::Response) -> Option<String> {
    r.headers()
        .get(CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_string())
}

fn event(id: &str, date: &str) -> Value {
    json!({"id": id, "date": date, "type": "converted"})
}

fn respond(canned: Canned) -> FaultRule {
    FaultRule {
        api: Some("x".into()),
        respond: Some(canned),
        ..FaultRule::default()
    }
}

fn epoch_now() -> i64 {
    jiff::Timestamp::now().as_second()
}

#[tokio::test]
async fn a_canned_html_400_comes_back_verbatim() {
    let fake = FakeUpstreams::start().await.unwrap();
    fake.set_fault(respond(x_errors::html_400()));
    let r = post_conversion(&fake, "pix7", r#"{"conversions":[]}"#).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(content_type(&r).unwrap().starts_with("text/html"));
    assert_eq!(r.text().await.unwrap(), x_errors::html_400().body);
    assert_eq!(fake.requests()[0].status, 400);
}

#[tokio::test]
async fn canned_content_type_follows_the_body_unless_given() {
    let fake = FakeUpstreams::start().await.unwrap();
    let cases = [
        ("pix-html", "<p>busy</p>", Some("text/html; charset=utf-8")),
        ("pix-object", r#"{"errors":[]}"#, Some("application/json")),
        ("pix-array", "[1]", Some("application/json")),
        ("pix-empty", "", None),
    ];
    for (pixel, body, _) in cases {
        fake.set_fault(FaultRule {
            path_contains: Some(pixel.into()),
            ..respond(Canned {
                status: 503,
                body: body.into(),
                headers: vec![("x-canned".into(), pixel.into())],
                ..Canned::default()
            })
        });
    }
    for (pixel, body, expected) in cases {
        let r = post_conversion(&fake, pixel, "{}").await;
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(content_type(&r).as_deref(), expected, "{pixel}");
        assert_eq!(r.headers()["x-canned"], pixel);
        // Injected before X's budget, like the other faults.
        assert!(r.headers().get("x-rate-limit-remaining").is_none());
        assert_eq!(r.text().await.unwrap(), body);
    }
}

#[tokio::test]
async fn every_documented_error_is_answered_as_documented() {
    let fake = FakeUpstreams::start().await.unwrap();
    for e in x_errors::documented() {
        fake.clear_faults();
        fake.set_fault(respond(x_errors::canned(&e)));
        let r = post_conversion(&fake, "pix7", "{}").await;
        assert_eq!(r.status().as_u16(), e.status);
        assert_eq!(content_type(&r).as_deref(), Some("application/json"));
        assert_eq!(r.text().await.unwrap(), e.body);
    }
}

#[tokio::test]
async fn path_contains_picks_one_pixel() {
    let fake = FakeUpstreams::start().await.unwrap();
    let too_large = x_errors::documented()
        .into_iter()
        .find(|e| e.kind == x_errors::ErrorKind::TooLarge)
        .unwrap();
    fake.set_fault(FaultRule {
        path_contains: Some("pix7".into()),
        ..respond(x_errors::canned(&too_large))
    });
    let hit = post_conversion(&fake, "pix7", "{}").await;
    assert_eq!(hit.status(), StatusCode::BAD_REQUEST);
    assert_eq!(hit.text().await.unwrap(), too_large.body);
    let missed = post_conversion(&fake, "pix8", "{}").await;
    assert_eq!(missed.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn body_contains_picks_the_requests_carrying_one_conversion() {
    let fake = FakeUpstreams::start().await.unwrap();
    let bad_email = x_errors::documented()
        .into_iter()
        .find(|e| e.body.contains("hashed_email (abc)"))
        .unwrap();
    fake.set_fault(FaultRule {
        body_contains: Some(r#""conversion_id":"conv-2""#.into()),
        ..respond(x_errors::canned(&bad_email))
    });
    let with = |ids: &[&str]| {
        let conversions: Vec<Value> = ids.iter().map(|id| json!({"conversion_id": id})).collect();
        json!({ "conversions": conversions }).to_string()
    };
    let r = post_conversion(&fake, "pix7", &with(&["conv-1", "conv-2"])).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(r.text().await.unwrap(), bad_email.body);
    let r = post_conversion(&fake, "pix7", &with(&["conv-1", "conv-3"])).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // "conv-20" must not pass for "conv-2": the rule quotes the id.
    let r = post_conversion(&fake, "pix7", &with(&["conv-20"])).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn remaining_counts_only_matching_requests() {
    let fake = FakeUpstreams::start().await.unwrap();
    fake.set_fault(FaultRule {
        path_contains: Some("pix7".into()),
        remaining: Some(2),
        ..respond(x_errors::html_400())
    });
    let statuses = [
        post_conversion(&fake, "pix8", "{}").await.status(),
        post_conversion(&fake, "pix7", "{}").await.status(),
        post_conversion(&fake, "pix8", "{}").await.status(),
        post_conversion(&fake, "pix7", "{}").await.status(),
        post_conversion(&fake, "pix7", "{}").await.status(),
    ];
    assert_eq!(statuses.map(|s| s.as_u16()), [401, 400, 401, 400, 401]);
}

#[tokio::test]
async fn respond_rate_shares_with_the_other_faults() {
    let fake = FakeUpstreams::start().await.unwrap();
    // A rule that only rate-limits keeps doing so: its canned answer has rate 0.
    fake.set_fault(FaultRule {
        rate_limit_rate: 1.0,
        ..respond(x_errors::html_400())
    });
    let r = post_conversion(&fake, "pix7", "{}").await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    fake.clear_faults();
    fake.set_fault(FaultRule {
        rate_limit_rate: 0.0,
        error_rate: 0.0,
        respond_rate: 1.0,
        ..respond(x_errors::html_400())
    });
    let r = post_conversion(&fake, "pix7", "{}").await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn retry_after_zero_on_an_injected_429() {
    let fake = FakeUpstreams::start().await.unwrap();
    fake.set_fault(FaultRule {
        api: Some("x".into()),
        rate_limit_rate: 1.0,
        retry_after: Some("0".into()),
        ..FaultRule::default()
    });
    let r = post_conversion(&fake, "pix7", "{}").await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.headers()[RETRY_AFTER], "0");
    let reset: i64 = r.headers()["x-rate-limit-reset"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (reset - epoch_now() - 2).abs() <= 1,
        "default reset is 2 s ahead"
    );
}

#[tokio::test]
async fn a_negative_reset_offset_is_a_reset_in_the_past() {
    let fake = FakeUpstreams::start().await.unwrap();
    admin_post(
        &fake,
        "/faults",
        json!({"api": "x", "rate_limit_rate": 1.0, "rate_limit_reset_offset_secs": -30}),
    )
    .await;
    let r = post_conversion(&fake, "pix7", "{}").await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.headers()[RETRY_AFTER], "1");
    let reset: i64 = r.headers()["x-rate-limit-reset"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let now = epoch_now();
    assert!(reset < now, "reset {reset} is not before {now}");
    assert!(now - reset <= 31);
}

#[tokio::test]
async fn admin_api_takes_a_canned_rule() {
    let fake = FakeUpstreams::start().await.unwrap();
    admin_post(
        &fake,
        "/faults",
        json!({"operation": "x.send_conversions", "path_contains": "pix7", "remaining": 1,
               "respond": {"status": 400, "body": "<html>proxy</html>"}}),
    )
    .await;
    let r = post_conversion(&fake, "pix7", "{}").await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        content_type(&r).as_deref(),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(r.text().await.unwrap(), "<html>proxy</html>");
    let r = post_conversion(&fake, "pix7", "{}").await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_canned_answer_after_effect_lets_the_write_land() {
    let fake = FakeUpstreams::start().await.unwrap();
    fake.add_static_token("t");
    fake.set_fault(FaultRule {
        api: Some("signals".into()),
        after_effect: true,
        body_contains: Some("https://example.com/pb".into()),
        respond: Some(Canned {
            status: 502,
            body: "<html>bad gateway</html>".into(),
            ..Canned::default()
        }),
        ..FaultRule::default()
    });
    let r = http()
        .post(format!(
            "{}/v1/clients/c1/apps/a1/ads/ad1/signal",
            fake.signals_url()
        ))
        .bearer_auth("t")
        .json(&json!({"url": "https://example.com/pb"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
    assert!(r.headers().contains_key(DATE));
    assert_eq!(r.text().await.unwrap(), "<html>bad gateway</html>");
    assert_eq!(
        fake.postback_url("c1", "a1", "ad1", PostbackKind::Ad)
            .as_deref(),
        Some("https://example.com/pb")
    );
}

fn parse_http_date(r: &reqwest::Response) -> jiff::Timestamp {
    // Hyper adds its own `Date` unless one is set; two would leave clients guessing.
    assert_eq!(r.headers().get_all(DATE).iter().count(), 1);
    let text = r.headers()[DATE].to_str().unwrap();
    jiff::civil::DateTime::strptime("%a, %d %b %Y %H:%M:%S GMT", text)
        .unwrap_or_else(|e| panic!("Date {text:?}: {e}"))
        .to_zoned(jiff::tz::TimeZone::UTC)
        .unwrap()
        .timestamp()
}

fn assert_near(got: jiff::Timestamp, want: jiff::Timestamp) {
    let off = (got - want).get_seconds().abs();
    assert!(off <= 2, "{got} is {off} s from {want}");
}

#[tokio::test]
async fn signals_date_header_follows_the_clock_offset() {
    let fake = FakeUpstreams::start().await.unwrap();
    fake.add_static_token("t");
    let hour = jiff::SignedDuration::from_hours(1);

    let r = signals_get(&fake, EVENTS).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_near(parse_http_date(&r), jiff::Timestamp::now());

    fake.set_signals_clock_offset(3600);
    assert_near(fake.signals_now(), jiff::Timestamp::now() + hour);
    let r = signals_get(&fake, EVENTS).await;
    assert_near(parse_http_date(&r), jiff::Timestamp::now() + hour);

    admin_post(&fake, "/signals-clock", json!({"offset_seconds": -7200})).await;
    let r = signals_get(&fake, EVENTS).await;
    assert_near(parse_http_date(&r), jiff::Timestamp::now() - hour * 2);
    // Refusals are dated by the same clock.
    let r = http()
        .get(format!("{}{EVENTS}", fake.signals_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_near(parse_http_date(&r), jiff::Timestamp::now() - hour * 2);
    let r = http()
        .post(format!("{}/token", fake.hub_url()))
        .json(&json!({"username": "nobody", "password": "x"}))
        .send()
        .await
        .unwrap();
    assert_near(parse_http_date(&r), jiff::Timestamp::now() - hour * 2);
}

#[tokio::test]
async fn record_event_now_dates_by_the_signals_clock() {
    let fake = FakeUpstreams::start().await.unwrap();
    fake.add_static_token("t");
    fake.set_signals_clock_offset(-86_400);
    fake.record_event_now("c1", "a1", json!({"id": "e1", "type": "converted"}));
    let yesterday = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(24);
    let r = signals_get(
        &fake,
        &format!(
            "/v1/clients/c1/apps/a1/events?date_from={}&limit=10",
            (yesterday - jiff::SignedDuration::from_secs(60)).strftime("%Y-%m-%dT%H:%M:%S")
        ),
    )
    .await;
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["total_count"], 1);
    let date = body["data"][0]["date"].as_str().unwrap();
    assert_eq!(date.len(), "YYYY-MM-DDTHH:MM:SS".len(), "{date}");
    let civil: jiff::civil::DateTime = date.parse().unwrap();
    assert_near(
        civil.to_zoned(jiff::tz::TimeZone::UTC).unwrap().timestamp(),
        yesterday,
    );
}

#[tokio::test]
async fn max_page_shortens_pages_but_not_limit_or_total() {
    let fake = FakeUpstreams::start().await.unwrap();
    fake.add_static_token("t");
    let events = (1..=5)
        .map(|i| event(&format!("e{i}"), &format!("2026-11-0{i}T00:00:00")))
        .collect();
    fake.seed_events("c1", "a1", events);

    fake.set_signals_max_page(Some(2));
    let body: Value = signals_get(&fake, EVENTS).await.json().await.unwrap();
    assert_eq!(body["data"].as_array().unwrap().len(), 2);
    assert_eq!(body["total_count"], 5);
    assert_eq!(body["limit"], 1000);
    let body: Value = signals_get(&fake, &format!("{EVENTS}&offset=3"))
        .await
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["e4", "e5"]);

    // Events seeded between pages are counted on the next page.
    fake.seed_events("c1", "a1", vec![event("e6", "2026-11-06T00:00:00")]);
    let body: Value = signals_get(&fake, EVENTS).await.json().await.unwrap();
    assert_eq!(body["total_count"], 6);

    admin_post(&fake, "/signals-max-page", json!({"max": null})).await;
    let body: Value = signals_get(&fake, EVENTS).await.json().await.unwrap();
    assert_eq!(body["data"].as_array().unwrap().len(), 6);
    admin_post(&fake, "/signals-max-page", json!({"max": 1})).await;
    let body: Value = signals_get(&fake, EVENTS).await.json().await.unwrap();
    assert_eq!(body["data"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn rules_without_the_new_fields_behave_as_before() {
    let fake = FakeUpstreams::start().await.unwrap();
    fake.add_static_token("t");
    fake.set_fault(FaultRule {
        api: Some("signals".into()),
        error_rate: 1.0,
        remaining: Some(1),
        ..FaultRule::default()
    });
    let r = signals_get(&fake, EVENTS).await;
    assert!(r.status().is_server_error());
    assert_eq!(content_type(&r).as_deref(), Some("application/json"));
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["detail"], "injected server error");
    assert_eq!(signals_get(&fake, EVENTS).await.status(), StatusCode::OK);
}
