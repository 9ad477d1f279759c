//! `app::event_loop`: the tokio loop over the ring buffer, signals, pidfds,
//! timers, sampling workers, node-wide scans (`--all`) and scrapes
//! (`--metrics-addr`). Sessions come and go: everything is keyed by a
//! session's id, never by its place in the list.
#![allow(
    clippy::wildcard_imports,
    reason = "the app modules share one set of imports and items"
)]
use super::*;

/// What the loop waits on besides timers.
struct Wakers {
    events: AsyncFd<OwnedFd>,
    sigint: Signal,
    sigterm: Signal,
    sighup: Signal,
    /// A target's pidfd became readable: it exited.
    exited: mpsc::UnboundedReceiver<u32>,
    /// Where the pidfd watchers of sessions attached later send.
    exit_tx: mpsc::UnboundedSender<u32>,
    /// Snapshots asked for by the HTTP endpoint (`--metrics-addr`).
    scrapes: Option<mpsc::Receiver<serve::Scrape>>,
    /// The eBPF programs' log (`--bpf-log`).
    bpf_log: Option<AsyncFd<BpfLog>>,
    /// The governor's thread asks for an attach.
    attach: Arc<tokio::sync::Notify>,
}

impl Wakers {
    fn new(
        tracer: &mut Tracer,
        sessions: &[Session],
        scrapes: Option<mpsc::Receiver<serve::Scrape>>,
        attach: Arc<tokio::sync::Notify>,
    ) -> Result<Self> {
        let events = readable(tracer.events_fd()?).context("waiting on the ring buffer")?;
        // SIGHUP too: a terminal that goes away ends the trace with its report.
        let sig = |k: SignalKind| signal(k).context("installing a signal handler");
        let (exit_tx, exited) = mpsc::unbounded_channel();
        for s in sessions {
            watch_exit(&exit_tx, s);
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
            exit_tx,
            scrapes,
            attach,
        })
    }
}

/// Wakes the loop when `s`'s process exits (through its pidfd). Without
/// one the exit is still seen, by the loop's checks.
fn watch_exit(tx: &mpsc::UnboundedSender<u32>, s: &Session) {
    let Some(fd) = s.target.pidfd.as_ref().and_then(|p| p.try_clone_fd().ok()) else {
        return;
    };
    let (tx, pid) = (tx.clone(), s.target.pid);
    if let Ok(fd) = readable(fd) {
        tokio::spawn(async move {
            if fd.readable().await.is_ok() {
                let _ = tx.send(pid);
            }
        });
    }
}

/// Registers `fd` with the runtime, to wait until it is readable.
fn readable(fd: OwnedFd) -> std::io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: an OwnedFd is an open descriptor that stays open, the same
    // one, until the AsyncFd drops it.
    unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }
        .map_err(|e| std::io::Error::other(e.to_string()))
}

/// The samples whose reads are on worker threads, by session id (a
/// session let go of while its sample runs gets no result).
type Workers = JoinSet<(u64, Done)>;

/// Runs `s`'s `job` on a worker thread, its CPU debited to `s`'s budget.
fn spawn_job(workers: &mut Workers, clocks: &Arc<budget::WorkerClocks>, s: &Session, job: Job) {
    let (id, b, clocks) = (s.id, s.budget.clone(), clocks.clone());
    workers.spawn_blocking(move || (id, clocks.run(b, || job.run())));
}

/// Applies a worker's result, and starts the sample's next job.
fn job_done(
    workers: &mut Workers,
    sessions: &mut [Session],
    tracer: &Tracer,
    clocks: &Arc<budget::WorkerClocks>,
    joined: std::result::Result<(u64, Done), tokio::task::JoinError>,
) -> Result<()> {
    let (id, done) = joined.map_err(|e| anyhow::anyhow!("a sampling worker failed: {e}"))?;
    if let Some(s) = sessions.iter_mut().find(|s| s.id == id)
        && let Some(next) = on_done(s, tracer, done)
    {
        spawn_job(workers, clocks, s, next);
    }
    Ok(())
}

/// The governor's thread and what it shares with the loop.
pub(super) struct Governing {
    governor: GovernorThread,
    /// The worker threads' CPU clocks, read by the governor's thread.
    clocks: Arc<budget::WorkerClocks>,
    /// Notified when the governor's thread asks for an attach.
    attach: Arc<tokio::sync::Notify>,
}

