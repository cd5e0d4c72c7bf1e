//! One module per resource; [`routes`] puts them together.

pub(crate) mod applications;
pub(crate) mod deliveries;
pub(crate) mod docs;
pub(crate) mod event_types;
pub(crate) mod events;
pub(crate) mod feed;
pub(crate) mod filters;
pub(crate) mod oauth;
pub(crate) mod service;
pub(crate) mod stats;
pub(crate) mod subscriptions;

use axum::routing::{get, post};
use axum::Router;

use crate::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(service::healthz))
        .route("/readyz", get(service::readyz))
        .route("/metrics", get(crate::telemetry::metrics))
        .route("/docs", get(docs::docs))
        .route("/v1/services", get(service::services))
        .route("/v1/sources", get(service::sources))
        .route("/oauth/token", post(oauth::token))
        .merge(crate::doors::wazo::routes())
        .merge(crate::doors::fluidsurveys::routes())
        .route(
            "/v1/applications",
            post(applications::create).get(applications::list),
        )
        .route(
            "/v1/applications/{id}",
            get(applications::show).delete(applications::delete),
        )
        .route(
            "/v1/applications/{id}/rotate-secret",
            post(applications::rotate_secret),
        )
        .route(
            "/v1/applications/{id}/revoke-tokens",
            post(applications::revoke_tokens),
        )
        .route("/v1/events", post(events::publish).get(events::list))
        .route("/v1/events/{id}", get(events::show))
        .route(
            "/v1/events/{id}/deliveries",
            get(deliveries::list_for_event),
        )
        .route("/v1/deliveries", get(deliveries::list))
        .route("/v1/stats/deliveries", get(stats::deliveries))
        .route("/v1/event-types", get(event_types::list))
        .route(
            "/v1/event-types/{name}",
            get(event_types::show)
                .put(event_types::put)
                .delete(event_types::delete),
        )
        .route(
            "/v1/subscriptions",
            post(subscriptions::create).get(subscriptions::list),
        )
        .route(
            "/v1/subscriptions/{id}",
            get(subscriptions::show)
                .put(subscriptions::replace)
                .patch(subscriptions::patch)
                .delete(subscriptions::delete),
        )
        .route("/v1/subscriptions/{id}/enable", post(subscriptions::enable))
        .route(
            "/v1/subscriptions/{id}/disable",
            post(subscriptions::disable),
        )
        .route("/v1/subscriptions/{id}/test", post(subscriptions::test))
        .route("/v1/subscriptions/{id}/feed", get(feed::read))
        .route("/v1/subscriptions/{id}/feed/ack", post(feed::acknowledge))
        .route("/v1/subscriptions/{id}/feed/stream", get(feed::stream))
        .route(
            "/v1/subscriptions/{id}/rotate-secret",
            post(subscriptions::rotate_secret),
        )
        .route(
            "/v1/subscriptions/{id}/recover",
            post(subscriptions::recover),
        )
        .route(
            "/v1/subscriptions/{id}/deliveries",
            get(deliveries::list_for_subscription),
        )
        .route("/v1/filters/evaluate", post(filters::evaluate))
        .route("/v1/deliveries/{id}", get(deliveries::show))
        .route("/v1/deliveries/{id}/retry", post(deliveries::retry))
        .route(
            "/v1/applications/{id}/portal-link",
            post(applications::portal_link),
        )
        .fallback(service::not_found)
        .method_not_allowed_fallback(service::method_not_allowed)
}

/// The methods the route at `path` takes, from the OpenAPI document (the one list of routes).
pub(crate) fn allowed_methods(path: &str) -> Vec<String> {
    use std::sync::OnceLock;
    static PATHS: OnceLock<Vec<(Vec<String>, Vec<String>)>> = OnceLock::new();
    let paths = PATHS.get_or_init(|| {
        let doc = crate::openapi_document();
        let mut paths: Vec<(Vec<String>, Vec<String>)> = doc["paths"]
            .as_object()
            .map(|p| {
                p.iter()
                    .map(|(template, ops)| {
                        let segments = template.split('/').map(str::to_owned).collect();
                        let methods = ops
                            .as_object()
                            .map(|o| o.keys().map(|m| m.to_ascii_uppercase()).collect())
                            .unwrap_or_default();
                        (segments, methods)
                    })
                    .collect()
            })
            .unwrap_or_default();
        for page in ["/docs", "/openapi.json"] {
            paths.push((
                page.split('/').map(str::to_owned).collect(),
                vec!["GET".to_owned()],
            ));
        }
        paths
    });
    let asked: Vec<&str> = path.split('/').collect();
    paths
        .iter()
        .find(|(segments, _)| {
            segments.len() == asked.len()
                && segments
                    .iter()
                    .zip(&asked)
                    .all(|(t, a)| t == a || (t.starts_with('{') && !a.is_empty()))
        })
        .map(|(_, methods)| methods.clone())
        .unwrap_or_default()
}
