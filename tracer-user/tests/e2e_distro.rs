//! Tier 2: end-to-end tests against real Go services as Debian bookworm ships
//! them (Go 1.19, stripped, externally linked): `/usr/bin/prometheus` and
//! `/usr/bin/etcd` (`scripts/setup.sh` installs them).
//!
//! Like `e2e.rs` they need root: without it, or without the binaries, they
//! say so and return, unless `CI` is set: then they fail loudly. Each test
//! starts the service on free loopback ports with all its files in a
//! temporary directory, loads it from threads, traces it for 20 s and checks
//! that every reported map has a real Go type and size, that cycle numbers are
//! the runtime's own, that the service survives and that no probe is left.
//! Services and load threads are stopped by guards, also when a test fails.
use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

mod e2e_common;

use e2e_common::{Guard, is_root};
use serde_json::{Value, json};

static SERIAL: Mutex<()> = Mutex::new(());

/// The service binary if this test can run; `None` (skipped) without root or
/// without the binary, a failure instead of either when `CI` is set.
fn runnable(path: &str) -> Option<PathBuf> {
    let ci = std::env::var_os("CI").is_some();
    if !is_root() {
        assert!(
            !ci,
            "CI is set but the end-to-end tests are not running as root"
        );
        assert!(
            std::env::var_os("MAPLEAK_ALLOW_SKIP").is_some(),
            "end-to-end tests need root (CAP_BPF, CAP_PERFMON, CAP_SYS_PTRACE): run as root, or set MAPLEAK_ALLOW_SKIP=1 to skip them"
        );
        println!("SKIPPED (MAPLEAK_ALLOW_SKIP): end-to-end tests need root");
        return None;
    }
    let p = PathBuf::from(path);
    if !p.exists() {
        assert!(
            !ci,
            "CI is set but {path} is missing: scripts/setup.sh installs it"
        );
        eprintln!("SKIPPED: {path} is not installed (scripts/setup.sh installs it)");
        return None;
    }
    Some(p)
}

/// Ids of our programs loaded in the kernel (by name), via bpftool.
fn prog_ids() -> std::collections::BTreeSet<u32> {
    let out = Command::new("bpftool")
        .args(["prog", "show"])
        .output()
        .expect("bpftool (scripts/setup.sh installs it)");
    let names = "map_create_entr map_create_ret map_grow gc_sweep map_write fin_hook";
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| names.split(' ').any(|n| l.contains(&format!("name {n}"))))
        .filter_map(|l| l.split(':').next()?.trim().parse().ok())
        .collect()
}

/// `N` distinct loopback ports nobody listens on (the listeners are dropped).
fn free_ports<const N: usize>() -> [u16; N] {
    let ls: Vec<TcpListener> = (0..N)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    std::array::from_fn(|i| ls[i].local_addr().unwrap().port())
}

/// One HTTP/1.0 request to 127.0.0.1:`port`: (status, body).
fn http(port: u16, method: &str, path: &str, body: &str) -> std::io::Result<(u16, String)> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.set_write_timeout(Some(Duration::from_secs(5)))?;
    let len = body.len();
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {len}\r\n\r\n{body}"
    )?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    let code = resp.split(' ').nth(1).and_then(|c| c.parse().ok());
    let code = code.ok_or_else(|| std::io::Error::other(format!("bad response {resp:.80?}")))?;
    Ok((
        code,
        resp.split_once("\r\n\r\n").map_or("", |p| p.1).to_owned(),
    ))
}

fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in data.chunks(3) {
        let b = |i: usize| u32::from(c.get(i).copied().unwrap_or(0));
        let n = (b(0) << 16) | (b(1) << 8) | b(2);
        for i in 0..4 {
            let sextet = ((n >> (18 - 6 * i)) & 63) as usize;
            out.push(if i <= c.len() { A[sextet] as char } else { '=' });
        }
    }
    out
}

/// Threads sending requests until stopped (also on drop, so on failure).
struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<(u64, u64)>>,
}

impl Load {
    /// Runs `req(i)` for i = 0, 1, 2, … spread over `n` threads; `req` says
    /// whether the request succeeded.
    fn start(n: u64, req: impl Fn(u64) -> bool + Send + Sync + 'static) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let req = Arc::new(req);
        let threads = (0..n)
            .map(|t| {
                let (stop, req) = (stop.clone(), req.clone());
                std::thread::spawn(move || {
                    let (mut i, mut ok, mut failed) = (t, 0, 0);
                    while !stop.load(Ordering::Relaxed) {
                        if req(i) {
                            ok += 1;
                        } else {
                            failed += 1;
                            std::thread::sleep(Duration::from_millis(50));
                        }
                        i += n;
                    }
                    (ok, failed)
                })
            })
            .collect();
        Load { stop, threads }
    }

