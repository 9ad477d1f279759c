//! Tier 2 (root): `--pprof FILE` writes a profile that Go's own tools read.
//! `go tool pprof -top` names the leaking map's type, the function that
//! created it and, for never-released keys, the function that inserts
//! them: each the one the Go program's source says.

mod e2e_common;

use std::{
    io::{BufRead as _, BufReader},
    process::{Command, Stdio},
};

use e2e_common::{Guard, harness, privileged, target_fixture};

/// `go tool pprof ARGS FILE`'s output.
fn pprof(args: &[&str], file: &std::path::Path) -> String {
    let out = Command::new("go")
        .args(["tool", "pprof"])
        .args(args)
        .arg(file)
        .env("GOTOOLCHAIN", "local")
        .output()
        .expect("running `go tool pprof` (Go on PATH: scripts/setup.sh)");
    assert!(
        out.status.success(),
        "go tool pprof {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn go_tool_pprof_reads_the_profile() {
    if !privileged() {
        return;
    }
    let bin = target_fixture("go1.26.8", "default");
    let mut t = Command::new(&bin)
        .args([
            "-wait",
            "-scenarios",
            "leaky",
            "-steps",
            "24",
            "-step-ms",
            "300",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = t.id();
    let mut err = BufReader::new(t.stderr.take().unwrap());
    let mut stdin = t.stdin.take();
    let mut tg = Guard(Some(t));
    let mut line = String::new();
    err.read_line(&mut line).unwrap();
    assert!(line.starts_with("ready"), "target said {line:?}");
    let dir = tempfile::tempdir().unwrap();
    let prof = dir.path().join("maps.pb.gz");
    let mut tr = Command::new(env!("CARGO_BIN_EXE_mapleak-trace"))
        .args([
            "--pid",
            &pid.to_string(),
            "--duration",
            "60s",
            "--interval",
            "1s",
            "--pprof",
        ])
        .arg(&prof)
        // The tests' budget (1%), not the default: at 0.5% a run this
        // short read too few keys for the retained-keys profile.
        .args(harness::budget_args(std::iter::empty()))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut tout = BufReader::new(tr.stdout.take().unwrap());
    let mut trg = Guard(Some(tr));
    line.clear();
    tout.read_line(&mut line).unwrap();
    assert!(line.contains("attached"), "tracer said {line:?}");
    drop(stdin.take());
    let st = tg.0.take().unwrap().wait().unwrap();
    assert!(st.success());
    let st = trg.0.take().unwrap().wait().unwrap();
    assert!(st.success(), "tracer: {st:?}");

    // Bytes by creation stack: the leaking map's type is the largest leaf,
    // and the function that made it is on its stack.
    let top = pprof(&["-top"], &prof);
    assert!(top.contains("Type: inuse_space"), "{top}");
    let first = top
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("flat"))
        .nth(1)
        .unwrap_or_default();
    assert!(first.ends_with("map[string]*main.session"), "{top}");
    let cum = pprof(&["-top", "-cum"], &prof);
    assert!(cum.contains("main.newSessionStore"), "{cum}");
    // Never-released keys by insert site: the leak inserts from main.main
    // (the loop that adds sessions), and they are counted.
    let keys = pprof(&["-top", "-cum", "-sample_index=retained_keys"], &prof);
    assert!(keys.contains("Type: retained_keys"), "{keys}");
    assert!(keys.contains("main.main"), "{keys}");
    assert!(!keys.contains("Total samples = 0 "), "{keys}");
}
