//! The integration suite's PostgreSQL half runs when `POSTHORN_TEST_POSTGRES_URL` is set; when
//! it is not, those tests are compiled as ignored, with the reason, so that `cargo test` reports
//! them as skipped rather than passed.

fn main() {
    println!("cargo:rustc-check-cfg=cfg(postgres_tests)");
    println!("cargo:rerun-if-env-changed=POSTHORN_TEST_POSTGRES_URL");
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var("POSTHORN_TEST_POSTGRES_URL").is_ok_and(|v| !v.is_empty()) {
        println!("cargo:rustc-cfg=postgres_tests");
    }
}
