//! SPEC 7.1 for the managed kinds, beyond ownership: no edit is lost, deletion never waits
//! for nothing, `kubectl delete namespace` finishes, a retargeted postback clears its old
//! target, the resync annotation has a 10 s floor, and steady state writes nothing.
//!
//! The environment's global resync is 10 minutes (`common::env`), so anything that happens
//! within a test's seconds happened because of the rule under test, not because of a resync.

mod common;
mod managed_support;

use std::time::{Duration, Instant};

use common::{Env, condition, env, ready};
use ctwa_operator::api::{CtwaTracking, SignalsKeyword, SignalsPostback, XWebEventTag};
use fake_upstreams::{FaultRule, PostbackKind};
use managed_support::*;
use serde_json::{Value, json};

/// Positive outcomes on a busy 2-core machine.
const PATIENCE: Duration = Duration::from_secs(30);

// --- 1. No edit is lost ---

/// The keyword's create is held upstream for 3 s; its text is edited meanwhile. The edit is
/// applied right after the create: `observedGeneration` catches up and the upstream keyword
/// carries the new text within seconds, not at the next resync (10 minutes here).
#[tokio::test]
async fn an_edit_made_during_a_create_is_applied_right_after_it() {
    let env = env("lost-edit").await;
    env.fake.set_fault(FaultRule {
        operation: Some("signals.create_keyword".into()),
        latency_ms: 3_000,
        remaining: Some(1),
        ..Default::default()
    });
    env.create::<SignalsKeyword>(keyword("k", "first text", Some("ad1")))
        .await;
    assert!(
        eventually(PATIENCE, || env.fake.in_flight("signals.create_keyword")
            == 1)
        .await,
        "the create never reached the fake"
    );
    merge_patch::<SignalsKeyword>(
        &env.client,
        &env.ns.name,
        "k",
        json!({"spec": {"keyword": "second text"}}),
    )
    .await;
    let edited = Instant::now();
    let caught_up = wait_in::<SignalsKeyword>(
        &env.client,
        &env.ns.name,
        "k",
        |o| {
            ready(o)
                && o["metadata"]["generation"] == 2
                && o["status"]["keywordId"]
                    .as_str()
                    .is_some_and(|id| active_keywords(&env, "second text") == vec![id])
        },
        Duration::from_secs(15),
    )
    .await;
    match caught_up {
        Ok(_) => println!(
            "the edit was applied {:?} after it was made",
            edited.elapsed()
        ),
        Err(last) => panic!(
            "the edit made during the create was not applied within 15 s: {}, keywordId {}, \
             upstream {:?}",
            summary(&last),
            last["status"]["keywordId"],
            env.fake.keywords("c1", "a1")
        ),
    }
}

// --- 2. Deletion never waits for nothing ---

/// An Event about `name` recorded at `since` or later whose note names `secret`.
async fn deletion_event(
    env: &Env,
    name: &str,
    since: jiff::Timestamp,
    secret: &str,
) -> Option<Seen> {
    events_about(&env.client, &env.ns.name, "SignalsKeyword", name)
        .await
        .into_iter()
        .find(|e| e.last >= since && e.note.contains(secret))
}

