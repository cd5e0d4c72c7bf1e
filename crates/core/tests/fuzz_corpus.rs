//! Every input of the fuzz corpus and every crash a fuzz run ever found (`fuzz/regressions/`),
//! replayed through the same properties the fuzz targets check (`posthorn_core::fuzz`), on the
//! stable toolchain, in `cargo test` (the properties are in debug builds and with the `fuzzing`
//! feature only).
#![cfg(any(debug_assertions, feature = "fuzzing"))]

use std::path::PathBuf;

type Target = fn(&[u8]);

const TARGETS: [(&str, Target); 4] = [
    ("filter", posthorn_core::fuzz::filter),
    ("template", posthorn_core::fuzz::template),
    ("form", posthorn_core::fuzz::form),
    ("intake", posthorn_core::fuzz::intake),
];

fn inputs(kind: &str, target: &str) -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz")
        .join(kind)
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| {
            p.is_file()
                && !p
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    files.sort();
    files
}

fn replay(kind: &str) -> usize {
    let mut n = 0;
    for (target, check) in TARGETS {
        for file in inputs(kind, target) {
            let bytes = std::fs::read(&file).expect("readable");
            let outcome = std::panic::catch_unwind(|| check(&bytes));
            assert!(outcome.is_ok(), "{target}: {} fails", file.display());
            n += 1;
        }
    }
    n
}

#[test]
fn the_seed_corpus_holds() {
    assert!(replay("corpus") > 100, "the corpus is in the repository");
}

#[test]
fn every_crash_found_stays_fixed() {
    replay("regressions");
}
