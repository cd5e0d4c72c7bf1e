//! Durable storage for Posthorn: subscriptions, events, the delivery queue and the attempt log,
//! on embedded SQLite or on PostgreSQL, selected by the database URL.
//!
//! One [`Store`] serves both backends through sqlx's `Any` driver: the SQL is written once, in the
//! subset both understand (`$N` placeholders, `ON CONFLICT`, `RETURNING`, partial indexes), and the
//! few places that differ branch on [`Backend`]. Each backend has its own migrations with the same
//! intent (`migrations/sqlite`, `migrations/postgres`).
//!
//! The modules:
//! - `lib.rs` opens the store (pools, settings, migrations); `error.rs` is its error;
//!   `dialect.rs` the SQL of both backends; `notify.rs` how processes tell each other of work.
//! - `commit.rs` is the group-commit engine, `events.rs` what it inserts and the event reads,
//!   `queue.rs` claims, leases, settles and the attempt log, `backlog.rs` the queue's depth and
//!   ordered subscriptions' earlier deliveries, `circuits.rs` backlogs held and released by the
//!   circuit breaker, `streaks.rs` failing streaks, `purge.rs` the retention purge,
//!   `subscriptions.rs` and `event_types.rs` their tables, `seal.rs` secrets at rest.
//! - `cache.rs` ([`SubscriptionCache`]) and `event_types.rs` ([`EventTypeCache`]) are the
//!   in-memory views every process keeps; `tally.rs` the per-subscription counts the dispatcher
//!   keeps and `/metrics` reads; `applications.rs` OAuth2 clients, their secrets and tokens;
//!   `stats.rs` the charts' counts; `crash.rs` the crash tests' abort (debug builds only).
//! - [`Publisher`] (`publisher.rs`) is the one way events get in, [`SubscriptionWriter`]
//!   (`writer.rs`) the one way subscriptions change.
//!
//! Invariants:
//! - An event and all of its deliveries are written in one transaction ([`Store::publish`]); when
//!   `publish` returns, they are durable. Concurrent publishes share transactions (group commit).
//! - A delivery is attempted only while its lease is held: claiming pushes `next_attempt_at` past
//!   the lease and stamps `lease` with the claiming process; an attempt's outcome is recorded only
//!   if the lease is still that process's. A process that dies simply stops renewing, and its
//!   deliveries fall due again.
//! - Times are stored as Unix milliseconds, JSON as text; secrets only sealed (see [`seal`]).
//! - Reads of owned objects take the caller's [`posthorn_core::Visibility`]; objects are looked up
//!   by typed ids (`SubscriptionId`, `DeliveryId`, `ApplicationId`), bound as text only here.
//! - The store does not know the dispatcher: it hands deliveries over and says work fell due
//!   through the [`Handoff`] it was given.

/// Runs `$body` in a transaction `$tx` on a connection of `$store`'s write pool; `$body` commits
/// it and ends with `Ok(…)`. If it fails, the connection is closed instead of going back to the
/// pool: a failed write can leave a connection believing it is inside a transaction that SQLite
/// already rolled back (a full disk does), and the next writer on it would then "commit" a
/// savepoint of nothing.
macro_rules! write_tx {
    ($store:expr, |$tx:ident| $body:block) => {{
        let mut conn = $store.0.write.acquire().await?;
        let result: $crate::Result<_> = async {
            #[allow(unused_mut)]
            let mut $tx = sqlx::Connection::begin(&mut *conn).await?;
            $body
        }
        .await;
        if result.is_err() {
            conn.close_on_drop();
        }
        result
    }};
}

mod applications;
mod backlog;
mod cache;
mod circuits;
mod commit;
mod crash;
mod dialect;
mod error;
mod event_types;
mod events;
mod feed;
mod notify;
mod publisher;
mod purge;
mod queue;
pub mod seal;
mod stats;
mod streaks;
mod subscriptions;
pub mod tally;
mod tend;
mod writer;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sqlx::any::AnyPoolOptions;
use sqlx::{AnyPool, Row};

