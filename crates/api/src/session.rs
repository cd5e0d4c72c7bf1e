//! The dashboard's credentials: what it signs (the admin's session cookie, the portal's link
//! tickets), how a request's cookie becomes a `Caller` (with its CSRF and `Origin` checks), and
//! the `/v1` extractor that takes a Bearer token or that cookie. Apart from `auth` (tokens and
//! scopes), which knows nothing of cookies, and from `ui` (the pages and sign-in routes).
//!
//! Both are `prefix` + fields + an HMAC-SHA256 under a key derived from the admin token, so they
//! hold on every process of a deployment (which share the token), and rotating the admin token
//! ends every admin session and every portal link at once. A sign-out ends one session: its id
//! (the nonce) is kept in `revoked_sessions` until it would have expired, refused by every process. An application's
//! session is not signed here: it is an ordinary access token (`pht_…`), checked, expired and
//! revoked like any other.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, Method};
use posthorn_core::time::now_ms;

use crate::auth::{same, Caller, Can, Credentials, Permission};
use crate::error::ApiError;
use crate::AppState;

const ADMIN: &str = "phs_";
const PORTAL: &str = "ppl_";

fn key(admin_token: &str) -> Hmac<Sha256> {
    let mut derive =
        Hmac::<Sha256>::new_from_slice(admin_token.as_bytes()).expect("HMAC takes any key length");
    derive.update(b"posthorn-ui-v1");
    let key = derive.finalize().into_bytes();
    Hmac::<Sha256>::new_from_slice(&key).expect("HMAC takes any key length")
}

fn mac(admin_token: &str, what: &str) -> String {
    let mut m = key(admin_token);
    m.update(what.as_bytes());
    URL_SAFE_NO_PAD.encode(m.finalize().into_bytes())
}

/// A new admin session, valid until `expires_ms`.
pub fn admin_session(admin_token: &str, expires_ms: i64) -> String {
    let nonce = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 12]>());
    let body = format!("{expires_ms}.{nonce}");
    format!(
        "{ADMIN}{body}.{}",
        mac(admin_token, &format!("admin|{body}"))
    )
}

/// Whether `value` is an admin session this server signed, not expired at `now_ms`.
pub fn is_admin_session(admin_token: &str, value: &str, now_ms: i64) -> bool {
    let Some(rest) = value.strip_prefix(ADMIN) else {
        return false;
    };
    let Some((body, sig)) = rest.rsplit_once('.') else {
        return false;
    };
    let expires: i64 = body
        .split('.')
        .next()
        .and_then(|e| e.parse().ok())
        .unwrap_or(0);
    same(
        sig.as_bytes(),
        mac(admin_token, &format!("admin|{body}")).as_bytes(),
    ) && expires > now_ms
}

/// The id of an admin session (its nonce) and when it expires, for a sign-out to revoke it.
pub fn admin_session_id(value: &str) -> Option<(String, i64)> {
    let rest = value.strip_prefix(ADMIN)?;
    let (body, _) = rest.rsplit_once('.')?;
    let (expires, nonce) = body.split_once('.')?;
    Some((nonce.to_owned(), expires.parse().ok()?))
}

/// The CSRF token of a cookie session: what a state-changing request must send beside it in
/// `X-CSRF-Token` (a page of another origin can make the browser send the cookie, not read this).
pub fn csrf_token(admin_token: &str, session: &str) -> String {
    mac(admin_token, &format!("csrf|{session}"))
}

/// A portal ticket: opens the dashboard as `application_id` until `expires_ms`.
pub fn portal_ticket(admin_token: &str, application_id: &str, expires_ms: i64) -> String {
    let body = format!("{application_id}.{expires_ms}");
    format!(
        "{PORTAL}{body}.{}",
        mac(admin_token, &format!("portal|{body}"))
    )
}

/// The application a ticket opens the dashboard for, if this server signed it and it has not
/// expired at `now_ms`.
pub fn open_portal_ticket(admin_token: &str, ticket: &str, now_ms: i64) -> Option<String> {
    let rest = ticket.strip_prefix(PORTAL)?;
    let (body, sig) = rest.rsplit_once('.')?;
    if !same(
        sig.as_bytes(),
        mac(admin_token, &format!("portal|{body}")).as_bytes(),
    ) {
        return None;
    }
    let (app, expires) = body.rsplit_once('.')?;
    (expires.parse::<i64>().ok()? > now_ms).then(|| app.to_owned())
}

/// The session cookie's name.
pub const COOKIE: &str = "posthorn_session";

