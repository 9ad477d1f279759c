//! `budget`: the governor's thread. It keeps what the tracer costs a target
//! (its probes and the tracer process's own CPU) within `--overhead-budget`,
//! on its own clock: no sample, key snapshot or report of the main loop
//! delays a pause or a window's close.
//!
//! Every check it reads the probes' hit counts (its own descriptor of the
//! map), debits their cost and the tracer's CPU since the last check
//! ([`Governor::account`]), and closes what must close at once: the
//! governed probes when the credit is gone, the write window when it is
//! gone or the window is over. Attaching is never urgent (a late attach
//! costs nothing), and needs the loaded programs: it asks the main loop
//! ([`Budget::wants`]), which attaches between its other work and hands
//! the links back ([`Budget::install`]).
//!
//! The links of the governed and window classes live here, so that this
//! thread can close them; the always-on probes' links stay with the tracer.

use std::{
    collections::VecDeque,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use crate::{
    bpf::{AttachedProbe, HitsReader, Link, ProbeRequest, Tracer},
    governor::{Actions, Governor, InFlight},
    plan::ProbeClass,
    sample::Memory,
};

/// How long the budget is checked every [`crate::governor::PERIOD_WINDOW`]
/// after a group is attached, and while the creation probes cost more than
/// the budget.
pub const FAST_AFTER_ATTACH: Duration = Duration::from_millis(100);

/// Node-wide mode: how often the node's budget is split again among the
/// processes ([`crate::governor::split_rates`]), and over how long the
/// CPU each uses is averaged for it.
pub const SPLIT_EVERY: Duration = Duration::from_secs(1);
pub const SPLIT_WINDOW: Duration = Duration::from_secs(5);

/// The CPU a traced process uses, from its `/proc/PID/stat` (utime +
/// stime), read every [`SPLIT_EVERY`] and averaged over [`SPLIT_WINDOW`].
/// The file is opened once, with the budget: a reading never comes from
/// another process that reused the pid (it fails once the process is gone).
#[derive(Debug, Default)]
struct CpuMeter {
    stat: Option<std::fs::File>,
    /// Readings (when, CPU seconds), the oldest the newest one at least
    /// [`SPLIT_WINDOW`] old.
    samples: VecDeque<(Instant, f64)>,
}

impl CpuMeter {
    fn open(pid: u32) -> Self {
        Self {
            stat: std::fs::File::open(format!("/proc/{pid}/stat")).ok(),
            samples: VecDeque::new(),
        }
    }

    /// CPUs the process used over the last [`SPLIT_WINDOW`] (at the first
    /// reading: since it started); `None` when unreadable.
    fn read(&mut self, now: Instant) -> Option<f64> {
        use std::os::unix::fs::FileExt as _;
        let f = self.stat.as_ref()?;
        let mut buf = [0u8; 1024];
        let n = f.read_at(&mut buf, 0).ok()?;
        let (cpu, started) = parse_stat(buf.get(..n)?)?;
        self.samples.push_back((now, cpu));
        while self.samples.len() > 2 && now.duration_since(self.samples[1].0) >= SPLIT_WINDOW {
            self.samples.pop_front();
        }
        let (t0, c0) = self.samples[0];
        let dt = now.duration_since(t0).as_secs_f64();
        if dt > 0.0 {
            return Some(((cpu - c0) / dt).max(0.0));
        }
        // A process started within the clocks' resolution (a tick) has no
        // figure yet.
        let age = uptime_s()? - started;
        (age > 0.05).then(|| (cpu / age).max(0.0))
    }
}

/// User + system CPU seconds and start time (seconds after boot) from the
/// text of a `/proc/PID/stat`.
fn parse_stat(raw: &[u8]) -> Option<(f64, f64)> {
    let text = std::str::from_utf8(raw).ok()?;
    // The fields after the command name (which may hold spaces and `)`):
    // state is field 3, utime 14, stime 15, starttime 22.
    let rest = text.get(text.rfind(')')? + 1..)?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let num = |i: usize| f.get(i).and_then(|x| x.parse::<f64>().ok());
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (hz > 0.0).then_some(((num(11)? + num(12)?) / hz, num(19)? / hz))
}

/// Seconds since boot (`/proc/uptime`).
fn uptime_s() -> Option<f64> {
    std::fs::read_to_string("/proc/uptime")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Most CPUs a detaching group is assumed to cost (the target's threads
/// trapping at once).
const MAX_TAIL_RATE: f64 = 2.0;

/// Detaches of one group still in progress (a thread may close the links
/// of both groups, so handles are shared).
#[derive(Debug, Default)]
pub struct Detaching(Vec<Arc<JoinHandle<()>>>);

impl Detaching {
    fn busy(&mut self) -> bool {
        self.0.retain(|h| !h.is_finished());
        !self.0.is_empty()
    }

    /// Waits until every close has finished.
    pub fn join(&mut self) {
        for h in self.0.drain(..) {
            match Arc::try_unwrap(h) {
                Ok(h) => {
                    let _ = h.join();
                }
                Err(h) => {
                    while !h.is_finished() {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                }
            }
        }
    }

    /// Adds closes in progress (and forgets those finished: a node-wide
    /// trace lets go of processes for as long as it runs).
    pub fn push(&mut self, h: Option<JoinHandle<()>>) {
        self.0.retain(|h| !h.is_finished());
        self.0.extend(h.map(Arc::new));
    }
}

/// The breakpoints of a detached group that are still in the target's code.
///
/// When a window closes, the program stops running at once but the kernel
/// removes each breakpoint only when it reaches that link (see
/// [`crate::bpf::close_links`]); until then every call still traps, costing
/// the target ~0.8 µs, uncounted. The tail is measured, not guessed: the
/// instruction bytes at each probe address are read back from the target
/// (a uprobe is a breakpoint written into the target's copy of the page)
/// until the original bytes are back.
#[derive(Debug, Default)]
struct Tail {
    /// Address, original bytes and cost rate (CPUs, over the last check
    /// before the close) of each breakpoint not yet removed: debited while
    /// it is still there.
    sites: Vec<(u64, [u8; 4], f64)>,
    /// When the links began to close.
    since: Option<Instant>,
}

impl Tail {
    /// Drops the sites whose original bytes are back (or that can no
    /// longer be read: the process is gone). True while some remain.
    fn poll(&mut self, mem: &Memory) -> bool {
        self.sites.retain(|&(addr, orig, _)| {
            let mut b = [0u8; 4];
            mem.read(addr, &mut b) && b != orig
        });
        !self.sites.is_empty()
    }

    /// Cost rate (CPUs) of the breakpoints still there.
    fn rate(&self) -> f64 {
        self.sites
            .iter()
            .map(|s| s.2)
            .sum::<f64>()
            .min(MAX_TAIL_RATE)
    }
}

/// One probe as the budget sees it.
#[derive(Debug, Clone)]
pub struct ProbeCost {
    /// Global probe id (index into the hit counts).
    pub id: u32,
    /// How the budget governs it.
    pub class: ProbeClass,
    /// Estimated cost of one hit (seconds of target CPU).
    pub hit_cost: f64,
    /// Run-time address of the probed instruction.
    pub addr: u64,
    /// Its bytes before any probe was attached (`None`: unreadable).
    pub orig: Option<[u8; 4]>,
}

/// Index of a class in the per-class arrays: governed 0, window 1.
fn slot(class: ProbeClass) -> usize {
    usize::from(class == ProbeClass::Window)
}

/// The budget of one traced process, shared by the governor's thread and
/// the main loop.
#[derive(Debug)]
pub struct Budget {
    /// Process id.
    pub pid: u32,
    /// The decisions and the credit.
    pub gov: Governor,
    /// Probes, parallel to the session's.
    pub probes: Vec<ProbeCost>,
    /// Hits of each probe at the last check.
    pub last_hits: Vec<u64>,
    /// Cost rate (CPUs) of each probe over the last check.
    last_site_rate: Vec<f64>,
    /// Attached links of the governed and window classes: a uprobe_multi
    /// group or one probe, with the probe indices behind it.
    links: Vec<(ProbeClass, Link, Vec<usize>)>,
    /// Breakpoints of the governed and window classes still in the
    /// target's code after their links were closed.
    tails: [Tail; 2],
    /// Closes of the governed and window classes in progress.
    detaching: [Detaching; 2],
    /// Cost rate (CPUs) of the governed and window classes over the last check.
    last_rate: [f64; 2],
    /// Attaches asked of the main loop, and those it is doing.
    want: [bool; 2],
    attaching: [bool; 2],
    /// Check closely until then (a group was just attached).
    fast_until: Instant,
    last_check: Instant,
    /// The tracer's own CPU debited (seconds).
    pub tracer_cpu_debited: f64,
    /// Tracer CPU seconds spent reading this process's memory (its samples'
    /// worker threads, [`WorkerClocks`]) since the governor's last check:
    /// debited to it alone.
    pub own_cpu: f64,
    /// When the governed probes were last paused (`CLOCK_MONOTONIC` ns).
    pub paused_ns: u64,
    /// No more checks: the process is gone or the trace is over.
    pub ended: bool,
    mem: Memory,
    /// The CPU the process uses (node-wide mode splits the budget by it).
    cpu: CpuMeter,
}

impl Budget {
    /// The budget of `pid` at `rate` (share of one CPU), with the governed
    /// probes about to be attached.
    #[must_use]
    pub fn new(pid: u32, rate: f64, probes: Vec<ProbeCost>) -> Self {
        Self::with_memory(pid, rate, probes, Memory::new(pid))
    }

    /// As [`Budget::new`], reading the target's code (to see a closed
    /// probe's breakpoints gone) through `mem`: give it the target's pidfd,
    /// so a reused pid is never read.
    pub fn with_memory(pid: u32, rate: f64, probes: Vec<ProbeCost>, mem: Memory) -> Self {
        let now = Instant::now();
        Self {
            pid,
            gov: Governor::new(rate),
            last_hits: vec![0; probes.len()],
            last_site_rate: vec![0.0; probes.len()],
            probes,
            links: Vec::new(),
            tails: [Tail::default(), Tail::default()],
            detaching: [Detaching::default(), Detaching::default()],
            last_rate: [0.0; 2],
            want: [false; 2],
            attaching: [false; 2],
            fast_until: now + FAST_AFTER_ATTACH,
            last_check: now,
            tracer_cpu_debited: 0.0,
            own_cpu: 0.0,
            paused_ns: 0,
            ended: false,
            cpu: CpuMeter::open(pid),
            mem,
        }
    }

    /// CPUs the process used over the last [`SPLIT_WINDOW`] (since it
    /// started, at the first call): 0 when it cannot be read.
    fn cpu_used(&mut self, now: Instant) -> f64 {
        self.cpu.read(now).unwrap_or(0.0)
    }

    /// Classes the main loop should attach now; they count as being
    /// attached until [`Budget::install`].
    pub fn wants(&mut self) -> Vec<ProbeClass> {
        let mut out = Vec::new();
        for class in [ProbeClass::Governed, ProbeClass::Window] {
            let i = slot(class);
            if std::mem::take(&mut self.want[i]) {
                self.attaching[i] = true;
                out.push(class);
            }
        }
        out
    }

    /// Takes the links the main loop attached for `class`. `initial`: the
    /// first attach of the governed probes (not a resume).
    pub fn install(&mut self, class: ProbeClass, links: Vec<(Link, Vec<usize>)>, initial: bool) {
        let now = Instant::now();
        self.attaching[slot(class)] = false;
        self.links
            .extend(links.into_iter().map(|(l, idx)| (class, l, idx)));
        if !initial {
            match class {
                ProbeClass::Window => self.gov.opened(now),
                _ => self.gov.resumed(now),
            }
        }
        // Their rate is unknown until measured: check it closely at first.
        self.fast_until = now + FAST_AFTER_ATTACH;
    }

    /// Whether `class` has links attached.
    fn attached(&self, class: ProbeClass) -> bool {
        self.links.iter().any(|l| l.0 == class)
    }

    /// Reads `hits`, debits the probes' cost and `tracer_cpu` seconds of the
    /// tracer's own CPU, and closes what must close.
    pub fn check(&mut self, hits: &[u64], tracer_cpu: f64, now: Instant) {
        let dt = now.duration_since(self.last_check).as_secs_f64();
        let mut cost = tracer_cpu;
        self.tracer_cpu_debited += tracer_cpu;
        let mut by_class = [0.0; 2];
        for (i, p) in self.probes.iter().enumerate() {
            let h = hits.get(p.id as usize).copied().unwrap_or(0);
            let d = h.saturating_sub(self.last_hits[i]);
            self.last_hits[i] = h;
            let c = d as f64 * p.hit_cost;
            if dt > 0.0 {
                self.last_site_rate[i] = c / dt;
            }
            cost += c;
            if p.class != ProbeClass::Always {
                by_class[slot(p.class)] += c;
            }
        }
        // Breakpoints of a closed group still trap until the kernel removes
        // them, with the program no longer counting: debited at the rate the
        // group cost when it was closed, for as long as they are still there.
        let dbg = crate::app::debug_timing();
        for t in &mut self.tails {
            if t.sites.is_empty() {
                continue;
            }
            let rate = t.rate();
            cost += rate * dt;
            let before = t.sites.len();
            let left = t.poll(&self.mem);
            if dbg && t.sites.len() != before {
                eprintln!(
                    "tail: {} of {before} breakpoints gone {:?} after close (debiting {rate:.2} CPUs)",
                    before - t.sites.len(),
                    t.since.map(|at| at.elapsed()).unwrap_or_default(),
                );
            }
            if !left {
                t.since = None;
            }
        }
        if dt > 0.0 {
            self.last_rate = by_class.map(|c| (c / dt).min(MAX_TAIL_RATE));
        }
        self.last_check = now;
        self.gov.account(dt, cost);

        let busy_c = self.detaching[0].busy() || self.attaching[0];
        let busy_w = self.detaching[1].busy() || self.attaching[1];
        let have_window = self.probes.iter().any(|p| p.class == ProbeClass::Window);
        let a = self.gov.decide(now, busy_c, busy_w, have_window);
        let a = self.gov.sequence(
            a,
            InFlight {
                busy_creation: busy_c,
                busy_window: busy_w,
                creation_tail: !self.tails[0].sites.is_empty(),
                window_hot_tail: self.tails[1].rate() > 0.0,
                creation_rate: self.last_rate[0],
            },
        );
        if dbg && a != Actions::default() {
            eprintln!(
                "gov {:.1} ms {a:?} credit {:.4}",
                crate::app::now_ns() as f64 / 1e6,
                self.gov.credit
            );
        }
        let close_w = a.close_window && self.gov.window_open.is_some();
        let pause_c = a.pause_creation && self.gov.creation_on;
        match (close_w, pause_c) {
            (true, true) => self.detach(&[ProbeClass::Window, ProbeClass::Governed]),
            (true, false) => self.detach(&[ProbeClass::Window]),
            (false, true) => self.detach(&[ProbeClass::Governed]),
            (false, false) => {}
        }
        if close_w {
            self.gov.closed(now);
            if dbg {
                eprintln!(
                    "window closed at {:.1} ms",
                    crate::app::now_ns() as f64 / 1e6
                );
            }
        }
        if pause_c {
            self.gov.paused(now);
            self.paused_ns = crate::app::now_ns();
        }
        if a.open_window && !self.attaching[1] && !self.attached(ProbeClass::Window) {
            self.want[1] = true;
        }
        if a.resume_creation && !self.attaching[0] && !self.attached(ProbeClass::Governed) {
            self.want[0] = true;
        }
    }

    /// Closes the links of the given classes on one thread, busiest probe
    /// first whatever its class, and starts measuring their tails.
    fn detach(&mut self, classes: &[ProbeClass]) {
        let rate = |i: usize| self.last_site_rate.get(i).copied().unwrap_or(0.0);
        let mut links: Vec<(f64, Link)> = Vec::new();
        let mut members = Vec::new();
        let mut k = 0;
        while k < self.links.len() {
            if classes.contains(&self.links[k].0) {
                let (_, link, idx) = self.links.swap_remove(k);
                links.push((idx.iter().map(|&i| rate(i)).sum(), link));
                members.extend(idx);
            } else {
                k += 1;
            }
        }
        links.sort_by(|a, b| b.0.total_cmp(&a.0));
        let mut sites: [Vec<_>; 2] = [Vec::new(), Vec::new()];
        for i in members {
            let p = &self.probes[i];
            if let Some(o) = p.orig {
                sites[slot(p.class)].push((p.addr, o, rate(i)));
            }
        }
        let h = crate::bpf::close_links(links.into_iter().map(|l| l.1).collect()).map(Arc::new);
        for &c in classes {
            let i = slot(c);
            self.tails[i] = Tail {
                sites: std::mem::take(&mut sites[i]),
                since: Some(Instant::now()),
            };
            if let Some(h) = &h {
                self.detaching[i].0.push(h.clone());
            }
        }
    }

    /// How soon this budget must be checked again. Busy breakpoints still
    /// being removed, probes just attached (their rate is not known yet) and
    /// creation probes costing more than the budget: every few milliseconds,
    /// so that the overshoot is small and tails are measured closely. An
    /// open window: as often as its last rate needs
    /// ([`crate::governor::window_period`]). Governed probes on and costing
    /// a quarter of the budget or more: every 20 ms, so that a burst is seen
    /// soon; otherwise every 100 ms (each check costs the tracer's CPU).
    #[must_use]
    pub fn period(&self, now: Instant) -> Duration {
        use crate::governor::{PERIOD, PERIOD_CREATION, PERIOD_WINDOW, window_period};
        if self.tails.iter().any(|t| t.rate() > 0.0)
            || now < self.fast_until
            || (self.gov.creation_on && self.last_rate[0] > self.gov.rate)
        {
            PERIOD_WINDOW
        } else if self.gov.window_open.is_some() {
            window_period(self.last_rate[1])
        } else if self.gov.creation_on && self.last_rate[0] > self.gov.rate / 4.0 {
            PERIOD_CREATION
        } else {
            PERIOD
        }
    }

    /// Every link of the governed and window classes, busiest first, for
    /// the final detach; waits for closes already in progress.
    pub fn take_all_links(&mut self) -> Vec<Link> {
        let rate = |i: usize| self.last_site_rate.get(i).copied().unwrap_or(0.0);
        let mut links: Vec<(f64, Link)> = self
            .links
            .drain(..)
            .map(|(_, l, idx)| (idx.iter().map(|&i| rate(i)).sum(), l))
            .collect();
        links.sort_by(|a, b| b.0.total_cmp(&a.0));
        for d in &mut self.detaching {
            d.join();
        }
        links.into_iter().map(|l| l.1).collect()
    }

    /// Whether the tracer's optional work (key reads) may spend credit now
    /// ([`Governor::spare_for_tracer`]).
    #[must_use]
    pub fn spare_for_tracer(&self) -> bool {
        let have_window = self.probes.iter().any(|p| p.class == ProbeClass::Window);
        self.gov.spare_for_tracer(Instant::now(), have_window)
    }

    /// Cost rate (CPUs) of probe `i` over the last check.
    #[must_use]
    pub fn site_rate(&self, i: usize) -> f64 {
        self.last_site_rate.get(i).copied().unwrap_or(0.0)
    }
}

/// A session's probe.
#[derive(Debug)]
pub struct SessionProbe {
    /// The probe (its id, program and link, if attached on its own).
    pub probe: AttachedProbe,
    /// The probed function.
    pub function: String,
    /// Link-time address of the probed instruction.
    pub address: u64,
}

/// Attaches the probes of `class` for the main loop: one uprobe_multi link
/// per program where the kernel has them, else one perf link per probe
/// (taken out of the tracer, so that the governor's thread can close it).
pub fn attach_links(
    tracer: &mut Tracer,
    exe: &std::path::Path,
    pid: u32,
    probes: &mut [SessionProbe],
    reqs: &[ProbeRequest],
    costs: &[ProbeCost],
    class: ProbeClass,
) -> anyhow::Result<Vec<(Link, Vec<usize>)>> {
    let mut by_prog: Vec<(&'static str, Vec<usize>)> = Vec::new();
    for i in (0..probes.len()).filter(|&i| costs[i].class == class) {
        let prog = probes[i].probe.program;
        match by_prog.iter_mut().find(|(p, _)| *p == prog) {
            Some((_, v)) => v.push(i),
            None => by_prog.push((prog, vec![i])),
        }
    }
    let mut out = Vec::new();
    for (prog, idx) in by_prog {
        let sites: Vec<(u64, u32)> = idx
            .iter()
            .map(|&i| (reqs[i].file_offset, probes[i].probe.id))
            .collect();
        match tracer.attach_group(exe, pid, prog, &sites) {
            Ok(link) => out.push((link, idx)),
            Err(e) => {
                if crate::app::debug_timing() {
                    eprintln!("group {prog}: {e:#}; one perf link per probe");
                }
                for i in idx {
                    tracer.reattach(exe, pid, &mut probes[i].probe, &reqs[i])?;
                    if let Some(l) = tracer.take_link(&mut probes[i].probe) {
                        out.push((l, vec![i]));
                    }
                }
            }
        }
    }
    Ok(out)
}

/// CPU time of this process so far (all threads), seconds.
fn self_cpu_s() -> f64 {
    // SAFETY: getrusage fills the struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer to a rusage.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &raw mut ru) } != 0 {
        return 0.0;
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// The budgets the governor's thread checks: added and removed while it
/// runs (a node-wide trace attaches and lets go of processes).
pub type Budgets = Arc<Mutex<Vec<Arc<Mutex<Budget>>>>>;

/// CPU clock of the calling thread (`pthread_getcpuclockid`).
fn own_thread_clock() -> Option<libc::clockid_t> {
    let mut cid: libc::clockid_t = 0;
    // SAFETY: pthread_self is the calling thread; cid is a valid out pointer.
    (unsafe { libc::pthread_getcpuclockid(libc::pthread_self(), &raw mut cid) } == 0).then_some(cid)
}

/// Seconds on CPU clock `cid`.
fn clock_s(cid: libc::clockid_t) -> f64 {
    // SAFETY: clock_gettime fills the timespec we pass.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer; `cid` is the clock of a live thread (see
    // `WorkerClocks`).
    if unsafe { libc::clock_gettime(cid, &raw mut ts) } != 0 {
        return 0.0;
    }
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

/// The CPU clocks of the worker threads while they read a process's
/// memory, with that process's budget: the governor's thread debits each
/// one's CPU to its process as it is spent ([`Budget::own_cpu`]). A thread
/// is listed only inside [`WorkerClocks::run`] (so its clock is valid
/// whenever the list is read, under its lock).
#[derive(Debug, Default)]
pub struct WorkerClocks(Mutex<Vec<WorkerClock>>);

/// A worker thread's CPU clock, its reading at the last debit, and the
/// budget it is debited to.
type WorkerClock = (libc::clockid_t, f64, Arc<Mutex<Budget>>);

impl WorkerClocks {
    fn list(&self) -> std::sync::MutexGuard<'_, Vec<WorkerClock>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Runs `f` on this thread with its CPU debited to `budget`.
    pub fn run<T>(&self, budget: Arc<Mutex<Budget>>, f: impl FnOnce() -> T) -> T {
        let Some(cid) = own_thread_clock() else {
            return f();
        };
        self.list().push((cid, clock_s(cid), budget));
        let out = f();
        let mut l = self.list();
        if let Some(i) = l.iter().position(|e| e.0 == cid) {
            let (_, last, b) = l.swap_remove(i);
            let spent = (clock_s(cid) - last).max(0.0);
            drop(l);
            lock_budget(&b).own_cpu += spent;
        }
        out
    }

    /// Debits the CPU the listed threads spent since the last call to
    /// their budgets.
    fn collect(&self) {
        for (cid, last, b) in self.list().iter_mut() {
            let now = clock_s(*cid);
            lock_budget(b).own_cpu += (now - *last).max(0.0);
            *last = now;
        }
    }
}

/// Node-wide mode: splits `node` among the live `budgets`
/// ([`crate::governor::split_rates`]) when [`SPLIT_EVERY`] has passed since
/// `last` (when, among how many) or the number of live budgets changed;
/// returns when it last split.
fn split(
    node: f64,
    budgets: &[Arc<Mutex<Budget>>],
    last: Option<(Instant, usize)>,
    now: Instant,
) -> Option<(Instant, usize)> {
    let live: Vec<&Arc<Mutex<Budget>>> = budgets.iter().filter(|b| !lock_budget(b).ended).collect();
    if last.is_some_and(|(at, n)| n == live.len() && now.duration_since(at) < SPLIT_EVERY) {
        return last;
    }
    let cpu: Vec<f64> = live.iter().map(|b| lock_budget(b).cpu_used(now)).collect();
    let rates = crate::governor::split_rates(node, &cpu);
    for (b, r) in live.iter().zip(rates) {
        lock_budget(b).gov.set_rate(r);
    }
    Some((now, live.len()))
}

fn lock_budget(b: &Mutex<Budget>) -> std::sync::MutexGuard<'_, Budget> {
    b.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The governor's thread and its stop switch.
#[derive(Debug)]
pub struct GovernorThread {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
    budgets: Budgets,
}

impl GovernorThread {
    /// Starts checking `budgets` with hit counts from `hits`. The tracer's
    /// own CPU is split: what its workers spent reading a process's memory
    /// (read from their thread CPU clocks at every check, [`WorkerClocks`])
    /// is debited to that process, and the rest (the loop, this thread,
    /// scans, scrapes: work for every process at once) among the budgets
    /// still live in proportion to their rates (equal shares when the
    /// rates are equal, as with `--pid`). The two figures are read a
    /// moment apart; the difference is carried, so that over time the
    /// debits add up to the tracer's CPU, no more.
    ///
    /// `node`: node-wide mode's budget (share of one CPU) for all the
    /// processes together: every [`SPLIT_EVERY`], and whenever a process
    /// comes or goes, each live budget's rate is set to its share
    /// ([`crate::governor::split_rates`] of the CPU each process used over
    /// the last [`SPLIT_WINDOW`]). `None`: each budget keeps its own rate.
    pub fn spawn(
        budgets: Vec<Arc<Mutex<Budget>>>,
        hits: HitsReader,
        workers: Arc<WorkerClocks>,
        node: Option<f64>,
    ) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let shared: Budgets = Arc::new(Mutex::new(budgets));
        let list = shared.clone();
        let handle = std::thread::Builder::new()
            .name("governor".into())
            .spawn(move || {
                let mut cpu0 = self_cpu_s();
                // Shared CPU already debited ahead of the workers' own.
                let mut carry = 0.0f64;
                // Node-wide mode: when the budget was last split, and among
                // how many processes.
                let mut split_at: Option<(Instant, usize)> = None;
                while !flag.load(Ordering::Relaxed) {
                    let now = Instant::now();
                    let counts = hits.read();
                    workers.collect();
                    let cpu = self_cpu_s();
                    let delta = (cpu - cpu0).max(0.0);
                    cpu0 = cpu;
                    // A copy of the list: the loop may add or remove one
                    // while a check runs.
                    let budgets: Vec<Arc<Mutex<Budget>>> = list
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .clone();
                    if let Some(node) = node {
                        split_at = split(node, &budgets, split_at, now);
                    }
                    let (mut live, mut own, mut rates) = (0usize, 0.0f64, 0.0f64);
                    for b in &budgets {
                        if let Ok(b) = b.lock()
                            && !b.ended
                        {
                            live += 1;
                            own += b.own_cpu;
                            rates += b.gov.rate;
                        }
                    }
                    let mut shared = delta + carry - own;
                    carry = shared.min(0.0);
                    shared = shared.max(0.0);
                    // Each budget's part of the shared CPU.
                    let part = |rate: f64| {
                        if rates > 0.0 {
                            shared * rate / rates
                        } else {
                            shared / live.max(1) as f64
                        }
                    };
                    // In the reference machine's time, as the probes'
                    // cost per hit is (`crate::speed`).
                    let scale = crate::speed::slowdown();
                    let mut next = crate::governor::PERIOD;
                    for b in &budgets {
                        let Ok(mut b) = b.lock() else { continue };
                        if b.ended {
                            continue;
                        }
                        // Taken even when the counts could not be read
                        // (as the shared part, it is then not debited).
                        let mine = std::mem::take(&mut b.own_cpu);
                        if !counts.is_empty() {
                            let debit = (mine + part(b.gov.rate)) / scale;
                            b.check(&counts, debit, now);
                        }
                        next = next.min(b.period(Instant::now()));
                    }
                    std::thread::park_timeout(next);
                }
            })?;
        Ok(Self {
            stop,
            handle: Some(handle),
            budgets: shared,
        })
    }

    /// Checks `b` from now on (a process attached while the trace runs).
    pub fn add(&self, b: Arc<Mutex<Budget>>) {
        self.budgets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(b);
        if let Some(h) = &self.handle {
            h.thread().unpark();
        }
    }

    /// Stops checking `b` (a process let go of).
    pub fn remove(&self, b: &Arc<Mutex<Budget>>) {
        self.budgets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|x| !Arc::ptr_eq(x, b));
    }

    /// Stops the thread and waits for it.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            h.thread().unpark();
            let _ = h.join();
        }
    }
}

impl Drop for GovernorThread {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_after_the_command_name() {
        // A command name with a space and a `)`.
        let line =
            b"42 (a b) c) S 1 42 42 0 -1 4194560 100 0 0 0 250 150 0 0 20 0 3 0 5000 1000 200";
        let (cpu, started) = parse_stat(line).unwrap();
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        assert!((cpu - 400.0 / hz).abs() < 1e-9, "{cpu}");
        assert!((started - 5000.0 / hz).abs() < 1e-9, "{started}");
        assert!(parse_stat(b"42 (x) S 1").is_none());
    }

    /// The governor's thread's split: a process that cannot be read (gone)
    /// gets the floor, and a split is made again only when due or when
    /// the number of live budgets changes.
    #[test]
    fn split_among_live_budgets() {
        use crate::governor::SPLIT_FLOOR;
        let node = 0.01;
        let me = Arc::new(Mutex::new(Budget::new(
            std::process::id(),
            node,
            Vec::new(),
        )));
        let gone = Arc::new(Mutex::new(Budget::new(u32::MAX, node, Vec::new())));
        let ended = Arc::new(Mutex::new(Budget::new(u32::MAX, node, Vec::new())));
        lock_budget(&ended).ended = true;
        let list = vec![me.clone(), gone.clone(), ended.clone()];
        let t0 = Instant::now();
        let at = split(node, &list, None, t0);
        assert_eq!(at.map(|a| a.1), Some(2));
        let floor = node * SPLIT_FLOOR;
        assert!((lock_budget(&gone).gov.rate - floor).abs() < 1e-15);
        // This process: at most the whole budget, at least the floor.
        let mine = lock_budget(&me).gov.rate;
        assert!((floor..=node).contains(&mine), "{mine}");
        // Not an ended one's.
        assert!((lock_budget(&ended).gov.rate - node).abs() < 1e-15);
        // Not due yet, same budgets: unchanged.
        lock_budget(&gone).gov.set_rate(0.5);
        assert_eq!(split(node, &list, at, t0), at);
        assert!((lock_budget(&gone).gov.rate - 0.5).abs() < 1e-15);
        // One fewer: split again at once.
        lock_budget(&me).ended = true;
        let again = split(node, &list, at, t0);
        assert_eq!(again.map(|a| a.1), Some(1));
        assert!((lock_budget(&gone).gov.rate - floor).abs() < 1e-15);
    }

    #[test]
    fn cpu_of_this_process() {
        let mut m = CpuMeter::open(std::process::id());
        let t0 = Instant::now();
        // The first reading: since the process started (none for a process
        // younger than a clock tick).
        if let Some(first) = m.read(t0) {
            assert!(first.is_finite() && first >= 0.0, "{first}");
        }
        let spin = Instant::now();
        while spin.elapsed() < Duration::from_millis(200) {
            std::hint::black_box(0u64);
        }
        let later = m.read(Instant::now()).unwrap();
        // About one CPU while it spun (ticks are coarse: loosely).
        assert!(later.is_finite() && (0.0..=4.0).contains(&later), "{later}");
        // Gone: no reading.
        assert!(CpuMeter::open(u32::MAX).read(t0).is_none());
    }
}
