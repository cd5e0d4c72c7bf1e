//! Keeping one subscription from costing the others: per-subscription limits on attempts in
//! flight and on rate, a slow start, a share of the workers for failing subscriptions, and a
//! circuit breaker for subscriptions that keep failing.
//!
//! Before an attempt, [`Fairness::admit`] says go, wait in memory for a slot of the same
//! subscription (the claimed delivery stays leased; no database write), or hold the delivery until
//! a given time (it is then left pending, without counting an attempt). After it,
//! [`Fairness::finished`] updates the breaker, and [`Fairness::next_waiting`] hands the caller the
//! next waiting delivery of that subscription, admitted, to attempt in the freed slot.
//!
//! - **In flight.** A subscription has at most `max_in_flight` attempts in flight (1 when
//!   ordered) — but only 1 until an attempt of it has succeeded in this process, and 1 again while
//!   it is failing (slow start): an endpoint that hangs holds one worker, not ten.
//! - **Failing share.** Subscriptions whose last attempt failed hold at most `suspect_limit`
//!   attempts in flight together, so that however many endpoints hang, the rest of the workers
//!   serve the healthy ones.
//! - **Circuit breaker.** After [`TRIP_AFTER`] failures in a row the circuit opens for a pause
//!   that doubles on every failed probe (from 5 s up to 10 min); while it is open the
//!   subscription's backlog is moved out of the queue (the caller postpones it in the database,
//!   and the deliveries waiting in memory are handed back to it), so it costs no worker time; when
//!   the pause ends, one delivery goes as a probe; its success closes the circuit and releases the
//!   backlog.
//!
//! Invariant: a subscription has deliveries waiting in memory only while it has an attempt in
//! flight, whose end calls `next_waiting`; so nothing waits forever.
//!
//! This state is per process. The postponed backlog is in the database, so while one process has a
//! subscription's circuit open, the others do not attempt its deliveries either.

use std::collections::VecDeque;

use foldhash::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use posthorn_core::{Subscription, SubscriptionId};

/// Failures in a row that open the circuit.
pub const TRIP_AFTER: u32 = 3;
const FIRST_PAUSE: Duration = Duration::from_secs(5);
const LONGEST_PAUSE: Duration = Duration::from_secs(600);
/// How many times its in-flight cap a healthy subscription may have waiting in memory.
const DEPTH: usize = 16;
/// The longest a delivery waits in memory for its rate limit's slot (a later slot: back to the
/// queue until then).
pub const MAX_RATE_WAIT: Duration = Duration::from_secs(1);
/// How long a delivery refused by the failing share is put off.
const SHARE_HOLD: Duration = Duration::from_millis(500);

/// Where fairness reads the time and draws the jitter of its holds: [`SystemClock`] in the
/// dispatcher; a clock moved by hand in tests, which then pass time instead of editing state.
pub trait Clock: Send + Sync {
    /// Now, for pauses and slots.
    fn now(&self) -> Instant;
    /// Now as Unix milliseconds, for the times written to the database.
    fn unix_ms(&self) -> i64;
    /// A number below `below`, to spread holds.
    fn jitter(&self, below: u64) -> u64;
}

/// The real time and real randomness.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn unix_ms(&self) -> i64 {
        posthorn_core::time::now_ms()
    }

    fn jitter(&self, below: u64) -> u64 {
        rand::random::<u64>() % below.max(1)
    }
}

/// The circuit breaker of one subscription: closed, or open until a time, then one probe; the
/// pause doubles on every failed probe. Plain state and plain time: `now` is passed in.
#[derive(Debug, Default)]
struct Breaker {
    /// Failures in a row.
    failures: u32,
    /// While open: until when; a probe may go after it.
    open_until: Option<Instant>,
    /// The pause the next opening lasts.
    pause: Duration,
    /// The one probe is in flight.
    probing: bool,
}

impl Breaker {
    /// Whether an attempt must wait: open and not yet due, or its probe already out (or others
    /// still in flight); how long, at least.
    fn holds(&self, now: Instant, in_flight: u32) -> Option<Duration> {
        let until = self.open_until?;
        (now < until || self.probing || in_flight > 0).then(|| until.saturating_duration_since(now))
    }

