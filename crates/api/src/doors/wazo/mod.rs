//! The wazo-webhookd front door, under `/1.0/`: its clients manage subscriptions, read their logs,
//! the services, the status and the config, as they did against wazo-webhookd, and get the same
//! subscriptions `/v1` shows. [`translate`] is the translation (no I/O); [`auth`] who calls;
//! [`error`] wazo's error shape. Lists and searches are store queries (owner, the door's
//! metadata); logs are paged by the database, one row per attempt.

mod auth;
mod error;
mod translate;
pub(crate) mod wire;

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use posthorn_core::subscription::SubscriptionSpec;
use posthorn_core::{Subscription, SubscriptionId};
use posthorn_store::SubscriptionQuery;
use serde_json::{Map, Value};

pub(crate) use auth::token_in_query;
use auth::{caller, me};
use error::{forbidden, not_found, WazoError};
use translate::{log_row, spec_of, view, LogsQuery, OWNER_USER_KEY};
use wire::{
    WazoBus, WazoCheck, WazoConfig, WazoErrorBody, WazoLogList, WazoRestApi, WazoServices,
    WazoSource, WazoStatus, WazoSubscription, WazoSubscriptionList,
};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::{JsonBody, Path};
use crate::list::Query;
use crate::AppState;

/// The door's routes.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/1.0/status", get(status))
        .route("/1.0/config", get(config))
        .route("/1.0/api/api.yml", get(api_spec))
        .route("/1.0/subscriptions", get(list).post(create))
        .route("/1.0/subscriptions/services", get(services))
        .route(
            "/1.0/subscriptions/{id}",
            get(show).put(edit).delete(delete),
        )
        .route("/1.0/subscriptions/{id}/logs", get(logs))
        .route(
            "/1.0/users/me/subscriptions",
            get(user_list).post(user_create),
        )
        .route(
            "/1.0/users/me/subscriptions/{id}",
            get(user_show).put(user_edit).delete(user_delete),
        )
}

async fn checked(state: &AppState, spec: &SubscriptionSpec) -> Result<(), WazoError> {
    let compiled = spec.validate(&state.services)?;
    compiled
        .target
        .write_check()
        .await
        .map_err(|e| WazoError::from(e.within("config")))
}

/// The caller's subscriptions (`user`: only those made through `users/me` by the same user),
/// narrowed by every `search_metadata=key:value`: one store query.
async fn own(
    state: &AppState,
    caller: &Caller,
    user: bool,
    raw: Option<&str>,
) -> Result<Vec<Subscription>, WazoError> {
    let q = Query::parse(raw);
    let mut metadata: Vec<(String, String)> = q
        .all("search_metadata")
        .filter_map(|m| m.split_once(':'))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    if user {
        metadata.push((OWNER_USER_KEY.to_owned(), me(caller)));
    }
    Ok(state
        .store
        .subscriptions_all(&SubscriptionQuery {
            owner: caller.visibility().owner().map(str::to_owned),
            metadata,
            ..SubscriptionQuery::default()
        })
        .await?)
}

async fn load(
    state: &AppState,
    caller: &Caller,
    id: &str,
    user: bool,
) -> Result<Subscription, WazoError> {
    let id = SubscriptionId::parse(id).ok_or_else(not_found)?;
    let sub = state
        .store
        .subscription(&caller.visibility(), &id)
        .await?
        .ok_or_else(not_found)?;
    if user && sub.spec.metadata.get(OWNER_USER_KEY) != Some(&me(caller)) {
        return Err(not_found());
    }
    Ok(sub)
}

/// Subscriptions, narrowed by `search_metadata=key:value` (repeatable, all must hold).
#[utoipa::path(get, operation_id = "wazoListSubscriptions", path = "/1.0/subscriptions", tag = "wazo-webhookd",
    params(("search_metadata" = Option<String>, Query, description = "key:value; repeatable")),
    responses((status = 200, body = WazoSubscriptionList), (status = 401, body = WazoErrorBody)),
    security(("x_auth_token" = [])))]
pub(crate) async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Json<WazoSubscriptionList>, WazoError> {
    let caller = caller(&state, &headers).await?;
    Ok(Json(translate::list(
        &own(&state, &caller, false, raw.as_deref()).await?,
    )))
}

/// The caller's own subscriptions made as a user.
#[utoipa::path(get, operation_id = "wazoListUserSubscriptions", path = "/1.0/users/me/subscriptions", tag = "wazo-webhookd",
    responses((status = 200, body = WazoSubscriptionList), (status = 401, body = WazoErrorBody)),
    security(("x_auth_token" = [])))]
