//! One running bridge: a poller task feeding the forwarder, which de-duplicates, maps,
//! batches and delivers, and moves the checkpoint once what lies behind it is settled.
//!
//! The forwarder is a single loop, so ordering gives the guarantees: a marker that follows an
//! event in the channel is applied only after the batch holding that event, and every batch
//! before it, was delivered or refused by X. Up to `MAX_IN_FLIGHT` batches are sent at once;
//! they may finish in any order (a batch stuck on one bad payload holds one slot, not the
//! others), and the checkpoint follows the longest run of finished batches. When all slots are
//! taken the loop waits, the bounded channels fill up and push back on the poller and on the
//! postback receiver (503).

use std::collections::{BTreeSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use jiff::{Timestamp, ToSpan};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::dedupe::{Offer, Origin, SeenSet};
use super::delivery::{Delivery, Fate, Progress, SendError, Sink, deliver};
use super::mapping::{Mapped, Mapper};
use super::source::{self, Item, PollSpec};
use super::state::{BridgeState, SideHealth};
use crate::metrics::Metrics;
use crate::runtime::backoff::Backoff;
use crate::upstream::budget::RateBudget;
use crate::upstream::signals::SignalsClient;
use crate::upstream::x_ads::{Conversion, XAdsClient};

/// Capacity of the poller → forwarder channel, in pages (up to 1,000 events each) and markers.
const POLL_CHANNEL: usize = 4;
/// How often forwarded ids behind the lookback window are forgotten, whatever the polls do.
const EVICT_EVERY: Duration = Duration::from_secs(10);

/// Everything a worker needs, resolved from the spec and the objects it references.
pub struct WorkerConfig {
    pub namespace: String,
    pub name: String,
    pub signals: SignalsClient,
    pub x: XAdsClient,
    /// The X account's conversions budget (the same one `x` spends from).
    pub budget: Arc<RateBudget>,
    pub pixel_id: String,
    /// What the bridge takes, and the X event tag its conversions name.
    pub mapper: Mapper,
    pub poll: PollSpec,
    pub max_batch: usize,
    pub flush_interval: Duration,
    pub backoff: Backoff,
}

/// The X Conversion API as a [`Sink`].
struct XSink<'a> {
    client: &'a XAdsClient,
    pixel: &'a str,
    metrics: &'a Metrics,
}

impl Sink for XSink<'_> {
    async fn send(&mut self, batch: &[Conversion]) -> Result<(), SendError> {
        let result = self.client.send_conversions(self.pixel, batch).await?;
        if let Some(remaining) = result.rate.remaining {
            self.metrics.set_rate_limit_remaining(
                "x-ads",
                self.pixel,
                i64::try_from(remaining).unwrap_or(i64::MAX),
            );
        }
        Ok(())
    }
}

/// The bridge's forwarded-id set, shared by its successive workers.
pub type SharedSeen = Arc<Mutex<SeenSet>>;

/// Runs until `cancel` fires (stop now), `drain` fires (deliver what was read, then stop) or
/// a configuration error stalls the bridge.
pub async fn run(
    config: WorkerConfig,
    state: Arc<BridgeState>,
    metrics: Arc<Metrics>,
    seen: SharedSeen,
    postbacks: mpsc::Receiver<Value>,
    cancel: CancellationToken,
    drain: CancellationToken,
) {
    // Whatever an earlier worker took and never settled is sent again by this one.
    lock(&seen).forget_pending();
    let (tx, rx) = mpsc::channel(POLL_CHANNEL);
    // The poller stops with the worker, or first when draining. When it stops on its own (a
    // configuration error), its channel closes and the forwarder stops too.
    let stop_polling = cancel.child_token();
    let poller = source::poll_loop(
        &config.signals,
        &config.poll,
        &config.mapper,
        &state,
        tx,
        stop_polling.clone(),
        &config.name,
    );
    let forwarder = async {
        Forwarder::new(&config, &state, &metrics, &seen)
            .run(rx, postbacks, &cancel, &drain, &stop_polling)
            .await;
        stop_polling.cancel();
    };
    tokio::join!(poller, forwarder);
}

