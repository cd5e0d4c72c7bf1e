//! Events and their deliveries, written together: the rows a group commit inserts
//! ([`insert_events`]; the group commit itself is `commit.rs`), and the reads of events.
//!
//! A delivery made by a publish can go straight to this process's dispatcher (a [`Handoff`]): it is
//! inserted already leased to this process, and handed over once the commit is durable, so it is
//! never claimed back from the database. Only what the dispatcher has room for and would attempt
//! now goes that way; the rest is inserted due, for the claims.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use posthorn_core::event::Attributes;
use posthorn_core::time::Millis;
use posthorn_core::{DeliveryId, Principal, StoredEvent};
use sqlx::any::AnyRow;
use sqlx::AnyConnection;

use crate::{get, get_id, value_rows, Backend, Claimed, Result, Store, StoreError};

/// Takes the deliveries of a publish straight from the commit that makes them, leased to this
/// process, so that they need no claim. Implemented by the dispatcher.
pub trait Handoff: Send + Sync + 'static {
    /// The process id written into the leases, and how long they run (ms).
    fn lease(&self) -> (&str, i64);
    /// How many deliveries it can start now (0: none; the publish leaves them to the claims).
    fn room(&self) -> usize;
    /// Whether a delivery of this subscription would be attempted now (claims would not skip it).
    fn takes(&self, subscription_id: &posthorn_core::SubscriptionId) -> bool;
    /// Deliveries now committed under this process's lease, to attempt. `queued`: others of the
    /// same commit were left due in the queue, for the claims.
    fn take(&self, deliveries: Vec<Claimed>, queued: bool);
    /// Deliveries were made due outside a publish (a retry, a recover, an enabled
    /// subscription): claim now rather than at the next poll.
    fn due(&self);
    /// A person closed this subscription's circuit (a retry, a recover, an enable, here or in
    /// another process): forget its failures and let its deliveries go now.
    fn circuit_closed(&self, subscription_id: &posthorn_core::SubscriptionId);
}

pub(crate) type HandoffCell = Arc<OnceLock<Arc<dyn Handoff>>>;

/// An event to store, with the ids of the subscriptions it matched.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub id: String,
    /// Who published it: client ids are unique per publisher.
    pub publisher: posthorn_core::Principal,
    pub name: String,
    pub origin: Option<String>,
    pub tenant: Option<String>,
    /// Routing attributes beside the data (stored as a JSON object, NULL when empty).
    pub attributes: Attributes,
    /// The `data` object as JSON text.
    pub data: String,
    pub occurred_at: Millis,
    pub subscriptions: Vec<posthorn_core::SubscriptionId>,
    /// Where each subscription's delivery goes (its ordering key, whether it is pulled), in the
    /// order of `subscriptions`; empty when every one is pushed without a key.
    pub placements: Vec<posthorn_core::index::Placement>,
}

impl NewEvent {
    /// The event as stored under `seq`, received at `received_at`.
    fn stored(&self, seq: i64, received_at: Millis) -> StoredEvent {
        StoredEvent {
            seq,
            id: self.id.clone(),
            publisher: self.publisher.clone(),
            name: self.name.clone(),
            origin: self.origin.clone(),
            tenant: self.tenant.clone(),
            attributes: self.attributes.clone(),
            data: self.data.clone(),
            occurred_at: self.occurred_at,
            received_at,
        }
    }
}

/// What publishing one event did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub id: String,
    pub name: String,
    pub occurred_at: Millis,
    pub deliveries: u64,
    /// The publisher had sent an event with this id before; nothing new was stored.
    pub duplicate: bool,
    /// The deliveries made (empty for a duplicate), in the order of `NewEvent::subscriptions`.
    pub delivery_ids: Vec<DeliveryId>,
}

/// Parameters of one event row.
pub(crate) const EVENT_PARAMS: usize = 9;

/// Attributes as stored: a JSON object, or NULL when there are none.
pub(crate) fn attributes_text(attributes: &Attributes) -> Option<String> {
    (!attributes.is_empty()).then(|| {
        // A map of strings always serializes.
        serde_json::to_string(attributes).unwrap_or_default()
    })
}

/// Attributes read back from the `attributes` column of `row`; a value that is not a JSON
/// object of strings is a corrupt row, named.
pub(crate) fn attributes_from(row: &AnyRow) -> Result<Attributes> {
    match get::<Option<String>>(row, "attributes")? {
        None => Ok(Attributes::new()),
        Some(text) => serde_json::from_str(&text)
            .map_err(|e| StoreError::Corrupt(format!("an event's attributes: {e}"))),
    }
}

