//! The durable delivery queue and the attempt log.
//!
//! A delivery is due when it is `pending` and its `next_attempt_at` has passed. [`Store::claim`]
//! takes due deliveries under a lease: it moves `next_attempt_at` to the lease's end and writes the
//! claiming process into `lease`. The process renews the lease of what it still has in flight;
//! [`Store::settle`] writes the outcome only if the lease is still its own. A process that dies
//! stops renewing and its deliveries fall due again, to be claimed by whoever runs next — at least
//! once, never lost. On PostgreSQL the claim uses `FOR UPDATE SKIP LOCKED`, so processes claiming
//! at once take different rows.

use std::sync::Arc;

use posthorn_core::time::{now_ms, Millis};
use posthorn_core::{AttemptOutcome, DeliveryStatus};
use sqlx::any::AnyRow;
use sqlx::{Any, Transaction};

use crate::events::{attributes_from, event_from_row, EVENT_COLUMNS};
use crate::{get, get_id, placeholders, value_rows, Backend, Result, Store};
use posthorn_core::{Principal, StoredEvent, Visibility};

/// A delivery taken for an attempt.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub delivery_id: posthorn_core::DeliveryId,
    pub subscription_id: posthorn_core::SubscriptionId,
    /// Attempts made before this one.
    pub attempts: i64,
    /// Shared by the deliveries of one event claimed together.
    pub event: std::sync::Arc<StoredEvent>,
    /// Its ordering key, when its subscription orders by key and the event has one.
    pub order_key: Option<String>,
}

/// One attempt as logged.
#[derive(Debug, Clone)]
pub struct StoredAttempt {
    pub number: i64,
    pub started_at: Millis,
    pub duration_ms: i64,
    /// JSON: `{"method","url","headers","body"}`.
    pub request: String,
    /// JSON: `{"status","headers","body"}`, when a response came.
    pub response: Option<String>,
    pub error: Option<String>,
    pub outcome: AttemptOutcome,
}

/// How [`Store::subscription_attempts`] orders a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOrder {
    StartedAt,
    EndedAt,
    /// By outcome: success, then final, then retry (as text).
    Outcome,
    Number,
}

/// One attempt of a subscription's log, with its delivery and event.
#[derive(Debug, Clone)]
pub struct SubscriptionAttempt {
    pub delivery_id: posthorn_core::DeliveryId,
    pub event: StoredEvent,
    pub attempt: StoredAttempt,
}

/// What to write back for a claimed delivery: its new state, and the attempt made, if one was.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    pub delivery_id: posthorn_core::DeliveryId,
    pub status: DeliveryStatus,
    pub attempts: i64,
    pub next_attempt_at: Millis,
    pub attempt: Option<StoredAttempt>,
}

#[derive(Debug, Clone)]
pub struct DeliveryRow {
    pub id: posthorn_core::DeliveryId,
    pub event_id: String,
    pub event_name: String,
    pub subscription_id: posthorn_core::SubscriptionId,
    pub status: DeliveryStatus,
    pub attempts: i64,
    pub next_attempt_at: Millis,
    pub created_at: Millis,
    pub updated_at: Millis,
    /// Its latest attempt, in brief (none before the first).
    pub last: Option<LastAttempt>,
    /// Its event's place in publish order.
    pub event_seq: i64,
    /// Its ordering key, when its subscription orders by key and the event has one.
    pub order_key: Option<String>,
}

/// A delivery's latest attempt, for lists: how it ended, how long it took, and the HTTP status
/// of the answer when there was one.
#[derive(Debug, Clone)]
pub struct LastAttempt {
    pub outcome: AttemptOutcome,
    pub duration_ms: i64,
    pub status: Option<u16>,
}

#[derive(Debug, Clone, Default)]
pub struct DeliveryQuery {
    /// Only deliveries of this owner's subscriptions (`None`: everyone's, for the admin).
    pub owner: Option<String>,
    pub subscription_id: Option<String>,
    /// Only the deliveries of this event (by its sequence number).
    pub event_seq: Option<i64>,
    pub event_name: Option<String>,
    pub status: Option<DeliveryStatus>,
    /// Created at or after this time.
    pub since: Option<Millis>,
    /// Created before this time.
    pub until: Option<Millis>,
    /// Ids below this one (the cursor).
    pub before: Option<String>,
    pub limit: usize,
}

