#!/usr/bin/env bash
# Builds the release mapleak-trace as one static binary and installs it in
# ROOT/bin (default ROOT: target/static). The Dockerfile runs this script.
#
#   bash scripts/build-release.sh [ROOT] [cargo install options...]
#
# It is `cargo install --locked --path tracer-user` (the README's install)
# for the host triple with glibc linked in statically (`+crt-static`, a
# static-pie): aya is pure Rust, so nothing else is linked, and the binary
# resolves no host names (numeric listen addresses only), so glibc's NSS is
# never needed. `--target` keeps the flag off build scripts and proc macros,
# which cannot be static. Needs what scripts/setup-build.sh installs.
set -euo pipefail
cd "$(dirname "$0")/.."
root=${1:-target/static}
shift || true
host=$(rustc -vV | sed -n 's/^host: //p')
case "$host" in
  *-linux-gnu) ;;
  *) echo "build-release: host $host is not a linux-gnu triple; build with cargo install --locked --path tracer-user" >&2; exit 1 ;;
esac
flags_var="CARGO_TARGET_$(echo "$host" | tr 'a-z-' 'A-Z_')_RUSTFLAGS"
export "$flags_var=-C target-feature=+crt-static"
cargo install --locked --path tracer-user --root "$root" --target "$host" --force "$@"
bin="$root/bin/mapleak-trace"
# A dynamic binary would fail at run time on a base image without libc.
# (ldd lists `lib => path` lines only for a dynamic one.)
if ldd "$bin" 2>&1 | grep -q '=>'; then
  echo "build-release: $bin is not static:" >&2; ldd "$bin" >&2; exit 1
fi
"$bin" --version >&2
