//! Durable storage for Posthorn: subscriptions, events, the delivery queue and the attempt log,
//! on embedded SQLite or on PostgreSQL, selected by the database URL.
//!
//! One [`Store`] serves both backends through sqlx's `Any` driver: the SQL is written once, in the
//! subset both understand (`$N` placeholders, `ON CONFLICT`, `RETURNING`, partial indexes), and the
//! few places that differ branch on [`Backend`]. Each backend has its own migrations with the same
//! intent (`migrations/sqlite`, `migrations/postgres`).
//!
//! Invariants:
//! - An event and all of its deliveries are written in one transaction ([`Store::publish`]); when
//!   `publish` returns, they are durable. Concurrent publishes share transactions (group commit).
//! - A delivery is attempted only while its lease is held: claiming pushes `next_attempt_at` past
//!   the lease and stamps `lease` with the claiming process; an attempt's outcome is recorded only
//!   if the lease is still that process's. A process that dies simply stops renewing, and its
//!   deliveries fall due again.
//! - Times are stored as Unix milliseconds, JSON as text; secrets only sealed (see [`seal`]).

mod cache;
mod event_types;
mod events;
mod health;
mod publisher;
mod queue;
pub mod seal;
mod subscriptions;
mod writer;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};

pub use cache::SubscriptionCache;
pub use event_types::{compile_schema, schema_errors, EventType, EventTypeCache};
pub use events::{EventQuery, Handoff, NewEvent, Published};
pub use posthorn_core::event::{StoredEvent, ENVELOPE_VERSION};
pub use publisher::Publisher;
pub use queue::{AttemptRecord, Claimed, DeliveryQuery, DeliveryRow, StoredAttempt};
pub use seal::Sealer;
pub use subscriptions::SubscriptionQuery;
pub use writer::SubscriptionWriter;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database error: {0}")]
    Shared(String),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored data could not be read: {0}")]
    Corrupt(String),
    #[error("cannot open the database: {0}")]
    Open(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// Rows per multi-row statement with `params` parameters a row: about 2,000 parameters on
    /// SQLite, 4,000 on PostgreSQL (which pays a round trip per statement). The SQL of such a
    /// statement goes through [`Backend::sql`].
    pub(crate) fn rows_per_statement(self, params: usize) -> usize {
        let budget = match self {
            Backend::Sqlite => 2000,
            Backend::Postgres => 4000,
        };
        (budget / params.max(1)).max(1)
    }

    /// The chunks in which multi-row statements of `params` parameters a row take `items`, in
    /// order: as many full statements ([`Backend::rows_per_statement`]) as fit, then the rest.
    ///
    /// On SQLite the rest goes by its binary digits, largest first (37 rows: 32, 4, 1). A
    /// statement's text then depends only on its row count, so every chunk runs one of a few
    /// statements, each prepared once and kept in the connection's statement cache (sqlx keeps
    /// 100 a connection); chunks as long as what came made a new statement of nearly every group
    /// commit, parsed and planned every time. A statement there is a call on the writer's thread.
    ///
    /// On PostgreSQL the rest is one statement: each is a round trip, which costs more than the
    /// preparing it saves, and a group that is one statement needs no transaction (see `events`).
    pub(crate) fn statement_chunks<T>(self, items: &[T], params: usize) -> StatementChunks<'_, T> {
        StatementChunks {
            rest: items,
            full: self.rows_per_statement(params),
            binary: self == Backend::Sqlite,
        }
    }

    /// The text of a multi-row statement as this backend runs it ([`Backend::sql`]), built by
    /// `build`. On SQLite it is kept, once per `name` and row count: with
    /// [`Backend::statement_chunks`] there are a few of each. (On PostgreSQL, with a statement of
    /// every row count, keeping them all could hold megabytes.)
    pub(crate) fn statement(
        self,
        name: &'static str,
        rows: usize,
        build: impl FnOnce() -> String,
    ) -> Arc<str> {
        if self == Backend::Postgres {
            return build().into();
        }
        type Texts = std::sync::Mutex<std::collections::HashMap<(&'static str, usize), Arc<str>>>;
        static TEXTS: std::sync::OnceLock<Texts> = std::sync::OnceLock::new();
        let texts = TEXTS.get_or_init(Texts::default);
        let key = (name, rows);
        if let Some(text) = texts.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
            return text.clone();
        }
        let text: Arc<str> = self.sql(build()).into();
        texts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key)
            .or_insert(text)
            .clone()
    }

    /// The statement as this backend should run it. On SQLite, `$1, $2, …` written once each in
    /// order become anonymous `?`: sqlx asks SQLite the name of every parameter it binds, and
    /// SQLite finds a named parameter's name by walking the list of all of them, so binding a
    /// statement of n named parameters costs n² — at 3,500 parameters, 40 % of the CPU of a batch
    /// publish (`sqlite3_bind_parameter_name`); anonymous ones have no list. Statements that
    /// number their parameters otherwise are left as they are (and must stay small).
    pub(crate) fn sql(self, sql: String) -> String {
        if self == Backend::Postgres {
            return sql;
        }
        let mut out = String::with_capacity(sql.len());
        let mut expected = 1usize;
        let mut rest = sql.as_str();
        while let Some(at) = rest.find('$') {
            let digits = rest[at + 1..]
                .bytes()
                .take_while(u8::is_ascii_digit)
                .count();
            if digits == 0 {
                out.push_str(&rest[..=at]);
                rest = &rest[at + 1..];
                continue;
            }
            if rest[at + 1..at + 1 + digits].parse::<usize>().ok() != Some(expected) {
                debug_assert!(false, "parameters out of order, left named: {sql}");
                return sql;
            }
            expected += 1;
            out.push_str(&rest[..at]);
            out.push('?');
            rest = &rest[at + 1 + digits..];
        }
        out.push_str(rest);
        out
    }
}

