//! The `http` delivery service: one signed HTTP request per attempt.
//!
//! - `config`: what a subscriber writes ([`HttpConfig`]), checked, its schema generated.
//! - `sender`: the pooled client that sends a request to a checked address only (SSRF checks
//!   after DNS resolution, no redirects) and keeps the answer for the log.
//! - `proxy`: the connector under TLS, straight or through an egress proxy (CONNECT, SOCKS5),
//!   the target checked before the proxy is asked for it.
//! - `oauth`: a subscription's OAuth2 access token (client credentials), fetched through the
//!   same sender, kept until it is due, renewed once on a 401.
//! - here: the [`Service`] and its [`Target`]: shaping the body (the envelope, form fields or a
//!   template), Posthorn's headers, the Standard Webhooks signature over the exact bytes sent,
//!   and what an answer means (2xx success, 410 gone, 429/503 with `Retry-After`, else retry).
//!
//! This is the only place the dispatcher's side knows HTTP.

mod oauth;
mod proxy;
pub mod sender;

use std::net::IpAddr;
use std::sync::Arc;

use posthorn_core::service::{Attempt, BoxFuture, Report, Service, Target, Verdict};
use posthorn_core::shape::{form_encode, is_template};
use posthorn_core::signing::signature_header;
use posthorn_core::validation::Invalid;
use posthorn_core::{NetworkPolicy, StoredEvent, USER_AGENT};
use serde::Deserialize;
use serde_json::Value;
use url::Url;

pub use posthorn_wire::http_config::{
    CertificateCheck, ClientAuth, ClientCertificate, HttpConfig, HttpMethod, OAuth2, OnGone,
    Payload, TemplateEvent, FORM, JSON,
};
pub use proxy::Proxy;
pub use sender::HttpSender;

use crate::sandbox::TemplateSandbox;
use oauth::{Token, TokenSource};
use sender::{build_request, secret_headers, unsent_log, OwnClient};

/// A client certificate that expires within this many days is warned about when its
/// subscription is loaded.
const WARN_EXPIRY_DAYS: i64 = 30;

/// The longest wait a `Retry-After` may impose.
const MAX_RETRY_AFTER_MS: i64 = 3_600_000;

/// The `http` service, sharing one pooled sender between all its targets.
pub struct HttpService {
    sender: HttpSender,
    policy: Arc<NetworkPolicy>,
    sandbox: Arc<TemplateSandbox>,
    schema: Value,
}

impl HttpService {
    /// Targets are checked against `policy` at every attempt, after resolution.
    /// `sandbox` compiles and renders the templates.
    /// `bind`: the local address requests go out from (`--egress-bind`); `proxy`: the proxy
    /// they go through (`--egress-proxy`) unless their subscription names its own.
    pub fn new(
        policy: NetworkPolicy,
        sandbox: Arc<TemplateSandbox>,
        bind: Option<IpAddr>,
        proxy: Option<Proxy>,
    ) -> Result<Self, rustls::Error> {
        Ok(Self {
            sandbox,
            policy: Arc::new(policy.clone()),
            sender: HttpSender::with_egress(policy, bind, proxy)?,
            schema: serde_json::to_value(schemars::schema_for!(HttpConfig)).unwrap_or(Value::Null),
        })
    }
}

impl Service for HttpService {
    fn name(&self) -> &str {
        "http"
    }

    fn description(&self) -> &str {
        "HTTP request to a URL, signed per Standard Webhooks"
    }

    fn config_schema(&self) -> &Value {
        &self.schema
    }

    fn credential_expires_at(&self, config: &Value) -> Option<i64> {
        use rustls::pki_types::pem::PemObject;
        let pem = config
            .get("client_certificate")?
            .get("certificate")?
            .as_str()?;
        let leaf = rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
            .next()?
            .ok()?;
        Some(not_after(&leaf).ok()?.saturating_mul(1000))
    }

    fn secret_paths(&self, config: &Value) -> Vec<String> {
        let Ok(config) = HttpConfig::deserialize(config) else {
            return Vec::new();
        };
        let mut paths: Vec<String> = config
            .headers
            .keys()
            .filter(|name| config.is_secret_header(name))
            .map(|name| format!("/headers/{}", posthorn_core::secrets::pointer_token(name)))
            .collect();
        if url_has_password(&config.url) {
            paths.push("/url".into());
        }
        if config.proxy.as_deref().is_some_and(url_has_credentials) {
            paths.push("/proxy".into());
        }
        if config.oauth2.is_some() {
            paths.push("/oauth2/client_secret".into());
        }
        if config.client_certificate.is_some() {
            paths.push("/client_certificate/private_key".into());
        }
        paths
    }