/// The latest attempt's outcome, duration and response are read by the attempts' primary key
/// (`delivery_id`, `number`): one index probe each, a row of a list at a time.
const DELIVERY_COLUMNS: &str = "d.id, e.id AS event_id, e.name AS event_name, d.subscription_id, \
    d.status, d.attempts, d.next_attempt_at, d.created_at, d.updated_at, d.event_seq, d.order_key, \
    (SELECT a.outcome FROM attempts a WHERE a.delivery_id = d.id \
     ORDER BY a.number DESC LIMIT 1) AS last_outcome, \
    (SELECT a.duration_ms FROM attempts a WHERE a.delivery_id = d.id \
     ORDER BY a.number DESC LIMIT 1) AS last_duration_ms, \
    (SELECT a.response FROM attempts a WHERE a.delivery_id = d.id \
     ORDER BY a.number DESC LIMIT 1) AS last_response";

/// The HTTP status in a logged response (`{"status": 500, …}`); none for other services'.
fn response_status(response: &str) -> Option<u16> {
    let answer: serde_json::Value = serde_json::from_str(response).ok()?;
    u16::try_from(answer.get("status")?.as_u64()?).ok()
}

fn delivery_from_row(row: &AnyRow) -> Result<DeliveryRow> {
    let status: String = get(row, "status")?;
    let id: String = get(row, "id")?;
    Ok(DeliveryRow {
        event_id: get(row, "event_id")?,
        event_name: get(row, "event_name")?,
        subscription_id: get_id(row, "subscription_id")?,
        status: DeliveryStatus::parse(&status)
            .ok_or_else(|| crate::StoreError::Corrupt(format!("delivery {id}: status {status}")))?,
        attempts: get(row, "attempts")?,
        next_attempt_at: get(row, "next_attempt_at")?,
        created_at: get(row, "created_at")?,
        updated_at: get(row, "updated_at")?,
        last: match get::<Option<String>>(row, "last_outcome")? {
            None => None,
            Some(outcome) => Some(LastAttempt {
                outcome: AttemptOutcome::parse(&outcome).ok_or_else(|| {
                    crate::StoreError::Corrupt(format!("delivery {id}: attempt outcome {outcome}"))
                })?,
                duration_ms: get::<Option<i64>>(row, "last_duration_ms")?.unwrap_or(0),
                status: get::<Option<String>>(row, "last_response")?
                    .as_deref()
                    .and_then(response_status),
            }),
        },
        event_seq: get(row, "event_seq")?,
        order_key: get(row, "order_key")?,
        id: posthorn_core::DeliveryId::stored(id),
    })
}

