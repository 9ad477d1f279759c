//! Tier 2 (root): node-wide mode with its HTTP endpoint, end to end.
//!
//! `mapleak-trace --all --exe GLOB --exclude-exe GLOB --metrics-addr` over
//! real Go processes: a leaking and a bounded one running when it starts,
//! an excluded one (a hard link to the same executable) and a non-Go
//! program that match the scan, and a third Go process started later
//! (attached within 5 s, then let go of when it exits). Debian's
//! `prometheus` scrapes `/metrics` every second, and PromQL through its
//! HTTP API finds the leaking map growing and nothing growing in the
//! bounded process; `go tool pprof` fetches `/debug/pprof/mapleak` and
//! names the function that made the leaking map; SIGTERM ends the trace
//! with the final JSON report of the processes still traced, exit 0.

mod e2e_common;

use std::{
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream},
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex, mpsc},
    time::{Duration, Instant},
};

use e2e_common::{GroupGuard, Guard, harness, privileged, spawn_when_not_busy, target_fixture};
use serde_json::{Value, json};

/// A free loopback port (the listener is dropped).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// GET `path` from 127.0.0.1:`port` over HTTP/1.0: (status, headers, body).
fn get(port: u16, path: &str) -> std::io::Result<(u16, String, Vec<u8>)> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n")?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp)?;
    let split = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no header end"))?;
    let head = String::from_utf8_lossy(&resp[..split]).into_owned();
    let code = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad response {head:.80?}")))?;
    Ok((code, head, resp[split + 4..].to_vec()))
}

/// Percent-encodes a query parameter.
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The result vector of a PromQL instant query through Prometheus's API.
fn promql(port: u16, q: &str) -> Vec<Value> {
    let Ok((200, _, body)) = get(port, &format!("/api/v1/query?query={}", enc(q))) else {
        return Vec::new();
    };
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    v["data"]["result"].as_array().cloned().unwrap_or_default()
}