    fn check(&self, config: &Value) -> Result<Arc<dyn Target>, Invalid> {
        let config = HttpConfig::from_value(config)?;
        // Parsed once here, not for every attempt (unless it is a template).
        let url_template = is_template(&config.url).then(|| config.url.clone());
        let url = match &url_template {
            Some(_) => None,
            None => Url::parse(&config.url).ok(),
        };
        let oauth = config
            .oauth2
            .clone()
            .and_then(|o| TokenSource::new(o, config.verify_certificate.clone()))
            .map(Arc::new);
        let identity = match &config.client_certificate {
            Some(c) => Some(identity(c)?),
            None => None,
        };
        let proxy = config
            .proxy
            .as_deref()
            .map(|p| Proxy::parse(p, true))
            .transpose()
            .map_err(|e| Invalid::one("proxy", e))?;
        let not_after = identity.as_ref().map(|i| i.not_after);
        let own = if identity.is_some() || proxy.is_some() {
            let field = if identity.is_some() {
                "client_certificate"
            } else {
                "proxy"
            };
            let parts = identity.map(|i| (i.certificates, i.key));
            Some(
                self.sender
                    .own_client(&config.verify_certificate, parts, proxy.as_ref())
                    .map_err(|e| Invalid::one(field, e))?,
            )
        } else {
            None
        };
        let mut masked = secret_headers(&config).to_vec();
        if oauth.is_some() {
            masked.push("authorization".into());
        }
        Ok(Arc::new(HttpTarget {
            secret_headers: masked.into(),
            oauth,
            own,
            not_after,
            proxy_url: config.proxy.as_deref().and_then(|p| Url::parse(p).ok()),
            body_template: config.body.clone(),
            url_template,
            sandbox: self.sandbox.clone(),
            config,
            url,
            sender: self.sender.clone(),
            policy: self.policy.clone(),
        }))
    }
}

/// A subscription's client identity: its certificates, their key, and when the leaf expires.
struct Identity {
    certificates: Vec<rustls::pki_types::CertificateDer<'static>>,
    key: rustls::pki_types::PrivateKeyDer<'static>,
    /// Unix seconds.
    not_after: i64,
}

/// The client identity of a `client_certificate`: both parts parsed; each fault named by its
/// field. (Whether the key fits the certificate is found when the client is built.)
fn identity(c: &ClientCertificate) -> Result<Identity, Invalid> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certificates: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(c.certificate.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|e| {
                Invalid::one("client_certificate.certificate", format!("is not PEM: {e}"))
            })?;
    let Some(leaf) = certificates.first() else {
        return Err(Invalid::one(
            "client_certificate.certificate",
            "holds no certificate (-----BEGIN CERTIFICATE-----)",
        ));
    };
    let not_after = not_after(leaf).map_err(|e| {
        Invalid::one(
            "client_certificate.certificate",
            format!("is not a usable X.509 certificate: {e}"),
        )
    })?;
    let key = PrivateKeyDer::from_pem_slice(c.private_key.as_bytes()).map_err(|_| {
        Invalid::one(
            "client_certificate.private_key",
            "is not a PEM private key (PKCS#8, PKCS#1 or SEC1)",
        )
    })?;
    let days_left = (not_after - posthorn_core::time::now_ms() / 1000) / 86_400;
    if days_left < WARN_EXPIRY_DAYS {
        tracing::warn!(
            expires = %posthorn_core::time::to_rfc3339(not_after * 1000),
            days_left,
            "a subscription's client certificate expires soon; receivers that ask for it will refuse the deliveries after that"
        );
    }
    Ok(Identity {
        certificates,
        key,
        not_after,
    })
}

/// When a certificate (DER) stops being valid, in Unix seconds.
fn not_after(
    certificate: &rustls::pki_types::CertificateDer<'_>,
) -> Result<i64, x509_parser::nom::Err<x509_parser::error::X509Error>> {
    Ok(x509_parser::parse_x509_certificate(certificate)?
        .1
        .validity()
        .not_after
        .timestamp())
}

