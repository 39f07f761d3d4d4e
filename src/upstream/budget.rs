//! Rate budgets shared by every caller of one credential or account (SPEC 1.5, 3).
//!
//! A [`RateBudget`] is a token bucket of `capacity` units refilled evenly over
//! `window` (e.g. 60 000 events per 15 minutes). It also honours X's
//! `x-rate-limit-remaining` / `x-rate-limit-reset`: when the upstream says nothing
//! remains, every caller waits until the reset. [`BudgetRegistry`] hands out one
//! budget per key so all objects sharing a credential share its limit.
//!
//! A [`RequestBudget`] is that bucket counted in requests plus a cap on requests in flight:
//! one per credential, from [`RequestBudgets`]. Signals' budgets have a local rate
//! (`--signals-requests-per-second`); X's ([`RequestBudgets::unmetered`]) have none and are
//! paced only by what X reports and by the cap.

use std::collections::HashMap;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

/// Longest wait accepted from an upstream reset time (guards against clock skew).
const MAX_UPSTREAM_WAIT: Duration = Duration::from_secs(15 * 60);
/// X reports its reset in whole epoch seconds, rounded down: waiting one more second
/// makes sure the upstream window really has rolled over.
const RESET_MARGIN: Duration = Duration::from_secs(1);

#[derive(Debug)]
struct State {
    capacity: u64,
    window: Duration,
    available: f64,
    last_refill: Instant,
    blocked_until: Option<Instant>,
    /// What the upstream last reported: units left until its window resets.
    upstream: Option<(u64, Instant)>,
    /// The reset that report named, to tell its window from the next one.
    upstream_reset: Option<SystemTime>,
    /// Units spent on requests the upstream has not answered yet.
    in_flight: u64,
}

impl State {
    fn rate_per_sec(&self) -> f64 {
        self.capacity as f64 / self.window.as_secs_f64().max(0.001)
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now
            .saturating_duration_since(self.last_refill)
            .as_secs_f64();
        self.available = (self.available + elapsed * self.rate_per_sec()).min(self.capacity as f64);
        self.last_refill = now;
    }

    /// The upstream's remaining units while its reported window lasts.
    fn upstream_room(&mut self, now: Instant) -> Option<(u64, Instant)> {
        match self.upstream {
            Some((_, reset)) if reset <= now => {
                self.upstream = None;
                None
            }
            other => other,
        }
    }
}

/// A token bucket shared by all callers of one credential/account.
#[derive(Debug)]
pub struct RateBudget {
    state: StdMutex<State>,
    /// Serialises waiters so they are served in order.
    queue: tokio::sync::Mutex<()>,
}

impl RateBudget {
    /// A budget with no local rate: only what the upstream reports
    /// ([`RateBudget::observe_rate_limit`], [`RateBudget::block_for`]) makes callers wait.
    /// (A bucket of `u64::MAX` units per second, which never runs dry.)
    pub fn unmetered() -> Self {
        RateBudget::new(u64::MAX, Duration::from_secs(1))
    }

