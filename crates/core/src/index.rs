//! The subscription index: which active subscriptions want an event, found without scanning
//! every subscription.
//!
//! Active subscriptions are indexed by exact event name, by prefix (`prefix.*`, looked up once per
//! `.` in the event's name) and `*`. The candidates found are checked against their patterns
//! (`*` never takes `posthorn.*`), the tenant, then their filter. Everything a subscription needs
//! per event (patterns, filter, HTTP config, retry policy) is compiled once, when the index is
//! built.

use serde_json::Value;
use std::collections::HashMap;

use crate::id::SubscriptionId;
use std::sync::Arc;

use crate::filter::{EventView, Filter};
use crate::pattern::EventPattern;
use crate::service::Registry;
use crate::subscription::{Compiled, Subscription};
use crate::validation::Invalid;

/// A subscription with what validation compiled out of it.
#[derive(Debug)]
pub struct IndexedSubscription {
    pub sub: Subscription,
    pub compiled: Compiled,
    /// Its filter's slot among the index's distinct filters.
    filter_slot: Option<usize>,
}

impl IndexedSubscription {
    /// A subscription and what validation compiled, outside any index (read on its own, as a
    /// dispatcher does for one its index has not seen yet).
    pub fn standalone(sub: Subscription, compiled: Compiled) -> Self {
        Self {
            sub,
            compiled,
            filter_slot: None,
        }
    }
}

/// What [`SubscriptionIndex::wanted_names`] says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WantedNames {
    pub names: std::collections::BTreeSet<String>,
    /// Some subscription takes names by a prefix or `*`.
    pub by_pattern: bool,
}

/// Where the delivery of one event to one subscription goes in the queue.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Placement {
    /// Its ordering key (`ordered: "key"`).
    pub order_key: Option<String>,
    /// Pulled by the consumer (never attempted): parked until acknowledged.
    pub pulled: bool,
}

#[derive(Debug, Default, Clone)]
pub struct SubscriptionIndex {
    /// By id: ids are this server's own, so the faster `foldhash` (seeded per process, but
    /// "minimally" resistant to chosen collisions); the maps below are keyed by what tenants
    /// write (patterns, filters) and keep std's SipHash.
    by_id: foldhash::HashMap<SubscriptionId, Arc<IndexedSubscription>>,
    exact: HashMap<String, Vec<Arc<IndexedSubscription>>>,
    prefixes: HashMap<String, Vec<Arc<IndexedSubscription>>>,
    all: Vec<Arc<IndexedSubscription>>,
    /// Whether some active subscription has several patterns, and so may be found twice.
    overlapping: bool,
    /// Distinct filters (by text): each is evaluated at most once per event, however many
    /// subscriptions share it.
    filters: Vec<Filter>,
    filter_slots: HashMap<String, usize>,
    /// Whether some subscription has been indexed with `ordered: "key"` or a pulled service
    /// (then events get their [`Placement`]s worked out; never reset, like `overlapping`).
    placed: bool,
}

impl SubscriptionIndex {
    /// Indexes `subs`; one that no longer validates (against `services`) is left out and
    /// returned in the second list with why.
    pub fn build(
        subs: Vec<Subscription>,
        services: &Registry,
    ) -> (Self, Vec<(SubscriptionId, Invalid)>) {
        let mut index = Self::default();
        let mut rejected = Vec::new();
        for sub in subs {
            if let Err(e) = index.insert(sub.clone(), services) {
                rejected.push((sub.id, e));
            }
        }
        (index, rejected)
    }

    /// The event names the active subscriptions ask for, for a broker source whose bindings
    /// follow the subscriptions: every exact name (not the service's own `posthorn.*`), and
    /// whether some subscription takes names by a prefix or `*`, which a binding per name cannot
    /// express.
    pub fn wanted_names(&self) -> WantedNames {
        let reserved = |n: &str| {
            n.get(..crate::event::RESERVED_PREFIX.len())
                .is_some_and(|p| p.eq_ignore_ascii_case(crate::event::RESERVED_PREFIX))
        };
        WantedNames {
            names: self
                .exact
                .keys()
                .filter(|n| !reserved(n))
                .cloned()
                .collect(),
            by_pattern: !self.all.is_empty() || self.prefixes.keys().any(|p| !reserved(p)),
        }
    }

    /// Adds or replaces one subscription (compiling only it).
    pub fn upsert(&mut self, sub: Subscription, services: &Registry) -> Result<(), Invalid> {
        self.remove(&sub.id);
        self.insert(sub, services)
    }

