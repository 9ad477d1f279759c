//! `cargo xtask bench`: measures what mapleak-trace costs a Go program, and
//! writes `docs/benchmarks.md` (or `target/bench/smoke.md` with `--smoke`).
//!
//! The workload is `testdata/go/bench` (one program, several modes), built
//! here into `target/bench/` with Go 1.23 (hmap) and Go 1.26 (Swiss maps),
//! plus a stripped copy of each for the per-hit microbenchmark. The parts:
//!
//! 1. Throughput of `mapwrite` (12 s runs) and `http` (20 s): untraced, under
//!    mapleak-trace in default mode (its overhead governor: a token bucket
//!    that pauses the creation probes and opens write-path windows), and
//!    under bpftrace with a counting uprobe on the entry of every function
//!    default mode keeps attached. Runs alternate (the order rotates with
//!    each repetition); the loss is the median of the per-repetition ratios
//!    traced/untraced, and the budget check compares it with the budget
//!    plus 1 % (`tp_report`).
//! 2. Cost per probe hit by placement, on `runtime.mapassign_fast64` (which
//!    default mode probes only in write windows): bpftrace at the entry (`CMPQ`,
//!    single-stepped), at the `JBE` and at the `PUSHQ BP` (both emulated by
//!    the kernel). cost/hit = (t_traced - t_untraced) / hits.
//!    Part 2b: cost per map creation under each tracer.
//! 3. The tracer's own CPU and peak RSS with 100,000 live grown maps.
//!
//! `--only PART --merge` reruns some parts and keeps the others' figures
//! from the last results.json (`reuse`).
//!
//! Every process started here is a child of this one, is waited for with a
//! deadline and is killed by its pid (never by name) when it outlives it,
//! also when a step fails. Targets only listen on 127.0.0.1. Timing is
//! reported, never asserted.
use std::{
    collections::BTreeMap,
    ffi::OsString,
    fmt::Write as _,
    fs,
    io::{BufRead as _, BufReader, Read as _, Write as _},
    path::{Path, PathBuf},
    process::{Child, ChildStdin, Command, ExitStatus, Stdio},
    sync::{
        Arc, Mutex,
        mpsc::{self, Receiver, RecvTimeoutError},
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use serde_json::{Value, json};

mod phases;
mod phases_report;
mod reuse;
mod suite;
mod tp_report;

/// Arguments of `cargo xtask bench`.
#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// A short run that only checks the benchmark still works (CI): ~1 s
    /// runs, one repetition, small workloads; writes target/bench/smoke.md.
    #[arg(long)]
    pub(crate) smoke: bool,
    /// Repetitions of each measurement (default 5; 1 with --smoke).
    #[arg(long)]
    pub(crate) reps: Option<usize>,
    /// Length of each throughput run in seconds, both workloads (default:
    /// mapwrite 12, http 20, long enough for the overhead governor's initial
    /// 5 s bucket not to dominate; 1 with --smoke).
    #[arg(long)]
    pub(crate) seconds: Option<f64>,
    /// The mapleak-trace binary to measure (default: built here with cargo,
    /// release profile; debug profile with --smoke).
    #[arg(long)]
    pub(crate) tracer: Option<PathBuf>,
    /// Traced phases per workload and Go release in the alternating-phases
    /// measurement (part 1b; default 20, 7 with `--workload suite`; 2 with
    /// --smoke).
    #[arg(long)]
    pub(crate) rounds: Option<usize>,
    /// Length of each phase (traced and untraced) of part 1b, in seconds
    /// (default 10, 6 with `--workload suite`; 1.5 with --smoke).
    #[arg(long)]
    pub(crate) phase_seconds: Option<f64>,
    /// Part 1b: seconds after the tracer attaches before its traced phase
    /// is measured (default 5, the governor's bucket; 0.5 with --smoke).
    /// Those first seconds are measured apart (the startup loss).
    #[arg(long)]
    pub(crate) attach_settle_seconds: Option<f64>,
    /// Only these parts: throughput, phases, probe-cost, create-cost,
    /// manymaps (default: all).
    /// A partial run writes target/bench/partial.md unless --out is given.
    #[arg(long, value_delimiter = ',')]
    pub(crate) only: Vec<String>,
    /// Only these Go toolchains (default: go1.23.12,go1.26.8).
    #[arg(long, value_delimiter = ',')]
    pub(crate) go: Vec<String>,
    /// Where to write the report.
    #[arg(long)]
    pub(crate) out: Option<PathBuf>,
    /// With --only: take the parts not measured now from the last full
    /// figures (target/bench/results.json) and write docs/benchmarks.md
    /// (or --out) with all of them, each part saying when it was measured.
    #[arg(long, requires = "only")]
    pub(crate) merge: bool,
    /// Part 1b's workload (xtask/src/bench/suite.rs): `http` (GET, a
    /// bounded counter map), `json` (POSTed JSON documents decoded into
    /// `map[string]any`), `permaps10`/`100`/`1000` (a map of that many keys
    /// built per request), `mapwrite`, `gcheavy` (100+ GC cycles/s),
    /// `creators` (maps created on every CPU), `livemaps` (100,000 live
    /// maps), or `suite` (alias `all`): every one in turn. Each grows a
    /// planted map the tracer must report.
    #[arg(long, default_value = "http", value_parser = suite::NAMES)]
    pub(crate) workload: String,
}

/// `--overhead-budget` given to mapleak-trace (its default, in percent of
/// one CPU), and the margin the budget check allows on top of it: "the
/// target loses no more than the budget plus 1 % throughput".
const BUDGET_PCT: f64 = 1.0;
const BUDGET_MARGIN_PCT: f64 = 1.0;

/// What mapleak-trace's governor debits per probe hit, in µs
/// (tracer-user/src/governor.rs: EMULATED_HIT_S, SINGLE_STEP_HIT_S,
/// WRITE_HIT_S), and the size of its bucket in seconds of budget (BURST_S),
/// the longest write window (WINDOW_MAX): quoted in the report.
const GOV_EMULATED_US: f64 = 0.8;
const GOV_SINGLE_STEP_US: f64 = 11.0;
const GOV_WRITE_US: f64 = 1.0;
const GOV_BURST_S: f64 = 5.0;
const GOV_WINDOW_MAX_S: f64 = 2.0;
const GOV_WINDOW_GAP_S: f64 = 5.0;

/// Go releases measured: one with the bucket hash map, one with Swiss maps.
const TOOLCHAINS: [(&str, &str); 2] = [("go1.23.12", "hmap"), ("go1.26.8", "swiss")];

const PARTS: [&str; 5] = [
    "throughput",
    "phases",
    "probe-cost",
    "create-cost",
    "manymaps",
];

/// Sizes and lengths of one bench run.
struct Settings {
    smoke: bool,
    reps: usize,
    /// Length of every throughput run (--seconds), else per workload.
    seconds: Option<f64>,
    /// Pause between the tracer reporting it attached and the measured part
    /// (the same pause in untraced runs).
    settle: Duration,
    /// Part 1b: traced phases per workload and Go release, and the length
    /// of each phase (traced and untraced).
    phase_rounds: usize,
    phase: Duration,
    /// Part 1b: from attach to the traced phase's start.
    phase_settle: Duration,
    /// Part 1b's workloads (one, or the suite).
    phase_workloads: Vec<&'static suite::Workload>,
    /// mapassign_fast64 calls per microbenchmark run.
    micro_ops: u64,
    /// Maps created per creation-cost run.
    create_ops: u64,
    /// manymaps: live maps, and how long the tracer watches them.
    many_n: u64,
    many_trace_s: u64,
    /// How long to wait for other tracers (another engineer's tests) to end
    /// before a measured run, and in all (the bench's run time stays
    /// bounded however busy the machine is).
    wait_idle: Duration,
    wait_idle_total: Duration,
    /// Runs made again because other processes were busy, at most, in all.
    retries_total: usize,
}

impl Settings {
    fn new(args: &Args) -> Settings {
        let smoke = args.smoke;
        let phase_workloads = suite::select(&args.workload);
        // The suite's defaults keep a full run (9 workloads, 2 Go releases)
        // within about 35 minutes: each workload's run is the warm-up (3 s),
        // rounds x (2 phases + about 2 s for the tracer's startup and exit
        // and the gap) and a last untraced phase, 107 s with 7 rounds of
        // 6 s phases. 7 rounds give both the loss and the noise floor (6
        // inner untraced phases) a 95 % interval.
        let whole_suite = phase_workloads.len() > 1;
        Settings {
            smoke,
            reps: args.reps.unwrap_or(if smoke { 1 } else { 5 }).max(1),
            seconds: args.seconds.or(smoke.then_some(1.0)).map(|x| x.max(0.2)),
            settle: Duration::from_millis(if smoke { 300 } else { 1000 }),
            phase_rounds: args
                .rounds
                .unwrap_or(match (smoke, whole_suite) {
                    (true, _) => 2,
                    (false, true) => 7,
                    (false, false) => 20,
                })
                .max(1),
            phase: Duration::from_secs_f64(
                args.phase_seconds
                    .unwrap_or(match (smoke, whole_suite) {
                        (true, _) => 1.5,
                        (false, true) => 6.0,
                        (false, false) => 10.0,
                    })
                    .max(1.0),
            ),
            phase_settle: Duration::from_secs_f64(
                args.attach_settle_seconds
                    .unwrap_or(if smoke { 0.5 } else { 5.0 })
                    .max(0.0),
            ),
            phase_workloads,
            micro_ops: if smoke { 20_000 } else { 300_000 },
            create_ops: if smoke { 10_000 } else { 100_000 },
            many_n: if smoke { 10_000 } else { 100_000 },
            many_trace_s: if smoke { 3 } else { 20 },
            wait_idle: Duration::from_secs(if smoke { 0 } else { 120 }),
            wait_idle_total: Duration::from_secs(if smoke { 0 } else { 300 }),
            retries_total: if smoke { 0 } else { 12 },
        }
    }

    /// Length of one throughput run of `workload`.
    fn tp_seconds(&self, workload: &str) -> f64 {
        self.seconds.unwrap_or(match workload {
            // The governor starts with a full bucket (5 s of budget, 50 ms at
            // 1 %): over 12 s that first burst is 0.4 % of the run, and two
            // or three refills follow, which is what the budget check is about.
            "mapwrite" => 12.0,
            // http spreads the probes' cost over both CPUs, so the first
            // burst weighs more against the 1 % goal there; 20 s also
            // averages over the other tenants' slowdowns of a few seconds.
            _ => 20.0,
        })
    }
}

// ---------------------------------------------------------------------------
// Child processes.

/// A child process whose stdout is read line by line on a thread, and which
/// is killed (by its pid, while it is still our unreaped child) when dropped.
struct Proc {
    what: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    seen: Vec<String>,
    stderr: Arc<Mutex<String>>,
}

/// How much of a child's stderr is kept for error messages.
const STDERR_KEEP: usize = 16 << 10;

impl Proc {
    fn spawn(what: &str, mut cmd: Command) -> Result<Proc> {
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting {what}: {cmd:?}"))?;
        // From here on nothing may fail before the Proc exists (its Drop is
        // what kills the child).
        let (tx, rx) = mpsc::channel();
        if let Some(out) = child.stdout.take() {
            thread::spawn(move || {
                for line in BufReader::new(out).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        let stderr = Arc::new(Mutex::new(String::new()));
        if let Some(mut err) = child.stderr.take() {
            let keep = Arc::clone(&stderr);
            thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = err.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    if let Ok(mut s) = keep.lock() {
                        s.push_str(&String::from_utf8_lossy(&buf[..n]));
                        if s.len() > STDERR_KEEP {
                            let mut cut = s.len() - STDERR_KEEP;
                            while !s.is_char_boundary(cut) {
                                cut += 1;
                            }
                            s.drain(..cut);
                        }
                    }
                }
            });
        }
        Ok(Proc {
            what: what.to_owned(),
            stdin: child.stdin.take(),
            child,
            lines: rx,
            seen: Vec::new(),
            stderr,
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn stderr_tail(&self) -> String {
        let s = self.stderr.lock().map(|s| s.clone()).unwrap_or_default();
        let s = s.trim();
        let lines: Vec<&str> = s.lines().collect();
        let from = lines.len().saturating_sub(12);
        lines[from..].join("\n")
    }

    /// Waits for a stdout line that satisfies `pred`.
    fn wait_line(&mut self, pred: impl Fn(&str) -> bool, timeout: Duration) -> Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!(
                    "{} (pid {}): no expected output within {timeout:?}; stdout so far: {:?}; stderr: {}",
                    self.what,
                    self.pid(),
                    self.seen,
                    self.stderr_tail()
                );
            }
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if pred(&line) {
                        return Ok(line);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    // Give the stderr reader a moment to catch up.
                    thread::sleep(Duration::from_millis(100));
                    bail!(
                        "{} (pid {}) closed its output early (stdout: {:?}); stderr: {}",
                        self.what,
                        self.pid(),
                        self.seen,
                        self.stderr_tail()
                    );
                }
            }
        }
    }

    fn send_line(&mut self, line: &str) -> Result<()> {
        let w = self.stdin.as_mut().context("stdin already closed")?;
        w.write_all(line.as_bytes())?;
        w.write_all(b"\n")?;
        w.flush()?;
        // One line is all the bench program reads.
        self.stdin = None;
        Ok(())
    }

    fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.child.try_wait()? {
                return Ok(st);
            }
            if Instant::now() >= deadline {
                bail!(
                    "{} (pid {}) still running after {timeout:?}; stderr: {}",
                    self.what,
                    self.pid(),
                    self.stderr_tail()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends `sig` to the child, if it is still our unreaped child (so the
    /// pid cannot have been reused).
    fn signal(&mut self, sig: libc::c_int) {
        if self.running()
            && let Ok(pid) = libc::pid_t::try_from(self.child.id())
        {
            // SAFETY: kill(2) with a pid we own (not yet reaped) and a valid
            // signal number; no memory is involved.
            unsafe { libc::kill(pid, sig) };
        }
    }

    /// Asks the child to stop with SIGINT, then kills it after `grace`.
    fn stop(&mut self, grace: Duration) -> Option<ExitStatus> {
        self.signal(libc::SIGINT);
        match self.wait_exit(grace) {
            Ok(st) => Some(st),
            Err(_) => {
                let _ = self.child.kill();
                self.child.wait().ok()
            }
        }
    }

    /// All stdout lines, once the child has exited.
    fn output(&mut self) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(_) => break,
            }
        }
        self.seen.clone()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // Child::kill sends SIGKILL to this child's pid only.
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Other tracers running on the machine (someone's e2e tests): they compete
/// for the two CPUs and make a measurement noisy.
fn foreign_tracers() -> Vec<String> {
    let me = std::process::id();
    let mut found = Vec::new();
    let Ok(dir) = fs::read_dir("/proc") else {
        return found;
    };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(raw) = fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&raw).replace('\0', " ");
        let exe = cmd.split(' ').next().unwrap_or("");
        if exe.ends_with("mapleak-trace") || exe.ends_with("bpftrace") {
            found.push(format!("{pid} {}", cmd.trim()));
        }
    }
    found
}

// ---------------------------------------------------------------------------
// One measured run.

enum Tracing {
    Untraced,
    /// `stop_target`: the target runs longer than `--duration`; stop it
    /// (SIGKILL) as soon as the tracer has exited.
    Mapleak {
        exe: PathBuf,
        duration_s: u64,
        stop_target: bool,
    },
    Bpftrace {
        program: String,
        unsafe_mode: bool,
    },
}

struct RunResult {
    /// `key value` lines printed by the bench program.
    target: BTreeMap<String, String>,
    /// mapleak-trace's JSON report.
    report: Option<Value>,
    /// bpftrace's `@c` counts, by key (empty key for a plain `@c`).
    counts: BTreeMap<String, u64>,
    /// The tracer's CPU time (user + system) when the measured part began
    /// (its startup), and during the measured part, from /proc.
    tracer_cpu_startup_s: f64,
    tracer_cpu_window_s: f64,
    /// Wall time from "go" to the target's exit.
    window_s: f64,
    /// The target's CPU time in total, and in the kernel (uprobe traps and
    /// BPF programs run there), over its whole life.
    target_cpu_s: f64,
    target_sys_s: f64,
    /// CPU time other processes used meanwhile (user + system).
    foreign_cpu_s: f64,
    /// The tracer's RSS and CPU time every 250 ms of the measured part:
    /// (s since go, bytes, CPU s).
    tracer_rss: Vec<(f64, u64, f64)>,
}

impl RunResult {
    fn num(&self, key: &str) -> Result<f64> {
        let v = self
            .target
            .get(key)
            .with_context(|| format!("bench printed no `{key}` (got {:?})", self.target))?;
        let first = v.split_whitespace().next().unwrap_or("");
        first
            .parse()
            .with_context(|| format!("`{key} {v}` is not a number"))
    }

    fn bpf_hits(&self) -> u64 {
        self.counts.values().sum()
    }
}

struct Bench {
    s: Settings,
    root: PathBuf,
    out_dir: PathBuf,
    /// Runs started while other tracers were running.
    contaminated: usize,
    runs: usize,
    /// Other processes' CPU use during each kept run (CPU-s per s).
    foreign: Vec<f64>,
    /// Runs made again because of it, and runs kept despite it.
    retried: usize,
    noisy: usize,
    /// Time spent waiting for other tracers to end.
    waited: Duration,
    log: Vec<String>,
}

/// Other processes' CPU use (in CPUs) above which a run is made again.
const FOREIGN_MAX: f64 = 0.2;

impl Bench {
    fn note(&mut self, msg: String) {
        eprintln!("bench: {msg}");
        self.log.push(msg);
    }

    /// Waits (bounded) until no other tracer runs; counts the run as noisy
    /// if one still does.
    fn wait_idle(&mut self) {
        let start = Instant::now();
        let mut others = foreign_tracers();
        let mut told = false;
        let limit = self
            .s
            .wait_idle
            .min(self.s.wait_idle_total.saturating_sub(self.waited));
        while !others.is_empty() && start.elapsed() < limit {
            if !told {
                eprintln!(
                    "bench: waiting up to {:?} for other tracers to finish: {others:?}",
                    self.s.wait_idle
                );
                told = true;
            }
            thread::sleep(Duration::from_secs(1));
            others = foreign_tracers();
        }
        self.waited += start.elapsed();
        self.runs += 1;
        if !others.is_empty() {
            self.contaminated += 1;
            eprintln!("bench: measuring while other tracers run: {others:?}");
        }
    }

    /// One run; outside --smoke, a run during which other processes used
    /// more than FOREIGN_MAX of a CPU is discarded and made again (twice at
    /// most).
    fn run_once(
        &mut self,
        bin: &Path,
        args: &[String],
        tracing: &Tracing,
        budget: Duration,
    ) -> Result<RunResult> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let r = self.run_attempt(bin, args, tracing, budget)?;
            let busy = r.foreign_cpu_s / r.window_s;
            if self.s.smoke
                || attempt >= 3
                || self.retried >= self.s.retries_total
                || busy.is_nan()
                || busy <= FOREIGN_MAX
            {
                self.foreign.push(busy);
                if busy > FOREIGN_MAX {
                    self.noisy += 1;
                }
                return Ok(r);
            }
            self.retried += 1;
            let msg = format!(
                "other processes used {busy:.2} CPU during `{} {}`: measured again",
                bin.file_name()
                    .map_or(String::new(), |n| n.to_string_lossy().into_owned()),
                args.join(" ")
            );
            self.note(msg);
        }
    }

    fn run_attempt(
        &mut self,
        bin: &Path,
        args: &[String],
        tracing: &Tracing,
        budget: Duration,
    ) -> Result<RunResult> {
        self.wait_idle();
        let mut cmd = Command::new(bin);
        cmd.args(args).arg("-wait");
        let mut target = Proc::spawn("bench target", cmd)?;
        target.wait_line(|l| l == "waiting", Duration::from_secs(30))?;
        let pid = target.pid();
        let json_path = self.out_dir.join(format!("report-{pid}.json"));
        let mut tracer = match tracing {
            Tracing::Untraced => None,
            Tracing::Mapleak {
                exe, duration_s, ..
            } => Some(spawn_mapleak(exe, pid, *duration_s, &json_path)?),
            Tracing::Bpftrace {
                program,
                unsafe_mode,
            } => {
                let mut c = Command::new("bpftrace");
                if *unsafe_mode {
                    c.arg("--unsafe");
                }
                c.arg("-p").arg(pid.to_string()).arg("-e").arg(program);
                let mut p = Proc::spawn("bpftrace", c)?;
                p.wait_line(|l| l.starts_with("Attaching"), Duration::from_secs(60))?;
                Some(p)
            }
        };
        // "Attaching N probes..." comes just before bpftrace attaches; the
        // pause covers that, and is the same for every mode.
        thread::sleep(self.s.settle);
        if let Some(t) = tracer.as_mut()
            && !t.running()
        {
            bail!("{} exited before the run: {}", t.what, t.stderr_tail());
        }
        let cpu_go = tracer.as_ref().and_then(|t| proc_cpu_s(t.pid()));
        let (sys0, ch0) = (system_busy_s(), children_cpu_s());
        let ksys0 = children_sys_s();
        let go = Instant::now();
        target.send_line("go")?;
        // Wait for the target, sampling the tracer's RSS on the way.
        let mut rss = Vec::new();
        let mut polls = 0u32;
        let stop_target = matches!(
            tracing,
            Tracing::Mapleak {
                stop_target: true,
                ..
            }
        );
        let mut stopped = false;
        let st = loop {
            if let Some(st) = target.child.try_wait()? {
                break st;
            }
            if stop_target && !stopped && tracer.as_ref().is_some_and(|t| proc_exited(t.pid())) {
                // The tracer is a zombie (not reaped: its pid is still ours
                // and its /proc entry still has its times).
                let _ = target.child.kill();
                stopped = true;
            }
            if go.elapsed() >= budget {
                bail!(
                    "bench {args:?} still running after {budget:?}; stderr: {}",
                    target.stderr_tail()
                );
            }
            if polls.is_multiple_of(5)
                && let Some(t) = tracer.as_ref()
                && let (Some(r), Some(c)) = (proc_rss_bytes(t.pid()), proc_cpu_s(t.pid()))
            {
                rss.push((go.elapsed().as_secs_f64(), r, c));
            }
            polls += 1;
            thread::sleep(Duration::from_millis(50));
        };
        let window_s = go.elapsed().as_secs_f64();
        // The tracer has not been reaped yet (at worst it is a zombie whose
        // /proc/PID/stat still holds its final times): its pid is still ours.
        let cpu_end = tracer.as_ref().and_then(|t| proc_cpu_s(t.pid()));
        let (sys1, ch1) = (system_busy_s(), children_cpu_s());
        // The target was reaped in the window (the tracer is reaped later):
        // this is the target's own CPU, split by mode.
        let target_sys_s = children_sys_s() - ksys0;
        let tracer_window = match (cpu_go, cpu_end) {
            (Some(a), Some(b)) => b - a,
            _ => f64::NAN,
        };
        // Busy time of the machine that is neither the target (reaped in
        // the window, so in RUSAGE_CHILDREN) nor the tracer.
        let foreign_cpu_s = match (sys0, sys1) {
            (Some(a), Some(b)) => ((b - a)
                - (ch1 - ch0)
                - if tracer_window.is_finite() {
                    tracer_window
                } else {
                    0.0
                })
            .max(0.0),
            _ => f64::NAN,
        };
        let lines = target.output();
        if !st.success() && !stopped {
            bail!("bench {args:?} failed ({st}): {}", target.stderr_tail());
        }
        let tracer_rss = rss;
        let mut res = RunResult {
            target: parse_kv(&lines),
            report: None,
            counts: BTreeMap::new(),
            tracer_cpu_startup_s: cpu_go.unwrap_or(f64::NAN),
            tracer_cpu_window_s: tracer_window,
            window_s,
            target_cpu_s: ch1 - ch0,
            target_sys_s,
            foreign_cpu_s,
            tracer_rss,
        };
        match (tracing, tracer.as_mut()) {
            (Tracing::Mapleak { .. }, Some(t)) => {
                // It stops by itself when the target exits (or its
                // --duration ends).
                if t.wait_exit(Duration::from_secs(120)).is_err() {
                    t.stop(Duration::from_secs(30));
                }
                res.report = Some(take_report(&json_path, t)?);
            }
            (Tracing::Bpftrace { .. }, Some(t)) => {
                t.stop(Duration::from_secs(30));
                // No `@c` line when no probe fired (mapwrite rarely calls
                // the functions default mode probes): zero hits.
                res.counts = parse_bpftrace_counts(&t.output());
            }
            _ => {}
        }
        Ok(res)
    }
}

