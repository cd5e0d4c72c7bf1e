//! Keeping PostgreSQL's picture of the queue current when autovacuum does not.
//!
//! `deliveries` churns: every delivery is inserted, claimed and settled. Without fresh
//! statistics the planner misjudges the claim, and without vacuum its index fills with dead
//! entries; measured (docs/benchmarks.md, scenario 10), a backlog of 2.6 M deliveries drained at
//! about 300/s with `autovacuum = off` and went back to 4,200/s within seconds of one `ANALYZE`.
//! Autovacuum does this on a server that runs it (migration 0012 tunes it for this table); this
//! is the net under it: when the table's statistics or its dead tuples have fallen well behind
//! and nothing has analyzed or vacuumed it for a minute, one process (under an advisory lock)
//! does it. On SQLite there is nothing to do.

use sqlx::{Executor, Row};

use crate::{Backend, Result, Store};

/// The advisory lock that lets one process at a time tend the queue ("posthorn" in ASCII).
const TEND_LOCK: i64 = 0x706f_7374_686f_726e;
/// How long after an analyze or a vacuum (by anyone) another is not started.
const QUIET_S: f64 = 60.0;

/// The deliveries table as PostgreSQL counts it (`pg_stat_user_tables`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueTable {
    pub live: i64,
    /// Left by updates and deletes until a vacuum: each delivery leaves one to three.
    pub dead: i64,
}

/// What [`Store::tend_queue`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tended {
    /// Rows changed since the last analyze, when it analyzed.
    pub analyzed: Option<i64>,
    /// Dead tuples, when it vacuumed.
    pub vacuumed: Option<i64>,
}

impl Store {
    /// Whether PostgreSQL's autovacuum is off (`None` on SQLite).
    pub async fn autovacuum_off(&self) -> Result<Option<bool>> {
        if self.0.backend != Backend::Postgres {
            return Ok(None);
        }
        let row = sqlx::query("SELECT current_setting('autovacuum') AS on_off")
            .fetch_one(&self.0.read)
            .await?;
        let on_off: String = row.try_get("on_off")?;
        Ok(Some(on_off == "off"))
    }

    /// On PostgreSQL, the live and dead rows of `deliveries` (`None` on SQLite, or before
    /// PostgreSQL has counted any).
    pub async fn queue_table(&self) -> Result<Option<QueueTable>> {
        if self.0.backend != Backend::Postgres {
            return Ok(None);
        }
        let row = sqlx::query(
            "SELECT n_live_tup, n_dead_tup FROM pg_stat_user_tables \
             WHERE relid = 'deliveries'::regclass",
        )
        .fetch_optional(&self.0.read)
        .await?;
        row.map(|r| {
            Ok(QueueTable {
                live: r.try_get("n_live_tup")?,
                dead: r.try_get("n_dead_tup")?,
            })
        })
        .transpose()
    }

    /// On PostgreSQL: analyzes `deliveries` when more than max(10,000, 5 %) of its rows changed
    /// since its statistics were taken, and vacuums it when more than max(50,000, 10 %) of it is
    /// dead — each only if no one (autovacuum included) did so in the last minute, and only in
    /// the one process that holds the advisory lock.
    pub async fn tend_queue(&self) -> Result<Tended> {
        if self.0.backend != Backend::Postgres {
            return Ok(Tended::default());
        }
        let mut conn = self.0.write.acquire().await?;
        let locked: bool = sqlx::query("SELECT pg_try_advisory_lock($1) AS locked")
            .bind(TEND_LOCK)
            .fetch_one(&mut *conn)
            .await?
            .try_get("locked")?;
        if !locked {
            return Ok(Tended::default());
        }
        let result = tend(&mut conn).await;
        let unlocked = sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(TEND_LOCK)
            .execute(&mut *conn)
            .await;
        let tended = result?;
        unlocked?;
        Ok(tended)
    }
}

/// Analyzes or vacuums `deliveries` on `conn` if it is due (see [`Store::tend_queue`]).
async fn tend(conn: &mut sqlx::AnyConnection) -> Result<Tended> {
    let mut tended = Tended::default();
    let row = sqlx::query(
        "SELECT n_live_tup, n_dead_tup, n_mod_since_analyze, \
           EXTRACT(EPOCH FROM now() - GREATEST(last_analyze, last_autoanalyze))::float8 \
             AS since_analyze, \
           EXTRACT(EPOCH FROM now() - GREATEST(last_vacuum, last_autovacuum))::float8 \
             AS since_vacuum \
         FROM pg_stat_user_tables WHERE relid = 'deliveries'::regclass",
    )
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else {
        return Ok(tended);
    };
    let live: i64 = row.try_get("n_live_tup")?;
    let dead: i64 = row.try_get("n_dead_tup")?;
    let changed: i64 = row.try_get("n_mod_since_analyze")?;
    let quiet = |since: Option<f64>| since.is_none_or(|s| s > QUIET_S);
    if dead > (live / 10).max(50_000) && quiet(row.try_get("since_vacuum")?) {
        // Outside a transaction (VACUUM refuses one), and analyzing as it goes.
        conn.execute("VACUUM (ANALYZE) deliveries").await?;
        tended.vacuumed = Some(dead);
        tended.analyzed = Some(changed);
    } else if changed > (live / 20).max(10_000) && quiet(row.try_get("since_analyze")?) {
        conn.execute("ANALYZE deliveries").await?;
        tended.analyzed = Some(changed);
    }
    Ok(tended)
}
