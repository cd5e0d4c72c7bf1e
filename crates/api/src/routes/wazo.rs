//! The wazo-webhookd front door, under `/1.0/`: its clients manage subscriptions, read their logs
//! and the services, as they did against wazo-webhookd, and get the same subscriptions `/v1` shows.
//!
//! Translation, not a second engine: a wazo subscription is a Posthorn `http` subscription whose
//! templates see the event's `data` as `event` (`template_event: data`, beside `event_name` and
//! `wazo_uuid`), whose default body is that data as JSON, `events_user_uuid` a filter on the
//! bus message's `user_uuid:<uuid>` attribute (or the data's `user_uuid`), `events_wazo_uuid` one
//! on the origin (the bus message's `origin_uuid`). What wazo has and Posthorn does not name
//! (those two, `owner_user_uuid`) is kept in metadata under `wazo.`. Its `uuid` is the Posthorn
//! id. Token in `X-Auth-Token` (an application's, or the admin's; `Wazo-Tenant` lets the admin act
//! for an application); errors are wazo's `{"message","error_id","details","timestamp"}`; unknown
//! fields are ignored, as wazo does.

use std::collections::BTreeMap;

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use posthorn_core::subscription::SubscriptionSpec;
use posthorn_core::time::{now_ms, parse_rfc3339, to_rfc3339};
use posthorn_core::{AttemptOutcome, Subscription};
use posthorn_store::{AttemptOrder, SubscriptionQuery};
use serde_json::{json, Map, Value};

use crate::auth::{Caller, Credentials, Scope};
use crate::error::ApiError;
use crate::extract::{JsonBody, Path};
use crate::list::Query;
use crate::AppState;

const USER_KEY: &str = "wazo.events_user_uuid";
const ORIGIN_KEY: &str = "wazo.events_wazo_uuid";
const OWNER_USER_KEY: &str = "wazo.owner_user_uuid";
/// The body of a wazo subscription without one: the event's data, as JSON.
const DATA_AS_JSON: &str = "{{ event | tojson }}";

/// A wazo-webhookd error.
pub(crate) struct WazoError {
    status: StatusCode,
    message: String,
    error_id: &'static str,
    details: Value,
}

impl IntoResponse for WazoError {
    fn into_response(self) -> Response {
        let timestamp = now_ms() as f64 / 1000.0;
        (
            self.status,
            Json(json!({"message": self.message, "error_id": self.error_id,
                "details": self.details, "timestamp": timestamp})),
        )
            .into_response()
    }
}

impl From<ApiError> for WazoError {
    fn from(e: ApiError) -> Self {
        let status = e.status();
        let (error_id, details) = match &e {
            ApiError::Invalid(invalid) => (
                "invalid-data",
                Value::Object(
                    invalid
                        .0
                        .iter()
                        .map(|f| {
                            (
                                f.field.clone(),
                                json!({"message": f.message, "constraint_id": "invalid"}),
                            )
                        })
                        .collect(),
                ),
            ),
            ApiError::NotFound(_) => ("not-found", json!({})),
            ApiError::Unauthorized => ("unauthorized", json!({})),
            _ => ("error", json!({})),
        };
        // wazo answers every validation failure with a 400.
        let status = if status == StatusCode::UNPROCESSABLE_ENTITY {
            StatusCode::BAD_REQUEST
        } else {
            status
        };
        WazoError {
            status,
            message: e.to_string(),
            error_id,
            details,
        }
    }
}

impl From<posthorn_store::StoreError> for WazoError {
    fn from(e: posthorn_store::StoreError) -> Self {
        WazoError::from(ApiError::from(e))
    }
}

fn invalid(field: &str, message: &str) -> WazoError {
    WazoError::from(ApiError::Invalid(posthorn_core::Invalid::one(
        field, message,
    )))
}

fn not_found() -> WazoError {
    WazoError {
        status: StatusCode::NOT_FOUND,
        message: "No such subscription".into(),
        error_id: "not-found",
        details: json!({"resource": "subscription"}),
    }
}

