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
    governor::{EMULATED_HIT_S, SINGLE_STEP_HIT_S, WRITE_HIT_S},
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
mod jobs;
mod sampling;
mod session;
mod writes;

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
}

/// Worker threads for the targets' memory reads (one sample in flight per
/// process; more processes queue).
const MAX_WORKERS: usize = 4;

/// Longest wait, after the loop, for the samples in flight (their own
/// deadlines are shorter): their key state goes into the report.
const FINISH_JOBS: Duration = Duration::from_secs(3);

/// How often the targets are checked for exit.
const ALIVE_CHECK: Duration = Duration::from_millis(250);

/// Longest wait for events: GC events are written to the ring buffer
/// without waking the tracer, so this bounds how late they are read.
const IDLE_WAIT: Duration = Duration::from_millis(100);

/// How often the write counts are drained from the kernel.
const WRITES_DRAIN: Duration = Duration::from_secs(1);

/// `MAPLEAK_DEBUG_TIMING` set: print GC event lag, slow governor actions and
/// the final detach time to stderr. Read once (the governor runs every 10 ms).
pub(crate) fn debug_timing() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("MAPLEAK_DEBUG_TIMING").is_some())
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
    if opts.pids.is_empty() {
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
    let mut console = Console::new(json.as_ref().is_some_and(JsonSink::is_stdout));
    for s in &sessions {
        let until = opts
            .duration
            .map_or_else(|| "Ctrl-C".to_owned(), |d| format!("{d:.0?}"));
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
    let traced = runtime.block_on(trace_loop(
        opts,
        &mut tracer,
        &mut sessions,
        &mut console,
        start,
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

/// Detaches everything, busiest probes first (closes serialize in the
/// kernel; a breakpoint waiting its turn still traps), and waits.
fn detach_all(sessions: &mut [Session], tracer: &mut Tracer) {
    let mut pending = budget::Detaching::default();
    for s in sessions.iter_mut() {
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
        pending.push(crate::bpf::close_links(links));
    }
    let t_detach = Instant::now();
    pending.join();
    if debug_timing() {
        eprintln!("detach of all probes took {:?}", t_detach.elapsed());
    }
}

/// What the loop waits on besides timers.
struct Wakers {
    events: AsyncFd<OwnedFd>,
    sigint: Signal,
    sigterm: Signal,
    sighup: Signal,
    /// A target's pidfd became readable: it exited.
    exited: mpsc::UnboundedReceiver<u32>,
    /// The eBPF programs' log (`--bpf-log`).
    bpf_log: Option<AsyncFd<BpfLog>>,
}

impl Wakers {
    fn new(tracer: &mut Tracer, sessions: &[Session]) -> Result<Self> {
        let events = readable(tracer.events_fd()?).context("waiting on the ring buffer")?;
        // SIGHUP too: a terminal that goes away ends the trace with its report.
        let sig = |k: SignalKind| signal(k).context("installing a signal handler");
        let (tx, exited) = mpsc::unbounded_channel();
        for s in sessions {
            let Some(fd) = s.target.pidfd.as_ref().and_then(|p| p.try_clone_fd().ok()) else {
                continue;
            };
            let (tx, pid) = (tx.clone(), s.target.pid);
            // Without it the exit is still seen, by the loop's checks.
            if let Ok(fd) = readable(fd) {
                tokio::spawn(async move {
                    if fd.readable().await.is_ok() {
                        let _ = tx.send(pid);
                    }
                });
            }
        }
        let bpf_log = match tracer.take_bpf_log() {
            // SAFETY: the log's ring buffer descriptor stays open, the same
            // one, as long as the BpfLog that owns it.
            Some(l) => Some(
                unsafe { AsyncFd::register_with_interest(l, Interest::READABLE) }
                    .map_err(|e| anyhow::anyhow!("waiting on the eBPF log: {e}"))?,
            ),
            None => None,
        };
        Ok(Self {
            events,
            bpf_log,
            sigint: sig(SignalKind::interrupt())?,
            sigterm: sig(SignalKind::terminate())?,
            sighup: sig(SignalKind::hangup())?,
            exited,
        })
    }
}

/// Registers `fd` with the runtime, to wait until it is readable.
fn readable(fd: OwnedFd) -> std::io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: an OwnedFd is an open descriptor that stays open, the same
    // one, until the AsyncFd drops it.
    unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }
        .map_err(|e| std::io::Error::other(e.to_string()))
}

/// The samples whose reads are on worker threads, by session index.
type Workers = JoinSet<(usize, Done)>;

fn spawn_job(workers: &mut Workers, i: usize, job: Job) {
    workers.spawn_blocking(move || (i, job.run()));
}

/// Applies a worker's result, and starts the sample's next job.
fn job_done(
    workers: &mut Workers,
    sessions: &mut [Session],
    tracer: &Tracer,
    joined: std::result::Result<(usize, Done), tokio::task::JoinError>,
) -> Result<()> {
    let (i, done) = joined.map_err(|e| anyhow::anyhow!("a sampling worker failed: {e}"))?;
    if let Some(s) = sessions.get_mut(i)
        && let Some(next) = on_done(s, tracer, done)
    {
        spawn_job(workers, i, next);
    }
    Ok(())
}

/// The main loop, until the duration, a signal or the targets' exit (the
/// reason is returned, with the count of undecodable events). The
/// governor's thread is stopped, and the samples in flight are finished,
/// before it returns, whatever the way out.
async fn trace_loop(
    opts: &TraceOptions,
    tracer: &mut Tracer,
    sessions: &mut [Session],
    console: &mut Console,
    start: Instant,
) -> Result<(&'static str, u64)> {
    let mut governor = GovernorThread::spawn(
        sessions.iter().map(|s| s.budget.clone()).collect(),
        tracer.hits_reader()?,
    )
    .context("starting the governor's thread")?;
    let mut workers = Workers::new();
    let looped = event_loop(opts, tracer, sessions, console, start, &mut workers).await;
    for s in sessions.iter_mut() {
        if s.ended.is_none() {
            s.ended = Some(
                looped
                    .as_ref()
                    .map_or("tracer error", |(reason, _)| *reason)
                    .to_owned(),
            );
        }
    }
    // Headers that come back now are applied; no keys are read after them.
    let finish_limit = crate::speed::scaled(FINISH_JOBS);
    let finish = tokio::time::timeout(finish_limit, async {
        while let Some(joined) = workers.join_next().await {
            if let Err(e) = job_done(&mut workers, sessions, tracer, joined) {
                eprintln!("mapleak-trace: {e:#}");
            }
        }
    })
    .await;
    if finish.is_err() {
        eprintln!(
            "mapleak-trace: a sample's reads were still running after {finish_limit:?}; the report goes without them"
        );
    }
    governor.stop();
    looped
}

async fn event_loop(
    opts: &TraceOptions,
    tracer: &mut Tracer,
    sessions: &mut [Session],
    console: &mut Console,
    start: Instant,
    workers: &mut Workers,
) -> Result<(&'static str, u64)> {
    let mut wakers = Wakers::new(tracer, sessions)?;
    let end_at = opts
        .duration
        .map(|d| tokio::time::Instant::from_std(start + d));
    let mut last_render = Instant::now();
    let mut t0: Option<u64> = None;
    let mut last_drain = Instant::now();
    let mut last_alive = Instant::now();
    let mut events: Vec<Event> = Vec::new();
    let mut bad_events = 0u64;
    let reason = loop {
        // GC events do not wake the loop (they are written without a
        // wakeup: a GC-heavy target runs hundreds of cycles a second), so it
        // wakes at least every IDLE_WAIT, or when a pending sample is due.
        let wait = sessions
            .iter()
            .filter_map(sample_wait)
            .fold(IDLE_WAIT, Duration::min);
        tokio::select! {
            biased;
            _ = wakers.sigint.recv() => break "interrupted",
            _ = wakers.sigterm.recv() => break "interrupted",
            _ = wakers.sighup.recv() => break "interrupted",
            () = sleep_until(end_at) => break "duration reached",
            Some(joined) = workers.join_next() => job_done(workers, sessions, tracer, joined)?,
            ready = wakers.events.readable() => {
                // Cleared before the drain below: an event written after it
                // wakes the loop again.
                if let Ok(mut guard) = ready {
                    guard.clear_ready();
                }
            }
            Some(_) = wakers.exited.recv() => {}
            () = log_readable(wakers.bpf_log.as_ref()) => {}
            () = tokio::time::sleep(wait) => {}
        }
        if let Some(log) = wakers.bpf_log.as_mut() {
            log.get_mut().flush();
        }
        tracer.drain(|b| match decode(b) {
            Ok(e) => events.push(e),
            Err(_) => bad_events += 1,
        });
        for ev in events.drain(..) {
            if let Some(s) = sessions
                .iter_mut()
                .find(|s| s.target.pid == ev.tgid() && s.ended.is_none())
            {
                on_event(s, tracer, &ev, &mut t0);
            }
        }
        // A burst (100,000 maps made at once) leaves a large buffer behind.
        if events.capacity() > EVENTS_KEPT {
            events.shrink_to(EVENTS_KEPT);
        }
        for (i, s) in sessions.iter_mut().enumerate() {
            if s.ended.is_none() {
                note_pauses(s);
                serve_attaches(s, tracer);
                if let Some(job) = sample_due(s) {
                    spawn_job(workers, i, job);
                }
            }
        }
        if last_drain.elapsed() >= WRITES_DRAIN {
            last_drain = Instant::now();
            let writes = tracer.drain_writes();
            if !writes.is_empty() {
                for s in sessions.iter_mut() {
                    s.discovered_by_writes +=
                        writes::apply_writes(&mut s.model, s.target.pid, &writes);
                }
            }
        }
        // An exit is seen at once through the pidfd (it wakes the loop);
        // without one (Linux < 5.3), /proc is read at most every ALIVE_CHECK.
        let proc_check = last_alive.elapsed() >= ALIVE_CHECK;
        if proc_check {
            last_alive = Instant::now();
        }
        for s in sessions.iter_mut() {
            if s.ended.is_none() && (s.target.pidfd.is_some() || proc_check) && !s.target.alive() {
                s.ended = Some("target exited".to_owned());
                lock(&s.budget).ended = true;
            }
        }
        if last_render.elapsed() >= opts.interval && console.broken.is_none() {
            last_render = Instant::now();
            render_live(sessions, tracer, console, opts.top, start);
        }
        if sessions.iter().all(|s| s.ended.is_some()) {
            break "target exited";
        }
    };
    if let Some(log) = wakers.bpf_log.as_mut() {
        log.get_mut().flush();
    }
    Ok((reason, bad_events))
}

/// Waits until the eBPF log has records (for ever without one), and
/// clears the readiness: the loop flushes the log after every wake.
async fn log_readable(log: Option<&AsyncFd<BpfLog>>) {
    match log {
        Some(l) => {
            if let Ok(mut guard) = l.readable().await {
                guard.clear_ready();
            }
        }
        None => std::future::pending().await,
    }
}

/// Sleeps until `at`, or for ever.
async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The live view: the whole report on a terminal, a line per process
/// otherwise.
fn render_live(
    sessions: &mut [Session],
    tracer: &Tracer,
    console: &mut Console,
    top: usize,
    start: Instant,
) {
    let el = start.elapsed().as_secs_f64();
    if console.is_tty() {
        let reports: Vec<Report> = sessions
            .iter_mut()
            .map(|s| build_report(s, tracer, el))
            .collect();
        let palette = console.palette();
        console.emit(|w| {
            write!(w, "\x1b[2J\x1b[H")?;
            for r in &reports {
                report::render_styled(r, w, top, palette)?;
            }
            Ok(())
        });
    } else {
        console.emit(|w| {
            for s in sessions.iter() {
                writeln!(w, "{}", live_line(s, el))?;
            }
            Ok(())
        });
    }
}
