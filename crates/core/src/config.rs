//! The typed sections of `posthorn.toml` that crates beyond the binary act on (section 10 of the
//! contract): `[smtp]` for the `email` service, `[[sources.amqp]]` and `[[sources.nats]]` for the
//! broker sources, `[[services]]` for external plugins. The binary reads them with the rest of its
//! configuration (flag > env > file > default) and hands each to the part that uses it; an unknown
//! key in any of them is an error naming the key and the file, never ignored.
//!
//! Secrets here (`password`, credentials inside URLs) are never printed: `Debug` hides them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `[smtp]`: the server the `email` service sends through.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    pub host: String,
    #[serde(default = "smtp_port")]
    pub port: u16,
    #[serde(default)]
    pub tls: SmtpTls,
    /// The sender of every mail.
    pub from: String,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
}

fn smtp_port() -> u16 {
    25
}

impl std::fmt::Debug for SmtpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("from", &self.from)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "…"))
            .finish()
    }
}

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain SMTP.
    None,
    /// Plain, upgraded with STARTTLS (refused if the server does not offer it).
    #[default]
    Starttls,
    /// TLS from the first byte (SMTPS).
    Tls,
}

/// `[sources]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourcesConfig {
    #[serde(default)]
    pub amqp: Vec<AmqpSource>,
    #[serde(default)]
    pub nats: Vec<NatsSource>,
}

/// `[[sources.amqp]]`: a queue of a RabbitMQ (AMQP 0-9-1) broker to take events from.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AmqpSource {
    pub url: String,
    pub exchange: String,
    #[serde(default)]
    pub exchange_type: ExchangeType,
    pub queue: String,
    /// Routing keys; for a headers exchange, values of the `name` header.
    #[serde(default)]
    pub bindings: Vec<String>,
    #[serde(default = "prefetch")]
    pub prefetch: u16,
    /// A header holding the message id when the `message_id` property is absent.
    #[serde(default)]
    pub message_id_header: Option<String>,
    /// On a headers exchange, bind every event name some subscription asks for (and unbind it
    /// when none does), within about a second, beside the fixed `bindings`, as wazo-webhookd
    /// binds its bus queue. A subscription to a prefix or `*` binds every message.
    #[serde(default = "follow")]
    pub follow_subscriptions: bool,
}

fn follow() -> bool {
    true
}

fn prefetch() -> u16 {
    100
}

impl std::fmt::Debug for AmqpSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmqpSource")
            .field("url", &redact_url(&self.url))
            .field("exchange", &self.exchange)
            .field("exchange_type", &self.exchange_type)
            .field("queue", &self.queue)
            .field("bindings", &self.bindings)
            .field("prefetch", &self.prefetch)
            .field("follow_subscriptions", &self.follow_subscriptions)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExchangeType {
    Direct,
    #[default]
    Topic,
    Fanout,
    Headers,
}

/// `[[sources.nats]]`: a durable JetStream consumer to take events from.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsSource {
    pub url: String,
    pub stream: String,
    pub subjects: Vec<String>,
    /// Taken off the front of a subject to make the event name.
    #[serde(default)]
    pub strip_prefix: Option<String>,
    /// The durable consumer's name (shared by every process on one database).
    #[serde(default = "consumer")]
    pub consumer: String,
}

fn consumer() -> String {
    "posthorn".to_owned()
}

impl std::fmt::Debug for NatsSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsSource")
            .field("url", &redact_url(&self.url))
            .field("stream", &self.stream)
            .field("subjects", &self.subjects)
            .field("strip_prefix", &self.strip_prefix)
            .field("consumer", &self.consumer)
            .finish()
    }
}

/// How a plugin's command runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PluginMode {
    /// A process per attempt: the request on stdin, the verdict its exit status.
    #[default]
    Once,
    /// Processes that live across attempts (up to `max_concurrent`), one request per line of
    /// stdin and one answer per line of stdout: what the plugin loads, it loads once.
    Persistent,
}

/// `[[services]]`: an external plugin, a command run once per attempt or kept running.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginConfig {
    /// The `service` value that selects it.
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// The program and its arguments.
    pub command: Vec<String>,
    /// The JSON Schema a subscription's `config` must satisfy.
    #[serde(default = "any_object")]
    pub config_schema: Value,
    #[serde(default = "plugin_timeout")]
    pub timeout_ms: u64,
    /// Most of its attempts running at once, in one process.
    #[serde(default = "plugin_concurrency")]
    pub max_concurrent: u32,
    /// Environment variables set for the command (besides a minimal inherited set).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// `once` (the default) or `persistent`.
    #[serde(default)]
    pub mode: PluginMode,
}

fn any_object() -> Value {
    serde_json::json!({"type": "object"})
}

fn plugin_timeout() -> u64 {
    30_000
}

fn plugin_concurrency() -> u32 {
    4
}

/// A URL with its password replaced, for logs and `Debug`.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_stay_out_of_debug() {
        let smtp = SmtpConfig {
            host: "h".into(),
            port: 25,
            tls: SmtpTls::None,
            from: "a@b".into(),
            username: Some("u".into()),
            password: Some("hunter2".into()),
        };
        assert!(!format!("{smtp:?}").contains("hunter2"));
        let amqp: AmqpSource = serde_json::from_value(serde_json::json!({
            "url": "amqp://guest:hunter2@127.0.0.1:5672/%2f", "exchange": "x", "queue": "q"}))
        .unwrap();
        assert!(!format!("{amqp:?}").contains("hunter2"));
        assert_eq!(amqp.prefetch, 100);
    }

    #[test]
    fn unknown_keys_are_refused() {
        let e = serde_json::from_value::<SmtpConfig>(
            serde_json::json!({"host": "h", "from": "a@b", "hots": 1}),
        )
        .unwrap_err();
        assert!(e.to_string().contains("hots"), "{e}");
    }
}