fn lock(seen: &Mutex<SeenSet>) -> MutexGuard<'_, SeenSet> {
    seen.lock().unwrap_or_else(|p| p.into_inner())
}

/// Conversions on their way to X; each one's `conversion_id` is the id of its event.
#[derive(Default)]
struct Batch(Vec<Conversion>);

impl Batch {
    fn len(&self) -> usize {
        self.0.len()
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn push(&mut self, conversion: Conversion) {
        self.0.push(conversion);
    }
}

/// Events taken since the counts were last published: a metrics label lookup and a status
/// update per event would cost more than the event itself, so they go out per page and
/// per batch.
#[derive(Default)]
struct Tally {
    received: u64,
    duplicate: u64,
}

/// Batches sent to X at the same time. One request at a time would leave the bridge waiting
/// on X's latency; a few in flight hide it, and a restart re-reads only what they held.
const MAX_IN_FLIGHT: usize = 4;

/// Sends batches and reports what became of them. Copied into every in-flight delivery.
#[derive(Clone, Copy)]
struct Shipper<'a> {
    config: &'a WorkerConfig,
    state: &'a BridgeState,
    metrics: &'a Metrics,
    seen: &'a Mutex<SeenSet>,
}

impl<'a> Shipper<'a> {
    /// Delivers `batch`; true when every conversion in it was accepted or refused by X.
    async fn ship(self, batch: Batch, cancel: CancellationToken) -> bool {
        let conversions = batch.0;
        let mut sink = XSink {
            client: &self.config.x,
            pixel: &self.config.pixel_id,
            metrics: self.metrics,
        };
        let mut start = 0;
        while start < conversions.len() {
            // When X's window has less room than the batch, send what fits now rather than
            // wait for the whole window to reset.
            let rest = conversions.len() - start;
            let n = match self.config.budget.upstream_room() {
                Some(room) if room > 0 && (room as usize) < rest => room as usize,
                _ => rest,
            };
            let part = self
                .deliver(&mut sink, &conversions[start..start + n], &cancel)
                .await;
            self.record(&part, &conversions[start..start + n]);
            if !part.settled() {
                let mut seen = lock(self.seen);
                conversions[start + n..]
                    .iter()
                    .for_each(|c| seen.unsettle(&c.conversion_id));
                return false;
            }
            start += n;
        }
        true
    }

    /// One request's worth, with the retries and what X accepted reported in metrics, logs
    /// and status as they happen.
    async fn deliver(
        self,
        sink: &mut XSink<'_>,
        conversions: &[Conversion],
        cancel: &CancellationToken,
    ) -> Delivery {
        let (ns, name) = (&self.config.namespace, &self.config.name);
        deliver(sink, conversions, self.config.backoff, cancel, |progress| match progress {
            Progress::Retrying { reason, message } => {
                self.metrics.bridge_batch(ns, name, "failed");
                tracing::warn!(bridge = %name, namespace = %ns, error = %message, "sending conversions failed; retrying");
                self.state.update(|s| {
                    s.destination = SideHealth::Retrying {
                        reason,
                        message: message.to_string(),
                    }
                });
            }
            Progress::Accepted(range) => {
                let n = range.len();
                {
                    let mut seen = lock(self.seen);
                    conversions[range]
                        .iter()
                        .for_each(|c| seen.settle(&c.conversion_id));
                }
                self.metrics.bridge_batch(ns, name, "sent");
                self.metrics.bridge_events(ns, name, "forwarded", n as u64);
                let now = Timestamp::now();
                self.state.update(|s| {
                    s.progress.forwarded += n as i64;
                    s.progress.batches_sent += 1;
                    s.progress.last_forward = Some(now);
                });
            }
        })
        .await
    }

