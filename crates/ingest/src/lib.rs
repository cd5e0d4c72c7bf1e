//! Event sources besides HTTP: consumers of the platform's message brokers that turn messages
//! into events through the one [`posthorn_store::Publisher`], as `POST /v1/events` does.
//!
//! - `message.rs`: a message (its body, its headers, its routing key or subject, its id) as a
//!   publish request — the wazo bus envelope `{"name","origin_uuid","data"}` or any JSON object
//!   as the data; the message id as the event's client id, so a redelivered message makes no
//!   second event (on one process or many).
//! - `amqp.rs`: a RabbitMQ queue, bound to an exchange, consumed with a prefetch window.
//! - `nats.rs`: a durable JetStream pull consumer on a stream's subjects.
//!
//! Invariants: a message is acknowledged only once its event and deliveries are durably stored
//! (the publish answered); a message that can never be an event (not JSON, no usable name, its
//! event type's schema refused) is rejected without requeue, logged and counted; anything else —
//! the database away, the connection lost — leaves the message with the broker and is retried,
//! with a backoff capped at 30 s. Each source reports its state on the [`SourceBoard`].

mod amqp;
mod message;
mod nats;

use posthorn_core::config::SourcesConfig;
use posthorn_core::source::SourceBoard;
use posthorn_store::Publisher;
use tokio_util::sync::CancellationToken;

/// Starts a consumer for every configured source; they run until `stop`.
pub fn start(
    sources: &SourcesConfig,
    publisher: Publisher,
    board: SourceBoard,
    stop: CancellationToken,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    for source in &sources.amqp {
        let slot = board.add("amqp", &source.queue);
        tasks.push(tokio::spawn(amqp::run(
            source.clone(),
            publisher.clone(),
            board.clone(),
            slot,
            stop.clone(),
        )));
    }
    for source in &sources.nats {
        let slot = board.add("nats", &format!("{}/{}", source.stream, source.consumer));
        tasks.push(tokio::spawn(nats::run(
            source.clone(),
            publisher.clone(),
            board.clone(),
            slot,
            stop.clone(),
        )));
    }
    tasks
}