#[derive(Debug, Clone, Default)]
pub struct EventQuery {
    pub publisher: Option<String>,
    pub name: Option<String>,
    pub since: Option<Millis>,
    /// Events stored before this sequence number (the cursor).
    pub before: Option<i64>,
    pub limit: usize,
}

/// Inserts events and their deliveries with a few multi-row statements (not one per row): the
/// events in chunks, taking back the sequence numbers of those that were new, then every
/// delivery of the group in chunks. An id its publisher used before (in an earlier group or
/// earlier in this one) is a duplicate, answered with the first event. Deliveries the handoff
/// takes are inserted leased to it and returned, to hand over once committed; the flag says
/// whether any were inserted due, for the claims.
pub(crate) async fn insert_events(
    conn: &mut AnyConnection,
    backend: Backend,
    events: &[&NewEvent],
    now: Millis,
    handoff: Option<&dyn Handoff>,
) -> Result<(Vec<Published>, Vec<Claimed>, bool)> {
    let seqs = insert_event_rows(conn, backend, events, now).await?;

    // Each new event's deliveries; `None` marks a duplicate, answered below.
    let mut out: Vec<Option<Published>> = Vec::with_capacity(events.len());
    let mut rows: Vec<Row<'_>> = Vec::new();
    let (owner, lease_until) = match handoff {
        Some(h) => {
            let (owner, lease_ms) = h.lease();
            (owner, now + lease_ms)
        }
        None => ("", now),
    };
    let mut room = handoff.map_or(0, |h| h.room());
    let mut handed = Vec::new();
    let mut queued = false;
    for (e, seq) in events.iter().zip(seqs) {
        let Some(seq) = seq else {
            out.push(None);
            continue;
        };
        let delivery_ids: Vec<DeliveryId> =
            e.subscriptions.iter().map(|_| DeliveryId::new()).collect();
        let mut stored: Option<Arc<StoredEvent>> = None;
        for (i, (sub, id)) in e.subscriptions.iter().zip(&delivery_ids).enumerate() {
            let placement = e.placements.get(i);
            let key = placement.and_then(|p| p.order_key.as_deref());
            let pulled = placement.is_some_and(|p| p.pulled);
            let leased = !pulled && room > 0 && handoff.is_some_and(|h| h.takes(sub));
            if leased {
                room -= 1;
                let event = stored.get_or_insert_with(|| Arc::new(e.stored(seq, now)));
                handed.push(Claimed {
                    delivery_id: id.clone(),
                    subscription_id: sub.clone(),
                    attempts: 0,
                    event: event.clone(),
                    order_key: key.map(str::to_owned),
                });
            } else if !pulled {
                queued = true;
            }
            rows.push(Row {
                seq,
                sub,
                key,
                leased,
                pulled,
            });
        }
        out.push(Some(Published {
            id: e.id.clone(),
            name: e.name.clone(),
            occurred_at: e.occurred_at,
            deliveries: e.subscriptions.len() as u64,
            duplicate: false,
            delivery_ids,
        }));
    }
    // Each row with its delivery id: the ids were made in the same order.
    let ids = out
        .iter()
        .flatten()
        .flat_map(|p| p.delivery_ids.iter().map(DeliveryId::as_str));
    let rows: Vec<(Row<'_>, &str)> = rows.into_iter().zip(ids).collect();
    for chunk in backend.statement_chunks(&rows, 8) {
        let sql = backend.statement("insert deliveries", chunk.len(), || {
            let values = value_rows(chunk.len(), 8, 1, ", 'pending', 0");
            let or_fail = backend.or_fail();
            format!(
                "INSERT{or_fail} INTO deliveries (id, event_seq, subscription_id, next_attempt_at, lease, \
                 created_at, updated_at, order_key, status, attempts) VALUES {values}"
            )
        });
        let mut q = sqlx::query(&sql);
        for (r, id) in chunk {
            let (due, lease) = if r.leased {
                (lease_until, Some(owner))
            } else if r.pulled {
                (posthorn_core::delivery::PARKED, None)
            } else {
                (now, None)
            };
            q = q
                .bind(*id)
                .bind(r.seq)
                .bind(r.sub)
                .bind(due)
                .bind(lease)
                .bind(now)
                .bind(now)
                .bind(r.key);
        }
        q.execute(&mut *conn).await?;
    }

    let mut published = Vec::with_capacity(events.len());
    for (e, p) in events.iter().zip(out) {
        match p {
            Some(p) => published.push(p),
            None => published.push(duplicate(conn, e).await?),
        }
    }
    Ok((published, handed, queued))
}

/// Inserts the events in chunks and says, event by event, the sequence number of each that was
/// new (`None`: its publisher used that id before, in an earlier group or earlier in this one).
///
/// PostgreSQL returns the numbers of the rows inserted (`RETURNING`). SQLite has one writer, so
/// the rows of one transaction take consecutive numbers after the highest given before, in the
/// order of their `VALUES`: when every row went in, that number is all it takes (`RETURNING`
/// would make SQLite buffer every row and sqlx send each one across from its thread); only a
/// group with duplicates reads its new rows back.
async fn insert_event_rows(
    conn: &mut AnyConnection,
    backend: Backend,
    events: &[&NewEvent],
    now: Millis,
) -> Result<Vec<Option<i64>>> {
    let returning = match backend {
        Backend::Postgres => " RETURNING seq, publisher, id",
        Backend::Sqlite => "",
    };
    // SQLite: the highest number given so far (`AUTOINCREMENT` keeps it); every row this
    // transaction inserts gets a higher one, and no other writer can insert meanwhile.
    let before: i64 = match backend {
        Backend::Sqlite => {
            sqlx::query_scalar(
                "SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0)",
            )
            .fetch_one(&mut *conn)
            .await?
        }
        Backend::Postgres => 0,
    };
    let mut returned: Vec<AnyRow> = Vec::new();
    let mut inserted = 0u64;
    for chunk in backend.statement_chunks(events, EVENT_PARAMS) {
        let sql = backend.statement("insert events", chunk.len(), || {
            let values = value_rows(chunk.len(), EVENT_PARAMS, 1, "");
            let or_fail = backend.or_fail();
            format!(
                "INSERT{or_fail} INTO events (id, publisher, name, origin, tenant, data, occurred_at, \
                 received_at, attributes) VALUES {values} ON CONFLICT (publisher, id) DO NOTHING{returning}"
            )
        });
        let mut q = sqlx::query(&sql);
        for e in chunk {
            q = q
                .bind(&e.id)
                .bind(e.publisher.as_str())
                .bind(&e.name)
                .bind(&e.origin)
                .bind(&e.tenant)
                .bind(&e.data)
                .bind(e.occurred_at)
                .bind(now)
                .bind(attributes_text(&e.attributes));
        }
        match backend {
            Backend::Postgres => returned.extend(q.fetch_all(&mut *conn).await?),
            Backend::Sqlite => inserted += q.execute(&mut *conn).await?.rows_affected(),
        }
    }
    if backend == Backend::Sqlite {
        if inserted == 0 {
            return Ok(vec![None; events.len()]);
        }
        if inserted == events.len() as u64 {
            // None skipped (a skipped row may use up a number): consecutive, in order.
            return Ok((1..=inserted as i64).map(|i| Some(before + i)).collect());
        }
        returned = sqlx::query("SELECT seq, publisher, id FROM events WHERE seq > $1")
            .bind(before)
            .fetch_all(&mut *conn)
            .await?;
    }
    // Keyed by the rows' own text: nothing copied.
    let mut seqs: HashMap<(&str, &str), i64> = HashMap::with_capacity(returned.len());
    for row in &returned {
        seqs.insert((get(row, "publisher")?, get(row, "id")?), get(row, "seq")?);
    }
    // Taken once: a second event with the same id in this group is a duplicate.
    Ok(events
        .iter()
        .map(|e| seqs.remove(&(e.publisher.as_str(), e.id.as_str())))
        .collect())
}

/// A delivery row to insert.
struct Row<'a> {
    seq: i64,
    sub: &'a str,
    /// Its ordering key (`ordered: "key"`).
    key: Option<&'a str>,
    /// Leased to the handoff, rather than due.
    leased: bool,
    /// Pulled by its consumer: parked, never due.
    pulled: bool,
}

