//! Nothing: this package holds the `skipped` test target, which prints the closing summary of
//! `cargo test` (see `tests/skipped.rs`).
