//! The wire types of Posthorn's HTTP API, defined once for both sides: the server (`api`,
//! `dispatch`) serializes them, the client (`posthorn-client`, the command line) reads them back,
//! so the two cannot drift apart.
//!
//! - [`api`]: what the server answers (`*View`, `Page`, `Problem`) and the request bodies that
//!   are not domain types of their own.
//! - [`http_config`]: the `http` service's config, as a subscriber writes it.

pub mod api;
pub mod http_config;
