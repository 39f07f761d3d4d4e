//! Contract tests: the operator's upstream clients against the fakes of SPEC section 6.
//! The fakes are strict (auth, signatures, limits, validation), so a client that passes
//! here speaks the documented protocol.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use ctwa_operator::bridge::identity::hash_phone;
use ctwa_operator::upstream::error::{ErrorClass, UpstreamError};
use ctwa_operator::upstream::http::{HttpConfig, Transport};
use ctwa_operator::upstream::hub::HubClient;
use ctwa_operator::upstream::hub_auth::{DialogAuth, HubTokenProvider};
use ctwa_operator::upstream::oauth;
use ctwa_operator::upstream::secret::{DialogCredentials, SecretString, XCredentials};
use ctwa_operator::upstream::signals::{
    ConvertedEvent, EventQuery, KeywordFilter, KeywordStatus, PostbackTarget, SignalsClient,
};
use ctwa_operator::upstream::x_ads::{
    Conversion, ConversionTime, Identifiers, TagParams, TagUpdate, XAdsClient, conversions_body,
};
use fake_upstreams::{FakeUpstreams, FaultRule, PostbackKind, XRateLimits};
use serde_json::{Value, json};

const USER: &str = "partner-user";
const PASSWORD: &str = "partner-password";

struct Env {
    fake: FakeUpstreams,
    transport: Transport,
    tokens: Arc<HubTokenProvider>,
}

async fn env() -> Env {
    env_with(HttpConfig::default()).await
}

async fn env_with(config: HttpConfig) -> Env {
    let fake = FakeUpstreams::start().await.expect("fakes start");
    fake.add_hub_user(USER, PASSWORD);
    fake.add_channel("p1", "c1", "ch1");
    fake.add_x_credentials(fake_x_credentials(), &["acc1"]);
    fake.add_x_account("acc1", "pix1");
    let transport = Transport::from_config(&config).expect("client");
    let tokens =
        Arc::new(HubTokenProvider::new(transport.clone(), &fake.hub_url()).expect("hub url"));
    Env {
        fake,
        transport,
        tokens,
    }
}

fn dialog_auth(password: &str) -> DialogAuth {
    DialogAuth::new(
        "ns/dialog360",
        DialogCredentials::UsernamePassword {
            username: SecretString::new(USER),
            password: SecretString::new(password),
        },
    )
}

fn fake_x_credentials() -> fake_upstreams::XCredentials {
    fake_upstreams::XCredentials {
        consumer_key: "ck-1".into(),
        consumer_secret: "cs-1".into(),
        access_token: "at-1".into(),
        access_token_secret: "ats-1".into(),
    }
}

fn x_credentials(consumer_key: &str, consumer_secret: &str) -> XCredentials {
    XCredentials {
        consumer_key: SecretString::new(consumer_key),
        consumer_secret: SecretString::new(consumer_secret),
        access_token: SecretString::new("at-1"),
        access_token_secret: SecretString::new("ats-1"),
    }
}

impl Env {
    fn hub(&self) -> HubClient {
        HubClient::new(
            self.transport.clone(),
            &self.fake.hub_url(),
            self.tokens.clone(),
            dialog_auth(PASSWORD),
        )
        .unwrap()
    }
    fn signals(&self) -> SignalsClient {
        SignalsClient::new(
            self.transport.clone(),
            &self.fake.signals_url(),
            "c1",
            "a1",
            self.tokens.clone(),
            dialog_auth(PASSWORD),
        )
        .unwrap()
    }
    fn x(&self) -> XAdsClient {
        XAdsClient::new(
            self.transport.clone(),
            &self.fake.x_url(),
            x_credentials("ck-1", "cs-1"),
        )
        .unwrap()
    }
    fn ops(&self, prefix: &str) -> Vec<(String, u16)> {
        self.fake
            .requests()
            .into_iter()
            .filter(|r| r.operation.starts_with(prefix))
            .map(|r| (r.operation, r.status))
            .collect()
    }
}

fn terminal_message(err: &UpstreamError) -> String {
    assert_eq!(err.class(), ErrorClass::Terminal, "{err}");
    err.upstream_message().unwrap_or_default().to_string()
}

// --- Hub ---

