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
/// The payload is a subscription id whose circuit a person closed.
const CIRCUIT_CHANNEL: &str = "posthorn_circuit";

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
    /// (this process's dispatcher, the [`crate::Handoff`], claims at once instead of at its next
    /// poll), a circuit a person closed (its breaker here is reset too), and changed
    /// subscriptions or event types (the in-memory views reload at once). Notifications lost
    /// while the connection is re-established are covered by the polls. `None` on SQLite, where
    /// only this process writes.
    pub fn listen(&self) -> Option<tokio::task::JoinHandle<()>> {
        let url = self.0.listen_url.clone()?;
        let changed = self.0.changed.clone();
        let handoff = self.0.committer.handoff.clone();
        Some(tokio::spawn(async move {
            loop {
                match sqlx::postgres::PgListener::connect(&url).await {
                    Ok(mut listener) => {
                        let channels = [DUE_CHANNEL, CHANGED_CHANNEL, CIRCUIT_CHANNEL];
                        if let Err(e) = listener.listen_all(channels).await {
                            tracing::warn!(error = %e, "LISTEN failed; retrying");
                        } else {
                            // `recv` re-establishes a lost connection itself.
                            while let Ok(n) = listener.recv().await {
                                match n.channel() {
                                    DUE_CHANNEL => {
                                        if let Some(h) = handoff.get() {
                                            h.due();
                                        }
                                    }
                                    CIRCUIT_CHANNEL => {
                                        if let Some(h) = handoff.get() {
                                            // Another process's: only ids it made.
                                            match posthorn_core::SubscriptionId::parse(
                                                n.payload(),
                                            ) {
                                                Some(id) => h.circuit_closed(&id),
                                                None => tracing::warn!(
                                                    payload = n.payload(),
                                                    "a closed circuit announced for no subscription id; the deliveries fall due at the next poll"
                                                ),
                                            }
                                            h.due();
                                        }
                                    }
                                    _ => changed.notify_waiters(),
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

    /// Tells every process that a person closed this subscription's circuit (PostgreSQL).
    pub(crate) async fn notify_circuit<'c, E>(
        backend: Backend,
        executor: E,
        subscription_id: &str,
    ) -> Result<()>
    where
        E: sqlx::Executor<'c, Database = sqlx::Any>,
    {
        if backend == Backend::Postgres {
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(CIRCUIT_CHANNEL)
                .bind(subscription_id)
                .execute(executor)
                .await?;
        }
        Ok(())
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
        let changed = store.0.changed.clone();
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