/// The PostgreSQL channels on which processes announce deliveries due now, and changes to what
/// every process keeps in memory.
const DUE_CHANNEL: &str = "posthorn_due";
const CHANGED_CHANNEL: &str = "posthorn_changed";

async fn notify<'c, E>(backend: Backend, channel: &str, executor: E) -> Result<()>
where
    E: sqlx::Executor<'c, Database = sqlx::Any>,
{
    if backend == Backend::Postgres {
        sqlx::query(&format!("SELECT pg_notify('{channel}', '')"))
            .execute(executor)
            .await?;
    }
    Ok(())
}

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// The database: a pool for reads and one for writes. On SQLite the write pool has a single
/// connection, so writers queue in the pool instead of failing with `SQLITE_BUSY`; on PostgreSQL
/// both are the same pool. Cloning it is one reference count (every cache, the dispatcher and
/// every request hold one).
#[derive(Clone)]
pub struct Store(Arc<Inner>);

impl std::ops::Deref for Store {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

#[doc(hidden)]
pub struct Inner {
    read: AnyPool,
    write: AnyPool,
    backend: Backend,
    sealer: Sealer,
    committer: events::Committer,
    /// The PostgreSQL URL, for the LISTEN connection.
    listen_url: Option<String>,
    /// Signalled when another process announces a change of subscriptions or event types.
    changed: Arc<tokio::sync::Notify>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend)
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
                let pool = AnyPoolOptions::new()
                    .max_connections(16)
                    .acquire_timeout(Duration::from_secs(10))
                    .connect(url)
                    .await?;
                (pool.clone(), pool)
            }
        };
        let committer = events::Committer::start(write.clone(), backend);
        Ok(Self(Arc::new(Inner {
            read,
            write,
            backend,
            sealer,
            committer,
            listen_url: (backend == Backend::Postgres).then(|| url.to_owned()),
            changed: Arc::default(),
        })))
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Applies pending migrations. On PostgreSQL sqlx holds an advisory lock meanwhile, so several
    /// processes starting at once apply them once.
    pub async fn migrate(&self) -> Result<()> {
        let migrator = match self.backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        migrator.run(&self.write).await?;
        Ok(())
    }

    /// Succeeds when the database answers.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.read).await?;
        Ok(())
    }

    /// On PostgreSQL, listens for what other processes announce (`NOTIFY`): deliveries due now
    /// (calls `wake`, so every dispatcher claims at once instead of at its next poll) and changed
    /// subscriptions or event types (the in-memory views reload at once). Notifications lost while
    /// the connection is re-established are covered by the polls. `None` on SQLite, where only
    /// this process writes.
    pub fn listen(&self, wake: impl Fn() + Send + 'static) -> Option<tokio::task::JoinHandle<()>> {
        let url = self.listen_url.clone()?;
        let changed = self.changed.clone();
        Some(tokio::spawn(async move {
            loop {
                match sqlx::postgres::PgListener::connect(&url).await {
                    Ok(mut listener) => {
                        if let Err(e) = listener.listen_all([DUE_CHANNEL, CHANGED_CHANNEL]).await {
                            tracing::warn!(error = %e, "LISTEN failed; retrying");
                        } else {
                            // `recv` re-establishes a lost connection itself.
                            while let Ok(n) = listener.recv().await {
                                if n.channel() == DUE_CHANNEL {
                                    wake();
                                } else {
                                    changed.notify_waiters();
                                }
                            }
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot open the LISTEN connection; retrying")
                    }
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }))
    }

    /// Tells every process that deliveries are due (PostgreSQL; nothing on SQLite).
    pub(crate) async fn notify_due<'c, E>(backend: Backend, executor: E) -> Result<()>
    where
        E: sqlx::Executor<'c, Database = sqlx::Any>,
    {
        notify(backend, DUE_CHANNEL, executor).await
    }

    /// Tells every process that subscriptions or event types changed (PostgreSQL).
    pub(crate) async fn notify_changed<'c, E>(backend: Backend, executor: E) -> Result<()>
    where
        E: sqlx::Executor<'c, Database = sqlx::Any>,
    {
        notify(backend, CHANGED_CHANNEL, executor).await
    }

    /// Closes both pools, once every connection is back (the committers hand theirs back first).
    pub async fn close(&self) {
        // The committers keep connections between groups; the pool's close waits for every one.
        self.committer.close();
        self.write.close().await;
        self.read.close().await;
    }

    /// The setting `key`, unsealed.
    pub async fn secret_setting(&self, key: &str) -> Result<Option<String>> {
        let row = sqlx::query("SELECT value FROM settings WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.read)
            .await?;
        match row {
            Some(row) => Ok(Some(self.sealer.open(&row.try_get::<String, _>(0)?)?)),
            None => Ok(None),
        }
    }

    /// Stores `value` (sealed) under `key` unless the key exists; returns the value in force and
    /// whether it is the one given.
    pub async fn init_secret_setting(&self, key: &str, value: &str) -> Result<(String, bool)> {
        let inserted = sqlx::query(
            "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
        )
        .bind(key)
        .bind(self.sealer.seal(value))
        .execute(&self.write)
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

/// Checks the revision counter `counter` every `every`, and when another process announces a
/// change, and calls `reload` when it differs from `known()`: how an in-memory view learns that another process changed what it reflects. Runs
/// until the returned task is aborted.
pub(crate) fn watch_revision<K, R, Fut>(
    store: Store,
    counter: &'static str,
    every: Duration,
    known: K,
    reload: R,
) -> tokio::task::JoinHandle<()>
where
    K: Fn() -> i64 + Send + 'static,
    R: Fn() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<()>> + Send,
{
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let changed = store.changed.clone();
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = changed.notified() => {}
            }
            match store.revision(counter).await {
                Ok(r) if r != known() => {
                    if let Err(e) = reload().await {
                        tracing::warn!(error = %e, counter, "reloading after a change failed");
                    }
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, counter, "checking for changes failed"),
            }
        }
    })
}

/// See [`Backend::statement_chunks`].
pub(crate) struct StatementChunks<'a, T> {
    rest: &'a [T],
    full: usize,
    binary: bool,
}

