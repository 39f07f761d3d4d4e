//! The fake X's OAuth 1.0a verification (`fake_upstreams::oauth`), checked against the
//! published example, independently of the operator's signer.

use fake_upstreams::oauth::{parse_header, signature};

/// The example of Twitter's "Creating a signature" documentation.
#[test]
fn reproduces_the_published_example() {
    let oauth: Vec<(String, String)> = [
        ("oauth_consumer_key", "xvz1evFS4wEEPTGEFPHBog"),
        ("oauth_nonce", "kYjzVBB8Y0ZFabxSWbWovY3uYSQ2pTgmZeNu2VS4cg"),
        ("oauth_signature_method", "HMAC-SHA1"),
        ("oauth_timestamp", "1318622958"),
        (
            "oauth_token",
            "370773112-GmHxMAgYyLbNEtIKZeRNFsMKPR9EyMZeS9weJAEb",
        ),
        ("oauth_version", "1.0"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let params = vec![
        ("include_entities".to_string(), "true".to_string()),
        (
            "status".to_string(),
            "Hello Ladies + Gentlemen, a signed OAuth request!".to_string(),
        ),
    ];
    let sig = signature(
        "POST",
        "https://api.twitter.com/1.1/statuses/update.json",
        &params,
        &oauth,
        "kAcSOqF21Fu85e7zjz7ZN2U4ZRhfV3WpwPAoE3Z7kBw",
        "LswwdoUaIvS8ltyTt5jkRh4J50vUPVVHtR2YPi5kE",
    );
    assert_eq!(sig, "hCtSmYh+iHYCEqBWrE7C7hYmtUk=");
}

#[test]
fn header_is_parsed_and_decoded() {
    let p = parse_header(r#"OAuth oauth_consumer_key="ck", oauth_signature="a%2Bb%3D""#).unwrap();
    assert_eq!(p[1], ("oauth_signature".to_string(), "a+b=".to_string()));
    assert!(parse_header("Bearer x").is_none());
}
