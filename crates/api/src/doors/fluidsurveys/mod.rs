//! The FluidSurveys front door, under `/api/v2/webhooks/`: its clients list, subscribe and
//! unsubscribe as they did against FluidSurveys, and get the same subscriptions that `/v1` shows
//! (a front door translates; the write path and the engine are the one of `/v1`).
//!
//! - `GET /api/v2/webhooks/` → `{"webhooks":[{"id","event_type","survey","collector","subscription_url"}],"total"}`:
//!   the caller's active webhooks made through this door, ids as integers (stable: derived from
//!   the subscription's id, which `/v1` shows).
//! - `POST /api/v2/webhooks/subscribe/ {"subscription_url","event","survey"?,"collector"?}` → 201,
//!   409 when the caller already has that URL, 400 when a field is missing.
//! - `POST /api/v2/webhooks/unsubscribe/ {"subscription_url"}` → 200, 404 when there is none.
//!
//! A subscription made here is an `http` one with form-encoded callbacks (as FluidSurveys sent
//! them), narrowed as FluidSurveys narrows each event ([`translate::narrowing`]; the translation,
//! with no I/O, is [`translate`]; lists are store queries): `response_complete` by
//! survey, then collector; `report_create` by survey; `survey_create` and `contact_create` are
//! account-wide whatever is given;
//! a callback answered `410 Gone` unsubscribes, as everywhere. Auth: Bearer (an application's
//! token, or the admin's) or HTTP Basic with the application's `client_id:client_secret`. Errors
//! are FluidSurveys' plain JSON, `{"detail": "…"}`.

pub(crate) mod translate;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use posthorn_core::Subscription;
use posthorn_store::{CredentialsRefused, SubscriptionQuery};
use serde::Serialize;
use serde_json::Value;
use translate::{url_of, webhook, FsWebhook, FsWebhookList, Subscribe, DOOR};
use utoipa::ToSchema;

use crate::auth::{Caller, Credentials, ManageSubscriptions, Permission};
use crate::error::ApiError;
use crate::extract::JsonBody;
use crate::AppState;

/// A FluidSurveys error: `{"detail": "…"}`.
pub(crate) struct FsError(StatusCode, String);

/// FluidSurveys' error body.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct FsDetail {
    /// What went wrong.
    pub detail: String,
}

/// The answer to an unsubscribe.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct FsSuccess {
    pub success: bool,
}

impl IntoResponse for FsError {
    fn into_response(self) -> Response {
        (self.0, Json(FsDetail { detail: self.1 })).into_response()
    }
}

impl From<ApiError> for FsError {
    fn from(e: ApiError) -> Self {
        FsError(e.status(), e.to_string())
    }
}

fn bad(message: impl Into<String>) -> FsError {
    FsError(StatusCode::BAD_REQUEST, message.into())
}

/// Who calls: a Bearer token, or an application's client credentials in HTTP Basic.
async fn caller(state: &AppState, headers: &HeaderMap) -> Result<Caller, FsError> {
    let unauthorized = || {
        FsError(
            StatusCode::UNAUTHORIZED,
            "authenticate with a Bearer token or HTTP Basic client credentials".into(),
        )
    };
    let caller = match Credentials::from_headers(headers) {
        Some(c @ Credentials::Bearer(_)) => Caller::resolve(state, &c).await?,
        Some(Credentials::Basic { id, secret }) => {
            match state
                .store
                .authenticate_client(&id, &secret)
                .await
                .map_err(ApiError::from)?
            {
                Ok(app) => Some(Caller::for_application(&app.id, &app.scopes)),
                Err(CredentialsRefused::Invalid) => None,
                Err(CredentialsRefused::Locked { retry_after_s }) => {
                    return Err(FsError(
                        StatusCode::UNAUTHORIZED,
                        format!("too many wrong secrets; try again in {retry_after_s} s"),
                    ))
                }
            }
        }
        _ => None,
    };
    let caller = caller.ok_or_else(unauthorized)?;
    ManageSubscriptions::check(&caller)?;
    Ok(caller)
}

/// The door's routes.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v2/webhooks/", get(list))
        .route("/api/v2/webhooks/subscribe/", post(subscribe))
        .route("/api/v2/webhooks/unsubscribe/", post(unsubscribe))
}