/// Starts mapleak-trace on `pid` in default mode (the budget given
/// explicitly, at its default) for at most `duration_s`, its JSON report
/// going to `json`, and waits until it says it attached.
fn spawn_mapleak(exe: &Path, pid: u32, duration_s: u64, json: &Path) -> Result<Proc> {
    let _ = fs::remove_file(json);
    let mut c = Command::new(exe);
    c.arg("--pid")
        .arg(pid.to_string())
        .arg("--overhead-budget")
        .arg(BUDGET_PCT.to_string())
        .arg("--duration")
        .arg(format!("{duration_s}s"))
        .arg("--json")
        .arg(json);
    let mut p = Proc::spawn("mapleak-trace", c)?;
    p.wait_line(
        |l| l.starts_with("mapleak-trace: attached"),
        Duration::from_secs(60),
    )?;
    Ok(p)
}

/// The JSON report an exited mapleak-trace wrote to `json` (removed once read).
fn take_report(json: &Path, t: &Proc) -> Result<Value> {
    let text = fs::read_to_string(json).with_context(|| {
        format!(
            "mapleak-trace wrote no {}; stderr: {}",
            json.display(),
            t.stderr_tail()
        )
    })?;
    let _ = fs::remove_file(json);
    serde_json::from_str(&text).context("mapleak-trace JSON")
}

