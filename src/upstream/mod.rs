//! HTTP clients for the 360dialog Hub, the Signals API and the X Ads API.
//!
//! How the pieces fit:
//! - [`http`]: one shared `reqwest` client ([`http::Transport`], ring rustls provider,
//!   timeouts, `User-Agent: ctwa-operator/<version>`) and a [`http::RequestObserver`]
//!   hook for metrics. Build one `Transport` per process and clone it.
//! - [`secret`]: credentials from Secrets ([`secret::DialogCredentials`],
//!   [`secret::XCredentials`]); every value is a [`secret::SecretString`] that prints
//!   `[redacted]`.
//! - [`hub_auth`]: one [`hub_auth::HubTokenProvider`] per process turns 360dialog
//!   username/password into cached Bearer tokens (keyed by credential id + value
//!   fingerprint, refreshed at 80% of the lifetime and once on a 401).
//! - [`hub`], [`signals`]: clients bound to one [`hub_auth::DialogAuth`]; [`x_ads`]: a
//!   client bound to one [`secret::XCredentials`], signing every request with [`oauth`]
//!   (OAuth 1.0a HMAC-SHA1 over method, URL and query).
//! - [`budget`]: [`budget::BudgetRegistry`] hands out one token bucket per account (X
//!   conversions); [`budget::RequestBudgets`] one request budget per credential (Signals:
//!   per Secret, with a rate; X: per [`secret::XCredentials::budget_key`], paced by X's
//!   windows). The X client feeds each family's budget the `x-rate-limit-*` headers of that
//!   family's answers.
//! - [`error`]: every call returns [`error::UpstreamError`]; `class()` says whether to
//!   retry (transient), wait (rate limited) or stall (terminal); `is_not_found()` is true only
//!   for the object's own 404 (SPEC 7.1), never for a wrong URL, a proxy, the Hub's token
//!   endpoint or X's "does not have access to account".
pub mod budget;
pub mod clients;
pub mod error;
pub mod http;
pub mod hub;
pub mod hub_auth;
pub mod oauth;
pub mod secret;
pub mod signals;
pub mod x_ads;

#[cfg(test)]
mod redaction_tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use super::error::{Api, ErrorClass, UpstreamError};
    use super::http::{HttpConfig, Transport};
    use super::hub::HubClient;
    use super::hub_auth::{DialogAuth, HubTokenProvider};
    use super::secret::{CredentialsError, DialogCredentials, SecretString, XCredentials};
    use super::signals::SignalsClient;
    use super::x_ads::XAdsClient;

    const SECRETS: &[&str] = &[
        "user-s3cr3t",
        "pass-s3cr3t",
        "token-s3cr3t",
        "ck-s3cr3t",
        "cs-s3cr3t",
        "at-s3cr3t",
        "ats-s3cr3t",
        "https://hooks.example/pb?token=pb-s3cr3t",
    ];

    fn assert_clean(what: &str, text: &str) {
        assert!(!text.contains("s3cr3t"), "{what} leaks a secret: {text}");
        for s in SECRETS {
            assert!(!text.contains(s), "{what} leaks {s}: {text}");
        }
    }

    fn both<T: std::fmt::Debug + std::fmt::Display>(what: &str, v: &T) {
        assert_clean(what, &format!("{v:?}"));
        assert_clean(what, &format!("{v:#?}"));
        assert_clean(what, &format!("{v}"));
    }

    #[test]
    fn nothing_formats_a_secret() {
        let up = DialogCredentials::UsernamePassword {
            username: SecretString::new("user-s3cr3t"),
            password: SecretString::new("pass-s3cr3t"),
        };
        let tok = DialogCredentials::Token(SecretString::new("token-s3cr3t"));
        let mut x = BTreeMap::new();
        for (k, v) in [
            ("consumer-key", "ck-s3cr3t"),
            ("consumer-secret", "cs-s3cr3t"),
            ("access-token", "at-s3cr3t"),
            ("access-token-secret", "ats-s3cr3t"),
        ] {
            x.insert(k.to_string(), v.as_bytes().to_vec());
        }
        let xc = XCredentials::from_secret_data(&x).unwrap();
        both("SecretString", &SecretString::new(SECRETS[7]));
        both("DialogCredentials::UsernamePassword", &up);
        both("DialogCredentials::Token", &tok);
        both("XCredentials", &xc);
        for e in [
            CredentialsError::MissingKey { key: "password" },
            CredentialsError::EmptyKey { key: "token" },
            CredentialsError::NotUtf8 { key: "token" },
            CredentialsError::NoDialogCredentials,
        ] {
            both("CredentialsError", &e);
        }

        let transport = Transport::from_config(&HttpConfig::default()).unwrap();
        let tokens =
            Arc::new(HubTokenProvider::new(transport.clone(), "http://hub.local").unwrap());
        let auth = DialogAuth::new("ns/dialog", up.clone());
        assert_clean("DialogAuth", &format!("{auth:?}"));
        assert_clean("HubTokenProvider", &format!("{tokens:?}"));
        let hub = HubClient::new(
            transport.clone(),
            "http://hub.local",
            tokens.clone(),
            auth.clone(),
        )
        .unwrap();
        assert_clean("HubClient", &format!("{hub:?}"));
        let signals = SignalsClient::new(
            transport.clone(),
            "http://signals.local",
            "c",
            "a",
            tokens,
            DialogAuth::new("ns/t", tok),
        )
        .unwrap();
        assert_clean("SignalsClient", &format!("{signals:?}"));
        assert_clean("XCredentials::budget_key", &xc.budget_key());
        let budgets = super::budget::RequestBudgets::unmetered();
        let xads = XAdsClient::new(transport, "http://x.local", xc.clone())
            .unwrap()
            .with_budget(budgets.get(&xc.budget_key()));
        assert_clean("XAdsClient", &format!("{xads:?}"));
        assert_clean("XAdsClient::budget_key", &xads.budget_key());

        let errors = vec![
            UpstreamError::Status {
                api: Api::Signals,
                operation: "set_postback",
                status: 422,
                message: super::error::extract_message(
                    br#"{"detail":[{"loc":["body","url"],"msg":"bad","input":"https://hooks.example/pb?token=pb-s3cr3t"}]}"#,
                ),
                errors: Vec::new(),
                class: ErrorClass::Terminal,
            },
            UpstreamError::Timeout { api: Api::Hub, operation: "token" },
            UpstreamError::Connection {
                api: Api::XAds,
                operation: "get_tag",
                detail: "connection refused".into(),
            },
            UpstreamError::Decode {
                api: Api::Hub,
                operation: "token",
                status: 200,
                detail: "missing field".into(),
            },
            UpstreamError::InvalidRequest {
                api: Api::Hub,
                operation: "configure",
                detail: "bad base URL".into(),
            },
            UpstreamError::Credentials {
                api: Api::XAds,
                operation: "configure",
                source: CredentialsError::MissingKey { key: "access-token" },
            },
        ];
        for e in &errors {
            both("UpstreamError", e);
        }
    }
}
