//! The dashboard (`/ui`): a page and its script, embedded in the binary, over the same `/v1` API
//! as everyone else. What is particular to it is how a browser signs in:
//!
//! - `POST /ui/login` with the admin token or an application's client credentials sets an
//!   HttpOnly, SameSite=Strict cookie: a signed admin session ([`crate::session`]), or an application
//!   access token. The `/v1` extractor takes that cookie when a request has no `Authorization`;
//!   a state-changing request with it must also carry `X-CSRF-Token` (given by `GET /ui/session`)
//!   and, when it says where it comes from, an `Origin` of this server.
//! - A portal link (`POST /v1/applications/{id}/portal-link`) carries a signed ticket in its
//!   fragment; the page trades it at `POST /ui/portal` for an access token of that application,
//!   which it keeps in the tab's `sessionStorage` (a reload stays signed in) and sends as a bearer
//!   token: no cookie, so it works in an `iframe` on the platform's own site.

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use posthorn_core::time::now_ms;
use posthorn_store::CredentialsRefused;
use serde::Deserialize;
use serde_json::json;

use crate::auth::{same, Caller, Credentials};
use crate::error::ApiError;
use crate::extract::JsonBody;
use crate::session::{self, cookie, cookie_caller, COOKIE};
use crate::AppState;

/// How long an admin's dashboard session lasts.
const ADMIN_SESSION_MS: i64 = 8 * 3600 * 1000;

const INDEX: &str = include_str!("assets/index.html");
const SCRIPT: &str = include_str!("assets/app.js");
const STYLE: &str = include_str!("assets/style.css");
const FAVICON: &str = include_str!("assets/favicon.svg");

/// The dashboard's settings.
#[derive(Debug, Clone, Default)]
pub struct UiConfig {
    /// Origins allowed to embed `/ui` in a frame (the platform's own pages, for the portal);
    /// none: it cannot be framed.
    pub frame_ancestors: Vec<String>,
    /// The URL browsers reach this server at, for portal links; by default the request's own
    /// `Host` (and `X-Forwarded-Proto`).
    pub public_url: Option<String>,
}

/// The base URL of portal links.
pub(crate) fn public_base(state: &AppState, headers: &HeaderMap) -> String {
    if let Some(url) = &state.ui.public_url {
        return url.trim_end_matches('/').to_owned();
    }
    let proto = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .filter(|p| p.eq_ignore_ascii_case("https"))
        .map_or("http", |_| "https");
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("127.0.0.1:8525");
    format!("{proto}://{host}")
}

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/ui", get(|| async { Redirect::permanent("/ui/") }))
        .route("/ui/", get(index))
        .route("/ui/app.js", get(script))
        .route("/ui/style.css", get(style))
        .route("/ui/favicon.svg", get(favicon))
        .route("/ui/session", get(whoami))
        .route("/ui/login", post(login))
        .route("/ui/logout", post(logout))
        .route("/ui/portal", post(portal))
}

/// Every `/ui` answer: nothing from elsewhere, never cached, framed only where allowed.
fn secured(state: &AppState, mut response: Response) -> Response {
    let ancestors = if state.ui.frame_ancestors.is_empty() {
        "'none'".to_owned()
    } else {
        format!("'self' {}", state.ui.frame_ancestors.join(" "))
    };
    let csp = format!(
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; \
         connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors {ancestors}"
    );
    let h = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&csp) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

async fn index(State(state): State<AppState>) -> Response {
    let r = ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], INDEX).into_response();
    secured(&state, r)
}

async fn script(State(state): State<AppState>) -> Response {
    let r = (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        SCRIPT,
    )
        .into_response();
    secured(&state, r)
}

async fn style(State(state): State<AppState>) -> Response {
    let r = ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE).into_response();
    secured(&state, r)
}

async fn favicon(State(state): State<AppState>) -> Response {
    let r = ([(header::CONTENT_TYPE, "image/svg+xml")], FAVICON).into_response();
    secured(&state, r)
}

