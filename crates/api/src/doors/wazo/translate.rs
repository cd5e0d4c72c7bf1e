//! wazo-webhookd's subscriptions and logs ↔ Posthorn's, with no I/O.
//!
//! A wazo subscription is a Posthorn `http` subscription (the typed [`HttpConfig`]) whose
//! templates see the event's `data` as `event` (`template_event: data`, beside `event_name` and
//! `wazo_uuid`), whose default body is that data as JSON, and whose `410` is a final error that
//! keeps it (`on_gone: fail`); `events_user_uuid` is a filter on the bus message's
//! `user_uuid:<uuid>` attribute (or the data's `user_uuid`), `events_wazo_uuid` one on the origin
//! (the message's `origin_uuid`). What wazo has and Posthorn does not name (those two,
//! `owner_user_uuid`) is kept in metadata under `wazo.`. Its `uuid` is the Posthorn id. Unknown
//! fields are ignored, as wazo does.

use std::collections::BTreeMap;

use posthorn_core::subscription::SubscriptionSpec;
use posthorn_core::time::{parse_rfc3339, to_rfc3339, Millis};
use posthorn_core::{AttemptOutcome, Invalid, Subscription};
use posthorn_store::{AttemptOrder, SubscriptionAttempt};
use posthorn_wire::http_config::{
    CertificateCheck, HttpConfig, HttpMethod, OnGone, TemplateEvent, JSON,
};
use serde_json::{json, Map, Value};

use super::wire::{WazoLog, WazoLogDetail, WazoLogEvent, WazoSubscription, WazoSubscriptionList};
use crate::list::Query;

pub(crate) const USER_KEY: &str = "wazo.events_user_uuid";
pub(crate) const ORIGIN_KEY: &str = "wazo.events_wazo_uuid";
pub(crate) const OWNER_USER_KEY: &str = "wazo.owner_user_uuid";
/// The body of a wazo subscription without one: the event's data, as JSON.
const DATA_AS_JSON: &str = "{{ event | tojson }}";

/// A subscription as wazo shows it.
pub(crate) fn view(sub: &Subscription) -> WazoSubscription {
    let mut config = Map::new();
    if sub.spec.service == "http" {
        // Only the fields wazo has: never the headers (credentials), whatever the row holds.
        let Ok(c) = serde_json::from_value::<HttpConfig>(sub.spec.config.clone()) else {
            return shown(sub, config);
        };
        config.insert(
            "url".into(),
            json!(posthorn_core::secrets::shown_url(&c.url)),
        );
        config.insert("method".into(), json!(c.method));
        if let Some(body) = c.body.filter(|b| b != DATA_AS_JSON) {
            config.insert("body".into(), json!(body));
            config.insert("content_type".into(), json!(c.content_type));
        }
        let verify = match c.verify_certificate {
            CertificateCheck::Enabled(false) => "false".to_owned(),
            CertificateCheck::CaBundle(path) => path,
            CertificateCheck::Enabled(true) => "true".to_owned(),
        };
        config.insert("verify_certificate".into(), json!(verify));
    } else if let Some(c) = sub.spec.config.as_object() {
        // Another service's config, its URL's password masked (a broker's).
        config = c.clone();
        if let Some(Value::String(url)) = config.get_mut("url") {
            *url = posthorn_core::secrets::shown_url(url);
        }
    }
    shown(sub, config)
}

/// The subscription around its `config` as shown.
fn shown(sub: &Subscription, config: Map<String, Value>) -> WazoSubscription {
    let meta = &sub.spec.metadata;
    WazoSubscription {
        uuid: sub.id.to_string(),
        name: sub.spec.name.clone(),
        service: sub.spec.service.clone(),
        config,
        events: sub.spec.events.clone(),
        events_user_uuid: meta.get(USER_KEY).cloned(),
        events_wazo_uuid: meta.get(ORIGIN_KEY).cloned(),
        owner_user_uuid: meta.get(OWNER_USER_KEY).cloned(),
        owner_tenant_uuid: sub.owner.clone(),
        metadata: meta
            .iter()
            .filter(|(k, _)| !k.starts_with("wazo."))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    }
}

