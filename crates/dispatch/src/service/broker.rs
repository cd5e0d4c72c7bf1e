//! Broker destinations: deliveries published to a queue of the subscriber's own instead of an
//! HTTP endpoint — `amqp` (RabbitMQ, with publisher confirms, persistent) and `nats` (JetStream,
//! acknowledged by the stream). The message is the event's envelope, its id the event's wire id
//! (AMQP `message_id`, `Nats-Msg-Id`; unique across publishers, see
//! [`posthorn_core::event::wire_id`]), so that consumers can drop duplicates; a delivery succeeds only
//! once the broker has confirmed it. Connections are kept per broker URL, not opened per attempt,
//! each URL in a slot of its own ([`Connections`]): a broker that hangs delays only the attempts
//! to it. A connection that fails is dropped and the attempt retried. A broker's host is checked against
//! the network policy like an HTTP target's.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::Confirmation;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use posthorn_core::secrets::redact_url;
use posthorn_core::service::{Attempt, BoxFuture, Report, Service, Target, Verdict};
use posthorn_core::shape::is_template;
use posthorn_core::validation::{typed, Errors, Invalid};
use posthorn_core::NetworkPolicy;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::Mutex;

use crate::sandbox::TemplateSandbox;

/// How long connecting and confirming may take.
const BROKER_TIMEOUT: Duration = Duration::from_secs(10);

/// Config of the `amqp` service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AmqpConfig {
    /// `amqp://user:password@host:5672/vhost` (or `amqps://`).
    pub url: String,
    /// The exchange to publish to; empty for the default exchange (routing key = queue name).
    #[serde(default)]
    pub exchange: String,
    /// The routing key; may be a template (`events.{{ event.name }}`).
    pub routing_key: String,
    /// Headers set on every message.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

/// Config of the `nats` service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NatsConfig {
    /// `nats://host:4222`.
    pub url: String,
    /// The subject to publish on, which a JetStream stream must cover; may be a template.
    pub subject: String,
}

/// What the two services share: the sandbox (templated keys and subjects) and the policy.
struct Common {
    sandbox: Arc<TemplateSandbox>,
    policy: NetworkPolicy,
}

/// Why an attempt found no connection: the network policy refuses the broker (final), or the
/// broker cannot be reached now (retried).
enum Unconnected {
    Refused(String),
    Failed(String),
}

impl Unconnected {
    fn report(self, request: Value, started: Instant) -> Report {
        match self {
            Unconnected::Refused(why) => {
                Report::logged(Verdict::Final, true, request, None, Some(why), started)
            }
            Unconnected::Failed(why) => Report::logged(
                Verdict::Retry { after_ms: None },
                false,
                request,
                None,
                Some(why),
                started,
            ),
        }
    }
}

/// Connections kept per broker URL. Each URL has a slot of its own, so that connecting to one
/// broker (resolving, the policy check, TCP, the handshake) never waits on another: the map is
/// locked only to find a slot, never across I/O. Waiting for a slot and connecting are one step
/// under [`BROKER_TIMEOUT`]; a broker that failed to connect is not tried again for
/// [`RECONNECT_PAUSE`], so the attempts queued behind a hung one fail at once with its error
/// instead of waiting their turn to hang.
struct Connections<C> {
    slots: std::sync::Mutex<HashMap<String, Arc<Mutex<Slot<C>>>>>,
}

struct Slot<C> {
    open: Option<C>,
    /// When the last connection failed, and why.
    failed: Option<(Instant, String)>,
}

/// How long a broker that could not be reached is left alone before it is tried again.
const RECONNECT_PAUSE: Duration = Duration::from_secs(2);

impl<C> Default for Connections<C> {
    fn default() -> Self {
        Self {
            slots: std::sync::Mutex::default(),
        }
    }
}