/// A keyword whose `secretRef` has a typo never reached upstream and has no external id:
/// deleting it finishes at once, and an Event says why nothing was deleted upstream.
#[tokio::test]
async fn deleting_an_object_whose_secret_never_existed_finishes_at_once() {
    let env = env("del-typo").await;
    let mut problems = Problems::default();
    let mut manifest = keyword("typo", "typo", Some("ad1"));
    manifest["spec"]["secretRef"]["name"] = json!("dialog360-typo");
    env.create::<SignalsKeyword>(manifest).await;
    let stalled = env
        .wait_until::<SignalsKeyword>(
            "typo",
            "Stalled SecretNotFound",
            |o| condition(o, "Stalled") == Some(("True".into(), "SecretNotFound".into())),
            PATIENCE,
        )
        .await;
    let had_finalizer = stalled["metadata"]["finalizers"]
        .as_array()
        .is_some_and(|f| f.iter().any(|f| f == "ctwa.dev/finalizer"));
    let since = after_earlier_events().await;
    let started = Instant::now();
    delete_in::<SignalsKeyword>(&env.client, &env.ns.name, "typo").await;
    match wait_gone_in::<SignalsKeyword>(&env.client, &env.ns.name, "typo", Duration::from_secs(10))
        .await
    {
        Ok(()) => println!("deleted in {:?}", started.elapsed()),
        Err(e) => {
            problems.push(e);
            strip_finalizers::<SignalsKeyword>(&env.client, &env.ns.name, "typo").await;
        }
    }
    if had_finalizer {
        // The finalizer was released: an Event at deletion says why.
        let event = eventually_async(Duration::from_secs(10), || {
            deletion_event(&env, "typo", since, "dialog360-typo")
        })
        .await;
        match event {
            Some(e) => println!("deletion Event: {} {}: {}", e.type_, e.reason, e.note),
            None => problems.push(format!(
                "no Event naming Secret dialog360-typo was recorded at the deletion; Events: {:?}",
                events_about(&env.client, &env.ns.name, "SignalsKeyword", "typo").await
            )),
        }
    } else {
        // No finalizer was ever added (nothing was written upstream): the Event of the
        // stall is the one that says why.
        let events = events_about(&env.client, &env.ns.name, "SignalsKeyword", "typo").await;
        problems.check(
            events
                .iter()
                .any(|e| e.reason == "SecretNotFound" && e.note.contains("dialog360-typo")),
            || format!("no SecretNotFound Event naming dialog360-typo: {events:?}"),
        );
    }
    problems.finish();
}

/// A keyword that got its finalizer (its creates failed upstream, so it has no external id)
/// and whose `secretRef` then points to a Secret that does not exist: deletion finishes at
/// once, with an Event naming the Secret.
#[tokio::test]
async fn deleting_an_object_with_a_finalizer_and_no_secret_finishes_at_once() {
    let env = env("del-nosecret").await;
    let mut problems = Problems::default();
    env.fake.set_fault(FaultRule {
        operation: Some("signals.create_keyword".into()),
        error_rate: 1.0,
        ..Default::default()
    });
    env.create::<SignalsKeyword>(keyword("k", "never created", Some("ad1")))
        .await;
    env.wait_until::<SignalsKeyword>(
        "k",
        "a finalizer and a failed create",
        |o| {
            o["metadata"]["finalizers"]
                .as_array()
                .is_some_and(|f| f.iter().any(|f| f == "ctwa.dev/finalizer"))
                && condition(o, "Ready").is_some_and(|c| c.0 == "False")
        },
        PATIENCE,
    )
    .await;
    merge_patch::<SignalsKeyword>(
        &env.client,
        &env.ns.name,
        "k",
        json!({"spec": {"secretRef": {"name": "dialog360-typo"}}}),
    )
    .await;
    env.wait_until::<SignalsKeyword>(
        "k",
        "Ready=False SecretNotFound",
        |o| {
            condition(o, "Ready") == Some(("False".into(), "SecretNotFound".into()))
                && o["status"]["observedGeneration"] == o["metadata"]["generation"]
        },
        PATIENCE,
    )
    .await;
    let since = after_earlier_events().await;
    let started = Instant::now();
    delete_in::<SignalsKeyword>(&env.client, &env.ns.name, "k").await;
    match wait_gone_in::<SignalsKeyword>(&env.client, &env.ns.name, "k", Duration::from_secs(10))
        .await
    {
        Ok(()) => println!("deleted in {:?}", started.elapsed()),
        Err(e) => {
            problems.push(e);
            strip_finalizers::<SignalsKeyword>(&env.client, &env.ns.name, "k").await;
        }
    }
    let event = eventually_async(Duration::from_secs(10), || {
        deletion_event(&env, "k", since, "dialog360-typo")
    })
    .await;
    match event {
        Some(e) => println!("deletion Event: {} {}: {}", e.type_, e.reason, e.note),
        None => problems.push(format!(
            "no Event naming Secret dialog360-typo was recorded at the deletion; Events: {:?}",
            events_about(&env.client, &env.ns.name, "SignalsKeyword", "k").await
        )),
    }
    problems.finish();
}