/// The answer to a list.
pub(crate) fn list(subs: &[Subscription]) -> WazoSubscriptionList {
    let items: Vec<WazoSubscription> = subs.iter().map(view).collect();
    WazoSubscriptionList {
        total: items.len(),
        items,
    }
}

/// A wazo subscription body as a Posthorn spec (unknown fields ignored). `owner_user` marks one
/// made through `users/me`; `for_user` is the user whose events alone it gets (a user's token on
/// `users/me`), whatever the body says.
pub(crate) fn spec_of(
    body: &Value,
    owner_user: Option<&str>,
    for_user: Option<&str>,
) -> Result<SubscriptionSpec, Invalid> {
    let text = |field: &str, required: bool| -> Result<Option<String>, Invalid> {
        match body.get(field) {
            Some(Value::String(s)) if s.chars().count() <= 128 => Ok(Some(s.clone())),
            None | Some(Value::Null) if !required => Ok(None),
            None | Some(Value::Null) => {
                Err(Invalid::one(field, "Missing data for required field."))
            }
            _ => Err(Invalid::one(
                field,
                "Not a valid string of at most 128 characters.",
            )),
        }
    };
    let name = text("name", true)?.unwrap_or_default();
    let service = text("service", true)?.unwrap_or_default();
    let events: Vec<String> = match body.get("events") {
        Some(Value::Array(items)) => items
            .iter()
            .map(|e| e.as_str().map(str::to_owned))
            .collect::<Option<_>>()
            .ok_or_else(|| Invalid::one("events", "Not a valid list of strings."))?,
        _ => return Err(Invalid::one("events", "Missing data for required field.")),
    };
    let Some(Value::Object(given)) = body.get("config") else {
        return Err(Invalid::one("config", "Missing data for required field."));
    };
    let config = if service == "http" {
        let c = http_config(given)?;
        serde_json::to_value(c).map_err(|e| Invalid::one("config", e.to_string()))?
    } else {
        Value::Object(given.clone())
    };
    let mut metadata = BTreeMap::new();
    if let Some(Value::Object(m)) = body.get("metadata") {
        for (k, v) in m {
            let v = v
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| v.to_string());
            metadata.insert(k.clone(), v);
        }
    }
    let mut filter = Vec::new();
    let events_user = match for_user {
        Some(u) => Some(u.to_owned()),
        None => text("events_user_uuid", false)?,
    };
    if let Some(user) = events_user {
        filter.push(user_filter(&user));
        metadata.insert(USER_KEY.into(), user);
    }
    if let Some(origin) = text("events_wazo_uuid", false)? {
        filter.push(format!("$event.origin = {}", json!(origin)));
        metadata.insert(ORIGIN_KEY.into(), origin);
    }
    if let Some(user) = owner_user {
        metadata.insert(OWNER_USER_KEY.into(), user.to_owned());
    }
    serde_json::from_value(json!({
        "name": name, "service": service, "config": config, "events": events,
        "filter": (!filter.is_empty()).then(|| filter.join(" and ")), "metadata": metadata,
    }))
    .map_err(|e| Invalid::one("", e.to_string()))
}

/// As wazo binds `events_user_uuid`: the bus message's `user_uuid:<uuid>` header (an attribute
/// here); an event published over HTTP may name its user in its data instead.
fn user_filter(user: &str) -> String {
    format!(
        "(exists $event.attributes[{}] or user_uuid = {})",
        json!(format!("user_uuid:{user}")),
        json!(user)
    )
}

