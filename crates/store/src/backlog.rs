//! The queue's depth (for `/metrics`), and ordered subscriptions' earlier pending deliveries: what
//! the dispatcher checks before an attempt, and what a delivery waits behind.

use posthorn_core::delivery::PARKED;
use posthorn_core::time::{now_ms, Millis};

use std::collections::HashMap;

use posthorn_core::SubscriptionId;

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
        let row = sqlx::query(&format!(
            "SELECT COUNT(*) AS pending, \
               COALESCE(SUM(CASE WHEN d.next_attempt_at <= $1 THEN 1 ELSE 0 END), 0) AS due, \
               COALESCE(SUM(CASE WHEN d.next_attempt_at <= $1 AND d.lease IS NOT NULL \
                 THEN 1 ELSE 0 END), 0) AS lease_expired, \
               COALESCE(SUM(CASE WHEN d.next_attempt_at > $1 AND s.circuit_until > $1 \
                 AND d.lease IS NULL THEN 1 ELSE 0 END), 0) AS held \
             FROM deliveries d LEFT JOIN subscriptions s ON s.id = d.subscription_id \
             WHERE d.status = 'pending' AND d.next_attempt_at <> {PARKED}"
        ))
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

impl Store {
    /// Makes the next delivery of each `(subscription, key)` due now, if it waits (held, not in
    /// flight): called once a delivery of that key is settled, so that the next goes at once
    /// rather than when it looks again. One statement per key, each an index lookup
    /// (`deliveries_order_key`). Returns how many were made due.
    pub async fn release_next(&self, keys: &[(SubscriptionId, String)]) -> Result<u64> {
        let now = now_ms();
        let mut released = 0;
        for (sub, key) in keys {
            let done = sqlx::query(
                "UPDATE deliveries SET next_attempt_at = $1 WHERE id = (\
                   SELECT id FROM deliveries WHERE subscription_id = $2 AND order_key = $3 \
                     AND status = 'pending' ORDER BY event_seq LIMIT 1) \
                 AND lease IS NULL AND next_attempt_at > $1",
            )
            .bind(now)
            .bind(sub.as_str())
            .bind(key.as_str())
            .execute(&self.0.write)
            .await?;
            released += done.rows_affected();
        }
        Ok(released)
    }
}

impl Store {
    /// The first pending delivery of each ordered line (a subscription, and a key when it orders
    /// by key): the one that goes next, which every later one of the line waits behind. Lines
    /// with no pending delivery are left out. One indexed lookup per line.
    pub async fn line_heads(
        &self,
        lines: &[(SubscriptionId, Option<String>)],
    ) -> Result<HashMap<(SubscriptionId, Option<String>), LineHead>> {
        let mut heads = HashMap::new();
        for (sub, key) in lines {
            let by_key = if key.is_some() {
                " AND order_key = $2"
            } else {
                ""
            };
            let sql = format!(
                "SELECT id, event_seq, next_attempt_at FROM deliveries \
                 WHERE subscription_id = $1 AND status = 'pending'{by_key} \
                 ORDER BY event_seq LIMIT 1"
            );
            let mut q = sqlx::query(&sql).bind(sub.as_str());
            if let Some(key) = key {
                q = q.bind(key.as_str());
            }
            if let Some(row) = q.fetch_optional(&self.0.read).await? {
                heads.insert(
                    (sub.clone(), key.clone()),
                    LineHead {
                        id: posthorn_core::DeliveryId::stored(get::<String>(&row, "id")?),
                        event_seq: get(&row, "event_seq")?,
                        due: get(&row, "next_attempt_at")?,
                    },
                );
            }
        }
        Ok(heads)
    }
}

/// The delivery an ordered line delivers next.
#[derive(Debug, Clone)]
pub struct LineHead {
    pub id: posthorn_core::DeliveryId,
    /// Its event's place in publish order: the line's later deliveries wait behind it.
    pub event_seq: i64,
    /// When it is next attempted (for one in flight: when its lease ends).
    pub due: Millis,
}

/// Deliveries that must go before one of an ordered subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ahead {
    /// When the earliest of them is due (for one in flight: the end of its lease).
    pub due: Millis,
    /// Whether one of them is being attempted (it may end at any moment).
    pub in_flight: bool,
}
