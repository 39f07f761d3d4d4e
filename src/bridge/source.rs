//! Reading the Signals events list, the bridge's ledger (SPEC 1.5).
//!
//! Each poll reads `[checkpoint - lookback, now)`. Pages are walked by date rather than by a
//! growing offset: after a full page the next query starts at the last event's second and skips
//! only the events of that second already read. Events inserted while we page therefore never
//! shift the window under us, and the fake (like the real API) answers each page from an index.
//!
//! After each page a [`Item::Marker`] says "every event dated before this has been handed
//! over"; the forwarder turns it into the checkpoint once those events are settled.

use std::time::Duration;

use jiff::{Timestamp, ToSpan};
use serde_json::Value;
use tokio::sync::mpsc;

use super::dedupe::Origin;
use super::mapping::event_date;
use crate::upstream::error::UpstreamError;
use crate::upstream::signals::{EVENTS_MAX_LIMIT, EventQuery, SignalsClient};

/// What flows from the sources to the forwarder.
#[derive(Debug)]
pub enum Item {
    Event(Value, Origin),
    /// Every polled event dated before this has been sent as an [`Item::Event`] before it.
    Marker(Timestamp),
}

/// What one bridge reads.
#[derive(Clone, Debug)]
pub struct PollSpec {
    /// Nothing dated before this is read (startTime or the bridge's creation).
    pub start: Timestamp,
    pub lookback: Duration,
    /// Server-side filters, set when the spec names exactly one type or ad.
    pub event_type: Option<String>,
    pub ad_id: Option<String>,
}

/// Seconds precision: the events list takes `YYYY-MM-DDTHH:MM:SS`.
fn whole_second(t: Timestamp) -> Timestamp {
    Timestamp::from_second(t.as_second()).unwrap_or(t)
}

/// The window the next poll reads.
pub fn window(spec: &PollSpec, checkpoint: Timestamp, now: Timestamp) -> (Timestamp, Timestamp) {
    let lookback = i64::try_from(spec.lookback.as_secs()).unwrap_or(i64::MAX);
    let behind = checkpoint
        .checked_sub(lookback.seconds())
        .unwrap_or(Timestamp::MIN);
    (whole_second(behind.max(spec.start)), whole_second(now))
}

/// Why a poll ended early.
#[derive(Debug)]
pub enum PollError {
    Upstream(UpstreamError),
    /// The forwarder is gone (the worker is stopping).
    Closed,
}

impl From<UpstreamError> for PollError {
    fn from(e: UpstreamError) -> Self {
        PollError::Upstream(e)
    }
}

/// Read `[from, to)` page by page into `out`; returns the number of events read.
pub async fn poll_window(
    client: &SignalsClient,
    spec: &PollSpec,
    from: Timestamp,
    to: Timestamp,
    out: &mpsc::Sender<Item>,
) -> Result<u64, PollError> {
    let send = |item| async { out.send(item).await.map_err(|_| PollError::Closed) };
    let mut read = 0u64;
    if to <= from {
        return Ok(read);
    }
    let mut query = EventQuery {
        date_from: from,
        date_to: to,
        ad_id: spec.ad_id.clone(),
        event_type: spec.event_type.clone(),
        event_type_id: None,
    };
    let mut offset = 0u64;
    loop {
        let page = client
            .list_events(&query, offset, EVENTS_MAX_LIMIT)
            .await?
            .data;
        let full = page.len() >= EVENTS_MAX_LIMIT as usize;
        let last_second = page.iter().rev().find_map(event_date).map(whole_second);
        let in_last_second = last_second.map_or(0, |s| {
            page.iter()
                .filter(|e| event_date(e).map(whole_second) == Some(s))
                .count() as u64
        });
        read += page.len() as u64;
        for event in page {
            send(Item::Event(event, Origin::Poll)).await?;
        }
        if !full {
            send(Item::Marker(to)).await?;
            return Ok(read);
        }
        match last_second {
            Some(second) if second > query.date_from => {
                send(Item::Marker(second)).await?;
                query.date_from = second;
                offset = in_last_second;
            }
            // A whole page within one second (or undated): step by offset.
            _ => offset += EVENTS_MAX_LIMIT as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn window_reaches_back_by_lookback_but_not_before_start() {
        let spec = PollSpec {
            start: t("2026-11-01T00:00:00Z"),
            lookback: Duration::from_secs(300),
            event_type: None,
            ad_id: None,
        };
        assert_eq!(
            window(
                &spec,
                t("2026-11-02T12:00:00Z"),
                t("2026-11-02T12:01:30.7Z")
            ),
            (t("2026-11-02T11:55:00Z"), t("2026-11-02T12:01:30Z"))
        );
        assert_eq!(
            window(&spec, t("2026-11-01T00:01:00Z"), t("2026-11-01T00:02:00Z")),
            (t("2026-11-01T00:00:00Z"), t("2026-11-01T00:02:00Z"))
        );
    }
}
