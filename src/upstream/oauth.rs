//! OAuth 1.0a HMAC-SHA1 request signing (RFC 5849) for the X Ads API, through the
//! `oauth1-request` crate.
//!
//! The signature covers the method, the base URL and every query (and, for the
//! test vector, form) parameter; JSON bodies are not part of it. The query string
//! put on the wire is produced by the same crate from the same parameters, so what
//! is signed and what is sent cannot drift apart.

use std::num::NonZeroU64;

use oauth1_request as oauth;

use crate::upstream::secret::XCredentials;

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

/// `scheme://host[:port]/path`, lowercase scheme and host, default port dropped
/// (RFC 5849 section 3.4.1.2). The crate signs the URI it is given verbatim, so
/// the normalisation happens here.
fn base_string_uri(url: &url::Url) -> String {
    let mut out = format!("{}://", url.scheme().to_ascii_lowercase());
    if let Some(host) = url.host_str() {
        out.push_str(&host.to_ascii_lowercase());
    }
    // `url` already drops the scheme's default port.
    if let Some(port) = url.port() {
        out.push_str(&format!(":{port}"));
    }
    out.push_str(url.path());
    out
}

fn parameter_list(params: &[(String, String)]) -> oauth::ParameterList<&str, &str, Vec<(&str, &str)>> {
    // `ParameterList::new` sorts, as the signature base string requires.
    oauth::ParameterList::new(
        params
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect::<Vec<_>>(),
    )
}

/// The `Authorization: OAuth ...` header value for one request.
///
/// `url`'s own query is ignored: pass every query (and form) parameter in `params`,
/// decoded. `nonce` and `timestamp` are explicit so tests are deterministic.
pub fn authorization_header(
    credentials: &XCredentials,
    method: &str,
    url: &url::Url,
    params: &[(String, String)],
    nonce: &str,
    timestamp: u64,
) -> String {
    let token = oauth::Token::from_parts(
        credentials.consumer_key.expose(),
        credentials.consumer_secret.expose(),
        credentials.access_token.expose(),
        credentials.access_token_secret.expose(),
    );
    let mut builder = oauth::Builder::with_token(token, oauth::HMAC_SHA1);
    builder
        .nonce(nonce)
        .timestamp(NonZeroU64::new(timestamp))
        .version(true);
    builder.authorize(
        &method.to_ascii_uppercase(),
        base_string_uri(url),
        &parameter_list(params),
    )
}

/// `url` with `params` as its query, encoded exactly as they were signed.
pub fn url_with_query(url: &url::Url, params: &[(String, String)]) -> url::Url {
    let mut out = url.clone();
    out.set_query(None);
    out.set_fragment(None);
    if params.is_empty() {
        return out;
    }
    // The crate appends `?k=v&...` with RFC 3986 encoding; only the query part is kept.
    let with_query = oauth::to_query(String::new(), &parameter_list(params));
    out.set_query(Some(with_query.trim_start_matches('?')));
    out
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

    /// The example of Twitter's "Creating a signature" documentation: `include_entities`
    /// is a query parameter, `status` a form body parameter; both are signed.
    #[test]
    fn twitter_documentation_vector() {
        let url = url::Url::parse(
            "https://api.twitter.com/1.1/statuses/update.json?include_entities=true",
        )
        .unwrap();
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
        assert!(header.starts_with("OAuth "), "{header}");
        for part in [
            r#"oauth_consumer_key="xvz1evFS4wEEPTGEFPHBog""#,
            r#"oauth_nonce="kYjzVBB8Y0ZFabxSWbWovY3uYSQ2pTgmZeNu2VS4cg""#,
            r#"oauth_signature_method="HMAC-SHA1""#,
            r#"oauth_timestamp="1318622958""#,
            r#"oauth_token="370773112-GmHxMAgYyLbNEtIKZeRNFsMKPR9EyMZeS9weJAEb""#,
            r#"oauth_version="1.0""#,
        ] {
            assert!(header.contains(part), "{part} missing from {header}");
        }
    }

    #[test]
    fn parameter_order_does_not_change_the_signature() {
        let url = url::Url::parse("http://127.0.0.1:8081/12/accounts/a/web_event_tags").unwrap();
        let a = vec![
            ("type".to_string(), "PURCHASE".to_string()),
            ("click_window".to_string(), "30".to_string()),
            ("name".to_string(), "a b&c+d".to_string()),
        ];
        let mut b = a.clone();
        b.reverse();
        let sign = |p: &[(String, String)]| {
            authorization_header(&twitter_creds(), "post", &url, p, "n", 1)
        };
        assert_eq!(sign(&a), sign(&b));
        assert_ne!(sign(&a), sign(&a[..2]));
    }

    #[test]
    fn base_uri_and_query_encoding() {
        let url = url::Url::parse("HTTP://Example.COM:80/r%20v/X?drop=me").unwrap();
        assert_eq!(base_string_uri(&url), "http://example.com/r%20v/X");
        let url = url::Url::parse("http://127.0.0.1:8081/a").unwrap();
        assert_eq!(base_string_uri(&url), "http://127.0.0.1:8081/a");
        let q = url_with_query(
            &url,
            &[
                ("name".into(), "a b&c+~é".into()),
                ("click_window".into(), "7".into()),
            ],
        );
        assert_eq!(
            q.as_str(),
            "http://127.0.0.1:8081/a?click_window=7&name=a%20b%26c%2B~%C3%A9"
        );
        assert_eq!(url_with_query(&url, &[]).as_str(), "http://127.0.0.1:8081/a");
        assert_eq!(nonce().len(), 32);
    }
}
