//! `/v1/subscriptions`: create, list, read, replace (PUT), merge (PATCH, RFC 7396), delete, and
//! the actions enable, disable, test, rotate-secret and recover.

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::Json;
use posthorn_core::owner::ADMIN;
use posthorn_core::service::secret_paths;
use posthorn_core::subscription::{DisabledReason, SubscriptionSpec};
use posthorn_core::time::{now_ms, parse_rfc3339, to_rfc3339};
use posthorn_core::ApplicationId;
use posthorn_core::{EventPattern, Invalid, Secret, Subscription};
use posthorn_store::SubscriptionQuery;
use serde_json::{json, Value};

use crate::auth::{Caller, Can, ManageSubscriptions};
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::PathId;
use crate::extract::{typed, JsonBody};
use crate::list::{paginate, Page, Query};
use crate::AppState;
use posthorn_core::id::Sub;
use posthorn_wire::api::{
    CircuitState, CircuitView, RecoverRequest, Recovered, SubscriptionState, SubscriptionStatus,
    SubscriptionView, TestSent,
};

/// How long the previous secret keeps signing after a rotation.
const ROTATION_OVERLAP_MS: i64 = 24 * 3600 * 1000;

fn circuit_view(circuit: Option<(i64, u32)>) -> CircuitView {
    match circuit {
        Some((until, failures)) => CircuitView {
            state: if until > now_ms() {
                CircuitState::Open
            } else {
                CircuitState::Probing
            },
            until: Some(to_rfc3339(until)),
            failures,
        },
        _ => CircuitView {
            state: CircuitState::Closed,
            until: None,
            failures: 0,
        },
    }
}

/// The view of one subscription, with its circuit read.
async fn view_one(
    state: &AppState,
    sub: Subscription,
    show_secret: bool,
) -> ApiResult<SubscriptionView> {
    let health = state
        .store
        .health(&[&sub.id])
        .await?
        .remove(sub.id.as_str())
        .unwrap_or_default();
    Ok(view(
        &state.services,
        sub,
        show_secret,
        health.circuit,
        health.failing_since,
    ))
}

fn view(
    services: &posthorn_core::Registry,
    mut sub: Subscription,
    show_secret: bool,
    circuit: Option<(i64, u32)>,
    failing_since: Option<i64>,
) -> SubscriptionView {
    let active = sub.is_active();
    let credential_expires_at = services
        .get(&sub.spec.service)
        .and_then(|s| s.credential_expires_at(&sub.spec.config))
        .map(to_rfc3339);
    let state = SubscriptionState {
        credential_expires_at,
        failing_since: failing_since.map(to_rfc3339),
        circuit: circuit_view(circuit),
        status: if active {
            SubscriptionStatus::Active
        } else {
            SubscriptionStatus::Disabled
        },
        disabled_reason: if active {
            None
        } else {
            Some(sub.disabled_reason.unwrap_or(DisabledReason::Manual))
        },
        secret: show_secret.then(|| sub.secret.expose()),
        created_at: to_rfc3339(sub.created_at),
        updated_at: to_rfc3339(sub.updated_at),
        id: sub.id,
        owner: sub.owner,
    };
    // Credentials in the config are write-only: shown masked, never in clear.
    let paths = secret_paths(services, &sub.spec.service, &sub.spec.config);
    posthorn_core::secrets::mask_paths(&mut sub.spec.config, &paths);
    SubscriptionView::new(sub.spec, state)
}

/// A config written back as `GET` showed it keeps its credentials: masked values at the places
/// the subscription had credentials take the values it had.
fn keep_credentials(state: &AppState, old: &Subscription, new: &mut Value) {
    let paths = secret_paths(&state.services, &old.spec.service, &old.spec.config);
    if let Some(config) = new.get_mut("config") {
        posthorn_core::secrets::restore_masked(config, &old.spec.config, &paths);
    }
}

/// Reads and checks a spec; field paths are those of the request.
async fn checked_spec(state: &AppState, body: &Value) -> Result<SubscriptionSpec, Invalid> {
    SubscriptionSpec::structure_faults(body)?;
    let spec: SubscriptionSpec = typed(body, "")?;
    let compiled = spec.validate(&state.services)?;
    // What only a write checks: a filter that reads `data.…` (seldom meant: it never matches an
    // event whose data has no field named data), the target against this server's network policy.
    if let Some(hint) = compiled.filter.as_ref().and_then(|f| f.data_prefix_hint()) {
        return Err(Invalid::one("filter", hint));
    }
    compiled
        .target
        .write_check()
        .await
        .map_err(|e| e.within("config"))?;
    Ok(spec)
}