/// Who calls: `X-Auth-Token` (or a Bearer token); the admin may act for an application with
/// `Wazo-Tenant`.
async fn caller(state: &AppState, headers: &HeaderMap) -> Result<Caller, WazoError> {
    let unauthorized = || WazoError {
        status: StatusCode::UNAUTHORIZED,
        message: "Unauthorized".into(),
        error_id: "unauthorized",
        details: json!({}),
    };
    let credentials = match Credentials::from_headers(headers) {
        Some(c @ (Credentials::AuthToken(_) | Credentials::Bearer(_))) => c,
        _ => return Err(unauthorized()),
    };
    let caller = Caller::resolve(state, &credentials)
        .await?
        .ok_or_else(unauthorized)?;
    caller.require(Scope::Subscriptions)?;
    match headers.get("wazo-tenant").and_then(|v| v.to_str().ok()) {
        Some(tenant) if caller.is_admin() && tenant != "admin" => {
            let app = state
                .store
                .application(tenant)
                .await?
                .ok_or_else(unauthorized)?;
            Ok(Caller::for_application(&app.id, &app.scopes))
        }
        _ => Ok(caller),
    }
}

/// A subscription as wazo shows it.
fn view(sub: &Subscription) -> Value {
    let mut config = Map::new();
    if sub.spec.service == "http" {
        let c = &sub.spec.config;
        for key in ["url", "method", "content_type"] {
            if let Some(v) = c.get(key).and_then(Value::as_str) {
                let shown = if key == "url" {
                    posthorn_core::secrets::shown_url(v)
                } else {
                    v.to_owned()
                };
                config.insert(key.into(), json!(shown));
            }
        }
        if let Some(body) = c
            .get("body")
            .and_then(Value::as_str)
            .filter(|b| *b != DATA_AS_JSON)
        {
            config.insert("body".into(), json!(body));
        } else {
            config.remove("content_type");
        }
        let verify = match c.get("verify_certificate") {
            Some(Value::Bool(false)) => "false".to_owned(),
            Some(Value::String(path)) => path.clone(),
            _ => "true".to_owned(),
        };
        config.insert("verify_certificate".into(), json!(verify));
    } else if let Some(c) = sub.spec.config.as_object() {
        // Another service's config, its URL's password masked (a broker's).
        config = c.clone();
        if let Some(Value::String(url)) = config.get_mut("url") {
            *url = posthorn_core::secrets::shown_url(url);
        }
    }
    let meta = &sub.spec.metadata;
    let metadata: Map<String, Value> = meta
        .iter()
        .filter(|(k, _)| !k.starts_with("wazo."))
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    json!({
        "uuid": sub.id,
        "name": sub.spec.name,
        "service": sub.spec.service,
        "config": config,
        "events": sub.spec.events,
        "events_user_uuid": meta.get(USER_KEY),
        "events_wazo_uuid": meta.get(ORIGIN_KEY),
        "owner_user_uuid": meta.get(OWNER_USER_KEY),
        "owner_tenant_uuid": sub.owner,
        "metadata": metadata,
    })
}