/// A moment after which every Event published so far is older: the Events of the stall are
/// not taken for Events of the deletion. The in-process operator stamps Events with this
/// process's clock, in microseconds.
async fn after_earlier_events() -> jiff::Timestamp {
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let since = jiff::Timestamp::now();
    tokio::time::sleep(Duration::from_millis(10)).await;
    since
}

/// Polls an async lookup until it finds something or `timeout` passes.
async fn eventually_async<T, F, Fut>(timeout: Duration, mut lookup: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(found) = lookup().await {
            return Some(found);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

// --- 3. `kubectl delete namespace` finishes ---

/// `keywords` SignalsKeyword and one XWebEventTag, Ready, then their namespace is deleted
/// (the namespace controller deletes the credential Secrets together with the objects, in an
/// order of its own): the namespace goes, and nothing is left upstream. With `secrets_first`
/// the Secrets go first, as the namespace controller often does, so that the test does not
/// depend on its order.
async fn namespace_deletion_finishes(
    prefix: &str,
    keywords: usize,
    secrets_first: bool,
    timeout: Duration,
) {
    let env = env(prefix).await;
    for i in 0..keywords {
        env.create::<SignalsKeyword>(keyword(
            &format!("k{i}"),
            &format!("keyword {i}"),
            Some(&format!("ad{}", i % 10)),
        ))
        .await;
    }
    env.create::<XWebEventTag>(tag("t", "WhatsApp purchase", 30))
        .await;
    // 2 Signals requests per keyword at 10 per second, then some.
    let creation = Duration::from_secs(60 + keywords as u64 / 2);
    for i in 0..keywords {
        env.wait_until::<SignalsKeyword>(&format!("k{i}"), "Ready", ready, creation)
            .await;
    }
    env.wait_until::<XWebEventTag>("t", "Ready", ready, PATIENCE)
        .await;
    let active = env
        .fake
        .keywords("c1", "a1")
        .iter()
        .filter(|k| k.status == "active")
        .count();
    assert_eq!(active, keywords);

    let mut problems = Problems::default();
    if secrets_first {
        let secrets: kube::Api<k8s_openapi::api::core::v1::Secret> = env.api();
        for name in ["dialog360", "x-ads"] {
            secrets
                .delete(name, &Default::default())
                .await
                .unwrap_or_else(|e| panic!("deleting Secret {name}: {e}"));
        }
        assert!(
            eventually_async(PATIENCE, || async {
                let gone = secrets.get_opt("dialog360").await.unwrap().is_none()
                    && secrets.get_opt("x-ads").await.unwrap().is_none();
                gone.then_some(())
            })
            .await
            .is_some(),
            "the Secrets were not deleted"
        );
    }
    match delete_namespace_and_wait(&env.client, &env.ns.name, timeout).await {
        Ok(took) => println!("namespace with {keywords} keywords and a tag deleted in {took:?}"),
        Err(e) => {
            let left: Vec<String> = env
                .api::<SignalsKeyword>()
                .list(&Default::default())
                .await
                .unwrap()
                .items
                .iter()
                .map(|k| serde_json::to_value(k).unwrap())
                .chain(
                    env.api::<XWebEventTag>()
                        .list(&Default::default())
                        .await
                        .unwrap()
                        .items
                        .iter()
                        .map(|t| serde_json::to_value(t).unwrap()),
                )
                .map(|o| {
                    format!(
                        "{}/{} {:?}",
                        o["kind"].as_str().unwrap_or(""),
                        o["metadata"]["name"].as_str().unwrap_or(""),
                        condition_full(&o, "Ready")
                    )
                })
                .collect();
            problems.push(format!(
                "{e}; {} object(s) left, e.g. {:?}",
                left.len(),
                left.iter().take(3).collect::<Vec<_>>()
            ));
            // Let the namespace go, so that a failed run leaves nothing Terminating.
            for i in 0..keywords {
                strip_finalizers::<SignalsKeyword>(&env.client, &env.ns.name, &format!("k{i}"))
                    .await;
            }
            strip_finalizers::<XWebEventTag>(&env.client, &env.ns.name, "t").await;
        }
    }
    let still_active: Vec<String> = env
        .fake
        .keywords("c1", "a1")
        .into_iter()
        .filter(|k| k.status == "active")
        .map(|k| k.id)
        .collect();
    problems.check(still_active.is_empty(), || {
        format!(
            "{} keyword(s) still active upstream, e.g. {:?}",
            still_active.len(),
            still_active.iter().take(5).collect::<Vec<_>>()
        )
    });
    let tags = env.fake.tags("acc1");
    problems.check(tags.iter().all(|t| t.deleted), || {
        format!("the tag is not deleted upstream: {tags:?}")
    });
    problems.finish();
}

/// In the namespace controller's own order (random: it walks a Go map of resource types),
/// so on code without remembered credentials this fails in most runs, not all.
#[tokio::test]
async fn deleting_a_namespace_with_ten_keywords_and_a_tag_finishes() {
    namespace_deletion_finishes("ns-del-10", 10, false, Duration::from_secs(60)).await;
}

#[tokio::test]
async fn deleting_a_namespace_whose_secrets_went_first_finishes() {
    namespace_deletion_finishes("ns-del-10s", 10, true, Duration::from_secs(60)).await;
}

#[tokio::test]
async fn deleting_a_namespace_with_a_hundred_keywords_and_a_tag_finishes() {
    // 100 deletions at 10 Signals requests per second, and the namespace controller's pace.
    namespace_deletion_finishes("ns-del-100", 100, true, Duration::from_secs(120)).await;
}

// --- 4. SignalsPostback targets ---

fn keyword_url(env: &Env, keyword_id: &str) -> Option<String> {
    env.fake
        .postback_url("c1", "a1", "ad1", PostbackKind::Keyword(keyword_id.into()))
}

/// `keywordId` k1 → k2 clears the URL at k1; k2 → k3 leaves k2 alone when someone else
/// replaced the URL there meanwhile.
#[tokio::test]
async fn retargeting_a_postback_clears_the_url_at_the_old_target() {
    let env = env("pb-retarget").await;
    let mut problems = Problems::default();
    let url = "https://hooks.example.com/ctwa";
    env.create::<SignalsPostback>(postback("pb", "ad1", "Keyword", Some("k1"), url))
        .await;
    env.wait_until::<SignalsPostback>("pb", "Ready", ready, PATIENCE)
        .await;
    assert_eq!(keyword_url(&env, "k1").as_deref(), Some(url));

    let retarget = |id: &'static str| {
        let env = &env;
        async move {
            merge_patch::<SignalsPostback>(
                &env.client,
                &env.ns.name,
                "pb",
                json!({"spec": {"keywordId": id}}),
            )
            .await;
            env.wait_until::<SignalsPostback>(
                "pb",
                "Ready on the new target",
                |o| ready(o) && o["status"]["keywordId"] == id,
                PATIENCE,
            )
            .await;
        }
    };
    retarget("k2").await;
    problems.check(keyword_url(&env, "k2").as_deref() == Some(url), || {
        format!("the URL at k2 is {:?}", keyword_url(&env, "k2"))
    });
    let cleared = eventually(Duration::from_secs(10), || {
        keyword_url(&env, "k1").is_none()
    })
    .await;
    problems.check(cleared, || {
        format!(
            "the URL at the old target k1 was not cleared: {:?}",
            keyword_url(&env, "k1")
        )
    });

    // Someone else points k2 elsewhere; moving on to k3 must not clear their URL.
    let theirs = "https://someone-else.example.com/hook";
    env.fake.set_postback_url(
        "c1",
        "a1",
        "ad1",
        PostbackKind::Keyword("k2".into()),
        Some(theirs),
    );
    retarget("k3").await;
    problems.check(keyword_url(&env, "k3").as_deref() == Some(url), || {
        format!("the URL at k3 is {:?}", keyword_url(&env, "k3"))
    });
    tokio::time::sleep(Duration::from_secs(3)).await;
    problems.check(keyword_url(&env, "k2").as_deref() == Some(theirs), || {
        format!(
            "the URL someone else set at k2 was changed: {:?}",
            keyword_url(&env, "k2")
        )
    });
    problems.finish();
}

/// The referenced keyword gets a new id (its text changed): the postback moves and the URL at
/// the old keyword id is cleared.
#[tokio::test]
async fn a_postback_that_follows_its_keyword_clears_the_old_keyword_target() {
    let env = env("pb-follow").await;
    let url = "https://hooks.example.com/ctwa";
    env.create::<SignalsKeyword>(keyword("order", "order confirmed", Some("ad1")))
        .await;
    let kw = env
        .wait_until::<SignalsKeyword>("order", "Ready", ready, PATIENCE)
        .await;
    let first = kw["status"]["keywordId"].as_str().unwrap().to_string();
    let mut pb = postback("pb", "ad1", "Keyword", None, url);
    pb["spec"]["keywordRef"] = json!({"name": "order"});
    env.create::<SignalsPostback>(pb).await;
    env.wait_until::<SignalsPostback>("pb", "Ready", ready, PATIENCE)
        .await;
    assert_eq!(keyword_url(&env, &first).as_deref(), Some(url));

    merge_patch::<SignalsKeyword>(
        &env.client,
        &env.ns.name,
        "order",
        json!({"spec": {"keyword": "order shipped"}}),
    )
    .await;
    let o = env
        .wait_until::<SignalsPostback>(
            "pb",
            "Ready on the new keyword id",
            |o| {
                ready(o)
                    && o["status"]["keywordId"]
                        .as_str()
                        .is_some_and(|id| id != first)
            },
            PATIENCE,
        )
        .await;
    let second = o["status"]["keywordId"].as_str().unwrap().to_string();
    assert_eq!(keyword_url(&env, &second).as_deref(), Some(url));
    let cleared = eventually(Duration::from_secs(10), || {
        keyword_url(&env, &first).is_none()
    })
    .await;
    assert!(
        cleared,
        "the URL at the old keyword id {first} was not cleared: {:?}",
        keyword_url(&env, &first)
    );
}

/// Deletion clears the URL only when it is still the one the operator set.
#[tokio::test]
async fn deleting_a_postback_clears_only_a_url_it_set() {
    let env = env("pb-del-theirs").await;
    let mut problems = Problems::default();
    let ours = "https://hooks.example.com/ours";
    let theirs = "https://someone-else.example.com/theirs";
    let ad_url = |ad: &str| env.fake.postback_url("c1", "a1", ad, PostbackKind::Ad);
    env.create::<SignalsPostback>(postback("replaced", "ad7", "Ad", None, ours))
        .await;
    env.create::<SignalsPostback>(postback("kept", "ad8", "Ad", None, ours))
        .await;
    env.wait_until::<SignalsPostback>("replaced", "Ready", ready, PATIENCE)
        .await;
    env.wait_until::<SignalsPostback>("kept", "Ready", ready, PATIENCE)
        .await;
    env.fake
        .set_postback_url("c1", "a1", "ad7", PostbackKind::Ad, Some(theirs));

    for name in ["replaced", "kept"] {
        delete_in::<SignalsPostback>(&env.client, &env.ns.name, name).await;
        if let Err(e) =
            wait_gone_in::<SignalsPostback>(&env.client, &env.ns.name, name, PATIENCE).await
        {
            problems.push(e);
        }
    }
    problems.check(ad_url("ad7").as_deref() == Some(theirs), || {
        format!(
            "deleting the postback removed a URL someone else set: ad7 has {:?}",
            ad_url("ad7")
        )
    });
    problems.check(ad_url("ad8").is_none(), || {
        format!(
            "deleting the postback left its own URL: ad8 has {:?}",
            ad_url("ad8")
        )
    });
    problems.finish();
}

// --- 5. The resync floor ---

/// Reads of one keyword (a GET by id, or a list: the test's only keyword) since index
/// `since` of the fake's log.
fn keyword_reads(env: &Env, id: &str, since: usize) -> usize {
    env.fake
        .requests()
        .into_iter()
        .skip(since)
        .filter(|r| {
            (r.operation == "signals.get_keyword" && r.path.ends_with(&format!("/{id}")))
                || r.operation == "signals.list_keywords"
        })
        .count()
}

/// Watches the reads of keyword `id` for `window`, stopping early once there are more than
/// `limit` (a hot loop shows within a second).
async fn watch_reads(
    env: &Env,
    id: &str,
    since: usize,
    window: Duration,
    limit: usize,
) -> (usize, Duration) {
    let started = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let reads = keyword_reads(env, id, since);
        if reads > limit || started.elapsed() >= window {
            return (reads, started.elapsed());
        }
    }
}

