//! `POST /v1/filters/evaluate`: try a filter on an event without subscribing.

use axum::Json;
use posthorn_core::{EventView, Filter, Invalid};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::auth::{Can, ManageSubscriptions};
use crate::error::{ApiResult, Problem};
use crate::extract::{typed, JsonBody};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SampleEvent {
    pub name: String,
    #[schema(value_type = Object)]
    pub data: Value,
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub origin: Option<String>,
    /// Routing attributes (`$event.attributes.NAME`).
    #[serde(default)]
    pub attributes: posthorn_core::event::Attributes,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EvaluateRequest {
    pub filter: String,
    pub event: SampleEvent,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Evaluated {
    pub matches: bool,
    /// What the filter likely meant where it reads a path that is seldom meant (`data.…`: paths
    /// start inside the event's data). A subscription with such a filter is refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

/// Whether `filter` lets `event` through; a filter that does not parse is a 422 naming the column.
#[utoipa::path(post, operation_id = "evaluateFilter", path = "/v1/filters/evaluate", tag = "subscriptions",
    request_body = EvaluateRequest,
    responses((status = 200, body = Evaluated), (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub(crate) async fn evaluate(
    _: Can<ManageSubscriptions>,
    JsonBody(body): JsonBody,
) -> ApiResult<Json<Evaluated>> {
    // Trying a filter is part of writing a subscription.
    let req: EvaluateRequest = typed(&body, "")?;
    let filter = Filter::parse(&req.filter).map_err(|e| Invalid::one("filter", e.to_string()))?;
    let matches = filter.matches(&EventView {
        name: &req.event.name,
        id: req.event.id.as_deref().unwrap_or_default(),
        origin: req.event.origin.as_deref(),
        attributes: &req.event.attributes,
        data: &req.event.data,
    });
    let hint = filter.data_prefix_hint();
    Ok(Json(Evaluated { matches, hint }))
}
