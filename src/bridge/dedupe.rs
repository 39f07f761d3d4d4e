//! "Forward each event once per process lifetime" (SPEC 1.5, 7.2): the ids a bridge handled.
//!
//! The set belongs to the bridge, not to one worker: a worker restarted for a spec edit, a
//! Secret change, a resume or a recovery from a stall finds every id it settled before, so it
//! re-sends nothing. Ids still in flight when a worker stops are forgotten, so that the next
//! worker sends them.
//!
//! Every poll re-reads the lookback window, so most repeats are routine re-reads and are not
//! worth counting. A repeat is a *duplicate* when the same event came through both doors (a
//! postback and a poll) or was posted back twice. A postback copy that could not be mapped does
//! not settle its id: the events list is the ledger, and its copy is still sent.

use std::collections::HashMap;
use std::sync::Arc;

use jiff::Timestamp;

/// How an event reached the pipeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    Poll,
    Postback,
}

/// What the set says about an offered event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Offer {
    /// First sight: process it.
    New,
    /// Only an unmappable postback copy was seen: process this copy, but if it cannot be
    /// mapped either, say nothing (the rejection was counted once).
    Retry,
    /// Already handled; counts as a duplicate.
    Duplicate,
    /// Already handled and read again by a poll; not worth counting.
    Reread,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fate {
    /// Taken by the running worker, not settled yet.
    Pending,
    /// Forwarded or rejected.
    Done,
    /// Only a postback copy came, and it could not be mapped.
    PostbackRejected,
}

#[derive(Debug)]
struct Entry {
    /// The event's date (or when it was seen, for undated events); drives eviction.
    at: Timestamp,
    polled: bool,
    fate: Fate,
}

/// Ids of the events a bridge handled in the lookback window, at most `max` of them.
#[derive(Debug)]
pub struct SeenSet {
    /// Keys are shared with the conversions that carry them (one allocation per event id).
    /// Hashed with foldhash (seeded per process), several times faster than SipHash on
    /// short ids; ids come from Signals or from postbacks that carry the bridge's token.
    entries: HashMap<Arc<str>, Entry, foldhash::fast::RandomState>,
    /// How many entries the last sweep left: the next one is due when the set has doubled.
    swept: usize,
    max: usize,
}

/// `--bridge-max-seen-ids` default (SPEC 7.2).
pub const DEFAULT_MAX_SEEN_IDS: usize = 2_000_000;

/// Below this many ids a sweep is never due for growth (the timer sweeps anyway).
const MIN_SWEEP: usize = 4_096;

impl Default for SeenSet {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_SEEN_IDS)
    }
}

impl SeenSet {
    pub fn new(max: usize) -> Self {
        SeenSet {
            entries: HashMap::default(),
            swept: 0,
            max: max.max(1),
        }
    }

    /// Whether `id` was handled before; records it (as pending) either way. Returns how many
    /// old ids had to go to make room.
    pub fn offer(
        &mut self,
        id: impl Into<Arc<str>> + AsRef<str>,
        at: Timestamp,
        origin: Origin,
    ) -> (Offer, usize) {
        let polled = origin == Origin::Poll;
        let offer = match self.entries.get_mut(id.as_ref()) {
            None => {
                self.entries.insert(
                    id.into(),
                    Entry {
                        at,
                        polled,
                        fate: Fate::Pending,
                    },
                );
                return (Offer::New, self.make_room());
            }
            Some(entry) if entry.fate == Fate::PostbackRejected => {
                if !polled {
                    Offer::Duplicate
                } else {
                    entry.polled = true;
                    entry.fate = Fate::Pending;
                    Offer::Retry
                }
            }
            Some(entry) if polled && entry.polled => Offer::Reread,
            Some(entry) if polled => {
                entry.polled = true;
                Offer::Duplicate
            }
            Some(_) => Offer::Duplicate,
        };
        (offer, 0)
    }

