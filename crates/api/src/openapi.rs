//! The OpenAPI document, generated from the handlers' annotations and the types they exchange.

use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, ClientCredentials, Flow, HttpAuthScheme, HttpBuilder, OAuth2, Scopes,
    SecurityScheme,
};
use utoipa::{Modify, OpenApi};

use crate::doors::{fluidsurveys, wazo};
use crate::routes::{
    applications, deliveries, event_types, events, feed, filters, oauth, service, stats,
    subscriptions,
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
        feed::read, feed::acknowledge, feed::stream,
        filters::evaluate, deliveries::list, deliveries::list_for_subscription,
        deliveries::list_for_event, deliveries::show, deliveries::retry, stats::deliveries,
        applications::create, applications::list, applications::show, applications::delete,
        applications::rotate_secret, applications::revoke_tokens, applications::portal_link, oauth::token,
        fluidsurveys::list, fluidsurveys::subscribe, fluidsurveys::unsubscribe,
        wazo::list, wazo::create, wazo::show, wazo::edit, wazo::delete, wazo::services, wazo::logs,
        wazo::user_list, wazo::user_create, wazo::user_show, wazo::user_edit, wazo::user_delete,
        wazo::status, wazo::config, wazo::api_spec,
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
                        ("consume", "read and acknowledge its own poll subscriptions' feeds"),
                    ]),
                ),
            )])),
        );
    }
}

/// The document as served: the generated one, with what every operation of a door may answer
/// besides its own statuses written into it (see [`conform`]).
pub fn document() -> &'static serde_json::Value {
    static DOC: std::sync::OnceLock<serde_json::Value> = std::sync::OnceLock::new();
    DOC.get_or_init(|| {
        let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
        conform(&mut doc);
        doc
    })
}

