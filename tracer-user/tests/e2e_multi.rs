//! Tier 2 (root): one tracer, several processes. Two processes of one
//! executable (one inspection of the binary, shared) and one of another Go
//! release, each with a map that only grows: every process gets its own
//! report, in one JSON document, and each names its growing map, its type
//! and its owner, with lengths the process itself printed.

mod e2e_common;

use std::{
    io::{BufRead as _, BufReader},
    path::PathBuf,
    process::{Command, Stdio},
};

use e2e_common::{Guard, privileged, target_fixture};
use serde_json::Value;

/// A target running only its leaky scenario, ready (attach may begin).
fn start(bin: &PathBuf) -> (Guard, u32, BufReader<std::process::ChildStderr>) {
    let mut c = Command::new(bin)
        .args([
            "-wait",
            "-scenarios",
            "leaky",
            "-steps",
            "16",
            "-step-ms",
            "300",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = c.id();
    let mut err = BufReader::new(c.stderr.take().unwrap());
    let mut line = String::new();
    err.read_line(&mut line).unwrap();
    assert!(line.starts_with("ready"), "target said {line:?}");
    (Guard(Some(c)), pid, err)
}

#[test]
fn one_tracer_several_processes() {
    if !privileged() {
        return;
    }
    let go126 = target_fixture("go1.26.8", "default");
    let go123 = target_fixture("go1.23.12", "default");
    let mut targets = vec![start(&go126), start(&go126), start(&go123)];
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("report.json");
    let mut tr = Command::new(env!("CARGO_BIN_EXE_mapleak-trace"));
    for (_, pid, _) in &targets {
        tr.args(["--pid", &pid.to_string()]);
    }
    // The first pid again: attached once, reported once.
    tr.args(["--pid", &targets[0].1.to_string()]);
    let mut tr = tr
        .args(e2e_common::harness::budget_args([]))
        .args(["--duration", "60s", "--interval", "1s", "--json"])
        .arg(&json)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut tout = BufReader::new(tr.stdout.take().unwrap());
    let mut trg = Guard(Some(tr));
    let mut attached = 0;
    let mut line = String::new();
    while attached < 3 {
        line.clear();
        assert!(tout.read_line(&mut line).unwrap() > 0, "tracer ended early");
        if line.contains("attached") {
            attached += 1;
        }
    }
    // Go: each target runs its steps, then exits; the tracer ends when all
    // have exited.
    for (g, _, _) in &mut targets {
        let c = g.0.as_mut().unwrap();
        drop(c.stdin.take());
    }
    let mut printed: Vec<String> = Vec::new();
    for (g, _, err) in &mut targets {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(err, &mut s);
        let st = g.0.take().unwrap().wait().unwrap();
        assert!(st.success(), "target failed: {st:?}\n{s}");
        printed.push(s);
    }
    let st = trg.0.take().unwrap().wait().unwrap();
    assert!(st.success(), "tracer: {st:?}");
    let doc: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(doc["schema"], "mapleak-trace/report/v2");
    let procs = doc["processes"].as_array().unwrap();
    assert_eq!(procs.len(), 3, "one report per distinct pid");
    for ((_, pid, _), out) in targets.iter().zip(&printed) {
        let r = procs
            .iter()
            .find(|p| p["target"]["pid"] == *pid)
            .unwrap_or_else(|| panic!("no report for pid {pid}"));
        assert_eq!(r["ended"], "target exited", "{pid}");
        let leaky: Vec<&Value> = r["maps"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["type"] == "map[string]*main.session")
            .collect();
        assert_eq!(leaky.len(), 1, "pid {pid}: {:#}", r["maps"]);
        let m = leaky[0];
        assert_eq!(m["verdict"], "growing", "pid {pid}: {m:#}");
        assert_eq!(m["owner"], "main.sessions", "pid {pid}: {m:#}");
        // Its lengths are the ones this process printed at those cycles.
        let mut matched = 0;
        for l in out.lines().filter(|l| l.starts_with("cycle ")) {
            let f: Vec<&str> = l.split_whitespace().collect();
            let cycle: u64 = f[1].parse().unwrap();
            let want: u64 = f[f.iter().position(|x| *x == "leaky").unwrap() + 1]
                .parse()
                .unwrap();
            if let Some(p) = m["len_by_cycle"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p[0] == cycle)
            {
                assert_eq!(p[1], want, "pid {pid} cycle {cycle}");
                matched += 1;
            }
        }
        assert!(matched >= 3, "pid {pid}: {matched} cycles compared\n{out}");
    }
}
