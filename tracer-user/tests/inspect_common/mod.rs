//! Fixture discovery shared by the `inspect*` and `plan*` tests.
#![allow(dead_code, reason = "each test binary uses a subset")]

use std::path::PathBuf;

use mapleak::inspect::BinaryInfo;

/// One entry of `target/fixtures/manifest.json` (written by `cargo xtask fixtures`).
#[derive(Clone, Debug, serde::Deserialize)]
pub struct Fixture {
    pub path: PathBuf,
    pub program: String,
    pub go_version: String,
    pub goarch: String,
    pub variant: String,
    #[serde(default)]
    pub map_impl: Option<String>,
}

fn manifest_path() -> PathBuf {
    if let Some(p) = std::env::var_os("MAPLEAK_FIXTURES_MANIFEST") {
        return PathBuf::from(p);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/fixtures/manifest.json")
}

/// Every fixture. Panics with "run `cargo xtask fixtures`" when missing.
pub fn fixtures() -> Vec<Fixture> {
    let path = manifest_path();
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "fixture manifest {} missing ({e}): run `cargo xtask fixtures`",
            path.display()
        )
    });
    let base = path.parent().map(PathBuf::from).unwrap_or_default();
    let mut list: Vec<Fixture> = serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!(
            "{}: bad manifest ({e}): run `cargo xtask fixtures`",
            path.display()
        )
    });
    for f in &mut list {
        if f.path.is_relative() {
            let candidate = base.join(&f.path);
            f.path = if candidate.exists() {
                candidate
            } else {
                base.join(f.path.file_name().unwrap_or_default())
            };
        }
        assert!(
            f.path.exists(),
            "fixture {} missing: run `cargo xtask fixtures`",
            f.path.display()
        );
    }
    assert!(
        !list.is_empty(),
        "fixture manifest {} is empty: run `cargo xtask fixtures`",
        path.display()
    );
    list
}

/// The unstripped build of the same program, toolchain, arch and link mode
/// (`stripped` → `default`, `cgo-stripped` → `cgo`, `cgo-pie-stripped` →
/// `cgo-pie`; the fixture itself when it has `.symtab`).
pub fn twin<'a>(all: &'a [Fixture], f: &'a Fixture) -> Option<&'a Fixture> {
    let want = match f.variant.as_str() {
        "stripped" => "default",
        v => match v.strip_suffix("-stripped") {
            Some(base) => base,
            None => return Some(f),
        },
    };
    all.iter().find(|g| {
        g.program == f.program
            && g.go_version == f.go_version
            && g.goarch == f.goarch
            && g.variant == want
    })
}

/// Built without `.symtab` (`-ldflags=-s -w`).
pub fn is_stripped(f: &Fixture) -> bool {
    f.variant.ends_with("stripped")
}

/// Built as a position-independent executable.
pub fn is_pie(f: &Fixture) -> bool {
    f.variant == "pie" || f.variant.starts_with("cgo-pie")
}

pub fn open(f: &Fixture) -> BinaryInfo {
    BinaryInfo::open(&f.path).unwrap_or_else(|e| panic!("{}: {e}", f.path.display()))
}