/// Writes into every operation what it may answer that its own annotation does not say, so that
/// the document describes every answer (schemathesis checks it, `.ci/schemathesis.sh`):
///
/// - `/v1` errors are `application/problem+json`, not `application/json` (`/oauth/token`'s are
///   RFC 6749's JSON);
/// - every operation of `/v1` may answer 400 (a malformed request: a path id that does not
///   decode, malformed JSON), 503 (the database away, with `Retry-After`), 500 (a stored row
///   that cannot be read); a secured one 401 and
///   403 (a token without the scope, or an application at an admin route); one with a body 413,
///   415 and 422; one with query parameters 422;
/// - what the handlers check of a field or a query parameter where the types alone do not say it:
///   patterns, lengths, ranges, enumerations, formats (`limit` is 1 to 1000 everywhere);
/// - the wazo-webhookd door (`/1.0`) takes the bearer token as well as `X-Auth-Token`, and answers
///   401, 400 and 503 in its own error shape.
fn conform(doc: &mut serde_json::Value) {
    use serde_json::{json, Value};
    let problem = |what: &str| {
        json!({"description": what, "content": {"application/problem+json":
            {"schema": {"$ref": "#/components/schemas/Problem"}}}})
    };
    let wazo_error = |what: &str| {
        json!({"description": what, "content": {"application/json":
            {"schema": {"$ref": "#/components/schemas/WazoErrorBody"}}}})
    };
    // What the handlers check of a field, where the types alone do not say it.
    let token = "^[A-Za-z0-9_.:-]{1,128}$";
    let pattern = r"^(\*|[A-Za-z0-9_.:-]{1,128}(\.\*)?)$";
    let time = json!({"type": "string", "format": "date-time"});
    let delivery_status =
        json!({"type": "string", "enum": ["pending", "succeeded", "dead", "cancelled"]});
    // A name: 1 to 128 characters, not only spaces; a filter: 1 to its longest.
    let name = json!({"minLength": 1, "maxLength": 128, "pattern": "\\S"});
    let filter = json!({"minLength": 1, "maxLength": posthorn_core::filter::MAX_LEN});
    let fields = [
        ("PublishRequest/properties/name", json!({"pattern": token})),
        ("PublishRequest/properties/id", json!({"pattern": token})),
        (
            "PublishRequest/properties/tenant",
            json!({"pattern": token}),
        ),
        (
            "PublishRequest/properties/origin",
            json!({"maxLength": 256}),
        ),
        (
            "PublishRequest/properties/occurred_at",
            json!({"format": "date-time"}),
        ),
        (
            "PublishBody/oneOf/1",
            json!({"minItems": 1, "maxItems": crate::routes::events::MAX_BATCH}),
        ),
        ("ApplicationRequest/properties/name", name.clone()),
        (
            "ApplicationRequest/properties/scopes",
            json!({"minItems": 1,
            "items": {"type": "string", "enum": ["subscriptions", "publish"]}}),
        ),
        (
            "PortalLinkRequest/properties/expires_in_s",
            json!({"minimum": 60, "maximum": 86400}),
        ),
        ("EvaluateRequest/properties/filter", filter.clone()),
        ("SubscriptionSpec/properties/name", name.clone()),
        (
            "SubscriptionSpec/properties/events",
            json!({"minItems": 1,
            "items": {"type": "string", "pattern": pattern}}),
        ),
        ("SubscriptionSpec/properties/filter", filter.clone()),
        (
            "SubscriptionSpec/properties/max_in_flight",
            json!({"minimum": 1, "maximum": 10000}),
        ),
        (
            "SubscriptionSpec/properties/rate_limit_per_s",
            json!({"minimum": 1, "maximum": posthorn_core::subscription::MAX_RATE_LIMIT_PER_S}),
        ),
        (
            "RetrySpec/properties/schedule_s",
            json!({"maxItems": posthorn_core::subscription::MAX_SCHEDULE_STEPS,
            "items": {"type": "integer", "minimum": 0, "maximum": posthorn_core::subscription::MAX_WAIT_S}}),
        ),
        (
            "RecoverRequest/properties/since",
            json!({"format": "date-time"}),
        ),
        (
            "EventTypeRequest/properties/schema",
            json!({"type": ["object", "boolean", "null"]}),
        ),
    ];
    // Routing attributes: names of the event-name charset, values strings, bounded.
    let attributes = |description: &str| {
        json!({"type": "object", "description": description,
            "maxProperties": posthorn_core::event::MAX_ATTRIBUTES,
            "propertyNames": {"pattern": token},
            "additionalProperties": {"type": "string",
                "maxLength": posthorn_core::event::MAX_ATTRIBUTE_VALUE}})
    };
    for (at, description) in [
        (
            "/components/schemas/PublishRequest/properties/attributes",
            "Routing attributes (strings, at most 64): filters read them as `$event.attributes.NAME`; they are not part of the payload.",
        ),
        (
            "/components/schemas/SampleEvent/properties/attributes",
            "Routing attributes (`$event.attributes.NAME`).",
        ),
    ] {
        match doc.pointer_mut(at) {
            Some(slot) => *slot = attributes(description),
            None => debug_assert!(false, "conform: no schema at {at}"),
        }
    }
    if let Some(schemas) = doc.pointer_mut("/components/schemas") {
        for (at, more) in fields {
            match (schemas.pointer_mut(&format!("/{at}")), more) {
                (Some(Value::Object(field)), Value::Object(more)) => field.extend(more),
                // A schema or field renamed: the rule would silently stop being written.
                _ => debug_assert!(false, "conform: no schema field at {at}"),
            }
        }
    }
    let query = |path: &str, name: &str| -> Option<Value> {
        Some(match name {
            "since" | "until" => time.clone(),
            "status" if path.ends_with("deliveries") => delivery_status.clone(),
            "status" if path == "/v1/subscriptions" => {
                json!({"type": "string", "enum": ["active", "disabled"]})
            }
            "window" => json!({"type": "string", "enum": ["hour", "day"]}),
            "metadata" => json!({"type": "string", "pattern": "^[^:]*:"}),
            // The events list pages by sequence number; the others' cursors are an id or a
            // name, and any text works there (what sorts after it follows).
            "cursor" if path == "/v1/events" => {
                // Empty: the first page.
                json!({"type": "string", "pattern": "^[0-9]{0,18}$"})
            }
            "limit" => json!({"type": "integer", "minimum": 1, "maximum": 1000}),
            // A feed's cursor: an event's sequence number, as the feed gave it.
            "after" if path.ends_with("/feed") => {
                json!({"type": "string", "pattern": "^[0-9]{1,18}$"})
            }
            "wait" => json!({"type": "integer", "minimum": 0, "maximum": 30}),
            _ => return None,
        })
    };
    // An http subscription through the wazo door names its URL (wazo's config is strings).
    let wazo_http = json!({"if": {"properties": {"service": {"const": "http"}}, "required": ["service"]},
        "then": {"properties": {"config": {"required": ["url", "method"],
            "properties": {"url": {"type": "string", "format": "uri", "pattern": "^https?://[^/?#\\s]+"},
                           "method": {"type": "string", "enum": ["get", "post", "put", "patch", "delete", "head",
                                                                  "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"]}}}}}});
    let wazo_body = json!({"type": "object", "required": ["name", "service", "config", "events"],
        "allOf": [wazo_http],
        "properties": {"name": {"type": "string", "minLength": 1, "maxLength": 128, "pattern": "\\S"},
                       "service": {"type": "string", "maxLength": 128},
                       "events": {"type": "array", "minItems": 1, "items": {"type": "string", "pattern": pattern}},
                       "config": {"type": "object"},
                       "metadata": {"type": "object"}}});
    let bodies = [
        ("/1.0/subscriptions", "post", wazo_body.clone()),
        ("/1.0/subscriptions/{id}", "put", wazo_body.clone()),
        ("/1.0/users/me/subscriptions", "post", wazo_body.clone()),
        ("/1.0/users/me/subscriptions/{id}", "put", wazo_body),
        (
            "/api/v2/webhooks/subscribe/",
            "post",
            json!({"type": "object",
            "required": ["subscription_url", "event"],
            "properties": {"subscription_url": {"type": "string", "format": "uri"},
                           "event": {"type": "string", "enum": crate::doors::fluidsurveys::translate::EVENTS},
                           "survey": {"type": ["integer", "string", "null"], "minLength": 1, "minimum": 0, "maximum": u64::MAX},
                           "collector": {"type": ["integer", "string", "null"], "minLength": 1, "minimum": 0, "maximum": u64::MAX}}}),
        ),
        (
            "/api/v2/webhooks/unsubscribe/",
            "post",
            json!({"type": "object",
            "required": ["subscription_url"],
            "properties": {"subscription_url": {"type": "string"}}}),
        ),
    ];
    // The token request's form: grant_type, an optional narrowing scope and user, and the
    // client's credentials as two fields (both or neither: else HTTP Basic).
    let scope = "^(subscriptions|publish)( (subscriptions|publish))*$";
    let token_form = json!({"type": "object", "required": ["grant_type"],
        "properties": {"grant_type": {"type": "string", "enum": ["client_credentials"]},
                       "scope": {"type": "string", "pattern": scope},
                       "user": {"type": "string", "pattern": token},
                       "client_id": {"type": "string", "minLength": 1},
                       "client_secret": {"type": "string", "minLength": 1}},
        "oneOf": [{"required": ["client_id", "client_secret"]},
                  {"not": {"anyOf": [{"required": ["client_id"]}, {"required": ["client_secret"]}]}}]});
    if let Some(slot) = doc.pointer_mut(
        "/paths/~1oauth~1token/post/requestBody/content/application~1x-www-form-urlencoded/schema",
    ) {
        *slot = token_form;
    } else {
        debug_assert!(false, "conform: no /oauth/token form");
    }
    // A patch is any part of a subscription's spec, where `null` removes a key (RFC 7396): an
    // optional one then takes its default, so `null` is a value of each optional key; a required
    // one cannot be removed (422), so its schema stays as it is.
    let required: Vec<Value> = doc
        .pointer("/components/schemas/SubscriptionSpec/required")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let patch = doc
        .pointer("/components/schemas/SubscriptionSpec/properties")
        .and_then(Value::as_object)
        .cloned()
        .map(|mut properties| {
            for (name, property) in properties.iter_mut() {
                if !required.contains(&Value::String(name.clone())) {
                    or_null(property);
                }
            }
            json!({"type": "object", "additionalProperties": false, "properties": properties})
        });
    let bodies = bodies
        .into_iter()
        .chain(patch.map(|p| ("/v1/subscriptions/{id}", "patch", p)));
    for (path, method, schema) in bodies {
        let at = format!(
            "/paths/{}/{method}/requestBody/content/application~1json/schema",
            path.replace('~', "~0").replace('/', "~1")
        );
        if let Some(slot) = doc.pointer_mut(&at) {
            *slot = schema;
        }
    }
    free_form_objects_say_so(doc);
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    for (path, item) in paths.iter_mut() {
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        for (method, op) in item.iter_mut() {
            if !matches!(method.as_str(), "get" | "post" | "put" | "patch" | "delete") {
                continue;
            }
            let Some(op) = op.as_object_mut() else {
                continue;
            };
            let has_body = op.contains_key("requestBody");
            let params: Vec<(String, String)> = op
                .get("parameters")
                .and_then(Value::as_array)
                .map(|ps| {
                    ps.iter()
                        .map(|p| {
                            let s = |k: &str| p[k].as_str().unwrap_or_default().to_owned();
                            (s("in"), s("name"))
                        })
                        .collect()
                })
                .unwrap_or_default();
            let secured = op
                .get("security")
                .and_then(Value::as_array)
                .is_some_and(|alts| {
                    alts.iter()
                        .all(|a| a.as_object().is_some_and(|o| !o.is_empty()))
                });
            if let Some(ps) = op.get_mut("parameters").and_then(Value::as_array_mut) {
                for p in ps {
                    if p["in"] == "path"
                        && p["name"] == "name"
                        && path.starts_with("/v1/event-types")
                    {
                        p["schema"] = json!({"type": "string", "pattern": token});
                    }
                    // The ids Posthorn makes, as their types parse them (an event's may be
                    // its publisher's).
                    if p["in"] == "path" && p["name"] == "id" {
                        use posthorn_core::{ApplicationId, DeliveryId, SubscriptionId};
                        let pattern = if path.starts_with("/v1/subscriptions/")
                            || path.starts_with("/1.0/")
                        {
                            Some(SubscriptionId::pattern())
                        } else if path.starts_with("/v1/deliveries/") {
                            Some(DeliveryId::pattern())
                        } else if path.starts_with("/v1/applications/") {
                            Some(ApplicationId::pattern())
                        } else if path.starts_with("/v1/events/") {
                            Some(token.to_owned())
                        } else {
                            None
                        };
                        if let Some(pattern) = pattern {
                            p["schema"] = json!({"type": "string", "pattern": pattern});
                        }
                    }
                    if p["in"] == "query" && path.ends_with("/logs") {
                        let schema = match p["name"].as_str().unwrap_or_default() {
                            "order" => json!({"type": "string", "enum":
                                ["started_at", "ended_at", "status", "attempts", "max_attempts"]}),
                            "direction" => json!({"type": "string", "enum": ["asc", "desc"]}),
                            "from_date" => time.clone(),
                            _ => json!({"type": "integer", "minimum": 0}),
                        };
                        p["schema"] = schema;
                    }
                    if p["in"] == "header" && p["name"] == "Last-Event-ID" {
                        p["schema"] = json!({"type": "string", "pattern": "^[0-9]{1,18}$"});
                    }
                    if p["in"] != "query" || !path.starts_with("/v1/") {
                        continue;
                    }
                    if let Some(schema) = query(path, p["name"].as_str().unwrap_or_default()) {
                        p["schema"] = schema;
                    }
                }
            }
            let mut add: Vec<(&str, Value)> = Vec::new();
            if path.starts_with("/v1/") {
                if let Some(responses) = op.get_mut("responses").and_then(Value::as_object_mut) {
                    for (status, r) in responses.iter_mut() {
                        if status.starts_with('4') || status.starts_with('5') {
                            if let Some(c) = r.get_mut("content").and_then(Value::as_object_mut) {
                                if let Some(json) = c.remove("application/json") {
                                    c.insert("application/problem+json".into(), json);
                                }
                            }
                        }
                    }
                }
                {
                    add.push(("400", problem("A malformed request")));
                    add.push((
                        "503",
                        problem("The database is unavailable; try again (`Retry-After`)"),
                    ));
                    add.push((
                        "500",
                        problem("A stored record could not be read: the server's fault, logged and counted (`posthorn_stored_data_unreadable_total`)"),
                    ));
                    if secured {
                        add.push(("401", problem("No valid token")));
                        add.push(("403", problem("The token may not do this")));
                    }
                    if has_body {
                        add.push(("413", problem("The body is over the limit")));
                        add.push(("415", problem("The body is not JSON")));
                    }
                    if has_body || params.iter().any(|(i, _)| i == "query") {
                        add.push(("422", problem("Invalid: every field at fault is listed")));
                    }
                }
            }
            if path.starts_with("/1.0/") {
                if let Some(alts) = op.get_mut("security").and_then(Value::as_array_mut) {
                    if !alts.iter().any(|a| a.get("bearer").is_some()) {
                        alts.push(json!({"bearer": []}));
                    }
                }
                add.push(("401", wazo_error("No valid token")));
                add.push(("503", wazo_error("The database is unavailable; try again")));
                if has_body || params.iter().any(|(i, _)| i == "query") {
                    add.push(("400", wazo_error("Invalid")));
                }
            }
            if let Some(responses) = op.get_mut("responses").and_then(Value::as_object_mut) {
                for (status, r) in add {
                    responses.entry(status).or_insert(r);
                }
            }
        }
    }
}