/// A checked `http` config.
pub struct HttpTarget {
    config: HttpConfig,
    /// Its headers that carry credentials (lowercase), masked in every attempt's log.
    secret_headers: Arc<[String]>,
    /// Its OAuth2 access token, when the receiver asks for one.
    oauth: Option<Arc<TokenSource>>,
    /// Its own client, when it presents a client certificate or goes through its own proxy.
    own: Option<OwnClient>,
    /// When its client certificate expires (Unix seconds), when it has one.
    not_after: Option<i64>,
    /// Its own proxy's URL, for the write-time check of its address.
    proxy_url: Option<Url>,
    /// `config.url` parsed, unless it is a template.
    url: Option<Url>,
    /// The URL when it is a template, and the body template: compiled and rendered in the
    /// sandbox, never here.
    url_template: Option<String>,
    body_template: Option<String>,
    sandbox: Arc<TemplateSandbox>,
    sender: HttpSender,
    policy: Arc<NetworkPolicy>,
}

impl std::fmt::Debug for HttpTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpTarget")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Target for HttpTarget {
    fn destination(&self) -> Option<&str> {
        Some(&self.config.url)
    }

    /// A URL whose host is an address (or `localhost`) the network policy refuses would be
    /// refused at every attempt: say so now. A name is checked when it is resolved, at each
    /// attempt.
    fn write_check(&self) -> BoxFuture<'_, Result<(), Invalid>> {
        Box::pin(async move {
            self.check_policy()?;
            if let Some(not_after) = self.not_after {
                if not_after * 1000 <= posthorn_core::time::now_ms() {
                    return Err(Invalid::one(
                        "client_certificate.certificate",
                        format!(
                            "expired on {}",
                            posthorn_core::time::to_rfc3339(not_after * 1000)
                        ),
                    ));
                }
            }
            if self.url_template.is_some() || self.body_template.is_some() {
                self.sandbox
                    .check(self.url_template.as_deref(), self.body_template.as_deref())
                    .await
                    .map_err(|(field, why)| Invalid::one(field, why))?;
            }
            Ok(())
        })
    }

    fn attempt<'a>(&'a self, attempt: Attempt<'a>) -> BoxFuture<'a, Report> {
        Box::pin(self.send(attempt))
    }
}

impl HttpTarget {
    fn check_policy(&self) -> Result<(), Invalid> {
        if let Some(oauth) = &self.oauth {
            self.check_literal_host(oauth.url(), "oauth2.token_url")?;
        }
        if let Some(proxy) = &self.proxy_url {
            self.check_literal_host(proxy, "proxy")?;
        }
        let Some(url) = &self.url else { return Ok(()) };
        if !url.username().is_empty() || url.password().is_some() {
            return Err(Invalid::one(
                "url",
                "credentials in a URL are not sent and would show in logs; put them in headers, \
                 e.g. \"headers\": {\"authorization\": \"Basic …\"}",
            ));
        }
        self.check_literal_host(url, "url")
    }

    /// A host that is an address (or `localhost`) the network policy refuses, named on `field`.
    fn check_literal_host(&self, url: &Url, field: &str) -> Result<(), Invalid> {
        let ips: Vec<IpAddr> = match url.host() {
            Some(url::Host::Ipv4(ip)) => vec![IpAddr::V4(ip)],
            Some(url::Host::Ipv6(ip)) => vec![IpAddr::V6(ip)],
            Some(url::Host::Domain(d)) if d.eq_ignore_ascii_case("localhost") => {
                vec![
                    IpAddr::from([127, 0, 0, 1]),
                    IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
                ]
            }
            _ => return Ok(()),
        };
        let refused: Vec<(IpAddr, &str)> = ips
            .into_iter()
            .filter_map(|ip| self.policy.check(ip).err().map(|r| (ip, r.0)))
            .collect();
        match refused.first() {
            Some((ip, range)) if refused.len() == ips_len(url) => Err(Invalid::one(
                field,
                format!(
                    "{ip} is in a {range} range, which this server does not deliver to; {}",
                    posthorn_core::network::admit_hint(*ip)
                ),
            )),
            _ => Ok(()),
        }
    }