/// wazo's `http` config (`url`, `method`, `body`, `content_type`, `verify_certificate`) as the
/// `http` service's.
fn http_config(given: &Map<String, Value>) -> Result<HttpConfig, Invalid> {
    let field = |key: &str| match given.get(key) {
        Some(Value::String(v)) => Ok(v.clone()),
        _ => Err(Invalid::one(
            format!("config.{key}"),
            "Missing data for required field.",
        )),
    };
    let url = field("url")?;
    let method: HttpMethod = serde_json::from_value(json!(field("method")?.to_lowercase()))
        .map_err(|_| {
            Invalid::one(
                "config.method",
                "Must be one of: head, get, post, put, delete, patch.",
            )
        })?;
    let (body, content_type) = match given.get("body").and_then(Value::as_str) {
        Some(b) => (
            b.to_owned(),
            given
                .get("content_type")
                .and_then(Value::as_str)
                .unwrap_or("text/plain")
                .to_owned(),
        ),
        None => (DATA_AS_JSON.to_owned(), JSON.to_owned()),
    };
    let verify_certificate = match given.get("verify_certificate") {
        None | Some(Value::Null) => CertificateCheck::Enabled(true),
        Some(Value::String(s)) if s == "true" => CertificateCheck::Enabled(true),
        Some(Value::String(s)) if s == "false" => CertificateCheck::Enabled(false),
        Some(Value::Bool(b)) => CertificateCheck::Enabled(*b),
        Some(Value::String(s)) if s.starts_with('/') => CertificateCheck::CaBundle(s.clone()),
        _ => {
            return Err(Invalid::one(
                "config.verify_certificate",
                "Wrong value for verify_certificate: true, false or a path",
            ))
        }
    };
    Ok(HttpConfig {
        url,
        method,
        content_type,
        body: Some(body),
        verify_certificate,
        template_event: TemplateEvent::Data,
        // As wazo-webhookd: a 410 is a final error for that delivery; the subscription stays.
        on_gone: OnGone::Fail,
        ..HttpConfig::default()
    })
}

/// A page of `GET …/logs`, as its query asks.
#[derive(Debug, PartialEq)]
pub(crate) struct LogsQuery {
    pub limit: usize,
    pub offset: usize,
    pub from: Option<Millis>,
    pub order: AttemptOrder,
    pub ascending: bool,
}

/// The largest offset the database takes (PostgreSQL's `OFFSET` is a signed 64-bit number).
const MAX_OFFSET: usize = i64::MAX as usize;

impl LogsQuery {
    /// `from_date`, `limit` (100), `offset`, `order` (`started_at`), `direction` (`desc`).
    pub(crate) fn parse(raw: Option<&str>) -> Result<Self, Invalid> {
        let q = Query::parse(raw);
        // Any count of digits is an integer (as marshmallow reads it); one past every row is
        // as good as the largest the database takes: an empty page.
        let number = |key: &str, default: usize| -> Result<usize, Invalid> {
            q.get(key).map_or(Ok(default), |v| {
                if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(Invalid::one(key, "Not a valid integer."));
                }
                Ok(v.parse::<usize>().map_or(MAX_OFFSET, |n| n.min(MAX_OFFSET)))
            })
        };
        let from = match q.get("from_date") {
            None => None,
            Some(t) => Some(
                parse_rfc3339(t)
                    .ok_or_else(|| Invalid::one("from_date", "Not a valid datetime."))?,
            ),
        };
        let order = match q.get("order").unwrap_or("started_at") {
            "started_at" => AttemptOrder::StartedAt,
            "ended_at" => AttemptOrder::EndedAt,
            "status" => AttemptOrder::Outcome,
            "attempts" | "max_attempts" => AttemptOrder::Number,
            _ => {
                return Err(Invalid::one(
                    "order",
                    "Must be one of: started_at, ended_at, status, attempts, max_attempts.",
                ))
            }
        };
        let ascending = match q.get("direction").unwrap_or("desc") {
            "asc" => true,
            "desc" => false,
            _ => return Err(Invalid::one("direction", "Must be one of: asc, desc.")),
        };
        Ok(Self {
            limit: number("limit", 100)?,
            offset: number("offset", 0)?,
            from,
            order,
            ascending,
        })
    }
}

/// wazo's word for an attempt's outcome: `failure` will be retried, `error` is final.
pub(crate) fn log_status(outcome: AttemptOutcome) -> &'static str {
    match outcome {
        AttemptOutcome::Success => "success",
        AttemptOutcome::Retry => "failure",
        AttemptOutcome::Final => "error",
    }
}

