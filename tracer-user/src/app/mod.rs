//! `app`: wires the stages for `mapleak-trace trace`. One loop polls the ring
//! buffer, applies events to each process's model, reads map headers at GC
//! cycles, attaches what the governor asks for, and renders; the governor
//! checks the budget and closes probes on its own thread ([`crate::budget`]).
use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use tracer_common::{Counter, ProcConfig};

use crate::{
    bpf::{BpfLog, LoadOptions, ProbeRequest, Tracer},
    budget::{self, Budget, GovernorThread, ProbeCost},
    discover::Target,
    finalizers::{self, FinTracker},
    governor::{EMULATED_HIT_S, SINGLE_STEP_HIT_S, WRITE_HIT_S},
    ingest::{Event, decode},
    inspect::{BinaryInfo, Frame, MapImpl},
    keys::{KeyLayout, KeyTracker, MAX_TRACKED_KEYS},
    model::{Model, SampleAt, Verdict},
    output::{Console, JsonSink},
    plan::{ProbeClass, ProbePlan},
    report::{self, MapReport, Overhead, Report, TargetInfo, summary},
    sample::{self, Memory, TypeSizes},
};

mod build;
mod sampling;
mod session;

#[allow(
    clippy::wildcard_imports,
    reason = "the app modules share one set of imports and items"
)]
use build::*;
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

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

fn install_signal_handlers() {
    // SIGHUP too: a terminal that goes away ends the trace with its report.
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { libc::signal(sig, on_signal as *const () as libc::sighandler_t) };
    }
}

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
        .filter(|m| m.verdict() == Verdict::Growing)
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
        let tn = s.types.get(&m.type_ptr).map_or("unknown", |t| t.0.as_str());
        line += &format!(" | top: {tn} len {}", m.last().map_or(0, |x| x.len));
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
    let load = LoadOptions {
        bpf_log: opts.bpf_log,
    };
    let mut tracer = Tracer::load_with(load).map_err(cannot)?;
    let mut sessions: Vec<Session> = Vec::new();
    for &pid in &opts.pids {
        sessions.push(
            attach_session(&mut tracer, pid, opts.overhead_budget, opts.show_keys)
                .map_err(cannot)?,
        );
    }
    for s in &mut sessions {
        s.timer_every = opts.interval.max(MIN_SAMPLE_GAP);
        s.all_maps = opts.all_maps;
    }
    install_signal_handlers();
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
    let start = Instant::now();
    let traced = trace_loop(opts, &mut tracer, &mut sessions, &mut console, start);
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
        reports.push(build_report(s, &tracer, el, true));
    }
    detach_all(&mut sessions, &mut tracer);
    drop(tracer);
    // The JSON first: the console may be a closed pipe.
    let written = json.map(|j| j.write(&reports));
    console.emit(|w| {
        writeln!(w)?;
        for r in &reports {
            report::render(r, w, opts.top)?;
            writeln!(w)?;
        }
        if bad_events > 0 {
            writeln!(w, "warning: {bad_events} events could not be decoded")?;
        }
        Ok(())
    });
    if let Some(Err(e)) = written {
        return Err(TraceError::AfterAttach(e.into()));
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

/// The main loop, until the duration, a signal or the targets' exit (the
/// reason is returned, with the count of undecodable events). The
/// governor's thread is stopped before it returns, whatever the way out.
fn trace_loop(
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
    let mut last_render = Instant::now();
    let mut t0: Option<u64> = None;
    let mut last_drain = Instant::now();
    let mut last_alive = Instant::now();
    let mut events: Vec<Event> = Vec::new();
    let mut bad_events = 0u64;
    let mut bpf_log = tracer.take_bpf_log();
    let end_reason = loop {
        // GC events do not wake the loop (they are written without a
        // wakeup: a GC-heavy target runs hundreds of cycles a second), so it
        // wakes at least every IDLE_WAIT, or when a pending sample is due.
        let wait = sessions
            .iter()
            .filter_map(sample_wait)
            .fold(IDLE_WAIT, Duration::min);
        // Rounded up: a wait of 0 ms would spin until the sample is due.
        tracer.wait(wait.as_micros().div_ceil(1000) as i32);
        tracer.drain(|b| match decode(b) {
            Ok(e) => events.push(e),
            Err(_) => bad_events += 1,
        });
        bpf_log.iter_mut().for_each(BpfLog::flush);
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
        // Attaches first: they are quick, and a sample may be long.
        for s in sessions.iter_mut() {
            if s.ended.is_none() {
                note_pauses(s);
                serve_attaches(s, tracer);
                sample_due(s, tracer);
            }
        }
        if last_drain.elapsed() >= WRITES_DRAIN {
            last_drain = Instant::now();
            let writes = tracer.drain_writes();
            if !writes.is_empty() {
                for s in sessions.iter_mut() {
                    on_writes(s, &writes);
                }
            }
        }
        // An exit is seen at once through the pidfd (one poll); without
        // one (Linux < 5.3), /proc is read at most every ALIVE_CHECK.
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
            let el = start.elapsed().as_secs_f64();
            if console.is_tty() {
                let reports: Vec<Report> = sessions
                    .iter_mut()
                    .map(|s| build_report(s, tracer, el, false))
                    .collect();
                console.emit(|w| {
                    write!(w, "\x1b[2J\x1b[H")?;
                    for r in &reports {
                        report::render(r, w, opts.top)?;
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
        if STOP.load(Ordering::SeqCst) {
            break "interrupted";
        }
        if opts.duration.is_some_and(|d| start.elapsed() >= d) {
            break "duration reached";
        }
        if sessions.iter().all(|s| s.ended.is_some()) {
            break "target exited";
        }
    };
    governor.stop();
    Ok((end_reason, bad_events))
}
