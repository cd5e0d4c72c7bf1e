//! The retention purge: finished deliveries and their attempts, then events with nothing pending,
//! older than the cutoff, in short transactions.

use posthorn_core::time::Millis;

use crate::{Result, Store};

impl Store {
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
