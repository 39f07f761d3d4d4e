//! Per-object jittered exponential backoff for transient failures (1s doubling to 5m).

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub const DEFAULT_BASE: Duration = Duration::from_secs(1);
pub const DEFAULT_MAX: Duration = Duration::from_secs(300);

/// Counts consecutive failures per object key. Objects fail and recover independently, so one
/// broken object never slows the retries of the others.
#[derive(Debug)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    failures: Mutex<HashMap<String, u32>>,
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new(DEFAULT_BASE, DEFAULT_MAX)
    }
}

impl Backoff {
    pub fn new(base: Duration, max: Duration) -> Self {
        Self {
            base,
            max,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Records one more failure of `key` and returns how long to wait before the next try:
    /// "full jitter" between half and all of the exponential delay, so objects that failed
    /// together do not retry together.
    pub fn next_delay(&self, key: &str) -> Duration {
        let attempt = {
            let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
            let n = failures.entry(key.to_string()).or_insert(0);
            *n = n.saturating_add(1);
            *n
        };
        let exp = self
            .base
            .saturating_mul(
                1u32.checked_shl(attempt.saturating_sub(1).min(30))
                    .unwrap_or(u32::MAX),
            )
            .min(self.max);
        let half = exp / 2;
        half + half.mul_f64(jitter_fraction())
    }

    /// Forgets the failures of `key` after a success.
    pub fn reset(&self, key: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }

    /// Consecutive failures recorded for `key`.
    pub fn failures(&self, key: &str) -> u32 {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .copied()
            .unwrap_or(0)
    }
}

/// A fraction in [0, 1) from the process's random hasher keys; good enough for jitter and
/// free of a dependency.
pub fn jitter_fraction() -> f64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let h = std::collections::hash_map::RandomState::new().hash_one(nanos);
    (h >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_with_jitter_and_cap_at_max() {
        let b = Backoff::default();
        let d1 = b.next_delay("a");
        assert!(
            d1 >= Duration::from_millis(500) && d1 <= Duration::from_secs(1),
            "{d1:?}"
        );
        let d2 = b.next_delay("a");
        assert!(
            d2 >= Duration::from_secs(1) && d2 <= Duration::from_secs(2),
            "{d2:?}"
        );
        for _ in 0..8 {
            b.next_delay("a");
        }
        for _ in 0..20 {
            let d = b.next_delay("a");
            assert!(d <= DEFAULT_MAX && d >= DEFAULT_MAX / 2, "{d:?}");
        }
    }

    #[test]
    fn objects_back_off_independently_and_reset_on_success() {
        let b = Backoff::default();
        for _ in 0..5 {
            b.next_delay("a");
        }
        assert!(b.next_delay("b") <= Duration::from_secs(1));
        b.reset("a");
        assert_eq!(b.failures("a"), 0);
        assert!(b.next_delay("a") <= Duration::from_secs(1));
    }

    #[test]
    fn jitter_spreads_retries() {
        let values: std::collections::HashSet<u64> = (0..50)
            .map(|_| (jitter_fraction() * 1000.0) as u64)
            .collect();
        assert!(values.len() > 10);
    }
}
