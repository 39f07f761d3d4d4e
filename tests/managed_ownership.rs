//! SPEC 7.1, first rule: one owner per upstream object. For each managed kind, a first object
//! `a` creates the upstream object; `b` and `c` then resolve to the same one (by natural key,
//! or by external id). They report Ready=False `AlreadyManaged` naming `namespace/a`, never
//! write upstream, leave the upstream object alone when deleted, and one of them takes over by
//! itself when the owner goes away.
//!
//! Each test goes on after a failed expectation when the next steps still tell something and
//! fails at the end with every problem found (`Problems`).

mod common;
mod managed_support;

use std::time::Duration;

use common::{Env, env, env_without_operator, ready, ready_with};
use ctwa_operator::api::{CtwaTracking, SignalsKeyword, SignalsPostback, XWebEventTag};
use fake_upstreams::PostbackKind;
use managed_support::*;
use serde_json::Value;

/// Positive outcomes on a busy 2-core machine.
const PATIENCE: Duration = Duration::from_secs(30);

fn owner(env: &Env, name: &str) -> String {
    format!("{}/{name}", env.ns.name)
}

/// Waits for `b` and `c` to report `AlreadyManaged` naming `a`, recording a problem for each
/// that does not.
async fn expect_already_managed<K: Kind>(env: &Env, problems: &mut Problems, names: &[&str]) {
    for name in names {
        let result = wait_in::<K>(
            &env.client,
            &env.ns.name,
            name,
            already_managed_by(owner(env, "a")),
            PATIENCE,
        )
        .await;
        if let Err(last) = result {
            problems.push(format!(
                "{name}: expected Ready=False AlreadyManaged naming {}; got {:?}",
                owner(env, "a"),
                condition_full(&last, "Ready")
            ));
        }
    }
}

async fn delete_and_wait<K: Kind>(env: &Env, problems: &mut Problems, name: &str) {
    delete_in::<K>(&env.client, &env.ns.name, name).await;
    if let Err(e) = wait_gone_in::<K>(&env.client, &env.ns.name, name, PATIENCE).await {
        problems.push(e);
    }
}

#[tokio::test]
async fn a_keyword_has_one_owner() {
    let env = env("own-kw").await;
    let mut problems = Problems::default();
    let text = "order confirmed";
    env.create::<SignalsKeyword>(keyword("a", text, Some("ad1")))
        .await;
    let a = env
        .wait_until::<SignalsKeyword>("a", "Ready", ready, PATIENCE)
        .await;
    let id_a = a["status"]["keywordId"].as_str().unwrap().to_string();
    let since = env.fake.requests().len();

    env.create::<SignalsKeyword>(keyword("b", text, Some("ad1")))
        .await;
    env.create::<SignalsKeyword>(keyword("c", text, Some("ad1")))
        .await;
    // Observe-mode objects may share.
    let mut watcher = keyword("watcher", text, Some("ad1"));
    watcher["spec"]["managementPolicy"] = "Observe".into();
    env.create::<SignalsKeyword>(watcher).await;

    expect_already_managed::<SignalsKeyword>(&env, &mut problems, &["b", "c"]).await;
    let watched = wait_in::<SignalsKeyword>(
        &env.client,
        &env.ns.name,
        "watcher",
        ready_with("Observed"),
        PATIENCE,
    )
    .await;
    problems.wait("watcher (Observe) Ready=True Observed", watched);
    let writes = writes_since(&env, since);
    problems.check(writes.is_empty(), || {
        format!("b and c wrote upstream: {}", brief(&writes))
    });

    // Deleting a non-owner touches nothing upstream.
    let before_b = env.fake.requests().len();
    delete_and_wait::<SignalsKeyword>(&env, &mut problems, "b").await;
    let writes = writes_since(&env, before_b);
    problems.check(writes.is_empty(), || {
        format!("deleting b wrote upstream: {}", brief(&writes))
    });
    let active = active_keywords(&env, text);
    problems.check(active == vec![id_a.clone()], || {
        format!("after deleting b, the active keywords are {active:?}, not a's {id_a}")
    });

    // The owner goes (Delete policy): its keyword goes, and c takes over by itself.
    delete_and_wait::<SignalsKeyword>(&env, &mut problems, "a").await;
    problems.check(!active_keywords(&env, text).contains(&id_a), || {
        format!("a's keyword {id_a} is still active after a was deleted")
    });
    let took_over = wait_in::<SignalsKeyword>(
        &env.client,
        &env.ns.name,
        "c",
        |o| {
            ready(o)
                && o["status"]["keywordId"]
                    .as_str()
                    .is_some_and(|id| id != id_a && active_keywords(&env, text) == vec![id])
        },
        PATIENCE,
    )
    .await;
    if let Err(last) = took_over {
        problems.push(format!(
            "c did not take over with a keyword of its own: {}, keywordId {}, active upstream {:?}",
            summary(&last),
            last["status"]["keywordId"],
            active_keywords(&env, text)
        ));
    }
    problems.finish();
}