pub(crate) async fn user_list(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Json<WazoSubscriptionList>, WazoError> {
    let caller = caller(&state, &headers).await?;
    Ok(Json(translate::list(
        &own(&state, &caller, true, raw.as_deref()).await?,
    )))
}

async fn create_for(
    state: &AppState,
    caller: &Caller,
    body: Result<JsonBody, ApiError>,
    user: bool,
) -> Result<(StatusCode, Json<WazoSubscription>), WazoError> {
    let JsonBody(body) = body?;
    let owner = caller.owner().as_str().to_owned();
    let me = me(caller);
    let spec = spec_of(
        &body,
        user.then_some(me.as_str()),
        caller.user().filter(|_| user),
    )?;
    checked(state, &spec).await?;
    let sub = Subscription::new(owner, spec);
    state
        .subscriptions
        .create(&sub)
        .await
        .map_err(ApiError::from)?;
    Ok((StatusCode::CREATED, Json(view(&sub))))
}

/// Create a subscription (wazo-webhookd's schema; unknown fields ignored).
#[utoipa::path(post, operation_id = "wazoCreateSubscription", path = "/1.0/subscriptions", tag = "wazo-webhookd",
    request_body(content = Object, description = "{\"name\",\"service\",\"config\",\"events\",\"events_user_uuid\"?,\"events_wazo_uuid\"?,\"metadata\"?}"),
    responses((status = 201, body = WazoSubscription), (status = 400, body = WazoErrorBody), (status = 401, body = WazoErrorBody)),
    security(("x_auth_token" = [])))]
pub(crate) async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<JsonBody, ApiError>,
) -> Result<(StatusCode, Json<WazoSubscription>), WazoError> {
    let caller = caller(&state, &headers).await?;
    create_for(&state, &caller, body, false).await
}

/// Create a subscription as a user.
#[utoipa::path(post, operation_id = "wazoCreateUserSubscription", path = "/1.0/users/me/subscriptions", tag = "wazo-webhookd",
    request_body(content = Object, description = "{\"name\",\"service\",\"config\",\"events\",\"events_user_uuid\"?,\"events_wazo_uuid\"?,\"metadata\"?}"),
    responses((status = 201, body = WazoSubscription), (status = 400, body = WazoErrorBody), (status = 401, body = WazoErrorBody)),
    security(("x_auth_token" = [])))]
pub(crate) async fn user_create(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<JsonBody, ApiError>,
) -> Result<(StatusCode, Json<WazoSubscription>), WazoError> {
    let caller = caller(&state, &headers).await?;
    create_for(&state, &caller, body, true).await
}

/// A subscription.
#[utoipa::path(get, operation_id = "wazoGetSubscription", path = "/1.0/subscriptions/{id}", tag = "wazo-webhookd",
    params(("id" = String, Path)),
    responses((status = 200, body = WazoSubscription), (status = 404, body = WazoErrorBody)),
    security(("x_auth_token" = [])))]
pub(crate) async fn show(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<WazoSubscription>, WazoError> {
    let caller = caller(&state, &headers).await?;
    Ok(Json(view(&load(&state, &caller, &id, false).await?)))
}

/// A subscription made as a user.
#[utoipa::path(get, operation_id = "wazoGetUserSubscription", path = "/1.0/users/me/subscriptions/{id}", tag = "wazo-webhookd",
    params(("id" = String, Path)),
    responses((status = 200, body = WazoSubscription), (status = 404, body = WazoErrorBody)),
    security(("x_auth_token" = [])))]