/// Who the cookie signs in, and the CSRF token the page sends with changes.
async fn whoami(State(state): State<AppState>, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    let answer = match cookie(&parts.headers) {
        Some(session) => match cookie_caller(&state, &parts, &session).await {
            Ok(caller) => json!({
                "signed_in": true,
                "admin": caller.is_admin(),
                "owner": caller.owner().as_str(),
                "csrf": session::csrf_token(&state.admin.token(), &session),
            }),
            Err(ApiError::Unavailable(e)) => {
                return secured(&state, ApiError::Unavailable(e).into_response())
            }
            Err(_) => json!({"signed_in": false}),
        },
        None => json!({"signed_in": false}),
    };
    secured(&state, Json(answer).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Login {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    client_secret: Option<String>,
}

fn with_cookie(state: &AppState, headers: &HeaderMap, value: &str, max_age_s: i64) -> Response {
    // Secure when the browser reached us over TLS (through a proxy that says so).
    let secure = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|p| p.eq_ignore_ascii_case("https"));
    let cookie = format!(
        "{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_s}{}",
        if secure { "; Secure" } else { "" }
    );
    let mut r = StatusCode::NO_CONTENT.into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    secured(state, r)
}

/// Signs in with the admin token, an application's access token, or its client credentials.
async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let login: Login = crate::extract::typed(&body, "")?;
    let now = now_ms();
    match login {
        Login {
            token: Some(token),
            client_id: None,
            client_secret: None,
        } => {
            if same(token.as_bytes(), state.admin.token().as_bytes()) {
                let session = session::admin_session(&state.admin.token(), now + ADMIN_SESSION_MS);
                return Ok(with_cookie(
                    &state,
                    &headers,
                    &session,
                    ADMIN_SESSION_MS / 1000,
                ));
            }
            let caller = Caller::resolve(&state, &Credentials::Bearer(token.clone())).await?;
            match caller {
                Some(_) if token.starts_with("pht_") => Ok(with_cookie(
                    &state,
                    &headers,
                    &token,
                    state.token_ttl.as_secs() as i64,
                )),
                _ => Err(ApiError::Unauthorized),
            }
        }
        Login {
            token: None,
            client_id: Some(id),
            client_secret: Some(secret),
        } => match state.store.authenticate_client(&id, &secret).await? {
            Ok(app) => {
                let ttl = state.token_ttl;
                let token = state
                    .store
                    .issue_token(&app.id, &app.scopes, None, ttl.as_millis() as i64)
                    .await?;
                Ok(with_cookie(&state, &headers, &token, ttl.as_secs() as i64))
            }
            Err(CredentialsRefused::Invalid) => Err(ApiError::Unauthorized),
            Err(CredentialsRefused::Locked { retry_after_s }) => Err(ApiError::Forbidden(format!(
                "too many wrong secrets for this client; try again in {retry_after_s} s"
            ))),
        },
        _ => Err(
            posthorn_core::Invalid::one("", "give token, or client_id and client_secret").into(),
        ),
    }
}

/// Signs out: clears the cookie, and ends its session on the server too, so that a copy of the
/// cookie no longer works on any process (an admin session is recorded as revoked until it would
/// have expired; an application's is its access token, revoked).
async fn logout(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(session) = cookie(&headers) {
        let ended = if let Some((id, expires)) = session::admin_session_id(&session)
            .filter(|_| session::is_admin_session(&state.admin.token(), &session, now_ms()))
        {
            state.admin.revoke(&id);
            state.store.revoke_session(&id, expires).await
        } else if session.starts_with("pht_") {
            state.store.revoke_token(&session).await.map(|_| ())
        } else {
            Ok(())
        };
        if let Err(e) = ended {
            return secured(&state, ApiError::Unavailable(e).into_response());
        }
    }
    with_cookie(&state, &headers, "", 0)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PortalTicket {
    ticket: String,
}

/// Trades a portal link's ticket for an access token of its application, scoped to what the
/// dashboard shows (`subscriptions`), for the page to keep in memory.
async fn portal(
    State(state): State<AppState>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let PortalTicket { ticket } = crate::extract::typed(&body, "")?;
    let app_id = session::open_portal_ticket(&state.admin.token(), &ticket, now_ms())
        .ok_or(ApiError::Unauthorized)?;
    let app_id = posthorn_core::ApplicationId::parse(&app_id).ok_or(ApiError::Unauthorized)?;
    let app = state
        .store
        .application(&app_id)
        .await?
        .ok_or(ApiError::Unauthorized)?;
    let scopes = vec!["subscriptions".to_owned()];
    let ttl = state.token_ttl;
    let token = state
        .store
        .issue_token(&app.id, &scopes, None, ttl.as_millis() as i64)
        .await?;
    let r = Json(json!({
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": ttl.as_secs(),
        "application": {"id": app.id, "name": app.name},
    }))
    .into_response();
    Ok(secured(&state, r))
}
