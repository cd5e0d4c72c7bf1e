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
//! them), narrowed as FluidSurveys narrows each event ([`narrowing`]): `response_complete` by
//! survey, then collector; `report_create` by survey; `survey_create` and `contact_create` are
//! account-wide whatever is given;
//! a callback answered `410 Gone` unsubscribes, as everywhere. Auth: Bearer (an application's
//! token, or the admin's) or HTTP Basic with the application's `client_id:client_secret`. Errors
//! are FluidSurveys' plain JSON, `{"detail": "…"}`.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use posthorn_core::subscription::SubscriptionSpec;
use posthorn_core::Subscription;
use posthorn_store::{CredentialsRefused, SubscriptionQuery};
use serde::Serialize;
use serde_json::{json, Value};
use utoipa::ToSchema;

use crate::auth::{Caller, Credentials, Scope};
use crate::error::ApiError;
use crate::extract::JsonBody;
use crate::AppState;

/// The events FluidSurveys sends.
pub const EVENTS: [&str; 4] = [
    "survey_create",
    "response_complete",
    "report_create",
    "contact_create",
];

/// Marks the subscriptions made through this door (in their metadata).
const DOOR: &str = "fluidsurveys";

/// A FluidSurveys error: `{"detail": "…"}`.
pub(crate) struct FsError(StatusCode, String);

impl IntoResponse for FsError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({"detail": self.1}))).into_response()
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

/// The fields by which FluidSurveys narrows `event`'s callbacks: a survey and a collector
/// given for an event that has none are kept (and listed) but narrow nothing.
pub fn narrowing(event: &str) -> &'static [&'static str] {
    match event {
        "response_complete" => &["survey", "collector"],
        "report_create" => &["survey"],
        _ => &[],
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FsWebhook {
    /// An integer, as FluidSurveys gives: stable for the subscription's life.
    pub id: u64,
    pub event_type: String,
    pub survey: Option<String>,
    pub collector: Option<String>,
    pub subscription_url: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FsWebhookList {
    pub webhooks: Vec<FsWebhook>,
    pub total: usize,
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
    caller.require(Scope::Subscriptions)?;
    Ok(caller)
}

/// The integer a FluidSurveys client knows a subscription by: the first 48 bits of its id's
/// SHA-256, the same on every call and every process, with nothing stored beside it.
fn integer_id(id: &str) -> u64 {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(id.as_bytes());
    digest[..6]
        .iter()
        .fold(0u64, |n, b| (n << 8) | u64::from(*b))
        .max(1)
}

/// True for a subscription made through this door.
fn made_here(sub: &Subscription) -> bool {
    sub.spec.metadata.get("door").map(String::as_str) == Some(DOOR)
}

/// The caller's `http` subscriptions (every door's: one subscription, seen from each).
async fn own_subscriptions(
    state: &AppState,
    caller: &Caller,
) -> Result<Vec<Subscription>, FsError> {
    let mut all = Vec::new();
    let mut before = None;
    loop {
        let page = state
            .store
            .subscriptions_page(&SubscriptionQuery {
                owner: Some(caller.owner().as_str().to_owned()),
                before: before.clone(),
                limit: 500,
            })
            .await
            .map_err(ApiError::from)?;
        let done = page.len() < 500;
        before = page.last().map(|s| s.id.clone());
        all.extend(page.into_iter().filter(|s| s.spec.service == "http"));
        if done {
            return Ok(all);
        }
    }
}

fn url_of(sub: &Subscription) -> Option<&str> {
    sub.spec.config.get("url").and_then(Value::as_str)
}

fn webhook(sub: &Subscription) -> FsWebhook {
    FsWebhook {
        id: integer_id(&sub.id),
        event_type: sub.spec.events.first().cloned().unwrap_or_default(),
        survey: sub.spec.metadata.get("survey").cloned(),
        collector: sub.spec.metadata.get("collector").cloned(),
        subscription_url: posthorn_core::secrets::shown_url(url_of(sub).unwrap_or_default()),
    }
}

/// The caller's webhooks.
#[utoipa::path(get, operation_id = "fluidsurveysListWebhooks", path = "/api/v2/webhooks/", tag = "fluidsurveys",
    responses((status = 200, body = FsWebhookList), (status = 401)),
    security(("bearer" = []), ("basic" = [])))]
pub(crate) async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<FsWebhookList>, FsError> {
    let caller = caller(&state, &headers).await?;
    // As FluidSurveys lists them: the active webhooks, those made through this door.
    let webhooks: Vec<FsWebhook> = own_subscriptions(&state, &caller)
        .await?
        .iter()
        .filter(|s| made_here(s) && s.is_active())
        .map(webhook)
        .collect();
    Ok(Json(FsWebhookList {
        total: webhooks.len(),
        webhooks,
    }))
}

/// An id as FluidSurveys clients send it: a number or a string.
fn id_field(body: &Value, field: &str) -> Result<Option<String>, FsError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
        Some(Value::Number(n)) if n.is_u64() => Ok(Some(n.to_string())),
        Some(_) => Err(bad(format!("{field} must be an id"))),
    }
}

