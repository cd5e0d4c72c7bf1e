//! FluidSurveys' webhooks ↔ Posthorn's subscriptions, with no I/O.
//!
//! A webhook is an `http` subscription (the typed [`HttpConfig`]) with form-encoded callbacks,
//! as FluidSurveys sent them, narrowed as FluidSurveys narrows each event ([`narrowing`]), marked
//! `door: fluidsurveys` in its metadata with its `survey` and `collector`. Its integer id is
//! derived from the subscription's id ([`integer_id`]).

use posthorn_core::subscription::SubscriptionSpec;
use posthorn_core::Subscription;
use posthorn_wire::http_config::{HttpConfig, FORM};
use serde::Serialize;
use serde_json::{json, Value};
use utoipa::ToSchema;

/// The events FluidSurveys sends.
pub const EVENTS: [&str; 4] = [
    "survey_create",
    "response_complete",
    "report_create",
    "contact_create",
];

/// Marks the subscriptions made through this door (in their metadata, under `door`).
pub(crate) const DOOR: &str = "fluidsurveys";

/// The fields by which FluidSurveys narrows `event`'s callbacks: a survey and a collector
/// given for an event that has none are kept (and listed) but narrow nothing.
pub fn narrowing(event: &str) -> &'static [&'static str] {
    match event {
        "response_complete" => &["survey", "collector"],
        "report_create" => &["survey"],
        _ => &[],
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FsWebhook {
    /// An integer, as FluidSurveys gives: stable for the subscription's life.
    pub id: u64,
    pub event_type: String,
    pub survey: Option<String>,
    pub collector: Option<String>,
    pub subscription_url: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FsWebhookList {
    pub webhooks: Vec<FsWebhook>,
    pub total: usize,
}

/// What `subscribe/` asks for, read from its body.
#[derive(Debug, PartialEq)]
pub(crate) struct Subscribe {
    pub url: String,
    pub event: String,
    pub survey: Option<String>,
    pub collector: Option<String>,
}

impl Subscribe {
    /// The body's fields, or FluidSurveys' message for the first that does not hold.
    pub(crate) fn from_body(body: &Value) -> Result<Self, String> {
        let url = body
            .get("subscription_url")
            .and_then(Value::as_str)
            .filter(|u| !u.is_empty())
            .ok_or("subscription_url is required")?
            .to_owned();
        let event = body
            .get("event")
            .and_then(Value::as_str)
            .ok_or("event is required")?
            .to_owned();
        if !EVENTS.contains(&event.as_str()) {
            return Err(format!("event must be one of {}", EVENTS.join(", ")));
        }
        Ok(Self {
            url,
            event,
            survey: id_field(body, "survey")?,
            collector: id_field(body, "collector")?,
        })
    }

    /// The subscription it becomes.
    pub(crate) fn spec(&self) -> Result<SubscriptionSpec, String> {
        let mut filter = Vec::new();
        let mut metadata = serde_json::Map::new();
        metadata.insert("door".into(), json!(DOOR));
        for (field, value) in [("survey", &self.survey), ("collector", &self.collector)] {
            if let Some(v) = value {
                if narrowing(&self.event).contains(&field) {
                    // The platform says which survey (collector) in a routing attribute, so
                    // that the callback carries only the event's fields; or in the data.
                    let v = json!(v);
                    filter.push(format!(
                        "($event.attributes.{field} = {v} or \
                         (not exists $event.attributes.{field} and {field} = {v}))"
                    ));
                }
                metadata.insert(field.into(), json!(v));
            }
        }
        let config = HttpConfig {
            url: self.url.clone(),
            content_type: FORM.to_owned(),
            ..HttpConfig::default()
        };
        serde_json::from_value(json!({
            "name": format!("FluidSurveys {}", self.event),
            "service": "http",
            "config": config,
            "events": [self.event],
            "filter": (!filter.is_empty()).then(|| filter.join(" and ")),
            "metadata": metadata,
        }))
        .map_err(|e| e.to_string())
    }
}

/// An id as FluidSurveys clients send it: a number or a string.
fn id_field(body: &Value, field: &str) -> Result<Option<String>, String> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
        Some(Value::Number(n)) if n.is_u64() => Ok(Some(n.to_string())),
        // An integral number written with a fraction (`12.0`) is that integer.
        Some(Value::Number(n))
            if n.as_f64().is_some_and(|x| {
                x >= 0.0 && x.fract() == 0.0 && x < 18_446_744_073_709_551_616.0
            }) =>
        {
            Ok(Some((n.as_f64().unwrap_or_default() as u64).to_string()))
        }
        Some(_) => Err(format!("{field} must be an id")),
    }
}

/// The integer a FluidSurveys client knows a subscription by: the first 48 bits of its id's
/// SHA-256, the same on every call and every process, with nothing stored beside it.
pub(crate) fn integer_id(id: &str) -> u64 {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(id.as_bytes());
    digest[..6]
        .iter()
        .fold(0u64, |n, b| (n << 8) | u64::from(*b))
        .max(1)
}

pub(crate) fn url_of(sub: &Subscription) -> Option<&str> {
    sub.spec.config.get("url").and_then(Value::as_str)
}

/// A subscription as FluidSurveys shows a webhook.
pub(crate) fn webhook(sub: &Subscription) -> FsWebhook {
    FsWebhook {
        id: integer_id(&sub.id),
        event_type: sub.spec.events.first().cloned().unwrap_or_default(),
        survey: sub.spec.metadata.get("survey").cloned(),
        collector: sub.spec.metadata.get("collector").cloned(),
        subscription_url: posthorn_core::secrets::shown_url(url_of(sub).unwrap_or_default()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subscribe(body: Value) -> Subscribe {
        Subscribe::from_body(&body).unwrap()
    }

    #[test]
    fn each_event_is_narrowed_by_its_own_fields() {
        let with = |event: &str| {
            subscribe(
                json!({"subscription_url": "https://x.example/h", "event": event,
                "survey": 12, "collector": "7"}),
            )
            .spec()
            .unwrap()
        };
        let f = with("response_complete").filter.unwrap();
        assert!(
            f.contains("survey = \"12\"") && f.contains("collector = \"7\""),
            "{f}"
        );
        let f = with("report_create").filter.unwrap();
        assert!(f.contains("survey") && !f.contains("collector"), "{f}");
        for event in ["survey_create", "contact_create"] {
            let spec = with(event);
            assert_eq!(spec.filter, None, "{event} is account-wide");
            // Kept, and listed, though they narrow nothing.
            assert_eq!(spec.metadata.get("survey").map(String::as_str), Some("12"));
        }
    }

    #[test]
    fn callbacks_are_forms_to_the_url() {
        let spec = subscribe(json!({"subscription_url": "https://x.example/h",
            "event": "survey_create"}))
        .spec()
        .unwrap();
        let c: HttpConfig = serde_json::from_value(spec.config).unwrap();
        assert_eq!(
            (c.url.as_str(), c.content_type.as_str()),
            ("https://x.example/h", FORM)
        );
        assert_eq!(spec.metadata.get("door").map(String::as_str), Some(DOOR));
        assert_eq!(spec.events, ["survey_create"]);
    }

    #[test]
    fn a_webhook_shows_its_fields_and_a_stable_integer_id() {
        let sub = Subscription::new(
            String::from("app_1"),
            subscribe(json!({"subscription_url": "https://u:pw@x.example/h",
                "event": "response_complete", "survey": "12"}))
            .spec()
            .unwrap(),
        );
        let w = webhook(&sub);
        assert_eq!(w.id, integer_id(&sub.id));
        assert!(w.id > 0 && w.id < 1 << 48);
        assert_ne!(integer_id("sub_a"), integer_id("sub_b"));
        assert_eq!(w.event_type, "response_complete");
        assert_eq!(
            (w.survey.as_deref(), w.collector.as_deref()),
            (Some("12"), None)
        );
        assert!(!w.subscription_url.contains("pw"), "{}", w.subscription_url);
    }

    #[test]
    fn faults_in_a_subscribe_body() {
        for (body, message) in [
            (
                json!({"event": "survey_create"}),
                "subscription_url is required",
            ),
            (
                json!({"subscription_url": "https://x.example/h"}),
                "event is required",
            ),
            (
                json!({"subscription_url": "https://x.example/h", "event": "nope"}),
                "event must be one of",
            ),
            (
                json!({"subscription_url": "https://x.example/h", "event": "survey_create",
                    "survey": [1]}),
                "survey must be an id",
            ),
        ] {
            let e = Subscribe::from_body(&body).unwrap_err();
            assert!(e.starts_with(message), "{e}");
        }
    }
}
