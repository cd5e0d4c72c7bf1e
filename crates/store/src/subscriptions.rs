//! The `subscriptions` table. Every write bumps the `subscriptions` revision in the same
//! transaction, which is how every process learns that its subscription index is stale.

use posthorn_core::subscription::{DisabledReason, Subscription, SubscriptionSpec};
use posthorn_core::time::now_ms;
use posthorn_core::{Secret, Visibility};
use sqlx::any::AnyRow;
use sqlx::{Any, Transaction};

use crate::{get, Result, Store, StoreError};

const COLUMNS: &str = "id, owner, spec, disabled_reason, secret, previous_secret, \
    previous_secret_until, created_at, updated_at";

/// Which subscriptions a list shows, each condition evaluated by the database.
#[derive(Debug, Clone, Default)]
pub struct SubscriptionQuery {
    /// Only this owner's (`None`: everyone's, for the admin).
    pub owner: Option<String>,
    /// Ids below this one (the cursor).
    pub before: Option<String>,
    pub limit: usize,
    /// Only those of this service.
    pub service: Option<String>,
    /// Only those whose metadata has each of these keys with that value.
    pub metadata: Vec<(String, String)>,
    /// Only those enabled and not disabled by Posthorn.
    pub active: bool,
}

/// Bumps the `subscriptions` revision, announces the change, and returns the new revision.
async fn bump_revision(backend: crate::Backend, tx: &mut Transaction<'_, Any>) -> Result<i64> {
    let row = sqlx::query(
        "UPDATE revisions SET value = value + 1 WHERE name = 'subscriptions' RETURNING value",
    )
    .fetch_one(&mut **tx)
    .await?;
    Store::notify_changed(backend, &mut **tx).await?;
    get(&row, "value")
}

impl Store {
    fn subscription_from_row(&self, row: &AnyRow) -> Result<Subscription> {
        let text: String = get(row, "spec")?;
        let corrupt = |e: serde_json::Error| StoreError::Corrupt(format!("subscription spec: {e}"));
        let spec: SubscriptionSpec = if text.contains("\"$sealed\"") {
            let mut value: serde_json::Value = serde_json::from_str(&text).map_err(corrupt)?;
            if let Some(config) = value.get_mut("config") {
                posthorn_core::secrets::open_sealed(config, &|s: &str| self.0.sealer.open(s))?;
            }
            serde_json::from_value(value).map_err(corrupt)?
        } else {
            serde_json::from_str(&text).map_err(corrupt)?
        };
        let secret = self.open_secret(&get::<String>(row, "secret")?)?;
        let previous = match get::<Option<String>>(row, "previous_secret")? {
            Some(s) => Some((
                self.open_secret(&s)?,
                get::<Option<i64>>(row, "previous_secret_until")?.unwrap_or(0),
            )),
            None => None,
        };
        Ok(Subscription {
            id: posthorn_core::SubscriptionId::stored(get(row, "id")?),
            owner: get(row, "owner")?,
            spec,
            disabled_reason: get::<Option<String>>(row, "disabled_reason")?
                .as_deref()
                .and_then(DisabledReason::parse),
            secret,
            previous_secret: previous,
            created_at: get(row, "created_at")?,
            updated_at: get(row, "updated_at")?,
        })
    }

    /// The spec as stored: its credentials sealed, so that the database file never holds them
    /// in clear.
    fn spec_json(&self, sub: &Subscription, secret_paths: &[String]) -> Result<String> {
        let mut spec = serde_json::to_value(&sub.spec).unwrap_or_default();
        if !secret_paths.is_empty() {
            if let Some(config) = spec.get_mut("config") {
                posthorn_core::secrets::seal_paths(config, secret_paths, |p| {
                    self.0.sealer.seal(p)
                })?;
            }
        }
        // A spec is plain data; serializing it cannot fail.
        Ok(serde_json::to_string(&spec).unwrap_or_default())
    }

    /// The subscription's signing secrets, sealed: the one in force and the previous one, if any.
    fn sealed_secrets(&self, sub: &Subscription) -> Result<(String, Option<String>)> {
        let current = self.0.sealer.seal(&sub.secret.expose())?;
        let previous = sub
            .previous_secret
            .as_ref()
            .map(|(s, _)| self.0.sealer.seal(&s.expose()))
            .transpose()?;
        Ok((current, previous))
    }

    fn open_secret(&self, sealed: &str) -> Result<Secret> {
        let plain = self.0.sealer.open(sealed)?;
        Secret::parse(&plain).map_err(|e| StoreError::Corrupt(e.to_string()))
    }