    /// Takes a subscription out.
    pub fn remove(&mut self, id: &str) {
        let Some(old) = self.by_id.remove(id) else {
            return;
        };
        if !old.sub.is_active() {
            return;
        }
        let keep = |e: &Arc<IndexedSubscription>| e.sub.id != id;
        for p in &old.compiled.patterns {
            match p {
                EventPattern::Exact(name) => {
                    if let Some(list) = self.exact.get_mut(name) {
                        list.retain(keep);
                        if list.is_empty() {
                            self.exact.remove(name);
                        }
                    }
                }
                EventPattern::Prefix(prefix) => {
                    if let Some(list) = self.prefixes.get_mut(prefix) {
                        list.retain(keep);
                        if list.is_empty() {
                            self.prefixes.remove(prefix);
                        }
                    }
                }
                EventPattern::All => self.all.retain(keep),
            }
        }
    }

    fn insert(&mut self, sub: Subscription, services: &Registry) -> Result<(), Invalid> {
        let compiled = sub.spec.validate(services)?;
        let filter_slot = match (&sub.spec.filter, &compiled.filter) {
            (Some(text), Some(filter)) => Some(match self.filter_slots.get(text) {
                Some(slot) => *slot,
                None => {
                    self.filters.push(filter.clone());
                    self.filter_slots
                        .insert(text.clone(), self.filters.len() - 1);
                    self.filters.len() - 1
                }
            }),
            _ => None,
        };
        let entry = Arc::new(IndexedSubscription {
            sub,
            compiled,
            filter_slot,
        });
        self.placed |= entry.sub.spec.ordered == crate::subscription::Order::Key
            || entry.compiled.target.pulled();
        if entry.sub.is_active() {
            self.overlapping |= entry.compiled.patterns.len() > 1;
            for p in &entry.compiled.patterns {
                let list = match p {
                    EventPattern::Exact(name) => self.exact.entry(name.clone()).or_default(),
                    EventPattern::Prefix(prefix) => {
                        self.prefixes.entry(prefix.clone()).or_default()
                    }
                    EventPattern::All => &mut self.all,
                };
                list.push(entry.clone());
            }
        }
        self.by_id.insert(entry.sub.id.clone(), entry);
        Ok(())
    }

    /// A subscription that is not deleted, active or not.
    pub fn get(&self, id: &str) -> Option<&Arc<IndexedSubscription>> {
        self.by_id.get(id)
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// The ids of the active subscriptions that want `event`, each once. With a `tenant`, only
    /// that owner's subscriptions and the admin's.
    pub fn matching(&self, event: &EventView<'_>, tenant: Option<&str>) -> Vec<SubscriptionId> {
        self.matching_with(
            event.name,
            event.id,
            event.origin,
            event.attributes,
            tenant,
            || event.data,
        )
    }

    /// As [`SubscriptionIndex::matching`], with the event's `data` asked for only if a filter
    /// needs it, at most once: building it (parsing the published text) costs more than matching
    /// by name, and most events match no filtered subscription.
    pub fn matching_with<'d>(
        &self,
        name: &str,
        id: &str,
        origin: Option<&str>,
        attributes: &crate::event::Attributes,
        tenant: Option<&str>,
        data: impl Fn() -> &'d Value,
    ) -> Vec<SubscriptionId> {
        let mut verdicts: Vec<Option<bool>> = vec![None; self.filters.len()];
        let by_prefix = name
            .match_indices('.')
            .filter_map(|(i, _)| self.prefixes.get(&name[..=i]))
            .flatten();
        let mut ids: Vec<SubscriptionId> = self
            .exact
            .get(name)
            .into_iter()
            .flatten()
            .chain(by_prefix)
            .chain(self.all.iter())
            .filter(|e| e.compiled.patterns.iter().any(|p| p.matches(name)))
            .filter(|e| {
                tenant.is_none_or(|t| e.sub.owner == t || e.sub.owner == crate::owner::ADMIN)
            })
            .filter(|e| match e.filter_slot {
                None => true,
                Some(slot) => *verdicts[slot].get_or_insert_with(|| {
                    self.filters[slot].matches(&EventView {
                        name,
                        id,
                        origin,
                        attributes,
                        data: data(),
                    })
                }),
            })
            .map(|e| e.sub.id.clone())
            .collect();
        if self.overlapping {
            ids.sort_unstable();
            ids.dedup();
        }
        ids
    }

