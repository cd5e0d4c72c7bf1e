//! The dispatcher treats a service it has never heard of like `http`: a service of this test's
//! own, registered through the registry, gets retries on its "retry" verdict, a dead delivery
//! after the schedule, every attempt in the log, and the in-flight caps — with no HTTP involved.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use posthorn_core::id::new_id;
use posthorn_core::service::{Attempt, BoxFuture, Report, Service, Target, Verdict};
use posthorn_core::time::now_ms;
use posthorn_core::validation::Invalid;
use posthorn_core::{AttemptOutcome, DeliveryStatus, Registry, Secret, Subscription, Visibility};
use posthorn_dispatch::{DispatchConfig, Dispatcher};
use posthorn_store::{
    EventTypeCache, NewEvent, Publisher, Sealer, Store, SubscriptionCache, SubscriptionWriter,
};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

/// What every attempt of the `recorder` service saw, shared with the test.
#[derive(Debug, Default)]
struct Log {
    attempts: Mutex<Vec<(String, u32)>>,
    in_flight: AtomicUsize,
    most_in_flight: AtomicUsize,
}

/// `{"verdict": "retry" | "success", "hold_ms": N}`: answers that verdict after `hold_ms`.
struct Recorder {
    log: Arc<Log>,
    schema: Value,
}

#[derive(Debug)]
struct RecorderTarget {
    log: Arc<Log>,
    succeed: bool,
    /// Panics once the attempt is recorded (a service with a bug).
    panics: bool,
    hold: Duration,
}

impl Service for Recorder {
    fn name(&self) -> &str {
        "recorder"
    }
    fn description(&self) -> &str {
        "records attempts"
    }
    fn config_schema(&self) -> &Value {
        &self.schema
    }
    fn check(&self, config: &Value) -> Result<Arc<dyn Target>, Invalid> {
        let (succeed, panics) = match config.get("verdict").and_then(Value::as_str) {
            Some("retry") => (false, false),
            Some("success") => (true, false),
            Some("panic") => (false, true),
            _ => return Err(Invalid::one("verdict", "must be retry, success or panic")),
        };
        let hold =
            Duration::from_millis(config.get("hold_ms").and_then(Value::as_u64).unwrap_or(0));
        Ok(Arc::new(RecorderTarget {
            log: self.log.clone(),
            succeed,
            panics,
            hold,
        }))
    }
}

impl Target for RecorderTarget {
    fn attempt<'a>(&'a self, a: Attempt<'a>) -> BoxFuture<'a, Report> {
        Box::pin(async move {
            let now = self.log.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            self.log.most_in_flight.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(self.hold).await;
            self.log.in_flight.fetch_sub(1, Ordering::SeqCst);
            self.log
                .attempts
                .lock()
                .unwrap()
                .push((a.event.id.clone(), a.number));
            if self.panics {
                panic!("a bug in the service");
            }
            Report {
                verdict: if self.succeed {
                    Verdict::Success
                } else {
                    Verdict::Retry { after_ms: None }
                },
                answered: true,
                request: json!({"recorded": a.event.name}).to_string(),
                response: None,
                error: (!self.succeed).then(|| "asked to fail".to_owned()),
                duration: self.hold,
            }
        })
    }
}

struct World {
    store: Store,
    cache: SubscriptionCache,
    log: Arc<Log>,
    stop: CancellationToken,
    _dir: tempfile::TempDir,
}

async fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/posthorn.db", dir.path().display());
    let store = Store::open(&url, Sealer::new(&Sealer::generate_key()).unwrap())
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let log = Arc::new(Log::default());
    let mut services = Registry::new();
    services.register(Arc::new(Recorder {
        log: log.clone(),
        schema: json!({"type": "object"}),
    }));
    let cache = SubscriptionCache::load(store.clone(), Arc::new(services))
        .await
        .unwrap();
    let event_types = EventTypeCache::load(store.clone()).await.unwrap();
    let dispatcher = Dispatcher::new(
        store.clone(),
        SubscriptionWriter::new(store.clone(), cache.clone()),
        Publisher::new(store.clone(), cache.clone(), event_types),
        DispatchConfig {
            workers: 16,
            lease: Duration::from_secs(15),
            grace: Duration::from_secs(1),
            process_id: new_id("proc"),
            disable_after: Duration::from_secs(86_400),
            tally: Default::default(),
        },
    );
    store.set_handoff(dispatcher.handoff());
    let stop = CancellationToken::new();
    tokio::spawn(dispatcher.run(stop.clone()));
    World {
        store,
        cache,
        log,
        stop,
        _dir: dir,
    }
}

impl World {
    async fn subscribe(&self, spec: Value) -> Subscription {
        let now = now_ms();
        let sub = Subscription {
            id: posthorn_core::SubscriptionId::new(),
            owner: "admin".into(),
            spec: serde_json::from_value(spec).unwrap(),
            disabled_reason: None,
            secret: Secret::generate(),
            previous_secret: None,
            created_at: now,
            updated_at: now,
        };
        sub.spec.validate(self.cache.services()).unwrap();
        let revision = self.store.insert_subscription(&sub, &[]).await.unwrap();
        self.cache
            .apply(&sub.id, Some(sub.clone()), revision)
            .await
            .unwrap();
        sub
    }