    async fn send(&self, a: Attempt<'_>) -> Report {
        let event = a.event;
        let timestamp = a.started_at / 1000;
        let (url, body, envelope) = match self.shape(event).await {
            Ok(shaped) => shaped,
            // A template that fails now will fail every time.
            Err(error) => {
                return Report {
                    verdict: Verdict::Final,
                    answered: true,
                    request: unsent_log(&self.config, &self.secret_headers),
                    response: None,
                    error: Some(error),
                    duration: std::time::Duration::ZERO,
                }
            }
        };
        // The receiver's access token, before anything is sent to it.
        let mut token: Option<Token> = None;
        if let Some(oauth) = &self.oauth {
            match oauth.token(&self.sender, self.own.as_ref()).await {
                Ok(t) => token = Some(t),
                Err(e) => {
                    return Report {
                        verdict: Verdict::Retry { after_ms: None },
                        answered: e.answered,
                        request: unsent_log(&self.config, &self.secret_headers),
                        response: None,
                        error: Some(e.message),
                        duration: std::time::Duration::ZERO,
                    }
                }
            }
        }
        let wire_id = event.wire_id();
        let mut request = build_request(
            &self.config,
            &self.secret_headers,
            url,
            body.into(),
            vec![
                ("user-agent".into(), USER_AGENT.into()),
                ("webhook-id".into(), wire_id.clone().into_owned()),
                ("webhook-timestamp".into(), timestamp.to_string()),
                ("posthorn-event".into(), event.name.clone()),
                ("posthorn-delivery".into(), a.delivery_id.to_owned()),
                ("posthorn-attempt".into(), a.number.to_string()),
            ],
        );
        // Signed last, over the exact bytes that go out.
        let signature = signature_header(a.secrets, &wire_id, timestamp, &request.body);
        request
            .headers
            .push(("webhook-signature".into(), signature));
        if let Some(t) = &token {
            request
                .headers
                .push(("authorization".into(), format!("Bearer {}", t.value)));
        }

        let mut exchange = self.sender.send_via(&request, self.own.as_ref()).await;
        // A refused token (revoked, or expired early): one new token, and the request once more.
        if let (Some(oauth), Some(stale), Some(401)) = (
            &self.oauth,
            &token,
            exchange.response.as_ref().map(|r| r.status),
        ) {
            match oauth.renew(&self.sender, self.own.as_ref(), stale).await {
                Ok(fresh) => {
                    if let Some(h) = request
                        .headers
                        .iter_mut()
                        .find(|(k, _)| k == "authorization")
                    {
                        h.1 = format!("Bearer {}", fresh.value);
                    }
                    let first = exchange.duration;
                    exchange = self.sender.send_via(&request, self.own.as_ref()).await;
                    exchange.duration += first;
                }
                Err(e) => {
                    return Report {
                        verdict: Verdict::Retry { after_ms: None },
                        answered: true,
                        request: request.log_json(envelope),
                        response: exchange.response.map(|r| r.log_json()),
                        error: Some(format!("HTTP 401, and a new token: {}", e.message)),
                        duration: exchange.duration,
                    };
                }
            }
        }
        if exchange.refused {
            // A policy refusal is no network failure: waiting will not change it.
            tracing::warn!(subscription = %a.subscription_id, delivery = %a.delivery_id,
                error = exchange.error.as_deref().unwrap_or_default(),
                "target refused by the network policy; the delivery is dead");
            return Report {
                verdict: Verdict::Final,
                answered: true,
                request: request.log_json(envelope),
                response: None,
                error: exchange.error,
                duration: exchange.duration,
            };
        }
        let status = exchange.response.as_ref().map(|r| r.status);
        let verdict = match status {
            Some(200..=299) => Verdict::Success,
            Some(410) if self.config.on_gone == OnGone::Fail => Verdict::Final,
            Some(410) => Verdict::Gone,
            Some(429 | 503) => Verdict::Retry {
                after_ms: exchange
                    .response
                    .as_ref()
                    .and_then(|r| retry_after(&r.headers))
                    .map(|ms| ms.min(MAX_RETRY_AFTER_MS)),
            },
            _ => Verdict::Retry { after_ms: None },
        };
        let error = exchange.error.or_else(|| {
            let r = exchange.response.as_ref()?;
            (verdict != Verdict::Success).then(|| match r.status {
                300..=399 => format!("HTTP {} (redirects are not followed)", r.status),
                410 if self.config.on_gone == OnGone::Fail => {
                    "HTTP 410 Gone: final for this delivery; the subscription stays".to_owned()
                }
                410 => "HTTP 410 Gone: the subscription is deleted".to_owned(),
                s => format!("HTTP {s}"),
            })
        });
        Report {
            verdict,
            answered: status.is_some(),
            request: request.log_json(envelope),
            response: exchange.response.map(|r| r.log_json()),
            error,
            duration: exchange.duration,
        }
    }