    /// An attempt goes: a probe, if the circuit is open.
    fn admitted(&mut self) {
        if self.open_until.is_some() {
            self.probing = true;
        }
    }

    /// A success: returns whether it closed the circuit.
    fn succeeded(&mut self) -> bool {
        self.failures = 0;
        self.probing = false;
        self.pause = Duration::ZERO;
        self.open_until.take().is_some()
    }

    /// A failure (`answered`: the receiver said so; else it did not answer, which trips at
    /// once). Returns the pause when it opened the circuit (or opened it again after a probe).
    fn failed(&mut self, now: Instant, answered: bool) -> Option<Duration> {
        self.failures += 1;
        let was_probe = std::mem::take(&mut self.probing);
        let trip = self.failures >= TRIP_AFTER || !answered;
        if !(was_probe || (self.open_until.is_none() && trip)) {
            return None;
        }
        self.pause = if self.pause.is_zero() {
            FIRST_PAUSE
        } else {
            (self.pause * 2).min(LONGEST_PAUSE)
        };
        self.open_until = Some(now + self.pause);
        Some(self.pause)
    }

    /// A person asked for an attempt now.
    fn reset(&mut self) {
        self.open_until = None;
        self.pause = Duration::ZERO;
        self.failures = 0;
    }

    fn is_open(&self, now: Instant) -> bool {
        self.open_until.is_some_and(|t| t > now) || self.probing
    }
}

struct State<T> {
    in_flight: u32,
    /// Of `in_flight`, how many count against the failing share.
    suspect_in_flight: u32,
    breaker: Breaker,
    /// An attempt has succeeded in this process: the full `max_in_flight` applies.
    proven: bool,
    /// The rate limit's next free slot.
    next_slot: Option<Instant>,
    /// The in-flight cap at the last admission, and when the rate limit next allows one.
    cap: u32,
    not_before: Option<Instant>,
    /// The receiver answered 410: nothing more goes while the subscription is being deleted.
    gone: bool,
    /// What this process last wrote of the subscription's failing streak (None: unknown).
    failing: Option<bool>,
    /// Claimed deliveries waiting for a slot, oldest first.
    waiting: VecDeque<T>,
    limits: Limits,
}

impl<T> Default for State<T> {
    fn default() -> Self {
        Self {
            in_flight: 0,
            suspect_in_flight: 0,
            breaker: Breaker::default(),
            proven: false,
            next_slot: None,
            cap: 0,
            not_before: None,
            gone: false,
            failing: None,
            waiting: VecDeque::new(),
            limits: Limits::default(),
        }
    }
}

impl<T> State<T> {
    fn suspect(&self) -> bool {
        self.breaker.failures > 0 || self.breaker.open_until.is_some()
    }
}

/// What to do with a claimed delivery.
#[derive(Debug)]
pub enum Admit<T> {
    /// Attempt it now (a slot is taken: call [`Fairness::finished`] after).
    Go(T),
    /// Attempt it at this instant, the rate limit's slot reserved for it (a slot is taken: call
    /// [`Fairness::finished`] after). The wait is short ([`MAX_RATE_WAIT`]): the attempt waits in
    /// memory rather than go back to the queue and be claimed again.
    GoAt(T, Instant),
    /// It waits in memory for a slot of its subscription.
    Waiting,
    /// Leave it pending until this time (Unix ms).
    HoldUntil(T, i64),
}

/// What an attempt's outcome changed, for the caller to write down.
#[derive(Debug)]
pub struct Change<T> {
    /// The circuit opened (or reopened) until this time (Unix ms): postpone the backlog.
    pub opened_until: Option<i64>,
    /// Failures in a row when it opened.
    pub failures: u32,
    /// The circuit closed after a successful probe: release the backlog.
    pub closed: bool,
    /// The failing streak started (`Some(true)`) or ended (`Some(false)`) as far as this process
    /// knows.
    pub failing: Option<bool>,
    /// Deliveries that were waiting in memory and must be left pending until the given time
    /// (the circuit opened).
    pub hold: Vec<(T, i64)>,
}

impl<T> Default for Change<T> {
    fn default() -> Self {
        Self {
            opened_until: None,
            failures: 0,
            closed: false,
            failing: None,
            hold: Vec::new(),
        }
    }
}

