//! Credentials read from Kubernetes Secrets (SPEC section 2).
//!
//! Nothing in this module prints a credential value: [`SecretString`] formats as
//! `[redacted]`, and errors only name the missing or malformed key.

use std::collections::BTreeMap;
use std::fmt;

use sha2::{Digest, Sha256};

const REDACTED: &str = "[redacted]";

/// A string that must never be logged (token, password, postback URL).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SecretString(String);

impl SecretString {
    /// Wrap a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        SecretString(value.into())
    }

    /// The secret value. Only pass it to the wire, never to a formatter.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// True when the value is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for SecretString {
    fn from(value: String) -> Self {
        SecretString(value)
    }
}

impl From<&str> for SecretString {
    fn from(value: &str) -> Self {
        SecretString(value.to_string())
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

/// A Secret that cannot be used; names the key, never a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialsError {
    /// A required key is absent.
    #[error("Secret is missing key `{key}`")]
    MissingKey {
        /// The missing key.
        key: &'static str,
    },
    /// A key is present but empty (after trimming whitespace).
    #[error("Secret key `{key}` is empty")]
    EmptyKey {
        /// The empty key.
        key: &'static str,
    },
    /// A key is not valid UTF-8.
    #[error("Secret key `{key}` is not valid UTF-8")]
    NotUtf8 {
        /// The malformed key.
        key: &'static str,
    },
    /// Neither `token` nor `username` + `password` are present.
    #[error("Secret has neither key `token` nor keys `username` and `password`")]
    NoDialogCredentials,
}

fn read_key<V: AsRef<[u8]>>(
    data: &BTreeMap<String, V>,
    key: &'static str,
) -> Result<Option<SecretString>, CredentialsError> {
    let Some(raw) = data.get(key) else {
        return Ok(None);
    };
    let text = std::str::from_utf8(raw.as_ref()).map_err(|_| CredentialsError::NotUtf8 { key })?;
    // `echo secret > file` leaves a newline; no credential has surrounding whitespace.
    let text = text.trim();
    if text.is_empty() {
        return Err(CredentialsError::EmptyKey { key });
    }
    Ok(Some(SecretString::new(text)))
}

fn require_key<V: AsRef<[u8]>>(
    data: &BTreeMap<String, V>,
    key: &'static str,
) -> Result<SecretString, CredentialsError> {
    read_key(data, key)?.ok_or(CredentialsError::MissingKey { key })
}

fn fingerprint_of(parts: &[&str]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part.as_bytes());
    }
    hex::encode(&hasher.finalize()[..12])
}

/// 360dialog credentials (Hub and Signals).
#[derive(Clone, PartialEq, Eq)]
pub enum DialogCredentials {
    /// Exchanged for a Bearer token at the Hub's `POST /token`.
    UsernamePassword {
        /// Hub user name.
        username: SecretString,
        /// Hub password.
        password: SecretString,
    },
    /// A ready Bearer token, used as is.
    Token(SecretString),
}

impl DialogCredentials {
    /// Read keys `token`, or `username` + `password`, from a Secret's data.
    /// `token` wins when both forms are present.
    pub fn from_secret_data<V: AsRef<[u8]>>(
        data: &BTreeMap<String, V>,
    ) -> Result<Self, CredentialsError> {
        if let Some(token) = read_key(data, "token")? {
            return Ok(DialogCredentials::Token(token));
        }
        let username = read_key(data, "username")?;
        let password = read_key(data, "password")?;
        match (username, password) {
            (Some(username), Some(password)) => {
                Ok(DialogCredentials::UsernamePassword { username, password })
            }
            (Some(_), None) => Err(CredentialsError::MissingKey { key: "password" }),
            (None, Some(_)) => Err(CredentialsError::MissingKey { key: "username" }),
            (None, None) => Err(CredentialsError::NoDialogCredentials),
        }
    }

    /// A one-way fingerprint of the values (changes when the Secret is rotated).
    /// Safe to use in cache keys; not reversible.
    pub fn fingerprint(&self) -> String {
        match self {
            DialogCredentials::UsernamePassword { username, password } => {
                fingerprint_of(&["up", username.expose(), password.expose()])
            }
            DialogCredentials::Token(token) => fingerprint_of(&["t", token.expose()]),
        }
    }
}

impl fmt::Debug for DialogCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DialogCredentials::UsernamePassword { .. } => f
                .debug_struct("UsernamePassword")
                .field("username", &REDACTED)
                .field("password", &REDACTED)
                .finish(),
            DialogCredentials::Token(_) => f.debug_tuple("Token").field(&REDACTED).finish(),
        }
    }
}

impl fmt::Display for DialogCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DialogCredentials::UsernamePassword { .. } => {
                f.write_str("360dialog username/password [redacted]")
            }
            DialogCredentials::Token(_) => f.write_str("360dialog token [redacted]"),
        }
    }
}

/// X Ads OAuth 1.0a user-context credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct XCredentials {
    /// `consumer-key`.
    pub consumer_key: SecretString,
    /// `consumer-secret`.
    pub consumer_secret: SecretString,
    /// `access-token`.
    pub access_token: SecretString,
    /// `access-token-secret`.
    pub access_token_secret: SecretString,
}