/// A subscription the caller may see, or 404.
async fn load(
    state: &AppState,
    caller: &Caller,
    id: &posthorn_core::SubscriptionId,
) -> ApiResult<Subscription> {
    state
        .store
        .subscription(&caller.visibility(), id)
        .await?
        .ok_or(ApiError::NotFound("subscription"))
}

/// Writes a changed subscription through the one write path.
async fn save(state: &AppState, sub: Subscription) -> ApiResult<Subscription> {
    state
        .subscriptions
        .save(sub)
        .await?
        .ok_or(ApiError::NotFound("subscription"))
}

/// Create a subscription; the reply carries its signing secret.
#[utoipa::path(post, operation_id = "createSubscription", path = "/v1/subscriptions", tag = "subscriptions",
    request_body = SubscriptionSpec,
    responses((status = 201, body = SubscriptionView), (status = 400, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub(crate) async fn create(
    State(state): State<AppState>,
    caller: Can<ManageSubscriptions>,
    JsonBody(body): JsonBody,
) -> ApiResult<(StatusCode, Json<SubscriptionView>)> {
    let owner = match body.get("owner") {
        None | Some(Value::Null) => caller.owner().as_str().to_owned(),
        Some(Value::String(o)) if caller.is_admin() => {
            let known = match ApplicationId::parse(o) {
                Some(app) => state.store.application(&app).await?.is_some(),
                None => false,
            };
            if o != ADMIN && !known {
                return Err(
                    Invalid::one("owner", "must be admin or the id of an application").into(),
                );
            }
            o.clone()
        }
        Some(Value::String(_)) => {
            return Err(ApiError::Forbidden("only the admin sets the owner".into()))
        }
        Some(_) => return Err(Invalid::one("owner", "must be a string").into()),
    };
    // `owner` is the one field beside the spec that a create takes.
    let mut spec_body = body;
    if let Value::Object(fields) = &mut spec_body {
        fields.remove("owner");
    }
    let spec = checked_spec(&state, &spec_body).await?;
    let sub = Subscription::new(owner, spec);
    state.subscriptions.create(&sub).await?;
    Ok((
        StatusCode::CREATED,
        Json(view_one(&state, sub, true).await?),
    ))
}

/// Subscriptions, newest first: `?event=N&metadata=key:value&status=S&limit=&cursor=`.
#[utoipa::path(get, operation_id = "listSubscriptions", path = "/v1/subscriptions", tag = "subscriptions",
    params(("event" = Option<String>, Query, description = "Only those that would receive this event name"),
           ("metadata" = Option<String>, Query, description = "key:value; repeatable, all must hold"),
           ("status" = Option<String>, Query, description = "active or disabled"),
           ("limit" = Option<usize>, Query), ("cursor" = Option<String>, Query)),
    responses((status = 200, body = Page<SubscriptionView>)),
    security(("bearer" = [])))]
pub(crate) async fn list(
    State(state): State<AppState>,
    caller: Can<ManageSubscriptions>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Page<SubscriptionView>>> {
    let q = Query::parse(raw.as_deref());
    let limit = q.limit()?;
    let event = q.get("event");
    let status = match q.get("status") {
        None => None,
        Some("active") => Some(true),
        Some("disabled") => Some(false),
        Some(_) => return Err(Invalid::one("status", "must be active or disabled").into()),
    };
    let mut metadata = Vec::new();
    for m in q.all("metadata") {
        let (k, v) = m
            .split_once(':')
            .ok_or_else(|| Invalid::one("metadata", "must be key:value"))?;
        metadata.push((k, v));
    }
    let keep = |s: &Subscription| {
        status.is_none_or(|active| s.is_active() == active)
            && metadata
                .iter()
                .all(|(k, v)| s.spec.metadata.get(*k).map(String::as_str) == Some(*v))
            && event.is_none_or(|name| {
                s.spec
                    .events
                    .iter()
                    .filter_map(|p| EventPattern::parse(p).ok())
                    .any(|p| p.matches(name))
            })
    };
    const CHUNK: usize = 200;
    let mut found = Vec::new();
    let mut before = q.cursor().map(str::to_owned);
    'pages: loop {
        let rows = state
            .store
            .subscriptions_page(&SubscriptionQuery {
                owner: caller.visibility().owner().map(str::to_owned),
                before: before.clone(),
                limit: CHUNK,
                ..SubscriptionQuery::default()
            })
            .await?;
        let exhausted = rows.len() < CHUNK;
        before = rows.last().map(|s| s.id.to_string());
        for s in rows {
            if keep(&s) {
                found.push(s);
                if found.len() > limit {
                    break 'pages;
                }
            }
        }
        if exhausted {
            break;
        }
    }
    let ids: Vec<&str> = found.iter().map(|s| s.id.as_str()).collect();
    let health = state.store.health(&ids).await?;
    Ok(Json(paginate(
        found,
        limit,
        |s| s.id.to_string(),
        |s| {
            let h = health.get(s.id.as_str()).copied().unwrap_or_default();
            view(&state.services, s, false, h.circuit, h.failing_since)
        },
    )))
}