/// The answer for an event id its publisher used before: the first event.
async fn duplicate(conn: &mut AnyConnection, e: &NewEvent) -> Result<Published> {
    let row = sqlx::query(
        // An application is told of its own subscriptions' deliveries only (the admin's also
        // receive its events; it does not see them).
        "SELECT e.name, e.occurred_at, \
           (SELECT COUNT(*) FROM deliveries d JOIN subscriptions s ON s.id = d.subscription_id \
            WHERE d.event_seq = e.seq \
              AND (substr(e.publisher, 1, 4) <> 'app_' OR s.owner = e.publisher)) \
           AS deliveries \
         FROM events e WHERE e.publisher = $1 AND e.id = $2",
    )
    .bind(e.publisher.as_str())
    .bind(&e.id)
    .fetch_one(&mut *conn)
    .await?;
    Ok(Published {
        id: e.id.clone(),
        name: get(&row, "name")?,
        occurred_at: get(&row, "occurred_at")?,
        deliveries: get::<i64>(&row, "deliveries")? as u64,
        duplicate: true,
        delivery_ids: Vec::new(),
    })
}

pub(crate) const EVENT_COLUMNS: &str =
    "seq, id, publisher, name, origin, tenant, data, occurred_at, received_at, attributes";

pub(crate) fn event_from_row(row: &AnyRow) -> Result<StoredEvent> {
    Ok(StoredEvent {
        seq: get(row, "seq")?,
        id: get(row, "id")?,
        publisher: Principal::parse(&get::<String>(row, "publisher")?),
        name: get(row, "name")?,
        origin: get(row, "origin")?,
        tenant: get(row, "tenant")?,
        attributes: attributes_from(row)?,
        data: get(row, "data")?,
        occurred_at: get(row, "occurred_at")?,
        received_at: get(row, "received_at")?,
    })
}