impl<C: Clone> Connections<C> {
    fn slot(&self, url: &str) -> Arc<Mutex<Slot<C>>> {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots
            .entry(url.to_owned())
            .or_insert_with(|| {
                Arc::new(Mutex::new(Slot {
                    open: None,
                    failed: None,
                }))
            })
            .clone()
    }

    /// The connection kept for `url` when `usable` says it still is, else a new one from `open`;
    /// all of it, the wait for the slot included, within [`BROKER_TIMEOUT`].
    async fn get<F>(
        &self,
        url: &str,
        usable: impl Fn(&C) -> bool,
        open: impl FnOnce() -> F,
    ) -> Result<C, Unconnected>
    where
        F: std::future::Future<Output = Result<C, Unconnected>>,
    {
        let slot = self.slot(url);
        let got = tokio::time::timeout(BROKER_TIMEOUT, async {
            let mut slot = slot.lock().await;
            if let Some(c) = slot.open.as_ref().filter(|c| usable(c)) {
                return Ok(c.clone());
            }
            slot.open = None;
            if let Some((at, why)) = &slot.failed {
                if at.elapsed() < RECONNECT_PAUSE {
                    return Err(Unconnected::Failed(why.clone()));
                }
            }
            // The slot stays locked while connecting: the other attempts to this broker wait
            // for this connection rather than each opening one.
            match open().await {
                Ok(c) => {
                    slot.open = Some(c.clone());
                    slot.failed = None;
                    Ok(c)
                }
                Err(Unconnected::Failed(why)) => {
                    slot.failed = Some((Instant::now(), why.clone()));
                    Err(Unconnected::Failed(why))
                }
                Err(refused) => Err(refused),
            }
        })
        .await;
        match got {
            Ok(got) => got,
            Err(_) => {
                let why = format!("connecting to {} timed out", redact_url(url));
                // Whoever holds the slot is still connecting; noting the failure beside it
                // makes the next attempts fail fast until it is done.
                if let Ok(mut slot) = slot.try_lock() {
                    slot.failed = Some((Instant::now(), why.clone()));
                }
                Err(Unconnected::Failed(why))
            }
        }
    }

    /// Forgets the connection to `url` (it failed): the next attempt opens another.
    async fn forget(&self, url: &str) {
        let slot = self.slot(url);
        // Bounded like the rest: whoever holds the slot is opening a new connection anyway.
        if let Ok(mut slot) = tokio::time::timeout(BROKER_TIMEOUT, slot.lock()).await {
            slot.open = None;
        };
    }
}

impl Common {
    /// Checks the broker's host against the network policy, resolved now.
    async fn check_host(&self, url: &str) -> Result<(), Unconnected> {
        let parsed = url::Url::parse(url)
            .map_err(|e| Unconnected::Failed(format!("{}: {e}", redact_url(url))))?;
        let host = parsed
            .host_str()
            .unwrap_or_default()
            .trim_matches(['[', ']'])
            .to_owned();
        let port = parsed.port().unwrap_or(5672);
        let addresses = tokio::net::lookup_host((host.as_str(), port))
            .await
            .map_err(|e| Unconnected::Failed(format!("cannot resolve {host}: {e}")))?;
        for a in addresses {
            if let Err(r) = self.policy.check(a.ip()) {
                return Err(Unconnected::Refused(format!(
                    "refused target {host}: {} is in a {} range; {}",
                    a.ip(),
                    r.0,
                    posthorn_core::network::admit_hint(a.ip())
                )));
            }
        }
        Ok(())
    }

    /// `text` (a routing key, a subject) rendered for the event whose envelope is `body`; the
    /// envelope is read only when `text` is a template.
    async fn render(&self, text: &str, body: &[u8]) -> Result<String, String> {
        if !is_template(text) {
            return Ok(text.to_owned());
        }
        let event: Value =
            serde_json::from_slice(body).map_err(|e| format!("stored event is not JSON: {e}"))?;
        let (rendered, _) = self.sandbox.render(Some(text), None, &event, false).await?;
        Ok(rendered.unwrap_or_default())
    }

