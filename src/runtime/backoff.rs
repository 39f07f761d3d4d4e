//! The one retry-delay policy of the operator: jittered exponential growth with consecutive
//! failures, raised to what the server asked for but never below the floor or above the cap.
//!
//! A server's own hint is not trusted to keep the delay short: a `Retry-After: 0` or an
//! `x-rate-limit-reset` in the past would otherwise make a retry loop spin, so the delay keeps
//! growing with the failures whatever the server says (SPEC 7.2).

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Delays from `floor`, doubling with each consecutive failure, up to `cap`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    pub floor: Duration,
    pub cap: Duration,
}

impl Backoff {
    /// Managed objects (SPEC 3): 1 s doubling to 5 min.
    pub const MANAGED: Backoff = Backoff {
        floor: Duration::from_secs(1),
        cap: Duration::from_secs(300),
    };
    /// The bridge's reads and sends (SPEC 7.2): within [1 s, 15 min].
    pub const BRIDGE: Backoff = Backoff {
        floor: Duration::from_secs(1),
        cap: Duration::from_secs(15 * 60),
    };

    /// How long to wait after the `failures`-th consecutive failure (1 for the first).
    /// `asked` is what the server asked for (`Retry-After`, `x-rate-limit-reset`): the delay is
    /// at least that, plus up to a tenth more so that callers told the same time spread out.
    pub fn delay(&self, failures: u32, asked: Option<Duration>) -> Duration {
        // "Equal jitter": between half and all of floor·2^failures.
        let exp = self
            .floor
            .saturating_mul(1u32 << failures.clamp(1, 20))
            .min(self.cap);
        let grown = exp / 2 + (exp / 2).mul_f64(jitter_fraction());
        let wanted = match asked {
            Some(asked) => grown.max(asked + asked.mul_f64(jitter_fraction() / 10.0)),
            None => grown,
        };
        wanted.clamp(self.floor, self.cap)
    }
}

/// Consecutive failures per object key, so that one broken object never slows the retries of
/// the others.
#[derive(Debug)]
pub struct KeyedBackoff {
    policy: Backoff,
    failures: Mutex<HashMap<String, u32>>,
}

impl Default for KeyedBackoff {
    fn default() -> Self {
        Self::new(Backoff::MANAGED)
    }
}

impl KeyedBackoff {
    pub fn new(policy: Backoff) -> Self {
        Self {
            policy,
            failures: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, u32>> {
        self.failures.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records one more failure of `key` and returns how long to wait before the next try.
    pub fn next_delay(&self, key: &str, asked: Option<Duration>) -> Duration {
        let failures = {
            let mut failures = self.lock();
            let n = failures.entry(key.to_string()).or_insert(0);
            *n = n.saturating_add(1);
            *n
        };
        self.policy.delay(failures, asked)
    }

    /// Forgets the failures of `key` after a success.
    pub fn reset(&self, key: &str) {
        self.lock().remove(key);
    }

    /// Consecutive failures recorded for `key`.
    pub fn failures(&self, key: &str) -> u32 {
        self.lock().get(key).copied().unwrap_or(0)
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

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn delays_double_with_jitter_and_stay_within_floor_and_cap() {
        let b = Backoff::BRIDGE;
        for _ in 0..50 {
            let d1 = b.delay(1, None);
            assert!(d1 >= S && d1 <= 2 * S, "{d1:?}");
            let d3 = b.delay(3, None);
            assert!(d3 >= 4 * S && d3 <= 8 * S, "{d3:?}");
            let d = b.delay(40, None);
            assert!(d >= b.cap / 2 && d <= b.cap, "{d:?}");
        }
    }

    #[test]
    fn a_server_asking_for_less_does_not_stop_the_growth() {
        let b = Backoff::BRIDGE;
        // Retry-After: 0, or an x-rate-limit-reset in the past (read as zero).
        for failures in 1..12 {
            let zero = b.delay(failures, Some(Duration::ZERO));
            let none = b.delay(failures, None);
            assert!(zero >= S, "{zero:?}");
            let low = (Backoff::BRIDGE.floor * (1 << failures.min(20)) / 2).min(b.cap / 2);
            assert!(zero >= low && none >= low, "{failures}: {zero:?} {none:?}");
        }
    }

    #[test]
    fn a_server_asking_for_more_is_honoured_up_to_the_cap() {
        let b = Backoff::BRIDGE;
        let d = b.delay(1, Some(Duration::from_secs(90)));
        assert!(
            d >= Duration::from_secs(90) && d <= Duration::from_secs(99),
            "{d:?}"
        );
        let d = b.delay(1, Some(Duration::from_secs(7200)));
        assert_eq!(d, b.cap);
    }

    #[test]
    fn objects_back_off_independently_and_reset_on_success() {
        let b = KeyedBackoff::default();
        for _ in 0..5 {
            b.next_delay("a", None);
        }
        assert_eq!(b.failures("a"), 5);
        assert!(b.next_delay("b", None) <= 2 * S);
        b.reset("a");
        assert_eq!(b.failures("a"), 0);
        assert!(b.next_delay("a", None) <= 2 * S);
        let d = b.next_delay("c", None);
        for _ in 0..20 {
            b.next_delay("c", None);
        }
        let capped = b.next_delay("c", None);
        assert!(d >= S && capped <= Backoff::MANAGED.cap && capped >= Backoff::MANAGED.cap / 2);
    }

    #[test]
    fn jitter_spreads_retries() {
        let values: std::collections::HashSet<u64> = (0..50)
            .map(|_| (jitter_fraction() * 1000.0) as u64)
            .collect();
        assert!(values.len() > 10);
    }
}
