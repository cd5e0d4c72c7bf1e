//! Subscriptions: who wants which events, delivered how.
//!
//! A [`SubscriptionSpec`] is what a user writes (create, replace, patch); [`SubscriptionSpec::validate`]
//! checks it completely, naming every field at fault, and compiles what delivery needs (the
//! patterns, the service config) so that nothing is parsed again per event. A [`Subscription`] is a
//! stored spec plus what the service owns: id, owner, status, secrets, times.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::filter::Filter;
use crate::pattern::EventPattern;
use crate::retry::RetryPolicy;
use crate::service::{Registry, Target};
use crate::signing::Secret;
use crate::time::Millis;
use crate::validation::{Errors, Invalid};

pub const DEFAULT_MAX_IN_FLIGHT: u32 = 10;

/// The part of a subscription its owner writes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionSpec {
    pub name: String,
    pub service: String,
    /// Checked by the service named: `GET /v1/services` gives the schema of each.
    #[schema(value_type = Object)]
    pub config: Value,
    pub events: Vec<String>,
    #[serde(default)]
    pub filter: Option<String>,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default)]
    pub retry: Option<RetrySpec>,
    #[serde(default)]
    pub rate_limit_per_s: Option<u32>,
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: u32,
    /// `true`: one delivery at a time, in publish order; `"key"`: in publish order per ordering
    /// key, different keys in parallel; `false` (the default): in parallel.
    #[serde(default)]
    pub ordered: Order,
    /// With `ordered: "key"`: the path (filter language) of the event's ordering key, e.g.
    /// `order.id` or `$event.attributes.customer`; without it, the event's `ordering_key`.
    #[serde(default)]
    pub order_key: Option<String>,
}

/// How a subscription orders its deliveries: `false`, `true` or `"key"` in JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Order {
    /// In parallel, within `max_in_flight` (`false`).
    #[default]
    Unordered,
    /// One at a time, in publish order (`true`).
    All,
    /// In publish order per ordering key, different keys in parallel (`"key"`).
    Key,
}

impl Order {
    pub fn is_unordered(&self) -> bool {
        *self == Self::Unordered
    }
}

impl Serialize for Order {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Unordered => s.serialize_bool(false),
            Self::All => s.serialize_bool(true),
            Self::Key => s.serialize_str("key"),
        }
    }
}

impl<'de> Deserialize<'de> for Order {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Order;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("true, false or \"key\"")
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Order, E> {
                Ok(if v { Order::All } else { Order::Unordered })
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Order, E> {
                match v {
                    "key" => Ok(Order::Key),
                    _ => Err(E::invalid_value(serde::de::Unexpected::Str(v), &self)),
                }
            }
        }
        d.deserialize_any(Visitor)
    }
}

impl utoipa::PartialSchema for Order {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Type};
        OneOfBuilder::new()
            .item(ObjectBuilder::new().schema_type(Type::Boolean))
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some(["key"])),
            )
            .description(Some(
                "`true`: one delivery at a time, in publish order; `\"key\"`: in publish order \
                 per ordering key, keys in parallel; `false`: in parallel",
            ))
            .into()
    }
}

impl utoipa::ToSchema for Order {}

fn yes() -> bool {
    true
}