    /// The URL and body of an attempt: the JSON envelope by default (built without parsing the
    /// stored data again; the flag says so), the data as form fields, or the rendered templates.
    async fn shape(&self, event: &StoredEvent) -> Result<(Url, Vec<u8>, bool), String> {
        let config = &self.config;
        let envelope_bytes = event.envelope();
        let templated = self.url_template.is_some() || self.body_template.is_some();
        let needs_value = templated || is_form(&config.content_type);
        let envelope_value: Value = if needs_value {
            serde_json::from_slice(&envelope_bytes)
                .map_err(|e| format!("stored event is not JSON: {e}"))?
        } else {
            Value::Null
        };
        let (rendered_url, rendered_body) = if templated {
            self.sandbox
                .render(
                    self.url_template.as_deref(),
                    self.body_template.as_deref(),
                    &envelope_value,
                    config.template_event == TemplateEvent::Data,
                )
                .await?
        } else {
            (None, None)
        };
        let url = match (rendered_url, &self.url) {
            (Some(u), _) => http_url(u, "the url template gave")?,
            (None, Some(url)) => url.clone(),
            // Checked when the subscription was stored, so only a stored row changed since.
            (None, None) => http_url(config.url.clone(), "the url is")?,
        };
        let body = match rendered_body {
            Some(b) => b.into_bytes(),
            None if is_form(&config.content_type) => {
                form_encode(&envelope_value["data"]).into_bytes()
            }
            None => match config.payload {
                Payload::Envelope => return Ok((url, envelope_bytes, true)),
                Payload::Data => event.data.as_bytes().to_vec(),
                Payload::Flat => flat(event)?,
            },
        };
        Ok((url, body, false))
    }
}

/// `{"name": …}` followed by the data's fields (but its own `name`), in their order.
fn flat(event: &StoredEvent) -> Result<Vec<u8>, String> {
    let data: serde_json::Map<String, Value> = serde_json::from_str(&event.data)
        .map_err(|e| format!("stored event is not a JSON object: {e}"))?;
    let mut out = serde_json::Map::with_capacity(data.len() + 1);
    out.insert("name".into(), Value::String(event.name.clone()));
    out.extend(data.into_iter().filter(|(k, _)| k != "name"));
    serde_json::to_vec(&out).map_err(|e| e.to_string())
}

/// Whether `url` (not a template) carries a password.
pub(crate) fn url_has_password(url: &str) -> bool {
    Url::parse(url).is_ok_and(|u| u.password().is_some())
}

/// Whether a URL carries a username or a password.
fn url_has_credentials(url: &str) -> bool {
    Url::parse(url).is_ok_and(|u| !u.username().is_empty() || u.password().is_some())
}

/// How many addresses a URL's literal host stands for (`localhost` is two).
fn ips_len(url: &Url) -> usize {
    match url.host() {
        Some(url::Host::Domain(_)) => 2,
        _ => 1,
    }
}

/// `url` parsed, if it is an http or https URL with a host; `from` says where it came from.
fn http_url(url: String, from: &str) -> Result<Url, String> {
    match Url::parse(&url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Ok(u),
        _ => Err(format!("{from} {url:?}, which is not an http or https URL")),
    }
}

fn is_form(content_type: &str) -> bool {
    content_type.split(';').next().unwrap_or_default().trim() == FORM
}

/// `Retry-After` as milliseconds from now: seconds, or an HTTP date.
fn retry_after(headers: &std::collections::BTreeMap<String, String>) -> Option<i64> {
    let value = headers.get("retry-after")?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(secs.saturating_mul(1000).min(i64::MAX as u64) as i64);
    }
    let when = httpdate::parse_http_date(value).ok()?;
    let ms = when
        .duration_since(std::time::SystemTime::now())
        .map_or(0, |d| d.as_millis() as i64);
    Some(ms)
}
