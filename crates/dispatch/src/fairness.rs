//! Keeping one subscription from costing the others: per-subscription limits on attempts in
//! flight and on rate, and a circuit breaker for subscriptions that keep failing.
//!
//! Before an attempt, [`Fairness::admit`] says go, or hold the delivery until a given time (it is
//! then left pending, without counting an attempt). After it, [`Fairness::finished`] updates the
//! breaker: after [`TRIP_AFTER`] failures in a row the circuit opens for a pause that doubles on
//! every failed probe (from 5 s up to 10 min); while it is open the subscription's backlog is moved
//! out of the queue (the caller postpones it in the database), so it costs no worker time; when the
//! pause ends, one delivery goes as a probe; its success closes the circuit and releases the
//! backlog.
//!
//! This state is per process. The postponed backlog is in the database, so while one process has a
//! subscription's circuit open, the others do not attempt its deliveries either.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use posthorn_core::time::now_ms;
use posthorn_core::Subscription;

/// Failures in a row that open the circuit.
pub const TRIP_AFTER: u32 = 3;
const FIRST_PAUSE: Duration = Duration::from_secs(5);
const LONGEST_PAUSE: Duration = Duration::from_secs(600);

#[derive(Default)]
struct State {
    in_flight: u32,
    failures: u32,
    /// While open: until when; a probe may go after it.
    open_until: Option<Instant>,
    pause: Duration,
    probing: bool,
    limiter: Option<(u32, DefaultDirectRateLimiter)>,
    /// The in-flight cap at the last admission, and when the rate limit next allows one.
    cap: u32,
    not_before: Option<Instant>,
    /// The receiver answered 410: nothing more goes while the subscription is being deleted.
    gone: bool,
    /// What this process last wrote of the subscription's failing streak (None: unknown).
    failing: Option<bool>,
}

/// What to do with a claimed delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    Go,
    /// Leave it pending until this time (Unix ms).
    HoldUntil(i64),
}

/// What an attempt's outcome changed, for the caller to write down.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Change {
    /// The circuit opened (or reopened) until this time (Unix ms): postpone the backlog.
    pub opened_until: Option<i64>,
    /// The circuit closed after a successful probe: release the backlog.
    pub closed: bool,
    /// The failing streak started (`Some(true)`) or ended (`Some(false)`) as far as this process
    /// knows.
    pub failing: Option<bool>,
}

#[derive(Default)]
pub struct Fairness {
    subs: Mutex<HashMap<String, State>>,
}

fn millis_from_now(d: Duration) -> i64 {
    now_ms() + d.as_millis() as i64
}

impl Fairness {
    pub fn admit(&self, sub: &Subscription) -> Admit {
        let mut subs = self.subs.lock().unwrap_or_else(|p| p.into_inner());
        let s = subs.entry(sub.id.clone()).or_default();
        let now = Instant::now();
        if s.gone {
            return Admit::HoldUntil(millis_from_now(Duration::from_secs(5)));
        }
        if let Some(until) = s.open_until {
            if now < until || s.probing || s.in_flight > 0 {
                let wait = until
                    .saturating_duration_since(now)
                    .max(Duration::from_millis(500));
                return Admit::HoldUntil(millis_from_now(wait));
            }
            s.probing = true;
        }
        let cap = if sub.spec.ordered {
            1
        } else {
            sub.spec.max_in_flight
        };
        s.cap = cap;
        if s.in_flight >= cap {
            // A slot frees when an attempt ends; look again shortly.
            let jitter = rand::random::<u64>() % 200;
            return Admit::HoldUntil(millis_from_now(Duration::from_millis(150 + jitter)));
        }
        if let Some(rate) = sub.spec.rate_limit_per_s.and_then(NonZeroU32::new) {
            if s.limiter.as_ref().is_none_or(|(r, _)| *r != rate.get()) {
                // A burst of one: deliveries are spaced evenly, so no one-second window holds
                // more than the rate (a burst of `rate` would let twice that into the first).
                let quota = Quota::per_second(rate).allow_burst(NonZeroU32::MIN);
                s.limiter = Some((rate.get(), RateLimiter::direct(quota)));
            }
            if let Some((_, limiter)) = &s.limiter {
                if let Err(not_until) = limiter.check() {
                    let wait = not_until.wait_time_from(DefaultClock::default().now());
                    s.not_before = Some(now + wait);
                    return Admit::HoldUntil(millis_from_now(wait.max(Duration::from_millis(1))));
                }
            }
        }
        s.in_flight += 1;
        Admit::Go
    }

