//! Stateful, strict, fault-injecting fakes of the three SaaS APIs ctwa-operator talks to:
//! the 360dialog Hub, the 360dialog Signals API and the X Ads API (SPEC section 6).
//!
//! One server on one loopback port serves all three under prefixes:
//!
//! | API | base URL | notes |
//! |---|---|---|
//! | Hub | `http://HOST/hub` | `POST /token`, `POST /partners/{p}/clients/{c}/channels/{ch}/enable_ctwa\|disable_ctwa` |
//! | Signals | `http://HOST/signals` | `/v1/clients/{client}/apps/{app}/keywords…`, postback URLs, `/events`, `/converted_events`, `/event_types` |
//! | X Ads | `http://HOST/x/12` | `/accounts/{account}/web_event_tags…`, `/measurement/conversions/{pixel}` |
//! | admin | `http://HOST/_admin` | see below |
//!
//! Strictness: Hub and Signals need a live Bearer token (issued by `/hub/token`, or added with
//! [`FakeUpstreams::add_static_token`]); X needs a valid OAuth 1.0a HMAC-SHA1 signature over
//! method, URL and query (a wrong key, signature or a tampered query is a 401), credentials
//! granted the account (else 403), and stays within a per-account budget (429 with
//! `x-rate-limit-*` headers, which every X response carries). Page limits and the Conversion
//! API's validation messages are those of SPEC 6.3.
//!
//! A campaign's conversion (`POST converted_events`) makes every event seeded afterwards that
//! it counts appear a second time, as `converted` with id `<id>-converted`; events seeded
//! before it are left alone, as the real API counts conversions as they happen.
//!
//! Events are stored as seeded, so tests can seed malformed ones. Their `date` is parsed as
//! RFC 3339 or as `YYYY-MM-DDTHH:MM:SS[.fff]` in UTC; an event whose date does not parse sorts
//! and filters by the raw text compared with the `YYYY-MM-DDTHH:MM:SS` filter bounds.
//!
//! Hub and Signals responses carry a `Date` from the fake's Signals clock, real time plus an
//! offset ([`FakeUpstreams::set_signals_clock_offset`]), so that tests can give Signals a clock
//! that disagrees with the operator's. [`FakeUpstreams::set_signals_max_page`] makes the events
//! list answer short pages while echoing the `limit` asked, as a server that caps pages
//! silently does.
//!
//! Faults ([`FaultRule`]) are chosen per request by api, operation, path and body text, and
//! answer with 5xx, 429, a hold, a dropped connection or a [`Canned`] answer (any status, body
//! and headers; [`x_errors`] has X's documented errors and a proxy's HTML 400 ready). A rule of
//! only `latency_ms` delays a request and then lets it succeed
//! ([`FakeUpstreams::in_flight`] sees it while it is held).
//!
//! Load is counted per credential ([`RequestRecord::credential`],
//! [`FakeUpstreams::credential_load`]): requests in any sliding window and requests in flight,
//! so that tests can check a per-credential budget from the upstream's side.
//!
//! Admin HTTP API (JSON, not logged, no auth): `GET|DELETE /_admin/requests`,
//! `GET /_admin/conversions`, `POST /_admin/faults` (a [`FaultRule`]), `DELETE /_admin/faults`,
//! `POST /_admin/events/{client}/{app}` (an array of events), `GET /_admin/state`,
//! `POST /_admin/x-rate-limit` ([`XRateLimits`]), `POST /_admin/token-ttl` (`{"seconds":N}`),
//! `POST /_admin/signals-clock` (`{"offset_seconds":N}`), `POST /_admin/signals-max-page`
//! (`{"max":N}` or `{"max":null}`), `POST /_admin/signals-event-types/{client}/{app}` (an
//! array of event type values).
//! The same is available in-process through the methods of [`FakeUpstreams`].
#![forbid(unsafe_code)]
// Handlers return the error response itself as `Err`, the usual axum idiom; boxing every
// error response would only add noise to a test fake.
#![allow(clippy::result_large_err)]

mod admin;
pub mod faults;
mod gate;
mod hub;
pub mod oauth;
mod signals;
pub mod state;
mod x_ads;
pub mod x_errors;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

pub use faults::{Canned, FaultRule};
pub use signals::EVENT_TYPES as SIGNALS_EVENT_TYPES;
pub use state::{
    ConvertedEvent, CredentialLoad, Keyword, PostbackKind, ReceivedConversion, RequestRecord, Tag,
    XCredentials, XRateLimits,
};

use state::Inner;

