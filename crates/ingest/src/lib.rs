//! Event sources besides HTTP: consumers of the platform's message brokers that turn messages
//! into events through the one [`posthorn_store::Publisher`], as `POST /v1/events` does.
//!
//! - `message.rs`: a message (its body, its headers, its routing key or subject, its id) as a
//!   publish request — the wazo bus envelope `{"name","origin_uuid","data"}` or any JSON object
//!   as the data; the message id as the event's client id, so a redelivered message makes no
//!   second event (on one process or many).
//! - `amqp.rs`: a RabbitMQ queue, bound to an exchange, consumed with a prefetch window.
//! - `nats.rs`: a durable JetStream pull consumer on a stream's subjects.
//! - `config.rs`: the `[sources]` section of the config file; `board.rs`: the sources' state.
//! - here: [`store`], what both do with a message (check it, store it with a backoff, count it),
//!   and [`reconnecting`], how both keep their connection.
//!
//! Invariants: a message is acknowledged only once its event and deliveries are durably stored
//! (the publish answered); a message that can never be an event (not JSON, no usable name, its
//! event type's schema refused) is rejected without requeue, logged and counted; anything else —
//! the database away, the connection lost — leaves the message with the broker and is retried,
//! with a backoff capped at 30 s. Each source reports its state on the [`SourceBoard`].

mod amqp;
pub mod board;
pub mod config;
mod message;
mod nats;

use std::future::Future;
use std::time::Duration;

use crate::board::SourceBoard;
use crate::config::SourcesConfig;
use posthorn_core::Principal;
use posthorn_store::Publisher;
use tokio_util::sync::CancellationToken;

/// The longest wait between attempts to connect, or to store a message.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Runs `consume` until `stop`, and again after each loss with a doubling wait (up to
/// [`MAX_BACKOFF`], back to 1 s once a connection has held longer than that); each loss is logged (`what`: the source) and shown on the board. `consume`
/// returning `Ok` means the broker ended it (`ended` says so).
async fn reconnecting<F, Fut>(
    what: &str,
    ended: &str,
    board: &SourceBoard,
    slot: usize,
    stop: &CancellationToken,
    mut consume: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let mut backoff = Duration::from_secs(1);
    while !stop.is_cancelled() {
        let started = std::time::Instant::now();
        let outcome = tokio::select! {
            _ = stop.cancelled() => return,
            r = consume() => r,
        };
        let why = outcome.err().unwrap_or_else(|| ended.to_owned());
        // A connection that held for a while was a recovery: the next loss starts over at 1 s.
        if started.elapsed() > MAX_BACKOFF {
            backoff = Duration::from_secs(1);
        }
        tracing::warn!(error = %why, "{what} lost; reconnecting in {} s", backoff.as_secs());
        board.update(slot, |s| {
            s.connected = false;
            s.last_error = Some(why);
        });
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// What became of a message.
enum Taken {
    /// Stored as an event (or found stored already): acknowledge it.
    Stored,
    /// It can never be an event, and why: reject it for good.
    Unusable(String),
}

/// The one way a source stores a message: its publish request (or why it cannot be one) is
/// checked by the publisher for `origin` (`amqp:QUEUE`, `nats:STREAM`), then stored — retried
/// with a doubling wait, up to [`MAX_BACKOFF`], while the store refuses; `waiting` runs before each
/// wait (a NATS message asks the server for more time with it) — and counted on the board and in
/// `posthorn_events_received_total{source}` (by the publisher).
async fn store<W, WF>(
    made: Result<posthorn_core::event::PublishRequest, message::Unusable>,
    publisher: &Publisher,
    origin: &Principal,
    board: &SourceBoard,
    slot: usize,
    mut waiting: W,
) -> Taken
where
    W: FnMut() -> WF,
    WF: Future<Output = ()>,
{
    let prepared = match made.map_err(|message::Unusable(why)| why) {
        Ok(req) => publisher
            .prepare_bounded(origin, req, "")
            .await
            .map_err(|e| e.to_string()),
        Err(why) => Err(why),
    };
    let event = match prepared {
        Ok(event) => event,
        Err(why) => {
            board.update(slot, |s| s.rejected += 1);
            return Taken::Unusable(why);
        }
    };
    let mut backoff = Duration::from_millis(200);
    while let Err(e) = publisher.publish(vec![event.clone()]).await {
        tracing::warn!(source = %origin, error = %e, "storing a message failed; retrying");
        waiting().await;
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
    board.update(slot, |s| s.taken += 1);
    Taken::Stored
}

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
