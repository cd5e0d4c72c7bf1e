//! Who is calling: credentials read from a request, resolved to a [`Caller`] — an owner
//! (`posthorn_core::Owner`), what it may see, and what it may do (its scopes).
//!
//! Credentials come as `Authorization: Bearer TOKEN` (the `/v1` API), `X-Auth-Token: TOKEN`
//! (wazo-webhookd's front door) or HTTP Basic `client_id:client_secret` (FluidSurveys' front
//! door and the OAuth2 token endpoint); [`Credentials::from_headers`] reads all three, and each
//! front says which it accepts. Today a token is the admin token; applications' tokens and
//! client credentials resolve here too once they exist (section 7 of the contract).
//!
//! Handlers never compare owners themselves: they pass [`Caller::visibility`] to the store's
//! reads, which return nothing of another owner's (a 404, never its data).

use axum::http::header;
use axum::http::HeaderMap;
use base64::Engine;
use posthorn_core::{Owner, Visibility};

use crate::error::ApiError;
use crate::AppState;

/// What an application may be allowed to do; the admin may do everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Its own subscriptions, their deliveries and logs; read event types and services.
    Subscriptions,
    /// Publish events (`POST /v1/events`).
    Publish,
    /// Read and acknowledge its own poll subscriptions' feeds.
    Consume,
}

impl Scope {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "subscriptions" => Some(Scope::Subscriptions),
            "publish" => Some(Scope::Publish),
            "consume" => Some(Scope::Consume),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Subscriptions => "subscriptions",
            Scope::Publish => "publish",
            Scope::Consume => "consume",
        }
    }
}

/// Credentials as a request carries them.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    Bearer(String),
    AuthToken(String),
    Basic { id: String, secret: String },
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret.
        match self {
            Credentials::Bearer(_) => f.write_str("Bearer(…)"),
            Credentials::AuthToken(_) => f.write_str("AuthToken(…)"),
            Credentials::Basic { id, .. } => write!(f, "Basic({id}, …)"),
        }
    }
}

impl Credentials {
    /// The credentials of a request: `Authorization` (Bearer or Basic) or `X-Auth-Token`. A
    /// request that carries both, saying different things, has none: which one it meant is not
    /// guessed (a wrong token beside a right one is refused).
    pub fn from_headers(headers: &HeaderMap) -> Option<Self> {
        let auth_token = headers
            .get("x-auth-token")
            .map(|v| v.to_str().map(str::trim).unwrap_or_default());
        let authorization = Self::from_authorization(headers);
        match (authorization, auth_token) {
            (Some(Credentials::Bearer(t)), Some(a)) if t != a => None,
            (Some(Credentials::Basic { .. }), Some(_)) => None,
            (Some(c), _) => Some(c),
            (None, _) if headers.contains_key(header::AUTHORIZATION) => None,
            (None, Some(t)) if !t.is_empty() => Some(Credentials::AuthToken(t.to_owned())),
            (None, _) => None,
        }
    }

    fn from_authorization(headers: &HeaderMap) -> Option<Self> {
        if let Some(value) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
        {
            let (scheme, rest) = value.trim().split_once(' ')?;
            let rest = rest.trim();
            if scheme.eq_ignore_ascii_case("bearer") && !rest.is_empty() {
                return Some(Credentials::Bearer(rest.to_owned()));
            }
            if scheme.eq_ignore_ascii_case("basic") {
                return basic(rest);
            }
            return None;
        }
        None
    }
}

/// `base64(id:secret)`, each part form-encoded as RFC 6749 §2.3.1 asks of OAuth2 clients.
fn basic(encoded: &str) -> Option<Credentials> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (id, secret) = text.split_once(':')?;
    let decode = |s: &str| -> Option<String> {
        urlencoding::decode(&s.replace('+', " "))
            .ok()
            .map(|c| c.into_owned())
    };
    Some(Credentials::Basic {
        id: decode(id)?,
        secret: decode(secret)?,
    })
}

