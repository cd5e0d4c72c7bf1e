//! How processes on one PostgreSQL database learn of each other's work: `NOTIFY` when
//! deliveries fall due or subscriptions and event types change, one `LISTEN` connection per
//! process, and the revision polls that cover notifications lost while it reconnects. On SQLite,
//! where one process writes, the notifications are nothing and the polls see only its own
//! writes.

use std::time::Duration;

use crate::{Backend, Result, Store};

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

impl Store {
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