impl XCredentials {
    /// Read keys `consumer-key`, `consumer-secret`, `access-token`, `access-token-secret`.
    pub fn from_secret_data<V: AsRef<[u8]>>(
        data: &BTreeMap<String, V>,
    ) -> Result<Self, CredentialsError> {
        Ok(XCredentials {
            consumer_key: require_key(data, "consumer-key")?,
            consumer_secret: require_key(data, "consumer-secret")?,
            access_token: require_key(data, "access-token")?,
            access_token_secret: require_key(data, "access-token-secret")?,
        })
    }

    /// A one-way fingerprint of the values (changes when the Secret is rotated).
    pub fn fingerprint(&self) -> String {
        fingerprint_of(&[
            "x",
            self.consumer_key.expose(),
            self.consumer_secret.expose(),
            self.access_token.expose(),
            self.access_token_secret.expose(),
        ])
    }

    /// The key of this credential's X request budget
    /// ([`RequestBudgets::get`](crate::upstream::budget::RequestBudgets::get)): X counts its
    /// limits per app and user, i.e. per consumer key and access token, so every Secret holding
    /// the same pair shares one budget, and rotating the secrets keeps it. A one-way digest
    /// (`x:` and 24 hex digits): it never contains a credential, but it is not meant for logs.
    pub fn budget_key(&self) -> String {
        format!(
            "x:{}",
            fingerprint_of(&[
                "x-budget",
                self.consumer_key.expose(),
                self.access_token.expose()
            ])
        )
    }
}

impl fmt::Debug for XCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("XCredentials")
            .field("consumer_key", &REDACTED)
            .field("consumer_secret", &REDACTED)
            .field("access_token", &REDACTED)
            .field("access_token_secret", &REDACTED)
            .finish()
    }
}

impl fmt::Display for XCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("X OAuth 1.0a credentials [redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, Vec<u8>> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn dialog_token_wins() {
        let c = DialogCredentials::from_secret_data(&data(&[
            ("token", "tok\n"),
            ("username", "u"),
            ("password", "p"),
        ]))
        .unwrap();
        assert_eq!(c, DialogCredentials::Token(SecretString::new("tok")));
    }

    #[test]
    fn dialog_username_password() {
        let c = DialogCredentials::from_secret_data(&data(&[("username", "u"), ("password", "p")]))
            .unwrap();
        assert!(matches!(c, DialogCredentials::UsernamePassword { .. }));
        let other =
            DialogCredentials::from_secret_data(&data(&[("username", "u"), ("password", "q")]))
                .unwrap();
        assert_ne!(c.fingerprint(), other.fingerprint());
    }

    #[test]
    fn dialog_errors_name_the_key() {
        let e = DialogCredentials::from_secret_data(&data(&[("username", "hunter2-user")]))
            .unwrap_err();
        assert_eq!(e, CredentialsError::MissingKey { key: "password" });
        assert_eq!(e.to_string(), "Secret is missing key `password`");
        let e = DialogCredentials::from_secret_data(&data(&[])).unwrap_err();
        assert_eq!(e, CredentialsError::NoDialogCredentials);
        let e = DialogCredentials::from_secret_data(&data(&[("token", "  ")])).unwrap_err();
        assert_eq!(e, CredentialsError::EmptyKey { key: "token" });
        let mut bad = BTreeMap::new();
        bad.insert("token".to_string(), vec![0xff, 0xfe]);
        let e = DialogCredentials::from_secret_data(&bad).unwrap_err();
        assert_eq!(e, CredentialsError::NotUtf8 { key: "token" });
    }

    #[test]
    fn x_credentials() {
        let full = data(&[
            ("consumer-key", "ck"),
            ("consumer-secret", "cs"),
            ("access-token", "at"),
            ("access-token-secret", "ats"),
        ]);
        let c = XCredentials::from_secret_data(&full).unwrap();
        assert_eq!(c.access_token_secret.expose(), "ats");
        let mut partial = full.clone();
        partial.remove("access-token");
        let e = XCredentials::from_secret_data(&partial).unwrap_err();
        assert_eq!(e.to_string(), "Secret is missing key `access-token`");
    }

    #[test]
    fn x_budget_key_is_the_app_and_user_never_a_value() {
        let creds = |ck: &str, cs: &str, at: &str, ats: &str| {
            XCredentials::from_secret_data(&data(&[
                ("consumer-key", ck),
                ("consumer-secret", cs),
                ("access-token", at),
                ("access-token-secret", ats),
            ]))
            .unwrap()
        };
        let key = creds("ck-1", "cs-1", "at-1", "ats-1").budget_key();
        assert!(key.starts_with("x:") && key.len() == 2 + 24, "{key}");
        for value in ["ck-1", "cs-1", "at-1", "ats-1"] {
            assert!(!key.contains(value));
        }
        // Rotated secrets: the same app and user, the same budget.
        assert_eq!(creds("ck-1", "cs-2", "at-1", "ats-2").budget_key(), key);
        // Another user or another app: another budget.
        assert_ne!(creds("ck-1", "cs-1", "at-2", "ats-1").budget_key(), key);
        assert_ne!(creds("ck-2", "cs-1", "at-1", "ats-1").budget_key(), key);
        // Not the fingerprint, which changes on rotation.
        assert_ne!(
            creds("ck-1", "cs-1", "at-1", "ats-1").fingerprint(),
            key["x:".len()..]
        );
    }
}
