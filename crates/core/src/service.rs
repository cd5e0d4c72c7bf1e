//! Delivery services: the seam between the dispatcher and the ways a delivery goes out.
//!
//! A [`Service`] (`http`, and later `email`, plugins, broker destinations) is known by its name,
//! describes itself and the JSON Schema of its `config`, and checks a subscription's `config` into
//! a [`Target`]: everything an attempt needs, parsed once when the subscription is saved or
//! loaded. A target makes one attempt of a delivery and returns a [`Report`] with a [`Verdict`].
//! What follows a verdict — the retry schedule, fairness and the circuit breaker, the attempt log,
//! auto-disable, the service's own events — is the dispatcher's, the same for every service.
//!
//! The [`Registry`] is built once at start and feeds the list of services (`GET /v1/services`),
//! the validation of subscriptions, and the dispatcher. This module only names the seam: it does
//! no I/O; implementations live beside the dispatcher.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::event::StoredEvent;
use crate::signing::Secret;
use crate::time::Millis;
use crate::validation::Invalid;

/// A boxed future that borrows for `'a`, as trait objects return them.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A way deliveries go out.
pub trait Service: Send + Sync + 'static {
    /// The value of a subscription's `service` field that selects it.
    fn name(&self) -> &str;
    fn description(&self) -> &str;
    /// The JSON Schema of its `config`.
    fn config_schema(&self) -> &Value;
    /// Checks a subscription's `config` completely (every fault, field paths relative to
    /// `config`) and prepares what its attempts need.
    fn check(&self, config: &Value) -> Result<Arc<dyn Target>, Invalid>;
    /// Where `config` holds credentials, as JSON pointers (`/headers/authorization`, `/url`):
    /// sealed at rest, masked when shown, kept when written back masked ([`crate::secrets`]).
    /// When a credential in `config` stops working (a client certificate's expiry), shown on the
    /// subscription; `None` when it holds none that expires.
    fn credential_expires_at(&self, _config: &Value) -> Option<crate::time::Millis> {
        None
    }

    fn secret_paths(&self, _config: &Value) -> Vec<String> {
        Vec::new()
    }

    /// Whether its deliveries are pulled by the consumer from the subscription's feed (the
    /// `poll` service) rather than pushed: what the API asks of a service, as the dispatcher
    /// asks its targets ([`Target::pulled`]).
    fn pulled(&self) -> bool {
        false
    }
}

/// The credentials' places in `config` of the service `service` (none for an unknown one).
pub fn secret_paths(registry: &Registry, service: &str, config: &Value) -> Vec<String> {
    registry
        .get(service)
        .map(|s| s.secret_paths(config))
        .unwrap_or_default()
}

/// A checked `config`, ready to attempt deliveries.
pub trait Target: Send + Sync + fmt::Debug {
    /// Where attempts go (a URL, a queue), when the service has such a thing: a large fan-out
    /// starts its attempts round-robin across destinations, so that many subscriptions of one
    /// destination that hangs do not all go before the few of another.
    fn destination(&self) -> Option<&str> {
        None
    }

    /// Checks made when a subscription is written, and not when a stored one is loaded: a
    /// refusal that depends on how this process runs (its network policy) must not drop a
    /// subscription stored under another. Field paths relative to `config`.
    fn write_check(&self) -> BoxFuture<'_, Result<(), Invalid>> {
        Box::pin(async { Ok(()) })
    }

    /// Whether deliveries are not pushed at all but pulled by the consumer from the
    /// subscription's feed (the `poll` service): they wait in the store, never attempted, until
    /// the consumer acknowledges them.
    fn pulled(&self) -> bool {
        false
    }

    /// Makes one attempt. A target never panics on what a subscriber or publisher wrote: a
    /// template that fails, an unreachable destination, a refusal are all reports.
    fn attempt<'a>(&'a self, attempt: Attempt<'a>) -> BoxFuture<'a, Report>;
}

/// One attempt of one delivery.
#[derive(Debug)]
pub struct Attempt<'a> {
    pub event: &'a StoredEvent,
    pub subscription_id: &'a str,
    pub delivery_id: &'a str,
    /// 1 for the first attempt.
    pub number: u32,
    pub started_at: Millis,
    /// The subscription's signing secrets in force (two during a rotation).
    pub secrets: Vec<&'a Secret>,
}

