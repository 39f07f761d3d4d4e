//! X's documented Conversion API errors, worded and cased exactly as the vendor documents them
//! (its error-code tables and JSON examples, which disagree with each other in places), so that
//! tests can check the operator's classification against every documented variant through
//! [`FaultRule::respond`](crate::FaultRule::respond).

use serde_json::{Value, json};

use crate::faults::Canned;

/// The account id of the vendor's JSON examples.
const EXAMPLE_ACCOUNT: &str = "18ce552mlaq";

/// How the operator must treat an error (the product's rules, not X's codes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The bridge's setup is wrong (credentials, access, pixel, event tag): retrying or
    /// dropping single conversions cannot help.
    Configuration,
    /// One conversion in the batch is bad; the others can go out without it.
    PerConversion,
    /// The batch has too many conversions; smaller batches go through.
    TooLarge,
}

/// One documented error answer.
#[derive(Clone, Debug)]
pub struct DocumentedError {
    pub status: u16,
    /// The response body, in X's `{"errors":[…],"request":{…}}` shape.
    pub body: String,
    pub kind: ErrorKind,
}

impl DocumentedError {
    /// The `message` of each error in the body, in order.
    pub fn messages(&self) -> Vec<String> {
        serde_json::from_str::<Value>(&self.body)
            .ok()
            .and_then(|v| v["errors"].as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter_map(|e| e["message"].as_str().map(String::from))
            .collect()
    }
}

/// One error of a body: code, message and the parameter it names, if X names one.
type Entry<'a> = (&'a str, &'a str, Option<&'a str>);

fn body_for(account: &str, errors: &[Entry<'_>]) -> String {
    let errors: Vec<Value> = errors
        .iter()
        .map(|(code, message, parameter)| match parameter {
            Some(p) => json!({"code": code, "message": message, "parameter": p}),
            None => json!({"code": code, "message": message}),
        })
        .collect();
    json!({"errors": errors, "request": {"params": {"account_id": account}}}).to_string()
}

fn error(status: u16, kind: ErrorKind, errors: &[Entry<'_>]) -> DocumentedError {
    DocumentedError {
        status,
        body: body_for(EXAMPLE_ACCOUNT, errors),
        kind,
    }
}

fn invalid(kind: ErrorKind, message: &str, parameter: &str) -> DocumentedError {
    error(
        400,
        kind,
        &[("INVALID_PARAMETER", message, Some(parameter))],
    )
}

/// Every documented Conversion API error, the tables' wording and the JSON examples' wording
/// both, since X has answered with either.
pub fn documented() -> Vec<DocumentedError> {
    use ErrorKind::{Configuration, PerConversion, TooLarge};
    let no_access_user = "User <user_id> does not have access to account <account_id>. Type \
                          ‘sn <user_id>’ to get the handle of the user. Use ‘twurl accounts’ and \
                          ‘twurl set default <username>’ to change the user you’re using.";
    vec![
        invalid(
            PerConversion,
            "At least one user identifier must be provided",
            "",
        ),
        invalid(
            PerConversion,
            "Hashed_email is not a valid SHA-256 hash",
            "hashed_email",
        ),
        invalid(
            PerConversion,
            "hashed_email (abc) is not a valid SHA-256 hash",
            "hashed_email",
        ),
        invalid(
            PerConversion,
            "Expected Time in yyyy-MM-ddTHH:mm:ss.SSSZ, got \"2022-06-16T01:14:00.603\" for \
             conversion_time",
            "conversion_time",
        ),
        invalid(
            Configuration,
            "Event_id (o87ne) is not a single event tag (SET)",
            "event_id",
        ),
        invalid(
            Configuration,
            "event_id (o6dkt) is not a single event tag (SET)",
            "event_id",
        ),
        invalid(Configuration, "Event ID was not found", "event_id"),
        invalid(TooLarge, "Conversion count limit is 500", "conversions"),
        DocumentedError {
            status: 401,
            // X's 401 carries no `request` part.
            body: r#"{"errors":[{"code":"UNAUTHORIZED_ACCESS","message":"This request is not properly authorized."}]}"#
                .into(),
            kind: Configuration,
        },
        error(
            403,
            Configuration,
            &[(
                "UNAUTHORIZED_CLIENT_APPLICATION",
                "The client application with id <> making this request does not have access to \
                 Twitter Ads API. Ensure your application has advertiser-api access. Use ‘twurl \
                 accounts’ and ‘twurl set default <username> <key>’ to change the application \
                 you’re using.",
                None,
            )],
        ),
        error(
            404,
            Configuration,
            &[(
                "ROUTE_NOT_FOUND",
                "The requested resource could not be found",
                None,
            )],
        ),
        DocumentedError {
            status: 404,
            // The docs print this one `<username>` as `\u003Cusername\u003E`, a JSON escape:
            // the body carries that escape, so its text is the docs' and its message reads
            // `<username>`.
            body: body_for(
                EXAMPLE_ACCOUNT,
                &[("NOT_FOUND", no_access_user, None)],
            )
            .replace(
                "set default <username>",
                r"set default \u003Cusername\u003E",
            ),
            kind: Configuration,
        },
        error(
            404,
            Configuration,
            &[(
                "NOT_FOUND",
                "event_id abc does not belong to provided account",
                Some("event_id"),
            )],
        ),
        DocumentedError {
            status: 404,
            // As in the docs' example, down to its account id.
            body: body_for(
                "18ce55gze09",
                &[
                    (
                        "NOT_FOUND",
                        "event_id (abc) does not belong to provided account",
                        Some("event_id"),
                    ),
                    (
                        "INVALID_PARAMETER",
                        "event_id (abc) is not a single event tag (SET)",
                        Some("event_id"),
                    ),
                ],
            ),
            kind: Configuration,
        },
    ]
}

/// A documented error as a canned answer.
pub fn canned(e: &DocumentedError) -> Canned {
    Canned {
        status: e.status,
        body: e.body.clone(),
        content_type: Some("application/json".into()),
        headers: Vec::new(),
    }
}

/// The HTML 400 page of a proxy in front of X (nginx), which is not X's JSON at all.
pub fn html_400() -> Canned {
    Canned {
        status: 400,
        body: "<html><head><title>400 Bad Request</title></head><body><center><h1>400 Bad \
               Request</h1></center><hr><center>nginx</center></body></html>"
            .into(),
        content_type: Some("text/html".into()),
        headers: Vec::new(),
    }
}