    /// Returns the `subscriptions` revision this write made.
    /// Inserts a subscription, the credentials at `secret_paths` of its config sealed.
    pub async fn insert_subscription(
        &self,
        sub: &Subscription,
        secret_paths: &[String],
    ) -> Result<i64> {
        let spec = self.spec_json(sub, secret_paths)?;
        let (current, previous) = self.sealed_secrets(sub)?;
        write_tx!(self, |tx| {
            sqlx::query(&format!(
                "INSERT INTO subscriptions ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
            ))
            .bind(sub.id.as_str())
            .bind(&sub.owner)
            .bind(&spec)
            .bind(sub.disabled_reason.map(|r| r.as_str()))
            .bind(&current)
            .bind(&previous)
            .bind(sub.previous_secret.as_ref().map(|(_, until)| *until))
            .bind(sub.created_at)
            .bind(sub.updated_at)
            .execute(&mut *tx)
            .await?;
            let revision = bump_revision(self.0.backend, &mut tx).await?;
            tx.commit().await?;
            Ok(revision)
        })
    }

    /// Writes every field of `sub` but its id, owner and creation time. Returns the revision
    /// this write made, or `None` if the subscription is gone.
    /// Rewrites a subscription, the credentials at `secret_paths` of its config sealed.
    pub async fn update_subscription(
        &self,
        sub: &Subscription,
        secret_paths: &[String],
    ) -> Result<Option<i64>> {
        let spec = self.spec_json(sub, secret_paths)?;
        let (current, previous) = self.sealed_secrets(sub)?;
        write_tx!(self, |tx| {
            let n = sqlx::query(
                "UPDATE subscriptions SET spec = $1, disabled_reason = $2, secret = $3, \
             previous_secret = $4, previous_secret_until = $5, updated_at = $6 \
             WHERE id = $7 AND deleted_at IS NULL",
            )
            .bind(&spec)
            .bind(sub.disabled_reason.map(|r| r.as_str()))
            .bind(&current)
            .bind(&previous)
            .bind(sub.previous_secret.as_ref().map(|(_, until)| *until))
            .bind(sub.updated_at)
            .bind(sub.id.as_str())
            .execute(&mut *tx)
            .await?
            .rows_affected();
            let mut revision = None;
            if n == 1 {
                // A subscription enabled again releases the deliveries held while it was off.
                if sub.is_active() {
                    sqlx::query(
                        "UPDATE deliveries SET next_attempt_at = $1 WHERE subscription_id = $2 \
                     AND status = 'pending' AND lease IS NULL AND next_attempt_at > $1",
                    )
                    .bind(now_ms())
                    .bind(sub.id.as_str())
                    .execute(&mut *tx)
                    .await?;
                }
                revision = Some(bump_revision(self.0.backend, &mut tx).await?);
            }
            tx.commit().await?;
            if revision.is_some() && sub.is_active() {
                self.signal_due();
            }
            Ok(revision)
        })
    }

    /// A subscription that is not deleted and that `seen` allows.
    pub async fn subscription(
        &self,
        seen: &Visibility,
        id: &posthorn_core::SubscriptionId,
    ) -> Result<Option<Subscription>> {
        let mut sql =
            format!("SELECT {COLUMNS} FROM subscriptions WHERE id = $1 AND deleted_at IS NULL");
        if seen.owner().is_some() {
            sql.push_str(" AND owner = $2");
        }
        let mut query = sqlx::query(&sql).bind(id.as_str());
        if let Some(owner) = seen.owner() {
            query = query.bind(owner);
        }
        let row = query.fetch_optional(&self.0.read).await?;
        row.map(|r| self.subscription_from_row(&r)).transpose()
    }

    /// The subscriptions of these ids that are not deleted, read together (a page of deliveries
    /// names at most a few hundred); any owner: the caller has checked what it may see.
    pub async fn subscriptions_in(&self, ids: &[&str]) -> Result<Vec<Subscription>> {
        let mut subs = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(500) {
            let sql = format!(
                "SELECT {COLUMNS} FROM subscriptions WHERE deleted_at IS NULL AND id IN ({})",
                crate::dialect::placeholders(1, chunk.len())
            );
            let mut q = sqlx::query(&sql);
            for id in chunk {
                q = q.bind(*id);
            }
            for row in q.fetch_all(&self.0.read).await? {
                subs.push(self.subscription_from_row(&row)?);
            }
        }
        Ok(subs)
    }