/// What a route asks of its caller. A handler names it in its signature as [`Can<P>`], which is
/// checked as the request is read (before the handler runs): a handler that has a `Can<P>` has a
/// caller who may do `P`, and a handler has no other way to get a caller of the `/v1` API.
pub trait Permission: Send + Sync + 'static {
    /// `Ok` when `caller` may; a 403 naming what is missing otherwise.
    fn check(caller: &Caller) -> Result<(), ApiError>;
}

/// The admin only (applications, event types' writes, the service's own settings).
pub struct AdminOnly;
/// The `subscriptions` scope: the caller's own subscriptions, their deliveries and logs.
pub struct ManageSubscriptions;
/// The `publish` scope: publishing events.
pub struct Publish;
/// The `consume` scope: reading and acknowledging its own poll subscriptions' feeds.
pub struct Consume;

impl Permission for AdminOnly {
    fn check(caller: &Caller) -> Result<(), ApiError> {
        caller.require_admin()
    }
}

impl Permission for ManageSubscriptions {
    fn check(caller: &Caller) -> Result<(), ApiError> {
        caller.require(Scope::Subscriptions)
    }
}

impl Permission for Publish {
    fn check(caller: &Caller) -> Result<(), ApiError> {
        caller.require(Scope::Publish)
    }
}

impl Permission for Consume {
    fn check(caller: &Caller) -> Result<(), ApiError> {
        caller.require(Scope::Consume)
    }
}

/// A caller who may do `P`, checked when the request was read (the extractor is with the
/// dashboard's cookie, in the `session` module, which reads both credentials).
pub struct Can<P: Permission>(Caller, std::marker::PhantomData<P>);

impl<P: Permission> Can<P> {
    /// `caller`, if it may do `P`.
    pub(crate) fn check(caller: Caller) -> Result<Self, ApiError> {
        P::check(&caller)?;
        Ok(Self(caller, std::marker::PhantomData))
    }
}

impl<P: Permission> std::ops::Deref for Can<P> {
    type Target = Caller;

    fn deref(&self) -> &Caller {
        &self.0
    }
}

/// Who is calling, and what it may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    owner: Owner,
    /// `None`: every scope (the admin).
    scopes: Option<Vec<Scope>>,
    /// The user an application's token acts for, when it named one (`POST /oauth/token user=…`).
    user: Option<String>,
}

impl Caller {
    pub fn admin() -> Self {
        Self {
            owner: Owner::Admin,
            scopes: None,
            user: None,
        }
    }

    /// The owner of what this caller creates and publishes.
    pub fn owner(&self) -> &Owner {
        &self.owner
    }

    /// Who this caller is when it publishes.
    pub fn principal(&self) -> posthorn_core::Principal {
        self.owner.clone().into()
    }

    pub fn is_admin(&self) -> bool {
        self.owner == Owner::Admin
    }

    /// What this caller may see: everything for the admin, its own objects otherwise.
    pub fn visibility(&self) -> Visibility {
        match self.owner {
            Owner::Admin => Visibility::Everything,
            _ => Visibility::OwnedBy(self.owner.clone()),
        }
    }

    /// A 403 naming the scope unless the caller has it.
    fn require(&self, scope: Scope) -> Result<(), ApiError> {
        match &self.scopes {
            None => Ok(()),
            Some(s) if s.contains(&scope) => Ok(()),
            Some(_) => Err(ApiError::Forbidden(format!(
                "this needs the scope {}",
                scope.as_str()
            ))),
        }
    }

    /// A 403 unless the caller is the admin.
    fn require_admin(&self) -> Result<(), ApiError> {
        if self.is_admin() {
            Ok(())
        } else {
            Err(ApiError::Forbidden("only the admin may do this".into()))
        }
    }

    /// The caller these credentials stand for, if any: the admin token, or an application's
    /// access token (checked against the database, through a cache trusted for half a second).
    pub async fn resolve(
        state: &AppState,
        credentials: &Credentials,
    ) -> Result<Option<Self>, ApiError> {
        let token = match credentials {
            Credentials::Bearer(t) | Credentials::AuthToken(t) => t,
            Credentials::Basic { .. } => return Ok(None),
        };
        if same(token.as_bytes(), state.admin.token().as_bytes()) {
            return Ok(Some(Self::admin()));
        }
        if !token.starts_with("pht_") {
            return Ok(None);
        }
        Ok(state.store.token(token).await?.map(|grant| Caller {
            owner: Owner::Application(grant.application_id),
            scopes: Some(
                grant
                    .scopes
                    .iter()
                    .filter_map(|s| Scope::parse(s))
                    .collect(),
            ),
            user: grant.user,
        }))
    }

