//! The live subscription index of a process: a [`SubscriptionIndex`] snapshot, swapped whole so
//! that readers never wait on a refresh.
//!
//! It is refreshed right after a write made through this process, and by
//! [`SubscriptionCache::watch`], which polls the `subscriptions` revision counter and reloads when
//! another process has changed something. A snapshot never replaces a newer one.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use posthorn_core::index::IndexedSubscription;
use posthorn_core::{EventView, Registry, Subscription, SubscriptionIndex};

use crate::{Result, Store};

struct Snapshot {
    revision: i64,
    index: SubscriptionIndex,
}

#[derive(Clone)]
pub struct SubscriptionCache {
    snapshot: Arc<RwLock<Arc<Snapshot>>>,
    store: Store,
    services: Arc<Registry>,
}

impl SubscriptionCache {
    /// Loads every subscription; `services` are the delivery services that exist.
    pub async fn load(store: Store, services: Arc<Registry>) -> Result<Self> {
        let cache = Self {
            snapshot: Arc::new(RwLock::new(Arc::new(Snapshot {
                revision: i64::MIN,
                index: SubscriptionIndex::default(),
            }))),
            store,
            services,
        };
        cache.refresh().await?;
        Ok(cache)
    }

    /// Reloads from the database.
    pub async fn refresh(&self) -> Result<()> {
        let (revision, subs) = self.store.all_subscriptions().await?;
        let (index, rejected) = SubscriptionIndex::build(subs, &self.services);
        for (id, why) in rejected {
            tracing::error!(subscription = %id, error = %why, "skipping an invalid stored subscription");
        }
        let next = Arc::new(Snapshot { revision, index });
        let mut current = self.snapshot.write().unwrap_or_else(|p| p.into_inner());
        if next.revision >= current.revision {
            *current = next;
        }
        Ok(())
    }

    /// Applies a write made through this process: `upsert` (or, with `None`, removal of
    /// `id`) that moved the revision to `revision`. When no other change came in between, only
    /// that subscription is compiled; otherwise everything is reloaded.
    pub async fn apply(&self, id: &str, upsert: Option<Subscription>, revision: i64) -> Result<()> {
        {
            let mut current = self.snapshot.write().unwrap_or_else(|p| p.into_inner());
            if current.revision + 1 == revision {
                let mut index = current.index.clone();
                let applied = match upsert {
                    Some(sub) => index.upsert(sub, &self.services),
                    None => {
                        index.remove(id);
                        Ok(())
                    }
                };
                if applied.is_ok() {
                    *current = Arc::new(Snapshot { revision, index });
                    return Ok(());
                }
            } else if current.revision >= revision {
                // Already reflected (a reload ran in between).
                return Ok(());
            }
        }
        self.refresh().await
    }

    fn current(&self) -> Arc<Snapshot> {
        self.snapshot
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The delivery services subscriptions are checked against.
    pub fn services(&self) -> &Arc<Registry> {
        &self.services
    }

    /// A subscription that is not deleted (as of the last refresh).
    pub fn get(&self, id: &str) -> Option<Arc<IndexedSubscription>> {
        self.current().index.get(id).cloned()
    }

    /// The ids of the active subscriptions that want `event` (see [`SubscriptionIndex::matching`]).
    pub fn matching(
        &self,
        event: &EventView<'_>,
        tenant: Option<&str>,
    ) -> Vec<posthorn_core::SubscriptionId> {
        self.current().index.matching(event, tenant)
    }

    /// See [`SubscriptionIndex::matching_with`]: `data` is built only if a filter needs it.
    pub fn matching_with<'d>(
        &self,
        name: &str,
        id: &str,
        origin: Option<&str>,
        attributes: &posthorn_core::event::Attributes,
        tenant: Option<&str>,
        data: impl Fn() -> &'d serde_json::Value,
    ) -> Vec<posthorn_core::SubscriptionId> {
        self.current()
            .index
            .matching_with(name, id, origin, attributes, tenant, data)
    }

    /// Where this event's delivery to each of `ids` goes (see
    /// [`SubscriptionIndex::placements`]).
    #[allow(clippy::too_many_arguments)]
    pub fn placements<'d>(
        &self,
        ids: &[posthorn_core::SubscriptionId],
        name: &str,
        id: &str,
        origin: Option<&str>,
        attributes: &posthorn_core::event::Attributes,
        ordering_key: Option<&str>,
        data: impl Fn() -> &'d serde_json::Value,
    ) -> Vec<posthorn_core::index::Placement> {
        self.current()
            .index
            .placements(ids, name, id, origin, attributes, ordering_key, data)
    }

    /// The event names this process's active subscriptions ask for (see
    /// [`SubscriptionIndex::wanted_names`]).
    pub fn wanted_names(&self) -> posthorn_core::index::WantedNames {
        self.current().index.wanted_names()
    }

    /// Reloads whenever another process changes a subscription (polled every `every`).
    pub fn watch(&self, every: Duration) -> tokio::task::JoinHandle<()> {
        let (known, reload) = (self.clone(), self.clone());
        crate::watch_revision(
            self.store.clone(),
            "subscriptions",
            every,
            move || known.current().revision,
            move || {
                let cache = reload.clone();
                async move { cache.refresh().await }
            },
        )
    }
}
