//! Delivery: the workers that take due deliveries from the store, send them, and write back what
//! happened.
//!
//! - [`Dispatcher`] runs the loop: claim due deliveries under a lease, attempt each on a bounded
//!   pool of workers, settle the outcomes in batches, renew the leases of what is in flight, and on
//!   shutdown finish or hand back the rest.
//! - [`http::HttpSender`] makes one HTTP attempt: the signed request, the SSRF check of every
//!   resolved address, the response kept for the log.
//!
//! Invariant: the dispatcher never writes a delivery it does not hold the lease of; every
//! outcome goes through `Store::settle`, which checks that.

mod dispatcher;
pub mod fairness;
pub mod http;

pub use dispatcher::{DispatchConfig, Dispatcher};
