//! `cargo xtask fixtures`: Go programs from testdata/go built with a matrix of
//! Go releases, for amd64 and arm64, in variants default, stripped
//! (`-ldflags=-s -w`) and PIE, plus `noswiss` (GOEXPERIMENT=noswissmap) for
//! the releases that still accept it (and for the syncmap program
//! `nosynchash`, GOEXPERIMENT=nosynchashtriemap: the classic sync.Map). For the e2e target and the inspect zoo
//! (`CGO_PROGRAMS`) also cgo variants, linked by the C toolchain
//! (`-linkmode=external`; `CC=gcc` for amd64, `aarch64-linux-gnu-gcc` for
//! arm64): `cgo`, `cgo-stripped`, `cgo-pie` and `cgo-pie-stripped`. Output:
//! `target/fixtures/<program>-<goversion>-<goarch>-<variant>` and
//! `target/fixtures/manifest.json`.
//!
//! Each binary is cached by a hash of the program's sources, the toolchain
//! and the build settings, kept in a `.stamp` file beside it.
use std::{
    collections::hash_map::DefaultHasher,
    fs,
    hash::{Hash, Hasher},
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};
use serde::Serialize;

/// Arguments of `cargo xtask fixtures`.
#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// Build every supported Go release (1.19, 1.21 to 1.27), not only the CI
    /// set (1.19, 1.23, 1.24, 1.26, 1.27).
    #[arg(long)]
    pub(crate) full: bool,
    /// Only these programs (default: all under testdata/go).
    #[arg(long, value_delimiter = ',')]
    pub(crate) programs: Vec<String>,
    /// Only these Go versions (e.g. go1.23.12).
    #[arg(long, value_delimiter = ',')]
    pub(crate) go: Vec<String>,
}

/// A Go release the fixtures are built with.
struct Toolchain {
    /// Version as `go version` prints it.
    tag: &'static str,
    /// In the CI set.
    ci: bool,
    /// Accepts GOEXPERIMENT=noswissmap (1.24, 1.25).
    noswiss: bool,
}

const TOOLCHAINS: &[Toolchain] = &[
    Toolchain {
        tag: "go1.19.8",
        ci: true,
        noswiss: false,
    },
    Toolchain {
        tag: "go1.21.13",
        ci: false,
        noswiss: false,
    },
    Toolchain {
        tag: "go1.22.12",
        ci: false,
        noswiss: false,
    },
    Toolchain {
        tag: "go1.23.12",
        ci: true,
        noswiss: false,
    },
    Toolchain {
        tag: "go1.24.13",
        ci: true,
        noswiss: true,
    },
    Toolchain {
        tag: "go1.25.14",
        ci: false,
        noswiss: true,
    },
    Toolchain {
        tag: "go1.26.8",
        ci: true,
        noswiss: false,
    },
    Toolchain {
        tag: "go1.27.4",
        ci: true,
        noswiss: false,
    },
];

/// Where Debian's golang-1.19 lives (`scripts/setup.sh` installs it).
const DEBIAN_GO119: &str = "/usr/lib/go-1.19/bin/go";

const ARCHES: [&str; 2] = ["amd64", "arm64"];

/// Programs also built with cgo and external linking (the e2e target and the
/// inspect zoo; each has a `cgo_on.go` that is only compiled with cgo).
const CGO_PROGRAMS: &[&str] = &["target", "mapzoo"];

/// The cgo variants, built for `CGO_PROGRAMS` only.
const CGO_VARIANTS: &[&str] = &["cgo", "cgo-stripped", "cgo-pie", "cgo-pie-stripped"];

/// The C compiler cgo uses for `arch`.
fn cgo_cc(arch: &str) -> &'static str {
    if arch == "arm64" {
        "aarch64-linux-gnu-gcc"
    } else {
        "gcc"
    }
}

/// Whether `cmd` is an executable file in a directory of PATH.
pub(crate) fn on_path(cmd: &str) -> bool {
    let Some(path) = std::env::var_os("PATH") else {
        return false;
    };
    std::env::split_paths(&path).any(|d| {
        fs::metadata(d.join(cmd)).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

/// One built binary, as listed in the manifest.
#[derive(Serialize)]
pub(crate) struct Fixture {
    pub(crate) path: PathBuf,
    pub(crate) program: String,
    pub(crate) go_version: String,
    pub(crate) goarch: String,
    pub(crate) variant: String,
    pub(crate) map_impl: String,
}

fn go_command(tag: &str) -> Command {
    if tag.starts_with("go1.19") {
        let mut c = Command::new(DEBIAN_GO119);
        c.env("GOTOOLCHAIN", "local");
        c
    } else {
        let mut c = Command::new("go");
        c.env("GOTOOLCHAIN", tag);
        c
    }
}

fn source_hash(dir: &Path) -> Result<u64> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "go"))
        .collect();
    files.sort();
    let mut h = DefaultHasher::new();
    for f in files {
        f.file_name().hash(&mut h);
        fs::read(&f)?.hash(&mut h);
    }
    Ok(h.finish())
}