    /// `id` was forwarded or rejected for good.
    pub fn settle(&mut self, id: &str) {
        if let Some(e) = self.entries.get_mut(id) {
            e.fate = Fate::Done;
        }
    }

    /// `id` came as a postback that could not be mapped: the list's copy stays eligible.
    pub fn postback_rejected(&mut self, id: &str) {
        if let Some(e) = self.entries.get_mut(id)
            && e.fate == Fate::Pending
            && !e.polled
        {
            e.fate = Fate::PostbackRejected;
        }
    }

    /// `id` was taken but not delivered (the delivery stopped): the next read sends it.
    pub fn unsettle(&mut self, id: &str) {
        if self
            .entries
            .get(id)
            .is_some_and(|e| e.fate == Fate::Pending)
        {
            self.entries.remove(id);
        }
    }

    /// Forget what a stopped worker took and never settled.
    pub fn forget_pending(&mut self) {
        self.entries.retain(|_, e| e.fate != Fate::Pending);
    }

    /// Forget everything dated before `cutoff` (behind the lookback window, never re-read).
    pub fn evict_before(&mut self, cutoff: Timestamp) {
        self.entries
            .retain(|_, e| e.at >= cutoff || e.fate == Fate::Pending);
        self.swept = self.entries.len();
        // A catch-up sweeps most of the set away each time: a table kept at its old size
        // would be slower to probe and fill up with tombstones that force rehashing.
        if self.entries.capacity() > 4 * self.swept.max(MIN_SWEEP) {
            self.entries.shrink_to(2 * self.swept);
        }
    }

    /// Whether the set has doubled since the last sweep: sweeping then costs a constant per
    /// id taken, however fast a catch-up reads, and keeps the set near what the lookback
    /// window holds.
    pub fn sweep_due(&self) -> bool {
        self.entries.len() >= 2 * self.swept.max(MIN_SWEEP)
    }

