//! Routes about the service itself: `/healthz`, `/readyz`, `/v1/services`, `/v1/sources`.

use std::time::Duration;

use axum::extract::State;
use axum::http::{Method, StatusCode, Uri};
use axum::response::IntoResponse;
use axum::Json;
use serde::Serialize;
use serde_json::{json, Value};
use utoipa::ToSchema;

use crate::auth::{AdminOnly, Can, ManageSubscriptions};
use crate::error::{ApiError, ApiResult};
use crate::AppState;

/// Alive: the process answers.
#[utoipa::path(get, operation_id = "healthz", path = "/healthz", tag = "service", responses((status = 200)))]
pub(crate) async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// How long `/readyz` waits for the database: a probe gets its answer in this time, even while
/// the database is away and connecting to it would wait out the pool's timeout.
const READY_LIMIT: Duration = Duration::from_secs(2);

/// Ready: the database answers (within 2 s). The event sources' state is shown beside it (a
/// source that lost its broker reconnects by itself and does not make the process unready).
#[utoipa::path(get, operation_id = "readyz", path = "/readyz", tag = "service", responses((status = 200), (status = 503)))]
pub(crate) async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let sources = state.sources.all();
    if let Some(why) = state.readiness.failure() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "unavailable", "detail": why, "sources": sources})),
        );
    }
    let answer = match tokio::time::timeout(READY_LIMIT, state.store.ping()).await {
        Ok(pinged) => pinged.map_err(|e| e.to_string()),
        Err(_) => Err(format!("no answer within {} s", READY_LIMIT.as_secs())),
    };
    match answer {
        Ok(()) => (
            StatusCode::OK,
            Json(json!({"status": "ok", "sources": sources})),
        ),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(
                    json!({"status": "unavailable", "detail": "the database does not answer",
                    "sources": sources}),
                ),
            )
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SourceList {
    pub items: Vec<posthorn_wire::api::SourceStatus>,
}

/// The event sources (broker consumers) and their state: connected, last error, messages taken
/// and rejected.
#[utoipa::path(get, operation_id = "listSources", path = "/v1/sources", tag = "service",
    responses((status = 200, body = SourceList), (status = 403, body = crate::error::Problem)), security(("bearer" = [])))]
pub(crate) async fn sources(
    State(state): State<AppState>,
    _: Can<AdminOnly>,
) -> ApiResult<Json<SourceList>> {
    Ok(Json(SourceList {
        items: state.sources.all(),
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ServiceView {
    pub name: String,
    pub description: String,
    /// JSON Schema of the service's `config`.
    #[schema(value_type = Object)]
    pub config_schema: Value,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ServiceList {
    pub items: Vec<ServiceView>,
}

/// The delivery services and the schema of their config.
#[utoipa::path(get, operation_id = "listServices", path = "/v1/services", tag = "service",
    responses((status = 200, body = ServiceList)), security(("bearer" = [])))]
pub(crate) async fn services(
    State(state): State<AppState>,
    _: Can<ManageSubscriptions>,
) -> ApiResult<Json<ServiceList>> {
    Ok(Json(ServiceList {
        items: state
            .services
            .iter()
            .map(|s| ServiceView {
                name: s.name().to_owned(),
                description: s.description().to_owned(),
                config_schema: s.config_schema().clone(),
            })
            .collect(),
    }))
}

pub(crate) async fn not_found(method: Method, uri: Uri) -> ApiResult<()> {
    Err(ApiError::NoRoute(format!("{method} {}", uri.path())))
}

/// A route that exists, asked with a method it does not take.
pub(crate) async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    let path = uri.path().to_owned();
    let allowed = crate::routes::allowed_methods(&path).join(", ");
    ApiError::MethodNotAllowed {
        method: method.to_string(),
        path,
        allowed,
    }
}