/// Busy CPU seconds of the whole machine since boot: the CPUs times the
/// uptime, less their idle and iowait time (/proc/stat). Idle time is
/// measured precisely (tickless idle); the busy columns are sampled at the
/// timer tick, and on this VM they come out a few % short of the processes'
/// own times (which, besides, include the softirq work done while they
/// ran): with them, a target that kept both CPUs busy left "other
/// processes" below zero.
fn system_busy_s() -> Option<f64> {
    let stat = fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let f: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .take(5)
        .filter_map(|x| x.parse().ok())
        .collect();
    let ncpu = stat
        .lines()
        .filter(|l| {
            l.strip_prefix("cpu")
                .is_some_and(|r| r.starts_with(|c: char| c.is_ascii_digit()))
        })
        .count();
    let uptime: f64 = fs::read_to_string("/proc/uptime")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (f.len() == 5 && hz > 0 && ncpu > 0).then(|| ncpu as f64 * uptime - (f[3] + f[4]) / hz as f64)
}

/// CPU seconds of this process's reaped children.
fn children_cpu_s() -> f64 {
    let (u, s) = children_usage();
    u + s
}

/// System CPU seconds of this process's reaped children.
fn children_sys_s() -> f64 {
    children_usage().1
}

/// User and system CPU seconds of this process's reaped children.
fn children_usage() -> (f64, f64) {
    // SAFETY: an all-zero rusage is a valid value for getrusage to fill.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to a rusage.
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &raw mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (tv(ru.ru_utime), tv(ru.ru_stime))
}

/// Whether a child has exited (is a zombie not yet reaped), or is gone.
fn proc_exited(pid: u32) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return true;
    };
    let state = stat
        .rfind(')')
        .and_then(|i| stat.get(i + 1..))
        .and_then(|r| r.split_whitespace().next());
    matches!(state, Some("Z" | "X"))
}

/// Resident set of a live process, from /proc/PID/status.
fn proc_rss_bytes(pid: u32) -> Option<u64> {
    let st = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: u64 = st
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// User + system CPU seconds of a process, from /proc/PID/stat.
fn proc_cpu_s(pid: u32) -> Option<f64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces): state is
    // field 3, utime 14, stime 15.
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (hz > 0).then(|| ticks / hz as f64)
}

/// `key value` lines; the last one wins for a repeated key.
fn parse_kv(lines: &[String]) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    for l in lines {
        if let Some((k, v)) = l.trim().split_once(' ') {
            m.insert(k.to_owned(), v.trim().to_owned());
        }
    }
    m
}

/// `@c: 12`, `@c[uprobe:/bin:func]: 12`.
fn parse_bpftrace_counts(lines: &[String]) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for l in lines {
        let l = l.trim();
        if !l.starts_with("@c") {
            continue;
        }
        let Some((key, n)) = l.rsplit_once(": ") else {
            continue;
        };
        let Ok(n) = n.trim().parse::<u64>() else {
            continue;
        };
        let key = key
            .strip_prefix("@c")
            .unwrap_or(key)
            .trim_start_matches('[')
            .trim_end_matches(']');
        *m.entry(key.to_owned()).or_default() += n;
    }
    m
}

// ---------------------------------------------------------------------------
// Binaries.

struct GoBin {
    tag: String,
    map_impl: String,
    bin: PathBuf,
    stripped: PathBuf,
    /// Functions default mode keeps probed (creation, growth, GC,
    /// finalizers; from `mapleak-trace inspect`): what bpftrace probes.
    functions: Vec<String>,
    /// Write-path functions, probed only in the governor's write windows.
    write_functions: Vec<String>,
    /// Default-mode probe addresses that are RET sites (single-stepped).
    ret_sites: Vec<u64>,
    /// Addresses of the write-path probes.
    write_sites: Vec<u64>,
    micro: Micro,
}

/// Where the microbenchmark puts its probes, in the stripped binary.
struct Micro {
    func: String,
    addr: u64,
    file_offset: u64,
    jbe: u64,
    push: u64,
}

fn build_go(root: &Path, out_dir: &Path, tag: &str, stripped: bool) -> Result<PathBuf> {
    let name = if stripped {
        format!("bench-{tag}-stripped")
    } else {
        format!("bench-{tag}")
    };
    let bin = out_dir.join(name);
    let mut cmd = Command::new("go");
    cmd.current_dir(root.join("testdata/go"))
        .env("GOTOOLCHAIN", tag)
        .env("CGO_ENABLED", "0")
        .env("GOFLAGS", "-buildvcs=false")
        .arg("build")
        .arg("-o")
        .arg(&bin);
    if stripped {
        cmd.arg("-ldflags=-s -w");
    }
    cmd.arg("./bench");
    let st = cmd
        .status()
        .with_context(|| format!("running go ({tag}); scripts/setup.sh installs the toolchains"))?;
    if !st.success() {
        bail!("go build of testdata/go/bench with {tag} failed: {st}");
    }
    Ok(bin)
}