    /// Where the delivery of this event to each of `ids` (subscriptions it matched) goes: its
    /// ordering key — for subscriptions with `ordered: "key"`, their `order_key` path's value,
    /// else the event's own `ordering_key`; `None` for the others, and for an event without a
    /// key (it is then not held back by any other) — and whether it is pulled. Empty when no
    /// subscription of the index orders by key or is pulled, the common case, which costs
    /// nothing.
    #[allow(clippy::too_many_arguments)]
    pub fn placements<'d>(
        &self,
        ids: &[SubscriptionId],
        name: &str,
        id: &str,
        origin: Option<&str>,
        attributes: &crate::event::Attributes,
        ordering_key: Option<&str>,
        data: impl Fn() -> &'d Value,
    ) -> Vec<Placement> {
        if !self.placed {
            return Vec::new();
        }
        ids.iter()
            .map(|sid| {
                let Some(e) = self.by_id.get(sid) else {
                    return Placement::default();
                };
                let order_key = if e.sub.spec.ordered != crate::subscription::Order::Key {
                    None
                } else {
                    match &e.compiled.order_key {
                        Some(path) => path.key(&EventView {
                            name,
                            id,
                            origin,
                            attributes,
                            data: data(),
                        }),
                        None => ordering_key.map(str::to_owned),
                    }
                };
                Placement {
                    order_key,
                    pulled: e.compiled.target.pulled(),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signing::Secret;
    use serde_json::{json, Value};

    fn sub(id: &str, owner: &str, events: &[&str], filter: Option<&str>) -> Subscription {
        Subscription {
            id: SubscriptionId::stored(id.into()),
            owner: owner.into(),
            spec: serde_json::from_value(json!({"name": "n", "service": "test",
                "config": {"to": "https://e.com"}, "events": events, "filter": filter}))
            .unwrap(),
            disabled_reason: None,
            secret: Secret::generate(),
            previous_secret: None,
            created_at: 0,
            updated_at: 0,
        }
    }

    fn ids(
        index: &SubscriptionIndex,
        name: &str,
        data: &Value,
        tenant: Option<&str>,
    ) -> Vec<SubscriptionId> {
        index.matching(
            &EventView {
                name,
                id: "e",
                origin: None,
                attributes: &Default::default(),
                data,
            },
            tenant,
        )
    }

    #[test]
    fn matches_by_name_prefix_star_tenant_and_filter() {
        let mut off = sub("s_off", "admin", &["a.b"], None);
        off.spec.enabled = false;
        let (index, rejected) = SubscriptionIndex::build(
            vec![
                sub("s_exact", "admin", &["a.b"], None),
                sub("s_prefix", "app_1", &["a.*"], None),
                sub("s_deep", "admin", &["a.b.*"], None),
                sub("s_star", "app_2", &["*"], None),
                sub("s_twice", "admin", &["a.b", "a.*", "*"], None),
                sub("s_filter", "admin", &["a.b"], Some("n > 1")),
                off,
            ],
            &crate::service::testing::registry(),
        );
        assert!(rejected.is_empty());
        assert_eq!(index.len(), 7);
        assert!(index.get("s_off").is_some());
        let d = json!({"n": 1});
        assert_eq!(
            ids(&index, "a.b", &d, None),
            ["s_exact", "s_prefix", "s_star", "s_twice"]
        );
        assert_eq!(
            ids(&index, "a.b", &json!({"n": 2}), None),
            ["s_exact", "s_filter", "s_prefix", "s_star", "s_twice"]
        );
        assert_eq!(
            ids(&index, "a.b.c", &d, None),
            ["s_deep", "s_prefix", "s_star", "s_twice"]
        );
        assert_eq!(
            ids(&index, "a.b", &d, Some("app_1")),
            ["s_exact", "s_prefix", "s_twice"]
        );
        assert_eq!(
            ids(&index, "posthorn.ping", &d, None),
            Vec::<SubscriptionId>::new()
        );
        assert_eq!(ids(&index, "ab", &d, None), ["s_star", "s_twice"]);
    }

    #[test]
    fn upsert_and_remove_change_only_one_subscription() {
        let (mut index, _) = SubscriptionIndex::build(
            vec![
                sub("s1", "admin", &["a"], None),
                sub("s2", "admin", &["a", "b.*"], Some("n = 1")),
            ],
            &crate::service::testing::registry(),
        );
        let d = json!({"n": 1});
        assert_eq!(ids(&index, "a", &d, None), ["s1", "s2"]);
        index
            .upsert(
                sub("s2", "admin", &["c"], Some("n = 2")),
                &crate::service::testing::registry(),
            )
            .unwrap();
        assert_eq!(ids(&index, "a", &d, None), ["s1"]);
        assert_eq!(ids(&index, "b.x", &d, None), Vec::<SubscriptionId>::new());
        assert_eq!(ids(&index, "c", &json!({"n": 2}), None), ["s2"]);
        let mut off = sub("s1", "admin", &["a"], None);
        off.spec.enabled = false;
        index
            .upsert(off, &crate::service::testing::registry())
            .unwrap();
        assert_eq!(ids(&index, "a", &d, None), Vec::<SubscriptionId>::new());
        assert!(index.get("s1").is_some());
        index.remove("s1");
        index.remove("s2");
        assert!(index.is_empty());
        assert_eq!(
            ids(&index, "c", &json!({"n": 2}), None),
            Vec::<SubscriptionId>::new()
        );
        assert!(index
            .upsert(
                sub("s3", "admin", &["bad name"], None),
                &crate::service::testing::registry()
            )
            .is_err());
    }
}