/// What an attempt means for its delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Success,
    /// Failed; try again per the schedule, or after `after_ms` when the destination asked for a
    /// wait (HTTP `Retry-After`), if the schedule has another attempt.
    Retry {
        after_ms: Option<i64>,
    },
    /// Failed, and will fail every time: the delivery is dead.
    Final,
    /// The destination says it is gone for good: the delivery is dead and the subscription is
    /// deleted.
    Gone,
}

/// What one attempt did, for the dispatcher and the attempt log.
#[derive(Debug)]
pub struct Report {
    pub verdict: Verdict,
    /// Whether the destination answered at all. One that did not (a timeout, a refused
    /// connection) opens the subscription's circuit at once.
    pub answered: bool,
    /// The request as the attempt log shows it (a JSON object).
    pub request: String,
    /// The answer as the attempt log shows it (a JSON object), when one came.
    pub response: Option<String>,
    /// Why it failed, for people.
    pub error: Option<String>,
    pub duration: Duration,
}

impl Report {
    /// A report whose request and answer are JSON objects, timed from `started`.
    pub fn logged(
        verdict: Verdict,
        answered: bool,
        request: serde_json::Value,
        response: Option<serde_json::Value>,
        error: Option<String>,
        started: std::time::Instant,
    ) -> Self {
        Report {
            verdict,
            answered,
            request: request.to_string(),
            response: response.map(|r| r.to_string()),
            error,
            duration: started.elapsed(),
        }
    }
}

/// The services of this process, in the order they are listed.
#[derive(Clone, Default)]
pub struct Registry {
    services: Vec<Arc<dyn Service>>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a service; one of the same name is replaced (the last registered wins).
    pub fn register(&mut self, service: Arc<dyn Service>) -> &mut Self {
        self.services.retain(|s| s.name() != service.name());
        self.services.push(service);
        self
    }

    pub fn get(&self, name: &str) -> Option<&Arc<dyn Service>> {
        self.services.iter().find(|s| s.name() == name)
    }

    pub fn names(&self) -> Vec<&str> {
        self.services.iter().map(|s| s.name()).collect()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<dyn Service>> {
        self.services.iter()
    }
}

#[cfg(any(test, feature = "testing"))]
pub mod testing {
    //! A service for unit tests and benchmarks that never attempt anything: `"service": "test"`,
    //! config `{"to": STRING}`.

    use super::*;

    #[derive(Debug)]
    pub struct Nowhere(pub String);

    impl Target for Nowhere {
        fn destination(&self) -> Option<&str> {
            Some(&self.0)
        }

        fn attempt<'a>(&'a self, _: Attempt<'a>) -> BoxFuture<'a, Report> {
            Box::pin(async {
                Report {
                    verdict: Verdict::Final,
                    answered: false,
                    request: "{}".into(),
                    response: None,
                    error: Some("not attempted in unit tests".into()),
                    duration: Duration::ZERO,
                }
            })
        }
    }

    pub struct Test(Value);

    impl Service for Test {
        fn name(&self) -> &str {
            "test"
        }
        fn description(&self) -> &str {
            "unit tests"
        }
        fn config_schema(&self) -> &Value {
            &self.0
        }
        fn check(&self, config: &Value) -> Result<Arc<dyn Target>, Invalid> {
            match config.get("to").and_then(Value::as_str) {
                Some(to) => Ok(Arc::new(Nowhere(to.to_owned()))),
                None => Err(Invalid::one("to", "is required")),
            }
        }
    }

    pub fn registry() -> Registry {
        let mut r = Registry::new();
        r.register(Arc::new(Test(serde_json::json!({"type": "object"}))));
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_registry_finds_services_by_name_and_the_last_wins() {
        let mut r = testing::registry();
        assert_eq!(r.names(), ["test"]);
        assert!(r.get("test").is_some() && r.get("http").is_none());
        r.register(r.get("test").unwrap().clone());
        assert_eq!(r.names(), ["test"]);
    }
}