impl<'a, T> Iterator for StatementChunks<'a, T> {
    type Item = &'a [T];

    fn next(&mut self) -> Option<&'a [T]> {
        let len = self.rest.len();
        if len == 0 {
            return None;
        }
        // A full statement, else (binary) the largest power of two in what is left.
        let n = if len >= self.full {
            self.full
        } else if self.binary {
            1 << len.ilog2()
        } else {
            len
        };
        let (chunk, rest) = self.rest.split_at(n);
        self.rest = rest;
        Some(chunk)
    }
}

/// `($first, …), (…), …` — `rows` tuples of `per_row` consecutive placeholders each, every tuple
/// ending with `tail` (constants or shared placeholders, e.g. `, $1`), for multi-row statements.
fn value_rows(rows: usize, per_row: usize, first: usize, tail: &str) -> String {
    (0..rows)
        .map(|r| {
            let start = first + r * per_row;
            format!("({}{tail})", placeholders(start, per_row))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `$start, $start+1, …` — `n` placeholders.
fn placeholders(start: usize, n: usize) -> String {
    (start..start + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn get<'r, T>(row: &'r AnyRow, col: &str) -> Result<T>
where
    T: sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>,
{
    row.try_get(col).map_err(StoreError::from)
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
        assert_eq!(placeholders(2, 3), "$2, $3, $4");
    }

    #[test]
    fn statements_come_in_a_few_sizes() {
        let sizes = |n: usize, params| {
            let items = vec![0u8; n];
            Backend::Sqlite
                .statement_chunks(&items, params)
                .map(<[u8]>::len)
                .collect::<Vec<_>>()
        };
        assert_eq!(sizes(0, 8), Vec::<usize>::new());
        assert_eq!(sizes(37, 8), [32, 4, 1]);
        assert_eq!(sizes(64, 8), [64]);
        // 250 rows of 8 parameters make a full statement on SQLite.
        assert_eq!(sizes(1000, 8), [250, 250, 250, 250]);
        assert_eq!(sizes(600, 8), [250, 250, 64, 32, 4]);
        // PostgreSQL: full statements of 500 rows, then the rest in one.
        let items = vec![0u8; 1037];
        let pg: Vec<usize> = Backend::Postgres
            .statement_chunks(&items, 8)
            .map(<[u8]>::len)
            .collect();
        assert_eq!(pg, [500, 500, 37]);
        let text = Backend::Sqlite.statement("test", 2, || "SELECT $1, $2".into());
        assert_eq!(&*text, "SELECT ?, ?");
        // Kept: the second build is not called.
        let again = Backend::Sqlite.statement("test", 2, || unreachable!());
        assert!(Arc::ptr_eq(&text, &again));
    }

    #[test]
    fn sqlite_gets_anonymous_parameters_in_order() {
        let sql = format!(
            "UPDATE t SET a = $1 WHERE b IN ({}) AND c = '$'",
            placeholders(2, 10)
        );
        assert_eq!(
            Backend::Sqlite.sql(sql.clone()),
            "UPDATE t SET a = ? WHERE b IN (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) AND c = '$'"
        );
        assert_eq!(Backend::Postgres.sql(sql.clone()), sql);
    }
}
