//! `app`: wires the stages for `mapleak-trace trace`. One async loop (tokio,
//! on the main thread) waits on the ring buffer, the signals, the targets'
//! pidfds, timers and the sampling workers; it applies events to each
//! process's model, starts samples at GC cycles (or on a timer), attaches
//! what the governor asks for, and renders. Reads of the target's memory
//! run on worker threads with deadlines ([`jobs`]), and the governor checks
//! the budget and closes probes on its own thread ([`crate::budget`]), so
//! neither waits behind the other.
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use std::os::fd::OwnedFd;

use anyhow::{Context as _, Result};
use tokio::{
    io::{Interest, unix::AsyncFd},
    signal::unix::{Signal, SignalKind, signal},
    sync::mpsc,
    task::JoinSet,
};
use tracer_common::{Counter, ProcConfig};

use crate::{
    bpf::{BpfLog, LoadOptions, ProbeRequest, Tracer},
    budget::{self, Budget, GovernorThread, ProbeCost},
    discover::Target,
    finalizers::{self, FinTracker},
    governor::{EMULATED_HIT_S, GOVERNED_RUN_PRIOR_S, SINGLE_STEP_HIT_S, WRITE_HIT_S},
    ingest::{Event, decode},
    inspect::{BinaryInfo, Frame, MapImpl},
    keys::{KeyLayout, KeyTracker},
    model::{Model, Verdict, families::Families},
    output::{Console, JsonSink, PprofSink},
    plan::{ProbeClass, ProbePlan},
    report::{self, MapReport, Overhead, Report, TargetInfo, summary},
    sample::{HeaderRead, Memory, TypeSizes},
};

mod build;
mod clock;
mod event_loop;
mod fleet;
mod gc_poll;
mod jobs;
mod sampling;
pub mod serve;
mod session;
mod writes;

pub use fleet::{FleetOptions, glob_match, glob_path};

#[allow(
    clippy::wildcard_imports,
    reason = "the app modules share one set of imports and items"
)]
use build::*;
use clock::{InFlight, MIN_SAMPLE_GAP, SampleClock};
use jobs::{
    Done, HEADER_DEADLINE, HeaderJob, HeaderResult, Job, KeyCandidate, KeyState, KeysJob,
    KeysResult,
};
#[allow(
    clippy::wildcard_imports,
    reason = "the app modules share one set of imports and items"
)]
use sampling::*;
#[allow(
    clippy::wildcard_imports,
    reason = "the app modules share one set of imports and items"
)]
use session::*;

/// Decoded events whose buffer is kept between drains.
const EVENTS_KEPT: usize = 4096;

/// What the user asked for.
#[derive(Debug, Clone)]
pub struct TraceOptions {
    /// Processes.
    pub pids: Vec<u32>,
    /// Stop after this long.
    pub duration: Option<Duration>,
    /// Live view refresh.
    pub interval: Duration,
    /// `--json FILE` or `-`.
    pub json: Option<String>,
    /// `--pprof FILE`.
    pub pprof: Option<String>,
    /// Maps shown.
    pub top: usize,
    /// Share of one CPU the probes may take from the target (0.01 = 1%).
    pub overhead_budget: f64,
    /// Render retained keys whole instead of redacted.
    pub show_keys: bool,
    /// Every map in full in the report, not only suspects and the largest.
    pub all_maps: bool,
    /// Print the eBPF programs' diagnostics to stderr (`bpf: ` lines).
    pub bpf_log: bool,
    /// `--all`: every Go process the filters select, as they come and go.
    pub all: Option<FleetOptions>,
    /// `--metrics-addr`: serve `/metrics` and `/debug/pprof/mapleak` there.
    pub metrics_addr: Option<std::net::SocketAddr>,
}

/// Worker threads for the targets' memory reads (one sample in flight per
/// process; more processes queue).
const MAX_WORKERS: usize = 4;

/// Longest wait, after the loop, for the samples in flight (their own
/// deadlines are shorter): their key state goes into the report.
const FINISH_JOBS: Duration = Duration::from_secs(3);

/// How often the targets are checked for exit.
const ALIVE_CHECK: Duration = Duration::from_millis(250);

/// Longest wait for events. The probes write them without waking the
/// tracer, except a GC cycle that is due for a sample (the clock tells the
/// kernel from when, [`clock::SampleClock::gc_wake_update`]) and a ring
/// buffer a quarter full; the governor's thread wakes the loop for the
/// attaches it asks for. So this bounds only how late the other events
/// (map creations, growths, finalizers) are read, and each turn costs the
/// tracer a wakeup (about 0.1 ms of CPU on a virtual machine: at 100 ms,
/// a tenth of a 1 % budget, a fifth of the default 0.5 %).
const IDLE_WAIT: Duration = Duration::from_millis(500);

/// How often the write counts are drained from the kernel.
const WRITES_DRAIN: Duration = Duration::from_secs(1);

/// `MAPLEAK_DEBUG_TIMING` set: print GC event lag, slow governor actions and
/// the final detach time to stderr. Read once (the governor runs every 10 ms).
pub(crate) fn debug_timing() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("MAPLEAK_DEBUG_TIMING").is_some())
}

