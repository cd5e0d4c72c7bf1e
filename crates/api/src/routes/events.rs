//! `POST /v1/events` (one event or a batch), `GET /v1/events`, `GET /v1/events/{id}`.

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use posthorn_core::event::PublishRequest;
use posthorn_core::time::{parse_rfc3339, to_rfc3339};
use posthorn_core::validation::Errors;
use posthorn_core::{Invalid, Owner};
use posthorn_store::{EventQuery, Published, StoredEvent};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::ToSchema;

use crate::auth::{Can, Publish};
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::Path;
use crate::extract::{typed_text, RawJson};
use crate::list::{paginate, Page, Query};
use crate::AppState;
use posthorn_wire::api::{Accepted, AcceptedBatch, DeliverySummary, EventView};

/// Most events in one batch.
pub const MAX_BATCH: usize = 1000;

fn accepted(p: Published) -> Accepted {
    Accepted {
        id: p.id,
        name: p.name,
        occurred_at: to_rfc3339(p.occurred_at),
        deliveries: p.deliveries,
        duplicate: p.duplicate,
    }
}

/// The body of `POST /v1/events`: one event, or a batch (described here; read by the handler).
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum PublishBody {
    One(PublishRequest),
    /// 1 to 1000 events.
    Batch(Vec<PublishRequest>),
}

/// The answer of `POST /v1/events`: one event's, or a batch's (`items`, in order).
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum PublishAnswer {
    One(Accepted),
    Batch(AcceptedBatch),
}

fn view(e: StoredEvent, deliveries: Option<Vec<DeliverySummary>>) -> ApiResult<EventView> {
    Ok(EventView {
        // The stored text as it is: it passed the same check as every body, so it is JSON.
        data: RawValue::from_string(e.data).map_err(|err| {
            ApiError::Corrupt(posthorn_store::StoreError::Corrupt(format!(
                "event {}: its data is not JSON: {err}",
                e.id
            )))
        })?,
        id: e.id,
        name: e.name,
        origin: e.origin,
        tenant: e.tenant,
        attributes: e.attributes,
        occurred_at: to_rfc3339(e.occurred_at),
        received_at: to_rfc3339(e.received_at),
        deliveries,
    })
}

/// Publish an event, or a batch of up to 1000 (a JSON array), stored atomically.
#[utoipa::path(post, operation_id = "publishEvents", path = "/v1/events", tag = "events",
    request_body(content = PublishBody, description = "An event, or an array of 1 to 1000 events (a batch, stored atomically)"),
    responses(
        (status = 202, description = "Stored with its deliveries: an event's answer, or a batch's answers in order", body = PublishAnswer),
        (status = 200, description = "The id was published before; the first event", body = Accepted),
        (status = 400, description = "Malformed JSON", body = Problem),
        (status = 422, description = "Invalid event", body = Problem)),
    security(("bearer" = [])))]
