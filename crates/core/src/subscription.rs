//! Subscriptions: who wants which events, delivered how.
//!
//! A [`SubscriptionSpec`] is what a user writes (create, replace, patch); [`SubscriptionSpec::validate`]
//! checks it completely, naming every field at fault, and compiles what delivery needs (the
//! patterns, the service config) so that nothing is parsed again per event. A [`Subscription`] is a
//! stored spec plus what the service owns: id, owner, status, secrets, times.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::filter::Filter;
use crate::pattern::EventPattern;
use crate::retry::RetryPolicy;
use crate::shape::{is_template, Templates};
use crate::signing::Secret;
use crate::time::Millis;
use crate::validation::{Errors, Invalid};

pub const DEFAULT_MAX_IN_FLIGHT: u32 = 10;

/// The part of a subscription its owner writes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SubscriptionSpec {
    pub name: String,
    pub service: String,
    /// Service-specific; for `http` see [`HttpConfig`].
    #[schema(value_type = Object)]
    pub config: Value,
    pub events: Vec<String>,
    #[serde(default)]
    pub filter: Option<String>,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default)]
    pub retry: Option<RetrySpec>,
    #[serde(default)]
    pub rate_limit_per_s: Option<u32>,
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: u32,
    #[serde(default)]
    pub ordered: bool,
}

fn yes() -> bool {
    true
}

fn default_max_in_flight() -> u32 {
    DEFAULT_MAX_IN_FLIGHT
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RetrySpec {
    /// Seconds to wait after the first attempt, the second, …; the default schedule when absent.
    pub schedule_s: Vec<u32>,
}

/// What validation compiles out of a spec for delivery.
#[derive(Debug, Clone)]
pub struct Compiled {
    pub patterns: Vec<EventPattern>,
    pub filter: Option<Filter>,
    pub http: HttpConfig,
    /// `http.url` parsed, unless it is a template: parsed once, not for every attempt.
    pub url: Option<url::Url>,
    /// The templated URL and body of `http`, parsed.
    pub templates: Option<Templates>,
    pub retry: RetryPolicy,
}

/// The longest retry schedule accepted, and the longest single wait (one week).
const MAX_SCHEDULE_STEPS: usize = 50;
const MAX_WAIT_S: u32 = 7 * 24 * 3600;

impl SubscriptionSpec {
    /// Checks every field; `services` are the names of the delivery services that exist.
    pub fn validate(&self, services: &[&str]) -> Result<Compiled, Invalid> {
        let mut errors = Errors::default();
        if self.name.trim().is_empty() || self.name.chars().count() > 128 {
            errors.add("name", "must be 1 to 128 characters");
        }
        if !services.contains(&self.service.as_str()) {
            errors.add(
                "service",
                format!("unknown service; known: {}", services.join(", ")),
            );
        }
        let http = match HttpConfig::from_value(&self.config) {
            Ok(c) => Some(c),
            Err(e) => {
                errors.extend(e.within("config"));
                None
            }
        };
        if self.events.is_empty() {
            errors.add("events", "must name at least one event, NAME.* or *");
        }
        let mut patterns = Vec::with_capacity(self.events.len());
        for (i, p) in self.events.iter().enumerate() {
            match EventPattern::parse(p) {
                Ok(p) => patterns.push(p),
                Err(msg) => errors.add(format!("events[{i}]"), msg),
            }
        }
        let filter = match self.filter.as_deref().map(Filter::parse) {
            None => None,
            Some(Ok(f)) => Some(f),
            Some(Err(e)) => {
                errors.add("filter", e.to_string());
                None
            }
        };
        if let Some(retry) = &self.retry {
            if retry.schedule_s.len() > MAX_SCHEDULE_STEPS {
                errors.add(
                    "retry.schedule_s",
                    format!("at most {MAX_SCHEDULE_STEPS} steps"),
                );
            }
            for (i, s) in retry.schedule_s.iter().enumerate() {
                if *s > MAX_WAIT_S {
                    errors.add(
                        format!("retry.schedule_s[{i}]"),
                        "at most 604800 seconds (one week)",
                    );
                }
            }
        }
        if self.rate_limit_per_s == Some(0) {
            errors.add("rate_limit_per_s", "must be at least 1 (or null for none)");
        }
        if !(1..=10_000).contains(&self.max_in_flight) {
            errors.add("max_in_flight", "must be 1 to 10000");
        }
        errors.finish()?;
        // `http` is Some whenever no error was recorded.
        let (http, templates) = http.unwrap_or_default();
        let url = match &templates {
            Some(t) if t.has_url() => None,
            _ => url::Url::parse(&http.url).ok(),
        };
        Ok(Compiled {
            patterns,
            filter,
            http,
            url,
            templates,
            retry: self
                .retry
                .as_ref()
                .map(|r| RetryPolicy::new(r.schedule_s.clone()))
                .unwrap_or_default(),
        })
    }
}

/// Why a subscription is disabled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DisabledReason {
    Manual,
    Gone,
    Failing,
}