    /// Stops and joins the threads: (requests that succeeded, that failed).
    fn finish(&mut self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        let counts = self.threads.drain(..).map(|t| t.join().unwrap_or((0, 0)));
        counts.fold((0, 0), |a, c| (a.0 + c.0, a.1 + c.1))
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.finish();
    }
}

/// A service whose working directory and files are in a temporary directory
/// (removed after the service is killed: fields drop in order).
struct Service {
    name: &'static str,
    port: u16,
    started: Instant,
    proc: Guard,
    dir: tempfile::TempDir,
}

impl Service {
    fn start(name: &'static str, port: u16, dir: tempfile::TempDir, mut cmd: Command) -> Service {
        let log = |f: &str| std::fs::File::create(dir.path().join(f)).unwrap();
        let child = cmd
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log("stdout.log"))
            .stderr(log("stderr.log"))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let (started, proc) = (Instant::now(), Guard(Some(child)));
        Service {
            name,
            port,
            started,
            proc,
            dir,
        }
    }

    fn child(&mut self) -> &mut Child {
        self.proc.0.as_mut().unwrap()
    }

    /// The end of the service's stderr, for failure messages.
    fn stderr_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Polls GET `path` until its body contains `needle` (15 s at most).
    fn wait_ready(&mut self, path: &str, needle: &str) {
        let (name, deadline) = (self.name, Instant::now() + Duration::from_secs(15));
        loop {
            if let Some(st) = self.child().try_wait().unwrap() {
                panic!(
                    "{name} exited ({st}) before answering:\n{}",
                    self.stderr_tail()
                );
            }
            match http(self.port, "GET", path, "") {
                Ok((200, body)) if body.contains(needle) => return,
                r if Instant::now() > deadline => panic!(
                    "{name} did not answer GET {path} with {needle:?} in 15 s (last: {r:?}); \
                     stderr:\n{}",
                    self.stderr_tail()
                ),
                _ => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// Completed GC cycles (runtime NumGC), from the Go collector's metrics.
    fn gc_count(&self) -> Option<u64> {
        let (_, body) = http(self.port, "GET", "/metrics", "").ok()?;
        let line = body
            .lines()
            .find_map(|l| l.strip_prefix("go_gc_duration_seconds_count "));
        line?.trim().parse().ok()
    }
}

/// Traces the loaded service for 20 s and checks, in order: the tracer ran
/// and exited cleanly, the service is alive and answering, the load was
/// served, no probe is left; then the report (see [`check_report`]).
/// `budget`: `--overhead-budget`, percent of one CPU.
fn trace_and_check(svc: &mut Service, mut load: Load, budget: &str) {
    let name = svc.name;
    // Attach only once the runtime's cycle numbers are clearly apart from
    // cycles counted from attach (1, 2, …).
    let deadline = Instant::now() + Duration::from_secs(30);
    let gc_before = loop {
        match svc.gc_count() {
            Some(n) if n >= 10 => break n,
            n if Instant::now() > deadline => panic!(
                "{name}: fewer than 10 GC cycles in 30 s of load ({n:?}); stderr:\n{}",
                svc.stderr_tail()
            ),
            _ => std::thread::sleep(Duration::from_millis(200)),
        }
    };
    let dir = svc.dir.path().to_owned();
    let (json, terr) = (dir.join("report.json"), dir.join("tracer.err"));
    let before = prog_ids();
    let args = format!(
        "--pid {} --duration 20s --overhead-budget {budget} --json",
        svc.child().id()
    );
    let mut tr = Command::new(env!("CARGO_BIN_EXE_mapleak-trace"))
        .args(args.split(' '))
        .arg(&json)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&terr).unwrap())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(tr.stdout.take().unwrap());
    let mut trg = Guard(Some(tr));
    let tracer_err = || std::fs::read_to_string(&terr).unwrap_or_default();
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    assert!(
        first.contains("attached"),
        "tracer said {first:?}\n{}",
        tracer_err()
    );
    let during = prog_ids();
    // Drained on a thread so that a hung tracer is caught by the deadline.
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = trg.0.as_mut().unwrap().try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "tracer still running after 60 s");
        std::thread::sleep(Duration::from_millis(100));
    };
    let (out, err) = (out.join().unwrap(), tracer_err());
    assert!(status.success(), "tracer failed: {status}\n{err}\n{out}");
    assert!(!err.contains("panicked"), "{err}");
    eprintln!("{name}: tracer said:\n{first}{out}");

    // No harm to the target: still running, still answering.
    if let Some(st) = svc.child().try_wait().unwrap() {
        panic!(
            "{name} died under the tracer ({st}):\n{}",
            svc.stderr_tail()
        );
    }
    let gc_after = svc
        .gc_count()
        .unwrap_or_else(|| panic!("{name} no longer answers /metrics"));
    let (ok, failed) = load.finish();
    eprintln!("{name}: {ok} requests served, {failed} failed");
    assert!(ok >= 100 && failed * 10 <= ok, "{name}: load not served");
    // No probe stays loaded (the kernel may free programs a moment later).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let now = prog_ids();
        let left: Vec<_> = during
            .difference(&before)
            .filter(|p| now.contains(p))
            .collect();
        if left.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "programs left loaded: {left:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("{name}: {:.1?} since it started", svc.started.elapsed());
    let doc: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(doc["schema"], "mapleak-trace/report/v2");
    let report = doc["processes"][0].clone();
    check_report(name, &report, gc_before, gc_after);
}

