//! `/v1/applications` (admin): the OAuth2 clients that own subscriptions — create (the client
//! secret shown once), list, read, delete (its tokens revoked, its subscriptions deleted),
//! rotate-secret.

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::Json;
use posthorn_core::time::to_rfc3339;
use posthorn_core::validation::Errors;
use posthorn_core::{ApplicationId, Owner};
use posthorn_store::{Application, SubscriptionQuery};

use crate::auth::{AdminOnly, Can, Scope};
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{typed, JsonBody, PathId};
use crate::list::{paginate, Page, Query};
use crate::AppState;
use posthorn_core::id::App;
use posthorn_wire::api::{ApplicationRequest, ApplicationView, PortalLink};

fn view(app: Application, secret: Option<String>) -> ApplicationView {
    ApplicationView {
        id: app.id,
        name: app.name,
        client_id: app.client_id,
        client_secret: secret,
        scopes: app.scopes,
        created_at: to_rfc3339(app.created_at),
        updated_at: to_rfc3339(app.updated_at),
    }
}

async fn load(state: &AppState, id: &ApplicationId) -> ApiResult<Application> {
    state
        .store
        .application(id)
        .await?
        .ok_or(ApiError::NotFound("application"))
}

/// Create an application; the reply carries its client secret, shown this once.
#[utoipa::path(post, operation_id = "createApplication", path = "/v1/applications", tag = "applications",
    request_body = ApplicationRequest,
    responses((status = 201, body = ApplicationView), (status = 403, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub(crate) async fn create(
    State(state): State<AppState>,
    _: Can<AdminOnly>,
    JsonBody(body): JsonBody,
) -> ApiResult<(StatusCode, Json<ApplicationView>)> {
    let req: ApplicationRequest = typed(&body, "")?;
    let mut errors = Errors::default();
    if req.name.trim().is_empty() || req.name.chars().count() > 128 {
        errors.add("name", "must be 1 to 128 characters");
    }
    if req.scopes.is_empty() {
        errors.add("scopes", "must name at least one of subscriptions, publish");
    }
    let mut scopes = Vec::new();
    for (i, s) in req.scopes.iter().enumerate() {
        match Scope::parse(s) {
            Some(scope) if !scopes.contains(&scope.as_str().to_owned()) => {
                scopes.push(scope.as_str().to_owned())
            }
            Some(_) => {}
            None => errors.add(
                format!("scopes[{i}]"),
                "must be subscriptions, publish or consume",
            ),
        }
    }
    errors.finish()?;
    let (app, secret) = state.store.create_application(&req.name, &scopes).await?;
    Ok((StatusCode::CREATED, Json(view(app, Some(secret)))))
}

/// Applications, newest first.
#[utoipa::path(get, operation_id = "listApplications", path = "/v1/applications", tag = "applications",
    params(("limit" = Option<usize>, Query), ("cursor" = Option<String>, Query)),
    responses((status = 200, body = Page<ApplicationView>), (status = 403, body = Problem)),
    security(("bearer" = [])))]