#[tokio::test]
async fn hub_enables_and_disables_tracking() {
    let env = env().await;
    let hub = env.hub();
    hub.enable_ctwa("p1", "c1", "ch1").await.expect("enable");
    assert_eq!(env.fake.ctwa_enabled("p1", "c1", "ch1"), Some(true));
    hub.disable_ctwa("p1", "c1", "ch1").await.expect("disable");
    assert_eq!(env.fake.ctwa_enabled("p1", "c1", "ch1"), Some(false));
    // One token serves both calls.
    assert_eq!(env.ops("hub.token").len(), 1);
}

#[tokio::test]
async fn hub_unknown_channel_is_a_terminal_not_found() {
    let env = env().await;
    let err = env.hub().enable_ctwa("p1", "c1", "nope").await.unwrap_err();
    assert!(err.is_not_found());
    assert_eq!(terminal_message(&err), "Channel not found");
}

#[tokio::test]
async fn wrong_password_is_unauthorized_and_terminal() {
    let env = env().await;
    let hub = HubClient::new(
        env.transport.clone(),
        &env.fake.hub_url(),
        env.tokens.clone(),
        dialog_auth("wrong"),
    )
    .unwrap();
    let err = hub.enable_ctwa("p1", "c1", "ch1").await.unwrap_err();
    assert!(err.is_unauthorized(), "{err}");
    assert_eq!(err.class(), ErrorClass::Terminal);
    assert_eq!(env.fake.ctwa_enabled("p1", "c1", "ch1"), Some(false));
}

#[tokio::test]
async fn expired_token_is_refreshed_once_and_the_call_succeeds() {
    let env = env().await;
    let signals = env.signals();
    signals
        .list_keywords(&KeywordFilter::default(), 0, 10)
        .await
        .expect("first call");
    env.fake.expire_all_tokens();
    signals
        .list_keywords(&KeywordFilter::default(), 0, 10)
        .await
        .expect("after refresh");
    let log = env.ops("");
    let expected: Vec<(String, u16)> = [
        ("hub.token", 200),
        ("signals.list_keywords", 200),
        ("signals.list_keywords", 401),
        ("hub.token", 200),
        ("signals.list_keywords", 200),
    ]
    .iter()
    .map(|(o, s)| (o.to_string(), *s))
    .collect();
    assert_eq!(log, expected);
}

#[tokio::test]
async fn a_ready_token_is_used_as_is() {
    let env = env().await;
    env.fake.add_static_token("ready-token-1");
    let auth = DialogAuth::new(
        "ns/token",
        DialogCredentials::Token(SecretString::new("ready-token-1")),
    );
    let hub = HubClient::new(
        env.transport.clone(),
        &env.fake.hub_url(),
        env.tokens.clone(),
        auth,
    )
    .unwrap();
    hub.enable_ctwa("p1", "c1", "ch1")
        .await
        .expect("enable with a ready token");
    assert!(env.ops("hub.token").is_empty());
}

// --- Signals ---