/// `ctwa.dev/resync-interval: 1ms` is raised to 10 s: over 27 s the keyword is read two or
/// three times (10 s ± 10% jitter; one more allowed), and one Warning Event
/// `InvalidAnnotation` says so.
#[tokio::test]
async fn a_resync_interval_below_the_floor_is_raised_to_10s() {
    let env = env("resync-floor").await;
    let mut problems = Problems::default();
    env.create::<SignalsKeyword>(annotated(
        keyword("fast", "fast", Some("ad1")),
        "ctwa.dev/resync-interval",
        "1ms",
    ))
    .await;
    let o = env
        .wait_until::<SignalsKeyword>("fast", "Ready", ready, PATIENCE)
        .await;
    let id = o["status"]["keywordId"].as_str().unwrap().to_string();
    let since = env.fake.requests().len();
    let (reads, watched) = watch_reads(&env, &id, since, Duration::from_secs(27), 20).await;
    // Stop a hot loop before it slows down the other tests.
    merge_patch::<SignalsKeyword>(
        &env.client,
        &env.ns.name,
        "fast",
        json!({"metadata": {"annotations": {"ctwa.dev/paused": "true"}}}),
    )
    .await;
    println!("resync 1ms: {reads} reads of the keyword in {watched:?}");
    problems.check(
        (2..=4).contains(&reads) && watched >= Duration::from_secs(27),
        || {
            format!(
                "{reads} reads of the keyword in {watched:?} with resync-interval 1ms (want 2..=4 \
             in 27 s: a 10 s interval)"
            )
        },
    );
    let events = events_about(&env.client, &env.ns.name, "SignalsKeyword", "fast").await;
    let invalid: Vec<&Seen> = events
        .iter()
        .filter(|e| e.reason == "InvalidAnnotation")
        .collect();
    problems.check(
        published(&events, "InvalidAnnotation") == 1
            && invalid.iter().all(|e| e.type_ == "Warning"),
        || format!("want exactly one Warning Event InvalidAnnotation; Events: {events:?}"),
    );
    problems.finish();
}