impl DisabledReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Manual => "manual",
            Self::Gone => "gone",
            Self::Failing => "failing",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "manual" => Self::Manual,
            "gone" => Self::Gone,
            "failing" => Self::Failing,
            _ => return None,
        })
    }
}

/// A stored subscription.
#[derive(Debug, Clone)]
pub struct Subscription {
    pub id: String,
    /// `admin` or an application id.
    pub owner: String,
    pub spec: SubscriptionSpec,
    pub disabled_reason: Option<DisabledReason>,
    pub secret: Secret,
    /// During a rotation, the previous secret and until when it still signs.
    pub previous_secret: Option<(Secret, Millis)>,
    pub created_at: Millis,
    pub updated_at: Millis,
}

impl Subscription {
    pub fn is_active(&self) -> bool {
        self.spec.enabled && self.disabled_reason.is_none()
    }

    /// The secrets that sign a delivery made at `now`.
    pub fn signing_secrets(&self, now: Millis) -> Vec<&Secret> {
        let mut secrets = vec![&self.secret];
        if let Some((old, until)) = &self.previous_secret {
            if *until > now {
                secrets.push(old);
            }
        }
        secrets
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HttpMethod {
    #[default]
    Post,
    Put,
    Patch,
    Get,
    Delete,
    Head,
}

impl HttpMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Post => "POST",
            Self::Put => "PUT",
            Self::Patch => "PATCH",
            Self::Get => "GET",
            Self::Delete => "DELETE",
            Self::Head => "HEAD",
        }
    }

    /// Whether a request with this method carries the body.
    pub fn has_body(self) -> bool {
        !matches!(self, Self::Get | Self::Head)
    }
}

/// `verify_certificate`: on, off, or the path of a CA bundle to verify against.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum CertificateCheck {
    Enabled(bool),
    CaBundle(String),
}

impl Default for CertificateCheck {
    fn default() -> Self {
        Self::Enabled(true)
    }
}

pub const JSON: &str = "application/json";
pub const FORM: &str = "application/x-www-form-urlencoded";
pub const DEFAULT_TIMEOUT_MS: u32 = 15_000;
pub const MAX_TIMEOUT_MS: u32 = 30_000;

/// Config of the `http` service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    pub url: String,
    #[serde(default)]
    pub method: HttpMethod,
    #[serde(default = "json")]
    pub content_type: String,
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub verify_certificate: CertificateCheck,
    #[serde(default = "default_timeout")]
    pub timeout_ms: u32,
}

fn json() -> String {
    JSON.to_owned()
}

fn default_timeout() -> u32 {
    DEFAULT_TIMEOUT_MS
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            method: HttpMethod::Post,
            content_type: json(),
            body: None,
            headers: BTreeMap::new(),
            verify_certificate: CertificateCheck::default(),
            timeout_ms: DEFAULT_TIMEOUT_MS,
        }
    }
}

/// Headers a subscription may not set: Posthorn owns them.
fn is_reserved_header(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower.starts_with("webhook-") || lower == "host" || lower == "content-length"
}

fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

