//! The `poll` service: deliveries that are not pushed anywhere. The consumer reads them from the
//! subscription's feed (`GET /v1/subscriptions/{id}/feed`, long polling, or the same as
//! Server-Sent Events) and acknowledges what it has handled; until then they stay pending, parked
//! in the store (due at [`posthorn_core::delivery::PARKED`]) where no claim takes them.

use std::sync::Arc;

use posthorn_core::service::{Attempt, BoxFuture, Report, Service, Target, Verdict};
use posthorn_core::validation::Invalid;
use serde_json::{json, Value};

/// Pulled deliveries: no configuration, nothing sent.
pub struct PollService {
    schema: Value,
}

impl Default for PollService {
    fn default() -> Self {
        Self {
            schema: json!({
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "title": "PollConfig",
                "description": "Nothing: the consumer reads the subscription's feed \
                    (GET /v1/subscriptions/{id}/feed) with a token of the `consume` scope",
                "type": "object",
                "additionalProperties": false,
                "properties": {}
            }),
        }
    }
}

impl Service for PollService {
    fn name(&self) -> &str {
        "poll"
    }

    fn description(&self) -> &str {
        "Not pushed: the consumer pulls the subscription's feed (long polling or Server-Sent Events), signed per Standard Webhooks"
    }

    fn config_schema(&self) -> &Value {
        &self.schema
    }

    fn pulled(&self) -> bool {
        true
    }

    fn check(&self, config: &Value) -> Result<Arc<dyn Target>, Invalid> {
        match config.as_object() {
            Some(o) if o.is_empty() => Ok(Arc::new(PollTarget)),
            Some(o) => Err(Invalid::one(
                o.keys().next().map(String::as_str).unwrap_or_default(),
                "is not a field here: a poll subscription's config is {}",
            )),
            None => Err(Invalid::one("", "must be an object ({})")),
        }
    }
}

/// A pulled subscription's target: it is never attempted.
#[derive(Debug)]
pub struct PollTarget;

impl Target for PollTarget {
    fn pulled(&self) -> bool {
        true
    }

    fn attempt<'a>(&'a self, _: Attempt<'a>) -> BoxFuture<'a, Report> {
        // The dispatcher parks a pulled delivery instead of attempting it; if one ever got here,
        // it goes back to wait for its consumer.
        Box::pin(async {
            Report {
                verdict: Verdict::Retry {
                    after_ms: Some(posthorn_core::delivery::PARKED - posthorn_core::time::now_ms()),
                },
                answered: true,
                request: "{}".to_owned(),
                response: None,
                error: Some("a poll subscription's deliveries are pulled, not pushed".into()),
                duration: std::time::Duration::ZERO,
            }
        })
    }
}
