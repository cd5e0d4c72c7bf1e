//! A RabbitMQ source: declares its exchange (of its type) and its durable queue, binds them
//! (routing keys, or values of the `name` header on a headers exchange, as wazo's `wazo-headers`),
//! and consumes with a prefetch window. Each message is published on a task of its own, so that a
//! burst rides a few group commits, and acknowledged once stored; a message that can never be an
//! event is rejected without requeue. A lost connection is re-established with a backoff.

use std::sync::Arc;

use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicQosOptions, BasicRejectOptions,
    ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{Connection, ConnectionProperties, ExchangeKind};
use posthorn_core::secrets::redact_url;

use crate::board::SourceBoard;
use crate::config::{AmqpSource, ExchangeType};
use posthorn_core::Principal;
use posthorn_store::Publisher;
use tokio_util::sync::CancellationToken;

use crate::message::request;
use crate::{reconnecting, store, Taken};

/// Consumes the source until `stop`, reconnecting as needed.
pub async fn run(
    source: AmqpSource,
    publisher: Publisher,
    board: SourceBoard,
    slot: usize,
    stop: CancellationToken,
) {
    let source = Arc::new(source);
    let what = format!(
        "AMQP source (queue {} at {})",
        source.queue,
        redact_url(&source.url)
    );
    reconnecting(
        &what,
        "the broker closed the consumer",
        &board,
        slot,
        &stop,
        || consume(&source, &publisher, &board, slot, &stop),
    )
    .await;
}

