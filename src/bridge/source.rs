//! Reading the Signals events list, the bridge's ledger (SPEC 1.5, 7.2).
//!
//! Each poll reads `[checkpoint - lookback, end)`. Pages are walked by date rather than by a
//! growing offset: after a page the next query starts at the last event's second and skips
//! only the events of that second already read. Events inserted while we page therefore never
//! shift the window under us, and the real API (like the fake) answers each page from an index.
//!
//! After each page an [`Item::Marker`] says "every event dated before this has been handed
//! over"; the forwarder turns it into the checkpoint once those events are settled. The last
//! marker of a poll never passes what Signals itself could have listed: its clock (the `Date`
//! header) may be behind ours, and an event it records next is dated by that clock.

use std::future::Future;
use std::time::Duration;

use jiff::{Timestamp, ToSpan};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::event::SignalsEvent;
use super::mapping::{Mapped, Mapper, event_date};
use super::state::{BridgeState, SideHealth};
use crate::runtime::backoff::Backoff;
use crate::runtime::failure::Failure;
use crate::upstream::error::UpstreamError;
use crate::upstream::signals::{EVENTS_MAX_LIMIT, EventQuery, EventsPage, SignalsClient};

/// Signals lists an event a moment after it happens: a window ends this far behind the
/// earlier of both clocks.
pub const SETTLE: Duration = Duration::from_secs(5);

/// What flows from the poller to the forwarder.
#[derive(Debug)]
pub enum Item {
    /// The events of one page that the bridge takes, mapped in the poller: the page's
    /// events borrow from its body, which goes no further.
    Events(Vec<Mapped>),
    /// Every polled event dated before this has been sent in an [`Item::Events`] before it.
    Marker(Timestamp),
}

/// What one bridge reads, and how often.
#[derive(Clone, Debug)]
pub struct PollSpec {
    /// Nothing dated before this is read (startTime or the bridge's creation).
    pub start: Timestamp,
    pub lookback: Duration,
    pub interval: Duration,
    /// Where in each interval this bridge polls, as a fraction of it (see [`phase_of`]).
    pub phase: f64,
    /// Server-side filters, set when the spec names exactly one type or ad.
    pub event_type: Option<String>,
    pub ad_id: Option<String>,
}

/// One page of the events list: the Signals client, or a test double.
pub trait EventPages: Sync {
    fn page(
        &self,
        query: &EventQuery,
        offset: u64,
        limit: u32,
    ) -> impl Future<Output = Result<EventsPage, UpstreamError>> + Send;
}

impl EventPages for SignalsClient {
    async fn page(
        &self,
        query: &EventQuery,
        offset: u64,
        limit: u32,
    ) -> Result<EventsPage, UpstreamError> {
        self.events_page(query, offset, limit).await
    }
}

/// What the paging needs to know of a page, and the events of it the bridge takes.
struct Read {
    len: u64,
    more: bool,
    server_date: Option<Timestamp>,
    /// The second of the page's last dated event, and how many of the page's events fall in it.
    last_second: Option<(Timestamp, u64)>,
    taken: Vec<Mapped>,
}

/// Decodes one page and maps its events (each date read once, for both).
fn read_page(page: &EventsPage, mapper: &Mapper) -> Result<Read, UpstreamError> {
    let page = page.decode::<SignalsEvent>()?;
    let len = page.data.len() as u64;
    // A server may cap pages below the limit asked for: trust the count as well.
    let more =
        len > 0 && (len >= u64::from(EVENTS_MAX_LIMIT) || page.offset + len < page.total_count);
    let mut taken = Vec::with_capacity(page.data.len());
    let mut seconds = Vec::with_capacity(page.data.len());
    for event in &page.data {
        let zoned = mapper.date_of(event);
        let utc = if mapper.zoned() {
            event_date(event)
        } else {
            zoned
        };
        seconds.push(utc.map(whole_second));
        match mapper.map_dated(event, || zoned) {
            Mapped::Skip => {}
            mapped => taken.push(mapped),
        }
    }
    let last_second = seconds.iter().rev().find_map(|s| *s).map(|last| {
        let n = seconds.iter().filter(|s| **s == Some(last)).count();
        (last, n as u64)
    });
    Ok(Read {
        len,
        more,
        server_date: page.server_date,
        last_second,
        taken,
    })
}