/// The document for a process's delivery services: a subscription's `service` is one of their
/// names, and its `config` is held to that service's own schema (the one `GET /v1/services`
/// shows), in the create and replace bodies (a patch names the service only) and in the wazo
/// door's.
pub fn document_for(services: &posthorn_core::service::Registry) -> serde_json::Value {
    use serde_json::{json, Value};
    let mut doc = document().clone();
    let names: Vec<&str> = services.names();
    let mut defs = serde_json::Map::new();
    let per_service: Vec<Value> = services
        .iter()
        .map(|s| {
            let config = embedded(s.name(), s.config_schema(), &mut defs);
            json!({"if": {"properties": {"service": {"const": s.name()}}, "required": ["service"]},
                   "then": {"properties": {"config": config}}})
        })
        .collect();
    if let Some(Value::Object(schemas)) = doc.pointer_mut("/components/schemas") {
        schemas.extend(defs);
    }
    let body = |path: &str, method: &str| {
        format!(
            "/paths/{}/{method}/requestBody/content/application~1json/schema",
            path.replace('~', "~0").replace('/', "~1")
        )
    };
    let specs = [
        (
            "/components/schemas/SubscriptionSpec".to_owned(),
            Configs::All,
        ),
        // A patch's config is merged into the stored one (RFC 7396), so any part of a config
        // may be sent: its service is named, its config is not held to the whole schema.
        (body("/v1/subscriptions/{id}", "patch"), Configs::None),
        (body("/1.0/subscriptions", "post"), Configs::Wazo),
        (body("/1.0/subscriptions/{id}", "put"), Configs::Wazo),
        (body("/1.0/users/me/subscriptions", "post"), Configs::Wazo),
        (
            body("/1.0/users/me/subscriptions/{id}", "put"),
            Configs::Wazo,
        ),
    ];
    for (at, configs) in specs {
        let Some(Value::Object(schema)) = doc.pointer_mut(&at) else {
            debug_assert!(false, "document_for: no schema at {at}");
            continue;
        };
        if let Some(Value::Object(service)) = schema
            .get_mut("properties")
            .and_then(|p| p.get_mut("service"))
        {
            service.insert("enum".into(), json!(names));
        }
        // The wazo door's http config is wazo's (strings: url, method, …, said in its body's
        // own rule); another service's is that service's, as through /v1.
        let rules = per_service
            .iter()
            .zip(services.iter())
            .filter(|(_, s)| match configs {
                Configs::All => true,
                Configs::Wazo => s.name() != "http",
                Configs::None => false,
            })
            .map(|(rule, _)| rule.clone());
        let rules: Vec<Value> = rules.collect();
        match schema.get_mut("allOf") {
            Some(Value::Array(all)) => all.extend(rules),
            // allOf must hold at least one schema.
            _ if rules.is_empty() => {}
            _ => {
                schema.insert("allOf".into(), Value::Array(rules));
            }
        }
    }
    doc
}

