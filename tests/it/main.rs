//! Integration tests: each starts the real `posthorn` binary on a free port with its own
//! database, a real HTTP receiver, and speaks HTTP to both.
//!
//! Tests written as `async fn name(backend: Backend)` and listed in [`both_backends!`] run twice:
//! on SQLite, and on PostgreSQL when `POSTHORN_TEST_POSTGRES_URL` is set when the suite is built;
//! otherwise they are reported as ignored, with that reason (`build.rs` sets `postgres_tests`).
//! Those that need a broker too are listed in [`broker_backends!`] with the broker's cfg.

/// Declares `sqlite::NAME` and `postgres::NAME` tests for each backend-parameterised test `NAME`
/// of the calling module.
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $( #[tokio::test] async fn $name() { super::$name(crate::util::Backend::Sqlite).await } )*
        }
        mod postgres {
            $(
                #[tokio::test]
                #[cfg_attr(
                    not(postgres_tests),
                    ignore = "POSTHORN_TEST_POSTGRES_URL is not set: the PostgreSQL half is skipped"
                )]
                async fn $name() {
                    if crate::util::postgres_available() {
                        super::$name(crate::util::Backend::Postgres).await
                    }
                }
            )*
        }
    };
}

/// Declares `sqlite::NAME` and `postgres::NAME` for each backend-parameterised test `NAME` that
/// needs a broker too: `broker "reason" "reason with PostgreSQL" => [NAME, …]`, for each broker
/// cfg (`amqp_tests`, `nats_tests`); the PostgreSQL half runs when both are set.
macro_rules! broker_backends {
    ($($broker:ident $reason:literal $both:literal => [$($name:ident),* $(,)?]);* $(;)?) => {
        mod sqlite {
            $($(
                #[tokio::test]
                #[cfg_attr(not($broker), ignore = $reason)]
                async fn $name() {
                    super::$name(crate::util::Backend::Sqlite).await
                }
            )*)*
        }
        mod postgres {
            $($(
                #[tokio::test]
                #[cfg_attr(not(all($broker, postgres_tests)), ignore = $both)]
                async fn $name() {
                    if crate::util::postgres_available() {
                        super::$name(crate::util::Backend::Postgres).await
                    }
                }
            )*)*
        }
    };
}

mod api;
mod applications;
mod brokers;
mod cli;
mod dashboard;
mod delivery;
mod durability;
mod email;
mod endpoint_auth;
mod examples;
mod faults;
mod feed;
mod fluidsurveys;
mod network;
mod operating;
mod ordering;
mod plugins;
mod proxy;
mod resilience;
mod scale;
mod shaping;
mod sources;
mod tls;
mod util;
mod wazo;
mod wazo_plugins;