/// Starts the governor's thread on the sessions' budgets. Their governed
/// and large-growth probes are attached after it ([`serve_attaches`]), so
/// that none runs before the thread checks its budget.
pub(super) fn start_governor(
    opts: &TraceOptions,
    tracer: &Tracer,
    sessions: &[Session],
) -> Result<Governing> {
    let clocks = Arc::new(budget::WorkerClocks::default());
    let attach = Arc::new(tokio::sync::Notify::new());
    let governor = GovernorThread::spawn(
        sessions.iter().map(|s| s.budget.clone()).collect(),
        tracer.hits_reader()?,
        clocks.clone(),
        // `--all`: one budget for the node, split among the processes.
        opts.all.is_some().then_some(opts.overhead_budget),
        // Without the kernel's run statistics (refused, or
        // MAPLEAK_NO_RUN_STATS set: they cost every BPF program on the
        // host two clock reads a run), the fixed prices.
        if std::env::var_os("MAPLEAK_NO_RUN_STATS").is_some() {
            None
        } else {
            tracer.run_stats().ok()
        },
        attach.clone(),
    )
    .context("starting the governor's thread")?;
    Ok(Governing {
        governor,
        clocks,
        attach,
    })
}

/// The main loop, until the duration, a signal or the targets' exit (the
/// reason is returned, with the count of undecodable events). The
/// governor's thread ([`start_governor`]) is stopped, and the samples in
/// flight are finished, before it returns, whatever the way out.
pub(super) async fn trace_loop(
    opts: &TraceOptions,
    tracer: &mut Tracer,
    sessions: &mut Vec<Session>,
    console: &mut Console,
    start: Instant,
    endpoint: Option<serve::Endpoint>,
    governing: Governing,
) -> Result<(&'static str, u64)> {
    let Governing {
        mut governor,
        clocks,
        attach,
    } = governing;
    let mut workers = Workers::new();
    let scrapes = endpoint.map(serve::Endpoint::start);
    let execs_watched = tracer.watching_execs();
    let mut ctx = Loop {
        opts,
        tracer,
        sessions,
        console,
        start,
        governor: &governor,
        fleet: opts
            .all
            .clone()
            .map(|o| fleet::Fleet::new(o, execs_watched)),
        detaching: budget::Detaching::default(),
        last_snapshot: None,
        clocks: clocks.clone(),
    };
    let looped = event_loop(&mut ctx, &mut workers, scrapes, attach).await;
    let mut detaching = std::mem::take(&mut ctx.detaching);
    let (tracer, sessions) = (ctx.tracer, ctx.sessions);
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
            if let Err(e) = job_done(&mut workers, sessions, tracer, &clocks, joined) {
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
    // The links of processes let go of.
    detaching.join();
    looped
}

/// What the loop works on.
pub(super) struct Loop<'a> {
    opts: &'a TraceOptions,
    tracer: &'a mut Tracer,
    sessions: &'a mut Vec<Session>,
    console: &'a mut Console,
    start: Instant,
    governor: &'a GovernorThread,
    /// `--all`: the scanner.
    fleet: Option<fleet::Fleet>,
    /// Closes of the links of processes let go of.
    detaching: budget::Detaching,
    /// The worker threads' CPU clocks, read by the governor's thread.
    clocks: Arc<budget::WorkerClocks>,
    /// The last snapshot served, reused by scrapes that come sooner than
    /// [`serve::SNAPSHOT_REUSE`] after it.
    last_snapshot: Option<(Instant, Arc<serve::Snapshot>)>,
}

