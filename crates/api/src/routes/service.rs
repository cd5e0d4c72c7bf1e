//! Routes about the service itself: `/healthz`, `/readyz`, `/openapi.json`, `/v1/services`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde::Serialize;
use serde_json::{json, Value};
use utoipa::{OpenApi, ToSchema};

use crate::error::{ApiError, ApiResult};
use crate::extract::Caller;
use crate::AppState;

/// Alive: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "service", responses((status = 200)))]
pub(crate) async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Ready: the database answers.
#[utoipa::path(get, path = "/readyz", tag = "service", responses((status = 200), (status = 503)))]
pub(crate) async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    match state.store.ping().await {
        Ok(()) => (StatusCode::OK, Json(json!({"status": "ok"}))),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"status": "unavailable", "detail": "the database does not answer"})),
            )
        }
    }
}

/// The OpenAPI 3.1 description of every route.
pub(crate) async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(crate::openapi::ApiDoc::openapi())
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ServiceView {
    pub name: &'static str,
    pub description: &'static str,
    /// JSON Schema of the service's `config`.
    #[schema(value_type = Object)]
    pub config_schema: Value,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ServiceList {
    pub items: Vec<ServiceView>,
}

fn http_config_schema() -> Value {
    json!({
        "type": "object",
        "required": ["url"],
        "additionalProperties": false,
        "properties": {
            "url": {"type": "string", "description": "http or https URL of the receiver; may be a template ({{ event.data.id }})"},
            "method": {"enum": ["post", "put", "patch", "get", "delete", "head"], "default": "post"},
            "content_type": {"type": "string", "default": "application/json",
                             "description": "application/json (the envelope), application/x-www-form-urlencoded (data as form fields), or any type with a body template"},
            "body": {"type": ["string", "null"], "description": "Jinja-style template of the body; sees event, event_name, wazo_uuid; filters tojson, urlencode"},
            "headers": {"type": "object", "additionalProperties": {"type": "string"},
                        "description": "static headers; webhook-*, host and content-length are refused"},
            "verify_certificate": {"type": ["boolean", "string"], "default": true,
                                   "description": "true, false, or the path of a CA bundle"},
            "timeout_ms": {"type": "integer", "minimum": 1, "maximum": 30000, "default": 15000}
        }
    })
}

/// The delivery services and the schema of their config.
#[utoipa::path(get, path = "/v1/services", tag = "service",
    responses((status = 200, body = ServiceList)), security(("bearer" = [])))]
pub(crate) async fn services(_caller: Caller) -> Json<ServiceList> {
    Json(ServiceList {
        items: vec![ServiceView {
            name: "http",
            description: "HTTP request to a URL, signed per Standard Webhooks",
            config_schema: http_config_schema(),
        }],
    })
}

pub(crate) async fn not_found() -> ApiResult<()> {
    Err(ApiError::NotFound("route"))
}
