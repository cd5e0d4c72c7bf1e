//! `/v1/event-types`: the optional catalogue of event names, with a JSON Schema (2020-12) that
//! published events must satisfy. The admin writes; every caller reads.

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::Json;
use posthorn_core::time::to_rfc3339;
use posthorn_core::validation::Errors;
use posthorn_core::EventName;
use posthorn_store::{compile_schema, schema_errors, EventType};

use crate::auth::{AdminOnly, Can, ManageSubscriptions};
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::Path;
use crate::extract::{typed, JsonBody};
use crate::list::{paginate, Page, Query};
use crate::AppState;
use posthorn_wire::api::{EventTypeRequest, EventTypeView};

fn view(t: EventType) -> EventTypeView {
    EventTypeView {
        name: t.name,
        description: t.description,
        schema: t.schema,
        examples: t.examples,
        created_at: to_rfc3339(t.created_at),
        updated_at: to_rfc3339(t.updated_at),
    }
}

/// Create or replace an event type.
#[utoipa::path(put, operation_id = "putEventType", path = "/v1/event-types/{name}", tag = "event types",
    params(("name" = String, Path)), request_body = EventTypeRequest,
    responses((status = 200, body = EventTypeView), (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub(crate) async fn put(
    State(state): State<AppState>,
    _: Can<AdminOnly>,
    Path(name): Path<String>,
    JsonBody(body): JsonBody,
) -> ApiResult<Json<EventTypeView>> {
    let req: EventTypeRequest = typed(&body, "")?;
    let mut errors = Errors::default();
    if let Err(msg) = EventName::parse(&name) {
        errors.add("name", msg.to_string());
    }
    // An example is an event's `data`: an object, as every event's is.
    for (i, example) in req.examples.iter().enumerate() {
        if !example.is_object() {
            errors.add(
                format!("examples[{i}]"),
                "must be a JSON object (an event's data)",
            );
        }
    }
    let schema = req.schema.filter(|s| !s.is_null());
    if let Some(schema) = &schema {
        match compile_schema(schema) {
            Ok(validator) => {
                for (i, example) in req.examples.iter().enumerate() {
                    for (field, message) in
                        schema_errors(&validator, example, &format!("examples[{i}]"))
                    {
                        errors.add(field, message);
                    }
                }
            }
            Err(why) => errors.add("schema", format!("is not a JSON Schema (2020-12): {why}")),
        }
    }
    errors.finish()?;
    let stored = state
        .store
        .put_event_type(
            &name,
            req.description.as_deref(),
            schema.as_ref(),
            &req.examples,
        )
        .await?;
    if let Err(e) = state.event_types.refresh().await {
        tracing::warn!(error = %e, "reloading event types after a change failed");
    }
    Ok(Json(view(stored)))
}

/// An event type: its description, JSON Schema and examples.
#[utoipa::path(get, operation_id = "getEventType", path = "/v1/event-types/{name}", tag = "event types",
    params(("name" = String, Path)),
    responses((status = 200, body = EventTypeView), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub(crate) async fn show(
    State(state): State<AppState>,
    _: Can<ManageSubscriptions>,
    Path(name): Path<String>,
) -> ApiResult<Json<EventTypeView>> {
    let t = state
        .store
        .event_type(&name)
        .await?
        .ok_or(ApiError::NotFound("event type"))?;
    Ok(Json(view(t)))
}

/// Event types by name (`cursor`: the last name of the page before; any text works, as names
/// after it in order follow).
#[utoipa::path(get, operation_id = "listEventTypes", path = "/v1/event-types", tag = "event types",
    params(("limit" = Option<usize>, Query), ("cursor" = Option<String>, Query)),
    responses((status = 200, body = Page<EventTypeView>)),
    security(("bearer" = [])))]
pub(crate) async fn list(
    State(state): State<AppState>,
    _: Can<ManageSubscriptions>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Page<EventTypeView>>> {
    let q = Query::parse(raw.as_deref());
    let limit = q.limit()?;
    // The catalogue is small: page it in memory, by name; the cursor is the last name shown.
    let mut all = state.store.event_types().await?;
    all.sort_by(|a, b| a.name.cmp(&b.name));
    if let Some(cursor) = q.cursor() {
        all.retain(|t| t.name.as_str() > cursor);
    }
    all.truncate(limit + 1);
    Ok(Json(paginate(all, limit, |t| t.name.clone(), view)))
}

/// Delete an event type: events of that name are no longer checked against a schema.
#[utoipa::path(delete, operation_id = "deleteEventType", path = "/v1/event-types/{name}", tag = "event types",
    params(("name" = String, Path)),
    responses((status = 204), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub(crate) async fn delete(
    State(state): State<AppState>,
    _: Can<AdminOnly>,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    if !state.store.delete_event_type(&name).await? {
        return Err(ApiError::NotFound("event type"));
    }
    if let Err(e) = state.event_types.refresh().await {
        tracing::warn!(error = %e, "reloading event types after a change failed");
    }
    Ok(StatusCode::NO_CONTENT)
}
