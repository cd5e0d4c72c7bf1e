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

    /// For ordered subscriptions: the pending deliveries of events published before
    /// `event_seq` (of `key` only, when the subscription orders by key), which must go first.
    pub async fn pending_before(
        &self,
        subscription_id: &str,
        event_seq: i64,
        key: Option<&str>,
    ) -> Result<Option<Ahead>> {
        let by_key = if key.is_some() {
            " AND order_key = $3"
        } else {
            ""
        };
        let sql = format!(
            "SELECT MIN(next_attempt_at) AS due, COUNT(lease) AS in_flight FROM deliveries \
             WHERE subscription_id = $1 AND status = 'pending' AND event_seq < $2{by_key}"
        );
        let mut q = sqlx::query(&sql).bind(subscription_id).bind(event_seq);
        if let Some(key) = key {
            q = q.bind(key);
        }
        let row = q.fetch_one(&self.0.read).await?;
        let due: Option<Millis> = get(&row, "due")?;
        let in_flight: i64 = get(&row, "in_flight")?;
        Ok(due.map(|due| Ahead {
            due,
            in_flight: in_flight != 0,
        }))
    }
}

/// Deliveries that must go before one of an ordered subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ahead {
    /// When the earliest of them is due (for one in flight: the end of its lease).
    pub due: Millis,
    /// Whether one of them is being attempted (it may end at any moment).
    pub in_flight: bool,
}