fn inspect(tracer: &Path, bin: &Path) -> Result<Value> {
    let out = Command::new(tracer)
        .arg("inspect")
        .arg(bin)
        .arg("--json")
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {} inspect", tracer.display()))?;
    if !out.status.success() {
        bail!(
            "mapleak-trace inspect {} failed: {}",
            bin.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    serde_json::from_slice(&out.stdout).context("parsing mapleak-trace inspect --json")
}

fn hex(v: &Value) -> Option<u64> {
    let s = v.as_str()?;
    u64::from_str_radix(s.trim_start_matches("0x"), 16).ok()
}

fn prepare(root: &Path, out_dir: &Path, tracer: &Path, tag: &str, map_impl: &str) -> Result<GoBin> {
    eprintln!("bench: building testdata/go/bench with {tag}");
    let bin = build_go(root, out_dir, tag, false)?;
    let stripped = build_go(root, out_dir, tag, true)?;
    let info = inspect(tracer, &bin)?;
    let got = info.get("map_impl").and_then(Value::as_str).unwrap_or("?");
    if got != map_impl {
        bail!("{} uses {got} maps, expected {map_impl}", bin.display());
    }
    // Probes by group: the write path (role "Write", attached only in the
    // governor's windows) and the rest.
    let probes: Vec<&Value> = info
        .get("probes")
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    let is_write = |p: &Value| p.get("role").and_then(Value::as_str) == Some("Write");
    let mut functions: Vec<String> = Vec::new();
    let mut write_functions: Vec<String> = Vec::new();
    let mut write_sites = Vec::new();
    for p in &probes {
        let Some(name) = p.get("function").and_then(Value::as_str) else {
            continue;
        };
        let list = if is_write(p) {
            if let Some(a) = p.get("address").and_then(hex) {
                write_sites.push(a);
            }
            &mut write_functions
        } else {
            &mut functions
        };
        if !list.iter().any(|f| f == name) {
            list.push(name.to_owned());
        }
    }
    if functions.is_empty() {
        bail!(
            "mapleak-trace inspect lists no probed function in {}",
            bin.display()
        );
    }
    let ret_sites: Vec<u64> = probes
        .iter()
        .filter(|p| p.get("ret_site").and_then(Value::as_bool).unwrap_or(false))
        .filter_map(|p| p.get("address").and_then(hex))
        .collect();
    // The microbenchmark's function, located in the stripped binary (whose
    // text is the same as the other's, but bpftrace must not see symbols:
    // see run_probe_cost).
    let sinfo = inspect(tracer, &stripped)?;
    let func = "runtime.mapassign_fast64";
    let addr = sinfo
        .get("write_path_functions")
        .and_then(Value::as_array)
        .and_then(|a| {
            a.iter()
                .find(|f| f.get("name").and_then(Value::as_str) == Some(func))
        })
        .and_then(|f| f.get("address"))
        .and_then(hex)
        .with_context(|| format!("{func} not found by inspect in {}", stripped.display()))?;
    let elf = fs::read(&stripped)?;
    let file_offset = va_to_file_offset(&elf, addr)?;
    let start = usize::try_from(file_offset)?;
    let code = elf
        .get(start..start + 32)
        .context("function outside the file")?;
    let (jbe, push) = prologue(code).with_context(|| format!("decoding the prologue of {func}"))?;
    Ok(GoBin {
        tag: tag.to_owned(),
        map_impl: map_impl.to_owned(),
        bin,
        stripped,
        functions,
        write_functions,
        ret_sites,
        write_sites,
        micro: Micro {
            func: func.to_owned(),
            addr,
            file_offset,
            jbe,
            push,
        },
    })
}

/// Virtual address to file offset, from the PT_LOAD headers of an ELF64 LE file.
fn va_to_file_offset(elf: &[u8], va: u64) -> Result<u64> {
    let u16_at = |o: usize| -> Option<u64> {
        elf.get(o..o + 2)
            .map(|b| u64::from(u16::from_le_bytes([b[0], b[1]])))
    };
    let u32_at = |o: usize| -> Option<u64> {
        elf.get(o..o + 4)
            .map(|b| u64::from(u32::from_le_bytes([b[0], b[1], b[2], b[3]])))
    };
    let u64_at = |o: usize| -> Option<u64> {
        elf.get(o..o + 8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes)
    };
    if elf.get(..6) != Some(b"\x7fELF\x02\x01".as_slice()) {
        bail!("not a little-endian ELF64 file");
    }
    let phoff = u64_at(0x20).context("short ELF header")?;
    let phentsize = u16_at(0x36).context("short ELF header")?;
    let phnum = u16_at(0x38).context("short ELF header")?;
    for i in 0..phnum {
        let ph = usize::try_from(phoff + i * phentsize)?;
        let (Some(ty), Some(off), Some(vaddr), Some(filesz)) =
            (u32_at(ph), u64_at(ph + 8), u64_at(ph + 16), u64_at(ph + 32))
        else {
            bail!("truncated program header");
        };
        if ty == 1 && va >= vaddr && va < vaddr + filesz {
            return Ok(va - vaddr + off);
        }
    }
    bail!("{va:#x} is in no PT_LOAD segment")
}

/// Offsets of the `JBE` and the `PUSHQ BP` in a Go amd64 prologue:
/// `[LEAQ -n(SP), R12]; CMPQ SP|R12, 16(R14); JBE morestack; PUSHQ BP`.
fn prologue(code: &[u8]) -> Result<(u64, u64)> {
    let mut i = 0usize;
    if code.starts_with(&[0x4c, 0x8d, 0x64, 0x24]) {
        i = 5;
    } else if code.starts_with(&[0x4c, 0x8d, 0xa4, 0x24]) {
        i = 8;
    }
    let cmp = code.get(i..i + 4).context("short function")?;
    if cmp != [0x49, 0x3b, 0x66, 0x10] && cmp != [0x4d, 0x3b, 0x66, 0x10] {
        bail!(
            "no stack check at the entry: {:02x?}",
            &code[..code.len().min(16)]
        );
    }
    i += 4;
    let jbe = i;
    match code.get(i..i + 2) {
        Some([0x0f, 0x86]) => i += 6,
        Some([0x76, _]) => i += 2,
        _ => bail!(
            "no JBE after the stack check: {:02x?}",
            &code[..code.len().min(16)]
        ),
    }
    if code.get(i) != Some(&0x55) {
        bail!(
            "no PUSHQ BP after the JBE: {:02x?}",
            &code[..code.len().min(16)]
        );
    }
    Ok((jbe as u64, i as u64))
}

// ---------------------------------------------------------------------------
// Statistics.

fn median(v: &[f64]) -> f64 {
    let mut v: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn min_max(v: &[f64]) -> (f64, f64) {
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (lo, hi)
}

// ---------------------------------------------------------------------------
// Part 1: throughput.

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Untraced,
    Mapleak,
    Bpftrace,
}

impl Mode {
    fn label(self) -> &'static str {
        match self {
            Mode::Untraced => "untraced",
            Mode::Mapleak => "mapleak-trace",
            Mode::Bpftrace => "bpftrace",
        }
    }
}

struct TpSample {
    go: String,
    workload: &'static str,
    rep: usize,
    mode: Mode,
    /// `-seconds` of the run.
    seconds: f64,
    value: f64,
    hits: u64,
    /// Hits on single-stepped (RET-site) probes; mapleak-trace only.
    ss_hits: u64,
    est_cpu_s: f64,
    /// CPU the tracer process used during the measured part, and its length.
    tracer_cpu_s: f64,
    window_s: f64,
    /// Seconds mapleak-trace's governor kept creation probes detached.
    paused_s: f64,
    /// mapleak-trace's governor: write windows opened, seconds they were
    /// open, hits on the write-path probes, maps first found through them,
    /// and the target CPU it debited for all hits (its own estimate of
    /// what it took). NaN / 0 for the other configurations.
    write_windows: f64,
    write_windows_s: f64,
    write_hits: u64,
    maps_by_windows: f64,
    budget_spent_s: f64,
    /// The target's CPU time, all and in the kernel (whole life).
    target_cpu_s: f64,
    target_sys_s: f64,
}

/// Untraced runs varying more than this among themselves ((max - min) /
/// median) leave the 1 % goal undecided.
const NOISY: f64 = 0.10;

/// Repetitions that also run bpftrace (its loss is tens of %: a few
/// repetitions show it, and the time goes to the closer comparison).
const BPFTRACE_REPS: usize = 3;

const WORKLOADS: [(&str, &str); 2] = [("mapwrite", "ops_per_sec"), ("http", "req_per_sec")];

fn bpftrace_default_program(g: &GoBin) -> String {
    let bin = g.bin.display();
    g.functions
        .iter()
        .map(|f| format!("uprobe:{bin}:\"{f}\" {{ @c[probe] = count(); }}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn run_throughput(b: &mut Bench, gos: &[GoBin], tracer: &Path) -> Result<Vec<TpSample>> {
    let mut out = Vec::new();
    for g in gos {
        for (workload, metric) in WORKLOADS {
            let secs = b.s.tp_seconds(workload);
            for rep in 0..b.s.reps {
                let mut modes = vec![Mode::Untraced, Mode::Mapleak];
                if rep < BPFTRACE_REPS {
                    modes.push(Mode::Bpftrace);
                }
                let n = modes.len();
                modes.rotate_left(rep % n);
                for mode in modes {
                    let tracing = match mode {
                        Mode::Untraced => Tracing::Untraced,
                        Mode::Mapleak => Tracing::Mapleak {
                            exe: tracer.to_path_buf(),
                            duration_s: secs.ceil() as u64 + 120,
                            stop_target: false,
                        },
                        Mode::Bpftrace => Tracing::Bpftrace {
                            program: bpftrace_default_program(g),
                            unsafe_mode: false,
                        },
                    };
                    let args = vec![
                        format!("-mode={workload}"),
                        "-seconds".to_owned(),
                        format!("{secs}"),
                    ];
                    let budget = Duration::from_secs_f64(secs * 3.0 + 60.0);
                    let r = b
                        .run_once(&g.bin, &args, &tracing, budget)
                        .with_context(|| format!("{workload} {} {}", g.tag, mode.label()))?;
                    let value = r.num(metric)?;
                    let mut s = TpSample {
                        go: g.tag.clone(),
                        workload,
                        rep,
                        mode,
                        seconds: secs,
                        value,
                        hits: r.bpf_hits(),
                        ss_hits: 0,
                        est_cpu_s: 0.0,
                        tracer_cpu_s: r.tracer_cpu_window_s,
                        window_s: r.window_s,
                        paused_s: 0.0,
                        write_windows: f64::NAN,
                        write_windows_s: f64::NAN,
                        write_hits: 0,
                        maps_by_windows: f64::NAN,
                        budget_spent_s: f64::NAN,
                        target_cpu_s: r.target_cpu_s,
                        target_sys_s: r.target_sys_s,
                    };
                    if let Some(rep) = &r.report {
                        let (hits, ss) = report_hits(rep, &g.ret_sites);
                        s.hits = hits;
                        s.ss_hits = ss;
                        s.write_hits = report_hits(rep, &g.write_sites).1;
                        s.est_cpu_s = f(rep, &["overhead", "estimated_target_cpu_s"]);
                        s.paused_s = f(rep, &["overhead", "creation_probes_paused_s"]);
                        s.write_windows = f(rep, &["overhead", "write_windows"]);
                        s.write_windows_s = f(rep, &["overhead", "write_windows_s"]);
                        s.maps_by_windows = f(rep, &["overhead", "maps_found_by_write_windows"]);
                        s.budget_spent_s = f(rep, &["overhead", "budget_spent_target_cpu_s"]);
                    }
                    if mode == Mode::Mapleak {
                        eprintln!(
                            "bench: {workload:8} {:9} {:13} rep {rep}: {metric} {value:.0} hits {} \
                             (write path {}), {} windows open {:.2} s, budget spent {:.3} s = {:.2} % of {:.1} s, \
                             creation paused {:.1} s",
                            g.tag,
                            mode.label(),
                            s.hits,
                            s.write_hits,
                            s.write_windows,
                            s.write_windows_s,
                            s.budget_spent_s,
                            s.budget_spent_s / s.window_s * 100.0,
                            s.window_s,
                            s.paused_s
                        );
                    } else {
                        eprintln!(
                            "bench: {workload:8} {:9} {:13} rep {rep}: {metric} {value:.0} hits {}",
                            g.tag,
                            mode.label(),
                            s.hits
                        );
                    }
                    out.push(s);
                }
            }
        }
    }
    Ok(out)
}

fn f(v: &Value, path: &[&str]) -> f64 {
    let mut cur = v;
    for p in path {
        match cur.get(p) {
            Some(x) => cur = x,
            None => return f64::NAN,
        }
    }
    cur.as_f64().unwrap_or(f64::NAN)
}

/// Total probe hits in a report, and those on RET-site probes.
fn report_hits(rep: &Value, ret_sites: &[u64]) -> (u64, u64) {
    let mut total = 0;
    let mut ss = 0;
    if let Some(m) = rep
        .pointer("/overhead/probe_hits")
        .and_then(Value::as_object)
    {
        for (k, v) in m {
            let n = v.as_u64().unwrap_or(0);
            total += n;
            let addr = k
                .rsplit_once('@')
                .and_then(|(_, a)| u64::from_str_radix(a.trim_start_matches("0x"), 16).ok());
            if addr.is_some_and(|a| ret_sites.contains(&a)) {
                ss += n;
            }
        }
    }
    (total, ss)
}

// ---------------------------------------------------------------------------
// Part 2: cost per probe hit.

struct Placement {
    label: &'static str,
    kernel: &'static str,
    /// 0 = entry, 1 = JBE, 2 = PUSHQ BP.
    at: u8,
    counting: bool,
}

const PLACEMENTS: [Placement; 5] = [
    Placement {
        label: "entry `CMPQ SP, 16(R14)`",
        kernel: "single-stepped",
        at: 0,
        counting: true,
    },
    Placement {
        label: "entry, empty program `{}`",
        kernel: "single-stepped",
        at: 0,
        counting: false,
    },
    Placement {
        label: "`JBE` after the stack check",
        kernel: "emulated",
        at: 1,
        counting: true,
    },
    Placement {
        label: "`PUSHQ BP`",
        kernel: "emulated",
        at: 2,
        counting: true,
    },
    Placement {
        label: "`PUSHQ BP`, empty program `{}`",
        kernel: "emulated",
        at: 2,
        counting: false,
    },
];

struct CostSample {
    go: String,
    rep: usize,
    /// None = untraced.
    placement: Option<usize>,
    elapsed_s: f64,
    hits: Option<u64>,
}

fn placement_delta(m: &Micro, at: u8) -> u64 {
    match at {
        1 => m.jbe,
        2 => m.push,
        _ => 0,
    }
}

fn run_probe_cost(b: &mut Bench, gos: &[GoBin]) -> Result<Vec<CostSample>> {
    // Debian's bpftrace 0.17 is built without instruction-boundary checks
    // and refuses `func+off` probes even with --unsafe; on a binary with no
    // symbol table, `uprobe:BIN:0xN` (N a file offset) with --unsafe is
    // accepted. So all placements, the entry included, use the stripped
    // binary and file offsets.
    let mut out = Vec::new();
    let ops = b.s.micro_ops;
    for g in gos {
        for rep in 0..b.s.reps {
            // The smoke run skips the empty-program variants.
            let mut order: Vec<Option<usize>> = std::iter::once(None)
                .chain(
                    (0..PLACEMENTS.len())
                        .filter(|&i| !b.s.smoke || PLACEMENTS[i].counting)
                        .map(Some),
                )
                .collect();
            let n = order.len();
            order.rotate_left(rep % n);
            for which in order {
                let tracing = match which {
                    None => Tracing::Untraced,
                    Some(i) => {
                        let p = &PLACEMENTS[i];
                        let off = g.micro.file_offset + placement_delta(&g.micro, p.at);
                        let body = if p.counting {
                            "{ @c = count(); }"
                        } else {
                            "{}"
                        };
                        Tracing::Bpftrace {
                            program: format!("uprobe:{}:{off:#x} {body}", g.stripped.display()),
                            unsafe_mode: true,
                        }
                    }
                };
                let args = vec![
                    "-mode=mapwrite".to_owned(),
                    "-ops".to_owned(),
                    ops.to_string(),
                ];
                // 30 µs per hit is twice the worst single-step cost seen.
                let budget = Duration::from_secs_f64(ops as f64 * 30e-6 + 60.0);
                let counting = which.is_some_and(|i| PLACEMENTS[i].counting);
                // bpftrace prints "Attaching" before it attaches: on a busy
                // machine it can attach after the (short) loop has begun, or
                // ended. Every call is a hit once attached, so fewer hits
                // than calls means a late attach: measured again.
                let mut attempt = 0;
                let r = loop {
                    attempt += 1;
                    let r = b
                        .run_once(&g.stripped, &args, &tracing, budget)
                        .with_context(|| format!("probe cost {} {which:?}", g.tag))?;
                    if !counting || r.bpf_hits() >= ops || attempt >= 3 {
                        break r;
                    }
                    let msg = format!(
                        "bpftrace counted {} of {ops} calls at {} ({}): attached late, measured again",
                        r.bpf_hits(),
                        which.map_or("untraced", |i| PLACEMENTS[i].label),
                        g.tag
                    );
                    b.note(msg);
                };
                let elapsed_s = r.num("elapsed_s")?;
                let hits = counting.then(|| r.bpf_hits());
                if counting && hits == Some(0) {
                    bail!(
                        "bpftrace counted no hit at {which:?} in {}",
                        g.stripped.display()
                    );
                }
                eprintln!(
                    "bench: probe cost {:9} rep {rep} {:32} {elapsed_s:.4} s hits {hits:?}",
                    g.tag,
                    which.map_or("untraced", |i| PLACEMENTS[i].label)
                );
                out.push(CostSample {
                    go: g.tag.clone(),
                    rep,
                    placement: which,
                    elapsed_s,
                    hits,
                });
            }
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// Part 2b: what each map creation costs under each tracer.

/// Map creations measured: `make(map[int64]int64)` and with a hint of 16.
const CREATIONS: [(&str, &str); 2] = [("small", "0"), ("hint 16", "16")];

struct CreateSample {
    go: String,
    kind: &'static str,
    rep: usize,
    mode: Mode,
    elapsed_s: f64,
    hits: u64,
    ops: u64,
}

fn run_create_cost(b: &mut Bench, gos: &[GoBin], tracer: &Path) -> Result<Vec<CreateSample>> {
    let mut out = Vec::new();
    let ops = b.s.create_ops;
    for g in gos {
        // The smoke run measures one kind of creation.
        for (kind, hint) in CREATIONS.iter().take(if b.s.smoke { 1 } else { 2 }) {
            let kind: &'static str = kind;
            for rep in 0..b.s.reps {
                let mut modes = vec![Mode::Untraced, Mode::Mapleak];
                if rep < BPFTRACE_REPS {
                    modes.push(Mode::Bpftrace);
                }
                let n = modes.len();
                modes.rotate_left(rep % n);
                for mode in modes {
                    let tracing = match mode {
                        Mode::Untraced => Tracing::Untraced,
                        Mode::Mapleak => Tracing::Mapleak {
                            exe: tracer.to_path_buf(),
                            duration_s: 600,
                            stop_target: false,
                        },
                        Mode::Bpftrace => Tracing::Bpftrace {
                            program: bpftrace_default_program(g),
                            unsafe_mode: false,
                        },
                    };
                    let args = vec![
                        "-mode=makemap".to_owned(),
                        "-ops".to_owned(),
                        ops.to_string(),
                        "-hint".to_owned(),
                        (*hint).to_owned(),
                    ];
                    let budget = Duration::from_secs_f64(ops as f64 * 100e-6 + 60.0);
                    let r = b
                        .run_once(&g.bin, &args, &tracing, budget)
                        .with_context(|| format!("makemap {kind} {} {}", g.tag, mode.label()))?;
                    let elapsed_s = r.num("elapsed_s")?;
                    let hits = match &r.report {
                        Some(rep) => report_hits(rep, &g.ret_sites).0,
                        None => r.bpf_hits(),
                    };
                    eprintln!(
                        "bench: makemap {kind:7} {:9} {:13} rep {rep}: {elapsed_s:.4} s hits {hits}",
                        g.tag,
                        mode.label()
                    );
                    out.push(CreateSample {
                        go: g.tag.clone(),
                        kind,
                        rep,
                        mode,
                        elapsed_s,
                        hits,
                        ops,
                    });
                }
            }
        }
    }
    Ok(out)
}

/// Median µs added per creation by `mode` (against the untraced run of the
/// same repetition), and median hits per creation.
fn create_cost(v: &[CreateSample], go: &str, kind: &str, mode: Mode) -> (f64, f64) {
    let sel = |m: Mode| -> Vec<&CreateSample> {
        v.iter()
            .filter(|c| c.go == go && c.kind == kind && c.mode == m)
            .collect()
    };
    let u = sel(Mode::Untraced);
    let t = sel(mode);
    let mut per = Vec::new();
    let mut hits = Vec::new();
    for c in &t {
        if let Some(x) = u.iter().find(|x| x.rep == c.rep) {
            if mode == Mode::Untraced {
                per.push(c.elapsed_s / c.ops as f64 * 1e6);
            } else {
                per.push((c.elapsed_s - x.elapsed_s) / c.ops as f64 * 1e6);
            }
            hits.push(c.hits as f64 / c.ops as f64);
        }
    }
    (median(&per), median(&hits))
}

// ---------------------------------------------------------------------------
// Part 3: many maps.

struct ManyResult {
    go: String,
    n: u64,
    untraced_create_s: f64,
    traced_create_s: f64,
    heap_inuse: f64,
    /// Tracer CPU before the maps were created (startup: parsing the binary).
    startup_cpu_s: f64,
    /// The tracer's RSS one second before its --duration ended (before it
    /// builds the final report), and GC cycles the target ran.
    steady_rss: f64,
    /// The tracer's CPU use (in CPUs) from "go" to then.
    steady_cpu: f64,
    target_gcs: f64,
    /// Maps and GC cycles in the report.
    maps_n: usize,
    gcs_n: usize,
    report: Value,
}

fn run_manymaps(b: &mut Bench, gos: &[GoBin], tracer: &Path) -> Result<Vec<ManyResult>> {
    let mut out = Vec::new();
    let n = b.s.many_n;
    let t = b.s.many_trace_s;
    for g in gos {
        let args = |secs: u64| {
            vec![
                "-mode=manymaps".to_owned(),
                "-n".to_owned(),
                n.to_string(),
                "-seconds".to_owned(),
                secs.to_string(),
            ]
        };
        let u = b
            .run_once(
                &g.bin,
                &args(1),
                &Tracing::Untraced,
                Duration::from_secs(120),
            )
            .with_context(|| format!("manymaps {} untraced", g.tag))?;
        let untraced_create_s = ready_seconds(&u)?;
        let heap_inuse = u.num("heap_inuse_bytes")?;
        // The tracer watches for `t` seconds from attach. The target would
        // run 30 s longer (a tracer that falls behind overruns its
        // --duration, and one whose target has exited reports no map); it
        // is stopped as soon as the tracer has exited.
        let r = b
            .run_once(
                &g.bin,
                &args(t + 30),
                &Tracing::Mapleak {
                    exe: tracer.to_path_buf(),
                    duration_s: t,
                    stop_target: true,
                },
                Duration::from_secs(t + 240),
            )
            .with_context(|| format!("manymaps {} traced", g.tag))?;
        let traced_create_s = ready_seconds(&r)?;
        let startup_cpu_s = r.tracer_cpu_startup_s;
        // --duration counts from attach, `settle` before "go".
        let report_at = t as f64 - b.s.settle.as_secs_f64() - 1.0;
        let before: Vec<&(f64, u64, f64)> = r
            .tracer_rss
            .iter()
            .filter(|(at, _, _)| *at <= report_at)
            .collect();
        let steady_rss = before
            .iter()
            .map(|&&(_, v, _)| v as f64)
            .fold(f64::NAN, f64::max);
        // CPU rate from "go" to the last sample before the final report.
        let steady_cpu = before
            .last()
            .map_or(f64::NAN, |&&(at, _, c)| (c - r.tracer_cpu_startup_s) / at);
        let target_gcs = r.num("gc_cycles").unwrap_or(f64::NAN);
        let report = r.report.context("no report")?;
        eprintln!(
            "bench: manymaps {:9} create {untraced_create_s:.2} s untraced, {traced_create_s:.2} s traced; tracer cpu {:.2} s rss {:.0} MiB, {} maps",
            g.tag,
            f(&report, &["overhead", "tracer_cpu_s"]),
            f(&report, &["overhead", "tracer_max_rss_bytes"]) / 1048576.0,
            report
                .get("maps")
                .and_then(Value::as_array)
                .map_or(0, Vec::len)
        );
        let count = |k: &str| report.get(k).and_then(Value::as_array).map_or(0, Vec::len);
        let (maps_n, gcs_n) = (count("maps"), count("gc_cycles"));
        out.push(ManyResult {
            go: g.tag.clone(),
            n,
            untraced_create_s,
            traced_create_s,
            heap_inuse,
            startup_cpu_s,
            steady_rss,
            steady_cpu,
            target_gcs,
            maps_n,
            gcs_n,
            report,
        });
    }
    Ok(out)
}

/// `ready 100000 maps in 1.234s`.
fn ready_seconds(r: &RunResult) -> Result<f64> {
    let v = r
        .target
        .get("ready")
        .context("manymaps printed no `ready` line")?;
    v.rsplit(' ')
        .next()
        .and_then(|s| s.trim_end_matches('s').parse().ok())
        .with_context(|| format!("cannot parse `ready {v}`"))
}

/// Figures of a manymaps run, from the tracer's report.
struct ManyFigures {
    maps: usize,
    evicted: u64,
    gcs: usize,
    /// Cycles whose headers were read.
    sampled: u64,
    cpu: f64,
    duration: f64,
    ms_per_gc: f64,
    peak_rss: f64,
    hits: u64,
    /// Events the kernel side could not queue, and seconds the governor
    /// kept creation probes detached (NaN: no governor).
    lost: u64,
    paused_s: f64,
}

fn many_figures(r: &ManyResult) -> ManyFigures {
    let rep = &r.report;
    let gcs = r.gcs_n;
    let duration = f(rep, &["duration_s"]);
    let sampled = rep
        .pointer("/overhead/gc_cycles_sampled")
        .and_then(Value::as_u64)
        .unwrap_or(gcs as u64);
    let sample_rate = sampled as f64 / duration;
    ManyFigures {
        maps: r.maps_n,
        evicted: rep.get("maps_evicted").and_then(Value::as_u64).unwrap_or(0),
        gcs,
        sampled,
        cpu: f(rep, &["overhead", "tracer_cpu_s"]),
        duration,
        ms_per_gc: if sampled > 0 {
            r.steady_cpu / sample_rate * 1e3
        } else {
            f64::NAN
        },
        peak_rss: f(rep, &["overhead", "tracer_max_rss_bytes"]),
        lost: rep
            .pointer("/overhead/counters/ring_buffer_full")
            .and_then(Value::as_u64)
            .unwrap_or(0),
        paused_s: f(rep, &["overhead", "creation_probes_paused_s"]),
        hits: rep
            .pointer("/overhead/probe_hits")
            .and_then(Value::as_object)
            .map_or(0, |m| m.values().filter_map(Value::as_u64).sum()),
    }
}

// ---------------------------------------------------------------------------
// Machine description.

fn cmd_out(prog: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(prog)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .ok()?;
    let s = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    (out.status.success() && !s.is_empty()).then_some(s)
}

fn machine() -> BTreeMap<&'static str, String> {
    let mut m = BTreeMap::new();
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown".to_owned(), |(_, v)| v.trim().to_owned());
    m.insert("cpu", model);
    let hv = cpuinfo
        .lines()
        .any(|l| l.starts_with("flags") && l.contains(" hypervisor"));
    m.insert(
        "virtualized",
        if hv {
            "yes (hypervisor flag)"
        } else {
            "no hypervisor flag"
        }
        .to_owned(),
    );
    m.insert(
        "nproc",
        thread::available_parallelism().map_or("?".to_owned(), |n| n.to_string()),
    );
    m.insert(
        "kernel",
        fs::read_to_string("/proc/sys/kernel/osrelease")
            .map_or("?".to_owned(), |s| s.trim().to_owned()),
    );
    let mem = fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or("?".to_owned(), |kb| format!("{:.1} GiB", kb / 1048576.0));
    m.insert("memory", mem);
    m.insert(
        "bpftrace",
        cmd_out("bpftrace", &["--version"]).unwrap_or_else(|| "?".to_owned()),
    );
    m.insert(
        "date",
        cmd_out("date", &["-u", "+%Y-%m-%d %H:%M UTC"]).unwrap_or_else(|| "?".to_owned()),
    );
    m
}

fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".to_owned())
}

// ---------------------------------------------------------------------------
// Entry point.

fn build_tracer(root: &Path, release: bool) -> Result<PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root)
        .arg("build")
        .arg("-p")
        .arg("tracer-user");
    if release {
        cmd.arg("--release");
    }
    eprintln!("bench: {cmd:?}");
    let st = cmd.status().context("running cargo build")?;
    if !st.success() {
        bail!("cargo build -p tracer-user failed: {st}");
    }
    Ok(root
        .join("target")
        .join(if release { "release" } else { "debug" })
        .join("mapleak-trace"))
}

pub(crate) fn run(args: &Args) -> Result<()> {
    let started = Instant::now();
    let s = Settings::new(args);
    for p in &args.only {
        if !PARTS.contains(&p.as_str()) {
            bail!("unknown part {p:?} for --only (one of {PARTS:?})");
        }
    }
    let want = |p: &str| args.only.is_empty() || args.only.iter().any(|o| o == p);
    let root = crate::root();
    let out_dir = root.join("target/bench");
    fs::create_dir_all(&out_dir)?;
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("cargo xtask bench attaches uprobes: run it as root");
    }
    if cmd_out("bpftrace", &["--version"]).is_none() {
        bail!("bpftrace not found (scripts/setup.sh installs it)");
    }
    let (tracer, profile) = match &args.tracer {
        Some(t) => (t.clone(), "given with --tracer".to_owned()),
        None => {
            let release = !s.smoke;
            (
                build_tracer(&root, release)?,
                if release { "release" } else { "debug" }.to_owned(),
            )
        }
    };
    if !tracer.exists() {
        bail!("{} does not exist", tracer.display());
    }
    let mut gos = Vec::new();
    for (tag, imp) in TOOLCHAINS {
        if args.go.is_empty() || args.go.iter().any(|g| g == tag) {
            gos.push(prepare(&root, &out_dir, &tracer, tag, imp)?);
        }
    }
    if gos.is_empty() {
        bail!("no Go toolchain selected (known: {TOOLCHAINS:?})");
    }
    // Read before anything is measured: a missing part fails fast.
    let kept = if args.merge {
        let keep: Vec<&str> = PARTS.iter().copied().filter(|p| !want(p)).collect();
        reuse::load(&root.join("docs/benchmarks.md"), &keep)?
    } else {
        reuse::Kept::default()
    };
    let load_before = loadavg();
    let mut b = Bench {
        s,
        root: root.clone(),
        out_dir: out_dir.clone(),
        contaminated: 0,
        runs: 0,
        foreign: Vec::new(),
        retried: 0,
        noisy: 0,
        waited: Duration::ZERO,
        log: Vec::new(),
    };
    let tp = if want("throughput") {
        run_throughput(&mut b, &gos, &tracer)?
    } else {
        Vec::new()
    };
    let phases = if want("phases") {
        phases::run(&mut b, &gos, &tracer)?
    } else {
        Vec::new()
    };
    let cost = if want("probe-cost") {
        run_probe_cost(&mut b, &gos)?
    } else {
        Vec::new()
    };
    let create = if want("create-cost") {
        run_create_cost(&mut b, &gos, &tracer)?
    } else {
        Vec::new()
    };
    let many = if want("manymaps") {
        run_manymaps(&mut b, &gos, &tracer)?
    } else {
        Vec::new()
    };
    let load_after = loadavg();
    let took = started.elapsed();
    // `cmd_out` is None for an empty output: a clean tree.
    let dirty = cmd_out(
        "git",
        &[
            "-C",
            &root.display().to_string(),
            "status",
            "--porcelain",
            "--untracked-files=no",
        ],
    )
    .map_or_else(String::new, |_| " + uncommitted changes".to_owned());
    let machine = machine();
    let ctx = Ctx {
        cmdline: cmdline(&b.s, args),
        kept,
        raw_name: if b.s.smoke {
            "smoke-results.json"
        } else if args.only.is_empty() && args.go.is_empty() {
            "results.json"
        } else {
            // A partial run does not replace the last full run's raw figures.
            "partial-results.json"
        },
        machine,
        tracer_path: tracer.clone(),
        profile,
        load_before,
        load_after,
        took,
        commit: cmd_out(
            "git",
            &[
                "-C",
                &root.display().to_string(),
                "rev-parse",
                "--short",
                "HEAD",
            ],
        )
        .map_or_else(|| "?".to_owned(), |c| c + &dirty),
    };
    let res = Results {
        tp,
        phases,
        cost,
        create,
        many,
    };
    let md = render(&b, &ctx, &gos, &res);
    let out = match &args.out {
        Some(p) => p.clone(),
        None if b.s.smoke => out_dir.join("smoke.md"),
        None if args.merge => root.join("docs/benchmarks.md"),
        None if !args.only.is_empty() || !args.go.is_empty() => out_dir.join("partial.md"),
        None => root.join("docs/benchmarks.md"),
    };
    if let Some(dir) = out.parent() {
        fs::create_dir_all(dir)?;
    }
    fs::write(&out, md).with_context(|| format!("writing {}", out.display()))?;
    let raw = raw_json(&gos, &res);
    let raw_path = out_dir.join(ctx.raw_name);
    fs::write(&raw_path, serde_json::to_vec_pretty(&raw)?)?;
    eprintln!(
        "bench: wrote {} and {} in {:.0} s",
        out.display(),
        raw_path.display(),
        took.as_secs_f64()
    );
    Ok(())
}

/// The command line this run stands for.
fn cmdline(s: &Settings, args: &Args) -> String {
    let mut cmdline = String::from("cargo xtask bench");
    if s.smoke {
        cmdline += " --smoke";
    }
    if let Some(r) = args.reps {
        let _ = write!(cmdline, " --reps {r}");
    }
    if let Some(r) = args.rounds {
        let _ = write!(cmdline, " --rounds {r}");
    }
    if let Some(x) = args.seconds {
        let _ = write!(cmdline, " --seconds {x}");
    }
    if let Some(x) = args.phase_seconds {
        let _ = write!(cmdline, " --phase-seconds {x}");
    }
    if let Some(x) = args.attach_settle_seconds {
        let _ = write!(cmdline, " --attach-settle-seconds {x}");
    }
    if args.workload != "http" {
        let _ = write!(cmdline, " --workload {}", args.workload);
    }
    if !args.only.is_empty() {
        let _ = write!(cmdline, " --only {}", args.only.join(","));
    }
    if !args.go.is_empty() {
        let _ = write!(cmdline, " --go {}", args.go.join(","));
    }
    if args.merge {
        cmdline += " --merge";
    }
    cmdline
}

struct Ctx {
    /// How the bench was invoked (`cargo xtask bench ...`).
    cmdline: String,
    /// Parts kept from the earlier report (--merge).
    kept: reuse::Kept,
    /// File name of the raw figures under target/bench.
    raw_name: &'static str,
    machine: BTreeMap<&'static str, String>,
    tracer_path: PathBuf,
    profile: String,
    load_before: String,
    load_after: String,
    took: Duration,
    commit: String,
}

/// Everything measured.
#[derive(Default)]
struct Results {
    tp: Vec<TpSample>,
    phases: Vec<phases::Phase>,
    cost: Vec<CostSample>,
    create: Vec<CreateSample>,
    many: Vec<ManyResult>,
}

fn raw_json(gos: &[GoBin], r: &Results) -> Value {
    let (tp, cost, many) = (&r.tp, &r.cost, &r.many);
    json!({
        "binaries": gos.iter().map(|g| json!({
            "go": g.tag, "map_impl": g.map_impl, "bin": g.bin, "stripped": g.stripped,
            "default_functions": g.functions,
            "micro": {"function": g.micro.func, "address": format!("{:#x}", g.micro.addr),
                      "file_offset": format!("{:#x}", g.micro.file_offset),
                      "jbe": g.micro.jbe, "push": g.micro.push},
        })).collect::<Vec<_>>(),
        "throughput": tp.iter().map(|s| json!({
            "go": s.go, "workload": s.workload, "rep": s.rep, "mode": s.mode.label(),
            "seconds": s.seconds, "value": s.value, "hits": s.hits, "single_stepped_hits": s.ss_hits,
            "estimated_target_cpu_s": s.est_cpu_s, "tracer_cpu_s": s.tracer_cpu_s,
            "window_s": s.window_s, "creation_probes_paused_s": s.paused_s,
            "write_windows": s.write_windows, "write_windows_s": s.write_windows_s,
            "write_path_hits": s.write_hits, "maps_found_by_write_windows": s.maps_by_windows,
            "budget_spent_target_cpu_s": s.budget_spent_s,
            "target_cpu_s": s.target_cpu_s, "target_sys_s": s.target_sys_s,
        })).collect::<Vec<_>>(),
        "http_phases": phases_report::raw_json(&r.phases),
        "create_cost": r.create.iter().map(|c| json!({
            "go": c.go, "kind": c.kind, "rep": c.rep, "mode": c.mode.label(),
            "elapsed_s": c.elapsed_s, "hits": c.hits, "ops": c.ops,
        })).collect::<Vec<_>>(),
        "probe_cost": cost.iter().map(|c| json!({
            "go": c.go, "rep": c.rep,
            "placement": c.placement.map(|i| PLACEMENTS[i].label),
            "elapsed_s": c.elapsed_s, "hits": c.hits,
        })).collect::<Vec<_>>(),
        "manymaps": many.iter().map(|m| json!({
            "go": m.go, "n": m.n, "untraced_create_s": m.untraced_create_s,
            "traced_create_s": m.traced_create_s, "heap_inuse_bytes": m.heap_inuse,
            "tracer_startup_cpu_s": m.startup_cpu_s,
            "tracer_steady_rss_bytes": m.steady_rss, "tracer_steady_cpu": m.steady_cpu,
            "target_gc_cycles": m.target_gcs,
            "overhead": m.report.get("overhead"),
            "maps": m.maps_n,
            "maps_evicted": m.report.get("maps_evicted"),
            "gc_cycles": m.gcs_n,
            "duration_s": m.report.get("duration_s"),
        })).collect::<Vec<_>>(),
    })
}

// ---------------------------------------------------------------------------
// Report.

fn pct(x: f64) -> String {
    if x.is_finite() {
        format!("{:+.1} %", x * 100.0)
    } else {
        "n/a".to_owned()
    }
}

fn num(x: f64) -> String {
    if !x.is_finite() {
        return "n/a".to_owned();
    }
    let s = format!("{:.0}", x.round());
    let neg = s.starts_with('-');
    let digits = s.trim_start_matches('-');
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if neg { format!("-{out}") } else { out }
}

/// Per-placement figures of the microbenchmark for one Go release.
struct CostRow {
    elapsed: f64,
    hits: f64,
    us_per_hit: f64,
    spread: (f64, f64),
}

fn cost_rows(g: &GoBin, cost: &[CostSample], reps: usize) -> (f64, Vec<CostRow>) {
    let mine: Vec<&CostSample> = cost.iter().filter(|c| c.go == g.tag).collect();
    let untraced: Vec<f64> = mine
        .iter()
        .filter(|c| c.placement.is_none())
        .map(|c| c.elapsed_s)
        .collect();
    let mut rows = Vec::new();
    for (i, p) in PLACEMENTS.iter().enumerate() {
        let at: Vec<&&CostSample> = mine.iter().filter(|c| c.placement == Some(i)).collect();
        // Hits of an empty program: those the counting program at the same
        // place saw (the loop is deterministic).
        let hits_of = |rep: usize| -> Option<f64> {
            let own = at.iter().find(|c| c.rep == rep).and_then(|c| c.hits);
            own.or_else(|| {
                mine.iter()
                    .filter(|c| {
                        c.rep == rep
                            && c.placement
                                .is_some_and(|j| PLACEMENTS[j].at == p.at && PLACEMENTS[j].counting)
                    })
                    .find_map(|c| c.hits)
            })
            .map(|h| h as f64)
        };
        let mut per_hit = Vec::new();
        let mut hits = Vec::new();
        for rep in 0..reps {
            let t = at.iter().find(|c| c.rep == rep).map(|c| c.elapsed_s);
            let u = mine
                .iter()
                .find(|c| c.rep == rep && c.placement.is_none())
                .map(|c| c.elapsed_s);
            if let (Some(t), Some(u), Some(h)) = (t, u, hits_of(rep))
                && h > 0.0
            {
                per_hit.push((t - u) / h * 1e6);
                hits.push(h);
            }
        }
        let elapsed: Vec<f64> = at.iter().map(|c| c.elapsed_s).collect();
        rows.push(CostRow {
            elapsed: median(&elapsed),
            hits: median(&hits),
            us_per_hit: median(&per_hit),
            spread: min_max(&per_hit),
        });
    }
    (median(&untraced), rows)
}

struct TpRow {
    go: String,
    map_impl: String,
    workload: &'static str,
    untraced: f64,
    /// (max - min) / median of the untraced runs: the noise floor.
    untraced_noise: f64,
    mapleak: f64,
    bpftrace: f64,
    loss_mapleak: f64,
    loss_bpftrace: f64,
    spread_mapleak: (f64, f64),
    spread_bpftrace: (f64, f64),
    mapleak_hits_per_s: f64,
    mapleak_ss_per_s: f64,
    bpftrace_hits_per_s: f64,
    tracer_cpu_per_s: f64,
    bpftrace_cpu_per_s: f64,
    /// Share of the measured part with creation probes paused by the
    /// governor (NaN: this tracer has no governor).
    paused_share: f64,
    /// Medians over the mapleak-trace runs: write windows per run, their
    /// share of the measured part, write-path hits per second, and the
    /// target CPU the governor debited per second (its own estimate of the
    /// share of one CPU it took).
    windows: f64,
    window_share: f64,
    write_hits_per_s: f64,
    spent_share: f64,
    maps_by_windows: f64,
    /// Repetitions with both an untraced and a mapleak-trace run.
    pairs: usize,
    /// The target's system CPU per second of the measured part, per
    /// configuration (untraced, mapleak-trace, bpftrace).
    target_sys_per_s: [f64; 3],
}

impl TpRow {
    /// The issue's acceptance criterion: the loss stays within the budget
    /// plus 1 %.
    fn budget_ok(&self) -> bool {
        self.loss_mapleak * 100.0 <= BUDGET_PCT + BUDGET_MARGIN_PCT
    }

    /// Whether noise could decide the budget check: where the paired runs'
    /// losses lie against the limit.
    fn noise_note(&self) -> &'static str {
        let limit = (BUDGET_PCT + BUDGET_MARGIN_PCT) / 100.0;
        let (lo, hi) = self.spread_mapleak;
        if !(lo.is_finite() && hi.is_finite()) {
            "no paired run"
        } else if self.pairs < 2 {
            "a single pair: not a measurement"
        } else if lo > limit {
            "every paired run lost more than the limit, so noise does not explain it"
        } else if hi <= limit {
            "every paired run stayed within the limit"
        } else {
            "the paired runs fall on both sides of the limit, so noise decides"
        }
    }

    /// The 1 % goal: met, not met, or not decided when the untraced runs
    /// alone vary by more than [`NOISY`] (a median within a few % of zero
    /// then says nothing either way).
    fn goal(&self) -> &'static str {
        if self.untraced_noise.is_nan() || self.untraced_noise > NOISY {
            "not decided (the untraced runs alone vary by more than 10 %)"
        } else if self.loss_mapleak <= 0.01 {
            "met"
        } else {
            "NOT met"
        }
    }

    fn verdict(&self) -> String {
        let mut v = format!(
            "budget check ({}, {}): loss {:+.1} % {} budget {BUDGET_PCT} % + {BUDGET_MARGIN_PCT} %: {}",
            self.workload,
            self.go,
            self.loss_mapleak * 100.0,
            if self.budget_ok() { "<=" } else { ">" },
            if self.budget_ok() { "PASS" } else { "FAIL" }
        );
        let _ = write!(
            v,
            " (median of {} paired runs, spread {} .. {}: {}; untraced runs vary by {:.1} % among \
             themselves; the governor's own estimate: {:.2} % of one CPU",
            self.pairs,
            pct(self.spread_mapleak.0),
            pct(self.spread_mapleak.1),
            self.noise_note(),
            self.untraced_noise * 100.0,
            self.spent_share * 100.0
        );
        let _ = write!(v, "; 1 % goal: {}", self.goal());
        v.push(')');
        v
    }
}