fn default_max_in_flight() -> u32 {
    DEFAULT_MAX_IN_FLIGHT
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetrySpec {
    /// Seconds to wait after the first attempt, the second, …; the default schedule when absent.
    pub schedule_s: Vec<u32>,
}

/// What validation compiles out of a spec for delivery.
#[derive(Debug, Clone)]
pub struct Compiled {
    pub patterns: Vec<EventPattern>,
    pub filter: Option<Filter>,
    /// The `config`, checked by its service: what attempts go through.
    pub target: Arc<dyn Target>,
    pub retry: RetryPolicy,
    /// With `ordered: "key"` and an `order_key`: that path, parsed.
    pub order_key: Option<crate::filter::KeyPath>,
}

/// The longest retry schedule accepted, and the longest single wait (one week).
pub const MAX_SCHEDULE_STEPS: usize = 50;
pub const MAX_WAIT_S: u32 = 7 * 24 * 3600;
/// The highest rate limit a subscription may name: above it there is no limit to speak of
/// (leave `rate_limit_per_s` null).
pub const MAX_RATE_LIMIT_PER_S: u32 = 1_000_000;

impl SubscriptionSpec {
    /// The fields a subscription has, and those it must have.
    pub const FIELDS: [&'static str; 12] = [
        "name",
        "service",
        "config",
        "events",
        "filter",
        "metadata",
        "enabled",
        "retry",
        "rate_limit_per_s",
        "max_in_flight",
        "ordered",
        "order_key",
    ];
    pub const REQUIRED: [&'static str; 4] = ["name", "service", "config", "events"];

    /// Every unknown and every missing top-level field of a subscription's JSON at once (serde
    /// stops at the first): `confg` and a missing `events` are both named, `confg` with the field
    /// it is probably meant to be.
    pub fn structure_faults(body: &Value) -> Result<(), Invalid> {
        let Some(obj) = body.as_object() else {
            return Err(Invalid::one("", "must be a JSON object"));
        };
        let mut errors = Errors::default();
        let expected: Vec<String> = Self::FIELDS.iter().map(|f| format!("`{f}`")).collect();
        for key in obj.keys().filter(|k| !Self::FIELDS.contains(&k.as_str())) {
            // In serde's words, so that it reads as every other unknown field does.
            let said = format!(
                "unknown field `{key}`, expected one of {}",
                expected.join(", ")
            );
            let e = crate::validation::serde_field_error(".", &said);
            errors.add(e.field, e.message);
        }
        for field in Self::REQUIRED.iter().filter(|f| !obj.contains_key(**f)) {
            errors.add(*field, format!("missing field `{field}`"));
        }
        errors.finish()
    }

    /// Checks every field, the `config` by the service it names among `services`.
    pub fn validate(&self, services: &Registry) -> Result<Compiled, Invalid> {
        let mut errors = Errors::default();
        if self.name.trim().is_empty() || self.name.chars().count() > 128 {
            errors.add("name", "must be 1 to 128 characters");
        }
        let target = match services.get(&self.service) {
            None => {
                errors.add(
                    "service",
                    format!("unknown service; known: {}", services.names().join(", ")),
                );
                None
            }
            Some(service) => match service.check(&self.config) {
                Ok(target) => Some(target),
                Err(e) => {
                    errors.extend(e.within("config"));
                    None
                }
            },
        };
        if self.events.is_empty() {
            errors.add("events", "must name at least one event, NAME.* or *");
        }
        let mut patterns = Vec::with_capacity(self.events.len());
        for (i, p) in self.events.iter().enumerate() {
            match EventPattern::parse(p) {
                Ok(p) => patterns.push(p),
                Err(msg) => errors.add(format!("events[{i}]"), msg.to_string()),
            }
        }
        let filter = match self.filter.as_deref().map(Filter::parse) {
            None => None,
            Some(Ok(f)) => Some(f),
            Some(Err(e)) => {
                errors.add("filter", e.to_string());
                None
            }
        };
        if let Some(retry) = &self.retry {
            if retry.schedule_s.len() > MAX_SCHEDULE_STEPS {
                errors.add(
                    "retry.schedule_s",
                    format!("at most {MAX_SCHEDULE_STEPS} steps"),
                );
            }
            for (i, s) in retry.schedule_s.iter().enumerate() {
                if *s > MAX_WAIT_S {
                    errors.add(
                        format!("retry.schedule_s[{i}]"),
                        "at most 604800 seconds (one week)",
                    );
                }
            }
        }
        if let Some(rate) = self.rate_limit_per_s {
            if !(1..=MAX_RATE_LIMIT_PER_S).contains(&rate) {
                errors.add(
                    "rate_limit_per_s",
                    "must be 1 to 1000000 per second (or null for none)",
                );
            }
        }
        if !(1..=10_000).contains(&self.max_in_flight) {
            errors.add("max_in_flight", "must be 1 to 10000");
        }
        let order_key = match (&self.order_key, self.ordered) {
            (None, _) => None,
            (Some(_), Order::Unordered | Order::All) => {
                errors.add("order_key", "orders by key only with \"ordered\": \"key\"");
                None
            }
            (Some(path), Order::Key) => match crate::filter::KeyPath::parse(path) {
                Ok(p) => Some(p),
                Err(e) => {
                    errors.add("order_key", e.to_string());
                    None
                }
            },
        };
        errors.finish()?;
        let Some(target) = target else {
            // Unreachable: a missing target recorded an error.
            return Err(Invalid::one("config", "was not checked"));
        };
        Ok(Compiled {
            patterns,
            filter,
            target,
            retry: self
                .retry
                .as_ref()
                .map(|r| RetryPolicy::new(r.schedule_s.clone()))
                .unwrap_or_default(),
            order_key,
        })
    }
}

/// Why a subscription is disabled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DisabledReason {
    Manual,
    Gone,
    Failing,
}

impl DisabledReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Manual => "manual",
            Self::Gone => "gone",
            Self::Failing => "failing",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "manual" => Self::Manual,
            "gone" => Self::Gone,
            "failing" => Self::Failing,
            _ => return None,
        })
    }
}

/// A stored subscription.
#[derive(Debug, Clone)]
pub struct Subscription {
    pub id: crate::id::SubscriptionId,
    /// `admin` or an application id.
    pub owner: String,
    pub spec: SubscriptionSpec,
    pub disabled_reason: Option<DisabledReason>,
    pub secret: Secret,
    /// During a rotation, the previous secret and until when it still signs.
    pub previous_secret: Option<(Secret, Millis)>,
    pub created_at: Millis,
    pub updated_at: Millis,
}