/// Lets `schema` also be `null`, unless it already may be.
fn or_null(schema: &mut serde_json::Value) {
    use serde_json::{json, Value};
    let null_type = json!({"type": "null"});
    let nullable = match schema.get("type") {
        Some(Value::String(t)) => t == "null",
        Some(Value::Array(types)) => types.contains(&json!("null")),
        _ => ["oneOf", "anyOf"].iter().any(|k| {
            schema
                .get(*k)
                .and_then(Value::as_array)
                .is_some_and(|alternatives| alternatives.contains(&null_type))
        }),
    };
    if nullable {
        return;
    }
    if let Some(Value::String(t)) = schema.get("type").cloned() {
        schema["type"] = json!([t, "null"]);
        return;
    }
    // A reference or a combination: one alternative more, its description kept beside them.
    let Some(inner) = schema.as_object_mut() else {
        return;
    };
    let mut inner = std::mem::take(inner);
    let mut outer = serde_json::Map::new();
    if let Some(description) = inner.remove("description") {
        outer.insert("description".into(), description);
    }
    outer.insert(
        "anyOf".into(),
        Value::Array(vec![Value::Object(inner), null_type]),
    );
    *schema = Value::Object(outer);
}

/// An object schema that names no property (an event's data, a config, metadata) takes any: JSON
/// Schema reads that from the absence of `additionalProperties`, but generators (openapi-typescript)
/// read it as "none" and type such a field `Record<string, never>`, so it is said outright.
fn free_form_objects_say_so(v: &mut serde_json::Value) {
    use serde_json::Value;
    match v {
        Value::Object(m) => {
            let object = match m.get("type") {
                Some(Value::String(t)) => t == "object",
                Some(Value::Array(ts)) => ts.iter().any(|t| t == "object"),
                _ => false,
            };
            let open = [
                "properties",
                "additionalProperties",
                "patternProperties",
                "$ref",
            ]
            .iter()
            .all(|k| !m.contains_key(*k));
            if object && open {
                m.insert("additionalProperties".into(), Value::Bool(true));
            }
            m.values_mut().for_each(free_form_objects_say_so);
        }
        Value::Array(a) => a.iter_mut().for_each(free_form_objects_say_so),
        _ => {}
    }
}