pub use applications::{Application, CredentialsRefused, TokenGrant};
pub use backlog::{Ahead, LineHead, QueueDepth};
pub use cache::SubscriptionCache;
pub use circuits::Health;
pub use dialect::Backend;
pub(crate) use dialect::{get, get_id, placeholders, value_rows};
pub use error::{Result, StoreError};
pub use event_types::{compile_schema, schema_errors, EventType, EventTypeCache};
pub use events::{EventQuery, Handoff, NewEvent, Published};
pub use feed::{FeedEntry, FeedLag};
pub(crate) use notify::watch_revision;
pub use posthorn_core::event::{StoredEvent, ENVELOPE_VERSION};
pub use publisher::Publisher;
pub use queue::{
    AttemptOrder, AttemptRecord, Claimed, DeliveryQuery, DeliveryRow, LastAttempt, StoredAttempt,
    SubscriptionAttempt,
};
pub use seal::Sealer;
pub use stats::{AttemptCount, DURATION_BOUNDS_MS};
pub use subscriptions::SubscriptionQuery;
pub use tend::{QueueTable, Tended};
pub use writer::SubscriptionWriter;

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// The database: a pool for reads and one for writes. On SQLite the write pool has a single
/// connection, so writers queue in the pool instead of failing with `SQLITE_BUSY`; on PostgreSQL
/// both are the same pool. Cloning it is one reference count (every cache, the dispatcher and
/// every request hold one).
#[derive(Clone)]
pub struct Store(Arc<Inner>);

/// What a [`Store`] holds, shared by its clones.
struct Inner {
    read: AnyPool,
    write: AnyPool,
    backend: Backend,
    sealer: Sealer,
    committer: commit::Committer,
    /// The PostgreSQL URL, for the LISTEN connection.
    listen_url: Option<String>,
    /// Signalled when another process announces a change of subscriptions or event types.
    changed: Arc<tokio::sync::Notify>,
    /// Recent access-token lookups.
    tokens: applications::Tokens,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.0.backend)
            .finish()
    }
}

impl Store {
    /// Opens (and for SQLite creates, with its folder) the database at `url`.
    pub async fn open(url: &str, sealer: Sealer) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let backend = backend_of(url)?;
        let (read, write) = match backend {
            Backend::Sqlite => {
                let url = sqlite_url(url)?;
                // The connections are in this process: testing one before handing it out (sqlx's
                // default) is a round trip to its thread for every transaction, and tells
                // nothing.
                let write = AnyPoolOptions::new()
                    .max_connections(1)
                    .test_before_acquire(false)
                    .acquire_timeout(Duration::from_secs(30))
                    .after_connect(|conn, _| Box::pin(sqlite_session(conn)))
                    .connect(&url)
                    .await?;
                // WAL lets readers run beside the writer; it is a property of the file, so setting
                // it once here holds for every connection. `synchronous` stays at SQLite's FULL:
                // a commit is on disk when it returns.
                let mode: String = sqlx::query_scalar("PRAGMA journal_mode = WAL")
                    .fetch_one(&write)
                    .await?;
                if !mode.eq_ignore_ascii_case("wal") {
                    tracing::warn!(%mode, "SQLite would not switch to WAL; readers will wait for writers");
                }
                let read = AnyPoolOptions::new()
                    .max_connections(8)
                    .test_before_acquire(false)
                    .after_connect(|conn, _| Box::pin(sqlite_session(conn)))
                    .connect(&url)
                    .await?;
                (read, write)
            }
            Backend::Postgres => {
                // One connection first, for a clear error ("connection refused at host:port",
                // "password authentication failed"); the pool would only say it timed out.
                let conn = <sqlx::AnyConnection as sqlx::Connection>::connect(url)
                    .await
                    .map_err(|e| {
                        StoreError::Open(format!(
                            "cannot connect to PostgreSQL at {}: {e}",
                            postgres_address(url)
                        ))
                    })?;
                let _ = sqlx::Connection::close(conn).await;
                // While the server is away, a request waits this long for a connection before
                // its 503 (sqlx keeps trying to connect until then). Shorter, a busy server (its
                // connection slots full) failed settles that then ran again: duplicates.
                let pool = AnyPoolOptions::new()
                    .max_connections(16)
                    .acquire_timeout(Duration::from_secs(10))
                    .connect(url)
                    .await?;
                (pool.clone(), pool)
            }
        };
        let committer = commit::Committer::start(write.clone(), backend);
        Ok(Self(Arc::new(Inner {
            read,
            write,
            backend,
            sealer,
            committer,
            listen_url: (backend == Backend::Postgres).then(|| url.to_owned()),
            changed: Arc::default(),
            tokens: Arc::default(),
        })))
    }

    pub fn backend(&self) -> Backend {
        self.0.backend
    }

    /// Applies pending migrations. On PostgreSQL sqlx holds an advisory lock meanwhile, so several
    /// processes starting at once apply them once.
    pub async fn migrate(&self) -> Result<()> {
        let migrator = match self.0.backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        migrator.run(&self.0.write).await?;
        Ok(())
    }

    /// Succeeds when the database answers.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.0.read).await?;
        Ok(())
    }

    /// Closes both pools, once every connection is back (the committers hand theirs back first).
    pub async fn close(&self) {
        // The committers keep connections between groups; the pool's close waits for every one.
        self.0.committer.close();
        self.0.write.close().await;
        self.0.read.close().await;
    }

    /// Checks that this process's master key is the database's: the first process to start on
    /// a new database stores a value sealed with its key (a database made before this check is
    /// judged by its sealed admin token); a process whose key does not open it must not start,
    /// or it would skip every subscription whose secret it cannot open — and publish events that
    /// reach none of them.
    pub async fn check_master_key(&self) -> Result<()> {
        const KEY_CHECK: &str = "master_key_check";
        const EXPECTED: &str = "posthorn master key check";
        let wrong = || {
            StoreError::Open(
                "the master key does not open this database's secrets: every process on one \
                 database needs the key it was created with (--master-key or the key file)"
                    .into(),
            )
        };
        if self.secret_setting(KEY_CHECK).await.is_err() {
            return Err(wrong());
        }
        // An older database: its sealed admin token tells.
        if self.secret_setting("admin_token").await.is_err() {
            return Err(wrong());
        }
        match self.init_secret_setting(KEY_CHECK, EXPECTED).await {
            Ok((value, _)) if value == EXPECTED => Ok(()),
            Ok(_) | Err(StoreError::Corrupt(_)) => Err(wrong()),
            Err(e) => Err(e),
        }
    }

    /// The setting `key`, unsealed.
    pub async fn secret_setting(&self, key: &str) -> Result<Option<String>> {
        let row = sqlx::query("SELECT value FROM settings WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.0.read)
            .await?;
        match row {
            Some(row) => Ok(Some(self.0.sealer.open(&row.try_get::<String, _>(0)?)?)),
            None => Ok(None),
        }
    }

    /// Stores `value` (sealed) under `key`, replacing what was there.
    pub async fn set_secret_setting(&self, key: &str, value: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO settings (key, value) VALUES ($1, $2) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(key)
        .bind(self.0.sealer.seal(value)?)
        .execute(&self.0.write)
        .await?;
        Ok(())
    }

    /// Stores `value` (sealed) under `key` unless the key exists; returns the value in force and
    /// whether it is the one given.
    pub async fn init_secret_setting(&self, key: &str, value: &str) -> Result<(String, bool)> {
        let inserted = sqlx::query(
            "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
        )
        .bind(key)
        .bind(self.0.sealer.seal(value)?)
        .execute(&self.0.write)
        .await?
        .rows_affected()
            == 1;
        if inserted {
            return Ok((value.to_owned(), true));
        }
        let current = self
            .secret_setting(key)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("setting {key} vanished")))?;
        Ok((current, false))
    }
}

