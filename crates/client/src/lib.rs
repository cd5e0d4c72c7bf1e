//! A client of Posthorn's HTTP API, and the API's wire types.
//!
//! - [`http_config`]: the `http` service's config, as a subscriber writes it.
//! - [`wire`]: what the server answers and the bodies it takes, defined once for both sides
//!   (the server depends on this crate without its `http` feature, for these alone).
//! - [`Client`] (feature `http`): one method per API call the command line makes; an answer
//!   outside 2xx is an [`Error::Api`] carrying the server's problem+json.

pub mod http_config;
pub mod wire;

#[cfg(feature = "http")]
mod client;

#[cfg(feature = "http")]
pub use client::{Client, Error};
