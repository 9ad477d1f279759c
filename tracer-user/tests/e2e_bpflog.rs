//! Tier 2: `--bpf-log` against a real Go process (`cargo xtask fixtures`):
//! the eBPF programs' aya-log records reach the tracer's stderr as `bpf: `
//! lines when asked for, and when not, there are none and the logging code
//! is gone from the loaded programs (the verifier removed it).
//!
//! Like `e2e.rs` it needs root: without it, it says so and returns, unless
//! `CI` is set: then it fails loudly. Every process it starts is killed by a
//! guard, also when it fails.
use std::{
    collections::BTreeSet,
    io::{BufRead, BufReader, Read, Write},
    path::PathBuf,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

mod e2e_common;

use e2e_common::{Guard, privileged, target_fixture};
use serde_json::Value;

/// Ids of the BPF programs that process `pid` holds through its file
/// descriptors (`prog_id:` in `/proc/PID/fdinfo`, for program and link fds).
fn programs_held_by(pid: u32) -> BTreeSet<u64> {
    let mut ids = BTreeSet::new();
    for e in std::fs::read_dir(format!("/proc/{pid}/fdinfo"))
        .unwrap()
        .flatten()
    {
        let text = std::fs::read_to_string(e.path()).unwrap_or_default();
        for l in text.lines() {
            if let Some(v) = l.strip_prefix("prog_id:") {
                ids.insert(v.trim().parse().unwrap());
            }
        }
    }
    ids
}

/// `(name, bytes_xlated)` of every program process `pid` loaded, from
/// `bpftool prog show -j`: selected by bpftool's `pids` field, or, when
/// this bpftool does not fill it (built without its BPF skeletons), by the
/// program ids the process's file descriptors hold (what `pids` is made
/// from). Never by name alone: other tracers may be loaded.
fn programs_of(pid: u32) -> Vec<(String, u64)> {
    let out = Command::new("bpftool")
        .args(["prog", "show", "-j"])
        .output()
        .expect("bpftool (scripts/setup.sh installs it)");
    assert!(out.status.success(), "bpftool prog show -j failed");
    let progs: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let with_pids = progs.iter().any(|p| p.get("pids").is_some());
    let held = programs_held_by(pid);
    progs
        .iter()
        .filter(|p| {
            if with_pids {
                p["pids"]
                    .as_array()
                    .is_some_and(|v| v.iter().any(|x| x["pid"] == pid))
            } else {
                p["id"].as_u64().is_some_and(|id| held.contains(&id))
            }
        })
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_owned(),
                p["bytes_xlated"].as_u64().unwrap(),
            )
        })
        .collect()
}

struct Traced {
    tracer_stderr: String,
    /// `bytes_xlated` of the tracer's `gc_sweep` program while it ran.
    gc_sweep_xlated: u64,
    target_pid: u32,
}

/// Starts the target paused, attaches the tracer (with `extra` arguments),
/// measures its `gc_sweep` program, releases the target and returns what
/// the tracer wrote to stderr once both have exited.
fn traced(bin: &PathBuf, extra: &[&str]) -> Traced {
    let mut target = Command::new(bin)
        .args(["-wait", "-steps", "10", "-step-ms", "250"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let target_pid = target.id();
    let mut stdin = target.stdin.take().unwrap();
    let mut stderr = BufReader::new(target.stderr.take().unwrap());
    let mut stdout = target.stdout.take().unwrap();
    let mut tg = Guard(Some(target));
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    assert!(line.starts_with("ready"), "target said {line:?}");

    let mut tr = Command::new(env!("CARGO_BIN_EXE_mapleak-trace"))
        .args([
            "--pid",
            &target_pid.to_string(),
            "--duration",
            "60s",
            "--interval",
            "1s",
        ])
        .args(e2e_common::harness::budget_args(extra.iter().copied()))
        // The GC counters are read rather than probed where they are
        // located; the debug records checked here are the probe's.
        .env("MAPLEAK_GC_PROBE", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let tracer_pid = tr.id();
    let mut tout = BufReader::new(tr.stdout.take().unwrap());
    // Read stderr all along: a full pipe would block the tracer's logging.
    let mut terr = tr.stderr.take().unwrap();
    let errs = std::thread::spawn(move || {
        let mut s = String::new();
        terr.read_to_string(&mut s).unwrap();
        s
    });
    let mut trg = Guard(Some(tr));
    let mut first = String::new();
    tout.read_line(&mut first).unwrap();
    assert!(first.contains("attached"), "tracer said {first:?}");
    let progs = programs_of(tracer_pid);
    let gc_sweep_xlated = progs
        .iter()
        .find(|p| p.0 == "gc_sweep")
        .unwrap_or_else(|| panic!("no gc_sweep among the tracer's programs: {progs:?}"))
        .1;

    stdin.write_all(b"go\n").unwrap();
    drop(stdin);
    let mut sink = String::new();
    stdout.read_to_string(&mut sink).unwrap();
    stderr.read_to_string(&mut sink).unwrap();
    let st = tg.0.take().unwrap().wait().unwrap();
    assert!(st.success(), "target failed under the tracer: {st}");
    let mut rest = String::new();
    tout.read_to_string(&mut rest).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut tr = trg.0.take().unwrap();
    let status = loop {
        if let Some(s) = tr.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "tracer did not stop after the target exited"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let tracer_stderr = errs.join().unwrap();
    assert!(
        status.success(),
        "tracer failed: {status}\n{tracer_stderr}\n{rest}"
    );
    Traced {
        tracer_stderr,
        gc_sweep_xlated,
        target_pid,
    }
}

/// `--bpf-log` prints the programs' GC-cycle debug records as `bpf: `
/// lines; without it there are none, and the loaded `gc_sweep` program is
/// much smaller: the verifier dropped the logging code.
#[test]
fn bpf_log_on_and_off() {
    if !privileged() {
        return;
    }
    let bin = target_fixture("go1.26.8", "default");

    let off = traced(&bin, &[]);
    let bpf_lines = |t: &Traced| -> Vec<String> {
        t.tracer_stderr
            .lines()
            .filter(|l| l.starts_with("bpf: "))
            .map(str::to_owned)
            .collect()
    };
    assert!(
        bpf_lines(&off).is_empty(),
        "bpf: lines without --bpf-log:\n{}",
        off.tracer_stderr
    );

    let on = traced(&bin, &["--bpf-log"]);
    let lines = bpf_lines(&on);
    let gc = format!("bpf: DEBUG pid {}: gc marked: ", on.target_pid);
    assert!(
        lines.iter().any(|l| l.starts_with(&gc)),
        "no {gc:?} line with --bpf-log:\n{}",
        on.tracer_stderr
    );

    // Off, each logging call leaves only its level check (a load from the
    // frozen .rodata); on, the record-building code stays in. Measured on
    // 6.18: 3336 bytes off, 21400 on.
    assert!(
        on.gc_sweep_xlated >= 2 * off.gc_sweep_xlated,
        "gc_sweep: {} bytes translated with --bpf-log, {} without: the logging code was not dropped",
        on.gc_sweep_xlated,
        off.gc_sweep_xlated
    );
    eprintln!(
        "gc_sweep: {} bytes translated without --bpf-log, {} with",
        off.gc_sweep_xlated, on.gc_sweep_xlated
    );
}