/// Rates are per second of the measured part (hits and the estimate count
/// from attach, which is a pause of `settle` earlier, when the target is idle).
fn tp_rows(gos: &[GoBin], tp: &[TpSample]) -> Vec<TpRow> {
    let mut rows = Vec::new();
    for g in gos {
        for (workload, _) in WORKLOADS {
            let sel = |m: Mode| -> Vec<&TpSample> {
                tp.iter()
                    .filter(|s| s.go == g.tag && s.workload == workload && s.mode == m)
                    .collect()
            };
            let (u, ml, bt) = (sel(Mode::Untraced), sel(Mode::Mapleak), sel(Mode::Bpftrace));
            if u.is_empty() {
                continue;
            }
            let ratios = |traced: &[&TpSample]| -> Vec<f64> {
                traced
                    .iter()
                    .filter_map(|t| {
                        u.iter()
                            .find(|x| x.rep == t.rep)
                            .map(|x| 1.0 - t.value / x.value)
                    })
                    .collect()
            };
            let vals = |v: &[&TpSample]| v.iter().map(|s| s.value).collect::<Vec<_>>();
            let per_s = |v: &[&TpSample], get: fn(&TpSample) -> f64| {
                median(&v.iter().map(|s| get(s) / s.window_s).collect::<Vec<_>>())
            };
            let (lm, lb) = (ratios(&ml), ratios(&bt));
            rows.push(TpRow {
                go: g.tag.clone(),
                map_impl: g.map_impl.clone(),
                workload,
                untraced: median(&vals(&u)),
                untraced_noise: {
                    let v = vals(&u);
                    let (lo, hi) = min_max(&v);
                    (hi - lo) / median(&v)
                },
                mapleak: median(&vals(&ml)),
                bpftrace: median(&vals(&bt)),
                loss_mapleak: median(&lm),
                loss_bpftrace: median(&lb),
                spread_mapleak: min_max(&lm),
                spread_bpftrace: min_max(&lb),
                mapleak_hits_per_s: per_s(&ml, |s| s.hits as f64),
                mapleak_ss_per_s: per_s(&ml, |s| s.ss_hits as f64),
                bpftrace_hits_per_s: per_s(&bt, |s| s.hits as f64),
                tracer_cpu_per_s: per_s(&ml, |s| s.tracer_cpu_s),
                bpftrace_cpu_per_s: per_s(&bt, |s| s.tracer_cpu_s),
                paused_share: per_s(&ml, |s| s.paused_s),
                windows: median(&ml.iter().map(|s| s.write_windows).collect::<Vec<_>>()),
                window_share: per_s(&ml, |s| s.write_windows_s),
                write_hits_per_s: per_s(&ml, |s| s.write_hits as f64),
                spent_share: per_s(&ml, |s| s.budget_spent_s),
                maps_by_windows: median(&ml.iter().map(|s| s.maps_by_windows).collect::<Vec<_>>()),
                pairs: lm.len(),
                target_sys_per_s: [
                    per_s(&u, |s| s.target_sys_s),
                    per_s(&ml, |s| s.target_sys_s),
                    per_s(&bt, |s| s.target_sys_s),
                ],
            });
        }
    }
    rows
}

