//! Delivery: the workers that take due deliveries from the store, send them, and write back what
//! happened.
//!
//! - [`Dispatcher`] runs the loop: claim due deliveries under a lease, attempt each on a bounded
//!   pool of workers, settle the outcomes in batches, renew the leases of what is in flight, and on
//!   shutdown finish or hand back the rest.
//! - [`service`] has the delivery services (`posthorn_core::service::Service`): [`service::http`]
//!   makes one signed HTTP request per attempt, with the SSRF check of every resolved address.
//!   The dispatcher speaks only to the `Service`/`Target` seam; HTTP is known only there.
//!
//! - `config.rs`: the `[smtp]` and `[[services]]` sections of the config file, for the `email`
//!   service and the plugins.
//!
//! Invariant: the dispatcher never writes a delivery it does not hold the lease of; every
//! outcome goes through `Store::settle`, which checks that.

pub mod config;
mod dispatcher;
pub mod fairness;
pub mod sandbox;
pub mod service;

pub use dispatcher::{DispatchConfig, Dispatcher};
