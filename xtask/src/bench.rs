//! `cargo xtask bench`: placeholder until the tracer lands.
use anyhow::Result;

/// Arguments of `cargo xtask bench`.
#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// A short run that only checks the benchmark still works (CI).
    #[arg(long)]
    pub(crate) smoke: bool,
}

pub(crate) fn run(_args: &Args) -> Result<()> {
    anyhow::bail!("benchmarks are not implemented yet")
}
