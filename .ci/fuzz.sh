#!/usr/bin/env bash
# The fuzz targets of fuzz/ (cargo fuzz's layout, libFuzzer through libfuzzer-sys), built and run
# for a bounded time each (FUZZ_SECONDS, 20 by default) on the nightly toolchain, which is
# installed when missing. `build` only builds, `run` only runs, no argument does both.
#
# It builds with the flags `cargo fuzz build` uses (sanitizer coverage, AddressSanitizer,
# `--cfg fuzzing`, debug assertions) and runs the binaries directly, so CI does not compile
# cargo-fuzz itself; by hand, `cargo fuzz run TARGET` is the same (fuzz/README.md).
#
# Any crash fails the run and leaves its input in fuzz/artifacts/<target>/: copy it to
# fuzz/regressions/<target>/, and `cargo test` replays it from then on
# (crates/core/tests/fuzz_corpus.rs).
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds="${FUZZ_SECONDS:-20}"
triple=x86_64-unknown-linux-gnu
bin="target/$triple/release"

build() {
  rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
  RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares -Cllvm-args=-sanitizer-coverage-stack-depth \
--cfg fuzzing -Cdebug-assertions -Coverflow-checks -Zsanitizer=address" \
    cargo +nightly build --quiet --release --target "$triple" --bins
}

# Runs one target; its whole output is shown when it fails, its last line when it does not.
fuzz() {
  local target=$1; shift
  mkdir -p "$scratch/$target" "artifacts/$target"
  if ASAN_OPTIONS=detect_odr_violation=0 "$bin/$target" -artifact_prefix="artifacts/$target/" \
      -max_total_time="$seconds" "$@" "$scratch/$target" "corpus/$target" >"$scratch/$target.log" 2>&1; then
    echo "fuzz $target: $(grep -E '^Done|exiting' "$scratch/$target.log" | tail -n 1)"
  else
    cat "$scratch/$target.log" >&2
    echo "fuzz $target found a crash: see fuzz/artifacts/$target/" >&2
    exit 1
  fi
}

run() {
  # New inputs go to a scratch directory; the corpus in the repository is read only.
  scratch=$(mktemp -d)
  trap 'rm -rf "$scratch"' EXIT
  for target in filter form intake; do
    fuzz "$target" -timeout=10 -rss_limit_mb=2048
  done
  # Templates run, in production, in worker processes with a memory cap and a deadline
  # (posthorn_dispatch::sandbox): here the same limits (256 MB, 2 s) end a child process, and
  # running out of either is the expected outcome for a hostile template, not a finding. Only a
  # crash (a panic, a property that does not hold) fails the run.
  fuzz template -timeout=2 -malloc_limit_mb=256 -rss_limit_mb=2048 \
    -fork=1 -ignore_ooms=1 -ignore_timeouts=1
}

case "${1:-all}" in
  build) build ;;
  run) run ;;
  all) build; run ;;
  *) echo "usage: $0 [build|run]" >&2; exit 2 ;;
esac
