//! A NATS JetStream source: a durable pull consumer (shared by every process on one database,
//! so that each message goes to one of them) on the configured stream and subjects. The subject,
//! less `strip_prefix`, is the event's name; `Nats-Msg-Id` its client id. A message is
//! acknowledged once stored, terminated (`term`) when it can never be an event, and left to be
//! redelivered otherwise.

use async_nats::jetstream::{self, consumer::pull, AckKind};
use futures_util::StreamExt;
use posthorn_core::secrets::redact_url;

use crate::board::SourceBoard;
use crate::config::NatsSource;
use posthorn_core::Principal;
use posthorn_store::Publisher;
use tokio_util::sync::CancellationToken;

use crate::message::request;
use crate::{reconnecting, store, Taken};

/// Consumes the source until `stop`, reconnecting as needed.
pub async fn run(
    source: NatsSource,
    publisher: Publisher,
    board: SourceBoard,
    slot: usize,
    stop: CancellationToken,
) {
    let what = format!(
        "NATS source (stream {} at {})",
        source.stream,
        redact_url(&source.url)
    );
    reconnecting(&what, "the consumer ended", &board, slot, &stop, || {
        consume(&source, &publisher, &board, slot)
    })
    .await;
}

async fn consume(
    source: &NatsSource,
    publisher: &Publisher,
    board: &SourceBoard,
    slot: usize,
) -> Result<(), String> {
    let client = async_nats::connect(&source.url)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let js = jetstream::new(client);
    let stream = js
        .get_or_create_stream(jetstream::stream::Config {
            name: source.stream.clone(),
            subjects: source.subjects.clone(),
            ..Default::default()
        })
        .await
        .map_err(|e| format!("the stream {}: {e}", source.stream))?;
    let consumer = stream
        .get_or_create_consumer(
            &source.consumer,
            pull::Config {
                durable_name: Some(source.consumer.clone()),
                filter_subjects: source.subjects.clone(),
                ack_policy: jetstream::consumer::AckPolicy::Explicit,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| format!("the consumer {}: {e}", source.consumer))?;
    let mut messages = consumer
        .messages()
        .await
        .map_err(|e| format!("consume: {e}"))?;
    board.update(slot, |s| {
        s.connected = true;
        s.last_error = None;
    });
    tracing::info!(stream = %source.stream, consumer = %source.consumer, "NATS source consuming");
    while let Some(message) = messages.next().await {
        let message = message.map_err(|e| format!("receive: {e}"))?;
        let (publisher, board, source) = (publisher.clone(), board.clone(), source.clone());
        tokio::spawn(async move { take(message, &source, &publisher, &board, slot).await });
    }
    Ok(())
}

async fn take(
    message: jetstream::Message,
    source: &NatsSource,
    publisher: &Publisher,
    board: &SourceBoard,
    slot: usize,
) {
    let subject = message.subject.as_str();
    let name = source
        .strip_prefix
        .as_deref()
        .and_then(|p| subject.strip_prefix(p))
        .unwrap_or(subject)
        .to_owned();
    let id = message
        .headers
        .as_ref()
        .and_then(|h| h.get("Nats-Msg-Id"))
        .map(|v| v.as_str().to_owned());
    // Headers other than NATS's own become routing attributes.
    let headers = message
        .headers
        .iter()
        .flat_map(|h| h.iter())
        .filter(|(k, _)| !k.to_string().starts_with("Nats-"))
        .filter_map(|(k, v)| Some((k.to_string(), v.first()?.as_str().to_owned())))
        .collect();
    let made = request(&message.payload, None, &name, id, headers);
    let origin = Principal::Source(format!("nats:{}", source.stream));
    // Still ours while the store refuses it: each wait tells the server, so that it does not
    // redeliver the message meanwhile.
    let progress = || async {
        let _ = message.ack_with(AckKind::Progress).await;
    };
    if let Taken::Unusable(why) = store(made, publisher, &origin, board, slot, progress).await {
        tracing::warn!(stream = %source.stream, reason = %why, "NATS message terminated: it cannot be an event");
        let _ = message.ack_with(AckKind::Term).await;
        return;
    }
    if let Err(e) = message.ack().await {
        tracing::warn!(stream = %source.stream, error = %e, "acknowledging a NATS message failed");
    }
}
