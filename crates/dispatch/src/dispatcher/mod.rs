//! The dispatch loop.
//!
//! Publishes through this process hand their deliveries over as they commit, already leased
//! ([`Handoff`]); a few are started at once, a large fan-out by the loop. One task claims due
//! deliveries in batches — those left to the queue, retries, another process's — and spawns an
//! attempt for each (a worker permit each); attempts send their outcome to the settler task, which writes them in batches (one
//! transaction for many outcomes). A claimed delivery whose subscription is at its in-flight cap
//! waits in memory, still leased, and the task that frees a slot of that subscription attempts it
//! next ([`Fairness`]); claims skip the subscriptions that cannot take more. A renewer task extends
//! the lease of everything claimed and not yet settled. When nothing is due, the loop sleeps until
//! the earliest pending delivery falls due (at most a second, so deliveries made due by another
//! process are seen), or until a publish or a freed slot wakes it.

use foldhash::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::FutureExt;
use posthorn_core::index::IndexedSubscription;
use posthorn_core::service::{Attempt, Report, Verdict};
use posthorn_core::subscription::{Compiled, Order};
use posthorn_core::time::now_ms;
use posthorn_core::{AttemptOutcome, DeliveryStatus, Subscription, Visibility};
use posthorn_core::{DeliveryId, SubscriptionId};
use posthorn_store::tally::SubscriptionTally;
use posthorn_store::{
    AttemptRecord, Claimed, Handoff, Publisher, Store, StoreError, StoredAttempt,
    SubscriptionCache, SubscriptionWriter,
};
use tokio::sync::{mpsc, Notify, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::fairness::{Admit, Fairness};

mod consequences;
mod meters;
mod order;

use consequences::{consequences, Effect, OneOff, Outcome};
use order::destination_order;

#[derive(Debug, Clone)]
pub struct DispatchConfig {
    /// Attempts in flight at once, in this process.
    pub workers: usize,
    /// How long a claim holds a delivery before another process may take it over; renewed every
    /// third of it while the attempt runs.
    pub lease: Duration,
    /// How long shutdown waits for attempts in flight before handing them back.
    pub grace: Duration,
    /// Identifies this process in leases.
    pub process_id: String,
    /// A subscription whose deliveries have all failed for this long is disabled.
    pub disable_after: Duration,
    /// Where each attempt is counted for `/metrics`, per subscription.
    pub tally: SubscriptionTally,
}

/// How long a delivery of a disabled subscription is put off before it is looked at again
/// (enabling the subscription makes its deliveries due at once).
const HOLD_WHILE_DISABLED_MS: i64 = 3_600_000;
/// Most outcomes written in one transaction.
const SETTLE_BATCH: usize = 512;

/// How many finished attempts may wait for the writer while it writes the last batch. So a
/// process killed at any moment has sent at most `workers + 2 * outcome_queue(workers)` attempts
/// it has not recorded (in flight, queued, being written): the bound on duplicates a kill causes.
const fn outcome_queue(workers: usize) -> usize {
    workers * 2 + 16
}
/// Most subscriptions a claim skips by name (the rest are claimed and held).
const MAX_SKIPPED: usize = 1000;
/// Most deliveries one claim takes.
const CLAIM_BATCH: usize = 256;
/// A large fan-out's attempts are started this many at a time, the loop yielding in between.
const START_CHUNK: usize = 32;
/// How long the loop sleeps when due deliveries exist but all belong to subscriptions it skips
/// (a freed slot wakes it sooner).
const SKIPPED_IDLE: Duration = Duration::from_millis(20);
/// Longest sleep when nothing is due: bounds how late a delivery made due elsewhere is seen.
const MAX_IDLE: Duration = Duration::from_secs(1);

#[derive(Clone)]
pub struct Dispatcher {
    store: Store,
    cache: SubscriptionCache,
    /// The consequences of attempts (a 410 deletes, a long failure disables) write through it.
    writer: SubscriptionWriter,
    /// The service's own events go out through it.
    publisher: Publisher,
    config: Arc<DispatchConfig>,
    wake: Arc<Notify>,
    fairness: Arc<Fairness<Claimed>>,
    /// Claimed and not yet settled (in flight or waiting in memory): their leases are renewed.
    claimed: ClaimedIds,
    handed_over: Arc<HandedOver>,
    /// The subscriptions the last claim skipped, when it left due deliveries of theirs (empty
    /// otherwise): a slot freed by one of them claims again.
    skipped_due: Arc<Mutex<HashSet<SubscriptionId>>>,
    /// This process's attempt metrics, their handles kept.
    meters: Arc<meters::Meters>,
}

/// Deliveries handed over by the publishes of this process, already leased to it ([`Handoff`]).
#[derive(Default)]
struct HandedOver {
    /// While the loop runs: its workers and where attempts report.
    running: Mutex<Option<Running>>,
    /// Handed over and not started yet (a large fan-out, or no worker was free): the loop
    /// starts them before it claims.
    handed: Mutex<Vec<Claimed>>,
}

#[derive(Clone)]
struct Running {
    workers: Arc<Semaphore>,
    done: mpsc::Sender<Outcome>,
    stop: CancellationToken,
}

/// Publishes through this process hand over the deliveries that workers are free for and that
/// claims would not skip: inserted leased to this process, they start as soon as the commit is
/// durable, with no claim and no read of the event back.
impl Handoff for Dispatcher {
    fn lease(&self) -> (&str, i64) {
        (
            &self.config.process_id,
            self.config.lease.as_millis() as i64,
        )
    }

    fn room(&self) -> usize {
        let free = match &*lock(&self.handed_over.running) {
            Some(r) => r.workers.available_permits(),
            None => return 0,
        };
        free.saturating_sub(lock(&self.handed_over.handed).len())
    }

    fn takes(&self, subscription_id: &posthorn_core::SubscriptionId) -> bool {
        self.fairness.takes(subscription_id)
    }

    fn take(&self, deliveries: Vec<Claimed>, queued: bool) {
        let running = lock(&self.handed_over.running).clone();
        // Not running (shutting down): what is leased is handed back when the loop ends.
        let mut rest = Vec::new();
        if let Some(running) = running.filter(|_| !deliveries.is_empty()) {
            lock(&self.claimed).extend(deliveries.iter().map(|c| c.delivery_id.clone()));
            let deliveries = self.by_destination(deliveries);
            if deliveries.len() <= CLAIM_BATCH {
                // Started here, at once: the common case of a few deliveries per commit.
                for c in deliveries {
                    match running.workers.clone().try_acquire_owned() {
                        Ok(permit) => self.start(c, permit, &running),
                        Err(_) => rest.push(c),
                    }
                }
            } else {
                // A large fan-out is started by the loop, so this commit's task goes on.
                rest = deliveries;
            }
        }
        let loop_has_work = !rest.is_empty() || queued;
        if !rest.is_empty() {
            lock(&self.handed_over.handed).extend(rest);
        }
        if loop_has_work {
            self.wake();
        }
    }

    fn due(&self) {
        self.wake();
    }

    fn circuit_closed(&self, subscription_id: &posthorn_core::SubscriptionId) {
        self.fairness.reset(subscription_id);
    }
}

type ClaimedIds = Arc<Mutex<HashSet<DeliveryId>>>;

impl Dispatcher {
    /// The dispatcher of this process: `writer` carries the consequences of attempts to
    /// subscriptions (and holds the index attempts read), `publisher` the service's own events.
    pub fn new(
        store: Store,
        writer: SubscriptionWriter,
        publisher: Publisher,
        config: DispatchConfig,
    ) -> Self {
        let this = Self {
            store,
            cache: writer.cache().clone(),
            writer,
            publisher,
            wake: Arc::new(Notify::new()),
            fairness: Arc::new(Fairness::new(config.workers)),
            claimed: Arc::default(),
            handed_over: Arc::default(),
            skipped_due: Arc::default(),
            meters: Arc::default(),
            config: Arc::new(config),
        };
        this
    }

    /// What the store hands this process's deliveries to (`Store::set_handoff`): publishes
    /// through this process then give their deliveries straight to this dispatcher, leased, and
    /// the store tells it when work falls due. `serve` wires it, in sight.
    pub fn handoff(&self) -> Arc<dyn Handoff> {
        Arc::new(self.clone())
    }

    /// Call after storing deliveries that are due now, so the loop does not wait for its poll.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Runs until `stop` is cancelled, then waits up to the grace period for attempts in flight,
    /// writes their outcomes, and hands back whatever is left.
    pub async fn run(self, stop: CancellationToken) {
        let workers = Arc::new(Semaphore::new(self.config.workers));
        let (done, outcomes) = mpsc::channel::<Outcome>(outcome_queue(self.config.workers));
        let settler = tokio::spawn(self.clone().settle_loop(outcomes));
        let renewer = tokio::spawn(renew_loop(
            self.store.clone(),
            self.config.clone(),
            self.claimed.clone(),
        ));

        let running = Running {
            workers: workers.clone(),
            done: done.clone(),
            stop: stop.clone(),
        };
        *lock(&self.handed_over.running) = Some(running.clone());

        let mut failures = 0u32;
        while !stop.is_cancelled() {
            // Handed over by publishes: these go before anything claimed.
            let handed = std::mem::take(&mut *lock(&self.handed_over.handed));
            if !handed.is_empty() {
                for (i, c) in handed.into_iter().enumerate() {
                    if i > 0 && i % START_CHUNK == 0 {
                        // Let the attempts just started run (their connections open) before
                        // starting more: the first go out first, and the run queue stays short.
                        tokio::task::yield_now().await;
                    }
                    let permit = tokio::select! {
                        _ = stop.cancelled() => break,
                        p = workers.clone().acquire_owned() => p,
                    };
                    let Ok(permit) = permit else { break };
                    self.start(c, permit, &running);
                }
                continue;
            }
            if workers.available_permits() == 0 {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    p = workers.acquire() => drop(p),
                }
                continue;
            }
            let lease_ms = self.config.lease.as_millis() as i64;
            let skip = self.fairness.blocked(MAX_SKIPPED);
            metrics::gauge!(posthorn_core::metric::QUEUE_WAITING_IN_MEMORY)
                .set(self.fairness.waiting() as f64);
            lock(&self.skipped_due).clear();
            let claimed = match self
                .store
                .claim(&self.config.process_id, CLAIM_BATCH, lease_ms, &skip)
                .await
            {
                Ok(c) => {
                    failures = 0;
                    c
                }
                Err(e) => {
                    failures += 1;
                    tracing::warn!(error = %e, "claiming deliveries failed; retrying");
                    let pause = Duration::from_millis(200 * u64::from(failures.min(25)));
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = tokio::time::sleep(pause) => continue,
                    }
                }
            };
            if claimed.is_empty() {
                let wait = match self.store.next_due().await {
                    // Due, but only deliveries of subscriptions skipped: a freed slot wakes us.
                    Ok(Some(due)) if due <= now_ms() && !skip.is_empty() => {
                        *lock(&self.skipped_due) = skip.into_iter().collect();
                        SKIPPED_IDLE
                    }
                    Ok(Some(due)) => Duration::from_millis((due - now_ms()).clamp(0, 1000) as u64),
                    _ => MAX_IDLE,
                };
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = self.wake.notified() => {}
                    _ = tokio::time::sleep(wait) => {}
                }
                continue;
            }
            lock(&self.claimed).extend(claimed.iter().map(|c| c.delivery_id.clone()));
            for c in self.by_destination(claimed) {
                let Ok(permit) = workers.clone().acquire_owned().await else {
                    break;
                };
                self.start(c, permit, &running);
            }
        }

        // Shutdown: publishes hand nothing more over (what is leased and not started is handed
        // back below); let attempts in flight finish within the grace period.
        *lock(&self.handed_over.running) = None;
        drop(running);
        let all = self.config.workers as u32;
        if tokio::time::timeout(self.config.grace, workers.acquire_many(all))
            .await
            .is_err()
        {
            tracing::warn!(
                in_flight = self.config.workers - workers.available_permits(),
                "attempts still in flight after the grace period; handing them back"
            );
        }
        drop(done);
        let _ = settler.await;
        renewer.abort();
        match self.store.release(&self.config.process_id).await {
            Ok(n) if n > 0 => tracing::info!(deliveries = n, "handed back unfinished deliveries"),
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "handing back deliveries failed; their leases will expire")
            }
        }
    }

    /// Puts deliveries in the order their attempts start: every destination gets its turn
    /// early, so that the many subscriptions of one endpoint (which may hang) do not all go
    /// before the few of another. The first delivery to each URL goes first, then the second of
    /// each, and so on; among equals, the same by host; otherwise the order is kept.
    fn by_destination(&self, deliveries: Vec<Claimed>) -> Vec<Claimed> {
        if deliveries.len() <= 2 {
            return deliveries;
        }
        let entries: Vec<Option<Arc<IndexedSubscription>>> = deliveries
            .iter()
            .map(|c| self.cache.get(&c.subscription_id))
            .collect();
        let urls: Vec<Option<&str>> = entries
            .iter()
            .map(|e| e.as_ref().and_then(|e| e.compiled.target.destination()))
            .collect();
        let mut slots: Vec<Option<Claimed>> = deliveries.into_iter().map(Some).collect();
        destination_order(&urls)
            .into_iter()
            .filter_map(|i| slots[i].take())
            .collect()
    }

    /// Attempts a claimed delivery on a worker of its own, then those of the same subscription
    /// that waited in memory for the slot it frees.
    fn start(&self, c: Claimed, permit: OwnedSemaphorePermit, running: &Running) {
        let this = self.clone();
        let done = running.done.clone();
        let stop = running.stop.clone();
        tokio::spawn(async move {
            let sub_id = c.subscription_id.clone();
            let mut next = Some(c);
            while let Some(c) = next.take() {
                if let Some(outcome) = this.attempt(c).await {
                    let ids: Vec<DeliveryId> = outcome
                        .records
                        .iter()
                        .map(|r| r.delivery_id.clone())
                        .collect();
                    let _ = done.send(outcome).await;
                    let mut claimed = lock(&this.claimed);
                    for id in &ids {
                        claimed.remove(id);
                    }
                }
                if !stop.is_cancelled() {
                    next = this.fairness.next_waiting(&sub_id);
                }
            }
            drop(permit);
            // A subscription the last claim skipped, with due deliveries left behind, may take
            // more now: claim again. (A claim takes every other subscription's due deliveries, so
            // another's freed slot would find nothing new.)
            if lock(&this.skipped_due).contains(&sub_id) {
                this.wake();
            }
        });
    }

    /// Makes one attempt of a claimed delivery (or holds it) and says what to record; `None` when
    /// it waits in memory for a slot of its subscription.
    async fn attempt(&self, c: Claimed) -> Option<Outcome> {
        // The cached entry itself (one reference count), not a copy of it.
        let entry = match self.cache.get(&c.subscription_id) {
            Some(e) => Ok(Some(e)),
            None => self.load_subscription(&c.subscription_id).await,
        };
        let entry = match entry {
            Ok(Some(found)) => found,
            Ok(None) => {
                // Deleted since the event was published.
                return Some(
                    AttemptRecord {
                        delivery_id: c.delivery_id,
                        status: DeliveryStatus::Cancelled,
                        attempts: c.attempts,
                        next_attempt_at: now_ms(),
                        attempt: None,
                    }
                    .into(),
                );
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read a subscription; will try again");
                return Some(hold(c, now_ms() + 5_000).into());
            }
        };
        let (sub, compiled) = (&entry.sub, &entry.compiled);
        if compiled.target.pulled() {
            // Never pushed: back to wait for its consumer (a retry or a recover made it due).
            return Some(hold(c, posthorn_core::delivery::PARKED).into());
        }
        if !sub.is_active() {
            return Some(hold(c, now_ms() + HOLD_WHILE_DISABLED_MS).into());
        }
        let ahead = match sub.spec.ordered {
            Order::Unordered => None,
            Order::All => Some(None),
            // An event without a key waits for none.
            Order::Key => c.order_key.as_deref().map(Some),
        };
        if let Some(key) = ahead {
            // Deliveries of earlier events (of the same key) go first, retries included.
            match self.store.pending_before(&sub.id, c.event.seq, key).await {
                Ok(None) => {}
                Ok(Some(ahead)) => {
                    return Some(hold(c, look_again(ahead, now_ms())).into());
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot check the order of deliveries; will try again");
                    return Some(hold(c, now_ms() + 1_000).into());
                }
            }
        }
        match self.fairness.admit(sub, c) {
            Admit::Go(c) => Some(self.attempt_admitted(c, sub, compiled).await),
            Admit::GoAt(c, at) => {
                // The rate limit's slot, reserved for it: waited for here, still leased.
                tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await;
                Some(self.attempt_admitted(c, sub, compiled).await)
            }
            Admit::Waiting => None,
            Admit::HoldUntil(c, until) => Some(hold(c, until).into()),
        }
    }

    /// Makes the attempt through the subscription's service, and turns its verdict into the
    /// delivery's next state and the consequences for its subscription.
    async fn attempt_admitted(
        &self,
        c: Claimed,
        sub: &Subscription,
        compiled: &Compiled,
    ) -> Outcome {
        let number = c.attempts + 1;
        let started_at = now_ms();
        let event = &c.event;
        self.meters.in_flight.increment(1.0);
        let attempt = compiled.target.attempt(Attempt {
            event,
            subscription_id: &sub.id,
            delivery_id: &c.delivery_id,
            number: number as u32,
            started_at,
            secrets: sub.signing_secrets(started_at),
        });
        // A service that panics is an attempt that failed, logged and retried: its lease, its
        // subscription's slot and the worker go back as after any other attempt.
        let clock = std::time::Instant::now();
        let report = match std::panic::AssertUnwindSafe(attempt).catch_unwind().await {
            Ok(report) => report,
            Err(panic) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "no message".to_owned());
                tracing::error!(subscription = %sub.id, delivery = %c.delivery_id,
                    service = %sub.spec.service, panic = %what, "a delivery service panicked");
                Report {
                    verdict: Verdict::Retry { after_ms: None },
                    // Not the destination's silence: the circuit treats it as a failed answer.
                    answered: true,
                    request: "{}".to_owned(),
                    response: None,
                    error: Some(format!(
                        "the {} service failed unexpectedly (it panicked: {what}); the attempt will be retried",
                        sub.spec.service
                    )),
                    duration: clock.elapsed(),
                }
            }
        };
        self.meters.in_flight.decrement(1.0);
        let succeeded = report.verdict == Verdict::Success;
        let mut records = Vec::new();
        if report.verdict == Verdict::Gone {
            // Before the slot frees: nothing more goes to a destination that said Gone; what
            // waits goes back, to be cancelled with the subscription.
            let until = now_ms() + 5_000;
            records.extend(
                self.fairness
                    .gone(&sub.id)
                    .into_iter()
                    .map(|w| hold(w, until)),
            );
        }
        let change = self.fairness.finished(&sub.id, succeeded, report.answered);
        let mut effects = Vec::new();
        consequences(sub, change, succeeded, &mut records, &mut effects);
        let dead = |effects: &mut Vec<Effect>| {
            effects.push(Effect::OneOff(OneOff::Dead {
                delivery_id: c.delivery_id.clone(),
                event_name: event.name.clone(),
                sub: sub.clone(),
            }));
            (DeliveryStatus::Dead, AttemptOutcome::Final, now_ms())
        };
        let (status_after, outcome, next_attempt_at) = match report.verdict {
            Verdict::Success => (DeliveryStatus::Succeeded, AttemptOutcome::Success, now_ms()),
            Verdict::Gone => {
                effects.push(Effect::OneOff(OneOff::Gone(sub.clone())));
                (DeliveryStatus::Dead, AttemptOutcome::Final, now_ms())
            }
            Verdict::Final => dead(&mut effects),
            Verdict::Retry { after_ms } => {
                match compiled
                    .retry
                    .delay_after(number as u32, rand::random::<f64>())
                {
                    Some(delay) => (
                        DeliveryStatus::Pending,
                        AttemptOutcome::Retry,
                        now_ms() + after_ms.unwrap_or(delay),
                    ),
                    None => dead(&mut effects),
                }
            }
        };
        if status_after != DeliveryStatus::Pending && sub.spec.ordered == Order::Key {
            if let Some(key) = &c.order_key {
                effects.push(Effect::NextOfKey {
                    sub_id: sub.id.clone(),
                    key: key.clone(),
                });
            }
        }
        tracing::debug!(delivery = %c.delivery_id, attempt = number, outcome = outcome.as_str(), "attempted");
        self.meters
            .record(&sub.spec.service, outcome, report.duration);
        self.config.tally.record(&sub.id, succeeded);
        records.insert(
            0,
            AttemptRecord {
                delivery_id: c.delivery_id,
                status: status_after,
                attempts: number,
                next_attempt_at,
                attempt: Some(StoredAttempt {
                    number,
                    started_at,
                    duration_ms: report.duration.as_millis() as i64,
                    request: report.request,
                    response: report.response,
                    error: report.error,
                    outcome,
                }),
            },
        );
        Outcome { records, effects }
    }

    /// A subscription the cache does not know: deleted, or created through another process since
    /// the last refresh.
    async fn load_subscription(
        &self,
        id: &SubscriptionId,
    ) -> Result<Option<Arc<IndexedSubscription>>, StoreError> {
        let Some(sub) = self.store.subscription(&Visibility::Everything, id).await? else {
            return Ok(None);
        };
        match sub.spec.validate(self.cache.services()) {
            Ok(compiled) => Ok(Some(Arc::new(IndexedSubscription::standalone(
                sub, compiled,
            )))),
            Err(e) => {
                tracing::error!(subscription = %id, error = %e, "stored subscription is invalid");
                Ok(None)
            }
        }
    }
}

