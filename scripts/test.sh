#!/usr/bin/env bash
# The whole test suite, as CI runs it (`.ci/run` calls exactly this).
# Run as root: the end-to-end tier attaches real uprobes; with CI set, a
# missing privilege is a failure, never a skip.
#
#   1. set-up (idempotent)          5. MAPLEAK_ARM64_E2E=1: the e2e suite on Debian's
#   2. format check, clippy            arm64 6.1 kernel under qemu (after 4,
#   3. Go fixtures (cached)            never alongside: it takes both cores)
#   4. tier 1 + tier 2 tests        6. fuzz targets, briefly
#      (cargo test)                 7. benchmark smoke run (timing never asserted)
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

# Opt-in until the keys tests pass under TCG (README, support matrix).
if [ "${MAPLEAK_ARM64_E2E:-0}" = 1 ]; then
  step "arm64 tier: e2e suite in qemu-system-aarch64, Debian arm64 kernel 6.1 (cargo xtask arm64-e2e)"
  cargo xtask arm64-e2e --kernel 6.1   # 6.12: --kernel 6.12 (not in CI)
fi

if [ -x scripts/fuzz.sh ]; then
  step "fuzz targets (brief)"
  bash scripts/fuzz.sh
fi

step "benchmark smoke run"
cargo xtask bench --smoke

echo "all checks passed" >&2
