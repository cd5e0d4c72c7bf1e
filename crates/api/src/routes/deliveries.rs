//! Delivery logs: `GET /v1/subscriptions/{id}/deliveries`, `GET /v1/deliveries/{id}` (with every
//! attempt's request and response), `POST /v1/deliveries/{id}/retry`.

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::Json;
use posthorn_core::time::{parse_rfc3339, to_rfc3339};
use posthorn_core::{DeliveryStatus, Invalid};
use std::collections::HashMap;

use posthorn_core::subscription::Order;
use posthorn_core::SubscriptionId;
use posthorn_store::{DeliveryQuery, DeliveryRow, LineHead, StoredAttempt};
use serde_json::Value;

use crate::auth::{Caller, Can, ManageSubscriptions};
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{Path, PathId};
use crate::list::{paginate, Page, Query};
use crate::AppState;
use posthorn_core::id::{Dlv, Sub};
use posthorn_wire::api::{AttemptView, DeliveryView, Held, HeldReason, LastAttemptView};

/// What holds a page's pending deliveries back: their subscriptions' open circuits and states,
/// and for ordered subscriptions the first pending delivery of each line (read once per line).
#[derive(Default)]
struct Holds {
    /// Open circuits: until when, after how many failures.
    circuits: HashMap<String, (i64, u32)>,
    /// The subscriptions of the page's pending deliveries, by id (deleted ones absent).
    subs: HashMap<SubscriptionId, Lines>,
    heads: HashMap<(SubscriptionId, Option<String>), LineHead>,
}

/// How a subscription's pending deliveries move.
#[derive(Clone, Copy)]
struct Lines {
    pulled: bool,
    active: bool,
    ordered: Order,
}

impl Holds {
    async fn of(state: &AppState, rows: &[DeliveryRow]) -> ApiResult<Self> {
        let pending: Vec<&DeliveryRow> = rows
            .iter()
            .filter(|d| d.status == DeliveryStatus::Pending)
            .collect();
        let mut holds = Holds::default();
        if pending.is_empty() {
            return Ok(holds);
        }
        let mut ids: Vec<&SubscriptionId> = pending.iter().map(|d| &d.subscription_id).collect();
        ids.sort_unstable();
        ids.dedup();
        let names: Vec<&str> = ids.iter().map(|id| id.as_str()).collect();
        holds.circuits = state.store.open_circuits(&names).await?;
        // The page's deliveries were read with the caller's visibility: their subscriptions are
        // the caller's to see.
        for sub in state.store.subscriptions_in(&names).await? {
            let pulled = state.pulled(&sub.spec.service);
            holds.subs.insert(
                sub.id.clone(),
                Lines {
                    pulled,
                    active: sub.is_active(),
                    ordered: sub.spec.ordered,
                },
            );
        }
        let mut lines: Vec<(SubscriptionId, Option<String>)> = pending
            .iter()
            .filter_map(|d| Some((d.subscription_id.clone(), holds.line(d)?)))
            .collect();
        lines.sort_unstable();
        lines.dedup();
        holds.heads = state.store.line_heads(&lines).await?;
        Ok(holds)
    }

    /// The ordered line a pending delivery is in (its key, or none for `ordered: true`), if any.
    fn line(&self, d: &DeliveryRow) -> Option<Option<String>> {
        let lines = self.subs.get(&d.subscription_id)?;
        if lines.pulled {
            return None;
        }
        match lines.ordered {
            Order::Unordered => None,
            Order::All => Some(None),
            Order::Key => d.order_key.clone().map(Some),
        }
    }

    fn held(&self, d: &DeliveryRow) -> Option<Held> {
        if d.status != DeliveryStatus::Pending {
            return None;
        }
        let held = |reason, until: Option<i64>, behind| Held {
            reason,
            until: until.map(to_rfc3339),
            behind,
        };
        let lines = self.subs.get(&d.subscription_id)?;
        if lines.pulled {
            return Some(held(HeldReason::Pulled, None, None));
        }
        if !lines.active {
            return Some(held(HeldReason::SubscriptionDisabled, None, None));
        }
        let now = posthorn_core::time::now_ms();
        if let Some(&(until, _)) = self.circuits.get(d.subscription_id.as_str()) {
            // Due before the circuit closes: it is the circuit that holds it (one due later
            // waits for its own schedule).
            if until > now && d.next_attempt_at <= until {
                return Some(held(HeldReason::CircuitOpen, Some(until), None));
            }
        }
        let line = self.line(d)?;
        let head = self.heads.get(&(d.subscription_id.clone(), line))?;
        (head.event_seq < d.event_seq).then(|| {
            held(
                HeldReason::Ordered,
                Some(head.due.max(now)),
                Some(head.id.clone()),
            )
        })
    }
}

