//! The integration suite's PostgreSQL half runs when `POSTHORN_TEST_POSTGRES_URL` is set, its
//! RabbitMQ and NATS tests when `POSTHORN_TEST_AMQP_URL` and `POSTHORN_TEST_NATS_URL` are, the
//! dashboard's browser tests when `POSTHORN_TEST_CHROMEDRIVER` names a chromedriver, the fault
//! tests (root: a PostgreSQL cluster of their own, a tmpfs) when `POSTHORN_TEST_FAULTS` is; when
//! one is not, its tests are compiled as ignored, with the reason, so that `cargo test` reports
//! them as skipped rather than passed.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    for (var, cfg) in [
        ("POSTHORN_TEST_POSTGRES_URL", "postgres_tests"),
        ("POSTHORN_TEST_AMQP_URL", "amqp_tests"),
        ("POSTHORN_TEST_NATS_URL", "nats_tests"),
        ("POSTHORN_TEST_CHROMEDRIVER", "browser_tests"),
        ("POSTHORN_TEST_FAULTS", "fault_tests"),
    ] {
        println!("cargo:rustc-check-cfg=cfg({cfg})");
        println!("cargo:rerun-if-env-changed={var}");
        if std::env::var(var).is_ok_and(|v| !v.is_empty()) {
            println!("cargo:rustc-cfg={cfg}");
        }
    }
}
