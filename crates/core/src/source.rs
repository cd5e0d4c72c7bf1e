//! What the event sources (broker consumers, the `ingest` crate) report of themselves, for
//! `GET /v1/sources` and `/readyz`: one [`SourceStatus`] each, on a shared [`SourceBoard`].

use std::sync::{Arc, Mutex};

use serde::Serialize;

/// One source's state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct SourceStatus {
    /// `amqp` or `nats`.
    pub kind: String,
    /// The source's name: its queue, or its stream and consumer.
    pub name: String,
    /// Connected and consuming.
    pub connected: bool,
    /// The last error, while it lasts (cleared once connected again).
    pub last_error: Option<String>,
    /// Messages stored as events (a redelivered one counts again; it makes no second event).
    pub taken: u64,
    /// Messages refused for good (not JSON, no usable name, failing their event type's schema).
    pub rejected: u64,
}

/// Every source's state, shared between the sources (writers) and the API (reader).
#[derive(Debug, Clone, Default)]
pub struct SourceBoard(Arc<Mutex<Vec<SourceStatus>>>);

impl SourceBoard {
    /// Adds a source; returns its slot.
    pub fn add(&self, kind: &str, name: &str) -> usize {
        let mut all = self.0.lock().unwrap_or_else(|p| p.into_inner());
        all.push(SourceStatus {
            kind: kind.to_owned(),
            name: name.to_owned(),
            ..SourceStatus::default()
        });
        all.len() - 1
    }

    /// Changes a source's state.
    pub fn update(&self, slot: usize, change: impl FnOnce(&mut SourceStatus)) {
        let mut all = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = all.get_mut(slot) {
            change(s);
        }
    }

    pub fn all(&self) -> Vec<SourceStatus> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}