fn view(d: DeliveryRow, log: Option<Vec<StoredAttempt>>, holds: &Holds) -> DeliveryView {
    let held = holds.held(&d);
    DeliveryView {
        next_attempt_at: (d.status == DeliveryStatus::Pending
            && !held
                .as_ref()
                .is_some_and(|h| h.reason == HeldReason::Pulled))
        .then(|| to_rfc3339(d.next_attempt_at)),
        held,
        order_key: d.order_key,
        id: d.id,
        event_id: d.event_id,
        event_name: d.event_name,
        subscription_id: d.subscription_id,
        status: d.status,
        attempts: d.attempts,
        created_at: to_rfc3339(d.created_at),
        updated_at: to_rfc3339(d.updated_at),
        last_attempt: d.last.map(|l| LastAttemptView {
            outcome: l.outcome,
            duration_ms: l.duration_ms,
            status: l.status,
        }),
        attempt_log: log.map(|attempts| {
            attempts
                .into_iter()
                .map(|a| AttemptView {
                    number: a.number,
                    started_at: to_rfc3339(a.started_at),
                    duration_ms: a.duration_ms,
                    request: serde_json::from_str(&a.request).unwrap_or(Value::Null),
                    response: a.response.and_then(|r| serde_json::from_str(&r).ok()),
                    error: a.error,
                    outcome: a.outcome,
                })
                .collect()
        }),
    }
}

/// Whether the caller may see deliveries of this subscription (deleted ones included).
async fn check_owner(
    state: &AppState,
    caller: &Caller,
    subscription_id: &posthorn_core::SubscriptionId,
) -> ApiResult<()> {
    if state
        .store
        .subscription_seen(&caller.visibility(), subscription_id)
        .await?
    {
        Ok(())
    } else {
        Err(ApiError::NotFound("subscription"))
    }
}

