#!/usr/bin/env bash
# Builds and briefly runs the cargo-fuzz targets (libFuzzer, pinned
# nightly): the buildinfo and pclntab parsers, whole executables
# (BinaryInfo), ring-buffer records and map headers. A crash fails the run.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
NIGHTLY=nightly-2026-05-19
# A real Go executable seeds the BinaryInfo target (random bytes rarely get
# past the ELF header); the smallest stripped fixture, when built.
seed=$(ls -S ../target/fixtures/*-amd64-stripped 2>/dev/null | tail -n 1 || true)
if [ -n "$seed" ]; then
  mkdir -p corpus/binary_info
  cp "$seed" corpus/binary_info/
fi
# Each target's output is kept; a passing run shows its last lines (the
# fuzzer's summary), a failing one enough to see a compiler error or the
# crash's input.
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for t in buildinfo pclntab binary_info ingest headers; do
  if ! MAPLEAK_SKIP_EBPF=1 cargo +"$NIGHTLY" fuzz run "$t" -- -max_total_time="${FUZZ_SECONDS:-10}" >"$log" 2>&1; then
    echo "fuzz: target $t failed (build or crash); the last 80 lines of its output:" >&2
    tail -n 80 "$log" >&2
    exit 1
  fi
  tail -n 3 "$log"
done
