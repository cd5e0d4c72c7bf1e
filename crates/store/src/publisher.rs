//! The one way events get in: [`Publisher`] checks an event (name, data, its event type's
//! schema, ids, times, tenant), matches it against the subscription index, and stores it with
//! its deliveries through the group commit. Every front — the `/v1` API, the front doors, the
//! broker sources, the service's own `posthorn.*` events — goes through it with the publisher's
//! identity; none of them writes events itself.

use posthorn_core::event::{
    attribute_faults, compact_json, is_valid_token, PublishRequest, GENERATED_PREFIX,
};
use posthorn_core::id::new_id;
use posthorn_core::owner::SYSTEM;
use posthorn_core::time::{now_ms, parse_rfc3339};
use posthorn_core::validation::Errors;
use posthorn_core::{EventName, EventView, Invalid, Principal, Subscription};
use serde_json::Value;

use crate::{schema_errors, EventTypeCache, NewEvent, Published, Result, Store, SubscriptionCache};

/// Events whose data is this large or larger are matched on a blocking thread
/// ([`Publisher::prepare_bounded`]).
pub const OFF_THE_WORKERS_AT: usize = 64 * 1024;

/// Checks, matches and stores events.
#[derive(Clone)]
pub struct Publisher {
    store: Store,
    subscriptions: SubscriptionCache,
    event_types: EventTypeCache,
}

impl Publisher {
    pub fn new(
        store: Store,
        subscriptions: SubscriptionCache,
        event_types: EventTypeCache,
    ) -> Self {
        Self {
            store,
            subscriptions,
            event_types,
        }
    }

    /// Checks one event sent by `publisher` and finds the subscriptions that want it; every
    /// fault is named by its path below `prefix` (`[3].data.x` in a batch). An application
    /// publishes for itself: its events carry it as their tenant (only its own and the admin's
    /// subscriptions receive them), and naming another tenant is a fault.
    pub fn prepare(
        &self,
        publisher: &Principal,
        mut req: PublishRequest,
        prefix: &str,
    ) -> std::result::Result<NewEvent, Invalid> {
        let at = |f: &str| {
            if prefix.is_empty() {
                f.to_owned()
            } else {
                format!("{prefix}.{f}")
            }
        };
        let mut errors = Errors::default();
        if let Principal::Application(app) = publisher {
            match &req.tenant {
                Some(t) if t != app => errors.add(
                    at("tenant"),
                    "an application publishes for itself only (leave tenant out)",
                ),
                _ => req.tenant = Some(app.clone()),
            }
        }
        match EventName::parse(&req.name) {
            Ok(n) if n.is_reserved() => errors.add(
                at("name"),
                "posthorn.* events are the service's own and cannot be published",
            ),
            Ok(_) => {}
            Err(msg) => errors.add(at("name"), msg.to_string()),
        }
        // The data as a tree, built only if a schema or a filter looks into it. Every body passed
        // `posthorn_core::json::check`, so this parse succeeds; if it ever did not, the event is
        // refused — never matched or checked as `null`.
        let tree = std::cell::OnceCell::new();
        let unreadable = std::cell::Cell::new(false);
        let data = || {
            tree.get_or_init(|| {
                serde_json::from_str::<Value>(req.data.get()).unwrap_or_else(|_| {
                    unreadable.set(true);
                    Value::Null
                })
            })
        };
        if !req.data.get().starts_with('{') {
            errors.add(at("data"), "must be a JSON object");
        } else if let Some(validator) = self.event_types.validator(&req.name) {
            for (field, message) in schema_errors(&validator, data(), &at("data")) {
                errors.add(field, message);
            }
        }
        if let Some(id) = &req.id {
            if !is_valid_token(id) {
                errors.add(
                    at("id"),
                    "must be 1 to 128 characters of A-Z a-z 0-9 _ . : -",
                );
            } else if *publisher != Principal::Admin && id.starts_with(GENERATED_PREFIX) {
                errors.add(
                    at("id"),
                    "evt_ begins the ids Posthorn generates; choose an id without it, or leave it out",
                );
            }
        }
        let occurred_at = match &req.occurred_at {
            None => now_ms(),
            Some(t) => parse_rfc3339(t).unwrap_or_else(|| {
                errors.add(at("occurred_at"), "must be an RFC 3339 time");
                0
            }),
        };
        if let Some(origin) = &req.origin {
            if origin.chars().count() > 256 {
                errors.add(at("origin"), "must be at most 256 characters");
            }
        }
        if let Some(tenant) = &req.tenant {
            if !is_valid_token(tenant) {
                errors.add(at("tenant"), "must be an application id");
            }
        }
        if let Some(key) = &req.ordering_key {
            let n = key.chars().count();
            if n == 0 || n > posthorn_core::event::MAX_ORDERING_KEY {
                errors.add(at("ordering_key"), "must be 1 to 256 characters");
            }
        }
        for (field, message) in attribute_faults(&req.attributes) {
            errors.add(format!("{}{field}", at("attributes")), message);
        }
        if unreadable.get() {
            errors.add(at("data"), "cannot be read as JSON");
        }
        errors.finish()?;
        let id = req.id.unwrap_or_else(|| new_id("evt"));
        let subscriptions = self.subscriptions.matching_with(
            &req.name,
            &id,
            req.origin.as_deref(),
            &req.attributes,
            req.tenant.as_deref(),
            data,
        );
        let placements = self.subscriptions.placements(
            &subscriptions,
            &req.name,
            &id,
            req.origin.as_deref(),
            &req.attributes,
            req.ordering_key.as_deref(),
            data,
        );
        if unreadable.get() {
            return Err(Invalid::one(at("data"), "cannot be read as JSON"));
        }
        Ok(NewEvent {
            publisher: publisher.clone(),
            data: compact_json(req.data.get()).into_owned(),
            id,
            name: req.name,
            origin: req.origin,
            tenant: req.tenant,
            attributes: req.attributes,
            occurred_at,
            subscriptions,
            placements,
        })
    }