/// A wazo subscription body as a Posthorn spec (unknown fields ignored); `owner_user` marks one
/// made through `users/me`.
fn spec_of(
    body: &Value,
    owner_user: Option<&str>,
    for_user: Option<&str>,
) -> Result<SubscriptionSpec, WazoError> {
    let text = |field: &str, required: bool| -> Result<Option<String>, WazoError> {
        match body.get(field) {
            Some(Value::String(s)) if s.chars().count() <= 128 => Ok(Some(s.clone())),
            None | Some(Value::Null) if !required => Ok(None),
            None | Some(Value::Null) => Err(invalid(field, "Missing data for required field.")),
            _ => Err(invalid(
                field,
                "Not a valid string of at most 128 characters.",
            )),
        }
    };
    let name = text("name", true)?.unwrap_or_default();
    let service = text("service", true)?.unwrap_or_default();
    let events: Vec<String> = match body.get("events") {
        Some(Value::Array(items)) => items
            .iter()
            .map(|e| e.as_str().map(str::to_owned))
            .collect::<Option<_>>()
            .ok_or_else(|| invalid("events", "Not a valid list of strings."))?,
        _ => return Err(invalid("events", "Missing data for required field.")),
    };
    let Some(Value::Object(given)) = body.get("config") else {
        return Err(invalid("config", "Missing data for required field."));
    };
    let config = if service == "http" {
        let mut c = Map::new();
        for key in ["url", "method"] {
            match given.get(key) {
                Some(Value::String(v)) => {
                    c.insert(key.into(), json!(v.to_lowercase_if(key == "method")))
                }
                _ => {
                    return Err(invalid(
                        &format!("config.{key}"),
                        "Missing data for required field.",
                    ))
                }
            };
        }
        match given.get("body").and_then(Value::as_str) {
            Some(b) => {
                c.insert("body".into(), json!(b));
                let ct = given
                    .get("content_type")
                    .and_then(Value::as_str)
                    .unwrap_or("text/plain");
                c.insert("content_type".into(), json!(ct));
            }
            None => {
                c.insert("body".into(), json!(DATA_AS_JSON));
                c.insert("content_type".into(), json!("application/json"));
            }
        }
        let verify = match given.get("verify_certificate") {
            None | Some(Value::Null) => json!(true),
            Some(Value::String(s)) if s == "true" => json!(true),
            Some(Value::String(s)) if s == "false" => json!(false),
            Some(Value::Bool(b)) => json!(b),
            Some(Value::String(s)) if s.starts_with('/') => json!(s),
            _ => {
                return Err(invalid(
                    "config.verify_certificate",
                    "Wrong value for verify_certificate: true, false or a path",
                ))
            }
        };
        c.insert("verify_certificate".into(), verify);
        c.insert("template_event".into(), json!("data"));
        // As wazo-webhookd: a 410 is a final error for that delivery; the subscription stays.
        c.insert("on_gone".into(), json!("fail"));
        Value::Object(c)
    } else {
        Value::Object(given.clone())
    };
    let mut metadata = BTreeMap::new();
    if let Some(Value::Object(m)) = body.get("metadata") {
        for (k, v) in m {
            let v = v
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| v.to_string());
            metadata.insert(k.clone(), v);
        }
    }
    let mut filter = Vec::new();
    // A user's own subscription (`users/me` with a user's token) gets only that user's events,
    // whatever the body says, as wazo sets `events_user_uuid` to the token's user.
    let events_user = match for_user {
        Some(u) => Some(u.to_owned()),
        None => text("events_user_uuid", false)?,
    };
    if let Some(user) = events_user {
        // As wazo binds it: the bus message's `user_uuid:<uuid>` header (an attribute here); an
        // event published over HTTP may name its user in its data instead.
        filter.push(format!(
            "(exists $event.attributes[{}] or user_uuid = {})",
            json!(format!("user_uuid:{user}")),
            json!(user)
        ));
        metadata.insert(USER_KEY.into(), user);
    }
    if let Some(origin) = text("events_wazo_uuid", false)? {
        filter.push(format!("$event.origin = {}", json!(origin)));
        metadata.insert(ORIGIN_KEY.into(), origin);
    }
    if let Some(user) = owner_user {
        metadata.insert(OWNER_USER_KEY.into(), user.to_owned());
    }
    serde_json::from_value(json!({
        "name": name, "service": service, "config": config, "events": events,
        "filter": (!filter.is_empty()).then(|| filter.join(" and ")), "metadata": metadata,
    }))
    .map_err(|e| invalid("", &e.to_string()))
}

trait LowercaseIf {
    fn to_lowercase_if(&self, yes: bool) -> String;
}

