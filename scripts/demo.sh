#!/usr/bin/env bash
# Sets up, builds, starts the bundled leaking Go demo service and points
# mapleak-trace at it for 20 seconds. Run as root (uprobes need it).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release -p tracer-user
mkdir -p target/demo
(cd testdata/go && go build -o ../../target/demo/demo ./demo)
./target/demo/demo 40s > target/demo/demo.log 2>&1 &
demo=$!
trap 'kill "$demo" 2>/dev/null || true; wait "$demo" 2>/dev/null || true' EXIT
sleep 0.2
echo "demo service running as pid $demo; tracing it for 20 s (Ctrl-C stops early)..." >&2
./target/release/mapleak-trace --pid "$demo" --duration "${DEMO_DURATION:-20s}" --interval 5s