async fn event_loop(
    ctx: &mut Loop<'_>,
    workers: &mut Workers,
    scrapes: Option<mpsc::Receiver<serve::Scrape>>,
    attach: Arc<tokio::sync::Notify>,
) -> Result<(&'static str, u64)> {
    let mut wakers = Wakers::new(ctx.tracer, ctx.sessions, scrapes, attach)?;
    let end_at = ctx
        .opts
        .duration
        .map(|d| tokio::time::Instant::from_std(ctx.start + d));
    let mut last_render = Instant::now();
    let mut t0: Option<u64> = None;
    let mut last_drain = Instant::now();
    let mut last_alive = Instant::now();
    let mut events: Vec<Event> = Vec::new();
    // Pids whose pidfd reported an exit since the last turn.
    let mut exited: Vec<u32> = Vec::new();
    let mut bad_events = 0u64;
    let reason = loop {
        let mut joined = None;
        // Events do not wake the loop (the probes write them without a
        // wakeup, which would cost the target more than the hit itself,
        // unless the ring buffer is a quarter full or a GC cycle is due for
        // a sample), so it wakes at least every IDLE_WAIT, when a pending
        // sample is due, and for its own periodic work.
        // The live view only while the console takes it: a broken one is
        // never rendered again, and its deadline would stay in the past.
        let render = ctx
            .console
            .broken
            .is_none()
            .then_some((last_render, ctx.opts.interval));
        let periodic = [render, Some((last_drain, WRITES_DRAIN))];
        let wait = ctx
            .sessions
            .iter()
            .filter_map(sample_wait)
            .chain(
                periodic
                    .iter()
                    .flatten()
                    .map(|(at, every)| every.saturating_sub(at.elapsed())),
            )
            .chain(ctx.fleet.as_ref().map(|f| f.scan_wait(Instant::now())))
            .fold(IDLE_WAIT, Duration::min);
        tokio::select! {
            biased;
            _ = wakers.sigint.recv() => break "interrupted",
            _ = wakers.sigterm.recv() => break "interrupted",
            _ = wakers.sighup.recv() => break "interrupted",
            () = sleep_until(end_at) => break "duration reached",
            Some(j) = workers.join_next() => joined = Some(j),
            ready = wakers.events.readable() => {
                // Cleared before the drain below: an event written after it
                // wakes the loop again.
                if let Ok(mut guard) = ready {
                    guard.clear_ready();
                }
            }
            Some(pid) = wakers.exited.recv() => exited.push(pid),
            Some(req) = next_scrape(wakers.scrapes.as_mut()) => answer(ctx, req),
            () = log_readable(wakers.bpf_log.as_ref()) => {}
            () = wakers.attach.notified() => {}
            () = tokio::time::sleep(wait) => {}
        }
        if let Some(log) = wakers.bpf_log.as_mut() {
            log.get_mut().flush();
        }
        ctx.tracer.drain(|b| match decode(b) {
            Ok(e) => events.push(e),
            Err(_) => bad_events += 1,
        });
        for ev in events.drain(..) {
            if let Event::Exec(h) = ev {
                if let Some(f) = ctx.fleet.as_mut() {
                    f.exec_seen(h.tgid);
                }
                continue;
            }
            if let Some(s) = ctx
                .sessions
                .iter_mut()
                .find(|s| s.target.pid == ev.tgid() && s.ended.is_none())
            {
                on_event(s, ctx.tracer, &ev, &mut t0);
            }
        }
        // A burst (100,000 maps made at once) leaves a large buffer behind.
        if events.capacity() > EVENTS_KEPT {
            events.shrink_to(EVENTS_KEPT);
        }
        // A job's result is applied after the events written before it
        // ended: the keys a snapshot read had their finalizers set before
        // they were inserted, and those events are now counted.
        if let Some(j) = joined {
            job_done(workers, ctx.sessions, ctx.tracer, &ctx.clocks, j)?;
        }
        for s in ctx.sessions.iter_mut() {
            if s.ended.is_none() {
                poll_gc(s, &mut t0, false);
                note_pauses(s);
                serve_attaches(s, ctx.tracer);
                if let Some(job) = sample_due(s) {
                    spawn_job(workers, &ctx.clocks, s, job);
                }
                if let Some(from) = s
                    .clock
                    .gc_wake_update(Instant::now(), now_ns(), s.gc_wake_written)
                    .filter(|_| s.gc_poll.is_none())
                {
                    if let Err(e) = ctx.tracer.set_gc_wake(s.target.pid, from) {
                        // Not retried: the cycles are still read at each
                        // turn of the loop, only later.
                        let pid = s.target.pid;
                        ctx.console.emit(|w| {
                            writeln!(w, "mapleak-trace: warning: pid {pid}: {e:#}; GC cycles will be read up to {IDLE_WAIT:?} late")
                        });
                    }
                    s.gc_wake_written = from;
                }
            }
        }
        if last_drain.elapsed() >= WRITES_DRAIN {
            last_drain = Instant::now();
            let writes = ctx.tracer.drain_writes();
            if !writes.is_empty() {
                for s in ctx.sessions.iter_mut() {
                    s.discovered_by_writes +=
                        writes::apply_writes(&mut s.model, s.target.pid, &writes);
                }
            }
        }
        // An exit is seen at once through the pidfd (it wakes the loop with
        // the pid); every process is checked every ALIVE_CHECK besides
        // (without a pidfd, Linux < 5.3, /proc is read), not at every turn:
        // with many processes traced, a poll of each pidfd per turn was a
        // tenth of the tracer's CPU.
        let proc_check = last_alive.elapsed() >= ALIVE_CHECK;
        if proc_check {
            last_alive = Instant::now();
        }
        for s in ctx.sessions.iter_mut() {
            if s.ended.is_none()
                && (proc_check || exited.contains(&s.target.pid))
                && !s.target.alive()
            {
                s.ended = Some("target exited".to_owned());
                lock(&s.budget).ended = true;
            }
        }
        exited.clear();
        if ctx.fleet.is_some() {
            let_go_of_exited(ctx);
            scan_and_attach(ctx, &wakers.exit_tx);
        }
        if last_render.elapsed() >= ctx.opts.interval && ctx.console.broken.is_none() {
            last_render = Instant::now();
            render_live(
                ctx.sessions,
                ctx.tracer,
                ctx.console,
                ctx.opts.top,
                ctx.start,
            );
        }
        if ctx.fleet.is_none() && ctx.sessions.iter().all(|s| s.ended.is_some()) {
            break "target exited";
        }
    };
    if let Some(log) = wakers.bpf_log.as_mut() {
        log.get_mut().flush();
    }
    Ok((reason, bad_events))
}