#[tokio::test]
async fn keyword_lifecycle_create_get_patch_delete() {
    let env = env().await;
    let s = env.signals();
    let kw = s
        .create_keyword("ad1", "order confirmed")
        .await
        .expect("create");
    assert_eq!(kw.ad_id.as_deref(), Some("ad1"));
    assert_eq!(
        s.get_keyword(&kw.id, Some("ad1"))
            .await
            .expect("get")
            .keyword,
        "order confirmed"
    );
    // ad_id is sent on GET, PATCH and DELETE (the docs list it): another ad's keyword is not
    // this one.
    assert!(
        s.get_keyword(&kw.id, Some("ad2"))
            .await
            .unwrap_err()
            .is_not_found()
    );
    let shared = s.create_shared_keyword("hello").await.expect("shared");
    assert!(shared.is_shared);

    let new = s
        .patch_keyword(&kw.id, Some("ad1"), "order shipped")
        .await
        .expect("patch");
    assert_ne!(new.id, kw.id, "PATCH returns a new keyword");
    assert_eq!(
        s.get_keyword(&kw.id, None).await.unwrap().status,
        KeywordStatus::Archived
    );
    let active = s
        .list_all_keywords(&KeywordFilter {
            ad_id: Some("ad1".into()),
            status: Some(KeywordStatus::Active),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        active.iter().map(|k| k.id.as_str()).collect::<Vec<_>>(),
        [new.id.as_str()]
    );

    s.delete_keyword(&new.id, Some("ad1"))
        .await
        .expect("delete");
    let err = s.get_keyword(&new.id, None).await.unwrap_err();
    assert!(err.is_not_found());
    assert!(
        s.delete_keyword(&new.id, None)
            .await
            .unwrap_err()
            .is_not_found()
    );
}

#[tokio::test]
async fn keywords_are_listed_across_pages() {
    let env = env().await;
    for i in 0..250 {
        env.fake
            .insert_keyword("c1", "a1", &format!("kw {i}"), Some("ad1"), false);
    }
    let all = env
        .signals()
        .list_all_keywords(&KeywordFilter::default())
        .await
        .unwrap();
    assert_eq!(all.len(), 250);
    let pages = env.ops("signals.list_keywords").len();
    assert!(
        pages >= 3,
        "250 keywords at most 100 per page need 3 pages, saw {pages}"
    );
}

#[tokio::test]
async fn postback_urls_for_the_three_targets() {
    let env = env().await;
    let s = env.signals();
    let targets = [
        (PostbackTarget::Ad { ad: "ad1".into() }, PostbackKind::Ad),
        (
            PostbackTarget::Keyword {
                ad: "ad1".into(),
                keyword_id: "kw9".into(),
            },
            PostbackKind::Keyword("kw9".into()),
        ),
        (
            PostbackTarget::SessionStart { ad: "ad1".into() },
            PostbackKind::SessionStart,
        ),
    ];
    for (i, (target, kind)) in targets.iter().enumerate() {
        let url = SecretString::new(format!("https://hooks.example.com/{i}?token=t{i}"));
        s.set_postback(target, Some(&url)).await.expect("set");
        assert_eq!(
            env.fake
                .postback_url("c1", "a1", "ad1", kind.clone())
                .as_deref(),
            Some(url.expose())
        );
        assert_eq!(
            s.get_postback(target)
                .await
                .unwrap()
                .map(|u| u.expose().to_string()),
            Some(url.expose().to_string())
        );
        s.set_postback(target, None).await.expect("clear");
        assert_eq!(env.fake.postback_url("c1", "a1", "ad1", kind.clone()), None);
        assert!(s.get_postback(target).await.unwrap().is_none());
    }
}

#[tokio::test]
async fn events_are_listed_across_pages_in_a_half_open_window() {
    let env = env().await;
    let start = jiff::Timestamp::from_second(1_790_000_000).unwrap();
    let events: Vec<Value> = (0..2500)
        .map(|i: i64| {
            let at = start + jiff::SignedDuration::from_secs(i);
            json!({"id": format!("ev{i:05}"), "type": "converted", "phone": "4915112345678",
                   "date": at.strftime("%Y-%m-%dT%H:%M:%S").to_string()})
        })
        .collect();
    env.fake.seed_events("c1", "a1", events);
    let query = EventQuery {
        date_from: start + jiff::SignedDuration::from_secs(100),
        date_to: start + jiff::SignedDuration::from_secs(2300),
        ad_id: None,
        event_type: None,
        event_type_id: None,
    };
    let all = env.signals().list_all_events(&query).await.unwrap();
    assert_eq!(all.len(), 2200, "from inclusive, to exclusive");
    assert_eq!(all[0]["id"], "ev00100");
    assert_eq!(all[2199]["id"], "ev02299");
    assert!(env.ops("signals.list_events").len() >= 3);
}

/// The fake answers filtered queries from a per-type index; the answer must be what a scan
/// of every event would give, across pages, out-of-order seeding and undated events.
#[tokio::test]
async fn filtered_event_lists_match_a_scan() {
    let env = env().await;
    let start = jiff::Timestamp::from_second(1_790_000_000).unwrap();
    let types = ["converted", "keyword", "button"];
    let event = |i: i64| {
        let at = start + jiff::SignedDuration::from_secs(i / 2);
        let mut e = json!({"id": format!("ev{i:05}"), "type": types[(i % 3) as usize],
                           "ad_id": format!("ad{}", i % 2), "phone": "4915112345678",
                           "date": at.strftime("%Y-%m-%dT%H:%M:%S").to_string()});
        if i % 97 == 0 {
            e["date"] = json!("");
        }
        e
    };
    // The later half first: the second batch sorts before it and forces a re-index.
    env.fake
        .seed_events("c1", "a1", (1500..3000).map(event).collect());
    env.fake
        .seed_events("c1", "a1", (0..1500).map(event).collect());
    let (from, to) = (100, 1300);
    let scan = |ty: &str, ad: Option<&str>| -> Vec<String> {
        let mut ids: Vec<(i64, String)> = (0..3000)
            .filter(|i| i % 97 != 0 && (from..to).contains(&(i / 2)))
            .map(|i| (i, event(i)))
            .filter(|(_, e)| e["type"] == ty && ad.is_none_or(|a| e["ad_id"] == a))
            .map(|(i, e)| (i, e["id"].as_str().unwrap().to_string()))
            .collect();
        ids.sort();
        ids.into_iter().map(|(_, id)| id).collect()
    };
    for (ty, ad) in [
        ("converted", None),
        ("keyword", Some("ad1")),
        ("link", None),
    ] {
        let query = EventQuery {
            date_from: start + jiff::SignedDuration::from_secs(from),
            date_to: start + jiff::SignedDuration::from_secs(to),
            ad_id: ad.map(String::from),
            event_type: Some(ty.to_string()),
            event_type_id: None,
        };
        let listed: Vec<String> = env
            .signals()
            .list_all_events(&query)
            .await
            .unwrap()
            .iter()
            .map(|e| e["id"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(listed, scan(ty, ad), "type {ty}, ad {ad:?}");
        let first = env
            .signals()
            .list_events::<serde_json::Value>(&query, 0, 10)
            .await
            .unwrap();
        assert_eq!(first.total_count, scan(ty, ad).len() as u64);
    }
}

#[tokio::test]
async fn campaign_conversion_is_set_and_event_types_are_listed() {
    let env = env().await;
    let s = env.signals();
    let types: Vec<String> = s
        .list_event_types()
        .await
        .expect("event types")
        .into_iter()
        .map(|t| t.value)
        .collect();
    assert_eq!(types, fake_upstreams::SIGNALS_EVENT_TYPES);

    let conversion = ConvertedEvent {
        campaign_id: "camp1".into(),
        event_type: "button".into(),
        type_id: Some("63c14b9487dd821c0be8a0b6".into()),
        type_value: Some("product ordered".into()),
    };
    s.set_converted_event(&conversion).await.expect("set");
    let set = env.fake.converted_events();
    assert_eq!(set.len(), 1);
    assert_eq!(
        (
            set[0].campaign_id.as_str(),
            set[0].event_type.as_str(),
            set[0].type_id.as_deref(),
            set[0].type_value.as_deref()
        ),
        (
            "camp1",
            "button",
            Some("63c14b9487dd821c0be8a0b6"),
            Some("product ordered")
        )
    );

    // Optional fields are left out, not sent as null; a type the app lacks is a terminal 422.
    let bare = ConvertedEvent {
        event_type: "engagement".into(),
        type_id: None,
        type_value: None,
        ..conversion
    };
    s.set_converted_event(&bare).await.expect("set without ids");
    assert_eq!(env.fake.converted_events()[0].type_id, None);
    env.fake.set_signals_event_types("c1", "a1", &["button"]);
    let err = s.set_converted_event(&bare).await.unwrap_err();
    assert_eq!(err.status(), Some(422));
    assert!(terminal_message(&err).contains("button"), "{err}");
}

#[tokio::test]
async fn signals_422_is_terminal_with_the_upstream_message() {
    let env = env().await;
    let err = env.signals().create_keyword("ad1", "").await.unwrap_err();
    assert_eq!(err.status(), Some(422));
    assert!(terminal_message(&err).contains("keyword"), "{err}");
}

// --- Faults ---

#[tokio::test]
async fn server_errors_are_transient() {
    let env = env().await;
    env.fake.set_fault(FaultRule {
        api: Some("signals".into()),
        error_rate: 1.0,
        remaining: Some(1),
        ..Default::default()
    });
    let err = env
        .signals()
        .list_keywords(&KeywordFilter::default(), 0, 10)
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::Transient, "{err}");
    assert!(matches!(err.status(), Some(500 | 502 | 503)));
    env.signals()
        .list_keywords(&KeywordFilter::default(), 0, 10)
        .await
        .expect("the fault was for one request");
}

#[tokio::test]
async fn rate_limited_carries_the_reset_time() {
    let env = env().await;
    env.fake.set_fault(FaultRule {
        operation: Some("signals.get_keyword".into()),
        rate_limit_rate: 1.0,
        ..Default::default()
    });
    let err = env.signals().get_keyword("kw1", None).await.unwrap_err();
    match err.class() {
        ErrorClass::RateLimited { retry_at: Some(at) } => {
            let ahead = at.duration_since(SystemTime::now()).unwrap_or_default();
            assert!(ahead <= Duration::from_secs(2), "{ahead:?}");
        }
        other => panic!("expected RateLimited with a time, got {other:?}"),
    }
    env.fake.clear_faults();
    env.fake.set_fault(FaultRule {
        api: Some("x".into()),
        rate_limit_rate: 1.0,
        ..Default::default()
    });
    let err = env.x().get_tag("acc1", "t1").await.unwrap_err();
    assert!(
        matches!(err.class(), ErrorClass::RateLimited { retry_at: Some(_) }),
        "{err}"
    );
}

#[tokio::test]
async fn timeouts_and_dropped_connections_are_transient() {
    let env = env_with(HttpConfig {
        timeout: Duration::from_millis(300),
        ..HttpConfig::default()
    })
    .await;
    env.fake.set_fault(FaultRule {
        api: Some("signals".into()),
        timeout_rate: 1.0,
        timeout_ms: Some(5_000),
        remaining: Some(1),
        ..Default::default()
    });
    let err = env
        .signals()
        .list_keywords(&KeywordFilter::default(), 0, 10)
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::Transient, "timeout: {err}");

    env.fake.set_fault(FaultRule {
        api: Some("signals".into()),
        drop_rate: 1.0,
        remaining: Some(1),
        ..Default::default()
    });
    let err = env
        .signals()
        .list_keywords(&KeywordFilter::default(), 0, 10)
        .await
        .unwrap_err();
    assert_eq!(
        err.class(),
        ErrorClass::Transient,
        "dropped connection: {err}"
    );
    assert_eq!(err.status(), None);
    assert!(
        env.fake.requests().iter().any(|r| r.status == 0),
        "the fake logged the drop"
    );
}

#[tokio::test]
async fn added_latency_is_observed() {
    let env = env().await;
    env.signals()
        .list_keywords(&KeywordFilter::default(), 0, 10)
        .await
        .unwrap();
    env.fake.set_fault(FaultRule {
        api: Some("signals".into()),
        latency_ms: 300,
        ..Default::default()
    });
    let started = std::time::Instant::now();
    env.signals()
        .list_keywords(&KeywordFilter::default(), 0, 10)
        .await
        .unwrap();
    assert!(started.elapsed() >= Duration::from_millis(300));
}

// --- X Ads ---

fn purchase_tag(name: &str) -> TagParams {
    TagParams {
        name: name.into(),
        tag_type: "PURCHASE".into(),
        click_window: 30,
        view_through_window: 1,
        retargeting_enabled: false,
    }
}

#[tokio::test]
async fn web_event_tag_lifecycle() {
    let env = env().await;
    let x = env.x();
    let tag = x
        .create_tag("acc1", &purchase_tag("WhatsApp purchase"))
        .await
        .expect("create");
    assert_eq!(tag.name, "WhatsApp purchase");
    let create = env
        .fake
        .requests()
        .into_iter()
        .find(|r| r.operation == "x.create_tag")
        .unwrap();
    for p in [
        "click_window=30",
        "name=WhatsApp%20purchase",
        "type=PURCHASE",
        "view_through_window=1",
        "retargeting_enabled=false",
    ] {
        assert!(
            create.query.contains(p),
            "create carries {p} in the query: {}",
            create.query
        );
    }

    x.update_tag(
        "acc1",
        &tag.id,
        &TagUpdate {
            click_window: Some(7),
            ..Default::default()
        },
    )
    .await
    .expect("update");
    let update = env
        .fake
        .requests()
        .into_iter()
        .find(|r| r.operation == "x.update_tag")
        .unwrap();
    assert_eq!(
        update.query, "click_window=7",
        "only the changed field is sent"
    );
    assert_eq!(
        x.get_tag("acc1", &tag.id).await.unwrap().click_window,
        Some(7)
    );

    let deleted = x.delete_tag("acc1", &tag.id).await.expect("delete");
    assert!(deleted.deleted);
    assert!(x.list_all_tags("acc1", false).await.unwrap().is_empty());
    assert_eq!(x.list_all_tags("acc1", true).await.unwrap().len(), 1);
    assert!(
        x.get_tag("acc1", "t-unknown")
            .await
            .unwrap_err()
            .is_not_found()
    );
}

#[tokio::test]
async fn tags_are_listed_across_pages() {
    let env = env().await;
    for i in 0..2100 {
        env.fake
            .insert_tag("acc1", &format!("tag {i}"), "PURCHASE", 30, 1);
    }
    let all = env.x().list_all_tags("acc1", false).await.unwrap();
    assert_eq!(all.len(), 2100);
    let ids: std::collections::HashSet<_> = all.iter().map(|t| t.id.clone()).collect();
    assert_eq!(ids.len(), 2100, "no tag twice across pages");
    assert_eq!(env.ops("x.list_tags").len(), 3, "at most 1000 per page");
}

#[tokio::test]
async fn x_rejects_a_wrong_consumer_key_and_a_wrong_signature() {
    let env = env().await;
    let wrong_key = XAdsClient::new(
        env.transport.clone(),
        &env.fake.x_url(),
        x_credentials("ck-other", "cs-1"),
    )
    .unwrap();
    let err = wrong_key
        .list_tags("acc1", None, None, false)
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(401));
    assert!(err.is_unauthorized());
    assert_eq!(
        terminal_message(&err),
        "This request is not properly authorized."
    );

    let wrong_secret = XAdsClient::new(
        env.transport.clone(),
        &env.fake.x_url(),
        x_credentials("ck-1", "cs-wrong"),
    )
    .unwrap();
    let err = wrong_secret
        .list_tags("acc1", None, None, false)
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(401));

    env.x()
        .list_tags("acc1", None, None, false)
        .await
        .expect("the right credentials pass");
    let err = env
        .x()
        .list_tags("acc-not-granted", None, None, false)
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(403));
}

