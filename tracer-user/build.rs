//! Builds the eBPF object for both `bpf_target_arch` values with aya-build
//! and leaves them in `OUT_DIR/<arch>/mapleak`.
//!
//! The binary embeds the object matching its own target architecture; the
//! other one is built too so that a test can check that both compile, load
//! into aya's parser and carry every program and map (arm64 targets are
//! supported without an arm64 machine to build on).
//!
//! `MAPLEAK_SKIP_EBPF=1` writes empty stubs instead, for `cargo doc` or clippy
//! on a machine without bpf-linker; the binary then refuses to trace with a
//! clear message.
use std::{env, fs, path::PathBuf};

use anyhow::{Context as _, anyhow};

/// The nightly that builds the eBPF crate (see DESIGN.md section 5); also in
/// scripts/setup-build.sh.
const TOOLCHAIN: &str = "nightly-2026-05-19";
const ARCHES: [&str; 2] = ["x86_64", "aarch64"];

fn main() -> anyhow::Result<()> {
    println!("cargo:rerun-if-env-changed=MAPLEAK_SKIP_EBPF");
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").ok_or_else(|| anyhow!("OUT_DIR not set"))?);
    let skip = env::var("MAPLEAK_SKIP_EBPF").is_ok_and(|v| v == "1");

    let meta = cargo_metadata_root()?;
    let ebpf_dir = meta.join("tracer-ebpf");
    let ebpf_dir = ebpf_dir
        .to_str()
        .ok_or_else(|| anyhow!("non-UTF-8 path"))?
        .to_owned();

    for arch in ARCHES {
        let dir = out_dir.join(arch);
        fs::create_dir_all(&dir)?;
        if skip {
            fs::write(dir.join("mapleak"), b"")?;
            continue;
        }
        // aya-build reads the target arch and OUT_DIR from the environment;
        // point both at the arch being built. The build script is single
        // threaded, so changing the environment here is sound.
        // SAFETY: no other thread reads the environment concurrently.
        unsafe {
            env::set_var("CARGO_CFG_TARGET_ARCH", arch);
            env::set_var("OUT_DIR", &dir);
        }
        let pkg = aya_build::Package {
            name: "tracer-ebpf",
            root_dir: &ebpf_dir,
            ..Default::default()
        };
        aya_build::build_ebpf([pkg], aya_build::Toolchain::Custom(TOOLCHAIN))
            .with_context(|| format!("building the eBPF object for {arch}: run scripts/setup-build.sh first (it installs {TOOLCHAIN} with rust-src and bpf-linker; scripts/setup.sh runs it)"))?;
    }
    // SAFETY: as above.
    unsafe { env::set_var("OUT_DIR", &out_dir) };
    Ok(())
}

fn cargo_metadata_root() -> anyhow::Result<PathBuf> {
    let manifest = PathBuf::from(
        env::var_os("CARGO_MANIFEST_DIR").ok_or_else(|| anyhow!("CARGO_MANIFEST_DIR not set"))?,
    );
    manifest
        .parent()
        .map(PathBuf::from)
        .ok_or_else(|| anyhow!("tracer-user has no parent directory"))
}
