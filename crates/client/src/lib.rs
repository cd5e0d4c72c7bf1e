//! A client of Posthorn's HTTP API: one method per API call the command line makes; an answer
//! outside 2xx is an [`Error::Api`] carrying the server's problem+json. The bodies it sends and
//! reads are the server's own wire types (`posthorn-wire`).

mod client;

pub use client::{Client, Error};