/// Two tags on one account and name with different windows: only the owner's windows are
/// ever PUT. With a 10 s resync both would re-assert their own windows every interval.
#[tokio::test]
async fn a_web_event_tag_has_one_owner() {
    let env = env("own-tag").await;
    let mut problems = Problems::default();
    let name = "WhatsApp purchase";
    env.create::<XWebEventTag>(resync_10s(tag("a", name, 30)))
        .await;
    let a = env
        .wait_until::<XWebEventTag>("a", "Ready", ready, PATIENCE)
        .await;
    let id_a = a["status"]["tagId"].as_str().unwrap().to_string();
    let since = env.fake.requests().len();
    env.create::<XWebEventTag>(resync_10s(tag("b", name, 7)))
        .await;
    env.create::<XWebEventTag>(resync_10s(tag("c", name, 14)))
        .await;
    expect_already_managed::<XWebEventTag>(&env, &mut problems, &["b", "c"]).await;

    // Two resyncs of every object.
    tokio::time::sleep(Duration::from_secs(25)).await;
    let writes = writes_since(&env, since);
    let puts = writes
        .iter()
        .filter(|w| w.starts_with("x.update_tag"))
        .count();
    println!(
        "tag ownership: {puts} PUTs in 25 s after b and c appeared: {}",
        brief(&writes)
    );
    problems.check(writes.is_empty(), || {
        format!(
            "only the owner may write, and it had nothing to change: {}",
            brief(&writes)
        )
    });
    let upstream: Vec<_> = env.fake.tags("acc1");
    problems.check(
        upstream.len() == 1 && upstream[0].click_window == 30,
        || format!("the tag is not a's (click window 30): {upstream:?}"),
    );

    let before_b = env.fake.requests().len();
    delete_and_wait::<XWebEventTag>(&env, &mut problems, "b").await;
    let writes = writes_since(&env, before_b);
    problems.check(writes.is_empty(), || {
        format!("deleting b wrote upstream: {}", brief(&writes))
    });
    problems.check(
        env.fake
            .tags("acc1")
            .iter()
            .any(|t| t.id == id_a && !t.deleted),
        || format!("deleting b deleted a's tag {id_a}"),
    );

    delete_and_wait::<XWebEventTag>(&env, &mut problems, "a").await;
    problems.check(
        env.fake
            .tags("acc1")
            .iter()
            .any(|t| t.id == id_a && t.deleted),
        || format!("a's tag {id_a} was not deleted with a"),
    );
    let took_over = wait_in::<XWebEventTag>(
        &env.client,
        &env.ns.name,
        "c",
        |o| {
            ready(o)
                && o["status"]["tagId"].as_str().is_some_and(|id| {
                    env.fake
                        .tags("acc1")
                        .iter()
                        .any(|t| t.id == id && !t.deleted && t.click_window == 14)
                })
        },
        PATIENCE,
    )
    .await;
    if let Err(last) = took_over {
        problems.push(format!(
            "c did not take over with a tag of its own (click window 14): {}, tagId {}, upstream {:?}",
            summary(&last),
            last["status"]["tagId"],
            env.fake.tags("acc1")
        ));
    }
    problems.finish();
}