pub(crate) async fn user_show(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<WazoSubscription>, WazoError> {
    let caller = caller(&state, &headers).await?;
    Ok(Json(view(&load(&state, &caller, &id, true).await?)))
}

async fn edit_for(
    state: &AppState,
    caller: &Caller,
    id: &str,
    body: Result<JsonBody, ApiError>,
    user: bool,
) -> Result<Json<WazoSubscription>, WazoError> {
    let mut sub = load(state, caller, id, user).await?;
    let JsonBody(body) = body?;
    let owner_user = sub.spec.metadata.get(OWNER_USER_KEY).cloned();
    let mut spec = spec_of(&body, owner_user.as_deref(), caller.user().filter(|_| user))?;
    // A URL written back with its password masked (as shown) keeps its password.
    let paths =
        posthorn_core::service::secret_paths(&state.services, &sub.spec.service, &sub.spec.config);
    posthorn_core::secrets::restore_masked(&mut spec.config, &sub.spec.config, &paths);
    sub.spec = spec;
    checked(state, &sub.spec).await?;
    let saved = state
        .subscriptions
        .save(sub)
        .await
        .map_err(ApiError::from)?
        .ok_or_else(not_found)?;
    Ok(Json(view(&saved)))
}

/// Replace a subscription.
#[utoipa::path(put, operation_id = "wazoEditSubscription", path = "/1.0/subscriptions/{id}", tag = "wazo-webhookd",
    params(("id" = String, Path)),
    request_body(content = Object, description = "{\"name\",\"service\",\"config\",\"events\",\"events_user_uuid\"?,\"events_wazo_uuid\"?,\"metadata\"?}"),
    responses((status = 200, body = WazoSubscription), (status = 400, body = WazoErrorBody), (status = 404, body = WazoErrorBody)),
    security(("x_auth_token" = [])))]
pub(crate) async fn edit(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<JsonBody, ApiError>,
) -> Result<Json<WazoSubscription>, WazoError> {
    let caller = caller(&state, &headers).await?;
    edit_for(&state, &caller, &id, body, false).await
}

/// Replace a subscription made as a user.
#[utoipa::path(put, operation_id = "wazoEditUserSubscription", path = "/1.0/users/me/subscriptions/{id}", tag = "wazo-webhookd",
    params(("id" = String, Path)),
    request_body(content = Object, description = "{\"name\",\"service\",\"config\",\"events\",\"events_user_uuid\"?,\"events_wazo_uuid\"?,\"metadata\"?}"),
    responses((status = 200, body = WazoSubscription), (status = 400, body = WazoErrorBody), (status = 404, body = WazoErrorBody)),
    security(("x_auth_token" = [])))]
pub(crate) async fn user_edit(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<JsonBody, ApiError>,
) -> Result<Json<WazoSubscription>, WazoError> {
    let caller = caller(&state, &headers).await?;
    edit_for(&state, &caller, &id, body, true).await
}

async fn delete_for(
    state: &AppState,
    caller: &Caller,
    id: &str,
    user: bool,
) -> Result<StatusCode, WazoError> {
    let sub = load(state, caller, id, user).await?;
    if !state
        .subscriptions
        .delete(&sub.id)
        .await
        .map_err(ApiError::from)?
    {
        return Err(not_found());
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Delete a subscription.
#[utoipa::path(delete, operation_id = "wazoDeleteSubscription", path = "/1.0/subscriptions/{id}", tag = "wazo-webhookd",
    params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = WazoErrorBody)),
    security(("x_auth_token" = [])))]
pub(crate) async fn delete(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<StatusCode, WazoError> {
    let caller = caller(&state, &headers).await?;
    delete_for(&state, &caller, &id, false).await
}

/// Delete a subscription made as a user.
#[utoipa::path(delete, operation_id = "wazoDeleteUserSubscription", path = "/1.0/users/me/subscriptions/{id}", tag = "wazo-webhookd",
    params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = WazoErrorBody)),
    security(("x_auth_token" = [])))]
pub(crate) async fn user_delete(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<StatusCode, WazoError> {
    let caller = caller(&state, &headers).await?;
    delete_for(&state, &caller, &id, true).await
}

/// `{"services": {"http": {}, …}}`, from the service registry.
/// The delivery services: `{"services": {"http": {}, …}}`.
#[utoipa::path(get, operation_id = "wazoListServices", path = "/1.0/subscriptions/services", tag = "wazo-webhookd",
    responses((status = 200, body = WazoServices), (status = 401, body = WazoErrorBody)),
    security(("x_auth_token" = [])))]
pub(crate) async fn services(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<WazoServices>, WazoError> {
    caller(&state, &headers).await?;
    let services = state
        .services
        .iter()
        .map(|s| (s.name().to_owned(), Map::new()))
        .collect();
    Ok(Json(WazoServices { services }))
}

/// A subscription's logs, one per attempt, newest first by default (`failure`: will be retried;
/// `error`: final): `from_date`, `limit`, `offset`, `order`, `direction`, paged by the database.
#[utoipa::path(get, operation_id = "wazoSubscriptionLogs", path = "/1.0/subscriptions/{id}/logs", tag = "wazo-webhookd",
    params(("id" = String, Path), ("from_date" = Option<String>, Query), ("limit" = Option<usize>, Query), ("offset" = Option<usize>, Query), ("order" = Option<String>, Query), ("direction" = Option<String>, Query)),
    responses((status = 200, body = WazoLogList), (status = 400, body = WazoErrorBody), (status = 404, body = WazoErrorBody)),
    security(("x_auth_token" = [])))]
