//! X's documented errors as the fake serves them (`fake_upstreams::x_errors`): verbatim, in
//! X's JSON shape, and classified by the product's rules.

use fake_upstreams::x_errors::{ErrorKind, documented};
use serde_json::Value;

fn body_with(message: &str) -> String {
    documented()
        .into_iter()
        .find(|e| e.messages().iter().any(|m| m == message))
        .unwrap_or_else(|| panic!("no documented error says {message:?}"))
        .body
}

/// The docs' JSON examples, copied byte for byte.
#[test]
fn json_examples_are_verbatim() {
    for example in [
        r#"{"errors":[{"code":"INVALID_PARAMETER","message":"event_id (o6dkt) is not a single event tag (SET)","parameter":"event_id"}],"request":{"params":{"account_id":"18ce552mlaq"}}}"#,
        r#"{"errors":[{"code":"INVALID_PARAMETER","message":"At least one user identifier must be provided","parameter":""}],"request":{"params":{"account_id":"18ce552mlaq"}}}"#,
        r#"{"errors":[{"code":"INVALID_PARAMETER","message":"hashed_email (abc) is not a valid SHA-256 hash","parameter":"hashed_email"}],"request":{"params":{"account_id":"18ce552mlaq"}}}"#,
        r#"{"errors":[{"code":"INVALID_PARAMETER","message":"Expected Time in yyyy-MM-ddTHH:mm:ss.SSSZ, got \"2022-06-16T01:14:00.603\" for conversion_time","parameter":"conversion_time"}],"request":{"params":{"account_id":"18ce552mlaq"}}}"#,
        r#"{"errors":[{"code":"NOT_FOUND","message":"event_id (abc) does not belong to provided account","parameter":"event_id"},{"code":"INVALID_PARAMETER","message":"event_id (abc) is not a single event tag (SET)","parameter":"event_id"}],"request":{"params":{"account_id":"18ce55gze09"}}}"#,
    ] {
        let message = serde_json::from_str::<Value>(example).unwrap()["errors"][0]["message"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(body_with(&message), example);
    }
}

#[test]
fn every_body_is_x_json() {
    for e in documented() {
        let v: Value = serde_json::from_str(&e.body).unwrap();
        assert!(!e.messages().is_empty(), "{}", e.body);
        assert!(v["errors"].is_array());
    }
}

#[test]
fn the_escaped_username_reads_as_brackets() {
    let e = documented()
        .into_iter()
        .find(|e| e.body.contains("does not have access to account"))
        .unwrap();
    assert!(e.body.contains(r"set default \u003Cusername\u003E’"));
    assert!(e.messages()[0].contains("set default <username>’ to change the user"));
}

#[test]
fn classification_follows_the_product_rules() {
    for e in documented() {
        let m = e.messages().join(" ");
        let expected = if m.contains("Conversion count limit") {
            ErrorKind::TooLarge
        } else if e.status != 400 || m.to_lowercase().contains("event") {
            ErrorKind::Configuration
        } else {
            ErrorKind::PerConversion
        };
        assert_eq!(e.kind, expected, "{m}");
    }
}
