//! `ctwa-fake-upstreams`: the fakes as a process, for the local demo.
#![forbid(unsafe_code)]

use std::net::SocketAddr;

use clap::Parser;
use fake_upstreams::{FakeUpstreams, XCredentials};
use serde_json::json;

/// Stateful fakes of the 360dialog Hub, Signals API and X Ads API on one port.
#[derive(Parser)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8090")]
    addr: SocketAddr,
    /// Seed the credentials and objects that examples/ and `make demo` use.
    #[arg(long)]
    demo: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_env_filter("info").init();
    let args = Args::parse();
    let fake = FakeUpstreams::start_on(args.addr).await?;
    if args.demo {
        seed_demo(&fake);
    }
    println!("hub:     {}", fake.hub_url());
    println!("signals: {}", fake.signals_url());
    println!("x:       {}", fake.x_url());
    println!("admin:   {}", fake.admin_url());
    if args.demo {
        // A live trickle of conversions, so the demo bridge has something to forward.
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(3));
        let mut i = 0u64;
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => return Ok(()),
                _ = tick.tick() => {
                    fake.seed_events("demo-client", "demo-app", vec![demo_event(
                        &format!("live-ev-{i:06}"),
                        jiff::Timestamp::now(),
                        if i.is_multiple_of(2) { "converted" } else { "keyword" },
                        i,
                    )]);
                    i += 1;
                }
            }
        }
    }
    tokio::signal::ctrl_c().await?;
    Ok(())
}

fn demo_event(id: &str, at: jiff::Timestamp, type_: &str, i: u64) -> serde_json::Value {
    json!({
        "id": id,
        "app_id": "demo-app",
        "ad_id": "120210000000000001",
        "campaign_id": "120210000000000000",
        "phone": format!("49151{:08}", 10_000_000 + i),
        "type": type_,
        "type_id": format!("t{}", i % 7),
        "type_value": if i % 5 == 1 { "order confirmed" } else { "" },
        "date": at.strftime("%Y-%m-%dT%H:%M:%S").to_string(),
    })
}

fn seed_demo(fake: &FakeUpstreams) {
    fake.add_hub_user("demo", "demo-password");
    fake.add_channel("demo-partner", "demo-client", "demo-channel");
    fake.add_x_credentials(
        XCredentials {
            consumer_key: "demo-consumer-key".into(),
            consumer_secret: "demo-consumer-secret".into(),
            access_token: "demo-access-token".into(),
            access_token_secret: "demo-access-token-secret".into(),
        },
        &["demo-account"],
    );
    fake.add_x_account("demo-account", "o8z6j");
    let types = ["converted", "keyword", "conversation", "button", "link"];
    let now = jiff::Timestamp::now();
    let events = (0..300)
        .map(|i: u64| {
            let at = now - jiff::SignedDuration::from_secs(3600 - i as i64 * 12);
            demo_event(
                &format!("demo-ev-{i:04}"),
                at,
                types[i as usize % types.len()],
                i,
            )
        })
        .collect();
    fake.seed_events("demo-client", "demo-app", events);
}
