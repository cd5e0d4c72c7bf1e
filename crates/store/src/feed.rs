//! Pulled deliveries (the `poll` service): a subscription's feed, read in publish order, and the
//! consumer's acknowledgements. A pulled delivery is pending and parked (due at
//! [`PARKED`]) from its publish until its consumer acknowledges it; the feed is those of one
//! subscription, by event sequence, after a cursor (the last sequence the consumer has seen).

use std::sync::Arc;

use posthorn_core::delivery::PARKED;
use posthorn_core::event::StoredEvent;
use posthorn_core::time::{now_ms, Millis};
use posthorn_core::{DeliveryId, SubscriptionId};

use crate::dialect::get_id;
use crate::{get, Result, Store};

/// One entry of a feed.
#[derive(Debug, Clone)]
pub struct FeedEntry {
    pub delivery_id: DeliveryId,
    /// The event's sequence number: the cursor after this entry.
    pub cursor: i64,
    pub event: Arc<StoredEvent>,
}

/// How far behind the consumers of pulled subscriptions are, for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FeedLag {
    /// Entries not yet acknowledged, across every feed.
    pub waiting: i64,
    /// When the oldest of them was published.
    pub oldest: Option<Millis>,
}

impl Store {
    /// Up to `limit` unacknowledged entries of `subscription`'s feed after `after` (a cursor;
    /// from the start when `None`), in publish order.
    pub async fn feed(
        &self,
        subscription: &SubscriptionId,
        after: Option<i64>,
        limit: usize,
    ) -> Result<Vec<FeedEntry>> {
        // `PARKED` written out, not bound, so that the partial index `deliveries_feed` is
        // seen to apply whatever the plan.
        let rows = sqlx::query(&format!(
            "SELECT id, event_seq FROM deliveries WHERE subscription_id = $1 AND status = 'pending' \
             AND next_attempt_at = {PARKED} AND event_seq > $2 ORDER BY event_seq LIMIT {}",
            limit.clamp(1, 1000)
        ))
        .bind(subscription.as_str())
        .bind(after.unwrap_or(0))
        .fetch_all(&self.0.read)
        .await?;
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let seqs: Vec<i64> = rows
            .iter()
            .map(|r| get(r, "event_seq"))
            .collect::<Result<_>>()?;
        let events = self.events_by_seq(&seqs).await?;
        let mut entries = Vec::with_capacity(rows.len());
        for row in &rows {
            let seq: i64 = get(row, "event_seq")?;
            if let Some(event) = events.get(&seq) {
                entries.push(FeedEntry {
                    delivery_id: get_id(row, "id")?,
                    cursor: seq,
                    event: event.clone(),
                });
            }
        }
        Ok(entries)
    }

    /// Acknowledges every entry of `subscription`'s feed up to `cursor`: they are delivered
    /// (`succeeded`, one attempt) and leave the feed. Returns how many.
    pub async fn acknowledge(&self, subscription: &SubscriptionId, cursor: i64) -> Result<u64> {
        let now = now_ms();
        let done = sqlx::query(&format!(
            "UPDATE deliveries SET status = 'succeeded', attempts = attempts + 1, \
               next_attempt_at = $1, updated_at = $1 \
             WHERE subscription_id = $2 AND status = 'pending' AND next_attempt_at = {PARKED} \
               AND event_seq <= $3"
        ))
        .bind(now)
        .bind(subscription.as_str())
        .bind(cursor)
        .execute(&self.0.write)
        .await?;
        Ok(done.rows_affected())
    }

    /// The entries no consumer has acknowledged yet, across every feed.
    pub async fn feed_lag(&self) -> Result<FeedLag> {
        let row = sqlx::query(&format!(
            "SELECT COUNT(*) AS waiting, MIN(created_at) AS oldest FROM deliveries \
             WHERE status = 'pending' AND next_attempt_at = {PARKED}"
        ))
        .fetch_one(&self.0.read)
        .await?;
        Ok(FeedLag {
            waiting: get(&row, "waiting")?,
            oldest: get(&row, "oldest")?,
        })
    }
}
