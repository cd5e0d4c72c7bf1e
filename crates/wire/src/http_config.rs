//! The config of the `http` service: what a subscriber writes, checked completely (every fault
//! named by its path below `config`). A wire type: the delivery service reads it, the front
//! doors write it, and clients may build it.

use std::collections::BTreeMap;

use posthorn_core::shape::is_template;
use posthorn_core::validation::{typed, Errors, Invalid};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `method`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
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

/// `template_event`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum TemplateEvent {
    #[default]
    Envelope,
    Data,
}

/// `payload`: the shape of a JSON body when there is no body template.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Payload {
    /// `{"id","name","occurred_at","origin","data"}`.
    #[default]
    Envelope,
    /// The event's `data` alone: wazo-webhookd's and ftrack's "whole event".
    Data,
    /// `name` beside the data's fields, as Phraseanet sends (`{"name": "new_feed_entry",
    /// "feed": …}`); a `name` field of the data gives way to the event's name.
    Flat,
}

/// `on_gone`: what a `410 Gone` answer does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OnGone {
    /// The subscription is deleted (its log stays readable), as FluidSurveys and Posthorn do.
    #[default]
    Delete,
    /// The delivery fails for good and the subscription stays, as wazo-webhookd does.
    Fail,
}

/// `verify_certificate`: on, off, or the path of a CA bundle to verify against.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
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

/// `oauth2`: the receiver is an OAuth2 resource server. Posthorn gets an access token from
/// `token_url` with the client credentials grant (RFC 6749 §4.4), keeps it until shortly before
/// it expires (one fetch shared by the deliveries in flight), sends it as
/// `Authorization: Bearer`, and fetches a new one once when the receiver answers 401.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OAuth2 {
    /// The authorization server's token endpoint (http or https).
    #[schemars(length(min = 1))]
    pub token_url: String,
    #[schemars(length(min = 1))]
    pub client_id: String,
    /// Sealed at rest, shown as `********`, sent to the token endpoint only.
    #[schemars(length(min = 1))]
    pub client_secret: String,
    /// Space-separated scopes to ask for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// The `audience` parameter some servers ask for (Auth0, Okta).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    /// How the client authenticates (RFC 6749 §2.3.1): `basic` (HTTP Basic, the default) or
    /// `form` (`client_id` and `client_secret` in the body).
    #[serde(default)]
    pub client_auth: ClientAuth,
}

/// `client_certificate`: what Posthorn presents to receivers that ask for a client certificate
/// (mutual TLS). Used for this subscription's connections only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientCertificate {
    /// PEM: the certificate, then any intermediates.
    #[schemars(length(min = 1))]
    pub certificate: String,
    /// PEM: its private key (PKCS#8, PKCS#1 or SEC1). Sealed at rest, shown as `********`.
    #[schemars(length(min = 1))]
    pub private_key: String,
}

/// `oauth2.client_auth`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuth {
    #[default]
    Basic,
    Form,
}

pub const JSON: &str = "application/json";
pub const FORM: &str = "application/x-www-form-urlencoded";
pub const DEFAULT_TIMEOUT_MS: u32 = 15_000;
pub const MAX_TIMEOUT_MS: u32 = 30_000;

/// Config of the `http` service. Its JSON Schema (`GET /v1/services`) is generated from this
/// type, so the doc comments of its fields are what users read there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// http or https URL of the receiver; may be a template (`{{ event.data.id }}`).
    pub url: String,
    /// The request's method.
    #[serde(default)]
    pub method: HttpMethod,
    /// `application/json` (the envelope), `application/x-www-form-urlencoded` (the data as form
    /// fields), or any media type with a body template.
    #[serde(default = "json")]
    pub content_type: String,
    /// Jinja-style template of the body; sees `event`, `event_name`, `wazo_uuid`; filters
    /// `tojson`, `urlencode`.
    #[serde(default)]
    pub body: Option<String>,
    /// The JSON body's shape without a body template: `envelope` (the default), `data` (the
    /// event's data alone) or `flat` (`name` beside the data's fields).
    #[serde(default)]
    pub payload: Payload,
    /// Static headers; `webhook-*`, `host` and `content-length` are Posthorn's. Those that carry
    /// credentials (`Authorization`, a name with `token`, `secret`, `key`, `password`, `auth`,
    /// …, or one listed in `secret_headers`) are sealed at rest, shown as `********`, and masked
    /// in attempt logs.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// More header names whose values are credentials.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secret_headers: Vec<String>,
    /// `true`, `false`, or the path of a CA bundle to verify against.
    #[serde(default)]
    pub verify_certificate: CertificateCheck,
    /// What `event` is in templates: `envelope` (the default: `event.data.x`) or `data` (the
    /// event's data itself, `event.x`, as wazo-webhookd templates have it).
    #[serde(default)]
    pub template_event: TemplateEvent,
    /// What a `410 Gone` answer does: `delete` the subscription (the default), or `fail` this
    /// delivery for good and keep the subscription (wazo-webhookd's way).
    #[serde(default)]
    pub on_gone: OnGone,
    /// How long the receiver has to answer, 1 to 30000.
    #[serde(default = "default_timeout")]
    #[schemars(range(min = 1, max = 30000))]
    pub timeout_ms: u32,
    /// OAuth2 client credentials, when the receiver is an OAuth2 resource server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oauth2: Option<OAuth2>,
    /// A client certificate, when the receiver asks for one (mutual TLS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_certificate: Option<ClientCertificate>,
    /// The proxy this subscription's requests go through, instead of the server's
    /// `--egress-proxy`: `http://[user:password@]host:port` (HTTP CONNECT),
    /// `socks5://…` (Posthorn resolves the target's name) or `socks5h://…` (the proxy does).
    /// Its own address is checked like a target's; credentials in it are sealed at rest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<String>,
}

