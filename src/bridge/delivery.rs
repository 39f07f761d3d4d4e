//! Delivering one batch to X: retries for transient failures, halving for a 400 until the
//! conversions X refuses are isolated, and a stop for configuration errors (SPEC 1.5).
//!
//! X fails a whole request when one conversion in it is invalid, so a batch that gets a 400
//! is split in two and each half is sent again. One bad conversion among n costs at most
//! 2·⌈log2 n⌉ + 1 requests; the good ones are all delivered.

use std::collections::VecDeque;
use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::reconcile::backoff::jitter_fraction;
use crate::reconcile::conditions::Reason;
use crate::upstream::error::{ErrorClass, UpstreamError};
use crate::upstream::x_ads::Conversion;

/// Why X did not accept a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SendError {
    /// A conversion in the request is invalid (400): split to find it.
    Invalid(String),
    /// The bridge's configuration is wrong (unknown event_id, pixel, credentials): stop.
    Config { reason: Reason, message: String },
    /// Try again (5xx, 429, timeouts), after `after` when X said when.
    Retry {
        /// `RateLimited` for a 429, `UpstreamUnavailable` otherwise.
        reason: Reason,
        message: String,
        after: Option<Duration>,
    },
}

impl From<UpstreamError> for SendError {
    fn from(e: UpstreamError) -> Self {
        let message = e.to_string();
        match (e.class(), e.status()) {
            (ErrorClass::RateLimited { .. }, _) => SendError::Retry {
                reason: Reason::RateLimited,
                after: e.retry_after(),
                message,
            },
            (ErrorClass::Transient, _) => SendError::Retry {
                reason: Reason::UpstreamUnavailable,
                message,
                after: None,
            },
            // A 400 about event_id ("not a single event tag") is the spec's fault, not the
            // conversion's.
            (_, Some(400)) if !e.upstream_message().unwrap_or("").contains("event_id") => {
                SendError::Invalid(e.upstream_message().unwrap_or(&message).to_string())
            }
            _ => SendError::Config {
                reason: if e.is_unauthorized() {
                    Reason::InvalidCredentials
                } else {
                    Reason::UpstreamRejected
                },
                message,
            },
        }
    }
}

/// Where batches go: the X Conversion API, or a test double.
pub trait Sink: Send {
    fn send(&mut self, batch: &[Conversion]) -> impl Future<Output = Result<(), SendError>> + Send;
}

/// What happened to one batch.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Delivery {
    /// Conversions X accepted.
    pub forwarded: usize,
    /// Conversions X refused, by index in the batch, with X's message.
    pub rejected: Vec<(usize, String)>,
    /// Requests X accepted.
    pub requests_accepted: usize,
    /// Requests X answered with 400.
    pub requests_rejected: usize,
    /// Requests that failed and were retried.
    pub requests_failed: usize,
    /// Set when delivery stopped on a configuration error; the rest of the batch is not sent.
    pub stalled: Option<(Reason, String)>,
    /// Set when delivery was cancelled; the rest of the batch is not sent.
    pub cancelled: bool,
}

impl Delivery {
    /// Every conversion was either accepted or refused.
    pub fn settled(&self) -> bool {
        self.stalled.is_none() && !self.cancelled
    }
}

/// Retry delays: jittered exponential from `base` to `max`, or what X asked for.
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    pub base: Duration,
    pub max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            base: Duration::from_millis(500),
            max: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    fn delay(&self, attempt: u32, asked: Option<Duration>) -> Duration {
        if let Some(asked) = asked {
            return asked.min(Duration::from_secs(15 * 60));
        }
        let exp = self
            .base
            .saturating_mul(1u32 << attempt.min(16))
            .min(self.max);
        exp.mul_f64(0.5 + jitter_fraction() / 2.0)
    }
}