#[tokio::test]
async fn a_postback_target_has_one_owner() {
    let env = env("own-pb").await;
    let mut problems = Problems::default();
    let url = |who: &str| format!("https://hooks.example.com/{who}");
    let upstream = || env.fake.postback_url("c1", "a1", "ad1", PostbackKind::Ad);
    env.create::<SignalsPostback>(postback("a", "ad1", "Ad", None, &url("a")))
        .await;
    env.wait_until::<SignalsPostback>("a", "Ready", ready, PATIENCE)
        .await;
    assert_eq!(upstream(), Some(url("a")));
    let since = env.fake.requests().len();
    env.create::<SignalsPostback>(postback("b", "ad1", "Ad", None, &url("b")))
        .await;
    env.create::<SignalsPostback>(postback("c", "ad1", "Ad", None, &url("c")))
        .await;
    expect_already_managed::<SignalsPostback>(&env, &mut problems, &["b", "c"]).await;
    let writes = writes_since(&env, since);
    problems.check(writes.is_empty(), || {
        format!("b and c wrote upstream: {}", brief(&writes))
    });
    problems.check(upstream() == Some(url("a")), || {
        format!("the URL is not a's: {:?}", upstream())
    });

    let before_b = env.fake.requests().len();
    delete_and_wait::<SignalsPostback>(&env, &mut problems, "b").await;
    let writes = writes_since(&env, before_b);
    problems.check(writes.is_empty(), || {
        format!("deleting b wrote upstream: {}", brief(&writes))
    });
    problems.check(upstream() == Some(url("a")), || {
        format!("after deleting b the URL is {:?}, not a's", upstream())
    });

    delete_and_wait::<SignalsPostback>(&env, &mut problems, "a").await;
    let took_over = wait_in::<SignalsPostback>(&env.client, &env.ns.name, "c", ready, PATIENCE)
        .await
        .is_ok()
        && eventually(PATIENCE, || upstream() == Some(url("c"))).await;
    problems.check(took_over, || {
        format!(
            "c did not take over after a was deleted: URL {:?}, c {}",
            upstream(),
            "is not Ready with its URL set"
        )
    });
    problems.finish();
}

/// `a` enables tracking, `b` wants it disabled: `b` never switches it off, and its deletion
/// (Delete policy: disable) does not either.
#[tokio::test]
async fn a_ctwa_channel_has_one_owner() {
    let env = env("own-ctt").await;
    let mut problems = Problems::default();
    let enabled = || env.fake.ctwa_enabled("p1", "c1", "ch1");
    env.create::<CtwaTracking>(tracking("a", true)).await;
    env.wait_until::<CtwaTracking>("a", "Ready", ready, PATIENCE)
        .await;
    assert_eq!(enabled(), Some(true));
    let since = env.fake.requests().len();
    env.create::<CtwaTracking>(tracking("b", false)).await;
    env.create::<CtwaTracking>(tracking("c", true)).await;
    expect_already_managed::<CtwaTracking>(&env, &mut problems, &["b", "c"]).await;
    let writes = writes_since(&env, since);
    problems.check(writes.is_empty(), || {
        format!("b and c wrote upstream: {}", brief(&writes))
    });
    problems.check(enabled() == Some(true), || {
        format!("tracking is {:?}, not a's (enabled)", enabled())
    });

    let before_b = env.fake.requests().len();
    delete_and_wait::<CtwaTracking>(&env, &mut problems, "b").await;
    let writes = writes_since(&env, before_b);
    problems.check(writes.is_empty(), || {
        format!("deleting b wrote upstream: {}", brief(&writes))
    });
    problems.check(enabled() == Some(true), || {
        format!("after deleting b tracking is {:?}", enabled())
    });

    // a disables on deletion; c then enables it again by itself.
    let before_a = env.fake.requests().len();
    delete_and_wait::<CtwaTracking>(&env, &mut problems, "a").await;
    let c = wait_in::<CtwaTracking>(&env.client, &env.ns.name, "c", ready, PATIENCE).await;
    let took_over = c.is_ok()
        && eventually(PATIENCE, || {
            enabled() == Some(true)
                && writes_since(&env, before_a)
                    .last()
                    .is_some_and(|w| w.starts_with("hub.enable_ctwa"))
        })
        .await;
    problems.check(took_over, || {
        format!(
            "c did not take over after a was deleted: tracking {:?}, hub writes since {:?}, c {}",
            enabled(),
            writes_since(&env, before_a),
            match &c {
                Ok(o) | Err(o) => summary(o),
            }
        )
    });
    problems.finish();
}

