//! The integration suite's PostgreSQL half runs when `POSTHORN_TEST_POSTGRES_URL` is set, its
//! RabbitMQ and NATS tests when `POSTHORN_TEST_AMQP_URL` and `POSTHORN_TEST_NATS_URL` are, the
//! dashboard's browser tests when `POSTHORN_TEST_CHROMEDRIVER` names a chromedriver, the fault
//! tests (root: a PostgreSQL cluster of their own, a tmpfs) when `POSTHORN_TEST_FAULTS` is; when
//! one is not, its tests are compiled as ignored, with the reason, so that `cargo test` reports
//! them as skipped rather than passed. The same holds for the Node and Go example receivers'
//! tests, run when `node` and `go` are on the `PATH`.

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
    // The example receivers in Node and Go are checked where `node` and `go` are installed.
    println!("cargo:rerun-if-env-changed=PATH");
    for (program, arg, cfg) in [
        ("node", "--version", "node_tests"),
        ("go", "version", "go_tests"),
    ] {
        println!("cargo:rustc-check-cfg=cfg({cfg})");
        let runs = std::process::Command::new(program)
            .arg(arg)
            .output()
            .is_ok_and(|o| o.status.success());
        if runs {
            println!("cargo:rustc-cfg={cfg}");
        }
    }
}
