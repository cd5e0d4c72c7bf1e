//! Aggregates for the dashboard's charts: attempts per time bucket by outcome, and their
//! durations as a histogram, counted by the database (one grouped statement over an index on
//! the attempt's time), never by reading the rows out.

use posthorn_core::time::Millis;
use posthorn_core::Visibility;

use crate::{get, Result, Store};

/// Upper bounds of the duration classes, in milliseconds (the last class is everything above).
pub const DURATION_BOUNDS_MS: [i64; 12] =
    [5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000];

/// One group of the aggregate: attempts of one bucket, outcome and duration class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptCount {
    /// The bucket's start.
    pub bucket: Millis,
    pub outcome: String,
    /// Index into [`DURATION_BOUNDS_MS`]; its length for longer ones.
    pub class: usize,
    pub count: i64,
}

impl Store {
    /// Attempts started in `[from, from + buckets × bucket_ms)` that `seen` may see, counted by
    /// bucket, outcome and duration class.
    pub async fn attempt_counts(
        &self,
        seen: &Visibility,
        subscription_id: Option<&str>,
        from: Millis,
        bucket_ms: i64,
        buckets: i64,
    ) -> Result<Vec<AttemptCount>> {
        let mut class = String::from("CASE");
        for (i, bound) in DURATION_BOUNDS_MS.iter().enumerate() {
            class.push_str(&format!(" WHEN a.duration_ms <= {bound} THEN {i}"));
        }
        class.push_str(&format!(" ELSE {} END", DURATION_BOUNDS_MS.len()));
        let owner = match seen.owner() {
            Some(_) => {
                " AND a.delivery_id IN (SELECT d.id FROM deliveries d JOIN subscriptions s \
                  ON s.id = d.subscription_id WHERE s.owner = $4)"
            }
            None => "",
        };
        // Its number follows the owner's when both are bound.
        let one = match (subscription_id, seen.owner()) {
            (None, _) => String::new(),
            (Some(_), owner) => format!(
                " AND a.delivery_id IN (SELECT id FROM deliveries WHERE subscription_id = ${})",
                if owner.is_some() { 5 } else { 4 }
            ),
        };
        let sql = format!(
            "SELECT ((a.started_at - $1) / $2) AS bucket, a.outcome AS outcome, {class} AS class, \
               COUNT(*) AS n FROM attempts a \
             WHERE a.started_at >= $1 AND a.started_at < $3{owner}{one} \
             GROUP BY 1, 2, 3"
        );
        let mut q = sqlx::query(&sql)
            .bind(from)
            .bind(bucket_ms)
            .bind(from + bucket_ms * buckets);
        if let Some(o) = seen.owner() {
            q = q.bind(o.to_owned());
        }
        if let Some(id) = subscription_id {
            q = q.bind(id.to_owned());
        }
        let rows = q.fetch_all(&self.0.read).await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let bucket: i64 = get(row, "bucket")?;
            let class: i64 = get(row, "class")?;
            out.push(AttemptCount {
                bucket: from + bucket * bucket_ms,
                outcome: get(row, "outcome")?,
                class: class.clamp(0, DURATION_BOUNDS_MS.len() as i64) as usize,
                count: get(row, "n")?,
            });
        }
        Ok(out)
    }
}
