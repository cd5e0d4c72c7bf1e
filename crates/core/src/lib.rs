//! The domain of Posthorn, with no I/O: what an event, a subscription and a delivery are, how an
//! event name is matched by a subscription's patterns, how a webhook is signed (Standard Webhooks),
//! how long to wait before the next attempt, and which network addresses a delivery may reach;
//! who owns and who acts (`owner`), and the seam every delivery service implements (`service`: `Service`, `Target`, `Verdict`, `Registry`).
//!
//! Everything here is pure and deterministic given its inputs (randomness is passed in), so it is
//! tested with plain unit tests. The other crates (`store`, `dispatch`, `api`) depend on this one;
//! it depends on none of them.

pub mod delivery;
pub mod event;
pub mod filter;
#[cfg(any(debug_assertions, feature = "fuzzing"))]
pub mod fuzz;
pub mod id;
pub mod index;
pub mod json;
pub mod metric;
pub mod network;
pub mod owner;
pub mod pattern;
pub mod retry;
pub mod secrets;
pub mod service;
pub mod shape;
pub mod signing;
pub mod subscription;
pub mod time;
pub mod validation;

pub use delivery::{AttemptOutcome, DeliveryStatus};
pub use event::{EventName, StoredEvent};
pub use filter::{EventView, Filter};
pub use id::{ApplicationId, DeliveryId, SubscriptionId};
pub use index::SubscriptionIndex;
pub use network::NetworkPolicy;
pub use owner::{Owner, Principal, Visibility};
pub use pattern::EventPattern;
pub use retry::RetryPolicy;
pub use service::{Registry, Service, Target, Verdict};
pub use signing::Secret;
pub use subscription::{Subscription, SubscriptionSpec};
pub use validation::{FieldError, Invalid};

/// The `user-agent` Posthorn sends with every webhook.
pub const USER_AGENT: &str = concat!("posthorn/", env!("CARGO_PKG_VERSION"));
