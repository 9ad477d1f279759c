#!/usr/bin/env bash
# Builds and briefly runs the cargo-fuzz targets for the buildinfo and
# pclntab parsers (libFuzzer, pinned nightly). A crash fails the run.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
NIGHTLY=nightly-2026-05-19
for t in buildinfo pclntab; do
  MAPLEAK_SKIP_EBPF=1 cargo +"$NIGHTLY" fuzz run "$t" -- -max_total_time="${FUZZ_SECONDS:-10}" 2>&1 | tail -n 3
done
