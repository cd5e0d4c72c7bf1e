//! The circuit breaker's record: a failing subscription's backlog postponed while its circuit is
//! open and released when it closes, and the circuits recorded open (for the API and every process).

use posthorn_core::time::{now_ms, Millis};

use crate::{get, placeholders, value_rows, Result, Store};

/// A subscription's circuit (open until when, after how many failures) and failing streak (since
/// when every attempt has failed).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Health {
    pub circuit: Option<(Millis, u32)>,
    pub failing_since: Option<Millis>,
}

impl Store {
    /// Moves each subscription's waiting deliveries (not in flight) to its time: while its
    /// circuit is open they are not claimed; and records the open circuit (until then, after how
    /// many failures) for the API. One statement each for many subscriptions. Returns how many
    /// deliveries moved.
    pub async fn postpone_backlogs(
        &self,
        backlogs: &[(posthorn_core::SubscriptionId, Millis, u32)],
    ) -> Result<u64> {
        // Subscription by subscription in id order, like every writer of many rows (see
        // `settle_in`), so that two processes holding circuits cannot deadlock each other.
        let mut backlogs: Vec<&(posthorn_core::SubscriptionId, Millis, u32)> =
            backlogs.iter().collect();
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
                q = q.bind(id.as_str()).bind(*until).bind(i64::from(*failures));
            }
            q.execute(&self.0.write).await?;
        }
        let backlogs: Vec<(&str, Millis)> = backlogs
            .iter()
            .map(|(id, until, _)| (id.as_str(), *until))
            .collect();
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
    pub async fn release_backlog(
        &self,
        subscription_id: &posthorn_core::SubscriptionId,
    ) -> Result<u64> {
        let now = now_ms();
        write_tx!(self, |tx| {
            sqlx::query(
                "UPDATE subscriptions SET circuit_until = NULL, circuit_failures = 0 WHERE id = $1",
            )
            .bind(subscription_id.as_str())
            .execute(&mut *tx)
            .await?;
            let n = sqlx::query(
                "UPDATE deliveries SET next_attempt_at = $1 WHERE subscription_id = $2 \
             AND status = 'pending' AND lease IS NULL AND next_attempt_at > $1",
            )
            .bind(now)
            .bind(subscription_id.as_str())
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
    pub async fn close_circuit(
        &self,
        subscription_id: &posthorn_core::SubscriptionId,
    ) -> Result<()> {
        self.release_backlog(subscription_id).await?;
        Store::notify_circuit(self.0.backend, &self.0.write, subscription_id).await?;
        self.signal_circuit_closed(subscription_id);
        self.signal_due();
        Ok(())
    }

    /// The circuit and the failing streak of each subscription among `ids` that has either, read
    /// in one query (what a subscription's view shows beside its spec).
    pub async fn health(&self, ids: &[&str]) -> Result<std::collections::HashMap<String, Health>> {
        let mut health = std::collections::HashMap::new();
        for chunk in ids.chunks(500) {
            let sql = format!(
                "SELECT id, circuit_until, circuit_failures, failing_since FROM subscriptions \
                 WHERE (circuit_until IS NOT NULL OR failing_since IS NOT NULL) AND id IN ({})",
                placeholders(1, chunk.len())
            );
            let mut q = sqlx::query(&sql);
            for id in chunk {
                q = q.bind(*id);
            }
            for row in q.fetch_all(&self.0.read).await? {
                let until: Option<Millis> = get(&row, "circuit_until")?;
                let failures: Option<i64> = get(&row, "circuit_failures")?;
                health.insert(
                    get(&row, "id")?,
                    Health {
                        circuit: until.map(|u| (u, failures.unwrap_or(0).max(0) as u32)),
                        failing_since: get(&row, "failing_since")?,
                    },
                );
            }
        }
        Ok(health)
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
}
