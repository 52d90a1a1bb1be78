#!/usr/bin/env bash
# Runs every fuzz target (cargo fuzz, libFuzzer) for SECONDS each (default 60),
# from the seeds in fuzz/corpus/<target>. A crash stops the run and leaves its
# input in fuzz/artifacts/<target>/: turn it into a regression test of the
# crate it broke (the input checked in beside the test) and fix the bug.
#
# Needs a nightly toolchain (libFuzzer's sanitizer flags) and cargo-fuzz,
# which this script installs from crates.io when it is missing.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

seconds="${1:-60}"
if ! rustup toolchain list | grep -q '^nightly'; then
  echo "fuzz: needs a nightly toolchain: rustup toolchain install nightly" >&2
  exit 1
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi
# Each input at most 64 KiB: the caps the code itself applies are larger,
# and what the targets look for (panics, runaways) shows in small inputs.
# New inputs go to fuzz/work/<target> (not checked in); the seeds in
# fuzz/corpus/<target> are read too.
for target in $(cargo +nightly fuzz list); do
  mkdir -p "work/$target" "corpus/$target"
  echo "fuzz: $target for ${seconds}s"
  cargo +nightly fuzz run -O --debug-assertions "$target" "work/$target" "corpus/$target" -- \
    -max_total_time="$seconds" -max_len=65536 -rss_limit_mb=2048 -timeout=10
done