/// Which configs a subscription body holds to their service's schema.
#[derive(Clone, Copy)]
enum Configs {
    /// Every service's (create, replace).
    All,
    /// Every service's but http, whose config the wazo door takes as wazo's strings.
    Wazo,
    /// None: a patch's config is merged into the stored one.
    None,
}

/// A service's config schema as part of the document: its own definitions (`$defs`, which a
/// reference inside the document would look for at the document's root) become components named
/// `<service>.<definition>`, and its references point there.
fn embedded(
    service: &str,
    schema: &serde_json::Value,
    components: &mut serde_json::Map<String, serde_json::Value>,
) -> serde_json::Value {
    use serde_json::Value;
    let prefix: String = service
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    fn point(v: &mut Value, prefix: &str) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get_mut("$ref") {
                    let local = r
                        .strip_prefix("#/$defs/")
                        .or_else(|| r.strip_prefix("#/definitions/"));
                    if let Some(name) = local {
                        *r = format!("#/components/schemas/{prefix}.{name}");
                    }
                }
                m.values_mut().for_each(|v| point(v, prefix));
            }
            Value::Array(a) => a.iter_mut().for_each(|v| point(v, prefix)),
            _ => {}
        }
    }
    let mut schema = schema.clone();
    if let Value::Object(m) = &mut schema {
        m.remove("$schema");
        for key in ["$defs", "definitions"] {
            if let Some(Value::Object(defs)) = m.remove(key) {
                for (name, mut def) in defs {
                    point(&mut def, &prefix);
                    components.insert(format!("{prefix}.{name}"), def);
                }
            }
        }
    }
    point(&mut schema, &prefix);
    schema
}

/// `GET /openapi.json`: the OpenAPI 3.1 description of every route.
pub(crate) async fn serve(
    axum::extract::State(state): axum::extract::State<crate::AppState>,
) -> axum::Json<serde_json::Value> {
    axum::Json(state.openapi().clone())
}