    /// The user this caller's token acts for, if it names one.
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// An application with these scopes (as stored), calling with its client credentials.
    pub fn for_application(id: &str, scopes: &[String]) -> Self {
        Caller {
            owner: Owner::Application(id.to_owned()),
            scopes: Some(scopes.iter().filter_map(|s| Scope::parse(s)).collect()),
            user: None,
        }
    }

    /// An application caller, for tests.
    #[cfg(test)]
    fn application(id: &str, scopes: Vec<Scope>) -> Self {
        Caller {
            owner: Owner::Application(id.to_owned()),
            scopes: Some(scopes),
            user: None,
        }
    }
}

/// Compares in constant time, so that timing does not reveal how much of a token matched (only
/// whether the lengths differ, which every token's format says anyway). Run on every request
/// that carries the admin token: no digest of either side (callgrind put two SHA-256 per publish
/// at 2.5 % of a delivery's instructions).
pub(crate) fn same(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.ct_eq(b).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn tokens_match_only_whole() {
        assert!(same(b"ph_admin_abc", b"ph_admin_abc"));
        assert!(!same(b"ph_admin_abc", b"ph_admin_abd"));
        assert!(!same(b"ph_admin_abc", b"ph_admin_ab"));
        assert!(!same(b"", b"x"));
    }

    #[test]
    fn credentials_are_read_from_each_header() {
        assert_eq!(
            Credentials::from_headers(&headers(&[("authorization", "Bearer  tok ")])),
            Some(Credentials::Bearer("tok".into()))
        );
        assert_eq!(
            Credentials::from_headers(&headers(&[("authorization", "bearer tok")])),
            Some(Credentials::Bearer("tok".into()))
        );
        assert_eq!(
            Credentials::from_headers(&headers(&[("x-auth-token", "tok")])),
            Some(Credentials::AuthToken("tok".into()))
        );
        // RFC 6749 §2.3.1: id and secret are form-encoded before Basic encodes them.
        let encoded = base64::engine::general_purpose::STANDARD.encode("my%3Aid:s+cr%25t");
        assert_eq!(
            Credentials::from_headers(&headers(&[("authorization", &format!("Basic {encoded}"))])),
            Some(Credentials::Basic {
                id: "my:id".into(),
                secret: "s cr%t".into()
            })
        );
        assert_eq!(
            Credentials::from_headers(&headers(&[("authorization", "Token x")])),
            None
        );
        assert_eq!(Credentials::from_headers(&headers(&[])), None);
        // Both, agreeing: that token; disagreeing: none.
        assert_eq!(
            Credentials::from_headers(&headers(&[
                ("authorization", "Bearer tok"),
                ("x-auth-token", "tok")
            ])),
            Some(Credentials::Bearer("tok".into()))
        );
        assert_eq!(
            Credentials::from_headers(&headers(&[
                ("authorization", "Bearer tok"),
                ("x-auth-token", "forged")
            ])),
            None
        );
        let shown = format!(
            "{:?}",
            Credentials::Basic {
                id: "i".into(),
                secret: "hidden".into()
            }
        );
        assert!(!shown.contains("hidden"));
    }

    #[test]
    fn scopes_are_required_of_applications_only() {
        assert!(Caller::admin().require(Scope::Publish).is_ok());
        let app = Caller::application("app_1", vec![Scope::Subscriptions]);
        assert!(app.require(Scope::Subscriptions).is_ok());
        assert!(app.require(Scope::Publish).is_err());
        assert!(app.require_admin().is_err());
        assert_eq!(
            app.visibility(),
            Visibility::OwnedBy(Owner::Application("app_1".into()))
        );
    }
}