/// One row of a subscription's logs: one attempt, as wazo-webhookd logs it.
pub(crate) fn log_row(row: &SubscriptionAttempt, max_attempts: u32) -> WazoLog {
    let (a, e) = (&row.attempt, &row.event);
    WazoLog {
        uuid: format!("{}.{}", row.delivery_id, a.number),
        status: log_status(a.outcome),
        attempts: a.number,
        max_attempts,
        started_at: to_rfc3339(a.started_at),
        ended_at: to_rfc3339(a.started_at + a.duration_ms),
        event: WazoLogEvent {
            name: e.name.clone(),
            origin_uuid: e.origin.clone(),
            data: serde_json::from_str::<Value>(&e.data).unwrap_or(Value::Null),
        },
        detail: WazoLogDetail {
            request: serde_json::from_str::<Value>(&a.request).unwrap_or(Value::Null),
            response: a
                .response
                .as_deref()
                .and_then(|r| serde_json::from_str::<Value>(r).ok()),
            error: a.error.clone(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The view as its JSON answer.
    fn view(sub: &Subscription) -> Value {
        serde_json::to_value(super::view(sub)).unwrap()
    }

    fn body() -> Value {
        json!({"name": "calls", "service": "http", "events": ["call_ended"],
            "config": {"url": "https://crm.example/hook", "method": "POST"},
            "unknown": "ignored", "metadata": {"crm": "acme", "n": 3}})
    }

    #[test]
    fn an_http_subscription_gets_the_data_as_json_and_keeps_on_410() {
        let spec = spec_of(&body(), None, None).unwrap();
        let c: HttpConfig = serde_json::from_value(spec.config.clone()).unwrap();
        assert_eq!(c.method, HttpMethod::Post, "the method is read in any case");
        assert_eq!(c.body.as_deref(), Some(DATA_AS_JSON));
        assert_eq!(c.content_type, JSON);
        assert_eq!(c.template_event, TemplateEvent::Data);
        assert_eq!(c.on_gone, OnGone::Fail);
        assert_eq!(spec.filter, None);
        assert_eq!(spec.metadata.get("n").map(String::as_str), Some("3"));
    }

    #[test]
    fn a_body_template_keeps_its_content_type_or_gets_text() {
        let mut b = body();
        b["config"]["body"] = json!("{{ event_name }}");
        let c: HttpConfig =
            serde_json::from_value(spec_of(&b, None, None).unwrap().config).unwrap();
        assert_eq!(c.content_type, "text/plain");
        b["config"]["content_type"] = json!("application/xml");
        let spec = spec_of(&b, None, None).unwrap();
        let c: HttpConfig = serde_json::from_value(spec.config.clone()).unwrap();
        assert_eq!(c.content_type, "application/xml");
        let shown = view(&Subscription::new(String::from("app_1"), spec));
        assert_eq!(shown["config"]["body"], "{{ event_name }}");
        assert_eq!(shown["config"]["content_type"], "application/xml");
        assert_eq!(shown["config"]["method"], "post");
        assert_eq!(shown["config"]["verify_certificate"], "true");
    }

    #[test]
    fn the_default_body_is_not_shown() {
        let shown = view(&Subscription::new(
            String::from("app_1"),
            spec_of(&body(), None, None).unwrap(),
        ));
        assert_eq!(
            shown["config"],
            json!({"url": "https://crm.example/hook", "method": "post", "verify_certificate": "true"})
        );
        assert_eq!(shown["metadata"], json!({"crm": "acme", "n": "3"}));
        assert_eq!(shown["owner_tenant_uuid"], "app_1");
    }

    #[test]
    fn narrowing_by_user_and_origin() {
        let mut b = body();
        b["events_user_uuid"] = json!("u-1");
        b["events_wazo_uuid"] = json!("w-9");
        let spec = spec_of(&b, None, None).unwrap();
        assert_eq!(
            spec.filter.as_deref(),
            Some(
                "(exists $event.attributes[\"user_uuid:u-1\"] or user_uuid = \"u-1\") \
                 and $event.origin = \"w-9\""
            )
        );
        let shown = view(&Subscription::new(String::from("app_1"), spec));
        assert_eq!(
            (&shown["events_user_uuid"], &shown["events_wazo_uuid"]),
            (&json!("u-1"), &json!("w-9"))
        );
        // A user's own subscription is narrowed to that user, whatever it asks.
        let spec = spec_of(&b, Some("u-2"), Some("u-2")).unwrap();
        assert!(spec.filter.unwrap().contains("user_uuid:u-2"));
        assert_eq!(
            spec.metadata.get(OWNER_USER_KEY).map(String::as_str),
            Some("u-2")
        );
    }

    #[test]
    fn faults_are_named_by_field() {
        let field = |b: Value| spec_of(&b, None, None).unwrap_err().0[0].field.clone();
        let mut b = body();
        b.as_object_mut().unwrap().remove("name");
        assert_eq!(field(b), "name");
        let mut b = body();
        b["config"]["method"] = json!("TRACE");
        assert_eq!(field(b), "config.method");
        let mut b = body();
        b["config"]["verify_certificate"] = json!("maybe");
        assert_eq!(field(b), "config.verify_certificate");
        let mut b = body();
        b["events"] = json!([1]);
        assert_eq!(field(b), "events");
        let mut b = body();
        b["name"] = json!("x".repeat(129));
        assert_eq!(field(b), "name");
    }

    #[test]
    fn an_http_config_shows_no_header_even_unreadable() {
        let mut spec = spec_of(&body(), None, None).unwrap();
        spec.config["headers"] = json!({"Authorization": "Bearer secret-1"});
        let shown = view(&Subscription::new(String::from("app_1"), spec.clone()));
        assert!(!shown.to_string().contains("secret-1"), "{shown}");
        spec.config["not_a_field"] = json!(1);
        let shown = view(&Subscription::new(String::from("app_1"), spec));
        assert!(!shown.to_string().contains("secret-1"), "{shown}");
        assert_eq!(shown["config"], json!({}));
    }

    #[test]
    fn verify_certificate_in_its_three_forms() {
        for (given, shown) in [
            (json!("false"), "false"),
            (json!(false), "false"),
            (json!("/etc/ssl/pbx.pem"), "/etc/ssl/pbx.pem"),
            (json!(null), "true"),
        ] {
            let mut b = body();
            b["config"]["verify_certificate"] = given;
            let view = view(&Subscription::new(
                String::from("app_1"),
                spec_of(&b, None, None).unwrap(),
            ));
            assert_eq!(view["config"]["verify_certificate"], shown);
        }
    }

    #[test]
    fn logs_queries() {
        assert_eq!(
            LogsQuery::parse(None).unwrap(),
            LogsQuery {
                limit: 100,
                offset: 0,
                from: None,
                order: AttemptOrder::StartedAt,
                ascending: false
            }
        );
        let q = LogsQuery::parse(Some(
            "limit=5&offset=10&order=status&direction=asc&from_date=2026-01-01T00:00:00Z",
        ))
        .unwrap();
        assert_eq!(
            (q.limit, q.offset, q.order, q.ascending),
            (5, 10, AttemptOrder::Outcome, true)
        );
        assert!(q.from.is_some());
        for (raw, field) in [
            ("limit=x", "limit"),
            ("order=uuid", "order"),
            ("direction=up", "direction"),
            ("from_date=yesterday", "from_date"),
            ("offset=-1", "offset"),
            ("offset=", "offset"),
        ] {
            assert_eq!(LogsQuery::parse(Some(raw)).unwrap_err().0[0].field, field);
        }
        // Past every row: an empty page, never a number the database refuses.
        let far = LogsQuery::parse(Some("offset=100056935473350805815296")).unwrap();
        assert_eq!(far.offset, i64::MAX as usize);
        assert_eq!(log_status(AttemptOutcome::Retry), "failure");
        assert_eq!(log_status(AttemptOutcome::Final), "error");
    }
}