/// Shared by every handler.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    inner: Mutex<Inner>,
}

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panicking test must not poison the fake for the others.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running set of fakes. Dropping it stops the server.
pub struct FakeUpstreams {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeUpstreams {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakeUpstreams {
    /// Starts the fakes on a random loopback port.
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Starts the fakes on `addr`.
    pub async fn start_on(addr: SocketAddr) -> anyhow::Result<Self> {
        let shared = Arc::new(Shared::default());
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let app = router(shared.clone());
        let server = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!("fake upstreams stopped: {e}");
            }
        });
        Ok(Self {
            addr,
            shared,
            server,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
    pub fn hub_url(&self) -> String {
        format!("http://{}/hub", self.addr)
    }
    pub fn signals_url(&self) -> String {
        format!("http://{}/signals", self.addr)
    }
    pub fn x_url(&self) -> String {
        format!("http://{}/x/12", self.addr)
    }
    pub fn admin_url(&self) -> String {
        format!("http://{}/_admin", self.addr)
    }

    // --- Hub ---

    pub fn add_hub_user(&self, username: &str, password: &str) {
        self.shared
            .lock()
            .hub_users
            .insert(username.into(), password.into());
    }

    /// A ready Bearer token accepted by the Hub and Signals until the fake stops.
    /// Its requests count as credential `static-N` ([`RequestRecord::credential`]), N
    /// counting the static tokens added so far from 1.
    pub fn add_static_token(&self, token: &str) {
        let mut inner = self.shared.lock();
        inner.tokens.insert(token.into(), None);
        if !inner.token_owners.contains_key(token) {
            let n = inner
                .token_owners
                .values()
                .filter(|o| o.starts_with("static-"))
                .count();
            inner
                .token_owners
                .insert(token.into(), format!("static-{}", n + 1));
        }
    }

    /// Lifetime of tokens issued from now on (default 86400 s).
    pub fn set_token_ttl(&self, ttl: Duration) {
        self.shared.lock().token_ttl = Some(ttl);
    }

    /// Expires every token issued so far (static tokens too).
    pub fn expire_all_tokens(&self) {
        let past = Instant::now();
        for expiry in self.shared.lock().tokens.values_mut() {
            *expiry = Some(past);
        }
    }

    pub fn add_channel(&self, partner: &str, client: &str, channel: &str) {
        self.shared
            .lock()
            .channels
            .insert((partner.into(), client.into(), channel.into()), false);
    }

    /// Whether CTWA tracking is on for a channel; None for an unknown channel.
    pub fn ctwa_enabled(&self, partner: &str, client: &str, channel: &str) -> Option<bool> {
        self.shared
            .lock()
            .channels
            .get(&(partner.into(), client.into(), channel.into()))
            .copied()
    }

    // --- Signals ---

    /// Every keyword of an app (active and archived), in creation order.
    pub fn keywords(&self, client: &str, app: &str) -> Vec<Keyword> {
        self.shared
            .lock()
            .keywords
            .get(&(client.into(), app.into()))
            .cloned()
            .unwrap_or_default()
    }

    /// Adds a keyword as if created upstream (behind the operator's back); returns its id.
    pub fn insert_keyword(
        &self,
        client: &str,
        app: &str,
        text: &str,
        ad_id: Option<&str>,
        shared: bool,
    ) -> String {
        let mut inner = self.shared.lock();
        let id = inner.next_id("kw");
        inner
            .keywords
            .entry((client.into(), app.into()))
            .or_default()
            .push(Keyword {
                id: id.clone(),
                keyword: text.into(),
                ad_id: ad_id.map(Into::into),
                is_shared: shared,
                status: "active".into(),
            });
        id
    }

    /// Changes or removes a keyword behind the operator's back.
    pub fn edit_keyword(&self, client: &str, app: &str, id: &str, edit: impl FnOnce(&mut Keyword)) {
        let mut inner = self.shared.lock();
        if let Some(k) = inner
            .keywords
            .get_mut(&(client.into(), app.into()))
            .and_then(|ks| ks.iter_mut().find(|k| k.id == id))
        {
            edit(k);
        }
    }

    pub fn remove_keyword(&self, client: &str, app: &str, id: &str) {
        if let Some(ks) = self
            .shared
            .lock()
            .keywords
            .get_mut(&(client.into(), app.into()))
        {
            ks.retain(|k| k.id != id);
        }
    }

    pub fn postback_url(
        &self,
        client: &str,
        app: &str,
        ad: &str,
        kind: PostbackKind,
    ) -> Option<String> {
        self.shared
            .lock()
            .postbacks
            .get(&(client.into(), app.into(), ad.into(), kind))
            .cloned()
    }

    pub fn set_postback_url(
        &self,
        client: &str,
        app: &str,
        ad: &str,
        kind: PostbackKind,
        url: Option<&str>,
    ) {
        let key = (client.into(), app.into(), ad.into(), kind);
        let mut inner = self.shared.lock();
        match url {
            Some(u) => inner.postbacks.insert(key, u.into()),
            None => inner.postbacks.remove(&key),
        };
    }

    /// Adds events to an app's events list (each needs `id` and `date`).
    pub fn seed_events(&self, client: &str, app: &str, events: Vec<Value>) {
        signals::seed_events(&mut self.shared.lock(), client, app, events);
    }

    /// Adds one event dated by the Signals clock, as real Signals dates events by its own
    /// clock rather than the client's: `date` becomes [`FakeUpstreams::signals_now`] as
    /// `YYYY-MM-DDTHH:MM:SS`. An event that is not a JSON object is seeded unchanged.
    pub fn record_event_now(&self, client: &str, app: &str, mut event: Value) {
        let mut inner = self.shared.lock();
        if let Value::Object(fields) = &mut event {
            let date = inner
                .signals_now()
                .strftime("%Y-%m-%dT%H:%M:%S")
                .to_string();
            fields.insert("date".into(), Value::String(date));
        }
        signals::seed_events(&mut inner, client, app, vec![event]);
    }

    /// Sets how far the Signals clock runs ahead of real time (negative: behind). It dates
    /// every Hub and Signals response (`Date`) and [`FakeUpstreams::record_event_now`].
    pub fn set_signals_clock_offset(&self, offset_secs: i64) {
        self.shared.lock().signals_clock_offset = offset_secs;
    }

    /// The Signals clock: real time plus the offset of
    /// [`FakeUpstreams::set_signals_clock_offset`].
    pub fn signals_now(&self) -> jiff::Timestamp {
        self.shared.lock().signals_now()
    }

    /// Caps the events list at `n` events per page whatever `limit` asks for, while the
    /// answer still echoes the `limit` asked and the full `total_count`; None lifts the cap.
    pub fn set_signals_max_page(&self, n: Option<usize>) {
        self.shared.lock().signals_max_page = n;
    }

    /// Restricts the values an app's `event_types` answers (and so the `type`s its
    /// `converted_events` accepts) to `values`, in that order; the default is all nine
    /// documented types ([`SIGNALS_EVENT_TYPES`]). Names are derived (`list_reply` →
    /// `List reply`).
    pub fn set_signals_event_types(&self, client: &str, app: &str, values: &[&str]) {
        self.shared.lock().signals_event_types.insert(
            (client.into(), app.into()),
            values.iter().map(|v| v.to_string()).collect(),
        );
    }

    /// Every campaign conversion set with `POST .../converted_events`, ordered by client, app
    /// and campaign id (the latest POST of each campaign).
    pub fn converted_events(&self) -> Vec<ConvertedEvent> {
        self.shared
            .lock()
            .converted_events
            .values()
            .cloned()
            .collect()
    }

    // --- X Ads ---

    pub fn add_x_credentials(&self, credentials: XCredentials, accounts: &[&str]) {
        let accounts: HashSet<String> = accounts.iter().map(|a| a.to_string()).collect();
        self.shared
            .lock()
            .x_credentials
            .push((credentials, accounts));
    }

    pub fn add_x_account(&self, account: &str, pixel: &str) {
        self.shared
            .lock()
            .x_accounts
            .insert(account.into(), pixel.into());
    }

    /// Every tag of an account, deleted ones included.
    pub fn tags(&self, account: &str) -> Vec<Tag> {
        self.shared
            .lock()
            .tags
            .get(account)
            .cloned()
            .unwrap_or_default()
    }

    /// Adds a single event tag as if created upstream; returns its id.
    pub fn insert_tag(
        &self,
        account: &str,
        name: &str,
        tag_type: &str,
        click: i64,
        view: i64,
    ) -> String {
        x_ads::insert_tag(
            &mut self.shared.lock(),
            account,
            name,
            tag_type,
            click,
            view,
            false,
        )
    }

    pub fn edit_tag(&self, account: &str, id: &str, edit: impl FnOnce(&mut Tag)) {
        if let Some(t) = self
            .shared
            .lock()
            .tags
            .get_mut(account)
            .and_then(|ts| ts.iter_mut().find(|t| t.id == id))
        {
            edit(t);
        }
    }

    /// Every conversion accepted so far (not de-duplicated).
    pub fn conversions(&self) -> Vec<ReceivedConversion> {
        self.shared.lock().conversions.clone()
    }

    /// The most requests of `operation` (e.g. `x.send_conversions`) ever answered at once.
    pub fn peak_concurrency(&self, operation: &str) -> usize {
        self.shared
            .lock()
            .concurrency
            .get(operation)
            .map_or(0, |(_, peak)| *peak)
    }

    /// The most events-list reads of Signals app `client/app` ever answered at once: above 1,
    /// two pollers read it at the same time.
    pub fn peak_pollers(&self, client: &str, app: &str) -> usize {
        self.shared
            .lock()
            .pollers
            .get(&format!("{client}/{app}"))
            .map_or(0, |(_, peak)| *peak)
    }

    /// How many requests of `operation` are being answered right now (e.g. held by a fault's
    /// `latency_ms`): tells a test that a request is in flight.
    pub fn in_flight(&self, operation: &str) -> usize {
        self.shared
            .lock()
            .concurrency
            .get(operation)
            .map_or(0, |(now, _)| *now)
    }

    /// How `credential` (see [`RequestRecord::credential`]: the Hub user for `hub` and
    /// `signals`) loaded `api` (`hub`, `signals` or `x`) since the start or the last
    /// [`FakeUpstreams::clear_credential_load`]: requests, the most that arrived within any
    /// sliding `window`, and the most answered at once. A rate budget of N per second shows as
    /// `max_in_window` over a 1 s window.
    pub fn credential_load(&self, api: &str, credential: &str, window: Duration) -> CredentialLoad {
        let inner = self.shared.lock();
        let Some((_, load)) = inner
            .credential_load
            .iter()
            .find(|((a, c), _)| *a == api && c == credential)
        else {
            return CredentialLoad::default();
        };
        // Arrivals are pushed in order; the widest run within `window` is found with two
        // cursors.
        let arrivals = &load.arrivals;
        let mut max_in_window = 0;
        let mut first = 0;
        for (last, at) in arrivals.iter().enumerate() {
            while at.duration_since(arrivals[first]) >= window {
                first += 1;
            }
            max_in_window = max_in_window.max(last + 1 - first);
        }
        CredentialLoad {
            requests: arrivals.len(),
            max_in_window,
            peak_in_flight: load.peak_in_flight,
            in_flight: load.in_flight,
        }
    }

    /// Forgets the arrivals and peaks of every credential (requests in flight stay counted).
    pub fn clear_credential_load(&self) {
        for load in self.shared.lock().credential_load.values_mut() {
            load.arrivals.clear();
            load.peak_in_flight = load.in_flight;
        }
    }

    /// How many conversions were accepted so far, repeats included.
    pub fn conversion_count(&self) -> usize {
        self.shared.lock().conversions.len()
    }

    /// Distinct `conversion_id`s accepted so far.
    pub fn distinct_conversion_ids(&self) -> HashSet<String> {
        self.shared.lock().conversion_ids.clone()
    }

    /// How many distinct `conversion_id`s were accepted so far (cheap enough to poll).
    pub fn distinct_conversion_count(&self) -> usize {
        self.shared.lock().conversion_ids.len()
    }

    pub fn set_x_rate_limits(&self, limits: XRateLimits) {
        let mut inner = self.shared.lock();
        inner.x_limits = limits;
        inner.x_windows.clear();
    }

    // --- Observation and faults ---

    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared.lock().requests.clone()
    }

    pub fn clear_requests(&self) {
        self.shared.lock().requests.clear();
    }

    pub fn set_fault(&self, rule: FaultRule) {
        self.shared.lock().faults.push(rule);
    }

    pub fn clear_faults(&self) {
        self.shared.lock().faults.clear();
    }
}

fn router(shared: Arc<Shared>) -> Router {
    let apis = Router::new()
        .nest("/hub", hub::routes())
        .nest("/signals", signals::routes())
        .nest("/x/12", x_ads::routes())
        .layer(axum::middleware::from_fn_with_state(
            shared.clone(),
            gate::gate,
        ));
    apis.nest("/_admin", admin::routes()).with_state(shared)
}

/// An error in the shape of the API that answers: X uses `{"errors":[…]}`, 360dialog
/// uses `{"detail": …}`.
pub(crate) fn error_body(api: &str, status: StatusCode, code: &str, message: &str) -> Response {
    let body = if api == "x" {
        json!({"errors": [{"code": code, "message": message}], "request": {"params": {}}})
    } else {
        json!({"detail": message})
    };
    (status, axum::Json(body)).into_response()
}

/// An HTTP `Date` value (RFC 9110 IMF-fixdate), e.g. `Tue, 01 Dec 2026 22:50:21 GMT`.
pub(crate) fn http_date(t: jiff::Timestamp) -> String {
    t.strftime("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

pub(crate) fn now_rfc3339() -> String {
    jiff::Timestamp::try_from(SystemTime::now())
        .map(|t| t.to_string())
        .unwrap_or_default()
}