impl LowercaseIf for String {
    fn to_lowercase_if(&self, yes: bool) -> String {
        if yes {
            self.to_lowercase()
        } else {
            self.clone()
        }
    }
}

async fn checked(state: &AppState, spec: &SubscriptionSpec) -> Result<(), WazoError> {
    let compiled = spec
        .validate(&state.services)
        .map_err(|e| WazoError::from(ApiError::Invalid(e)))?;
    compiled
        .target
        .write_check()
        .await
        .map_err(|e| WazoError::from(ApiError::Invalid(e.within("config"))))
}

/// The caller's subscriptions (`user`: only those made through `users/me`), narrowed by every
/// `search_metadata=key:value`.
async fn own(
    state: &AppState,
    caller: &Caller,
    user: bool,
    raw: Option<&str>,
) -> Result<Vec<Subscription>, WazoError> {
    let q = Query::parse(raw);
    let wanted: Vec<(String, String)> = q
        .all("search_metadata")
        .filter_map(|m| m.split_once(':'))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let mut found = Vec::new();
    let mut before = None;
    loop {
        let page = state
            .store
            .subscriptions_page(&SubscriptionQuery {
                owner: caller.visibility().owner().map(str::to_owned),
                before: before.clone(),
                limit: 500,
            })
            .await
            .map_err(ApiError::from)?;
        let done = page.len() < 500;
        before = page.last().map(|s| s.id.clone());
        let me = me(caller);
        found.extend(page.into_iter().filter(|s| {
            (!user || s.spec.metadata.get(OWNER_USER_KEY) == Some(&me))
                && wanted
                    .iter()
                    .all(|(k, v)| s.spec.metadata.get(k) == Some(v))
        }));
        if done {
            return Ok(found);
        }
    }
}

async fn load(
    state: &AppState,
    caller: &Caller,
    id: &str,
    user: bool,
) -> Result<Subscription, WazoError> {
    let sub = state
        .store
        .subscription(&caller.visibility(), id)
        .await?
        .ok_or_else(not_found)?;
    if user && sub.spec.metadata.get(OWNER_USER_KEY) != Some(&me(caller)) {
        return Err(not_found());
    }
    Ok(sub)
}

/// Who `users/me` is: the user the caller's token acts for (`POST /oauth/token user=…`), else the
/// application itself.
fn me(caller: &Caller) -> String {
    caller
        .user()
        .map_or_else(|| caller.owner().as_str().to_owned(), str::to_owned)
}

fn list_answer(subs: &[Subscription]) -> Json<Value> {
    let items: Vec<Value> = subs.iter().map(view).collect();
    Json(json!({"total": items.len(), "items": items}))
}

/// Subscriptions, narrowed by `search_metadata=key:value` (repeatable, all must hold).
#[utoipa::path(get, operation_id = "wazoListSubscriptions", path = "/1.0/subscriptions", tag = "wazo-webhookd",
    params(("search_metadata" = Option<String>, Query, description = "key:value; repeatable")),
    responses((status = 200, body = Object), (status = 401, body = Object)),
    security(("x_auth_token" = [])))]
pub(crate) async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, WazoError> {
    let caller = caller(&state, &headers).await?;
    Ok(list_answer(
        &own(&state, &caller, false, raw.as_deref()).await?,
    ))
}

/// The caller's own subscriptions made as a user.
#[utoipa::path(get, operation_id = "wazoListUserSubscriptions", path = "/1.0/users/me/subscriptions", tag = "wazo-webhookd",
    responses((status = 200, body = Object), (status = 401, body = Object)),
    security(("x_auth_token" = [])))]
pub(crate) async fn user_list(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, WazoError> {
    let caller = caller(&state, &headers).await?;
    Ok(list_answer(
        &own(&state, &caller, true, raw.as_deref()).await?,
    ))
}

async fn create_for(
    state: &AppState,
    caller: &Caller,
    body: Result<JsonBody, ApiError>,
    user: bool,
) -> Result<(StatusCode, Json<Value>), WazoError> {
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
    responses((status = 201, body = Object), (status = 400, body = Object), (status = 401, body = Object)),
    security(("x_auth_token" = [])))]