    /// Refuses, when a delivery is written, a `field` template that does not compile.
    async fn check_template(&self, field: &str, text: &str) -> Result<(), Invalid> {
        if is_template(text) {
            self.sandbox
                .check(Some(text), None)
                .await
                .map_err(|(_, why)| Invalid::one(field, why))?;
        }
        Ok(())
    }
}

/// A broker URL with a password is a credential: `/url`.
fn url_secret(config: &Value) -> Vec<String> {
    config
        .get("url")
        .and_then(Value::as_str)
        .filter(|u| url::Url::parse(u).is_ok_and(|u| u.password().is_some()))
        .map(|_| vec!["/url".to_owned()])
        .unwrap_or_default()
}

fn cannot_connect(url: &str, e: impl std::fmt::Display) -> Unconnected {
    Unconnected::Failed(format!("cannot connect to {}: {e}", redact_url(url)))
}

fn check_url(errors: &mut Errors, url: &str, schemes: &[&str]) {
    match url::Url::parse(url) {
        Ok(u) if schemes.contains(&u.scheme()) && u.host().is_some() => {}
        _ => errors.add(
            "url",
            format!("must be a {} URL with a host", schemes.join(" or ")),
        ),
    }
}

/// The `amqp` service.
pub struct AmqpService {
    common: Arc<Common>,
    /// One confirming channel per broker URL.
    channels: Arc<Connections<Channel>>,
    schema: Value,
}

impl AmqpService {
    pub fn new(policy: NetworkPolicy, sandbox: Arc<TemplateSandbox>) -> Self {
        Self {
            common: Arc::new(Common { sandbox, policy }),
            channels: Arc::default(),
            schema: serde_json::to_value(schemars::schema_for!(AmqpConfig)).unwrap_or(Value::Null),
        }
    }
}

impl Service for AmqpService {
    fn name(&self) -> &str {
        "amqp"
    }
    fn description(&self) -> &str {
        "A persistent message to an AMQP 0-9-1 exchange (RabbitMQ), confirmed by the broker"
    }
    fn config_schema(&self) -> &Value {
        &self.schema
    }
    fn secret_paths(&self, config: &Value) -> Vec<String> {
        url_secret(config)
    }

    fn check(&self, config: &Value) -> Result<Arc<dyn Target>, Invalid> {
        let config: AmqpConfig = typed(config, "")?;
        let mut errors = Errors::default();
        check_url(&mut errors, &config.url, &["amqp", "amqps"]);
        if config.routing_key.len() > 255 {
            errors.add("routing_key", "must be at most 255 bytes");
        }
        errors.finish()?;
        Ok(Arc::new(AmqpTarget {
            common: self.common.clone(),
            channels: self.channels.clone(),
            config,
        }))
    }
}

struct AmqpTarget {
    common: Arc<Common>,
    channels: Arc<Connections<Channel>>,
    config: AmqpConfig,
}

impl std::fmt::Debug for AmqpTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmqpTarget")
            .field("url", &redact_url(&self.config.url))
            .finish_non_exhaustive()
    }
}

impl Target for AmqpTarget {
    fn destination(&self) -> Option<&str> {
        Some(&self.config.url)
    }

    fn write_check(&self) -> BoxFuture<'_, Result<(), Invalid>> {
        Box::pin(
            self.common
                .check_template("routing_key", &self.config.routing_key),
        )
    }

    fn attempt<'a>(&'a self, a: Attempt<'a>) -> BoxFuture<'a, Report> {
        Box::pin(self.publish(a))
    }
}

