#!/usr/bin/env bash
# Installs what building mapleak-trace needs beyond stable Rust: the pinned
# nightly with rust-src (it builds the eBPF crate) and bpf-linker, linked
# against that nightly's own libLLVM. Idempotent: a second run checks and
# returns quickly. scripts/setup.sh runs it (with the test tools), and so
# does the Dockerfile's build stage; `cargo install --path tracer-user`
# needs it first.
set -euo pipefail

NIGHTLY=nightly-2026-05-19   # also in tracer-user/build.rs
say() { printf 'setup-build: %s\n' "$*" >&2; }

if ! command -v cargo >/dev/null || ! command -v rustup >/dev/null; then
  say "cargo/rustup not found: install Rust with rustup first (stable >= 1.95)"; exit 1
fi

# 1. Pinned nightly with rust-src for the eBPF crate.
if ! rustup run "$NIGHTLY" rustc --version >/dev/null 2>&1 \
   || ! rustup component list --toolchain "$NIGHTLY" --installed 2>/dev/null | grep -q '^rust-src'; then
  say "rustup toolchain install $NIGHTLY (+rust-src)"
  RUSTUP_AUTO_INSTALL=1 rustup toolchain install "$NIGHTLY" --profile minimal --component rust-src
fi

# 2. bpf-linker 0.13, linked against the nightly's libLLVM (DESIGN.md section 5).
sysroot=$(rustup run "$NIGHTLY" rustc --print sysroot)
LIB="$sysroot/lib"
llvm_so=$(cd "$LIB" && ls libLLVM-*-rust-*.so 2>/dev/null | head -n1)
if [ -z "$llvm_so" ]; then say "no libLLVM-*.so in $LIB"; exit 1; fi
llvm_name=${llvm_so#lib}; llvm_name=${llvm_name%.so}
llvm_major=$(echo "$llvm_name" | sed -E 's/^LLVM-([0-9]+)-.*/\1/')
if ! bpf-linker --version 2>/dev/null | grep -q '^bpf-linker 0\.13' \
   || ! ldd "$(command -v bpf-linker)" 2>/dev/null | grep -q "$LIB/libLLVM"; then
  say "cargo install bpf-linker (LLVM $llvm_major from $NIGHTLY)"
  RUSTFLAGS="-L $LIB -l dylib=$llvm_name -C link-arg=-Wl,-rpath,$LIB" \
    cargo install --locked --force bpf-linker --version '^0.13' --no-default-features \
      --features "llvm-$llvm_major,no-llvm-linking" 2>&1 | tail -n 2 >&2
fi
say "ok: $NIGHTLY, $(bpf-linker --version)"