/// `MAPLEAK_DEBUG_CREDIT` set: print every governor check's credit, the
/// tracer's CPU and the probes' cost debited at it, and which governed
/// classes are attached, to stderr (one line a check). Read once.
pub(crate) fn debug_credit() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("MAPLEAK_DEBUG_CREDIT").is_some())
}

pub(crate) fn now_ns() -> u64 {
    // SAFETY: clock_gettime fills the timespec we pass.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer; CLOCK_MONOTONIC is what bpf_ktime_get_ns uses.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &raw mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn self_usage() -> (f64, u64) {
    // SAFETY: getrusage fills the struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer to a rusage.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &raw mut ru) };
    let cpu = ru.ru_utime.tv_sec as f64
        + ru.ru_utime.tv_usec as f64 / 1e6
        + ru.ru_stime.tv_sec as f64
        + ru.ru_stime.tv_usec as f64 / 1e6;
    (cpu, (ru.ru_maxrss as u64) * 1024)
}

fn live_line(s: &Session, elapsed: f64) -> String {
    let mut growing: Vec<_> = s
        .model
        .maps
        .values()
        .filter(|m| m.verdict() == Verdict::Growing && !m.is_sync_generation())
        .collect();
    growing.sort_by_key(|m| std::cmp::Reverse(m.last().map_or(0, |x| x.len)));
    let mut line = format!(
        "[{elapsed:6.1}s] pid {} gc {} tracked {} growing {}",
        s.target.pid,
        s.model.cycles.back().map_or(0, |c| c.cycle),
        s.model.maps.len(),
        growing.len()
    );
    if let Some(m) = growing.first() {
        let tn = s
            .types
            .get(&m.type_ptr)
            .map(|t| t.0.as_str())
            .or_else(|| m.type_name())
            .unwrap_or("unknown");
        line += &format!(" | top: {tn} len {}", m.last().map_or(0, |x| x.len));
    }
    let families = s.families.growing();
    if families > 0 {
        line += &format!(" | families growing {families}");
    }
    line
}

/// Why a trace failed: before anything was attached (nothing to report;
/// the cause is the input or the machine), or after (the report was still
/// written if it could be).
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// Nothing was attached.
    #[error("cannot trace: {0:#}")]
    CannotTrace(anyhow::Error),
    /// The trace ran and then failed.
    #[error("{0:#}")]
    AfterAttach(anyhow::Error),
}