impl AmqpTarget {
    async fn channel(&self) -> Result<Channel, Unconnected> {
        let url = &self.config.url;
        let open = || async {
            self.common.check_host(url).await?;
            let conn = Connection::connect(url, ConnectionProperties::default())
                .await
                .map_err(|e| cannot_connect(url, e))?;
            let ch = conn
                .create_channel()
                .await
                .map_err(|e| cannot_connect(url, e))?;
            ch.confirm_select(ConfirmSelectOptions::default())
                .await
                .map_err(|e| cannot_connect(url, e))?;
            Ok(ch)
        };
        self.channels
            .get(url, |ch| ch.status().connected(), open)
            .await
    }

    async fn publish(&self, a: Attempt<'_>) -> Report {
        let started = Instant::now();
        let body = a.event.envelope();
        let routing_key = match self.common.render(&self.config.routing_key, &body).await {
            Ok(k) => k,
            Err(why) => {
                return Report::logged(
                    Verdict::Final,
                    true,
                    json!({"url": redact_url(&self.config.url)}),
                    None,
                    Some(why),
                    started,
                )
            }
        };
        let wire_id = a.event.wire_id().into_owned();
        let request = json!({"url": redact_url(&self.config.url), "exchange": self.config.exchange,
            "routing_key": routing_key, "message_id": wire_id, "headers": self.config.headers, "envelope": 1});
        let channel = match self.channel().await {
            Ok(ch) => ch,
            Err(why) => return why.report(request, started),
        };
        let mut headers = FieldTable::default();
        for (k, v) in &self.config.headers {
            headers.insert(k.clone().into(), AMQPValue::LongString(v.clone().into()));
        }
        headers.insert(
            "posthorn-event".into(),
            AMQPValue::LongString(a.event.name.clone().into()),
        );
        headers.insert(
            "posthorn-delivery".into(),
            AMQPValue::LongString(a.delivery_id.to_owned().into()),
        );
        headers.insert("posthorn-attempt".into(), AMQPValue::LongUInt(a.number));
        let properties = BasicProperties::default()
            .with_message_id(wire_id.into())
            .with_content_type("application/json".into())
            .with_delivery_mode(2)
            .with_headers(headers);
        let sent = async {
            channel
                .basic_publish(
                    self.config.exchange.clone().into(),
                    routing_key.clone().into(),
                    BasicPublishOptions::default(),
                    &body,
                    properties,
                )
                .await?
                .await
        };
        match tokio::time::timeout(BROKER_TIMEOUT, sent).await {
            Ok(Ok(Confirmation::Nack(_))) => Report::logged(
                Verdict::Retry { after_ms: None },
                true,
                request,
                Some(json!({"confirmation": "nack"})),
                Some("the broker refused the message (nack)".into()),
                started,
            ),
            Ok(Ok(_)) => Report::logged(
                Verdict::Success,
                true,
                request,
                Some(json!({"confirmation": "ack"})),
                None,
                started,
            ),
            Ok(Err(e)) => {
                self.channels.forget(&self.config.url).await;
                Report::logged(
                    Verdict::Retry { after_ms: None },
                    false,
                    request,
                    None,
                    Some(format!("AMQP: {e}")),
                    started,
                )
            }
            Err(_) => {
                self.channels.forget(&self.config.url).await;
                Report::logged(
                    Verdict::Retry { after_ms: None },
                    false,
                    request,
                    None,
                    Some("the broker did not confirm in time".into()),
                    started,
                )
            }
        }
    }
}

/// The `nats` service.
pub struct NatsService {
    common: Arc<Common>,
    clients: Arc<Connections<async_nats::jetstream::Context>>,
    schema: Value,
}

impl NatsService {
    pub fn new(policy: NetworkPolicy, sandbox: Arc<TemplateSandbox>) -> Self {
        Self {
            common: Arc::new(Common { sandbox, policy }),
            clients: Arc::default(),
            schema: serde_json::to_value(schemars::schema_for!(NatsConfig)).unwrap_or(Value::Null),
        }
    }
}

impl Service for NatsService {
    fn name(&self) -> &str {
        "nats"
    }
    fn description(&self) -> &str {
        "A message on a NATS JetStream subject, acknowledged by the stream"
    }
    fn config_schema(&self) -> &Value {
        &self.schema
    }
    fn secret_paths(&self, config: &Value) -> Vec<String> {
        url_secret(config)
    }

