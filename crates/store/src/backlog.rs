//! The queue's depth (for `/metrics`) and ordered subscriptions' earlier pending deliveries.

use posthorn_core::time::{now_ms, Millis};

use crate::{get, Result, Store};

/// The delivery queue at one moment, for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueDepth {
    /// Waiting for an attempt, in flight included.
    pub pending: i64,
    /// Pending and due now (not in flight: a claim moves a delivery's time to its lease's end).
    pub due: i64,
    /// Due, and still carrying the lease of a process that did not finish it (stopped or dead):
    /// what the next claim takes over.
    pub lease_expired: i64,
    /// Pending and held back past their schedule by their subscription's open circuit.
    pub held_by_circuit: i64,
}

impl Store {
    /// Counts the delivery queue (one statement; an index scan of the pending deliveries).
    pub async fn queue_depth(&self) -> Result<QueueDepth> {
        let now = now_ms();
        let row = sqlx::query(
            "SELECT COUNT(*) AS pending, \
               COALESCE(SUM(CASE WHEN d.next_attempt_at <= $1 THEN 1 ELSE 0 END), 0) AS due, \
               COALESCE(SUM(CASE WHEN d.next_attempt_at <= $1 AND d.lease IS NOT NULL \
                 THEN 1 ELSE 0 END), 0) AS lease_expired, \
               COALESCE(SUM(CASE WHEN d.next_attempt_at > $1 AND s.circuit_until > $1 \
                 AND d.lease IS NULL THEN 1 ELSE 0 END), 0) AS held \
             FROM deliveries d LEFT JOIN subscriptions s ON s.id = d.subscription_id \
             WHERE d.status = 'pending'",
        )
        .bind(now)
        .fetch_one(&self.0.read)
        .await?;
        Ok(QueueDepth {
            pending: get(&row, "pending")?,
            due: get(&row, "due")?,
            lease_expired: get(&row, "lease_expired")?,
            held_by_circuit: get(&row, "held")?,
        })
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
        .fetch_one(&self.0.read)
        .await?;
        get(&row, "due")
    }
}