/// Runs `trace`: attach, loop, report. The JSON report (`--json`) is
/// written on every way out once attached: the duration, a signal, the
/// targets' exit, or an error in the loop.
pub fn run(opts: &TraceOptions) -> Result<(), TraceError> {
    let cannot = TraceError::CannotTrace;
    if opts.pids.is_empty() && opts.all.is_none() {
        return Err(cannot(anyhow::anyhow!("no --pid given")));
    }
    let json = opts
        .json
        .as_deref()
        .map(JsonSink::open)
        .transpose()
        .map_err(|e| cannot(e.into()))?;
    let pprof = opts
        .pprof
        .as_deref()
        .map(PprofSink::open)
        .transpose()
        .map_err(|e| cannot(e.into()))?;
    // Bound before anything is attached: an address in use fails at once.
    let endpoint = opts
        .metrics_addr
        .map(serve::Endpoint::bind)
        .transpose()
        .map_err(cannot)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(MAX_WORKERS)
        .thread_name("mapleak-worker")
        .build()
        .context("starting the async runtime")
        .map_err(cannot)?;
    // Measured before any probe is attached (see `crate::speed`).
    let slowdown = crate::speed::slowdown();
    if debug_timing() {
        eprintln!(
            "calibration: {slowdown:.1}x the reference machine's time (work: {:?} here, {:?} there)",
            crate::speed::measure(),
            crate::speed::REFERENCE_WORK
        );
    }
    let load = LoadOptions {
        bpf_log: opts.bpf_log,
    };
    let mut tracer = Tracer::load_with(load).map_err(cannot)?;
    let mut sessions: Vec<Session> = Vec::new();
    let mut binaries = Binaries::new();
    for &pid in &opts.pids {
        sessions.push(
            attach_session(
                &mut tracer,
                &mut binaries,
                pid,
                opts.overhead_budget,
                opts.show_keys,
            )
            .map_err(cannot)?,
        );
    }
    drop(binaries);
    for s in &mut sessions {
        s.clock.timer_every = opts.interval.max(MIN_SAMPLE_GAP);
        s.all_maps = opts.all_maps;
    }
    // The governed probes are attached once the governor's thread checks
    // their budgets, before the processes are said to be attached.
    let governing = event_loop::start_governor(opts, &tracer, &sessions).map_err(cannot)?;
    for s in &mut sessions {
        serve_attaches(s, &mut tracer);
    }
    let mut console = Console::new(json.as_ref().is_some_and(JsonSink::is_stdout));
    let until = opts
        .duration
        .map_or_else(|| "Ctrl-C".to_owned(), |d| format!("{d:.0?}"));
    for s in &sessions {
        attached_line(&mut console, s, &until);
    }
    if let Some(f) = &opts.all {
        // New processes are found as they exec; without the kernel's
        // reports, by scanning /proc every second.
        let found_when = match tracer.watch_execs() {
            Ok(()) => "as they start".to_owned(),
            Err(e) => {
                eprintln!(
                    "mapleak-trace: --all: execs cannot be watched ({e:#}); scanning /proc every {:?} for new processes instead",
                    fleet::SCAN_EVERY
                );
                format!("within {:?}", fleet::SCAN_EVERY)
            }
        };
        let filters = if f.include.is_empty() && f.exclude.is_empty() {
            String::new()
        } else {
            format!(
                " (executables matching {:?}, not {:?})",
                f.include, f.exclude
            )
        };
        console.emit(|w| {
            writeln!(
                w,
                "mapleak-trace: --all: tracing every Go process{filters}, new ones {found_when}; report at {until}"
            )
        });
    }
    if let Some(e) = &endpoint {
        let addr = e.addr();
        console.emit(|w| {
            writeln!(
                w,
                "mapleak-trace: serving http://{addr}/metrics and http://{addr}/debug/pprof/mapleak"
            )
        });
    }
    for s in &sessions {
        if let Some(w) = s.info.layout_warning() {
            console.emit(|out| writeln!(out, "mapleak-trace: warning: pid {}: {w}", s.target.pid));
        }
    }
    if let Some(why) = tracer.multi_error() {
        console.emit(|w| {
            writeln!(
                w,
                "mapleak-trace: note: uprobe_multi links unavailable ({why}); one perf link per probe"
            )
        });
    }
    let start = Instant::now();
    let traced = runtime.block_on(event_loop::trace_loop(
        opts,
        &mut tracer,
        &mut sessions,
        &mut console,
        start,
        endpoint,
        governing,
    ));
    // A worker still inside a read (past every deadline) is left behind.
    runtime.shutdown_background();
    // From here to the exit (owner search, report, detach) a second Ctrl-C
    // or SIGTERM ends the process at once; the kernel removes the probes.
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: restores the default action; no handler of ours runs.
        unsafe { libc::signal(sig, libc::SIG_DFL) };
    }
    let (end_reason, bad_events, failure) = match traced {
        Ok((reason, bad)) => (reason.to_owned(), bad, None),
        Err(e) => (format!("tracer error: {e:#}"), 0, Some(e)),
    };
    let el = start.elapsed().as_secs_f64();
    let mut reports = Vec::new();
    for s in &mut sessions {
        if s.ended.is_none() {
            s.ended = Some(end_reason.clone());
        }
        final_owner_search(s);
        reports.push(build_report(s, &tracer, el));
    }
    detach_all(&mut sessions, &mut tracer);
    drop(tracer);
    // The JSON first: the console may be a closed pipe.
    let written = json.map(|j| j.write(&reports));
    let profiled = pprof.map(|p| p.write(&reports, start.elapsed()));
    let palette = console.palette();
    console.emit(|w| {
        writeln!(w)?;
        for r in &reports {
            report::render_styled(r, w, opts.top, palette)?;
            writeln!(w)?;
        }
        if bad_events > 0 {
            writeln!(w, "warning: {bad_events} events could not be decoded")?;
        }
        Ok(())
    });
    for r in [written, profiled] {
        if let Some(Err(e)) = r {
            return Err(TraceError::AfterAttach(e.into()));
        }
    }
    if let Some(e) = failure {
        return Err(TraceError::AfterAttach(e));
    }
    Ok(())
}

/// The line that says a process is traced.
fn attached_line(console: &mut Console, s: &Session, until: &str) {
    console.emit(|w| {
        writeln!(
            w,
            "mapleak-trace: attached {} probes to pid {} ({} {} {}); report at {until}",
            s.probes.len(),
            s.target.pid,
            s.info.go_version.raw,
            s.info.goarch.as_str(),
            s.info.map_impl.as_str(),
        )
    });
}

/// Every link of `s`, busiest probes first, its budget ended (the
/// governor's thread closes nothing more of it).
fn session_links(s: &mut Session, tracer: &mut Tracer) -> Vec<crate::bpf::Link> {
    let mut b = lock(&s.budget);
    b.ended = true;
    let mut links = b.take_all_links();
    let mut order: Vec<usize> = (0..s.probes.len()).collect();
    order.sort_by(|&x, &y| b.site_rate(y).total_cmp(&b.site_rate(x)));
    drop(b);
    links.extend(
        order
            .into_iter()
            .filter_map(|i| tracer.take_link(&mut s.probes[i].probe)),
    );
    links
}

/// Detaches everything, busiest probes first (closes serialize in the
/// kernel; a breakpoint waiting its turn still traps), and waits.
fn detach_all(sessions: &mut [Session], tracer: &mut Tracer) {
    let mut pending = budget::Detaching::default();
    for s in sessions.iter_mut() {
        let links = session_links(s, tracer);
        pending.push(crate::bpf::close_links(links));
    }
    let t_detach = Instant::now();
    pending.join();
    if debug_timing() {
        eprintln!("detach of all probes took {:?}", t_detach.elapsed());
    }
}