/// The session cookie of a request, if it has one.
pub(crate) fn cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_owned())
        .filter(|v| !v.is_empty())
}

/// The caller a session cookie stands for. A request that changes something must prove it comes
/// from the dashboard's own page: an `Origin` of this host when the browser sends one, and the
/// session's CSRF token.
pub(crate) async fn cookie_caller(
    state: &AppState,
    parts: &Parts,
    session: &str,
) -> Result<Caller, ApiError> {
    if !matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS) {
        if let Some(origin) = parts.headers.get(header::ORIGIN) {
            let origin = origin.to_str().unwrap_or_default();
            if !own_origin(state, &parts.headers, origin) {
                return Err(ApiError::Forbidden(
                    "a request from another origin cannot use the dashboard's session".into(),
                ));
            }
        }
        let given = parts
            .headers
            .get("x-csrf-token")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let expected = csrf_token(&state.admin.token(), session);
        if !same(given.as_bytes(), expected.as_bytes()) {
            return Err(ApiError::Forbidden(
                "a change made with the dashboard's session needs its X-CSRF-Token".into(),
            ));
        }
    }
    if is_admin_session(&state.admin.token(), session, now_ms())
        && !admin_session_id(session).is_some_and(|(id, _)| state.admin.is_revoked(&id))
    {
        return Ok(Caller::admin());
    }
    if session.starts_with("pht_") {
        return Caller::resolve(state, &Credentials::Bearer(session.to_owned()))
            .await?
            .ok_or(ApiError::Unauthorized);
    }
    Err(ApiError::Unauthorized)
}

/// Whether `origin` is this server as the browser reached it: the `Host` (or, behind a proxy,
/// `X-Forwarded-Host`) the request names, or the configured public URL.
fn own_origin(state: &AppState, headers: &HeaderMap, origin: &str) -> bool {
    let Some((_, from)) = origin.split_once("://") else {
        return false;
    };
    if let Some(public) = &state.ui.public_url {
        if public.trim_end_matches('/').eq_ignore_ascii_case(origin) {
            return true;
        }
    }
    [header::HOST.as_str(), "x-forwarded-host"]
        .iter()
        .filter_map(|name| headers.get(*name).and_then(|h| h.to_str().ok()))
        .any(|host| !host.is_empty() && host.eq_ignore_ascii_case(from))
}

/// The `/v1` API takes `Authorization: Bearer` (section 2 of the contract); a request without
/// `Authorization` may carry the dashboard's session cookie instead (this module).
impl<P: Permission> FromRequestParts<AppState> for Can<P> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        Can::check(caller(parts, state).await?)
    }
}

/// The caller of a `/v1` request: its Bearer token, else its cookie.
async fn caller(parts: &Parts, state: &AppState) -> Result<Caller, ApiError> {
    match Credentials::from_headers(&parts.headers) {
        Some(c @ Credentials::Bearer(_)) => Caller::resolve(state, &c)
            .await?
            .ok_or(ApiError::Unauthorized),
        Some(_) => Err(ApiError::Unauthorized),
        None if parts.headers.contains_key(header::AUTHORIZATION) => Err(ApiError::Unauthorized),
        None => match cookie(&parts.headers) {
            Some(session) => cookie_caller(state, parts, &session).await,
            None => Err(ApiError::Unauthorized),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_and_tickets_hold_only_as_signed_and_in_time() {
        let token = "admin-token-0123456789";
        let s = admin_session(token, 2_000);
        assert!(is_admin_session(token, &s, 1_000));
        assert!(!is_admin_session(token, &s, 2_000), "expired");
        assert!(
            !is_admin_session("another-admin-token", &s, 1_000),
            "rotated"
        );
        let forged = s.replacen("phs_2000", "phs_9999", 1);
        assert!(!is_admin_session(token, &forged, 1_000));
        assert_ne!(
            csrf_token(token, &s),
            csrf_token(token, &admin_session(token, 2_000))
        );

        let t = portal_ticket(token, "app_1", 2_000);
        assert_eq!(
            open_portal_ticket(token, &t, 1_000).as_deref(),
            Some("app_1")
        );
        assert_eq!(open_portal_ticket(token, &t, 2_001), None);
        let other = t.replacen("app_1", "app_2", 1);
        assert_eq!(open_portal_ticket(token, &other, 1_000), None);
        assert_eq!(
            open_portal_ticket(token, "ppl_app_1.9999999999999.AAAA", 1_000),
            None
        );
    }
}
