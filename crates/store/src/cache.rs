//! The in-memory subscription index: every subscription that is not deleted, compiled once, with
//! the active ones indexed by exact event name, by prefix, and `*`, so that matching an event does
//! not scan every subscription.
//!
//! It is a snapshot swapped whole: readers never wait on a refresh. It is refreshed right after a
//! write made through this process, and by [`SubscriptionCache::watch`], which polls the
//! `subscriptions` revision counter and reloads when another process has changed something.
//! A snapshot never replaces a newer one.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use posthorn_core::subscription::Compiled;
use posthorn_core::{EventPattern, Subscription};

use crate::{Result, Store};

/// A subscription with what validation compiled out of it.
#[derive(Debug)]
pub struct SubscriptionEntry {
    pub sub: Subscription,
    pub compiled: Compiled,
}

#[derive(Default)]
struct Snapshot {
    revision: i64,
    by_id: HashMap<String, Arc<SubscriptionEntry>>,
    exact: HashMap<String, Vec<Arc<SubscriptionEntry>>>,
    prefixes: Vec<(String, Arc<SubscriptionEntry>)>,
    all: Vec<Arc<SubscriptionEntry>>,
}

impl Snapshot {
    fn build(revision: i64, subs: Vec<Subscription>, services: &[&str]) -> Self {
        let mut s = Snapshot {
            revision,
            ..Default::default()
        };
        for sub in subs {
            let compiled = match sub.spec.validate(services) {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(subscription = %sub.id, error = %e, "skipping an invalid stored subscription");
                    continue;
                }
            };
            let entry = Arc::new(SubscriptionEntry { sub, compiled });
            if entry.sub.is_active() {
                for p in &entry.compiled.patterns {
                    match p {
                        EventPattern::Exact(name) => {
                            s.exact.entry(name.clone()).or_default().push(entry.clone())
                        }
                        EventPattern::Prefix(prefix) => {
                            s.prefixes.push((prefix.clone(), entry.clone()))
                        }
                        EventPattern::All => s.all.push(entry.clone()),
                    }
                }
            }
            s.by_id.insert(entry.sub.id.clone(), entry);
        }
        s
    }
}

#[derive(Clone)]
pub struct SubscriptionCache {
    snapshot: Arc<RwLock<Arc<Snapshot>>>,
    store: Store,
    services: Arc<Vec<String>>,
}

impl SubscriptionCache {
    /// Loads every subscription; `services` are the delivery services that exist.
    pub async fn load(store: Store, services: Vec<String>) -> Result<Self> {
        let cache = Self {
            snapshot: Arc::default(),
            store,
            services: Arc::new(services),
        };
        cache.refresh().await?;
        Ok(cache)
    }

    /// Reloads from the database.
    pub async fn refresh(&self) -> Result<()> {
        let (revision, subs) = self.store.all_subscriptions().await?;
        let services: Vec<&str> = self.services.iter().map(String::as_str).collect();
        let next = Arc::new(Snapshot::build(revision, subs, &services));
        let mut current = self.snapshot.write().unwrap_or_else(|p| p.into_inner());
        if next.revision >= current.revision {
            *current = next;
        }
        Ok(())
    }

    fn current(&self) -> Arc<Snapshot> {
        self.snapshot
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// A subscription that is not deleted (as of the last refresh).
    pub fn get(&self, id: &str) -> Option<Arc<SubscriptionEntry>> {
        self.current().by_id.get(id).cloned()
    }

    /// The ids of the active subscriptions that want an event named `name`. With a `tenant`, only
    /// that owner's subscriptions and the admin's.
    pub fn matching(&self, name: &str, tenant: Option<&str>) -> Vec<String> {
        let snap = self.current();
        let candidates = snap
            .exact
            .get(name)
            .into_iter()
            .flatten()
            .chain(
                snap.prefixes
                    .iter()
                    .filter(|(p, _)| name.starts_with(p.as_str()))
                    .map(|(_, e)| e),
            )
            .chain(snap.all.iter());
        let mut ids: Vec<String> = candidates
            .filter(|e| e.compiled.patterns.iter().any(|p| p.matches(name)))
            .filter(|e| match tenant {
                Some(t) => e.sub.owner == t || e.sub.owner == "admin",
                None => true,
            })
            .map(|e| e.sub.id.clone())
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// Polls the revision counter every `every` and reloads when it moved; runs until the
    /// returned task is aborted.
    pub fn watch(&self, every: Duration) -> tokio::task::JoinHandle<()> {
        let cache = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let known = cache.current().revision;
                match cache.store.subscriptions_revision().await {
                    Ok(r) if r != known => {
                        if let Err(e) = cache.refresh().await {
                            tracing::warn!(error = %e, "reloading subscriptions failed");
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "checking for subscription changes failed")
                    }
                }
            }
        })
    }
}