    /// Whether a subscription exists, deleted or not, that `seen` allows (delivery logs stay
    /// readable after a delete).
    pub async fn subscription_seen(
        &self,
        seen: &Visibility,
        id: &posthorn_core::SubscriptionId,
    ) -> Result<bool> {
        let row = sqlx::query("SELECT owner FROM subscriptions WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(&self.0.read)
            .await?;
        let owner: Option<String> = row.map(|r| get(&r, "owner")).transpose()?;
        Ok(owner.is_some_and(|o| seen.sees(&o)))
    }

    /// Newest first.
    pub async fn subscriptions_page(&self, q: &SubscriptionQuery) -> Result<Vec<Subscription>> {
        let mut sql = format!("SELECT {COLUMNS} FROM subscriptions WHERE deleted_at IS NULL");
        let mut binds: Vec<&str> = Vec::new();
        fn param<'a>(binds: &mut Vec<&'a str>, value: &'a str) -> String {
            binds.push(value);
            format!("${}", binds.len())
        }
        if let Some(owner) = &q.owner {
            sql.push_str(&format!(" AND owner = {}", param(&mut binds, owner)));
        }
        if let Some(before) = &q.before {
            sql.push_str(&format!(" AND id < {}", param(&mut binds, before)));
        }
        // The spec is JSON text: read with each backend's JSON functions.
        let postgres = self.0.backend == crate::Backend::Postgres;
        if let Some(service) = &q.service {
            let p = param(&mut binds, service);
            sql.push_str(&if postgres {
                format!(" AND (spec::jsonb ->> 'service') = {p}")
            } else {
                format!(" AND json_extract(spec, '$.service') = {p}")
            });
        }
        for (key, value) in &q.metadata {
            let (k, v) = (param(&mut binds, key), param(&mut binds, value));
            sql.push_str(&if postgres {
                format!(" AND (spec::jsonb -> 'metadata' ->> {k}) = {v}")
            } else {
                format!(
                    " AND EXISTS (SELECT 1 FROM json_each(spec, '$.metadata') \
                     WHERE key = {k} AND value = {v})"
                )
            });
        }
        if q.active {
            sql.push_str(&if postgres {
                " AND disabled_reason IS NULL AND COALESCE((spec::jsonb ->> 'enabled')::boolean, true)"
                    .to_owned()
            } else {
                " AND disabled_reason IS NULL AND COALESCE(json_extract(spec, '$.enabled'), 1)"
                    .to_owned()
            });
        }
        sql.push_str(&format!(" ORDER BY id DESC LIMIT {}", q.limit));
        let mut query = sqlx::query(&sql);
        for b in binds {
            query = query.bind(b);
        }
        let rows = query.fetch_all(&self.0.read).await?;
        rows.iter().map(|r| self.subscription_from_row(r)).collect()
    }

    /// Every subscription `q` selects (its `before` and `limit` aside), newest first, read a
    /// page at a time.
    pub async fn subscriptions_all(&self, q: &SubscriptionQuery) -> Result<Vec<Subscription>> {
        const PAGE: usize = 500;
        let mut q = SubscriptionQuery {
            before: None,
            limit: PAGE,
            ..q.clone()
        };
        let mut all = Vec::new();
        loop {
            let page = self.subscriptions_page(&q).await?;
            let done = page.len() < PAGE;
            q.before = page.last().map(|s| s.id.to_string());
            all.extend(page);
            if done {
                return Ok(all);
            }
        }
    }

    /// How many subscriptions `owner` has (not deleted).
    pub async fn count_subscriptions(&self, owner: &str) -> Result<u64> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM subscriptions WHERE owner = $1 AND deleted_at IS NULL",
        )
        .bind(owner)
        .fetch_one(&self.0.read)
        .await?;
        Ok(get::<i64>(&row, "n")?.max(0) as u64)
    }

    /// Every subscription that is not deleted, for the in-memory index, with the revision it
    /// reflects.
    pub async fn all_subscriptions(&self) -> Result<(i64, Vec<Subscription>)> {
        let mut tx = self.0.read.begin().await?;
        let revision = sqlx::query("SELECT value FROM revisions WHERE name = 'subscriptions'")
            .fetch_one(&mut *tx)
            .await?;
        let revision: i64 = get(&revision, "value")?;
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM subscriptions WHERE deleted_at IS NULL"
        ))
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        let subs = rows
            .iter()
            .filter_map(|r| match self.subscription_from_row(r) {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::error!(error = %e, "skipping a subscription that cannot be read");
                    None
                }
            })
            .collect();
        Ok((revision, subs))
    }

    /// Marks the subscription deleted and cancels its pending deliveries; its deliveries and
    /// their logs stay readable. Returns the revision this write made, or `None` if there was
    /// no such subscription.
    pub async fn delete_subscription(
        &self,
        id: &posthorn_core::SubscriptionId,
    ) -> Result<Option<i64>> {
        let now = now_ms();
        write_tx!(self, |tx| {
            let n = sqlx::query(
                "UPDATE subscriptions SET deleted_at = $1, updated_at = $1 \
             WHERE id = $2 AND deleted_at IS NULL",
            )
            .bind(now)
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?
            .rows_affected();
            let mut revision = None;
            if n == 1 {
                sqlx::query(
                    "UPDATE deliveries SET status = 'cancelled', lease = NULL, updated_at = $1 \
                 WHERE subscription_id = $2 AND status = 'pending'",
                )
                .bind(now)
                .bind(id.as_str())
                .execute(&mut *tx)
                .await?;
                revision = Some(bump_revision(self.0.backend, &mut tx).await?);
            }
            tx.commit().await?;
            Ok(revision)
        })
    }
}
