//! The delivery services this crate implements (`posthorn_core::service` is the seam): each is a
//! module of its own, and the dispatcher names none of them.
//!
//! - [`http`]: a signed HTTP request per attempt.
//! - [`email`]: a mail per attempt, through the SMTP server of `[smtp]`.
//! - [`broker`]: a message per attempt to the subscriber's own queue (`amqp`, `nats`).
//! - [`plugin`]: an external command per attempt, configured in `[[services]]`.
//! - [`poll`]: nothing pushed: the consumer pulls the subscription's feed.

pub mod broker;
pub mod email;
pub mod http;
pub mod plugin;
pub mod poll;

/// A section of the configuration a service cannot be built from (`[smtp]`, a `[[services]]`
/// entry): which, and why.
#[derive(Debug, thiserror::Error)]
#[error("{section}: {why}")]
pub struct ConfigError {
    pub section: String,
    pub why: String,
}

impl ConfigError {
    pub(crate) fn new(section: impl Into<String>, why: impl std::fmt::Display) -> Self {
        Self {
            section: section.into(),
            why: why.to_string(),
        }
    }
}