/// When a delivery of an ordered subscription that waits behind `ahead` looks again: within a
/// second while one ahead is in flight (it may end at any moment; its due time is the end of
/// its lease), else when the earliest ahead is due (nothing ahead can end before), but within
/// 30 s (a retry made now by hand moves it earlier). So a delivery waiting behind a failing one
/// costs a claim every 30 s at most, or every second while the one ahead is being attempted.
fn look_again(ahead: posthorn_store::Ahead, now: i64) -> i64 {
    if ahead.in_flight {
        ahead.due.clamp(now + 50, now + 1_000)
    } else {
        ahead.due.clamp(now + 50, now + 30_000)
    }
}

/// Leaves a delivery pending, untouched but for when it is next looked at.
fn hold(c: Claimed, until: i64) -> AttemptRecord {
    AttemptRecord {
        delivery_id: c.delivery_id,
        status: DeliveryStatus::Pending,
        attempts: c.attempts,
        next_attempt_at: until,
        attempt: None,
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

async fn renew_loop(store: Store, config: Arc<DispatchConfig>, in_flight: ClaimedIds) {
    let mut tick = tokio::time::interval(config.lease / 3);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let ids: Vec<DeliveryId> = lock(&in_flight).iter().cloned().collect();
        if ids.is_empty() {
            continue;
        }
        if let Err(e) = store
            .renew(&config.process_id, &ids, config.lease.as_millis() as i64)
            .await
        {
            tracing::warn!(error = %e, "renewing leases failed");
        }
    }
}