    /// `capacity` units per `window`, starting full.
    pub fn new(capacity: u64, window: Duration) -> Self {
        let capacity = capacity.max(1);
        RateBudget {
            state: StdMutex::new(State {
                capacity,
                window,
                available: capacity as f64,
                last_refill: Instant::now(),
                blocked_until: None,
                upstream: None,
                upstream_reset: None,
                in_flight: 0,
            }),
            queue: tokio::sync::Mutex::new(()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Change the capacity (e.g. the spec's `eventsPer15Min` changed).
    pub fn set_capacity(&self, capacity: u64) {
        let mut s = self.lock();
        s.refill(Instant::now());
        s.capacity = capacity.max(1);
        s.available = s.available.min(s.capacity as f64);
    }

    /// Units available right now (rounded down).
    pub fn available(&self) -> u64 {
        let mut s = self.lock();
        s.refill(Instant::now());
        s.available as u64
    }

    /// Wait until `units` can be spent, then spend them. A request larger than
    /// the capacity waits for a full bucket and spends all of it. The units count as in
    /// flight until the returned guard is dropped: drop it once the upstream answered.
    pub async fn acquire(&self, units: u64) -> InFlight<'_> {
        let _turn = self.queue.lock().await;
        loop {
            let wait = {
                let mut s = self.lock();
                let now = Instant::now();
                s.refill(now);
                let units = units.min(s.capacity) as f64;
                let upstream = s.upstream_room(now);
                match s.blocked_until {
                    Some(until) if until > now => until - now,
                    // The upstream's own window has less room than this request needs.
                    _ if upstream.is_some_and(|(room, _)| (room as f64) < units) => {
                        upstream.map(|(_, reset)| reset - now).unwrap_or_default()
                    }
                    _ => {
                        s.blocked_until = None;
                        if s.available + 1e-9 >= units {
                            s.available = (s.available - units).max(0.0);
                            if let Some((room, reset)) = upstream {
                                s.upstream = Some((room.saturating_sub(units as u64), reset));
                            }
                            s.in_flight += units as u64;
                            return InFlight {
                                budget: self,
                                units: units as u64,
                            };
                        }
                        let missing = units - s.available;
                        Duration::from_secs_f64(missing / s.rate_per_sec())
                            .max(Duration::from_millis(1))
                    }
                }
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// Block every caller for `duration` (the upstream reported nothing remaining).
    pub fn block_for(&self, duration: Duration) {
        let until = Instant::now() + duration.min(MAX_UPSTREAM_WAIT);
        let mut s = self.lock();
        if s.blocked_until.is_none_or(|b| b < until) {
            s.blocked_until = Some(until);
        }
    }

    /// Feed X's `x-rate-limit-remaining` and `x-rate-limit-reset`: until the reset, no
    /// caller spends more than what remains, so the budget never provokes a 429. Requests
    /// still in flight may not be counted in `remaining` yet, so their units are held back.
    pub fn observe_rate_limit(&self, remaining: Option<u64>, reset: Option<SystemTime>) {
        let (Some(remaining), Some(reset)) = (remaining, reset) else {
            return;
        };
        let wait = reset
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO);
        if wait.is_zero() {
            return;
        }
        let now = Instant::now();
        let until = now + wait.min(MAX_UPSTREAM_WAIT) + RESET_MARGIN;
        let mut s = self.lock();
        let fresh = remaining.saturating_sub(s.in_flight);
        // Answers to concurrent requests arrive in any order: within one window, an answer
        // counted before another must not give back room the other already took.
        let room = match (s.upstream_room(now), s.upstream_reset) {
            (Some((room, _)), Some(previous)) if previous == reset => room.min(fresh),
            _ => fresh,
        };
        s.upstream = Some((room, until));
        s.upstream_reset = Some(reset);
    }

    /// The upstream refused a request for its rate (a 429): nothing remains until `reset`
    /// (its `x-rate-limit-reset` or `Retry-After`). Without a reset still ahead, every caller
    /// waits one second rather than retrying at once.
    pub fn observe_refusal(&self, reset: Option<SystemTime>) {
        match reset {
            Some(at) if at > SystemTime::now() => self.observe_rate_limit(Some(0), Some(at)),
            _ => self.block_for(RESET_MARGIN),
        }
    }

    /// Units the upstream still grants in its current window, when it said so.
    pub fn upstream_room(&self) -> Option<u64> {
        self.lock()
            .upstream_room(Instant::now())
            .map(|(room, _)| room)
    }
}

/// Units of one request, spent and not yet answered (see [`RateBudget::acquire`]).
#[derive(Debug)]
pub struct InFlight<'a> {
    budget: &'a RateBudget,
    units: u64,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let mut s = self.budget.lock();
        s.in_flight = s.in_flight.saturating_sub(self.units);
    }
}

/// One [`RateBudget`] per key (credential or account), shared process-wide.
#[derive(Debug, Default)]
pub struct BudgetRegistry {
    budgets: StdMutex<HashMap<String, Arc<RateBudget>>>,
}

impl BudgetRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// The budget for `key`, created with `capacity` per `window` on first use;
    /// an existing budget takes the latest capacity.
    pub fn budget(&self, key: &str, capacity: u64, window: Duration) -> Arc<RateBudget> {
        let mut map = self.budgets.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(b) = map.get(key) {
            b.set_capacity(capacity);
            return b.clone();
        }
        let b = Arc::new(RateBudget::new(capacity, window));
        map.insert(key.to_string(), b.clone());
        b
    }
}

/// The request budget of one credential (SPEC 7.1): at most `per_second` requests started
/// per second, and at most `max_in_flight` unanswered at once, for every object and bridge
/// that uses it. A thousand objects resyncing together queue here instead of firing at once.
/// It also honours the upstream's own window when told ([`RequestBudget::observe_rate_limit`]):
/// X's budgets ([`RequestBudget::unmetered`]) are paced by that window and the cap alone.
#[derive(Debug)]
pub struct RequestBudget {
    rate: RateBudget,
    in_flight: tokio::sync::Semaphore,
}

/// Permission for one request; dropping it (when the answer arrived) frees its slot.
pub struct RequestPermit<'a> {
    _slot: tokio::sync::SemaphorePermit<'a>,
    _spent: InFlight<'a>,
}

impl RequestBudget {
    pub fn new(per_second: u32, max_in_flight: usize) -> Self {
        let per_second = u64::from(per_second.max(1));
        RequestBudget {
            rate: RateBudget::new(per_second, Duration::from_secs(1)),
            in_flight: tokio::sync::Semaphore::new(max_in_flight.max(1)),
        }
    }