struct Inner<T> {
    subs: HashMap<SubscriptionId, State<T>>,
    suspect_in_flight: u32,
    waiting: usize,
}

pub struct Fairness<T> {
    inner: Mutex<Inner<T>>,
    clock: Arc<dyn Clock>,
    /// Most attempts in flight at once for subscriptions whose last attempt failed.
    suspect_limit: u32,
    /// Most deliveries waiting in memory, all subscriptions together; beyond it they are held.
    waiting_limit: usize,
}

/// What admission needs of a subscription, kept to admit its waiting deliveries.
#[derive(Debug, Clone, Copy, Default)]
struct Limits {
    max_in_flight: u32,
    ordered: bool,
    rate: Option<u32>,
}

impl<T> State<T> {
    /// In-flight cap now: 1 when ordered, and until the subscription has proven itself (slow
    /// start), and while it fails.
    fn cap(&self) -> u32 {
        if self.limits.ordered || !self.proven || self.breaker.failures > 0 {
            1
        } else {
            self.limits.max_in_flight.max(1)
        }
    }
}

impl<T> State<T> {
    /// Claims skip it (and publishes do not hand it over): it cannot take another delivery now.
    fn blocked(&self, now: Instant) -> bool {
        self.gone
            || (self.cap > 0 && self.in_flight >= self.cap && self.waiting.len() >= self.depth())
            || self.breaker.is_open(now)
            || self.not_before.is_some_and(|t| t > now)
    }

    /// How many deliveries may wait in memory before claims skip the subscription: none while
    /// it is unproven or failing (an endpoint that hangs costs no claimed row beyond its one
    /// attempt), [`DEPTH`] times its cap once it succeeds, so that a busy healthy subscription's
    /// slots never idle waiting for the next claim.
    fn depth(&self) -> usize {
        if self.proven && self.breaker.failures == 0 {
            self.cap as usize * DEPTH
        } else {
            0
        }
    }
}

impl<T> Fairness<T> {
    /// Limits for a process with `workers` attempts in flight at most.
    pub fn new(workers: usize) -> Self {
        Self::with_clock(workers, Arc::new(SystemClock))
    }