/// What is wrong with one reported map, if anything.
fn map_problems(m: &Value) -> Vec<&'static str> {
    let ty = m["type"].as_str().unwrap_or("");
    let u = |k: &str| m[k].as_u64().unwrap();
    let (len, cap, bytes) = (u("len_last"), u("capacity"), u("bytes"));
    let mut p = Vec::new();
    if !ty.starts_with("map[") || ty.contains("unknown") {
        p.push("type is not a Go map type");
    }
    // A map without a bucket array has capacity 0; any other has bytes.
    if (cap > 0 || len > 0) && bytes == 0 {
        p.push("capacity > 0 but bytes 0");
    }
    // hmap: 8 << B slots; more than 2^32 is a misread header.
    if cap > 1 << 32 {
        p.push("capacity > 2^32 (misread header)");
    }
    p
}

/// Every map has a Go type and a size, and cycle numbers are the runtime's
/// (NumGC was `gc_before` before attach, `gc_after` after the trace). All
/// violations are listed in one failure, with a summary.
fn check_report(name: &str, r: &Value, gc_before: u64, gc_after: u64) {
    let maps = r["maps"].as_array().unwrap();
    let num = |c: &Value| c.as_u64().unwrap();
    let cycles: Vec<u64> = r["gc_cycles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| num(&c["cycle"]))
        .collect();
    assert!(!maps.is_empty(), "{name}: no map tracked: {r:#}");
    assert!(!cycles.is_empty(), "{name}: no GC cycle seen: {r:#}");
    let mut failures: std::collections::BTreeMap<&str, usize> = Default::default();
    let mut offenders = Vec::new();
    for m in maps {
        let p = map_problems(m);
        for what in &p {
            *failures.entry(what).or_default() += 1;
        }
        if !p.is_empty() && offenders.len() < 6 {
            let lens = m["len_by_cycle"].as_array().unwrap();
            let v = json!({"id": m["id"], "type": m["type"], "verdict": m["verdict"],
                "len": m["len_last"], "capacity": m["capacity"], "bytes": m["bytes"],
                "samples": lens.len(), "grown_at": m["grown_at"][0]["function"]});
            offenders.push(format!("  {v}"));
        }
    }
    // Cycles are numbered by NumGC as read (or work.cycles at gcSweep,
    // which equals NumGC then, where the probe is used): every number the
    // report uses lies in [gc_before, gc_after + 1]; cycles counted from
    // attach start at 1.
    let (lo, hi) = (gc_before, gc_after + 1);
    let lens = maps
        .iter()
        .flat_map(|m| m["len_by_cycle"].as_array().unwrap());
    let numbers = cycles.iter().copied().chain(lens.map(|p| num(&p[0])));
    let foreign = numbers.filter(|&c| c < lo || c > hi).count();
    if foreign > 0 {
        failures.insert(
            "cycle numbers outside the runtime's (counted from attach?)",
            foreign,
        );
    }
    let summary = format!(
        "{name} ({} {}): {} maps; report cycles #{}..#{} ({} seen), runtime NumGC {gc_before} \
         before attach and {gc_after} after (range [{lo}, {hi}])",
        r["target"]["go_version"],
        r["target"]["map_impl"],
        maps.len(),
        cycles[0],
        cycles[cycles.len() - 1],
        cycles.len(),
    );
    eprintln!("{summary}");
    let failures: Vec<String> = failures
        .iter()
        .map(|(what, n)| format!("{n}: {what}"))
        .collect();
    assert!(
        failures.is_empty(),
        "{summary}\nfound: {}\nfirst maps at fault:\n{}",
        failures.join("; "),
        offenders.join("\n")
    );
}

/// Prometheus scraping itself every second through four jobs (series
/// churn), with two recording rules, while two threads query it.
#[test]
fn prometheus_debian() {
    let Some(bin) = runnable("/usr/bin/prometheus") else {
        return;
    };
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let [port] = free_ports();
    let dir = tempfile::tempdir().unwrap();
    let target = format!("127.0.0.1:{port}");
    // JSON is YAML.
    let jobs: Vec<Value> = (0..4)
        .map(|i| {
            json!({"job_name": format!("self-{i}"),
                "static_configs": [{"targets": [target], "labels": {"copy": i.to_string()}}]})
        })
        .collect();
    let config = json!({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": ["rules.yml"],
        "scrape_configs": jobs,
    });
    let rules = json!({"groups": [{"name": "churn", "rules": [
        {"record": "job:scrape_samples_scraped:sum", "expr": "sum by (job) (scrape_samples_scraped)"},
        {"record": "handler:http_requests:rate5s",
         "expr": "sum by (handler, code) (rate(prometheus_http_requests_total[5s]))"},
    ]}]});
    let path = |f: &str| dir.path().join(f).display().to_string();
    std::fs::write(path("prometheus.yml"), config.to_string()).unwrap();
    std::fs::write(path("rules.yml"), rules.to_string()).unwrap();
    let mut cmd = Command::new(bin);
    cmd.arg(format!("--config.file={}", path("prometheus.yml")))
        .arg(format!("--storage.tsdb.path={}", path("data")))
        .arg(format!("--web.listen-address={target}"));
    let mut svc = Service::start("prometheus", port, dir, cmd);
    svc.wait_ready("/-/ready", "Ready");
    let load = Load::start(2, move |i| {
        let path = [
            "/api/v1/query?query=up",
            "/metrics",
            "/api/v1/query?query=sum%20by%20(job)%20(rate(scrape_duration_seconds%5B5s%5D))",
            "/api/v1/series?match%5B%5D=up",
            "/api/v1/label/__name__/values",
            "/api/v1/query?query=job:scrape_samples_scraped:sum",
        ][i as usize % 6];
        matches!(http(port, "GET", path, ""), Ok((200, _)))
    });
    trace_and_check(&mut svc, load, "1");
}

/// etcd under a stream of puts of new keys (four for each delete of an
/// earlier one) from two threads, through the v3 JSON gateway.
#[test]
fn etcd_debian() {
    let Some(bin) = runnable("/usr/bin/etcd") else {
        return;
    };
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let [client, peer] = free_ports();
    let dir = tempfile::tempdir().unwrap();
    let url = |port: u16| format!("http://127.0.0.1:{port}");
    let (curl, purl) = (url(client), url(peer));
    let args = format!(
        "--name default --data-dir {} --listen-client-urls {curl} --advertise-client-urls {curl} \
         --listen-peer-urls {purl} --initial-advertise-peer-urls {purl} \
         --initial-cluster default={purl}",
        dir.path().join("data").display()
    );
    let mut cmd = Command::new(bin);
    cmd.args(args.split_whitespace());
    let mut svc = Service::start("etcd", client, dir, cmd);
    svc.wait_ready("/health", r#""health":"true""#);
    let load = Load::start(2, move |i| {
        let key = |k: u64| base64(format!("mapleak/{k:09}").as_bytes());
        let (path, body) = if i % 5 == 4 {
            // A key this thread wrote before (i advances by 2 per thread).
            ("/v3/kv/deleterange", json!({"key": key(i - 4)}))
        } else {
            let value = base64(format!("value-{i}-{}", "x".repeat(64)).as_bytes());
            ("/v3/kv/put", json!({"key": key(i), "value": value}))
        };
        matches!(http(client, "POST", path, &body.to_string()), Ok((200, _)))
    });
    // Debian's etcd is built with Go 1.19: its creation probes are
    // single-stepped RET sites (fastrand is inlined: no seed call to probe),
    // and under this load the governed probes stay paused at the default
    // budget, so few maps are found. This test checks types and sizes:
    // no limit.
    trace_and_check(&mut svc, load, "100");
}