/// The next scrape's request (never, without an endpoint).
async fn next_scrape(rx: Option<&mut mpsc::Receiver<serve::Scrape>>) -> Option<serve::Scrape> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Answers a scrape with a snapshot of every traced process: their reports
/// as the live view builds them (from the model; no read of the targets'
/// memory), the tracer's own cost. A snapshot is reused by the scrapes
/// that come within [`serve::reuse_for`] its build time, so that building
/// them takes at most 1% of one CPU however often the endpoint is scraped.
fn answer(ctx: &mut Loop<'_>, req: serve::Scrape) {
    let now = Instant::now();
    if let Some((at, snap)) = &ctx.last_snapshot
        && now.duration_since(*at) < serve::reuse_for(snap.build_s)
    {
        let _ = req.reply.send(snap.clone());
        return;
    }
    let el = ctx.start.elapsed().as_secs_f64();
    let mut processes = Vec::with_capacity(ctx.sessions.len());
    for s in ctx.sessions.iter_mut() {
        let (governed_on, window_open, large_growth_on) = {
            let b = lock(&s.budget);
            (
                b.gov.creation_on,
                b.gov.window_open.is_some(),
                b.gov.large.on,
            )
        };
        processes.push(serve::Process {
            report: build_report(s, ctx.tracer, el),
            governed_on,
            window_open,
            large_growth_on,
        });
    }
    let (cpu_s, max_rss) = self_usage();
    let previous = ctx.last_snapshot.as_ref().map(|(_, s)| s.build_s);
    let snap = Arc::new(serve::Snapshot {
        processes,
        tracer_cpu_s: cpu_s,
        tracer_max_rss_bytes: max_rss,
        tracer_rss_bytes: serve::current_rss(),
        build_s: now.elapsed().as_secs_f64(),
        previous_build_s: previous,
        scans: ctx.fleet.as_ref().map(fleet::Fleet::counts),
        duration_s: el,
    });
    ctx.last_snapshot = Some((now, snap.clone()));
    let _ = req.reply.send(snap);
}

/// `--all`: lets go of the processes that exited: their probes detached,
/// their budget no longer checked, their session (and memory) dropped,
/// with one line saying so and what they were last judged.
fn let_go_of_exited(ctx: &mut Loop<'_>) {
    let el = ctx.start.elapsed().as_secs_f64();
    let mut k = 0;
    let mut let_go = false;
    while k < ctx.sessions.len() {
        if ctx.sessions[k].ended.is_none() {
            k += 1;
            continue;
        }
        let mut s = ctx.sessions.swap_remove(k);
        let line = exit_line(&s, el);
        ctx.console.emit(|w| writeln!(w, "{line}"));
        ctx.governor.remove(&s.budget);
        let links = session_links(&mut s, ctx.tracer);
        ctx.detaching.push(crate::bpf::close_links(links));
        ctx.tracer.unconfigure(s.target.pid);
        ctx.tracer.release(s.probes.iter().map(|p| p.probe.id));
        ctx.last_snapshot = None;
        let_go = true;
    }
    if let_go && let Some(f) = ctx.fleet.as_mut() {
        f.trim();
    }
}