fn render(b: &Bench, ctx: &Ctx, gos: &[GoBin], res: &Results) -> String {
    let (tp, cost, many) = (&res.tp[..], &res.cost[..], &res.many[..]);
    let s = &b.s;
    let m = &ctx.machine;
    let get = |k: &str| m.get(k).cloned().unwrap_or_else(|| "?".to_owned());
    let mut o = String::new();
    let _ = writeln!(o, "# mapleak-trace benchmarks\n");
    let _ = writeln!(
        o,
        "Written by `{}` (xtask/src/bench.rs; workload testdata/go/bench) on {}, commit `{}`, in {:.0} s. \
         Rerun it rather than editing this file; the raw runs are in `target/bench/{}`.\n",
        ctx.cmdline,
        get("date"),
        ctx.commit,
        ctx.took.as_secs_f64(),
        ctx.raw_name
    );
    if !ctx.kept.sections.is_empty() {
        let _ = writeln!(
            o,
            "This run measured only {}; the other parts ({}) and their lines in the reading are kept from \
             the previous version of this file (`--merge`), each section saying what run made it. The \
             machine table's load and contention rows describe this run.\n",
            PARTS
                .iter()
                .filter(|p| !ctx.kept.sections.contains_key(**p))
                .copied()
                .collect::<Vec<_>>()
                .join(", "),
            ctx.kept
                .sections
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if s.smoke {
        let _ = writeln!(
            o,
            "**Smoke run**: one repetition of short runs, small workloads. It checks that the \
             benchmark works; its numbers are not measurements.\n"
        );
    }
    let _ = writeln!(o, "## Machine\n");
    let _ = writeln!(o, "| | |\n|---|---|");
    let _ = writeln!(o, "| CPU | {} ({}) |", get("cpu"), get("virtualized"));
    let _ = writeln!(o, "| nproc | {} |", get("nproc"));
    let _ = writeln!(o, "| memory | {} |", get("memory"));
    let _ = writeln!(o, "| kernel | {} |", get("kernel"));
    let _ = writeln!(o, "| bpftrace | {} |", get("bpftrace"));
    let _ = writeln!(
        o,
        "| Go | {} |",
        gos.iter()
            .map(|g| format!("{} ({})", g.tag, g.map_impl))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = writeln!(
        o,
        "| mapleak-trace | `{}` ({} build) |",
        ctx.tracer_path
            .strip_prefix(&b.root)
            .unwrap_or(&ctx.tracer_path)
            .display(),
        ctx.profile
    );
    let _ = writeln!(
        o,
        "| load average (1, 5, 15 min) | {} before, {} after |",
        ctx.load_before, ctx.load_after
    );
    let _ = writeln!(
        o,
        "| runs started while another tracer ran | {} of {} |",
        b.contaminated, b.runs
    );
    let (_, fmax) = min_max(&b.foreign);
    if b.foreign.is_empty() {
        let _ = writeln!(
            o,
            "| other processes' CPU use during the kept runs | not measured in this run |\n"
        );
    } else {
        let _ = writeln!(
            o,
            "| other processes' CPU use during the kept runs (and phases) | median {:.2}, max {:.2} CPU; {} \
             run(s) made again for exceeding {FOREIGN_MAX} CPU, {} kept above it after 3 attempts |\n",
            median(&b.foreign),
            fmax,
            b.retried,
            b.noisy
        );
    }

    let _ = writeln!(o, "## Method\n");
    let _ = writeln!(
        o,
        "Every run starts the bench program with `-wait`; it prints `waiting` and blocks on stdin. The tracer \
         (if any) is attached to its pid; once it says so (`mapleak-trace: attached`, bpftrace's `Attaching N \
         probes...`) and after a further {:.1} s pause (also taken in untraced runs), the program is told to go \
         and measures its own throughput or time, so attach and startup costs are not in the numbers. \
         Configurations alternate within each repetition and their order rotates between repetitions; \
         bpftrace runs in the first {} repetitions only. \
         The machine has {} CPUs and is shared, so each figure is a median of {} repetition(s), and a loss is \
         the median of the per-repetition ratios `1 - traced/untraced`, each against the untraced run of the \
         same repetition (the min..max of those ratios is shown as the spread). \"Untraced range\" is \
         (max - min) / median of the untraced runs alone: differences smaller than that are noise.\n",
        s.settle.as_secs_f64(),
        BPFTRACE_REPS.min(s.reps),
        get("nproc"),
        s.reps
    );

    // Part 1.
    if !tp.is_empty() {
        tp_report::render(&mut o, s, gos, tp);
    } else if let Some(k) = ctx.kept.sections.get("throughput") {
        o.push_str(k);
    }
    // Part 1b.
    if !res.phases.is_empty() {
        phases_report::render(&mut o, gos, &res.phases);
    } else if let Some(k) = ctx.kept.sections.get("phases") {
        o.push_str(k);
    }

    // Part 2.
    let mut measured_cost: BTreeMap<String, (f64, f64)> = BTreeMap::new();
    if !cost.is_empty() {
        let _ = writeln!(o, "## 2. Cost per probe hit, by placement\n");
        let _ = writeln!(
            o,
            "`bench -mode=mapwrite -ops {}`: exactly that many `runtime.mapassign_fast64` calls in a timed loop. \
             bpftrace (`{}`) puts one uprobe on that function, at the entry, at the `JBE` of the stack check or at \
             the `PUSHQ BP` after it, with a counting program (`{{ @c = count(); }}`, which gives the hits) or an \
             empty one (`{{}}`, hits taken from the counting run at the same place). cost/hit = \
             (t_traced - t_untraced) / hits, per repetition, then the median. Debian's bpftrace 0.17 is built \
             without instruction-boundary checks and refuses `func+offset` even with `--unsafe`; it does take \
             `uprobe:BIN:0xN` with `--unsafe` on a binary without a symbol table, N being a file offset. So all \
             placements use a stripped build (`-ldflags=-s -w`) of the same program and file offsets computed \
             from `mapleak-trace inspect` and the ELF headers; the entry placement is where \
             `uprobe:BIN:runtime.mapassign_fast64` attaches.\n",
            s.micro_ops,
            get("bpftrace")
        );
        let _ = writeln!(
            o,
            "| Go | placement | offset | kernel | hits | median time (s) | µs/hit | spread (µs) |"
        );
        let _ = writeln!(o, "|---|---|---:|---|---:|---:|---:|---|");
        for g in gos {
            let (u, rows) = cost_rows(g, cost, s.reps);
            let _ = writeln!(o, "| {} | untraced | | | | {u:.4} | | |", g.tag);
            for (p, r) in PLACEMENTS.iter().zip(&rows) {
                let _ = writeln!(
                    o,
                    "| {} | {} | +{} | {} | {} | {:.4} | **{:.2}** | {:.2} .. {:.2} |",
                    g.tag,
                    p.label,
                    placement_delta(&g.micro, p.at),
                    p.kernel,
                    num(r.hits),
                    r.elapsed,
                    r.us_per_hit,
                    r.spread.0,
                    r.spread.1
                );
            }
            // Counting programs, entry and PUSHQ BP: for the model below.
            let ss = rows.first().map_or(f64::NAN, |r| r.us_per_hit);
            let em = rows.get(3).map_or(f64::NAN, |r| r.us_per_hit);
            measured_cost.insert(g.tag.clone(), (ss, em));
        }
        let _ = writeln!(o, "\n{}\n", probe_cost_footnote());
    } else if let Some(k) = ctx.kept.sections.get("probe-cost") {
        o.push_str(&reuse::fix_probe_cost(k, &probe_cost_footnote()));
        measured_cost.clone_from(&ctx.kept.per_hit);
    }

    // Part 2b.
    if res.create.is_empty()
        && let Some(k) = ctx.kept.sections.get("create-cost")
    {
        o.push_str(k);
    }
    if !res.create.is_empty() {
        let _ = writeln!(o, "## 2b. Cost per map creation, per tracer\n");
        let _ = writeln!(
            o,
            "`bench -mode=makemap -ops {} [-hint 16]`: that many `make(map[int64]int64)` (Go calls \
             `runtime.makemap_small`) or `make(map[int64]int64, 16)` (`runtime.makemap`, which in Swiss builds \
             calls `internal/runtime/maps.NewMap`) in a timed loop, the map kept in a global so it is heap \
             allocated. Same three configurations as part 1. This is what default mode pays for creation \
             tracking: an emulated probe at the entry of `makemap`/`NewMap` (type and hint), and a \
             single-stepped probe on each RET site (the new map's address is the return value), where the \
             program also records a stack. bpftrace counts at each function's entry (single-stepped). When \
             mapleak-trace's overhead governor detaches the creation probes for a while, its hits per map \
             fall below 1 and its cost with them.\n",
            s.create_ops
        );
        let _ = writeln!(
            o,
            "| Go | creation | untraced µs/map | mapleak-trace: µs added/map | its probe hits/map | bpftrace: µs added/map | its hits/map |"
        );
        let _ = writeln!(o, "|---|---|---:|---:|---:|---:|---:|");
        for g in gos {
            for (kind, _) in CREATIONS {
                if !res.create.iter().any(|c| c.go == g.tag && c.kind == kind) {
                    continue;
                }
                let (u, _) = create_cost(&res.create, &g.tag, kind, Mode::Untraced);
                let (ml, mlh) = create_cost(&res.create, &g.tag, kind, Mode::Mapleak);
                let (bt, bth) = create_cost(&res.create, &g.tag, kind, Mode::Bpftrace);
                let _ = writeln!(
                    o,
                    "| {} | {kind} | {u:.3} | **{ml:.2}** | {mlh:.2} | {bt:.2} | {bth:.2} |",
                    g.tag
                );
            }
        }
        let _ = writeln!(o);
    }

    // Part 3.
    if many.is_empty()
        && let Some(k) = ctx.kept.sections.get("manymaps")
    {
        o.push_str(k);
    }
    if !many.is_empty() {
        let _ = writeln!(
            o,
            "## 3. Tracer CPU and memory with {} live maps\n",
            num(many.first().map_or(s.many_n, |m| m.n) as f64)
        );
        let _ = writeln!(
            o,
            "`bench -mode=manymaps -n {n}`: creates {n} `map[int32]int32` of 150 entries each (every one grows \
             past 128 slots, so the kernel side reports its growth and the tracer tracks it), then forces a GC \
             cycle every 200 ms. mapleak-trace attaches before the maps are created and runs for {t} s \
             (`--duration {t}s`; the target keeps running until the tracer has exited, then is stopped); at \
             GC cycles it reads every tracked map's header (at most every 100 ms, and after a read it waits \
             nine times as long as the read took: \"sampled\" cycles). \"Total\" CPU and \
             \"peak RSS\" are `overhead.tracer_cpu_s` and `overhead.tracer_max_rss_bytes` from its JSON report \
             (its own getrusage: startup and the final report included). From /proc, sampled every 250 ms: \
             \"startup\" is its CPU time when the maps start being created, \"steady\" its CPU use from then \
             to one second before `--duration` ends, and the RSS is the largest seen up to that point. \
             \"ms per sampled cycle\" = steady CPU / cycles sampled per second. One run per Go release.\n",
            n = s.many_n,
            t = s.many_trace_s
        );
        let _ = writeln!(
            o,
            "| Go | maps in report | evicted | events lost (ring buffer full) | creation probes paused (s) | GC cycles run / seen / sampled | tracer CPU total (s) | startup (s) | steady (CPUs) | ms per sampled cycle | RSS until 1 s before --duration ends (MiB) | peak RSS (MiB) | target heap (MiB) | probe hits | creation untraced / traced (s) |"
        );
        let _ = writeln!(
            o,
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
        );
        for r in many {
            let m = many_figures(r);
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {:.1} | {:.0} / {} / {} | {:.2} | {:.2} | {:.2} | {:.0} | {:.0} | {:.0} | {:.0} | {} | {:.2} / {:.2} |",
                r.go,
                num(m.maps as f64),
                m.evicted,
                num(m.lost as f64),
                m.paused_s,
                r.target_gcs,
                m.gcs,
                m.sampled,
                m.cpu,
                r.startup_cpu_s,
                r.steady_cpu,
                m.ms_per_gc,
                r.steady_rss / 1048576.0,
                m.peak_rss / 1048576.0,
                r.heap_inuse / 1048576.0,
                num(m.hits as f64),
                r.untraced_create_s,
                r.traced_create_s
            );
        }
        let _ = writeln!(o);
    }

    // Reading.
    let _ = writeln!(o, "## Reading\n");
    for line in reading(b, gos, res, &measured_cost, &ctx.kept) {
        let _ = writeln!(o, "- {line}");
    }
    let _ = writeln!(o);
    if !b.log.is_empty() {
        let _ = writeln!(o, "## Notes from the run\n");
        for l in b.log.iter().take(30) {
            let _ = writeln!(o, "- {l}");
        }
        if b.log.len() > 30 {
            let _ = writeln!(o, "- ... and {} more", b.log.len() - 30);
        }
        let _ = writeln!(o);
    }
    o
}

/// The reading of one throughput row.
fn tp_reading(
    r: &TpRow,
    res: &Results,
    cost: &BTreeMap<String, (f64, f64)>,
    kept: &reuse::Kept,
    ncpu: f64,
) -> String {
    let mut line = format!(
        "**{} on {} ({})**: mapleak-trace default mode {} (median; spread {} .. {}), bpftrace on the \
         always-attached functions' entries {}. Budget check: **{}** (at most {} %); the 1 % goal is {}.",
        r.workload,
        r.go,
        r.map_impl,
        pct(r.loss_mapleak),
        pct(r.spread_mapleak.0),
        pct(r.spread_mapleak.1),
        pct(r.loss_bpftrace),
        if r.budget_ok() { "PASS" } else { "FAIL" },
        BUDGET_PCT + BUDGET_MARGIN_PCT,
        match r.goal() {
            "met" => "met",
            "NOT met" => "**not met**",
            other => other,
        }
    );
    let _ = write!(
        line,
        " Against the same repetition's untraced run, {} (the untraced runs alone vary by {:.1} %).",
        r.noise_note(),
        r.untraced_noise * 100.0
    );
    if r.workload == "http" {
        line.push_str(
            " Part 1b measures the same service in alternating phases of one process, which resolves \
             smaller differences than separate runs.",
        );
    }
    let _ = write!(
        line,
        " Its probes fired {} times/s: {} on the write path, in {:.0} window(s) per run open {:.0} % of the \
         time (they found {:.0} maps), {} on single-stepped RET sites (creation, `makemap`/`NewMap`{})",
        num(r.mapleak_hits_per_s),
        num(r.write_hits_per_s),
        r.windows,
        r.window_share.min(1.0) * 100.0,
        r.maps_by_windows,
        num(r.mapleak_ss_per_s),
        if r.workload == "http" {
            "; net/http allocates header maps for every request, on both sides here"
        } else {
            ""
        }
    );
    if r.paused_share.is_finite() && r.paused_share > 0.005 {
        let _ = write!(
            line,
            "; the governor kept the creation probes detached {:.0} % of the time",
            r.paused_share.min(1.0) * 100.0
        );
    }
    let _ = write!(
        line,
        ". It debited {:.4} CPU-s/s ({:.2} % of one CPU, against a budget of {BUDGET_PCT} %)",
        r.spent_share,
        r.spent_share * 100.0
    );
    // What the hits would cost at the measured per-hit and per-creation
    // costs (bpftrace's counting programs: a lower bound for mapleak-trace's).
    let mut per_map: Vec<f64> = CREATIONS
        .iter()
        .map(|(k, _)| create_cost(&res.create, &r.go, k, Mode::Mapleak).0)
        .filter(|x| x.is_finite())
        .collect();
    if per_map.is_empty()
        && let Some(&c) = kept.per_map.get(&r.go)
    {
        per_map.push(c);
    }
    if let Some(&(_, em)) = cost.get(&r.go)
        && em.is_finite()
    {
        let creation = if per_map.is_empty() {
            r.mapleak_ss_per_s * cost.get(&r.go).map_or(f64::NAN, |c| c.0)
        } else {
            r.mapleak_ss_per_s * per_map.iter().sum::<f64>() / per_map.len() as f64
        };
        let other = (r.mapleak_hits_per_s - r.mapleak_ss_per_s).max(0.0) * em;
        let model = (creation + other) * 1e-6;
        if model.is_finite() {
            let _ = write!(
                line,
                "; at the costs measured in parts 2 and 2b those hits cost about {model:.4} CPU-s/s, on a \
                 target that can use {ncpu:.0} CPUs"
            );
        }
    }
    // The probes run in the kernel on the target's threads: its system
    // CPU shows what they really took.
    let [u_sys, ml_sys, _] = r.target_sys_per_s;
    if u_sys.is_finite() && ml_sys.is_finite() {
        let extra = ml_sys - u_sys;
        let _ = write!(
            line,
            ". The target itself spent {ml_sys:.3} CPU-s/s in the kernel, against {u_sys:.3} untraced: \
             {extra:.3} CPU-s/s more{}",
            if r.spent_share > 0.0 && extra > 2.0 * r.spent_share {
                format!(
                    ", {:.1}x what the governor debited: most of the probes' cost is in no hit count \
                     (kernel work on the target's threads that the in-kernel counters do not see, or \
                     hits that cost far more than the per-hit figures of part 2)",
                    extra / r.spent_share
                )
            } else if r.spent_share > 0.0 && extra > 0.0 {
                format!(", {:.1}x what the governor debited", extra / r.spent_share)
            } else {
                String::new()
            }
        );
    }
    let _ = write!(
        line,
        ". The tracer process itself used {:.3} CPU-s/s.",
        r.tracer_cpu_per_s
    );
    line
}

/// What part 2 says about the governor's per-hit costs.
fn probe_cost_footnote() -> String {
    format!(
        "mapleak-trace's overhead governor debits {GOV_EMULATED_US} µs per emulated hit, {GOV_SINGLE_STEP_US} µs \
         per single-stepped hit and {GOV_WRITE_US} µs per write-path hit (emulated, plus a kernel hash-map \
         update), from these figures (tracer-user/src/governor.rs); `overhead.estimated_target_cpu_s` uses \
         the same costs."
    )
}

/// The short reading: derived from the numbers, so that it stays true when
/// the benchmark is rerun.
fn reading(
    b: &Bench,
    gos: &[GoBin],
    res: &Results,
    cost: &BTreeMap<String, (f64, f64)>,
    kept: &reuse::Kept,
) -> Vec<String> {
    let (tp, many) = (&res.tp[..], &res.many[..]);
    let s = &b.s;
    let ncpu = thread::available_parallelism().map_or(1.0, |n| n.get() as f64);
    let mut out = Vec::new();
    if s.smoke {
        out.push("Smoke run: the figures only show that every step works.".to_owned());
    }
    for r in &tp_rows(gos, tp) {
        out.push(tp_reading(r, res, cost, kept, ncpu));
    }
    let kept_lines = |part: &str| -> Vec<String> {
        kept.reading
            .iter()
            .filter(|(p, _)| p == part)
            .map(|(_, l)| l.clone())
            .collect()
    };
    if tp.is_empty() {
        out.extend(kept_lines("throughput"));
    }
    if res.phases.is_empty() {
        out.extend(kept_lines("phases"));
    } else {
        out.extend(phases_report::reading(gos, &res.phases));
    }
    for g in gos {
        if let Some(&(ss, em)) = cost.get(&g.tag)
            && ss.is_finite()
            && em.is_finite()
            && em > 0.0
        {
            let mut line = format!(
                "**Per hit, {}**: {ss:.2} µs at the entry (single-stepped) against {em:.2} µs at `PUSHQ BP` \
                 (emulated), {:.0}x less (the governor debits {GOV_SINGLE_STEP_US} and {GOV_EMULATED_US} µs, \
                 {GOV_WRITE_US} µs for a write-path hit)",
                g.tag,
                ss / em
            );
            let write_ns = median(
                &tp.iter()
                    .filter(|x| {
                        x.go == g.tag && x.workload == "mapwrite" && x.mode == Mode::Untraced
                    })
                    .map(|x| 1e9 / x.value)
                    .collect::<Vec<_>>(),
            );
            if write_ns.is_finite() {
                let _ = write!(
                    line,
                    "; a map write costs about {write_ns:.0} ns, so even the emulated placement multiplies \
                     the cost of a write by {:.0}: this is why default mode attaches the write path only in \
                     short windows paid for by the budget",
                    (em * 1e3 + write_ns) / write_ns
                );
            }
            line.push('.');
            out.push(line);
        }
    }
    for g in gos {
        let (ml, _) = create_cost(&res.create, &g.tag, "small", Mode::Mapleak);
        let (bt, _) = create_cost(&res.create, &g.tag, "small", Mode::Bpftrace);
        let (u, _) = create_cost(&res.create, &g.tag, "small", Mode::Untraced);
        if ml.is_finite() && bt.is_finite() && u.is_finite() {
            out.push(format!(
                "**Per creation, {}**: `make(map)` costs {u:.3} µs untraced; mapleak-trace adds {ml:.1} µs \
                 (a single-stepped RET-site probe plus its program, which records a stack), a counting bpftrace \
                 probe at the entry {bt:.1} µs. Creation tracking, not the emulated probes, is what default \
                 mode costs on allocation-heavy code.",
                g.tag
            ));
        }
    }
    if res.create.is_empty() {
        out.extend(kept_lines("create-cost"));
    }
    if many.is_empty() {
        out.extend(kept_lines("manymaps"));
    }
    for r in many {
        let m = many_figures(r);
        out.push(format!(
            "**{} live maps, {}**: the tracer reported {} maps ({} evicted) and saw {} of the target's {:.0} GC \
             cycles in {:.0} s, and read the tracked maps' headers at {} of them. Past startup ({:.2} CPU-s) it \
             used {:.2} CPU, about {:.0} ms of CPU per sampled cycle{}. Its RSS was {:.0} MiB up to a second before `--duration` \
             ended; its peak over the whole run, final report included, was {:.0} MiB. Creating the maps took \
             {:.2} s traced against {:.2} s untraced (creation and growth probes fire then){}.",
            num(r.n as f64),
            r.go,
            num(m.maps as f64),
            m.evicted,
            m.gcs,
            r.target_gcs,
            m.duration,
            m.sampled,
            r.startup_cpu_s,
            r.steady_cpu,
            m.ms_per_gc,
            if m.duration > s.many_trace_s as f64 + 1.0 {
                format!(
                    ", and it overran its {} s `--duration` by {:.0} s",
                    s.many_trace_s,
                    m.duration - s.many_trace_s as f64
                )
            } else {
                String::new()
            },
            r.steady_rss / 1048576.0,
            m.peak_rss / 1048576.0,
            r.traced_create_s,
            r.untraced_create_s,
            {
                let mut extra = String::new();
                if m.lost > 0 {
                    let _ = write!(
                        extra,
                        "; meanwhile the kernel side dropped {} events because the ring buffer was full, so \
                         maps whose growth was lost are missing from the report",
                        num(m.lost as f64)
                    );
                }
                if m.paused_s.is_finite() && m.paused_s > 0.0 {
                    let _ = write!(
                        extra,
                        "; the governor kept creation probes detached for {:.1} s",
                        m.paused_s
                    );
                }
                extra
            }
        ));
    }
    out.push(
        "Caveats: a 2-CPU VM, possibly shared with other work (see the machine table); medians of few runs, \
         and the untraced runs alone vary by several % (\"untraced range\"), so a budget check within a \
         percent or two of its limit is decided by noise as much as by the tracer; \
         in `http` the clients run in the target process, so client-side map creations are traced too (a \
         server alone creates fewer maps per request); bpftrace's programs only count, mapleak-trace's do \
         more per hit (stack, maps, ring buffer), so per-hit figures from part 2 are a lower bound for it."
            .to_owned(),
    );
    out
}
