//! The OpenAPI document, generated from the handlers' annotations and the types they exchange.

use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, ClientCredentials, Flow, HttpAuthScheme, HttpBuilder, OAuth2, Scopes,
    SecurityScheme,
};
use utoipa::{Modify, OpenApi};

use crate::routes::{
    applications, deliveries, event_types, events, filters, fluidsurveys, oauth, service, stats,
    subscriptions, wazo,
};

#[derive(OpenApi)]
#[openapi(
    info(title = "Posthorn", description = "Webhook dispatch service"),
    paths(
        service::healthz, service::readyz, service::services, service::sources,
        crate::telemetry::metrics,
        events::publish, events::list, events::show,
        event_types::put, event_types::show, event_types::list, event_types::delete,
        subscriptions::create, subscriptions::list, subscriptions::show, subscriptions::replace,
        subscriptions::patch, subscriptions::delete, subscriptions::enable, subscriptions::disable,
        subscriptions::test, subscriptions::rotate_secret, subscriptions::recover,
        filters::evaluate, deliveries::list, deliveries::list_for_subscription,
        deliveries::list_for_event, deliveries::show, deliveries::retry, stats::deliveries,
        applications::create, applications::list, applications::show, applications::delete,
        applications::rotate_secret, applications::portal_link, oauth::token,
        fluidsurveys::list, fluidsurveys::subscribe, fluidsurveys::unsubscribe,
        wazo::list, wazo::create, wazo::show, wazo::edit, wazo::delete, wazo::services, wazo::logs,
        wazo::user_list, wazo::user_create, wazo::user_show, wazo::user_edit, wazo::user_delete,
        wazo::status,
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
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "The admin token, or an application's access token from /oauth/token",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "x_auth_token",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-Auth-Token",
                "The admin token or an application's access token (the wazo-webhookd door)",
            ))),
        );
        components.add_security_scheme(
            "basic",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Basic)
                    .description(Some(
                        "An application's client_id:client_secret (front doors)",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "oauth2",
            SecurityScheme::OAuth2(OAuth2::new([Flow::ClientCredentials(
                ClientCredentials::new(
                    "/oauth/token",
                    Scopes::from_iter([
                        ("subscriptions", "manage its own subscriptions, read their deliveries, event types and services"),
                        ("publish", "publish events (for itself as tenant)"),
                    ]),
                ),
            )])),
        );
    }
}
