//! What the event sources report of themselves, for `GET /v1/sources` and `/readyz`: one
//! [`SourceStatus`] each (a wire type), on a shared [`SourceBoard`] the sources write and the API
//! reads (through a snapshot function the binary gives it).

use std::sync::{Arc, Mutex};

pub use posthorn_wire::api::SourceStatus;

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