    /// No local rate: at most `max_in_flight` unanswered requests, and none while the upstream
    /// said nothing remains (until its reset).
    pub fn unmetered(max_in_flight: usize) -> Self {
        RequestBudget {
            rate: RateBudget::unmetered(),
            in_flight: tokio::sync::Semaphore::new(max_in_flight.max(1)),
        }
    }

    /// Wait for a slot and a unit of the rate, then hold them until the permit is dropped.
    /// Drop the permit once the answer arrived, before feeding its headers to
    /// [`RequestBudget::observe_rate_limit`] (the answer counts its own request).
    pub async fn enter(&self) -> RequestPermit<'_> {
        let slot = self
            .in_flight
            .acquire()
            .await
            .unwrap_or_else(|_| unreachable!("the semaphore is never closed"));
        let spent = self.rate.acquire(1).await;
        RequestPermit {
            _slot: slot,
            _spent: spent,
        }
    }

    /// The budget's rate and window, which the permits spend from.
    pub(crate) fn window(&self) -> &RateBudget {
        &self.rate
    }

    /// What the upstream reported for its window (X's `x-rate-limit-remaining` and
    /// `x-rate-limit-reset`); see [`RateBudget::observe_rate_limit`].
    pub fn observe_rate_limit(&self, remaining: Option<u64>, reset: Option<SystemTime>) {
        self.rate.observe_rate_limit(remaining, reset);
    }

    /// The upstream answered 429; see [`RateBudget::observe_refusal`].
    pub fn observe_refusal(&self, reset: Option<SystemTime>) {
        self.rate.observe_refusal(reset);
    }

    /// Requests the upstream still grants in its current window, when it said so.
    pub fn upstream_room(&self) -> Option<u64> {
        self.rate.upstream_room()
    }
}

/// One [`RequestBudget`] per credential id, process-wide: for Signals the Secret
/// (`namespace/secret`), for X [`XCredentials::budget_key`](crate::upstream::secret::XCredentials::budget_key).
#[derive(Debug)]
pub struct RequestBudgets {
    /// `None`: no local rate ([`RequestBudget::unmetered`]).
    per_second: Option<u32>,
    max_in_flight: usize,
    budgets: StdMutex<HashMap<String, Arc<RequestBudget>>>,
}

/// SPEC 7.1: at most this many requests of one credential are unanswered at once.
pub const MAX_IN_FLIGHT_PER_CREDENTIAL: usize = 4;

impl RequestBudgets {
    /// Budgets of `per_second` requests per second and [`MAX_IN_FLIGHT_PER_CREDENTIAL`] in
    /// flight (Signals).
    pub fn new(per_second: u32) -> Self {
        RequestBudgets {
            per_second: Some(per_second),
            max_in_flight: MAX_IN_FLIGHT_PER_CREDENTIAL,
            budgets: StdMutex::default(),
        }
    }

    /// Budgets with no local rate, [`MAX_IN_FLIGHT_PER_CREDENTIAL`] in flight, paced by the
    /// windows the upstream reports (X: one per credential, for its tag calls).
    pub fn unmetered() -> Self {
        RequestBudgets {
            per_second: None,
            max_in_flight: MAX_IN_FLIGHT_PER_CREDENTIAL,
            budgets: StdMutex::default(),
        }
    }

