//! Who calls the wazo door: `X-Auth-Token` (or a Bearer token, or `?token=`), an application's
//! token or the admin's; the admin may act for an application with `Wazo-Tenant`.

use axum::http::HeaderMap;
use axum::response::Response;

use super::error::{unauthorized, WazoError};
use crate::auth::{Caller, Credentials, ManageSubscriptions, Permission};
use crate::AppState;

/// The caller, with the `subscriptions` scope every route of the door needs.
pub(crate) async fn caller(state: &AppState, headers: &HeaderMap) -> Result<Caller, WazoError> {
    let credentials = match Credentials::from_headers(headers) {
        Some(c @ (Credentials::AuthToken(_) | Credentials::Bearer(_))) => c,
        _ => return Err(unauthorized()),
    };
    let caller = Caller::resolve(state, &credentials)
        .await?
        .ok_or_else(unauthorized)?;
    ManageSubscriptions::check(&caller)?;
    match headers.get("wazo-tenant").and_then(|v| v.to_str().ok()) {
        Some(tenant) if caller.is_admin() && tenant != "admin" => {
            let tenant = posthorn_core::ApplicationId::parse(tenant).ok_or_else(unauthorized)?;
            let app = state
                .store
                .application(&tenant)
                .await?
                .ok_or_else(unauthorized)?;
            Ok(Caller::for_application(&app.id, &app.scopes))
        }
        _ => Ok(caller),
    }
}

/// Who `users/me` is: the user the caller's token acts for (`POST /oauth/token user=…`), else the
/// application itself.
pub(crate) fn me(caller: &Caller) -> String {
    caller
        .user()
        .map_or_else(|| caller.owner().as_str().to_owned(), str::to_owned)
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