/// Sends a request signed over `signed_query` but carrying `sent_query`.
async fn raw_x(
    env: &Env,
    method: &str,
    path: &str,
    signed_query: &[(&str, &str)],
    sent_query: &str,
    body: Option<Value>,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let url = url::Url::parse(&format!("{}{path}", env.fake.x_url())).unwrap();
    let params: Vec<(String, String)> = signed_query
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let header = oauth::authorization_header(
        &x_credentials("ck-1", "cs-1"),
        method,
        &url,
        &params,
        &oauth::nonce(),
        oauth::timestamp(),
    );
    let mut full = url.clone();
    full.set_query(if sent_query.is_empty() {
        None
    } else {
        Some(sent_query)
    });
    let mut request = env
        .transport
        .client()
        .request(method.parse().unwrap(), full)
        .header("authorization", header);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (
        status,
        headers,
        response.json().await.unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn x_rejects_a_tampered_query_string() {
    let env = env().await;
    let path = "/accounts/acc1/web_event_tags";
    let (ok, _, _) = raw_x(&env, "GET", path, &[("count", "5")], "count=5", None).await;
    assert_eq!(ok, 200, "a correctly signed query passes");
    let (tampered, _, body) = raw_x(&env, "GET", path, &[("count", "5")], "count=6", None).await;
    assert_eq!(tampered, 401);
    assert_eq!(body["errors"][0]["code"], "UNAUTHORIZED_ACCESS");
}

fn conversion(event_id: &str, i: usize) -> Conversion {
    Conversion {
        conversion_time: ConversionTime::new("2026-11-01T12:00:00Z".parse().unwrap()),
        event_id: event_id.into(),
        identifiers: Identifiers::phone(hash_phone("+11234567890").unwrap()),
        conversion_id: format!("ev-{i}").into(),
        description: Some("converted:order".into()),
    }
}

#[tokio::test]
async fn a_batch_of_exactly_500_is_accepted_and_stored() {
    let env = env().await;
    let tag = env.fake.insert_tag("acc1", "purchase", "PURCHASE", 30, 1);
    let batch: Vec<Conversion> = (0..500).map(|i| conversion(&tag, i)).collect();
    let result = env
        .x()
        .send_conversions("pix1", &batch)
        .await
        .expect("500 accepted");
    assert_eq!(result.processed, 500);
    assert_eq!(result.rate.limit, Some(60_000));
    assert_eq!(result.rate.remaining, Some(59_500));
    assert_eq!(env.fake.conversion_count(), 500);
    assert_eq!(env.fake.distinct_conversion_count(), 500);
    assert_eq!(
        env.fake.conversions()[0].conversion["identifiers"][0]["hashed_phone_number"],
        "1fa6b8d986d9b9cd01bf36951815158bbde9f520c0567c835dfe34783d0a4231"
    );
}

async fn rejected(env: &Env, conversions: Value) -> (u16, Value) {
    let (status, _, body) = raw_x(
        env,
        "POST",
        "/measurement/conversions/pix1",
        &[],
        "",
        Some(json!({"conversions": conversions})),
    )
    .await;
    assert!(
        env.fake.conversions().is_empty(),
        "nothing of a rejected request is stored"
    );
    (status, body)
}

/// One conversion as the client writes it.
fn valid(tag: &str) -> Value {
    let body: Value = serde_json::from_slice(&conversions_body(&[conversion(tag, 1)])).unwrap();
    body["conversions"][0].clone()
}

#[tokio::test]
async fn more_than_500_conversions_are_rejected() {
    let env = env().await;
    let tag = env.fake.insert_tag("acc1", "purchase", "PURCHASE", 30, 1);
    let (status, body) = rejected(&env, Value::Array(vec![valid(&tag); 501])).await;
    assert_eq!(status, 400);
    assert_eq!(
        body["errors"][0]["message"],
        "Conversion count limit is 500"
    );
}

#[tokio::test]
async fn a_conversion_without_identifiers_is_rejected() {
    let env = env().await;
    let tag = env.fake.insert_tag("acc1", "purchase", "PURCHASE", 30, 1);
    let mut bad = valid(&tag);
    bad["identifiers"] = json!([]);
    let (status, body) = rejected(&env, json!([valid(&tag), bad])).await;
    assert_eq!(status, 400);
    assert_eq!(
        body["errors"][0]["message"],
        "At least one user identifier must be provided"
    );
}

#[tokio::test]
async fn a_bad_hash_is_rejected() {
    let env = env().await;
    let tag = env.fake.insert_tag("acc1", "purchase", "PURCHASE", 30, 1);
    let mut bad = valid(&tag);
    bad["identifiers"] = json!([{"hashed_email": "test@twitter.com"}]);
    let (status, body) = rejected(&env, json!([bad])).await;
    assert_eq!(status, 400);
    assert_eq!(
        body["errors"][0]["message"],
        "hashed_email (test@twitter.com) is not a valid SHA-256 hash"
    );
    let mut bad = valid(&tag);
    bad["identifiers"] = json!([{"hashed_phone_number": "+11234567890"}]);
    let (_, body) = rejected(&env, json!([bad])).await;
    assert_eq!(
        body["errors"][0]["message"],
        "hashed_phone_number (+11234567890) is not a valid SHA-256 hash"
    );
}

#[tokio::test]
async fn a_bad_time_is_rejected() {
    let env = env().await;
    let tag = env.fake.insert_tag("acc1", "purchase", "PURCHASE", 30, 1);
    let mut bad = valid(&tag);
    bad["conversion_time"] = json!("2026-11-01 12:00:00");
    let (status, body) = rejected(&env, json!([bad])).await;
    assert_eq!(status, 400);
    assert_eq!(
        body["errors"][0]["message"],
        "Expected Time in yyyy-MM-ddTHH:mm:ss.SSSZ, got \"2026-11-01 12:00:00\" for conversion_time"
    );
}

#[tokio::test]
async fn an_unknown_event_id_is_not_found() {
    let env = env().await;
    let err = env
        .x()
        .send_conversions("pix1", &[conversion("o87ne", 1)])
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(404));
    assert_eq!(
        terminal_message(&err),
        "event_id (o87ne) does not belong to provided account"
    );
    assert!(env.fake.conversions().is_empty());
}

#[tokio::test]
async fn x_budget_exhaustion_is_a_429_with_the_reset_time() {
    let env = env().await;
    env.fake.set_x_rate_limits(XRateLimits {
        conversions: 1000,
        requests: 100,
        window_seconds: 60,
    });
    let tag = env.fake.insert_tag("acc1", "purchase", "PURCHASE", 30, 1);
    let batch: Vec<Conversion> = (0..500).map(|i| conversion(&tag, i)).collect();
    let x = env.x();
    x.send_conversions("pix1", &batch).await.expect("first 500");
    let second = x
        .send_conversions("pix1", &batch)
        .await
        .expect("second 500");
    assert_eq!(second.rate.remaining, Some(0));
    let err = x.send_conversions("pix1", &batch[..1]).await.unwrap_err();
    assert_eq!(err.status(), Some(429));
    match err.class() {
        ErrorClass::RateLimited { retry_at: Some(at) } => {
            assert!(at > SystemTime::now() && at <= SystemTime::now() + Duration::from_secs(61));
        }
        other => panic!("expected RateLimited with the reset time, got {other:?}"),
    }
    assert_eq!(
        env.fake.conversion_count(),
        1000,
        "the rejected request stored nothing"
    );
}

#[tokio::test]
async fn x_400_is_terminal_with_the_upstream_message() {
    let env = env().await;
    let tag = env.fake.insert_tag("acc1", "purchase", "PURCHASE", 30, 1);
    let mut bad = conversion(&tag, 1);
    bad.identifiers = Identifiers::default();
    let err = env.x().send_conversions("pix1", &[bad]).await.unwrap_err();
    assert_eq!(err.status(), Some(400));
    assert_eq!(
        terminal_message(&err),
        "At least one user identifier must be provided"
    );
}

#[tokio::test]
async fn no_secret_reaches_the_output_of_clients_errors_or_the_request_log() {
    let env = env().await;
    let hub = HubClient::new(
        env.transport.clone(),
        &env.fake.hub_url(),
        env.tokens.clone(),
        dialog_auth("wrong-pass-s3cr3t"),
    )
    .unwrap();
    let err = hub.enable_ctwa("p1", "c1", "ch1").await.unwrap_err();
    let signals = env.signals();
    let url = SecretString::new("https://hooks.example.com/pb/tok-s3cr3t");
    signals
        .set_postback(&PostbackTarget::Ad { ad: "ad1".into() }, Some(&url))
        .await
        .unwrap();
    let x = XAdsClient::new(
        env.transport.clone(),
        &env.fake.x_url(),
        x_credentials("ck-1", "cs-s3cr3t"),
    )
    .unwrap();
    let x_err = x.list_tags("acc1", None, None, false).await.unwrap_err();
    let texts = [
        format!("{err:?} {err} {x_err:?} {x_err}"),
        format!("{hub:?} {signals:?} {x:?} {url:?} {url}"),
        format!("{:?}", env.fake.requests()),
    ];
    for text in texts {
        for secret in ["s3cr3t", PASSWORD, "cs-1", "ats-1"] {
            assert!(!text.contains(secret), "{secret} leaked: {text}");
        }
    }
}

/// The admin HTTP API reaches the same state as the in-process methods (the demo and tests in
/// other processes use it).
#[tokio::test]
async fn admin_api_seeds_reads_and_injects_faults() {
    let env = env().await;
    let http = env.transport.client();
    let admin = env.fake.admin_url();
    let events = json!([{"id": "e1", "date": "2026-11-01T10:00:00", "type": "converted", "phone": "4915112345678"}]);
    let r = http
        .post(format!("{admin}/events/c1/a1"))
        .json(&events)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let fault = json!({"api": "signals", "operation": "signals.list_events", "error_rate": 1.0, "remaining": 1});
    assert_eq!(
        http.post(format!("{admin}/faults"))
            .json(&fault)
            .send()
            .await
            .unwrap()
            .status(),
        204
    );

    let query = EventQuery {
        date_from: "2026-11-01T00:00:00Z".parse().unwrap(),
        date_to: "2026-11-02T00:00:00Z".parse().unwrap(),
        ad_id: None,
        event_type: None,
        event_type_id: None,
    };
    let err = env
        .signals()
        .list_events::<serde_json::Value>(&query, 0, 100)
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::Transient);
    let page = env
        .signals()
        .list_events::<serde_json::Value>(&query, 0, 100)
        .await
        .unwrap();
    assert_eq!(page.data.len(), 1);

    let log: Value = http
        .get(format!("{admin}/requests"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let statuses: Vec<u64> = log
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["operation"] == "signals.list_events")
        .map(|r| r["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses.len(), 2);
    assert!(statuses[0] >= 500 && statuses[1] == 200, "{statuses:?}");
    let state: Value = http
        .get(format!("{admin}/state"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(state["events"][0]["count"], 1);
}