/// An unparsable `ctwa.dev/resync-interval` gives the same Warning Event and the global
/// interval (10 minutes here: no read within 15 s after Ready).
#[tokio::test]
async fn an_unparsable_resync_interval_warns_and_uses_the_global_interval() {
    let env = env("resync-bad").await;
    let mut problems = Problems::default();
    env.create::<SignalsKeyword>(annotated(
        keyword("soon", "soon", Some("ad1")),
        "ctwa.dev/resync-interval",
        "soon",
    ))
    .await;
    let o = env
        .wait_until::<SignalsKeyword>("soon", "Ready", ready, PATIENCE)
        .await;
    let id = o["status"]["keywordId"].as_str().unwrap().to_string();
    let since = env.fake.requests().len();
    let (reads, watched) = watch_reads(&env, &id, since, Duration::from_secs(15), 5).await;
    problems.check(reads == 0, || {
        format!(
            "{reads} reads of the keyword within {watched:?}: the global interval is 10 minutes"
        )
    });
    let events = events_about(&env.client, &env.ns.name, "SignalsKeyword", "soon").await;
    let invalid: Vec<&Seen> = events
        .iter()
        .filter(|e| e.reason == "InvalidAnnotation")
        .collect();
    problems.check(
        published(&events, "InvalidAnnotation") == 1
            && invalid.iter().all(|e| e.type_ == "Warning"),
        || format!("want exactly one Warning Event InvalidAnnotation; Events: {events:?}"),
    );
    problems.finish();
}

