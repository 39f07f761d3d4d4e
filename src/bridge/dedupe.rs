//! "Forward each event once per process lifetime" (SPEC 1.5): the ids seen recently.
//!
//! Every poll re-reads the lookback window, so most repeats are routine re-reads and are not
//! worth counting. A repeat is a *duplicate* when the same event came through both doors (a
//! postback and a poll) or was posted back twice.

use std::collections::HashMap;

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
    /// Already handled; counts as a duplicate.
    Duplicate,
    /// Already handled and read again by a poll; not worth counting.
    Reread,
}

#[derive(Debug)]
struct Entry {
    /// The event's date (or when it was seen, for undated events); drives eviction.
    at: Timestamp,
    polled: bool,
}

/// Ids of the events handled in the lookback window.
#[derive(Debug, Default)]
pub struct SeenSet {
    entries: HashMap<String, Entry>,
}

impl SeenSet {
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether `id` was handled before; records it either way.
    pub fn offer(&mut self, id: &str, at: Timestamp, origin: Origin) -> Offer {
        match (self.entries.get_mut(id), origin) {
            (None, _) => {
                self.entries.insert(
                    id.to_string(),
                    Entry {
                        at,
                        polled: origin == Origin::Poll,
                    },
                );
                Offer::New
            }
            (Some(entry), Origin::Poll) if entry.polled => Offer::Reread,
            (Some(entry), Origin::Poll) => {
                entry.polled = true;
                Offer::Duplicate
            }
            (Some(_), Origin::Postback) => Offer::Duplicate,
        }
    }

    /// Forget everything dated before `cutoff` (behind the lookback window, never re-read).
    pub fn evict_before(&mut self, cutoff: Timestamp) {
        self.entries.retain(|_, e| e.at >= cutoff);
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

    #[test]
    fn rereads_are_silent_and_crossings_are_duplicates() {
        let mut s = SeenSet::new();
        assert_eq!(s.offer("a", t(0), Origin::Poll), Offer::New);
        assert_eq!(s.offer("a", t(0), Origin::Poll), Offer::Reread);
        assert_eq!(s.offer("a", t(0), Origin::Postback), Offer::Duplicate);

        assert_eq!(s.offer("b", t(1), Origin::Postback), Offer::New);
        assert_eq!(s.offer("b", t(1), Origin::Postback), Offer::Duplicate);
        assert_eq!(s.offer("b", t(1), Origin::Poll), Offer::Duplicate);
        assert_eq!(s.offer("b", t(1), Origin::Poll), Offer::Reread);
    }

    #[test]
    fn eviction_keeps_the_window() {
        let mut s = SeenSet::new();
        for i in 0..10 {
            s.offer(&format!("e{i}"), t(i), Origin::Poll);
        }
        s.evict_before(t(5));
        assert_eq!(s.len(), 5);
        assert_eq!(s.offer("e4", t(4), Origin::Poll), Offer::New);
        assert_eq!(s.offer("e5", t(5), Origin::Poll), Offer::Reread);
    }
}
