//! OAuth 1.0a HMAC-SHA1 request signing (RFC 5849), as the X Ads API requires.
//!
//! The signature covers the method, the base URL and every query (and, for the
//! test vector, form) parameter; JSON bodies are not part of it.

use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use sha1::Sha1;

use crate::upstream::secret::XCredentials;

/// RFC 3986 unreserved characters stay; everything else is percent-encoded.
const OAUTH_ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encode per RFC 5849 section 3.6.
pub fn encode(s: &str) -> String {
    utf8_percent_encode(s, OAUTH_ENCODE).to_string()
}

/// Encode `params` as a query string with RFC 3986 encoding (the form X signs).
pub fn encode_query(params: &[(String, String)]) -> String {
    params
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// A random nonce (32 alphanumeric characters).
pub fn nonce() -> String {
    use rand::Rng as _;
    rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(32)
        .map(char::from)
        .collect()
}

/// Current Unix time in seconds.
pub fn timestamp() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `scheme://host[:port]/path`, lowercase scheme and host, default port dropped.
fn base_string_uri(url: &url::Url) -> String {
    let mut out = format!("{}://", url.scheme().to_ascii_lowercase());
    if let Some(host) = url.host_str() {
        out.push_str(&host.to_ascii_lowercase());
    }
    if let Some(port) = url.port() {
        out.push_str(&format!(":{port}"));
    }
    out.push_str(url.path());
    out
}

/// The signature base string of RFC 5849 section 3.4.1.
pub fn signature_base_string(
    method: &str,
    url: &url::Url,
    params: &[(String, String)],
    oauth_params: &[(&str, &str)],
) -> String {
    let mut all: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| (encode(k), encode(v)))
        .chain(oauth_params.iter().map(|(k, v)| (encode(k), encode(v))))
        .collect();
    all.sort();
    let normalized = all
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    format!(
        "{}&{}&{}",
        method.to_ascii_uppercase(),
        encode(&base_string_uri(url)),
        encode(&normalized)
    )
}

/// HMAC-SHA1 of the base string, base64.
fn sign(base: &str, consumer_secret: &str, token_secret: &str) -> String {
    let key = format!("{}&{}", encode(consumer_secret), encode(token_secret));
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = match Hmac::<Sha1>::new_from_slice(key.as_bytes()) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(base.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// The `Authorization: OAuth ...` header value for one request.
///
/// `url` must not carry a query: pass every query (and form) parameter in
/// `params`, decoded. `nonce` and `timestamp` are explicit so tests are deterministic.
pub fn authorization_header(
    credentials: &XCredentials,
    method: &str,
    url: &url::Url,
    params: &[(String, String)],
    nonce: &str,
    timestamp: u64,
) -> String {
    let timestamp = timestamp.to_string();
    let oauth: [(&str, &str); 6] = [
        ("oauth_consumer_key", credentials.consumer_key.expose()),
        ("oauth_nonce", nonce),
        ("oauth_signature_method", "HMAC-SHA1"),
        ("oauth_timestamp", &timestamp),
        ("oauth_token", credentials.access_token.expose()),
        ("oauth_version", "1.0"),
    ];
    let base = signature_base_string(method, url, params, &oauth);
    let signature = sign(
        &base,
        credentials.consumer_secret.expose(),
        credentials.access_token_secret.expose(),
    );
    let mut parts: Vec<String> = oauth
        .iter()
        .map(|(k, v)| format!("{}=\"{}\"", encode(k), encode(v)))
        .collect();
    parts.push(format!("oauth_signature=\"{}\"", encode(&signature)));
    parts.sort();
    format!("OAuth {}", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::secret::SecretString;

    fn twitter_creds() -> XCredentials {
        XCredentials {
            consumer_key: SecretString::new("xvz1evFS4wEEPTGEFPHBog"),
            consumer_secret: SecretString::new("kAcSOqF21Fu85e7zjz7ZN2U4ZRhfV3WpwPAoE3Z7kBw"),
            access_token: SecretString::new("370773112-GmHxMAgYyLbNEtIKZeRNFsMKPR9EyMZeS9weJAEb"),
            access_token_secret: SecretString::new("LswwdoUaIvS8ltyTt5jkRh4J50vUPVVHtR2YPi5kE"),
        }
    }

    /// The example of Twitter's "Creating a signature" documentation.
    #[test]
    fn twitter_documentation_vector() {
        let url = url::Url::parse("https://api.twitter.com/1.1/statuses/update.json").unwrap();
        let params = vec![
            ("include_entities".to_string(), "true".to_string()),
            (
                "status".to_string(),
                "Hello Ladies + Gentlemen, a signed OAuth request!".to_string(),
            ),
        ];
        let header = authorization_header(
            &twitter_creds(),
            "POST",
            &url,
            &params,
            "kYjzVBB8Y0ZFabxSWbWovY3uYSQ2pTgmZeNu2VS4cg",
            1318622958,
        );
        assert!(
            header.contains(r#"oauth_signature="hCtSmYh%2BiHYCEqBWrE7C7hYmtUk%3D""#),
            "{header}"
        );
        assert!(header.starts_with("OAuth oauth_consumer_key=\"xvz1evFS4wEEPTGEFPHBog\""));
        assert!(header.contains(r#"oauth_signature_method="HMAC-SHA1""#));
        assert!(header.contains(r#"oauth_timestamp="1318622958""#));
        assert!(header.contains(r#"oauth_version="1.0""#));
    }

    #[test]
    fn base_string_and_encoding() {
        assert_eq!(encode("Ladies + Gentlemen"), "Ladies%20%2B%20Gentlemen");
        assert_eq!(encode("a-b.c_d~e!*"), "a-b.c_d~e%21%2A");
        let url = url::Url::parse("HTTP://Example.COM:80/r%20v/X").unwrap();
        assert_eq!(base_string_uri(&url), "http://example.com/r%20v/X");
        let url = url::Url::parse("http://127.0.0.1:8081/a").unwrap();
        assert_eq!(base_string_uri(&url), "http://127.0.0.1:8081/a");
        let q = encode_query(&[("name".into(), "a b&c".into())]);
        assert_eq!(q, "name=a%20b%26c");
        assert_eq!(nonce().len(), 32);
    }
}