pub(crate) async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<JsonBody, ApiError>,
) -> Result<(StatusCode, Json<Value>), WazoError> {
    let caller = caller(&state, &headers).await?;
    create_for(&state, &caller, body, false).await
}

/// Create a subscription as a user.
#[utoipa::path(post, operation_id = "wazoCreateUserSubscription", path = "/1.0/users/me/subscriptions", tag = "wazo-webhookd",
    request_body(content = Object, description = "{\"name\",\"service\",\"config\",\"events\",\"events_user_uuid\"?,\"events_wazo_uuid\"?,\"metadata\"?}"),
    responses((status = 201, body = Object), (status = 400, body = Object), (status = 401, body = Object)),
    security(("x_auth_token" = [])))]
pub(crate) async fn user_create(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<JsonBody, ApiError>,
) -> Result<(StatusCode, Json<Value>), WazoError> {
    let caller = caller(&state, &headers).await?;
    create_for(&state, &caller, body, true).await
}

/// A subscription.
#[utoipa::path(get, operation_id = "wazoGetSubscription", path = "/1.0/subscriptions/{id}", tag = "wazo-webhookd",
    params(("id" = String, Path)),
    responses((status = 200, body = Object), (status = 404, body = Object)),
    security(("x_auth_token" = [])))]
pub(crate) async fn show(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, WazoError> {
    let caller = caller(&state, &headers).await?;
    Ok(Json(view(&load(&state, &caller, &id, false).await?)))
}

/// A subscription made as a user.
#[utoipa::path(get, operation_id = "wazoGetUserSubscription", path = "/1.0/users/me/subscriptions/{id}", tag = "wazo-webhookd",
    params(("id" = String, Path)),
    responses((status = 200, body = Object), (status = 404, body = Object)),
    security(("x_auth_token" = [])))]
pub(crate) async fn user_show(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, WazoError> {
    let caller = caller(&state, &headers).await?;
    Ok(Json(view(&load(&state, &caller, &id, true).await?)))
}

async fn edit_for(
    state: &AppState,
    caller: &Caller,
    id: &str,
    body: Result<JsonBody, ApiError>,
    user: bool,
) -> Result<Json<Value>, WazoError> {
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
    responses((status = 200, body = Object), (status = 400, body = Object), (status = 404, body = Object)),
    security(("x_auth_token" = [])))]
pub(crate) async fn edit(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<JsonBody, ApiError>,
) -> Result<Json<Value>, WazoError> {
    let caller = caller(&state, &headers).await?;
    edit_for(&state, &caller, &id, body, false).await
}

/// Replace a subscription made as a user.
#[utoipa::path(put, operation_id = "wazoEditUserSubscription", path = "/1.0/users/me/subscriptions/{id}", tag = "wazo-webhookd",
    params(("id" = String, Path)),
    request_body(content = Object, description = "{\"name\",\"service\",\"config\",\"events\",\"events_user_uuid\"?,\"events_wazo_uuid\"?,\"metadata\"?}"),
    responses((status = 200, body = Object), (status = 400, body = Object), (status = 404, body = Object)),
    security(("x_auth_token" = [])))]
pub(crate) async fn user_edit(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<JsonBody, ApiError>,
) -> Result<Json<Value>, WazoError> {
    let caller = caller(&state, &headers).await?;
    edit_for(&state, &caller, &id, body, true).await
}

async fn delete_for(
    state: &AppState,
    caller: &Caller,
    id: &str,
    user: bool,
) -> Result<StatusCode, WazoError> {
    load(state, caller, id, user).await?;
    if !state
        .subscriptions
        .delete(id)
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
    responses((status = 204), (status = 404, body = Object)),
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
    responses((status = 204), (status = 404, body = Object)),
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
    responses((status = 200, body = Object), (status = 401, body = Object)),
    security(("x_auth_token" = [])))]