/// Subscribe a URL to an event, optionally for one survey and collector.
#[utoipa::path(post, operation_id = "fluidsurveysSubscribe", path = "/api/v2/webhooks/subscribe/", tag = "fluidsurveys",
    request_body(content = Object, description = "{\"subscription_url\", \"event\", \"survey\"?, \"collector\"?}"),
    responses((status = 201, body = FsWebhook), (status = 400), (status = 401), (status = 409)),
    security(("bearer" = []), ("basic" = [])))]
pub(crate) async fn subscribe(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<JsonBody, ApiError>,
) -> Result<(StatusCode, Json<FsWebhook>), FsError> {
    let caller = caller(&state, &headers).await?;
    let JsonBody(body) = body?;
    let url = body
        .get("subscription_url")
        .and_then(Value::as_str)
        .filter(|u| !u.is_empty())
        .ok_or_else(|| bad("subscription_url is required"))?
        .to_owned();
    let event = body
        .get("event")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("event is required"))?
        .to_owned();
    if !EVENTS.contains(&event.as_str()) {
        return Err(bad(format!("event must be one of {}", EVENTS.join(", "))));
    }
    let survey = id_field(&body, "survey")?;
    let collector = id_field(&body, "collector")?;
    if own_subscriptions(&state, &caller)
        .await?
        .iter()
        .any(|s| url_of(s) == Some(url.as_str()))
    {
        return Err(FsError(
            StatusCode::CONFLICT,
            "a webhook with this subscription_url already exists".into(),
        ));
    }
    let mut filter = Vec::new();
    let mut metadata = serde_json::Map::new();
    metadata.insert("door".into(), json!(DOOR));
    for (field, value) in [("survey", &survey), ("collector", &collector)] {
        if let Some(v) = value {
            if narrowing(&event).contains(&field) {
                // The platform says which survey (collector) in a routing attribute, so that
                // the callback carries only the event's fields; or in the data.
                let v = json!(v);
                filter.push(format!(
                    "($event.attributes.{field} = {v} or \
                     (not exists $event.attributes.{field} and {field} = {v}))"
                ));
            }
            metadata.insert(field.into(), json!(v));
        }
    }
    let spec: SubscriptionSpec = serde_json::from_value(json!({
        "name": format!("FluidSurveys {event}"),
        "service": "http",
        "config": {"url": url, "content_type": "application/x-www-form-urlencoded"},
        "events": [event],
        "filter": (!filter.is_empty()).then(|| filter.join(" and ")),
        "metadata": metadata,
    }))
    .map_err(|e| bad(e.to_string()))?;
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
    responses((status = 200), (status = 400), (status = 401), (status = 404)),
    security(("bearer" = []), ("basic" = [])))]
pub(crate) async fn unsubscribe(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<JsonBody, ApiError>,
) -> Result<Json<Value>, FsError> {
    let caller = caller(&state, &headers).await?;
    let JsonBody(body) = body?;
    let url = body
        .get("subscription_url")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("subscription_url is required"))?;
    let mine: Vec<Subscription> = own_subscriptions(&state, &caller)
        .await?
        .into_iter()
        .filter(|s| url_of(s) == Some(url))
        .collect();
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
    Ok(Json(json!({"success": true})))
}