pub(crate) async fn list(
    State(state): State<AppState>,
    _: Can<AdminOnly>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Page<ApplicationView>>> {
    let q = Query::parse(raw.as_deref());
    let limit = q.limit()?;
    let rows = state.store.applications_page(q.cursor(), limit + 1).await?;
    Ok(Json(paginate(
        rows,
        limit,
        |a| a.id.clone(),
        |a| view(a, None),
    )))
}

/// An application (its secret is not shown again).
#[utoipa::path(get, operation_id = "getApplication", path = "/v1/applications/{id}", tag = "applications",
    params(("id" = String, Path)),
    responses((status = 200, body = ApplicationView), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub(crate) async fn show(
    State(state): State<AppState>,
    _: Can<AdminOnly>,
    PathId(id): PathId<App>,
) -> ApiResult<Json<ApplicationView>> {
    Ok(Json(view(load(&state, &id).await?, None)))
}

/// Delete an application: its tokens stop working at once, its subscriptions are deleted (their
/// pending deliveries cancelled, their logs kept).
#[utoipa::path(delete, operation_id = "deleteApplication", path = "/v1/applications/{id}", tag = "applications",
    params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub(crate) async fn delete(
    State(state): State<AppState>,
    _: Can<AdminOnly>,
    PathId(id): PathId<App>,
) -> ApiResult<StatusCode> {
    load(&state, &id).await?;
    // Tokens first: from here on the application can do nothing.
    state.store.delete_application(&id).await?;
    let owner = Owner::Application(id.into_string());
    loop {
        let page = state
            .store
            .subscriptions_page(&SubscriptionQuery {
                owner: Some(owner.as_str().to_owned()),
                before: None,
                limit: 200,
                ..SubscriptionQuery::default()
            })
            .await?;
        if page.is_empty() {
            break;
        }
        for sub in page {
            state.subscriptions.delete(&sub.id).await?;
        }
    }
    Ok(StatusCode::NO_CONTENT)
}

/// A new client secret; the old one stops working at once (tokens already issued run out).
#[utoipa::path(post, operation_id = "rotateApplicationSecret", path = "/v1/applications/{id}/rotate-secret", tag = "applications",
    params(("id" = String, Path)),
    responses((status = 200, body = ApplicationView), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub(crate) async fn rotate_secret(
    State(state): State<AppState>,
    _: Can<AdminOnly>,
    PathId(id): PathId<App>,
) -> ApiResult<Json<ApplicationView>> {
    let secret = state
        .store
        .rotate_application_secret(&id)
        .await?
        .ok_or(ApiError::NotFound("application"))?;
    Ok(Json(view(load(&state, &id).await?, Some(secret))))
}

/// What `revoke-tokens` did.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Revoked {
    /// How many access tokens were revoked.
    pub revoked: u64,
}

/// Revokes every access token of the application at once, on every process within a second (a
/// secret rotation alone leaves the tokens already issued until they run out).
#[utoipa::path(post, operation_id = "revokeApplicationTokens", path = "/v1/applications/{id}/revoke-tokens", tag = "applications",
    params(("id" = String, Path)),
    responses((status = 200, body = Revoked), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub(crate) async fn revoke_tokens(
    State(state): State<AppState>,
    _: Can<AdminOnly>,
    PathId(id): PathId<App>,
) -> ApiResult<Json<Revoked>> {
    load(&state, &id).await?;
    let revoked = state.store.revoke_tokens(&id).await?;
    Ok(Json(Revoked { revoked }))
}

#[derive(Debug, Default, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PortalLinkRequest {
    /// How long the link opens the portal, in seconds: 60 to 86400 [default: 600]. The session
    /// it opens lasts as long as an access token (`--token-ttl-s`).
    #[serde(default)]
    pub expires_in_s: Option<u64>,
}

/// A short-lived signed link to the dashboard, scoped to this application (its subscriptions,
/// deliveries and event types only), to embed in the platform's own pages.
#[utoipa::path(post, operation_id = "applicationPortalLink", path = "/v1/applications/{id}/portal-link", tag = "applications",
    params(("id" = String, Path)), request_body(content = Option<PortalLinkRequest>),
    responses((status = 201, body = PortalLink), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub(crate) async fn portal_link(
    State(state): State<AppState>,
    _: Can<AdminOnly>,
    PathId(id): PathId<App>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult<(StatusCode, Json<PortalLink>)> {
    // No body, or `null`: the defaults.
    let req: PortalLinkRequest = if body.trim_ascii().is_empty() || body.trim_ascii() == b"null" {
        PortalLinkRequest::default()
    } else {
        let value: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| ApiError::Malformed(e.to_string()))?;
        // Read as every body is (an integral `3600.0` is 3600).
        posthorn_core::validation::typed(&value, "")?
    };
    let ttl_s = req.expires_in_s.unwrap_or(600);
    if !(60..=86_400).contains(&ttl_s) {
        return Err(posthorn_core::Invalid::one("expires_in_s", "must be from 60 to 86400").into());
    }
    let app = load(&state, &id).await?;
    if !app.scopes.iter().any(|s| s == "subscriptions") {
        return Err(ApiError::Conflict(
            "the application has no subscriptions scope: its portal would show nothing".into(),
        ));
    }
    let expires = posthorn_core::time::now_ms() + ttl_s as i64 * 1000;
    let ticket = crate::session::portal_ticket(&state.admin.token(), &app.id, expires);
    let base = crate::ui::public_base(&state, &headers);
    Ok((
        StatusCode::CREATED,
        Json(PortalLink {
            url: format!("{base}/ui/#portal={ticket}"),
            expires_at: to_rfc3339(expires),
        }),
    ))
}
