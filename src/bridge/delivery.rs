//! Delivering one batch to X (SPEC 1.5, 7.2): what X's answer means, retries for what may pass,
//! halving to isolate the conversions X refuses, and a stop for configuration errors.
//!
//! X fails a whole request when one conversion in it is invalid, so a batch that gets a
//! per-conversion 400 is split in two and each half is sent again. One bad conversion among n
//! costs at most 2·⌈log2 n⌉ + 1 requests; the good ones are all delivered. Only an answer that
//! names a conversion field ever rejects a conversion: an unexplained refusal (a proxy's HTML
//! page, an unknown 4xx) is retried and never costs a conversion.

use std::collections::VecDeque;
use std::future::Future;
use std::ops::Range;

use tokio_util::sync::CancellationToken;

use crate::runtime::backoff::Backoff;
use crate::runtime::conditions::Reason;
use crate::upstream::error::{ErrorClass, ErrorDetail, UpstreamError};
use crate::upstream::x_ads::Conversion;

/// A batch that failed transiently this many times in a row is split: one payload that makes
/// X fail (say, a 500 it provokes) must not hold the others back.
pub const SPLIT_AFTER_FAILURES: u32 = 5;

/// Why X did not accept a request, as the bridge must act on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SendError {
    /// A conversion in the request is invalid: split to find it; a single one is rejected.
    Invalid(String),
    /// The request was too big (413, "Conversion count limit"): split.
    TooLarge(String),
    /// The bridge's configuration is wrong (event_id, pixel, credentials): stop, keep
    /// every conversion.
    Config { reason: Reason, message: String },
    /// Try again later: 5xx, 429, timeouts, and refusals nobody explained.
    Retry {
        /// `RateLimited` for a 429, `UpstreamRejected` for an unexplained 4xx,
        /// `UpstreamUnavailable` otherwise.
        reason: Reason,
        message: String,
        after: Option<std::time::Duration>,
    },
}

/// Request fields that belong to one conversion: an error naming them is that conversion's.
const CONVERSION_FIELDS: &[&str] = &[
    "conversion_time",
    "conversion_id",
    "identifiers",
    "hashed_email",
    "hashed_phone_number",
    "twclid",
    "ip_address",
    "user_agent",
    "description",
    "number_items",
    "price_currency",
    "value",
    "contents",
];

/// The error concerns the event tag or the pixel: every conversion would fail the same way.
fn concerns_configuration(e: &ErrorDetail) -> bool {
    let parameter = e.parameter.to_ascii_lowercase();
    let message = e.message.to_ascii_lowercase();
    matches!(parameter.as_str(), "event_id" | "pixel_id" | "pixel")
        || ["event_id", "event id", "pixel"]
            .iter()
            .any(|m| message.contains(m))
}

fn concerns_a_conversion(e: &ErrorDetail) -> bool {
    let parameter = e.parameter.to_ascii_lowercase();
    let message = e.message.to_ascii_lowercase();
    CONVERSION_FIELDS.contains(&parameter.as_str())
        || message.contains("at least one user identifier")
        || ["conversion_time", "hashed_email", "hashed_phone_number"]
            .iter()
            .any(|f| message.contains(f))
}

fn too_many(e: &ErrorDetail) -> bool {
    e.message
        .to_ascii_lowercase()
        .contains("conversion count limit")
}

