//! The `[sources]` section of `posthorn.toml` (section 10 of the contract): the AMQP queues and
//! NATS streams events are taken from. The binary reads it with the rest of its configuration and
//! hands it to [`crate::start`]; an unknown key is an error naming the key and the file. Credentials
//! inside a URL are never printed: `Debug` masks them.

use posthorn_core::secrets::redact_url;
use serde::{Deserialize, Serialize};

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_in_urls_stay_out_of_debug() {
        let amqp: AmqpSource = serde_json::from_value(serde_json::json!({
            "url": "amqp://guest:hunter2@127.0.0.1:5672/%2f", "exchange": "x", "queue": "q"}))
        .unwrap();
        assert!(!format!("{amqp:?}").contains("hunter2"));
        assert_eq!(amqp.prefetch, 100);
    }
}