/// Lines of a child's stream, with when each came, read on a thread.
struct Lines {
    rx: mpsc::Receiver<String>,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Lines {
    fn of(r: impl std::io::Read + Send + 'static) -> Lines {
        let (tx, rx) = mpsc::channel();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let keep = seen.clone();
        std::thread::spawn(move || {
            for l in BufReader::new(r).lines() {
                let Ok(l) = l else { break };
                keep.lock().unwrap().push(l.clone());
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        Lines { rx, seen }
    }

    /// Waits up to `limit` for a line containing every one of `needles`.
    fn wait_for(&self, needles: &[&str], limit: Duration) -> Option<String> {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            match self.rx.recv_timeout(left) {
                Ok(l) if needles.iter().all(|n| l.contains(n)) => return Some(l),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
    }

    fn all(&self) -> String {
        self.seen.lock().unwrap().join("\n")
    }
}

/// A Go fixture process started with `-wait`: it has printed `ready`;
/// dropping `go` (its stdin) lets it run.
struct Target {
    guard: Guard,
    go: Option<std::process::ChildStdin>,
    pid: u32,
}

fn start_target(bin: &Path, args: &[&str]) -> Target {
    let mut c = spawn_when_not_busy(
        Command::new(bin)
            .arg("-wait")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped()),
    );
    let pid = c.id();
    let mut err = BufReader::new(c.stderr.take().unwrap());
    let go = c.stdin.take();
    let guard = Guard(Some(c));
    let mut line = String::new();
    err.read_line(&mut line).unwrap();
    assert!(line.starts_with("ready"), "target said {line:?}");
    // Keep reading its stderr so that it never blocks on a full pipe.
    std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
    Target { guard, go, pid }
}

/// The value of the unlabelled series `name` in OpenMetrics `text`.
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} missing:\n{text}"))
}

fn child(g: &mut Guard) -> &mut Child {
    g.0.as_mut().unwrap()
}

/// Waits for `c` to exit, `limit` at most.
fn wait_exit(c: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(st) = c.try_wait().unwrap() {
            return Some(st);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

fn pprof_top(url: &str, args: &[&str], tmp: &Path) -> String {
    let out = Command::new("go")
        .args(["tool", "pprof"])
        .args(args)
        .arg(url)
        .env("GOTOOLCHAIN", "local")
        // Where pprof keeps its copy of a fetched profile.
        .env("PPROF_TMPDIR", tmp)
        .output()
        .expect("running `go tool pprof` (Go on PATH: scripts/setup.sh)");
    assert!(
        out.status.success(),
        "go tool pprof {args:?} {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn all_mode_with_prometheus_and_pprof() {
    if !privileged() {
        return;
    }
    assert!(
        Path::new("/usr/bin/prometheus").exists(),
        "/usr/bin/prometheus missing: run scripts/setup.sh (apt-get install -y prometheus)"
    );
    let dir = tempfile::tempdir().unwrap();
    let at = |f: &str| dir.path().join(f);
    // Copies of the fixture under names of our own: the scan's filter
    // selects them and nothing another test runs.
    let fixture = target_fixture("go1.26.8", "default");
    let bin: PathBuf = at("fleet-target");
    std::fs::copy(&fixture, &bin).unwrap();
    // The same executable (same inode) under a name the filter excludes.
    let excluded = at("fleet-target-excluded");
    std::fs::hard_link(&bin, &excluded).unwrap();
    // A program that is not Go, selected by the filter.
    let not_go = at("fleet-sleep");
    std::fs::copy("/bin/sleep", &not_go).unwrap();

    let forever = ["-steps", "0", "-step-ms", "300"];
    let mut leak = start_target(&bin, &[&["-scenarios", "leaky"][..], &forever].concat());
    let mut bounded = start_target(&bin, &[&["-scenarios", "lru"][..], &forever].concat());
    let mut excl = start_target(&excluded, &[&["-scenarios", "lru"][..], &forever].concat());
    let mut sleeper = Guard(Some(spawn_when_not_busy(
        Command::new(&not_go).arg("120").stdout(Stdio::null()),
    )));

    let port = free_port();
    let json = at("report.json");
    let mut tr = Command::new(env!("CARGO_BIN_EXE_mapleak-trace"))
        .args(["--all", "--exe"])
        .arg(format!("{}/fleet-*", dir.path().display()))
        .args(["--exclude-exe", "*-excluded", "--interval", "1s"])
        // A budget that leaves the governed probes on, as e2e.rs does where
        // it checks creation sites: this test checks what the fleet mode
        // reports (labels, profiles, attach and let go), and the creation
        // site it names must not depend on the governor. At the tests' 1%
        // for the node, each fixture's share follows the little CPU it
        // uses (2% of the node's budget, 0.02% of one CPU, a 1 ms bucket):
        // the tracer's first samples overdraw it, the creation probes are
        // paused within the first 10 ms check and stay paused, and the
        // leaking map, made when the test lets the fixture go, is seen
        // only by its growth (site main.main). The clean-clone CI of
        // 219737e failed so. e2e_budget covers the governor.
        .args(harness::budget_args(["--overhead-budget", "100"]))
        .arg("--metrics-addr")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--json")
        .arg(&json)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let traced_at = Instant::now();
    let out = Lines::of(tr.stdout.take().unwrap());
    let err = Lines::of(tr.stderr.take().unwrap());
    let tracer_pid = tr.id();
    let mut tracer = Guard(Some(tr));
    let attach_limit = Duration::from_secs(20);
    for t in [&leak, &bounded] {
        let pid = format!("to pid {} ", t.pid);
        assert!(
            out.wait_for(&["attached", &pid], attach_limit).is_some(),
            "pid {} not attached in {attach_limit:?}; stdout:\n{}\nstderr:\n{}",
            t.pid,
            out.all(),
            err.all()
        );
    }
    drop(leak.go.take());
    drop(bounded.go.take());
    drop(excl.go.take());

    // A Go process started now is attached within 5 s, found by its exec:
    // the exec checks count it, and no full scan of /proc came in between
    // unless its 30 s were up (with execs not watched, a full scan every
    // second finds it and no exec is checked).
    let looks = || {
        let (_, _, body) = get(port, "/metrics").unwrap();
        let text = String::from_utf8_lossy(&body).into_owned();
        (
            metric(&text, "mapleak_scans_total"),
            metric(&text, "mapleak_exec_checks_total"),
        )
    };
    let (full0, execs0) = looks();
    let t0 = Instant::now();
    let mut late = start_target(
        &bin,
        &["-scenarios", "leaky", "-steps", "4", "-step-ms", "200"],
    );
    let pid = format!("to pid {} ", late.pid);
    let line = out.wait_for(&["attached", &pid], Duration::from_secs(5));
    assert!(
        line.is_some(),
        "the process started after the tracer was not attached within 5 s; stdout:\n{}\nstderr:\n{}",
        out.all(),
        err.all()
    );
    eprintln!("late process attached after {:?}", t0.elapsed());
    // A scrape may be answered from a snapshot up to 0.5 s old.
    let deadline = Instant::now() + Duration::from_secs(5);
    let (full1, execs1) = loop {
        let (f, e) = looks();
        if e > execs0 || Instant::now() > deadline {
            break (f, e);
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        execs1 > execs0,
        "no exec checked: {execs0} exec checks before the late process, {execs1} after"
    );
    let periodic = (traced_at.elapsed().as_secs() / 30) as f64;
    assert!(
        full1 - full0 <= periodic,
        "{} full scans of /proc while the late process was found ({periodic} periodic allowed)",
        full1 - full0
    );
    // It runs its steps and exits: let go of, with its last verdicts.
    drop(late.go.take());
    let st = wait_exit(child(&mut late.guard), Duration::from_secs(30)).unwrap();
    assert!(st.success(), "late target: {st}");
    late.guard.0.take();
    let gone = format!("pid {} (", late.pid);
    let line = out.wait_for(&[&gone, "exited: let go of"], Duration::from_secs(10));
    assert!(
        line.as_deref()
            .is_some_and(|l| l.contains("last verdicts:")),
        "no line letting go of pid {}; stdout:\n{}",
        late.pid,
        out.all()
    );

    // The non-Go program is named once on stderr; the excluded one is
    // never attached.
    let stderr = err.all();
    assert_eq!(
        stderr.matches("fleet-sleep skipped").count(),
        1,
        "the non-Go program should be reported once:\n{stderr}"
    );
    assert!(stderr.contains("not a Go binary"), "{stderr}");

    // /metrics answers OpenMetrics.
    let (code, head, body) = get(port, "/metrics").unwrap();
    assert_eq!(code, 200);
    assert!(
        head.contains("application/openmetrics-text"),
        "content type: {head}"
    );
    let text = String::from_utf8_lossy(&body).into_owned();
    assert!(text.ends_with("# EOF\n"), "{text}");
    assert!(text.contains("mapleak_tracer_cpu_seconds_total"), "{text}");
    // Found by their exec (see above), with the kernel's exec reports.
    assert!(!stderr.contains("execs cannot be watched"), "{stderr}");
    assert!(
        !text.contains(&format!("pid=\"{}\"", excl.pid)),
        "the excluded process is in the metrics:\n{text}"
    );

    // Prometheus scrapes the tracer every second.
    let prom_port = free_port();
    let config = json!({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [{"job_name": "mapleak",
            "static_configs": [{"targets": [format!("127.0.0.1:{port}")]}]}],
    });
    std::fs::write(at("prometheus.yml"), config.to_string()).unwrap();
    let log = std::fs::File::create(at("prometheus.log")).unwrap();
    let mut prom = Guard(Some(
        Command::new("/usr/bin/prometheus")
            .arg(format!("--config.file={}", at("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", at("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting prometheus"),
    ));
    let prom_log = || std::fs::read_to_string(at("prometheus.log")).unwrap_or_default();
    let (leak_pid, bounded_pid) = (leak.pid, bounded.pid);
    let growing_leak = format!(
        r#"max_over_time(mapleak_map_growth_per_gc_cycle{{pid="{leak_pid}",map_type="map[string]*main.session"}}[1m]) > 0"#
    );
    let growing_bounded =
        format!(r#"mapleak_map_verdict{{pid="{bounded_pid}",verdict="growing"}} == 1"#);
    let bounded_rows = format!(r#"mapleak_map_entries{{pid="{bounded_pid}"}} > 0"#);
    let deadline = Instant::now() + Duration::from_secs(90);
    let (leak_series, bounded_growing, bounded_series) = loop {
        if let Some(st) = child(&mut prom).try_wait().unwrap() {
            panic!("prometheus exited ({st}):\n{}", prom_log());
        }
        let a = promql(prom_port, &growing_leak);
        let b = promql(prom_port, &growing_bounded);
        let c = promql(prom_port, &bounded_rows);
        // The holder label comes with the owner search, which may finish a few
        // samples after growth is first seen; a series without it is a different
        // series to Prometheus, so wait for one that has it.
        let held = a.iter().any(|s| s["metric"]["holder"] == "main.sessions");
        if (held && b.is_empty() && !c.is_empty()) || Instant::now() > deadline {
            break (a, b, c);
        }
        std::thread::sleep(Duration::from_secs(1));
    };
    assert!(
        !leak_series.is_empty(),
        "PromQL {growing_leak} found nothing; metrics:\n{}\nprometheus:\n{}",
        String::from_utf8_lossy(&get(port, "/metrics").map(|r| r.2).unwrap_or_default()),
        prom_log()
    );
    let m = leak_series
        .iter()
        .map(|s| &s["metric"])
        .find(|m| m["holder"] == "main.sessions")
        .unwrap_or_else(|| panic!("no growing series held by main.sessions: {leak_series:#?}"));
    assert_eq!(m["site"], "main.newSessionStore", "{leak_series:#?}");
    assert!(
        !bounded_series.is_empty(),
        "the bounded process has no map series in Prometheus"
    );
    assert!(
        bounded_growing.is_empty(),
        "a map of the bounded process is growing: {bounded_growing:#?}"
    );
    drop(prom);
    // What a scrape cost the tracer (printed for the README's figures).
    if let Ok((_, _, body)) = get(port, "/metrics") {
        for l in String::from_utf8_lossy(&body).lines().filter(|l| {
            l.starts_with("mapleak_snapshot_build_seconds ")
                || l.starts_with("mapleak_tracer_")
                || l.starts_with("mapleak_scan")
        }) {
            eprintln!("{l}");
        }
    }

    // The profile over HTTP names the function that made the leaking map.
    let url = format!("http://127.0.0.1:{port}/debug/pprof/mapleak");
    let top = pprof_top(&url, &["-top", "-cum"], dir.path());
    assert!(top.contains("main.newSessionStore"), "{top}");
    assert!(top.contains("Type: inuse_space"), "{top}");
    let keys = pprof_top(
        &url,
        &["-top", "-cum", "-sample_index=retained_keys"],
        dir.path(),
    );
    assert!(keys.contains("Type: retained_keys"), "{keys}");
    // pprof's web UI on the fetched profile: the flame graph names it too.
    let ui_port = free_port();
    let mut ui = GroupGuard(Some(
        Command::new("go")
            .process_group(0)
            .args(["tool", "pprof", "-no_browser"])
            .arg(format!("-http=127.0.0.1:{ui_port}"))
            .arg(&url)
            .env("GOTOOLCHAIN", "local")
            .env("PPROF_TMPDIR", dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("running `go tool pprof -http`"),
    ));
    let deadline = Instant::now() + Duration::from_secs(30);
    let flame = loop {
        match get(ui_port, "/ui/flamegraph") {
            Ok((200, _, body)) => break String::from_utf8_lossy(&body).into_owned(),
            r => {
                assert!(
                    ui.0.as_mut().unwrap().try_wait().unwrap().is_none(),
                    "go tool pprof -http exited"
                );
                assert!(Instant::now() < deadline, "pprof -http: {r:?}");
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    };
    assert!(flame.contains("main.newSessionStore"), "{flame:.2000}");
    drop(ui);

    // SIGTERM: the final report of the processes still traced, exit 0.
    // SAFETY: kill takes a pid and a signal; the pid is our child's.
    assert_eq!(unsafe { libc::kill(tracer_pid as i32, libc::SIGTERM) }, 0);
    let st = wait_exit(child(&mut tracer), Duration::from_secs(30));
    assert!(
        st.is_some_and(|s| s.success()),
        "tracer after SIGTERM: {st:?}\nstderr:\n{}",
        err.all()
    );
    tracer.0.take();
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let procs = doc["processes"].as_array().unwrap();
    let mut pids: Vec<u64> = procs
        .iter()
        .map(|p| p["target"]["pid"].as_u64().unwrap())
        .collect();
    pids.sort_unstable();
    let mut want = vec![u64::from(leak.pid), u64::from(bounded.pid)];
    want.sort_unstable();
    assert_eq!(pids, want, "processes in the final report");
    let leak_report = procs
        .iter()
        .find(|p| p["target"]["pid"] == leak.pid)
        .unwrap();
    assert!(
        leak_report["maps"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["type"] == "map[string]*main.session" && m["verdict"] == "growing"),
        "{leak_report:#}"
    );
    assert!(procs.iter().all(|p| p["ended"] == "interrupted"), "{doc:#}");
    drop((leak, bounded, excl));
    let _ = child(&mut sleeper).kill();
}
