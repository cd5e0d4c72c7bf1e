//! The delivery services this crate implements (`posthorn_core::service` is the seam): each is a
//! module of its own, and the dispatcher names none of them.
//!
//! - [`http`]: a signed HTTP request per attempt.
//! - [`email`]: a mail per attempt, through the SMTP server of `[smtp]`.
//! - [`broker`]: a message per attempt to the subscriber's own queue (`amqp`, `nats`).
//! - [`plugin`]: an external command per attempt, configured in `[[services]]`.

pub mod broker;
pub mod email;
pub mod http;
pub mod plugin;
