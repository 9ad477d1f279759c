//! Tier 2: lifecycles of a trace, end to end: signals and a closed stdout,
//! SIGKILL, the target's exit and its pid reused, a tracer in its own PID
//! namespace, another mount namespace, a replaced binary, bad targets.
//! Same rules as `e2e.rs` (root, serialized, guarded).
use std::{
    io::{BufRead, BufReader, Read, Write},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

mod e2e_common;

#[allow(
    clippy::wildcard_imports,
    reason = "the harness is the tests' vocabulary"
)]
use e2e_common::{Guard, harness::*, privileged};
use serde_json::Value;

/// A tracer in a container with its own PID namespace (`unshare --pid
/// --fork --mount-proc`) traces a process of that namespace by the pid it
/// sees there: the programs report pids in the tracer's namespace.
#[test]
fn tracer_in_its_own_pid_namespace() {
    if !privileged() {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let bin = fixture("go1.23.12", "default");
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("report.json");
    // The target runs 12 s; the tracer attaches once it is up and stops
    // when it exits.
    let script = format!(
        "{bin} -scenarios leaky -steps 48 -step-ms 250 >/dev/null 2>&1 & t=$!; sleep 0.5; \
         {tracer} --pid $t --interval 1s {budget} --json {json}; rc=$?; wait $t; exit $rc",
        bin = bin.display(),
        tracer = env!("CARGO_BIN_EXE_mapleak-trace"),
        budget = budget_args([]).join(" "),
        json = json.display(),
    );
    let out = Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", "sh", "-c", &script])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}\n{err}\n{stdout}", out.status);
    let r = the_process(&json);
    // Its pid in the namespace: the shell is 1.
    let pid = r["target"]["pid"].as_u64().unwrap();
    assert!(pid > 1 && pid < 100, "pid {pid}: not the namespace's");
    assert_eq!(
        r["overhead"]["counters"]["no_config"], 0,
        "{:#}",
        r["overhead"]
    );
    let leaky = maps_of(&r, "map[string]*main.session");
    assert_eq!(leaky.len(), 1, "{:#}", r["maps"]);
    assert_eq!(leaky[0]["verdict"], "growing", "{:#}", leaky[0]);
    // Found by its growth events: the kernel side matched the pid.
    assert!(
        leaky[0]["growth_events"].as_u64().unwrap() > 0,
        "no growth event: {:#}",
        leaky[0]
    );
}