/// Builds the fixtures and returns them.
pub(crate) fn run(args: &Args) -> Result<Vec<Fixture>> {
    let root = crate::root();
    let src = root.join("testdata/go");
    let out = root.join("target/fixtures");
    fs::create_dir_all(&out)?;
    let mut programs: Vec<String> = fs::read_dir(&src)?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    programs.sort();
    // The benchmark workloads are built by `cargo xtask bench` itself.
    programs.retain(|p| p != "bench");
    if !args.programs.is_empty() {
        programs.retain(|p| args.programs.contains(p));
    }
    let mut built = Vec::new();
    let mut fresh = 0;
    for tc in TOOLCHAINS {
        if !args.go.is_empty() {
            if !args.go.iter().any(|g| g == tc.tag) {
                continue;
            }
        } else if !(args.full || tc.ci) {
            continue;
        }
        for program in &programs {
            let hash = source_hash(&src.join(program))?;
            for arch in ARCHES {
                let mut variants = vec!["default", "stripped", "pie"];
                if tc.noswiss {
                    variants.push("noswiss");
                }
                // The classic sync.Map on a release that has both.
                if tc.noswiss && program == "syncmap" {
                    variants.push("nosynchash");
                }
                if CGO_PROGRAMS.contains(&program.as_str()) {
                    variants.extend_from_slice(CGO_VARIANTS);
                }
                for variant in variants {
                    let name = format!("{program}-{}-{arch}-{variant}", tc.tag);
                    let bin = out.join(&name);
                    let stamp = out.join(format!("{name}.stamp"));
                    let key = format!("{hash:x} {} {arch} {variant} v1", tc.tag);
                    let cached = bin.exists() && fs::read_to_string(&stamp).is_ok_and(|s| s == key);
                    if !cached {
                        build(tc.tag, &src, program, arch, variant, &bin)?;
                        fs::write(&stamp, &key)?;
                        fresh += 1;
                    }
                    let go_minor: u32 = tc
                        .tag
                        .split('.')
                        .nth(1)
                        .and_then(|m| m.parse().ok())
                        .unwrap_or(0);
                    let map_impl = if go_minor >= 24 && variant != "noswiss" {
                        "swiss"
                    } else {
                        "hmap"
                    };
                    built.push(Fixture {
                        path: bin,
                        program: program.clone(),
                        go_version: tc.tag.to_owned(),
                        goarch: arch.to_owned(),
                        variant: variant.to_owned(),
                        map_impl: map_impl.to_owned(),
                    });
                }
            }
        }
    }
    let manifest = out.join("manifest.json");
    // Merge with fixtures already listed (a partial run must not drop others).
    let mut all: Vec<serde_json::Value> = fs::read(&manifest)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    for f in &built {
        let v = serde_json::to_value(f)?;
        all.retain(|o| o.get("path") != v.get("path"));
        all.push(v);
    }
    all.retain(|o| {
        o.get("path")
            .and_then(|p| p.as_str())
            .is_some_and(|p| Path::new(p).exists())
    });
    fs::write(&manifest, serde_json::to_vec_pretty(&all)?)?;
    eprintln!(
        "fixtures: {} binaries ({fresh} built, the rest cached) in {}",
        built.len(),
        out.display()
    );
    Ok(built)
}

fn build(
    tag: &str,
    src: &Path,
    program: &str,
    arch: &str,
    variant: &str,
    bin: &Path,
) -> Result<()> {
    let cgo = CGO_VARIANTS.contains(&variant);
    let mut cmd = go_command(tag);
    cmd.current_dir(src)
        .env("GOOS", "linux")
        .env("GOARCH", arch)
        .env("GOFLAGS", "-buildvcs=false")
        .arg("build")
        .arg("-o")
        .arg(bin);
    if cgo {
        let cc = cgo_cc(arch);
        if !on_path(cc) {
            bail!(
                "{cc} not found (the C compiler for the {arch} cgo fixtures): run scripts/setup.sh"
            );
        }
        cmd.env("CGO_ENABLED", "1").env("CC", cc);
    } else {
        cmd.env("CGO_ENABLED", "0");
    }
    match variant {
        "default" => {}
        "stripped" => {
            cmd.arg("-ldflags=-s -w");
        }
        "pie" => {
            cmd.arg("-buildmode=pie");
        }
        "noswiss" => {
            cmd.env("GOEXPERIMENT", "noswissmap");
        }
        "nosynchash" => {
            cmd.env("GOEXPERIMENT", "nosynchashtriemap");
        }
        "cgo" => {
            cmd.arg("-ldflags=-linkmode=external");
        }
        "cgo-stripped" => {
            cmd.arg("-ldflags=-linkmode=external -s -w");
        }
        "cgo-pie" => {
            cmd.args(["-buildmode=pie", "-ldflags=-linkmode=external"]);
        }
        "cgo-pie-stripped" => {
            cmd.args(["-buildmode=pie", "-ldflags=-linkmode=external -s -w"]);
        }
        other => bail!("unknown variant {other}"),
    }
    cmd.arg(format!("./{program}"));
    let status = cmd.status().with_context(|| {
        format!("running go for {tag} (run scripts/setup.sh to install Go toolchains)")
    })?;
    if !status.success() {
        let hint = match (cgo, arch) {
            (true, "arm64") => {
                " (cgo, CC=aarch64-linux-gnu-gcc: run scripts/setup.sh, it installs \
                 gcc-aarch64-linux-gnu and libc6-dev-arm64-cross)"
            }
            (true, _) => " (cgo, CC=gcc: install gcc and libc6-dev)",
            _ => "",
        };
        bail!(
            "building {} with {tag} for {arch} ({variant}) failed: {status}{hint}",
            bin.display()
        );
    }
    Ok(())
}
