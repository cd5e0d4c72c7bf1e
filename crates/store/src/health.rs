//! What the dispatcher writes about subscriptions' health and backlogs, and the retention purge.

use posthorn_core::time::{now_ms, Millis};

use crate::{get, placeholders, value_rows, Result, Store};

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

    /// Moves each subscription's waiting deliveries (not in flight) to its time: while its
    /// circuit is open they are not claimed; and records the open circuit (until then, after how
    /// many failures) for the API. One statement each for many subscriptions. Returns how many
    /// deliveries moved.
    pub async fn postpone_backlogs(&self, backlogs: &[(String, Millis, u32)]) -> Result<u64> {
        // Subscription by subscription in id order, like every writer of many rows (see
        // `settle_in`), so that two processes holding circuits cannot deadlock each other.
        let mut backlogs: Vec<&(String, Millis, u32)> = backlogs.iter().collect();
        backlogs.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        for chunk in self.0.backend.statement_chunks(&backlogs, 3) {
            let sql = self.0.backend.statement("record circuits", chunk.len(), || {
                format!(
                    "UPDATE subscriptions SET circuit_until = v.column2, circuit_failures = v.column3 \
                     FROM (VALUES {}) AS v WHERE subscriptions.id = v.column1",
                    value_rows(chunk.len(), 3, 1, "")
                )
            });
            let mut q = sqlx::query(&sql);
            for (id, until, failures) in chunk {
                q = q.bind(id).bind(*until).bind(i64::from(*failures));
            }
            q.execute(&self.0.write).await?;
        }
        let backlogs: Vec<(&String, Millis)> =
            backlogs.iter().map(|(id, until, _)| (id, *until)).collect();
        let mut n = 0;
        for chunk in self.0.backend.statement_chunks(&backlogs, 2) {
            let sql = self
                .0
                .backend
                .statement("postpone backlogs", chunk.len(), || {
                    format!(
                        "UPDATE deliveries SET next_attempt_at = v.column2 FROM (VALUES {}) AS v \
                     WHERE deliveries.subscription_id = v.column1 \
                     AND deliveries.status = 'pending' AND deliveries.lease IS NULL \
                     AND deliveries.next_attempt_at < v.column2",
                        value_rows(chunk.len(), 2, 1, "")
                    )
                });
            let mut q = sqlx::query(&sql);
            for (id, until) in chunk {
                q = q.bind(*id).bind(*until);
            }
            n += q.execute(&self.0.write).await?.rows_affected();
        }
        Ok(n)
    }

    /// Makes a subscription's waiting deliveries due now, and records its circuit closed (it
    /// closed on a success).
    pub async fn release_backlog(&self, subscription_id: &str) -> Result<u64> {
        let now = now_ms();
        write_tx!(self, |tx| {
            sqlx::query(
                "UPDATE subscriptions SET circuit_until = NULL, circuit_failures = 0 WHERE id = $1",
            )
            .bind(subscription_id)
            .execute(&mut *tx)
            .await?;
            let n = sqlx::query(
                "UPDATE deliveries SET next_attempt_at = $1 WHERE subscription_id = $2 \
             AND status = 'pending' AND lease IS NULL AND next_attempt_at > $1",
            )
            .bind(now)
            .bind(subscription_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if n > 0 {
                Store::notify_due(self.0.backend, &mut *tx).await?;
            }
            tx.commit().await?;
            Ok(n)
        })
    }

    /// Closes a subscription's circuit because a person asked for an attempt now (a retry, a
    /// recover, an enable): its backlog is due at once, and every process's breaker for it is
    /// reset (`NOTIFY` on PostgreSQL; this process's dispatcher directly).
    pub async fn close_circuit(&self, subscription_id: &str) -> Result<()> {
        self.release_backlog(subscription_id).await?;
        Store::notify_circuit(self.0.backend, &self.0.write, subscription_id).await?;
        self.signal_circuit_closed(subscription_id);
        self.signal_due();
        Ok(())
    }

    /// Since when the subscriptions among `ids` that are failing have been (every attempt failed
    /// since then: what auto-disable counts from).
    pub async fn failing_since(
        &self,
        ids: &[&str],
    ) -> Result<std::collections::HashMap<String, Millis>> {
        let mut since = std::collections::HashMap::new();
        for chunk in ids.chunks(500) {
            let sql = format!(
                "SELECT id, failing_since FROM subscriptions \
                 WHERE failing_since IS NOT NULL AND id IN ({})",
                placeholders(1, chunk.len())
            );
            let mut q = sqlx::query(&sql);
            for id in chunk {
                q = q.bind(*id);
            }
            for row in q.fetch_all(&self.0.read).await? {
                since.insert(get(&row, "id")?, get(&row, "failing_since")?);
            }
        }
        Ok(since)
    }

    /// The circuits recorded open among `ids`: until when, after how many failures.
    pub async fn open_circuits(
        &self,
        ids: &[&str],
    ) -> Result<std::collections::HashMap<String, (Millis, u32)>> {
        let mut open = std::collections::HashMap::new();
        for chunk in ids.chunks(500) {
            let sql = format!(
                "SELECT id, circuit_until, circuit_failures FROM subscriptions \
                 WHERE circuit_until IS NOT NULL AND id IN ({})",
                placeholders(1, chunk.len())
            );
            let mut q = sqlx::query(&sql);
            for id in chunk {
                q = q.bind(*id);
            }
            for row in q.fetch_all(&self.0.read).await? {
                let failures: i64 = get(&row, "circuit_failures")?;
                open.insert(
                    get(&row, "id")?,
                    (get(&row, "circuit_until")?, failures.max(0) as u32),
                );
            }
        }
        Ok(open)
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

    /// Notes that these subscriptions' deliveries fail, from now for those that did not already;
    /// returns since when each has been failing.
    pub async fn mark_failing(&self, ids: &[String]) -> Result<Vec<(String, Millis)>> {
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
                q = q.bind(id);
            }
            for row in q.fetch_all(&self.0.write).await? {
                since.push((get(&row, "id")?, get(&row, "failing_since")?));
            }
        }
        Ok(since)
    }

    /// Notes that these subscriptions' last deliveries succeeded.
    pub async fn mark_healthy(&self, ids: &[String]) -> Result<()> {
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
                q = q.bind(id);
            }
            q.execute(&self.0.write).await?;
        }
        Ok(())
    }

    /// Deletes what is older than `cutoff`: attempt logs and deliveries that are finished, then
    /// events none of whose deliveries is pending; at most `batch` events a call, so that each
    /// transaction is short. Returns how many events went.
    pub async fn purge(&self, cutoff: Millis, batch: usize) -> Result<u64> {
        write_tx!(self, |tx| {
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
        })
    }
}