/// Seconds precision: the events list takes `YYYY-MM-DDTHH:MM:SS`.
fn whole_second(t: Timestamp) -> Timestamp {
    Timestamp::from_second(t.as_second()).unwrap_or(t)
}

fn before(t: Timestamp, d: Duration) -> Timestamp {
    let secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
    t.checked_sub(secs.seconds()).unwrap_or(Timestamp::MIN)
}

/// The window the next poll reads, by the operator's clock.
pub fn window(spec: &PollSpec, checkpoint: Timestamp, now: Timestamp) -> (Timestamp, Timestamp) {
    let from = before(checkpoint, spec.lookback).max(spec.start);
    (whole_second(from), whole_second(before(now, SETTLE)))
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
    pages: &impl EventPages,
    spec: &PollSpec,
    mapper: &Mapper,
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
    // Where the window really ends: `to`, or earlier when Signals' clock is behind ours.
    let mut end = to;
    let mut offset = 0u64;
    loop {
        let page = read_page(&pages.page(&query, offset, EVENTS_MAX_LIMIT).await?, mapper)?;
        if read == 0
            && let Some(date) = page.server_date
        {
            end = end.min(whole_second(before(date, SETTLE)));
        }
        let Read {
            len,
            more,
            last_second,
            taken,
            ..
        } = page;
        read += len;
        if !taken.is_empty() {
            send(Item::Events(taken)).await?;
        }
        if !more {
            if end > from {
                send(Item::Marker(end)).await?;
            }
            return Ok(read);
        }
        match last_second {
            Some((second, in_last_second)) if second > query.date_from => {
                send(Item::Marker(second.min(end))).await?;
                query.date_from = second;
                offset = in_last_second;
            }
            // A whole page within one second (or undated): step by offset.
            _ => offset += len,
        }
    }
}

/// A bridge's place in its poll interval, from its uid: bridges spread evenly over the
/// interval instead of polling together, and keep their place across restarts and builds.
pub fn phase_of(uid: &str) -> f64 {
    (crate::runtime::digest::fnv1a(uid.bytes()) >> 11) as f64 / (1u64 << 53) as f64
}

/// The first slot of a bridge (the instant at `phase` of its interval, by the wall clock) at
/// or after `t`.
pub fn slot_from(interval: Duration, phase: f64, t: Timestamp) -> Timestamp {
    let period = i64::try_from(interval.as_millis())
        .unwrap_or(i64::MAX)
        .max(1);
    let offset = (phase.clamp(0.0, 1.0) * period as f64) as i64;
    let at = t.as_millisecond();
    let wait = (offset - at).rem_euclid(period);
    Timestamp::from_millisecond(at.saturating_add(wait)).unwrap_or(t)
}

/// When the poll after one that started at `started` is due: the first slot at least half an
/// interval later. A poll that ran at its slot is followed by the next slot; one that ran
/// elsewhere (a new bridge, a retry) joins the rhythm without polling twice in a row.
pub fn next_slot(interval: Duration, phase: f64, started: Timestamp) -> Timestamp {
    let half = jiff::SignedDuration::try_from(interval / 2).unwrap_or_default();
    slot_from(
        interval,
        phase,
        started.saturating_add(half).unwrap_or(started),
    )
}

fn until(t: Timestamp) -> Duration {
    Duration::try_from(t.duration_since(Timestamp::now())).unwrap_or(Duration::ZERO)
}

