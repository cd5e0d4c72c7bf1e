#!/usr/bin/env bash
# Fuzzes each target of fuzz/ for a bounded time (FUZZ_SECONDS, 30 by default) with cargo fuzz on
# the nightly toolchain, which it installs when missing. Any crash fails the run and leaves its
# input in fuzz/artifacts/<target>/: copy it to fuzz/regressions/<target>/, and `cargo test`
# replays it from then on (crates/core/tests/fuzz_corpus.rs).
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds="${FUZZ_SECONDS:-30}"
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked --quiet
cargo +nightly fuzz build
# New inputs go to a scratch directory; the corpus in the repository is read only.
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
# Runs one target; its whole output is shown when it fails, its last lines when it does not.
fuzz() {
  local target=$1; shift
  mkdir -p "$scratch/$target"
  if cargo +nightly fuzz run "$target" "$scratch/$target" "corpus/$target" -- \
      -max_total_time="$seconds" "$@" >"$scratch/$target.log" 2>&1; then
    echo "fuzz $target: $(grep -E '^Done|exiting' "$scratch/$target.log" | tail -n 1)"
  else
    cat "$scratch/$target.log" >&2
    echo "fuzz $target found a crash: see fuzz/artifacts/$target/" >&2
    exit 1
  fi
}
for target in filter form intake; do
  fuzz "$target" -timeout=10 -rss_limit_mb=2048
done
# Templates run, in production, in worker processes with a memory cap and a deadline
# (posthorn_dispatch::sandbox): here the same limits (256 MB, 2 s) end a child process, and
# running out of either is the expected outcome for a hostile template, not a finding. Only a
# crash (a panic, a property that does not hold) fails the run.
fuzz template -timeout=2 -malloc_limit_mb=256 -rss_limit_mb=2048 \
  -fork=1 -ignore_ooms=1 -ignore_timeouts=1