fn backend_of(url: &str) -> Result<Backend> {
    if url.starts_with("sqlite:") {
        Ok(Backend::Sqlite)
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Backend::Postgres)
    } else {
        Err(StoreError::Open(
            "the database URL must start with sqlite: or postgres://".into(),
        ))
    }
}

/// `host:port` of a PostgreSQL URL, for messages (never its password).
fn postgres_address(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) => format!(
            "{}:{}",
            u.host_str().unwrap_or("localhost"),
            u.port().unwrap_or(5432)
        ),
        Err(_) => "the configured URL".to_owned(),
    }
}

/// The path of the SQLite file named by `url`, if it names one (not `:memory:`).
pub fn sqlite_path(url: &str) -> Option<&Path> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or(rest);
    (!path.is_empty() && !path.starts_with(":memory:")).then(|| Path::new(path))
}

/// Settings of every SQLite connection. `temp_store = MEMORY`: a statement's journal (what
/// undoes a statement that fails inside a transaction) and sorts stay in memory; by default a
/// journal past 64 KiB (a multi-row statement of a group commit) spills into a temporary file,
/// created and unlinked on the writer's thread in the middle of the group — a quarter of the
/// group commits did so in the end-to-end benchmark.
async fn sqlite_session(conn: &mut sqlx::AnyConnection) -> Result<(), sqlx::Error> {
    use sqlx::Executor;
    conn.execute("PRAGMA temp_store = MEMORY").await?;
    Ok(())
}

/// Creates the folder of a SQLite file and asks sqlx to create the file.
fn sqlite_url(url: &str) -> Result<String> {
    if let Some(path) = sqlite_path(url) {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::Open(format!("cannot create {}: {e}", dir.display())))?;
        }
    }
    Ok(if url.contains('?') {
        url.to_owned()
    } else {
        format!("{url}?mode=rwc")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_paths_are_found() {
        assert_eq!(
            sqlite_path("sqlite://posthorn-data/posthorn.db"),
            Some(Path::new("posthorn-data/posthorn.db"))
        );
        assert_eq!(
            sqlite_path("sqlite:/tmp/x.db?mode=rwc"),
            Some(Path::new("/tmp/x.db"))
        );
        assert_eq!(sqlite_path("sqlite::memory:"), None);
    }
}