impl Store {
    /// Hands the deliveries of later publishes through this process to `handoff` (once; later
    /// calls are ignored).
    pub fn set_handoff(&self, handoff: Arc<dyn Handoff>) {
        let _ = self.0.committer.handoff.set(handoff);
    }

    /// Tells this process's dispatcher that deliveries are due now (other processes hear of it
    /// through `NOTIFY` on PostgreSQL, or at their next poll).
    pub(crate) fn signal_circuit_closed(&self, subscription_id: &posthorn_core::SubscriptionId) {
        if let Some(h) = self.0.committer.handoff.get() {
            h.circuit_closed(subscription_id);
        }
    }

    pub(crate) fn signal_due(&self) {
        if let Some(h) = self.0.committer.handoff.get() {
            h.due();
        }
    }

    /// Stores events and their deliveries atomically; returns when they are durable, in order.
    pub async fn publish(&self, events: Vec<NewEvent>) -> Result<Vec<Published>> {
        self.0.committer.publish(events).await
    }

    /// The event `id` as `publisher` sees it; with no publisher (the admin), the admin's own event
    /// of that id if there is one, else the oldest of that id.
    pub async fn event(&self, publisher: Option<&str>, id: &str) -> Result<Option<StoredEvent>> {
        let row = match publisher {
            Some(p) => {
                sqlx::query(&format!(
                    "SELECT {EVENT_COLUMNS} FROM events WHERE publisher = $1 AND id = $2"
                ))
                .bind(p)
                .bind(id)
                .fetch_optional(&self.0.read)
                .await?
            }
            None => {
                sqlx::query(&format!(
                    "SELECT {EVENT_COLUMNS} FROM events WHERE id = $1 \
                     ORDER BY CASE WHEN publisher = 'admin' THEN 0 ELSE 1 END, seq LIMIT 1"
                ))
                .bind(id)
                .fetch_optional(&self.0.read)
                .await?
            }
        };
        row.map(|r| event_from_row(&r)).transpose()
    }

    /// `(delivery id, subscription id, status)` of an event's deliveries.
    pub async fn event_deliveries(
        &self,
        seq: i64,
    ) -> Result<Vec<(DeliveryId, posthorn_core::SubscriptionId, String)>> {
        let rows = sqlx::query(
            "SELECT id, subscription_id, status FROM deliveries WHERE event_seq = $1 ORDER BY id",
        )
        .bind(seq)
        .fetch_all(&self.0.read)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    get_id(r, "id")?,
                    get_id(r, "subscription_id")?,
                    get(r, "status")?,
                ))
            })
            .collect()
    }

    /// Newest first.
    pub async fn events_page(&self, q: &EventQuery) -> Result<Vec<StoredEvent>> {
        let mut sql = format!("SELECT {EVENT_COLUMNS} FROM events WHERE 1 = 1");
        let mut n = 0;
        let mut next = || {
            n += 1;
            n
        };
        if q.publisher.is_some() {
            sql.push_str(&format!(" AND publisher = ${}", next()));
        }
        if q.name.is_some() {
            sql.push_str(&format!(" AND name = ${}", next()));
        }
        if q.since.is_some() {
            sql.push_str(&format!(" AND occurred_at >= ${}", next()));
        }
        if q.before.is_some() {
            sql.push_str(&format!(" AND seq < ${}", next()));
        }
        sql.push_str(&format!(" ORDER BY seq DESC LIMIT {}", q.limit));
        let mut query = sqlx::query(&sql);
        if let Some(p) = &q.publisher {
            query = query.bind(p);
        }
        if let Some(name) = &q.name {
            query = query.bind(name);
        }
        if let Some(since) = q.since {
            query = query.bind(since);
        }
        if let Some(before) = q.before {
            query = query.bind(before);
        }
        let rows = query.fetch_all(&self.0.read).await?;
        rows.iter().map(event_from_row).collect()
    }
}