/// The caller's `http` subscriptions to `url` (every door's: one subscription, seen from each).
async fn to_url(
    state: &AppState,
    caller: &Caller,
    url: &str,
) -> Result<Vec<Subscription>, FsError> {
    let all = state
        .store
        .subscriptions_all(&SubscriptionQuery {
            owner: Some(caller.owner().as_str().to_owned()),
            service: Some("http".into()),
            ..SubscriptionQuery::default()
        })
        .await
        .map_err(ApiError::from)?;
    // A URL's password is sealed in the database: the URL is compared here, not in SQL.
    Ok(all.into_iter().filter(|s| url_of(s) == Some(url)).collect())
}

/// The caller's webhooks.
#[utoipa::path(get, operation_id = "fluidsurveysListWebhooks", path = "/api/v2/webhooks/", tag = "fluidsurveys",
    responses((status = 200, body = FsWebhookList), (status = 401, body = FsDetail)),
    security(("bearer" = []), ("basic" = [])))]
pub(crate) async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<FsWebhookList>, FsError> {
    let caller = caller(&state, &headers).await?;
    // As FluidSurveys lists them: the active webhooks, those made through this door.
    let webhooks: Vec<FsWebhook> = state
        .store
        .subscriptions_all(&SubscriptionQuery {
            owner: Some(caller.owner().as_str().to_owned()),
            metadata: vec![("door".into(), DOOR.into())],
            active: true,
            ..SubscriptionQuery::default()
        })
        .await
        .map_err(ApiError::from)?
        .iter()
        .map(webhook)
        .collect();
    Ok(Json(FsWebhookList {
        total: webhooks.len(),
        webhooks,
    }))
}

/// Subscribe a URL to an event, optionally for one survey and collector.
#[utoipa::path(post, operation_id = "fluidsurveysSubscribe", path = "/api/v2/webhooks/subscribe/", tag = "fluidsurveys",
    request_body(content = Object, description = "{\"subscription_url\", \"event\", \"survey\"?, \"collector\"?}"),
    responses((status = 201, body = FsWebhook), (status = 400, body = FsDetail), (status = 401, body = FsDetail), (status = 409, body = FsDetail)),
    security(("bearer" = []), ("basic" = [])))]
pub(crate) async fn subscribe(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<JsonBody, ApiError>,
) -> Result<(StatusCode, Json<FsWebhook>), FsError> {
    let caller = caller(&state, &headers).await?;
    let JsonBody(body) = body?;
    let wanted = Subscribe::from_body(&body).map_err(bad)?;
    if !to_url(&state, &caller, &wanted.url).await?.is_empty() {
        return Err(FsError(
            StatusCode::CONFLICT,
            "a webhook with this subscription_url already exists".into(),
        ));
    }
    let spec = wanted.spec().map_err(bad)?;
    let compiled = spec
        .validate(&state.services)
        .map_err(|e| bad(e.to_string()))?;
    compiled
        .target
        .write_check()
        .await
        .map_err(|e| bad(e.within("subscription_url").to_string()))?;
    let sub = Subscription::new(caller.owner().as_str().to_owned(), spec);
    state
        .subscriptions
        .create(&sub)
        .await
        .map_err(ApiError::from)?;
    Ok((StatusCode::CREATED, Json(webhook(&sub))))
}

/// Unsubscribe a URL.
#[utoipa::path(post, operation_id = "fluidsurveysUnsubscribe", path = "/api/v2/webhooks/unsubscribe/", tag = "fluidsurveys",
    request_body(content = Object, description = "{\"subscription_url\"}"),
    responses((status = 200, body = FsSuccess), (status = 400, body = FsDetail), (status = 401, body = FsDetail), (status = 404, body = FsDetail)),
    security(("bearer" = []), ("basic" = [])))]
pub(crate) async fn unsubscribe(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<JsonBody, ApiError>,
) -> Result<Json<FsSuccess>, FsError> {
    let caller = caller(&state, &headers).await?;
    let JsonBody(body) = body?;
    let url = body
        .get("subscription_url")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("subscription_url is required"))?;
    let mine = to_url(&state, &caller, url).await?;
    if mine.is_empty() {
        return Err(FsError(
            StatusCode::NOT_FOUND,
            "no webhook with this subscription_url".into(),
        ));
    }
    for s in &mine {
        state
            .subscriptions
            .delete(&s.id)
            .await
            .map_err(ApiError::from)?;
    }
    Ok(Json(FsSuccess { success: true }))
}
