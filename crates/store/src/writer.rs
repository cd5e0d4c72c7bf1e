//! The one subscription write path: write to the database, bring this process's index up to
//! date, and (through the store) wake the dispatcher when deliveries fall due. The API, the front
//! doors and the dispatcher's consequences (a 410 deletes, a long failure disables) all write
//! through [`SubscriptionWriter`], so the three steps cannot drift apart.

use posthorn_core::time::now_ms;
use posthorn_core::Subscription;

use crate::{Result, Store, SubscriptionCache};

#[derive(Clone)]
pub struct SubscriptionWriter {
    store: Store,
    cache: SubscriptionCache,
    /// How many subscriptions one application may have (0: no limit; the admin's never count).
    per_application: usize,
}

impl SubscriptionWriter {
    pub fn new(store: Store, cache: SubscriptionCache) -> Self {
        Self {
            store,
            cache,
            per_application: 0,
        }
    }

    /// The same writer, holding each application to `n` subscriptions (0: no limit): a create
    /// past it is refused with [`crate::StoreError::Quota`]. Each subscription costs matching
    /// time on every event it could receive, and memory in every process's index.
    pub fn with_quota(mut self, n: usize) -> Self {
        self.per_application = n;
        self
    }

    /// Where the subscription's config holds credentials, as its service says.
    fn secret_paths(&self, sub: &Subscription) -> Vec<String> {
        posthorn_core::service::secret_paths(
            self.cache.services(),
            &sub.spec.service,
            &sub.spec.config,
        )
    }

    /// The index this writer keeps up to date.
    pub fn cache(&self) -> &SubscriptionCache {
        &self.cache
    }

    /// Stores a new subscription.
    pub async fn create(&self, sub: &Subscription) -> Result<()> {
        if self.per_application > 0 && sub.owner != posthorn_core::owner::ADMIN {
            let has = self.store.count_subscriptions(&sub.owner).await?;
            if has >= self.per_application as u64 {
                return Err(crate::StoreError::Quota(format!(
                    "this application has {has} subscriptions, the most it may have \
                     (--max-subscriptions-per-application {}); delete one first",
                    self.per_application
                )));
            }
        }
        let revision = self
            .store
            .insert_subscription(sub, &self.secret_paths(sub))
            .await?;
        self.apply(&sub.id, Some(sub.clone()), revision).await;
        Ok(())
    }

    /// Writes a changed subscription (stamped now; an enabled one loses its disabled reason);
    /// `None` when it was deleted meanwhile.
    pub async fn save(&self, mut sub: Subscription) -> Result<Option<Subscription>> {
        sub.updated_at = now_ms();
        if sub.spec.enabled {
            sub.disabled_reason = None;
        }
        let paths = self.secret_paths(&sub);
        let Some(revision) = self.store.update_subscription(&sub, &paths).await? else {
            return Ok(None);
        };
        self.apply(&sub.id, Some(sub.clone()), revision).await;
        Ok(Some(sub))
    }

    /// Deletes a subscription (its pending deliveries are cancelled, its log stays); `false`
    /// when it was already gone.
    pub async fn delete(&self, id: &posthorn_core::SubscriptionId) -> Result<bool> {
        let Some(revision) = self.store.delete_subscription(id).await? else {
            return Ok(false);
        };
        self.apply(id, None, revision).await;
        Ok(true)
    }

    async fn apply(&self, id: &str, sub: Option<Subscription>, revision: i64) {
        // The write is committed; if this fails, the revision poll catches up within a second.
        if let Err(e) = self.cache.apply(id, sub, revision).await {
            tracing::warn!(error = %e, "updating the subscription index after a change failed");
        }
    }
}