    /// The same, reading the time from `clock`.
    pub fn with_clock(workers: usize, clock: Arc<dyn Clock>) -> Self {
        Self {
            clock,
            inner: Mutex::new(Inner {
                subs: HashMap::default(),
                suspect_in_flight: 0,
                waiting: 0,
            }),
            suspect_limit: (workers / 2).max(1) as u32,
            waiting_limit: workers.saturating_mul(8).max(64),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner<T>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Unix milliseconds `d` from now.
    fn after(&self, d: Duration) -> i64 {
        self.clock.unix_ms() + d.as_millis() as i64
    }

    pub fn admit(&self, sub: &Subscription, item: T) -> Admit<T> {
        let limits = Limits {
            max_in_flight: sub.spec.max_in_flight,
            ordered: sub.spec.ordered == posthorn_core::subscription::Order::All,
            rate: sub.spec.rate_limit_per_s,
        };
        let mut inner = self.lock();
        let inner = &mut *inner;
        let s = inner.subs.entry(sub.id.clone()).or_default();
        s.limits = limits;
        let now = self.clock.now();
        if s.gone {
            return Admit::HoldUntil(item, self.after(Duration::from_secs(5)));
        }
        if let Some(wait) = s.breaker.holds(now, s.in_flight) {
            return Admit::HoldUntil(item, self.after(wait.max(Duration::from_millis(500))));
        }
        let cap = s.cap();
        s.cap = cap;
        if s.in_flight >= cap {
            if inner.waiting < self.waiting_limit {
                s.waiting.push_back(item);
                inner.waiting += 1;
                return Admit::Waiting;
            }
            // Too much waits already: look again shortly.
            let jitter = self.clock.jitter(200);
            return Admit::HoldUntil(item, self.after(Duration::from_millis(150 + jitter)));
        }
        let suspect = s.suspect();
        if suspect && inner.suspect_in_flight >= self.suspect_limit {
            return Admit::HoldUntil(item, self.after(SHARE_HOLD));
        }
        let mut go_at = None;
        if let Some(rate) = limits.rate.and_then(NonZeroU32::new) {
            // Evenly spaced, a burst of one: each admission reserves the next slot, one
            // interval after the last (no one-second window holds more than the rate). A slot
            // within MAX_RATE_WAIT is waited for in memory; later ones go back to the queue.
            let interval = Duration::from_secs(1) / rate.get();
            let slot = s.next_slot.map_or(now, |t| t.max(now));
            if slot > now + MAX_RATE_WAIT {
                s.not_before = Some(slot);
                return Admit::HoldUntil(item, self.after(slot - now));
            }
            s.next_slot = Some(slot + interval);
            // Claims skip it while its next slot is ahead.
            s.not_before = Some(slot + interval);
            if slot > now {
                go_at = Some(slot);
            }
        }
        s.breaker.admitted();
        s.in_flight += 1;
        if suspect {
            s.suspect_in_flight += 1;
            inner.suspect_in_flight += 1;
        }
        match go_at {
            Some(at) => Admit::GoAt(item, at),
            None => Admit::Go(item),
        }
    }

    /// Records the end of an admitted attempt: `succeeded`, or failed with an answer from the
    /// receiver (`answered`), or failed without one (a timeout, a refused connection), which
    /// opens the circuit at once: an endpoint that does not answer holds a worker per attempt.
    pub fn finished(&self, sub_id: &SubscriptionId, succeeded: bool, answered: bool) -> Change<T> {
        let mut inner = self.lock();
        let inner = &mut *inner;
        let s = inner.subs.entry(sub_id.clone()).or_default();
        s.in_flight = s.in_flight.saturating_sub(1);
        if s.suspect_in_flight > 0 {
            s.suspect_in_flight -= 1;
            inner.suspect_in_flight = inner.suspect_in_flight.saturating_sub(1);
        }
        let mut change = Change::default();
        if succeeded {
            s.proven = true;
            change.closed = s.breaker.succeeded();
            if s.failing != Some(false) {
                s.failing = Some(false);
                change.failing = Some(false);
            }
        } else {
            if s.failing != Some(true) {
                s.failing = Some(true);
                change.failing = Some(true);
            }
            if let Some(pause) = s.breaker.failed(self.clock.now(), answered) {
                let until = self.after(pause);
                change.opened_until = Some(until);
                change.failures = s.breaker.failures;
                // What waits in memory goes back to the queue, postponed with the backlog.
                inner.waiting -= s.waiting.len();
                change.hold = s.waiting.drain(..).map(|item| (item, until)).collect();
            }
        }
        change
    }

    /// A person asked for an attempt now: the circuit closes and the failures are forgotten (the
    /// subscription stays unproven until an attempt succeeds, so one attempt goes first).
    pub fn reset(&self, sub_id: &SubscriptionId) {
        let mut inner = self.lock();
        if let Some(s) = inner.subs.get_mut(sub_id) {
            s.breaker.reset();
        }
    }

    /// The next delivery waiting in memory for a slot of this subscription, if a slot is free:
    /// the caller passes it to [`Fairness::admit`] again. Call after every delivery of the
    /// subscription is dealt with (attempted, held or queued), so that nothing waits forever.
    pub fn next_waiting(&self, sub_id: &SubscriptionId) -> Option<T> {
        let mut inner = self.lock();
        let inner = &mut *inner;
        let s = inner.subs.get_mut(sub_id)?;
        if s.in_flight >= s.cap() {
            return None;
        }
        let item = s.waiting.pop_front()?;
        inner.waiting -= 1;
        Some(item)
    }

    /// The subscriptions this process cannot admit an attempt of right now (at their in-flight
    /// cap with enough waiting in memory, see `State::depth`; with their circuit open; or waiting
    /// on their rate limit): claiming skips their deliveries, which would only wait. At most
    /// `most` of them.
    pub fn blocked(&self, most: usize) -> Vec<SubscriptionId> {
        let now = self.clock.now();
        self.lock()
            .subs
            .iter()
            .filter(|(_, s)| s.blocked(now))
            .take(most)
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Whether a delivery of this subscription would be taken now: claims would not skip it.
    pub fn takes(&self, sub_id: &SubscriptionId) -> bool {
        self.lock()
            .subs
            .get(sub_id)
            .is_none_or(|s| !s.blocked(self.clock.now()))
    }

    /// How many deliveries wait in memory, all subscriptions together.
    pub fn waiting(&self) -> usize {
        self.lock().waiting
    }

    /// The receiver answered 410 Gone: admit nothing more of this subscription. Returns what
    /// waited in memory, to leave pending (the deletion cancels it).
    pub fn gone(&self, sub_id: &SubscriptionId) -> Vec<T> {
        let mut inner = self.lock();
        let inner = &mut *inner;
        let s = inner.subs.entry(sub_id.clone()).or_default();
        s.gone = true;
        inner.waiting -= s.waiting.len();
        s.waiting.drain(..).collect()
    }

    /// Forgets a subscription (deleted). Returns what waited in memory.
    pub fn forget(&self, sub_id: &SubscriptionId) -> Vec<T> {
        let mut inner = self.lock();
        let inner = &mut *inner;
        let Some(s) = inner.subs.remove(sub_id) else {
            return Vec::new();
        };
        inner.waiting -= s.waiting.len();
        inner.suspect_in_flight = inner.suspect_in_flight.saturating_sub(s.suspect_in_flight);
        s.waiting.into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn id(s: &str) -> SubscriptionId {
        SubscriptionId::stored(s.to_owned())
    }

    fn sub(extra: serde_json::Value) -> Subscription {
        let mut spec = json!({"name": "n", "service": "http", "config": {"url": "https://e.com"}, "events": ["*"]});
        spec.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        Subscription {
            id: id("sub_1"),
            owner: "admin".into(),
            spec: serde_json::from_value(spec).unwrap(),
            disabled_reason: None,
            secret: posthorn_core::Secret::generate(),
            previous_secret: None,
            created_at: 0,
            updated_at: 0,
        }
    }

    fn go<T>(a: Admit<T>) -> bool {
        matches!(a, Admit::Go(_))
    }

    /// A clock that moves only when told, with no jitter.
    struct Hand {
        start: Instant,
        passed: Mutex<Duration>,
    }

    impl Hand {
        fn new() -> Arc<Self> {
            Arc::new(Self {
                start: Instant::now(),
                passed: Mutex::new(Duration::ZERO),
            })
        }

        fn pass(&self, d: Duration) {
            *self.passed.lock().unwrap() += d;
        }
    }

    impl Clock for Hand {
        fn now(&self) -> Instant {
            self.start + *self.passed.lock().unwrap()
        }

        fn unix_ms(&self) -> i64 {
            1_800_000_000_000 + self.passed.lock().unwrap().as_millis() as i64
        }

        fn jitter(&self, _below: u64) -> u64 {
            0
        }
    }

    #[test]
    fn the_breaker_opens_doubles_and_closes_as_time_passes() {
        let t0 = Instant::now();
        let mut b = Breaker::default();
        assert_eq!(b.failed(t0, true), None);
        assert_eq!(b.failed(t0, true), None);
        assert_eq!(b.failed(t0, true), Some(FIRST_PAUSE), "opens at the third");
        assert!(b.is_open(t0));
        assert!(b.holds(t0, 0).is_some());
        let due = t0 + FIRST_PAUSE;
        assert_eq!(b.holds(due, 0), None, "the pause over, a probe may go");
        assert_eq!(
            b.holds(due, 1),
            Some(Duration::ZERO),
            "not beside an attempt in flight"
        );
        b.admitted();
        assert!(b.is_open(due), "one probe at a time");
        assert_eq!(
            b.failed(due, true),
            Some(FIRST_PAUSE * 2),
            "a failed probe doubles it"
        );
        let mut later = due + FIRST_PAUSE * 2;
        for _ in 0..10 {
            b.admitted();
            let pause = b.failed(later, true).unwrap();
            assert!(pause <= LONGEST_PAUSE);
            later += pause;
        }
        assert_eq!(b.pause, LONGEST_PAUSE);
        b.admitted();
        assert!(b.succeeded(), "a successful probe closes it");
        assert!(!b.is_open(later));
        assert_eq!(
            b.failed(later, false),
            Some(FIRST_PAUSE),
            "no answer opens at once"
        );
    }

    #[test]
    fn the_rate_reserves_evenly_spaced_slots_within_a_second() {
        let clock = Hand::new();
        let f = Fairness::with_clock(100, clock.clone());
        let s = sub(json!({"rate_limit_per_s": 5, "max_in_flight": 100}));
        prove(&f, &s);
        let start = clock.now();
        let mut slots = Vec::new();
        let mut held = 0;
        for i in 0..20 {
            match f.admit(&s, i) {
                Admit::Go(_) => slots.push(Duration::ZERO),
                Admit::GoAt(_, at) => slots.push(at - start),
                Admit::HoldUntil(..) => held += 1,
                Admit::Waiting => {}
            }
        }
        // One slot every 200 ms (the proving attempt took the first), up to a second ahead.
        assert_eq!(slots.len(), 5, "{slots:?}");
        for pair in slots.windows(2) {
            let gap = pair[1].saturating_sub(pair[0]);
            assert_eq!(gap, Duration::from_millis(200), "{slots:?}");
        }
        assert_eq!(held, 15);
        assert!(
            f.blocked(10).contains(&id("sub_1")),
            "claims skip it meanwhile"
        );
        // Once the last reserved slot and its interval have passed, the next goes at once.
        clock.pass(Duration::from_millis(1200));
        for _ in 0..5 {
            f.finished(&id("sub_1"), true, true);
        }
        assert!(f.blocked(10).is_empty());
        assert!(go(f.admit(&s, 99)));
    }

    /// Admits one delivery and lets it succeed, so that the full cap applies.
    fn prove(f: &Fairness<u32>, s: &Subscription) {
        assert!(go(f.admit(s, 0)));
        f.finished(&s.id, true, true);
    }

    #[test]
    fn in_flight_is_capped_and_the_rest_waits_in_memory() {
        let f = Fairness::new(100);
        let s = sub(json!({"max_in_flight": 2}));
        prove(&f, &s);
        assert!(go(f.admit(&s, 1)));
        assert!(go(f.admit(&s, 2)));
        for i in 3..2 + 2 * DEPTH as u32 {
            assert!(matches!(f.admit(&s, i), Admit::Waiting));
        }
        assert!(
            f.blocked(10).is_empty(),
            "a healthy subscription is claimed for until DEPTH times its cap wait"
        );
        assert!(matches!(f.admit(&s, 99), Admit::Waiting));
        assert_eq!(f.blocked(10), ["sub_1"]);
        assert_eq!(f.next_waiting(&id("sub_1")), None, "no slot is free");
        f.finished(&id("sub_1"), true, true);
        assert_eq!(f.next_waiting(&id("sub_1")), Some(3));
        assert_eq!(f.waiting(), 2 * DEPTH - 1);
        assert!(go(f.admit(&s, 3)));
    }

    #[test]
    fn an_unproven_subscription_is_skipped_while_its_attempt_flies() {
        let f = Fairness::new(100);
        let s = sub(json!({}));
        assert!(f.blocked(10).is_empty());
        assert!(go(f.admit(&s, 1)));
        assert_eq!(
            f.blocked(10),
            ["sub_1"],
            "while its one attempt flies, claims leave an endpoint that may hang alone"
        );
        assert!(
            matches!(f.admit(&s, 2), Admit::Waiting),
            "what a claim took before waits for the slot"
        );
        f.finished(&id("sub_1"), true, true);
        assert!(f.blocked(10).is_empty());
    }

    #[test]
    fn slow_start_one_in_flight_until_a_success() {
        let f = Fairness::new(100);
        let s = sub(json!({}));
        assert!(go(f.admit(&s, 1)));
        assert!(matches!(f.admit(&s, 2), Admit::Waiting));
        f.finished(&id("sub_1"), true, true);
        assert_eq!(f.next_waiting(&id("sub_1")), Some(2));
        for i in 0..10 {
            assert!(go(f.admit(&s, i)), "the full cap of 10 once proven");
        }
        assert!(matches!(f.admit(&s, 10), Admit::Waiting));
    }

    #[test]
    fn ordered_means_one_at_a_time() {
        let f = Fairness::new(100);
        let s = sub(json!({"ordered": true}));
        prove(&f, &s);
        assert!(go(f.admit(&s, 1)));
        assert!(matches!(f.admit(&s, 2), Admit::Waiting));
    }

    #[test]
    fn the_rate_is_limited() {
        let f = Fairness::new(100);
        let s = sub(json!({"rate_limit_per_s": 5, "max_in_flight": 100}));
        let admitted = (0..20)
            .filter(|i| {
                let admitted = go(f.admit(&s, *i));
                if admitted {
                    f.finished(&id("sub_1"), true, true);
                }
                admitted
            })
            .count();
        assert_eq!(admitted, 1, "evenly spaced: one now, the next in 200 ms");
    }

    #[test]
    fn failing_subscriptions_share_half_the_workers() {
        let f = Fairness::new(4);
        let subs: Vec<Subscription> = (0..4)
            .map(|i| {
                let mut s = sub(json!({}));
                s.id = id(&format!("sub_{i}"));
                s
            })
            .collect();
        for s in &subs {
            assert!(go(f.admit(s, 0)));
            f.finished(&s.id, false, true);
        }
        assert!(go(f.admit(&subs[0], 1)));
        assert!(go(f.admit(&subs[1], 1)));
        assert!(
            matches!(f.admit(&subs[2], 1), Admit::HoldUntil(1, _)),
            "two of four workers are the failing share"
        );
        f.finished(&id("sub_0"), true, true);
        assert!(go(f.admit(&subs[2], 1)));
    }

    #[test]
    fn the_circuit_opens_after_failures_probes_and_closes() {
        let clock = Hand::new();
        let f = Fairness::with_clock(100, clock.clone());
        let s = sub(json!({}));
        let mut change = Change::default();
        assert!(go(f.admit(&s, 0)));
        assert!(matches!(f.admit(&s, 99), Admit::Waiting));
        for i in 0..TRIP_AFTER {
            if i > 0 {
                assert!(go(f.admit(&s, i)));
            }
            change = f.finished(&id("sub_1"), false, true);
            if i == 0 {
                assert_eq!(change.failing, Some(true));
                assert_eq!(f.next_waiting(&id("sub_1")), Some(99));
            }
        }
        assert_eq!(
            change.opened_until,
            Some(clock.unix_ms() + FIRST_PAUSE.as_millis() as i64)
        );
        assert!(matches!(f.admit(&s, 5), Admit::HoldUntil(5, _)));
        clock.pass(FIRST_PAUSE - Duration::from_millis(1));
        assert!(
            matches!(f.admit(&s, 5), Admit::HoldUntil(5, _)),
            "still open a millisecond before the pause ends"
        );
        // The pause over, one probe goes; its success closes the circuit.
        clock.pass(Duration::from_millis(1));
        assert!(go(f.admit(&s, 6)));
        assert!(
            matches!(f.admit(&s, 7), Admit::HoldUntil(7, _)),
            "one probe at a time"
        );
        let change = f.finished(&id("sub_1"), true, true);
        assert!(change.closed);
        assert_eq!(change.failing, Some(false));
        assert!(go(f.admit(&s, 8)));
    }

    #[test]
    fn no_answer_opens_the_circuit_at_once() {
        let f = Fairness::new(100);
        let s = sub(json!({}));
        assert!(go(f.admit(&s, 0)));
        let change = f.finished(&id("sub_1"), false, false);
        assert!(change.opened_until.is_some());
        assert_eq!(
            f.blocked(10),
            ["sub_1"],
            "claims skip it while the circuit is open"
        );
        assert!(matches!(f.admit(&s, 1), Admit::HoldUntil(1, _)));
    }

    #[test]
    fn what_waits_goes_back_when_the_circuit_opens() {
        let f = Fairness::new(100);
        let s = sub(json!({}));
        for _ in 0..TRIP_AFTER - 1 {
            assert!(go(f.admit(&s, 0)));
            f.finished(&id("sub_1"), false, true);
        }
        assert!(go(f.admit(&s, 1)));
        assert!(matches!(f.admit(&s, 2), Admit::Waiting));
        assert!(matches!(f.admit(&s, 3), Admit::Waiting));
        let change = f.finished(&id("sub_1"), false, true);
        let until = change.opened_until.unwrap();
        assert_eq!(change.hold, [(2, until), (3, until)]);
        assert_eq!(f.waiting(), 0);
    }
}