pub(crate) async fn logs(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Json<WazoLogList>, WazoError> {
    let caller = caller(&state, &headers).await?;
    let sub = load(&state, &caller, &id, false).await?;
    let q = LogsQuery::parse(raw.as_deref())?;
    let (total, rows) = state
        .store
        .subscription_attempts(&sub.id, q.from, q.order, q.ascending, q.limit, q.offset)
        .await
        .map_err(ApiError::from)?;
    let max_attempts = posthorn_core::RetryPolicy::new(
        sub.spec
            .retry
            .as_ref()
            .map(|r| r.schedule_s.clone())
            .unwrap_or_else(|| posthorn_core::retry::DEFAULT_SCHEDULE_S.to_vec()),
    )
    .max_attempts();
    let items = rows.iter().map(|r| log_row(r, max_attempts)).collect();
    Ok(Json(WazoLogList { total, items }))
}

/// The daemon's status, as wazo-webhookd reports it: `bus_consumer` is `ok` only while every AMQP
/// source is connected (`fail`, with why, when one is not, or when there is none: no bus is being
/// consumed).
#[utoipa::path(get, operation_id = "wazoStatus", path = "/1.0/status", tag = "wazo-webhookd",
    responses((status = 200, body = WazoStatus), (status = 401, body = WazoErrorBody)),
    security(("x_auth_token" = [])))]
pub(crate) async fn status(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<WazoStatus>, WazoError> {
    caller(&state, &headers).await?;
    let database = if state.store.ping().await.is_ok() {
        WazoCheck::ok()
    } else {
        WazoCheck::fail("the database does not answer".into())
    };
    let buses: Vec<_> = state
        .sources
        .all()
        .into_iter()
        .filter(|s| s.kind == "amqp")
        .collect();
    let bus_consumer = match buses.iter().find(|s| !s.connected) {
        _ if buses.is_empty() => {
            WazoCheck::fail("no AMQP source is configured: no bus is consumed".into())
        }
        Some(down) => WazoCheck::fail(format!(
            "{}: {}",
            down.name,
            down.last_error.as_deref().unwrap_or("not connected")
        )),
        None => WazoCheck::ok(),
    };
    Ok(Json(WazoStatus {
        bus_consumer,
        master_tenant: WazoCheck::ok(),
        rest_api: WazoCheck::ok(),
        database,
    }))
}

/// The daemon's configuration, as far as a wazo client reads it: what Posthorn runs with that
/// wazo-webhookd's `GET /config` shows (no secret: the admin alone may read it).
#[utoipa::path(get, operation_id = "wazoConfig", path = "/1.0/config", tag = "wazo-webhookd",
    responses((status = 200, body = WazoConfig), (status = 401, body = WazoErrorBody), (status = 403, body = WazoErrorBody)),
    security(("x_auth_token" = [])))]
pub(crate) async fn config(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<WazoConfig>, WazoError> {
    let caller = caller(&state, &headers).await?;
    if !caller.is_admin() {
        return Err(forbidden("Forbidden: the configuration is the admin's"));
    }
    let sources = state
        .sources
        .all()
        .into_iter()
        .map(|s| WazoSource {
            kind: s.kind,
            name: s.name,
        })
        .collect();
    Ok(Json(WazoConfig {
        debug: false,
        enabled_services: state
            .services
            .names()
            .into_iter()
            .map(String::from)
            .collect(),
        bus: WazoBus { sources },
        rest_api: WazoRestApi {
            token_ttl_s: state.token_ttl.as_secs(),
        },
    }))
}

/// This door's API description: the `/1.0/` operations of `/openapi.json` (JSON is YAML).
#[utoipa::path(get, operation_id = "wazoApiSpec", path = "/1.0/api/api.yml", tag = "wazo-webhookd",
    responses((status = 200, content_type = "application/yaml", body = Object)))]
pub(crate) async fn api_spec(State(state): State<AppState>) -> Response {
    let mut doc = state.openapi().clone();
    if let Some(Value::Object(paths)) = doc.get_mut("paths") {
        paths.retain(|p, _| p.starts_with("/1.0/"));
    }
    (
        [(axum::http::header::CONTENT_TYPE, "application/yaml")],
        doc.to_string(),
    )
        .into_response()
}