/// The traced process exits and another process takes its pid (forced with
/// `ns_last_pid` in a PID namespace of the test's own), while the tracer
/// goes on with a second target: the first report ends at the exit, with
/// nothing read from the newcomer, which runs the same binary and so has
/// its maps at the same addresses.
#[test]
fn a_reused_pid_is_not_the_target() {
    if !privileged() {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let bin = fixture("go1.23.12", "default");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    let script = format!(
        "T={bin}; \
         $T -scenarios leaky -steps 300 -step-ms 50 >/dev/null 2>{d}/c.err & c=$!; \
         mkfifo {d}/go; \
         $T -wait -scenarios leaky -steps 20 -step-ms 100 <>{d}/go >/dev/null 2>{d}/a.err & a=$!; \
         sleep 0.5; \
         {tracer} --pid $a --pid $c --duration 10s --interval 1s {budget} --json {d}/r.json >{d}/tr.out 2>&1 & tr=$!; \
         i=0; until [ \"$(grep -c attached {d}/tr.out)\" -ge 2 ] || [ $i -ge 1200 ]; do sleep 0.1; i=$((i+1)); done; \
         echo go > {d}/go; \
         wait $a; echo $((a - 1)) > /proc/sys/kernel/ns_last_pid; \
         $T -scenarios leaky -leak-per-step 100 -steps 80 -step-ms 100 >/dev/null 2>{d}/b.err & b=$!; \
         echo $a $b > {d}/pids; \
         wait $tr; rc=$?; kill $b $c 2>/dev/null; wait; exit $rc",
        bin = bin.display(),
        tracer = env!("CARGO_BIN_EXE_mapleak-trace"),
        budget = budget_args([]).join(" "),
    );
    let out = Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", "sh", "-c", &script])
        .output()
        .unwrap();
    let read = |f: &str| std::fs::read_to_string(dir.path().join(f)).unwrap_or_default();
    assert!(
        out.status.success(),
        "{}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        read("tr.out")
    );
    let pids: Vec<u64> = read("pids")
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    assert!(
        pids.len() == 2 && pids[0] == pids[1],
        "pid not reused: {pids:?}"
    );
    let doc: Value = serde_json::from_str(&read("r.json")).unwrap();
    let procs = doc["processes"].as_array().unwrap();
    assert_eq!(procs.len(), 2, "{doc:#}");
    let a = procs
        .iter()
        .find(|p| p["target"]["pid"] == pids[0])
        .unwrap();
    assert_eq!(a["ended"], "target exited", "{:#}", a["target"]);
    // The first process leaked 2,000 sessions a step for 20 steps; the
    // newcomer leaks 100 a step from zero: a length of its would be a drop.
    let last_a: u64 = read("a.err")
        .lines()
        .rev()
        .find_map(|l| l.split_once(" leaky ")?.1.trim().parse().ok())
        .unwrap();
    let leaky = maps_of(a, "map[string]*main.session");
    assert_eq!(leaky.len(), 1, "{:#}", a["maps"]);
    let lens: Vec<u64> = leaky[0]["len_by_cycle"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p[1].as_u64().unwrap())
        .collect();
    assert!(
        lens.windows(2).all(|w| w[0] <= w[1]) && lens.iter().all(|&l| l <= last_a),
        "lengths {lens:?} (the first process's last: {last_a}): some read from the newcomer"
    );
    let c = procs
        .iter()
        .find(|p| p["target"]["pid"] != pids[0])
        .unwrap();
    assert_eq!(c["ended"], "duration reached");
}

/// A tracer killed with SIGKILL leaves no probe behind, and the target runs
/// on to completion with unchanged output.
#[test]
fn sigkill_leaves_nothing_attached() {
    if !privileged() {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let bin = fixture("go1.26.8", "default");
    let mut target = Command::new(&bin)
        .args(["-wait"])
        .args(TARGET_ARGS)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = target.id();
    let mut stdin = target.stdin.take().unwrap();
    let mut stderr = BufReader::new(target.stderr.take().unwrap());
    let mut stdout = target.stdout.take().unwrap();
    let mut tg = Guard(Some(target));
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    let before = prog_ids(&our_programs_loaded());
    let mut tr = tracer()
        .args(["--pid", &pid.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut tout = BufReader::new(tr.stdout.take().unwrap());
    let _trg = Guard(Some(tr));
    let mut first = String::new();
    tout.read_line(&mut first).unwrap();
    assert!(first.contains("attached"), "{first}");
    // This tracer's programs only (another run's tracer may be running).
    let mine = programs_held_by(_trg.0.as_ref().unwrap().id());
    let during: std::collections::BTreeSet<u32> = prog_ids(&our_programs_loaded())
        .intersection(&mine)
        .copied()
        .collect();
    assert!(
        during.difference(&before).count() >= 5,
        "probes should be loaded while tracing"
    );
    stdin.write_all(b"go\n").unwrap();
    drop(stdin);
    std::thread::sleep(Duration::from_millis(700));
    // SIGKILL the tracer.
    let status = Command::new("kill")
        .args(["-9", &_trg.0.as_ref().unwrap().id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    drop(_trg);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !leftover(&before, &during).is_empty() {
        assert!(
            Instant::now() < deadline,
            "probes still loaded after SIGKILL: {:?}",
            leftover(&before, &during)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut out = String::new();
    stdout.read_to_string(&mut out).unwrap();
    let st = tg.0.take().unwrap().wait().unwrap();
    assert!(st.success());
    assert_eq!(out, untraced_stdout(&bin));
}

/// SIGTERM, and SIGHUP with the tracer's stdout closed (the terminal or
/// the pipe went away), each end the trace with a complete JSON report and
/// exit code 0; nothing is left attached.
#[test]
fn signals_and_a_closed_stdout_leave_a_complete_report() {
    if !privileged() {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let bin = fixture("go1.26.8", "default");
    let mut target = Command::new(&bin)
        .args([
            "-wait",
            "-scenarios",
            "leaky",
            "-steps",
            "200",
            "-step-ms",
            "100",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = target.id();
    let mut stdin = target.stdin.take().unwrap();
    let mut stderr = BufReader::new(target.stderr.take().unwrap());
    let _tg = Guard(Some(target));
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    assert!(line.starts_with("ready"), "target said {line:?}");
    let before = prog_ids(&our_programs_loaded());
    let dir = tempfile::tempdir().unwrap();
    let mut started = false;
    for (sig, close_stdout) in [(libc::SIGTERM, false), (libc::SIGHUP, true)] {
        let json = dir.path().join(format!("report-{sig}.json"));
        let mut tr = tracer()
            .args(["--pid", &pid.to_string(), "--interval", "200ms", "--json"])
            .arg(&json)
            // The tests' budget, scaled under emulation, as the other
            // scenario tests: at the unscaled default the arm64 VM's
            // creation probes were paused within the first 10 ms check
            // and the map made just after the attach went unseen in 3 s
            // (the clean-clone CI of 87aac7d failed so, twice).
            .args(budget_args([]))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let tracer_pid = tr.id();
        let mut tout = BufReader::new(tr.stdout.take().unwrap());
        let mut terr = tr.stderr.take().unwrap();
        let mut trg = Guard(Some(tr));
        let mut first = String::new();
        tout.read_line(&mut first).unwrap();
        assert!(first.contains("attached"), "{first}");
        let mine = programs_held_by(tracer_pid);
        let during: std::collections::BTreeSet<u32> = prog_ids(&our_programs_loaded())
            .intersection(&mine)
            .copied()
            .collect();
        if !started {
            stdin.write_all(b"go\n").unwrap();
            started = true;
        }
        if close_stdout {
            // Its next live line meets a closed pipe.
            drop(tout);
            std::thread::sleep(Duration::from_secs(3));
        } else {
            std::thread::sleep(Duration::from_secs(3));
        }
        // SAFETY: kill(2) on the child we spawned.
        assert_eq!(unsafe { libc::kill(tracer_pid as i32, sig) }, 0);
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(st) = trg.0.as_mut().unwrap().try_wait().unwrap() {
                break st;
            }
            assert!(
                Instant::now() < deadline,
                "tracer did not stop on signal {sig}"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        trg.0.take();
        let mut err = String::new();
        terr.read_to_string(&mut err).unwrap();
        assert!(
            status.success(),
            "signal {sig}: tracer exited {status}: {err}"
        );
        let r = the_process(&json);
        assert_eq!(r["ended"], "interrupted", "signal {sig}");
        assert_eq!(r["target"]["pid"], pid, "signal {sig}");
        assert!(r["duration_s"].as_f64().unwrap() >= 2.5, "signal {sig}");
        assert!(
            r["gc_cycles"].as_array().is_some_and(|c| !c.is_empty()),
            "signal {sig}: no GC cycle in {r:#}"
        );
        assert!(
            !maps_of(&r, "map[string]*main.session").is_empty(),
            "signal {sig}: the growing map is missing: {:#}",
            r["maps"]
        );
        let deadline = Instant::now() + Duration::from_secs(5);
        while !leftover(&before, &during).is_empty() {
            assert!(
                Instant::now() < deadline,
                "signal {sig}: programs left: {:?}",
                leftover(&before, &during)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Bad targets give one clear line and exit code 3 (nothing attached), never
/// a panic or hang; so does an unwritable `--json`, before attaching.
#[test]
fn bad_targets() {
    if !privileged() {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let out = tracer()
        .args(["--pid", "999999999", "--duration", "1s"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no process with pid 999999999"), "{err}");
    assert!(!err.contains("panicked"));

    let sleeper = Command::new("sleep").arg("30").spawn().unwrap();
    let pid = sleeper.id();
    let _g = Guard(Some(sleeper));
    let out = tracer()
        .args(["--pid", &pid.to_string(), "--duration", "1s"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a traceable Go program"), "{err}");
    assert!(!err.contains("panicked"));

    // A Go target, but the JSON report cannot be written: refused at once.
    let target = Command::new(fixture("go1.23.12", "default"))
        .args(["-wait"])
        .args(TARGET_ARGS)
        .stdin(Stdio::piped())
        .stderr(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let pid = target.id();
    let _g = Guard(Some(target));
    let t0 = Instant::now();
    let out = tracer()
        .args(["--pid", &pid.to_string(), "--duration", "20s"])
        .args(["--json", "/nonexistent-dir/report.json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("/nonexistent-dir/report.json") && err.contains("nothing was attached"),
        "{err}"
    );
    assert_eq!(err.matches("os error").count(), 1, "{err}");
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
    assert!(String::from_utf8_lossy(&out.stdout).is_empty());
}

/// The binary was deleted and replaced on disk after the target started: the
/// tracer still probes the file the process runs (through /proc/PID/exe).
#[test]
fn binary_replaced_after_start() {
    if !privileged() {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let app = dir.path().join("app");
    std::fs::copy(fixture("go1.23.12", "default"), &app).unwrap();
    let mut cmd = Command::new(&app);
    cmd.args(["-wait"]).args(TARGET_ARGS);
    let other = fixture_of("mapzoo", "go1.26.8", "default");
    let run = traced_run_cmd(cmd, &|| {
        std::fs::remove_file(&app).unwrap();
        std::fs::copy(&other, &app).unwrap();
    });
    let leaky = maps_of(&run.report, "map[string]*main.session");
    assert_eq!(leaky.len(), 1);
    assert_eq!(leaky[0]["verdict"], "growing");
    assert_eq!(run.report["target"]["go_version"], "go1.23.12");
}

/// A target in another mount namespace, whose binary is reachable only
/// through /proc/PID/root, is traced like any other.
#[test]
fn other_mount_namespace() {
    if !privileged() {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    let bin = fixture("go1.26.8", "stripped");
    let script = format!(
        "mount -t tmpfs none {d} && cp {} {d}/app && exec {d}/app -wait {}",
        bin.display(),
        TARGET_ARGS.join(" ")
    );
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "sh", "-c", &script]);
    let run = traced_run_cmd(cmd, &|| {
        // Not visible from here: the tmpfs exists only in the target's namespace.
        assert!(!dir.path().join("app").exists());
    });
    let leaky = maps_of(&run.report, "map[string]*main.session");
    assert_eq!(leaky.len(), 1, "{:#}", run.report["maps"]);
    assert_eq!(leaky[0]["verdict"], "growing");
    assert_eq!(run.report["target"]["map_impl"], "swiss");
}

/// `doctor` loads the programs as a trace does: here they verify, the
/// uprobe_multi line says what the kernel has (6.6+), execs can be watched;
/// with uprobe_multi turned off that line is a warning, which does not fail
/// `doctor`.
#[test]
fn doctor_loads_the_programs() {
    if !privileged() {
        return;
    }
    let run = |no_multi: bool| {
        let mut c = tracer();
        c.args(["doctor", "--color", "never"]);
        if no_multi {
            c.env("MAPLEAK_NO_UPROBE_MULTI", "1");
        } else {
            c.env_remove("MAPLEAK_NO_UPROBE_MULTI");
        }
        let o = c.output().expect("run mapleak-trace doctor");
        (o.status, String::from_utf8_lossy(&o.stdout).into_owned())
    };
    let line = |out: &str, name: &str| {
        out.lines()
            .find(|l| l.contains(name))
            .unwrap_or_else(|| panic!("no {name:?} line in:\n{out}"))
            .to_owned()
    };
    let (st, out) = run(false);
    assert!(st.success(), "{out}");
    assert!(line(&out, "eBPF programs load").starts_with("ok"), "{out}");
    assert_eq!(
        line(&out, "uprobe_multi links").starts_with("ok"),
        kernel_at_least(6, 6),
        "{out}"
    );
    assert!(line(&out, "exec tracepoint").starts_with("ok"), "{out}");
    let (st, out) = run(true);
    assert!(st.success(), "a warning does not fail doctor:\n{out}");
    let multi = line(&out, "uprobe_multi links");
    assert!(
        multi.starts_with("WARN") && multi.contains("MAPLEAK_NO_UPROBE_MULTI"),
        "{out}"
    );
}
