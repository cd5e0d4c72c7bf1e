//! The HTTP API of Posthorn (`/v1`, health, OpenAPI), as the contract fixes it.
//!
//! - [`router`] builds the axum router over an [`AppState`].
//! - `routes/` has one file per resource: events, subscriptions, deliveries, and the service
//!   routes (health, services, OpenAPI).
//! - [`auth`] reads credentials and resolves the [`auth::Caller`]: its owner, what it sees, its
//!   scopes; a handler takes its caller as `Can<P>` (checked for `P` as the request is read);
//!   `session.rs` is the dashboard's cookie and that extractor.
//! - [`error`] is the one place errors become problem+json; [`extract`] reads bodies and typed
//!   path ids (`PathId<K>`); `list.rs` pages; `openapi.rs` the document; `doors/` the wazo and
//!   FluidSurveys front doors; `ui/` the dashboard; `server.rs` and `telemetry.rs` the HTTP server,
//!   its limits, its log and `/metrics`.
//!
//! The API knows neither the dispatcher nor any delivery service: it publishes through the
//! store's `Publisher`, writes subscriptions through its `SubscriptionWriter`, and the store tells
//! the dispatcher when work falls due.
//!
//! Invariants: a handler answers 202 for a publish only after the store has committed the event
//! and its deliveries; nothing a client sends produces a 500 (database trouble is a 503); an
//! object of another owner is a 404, never its data.

pub mod auth;
mod doors;
pub mod error;
pub mod extract;
mod list;
mod openapi;
mod routes;
pub mod server;
mod session;
pub mod telemetry;
pub mod ui;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::Router;
use posthorn_core::Registry;
use posthorn_store::{EventTypeCache, Publisher, Store, SubscriptionWriter};

/// What every handler can reach: one shared [`Shared`], so that handing it to a request (axum
/// clones the state for every one) is one reference count, not one per pool, cache and channel.
#[derive(Clone)]
pub struct AppState(Arc<Shared>, Arc<serde_json::Value>);

impl AppState {
    pub fn new(shared: Shared) -> Self {
        let doc = openapi::document_for(&shared.services);
        Self(Arc::new(shared), Arc::new(doc))
    }

    /// The OpenAPI document as this process serves it: the services it runs named in it.
    pub fn openapi(&self) -> &serde_json::Value {
        &self.1
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The event sources' state as the API shows it: read from the sources' board, which the binary
/// hands over as this reading (the API does not know the `ingest` crate).
#[derive(Clone)]
pub struct Sources(Arc<dyn Fn() -> Vec<posthorn_wire::api::SourceStatus> + Send + Sync>);

impl Sources {
    pub fn new(
        read: impl Fn() -> Vec<posthorn_wire::api::SourceStatus> + Send + Sync + 'static,
    ) -> Self {
        Self(Arc::new(read))
    }

    /// Every source's state, now.
    pub fn all(&self) -> Vec<posthorn_wire::api::SourceStatus> {
        (self.0)()
    }
}

/// The parts of [`AppState`].
pub struct Shared {
    /// Whether this process is fit to serve: `GET /readyz` answers 503 with the reason once a
    /// task it depends on has ended.
    pub readiness: Readiness,
    /// Reads, with the caller's visibility.
    pub store: Store,
    /// The one way events get in.
    pub publisher: Publisher,
    /// The one way subscriptions are written.
    pub subscriptions: SubscriptionWriter,
    pub event_types: EventTypeCache,
    /// The delivery services: listed by `GET /v1/services`, and what subscriptions are checked
    /// against.
    pub services: Arc<Registry>,
    /// How long an application's access token lasts.
    pub token_ttl: std::time::Duration,
    /// The event sources' state (`GET /v1/sources`, `/readyz`).
    pub sources: Sources,
    /// The admin token in force and the admin sessions signed out: both followed from the
    /// database by every process ([`AdminAuth`]).
    pub admin: AdminAuth,
    /// What `/metrics` serves; `None`: no metrics recorder in this process (404).
    pub metrics: Option<telemetry::Metrics>,
    /// The dashboard's settings.
    pub ui: ui::UiConfig,
}

impl Shared {
    /// Whether subscriptions of this service are pulled by their consumer (`poll`), never pushed.
    pub(crate) fn pulled(&self, service: &str) -> bool {
        self.services.get(service).is_some_and(|s| s.pulled())
    }
}

/// Whether the process is fit to serve: set once, by the supervisor, when a background task it
/// cannot do without has ended (the process then stops, non-zero, for its orchestrator to
/// restart it).
#[derive(Debug, Clone, Default)]
pub struct Readiness(Arc<std::sync::OnceLock<String>>);

impl Readiness {
    /// Marks the process unfit, for `why` (the first reason stays).
    pub fn fail(&self, why: String) {
        let _ = self.0.set(why);
    }

    /// Why the process is unfit, if it is.
    pub fn failure(&self) -> Option<&str> {
        self.0.get().map(String::as_str)
    }
}

/// The admin's credentials as this process knows them: the token (which `posthorn admin-token
/// --rotate` changes in the database, and `serve` follows within a second) and the dashboard
/// sessions signed out on any process.
#[derive(Debug, Clone)]
pub struct AdminAuth(Arc<AdminAuthInner>);

#[derive(Debug)]
struct AdminAuthInner {
    token: std::sync::RwLock<Arc<str>>,
    revoked: std::sync::RwLock<std::collections::HashSet<String>>,
}

impl AdminAuth {
    pub fn new(token: &str) -> Self {
        Self(Arc::new(AdminAuthInner {
            token: std::sync::RwLock::new(Arc::from(token)),
            revoked: Default::default(),
        }))
    }

    /// The admin token in force.
    pub fn token(&self) -> Arc<str> {
        self.0
            .token
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Takes `token` as the admin token; whether it changed.
    pub fn set_token(&self, token: &str) -> bool {
        let mut current = self.0.token.write().unwrap_or_else(|e| e.into_inner());
        if &**current == token {
            return false;
        }
        *current = Arc::from(token);
        true
    }

    /// Whether the admin session `id` was signed out.
    pub fn is_revoked(&self, id: &str) -> bool {
        self.0
            .revoked
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains(id)
    }

    /// The sessions signed out, as the database lists them, added to those known (a sign-out
    /// here counts before the database has it; an expired session is refused for its expiry
    /// anyway).
    pub fn set_revoked(&self, ids: impl IntoIterator<Item = String>) {
        self.0
            .revoked
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .extend(ids);
    }

    /// One more session signed out, here, before the next read of the database.
    pub fn revoke(&self, id: &str) {
        self.0
            .revoked
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.to_owned());
    }
}

/// Settings of the API layer.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Largest request body accepted; larger ones get 413.
    pub body_limit: usize,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            body_limit: 1024 * 1024,
        }
    }
}

/// The OpenAPI document of every route (what `GET /openapi.json` serves).
pub fn openapi_document() -> &'static serde_json::Value {
    openapi::document()
}

/// The body limit in force, for the 413 that names it.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

pub fn router(state: AppState, config: &ApiConfig) -> Router {
    // The document describes the routes, so it is served beside them, not from among them.
    routes::routes()
        .route("/openapi.json", axum::routing::get(openapi::serve))
        .merge(ui::routes())
        .layer(axum::middleware::from_fn(doors::wazo::token_in_query))
        .layer(axum::middleware::from_fn(server::head_limits))
        .layer(axum::middleware::from_fn(telemetry::log_request))
        .layer(DefaultBodyLimit::max(config.body_limit))
        .layer(axum::Extension(BodyLimit(config.body_limit)))
        .with_state(state)
}