impl From<UpstreamError> for SendError {
    fn from(e: UpstreamError) -> Self {
        let message = e.to_string();
        let retry = |reason| SendError::Retry {
            reason,
            message: message.clone(),
            after: None,
        };
        match (e.class(), e.status()) {
            (ErrorClass::RateLimited { .. }, _) => SendError::Retry {
                reason: Reason::RateLimited,
                after: e.retry_after(),
                message,
            },
            (ErrorClass::Transient, _) => retry(Reason::UpstreamUnavailable),
            (_, Some(401 | 403)) => SendError::Config {
                reason: Reason::InvalidCredentials,
                message,
            },
            (_, Some(404)) => SendError::Config {
                reason: Reason::UpstreamRejected,
                message,
            },
            (_, Some(413)) => SendError::TooLarge(message),
            (_, Some(400)) => {
                let errors = e.error_details();
                if errors.iter().any(concerns_configuration) {
                    SendError::Config {
                        reason: Reason::UpstreamRejected,
                        message,
                    }
                } else if errors.iter().any(concerns_a_conversion) {
                    SendError::Invalid(e.upstream_message().unwrap_or(&message).to_string())
                } else if errors.iter().any(too_many) {
                    SendError::TooLarge(message)
                } else {
                    // No X error body (a proxy's page) or one that names nothing we know.
                    retry(Reason::UpstreamRejected)
                }
            }
            (_, Some(_)) => retry(Reason::UpstreamRejected),
            // The request could not be built or signed: the credentials are unusable.
            (_, None) => SendError::Config {
                reason: Reason::InvalidCredentials,
                message,
            },
        }
    }
}

/// Where batches go: the X Conversion API, or a test double.
pub trait Sink: Send {
    fn send(&mut self, batch: &[Conversion]) -> impl Future<Output = Result<(), SendError>> + Send;
}

/// What became of one conversion of a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fate {
    /// Not accepted or refused yet: the delivery stopped (stalled or cancelled) before.
    Unsent,
    Forwarded,
    /// Refused by X, with X's message.
    Rejected(String),
}

/// What happened to one batch.
#[derive(Debug, PartialEq, Eq)]
pub struct Delivery {
    /// One per conversion of the batch, in order.
    pub fates: Vec<Fate>,
    /// Requests X accepted.
    pub requests_accepted: usize,
    /// Requests X refused for a conversion in them (they were split).
    pub requests_rejected: usize,
    /// Requests that failed and were retried.
    pub requests_failed: usize,
    /// Set when delivery stopped on a configuration error; the unsent rest is kept.
    pub stalled: Option<(Reason, String)>,
    /// Set when delivery was cancelled; the unsent rest is kept.
    pub cancelled: bool,
}

impl Delivery {
    fn new(n: usize) -> Self {
        Delivery {
            fates: vec![Fate::Unsent; n],
            requests_accepted: 0,
            requests_rejected: 0,
            requests_failed: 0,
            stalled: None,
            cancelled: false,
        }
    }

    /// Every conversion was either accepted or refused.
    pub fn settled(&self) -> bool {
        self.stalled.is_none() && !self.cancelled
    }

    pub fn forwarded(&self) -> usize {
        self.fates.iter().filter(|f| **f == Fate::Forwarded).count()
    }

    /// The refused conversions, by index, with X's message.
    pub fn rejected(&self) -> impl Iterator<Item = (usize, &str)> {
        self.fates.iter().enumerate().filter_map(|(i, f)| match f {
            Fate::Rejected(m) => Some((i, m.as_str())),
            _ => None,
        })
    }

    /// The safety net of SPEC 7.2: when X refused every conversion of a split batch with the
    /// same message, the message is about the configuration after all (no conversion is that
    /// alike by accident). Nothing is rejected; the bridge stalls with X's message.
    fn unanimous_refusal_is_configuration(&mut self) {
        let [Fate::Rejected(first), rest @ ..] = self.fates.as_slice() else {
            return;
        };
        if rest.is_empty() || !rest.iter().all(|f| *f == Fate::Rejected(first.clone())) {
            return;
        }
        self.stalled = Some((
            Reason::UpstreamRejected,
            format!(
                "X refused every conversion of a batch with the same error, so it concerns the \
                 configuration: {first}"
            ),
        ));
        self.fates.fill(Fate::Unsent);
    }
}

/// What a delivery reports while it goes on.
#[derive(Debug)]
pub enum Progress<'a> {
    /// A request failed and will be retried.
    Retrying { reason: Reason, message: &'a str },
    /// X accepted these conversions (indices into the batch). Reported at once, so that a
    /// delivery still retrying one conversion does not hide what went through.
    Accepted(Range<usize>),
}