    /// Records the end of an admitted attempt.
    pub fn finished(&self, sub_id: &str, succeeded: bool) -> Change {
        let mut subs = self.subs.lock().unwrap_or_else(|p| p.into_inner());
        let s = subs.entry(sub_id.to_owned()).or_default();
        s.in_flight = s.in_flight.saturating_sub(1);
        let mut change = Change::default();
        let was_probe = std::mem::take(&mut s.probing);
        if succeeded {
            s.failures = 0;
            if s.open_until.take().is_some() {
                change.closed = true;
            }
            s.pause = Duration::ZERO;
            if s.failing != Some(false) {
                s.failing = Some(false);
                change.failing = Some(false);
            }
        } else {
            s.failures += 1;
            if s.failing != Some(true) {
                s.failing = Some(true);
                change.failing = Some(true);
            }
            if was_probe || (s.open_until.is_none() && s.failures >= TRIP_AFTER) {
                s.pause = if s.pause.is_zero() {
                    FIRST_PAUSE
                } else {
                    (s.pause * 2).min(LONGEST_PAUSE)
                };
                s.open_until = Some(Instant::now() + s.pause);
                change.opened_until = Some(millis_from_now(s.pause));
            }
        }
        change
    }

    /// The subscriptions this process cannot admit an attempt of right now (at their in-flight
    /// cap, or waiting on their rate limit): claiming skips their deliveries, which would only be
    /// held again. At most `most` of them.
    pub fn blocked(&self, most: usize) -> Vec<String> {
        let now = Instant::now();
        self.subs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|(_, s)| {
                s.gone
                    || (s.cap > 0 && s.in_flight >= s.cap)
                    || s.not_before.is_some_and(|t| t > now)
            })
            .take(most)
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// The receiver answered 410 Gone: admit nothing more of this subscription.
    pub fn gone(&self, sub_id: &str) {
        self.subs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(sub_id.to_owned())
            .or_default()
            .gone = true;
    }

    /// Forgets a subscription (deleted).
    pub fn forget(&self, sub_id: &str) {
        self.subs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(sub_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sub(extra: serde_json::Value) -> Subscription {
        let mut spec = json!({"name": "n", "service": "http", "config": {"url": "https://e.com"}, "events": ["*"]});
        spec.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        Subscription {
            id: "sub_1".into(),
            owner: "admin".into(),
            spec: serde_json::from_value(spec).unwrap(),
            disabled_reason: None,
            secret: posthorn_core::Secret::generate(),
            previous_secret: None,
            created_at: 0,
            updated_at: 0,
        }
    }

    #[test]
    fn in_flight_is_capped() {
        let f = Fairness::default();
        let s = sub(json!({"max_in_flight": 2}));
        assert_eq!(f.admit(&s), Admit::Go);
        assert_eq!(f.admit(&s), Admit::Go);
        assert!(matches!(f.admit(&s), Admit::HoldUntil(_)));
        assert_eq!(f.blocked(10), ["sub_1"]);
        f.finished("sub_1", true);
        assert!(f.blocked(10).is_empty());
        assert_eq!(f.admit(&s), Admit::Go);
    }

    #[test]
    fn ordered_means_one_at_a_time() {
        let f = Fairness::default();
        let s = sub(json!({"ordered": true}));
        assert_eq!(f.admit(&s), Admit::Go);
        assert!(matches!(f.admit(&s), Admit::HoldUntil(_)));
    }

    #[test]
    fn the_rate_is_limited() {
        let f = Fairness::default();
        let s = sub(json!({"rate_limit_per_s": 5, "max_in_flight": 100}));
        let admitted = (0..20).filter(|_| f.admit(&s) == Admit::Go).count();
        assert_eq!(admitted, 1, "evenly spaced: one now, the next in 200 ms");
    }

    #[test]
    fn the_circuit_opens_after_failures_probes_and_closes() {
        let f = Fairness::default();
        let s = sub(json!({}));
        let mut change = Change::default();
        for i in 0..TRIP_AFTER {
            assert_eq!(f.admit(&s), Admit::Go);
            change = f.finished("sub_1", false);
            if i == 0 {
                assert_eq!(change.failing, Some(true));
            }
        }
        assert!(change.opened_until.is_some());
        assert!(matches!(f.admit(&s), Admit::HoldUntil(_)));
        // The pause over, one probe goes; its success closes the circuit.
        f.subs.lock().unwrap().get_mut("sub_1").unwrap().open_until = Some(Instant::now());
        assert_eq!(f.admit(&s), Admit::Go);
        assert!(
            matches!(f.admit(&s), Admit::HoldUntil(_)),
            "one probe at a time"
        );
        let change = f.finished("sub_1", true);
        assert!(change.closed);
        assert_eq!(change.failing, Some(false));
        assert_eq!(f.admit(&s), Admit::Go);
    }
}