/// A subscription (its secret is not shown again).
#[utoipa::path(get, operation_id = "getSubscription", path = "/v1/subscriptions/{id}", tag = "subscriptions",
    params(("id" = String, Path)),
    responses((status = 200, body = SubscriptionView), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub(crate) async fn show(
    State(state): State<AppState>,
    caller: Can<ManageSubscriptions>,
    PathId(id): PathId<Sub>,
) -> ApiResult<Json<SubscriptionView>> {
    Ok(Json(
        view_one(&state, load(&state, &caller, &id).await?, false).await?,
    ))
}

/// Replace every field a user writes.
#[utoipa::path(put, operation_id = "replaceSubscription", path = "/v1/subscriptions/{id}", tag = "subscriptions",
    params(("id" = String, Path)), request_body = SubscriptionSpec,
    responses((status = 200, body = SubscriptionView), (status = 404, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub(crate) async fn replace(
    State(state): State<AppState>,
    caller: Can<ManageSubscriptions>,
    PathId(id): PathId<Sub>,
    JsonBody(body): JsonBody,
) -> ApiResult<Json<SubscriptionView>> {
    let mut sub = load(&state, &caller, &id).await?;
    let mut body = body;
    keep_credentials(&state, &sub, &mut body);
    sub.spec = checked_spec(&state, &body).await?;
    Ok(Json(
        view_one(&state, save(&state, sub).await?, false).await?,
    ))
}

/// Merge the body into the subscription (JSON merge patch: `null` removes a key).
#[utoipa::path(patch, operation_id = "patchSubscription", path = "/v1/subscriptions/{id}", tag = "subscriptions",
    params(("id" = String, Path)), request_body(content = Object),
    responses((status = 200, body = SubscriptionView), (status = 404, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub(crate) async fn patch(
    State(state): State<AppState>,
    caller: Can<ManageSubscriptions>,
    PathId(id): PathId<Sub>,
    JsonBody(body): JsonBody,
) -> ApiResult<Json<SubscriptionView>> {
    if !body.is_object() {
        return Err(Invalid::one("", "must be a JSON object").into());
    }
    let mut sub = load(&state, &caller, &id).await?;
    let mut merged = serde_json::to_value(&sub.spec).unwrap_or(Value::Null);
    // Every field of a spec is in its JSON: a key that is not is unknown, even set to `null`
    // (which a merge would otherwise drop without a word).
    if let (Value::Object(fields), Value::Object(patch)) = (&merged, &body) {
        if let Some(k) = patch.keys().find(|k| !fields.contains_key(*k)) {
            // As serde says it, for the same message (and the closest field) as everywhere.
            let valid: Vec<String> = fields.keys().map(|f| format!("`{f}`")).collect();
            let said = format!("unknown field `{k}`, expected one of {}", valid.join(", "));
            return Err(posthorn_core::validation::Invalid(vec![
                posthorn_core::validation::serde_field_error("", &said),
            ])
            .into());
        }
    }
    merge_patch(&mut merged, &body);
    keep_credentials(&state, &sub, &mut merged);
    sub.spec = checked_spec(&state, &merged).await?;
    Ok(Json(
        view_one(&state, save(&state, sub).await?, false).await?,
    ))
}

/// RFC 7396.
fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    if let Value::Object(t) = target {
        for (k, v) in patch {
            if v.is_null() {
                t.remove(k);
            } else {
                merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    }
}

/// Delete: its pending deliveries are cancelled; its deliveries and logs stay readable.
#[utoipa::path(delete, operation_id = "deleteSubscription", path = "/v1/subscriptions/{id}", tag = "subscriptions",
    params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub(crate) async fn delete(
    State(state): State<AppState>,
    caller: Can<ManageSubscriptions>,
    PathId(id): PathId<Sub>,
) -> ApiResult<StatusCode> {
    load(&state, &caller, &id).await?;
    if !state.subscriptions.delete(&id).await? {
        return Err(ApiError::NotFound("subscription"));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Enable: deliveries held while it was disabled go now, and its circuit closes.
#[utoipa::path(post, operation_id = "enableSubscription", path = "/v1/subscriptions/{id}/enable", tag = "subscriptions",
    params(("id" = String, Path)),
    responses((status = 200, body = SubscriptionView), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub(crate) async fn enable(
    State(state): State<AppState>,
    caller: Can<ManageSubscriptions>,
    PathId(id): PathId<Sub>,
) -> ApiResult<Json<SubscriptionView>> {
    let mut sub = load(&state, &caller, &id).await?;
    sub.spec.enabled = true;
    // The store wakes the dispatcher for the deliveries held while it was off; a person
    // enabling it wants them to go now, whatever the circuit said before.
    let sub = save(&state, sub).await?;
    state.store.close_circuit(&sub.id).await?;
    Ok(Json(view_one(&state, sub, false).await?))
}

/// Disable: its deliveries are held (not attempted, not lost) until it is enabled.
#[utoipa::path(post, operation_id = "disableSubscription", path = "/v1/subscriptions/{id}/disable", tag = "subscriptions",
    params(("id" = String, Path)),
    responses((status = 200, body = SubscriptionView), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub(crate) async fn disable(
    State(state): State<AppState>,
    caller: Can<ManageSubscriptions>,
    PathId(id): PathId<Sub>,
) -> ApiResult<Json<SubscriptionView>> {
    let mut sub = load(&state, &caller, &id).await?;
    sub.spec.enabled = false;
    sub.disabled_reason = Some(DisabledReason::Manual);
    Ok(Json(
        view_one(&state, save(&state, sub).await?, false).await?,
    ))
}

/// Deliver a `posthorn.ping` event to this subscription alone.
#[utoipa::path(post, operation_id = "testSubscription", path = "/v1/subscriptions/{id}/test", tag = "subscriptions",
    params(("id" = String, Path)),
    responses((status = 202, body = TestSent), (status = 404, body = Problem), (status = 409, body = Problem)),
    security(("bearer" = [])))]
pub(crate) async fn test(
    State(state): State<AppState>,
    caller: Can<ManageSubscriptions>,
    PathId(id): PathId<Sub>,
) -> ApiResult<(StatusCode, Json<TestSent>)> {
    let sub = load(&state, &caller, &id).await?;
    if !sub.is_active() {
        return Err(ApiError::Conflict(
            "the subscription is disabled; enable it to test it".into(),
        ));
    }
    let p = state
        .publisher
        .ping(&sub)
        .await?
        .ok_or_else(|| ApiError::BadRequest("nothing was published".into()))?;
    let delivery_id = p
        .delivery_ids
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::BadRequest("no delivery was made".into()))?;
    Ok((
        StatusCode::ACCEPTED,
        Json(TestSent {
            event_id: p.id,
            delivery_id,
        }),
    ))
}

/// A new signing secret; the previous one keeps signing beside it for 24 hours.
#[utoipa::path(post, operation_id = "rotateSubscriptionSecret", path = "/v1/subscriptions/{id}/rotate-secret", tag = "subscriptions",
    params(("id" = String, Path)),
    responses((status = 200, body = SubscriptionView), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub(crate) async fn rotate_secret(
    State(state): State<AppState>,
    caller: Can<ManageSubscriptions>,
    PathId(id): PathId<Sub>,
) -> ApiResult<Json<SubscriptionView>> {
    let mut sub = load(&state, &caller, &id).await?;
    let old = std::mem::replace(&mut sub.secret, Secret::generate());
    sub.previous_secret = Some((old, now_ms() + ROTATION_OVERLAP_MS));
    Ok(Json(
        view_one(&state, save(&state, sub).await?, true).await?,
    ))
}

/// Queue again this subscription's dead deliveries since a time.
#[utoipa::path(post, operation_id = "recoverSubscription", path = "/v1/subscriptions/{id}/recover", tag = "subscriptions",
    params(("id" = String, Path)), request_body = RecoverRequest,
    responses((status = 200, body = Recovered), (status = 404, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub(crate) async fn recover(
    State(state): State<AppState>,
    caller: Can<ManageSubscriptions>,
    PathId(id): PathId<Sub>,
    JsonBody(body): JsonBody,
) -> ApiResult<Json<Recovered>> {
    let req: RecoverRequest = typed(&body, "")?;
    let since = parse_rfc3339(&req.since)
        .ok_or_else(|| Invalid::one("since", "must be an RFC 3339 time"))?;
    let sub = load(&state, &caller, &id).await?;
    // The store wakes the dispatcher.
    let requeued = state.store.recover(&sub.id, since).await?;
    // What is recovered goes now, whatever the circuit said before.
    state.store.close_circuit(&sub.id).await?;
    Ok(Json(Recovered { requeued }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_patch_follows_rfc_7396() {
        let mut t = json!({"a": "b", "c": {"d": "e", "f": "g"}});
        merge_patch(&mut t, &json!({"a": "z", "c": {"f": null}}));
        assert_eq!(t, json!({"a": "z", "c": {"d": "e"}}));
        let mut t = json!({"a": [1]});
        merge_patch(&mut t, &json!({"a": [2, 3], "n": {"x": 1}}));
        assert_eq!(t, json!({"a": [2, 3], "n": {"x": 1}}));
    }
}
