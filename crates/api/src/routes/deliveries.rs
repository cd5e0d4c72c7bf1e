//! Delivery logs: `GET /v1/subscriptions/{id}/deliveries`, `GET /v1/deliveries/{id}` (with every
//! attempt's request and response), `POST /v1/deliveries/{id}/retry`.

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::Json;
use posthorn_core::time::{parse_rfc3339, to_rfc3339};
use posthorn_core::{DeliveryStatus, Invalid};
use posthorn_store::{DeliveryQuery, DeliveryRow, StoredAttempt};
use serde_json::Value;

use crate::auth::{Caller, Can, ManageSubscriptions};
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{Path, PathId};
use crate::list::{paginate, Page, Query};
use crate::AppState;
use posthorn_core::id::{Dlv, Sub};
use posthorn_wire::api::{AttemptView, DeliveryView, Held, HeldReason, LastAttemptView};

/// The subscription's open circuit, if any: until when, after how many failures.
type Circuit = Option<(i64, u32)>;

fn held(d: &DeliveryRow, circuit: Circuit) -> Option<Held> {
    let (until, _) = circuit?;
    let now = posthorn_core::time::now_ms();
    // Due before the circuit closes: it is the circuit that holds it (one due later waits for
    // its own schedule).
    (d.status == DeliveryStatus::Pending && until > now && d.next_attempt_at <= until).then(|| {
        Held {
            reason: HeldReason::CircuitOpen,
            until: to_rfc3339(until),
        }
    })
}

fn view(d: DeliveryRow, log: Option<Vec<StoredAttempt>>, circuit: Circuit) -> DeliveryView {
    DeliveryView {
        held: held(&d, circuit),
        next_attempt_at: (d.status == DeliveryStatus::Pending)
            .then(|| to_rfc3339(d.next_attempt_at)),
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
    let circuit = state.store.open_circuits(&[&id]).await?.remove(id.as_str());
    query.subscription_id = Some(id.into_string());
    let rows = state.store.deliveries_page(&query).await?;
    Ok(Json(paginate(
        rows,
        limit,
        |d| d.id.to_string(),
        |d| view(d, None, circuit),
    )))
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

/// A page of the deliveries `query` selects, each showing its subscription's circuit.
async fn page(
    state: &AppState,
    query: &DeliveryQuery,
    limit: usize,
) -> ApiResult<Json<Page<DeliveryView>>> {
    let rows = state.store.deliveries_page(query).await?;
    let ids: Vec<&str> = rows.iter().map(|d| d.subscription_id.as_str()).collect();
    let circuits = state.store.open_circuits(&ids).await?;
    Ok(Json(paginate(
        rows,
        limit,
        |d| d.id.to_string(),
        |d| {
            let circuit = circuits.get(d.subscription_id.as_str()).copied();
            view(d, None, circuit)
        },
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
    let sub = delivery.subscription_id.clone();
    let circuit = state
        .store
        .open_circuits(&[&sub])
        .await?
        .remove(sub.as_str());
    Ok(Json(view(delivery, Some(attempts), circuit)))
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
    if state
        .store
        .subscription(&seen, &delivery.subscription_id)
        .await?
        .is_none()
    {
        return Err(ApiError::Conflict(
            "the subscription of this delivery was deleted".into(),
        ));
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
    Ok((StatusCode::ACCEPTED, Json(view(delivery, None, None))))
}
