//! Crash safety: the operator process is killed with SIGKILL at random moments while 100
//! SignalsKeywords and 50 XWebEventTags are being created, and restarted, five times. At the
//! end upstream holds exactly one keyword and one tag per object, and every object is Ready.

mod common;

use std::process::Child;
use std::time::Duration;

use common::{Env, env_without_operator, ready};
use ctwa_operator::api::{SignalsKeyword, XWebEventTag};
use fake_upstreams::FaultRule;
use serde_json::json;

fn start_operator(env: &Env) -> Child {
    env.spawn_operator(env.operator_args(), &[])
}

#[tokio::test]
async fn sigkill_during_creation_leaves_no_duplicates() {
    let env = env_without_operator("crash").await;
    // Slow creates widen the window between an upstream create and the id annotation.
    for op in ["signals.create_keyword", "x.create_tag"] {
        env.fake.set_fault(FaultRule {
            operation: Some(op.into()),
            latency_ms: 40,
            ..Default::default()
        });
    }
    let mut operator = start_operator(&env);
    // Objects are created while the operator is being killed and restarted.
    let client = env.client.clone();
    let ns = env.ns.name.clone();
    let creator = tokio::spawn(async move {
        let keywords: kube::Api<SignalsKeyword> = kube::Api::namespaced(client.clone(), &ns);
        let tags: kube::Api<XWebEventTag> = kube::Api::namespaced(client, &ns);
        for i in 0..100 {
            let k: SignalsKeyword = serde_json::from_value(json!({
                "apiVersion": "ctwa.dev/v1alpha1", "kind": "SignalsKeyword", "metadata": {"name": format!("k{i}")},
                "spec": {"clientId": "c1", "appId": "a1", "keyword": format!("keyword {i}"), "adId": "ad1",
                         "secretRef": {"name": "dialog360"}}
            }))
            .unwrap();
            keywords.create(&Default::default(), &k).await.unwrap();
            if i < 50 {
                let t: XWebEventTag = serde_json::from_value(json!({
                    "apiVersion": "ctwa.dev/v1alpha1", "kind": "XWebEventTag", "metadata": {"name": format!("t{i}")},
                    "spec": {"accountId": "acc1", "name": format!("tag {i}"), "type": "PURCHASE", "clickWindow": 30,
                             "viewThroughWindow": 1, "secretRef": {"name": "x-ads"}}
                }))
                .unwrap();
                tags.create(&Default::default(), &t).await.unwrap();
            }
            tokio::time::sleep(Duration::from_millis(15)).await;
        }
    });
    let mut kills = Vec::new();
    for _ in 0..5 {
        let wait = 200 + (ctwa_operator::runtime::backoff::jitter_fraction() * 700.0) as u64;
        tokio::time::sleep(Duration::from_millis(wait)).await;
        operator.kill().expect("SIGKILL");
        operator.wait().expect("reaped");
        kills.push((
            wait,
            env.fake.keywords("c1", "a1").len(),
            env.fake.tags("acc1").len(),
        ));
        operator = start_operator(&env);
    }
    creator.await.unwrap();
    println!("kills (after ms, keywords, tags upstream): {kills:?}");
    for i in 0..100 {
        env.wait_for_long::<SignalsKeyword>(&format!("k{i}"), ready)
            .await;
    }
    for i in 0..50 {
        env.wait_for_long::<XWebEventTag>(&format!("t{i}"), ready)
            .await;
    }
    operator.kill().ok();
    operator.wait().ok();
    assert_eq!(
        env.fake.keywords("c1", "a1").len(),
        100,
        "exactly 100 keywords upstream"
    );
    assert_eq!(env.fake.tags("acc1").len(), 50, "exactly 50 tags upstream");
}