pub(crate) async fn services(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Value>, WazoError> {
    caller(&state, &headers).await?;
    let services: Map<String, Value> = state
        .services
        .iter()
        .map(|s| (s.name().to_owned(), json!({})))
        .collect();
    Ok(Json(json!({"services": services})))
}

/// A subscription's logs, one per attempt, newest first by default (`failure`: will be retried;
/// `error`: final): `from_date`, `limit`, `offset`, `order`, `direction`, paged by the database.
#[utoipa::path(get, operation_id = "wazoSubscriptionLogs", path = "/1.0/subscriptions/{id}/logs", tag = "wazo-webhookd",
    params(("id" = String, Path), ("from_date" = Option<String>, Query), ("limit" = Option<usize>, Query), ("offset" = Option<usize>, Query), ("order" = Option<String>, Query), ("direction" = Option<String>, Query)),
    responses((status = 200, body = Object), (status = 400, body = Object), (status = 404, body = Object)),
    security(("x_auth_token" = [])))]
pub(crate) async fn logs(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, WazoError> {
    let caller = caller(&state, &headers).await?;
    let sub = load(&state, &caller, &id, false).await?;
    let q = Query::parse(raw.as_deref());
    let number = |key: &str, default: usize| -> Result<usize, WazoError> {
        q.get(key).map_or(Ok(default), |v| {
            v.parse().map_err(|_| invalid(key, "Not a valid integer."))
        })
    };
    let (limit, offset) = (number("limit", 100)?, number("offset", 0)?);
    let from = match q.get("from_date") {
        None => None,
        Some(t) => {
            Some(parse_rfc3339(t).ok_or_else(|| invalid("from_date", "Not a valid datetime."))?)
        }
    };
    let order = q.get("order").unwrap_or("started_at");
    if ![
        "started_at",
        "ended_at",
        "status",
        "attempts",
        "max_attempts",
    ]
    .contains(&order)
    {
        return Err(invalid(
            "order",
            "Must be one of: started_at, ended_at, status, attempts, max_attempts.",
        ));
    }
    let ascending = match q.get("direction").unwrap_or("desc") {
        "asc" => true,
        "desc" => false,
        _ => return Err(invalid("direction", "Must be one of: asc, desc.")),
    };
    let order = match order {
        "ended_at" => AttemptOrder::EndedAt,
        "status" => AttemptOrder::Outcome,
        "attempts" | "max_attempts" => AttemptOrder::Number,
        _ => AttemptOrder::StartedAt,
    };
    let (total, rows) = state
        .store
        .subscription_attempts(&sub.id, from, order, ascending, limit, offset)
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
    // As wazo-webhookd logs them: one row per attempt; `failure` will be retried, `error` is final.
    let page: Vec<Value> = rows
        .into_iter()
        .map(|row| {
            let (a, e) = (&row.attempt, &row.event);
            let status = match a.outcome {
                AttemptOutcome::Success => "success",
                AttemptOutcome::Retry => "failure",
                AttemptOutcome::Final => "error",
            };
            let detail = json!({
                "request": serde_json::from_str::<Value>(&a.request).unwrap_or(Value::Null),
                "response": a.response.as_deref().and_then(|r| serde_json::from_str::<Value>(r).ok()),
                "error": a.error,
            });
            json!({"uuid": format!("{}.{}", row.delivery_id, a.number), "status": status,
                "attempts": a.number, "max_attempts": max_attempts,
                "started_at": to_rfc3339(a.started_at),
                "ended_at": to_rfc3339(a.started_at + a.duration_ms),
                "event": {"name": e.name, "origin_uuid": e.origin,
                    "data": serde_json::from_str::<Value>(&e.data).unwrap_or(Value::Null)},
                "detail": detail})
        })
        .collect();
    Ok(Json(json!({"total": total, "items": page})))
}

/// The daemon's status, as wazo-webhookd reports it: `bus_consumer` is `ok` only while every AMQP
/// source is connected (`fail`, with why, when one is not, or when there is none: no bus is being
/// consumed).
#[utoipa::path(get, operation_id = "wazoStatus", path = "/1.0/status", tag = "wazo-webhookd",
    responses((status = 200, body = Object), (status = 401, body = Object)),
    security(("x_auth_token" = [])))]
