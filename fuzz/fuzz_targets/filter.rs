#![no_main]
//! The property is `posthorn_core::fuzz::filter`'s: `cargo test` replays this target's corpus and
//! regressions through it.

libfuzzer_sys::fuzz_target!(|data: &[u8]| posthorn_core::fuzz::filter(data));
