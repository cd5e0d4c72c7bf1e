//! `POST /oauth/token`: the OAuth2 client-credentials grant (RFC 6749 §4.4). Credentials come as
//! form fields or HTTP Basic (§2.3.1, id and secret form-encoded before Basic encodes them); the
//! answer and every error are as §5.1 and §5.2 say, never cached.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use posthorn_store::CredentialsRefused;
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;

use crate::auth::{Credentials, Scope};
use crate::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub struct TokenAnswer {
    pub access_token: String,
    /// `Bearer`.
    pub token_type: &'static str,
    /// Seconds.
    pub expires_in: u64,
    /// The scopes granted, space-separated.
    pub scope: String,
}

/// An RFC 6749 §5.2 error.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenError {
    /// `invalid_request`, `invalid_client`, `invalid_grant`, `unauthorized_client`,
    /// `unsupported_grant_type` or `invalid_scope`.
    pub error: &'static str,
    pub error_description: String,
}

fn no_store(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    r
}

fn refuse(error: &'static str, description: impl Into<String>) -> Response {
    let status = if error == "invalid_client" {
        StatusCode::UNAUTHORIZED
    } else {
        StatusCode::BAD_REQUEST
    };
    let mut r = (
        status,
        Json(TokenError {
            error,
            error_description: description.into(),
        }),
    )
        .into_response();
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"posthorn\""),
        );
    }
    no_store(r)
}

/// Exchange an application's client credentials for an access token (client-credentials grant).
#[utoipa::path(post, operation_id = "issueToken", path = "/oauth/token", tag = "applications",
    request_body(content = String, content_type = "application/x-www-form-urlencoded",
        description = "grant_type=client_credentials, optional scope (space-separated), optional user (the user the token acts for), and client_id and client_secret unless sent with HTTP Basic"),
    responses(
        (status = 200, body = TokenAnswer),
        (status = 400, body = TokenError, description = "invalid_request, unsupported_grant_type, invalid_scope"),
        (status = 401, body = TokenError, description = "invalid_client")))]
pub(crate) async fn token(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if form_type != Some(true) {
        return refuse(
            "invalid_request",
            "send the parameters form-encoded (application/x-www-form-urlencoded)",
        );
    }
    let mut params: Vec<(String, String)> = Vec::new();
    for (k, v) in url::form_urlencoded::parse(&body) {
        if params.iter().any(|(seen, _)| *seen == k) {
            return refuse(
                "invalid_request",
                format!("the parameter {k} is given twice"),
            );
        }
        params.push((k.into_owned(), v.into_owned()));
    }
    let param = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    match param("grant_type") {
        None => return refuse("invalid_request", "grant_type is required"),
        Some("client_credentials") => {}
        Some(other) => {
            return refuse(
                "unsupported_grant_type",
                format!("{other} is not supported; use client_credentials"),
            )
        }
    }
    let basic = match Credentials::from_headers(&headers) {
        Some(Credentials::Basic { id, secret }) => Some((id, secret)),
        Some(_) => {
            return refuse(
                "invalid_client",
                "authenticate with HTTP Basic or form fields",
            )
        }
        None => None,
    };
    let form = match (param("client_id"), param("client_secret")) {
        (Some(id), Some(secret)) => Some((id.to_owned(), secret.to_owned())),
        (None, None) => None,
        _ => return refuse("invalid_request", "client_id and client_secret go together"),
    };
    let (client_id, secret) = match (basic, form) {
        (Some(_), Some(_)) => {
            return refuse(
                "invalid_request",
                "use one way of authenticating the client: HTTP Basic or form fields",
            )
        }
        (Some(c), None) | (None, Some(c)) => c,
        (None, None) => return refuse("invalid_client", "client credentials are required"),
    };
    let app = match state.store.authenticate_client(&client_id, &secret).await {
        Ok(Ok(app)) => app,
        Ok(Err(CredentialsRefused::Invalid)) => {
            return refuse("invalid_client", "unknown client or wrong secret")
        }
        Ok(Err(CredentialsRefused::Locked { retry_after_s })) => {
            let mut r = refuse(
                "invalid_client",
                format!("too many wrong secrets for this client; try again in {retry_after_s} s"),
            );
            if let Ok(v) = HeaderValue::from_str(&retry_after_s.to_string()) {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
            return r;
        }
        Err(e) => {
            tracing::error!(error = %e, "issuing a token failed on the database");
            return no_store(
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    Json(json!({"error": "temporarily_unavailable",
                        "error_description": "the database is unavailable; try again"})),
                )
                    .into_response(),
            );
        }
    };
    // An optional narrowing: each asked scope must be the application's.
    let scopes: Vec<String> = match param("scope") {
        None => app.scopes.clone(),
        Some(asked) => {
            let asked: Vec<&str> = asked.split(' ').filter(|s| !s.is_empty()).collect();
            if asked.is_empty() {
                return refuse("invalid_scope", "scope is empty");
            }
            for s in &asked {
                if Scope::parse(s).is_none() || !app.scopes.iter().any(|a| a == s) {
                    return refuse(
                        "invalid_scope",
                        format!(
                            "{s} is not a scope of this client (it has: {})",
                            app.scopes.join(" ")
                        ),
                    );
                }
            }
            asked.into_iter().map(str::to_owned).collect()
        }
    };
    // An optional user the token acts for (wazo's user tokens): the application vouches for it.
    let user = match param("user") {
        None => None,
        Some(u) if posthorn_core::event::is_valid_token(u) => Some(u),
        Some(_) => {
            return refuse(
                "invalid_request",
                "user must be 1 to 128 characters of A-Z a-z 0-9 _ . : -",
            )
        }
    };
    let ttl = state.token_ttl;
    match state
        .store
        .issue_token(&app.id, &scopes, user, ttl.as_millis() as i64)
        .await
    {
        Ok(token) => no_store(
            Json(TokenAnswer {
                access_token: token,
                token_type: "Bearer",
                expires_in: ttl.as_secs(),
                scope: scopes.join(" "),
            })
            .into_response(),
        ),
        Err(e) => {
            tracing::error!(error = %e, "issuing a token failed on the database");
            no_store(
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    Json(json!({"error": "temporarily_unavailable",
                        "error_description": "the database is unavailable; try again"})),
                )
                    .into_response(),
            )
        }
    }
}