/// Why `url` is not an egress proxy URL, if it is not one: `http`, `socks5` or `socks5h`, a
/// host and a port, nothing after them.
pub fn proxy_url_fault(url: &str) -> Option<String> {
    let u = match url::Url::parse(url) {
        Ok(u) => u,
        Err(e) => return Some(format!("is not a valid URL: {e}")),
    };
    if !matches!(u.scheme(), "http" | "socks5" | "socks5h") {
        return Some(
            "must be an http:// (CONNECT), socks5:// or socks5h:// proxy URL (a TLS connection \
             to the proxy itself is not supported)"
                .into(),
        );
    }
    if u.host().is_none() {
        return Some("must name the proxy's host".into());
    }
    if u.port().is_none() {
        return Some(format!(
            "must name the proxy's port, e.g. {}://proxy.internal:{}",
            u.scheme(),
            if u.scheme() == "http" { 3128 } else { 1080 }
        ));
    }
    if u.path() != "/" && !u.path().is_empty() || u.query().is_some() || u.fragment().is_some() {
        return Some("must be only scheme://[user:password@]host:port".into());
    }
    None
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
            payload: Payload::default(),
            headers: BTreeMap::new(),
            secret_headers: Vec::new(),
            verify_certificate: CertificateCheck::default(),
            template_event: TemplateEvent::default(),
            on_gone: OnGone::default(),
            timeout_ms: DEFAULT_TIMEOUT_MS,
            oauth2: None,
            client_certificate: None,
            proxy: None,
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
    /// Whether the header `name`'s value is a credential.
    pub fn is_secret_header(&self, name: &str) -> bool {
        posthorn_core::secrets::is_sensitive_header(name)
            || self
                .secret_headers
                .iter()
                .any(|h| h.eq_ignore_ascii_case(name))
    }

    /// Parses and checks the `config` of an `http` subscription; field paths are relative to it.
    /// Its templates (a templated `url`, a `body`) are not compiled here: that happens in the
    /// template sandbox, when the subscription is written (`posthorn_dispatch::sandbox`).
    pub fn from_value(value: &Value) -> Result<Self, Invalid> {
        let Some(obj) = value.as_object() else {
            return Err(Invalid::one("", "must be an object"));
        };
        if !obj.contains_key("url") {
            return Err(Invalid::one("url", "is required"));
        }
        let config: HttpConfig = typed(value, "")?;
        let mut errors = Errors::default();
        let url_template = is_template(&config.url);
        let no_scheme = || {
            format!(
                "must start with http:// or https:// (http://{})",
                config.url.trim_start_matches('/')
            )
        };
        match url::Url::parse(&config.url) {
            _ if url_template => {}
            // `127.0.0.1:9000/hook`, `localhost:9000/hook`: an address without its scheme.
            Err(url::ParseError::RelativeUrlWithoutBase) => errors.add("url", no_scheme()),
            Ok(_) if !config.url.contains("://") => errors.add("url", no_scheme()),
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
        if config.payload != Payload::Envelope && (config.body.is_some() || media != JSON) {
            errors.add(
                "payload",
                "shapes a JSON body without a template: leave it out with a body template or a form",
            );
        }
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
        if let Some(oauth) = &config.oauth2 {
            match url::Url::parse(&oauth.token_url) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {
                    if !u.username().is_empty() || u.password().is_some() {
                        errors.add(
                            "oauth2.token_url",
                            "cannot carry credentials: they go in client_id and client_secret",
                        );
                    }
                }
                _ => errors.add("oauth2.token_url", "must be an http or https URL"),
            }
            if oauth.client_id.is_empty() {
                errors.add("oauth2.client_id", "must not be empty");
            }
            if oauth.client_secret.is_empty() {
                errors.add("oauth2.client_secret", "must not be empty");
            }
            if let Some(name) = config
                .headers
                .keys()
                .find(|n| n.eq_ignore_ascii_case("authorization"))
            {
                errors.add(
                    format!("headers.{name}"),
                    "is set from the OAuth2 access token; leave it out with oauth2",
                );
            }
        }
        if let Some(fault) = config.proxy.as_deref().and_then(proxy_url_fault) {
            errors.add("proxy", fault);
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
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(e: Invalid) -> Vec<String> {
        e.0.into_iter().map(|e| e.field).collect()
    }

    #[test]
    fn a_minimal_config_gets_the_defaults() {
        let c = HttpConfig::from_value(&json!({"url": "https://example.com/h"})).unwrap();
        assert_eq!(c.timeout_ms, 15000);
        assert_eq!(c.method, HttpMethod::Post);
        assert_eq!(c.content_type, JSON);
    }

    #[test]
    fn an_address_without_its_scheme_is_told_how_to_write_it() {
        for (url, hint) in [
            ("127.0.0.1:18890/hook", "http://127.0.0.1:18890/hook"),
            ("localhost:9000/hook", "http://localhost:9000/hook"),
        ] {
            let e = HttpConfig::from_value(&json!({ "url": url })).unwrap_err();
            let message = &e.0[0].message;
            assert!(
                message.starts_with("must start with http:// or https://")
                    && message.contains(hint),
                "{url}: {message}"
            );
        }
        let e = HttpConfig::from_value(&json!({"url": "ftp://x/y"})).unwrap_err();
        assert_eq!(e.0[0].message, "must be an http or https URL");
    }

    #[test]
    fn every_fault_is_named_by_its_path() {
        let e = HttpConfig::from_value(&json!({"url":"ftp://x","timeout_ms":0,
            "headers":{"Webhook-Id":"x","Host":"y","ok":"fine"}}))
        .unwrap_err();
        assert_eq!(
            fields(e),
            ["url", "headers.Host", "headers.Webhook-Id", "timeout_ms"]
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
    fn templated_urls_and_content_types_are_checked() {
        // Templates compile in the sandbox; here, what does not need them.
        assert!(HttpConfig::from_value(
            &json!({"url": "https://h/{{ event.data.id }}", "method": "put",
            "body": "{{ event | tojson }}", "content_type": "text/plain"})
        )
        .is_ok());
        assert!(HttpConfig::from_value(&json!({"url": "https://h", "content_type": FORM})).is_ok());
        let e = HttpConfig::from_value(&json!({"url": "https://h", "content_type": "text/plain"}))
            .unwrap_err();
        assert_eq!(fields(e), ["content_type"]);
    }

    #[test]
    fn the_schema_is_generated_from_the_type() {
        let schema = serde_json::to_value(schemars::schema_for!(HttpConfig)).unwrap();
        assert_eq!(schema["required"], json!(["url"]));
        assert_eq!(schema["additionalProperties"], json!(false));
        assert_eq!(schema["properties"]["timeout_ms"]["maximum"], json!(30000));
        assert_eq!(schema["properties"]["timeout_ms"]["default"], json!(15000));
        assert!(schema["properties"]["url"]["description"]
            .as_str()
            .unwrap()
            .contains("template"));
    }

    #[test]
    fn oauth2_credentials_are_checked() {
        let c = HttpConfig::from_value(&json!({"url": "https://r.example/hook",
            "oauth2": {"token_url": "https://auth.example/token", "client_id": "posthorn",
                       "client_secret": "s3cret", "scope": "webhooks"}}))
        .unwrap();
        let o = c.oauth2.unwrap();
        assert_eq!(
            (o.client_auth, o.scope.as_deref()),
            (ClientAuth::Basic, Some("webhooks"))
        );
        let e = HttpConfig::from_value(&json!({"url": "https://r.example/hook",
            "headers": {"Authorization": "Bearer x"},
            "oauth2": {"token_url": "ftp://auth.example/token", "client_id": "",
                       "client_secret": "", "client_auth": "form"}}))
        .unwrap_err();
        assert_eq!(
            fields(e),
            [
                "oauth2.token_url",
                "oauth2.client_id",
                "oauth2.client_secret",
                "headers.Authorization"
            ]
        );
        let e = HttpConfig::from_value(&json!({"url": "https://r.example/hook",
            "oauth2": {"token_url": "https://a.example/t", "client_id": "c",
                       "client_secret": "s", "grant": "password"}}))
        .unwrap_err();
        assert_eq!(fields(e), ["oauth2.grant"]);
    }
}