impl Subscription {
    /// A new subscription of `owner`: a fresh id and signing secret, enabled, made now.
    pub fn new(owner: impl Into<String>, spec: SubscriptionSpec) -> Self {
        let now = crate::time::now_ms();
        Self {
            id: crate::id::SubscriptionId::new(),
            owner: owner.into(),
            spec,
            disabled_reason: None,
            secret: Secret::generate(),
            previous_secret: None,
            created_at: now,
            updated_at: now,
        }
    }

    pub fn is_active(&self) -> bool {
        self.spec.enabled && self.disabled_reason.is_none()
    }

    /// The secrets that sign a delivery made at `now`.
    pub fn signing_secrets(&self, now: Millis) -> Vec<&Secret> {
        let mut secrets = vec![&self.secret];
        if let Some((old, until)) = &self.previous_secret {
            if *until > now {
                secrets.push(old);
            }
        }
        secrets
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_structural_fault_is_named_at_once() {
        let e = SubscriptionSpec::structure_faults(&serde_json::json!({
            "name": "x", "service": "http", "confg": {}, "event": ["a"]}))
        .unwrap_err();
        let named: Vec<(&str, &str)> =
            e.0.iter()
                .map(|f| (f.field.as_str(), f.message.as_str()))
                .collect();
        assert_eq!(
            named,
            [
                ("confg", "is not a field here; did you mean `config`? (expected one of `name`, `service`, `config`, `events`, `filter`, `metadata`, `enabled`, `retry`, `rate_limit_per_s`, `max_in_flight`, `ordered`, `order_key`)"),
                ("event", "is not a field here; did you mean `events`? (expected one of `name`, `service`, `config`, `events`, `filter`, `metadata`, `enabled`, `retry`, `rate_limit_per_s`, `max_in_flight`, `ordered`, `order_key`)"),
                ("config", "missing field `config`"),
                ("events", "missing field `events`"),
            ]
        );
        // FIELDS is the struct's: each is known to serde (a wrong value, not an unknown field).
        for field in SubscriptionSpec::FIELDS {
            let mut body = serde_json::json!({"name": "x", "service": "http",
                "config": {}, "events": ["a"]});
            body[field] = serde_json::json!(true);
            if let Err(e) = serde_json::from_value::<SubscriptionSpec>(body) {
                assert!(!e.to_string().contains("unknown field"), "{field}: {e}");
            }
        }
        assert!(SubscriptionSpec::structure_faults(&serde_json::json!({
            "name": "x", "service": "http", "config": {}, "events": []}))
        .is_ok());
    }
    use crate::service::testing;
    use serde_json::json;

    fn spec(v: Value) -> SubscriptionSpec {
        serde_json::from_value(v).unwrap()
    }

    fn fields(e: Invalid) -> Vec<String> {
        e.0.into_iter().map(|e| e.field).collect()
    }

    #[test]
    fn a_minimal_spec_gets_the_defaults() {
        let s = spec(json!({"name":"n","service":"test","config":{"to":"x"},"events":["*"]}));
        assert!(s.enabled);
        assert_eq!(s.max_in_flight, 10);
        let c = s.validate(&testing::registry()).unwrap();
        assert_eq!(c.target.destination(), Some("x"));
        assert_eq!(c.retry, RetryPolicy::default());
    }

    #[test]
    fn every_fault_is_named_by_its_path() {
        let s = spec(
            json!({"name":"","service":"test","config":{"too":1},"events":["ok","bad name"],
            "retry":{"schedule_s":[1, 999999999]},"max_in_flight":0}),
        );
        let got = fields(s.validate(&testing::registry()).unwrap_err());
        assert_eq!(
            got,
            [
                "name",
                "config.to",
                "events[1]",
                "retry.schedule_s[1]",
                "max_in_flight"
            ]
        );
        // An unknown service: its config cannot be checked; the known ones are listed.
        let s = spec(json!({"name":"n","service":"smtp","config":{},"events":["*"]}));
        let e = s.validate(&testing::registry()).unwrap_err();
        assert_eq!(e.0[0].field, "service");
        assert!(e.0[0].message.ends_with("known: test"), "{e}");
    }

    #[test]
    fn rotation_keeps_the_old_secret_until_it_expires() {
        let mut s = Subscription {
            id: crate::SubscriptionId::stored("sub_1".into()),
            owner: "admin".into(),
            spec: spec(json!({"name":"n","service":"test","config":{"to":"x"},"events":["*"]})),
            disabled_reason: None,
            secret: Secret::generate(),
            previous_secret: None,
            created_at: 0,
            updated_at: 0,
        };
        assert_eq!(s.signing_secrets(10).len(), 1);
        s.previous_secret = Some((Secret::generate(), 100));
        assert_eq!(s.signing_secrets(10).len(), 2);
        assert_eq!(s.signing_secrets(100).len(), 1);
    }
}