    /// Rejections, what was left unsent, and destination health after delivering `sent` (what
    /// X accepted was reported as it happened).
    fn record(self, d: &Delivery, sent: &[Conversion]) {
        let (ns, name) = (&self.config.namespace, &self.config.name);
        for _ in 0..d.requests_rejected {
            self.metrics.bridge_batch(ns, name, "rejected");
        }
        {
            let mut seen = lock(self.seen);
            for (c, fate) in sent.iter().zip(&d.fates) {
                match fate {
                    Fate::Unsent => seen.unsettle(&c.conversion_id),
                    Fate::Rejected(_) => seen.settle(&c.conversion_id),
                    Fate::Forwarded => {}
                }
            }
        }
        let rejected = d.rejected().count();
        self.metrics
            .bridge_events(ns, name, "rejected", rejected as u64);
        let now = Timestamp::now();
        self.state.update(|s| {
            for (index, message) in d.rejected() {
                s.progress.reject(&sent[index].conversion_id, message, now);
            }
            match &d.stalled {
                Some((reason, message)) => {
                    s.destination = SideHealth::Stalled {
                        reason: *reason,
                        message: message.clone(),
                    };
                }
                // X answered every part: it is reachable and takes this configuration.
                None if d.settled() => s.destination = SideHealth::Healthy,
                None => {}
            }
        });
    }
}

struct Forwarder<'a> {
    config: &'a WorkerConfig,
    state: &'a BridgeState,
    metrics: &'a Metrics,
    seen: &'a Mutex<SeenSet>,
    batch: Batch,
    tally: Tally,
    /// When the partial batch must go out.
    deadline: Option<Instant>,
    /// Deliveries under way; each resolves to its batch number and whether it settled.
    in_flight: FuturesUnordered<BoxFuture<'a, (u64, bool)>>,
    /// Batches handed to `in_flight` so far (1, 2, ...).
    shipped: u64,
    /// Batches 1..=finished all settled.
    finished: u64,
    /// Settled batches after a gap (an earlier one still under way).
    settled_ahead: BTreeSet<u64>,
    /// Markers waiting for batch number `.0`, and every batch before it, to settle.
    markers: VecDeque<(u64, Timestamp)>,
    /// A delivery did not settle: the checkpoint stays where it is from now on.
    failed: bool,
    /// Which door is served first next time both have something: they take turns, so a
    /// flood of postbacks cannot starve the polled pages, nor the other way round.
    poll_first: bool,
}

enum Flow {
    Continue,
    Stop,
}

impl<'a> Forwarder<'a> {
    fn new(
        config: &'a WorkerConfig,
        state: &'a BridgeState,
        metrics: &'a Metrics,
        seen: &'a Mutex<SeenSet>,
    ) -> Self {
        Forwarder {
            config,
            state,
            metrics,
            seen,
            batch: Batch::default(),
            tally: Tally::default(),
            deadline: None,
            in_flight: FuturesUnordered::new(),
            shipped: 0,
            finished: 0,
            settled_ahead: BTreeSet::new(),
            markers: VecDeque::new(),
            failed: false,
            poll_first: false,
        }
    }