    /// The budget of `credential`, created on first use.
    pub fn get(&self, credential: &str) -> Arc<RequestBudget> {
        self.budgets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(credential.to_string())
            .or_insert_with(|| {
                Arc::new(match self.per_second {
                    Some(per_second) => RequestBudget::new(per_second, self.max_in_flight),
                    None => RequestBudget::unmetered(self.max_in_flight),
                })
            })
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn an_older_answer_does_not_give_room_back() {
        let b = RateBudget::new(60_000, WINDOW);
        let reset = SystemTime::now() + Duration::from_secs(600);
        // Two requests of 500 answered out of order: the later-counted answer arrives first.
        b.observe_rate_limit(Some(1_000), Some(reset));
        b.observe_rate_limit(Some(1_500), Some(reset));
        assert_eq!(b.upstream_room(), Some(1_000));
        // The next window starts afresh.
        b.observe_rate_limit(Some(60_000), Some(reset + Duration::from_secs(900)));
        assert_eq!(b.upstream_room(), Some(60_000));
    }

    #[tokio::test(start_paused = true)]
    async fn a_credential_gets_its_rate_and_four_requests_in_flight() {
        let budgets = Arc::new(RequestBudgets::new(10));
        let start = Instant::now();
        let peak = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let now = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let tasks: Vec<_> = (0..40)
            .map(|_| {
                let (budgets, peak, now) = (budgets.clone(), peak.clone(), now.clone());
                tokio::spawn(async move {
                    let budget = budgets.get("ns/dialog360");
                    let _permit = budget.enter().await;
                    let n = now.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                    peak.fetch_max(n, std::sync::atomic::Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    now.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        assert!(peak.load(std::sync::atomic::Ordering::SeqCst) <= 4);
        // 40 requests at 10 per second, the first 10 at once: at least 3 s.
        assert!(
            start.elapsed() >= Duration::from_secs(3),
            "{:?}",
            start.elapsed()
        );
        // Another credential is not held back by this one.
        let other = budgets.get("ns/other");
        let t = Instant::now();
        drop(other.enter().await);
        assert_eq!(t.elapsed(), Duration::ZERO);
    }

    const WINDOW: Duration = Duration::from_secs(15 * 60);

    #[tokio::test(start_paused = true)]
    async fn an_unmetered_budget_waits_only_for_the_upstream_window() {
        let b = RequestBudget::unmetered(MAX_IN_FLIGHT_PER_CREDENTIAL);
        let start = Instant::now();
        for _ in 0..10_000 {
            drop(b.enter().await);
        }
        assert_eq!(start.elapsed(), Duration::ZERO, "no local rate");
        // X said nothing remains until a reset 2 s ahead: the next request waits for it (and
        // the one-second margin X's whole-second resets need).
        b.observe_rate_limit(Some(0), Some(SystemTime::now() + Duration::from_secs(2)));
        assert_eq!(b.upstream_room(), Some(0));
        let start = Instant::now();
        drop(b.enter().await);
        let waited = start.elapsed();
        assert!(
            waited >= Duration::from_secs(2) && waited <= Duration::from_secs(3),
            "{waited:?}"
        );
        // The new window is open: no more waiting.
        let start = Instant::now();
        drop(b.enter().await);
        assert_eq!(start.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn a_reset_in_the_past_neither_blocks_nor_spins() {
        let b = RequestBudget::unmetered(MAX_IN_FLIGHT_PER_CREDENTIAL);
        let past = SystemTime::now() - Duration::from_secs(30);
        b.observe_rate_limit(Some(0), Some(past));
        assert_eq!(b.upstream_room(), None);
        let start = Instant::now();
        drop(b.enter().await);
        // Paused time only moves when something sleeps: a loop of short sleeps would show.
        assert_eq!(start.elapsed(), Duration::ZERO);
        // A 429 whose reset is already past (or absent): one second for everyone, not a loop
        // of immediate retries and not a block until some far reset.
        for reset in [Some(past), None] {
            b.observe_refusal(reset);
            let start = Instant::now();
            drop(b.enter().await);
            assert_eq!(start.elapsed(), Duration::from_secs(1), "{reset:?}");
        }
        // A 429 with its reset ahead blocks until then.
        b.observe_refusal(Some(SystemTime::now() + Duration::from_secs(5)));
        let start = Instant::now();
        drop(b.enter().await);
        let waited = start.elapsed();
        assert!(
            waited >= Duration::from_secs(5) && waited <= Duration::from_secs(6),
            "{waited:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_unmetered_credential_has_four_requests_in_flight_and_one_budget() {
        let budgets = Arc::new(RequestBudgets::unmetered());
        let peak = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let now = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let start = Instant::now();
        let tasks: Vec<_> = (0..20)
            .map(|_| {
                let (budgets, peak, now) = (budgets.clone(), peak.clone(), now.clone());
                tokio::spawn(async move {
                    let budget = budgets.get("x:0123");
                    let _permit = budget.enter().await;
                    let n = now.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                    peak.fetch_max(n, std::sync::atomic::Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    now.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(peak.load(std::sync::atomic::Ordering::SeqCst), 4);
        // 20 requests, 4 at a time, 100 ms each: 500 ms, no rate on top.
        assert_eq!(start.elapsed(), Duration::from_millis(500));
        assert!(Arc::ptr_eq(&budgets.get("x:0123"), &budgets.get("x:0123")));
        assert!(!Arc::ptr_eq(&budgets.get("x:0123"), &budgets.get("x:4567")));
    }

    #[tokio::test(start_paused = true)]
    async fn spends_then_waits_for_refill() {
        let b = RateBudget::new(900, WINDOW); // 1 unit per second
        let start = Instant::now();
        b.acquire(900).await;
        assert_eq!(start.elapsed(), Duration::ZERO);
        b.acquire(10).await;
        let waited = start.elapsed();
        assert!(
            waited >= Duration::from_secs(10) && waited < Duration::from_secs(11),
            "{waited:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn oversized_request_is_clamped() {
        let b = RateBudget::new(10, Duration::from_secs(10));
        b.acquire(1000).await;
        assert_eq!(b.available(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn shared_between_callers() {
        let reg = BudgetRegistry::new();
        let a = reg.budget("acct", 100, WINDOW);
        let b = reg.budget("acct", 100, WINDOW);
        let other = reg.budget("other", 100, WINDOW);
        a.acquire(60).await;
        assert_eq!(b.available(), 40);
        assert_eq!(other.available(), 100);
        let start = Instant::now();
        let (x, y) = (a.clone(), b.clone());
        let h1 = tokio::spawn(async move {
            drop(x.acquire(40).await);
        });
        let h2 = tokio::spawn(async move {
            drop(y.acquire(40).await);
        });
        h1.await.unwrap();
        h2.await.unwrap();
        // 40 were available; the second 40 needs 40 * 9 s of refill.
        let waited = start.elapsed();
        assert!(
            waited >= Duration::from_secs(360) && waited < Duration::from_secs(362),
            "{waited:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn upstream_exhaustion_blocks_until_reset() {
        let b = RateBudget::new(1000, WINDOW);
        b.observe_rate_limit(Some(5), Some(SystemTime::now() + Duration::from_secs(60)));
        let start = Instant::now();
        b.acquire(1).await;
        assert_eq!(start.elapsed(), Duration::ZERO);
        b.observe_rate_limit(Some(0), Some(SystemTime::now() + Duration::from_secs(120)));
        b.acquire(1).await;
        let waited = start.elapsed();
        assert!(
            waited >= Duration::from_secs(119) && waited <= Duration::from_secs(121),
            "{waited:?}"
        );
        // A reset in the past does not block.
        b.observe_rate_limit(Some(0), Some(SystemTime::UNIX_EPOCH));
        let t = Instant::now();
        b.acquire(1).await;
        assert_eq!(t.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn never_asks_for_more_than_the_upstream_has_left() {
        let b = RateBudget::new(100_000, WINDOW);
        b.observe_rate_limit(Some(300), Some(SystemTime::now() + Duration::from_secs(30)));
        assert_eq!(b.upstream_room(), Some(300));
        let start = Instant::now();
        b.acquire(200).await;
        assert_eq!(start.elapsed(), Duration::ZERO);
        assert_eq!(b.upstream_room(), Some(100));
        // 500 do not fit in the 100 left: wait for the upstream window to roll over.
        b.acquire(500).await;
        let waited = start.elapsed();
        assert!(
            waited >= Duration::from_secs(30) && waited <= Duration::from_secs(31),
            "{waited:?}"
        );
        assert_eq!(b.upstream_room(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn units_in_flight_are_held_back_from_a_newer_report() {
        let b = RateBudget::new(100_000, WINDOW);
        let reset = SystemTime::now() + Duration::from_secs(30);
        b.observe_rate_limit(Some(1_000), Some(reset));
        let first = b.acquire(500).await;
        let second = b.acquire(300).await;
        // The answer to the first request does not count the second one yet.
        drop(first);
        b.observe_rate_limit(Some(500), Some(reset));
        assert_eq!(b.upstream_room(), Some(200));
        drop(second);
        b.observe_rate_limit(Some(200), Some(reset));
        assert_eq!(b.upstream_room(), Some(200));
    }
}
