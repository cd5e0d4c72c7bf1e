//! The OpenAPI document, generated from the handlers' annotations and the types they exchange.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::routes::{deliveries, event_types, events, filters, service, subscriptions};

#[derive(OpenApi)]
#[openapi(
    info(title = "Posthorn", description = "Webhook dispatch service"),
    paths(
        service::healthz, service::readyz, service::services,
        events::publish, events::list, events::show,
        event_types::put, event_types::show, event_types::list, event_types::delete,
        subscriptions::create, subscriptions::list, subscriptions::show, subscriptions::replace,
        subscriptions::patch, subscriptions::delete, subscriptions::enable, subscriptions::disable,
        subscriptions::test, subscriptions::rotate_secret, subscriptions::recover,
        filters::evaluate, deliveries::list, deliveries::list_for_subscription,
        deliveries::list_for_event, deliveries::show, deliveries::retry,
    ),
    components(schemas(crate::error::Problem, posthorn_core::FieldError)),
    modifiers(&Bearer),
)]
pub struct ApiDoc;

struct Bearer;

impl Modify for Bearer {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}