async fn consume(
    source: &Arc<AmqpSource>,
    publisher: &Publisher,
    board: &SourceBoard,
    slot: usize,
    stop: &CancellationToken,
) -> Result<(), String> {
    let e = |what: &str| {
        let what = what.to_owned();
        move |err: lapin::Error| format!("{what}: {err}")
    };
    // Named, so that an operator (or a test) can tell this source's connection apart.
    let properties = ConnectionProperties::default()
        .with_connection_name(format!("posthorn source {}", source.queue).into());
    let conn = Connection::connect(&source.url, properties)
        .await
        .map_err(e("connect"))?;
    let channel = conn.create_channel().await.map_err(e("open a channel"))?;
    let kind = match source.exchange_type {
        ExchangeType::Direct => ExchangeKind::Direct,
        ExchangeType::Topic => ExchangeKind::Topic,
        ExchangeType::Fanout => ExchangeKind::Fanout,
        ExchangeType::Headers => ExchangeKind::Headers,
    };
    if !source.exchange.is_empty() {
        channel
            .exchange_declare(
                source.exchange.clone().into(),
                kind,
                ExchangeDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(e("declare the exchange"))?;
    }
    channel
        .queue_declare(
            source.queue.clone().into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(e("declare the queue"))?;
    if !source.exchange.is_empty() {
        for binding in &source.bindings {
            let (key, args) = if source.exchange_type == ExchangeType::Headers {
                (String::new(), name_binding(Some(binding)))
            } else {
                (binding.clone(), FieldTable::default())
            };
            channel
                .queue_bind(
                    source.queue.clone().into(),
                    source.exchange.clone().into(),
                    key.into(),
                    QueueBindOptions::default(),
                    args,
                )
                .await
                .map_err(e("bind the queue"))?;
        }
    }
    let mut follower = (source.exchange_type == ExchangeType::Headers
        && source.follow_subscriptions
        && !source.exchange.is_empty())
    .then(|| Follower {
        fixed: source.bindings.iter().cloned().collect(),
        bound: Default::default(),
    });
    if let Some(f) = &mut follower {
        f.follow(&channel, source, publisher).await?;
    }
    let mut tick = tokio::time::interval(FOLLOW_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    channel
        .basic_qos(source.prefetch.max(1), BasicQosOptions::default())
        .await
        .map_err(e("set the prefetch"))?;
    let mut consumer = channel
        .basic_consume(
            source.queue.clone().into(),
            "posthorn".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(e("consume"))?;
    board.update(slot, |s| {
        s.connected = true;
        s.last_error = None;
    });
    tracing::info!(queue = %source.queue, "AMQP source consuming");
    loop {
        let delivery = tokio::select! {
            d = consumer.next() => match d {
                Some(d) => d,
                None => break,
            },
            _ = tick.tick(), if follower.is_some() => {
                if let Some(f) = &mut follower {
                    f.follow(&channel, source, publisher).await?;
                }
                continue;
            }
        };
        if stop.is_cancelled() {
            return Ok(());
        }
        let delivery = delivery.map_err(e("receive"))?;
        let (publisher, board, source) = (publisher.clone(), board.clone(), source.clone());
        tokio::spawn(async move { take(delivery, &source, &publisher, &board, slot).await });
    }
    Ok(())
}

/// How often a source's bindings catch up with the subscriptions.
const FOLLOW_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// A headers binding on the `name` header (`x-match: all`), or on nothing: every message.
fn name_binding(name: Option<&String>) -> FieldTable {
    let mut args = FieldTable::default();
    args.insert("x-match".into(), AMQPValue::LongString("all".into()));
    if let Some(name) = name {
        args.insert("name".into(), AMQPValue::LongString(name.clone().into()));
    }
    args
}

/// The bindings of a headers-exchange source that follow the subscriptions: one per event name
/// some subscription asks for (`None`: every message, for a prefix or `*`), beside the fixed ones.
struct Follower {
    fixed: std::collections::BTreeSet<String>,
    bound: std::collections::BTreeSet<Option<String>>,
}

impl Follower {
    /// Unbinds what the subscriptions no longer ask for (never a fixed binding), then binds what
    /// they ask for and is not bound.
    async fn follow(
        &mut self,
        channel: &lapin::Channel,
        source: &AmqpSource,
        publisher: &Publisher,
    ) -> Result<(), String> {
        let wanted = publisher.wanted_names();
        let mut want: std::collections::BTreeSet<Option<String>> = wanted
            .names
            .into_iter()
            .filter(|n| !self.fixed.contains(n))
            .map(Some)
            .collect();
        if wanted.by_pattern {
            want.insert(None);
        }
        // Unbind first: once a new name is bound (and its events seen), the names no subscription
        // asks for any more are no longer routed to the queue.
        for b in self.bound.difference(&want).cloned().collect::<Vec<_>>() {
            channel
                .queue_unbind(
                    source.queue.clone().into(),
                    source.exchange.clone().into(),
                    "".into(),
                    name_binding(b.as_ref()),
                )
                .await
                .map_err(|err| format!("unbind the queue from {}: {err}", shown(&b)))?;
            tracing::info!(queue = %source.queue, name = %shown(&b), "AMQP source unbound");
            self.bound.remove(&b);
        }
        for b in want.difference(&self.bound).cloned().collect::<Vec<_>>() {
            channel
                .queue_bind(
                    source.queue.clone().into(),
                    source.exchange.clone().into(),
                    "".into(),
                    QueueBindOptions::default(),
                    name_binding(b.as_ref()),
                )
                .await
                .map_err(|err| format!("bind the queue to {}: {err}", shown(&b)))?;
            tracing::info!(queue = %source.queue, name = %shown(&b), "AMQP source bound");
            self.bound.insert(b);
        }
        Ok(())
    }
}

fn shown(binding: &Option<String>) -> &str {
    binding.as_deref().unwrap_or("every message")
}

fn text_header(headers: Option<&FieldTable>, key: &str) -> Option<String> {
    match headers?.inner().get(&ShortString::from(key.to_owned()))? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        _ => None,
    }
}

/// The message's headers with a scalar value, as text: the event's routing attributes (a wazo
/// bus message's `user_uuid:<uuid>`, `tenant_uuid`, `origin_uuid`, …).
fn scalar_headers(headers: Option<&FieldTable>) -> Vec<(String, String)> {
    let Some(headers) = headers else {
        return Vec::new();
    };
    headers
        .inner()
        .iter()
        .filter_map(|(k, v)| {
            let text = match v {
                AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
                AMQPValue::ShortString(s) => s.as_str().to_owned(),
                AMQPValue::Boolean(b) => b.to_string(),
                AMQPValue::ShortShortInt(n) => n.to_string(),
                AMQPValue::ShortShortUInt(n) => n.to_string(),
                AMQPValue::ShortInt(n) => n.to_string(),
                AMQPValue::ShortUInt(n) => n.to_string(),
                AMQPValue::LongInt(n) => n.to_string(),
                AMQPValue::LongUInt(n) => n.to_string(),
                AMQPValue::LongLongInt(n) => n.to_string(),
                _ => return None,
            };
            Some((k.as_str().to_owned(), text))
        })
        .collect()
}

/// Stores one message as an event, then acknowledges it; or rejects it for good.
async fn take(
    delivery: Delivery,
    source: &AmqpSource,
    publisher: &Publisher,
    board: &SourceBoard,
    slot: usize,
) {
    let props = &delivery.properties;
    let headers = props.headers().as_ref();
    let id = props
        .message_id()
        .as_ref()
        .map(|s| s.as_str().to_owned())
        .or_else(|| {
            source
                .message_id_header
                .as_deref()
                .and_then(|h| text_header(headers, h))
        });
    let made = request(
        &delivery.data,
        text_header(headers, "name"),
        delivery.routing_key.as_str(),
        id,
        scalar_headers(headers),
    );
    // Stored, or kept: while the database is away, the message waits here, unacknowledged
    // (within the prefetch window, so the consumer takes no more).
    let origin = Principal::Source(format!("amqp:{}", source.queue));
    if let Taken::Unusable(why) = store(made, publisher, &origin, board, slot, || async {}).await {
        tracing::warn!(queue = %source.queue, reason = %why, "AMQP message rejected: it cannot be an event");
        let _ = delivery.reject(BasicRejectOptions { requeue: false }).await;
        return;
    }
    if let Err(e) = delivery.ack(BasicAckOptions::default()).await {
        // Stored already: a redelivery is answered as a duplicate (same message id).
        tracing::warn!(queue = %source.queue, error = %e, "acknowledging an AMQP message failed");
    }
}
