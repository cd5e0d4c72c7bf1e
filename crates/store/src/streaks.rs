//! Failing streaks: since when each subscription's attempts have all failed (what auto-disable
//! counts from), noted on failure and cleared on success.

use posthorn_core::time::{now_ms, Millis};

use crate::{get, get_id, placeholders, Result, Store};

impl Store {
    /// Notes that these subscriptions' deliveries fail, from now for those that did not already;
    /// returns since when each has been failing.
    pub async fn mark_failing(
        &self,
        ids: &[posthorn_core::SubscriptionId],
    ) -> Result<Vec<(posthorn_core::SubscriptionId, Millis)>> {
        let now = now_ms();
        let mut since = Vec::with_capacity(ids.len());
        for chunk in self.0.backend.statement_chunks(ids, 1) {
            let sql = self.0.backend.statement("mark failing", chunk.len(), || {
                format!(
                    "UPDATE subscriptions SET failing_since = COALESCE(failing_since, $1) \
                     WHERE id IN ({}) RETURNING id, failing_since",
                    placeholders(2, chunk.len())
                )
            });
            let mut q = sqlx::query(&sql).bind(now);
            for id in chunk {
                q = q.bind(id.as_str());
            }
            for row in q.fetch_all(&self.0.write).await? {
                since.push((get_id(&row, "id")?, get(&row, "failing_since")?));
            }
        }
        Ok(since)
    }

    /// Notes that these subscriptions' last deliveries succeeded.
    pub async fn mark_healthy(&self, ids: &[posthorn_core::SubscriptionId]) -> Result<()> {
        for chunk in self.0.backend.statement_chunks(ids, 1) {
            let sql = self.0.backend.statement("mark healthy", chunk.len(), || {
                format!(
                    "UPDATE subscriptions SET failing_since = NULL \
                     WHERE failing_since IS NOT NULL AND id IN ({})",
                    placeholders(1, chunk.len())
                )
            });
            let mut q = sqlx::query(&sql);
            for id in chunk {
                q = q.bind(id.as_str());
            }
            q.execute(&self.0.write).await?;
        }
        Ok(())
    }
}