/// Send `batch` through `sink` until every conversion is accepted or refused, a
/// configuration error stops it, or `cancel` fires. `on_progress` sees each retried failure
/// and each accepted request.
pub async fn deliver<S: Sink>(
    sink: &mut S,
    batch: &[Conversion],
    backoff: Backoff,
    cancel: &CancellationToken,
    mut on_progress: impl FnMut(Progress<'_>) + Send,
) -> Delivery {
    let mut out = Delivery::new(batch.len());
    // Ranges still to send, with how often each failed transiently in a row.
    let mut pending: VecDeque<(Range<usize>, u32)> = VecDeque::from([(0..batch.len(), 0)]);
    // Consecutive transient failures of the whole delivery: drives the delay.
    let mut failures = 0u32;
    let mut split = false;
    while let Some((range, tries)) = pending.pop_front() {
        if range.is_empty() {
            continue;
        }
        let sent = tokio::select! {
            _ = cancel.cancelled() => {
                out.cancelled = true;
                return out;
            }
            sent = sink.send(&batch[range.clone()]) => sent,
        };
        let halve = |pending: &mut VecDeque<(Range<usize>, u32)>, range: Range<usize>| {
            let mid = range.start + range.len() / 2;
            pending.push_front((mid..range.end, 0));
            pending.push_front((range.start..mid, 0));
        };
        match sent {
            Ok(()) => {
                failures = 0;
                out.requests_accepted += 1;
                out.fates[range.clone()].fill(Fate::Forwarded);
                on_progress(Progress::Accepted(range));
            }
            Err(SendError::Invalid(_) | SendError::TooLarge(_)) if range.len() > 1 => {
                failures = 0;
                out.requests_rejected += 1;
                split = true;
                halve(&mut pending, range);
            }
            Err(SendError::Invalid(message) | SendError::TooLarge(message)) => {
                failures = 0;
                out.requests_rejected += 1;
                out.fates[range.start] = Fate::Rejected(message);
            }
            Err(SendError::Config { reason, message }) => {
                out.stalled = Some((reason, message));
                return out;
            }
            Err(SendError::Retry {
                reason,
                message,
                after,
            }) => {
                out.requests_failed += 1;
                failures = failures.saturating_add(1);
                on_progress(Progress::Retrying {
                    reason,
                    message: &message,
                });
                let tries = tries + 1;
                if tries >= SPLIT_AFTER_FAILURES && range.len() > 1 {
                    halve(&mut pending, range);
                } else if tries >= SPLIT_AFTER_FAILURES {
                    // A lone conversion that keeps failing waits behind the others.
                    pending.push_back((range, tries));
                } else {
                    pending.push_front((range, tries));
                }
                tokio::select! {
                    _ = cancel.cancelled() => {
                        out.cancelled = true;
                        return out;
                    }
                    _ = tokio::time::sleep(backoff.delay(failures, after)) => {}
                }
            }
        }
    }
    if split {
        out.unanimous_refusal_is_configuration();
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::runtime::digest::Sha256Hex;
    use crate::upstream::x_ads::{ConversionTime, Identifiers};

    fn conversions(n: usize) -> Vec<Conversion> {
        (0..n)
            .map(|i| Conversion {
                conversion_time: ConversionTime::new("2026-11-01T00:00:00Z".parse().unwrap()),
                event_id: "o87ne".into(),
                identifiers: Identifiers::phone(Sha256Hex::of(format!("{i}").as_bytes())),
                conversion_id: format!("ev-{i}").into(),
                description: None,
            })
            .collect()
    }

    /// Refuses any request holding one of the bad ids, like X does.
    struct StrictX {
        bad: Vec<String>,
        requests: usize,
        accepted: Vec<String>,
        failures_left: usize,
        /// Fails transiently every request that holds this id.
        poison: Option<String>,
        /// Refuses every request with this message, whatever it holds.
        refuse_all: Option<String>,
    }

    impl StrictX {
        fn new(bad: &[&str]) -> Self {
            StrictX {
                bad: bad.iter().map(|s| s.to_string()).collect(),
                requests: 0,
                accepted: Vec::new(),
                failures_left: 0,
                poison: None,
                refuse_all: None,
            }
        }
    }

    fn unavailable() -> SendError {
        SendError::Retry {
            reason: Reason::UpstreamUnavailable,
            message: "HTTP 503".into(),
            after: None,
        }
    }

    impl Sink for StrictX {
        async fn send(&mut self, batch: &[Conversion]) -> Result<(), SendError> {
            self.requests += 1;
            if self.failures_left > 0 {
                self.failures_left -= 1;
                return Err(unavailable());
            }
            if let Some(message) = &self.refuse_all {
                return Err(SendError::Invalid(message.clone()));
            }
            if let Some(poison) = &self.poison
                && batch.iter().any(|c| *c.conversion_id == **poison)
            {
                return Err(unavailable());
            }
            if let Some(bad) = batch
                .iter()
                .find(|c| self.bad.iter().any(|b| **b == *c.conversion_id))
            {
                return Err(SendError::Invalid(format!(
                    "conversion {} is not valid",
                    bad.conversion_id
                )));
            }
            self.accepted
                .extend(batch.iter().map(|c| c.conversion_id.to_string()));
            Ok(())
        }
    }

    async fn run(sink: &mut impl Sink, batch: &[Conversion]) -> Delivery {
        deliver(
            sink,
            batch,
            Backoff::BRIDGE,
            &CancellationToken::new(),
            |_| {},
        )
        .await
    }

    #[tokio::test]
    async fn one_bad_among_500_takes_at_most_19_requests() {
        let batch = conversions(500);
        // log2(500) rounded up is 9: the bound is 2 * 9 + 1.
        for bad in [0, 1, 137, 250, 498, 499] {
            let id = format!("ev-{bad}");
            let mut x = StrictX::new(&[&id]);
            let d = run(&mut x, &batch).await;
            assert!(x.requests <= 19, "bad {bad}: {} requests", x.requests);
            assert_eq!(d.forwarded(), 499);
            let message = format!("conversion {id} is not valid");
            assert_eq!(
                d.rejected().collect::<Vec<_>>(),
                vec![(bad, message.as_str())]
            );
            assert_eq!(x.accepted.len(), 499);
            assert!(!x.accepted.contains(&id));
            assert!(d.settled());
        }
    }

    #[tokio::test]
    async fn several_bad_are_all_isolated() {
        let batch = conversions(100);
        let mut x = StrictX::new(&["ev-3", "ev-4", "ev-77"]);
        let d = run(&mut x, &batch).await;
        let rejected: Vec<usize> = d.rejected().map(|r| r.0).collect();
        assert_eq!(rejected, vec![3, 4, 77]);
        assert_eq!(d.forwarded(), 97);
    }

    #[tokio::test]
    async fn a_clean_batch_is_one_request() {
        let mut x = StrictX::new(&[]);
        let d = run(&mut x, &conversions(500)).await;
        assert_eq!(
            (x.requests, d.forwarded(), d.requests_accepted),
            (1, 500, 1)
        );
    }

    #[tokio::test]
    async fn a_refusal_shared_by_every_conversion_stalls_and_rejects_nothing() {
        let mut x = StrictX::new(&[]);
        x.refuse_all = Some("hashed_phone_number is not valid for this account".into());
        let d = run(&mut x, &conversions(8)).await;
        assert_eq!(d.rejected().count(), 0);
        assert!(d.fates.iter().all(|f| *f == Fate::Unsent));
        let (reason, message) = d.stalled.clone().unwrap();
        assert_eq!(reason, Reason::UpstreamRejected);
        assert!(
            message.contains("hashed_phone_number is not valid"),
            "{message}"
        );
        assert!(!d.settled());
    }

    #[tokio::test]
    async fn a_single_conversion_refused_is_rejected_not_stalled() {
        let mut x = StrictX::new(&["ev-0"]);
        let d = run(&mut x, &conversions(1)).await;
        assert_eq!(d.rejected().count(), 1);
        assert!(d.settled());
    }

    #[tokio::test(start_paused = true)]
    async fn transient_failures_are_retried_with_growing_delays() {
        let mut x = StrictX::new(&[]);
        x.failures_left = 3;
        let mut seen = 0;
        let started = tokio::time::Instant::now();
        let d = deliver(
            &mut x,
            &conversions(10),
            Backoff::BRIDGE,
            &CancellationToken::new(),
            |p| {
                if let Progress::Retrying { .. } = p {
                    seen += 1
                }
            },
        )
        .await;
        assert_eq!((d.forwarded(), d.requests_failed, seen), (10, 3, 3));
        // 1..2 s, 2..4 s, 4..8 s.
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_secs(7) && waited <= Duration::from_secs(14),
            "{waited:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_batch_failing_five_times_in_a_row_is_split_around_the_payload() {
        let mut x = StrictX::new(&[]);
        x.poison = Some("ev-5".into());
        let cancel = CancellationToken::new();
        let stop = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(24 * 3600)).await;
            stop.cancel();
        });
        let d = deliver(&mut x, &conversions(16), Backoff::BRIDGE, &cancel, |_| {}).await;
        // Everything but the poisoned conversion went through; it is kept, never rejected.
        assert_eq!(d.forwarded(), 15);
        assert_eq!(d.rejected().count(), 0);
        assert_eq!(d.fates[5], Fate::Unsent);
        assert!(d.cancelled);
    }

    /// Answers 429 asking for `after`, `refusals` times, then accepts.
    struct Limited {
        refusals: u32,
        after: Duration,
    }

    impl Sink for Limited {
        async fn send(&mut self, _: &[Conversion]) -> Result<(), SendError> {
            if self.refusals == 0 {
                return Ok(());
            }
            self.refusals -= 1;
            Err(SendError::Retry {
                reason: Reason::RateLimited,
                message: "429".into(),
                after: Some(self.after),
            })
        }
    }

    async fn waited_for(refusals: u32, after: Duration) -> Duration {
        let started = tokio::time::Instant::now();
        let d = run(&mut Limited { refusals, after }, &conversions(1)).await;
        assert_eq!(d.forwarded(), 1);
        started.elapsed()
    }

    #[tokio::test(start_paused = true)]
    async fn a_server_asking_for_no_wait_still_gets_a_growing_one() {
        // At least 1 + 2 + 4 + 8 s, not four requests in a row.
        let waited = waited_for(4, Duration::ZERO).await;
        assert!(waited >= Duration::from_secs(15), "{waited:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_is_honoured() {
        let waited = waited_for(1, Duration::from_secs(90)).await;
        assert!(waited >= Duration::from_secs(90) && waited <= Duration::from_secs(99));
    }

    #[tokio::test]
    async fn configuration_errors_stop_delivery() {
        struct Unauthorized;
        impl Sink for Unauthorized {
            async fn send(&mut self, _: &[Conversion]) -> Result<(), SendError> {
                Err(SendError::Config {
                    reason: Reason::InvalidCredentials,
                    message: "HTTP 401".into(),
                })
            }
        }
        let d = deliver(
            &mut Unauthorized,
            &conversions(5),
            Backoff::BRIDGE,
            &CancellationToken::new(),
            |_| {},
        )
        .await;
        assert_eq!(
            d.stalled,
            Some((Reason::InvalidCredentials, "HTTP 401".to_string()))
        );
        assert_eq!(d.forwarded(), 0);
        assert!(!d.settled());
    }

    #[tokio::test(start_paused = true)]
    async fn cancellation_interrupts_retries() {
        let mut x = StrictX::new(&[]);
        x.failures_left = usize::MAX;
        let cancel = CancellationToken::new();
        let c = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(5)).await;
            c.cancel();
        });
        let d = deliver(&mut x, &conversions(3), Backoff::BRIDGE, &cancel, |_| {}).await;
        assert!(d.cancelled);
        assert_eq!(d.forwarded(), 0);
    }

    fn classify(status: u16, body: &str) -> SendError {
        use crate::upstream::error::Api;
        use reqwest::header::HeaderMap;
        SendError::from(UpstreamError::from_response(
            Api::XAds,
            "send_conversions",
            status,
            &HeaderMap::new(),
            body.as_bytes(),
        ))
    }

    fn x_error(code: &str, message: &str, parameter: &str) -> String {
        serde_json::json!({"errors": [{"code": code, "message": message, "parameter": parameter}],
                           "request": {"params": {"account_id": "18ce552mlaq"}}})
        .to_string()
    }

    /// Every error X documents for the Conversion API, in its own wording and case.
    #[test]
    fn documented_x_errors_are_classified() {
        let config = |e: &SendError| matches!(e, SendError::Config { .. });
        let invalid = |e: &SendError| matches!(e, SendError::Invalid(_));
        let too_large = |e: &SendError| matches!(e, SendError::TooLarge(_));
        type Check = fn(&SendError) -> bool;
        let cases: Vec<(u16, String, Check)> = vec![
            (400, x_error("INVALID_PARAMETER", "At least one user identifier must be provided", ""), invalid),
            (400, x_error("INVALID_PARAMETER", "Hashed_email is not a valid SHA-256 hash", "hashed_email"), invalid),
            (400, x_error("INVALID_PARAMETER", "hashed_email (abc) is not a valid SHA-256 hash", "hashed_email"), invalid),
            (400, x_error("INVALID_PARAMETER", "Expected Time in yyyy-MM-ddTHH:mm:ss.SSSZ, got \"2022-06-16T01:14:00.603\" for conversion_time", "conversion_time"), invalid),
            (400, x_error("INVALID_PARAMETER", "Event_id (o87ne) is not a single event tag (SET)", "event_id"), config),
            (400, x_error("INVALID_PARAMETER", "event_id (o6dkt) is not a single event tag (SET)", "event_id"), config),
            (400, x_error("INVALID_PARAMETER", "Event_id (o87ne) is not a single event tag (SET)", ""), config),
            (400, x_error("INVALID_PARAMETER", "Event ID was not found", ""), config),
            (400, x_error("INVALID_PARAMETER", "Conversion count limit is 500", "conversions"), too_large),
            (401, x_error("UNAUTHORIZED_ACCESS", "This request is not properly authorized.", ""), config),
            (403, x_error("UNAUTHORIZED_CLIENT_APPLICATION", "The client application with id <> making this request does not have access to Twitter Ads API.", ""), config),
            (404, x_error("ROUTE_NOT_FOUND", "The requested resource could not be found", ""), config),
            (404, x_error("NOT_FOUND", "User 123 does not have access to account 18ce55gze09.", ""), config),
            (404, r#"{"errors":[{"code":"NOT_FOUND","message":"event_id (abc) does not belong to provided account","parameter":"event_id"},{"code":"INVALID_PARAMETER","message":"event_id (abc) is not a single event tag (SET)","parameter":"event_id"}],"request":{"params":{"account_id":"18ce55gze09"}}}"#.into(), config),
            (413, String::new(), too_large),
        ];
        for (status, body, check) in cases {
            let e = classify(status, &body);
            assert!(check(&e), "{status} {body}: {e:?}");
        }
    }

    #[test]
    fn unexplained_refusals_are_retried_never_rejected() {
        let html = "<html><head><title>400 Bad Request</title></head><body>nginx</body></html>";
        for (status, body) in [
            (400, html),
            (400, ""),
            (400, r#"{"message":"bad"}"#),
            (
                400,
                &*x_error("INVALID_PARAMETER", "something new", "mystery"),
            ),
            (409, "{}"),
            (422, "{}"),
        ] {
            match classify(status, body) {
                SendError::Retry { reason, .. } => {
                    assert_eq!(reason, Reason::UpstreamRejected, "{status} {body}")
                }
                other => panic!("{status} {body}: {other:?}"),
            }
        }
        assert!(matches!(
            classify(503, "{}"),
            SendError::Retry {
                reason: Reason::UpstreamUnavailable,
                ..
            }
        ));
        assert!(matches!(
            classify(429, "{}"),
            SendError::Retry {
                reason: Reason::RateLimited,
                ..
            }
        ));
        for status in [401, 403] {
            assert!(matches!(
                classify(status, "{}"),
                SendError::Config {
                    reason: Reason::InvalidCredentials,
                    ..
                }
            ));
        }
    }
}
