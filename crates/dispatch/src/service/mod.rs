//! The delivery services this crate implements (`posthorn_core::service` is the seam): each is a
//! module of its own, and the dispatcher names none of them.
//!
//! - [`http`]: a signed HTTP request per attempt.
//! - [`email`]: a mail per attempt, through the SMTP server of `[smtp]`.
//! - [`plugin`]: an external command per attempt, configured in `[[services]]`.

pub mod email;
pub mod http;
pub mod plugin;