// --- 6. Steady state writes nothing ---

/// A shared keyword, an Ad and a SessionStart postback and a CtwaTracking, each with a 10 s
/// resync: over three intervals none is rewritten (resourceVersion), no upstream write
/// happens other than CtwaTracking's re-assertion (the Hub has no read), and no Event is
/// emitted.
#[tokio::test]
async fn steady_state_writes_nothing_for_shared_keywords_postbacks_and_tracking() {
    let env = env("steady-7-1").await;
    let mut problems = Problems::default();
    env.create::<SignalsKeyword>(resync_10s(keyword("shared", "shared keyword", None)))
        .await;
    env.create::<SignalsPostback>(resync_10s(postback(
        "ad",
        "ad1",
        "Ad",
        None,
        "https://hooks.example.com/ad",
    )))
    .await;
    env.create::<SignalsPostback>(resync_10s(postback(
        "session",
        "ad1",
        "SessionStart",
        None,
        "https://hooks.example.com/session",
    )))
    .await;
    env.create::<CtwaTracking>(resync_10s(tracking("ctt", true)))
        .await;
    env.wait_until::<SignalsKeyword>("shared", "Ready", ready, PATIENCE)
        .await;
    env.wait_until::<SignalsPostback>("ad", "Ready", ready, PATIENCE)
        .await;
    env.wait_until::<SignalsPostback>("session", "Ready", ready, PATIENCE)
        .await;
    env.wait_until::<CtwaTracking>("ctt", "Ready", ready, PATIENCE)
        .await;
    // The echo of the operator's own writes (annotation, status) settles.
    tokio::time::sleep(Duration::from_secs(3)).await;

    async fn snapshot(env: &Env) -> Vec<(&'static str, &'static str, Value, i32)> {
        let mut out = Vec::new();
        for (kind, name) in [
            ("SignalsKeyword", "shared"),
            ("SignalsPostback", "ad"),
            ("SignalsPostback", "session"),
            ("CtwaTracking", "ctt"),
        ] {
            let o = match kind {
                "SignalsKeyword" => get_in::<SignalsKeyword>(&env.client, &env.ns.name, name).await,
                "SignalsPostback" => {
                    get_in::<SignalsPostback>(&env.client, &env.ns.name, name).await
                }
                _ => get_in::<CtwaTracking>(&env.client, &env.ns.name, name).await,
            }
            .unwrap();
            let events: i32 = events_about(&env.client, &env.ns.name, kind, name)
                .await
                .iter()
                .map(|e| e.count)
                .sum();
            out.push((kind, name, o, events));
        }
        out
    }
    let before = snapshot(&env).await;
    let since = env.fake.requests().len();
    tokio::time::sleep(Duration::from_secs(30)).await;
    let after = snapshot(&env).await;

    for ((kind, name, old, old_events), (_, _, new, new_events)) in before.iter().zip(&after) {
        let (old_rv, new_rv) = (
            &old["metadata"]["resourceVersion"],
            &new["metadata"]["resourceVersion"],
        );
        problems.check(old_rv == new_rv, || {
            format!(
                "{kind}/{name} was rewritten in steady state: resourceVersion {old_rv} → {new_rv}; \
                 status before {} after {}",
                old["status"], new["status"]
            )
        });
        problems.check(old_events == new_events, || {
            format!(
                "{kind}/{name} emitted {} Event(s) in steady state",
                new_events - old_events
            )
        });
    }
    let requests: Vec<_> = env.fake.requests().into_iter().skip(since).collect();
    let writes: Vec<String> = writes_since(&env, since)
        .into_iter()
        .filter(|w| !w.starts_with("hub.enable_ctwa"))
        .collect();
    problems.check(writes.is_empty(), || {
        format!("steady state wrote upstream: {}", brief(&writes))
    });
    // The checks above are not vacuous: every object was resynced meanwhile.
    let count = |op: &str| requests.iter().filter(|r| r.operation == op).count();
    let (keyword_reads, postback_reads, reassertions) = (
        count("signals.get_keyword") + count("signals.list_keywords"),
        count("signals.get_postback"),
        count("hub.enable_ctwa"),
    );
    println!(
        "steady state over 30 s: {keyword_reads} keyword reads, {postback_reads} postback reads, \
         {reassertions} CTWA re-assertions"
    );
    problems.check(
        keyword_reads >= 2 && postback_reads >= 4 && reassertions >= 2,
        || {
            format!(
                "the objects were not resynced every 10 s: {keyword_reads} keyword reads, \
             {postback_reads} postback reads, {reassertions} re-assertions in 30 s"
            )
        },
    );
    problems.finish();
}