/// A subscription's deliveries, newest first: `?status=S&limit=&cursor=`.
///
/// Still readable after the subscription is deleted, on purpose: a receiver that answers `410
/// Gone` deletes its subscription, and these deliveries' attempts are where its owner sees why.
/// An id that never named one of the caller's subscriptions is a 404.
#[utoipa::path(get, operation_id = "listSubscriptionDeliveries", path = "/v1/subscriptions/{id}/deliveries", tag = "deliveries",
    params(("id" = String, Path), ("status" = Option<String>, Query, description = "pending, succeeded, dead or cancelled"),
           ("limit" = Option<usize>, Query), ("cursor" = Option<String>, Query)),
    responses((status = 200, body = Page<DeliveryView>), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub(crate) async fn list_for_subscription(
    State(state): State<AppState>,
    caller: Can<ManageSubscriptions>,
    PathId(id): PathId<Sub>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Page<DeliveryView>>> {
    let q = Query::parse(raw.as_deref());
    let (limit, mut query) = filters(&q)?;
    check_owner(&state, &caller, &id).await?;
    query.subscription_id = Some(id.into_string());
    page(&state, &query, limit).await
}

/// The filters every delivery list takes: `status`, `event_name`, `since`, `until`, `limit`,
/// `cursor`.
fn filters(q: &Query) -> ApiResult<(usize, DeliveryQuery)> {
    let limit = q.limit()?;
    let status = match q.get("status") {
        None => None,
        Some(s) => Some(DeliveryStatus::parse(s).ok_or_else(|| {
            Invalid::one("status", "must be pending, succeeded, dead or cancelled")
        })?),
    };
    let time = |key: &'static str| -> ApiResult<Option<i64>> {
        match q.get(key) {
            None => Ok(None),
            Some(t) => {
                Ok(Some(parse_rfc3339(t).ok_or_else(|| {
                    Invalid::one(key, "must be an RFC 3339 time")
                })?))
            }
        }
    };
    Ok((
        limit,
        DeliveryQuery {
            status,
            event_name: q.get("event_name").map(str::to_owned),
            since: time("since")?,
            until: time("until")?,
            before: q.cursor().map(str::to_owned),
            limit: limit + 1,
            ..DeliveryQuery::default()
        },
    ))
}

/// A page of the deliveries `query` selects, each pending one saying what holds it back.
async fn page(
    state: &AppState,
    query: &DeliveryQuery,
    limit: usize,
) -> ApiResult<Json<Page<DeliveryView>>> {
    let rows = state.store.deliveries_page(query).await?;
    // The row beyond the page only tells that there is a next page.
    let holds = Holds::of(state, &rows[..rows.len().min(limit)]).await?;
    Ok(Json(paginate(
        rows,
        limit,
        |d| d.id.to_string(),
        |d| view(d, None, &holds),
    )))
}

/// Every delivery the caller may see, newest first: `?status=&subscription_id=&event_name=&since=&until=&limit=&cursor=`
/// ("everything failing now" is `?status=dead`, or `pending` for what waits).
#[utoipa::path(get, operation_id = "listDeliveries", path = "/v1/deliveries", tag = "deliveries",
    params(("status" = Option<String>, Query, description = "pending, succeeded, dead or cancelled"),
           ("subscription_id" = Option<String>, Query),
           ("event_name" = Option<String>, Query),
           ("since" = Option<String>, Query, description = "created at or after (RFC 3339)"),
           ("until" = Option<String>, Query, description = "created before (RFC 3339)"),
           ("limit" = Option<usize>, Query), ("cursor" = Option<String>, Query)),
    responses((status = 200, body = Page<DeliveryView>), (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub(crate) async fn list(
    State(state): State<AppState>,
    caller: Can<ManageSubscriptions>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Page<DeliveryView>>> {
    let q = Query::parse(raw.as_deref());
    let (limit, mut query) = filters(&q)?;
    query.owner = caller.visibility().owner().map(str::to_owned);
    query.subscription_id = q.get("subscription_id").map(str::to_owned);
    page(&state, &query, limit).await
}

/// The deliveries of one event, newest first, with the same filters.
#[utoipa::path(get, operation_id = "listEventDeliveries", path = "/v1/events/{id}/deliveries", tag = "deliveries",
    params(("id" = String, Path, description = "Event id"),
           ("status" = Option<String>, Query), ("limit" = Option<usize>, Query),
           ("cursor" = Option<String>, Query)),
    responses((status = 200, body = Page<DeliveryView>), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub(crate) async fn list_for_event(
    State(state): State<AppState>,
    caller: Can<ManageSubscriptions>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Page<DeliveryView>>> {
    let q = Query::parse(raw.as_deref());
    let (limit, mut query) = filters(&q)?;
    let seen = caller.visibility();
    let event = state
        .store
        .event(seen.owner(), &id)
        .await?
        .ok_or(ApiError::NotFound("event"))?;
    query.owner = seen.owner().map(str::to_owned);
    query.event_seq = Some(event.seq);
    page(&state, &query, limit).await
}

/// A delivery with its attempt log.
#[utoipa::path(get, operation_id = "getDelivery", path = "/v1/deliveries/{id}", tag = "deliveries",
    params(("id" = String, Path)),
    responses((status = 200, body = DeliveryView), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub(crate) async fn show(
    State(state): State<AppState>,
    caller: Can<ManageSubscriptions>,
    PathId(id): PathId<Dlv>,
) -> ApiResult<Json<DeliveryView>> {
    let (delivery, attempts) = state
        .store
        .delivery(&caller.visibility(), &id)
        .await?
        .ok_or(ApiError::NotFound("delivery"))?;
    let holds = Holds::of(&state, std::slice::from_ref(&delivery)).await?;
    Ok(Json(view(delivery, Some(attempts), &holds)))
}

/// One more attempt now, whatever the delivery's status.
#[utoipa::path(post, operation_id = "retryDelivery", path = "/v1/deliveries/{id}/retry", tag = "deliveries",
    params(("id" = String, Path)),
    responses((status = 202, body = DeliveryView), (status = 404, body = Problem), (status = 409, body = Problem)),
    security(("bearer" = [])))]
pub(crate) async fn retry(
    State(state): State<AppState>,
    caller: Can<ManageSubscriptions>,
    PathId(id): PathId<Dlv>,
) -> ApiResult<(StatusCode, Json<DeliveryView>)> {
    let seen = caller.visibility();
    let (delivery, _) = state
        .store
        .delivery(&seen, &id)
        .await?
        .ok_or(ApiError::NotFound("delivery"))?;
    let Some(sub) = state
        .store
        .subscription(&seen, &delivery.subscription_id)
        .await?
    else {
        return Err(ApiError::Conflict(
            "the subscription of this delivery was deleted".into(),
        ));
    };
    if state.pulled(&sub.spec.service) {
        // Made due, it would only be parked again: a pulled delivery waits for its consumer.
        return Err(ApiError::Conflict(format!(
            "subscription {} is pulled ({} service): its consumer reads this delivery from the \
             feed and acknowledges it; there is nothing to retry",
            sub.id, sub.spec.service
        )));
    }
    // The store wakes the dispatcher.
    if !state.store.retry_delivery(&seen, &id).await? {
        return Err(ApiError::Conflict(
            "an attempt of this delivery is in progress".into(),
        ));
    }
    // "One more attempt now": a circuit opened by earlier failures does not hold it back.
    state.store.close_circuit(&delivery.subscription_id).await?;
    // The answer is the delivery as the retry left it (pending, due now): read back, it could
    // already show the attempt that the retry started.
    let mut delivery = delivery;
    delivery.status = DeliveryStatus::Pending;
    delivery.next_attempt_at = posthorn_core::time::now_ms();
    Ok((
        StatusCode::ACCEPTED,
        Json(view(delivery, None, &Holds::default())),
    ))
}
