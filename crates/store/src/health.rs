//! What the dispatcher writes about subscriptions' health and backlogs, and the retention purge.

use posthorn_core::time::{now_ms, Millis};

use crate::{get, Result, Store};

impl Store {
    /// Moves a subscription's waiting deliveries (not in flight) to `until`: while its circuit is
    /// open they are not claimed. Returns how many moved.
    pub async fn postpone_backlog(&self, subscription_id: &str, until: Millis) -> Result<u64> {
        let n = sqlx::query(
            "UPDATE deliveries SET next_attempt_at = $1 WHERE subscription_id = $2 \
             AND status = 'pending' AND lease IS NULL AND next_attempt_at < $1",
        )
        .bind(until)
        .bind(subscription_id)
        .execute(&self.write)
        .await?
        .rows_affected();
        Ok(n)
    }

    /// Makes a subscription's waiting deliveries due now (its circuit closed).
    pub async fn release_backlog(&self, subscription_id: &str) -> Result<u64> {
        let now = now_ms();
        let n = sqlx::query(
            "UPDATE deliveries SET next_attempt_at = $1 WHERE subscription_id = $2 \
             AND status = 'pending' AND lease IS NULL AND next_attempt_at > $1",
        )
        .bind(now)
        .bind(subscription_id)
        .execute(&self.write)
        .await?
        .rows_affected();
        if n > 0 {
            Store::notify_due(self.backend, &self.write).await?;
        }
        Ok(n)
    }

    /// For ordered subscriptions: when the earliest pending delivery of an event published before
    /// `event_seq` is due, if there is one (it must go first).
    pub async fn pending_before(
        &self,
        subscription_id: &str,
        event_seq: i64,
    ) -> Result<Option<Millis>> {
        let row = sqlx::query(
            "SELECT MIN(next_attempt_at) AS due FROM deliveries \
             WHERE subscription_id = $1 AND status = 'pending' AND event_seq < $2",
        )
        .bind(subscription_id)
        .bind(event_seq)
        .fetch_one(&self.read)
        .await?;
        get(&row, "due")
    }

    /// Notes that a subscription's deliveries fail, from now if they did not already; returns
    /// since when they have been failing.
    pub async fn mark_failing(&self, subscription_id: &str) -> Result<Option<Millis>> {
        let row = sqlx::query(
            "UPDATE subscriptions SET failing_since = COALESCE(failing_since, $1) \
             WHERE id = $2 RETURNING failing_since",
        )
        .bind(now_ms())
        .bind(subscription_id)
        .fetch_optional(&self.write)
        .await?;
        match row {
            Some(r) => get(&r, "failing_since"),
            None => Ok(None),
        }
    }

    /// Notes that a subscription's last delivery succeeded.
    pub async fn mark_healthy(&self, subscription_id: &str) -> Result<()> {
        sqlx::query(
            "UPDATE subscriptions SET failing_since = NULL WHERE id = $1 AND failing_since IS NOT NULL",
        )
        .bind(subscription_id)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// Deletes what is older than `cutoff`: attempt logs and deliveries that are finished, then
    /// events none of whose deliveries is pending; at most `batch` events a call, so that each
    /// transaction is short. Returns how many events went.
    pub async fn purge(&self, cutoff: Millis, batch: usize) -> Result<u64> {
        let mut tx = self.write.begin().await?;
        let old = format!(
            "SELECT e.seq FROM events e WHERE e.received_at < $1 AND NOT EXISTS \
             (SELECT 1 FROM deliveries d WHERE d.event_seq = e.seq AND d.status = 'pending') \
             ORDER BY e.seq LIMIT {batch}"
        );
        sqlx::query(&format!(
            "DELETE FROM attempts WHERE delivery_id IN \
             (SELECT id FROM deliveries WHERE event_seq IN ({old}))"
        ))
        .bind(cutoff)
        .execute(&mut *tx)
        .await?;
        sqlx::query(&format!(
            "DELETE FROM deliveries WHERE event_seq IN ({old})"
        ))
        .bind(cutoff)
        .execute(&mut *tx)
        .await?;
        let n = sqlx::query(&format!("DELETE FROM events WHERE seq IN ({old})"))
            .bind(cutoff)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(n)
    }
}