    async fn publish(&self, sub: &Subscription, n: usize) -> Vec<posthorn_core::DeliveryId> {
        let events = (0..n)
            .map(|i| NewEvent {
                id: new_id("evt"),
                publisher: posthorn_core::Principal::Admin,
                name: "thing.happened".into(),
                origin: None,
                tenant: None,
                attributes: Default::default(),
                data: json!({ "i": i }).to_string(),
                occurred_at: now_ms(),
                subscriptions: vec![sub.id.clone()],
                placements: Vec::new(),
            })
            .collect();
        let published = self.store.publish(events).await.unwrap();
        published.into_iter().flat_map(|p| p.delivery_ids).collect()
    }

    /// Waits until every delivery has left `pending`, for at most `deadline`.
    async fn settled(
        &self,
        ids: &[posthorn_core::DeliveryId],
        deadline: Duration,
    ) -> Vec<DeliveryStatus> {
        let start = Instant::now();
        loop {
            let mut statuses = Vec::new();
            for id in ids {
                let (row, _) = self
                    .store
                    .delivery(&Visibility::Everything, id)
                    .await
                    .unwrap()
                    .unwrap();
                statuses.push(row.status);
            }
            if statuses.iter().all(|s| *s != DeliveryStatus::Pending) {
                return statuses;
            }
            assert!(
                start.elapsed() < deadline,
                "still pending after {deadline:?}: {statuses:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_of_its_own_is_retried_then_dead_with_every_attempt_logged() {
    let w = world().await;
    let sub = w
        .subscribe(json!({"name": "fails", "service": "recorder",
            "config": {"verdict": "retry"}, "events": ["thing.*"],
            "retry": {"schedule_s": [0, 0]}}))
        .await;
    let ids = w.publish(&sub, 1).await;
    assert_eq!(
        w.settled(&ids, Duration::from_secs(10)).await,
        [DeliveryStatus::Dead]
    );
    // Three attempts (the first and the two of the schedule), numbered, nothing more.
    let numbers: Vec<u32> = w.log.attempts.lock().unwrap().iter().map(|a| a.1).collect();
    assert_eq!(numbers, [1, 2, 3]);
    let (row, attempts) = w
        .store
        .delivery(&Visibility::Everything, &ids[0])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.attempts, 3);
    let outcomes: Vec<AttemptOutcome> = attempts.iter().map(|a| a.outcome).collect();
    assert_eq!(
        outcomes,
        [
            AttemptOutcome::Retry,
            AttemptOutcome::Retry,
            AttemptOutcome::Final
        ]
    );
    assert!(attempts.iter().all(
        |a| a.error.as_deref() == Some("asked to fail") && a.request.contains("thing.happened")
    ));
    w.stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_of_its_own_is_held_to_the_in_flight_caps() {
    let w = world().await;
    // Slow start: a new subscription has one attempt in flight until one succeeds, then up to
    // its `max_in_flight`.
    let sub = w
        .subscribe(json!({"name": "slow", "service": "recorder",
            "config": {"verdict": "success", "hold_ms": 40}, "events": ["thing.*"],
            "max_in_flight": 3}))
        .await;
    let ids = w.publish(&sub, 30).await;
    let statuses = w.settled(&ids, Duration::from_secs(20)).await;
    assert!(statuses.iter().all(|s| *s == DeliveryStatus::Succeeded));
    assert_eq!(w.log.attempts.lock().unwrap().len(), 30);
    let most = w.log.most_in_flight.load(Ordering::SeqCst);
    assert!(
        most <= 3,
        "{most} attempts in flight at once, over the cap of 3"
    );
    w.stop.cancel();
}

/// A service that panics does not wedge its subscription: each panicking attempt is logged as a
/// failed attempt and retried, its lease and the subscription's one slot freed, so the next
/// delivery goes too; after the schedule each is dead, as after any failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_service_fails_its_attempts_and_wedges_nothing() {
    let w = world().await;
    let sub = w
        .subscribe(json!({"name": "buggy", "service": "recorder",
            "config": {"verdict": "panic"}, "events": ["thing.*"],
            "max_in_flight": 1, "retry": {"schedule_s": [0]}}))
        .await;
    // Two deliveries of two attempts: the circuit opens after the third failure in a row (5 s),
    // as after any failing attempts, then lets the last one through.
    let ids = w.publish(&sub, 2).await;
    assert_eq!(
        w.settled(&ids, Duration::from_secs(30)).await,
        [DeliveryStatus::Dead; 2]
    );
    assert_eq!(w.log.attempts.lock().unwrap().len(), 4, "two attempts each");
    for id in &ids {
        let (row, attempts) = w
            .store
            .delivery(&Visibility::Everything, id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(row.attempts, 2);
        let outcomes: Vec<AttemptOutcome> = attempts.iter().map(|a| a.outcome).collect();
        assert_eq!(outcomes, [AttemptOutcome::Retry, AttemptOutcome::Final]);
        assert!(attempts.iter().all(|a| a
            .error
            .as_deref()
            .is_some_and(|e| e.contains("panicked: a bug in the service"))));
    }
    // Two deliveries through one slot, each attempted twice: every panic gave the slot back.
    w.stop.cancel();
}
