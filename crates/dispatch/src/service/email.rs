//! The `email` delivery service: a mail per attempt, through the SMTP server of `[smtp]` in the
//! config file (`crate::config::SmtpConfig`), with lettre.
//!
//! A subscription's config names the recipients (`to`), a `subject` and a `body` — templates, as
//! for `http`, rendered in the template sandbox — and whether the body is `text` or `html`. An
//! SMTP reply in the 4xx range, or a connection that fails, is retried; a 5xx reply is final.
//! The attempt log holds the envelope, the headers and the server's reply.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::{SmtpConfig, SmtpTls};
use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use posthorn_core::service::{Attempt, BoxFuture, Report, Service, Target, Verdict};
use posthorn_core::validation::{typed, Errors, Invalid};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::sandbox::TemplateSandbox;

/// Most recipients of one mail.
const MAX_RECIPIENTS: usize = 50;
/// How long the SMTP server has, per command.
const SMTP_TIMEOUT: Duration = Duration::from_secs(20);

/// Config of the `email` service. Its JSON Schema (`GET /v1/services`) is generated from it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    /// Recipients, 1 to 50 addresses (`ann@example.com` or `Ann <ann@example.com>`).
    #[schemars(length(min = 1, max = 50))]
    pub to: Vec<String>,
    /// Template of the subject; sees `event`, `event_name`, `wazo_uuid`.
    pub subject: String,
    /// Template of the body; sees `event`, `event_name`, `wazo_uuid`.
    pub body: String,
    /// `text` (default) or `html`.
    #[serde(default)]
    pub content_type: MailKind,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum MailKind {
    #[default]
    Text,
    Html,
}

/// The `email` service: the SMTP transport (a pool of connections), shared by its targets.
pub struct EmailService {
    smtp: Option<Arc<Smtp>>,
    sandbox: Arc<TemplateSandbox>,
    schema: Value,
}

struct Smtp {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    server: String,
}

impl EmailService {
    /// `smtp`: the `[smtp]` section, if the file has one; without it, subscribing to `email` is
    /// refused with a word on what to configure.
    pub fn new(
        smtp: Option<&SmtpConfig>,
        sandbox: Arc<TemplateSandbox>,
    ) -> Result<Self, super::ConfigError> {
        use super::ConfigError;
        let smtp = match smtp {
            None => None,
            Some(c) => {
                let from: Mailbox = c
                    .from
                    .parse()
                    .map_err(|e| ConfigError::new("[smtp]", format!("from {:?}: {e}", c.from)))?;
                let builder = match c.tls {
                    SmtpTls::None => {
                        AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&c.host)
                    }
                    SmtpTls::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(
                        &c.host,
                    )
                    .map_err(|e| ConfigError::new("[smtp]", format!("host {:?}: {e}", c.host)))?,
                    SmtpTls::Tls => {
                        AsyncSmtpTransport::<Tokio1Executor>::relay(&c.host).map_err(|e| {
                            ConfigError::new("[smtp]", format!("host {:?}: {e}", c.host))
                        })?
                    }
                };
                let mut builder = builder.port(c.port).timeout(Some(SMTP_TIMEOUT));
                if let (Some(user), Some(password)) = (&c.username, &c.password) {
                    builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
                }
                Some(Arc::new(Smtp {
                    transport: builder.build(),
                    from,
                    server: format!("{}:{}", c.host, c.port),
                }))
            }
        };
        Ok(Self {
            smtp,
            sandbox,
            schema: serde_json::to_value(schemars::schema_for!(EmailConfig)).unwrap_or(Value::Null),
        })
    }
}

impl Service for EmailService {
    fn name(&self) -> &str {
        "email"
    }

    fn description(&self) -> &str {
        "A mail per event, through the SMTP server of [smtp] in posthorn.toml"
    }

    fn config_schema(&self) -> &Value {
        &self.schema
    }

    fn check(&self, config: &Value) -> Result<Arc<dyn Target>, Invalid> {
        let config: EmailConfig = typed(config, "")?;
        let mut errors = Errors::default();
        if config.to.is_empty() || config.to.len() > MAX_RECIPIENTS {
            errors.add("to", format!("must hold 1 to {MAX_RECIPIENTS} addresses"));
        }
        let mut to = Vec::new();
        for (i, address) in config.to.iter().enumerate() {
            match address.parse::<Mailbox>() {
                Ok(m) => to.push(m),
                Err(e) => errors.add(format!("to[{i}]"), format!("is not an address: {e}")),
            }
        }
        errors.finish()?;
        Ok(Arc::new(EmailTarget {
            smtp: self.smtp.clone(),
            sandbox: self.sandbox.clone(),
            to,
            config,
        }))
    }
}