/// Polls until `cancel` fires or a configuration error stops the source (then it returns and
/// its channel closes, which stops the forwarder too).
pub async fn poll_loop(
    pages: &impl EventPages,
    spec: &PollSpec,
    mapper: &Mapper,
    state: &BridgeState,
    tx: mpsc::Sender<Item>,
    cancel: CancellationToken,
    bridge: &str,
) {
    let mut failures = 0u32;
    // A bridge whose health is known (resumed after a restart) keeps its rhythm; one that has
    // yet to read (new, or with a new configuration) reads at once.
    if state.snapshot().source != SideHealth::Unknown {
        let slot = slot_from(spec.interval, spec.phase, Timestamp::now());
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(until(slot)) => {}
        }
    }
    loop {
        let started = Timestamp::now();
        let (from, to) = window(spec, state.checkpoint(), started);
        let result = tokio::select! {
            _ = cancel.cancelled() => return,
            r = poll_window(pages, spec, mapper, from, to, &tx) => r,
        };
        let pause = match result {
            Ok(_) => {
                failures = 0;
                state.update(|s| {
                    s.source = SideHealth::Healthy;
                    s.progress.last_poll = Some(Timestamp::now());
                });
                until(next_slot(spec.interval, spec.phase, started))
            }
            Err(PollError::Closed) => return,
            Err(PollError::Upstream(e)) => {
                tracing::warn!(%bridge, error = %e, "reading Signals events failed");
                match Failure::from(e).settled() {
                    Failure::Terminal { reason, message } => {
                        state.update(|s| s.source = SideHealth::Stalled { reason, message });
                        // Nothing will change until the user fixes the spec or the Secret.
                        return;
                    }
                    failure => {
                        let asked = match &failure {
                            Failure::Transient { retry_after, .. } => *retry_after,
                            _ => None,
                        };
                        let health = failure.health();
                        state.update(|s| {
                            s.source = SideHealth::Retrying {
                                reason: health.reason(),
                                message: health.message().to_string(),
                            }
                        });
                        failures = failures.saturating_add(1);
                        Backoff::BRIDGE.delay(failures, asked)
                    }
                }
            }
        };
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(pause) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Mutex;

    use serde_json::{Value, json};

    use super::*;
    use crate::api::SignalsEventType;
    use crate::bridge::mapping::EventFilter;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn spec() -> PollSpec {
        PollSpec {
            start: t("2026-11-01T00:00:00Z"),
            lookback: Duration::from_secs(300),
            interval: Duration::from_secs(60),
            phase: 0.0,
            event_type: None,
            ad_id: None,
        }
    }

    #[test]
    fn polls_keep_to_their_slot() {
        let minute = Duration::from_secs(60);
        let phase = 0.25; // 15 s into each minute
        let at = |s: &str| t(s);
        assert_eq!(
            slot_from(minute, phase, at("2026-11-01T10:00:14Z")),
            at("2026-11-01T10:00:15Z")
        );
        assert_eq!(
            slot_from(minute, phase, at("2026-11-01T10:00:15Z")),
            at("2026-11-01T10:00:15Z")
        );
        assert_eq!(
            slot_from(minute, phase, at("2026-11-01T10:00:16Z")),
            at("2026-11-01T10:01:15Z")
        );
        // A poll at its slot (however long it took): the next slot.
        assert_eq!(
            next_slot(minute, phase, at("2026-11-01T10:00:15Z")),
            at("2026-11-01T10:01:15Z")
        );
        // A poll just before its slot (a new bridge, a retry): not again a moment later.
        assert_eq!(
            next_slot(minute, phase, at("2026-11-01T10:00:10Z")),
            at("2026-11-01T10:01:15Z")
        );
        // Less than half an interval before the slot: the one after (at most 1.5 intervals).
        assert_eq!(
            next_slot(minute, phase, at("2026-11-01T10:00:50Z")),
            at("2026-11-01T10:02:15Z")
        );
    }

    #[test]
    fn bridges_spread_over_the_interval() {
        // 2,000 bridges polling every minute: how many poll in the busiest second, against
        // the mean of 2,000 / 60.
        let mut per_second = [0u32; 60];
        for i in 0..2000 {
            let uid = format!("6f1c2a3e-{i:04x}-4b5c-8d9e-0a1b2c3d4e5f");
            let phase = phase_of(&uid);
            assert!((0.0..1.0).contains(&phase));
            per_second[(phase * 60.0) as usize] += 1;
        }
        let max = *per_second.iter().max().unwrap() as f64;
        let mean = 2000.0 / 60.0;
        assert!(max / mean <= 2.0, "max/mean {}: {per_second:?}", max / mean);
        assert_eq!(phase_of("a-uid"), phase_of("a-uid"), "stable");
    }

    #[test]
    fn window_reaches_back_by_lookback_but_not_before_start_and_ends_settled() {
        let spec = spec();
        assert_eq!(
            window(
                &spec,
                t("2026-11-02T12:00:00Z"),
                t("2026-11-02T12:01:30.7Z")
            ),
            (t("2026-11-02T11:55:00Z"), t("2026-11-02T12:01:25Z"))
        );
        assert_eq!(
            window(&spec, t("2026-11-01T00:01:00Z"), t("2026-11-01T00:02:00Z")),
            (t("2026-11-01T00:00:00Z"), t("2026-11-01T00:01:55Z"))
        );
    }

    /// An events list in memory, sorted by (date, id) like Signals: it can cap its pages, run
    /// a clock of its own and record new events between two pages.
    #[derive(Default)]
    struct Ledger {
        events: Mutex<Vec<Value>>,
        max_page: Option<usize>,
        clock: Option<Timestamp>,
        /// Events recorded after the n-th page is served.
        arriving: Mutex<HashMap<usize, Vec<Value>>>,
        pages: Mutex<usize>,
    }

    fn ev(id: &str, date: &str) -> Value {
        json!({"id": id, "type": "converted", "date": date})
    }

    fn key(e: &Value) -> (String, String) {
        (
            e["date"].as_str().unwrap_or("").to_string(),
            e["id"].as_str().unwrap_or("").to_string(),
        )
    }

    impl Ledger {
        fn new(mut events: Vec<Value>) -> Self {
            events.sort_by_key(key);
            Ledger {
                events: Mutex::new(events),
                ..Default::default()
            }
        }
    }

    impl EventPages for Ledger {
        async fn page(
            &self,
            query: &EventQuery,
            offset: u64,
            limit: u32,
        ) -> Result<EventsPage, UpstreamError> {
            let matching: Vec<Value> = {
                let events = self.events.lock().unwrap();
                events
                    .iter()
                    .filter(|e| match event_date(*e) {
                        Some(at) => at >= query.date_from && at < query.date_to,
                        None => true,
                    })
                    .cloned()
                    .collect()
            };
            let size = (limit as usize).min(self.max_page.unwrap_or(usize::MAX));
            let data: Vec<&Value> = matching.iter().skip(offset as usize).take(size).collect();
            let served = {
                let mut pages = self.pages.lock().unwrap();
                *pages += 1;
                *pages
            };
            if let Some(new) = self.arriving.lock().unwrap().remove(&served) {
                let mut events = self.events.lock().unwrap();
                events.extend(new);
                events.sort_by_key(key);
            }
            let body = json!({"data": data, "total_count": matching.len(), "offset": offset,
                              "limit": limit});
            Ok(EventsPage::from_json(&body, offset, self.clock))
        }
    }

    /// Runs one poll of `[from, to)` and returns the ids handed over and the markers.
    async fn poll(ledger: &Ledger, from: &str, to: &str) -> (Vec<String>, Vec<Timestamp>) {
        let (tx, mut rx) = mpsc::channel(100_000);
        let mapper = Mapper::new(
            EventFilter {
                app_id: "app".into(),
                types: [SignalsEventType::Converted].into(),
                ad_ids: Default::default(),
                time_zone: None,
            },
            "tag",
        );
        poll_window(ledger, &spec(), &mapper, t(from), t(to), &tx)
            .await
            .unwrap();
        drop(tx);
        let (mut ids, mut markers) = (Vec::new(), Vec::new());
        while let Some(item) = rx.recv().await {
            match item {
                // The ledger's events carry no phone: every one is rejected, by its id.
                Item::Events(taken) => ids.extend(taken.into_iter().map(|m| match m {
                    Mapped::Reject { key, .. } => key,
                    other => panic!("expected a rejection: {other:?}"),
                })),
                Item::Marker(at) => markers.push(at),
            }
        }
        (ids, markers)
    }

    fn distinct(ids: &[String]) -> usize {
        ids.iter().collect::<std::collections::HashSet<_>>().len()
    }

    #[tokio::test]
    async fn more_than_a_page_within_one_second_is_read_whole() {
        let mut events: Vec<Value> = (0..2_500)
            .map(|i| ev(&format!("a{i:05}"), "2026-11-02T10:00:07"))
            .collect();
        events.push(ev("before", "2026-11-02T10:00:01"));
        events.push(ev("after", "2026-11-02T10:00:09"));
        let ledger = Ledger::new(events);
        let (ids, markers) = poll(&ledger, "2026-11-02T10:00:00Z", "2026-11-02T10:01:00Z").await;
        assert_eq!(ids.len(), 2_502);
        assert_eq!(distinct(&ids), 2_502);
        assert_eq!(markers.last(), Some(&t("2026-11-02T10:01:00Z")));
        // Markers only ever say "before the second all of whose events came already".
        assert!(markers.windows(2).all(|w| w[0] <= w[1]), "{markers:?}");
        assert!(
            markers[..markers.len() - 1]
                .iter()
                .all(|m| *m <= t("2026-11-02T10:00:07Z"))
        );
    }

    #[tokio::test]
    async fn short_pages_are_followed_by_the_total_count() {
        let events: Vec<Value> = (0..750)
            .map(|i| {
                ev(
                    &format!("e{i:04}"),
                    &format!("2026-11-02T10:{:02}:{:02}", i / 60 % 60, i % 60),
                )
            })
            .collect();
        let mut ledger = Ledger::new(events);
        // The server answers at most 100 however many are asked for.
        ledger.max_page = Some(100);
        let (ids, _) = poll(&ledger, "2026-11-02T10:00:00Z", "2026-11-02T11:00:00Z").await;
        assert_eq!(distinct(&ids), 750);
    }

    #[tokio::test]
    async fn events_recorded_while_paging_are_not_skipped() {
        let events: Vec<Value> = (0..1_500)
            .map(|i| {
                ev(
                    &format!("e{i:04}"),
                    &format!("2026-11-02T10:{:02}:{:02}", i / 60 % 60, i % 60),
                )
            })
            .collect();
        let ledger = Ledger::new(events);
        // After the first page, events arrive before and after the current position.
        ledger.arriving.lock().unwrap().insert(
            1,
            vec![
                ev("late-early", "2026-11-02T10:00:03"),
                ev("late-middle", "2026-11-02T10:20:00"),
            ],
        );
        let (ids, _) = poll(&ledger, "2026-11-02T10:00:00Z", "2026-11-02T11:00:00Z").await;
        assert_eq!(distinct(&ids), ids.len(), "nothing is handed over twice");
        assert!(ids.iter().any(|i| i == "late-middle"));
        assert_eq!(ids.iter().filter(|i| i.starts_with("e")).count(), 1_500);
        // The one dated behind the pages already read comes with the next poll, which
        // re-reads the lookback window.
        let (again, _) = poll(&ledger, "2026-11-02T10:00:00Z", "2026-11-02T11:00:00Z").await;
        assert!(again.iter().any(|i| i == "late-early"));
    }

    #[tokio::test]
    async fn undated_events_are_handed_over_with_the_rest() {
        let mut events: Vec<Value> = (0..1_200)
            .map(|i| {
                ev(
                    &format!("e{i:04}"),
                    &format!("2026-11-02T10:{:02}:{:02}", i / 60 % 60, i % 60),
                )
            })
            .collect();
        events.push(json!({"id": "undated-1", "type": "converted"}));
        events.push(json!({"id": "undated-2", "type": "converted", "date": "soon"}));
        let ledger = Ledger::new(events);
        let (ids, _) = poll(&ledger, "2026-11-02T10:00:00Z", "2026-11-02T11:00:00Z").await;
        assert_eq!(distinct(&ids), 1_202);
        assert!(ids.iter().any(|i| i == "undated-1") && ids.iter().any(|i| i == "undated-2"));
    }

    #[tokio::test]
    async fn a_signals_clock_behind_ours_ends_the_window_earlier() {
        let mut ledger = Ledger::new(vec![ev("e1", "2026-11-02T10:00:30")]);
        ledger.clock = Some(t("2026-11-02T10:01:00Z"));
        let (ids, markers) = poll(&ledger, "2026-11-02T10:00:00Z", "2026-11-02T10:04:00Z").await;
        assert_eq!(ids, vec!["e1".to_string()]);
        assert_eq!(markers, vec![t("2026-11-02T10:00:55Z")]);
        // A clock ahead of ours changes nothing.
        ledger.clock = Some(t("2026-11-02T11:00:00Z"));
        let (_, markers) = poll(&ledger, "2026-11-02T10:00:00Z", "2026-11-02T10:04:00Z").await;
        assert_eq!(markers, vec![t("2026-11-02T10:04:00Z")]);
    }
}
