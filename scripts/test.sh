#!/usr/bin/env bash
# The whole test suite, as CI runs it (`.ci/run` calls exactly this).
# Run as root: the end-to-end tier attaches real uprobes; with CI set, a
# missing privilege is a failure, never a skip.
#
#   1. set-up (idempotent)          4. tier 1 + tier 2 tests (cargo test)
#   2. format check, clippy         5. fuzz targets, briefly
#   3. Go fixtures (cached)         6. benchmark smoke run (timing never asserted)
set -euo pipefail
cd "$(dirname "$0")/.."
step() { printf '\n==> %s\n' "$*" >&2; }

step "set-up"
bash scripts/setup.sh

step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy (warnings are errors)"
cargo clippy --locked --all-targets -- -D warnings   # default members

step "Go fixtures (cargo xtask fixtures)"
cargo xtask fixtures

step "tests (tier 1: parsers, plan, model, report; tier 2: real probes on real Go processes)"
cargo test --locked --no-fail-fast   # default members: tracer-ebpf only builds for BPF

if [ -x scripts/fuzz.sh ]; then
  step "fuzz targets (brief)"
  bash scripts/fuzz.sh
fi

step "benchmark smoke run"
cargo xtask bench --smoke

echo "all checks passed" >&2
