//! The dispatcher's metrics, with their handles kept: looking a labelled series up in the
//! recorder hashes its name and labels and copies the service's name, on every attempt; a handle
//! is one atomic add.

use foldhash::HashMap;
use std::sync::RwLock;
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram};
use posthorn_core::AttemptOutcome;

pub(super) struct Meters {
    pub in_flight: Gauge,
    by_service: RwLock<HashMap<String, ServiceMeters>>,
}

impl Default for Meters {
    fn default() -> Self {
        Self {
            in_flight: metrics::gauge!(posthorn_core::metric::ATTEMPTS_IN_FLIGHT),
            by_service: RwLock::default(),
        }
    }
}

#[derive(Clone)]
struct ServiceMeters {
    /// By outcome: success, retry, final.
    outcomes: [Counter; 3],
    duration: Histogram,
}

impl ServiceMeters {
    fn new(service: &str) -> Self {
        let counter = |outcome: AttemptOutcome| metrics::counter!(posthorn_core::metric::ATTEMPTS, "service" => service.to_owned(), "outcome" => outcome.as_str());
        Self {
            outcomes: [
                counter(AttemptOutcome::Success),
                counter(AttemptOutcome::Retry),
                counter(AttemptOutcome::Final),
            ],
            duration: metrics::histogram!(posthorn_core::metric::ATTEMPT_DURATION, "service" => service.to_owned()),
        }
    }
}

impl Meters {
    /// Counts an attempt of `service` and its duration.
    pub fn record(&self, service: &str, outcome: AttemptOutcome, duration: Duration) {
        let index = match outcome {
            AttemptOutcome::Success => 0,
            AttemptOutcome::Retry => 1,
            AttemptOutcome::Final => 2,
        };
        let known = self
            .by_service
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(service)
            .map(|m| {
                m.outcomes[index].increment(1);
                m.duration.record(duration.as_secs_f64());
            })
            .is_some();
        if !known {
            let m = ServiceMeters::new(service);
            m.outcomes[index].increment(1);
            m.duration.record(duration.as_secs_f64());
            self.by_service
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .insert(service.to_owned(), m);
        }
    }
}
