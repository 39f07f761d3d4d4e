//! Verification of OAuth 1.0a HMAC-SHA1 signatures (RFC 5849), written independently of the
//! operator's signer so that the two check each other.

use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use sha1::Sha1;

const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

fn enc(s: &str) -> String {
    utf8_percent_encode(s, UNRESERVED).to_string()
}

/// The `oauth_*` parameters of an `Authorization: OAuth ...` header, decoded.
pub fn parse_header(header: &str) -> Option<Vec<(String, String)>> {
    let rest = header.trim().strip_prefix("OAuth ")?;
    rest.split(',')
        .map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            let v = v.trim().trim_matches('"');
            Some((
                percent_decode_str(k.trim())
                    .decode_utf8()
                    .ok()?
                    .into_owned(),
                percent_decode_str(v).decode_utf8().ok()?.into_owned(),
            ))
        })
        .collect()
}

/// Query parameters, decoded (`%20` and `+` both mean a space, as servers read them).
pub fn parse_query(query: &str) -> Vec<(String, String)> {
    url::form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// The expected signature for a request.
pub fn signature(
    method: &str,
    base_url: &str,
    query: &[(String, String)],
    oauth: &[(String, String)],
    consumer_secret: &str,
    token_secret: &str,
) -> String {
    let mut params: Vec<(String, String)> = query
        .iter()
        .chain(
            oauth
                .iter()
                .filter(|(k, _)| k != "oauth_signature" && k != "realm"),
        )
        .map(|(k, v)| (enc(k), enc(v)))
        .collect();
    params.sort();
    let normalized = params
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let base = format!(
        "{}&{}&{}",
        method.to_ascii_uppercase(),
        enc(base_url),
        enc(&normalized)
    );
    let key = format!("{}&{}", enc(consumer_secret), enc(token_secret));
    let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(key.as_bytes()) else {
        return String::new();
    };
    mac.update(base.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Compares without an early exit, so timing does not reveal how much of a guess was right.
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}
