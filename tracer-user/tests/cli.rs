//! The command line as a user runs it, without root: `--color` and
//! `NO_COLOR` on real output, and `generate`.

mod inspect_common;

use std::process::{Command, Output};

fn run(args: &[&str], no_color: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mapleak-trace"));
    cmd.args(args).env_remove("NO_COLOR");
    if let Some(v) = no_color {
        cmd.env("NO_COLOR", v);
    }
    cmd.output().expect("run mapleak-trace")
}

fn has_escape(o: &Output) -> bool {
    o.stdout.contains(&0x1b) || o.stderr.contains(&0x1b)
}

/// `doctor` colours its verdicts only when asked to, or on a terminal:
/// here stdout is a pipe, so `auto` means none; `always` wins over NO_COLOR.
#[test]
fn doctor_is_coloured_only_when_asked() {
    let always = run(&["doctor", "--color", "always"], None);
    assert!(
        has_escape(&always),
        "--color always: {}",
        String::from_utf8_lossy(&always.stdout)
    );
    let forced = run(&["doctor", "--color", "always"], Some("1"));
    assert!(has_escape(&forced), "--color always beats NO_COLOR");
    for (args, no_color) in [
        (&["doctor", "--color", "never"][..], None),
        (&["doctor"], Some("1")),
        (&["doctor"], None),
        (&["doctor", "--color", "auto"], Some("")),
    ] {
        let o = run(args, no_color);
        assert!(!o.stdout.is_empty(), "{args:?}: no output");
        assert!(
            !has_escape(&o),
            "{args:?} NO_COLOR={no_color:?}: {}",
            String::from_utf8_lossy(&o.stdout)
        );
    }
}

/// `inspect`, text and JSON, carries no escape code even with `--color
/// always` on (the JSON never does), and generated files neither.
#[test]
fn json_and_generated_files_never_carry_escapes() {
    let all = inspect_common::fixtures();
    let f = &all[0];
    let path = f.path.to_str().unwrap();
    for args in [
        &["inspect", path, "--json", "--color", "always"][..],
        &["inspect", path, "--color", "never"],
        &["generate", "man", "--color", "always"],
        &["generate", "completions", "zsh", "--color", "always"],
    ] {
        let o = run(args, None);
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(!o.stdout.is_empty(), "{args:?}");
        assert!(!has_escape(&o), "{args:?}");
    }
    let o = run(&["inspect", path, "--json"], Some("1"));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("inspect --json is JSON");
    assert!(v.is_object());
}

#[test]
fn generate_writes_into_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let o = run(&["generate", "completions", "fish", "--out", d], None);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let fish = std::fs::read_to_string(dir.path().join("mapleak-trace.fish")).unwrap();
    assert!(fish.contains("complete -c mapleak-trace"), "{fish}");
    let o = run(&["generate", "man", "--out", d], None);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for page in [
        "mapleak-trace.1",
        "mapleak-trace-inspect.1",
        "mapleak-trace-doctor.1",
    ] {
        assert!(dir.path().join(page).exists(), "{page}");
    }
    let bad = run(&["generate", "completions", "tcsh"], None);
    assert_eq!(bad.status.code(), Some(2), "unknown shell is a usage error");
}

/// `inspect --json` gives every probe its budget class and why it may stay
/// on: the GC probes always on, the large-growth ones (hmap's large bucket
/// arrays, Swiss table splits) a second tier, per-map growth and creation
/// governed, the write path in windows; on an hmap and a Swiss release.
#[test]
fn inspect_gives_each_probe_its_class_and_reason() {
    let all = inspect_common::fixtures();
    for (go, large, governed) in [
        ("go1.23.12", "runtime.makeBucketArray", "runtime.hashGrow"),
        (
            "go1.26.8",
            "internal/runtime/maps.(*table).split",
            "internal/runtime/maps.(*Map).growToTable",
        ),
    ] {
        let f = all
            .iter()
            .find(|f| {
                f.program == "target"
                    && f.go_version == go
                    && f.variant == "default"
                    && f.goarch == "amd64"
            })
            .unwrap_or_else(|| panic!("no default amd64 target fixture for {go}"));
        let o = run(&["inspect", f.path.to_str().unwrap(), "--json"], None);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let probes = v["probes"].as_array().unwrap();
        assert!(!probes.is_empty(), "{go}: no probes");
        let class_of = |func: &str| -> Vec<&str> {
            probes
                .iter()
                .filter(|p| p["function"] == func)
                .map(|p| p["class"].as_str().unwrap())
                .collect()
        };
        for p in probes {
            let class = p["class"].as_str().unwrap_or_default();
            assert!(
                ["always", "large-growth", "governed", "window"].contains(&class),
                "{go}: {p:#}"
            );
            assert!(
                p["class_reason"].as_str().is_some_and(|r| r.len() > 20),
                "{go}: {p:#}"
            );
        }
        assert_eq!(class_of("runtime.gcSweep"), ["always"], "{go}");
        assert_eq!(class_of(large), ["large-growth"], "{go}");
        assert_eq!(class_of(governed), ["governed"], "{go}");
        assert!(
            probes
                .iter()
                .filter(|p| p["function"]
                    .as_str()
                    .is_some_and(|f| f.starts_with("runtime.mapassign")))
                .all(|p| p["class"] == "window"),
            "{go}"
        );
    }
}