pub(crate) async fn publish(
    State(state): State<AppState>,
    caller: Can<Publish>,
    RawJson(body): RawJson,
) -> ApiResult<Response> {
    // Each event is read from its own text straight into its typed form: no `Value` tree of the
    // whole body is built, copied and dropped on the way.
    let (items, batch): (Vec<&str>, bool) = match body.trim_ascii_start().first() {
        Some(b'[') => {
            let items: Vec<&RawValue> = serde_json::from_slice(&body).map_err(malformed)?;
            (items.into_iter().map(RawValue::get).collect(), true)
        }
        // One object: the extractor found the body well-formed, so it is that object's text
        // (well-formed JSON is UTF-8), with no second pass to find its bounds.
        Some(b'{') => {
            let text = std::str::from_utf8(&body)
                .map_err(|e| ApiError::Malformed(format!("the body is not UTF-8: {e}")))?;
            (vec![text], false)
        }
        _ => return Err(Invalid::one("", "must be an event object or an array of events").into()),
    };
    if batch && !(1..=MAX_BATCH).contains(&items.len()) {
        return Err(Invalid::one("", "a batch holds 1 to 1000 events").into());
    }
    let mut errors = Errors::default();
    let mut events = Vec::with_capacity(items.len());
    let principal = caller.principal();
    for (i, item) in items.iter().enumerate() {
        let prefix = if batch {
            format!("[{i}]")
        } else {
            String::new()
        };
        let prepared = match typed_text::<PublishRequest>(item, &prefix) {
            Ok(req) => {
                state
                    .publisher
                    .prepare_bounded(&principal, req, &prefix)
                    .await
            }
            Err(invalid) => Err(invalid),
        };
        match prepared {
            Ok(e) => events.push(e),
            Err(invalid) => errors.extend(invalid),
        }
    }
    errors.finish()?;
    // An application is told of its own subscriptions' deliveries, not the admin's.
    let own: Option<Vec<u64>> = match caller.owner() {
        Owner::Application(app) => Some(
            events
                .iter()
                .map(|e| state.publisher.owned_by(&e.subscriptions, app))
                .collect(),
        ),
        Owner::Admin => None,
    };
    let published = state.publisher.publish(events).await?;
    let mut accepted: Vec<Accepted> = published.into_iter().map(accepted).collect();
    if let Some(own) = own {
        for (a, n) in accepted.iter_mut().zip(own) {
            if !a.duplicate {
                a.deliveries = n;
            }
        }
    }
    if batch {
        // Written straight from the answers, not through a `Value`.
        let body = AcceptedBatch { items: accepted };
        return Ok((StatusCode::ACCEPTED, Json(body)).into_response());
    }
    let one = accepted
        .pop()
        .ok_or(ApiError::BadRequest("no event".into()))?;
    let status = if one.duplicate {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    Ok((status, Json(one)).into_response())
}

fn malformed(e: serde_json::Error) -> ApiError {
    ApiError::Malformed(e.to_string())
}

/// An event with its data and deliveries.
#[utoipa::path(get, operation_id = "getEvent", path = "/v1/events/{id}", tag = "events",
    params(("id" = String, Path, description = "Event id")),
    responses((status = 200, body = EventView), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub(crate) async fn show(
    State(state): State<AppState>,
    caller: Can<Publish>,
    Path(id): Path<String>,
) -> ApiResult<Json<EventView>> {
    // What an application published: its publisher's reads.
    let publisher = caller.visibility().owner().map(str::to_owned);
    let event = state
        .store
        .event(publisher.as_deref(), &id)
        .await?
        .ok_or(ApiError::NotFound("event"))?;
    let deliveries = state
        .store
        .event_deliveries(event.seq)
        .await?
        .into_iter()
        .map(|(id, subscription_id, status)| DeliverySummary {
            id,
            subscription_id,
            status,
        })
        .collect();
    Ok(Json(view(event, Some(deliveries))?))
}

/// Events, newest first: `?name=N&since=T&limit=&cursor=`.
#[utoipa::path(get, operation_id = "listEvents", path = "/v1/events", tag = "events",
    params(("name" = Option<String>, Query), ("since" = Option<String>, Query, description = "RFC 3339"),
           ("limit" = Option<usize>, Query), ("cursor" = Option<String>, Query)),
    responses((status = 200, body = Page<EventView>)),
    security(("bearer" = [])))]
pub(crate) async fn list(
    State(state): State<AppState>,
    caller: Can<Publish>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Page<EventView>>> {
    let q = Query::parse(raw.as_deref());
    let limit = q.limit()?;
    let since = match q.get("since") {
        None => None,
        Some(t) => Some(
            parse_rfc3339(t).ok_or_else(|| Invalid::one("since", "must be an RFC 3339 time"))?,
        ),
    };
    let before = match q.cursor() {
        None => None,
        // A sequence number: 1 to 18 digits, as the document says.
        Some(c) => Some(
            (c.len() <= 18 && c.bytes().all(|b| b.is_ascii_digit()))
                .then(|| c.parse::<i64>().ok())
                .flatten()
                .ok_or_else(|| Invalid::one("cursor", "is not a cursor this list gave"))?,
        ),
    };
    let rows = state
        .store
        .events_page(&EventQuery {
            publisher: caller.visibility().owner().map(str::to_owned),
            name: q.get("name").map(str::to_owned),
            since,
            before,
            limit: limit + 1,
        })
        .await?;
    // Each view first: a row that cannot be shown fails the page, never shows as `null`.
    let views = rows
        .into_iter()
        .map(|e| Ok((e.seq, view(e, None)?)))
        .collect::<ApiResult<Vec<_>>>()?;
    Ok(Json(paginate(
        views,
        limit,
        |(seq, _)| seq.to_string(),
        |(_, v)| v,
    )))
}