/// The operator watches two namespaces. A keyword in the second namespace with the natural
/// key of one in the first, and a tag in the second that names the first's tag by
/// `ctwa.dev/external-id` (with another name), are both `AlreadyManaged` by the first
/// namespace's objects, and take over when those go.
#[tokio::test]
async fn ownership_spans_the_watched_namespaces() {
    let mut env = env_without_operator("own-xns").await;
    let other = second_namespace(&env, "own-xns2").await;
    let mut config = env.operator_config(Duration::from_secs(600));
    config.namespaces.push(other.clone());
    env.start_operator_with(env.client.clone(), config);
    let mut problems = Problems::default();
    let client = env.client.clone();
    let text = "order confirmed";

    env.create::<SignalsKeyword>(keyword("a", text, Some("ad1")))
        .await;
    env.create::<XWebEventTag>(resync_10s(tag("a", "WhatsApp purchase", 30)))
        .await;
    let kw_a = env
        .wait_until::<SignalsKeyword>("a", "Ready", ready, PATIENCE)
        .await;
    let tag_a = env
        .wait_until::<XWebEventTag>("a", "Ready", ready, PATIENCE)
        .await;
    let kw_id = kw_a["status"]["keywordId"].as_str().unwrap().to_string();
    let tag_id = tag_a["status"]["tagId"].as_str().unwrap().to_string();
    let since = env.fake.requests().len();

    create_in::<SignalsKeyword>(&client, &other, keyword("b", text, Some("ad1"))).await;
    let by_id = annotated(
        resync_10s(tag("b", "Another name", 30)),
        "ctwa.dev/external-id",
        &tag_id,
    );
    create_in::<XWebEventTag>(&client, &other, by_id).await;
    let owner_a = owner(&env, "a");
    let kw_b = wait_in::<SignalsKeyword>(
        &client,
        &other,
        "b",
        already_managed_by(owner_a.clone()),
        PATIENCE,
    )
    .await;
    if let Err(last) = kw_b {
        problems.push(format!(
            "keyword {other}/b: expected AlreadyManaged naming {owner_a}; got {:?}",
            condition_full(&last, "Ready")
        ));
    }
    let tag_b = wait_in::<XWebEventTag>(
        &client,
        &other,
        "b",
        already_managed_by(owner_a.clone()),
        PATIENCE,
    )
    .await;
    if let Err(last) = tag_b {
        problems.push(format!(
            "tag {other}/b (external-id {tag_id}): expected AlreadyManaged naming {owner_a}; got {:?}",
            condition_full(&last, "Ready")
        ));
    }
    // Two resyncs of the tags.
    tokio::time::sleep(Duration::from_secs(22)).await;
    let writes = writes_since(&env, since);
    problems.check(writes.is_empty(), || {
        format!(
            "the second namespace's objects wrote upstream: {}",
            brief(&writes)
        )
    });
    let upstream_tag = env.fake.tags("acc1");
    problems.check(
        upstream_tag
            .iter()
            .any(|t| t.id == tag_id && t.name == "WhatsApp purchase"),
        || format!("a's tag was renamed: {upstream_tag:?}"),
    );

    // The owners go; the second namespace's objects take over.
    for result in [
        {
            delete_in::<SignalsKeyword>(&client, &env.ns.name, "a").await;
            wait_gone_in::<SignalsKeyword>(&client, &env.ns.name, "a", PATIENCE).await
        },
        {
            delete_in::<XWebEventTag>(&client, &env.ns.name, "a").await;
            wait_gone_in::<XWebEventTag>(&client, &env.ns.name, "a", PATIENCE).await
        },
    ] {
        if let Err(e) = result {
            problems.push(e);
        }
    }
    let kw_taken = wait_in::<SignalsKeyword>(
        &client,
        &other,
        "b",
        |o| {
            ready(o)
                && o["status"]["keywordId"]
                    .as_str()
                    .is_some_and(|id| id != kw_id && active_keywords(&env, text) == vec![id])
        },
        PATIENCE,
    )
    .await;
    if let Err(last) = kw_taken {
        problems.push(format!(
            "keyword {other}/b did not take over: {}, keywordId {}, active upstream {:?}",
            summary(&last),
            last["status"]["keywordId"],
            active_keywords(&env, text)
        ));
    }
    let tag_taken = wait_in::<XWebEventTag>(
        &client,
        &other,
        "b",
        |o: &Value| {
            ready(o)
                && o["status"]["tagId"].as_str().is_some_and(|id| {
                    env.fake
                        .tags("acc1")
                        .iter()
                        .any(|t| t.id == id && !t.deleted && t.name == "Another name")
                })
        },
        PATIENCE,
    )
    .await;
    if let Err(last) = tag_taken {
        problems.push(format!(
            "tag {other}/b did not take over with a tag of its own: {}, tagId {}, upstream {:?}",
            summary(&last),
            last["status"]["tagId"],
            env.fake.tags("acc1")
        ));
    }
    problems.finish();
}
