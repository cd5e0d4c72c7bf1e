//! The front doors: the APIs of the systems Posthorn replaces, each a whole API of its own —
//! its routes, its auth, its error shape — translating to and from the one subscription model.
//! A door holds no state and no second engine: what it writes goes through the same write path
//! as `/v1`, what it lists is a store query. Each keeps the pure part (request ↔ subscription,
//! subscription ↔ answer) in its `translate.rs`, with unit tests, apart from the I/O.
//!
//! - [`wazo`]: wazo-webhookd's `/1.0/`.
//! - [`fluidsurveys`]: FluidSurveys' `/api/v2/webhooks/`.

pub(crate) mod fluidsurveys;
pub(crate) mod wazo;