    async fn run(
        mut self,
        mut polled: mpsc::Receiver<Item>,
        mut postbacks: mpsc::Receiver<Value>,
        cancel: &CancellationToken,
        drain: &CancellationToken,
        stop_polling: &CancellationToken,
    ) {
        let mut postbacks_open = true;
        let mut evict = tokio::time::interval(EVICT_EVERY);
        evict.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let deadline = self.deadline;
            let busy = !self.in_flight.is_empty();
            let poll_first = self.poll_first;
            self.poll_first = !poll_first;
            let flow = tokio::select! {
                biased;
                _ = cancel.cancelled() => {
                    self.publish();
                    return;
                }
                _ = drain.cancelled() => {
                    stop_polling.cancel();
                    self.drain(polled, postbacks, cancel).await;
                    return;
                }
                Some((batch, settled)) = self.in_flight.next(), if busy => {
                    self.settle(batch, settled)
                }
                input = next_input(&mut polled, &mut postbacks, postbacks_open, poll_first) => {
                    match input {
                        Input::Polled(Some(item)) => self.polled(item, cancel).await,
                        Input::Polled(None) => break,
                        Input::Postback(event) => self.postback(event, &mut postbacks_open),
                    }
                }
                _ = sleep_until(deadline), if deadline.is_some() => self.flush(cancel).await,
                _ = evict.tick() => {
                    self.publish();
                    self.evict();
                    Flow::Continue
                }
            };
            let flow = match flow {
                Flow::Continue if self.batch.len() >= self.config.max_batch => {
                    self.flush(cancel).await
                }
                other => other,
            };
            if let Flow::Stop = flow {
                break;
            }
        }
        // Stopping (a stalled delivery, or the poller gave up): let the deliveries under way
        // finish so their counts are recorded.
        self.settle_all().await;
    }

    fn postback(&mut self, event: Option<Value>, open: &mut bool) -> Flow {
        match event {
            Some(event) => {
                let mapped = self.config.mapper.map(&event);
                self.take(mapped, Origin::Postback);
                Flow::Continue
            }
            None => {
                *open = false;
                Flow::Continue
            }
        }
    }

    /// A page's events (shipped in batches as they fill) or a marker.
    async fn polled(&mut self, item: Item, cancel: &CancellationToken) -> Flow {
        match item {
            Item::Events(events) => {
                for mapped in events {
                    if let Flow::Stop = self
                        .take_and_flush_when_full(mapped, Origin::Poll, cancel)
                        .await
                    {
                        return Flow::Stop;
                    }
                }
            }
            Item::Marker(at) => self.mark(at),
        }
        Flow::Continue
    }

    /// Shutdown: stop reading, take what was already read, deliver it, move the checkpoint.
    async fn drain(
        &mut self,
        mut polled: mpsc::Receiver<Item>,
        mut postbacks: mpsc::Receiver<Value>,
        cancel: &CancellationToken,
    ) {
        postbacks.close();
        polled.close();
        let mut flow = Flow::Continue;
        while let (Flow::Continue, Some(event)) = (&flow, postbacks.recv().await) {
            let mapped = self.config.mapper.map(&event);
            flow = self
                .take_and_flush_when_full(mapped, Origin::Postback, cancel)
                .await;
        }
        while let (Flow::Continue, Some(item)) = (&flow, polled.recv().await) {
            flow = self.polled(item, cancel).await;
        }
        if let Flow::Continue = flow
            && !self.batch.is_empty()
        {
            self.flush(cancel).await;
        }
        self.settle_all().await;
    }

    async fn take_and_flush_when_full(
        &mut self,
        mapped: Mapped,
        origin: Origin,
        cancel: &CancellationToken,
    ) -> Flow {
        self.take(mapped, origin);
        if self.batch.len() >= self.config.max_batch {
            self.flush(cancel).await
        } else {
            Flow::Continue
        }
    }

    /// A marker: the checkpoint may move once what was read before it is settled, that is
    /// the open batch (which will be the next one shipped) and every batch already shipped.
    fn mark(&mut self, at: Timestamp) {
        self.publish();
        if lock(self.seen).sweep_due() {
            self.evict();
        }
        let after = self.shipped + u64::from(!self.batch.is_empty());
        if after <= self.finished {
            self.advance(at);
        } else if let Some(last) = self.markers.back_mut()
            && last.0 == after
        {
            // Only the newest marker behind a batch matters.
            last.1 = at;
        } else {
            self.markers.push_back((after, at));
        }
    }

    /// The counts of the events taken since the last time, to metrics and status.
    fn publish(&mut self) {
        let Tally {
            received,
            duplicate,
        } = std::mem::take(&mut self.tally);
        if received == 0 && duplicate == 0 {
            return;
        }
        for (outcome, n) in [("received", received), ("duplicate", duplicate)] {
            if n > 0 {
                self.count(outcome, n);
            }
        }
        self.state.update(|s| {
            s.progress.received += received as i64;
            s.progress.duplicate += duplicate as i64;
        });
    }

    fn count(&self, outcome: &str, n: u64) {
        self.metrics
            .bridge_events(&self.config.namespace, &self.config.name, outcome, n);
    }

    /// One mapped event from either source.
    fn take(&mut self, mapped: Mapped, origin: Origin) {
        match mapped {
            Mapped::Skip => {}
            Mapped::Convert { at, conversion } => self.take_conversion(conversion, at, origin),
            Mapped::Reject { key, at, reason } => {
                let at = at.unwrap_or_else(|| self.state.checkpoint());
                self.take_rejection(key, at, &reason, origin);
            }
        }
    }

    /// Offers event `id` to the forwarded-id set: whether it is to be taken (new, or the
    /// list's copy of a postback that was rejected).
    fn offer(&mut self, id: Arc<str>, at: Timestamp, origin: Origin) -> Option<Offer> {
        let (offer, evicted) = lock(self.seen).offer(id, at, origin);
        self.count_evicted(evicted);
        match offer {
            Offer::Reread => None,
            Offer::Duplicate => {
                self.tally.duplicate += 1;
                None
            }
            Offer::New | Offer::Retry => Some(offer),
        }
    }

    fn take_conversion(&mut self, conversion: Conversion, at: Timestamp, origin: Origin) {
        let Some(offer) = self.offer(conversion.conversion_id.clone(), at, origin) else {
            return;
        };
        // A retried list copy of a rejected postback was counted as received already.
        if offer == Offer::New {
            self.tally.received += 1;
        }
        if self.batch.is_empty() {
            self.deadline = Some(Instant::now() + self.config.flush_interval);
        }
        self.batch.push(conversion);
    }

    fn take_rejection(&mut self, id: String, at: Timestamp, reason: &str, origin: Origin) {
        let Some(offer) = self.offer(id.as_str().into(), at, origin) else {
            return;
        };
        {
            let mut seen = lock(self.seen);
            match origin {
                // The list's copy of this event may still be good.
                Origin::Postback => seen.postback_rejected(&id),
                Origin::Poll => seen.settle(&id),
            }
        }
        if offer == Offer::Retry {
            // Its postback copy was rejected and counted already.
            return;
        }
        tracing::debug!(bridge = %self.config.name, event = %id, %reason, "event rejected");
        self.count("received", 1);
        self.count("rejected", 1);
        self.state.update(|s| {
            s.progress.received += 1;
            s.progress.reject(&id, reason, Timestamp::now());
        });
    }

    /// Every event before `at` is settled. Ids behind the new checkpoint are forgotten by the
    /// next sweep ([`EVICT_EVERY`], or once the set has doubled): sweeping at every page would
    /// scan the whole set each time.
    fn advance(&mut self, at: Timestamp) {
        self.state.update(|s| {
            if at > s.progress.checkpoint {
                s.progress.checkpoint = at;
            }
        });
    }

    /// Forget forwarded ids behind the lookback window (no poll reads them again), and the
    /// oldest ones while the set is over its cap.
    fn evict(&mut self) {
        let lookback = i64::try_from(self.config.poll.lookback.as_secs()).unwrap_or(i64::MAX);
        let evicted = {
            let mut seen = lock(self.seen);
            if let Ok(cutoff) = self.state.checkpoint().checked_sub(lookback.seconds()) {
                seen.evict_before(cutoff);
            }
            seen.make_room()
        };
        self.count_evicted(evicted);
    }

    fn count_evicted(&self, evicted: usize) {
        if evicted > 0 {
            self.metrics.bridge_seen_ids_evicted(
                &self.config.namespace,
                &self.config.name,
                evicted as u64,
            );
        }
    }

    /// Hands the batch to a delivery; waits for the oldest one while too many are under way.
    async fn flush(&mut self, cancel: &CancellationToken) -> Flow {
        self.publish();
        self.deadline = None;
        let batch = std::mem::take(&mut self.batch);
        self.shipped += 1;
        let shipper = Shipper {
            config: self.config,
            state: self.state,
            metrics: self.metrics,
            seen: self.seen,
        };
        let number = self.shipped;
        let cancel = cancel.clone();
        self.in_flight.push(Box::pin(async move {
            (number, shipper.ship(batch, cancel).await)
        }));
        while self.in_flight.len() >= MAX_IN_FLIGHT {
            let Some((batch, settled)) = self.in_flight.next().await else {
                break;
            };
            if let Flow::Stop = self.settle(batch, settled) {
                return Flow::Stop;
            }
        }
        Flow::Continue
    }

    /// A delivery finished. Markers move the checkpoint only while every delivery before them
    /// settled; after one that did not, the next worker re-reads from there.
    fn settle(&mut self, batch: u64, settled: bool) -> Flow {
        if !settled || self.failed {
            self.failed = true;
            return Flow::Stop;
        }
        self.settled_ahead.insert(batch);
        while self.settled_ahead.remove(&(self.finished + 1)) {
            self.finished += 1;
        }
        while let Some(&(batch, at)) = self.markers.front()
            && batch <= self.finished
        {
            self.markers.pop_front();
            self.advance(at);
        }
        Flow::Continue
    }

    async fn settle_all(&mut self) {
        self.publish();
        while let Some((batch, settled)) = self.in_flight.next().await {
            self.settle(batch, settled);
        }
    }
}

