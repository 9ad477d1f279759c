//! Developer workflows for mapleak-trace: `cargo xtask <command>`.
//!
//! The normal build is plain `cargo build` (the eBPF object is built by
//! `tracer-user/build.rs`); xtask only holds what is not a build: Go fixture
//! binaries, benchmarks and the arm64 end-to-end tier under qemu.
use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};

mod arm64;
mod bench;
mod fixtures;

#[derive(Parser)]
#[command(about = "mapleak-trace developer workflows")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Build the Go programs under testdata/go for a matrix of Go releases,
    /// both GOARCHes and the default, stripped and PIE variants, into
    /// target/fixtures (cached: a second run costs seconds).
    Fixtures(fixtures::Args),
    /// Measure the tracer's cost on real Go workloads, against untraced runs
    /// and bpftrace, and write docs/benchmarks.md.
    Bench(bench::Args),
    /// Run the end-to-end suite (tracer-user/tests/e2e.rs) on Debian's
    /// arm64 kernel (6.1 by default, `--kernel 6.12`) under
    /// qemu-system-aarch64: cross-built tracer and tests, arm64 fixtures.
    #[command(name = "arm64-e2e")]
    Arm64E2e(arm64::Args),
}

fn main() -> Result<()> {
    match Cli::parse().cmd {
        Cmd::Fixtures(a) => fixtures::run(&a).map(|_| ()),
        Cmd::Bench(a) => bench::run(&a),
        Cmd::Arm64E2e(a) => arm64::run(&a),
    }
}

/// The workspace root (xtask lives one level below it).
pub(crate) fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
}
