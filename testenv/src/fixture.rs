//! The upstream world every test and bench starts from: one 360dialog Hub user with one
//! channel, one X Ads credential with one account and pixel, and the two Secrets that hold
//! those credentials in the test's namespace.

use fake_upstreams::{FakeUpstreams, XCredentials};
use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::{Api, PostParams};
use serde_json::json;

/// The 360dialog Hub user.
pub const DIALOG_USERNAME: &str = "u";
/// The test credentials: distinctive, so that the log scan (tests/log_secrets.rs) finds them
/// if they ever leak.
pub const DIALOG_PASSWORD: &str = "dialog-pw-S3cr3t";
pub const X_CONSUMER_KEY: &str = "ck";
pub const X_CONSUMER_SECRET: &str = "x-consumer-S3cr3t";
pub const X_ACCESS_TOKEN: &str = "at";
pub const X_ACCESS_TOKEN_SECRET: &str = "x-token-S3cr3t";

/// The Secret with the 360dialog credentials (keys `username`, `password`).
pub const DIALOG_SECRET: &str = "dialog360";
/// The Secret with the X Ads credentials (keys `consumer-key`, `consumer-secret`,
/// `access-token`, `access-token-secret`).
pub const X_SECRET: &str = "x-ads";

/// The Hub partner, client and channel the fakes know.
pub const PARTNER_ID: &str = "p1";
pub const CLIENT_ID: &str = "c1";
pub const CHANNEL_ID: &str = "ch1";
/// The Signals app whose events the bridges read.
pub const APP_ID: &str = "a1";
/// The X Ads account the credentials may use, and its pixel.
pub const X_ACCOUNT: &str = "acc1";
pub const X_PIXEL: &str = "pix1";

/// The X Ads credentials of the fixture, as the fake stores them.
pub fn x_credentials() -> XCredentials {
    XCredentials {
        consumer_key: X_CONSUMER_KEY.into(),
        consumer_secret: X_CONSUMER_SECRET.into(),
        access_token: X_ACCESS_TOKEN.into(),
        access_token_secret: X_ACCESS_TOKEN_SECRET.into(),
    }
}

/// Starts the fakes on a free loopback port and gives them the fixture's user, channel,
/// credentials, account and pixel.
pub async fn start_fakes() -> FakeUpstreams {
    let fake = FakeUpstreams::start()
        .await
        .expect("the fake upstreams start");
    fake.add_hub_user(DIALOG_USERNAME, DIALOG_PASSWORD);
    fake.add_channel(PARTNER_ID, CLIENT_ID, CHANNEL_ID);
    fake.add_x_credentials(x_credentials(), &[X_ACCOUNT]);
    fake.add_x_account(X_ACCOUNT, X_PIXEL);
    fake
}

/// Creates the Secrets [`DIALOG_SECRET`] and [`X_SECRET`] with the fixture's credentials in
/// `namespace`.
pub async fn create_secrets(client: &Client, namespace: &str) {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    for (name, data) in [
        (
            DIALOG_SECRET,
            json!({"username": DIALOG_USERNAME, "password": DIALOG_PASSWORD}),
        ),
        (
            X_SECRET,
            json!({"consumer-key": X_CONSUMER_KEY, "consumer-secret": X_CONSUMER_SECRET,
                   "access-token": X_ACCESS_TOKEN, "access-token-secret": X_ACCESS_TOKEN_SECRET}),
        ),
    ] {
        let secret: Secret = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "stringData": data
        }))
        .expect("Secret object");
        secrets
            .create(&PostParams::default(), &secret)
            .await
            .unwrap_or_else(|e| panic!("creating Secret {name} in {namespace}: {e}"));
    }
}