pub(crate) async fn status(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Value>, WazoError> {
    caller(&state, &headers).await?;
    let database = if state.store.ping().await.is_ok() {
        "ok"
    } else {
        "fail"
    };
    let buses: Vec<_> = state
        .sources
        .all()
        .into_iter()
        .filter(|s| s.kind == "amqp")
        .collect();
    let bus = match buses.iter().find(|s| !s.connected) {
        _ if buses.is_empty() => {
            json!({"status": "fail", "detail": "no AMQP source is configured: no bus is consumed"})
        }
        Some(down) => json!({"status": "fail", "detail": format!("{}: {}", down.name,
            down.last_error.as_deref().unwrap_or("not connected"))}),
        None => json!({"status": "ok"}),
    };
    Ok(Json(
        json!({"bus_consumer": bus, "master_tenant": {"status": "ok"},
        "rest_api": {"status": "ok"}, "database": {"status": database}}),
    ))
}

/// The daemon's configuration, as far as a wazo client reads it: what Posthorn runs with that
/// wazo-webhookd's `GET /config` shows (no secret: the admin alone may read it).
#[utoipa::path(get, operation_id = "wazoConfig", path = "/1.0/config", tag = "wazo-webhookd",
    responses((status = 200, body = Object), (status = 401, body = Object), (status = 403, body = Object)),
    security(("x_auth_token" = [])))]
pub(crate) async fn config(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Value>, WazoError> {
    let caller = caller(&state, &headers).await?;
    if !caller.is_admin() {
        return Err(WazoError {
            status: StatusCode::FORBIDDEN,
            message: "Forbidden: the configuration is the admin's".into(),
            error_id: "forbidden",
            details: json!({}),
        });
    }
    let services = state.services.names();
    let sources: Vec<Value> = state
        .sources
        .all()
        .into_iter()
        .map(|s| json!({"kind": s.kind, "name": s.name}))
        .collect();
    Ok(Json(
        json!({"debug": false, "enabled_services": services, "bus": {"sources": sources},
        "rest_api": {"token_ttl_s": state.token_ttl.as_secs()}}),
    ))
}

/// This door's API description: the `/1.0/` operations of `/openapi.json` (JSON is YAML).
#[utoipa::path(get, operation_id = "wazoApiSpec", path = "/1.0/api/api.yml", tag = "wazo-webhookd",
    responses((status = 200, content_type = "application/yaml", body = Object)))]
pub(crate) async fn api_spec() -> Response {
    let mut doc = crate::openapi_document().clone();
    if let Some(Value::Object(paths)) = doc.get_mut("paths") {
        paths.retain(|p, _| p.starts_with("/1.0/"));
    }
    (
        [(axum::http::header::CONTENT_TYPE, "application/yaml")],
        doc.to_string(),
    )
        .into_response()
}

/// wazo clients may pass their token as `?token=` (as wazo's APIs accept it): it becomes the
/// `X-Auth-Token` header when the request carries no credentials of its own. Request logs never
/// show a query, so the token stays out of them.
pub(crate) async fn token_in_query(
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let headers = request.headers();
    if request.uri().path().starts_with("/1.0/")
        && !headers.contains_key("x-auth-token")
        && !headers.contains_key(axum::http::header::AUTHORIZATION)
    {
        let token = request.uri().query().and_then(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .find(|(k, _)| k == "token")
                .map(|(_, v)| v.into_owned())
        });
        if let Some(value) = token.and_then(|t| axum::http::HeaderValue::from_str(&t).ok()) {
            request.headers_mut().insert("x-auth-token", value);
        }
    }
    next.run(request).await
}