impl Store {
    /// Takes up to `limit` due deliveries for `owner` (a process id) until `now + lease_ms`,
    /// skipping those of the subscriptions in `skip` (which the caller could not attempt now).
    pub async fn claim(
        &self,
        owner: &str,
        limit: usize,
        lease_ms: i64,
        skip: &[posthorn_core::SubscriptionId],
    ) -> Result<Vec<Claimed>> {
        let now = now_ms();
        let lock = match self.0.backend {
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        // The skipped ids go as one JSON array: one parameter, however many there are.
        let skipping = match (skip.is_empty(), self.0.backend) {
            (true, _) => "",
            (false, Backend::Sqlite) => {
                " AND subscription_id NOT IN (SELECT value FROM json_each($4))"
            }
            (false, Backend::Postgres) => {
                " AND subscription_id NOT IN (SELECT json_array_elements_text($4::json))"
            }
        };
        let sql = format!(
            "UPDATE deliveries SET next_attempt_at = $1, lease = $2 WHERE id IN (\
               SELECT id FROM deliveries WHERE status = 'pending' AND next_attempt_at <= $3\
               {skipping} ORDER BY next_attempt_at LIMIT {limit}{lock}) \
             RETURNING id, event_seq, subscription_id, attempts, order_key"
        );
        let mut query = sqlx::query(&sql).bind(now + lease_ms).bind(owner).bind(now);
        if !skip.is_empty() {
            query = query.bind(serde_json::to_string(skip).map_err(|e| {
                crate::StoreError::Corrupt(format!("subscription ids as JSON: {e}"))
            })?);
        }
        let rows = query.fetch_all(&self.0.write).await?;
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let mut seqs: Vec<i64> = rows
            .iter()
            .map(|r| get(r, "event_seq"))
            .collect::<Result<_>>()?;
        seqs.sort_unstable();
        seqs.dedup();
        let events = self.events_by_seq(&seqs).await?;
        let mut claimed = Vec::with_capacity(rows.len());
        for row in &rows {
            let seq: i64 = get(row, "event_seq")?;
            let Some(event) = events.get(&seq) else {
                // The event was purged under the delivery; nothing can be sent.
                continue;
            };
            claimed.push(Claimed {
                delivery_id: get_id(row, "id")?,
                subscription_id: get_id(row, "subscription_id")?,
                attempts: get(row, "attempts")?,
                event: event.clone(),
                order_key: get(row, "order_key")?,
            });
        }
        Ok(claimed)
    }

    /// The events of these sequence numbers (distinct), shared by the deliveries that carry
    /// them; a purged one is missing.
    pub(crate) async fn events_by_seq(
        &self,
        seqs: &[i64],
    ) -> Result<std::collections::HashMap<i64, std::sync::Arc<StoredEvent>>> {
        let mut events = std::collections::HashMap::with_capacity(seqs.len());
        for chunk in self.0.backend.statement_chunks(seqs, 1) {
            let sql = self.0.backend.statement("events by seq", chunk.len(), || {
                format!(
                    "SELECT {EVENT_COLUMNS} FROM events WHERE seq IN ({})",
                    placeholders(1, chunk.len())
                )
            });
            let mut q = sqlx::query(&sql);
            for seq in chunk {
                q = q.bind(*seq);
            }
            for row in q.fetch_all(&self.0.read).await? {
                let event = event_from_row(&row)?;
                events.insert(event.seq, std::sync::Arc::new(event));
            }
        }
        Ok(events)
    }

    /// Extends `owner`'s lease on the deliveries it still has in flight. On PostgreSQL a row
    /// that another transaction has locked (a group commit settling it, a circuit holding its
    /// subscription back) is skipped, not waited for: renewal then never waits on a lock, so it
    /// can be in no deadlock (one was seen under load, "deadlock detected"), and the row is
    /// renewed at the next round, well within the lease.
    pub async fn renew(
        &self,
        owner: &str,
        ids: &[posthorn_core::DeliveryId],
        lease_ms: i64,
    ) -> Result<()> {
        let until = now_ms() + lease_ms;
        let backend = self.0.backend;
        for chunk in self.0.backend.statement_chunks(ids, 1) {
            let sql = self.0.backend.statement("renew", chunk.len(), || {
                let list = placeholders(3, chunk.len());
                match backend {
                    Backend::Postgres => format!(
                        "UPDATE deliveries SET next_attempt_at = $1 WHERE id IN (\
                         SELECT id FROM deliveries WHERE lease = $2 AND status = 'pending' \
                         AND id IN ({list}) ORDER BY id FOR UPDATE SKIP LOCKED)"
                    ),
                    Backend::Sqlite => format!(
                        "UPDATE deliveries SET next_attempt_at = $1 WHERE lease = $2 \
                         AND status = 'pending' AND id IN ({list})"
                    ),
                }
            });
            let mut q = sqlx::query(&sql).bind(until).bind(owner);
            for id in chunk {
                q = q.bind(id.as_str());
            }
            q.execute(&self.0.write).await?;
        }
        Ok(())
    }

    /// Hands back everything `owner` holds, due now (on shutdown).
    pub async fn release(&self, owner: &str) -> Result<u64> {
        let n = sqlx::query(
            "UPDATE deliveries SET next_attempt_at = $1, lease = NULL \
             WHERE lease = $2 AND status = 'pending'",
        )
        .bind(now_ms())
        .bind(owner)
        .execute(&self.0.write)
        .await?
        .rows_affected();
        if n > 0 {
            Store::notify_due(self.0.backend, &self.0.write).await?;
        }
        Ok(n)
    }

    /// Writes the outcome of claimed deliveries, in the next group commit (see `events`). A
    /// record whose lease `owner` no longer holds is dropped: another process has taken the
    /// delivery over. Returns how many were written.
    pub async fn settle(&self, owner: &str, records: Arc<[AttemptRecord]>) -> Result<usize> {
        self.0.committer.settle(owner, records).await
    }

    /// When the earliest pending delivery falls due.
    pub async fn next_due(&self) -> Result<Option<Millis>> {
        let row = sqlx::query(
            "SELECT MIN(next_attempt_at) AS due FROM deliveries WHERE status = 'pending'",
        )
        .fetch_one(&self.0.read)
        .await?;
        get(&row, "due")
    }

    /// A delivery with its attempt log, oldest attempt first. A request logged without its body
    /// (it was the event's envelope) is given it back.
    /// `None` when there is none that `seen` allows.
    pub async fn delivery(
        &self,
        seen: &Visibility,
        id: &posthorn_core::DeliveryId,
    ) -> Result<Option<(DeliveryRow, Vec<StoredAttempt>)>> {
        let mut sql = format!(
            "SELECT {DELIVERY_COLUMNS}, e.seq, e.publisher, e.origin, e.tenant, e.data, \
             e.occurred_at, e.received_at, e.attributes \
             FROM deliveries d JOIN events e ON e.seq = d.event_seq WHERE d.id = $1"
        );
        if seen.owner().is_some() {
            sql.push_str(
                " AND d.subscription_id IN (SELECT id FROM subscriptions WHERE owner = $2)",
            );
        }
        let mut query = sqlx::query(&sql).bind(id.as_str());
        if let Some(owner) = seen.owner() {
            query = query.bind(owner);
        }
        let row = query.fetch_optional(&self.0.read).await?;
        let Some(row) = row else { return Ok(None) };
        let delivery = delivery_from_row(&row)?;
        let event = StoredEvent {
            seq: get(&row, "seq")?,
            id: delivery.event_id.clone(),
            publisher: Principal::parse(&get::<String>(&row, "publisher")?),
            name: delivery.event_name.clone(),
            origin: get(&row, "origin")?,
            tenant: get(&row, "tenant")?,
            attributes: attributes_from(&row)?,
            data: get(&row, "data")?,
            occurred_at: get(&row, "occurred_at")?,
            received_at: get(&row, "received_at")?,
        };
        let rows = sqlx::query(
            "SELECT number, started_at, duration_ms, request, response, error, outcome \
             FROM attempts WHERE delivery_id = $1 ORDER BY number",
        )
        .bind(id.as_str())
        .fetch_all(&self.0.read)
        .await?;
        let attempts = rows
            .iter()
            .map(|r| attempt_from_row(r, &event))
            .collect::<Result<_>>()?;
        Ok(Some((delivery, attempts)))
    }

    /// A page of a subscription's attempts, one row per attempt (not per delivery), since
    /// `since` when given, ordered by the database; and how many there are in all.
    pub async fn subscription_attempts(
        &self,
        subscription_id: &str,
        since: Option<Millis>,
        order: AttemptOrder,
        ascending: bool,
        limit: usize,
        offset: usize,
    ) -> Result<(u64, Vec<SubscriptionAttempt>)> {
        let since_clause = if since.is_some() {
            " AND a.started_at >= $2"
        } else {
            ""
        };
        let from = format!(
            "FROM attempts a JOIN deliveries d ON d.id = a.delivery_id \
             JOIN events e ON e.seq = d.event_seq WHERE d.subscription_id = $1{since_clause}"
        );
        let count_sql = format!("SELECT COUNT(*) AS n {from}");
        let mut count = sqlx::query(&count_sql).bind(subscription_id);
        if let Some(t) = since {
            count = count.bind(t);
        }
        let total: i64 = get(&count.fetch_one(&self.0.read).await?, "n")?;
        let key = match order {
            AttemptOrder::StartedAt => "a.started_at",
            AttemptOrder::EndedAt => "a.started_at + a.duration_ms",
            AttemptOrder::Outcome => "a.outcome",
            AttemptOrder::Number => "a.number",
        };
        let direction = if ascending { "ASC" } else { "DESC" };
        let (l, o) = if since.is_some() { (3, 4) } else { (2, 3) };
        let sql = format!(
            "SELECT a.delivery_id, a.number, a.started_at, a.duration_ms, a.request, a.response, \
             a.error, a.outcome, e.seq, e.id, e.publisher, e.name, e.origin, e.tenant, e.data, \
             e.occurred_at, e.received_at, e.attributes {from} \
             ORDER BY {key} {direction}, a.delivery_id {direction}, a.number {direction} \
             LIMIT ${l} OFFSET ${o}"
        );
        let mut q = sqlx::query(&sql).bind(subscription_id);
        if let Some(t) = since {
            q = q.bind(t);
        }
        let rows = q
            .bind(limit.min(1000) as i64)
            .bind(offset as i64)
            .fetch_all(&self.0.read)
            .await?;
        let page = rows
            .iter()
            .map(|r| {
                let event = event_from_row(r)?;
                Ok(SubscriptionAttempt {
                    delivery_id: get_id(r, "delivery_id")?,
                    attempt: attempt_from_row(r, &event)?,
                    event,
                })
            })
            .collect::<Result<_>>()?;
        Ok((total.max(0) as u64, page))
    }

    /// Deliveries, newest first, narrowed by every filter of `q` that is set.
    pub async fn deliveries_page(&self, q: &DeliveryQuery) -> Result<Vec<DeliveryRow>> {
        enum Bind<'a> {
            Text(&'a str),
            Int(i64),
        }
        // Each filter that is set: its condition, with `$` where its parameter goes.
        let mut filters: Vec<(&str, Bind<'_>)> = Vec::new();
        if let Some(owner) = &q.owner {
            filters.push((
                "d.subscription_id IN (SELECT id FROM subscriptions WHERE owner = $)",
                Bind::Text(owner),
            ));
        }
        if let Some(id) = &q.subscription_id {
            filters.push(("d.subscription_id = $", Bind::Text(id)));
        }
        if let Some(seq) = q.event_seq {
            filters.push(("d.event_seq = $", Bind::Int(seq)));
        }
        if let Some(name) = &q.event_name {
            filters.push(("e.name = $", Bind::Text(name)));
        }
        if let Some(status) = q.status {
            filters.push(("d.status = $", Bind::Text(status.as_str())));
        }
        if let Some(since) = q.since {
            filters.push(("d.created_at >= $", Bind::Int(since)));
        }
        if let Some(until) = q.until {
            filters.push(("d.created_at < $", Bind::Int(until)));
        }
        if let Some(before) = &q.before {
            filters.push(("d.id < $", Bind::Text(before)));
        }
        let mut sql = format!(
            "SELECT {DELIVERY_COLUMNS} FROM deliveries d JOIN events e ON e.seq = d.event_seq \
             WHERE 1 = 1"
        );
        for (n, (clause, _)) in filters.iter().enumerate() {
            sql.push_str(" AND ");
            sql.push_str(&clause.replace('$', &format!("${}", n + 1)));
        }
        sql.push_str(&format!(" ORDER BY d.id DESC LIMIT {}", q.limit));
        let mut query = sqlx::query(&sql);
        for (_, b) in filters {
            query = match b {
                Bind::Text(t) => query.bind(t),
                Bind::Int(i) => query.bind(i),
            };
        }
        let rows = query.fetch_all(&self.0.read).await?;
        rows.iter().map(delivery_from_row).collect()
    }

    /// Makes a delivery due now, whatever its status (`retry`). `Ok(false)` when an attempt of it
    /// is in flight: the caller should let that one finish.
    pub async fn retry_delivery(
        &self,
        seen: &Visibility,
        id: &posthorn_core::DeliveryId,
    ) -> Result<bool> {
        let mut sql =
            "UPDATE deliveries SET status = 'pending', next_attempt_at = $1, updated_at = $1 \
             WHERE id = $2 AND (lease IS NULL OR status <> 'pending')"
                .to_owned();
        if seen.owner().is_some() {
            sql.push_str(" AND subscription_id IN (SELECT id FROM subscriptions WHERE owner = $3)");
        }
        let mut query = sqlx::query(&sql).bind(now_ms()).bind(id.as_str());
        if let Some(owner) = seen.owner() {
            query = query.bind(owner);
        }
        let n = query.execute(&self.0.write).await?.rows_affected();
        if n == 1 {
            Store::notify_due(self.0.backend, &self.0.write).await?;
            self.signal_due();
        }
        Ok(n == 1)
    }

    /// Queues again a subscription's dead deliveries created since `since`; returns how many.
    pub async fn recover(
        &self,
        subscription_id: &posthorn_core::SubscriptionId,
        since: Millis,
    ) -> Result<u64> {
        let n = sqlx::query(
            "UPDATE deliveries SET status = 'pending', next_attempt_at = $1, updated_at = $1 \
             WHERE subscription_id = $2 AND status = 'dead' AND created_at >= $3",
        )
        .bind(now_ms())
        .bind(subscription_id.as_str())
        .bind(since)
        .execute(&self.0.write)
        .await?
        .rows_affected();
        if n > 0 {
            Store::notify_due(self.0.backend, &self.0.write).await?;
            self.signal_due();
        }
        Ok(n)
    }
}

/// A logged request as it was sent: one logged with `"envelope": 1` instead of its body (see
/// [`StoredEvent::envelope`]) gets the envelope back as its body.
/// An attempt of the log from its row (`number`, `started_at`, `duration_ms`, `request`,
/// `response`, `error`, `outcome`), its request's body given back from `event` where the log
/// left it to the envelope.
fn attempt_from_row(r: &AnyRow, event: &StoredEvent) -> Result<StoredAttempt> {
    let outcome: String = get(r, "outcome")?;
    Ok(StoredAttempt {
        number: get(r, "number")?,
        started_at: get(r, "started_at")?,
        duration_ms: get(r, "duration_ms")?,
        request: with_body(get(r, "request")?, event),
        response: get(r, "response")?,
        error: get(r, "error")?,
        outcome: AttemptOutcome::parse(&outcome)
            .ok_or_else(|| crate::StoreError::Corrupt(format!("attempt outcome {outcome}")))?,
    })
}

fn with_body(request: String, event: &StoredEvent) -> String {
    let Ok(serde_json::Value::Object(mut log)) = serde_json::from_str(&request) else {
        return request;
    };
    match log.get("envelope").and_then(serde_json::Value::as_u64) {
        Some(v) if v == u64::from(crate::ENVELOPE_VERSION) && !log.contains_key("body") => {
            log.remove("envelope");
            let body = String::from_utf8_lossy(&event.envelope()).into_owned();
            log.insert("body".into(), body.into());
            serde_json::Value::Object(log).to_string()
        }
        _ => request,
    }
}

/// Writes the outcome of claimed deliveries in `tx`: a record whose lease `owner` no longer holds
/// is dropped (another process has taken the delivery over). Returns how many were written.
pub(crate) async fn settle_in(
    tx: &mut Transaction<'_, Any>,
    backend: Backend,
    owner: &str,
    records: &[AttemptRecord],
    now: Millis,
) -> Result<usize> {
    let mut written = std::collections::HashSet::with_capacity(records.len());
    // Rows are locked in id order, as every statement that locks several deliveries does (the
    // claim and the renewal skip locked rows): two writers then never hold one row each while
    // waiting for the other's.
    let mut sorted: Vec<&AttemptRecord> = records.iter().collect();
    sorted.sort_unstable_by(|a, b| a.delivery_id.cmp(&b.delivery_id));
    // One UPDATE per chunk, joined to the new values; it returns the ids still leased to us.
    for chunk in backend.statement_chunks(&sorted, 4) {
        let sql = backend.statement("settle", chunk.len(), || {
            let values = value_rows(chunk.len(), 4, 2, "");
            let owner_at = 2 + 4 * chunk.len();
            let or_fail = backend.or_fail();
            format!(
                "UPDATE{or_fail} deliveries SET status = v.column2, attempts = v.column3, \
                 next_attempt_at = v.column4, lease = NULL, updated_at = $1 \
                 FROM (VALUES {values}) AS v \
                 WHERE deliveries.id = v.column1 AND deliveries.lease = ${owner_at} \
                 RETURNING deliveries.id"
            )
        });
        let mut q = sqlx::query(&sql).bind(now);
        for r in chunk {
            q = q
                .bind(r.delivery_id.as_str())
                .bind(r.status.as_str())
                .bind(r.attempts)
                .bind(r.next_attempt_at);
        }
        q = q.bind(owner);
        for row in q.fetch_all(&mut **tx).await? {
            written.insert(get::<String>(&row, "id")?);
        }
    }
    // The attempts made, for the deliveries written.
    let attempts: Vec<(&str, &StoredAttempt)> = records
        .iter()
        .filter(|r| written.contains(r.delivery_id.as_str()))
        .filter_map(|r| Some((r.delivery_id.as_str(), r.attempt.as_ref()?)))
        .collect();
    for chunk in backend.statement_chunks(&attempts, 8) {
        let sql = backend.statement("insert attempts", chunk.len(), || {
            let values = value_rows(chunk.len(), 8, 1, "");
            let or_fail = backend.or_fail();
            format!(
                "INSERT{or_fail} INTO attempts (delivery_id, number, started_at, duration_ms, request, \
                 response, error, outcome) VALUES {values} \
                 ON CONFLICT (delivery_id, number) DO NOTHING"
            )
        });
        let mut q = sqlx::query(&sql);
        for (id, a) in chunk {
            q = q
                .bind(*id)
                .bind(a.number)
                .bind(a.started_at)
                .bind(a.duration_ms)
                .bind(&a.request)
                .bind(&a.response)
                .bind(&a.error)
                .bind(a.outcome.as_str());
        }
        q.execute(&mut **tx).await?;
    }
    Ok(written.len())
}