    /// Over the cap: evict the oldest settled ids, a hundredth of the cap at once so that the
    /// cost is shared by many inserts. Ids still in flight are never evicted, so the set may
    /// stay over the cap until they settle; returns how many went.
    pub fn make_room(&mut self) -> usize {
        if self.entries.len() <= self.max {
            return 0;
        }
        let excess = self.entries.len() - self.max + self.max.div_ceil(100);
        let mut dates: Vec<Timestamp> = self
            .entries
            .values()
            .filter(|e| e.fate != Fate::Pending)
            .map(|e| e.at)
            .collect();
        if dates.is_empty() {
            return 0;
        }
        let nth = excess.min(dates.len()) - 1;
        let (_, cutoff, _) = dates.select_nth_unstable(nth);
        let cutoff = *cutoff;
        let before = self.entries.len();
        self.entries
            .retain(|_, e| e.at > cutoff || e.fate == Fate::Pending);
        before - self.entries.len()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + secs).unwrap()
    }

    fn offer(s: &mut SeenSet, id: &str, at: i64, origin: Origin) -> Offer {
        s.offer(id, t(at), origin).0
    }

    #[test]
    fn rereads_are_silent_and_crossings_are_duplicates() {
        let mut s = SeenSet::default();
        assert_eq!(offer(&mut s, "a", 0, Origin::Poll), Offer::New);
        assert_eq!(offer(&mut s, "a", 0, Origin::Poll), Offer::Reread);
        assert_eq!(offer(&mut s, "a", 0, Origin::Postback), Offer::Duplicate);

        assert_eq!(offer(&mut s, "b", 1, Origin::Postback), Offer::New);
        assert_eq!(offer(&mut s, "b", 1, Origin::Postback), Offer::Duplicate);
        assert_eq!(offer(&mut s, "b", 1, Origin::Poll), Offer::Duplicate);
        assert_eq!(offer(&mut s, "b", 1, Origin::Poll), Offer::Reread);
    }

    #[test]
    fn an_unmappable_postback_leaves_the_list_copy_eligible() {
        let mut s = SeenSet::default();
        assert_eq!(offer(&mut s, "a", 0, Origin::Postback), Offer::New);
        s.postback_rejected("a");
        assert_eq!(offer(&mut s, "a", 0, Origin::Postback), Offer::Duplicate);
        assert_eq!(offer(&mut s, "a", 0, Origin::Poll), Offer::Retry);
        s.settle("a");
        assert_eq!(offer(&mut s, "a", 0, Origin::Poll), Offer::Reread);
    }

    #[test]
    fn a_stopped_worker_leaves_its_unsettled_ids_to_the_next() {
        let mut s = SeenSet::default();
        offer(&mut s, "sent", 0, Origin::Poll);
        s.settle("sent");
        offer(&mut s, "in-flight", 1, Origin::Poll);
        offer(&mut s, "refused-delivery", 2, Origin::Poll);
        s.unsettle("refused-delivery");
        s.forget_pending();
        assert_eq!(offer(&mut s, "sent", 0, Origin::Poll), Offer::Reread);
        assert_eq!(offer(&mut s, "in-flight", 1, Origin::Poll), Offer::New);
        assert_eq!(
            offer(&mut s, "refused-delivery", 2, Origin::Poll),
            Offer::New
        );
    }

    #[test]
    fn eviction_keeps_the_window_and_what_is_in_flight() {
        let mut s = SeenSet::default();
        for i in 0..10 {
            offer(&mut s, &format!("e{i}"), i, Origin::Poll);
            if i != 2 {
                s.settle(&format!("e{i}"));
            }
        }
        s.evict_before(t(5));
        assert_eq!(s.len(), 6);
        assert_eq!(offer(&mut s, "e4", 4, Origin::Poll), Offer::New);
        assert_eq!(offer(&mut s, "e5", 5, Origin::Poll), Offer::Reread);
        assert_eq!(offer(&mut s, "e2", 2, Origin::Poll), Offer::Reread);
    }

    #[test]
    fn the_cap_evicts_the_oldest_first() {
        let mut s = SeenSet::new(1_000);
        let mut evicted = 0;
        for i in 0..5_000 {
            let id = format!("e{i}");
            evicted += s.offer(id.as_str(), t(i), Origin::Poll).1;
            s.settle(&id);
        }
        assert!(s.len() <= 1_000, "{}", s.len());
        assert_eq!(evicted, 5_000 - s.len());
        assert_eq!(offer(&mut s, "e4999", 4_999, Origin::Poll), Offer::Reread);
        assert_eq!(offer(&mut s, "e10", 10, Origin::Poll), Offer::New);
    }

    #[test]
    fn a_catch_up_sweeps_once_the_set_has_doubled() {
        let mut s = SeenSet::default();
        let n = MIN_SWEEP as i64 * 2;
        for i in 0..n - 1 {
            offer(&mut s, &format!("e{i}"), i, Origin::Poll);
            s.settle(&format!("e{i}"));
        }
        assert!(!s.sweep_due());
        offer(&mut s, "one-more", n, Origin::Poll);
        s.settle("one-more");
        assert!(s.sweep_due());
        // Everything but the last 100 seconds is behind the window.
        s.evict_before(t(n - 100));
        assert_eq!(s.len(), 100);
        assert!(!s.sweep_due());
        // A table grown far past what the window holds is given back.
        for i in 0..n * 4 {
            offer(&mut s, &format!("f{i}"), n + i, Origin::Poll);
            s.settle(&format!("f{i}"));
        }
        s.evict_before(t(n * 5 - 100));
        assert_eq!(s.len(), 100);
        assert!(s.entries.capacity() < 1_000, "{}", s.entries.capacity());
        // An id in flight stays however old.
        offer(&mut s, "pending", 0, Origin::Poll);
        s.evict_before(t(n * 100));
        assert_eq!(s.len(), 1);
    }
}