impl HttpConfig {
    /// Parses and checks the `config` of an `http` subscription, with its templates parsed;
    /// field paths are relative to it.
    pub fn from_value(value: &Value) -> Result<(Self, Option<Templates>), Invalid> {
        let Some(obj) = value.as_object() else {
            return Err(Invalid::one("", "must be an object"));
        };
        if !obj.contains_key("url") {
            return Err(Invalid::one("url", "is required"));
        }
        let config: HttpConfig = serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            let field = if path == "." { String::new() } else { path };
            Invalid::one(field, e.into_inner().to_string())
        })?;
        let mut errors = Errors::default();
        let url_template = is_template(&config.url);
        match url::Url::parse(&config.url) {
            _ if url_template => {}
            Ok(u) if !matches!(u.scheme(), "http" | "https") => {
                errors.add("url", "must be an http or https URL")
            }
            Ok(u) if u.host().is_none() => errors.add("url", "must name a host"),
            Ok(_) => {}
            Err(e) => errors.add("url", format!("is not a valid URL: {e}")),
        }
        let media = config
            .content_type
            .split(';')
            .next()
            .unwrap_or_default()
            .trim();
        if config.body.is_none() && media != JSON && media != FORM {
            errors.add(
                "content_type",
                "without a body template, must be application/json or application/x-www-form-urlencoded",
            );
        } else if media.is_empty() || !media.contains('/') {
            errors.add("content_type", "must be a media type such as text/plain");
        }
        let templates = if url_template || config.body.is_some() {
            let url = url_template.then_some(config.url.as_str());
            match Templates::parse(url, config.body.as_deref()) {
                Ok(t) => Some(t),
                Err((field, why)) => {
                    errors.add(field, format!("the template does not parse: {why}"));
                    None
                }
            }
        } else {
            None
        };
        for (name, value) in &config.headers {
            let field = format!("headers.{name}");
            if !is_header_name(name) {
                errors.add(field, "is not a valid header name");
            } else if is_reserved_header(name) {
                errors.add(
                    field,
                    "webhook-*, host and content-length are set by Posthorn",
                );
            } else if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
                errors.add(field, "a header value cannot hold CR, LF or NUL");
            }
        }
        if !(1..=MAX_TIMEOUT_MS).contains(&config.timeout_ms) {
            errors.add("timeout_ms", "must be 1 to 30000");
        }
        if let CertificateCheck::CaBundle(path) = &config.verify_certificate {
            if path.is_empty() {
                errors.add(
                    "verify_certificate",
                    "must be true, false or the path of a CA bundle",
                );
            }
        }
        errors.finish()?;
        Ok((config, templates))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(v: Value) -> SubscriptionSpec {
        serde_json::from_value(v).unwrap()
    }

    fn fields(e: Invalid) -> Vec<String> {
        e.0.into_iter().map(|e| e.field).collect()
    }

    #[test]
    fn a_minimal_spec_gets_the_defaults() {
        let s = spec(
            json!({"name":"n","service":"http","config":{"url":"https://example.com/h"},"events":["*"]}),
        );
        assert!(s.enabled);
        assert_eq!(s.max_in_flight, 10);
        let c = s.validate(&["http"]).unwrap();
        assert!(c.templates.is_none());
        assert_eq!(c.http.timeout_ms, 15000);
        assert_eq!(c.http.method, HttpMethod::Post);
        assert_eq!(c.retry, RetryPolicy::default());
    }

    #[test]
    fn every_fault_is_named_by_its_path() {
        let s = spec(
            json!({"name":"","service":"smtp","config":{"url":"ftp://x","timeout_ms":0,
            "headers":{"Webhook-Id":"x","Host":"y","ok":"fine"}},"events":["ok","bad name"],
            "retry":{"schedule_s":[1, 999999999]},"max_in_flight":0}),
        );
        let got = fields(s.validate(&["http"]).unwrap_err());
        assert_eq!(
            got,
            [
                "name",
                "service",
                "config.url",
                "config.headers.Host",
                "config.headers.Webhook-Id",
                "config.timeout_ms",
                "events[1]",
                "retry.schedule_s[1]",
                "max_in_flight"
            ]
        );
    }

    #[test]
    fn config_type_errors_name_the_field() {
        let e =
            HttpConfig::from_value(&json!({"url":"https://x","timeout_ms":"soon"})).unwrap_err();
        assert_eq!(fields(e), ["timeout_ms"]);
        let e = HttpConfig::from_value(&json!({"url":"https://x","method":"fetch"})).unwrap_err();
        assert_eq!(fields(e), ["method"]);
        let e = HttpConfig::from_value(&json!({})).unwrap_err();
        assert_eq!(fields(e), ["url"]);
        let e = HttpConfig::from_value(&json!("x")).unwrap_err();
        assert_eq!(fields(e), [""]);
    }

    #[test]
    fn templates_and_form_encoding_are_checked() {
        let ok = HttpConfig::from_value(
            &json!({"url": "https://h/{{ event.data.id }}", "method": "put",
            "body": "{{ event | tojson }}", "content_type": "text/plain"}),
        )
        .unwrap();
        assert!(ok.1.as_ref().unwrap().has_url() && ok.1.as_ref().unwrap().has_body());
        assert!(
            HttpConfig::from_value(&json!({"url": "https://h", "content_type": FORM}))
                .unwrap()
                .1
                .is_none()
        );
        let e =
            HttpConfig::from_value(&json!({"url": "https://h", "body": "{% if %}"})).unwrap_err();
        assert_eq!(fields(e.clone()), ["body"]);
        assert!(e.0[0].message.contains("line 1"), "{e}");
        let e =
            HttpConfig::from_value(&json!({"url": "https://h/{{", "content_type": "text/plain"}))
                .unwrap_err();
        assert_eq!(fields(e), ["content_type", "url"]);
    }

    #[test]
    fn rotation_keeps_the_old_secret_until_it_expires() {
        let mut s = Subscription {
            id: "sub_1".into(),
            owner: "admin".into(),
            spec: spec(
                json!({"name":"n","service":"http","config":{"url":"https://e.com"},"events":["*"]}),
            ),
            disabled_reason: None,
            secret: Secret::generate(),
            previous_secret: None,
            created_at: 0,
            updated_at: 0,
        };
        assert_eq!(s.signing_secrets(10).len(), 1);
        s.previous_secret = Some((Secret::generate(), 100));
        assert_eq!(s.signing_secrets(10).len(), 2);
        assert_eq!(s.signing_secrets(100).len(), 1);
    }
}