/// Send `batch` through `sink` until every conversion is accepted or refused, a
/// configuration error stops it, or `cancel` fires. `on_retry` sees each transient failure,
/// with its reason.
pub async fn deliver<S: Sink>(
    sink: &mut S,
    batch: &[Conversion],
    policy: RetryPolicy,
    cancel: &CancellationToken,
    mut on_retry: impl FnMut(Reason, &str) + Send,
) -> Delivery {
    let mut out = Delivery::default();
    let mut pending: VecDeque<(usize, usize)> = VecDeque::from([(0, batch.len())]);
    let mut attempt = 0u32;
    while let Some((start, end)) = pending.pop_front() {
        if start == end {
            continue;
        }
        if cancel.is_cancelled() {
            out.cancelled = true;
            return out;
        }
        let sent = tokio::select! {
            _ = cancel.cancelled() => {
                out.cancelled = true;
                return out;
            }
            sent = sink.send(&batch[start..end]) => sent,
        };
        match sent {
            Ok(()) => {
                attempt = 0;
                out.requests_accepted += 1;
                out.forwarded += end - start;
            }
            Err(SendError::Invalid(message)) => {
                attempt = 0;
                out.requests_rejected += 1;
                if end - start == 1 {
                    out.rejected.push((start, message));
                } else {
                    let mid = start + (end - start) / 2;
                    pending.push_front((mid, end));
                    pending.push_front((start, mid));
                }
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
                on_retry(reason, &message);
                let delay = policy.delay(attempt, after);
                attempt = attempt.saturating_add(1);
                pending.push_front((start, end));
                tokio::select! {
                    _ = cancel.cancelled() => {
                        out.cancelled = true;
                        return out;
                    }
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::x_ads::Identifier;

    fn conversions(n: usize) -> Vec<Conversion> {
        (0..n)
            .map(|i| Conversion {
                conversion_time: "2026-11-01T00:00:00.000Z".into(),
                event_id: "o87ne".into(),
                identifiers: vec![Identifier::HashedPhoneNumber(format!("{i:064x}"))],
                conversion_id: format!("ev-{i}"),
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
    }

    impl StrictX {
        fn new(bad: &[&str]) -> Self {
            StrictX {
                bad: bad.iter().map(|s| s.to_string()).collect(),
                requests: 0,
                accepted: Vec::new(),
                failures_left: 0,
            }
        }
    }

    impl Sink for StrictX {
        async fn send(&mut self, batch: &[Conversion]) -> Result<(), SendError> {
            self.requests += 1;
            if self.failures_left > 0 {
                self.failures_left -= 1;
                return Err(SendError::Retry {
                    reason: Reason::UpstreamUnavailable,
                    message: "HTTP 503".into(),
                    after: None,
                });
            }
            if let Some(bad) = batch.iter().find(|c| self.bad.contains(&c.conversion_id)) {
                return Err(SendError::Invalid(format!(
                    "conversion {} is not valid",
                    bad.conversion_id
                )));
            }
            self.accepted
                .extend(batch.iter().map(|c| c.conversion_id.clone()));
            Ok(())
        }
    }

    async fn run(x: &mut StrictX, batch: &[Conversion]) -> Delivery {
        deliver(
            x,
            batch,
            RetryPolicy::default(),
            &CancellationToken::new(),
            |_, _| {},
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
            assert_eq!(d.forwarded, 499);
            assert_eq!(
                d.rejected,
                vec![(bad, format!("conversion {id} is not valid"))]
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
        let mut rejected: Vec<usize> = d.rejected.iter().map(|r| r.0).collect();
        rejected.sort();
        assert_eq!(rejected, vec![3, 4, 77]);
        assert_eq!(d.forwarded, 97);
    }

    #[tokio::test]
    async fn a_clean_batch_is_one_request() {
        let mut x = StrictX::new(&[]);
        let d = run(&mut x, &conversions(500)).await;
        assert_eq!((x.requests, d.forwarded, d.requests_accepted), (1, 500, 1));
    }

    #[tokio::test(start_paused = true)]
    async fn transient_failures_are_retried_with_backoff() {
        let mut x = StrictX::new(&[]);
        x.failures_left = 3;
        let mut seen = 0;
        let started = tokio::time::Instant::now();
        let d = deliver(
            &mut x,
            &conversions(10),
            RetryPolicy::default(),
            &CancellationToken::new(),
            |_, _| seen += 1,
        )
        .await;
        assert_eq!((d.forwarded, d.requests_failed, seen), (10, 3, 3));
        // 0.25..0.5 s, 0.5..1 s, 1..2 s.
        assert!(started.elapsed() >= Duration::from_millis(1750));
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_is_honoured() {
        struct Limited(u32);
        impl Sink for Limited {
            async fn send(&mut self, _: &[Conversion]) -> Result<(), SendError> {
                self.0 += 1;
                if self.0 == 1 {
                    return Err(SendError::Retry {
                        reason: Reason::UpstreamUnavailable,
                        message: "429".into(),
                        after: Some(Duration::from_secs(90)),
                    });
                }
                Ok(())
            }
        }
        let started = tokio::time::Instant::now();
        let d = deliver(
            &mut Limited(0),
            &conversions(1),
            RetryPolicy::default(),
            &CancellationToken::new(),
            |_, _| {},
        )
        .await;
        assert_eq!(d.forwarded, 1);
        assert_eq!(started.elapsed(), Duration::from_secs(90));
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
            RetryPolicy::default(),
            &CancellationToken::new(),
            |_, _| {},
        )
        .await;
        assert_eq!(
            d.stalled,
            Some((Reason::InvalidCredentials, "HTTP 401".to_string()))
        );
        assert_eq!(d.forwarded, 0);
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
        let d = deliver(
            &mut x,
            &conversions(3),
            RetryPolicy::default(),
            &cancel,
            |_, _| {},
        )
        .await;
        assert!(d.cancelled);
        assert_eq!(d.forwarded, 0);
    }

    #[test]
    fn x_errors_are_classified() {
        use crate::upstream::error::Api;
        use reqwest::header::HeaderMap;
        let err = |status: u16, body: &str| {
            SendError::from(UpstreamError::from_response(
                Api::XAds,
                "send_conversions",
                status,
                &HeaderMap::new(),
                body.as_bytes(),
            ))
        };
        let invalid = r#"{"errors":[{"code":"INVALID_PARAMETER","message":"hashed_email (x) is not a valid SHA-256 hash","parameter":"hashed_email"}]}"#;
        assert_eq!(
            err(400, invalid),
            SendError::Invalid("hashed_email (x) is not a valid SHA-256 hash".into())
        );
        let not_found = r#"{"errors":[{"code":"NOT_FOUND","message":"event_id (zzz) does not belong to provided account"}]}"#;
        assert!(matches!(
            err(404, not_found),
            SendError::Config {
                reason: Reason::UpstreamRejected,
                ..
            }
        ));
        let single = r#"{"errors":[{"code":"INVALID_PARAMETER","message":"event_id (zzz) is not a single event tag"}]}"#;
        assert!(matches!(err(400, single), SendError::Config { .. }));
        for status in [401, 403] {
            assert!(matches!(
                err(status, "{}"),
                SendError::Config {
                    reason: Reason::InvalidCredentials,
                    ..
                }
            ));
        }
        assert!(matches!(err(503, "{}"), SendError::Retry { .. }));
        assert!(matches!(err(429, "{}"), SendError::Retry { .. }));
    }
}