/// `--all`: scans for new processes when a scan is due, and attaches them.
fn scan_and_attach(ctx: &mut Loop<'_>, exit_tx: &mpsc::UnboundedSender<u32>) {
    let Some(fleet) = ctx.fleet.as_mut() else {
        return;
    };
    let Some(kind) = fleet.due(Instant::now()) else {
        return;
    };
    let traced: std::collections::HashSet<u32> =
        ctx.sessions.iter().map(|s| s.target.pid).collect();
    let room = fleet::MAX_SESSIONS.saturating_sub(ctx.sessions.len());
    let found = fleet.scan(kind, &|pid| traced.contains(&pid), room, &ctx.clocks);
    let clocks = ctx.clocks.clone();
    for f in found {
        // Its share of the node's budget until the governor's thread
        // splits it again (at once: the number of processes changed).
        let rate = ctx.opts.overhead_budget / (ctx.sessions.len() + 1) as f64;
        // Start-up work: debited to no process (see WorkerClocks).
        let (tracer, opts) = (&mut *ctx.tracer, ctx.opts);
        match clocks.run_unbudgeted(|| attach_found(tracer, &f, opts, rate)) {
            Ok(mut s) => {
                if let Some(fleet) = ctx.fleet.as_mut() {
                    fleet.attached(f.pid);
                }
                s.clock.timer_every = ctx.opts.interval.max(MIN_SAMPLE_GAP);
                s.all_maps = ctx.opts.all_maps;
                ctx.governor.add(s.budget.clone());
                // Its governed probes: checked from their first hit.
                serve_attaches(&mut s, ctx.tracer);
                attached_line(ctx.console, &s, "Ctrl-C or SIGTERM");
                watch_exit(exit_tx, &s);
                ctx.sessions.push(s);
                ctx.last_snapshot = None;
            }
            Err(e) => {
                if let Some(fleet) = ctx.fleet.as_mut() {
                    fleet.attach_failed(f.pid, &e, Instant::now());
                }
            }
        }
    }
}

/// Attaches a process the scan found, if it still runs the executable
/// the scan inspected, with a budget of `rate`.
fn attach_found(
    tracer: &mut Tracer,
    f: &fleet::Found,
    opts: &TraceOptions,
    rate: f64,
) -> Result<Session> {
    let mut binaries = Binaries::new();
    binaries.insert(f.dev_ino, f.info.clone());
    let s = attach_session(tracer, &mut binaries, f.pid, rate, opts.show_keys)?;
    anyhow::ensure!(
        s.target.dev_ino == f.dev_ino,
        "pid {} now runs another executable",
        f.pid
    );
    Ok(s)
}

/// One line for a process let go of: how long it was traced and its last
/// verdicts.
fn exit_line(s: &Session, elapsed: f64) -> String {
    let mut counts = [0u64; 4];
    for m in s.model.maps.values() {
        counts[match m.verdict() {
            Verdict::Growing => 0,
            Verdict::Bloated => 1,
            Verdict::Stable => 2,
            Verdict::Idle => 3,
        }] += 1;
    }
    let mut line = format!(
        "mapleak-trace: pid {} ({}) exited: let go of at {elapsed:.1}s; last verdicts: {} maps tracked, {} growing, {} bloated, {} stable, {} idle, {} families growing",
        s.target.pid,
        s.target.exe_display,
        s.model.maps.len(),
        counts[0],
        counts[1],
        counts[2],
        counts[3],
        s.families.growing(),
    );
    if let Some(m) = s
        .model
        .maps
        .values()
        .filter(|m| m.verdict() == Verdict::Growing && !m.is_sync_generation())
        .max_by_key(|m| m.last().map_or(0, |x| x.len))
    {
        let tn = s
            .types
            .get(&m.type_ptr)
            .map(|t| t.0.as_str())
            .or_else(|| m.type_name())
            .unwrap_or("unknown");
        line += &format!("; top: {tn} len {}", m.last().map_or(0, |x| x.len));
    }
    line
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