struct EmailTarget {
    smtp: Option<Arc<Smtp>>,
    sandbox: Arc<TemplateSandbox>,
    to: Vec<Mailbox>,
    config: EmailConfig,
}

impl std::fmt::Debug for EmailTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmailTarget")
            .field("to", &self.config.to)
            .finish_non_exhaustive()
    }
}

impl Target for EmailTarget {
    fn destination(&self) -> Option<&str> {
        self.config.to.first().map(String::as_str)
    }

    fn write_check(&self) -> BoxFuture<'_, Result<(), Invalid>> {
        Box::pin(async move {
            if self.smtp.is_none() {
                return Err(Invalid::one(
                    "",
                    "the email service needs an [smtp] section in posthorn.toml",
                ));
            }
            // The subject in the URL's place: the sandbox compiles both.
            self.sandbox
                .check(Some(&self.config.subject), Some(&self.config.body))
                .await
                .map_err(|(field, why)| {
                    Invalid::one(if field == "url" { "subject" } else { "body" }, why)
                })
        })
    }

    fn attempt<'a>(&'a self, attempt: Attempt<'a>) -> BoxFuture<'a, Report> {
        Box::pin(self.send(attempt))
    }
}

impl EmailTarget {
    async fn send(&self, a: Attempt<'_>) -> Report {
        let started = Instant::now();
        let Some(smtp) = &self.smtp else {
            return Report::logged(
                Verdict::Final,
                true,
                json!({}),
                None,
                Some("no [smtp] section is configured".into()),
                started,
            );
        };
        // The subject renders in the URL's place (and is kept to one line).
        let rendered = match a.event.envelope_value() {
            Ok(envelope) => {
                self.sandbox
                    .render(
                        Some(&self.config.subject),
                        Some(&self.config.body),
                        &envelope,
                        false,
                    )
                    .await
            }
            Err(why) => Err(why.to_string()),
        };
        let (subject, body) = match rendered {
            Ok((Some(s), Some(b))) => (s.replace(['\r', '\n'], " "), b),
            Ok(_) => (String::new(), String::new()),
            Err(why) => {
                return Report::logged(
                    Verdict::Final,
                    true,
                    json!({"to": self.config.to}),
                    None,
                    Some(why),
                    started,
                )
            }
        };
        let content_type = match self.config.content_type {
            MailKind::Text => ContentType::TEXT_PLAIN,
            MailKind::Html => ContentType::TEXT_HTML,
        };
        let mut builder = Message::builder()
            .from(smtp.from.clone())
            .subject(subject.clone())
            .header(content_type.clone())
            .message_id(Some(format!("<{}.{}@posthorn>", a.event.id, a.delivery_id)));
        for m in &self.to {
            builder = builder.to(m.clone());
        }
        let request = json!({
            "server": smtp.server,
            "envelope": {"from": smtp.from.to_string(), "to": self.config.to},
            "headers": {"subject": subject, "content-type": match self.config.content_type {
                    MailKind::Text => "text/plain; charset=utf-8",
                    MailKind::Html => "text/html; charset=utf-8",
                },
                "posthorn-event": a.event.name, "posthorn-delivery": a.delivery_id},
            "body": body,
        });
        let message = match builder.body(body) {
            Ok(m) => m,
            Err(e) => {
                return Report::logged(
                    Verdict::Final,
                    true,
                    request,
                    None,
                    Some(format!("the mail could not be built: {e}")),
                    started,
                )
            }
        };
        match smtp.transport.send(message).await {
            Ok(response) => {
                let reply = json!({"code": response.code().to_string(),
                    "message": response.message().collect::<Vec<_>>()});
                Report::logged(Verdict::Success, true, request, Some(reply), None, started)
            }
            Err(e) => {
                let code = e.status().map(|c| c.to_string());
                let reply = code
                    .as_ref()
                    .map(|c| json!({"code": c, "message": [e.to_string()]}));
                let verdict = if e.is_permanent() {
                    Verdict::Final
                } else {
                    Verdict::Retry { after_ms: None }
                };
                // A reply (4xx, 5xx) is an answer; a connection that failed is not.
                let answered = e.is_permanent() || e.is_transient();
                Report::logged(
                    verdict,
                    answered,
                    request,
                    reply,
                    Some(format!("SMTP: {e}")),
                    started,
                )
            }
        }
    }
}