    /// How many of the subscriptions `ids` (an event's, as prepared) `owner` owns: what an
    /// application is told of an event's deliveries (the admin's subscriptions also receive its
    /// events, but it does not see them).
    pub fn owned_by(&self, ids: &[posthorn_core::SubscriptionId], owner: &str) -> u64 {
        ids.iter()
            .filter(|id| {
                self.subscriptions
                    .get(id)
                    .is_some_and(|s| s.sub.owner == owner)
            })
            .count() as u64
    }

    /// The event names the subscriptions ask for: what a source's bindings follow.
    pub fn wanted_names(&self) -> posthorn_core::index::WantedNames {
        self.subscriptions.wanted_names()
    }

    /// [`Publisher::prepare`], off the async workers when the event is large: matching costs up
    /// to the data's size for each filter that looks into it (`contains`), so a large event
    /// against many filters is CPU work that would otherwise stall every request and delivery
    /// sharing the worker. Small events (the common case) are prepared in place.
    pub async fn prepare_bounded(
        &self,
        publisher: &Principal,
        req: PublishRequest,
        prefix: &str,
    ) -> std::result::Result<NewEvent, Invalid> {
        if req.data.get().len() < OFF_THE_WORKERS_AT {
            return self.prepare(publisher, req, prefix);
        }
        let (this, publisher, owned_prefix) = (self.clone(), publisher.clone(), prefix.to_owned());
        match tokio::task::spawn_blocking(move || this.prepare(&publisher, req, &owned_prefix))
            .await
        {
            Ok(prepared) => prepared,
            Err(e) => {
                tracing::error!(error = %e, "matching an event failed");
                Err(Invalid::one(
                    if prefix.is_empty() { "data" } else { prefix },
                    "could not be matched against the subscriptions",
                ))
            }
        }
    }

    /// Stores prepared events atomically with their deliveries; answers once they are durable,
    /// and counts them in `posthorn_events_received_total{source}` by how they came in. This
    /// process's dispatcher takes the deliveries from the commit (`Handoff`).
    pub async fn publish(&self, events: Vec<NewEvent>) -> Result<Vec<Published>> {
        let channels: Vec<&'static str> = events.iter().map(|e| e.publisher.channel()).collect();
        let published = self.store.publish(events).await?;
        // A call's events come from one front: one run, one counter update.
        for run in channels.chunk_by(|a, b| a == b) {
            metrics::counter!(posthorn_core::metric::EVENTS_RECEIVED, "source" => run[0])
                .increment(run.len() as u64);
        }
        Ok(published)
    }

    /// One of the service's own events, to `owner`'s subscriptions that name it (never to `*`).
    pub async fn emit(&self, name: &str, owner: &str, data: Value) -> Result<()> {
        let id = new_id("evt");
        let view = EventView {
            name,
            id: &id,
            origin: Some(SYSTEM),
            attributes: &Default::default(),
            data: &data,
        };
        let subscriptions = self.subscriptions.matching(&view, Some(owner));
        if subscriptions.is_empty() {
            return Ok(());
        }
        // The service's own events are not counted as received.
        self.store
            .publish(vec![system_event(id, name, owner, &data, subscriptions)])
            .await?;
        Ok(())
    }

    /// A `posthorn.ping` to `sub` alone; the delivery's id comes back in `delivery_ids`.
    pub async fn ping(&self, sub: &Subscription) -> Result<Option<Published>> {
        let data = serde_json::json!({"subscription_id": sub.id});
        let event = system_event(
            new_id("evt"),
            "posthorn.ping",
            &sub.owner,
            &data,
            vec![sub.id.clone()],
        );
        Ok(self.store.publish(vec![event]).await?.into_iter().next())
    }
}

fn system_event(
    id: String,
    name: &str,
    owner: &str,
    data: &Value,
    subscriptions: Vec<posthorn_core::SubscriptionId>,
) -> NewEvent {
    NewEvent {
        id,
        publisher: Principal::System,
        name: name.into(),
        origin: Some(SYSTEM.into()),
        tenant: Some(owner.into()),
        attributes: Default::default(),
        data: data.to_string(),
        occurred_at: now_ms(),
        subscriptions,
        placements: Vec::new(),
    }
}