    fn check(&self, config: &Value) -> Result<Arc<dyn Target>, Invalid> {
        let config: NatsConfig = typed(config, "")?;
        let mut errors = Errors::default();
        check_url(&mut errors, &config.url, &["nats", "tls"]);
        if config.subject.is_empty()
            || config.subject.contains(char::is_whitespace) && !is_template(&config.subject)
        {
            errors.add("subject", "must be a subject without spaces");
        }
        errors.finish()?;
        Ok(Arc::new(NatsTarget {
            common: self.common.clone(),
            clients: self.clients.clone(),
            config,
        }))
    }
}

struct NatsTarget {
    common: Arc<Common>,
    clients: Arc<Connections<async_nats::jetstream::Context>>,
    config: NatsConfig,
}

impl std::fmt::Debug for NatsTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsTarget")
            .field("url", &redact_url(&self.config.url))
            .finish_non_exhaustive()
    }
}

impl Target for NatsTarget {
    fn destination(&self) -> Option<&str> {
        Some(&self.config.url)
    }

    fn write_check(&self) -> BoxFuture<'_, Result<(), Invalid>> {
        Box::pin(self.common.check_template("subject", &self.config.subject))
    }

    fn attempt<'a>(&'a self, a: Attempt<'a>) -> BoxFuture<'a, Report> {
        Box::pin(self.publish(a))
    }
}

impl NatsTarget {
    async fn context(&self) -> Result<async_nats::jetstream::Context, Unconnected> {
        let url = &self.config.url;
        let open = || async {
            self.common.check_host(url).await?;
            let client = async_nats::connect(url)
                .await
                .map_err(|e| cannot_connect(url, e))?;
            Ok(async_nats::jetstream::new(client))
        };
        self.clients.get(url, |_| true, open).await
    }

    async fn publish(&self, a: Attempt<'_>) -> Report {
        let started = Instant::now();
        let body = a.event.envelope();
        let subject = match self.common.render(&self.config.subject, &body).await {
            Ok(s) => s,
            Err(why) => {
                return Report::logged(
                    Verdict::Final,
                    true,
                    json!({"url": redact_url(&self.config.url)}),
                    None,
                    Some(why),
                    started,
                )
            }
        };
        let wire_id = a.event.wire_id();
        let request = json!({"url": redact_url(&self.config.url), "subject": subject,
            "message_id": wire_id, "envelope": 1});
        let context = match self.context().await {
            Ok(c) => c,
            Err(why) => return why.report(request, started),
        };
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", wire_id.as_ref());
        headers.insert("Posthorn-Event", a.event.name.as_str());
        headers.insert("Posthorn-Delivery", a.delivery_id);
        headers.insert("Posthorn-Attempt", a.number.to_string().as_str());
        let sent = async {
            context
                .publish_with_headers(subject.clone(), headers, body.into())
                .await
                .map_err(|e| e.to_string())?
                .await
                .map_err(|e| e.to_string())
        };
        match tokio::time::timeout(BROKER_TIMEOUT, sent).await {
            Ok(Ok(ack)) => Report::logged(
                Verdict::Success,
                true,
                request,
                Some(
                    json!({"stream": ack.stream, "sequence": ack.sequence, "duplicate": ack.duplicate}),
                ),
                None,
                started,
            ),
            Ok(Err(e)) => Report::logged(
                Verdict::Retry { after_ms: None },
                true,
                request,
                None,
                Some(format!("JetStream: {e}")),
                started,
            ),
            Err(_) => {
                self.clients.forget(&self.config.url).await;
                Report::logged(
                    Verdict::Retry { after_ms: None },
                    false,
                    request,
                    None,
                    Some("the stream did not acknowledge in time".into()),
                    started,
                )
            }
        }
    }
}