enum Input {
    Polled(Option<Item>),
    Postback(Option<Value>),
}

/// The next input from either door, `poll_first` deciding which one wins when both have one.
async fn next_input(
    polled: &mut mpsc::Receiver<Item>,
    postbacks: &mut mpsc::Receiver<Value>,
    postbacks_open: bool,
    poll_first: bool,
) -> Input {
    if poll_first {
        tokio::select! {
            biased;
            item = polled.recv() => Input::Polled(item),
            event = postbacks.recv(), if postbacks_open => Input::Postback(event),
        }
    } else {
        tokio::select! {
            biased;
            event = postbacks.recv(), if postbacks_open => Input::Postback(event),
            item = polled.recv() => Input::Polled(item),
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// With both doors full, the forwarder takes from each in turn: a flood of postbacks
    /// cannot starve the polled pages (and the other way round).
    #[tokio::test]
    async fn both_doors_are_served_in_turn() {
        let (poll_tx, mut polled) = mpsc::channel(100);
        let (post_tx, mut postbacks) = mpsc::channel(100);
        for i in 0..50 {
            poll_tx
                .send(Item::Marker(Timestamp::UNIX_EPOCH))
                .await
                .unwrap();
            post_tx.send(json!({"id": format!("b{i}")})).await.unwrap();
        }
        let mut poll_first = false;
        let mut order = String::new();
        for _ in 0..20 {
            match next_input(&mut polled, &mut postbacks, true, poll_first).await {
                Input::Polled(Some(_)) => order.push('P'),
                Input::Postback(Some(_)) => order.push('B'),
                _ => panic!("both doors are open"),
            }
            poll_first = !poll_first;
        }
        assert_eq!(order, "BP".repeat(10));
        // An empty door does not block the other.
        let (_idle, mut empty) = mpsc::channel::<Value>(1);
        assert!(matches!(
            next_input(&mut polled, &mut empty, true, false).await,
            Input::Polled(Some(_))
        ));
    }
}
