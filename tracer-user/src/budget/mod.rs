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
//! The links of the governed, window and large-growth classes live here,
//! so that this thread can close them; the always-on (GC) probes' links
//! stay with the tracer.

mod clocks;
mod grant;
mod links;
mod tail;
mod thread;

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use crate::{
    bpf::{Link, ProbeSwitch},
    governor::{Actions, Governor, InFlight, Reserve},
    plan::ProbeClass,
    runcost::RunCosts,
    sample::Memory,
};
use clocks::CpuMeter;
pub use clocks::WorkerClocks;
pub use links::{Detaching, SessionProbe, attach_links};
use tail::{MAX_TAIL_RATE, Tail};
pub use tail::{TAIL_PRIOR_S, TailLength};
pub use thread::{Budgets, GovernorThread};

/// How long the budget is checked every [`crate::governor::PERIOD_WINDOW`]
/// after a group is attached, and while the creation probes cost more than
/// the budget.
pub const FAST_AFTER_ATTACH: Duration = Duration::from_millis(100);

/// Node-wide mode: how often the node's budget is split again among the
/// processes ([`crate::governor::split_rates`]), and over how long the
/// CPU each uses is averaged for it.
pub const SPLIT_EVERY: Duration = Duration::from_secs(1);
pub const SPLIT_WINDOW: Duration = Duration::from_secs(5);

/// One probe as the budget sees it.
#[derive(Debug, Clone)]
pub struct ProbeCost {
    /// Global probe id (index into the hit counts).
    pub id: u32,
    /// How the budget governs it.
    pub class: ProbeClass,
    /// Estimated cost of one hit (seconds of target CPU): at first a fixed
    /// price (the trap, or for a write-path probe the trap and its
    /// program), then, once the kernel has measured the program's runs,
    /// [`ProbeCost::trap_cost`] plus the program's mean run
    /// ([`Budget::check`]); both times [`ProbeCost::in_situ`].
    pub hit_cost: f64,
    /// The trap alone: emulated or single-stepped.
    pub trap_cost: f64,
    /// What a hit costs the target as a multiple of the trap and the
    /// program's timed run: [`crate::governor::GOVERNED_IN_SITU`] for the
    /// governed probes, 1 for the others ([`in_situ_factor`]).
    pub in_situ: f64,
    /// The eBPF program that runs at each hit.
    pub program: &'static str,
    /// Run-time address of the probed instruction.
    pub addr: u64,
    /// Its bytes before any probe was attached (`None`: unreadable).
    pub orig: Option<[u8; 4]>,
}

/// What a hit of a `class` probe costs the target as a multiple of its
/// trap and its program's timed run (see [`ProbeCost::in_situ`]).
#[must_use]
pub fn in_situ_factor(class: ProbeClass) -> f64 {
    if class == ProbeClass::Governed {
        crate::governor::GOVERNED_IN_SITU
    } else {
        1.0
    }
}

/// The classes the budget attaches and closes, in the order of their
/// index in the per-class arrays.
const CLASSES: [ProbeClass; 3] = [
    ProbeClass::Governed,
    ProbeClass::Window,
    ProbeClass::LargeGrowth,
];

/// Index of a class in the per-class arrays ([`CLASSES`]); `None` for the
/// always-on probes.
fn slot_of(class: ProbeClass) -> Option<usize> {
    CLASSES.iter().position(|&c| c == class)
}

/// As [`slot_of`], for a class the budget attaches.
fn slot(class: ProbeClass) -> usize {
    slot_of(class).unwrap_or(0)
}

/// Adds `n` runs of `program` to `runs`.
fn add_runs(runs: &mut Vec<(&'static str, u64)>, program: &'static str, n: u64) {
    match runs.iter_mut().find(|(name, _)| *name == program) {
        Some((_, k)) => *k += n,
        None => runs.push((program, n)),
    }
}

/// What each probe's counter gained since `last` (both indexed like
/// `probes`; `now` is indexed by probe id, as the kernel's rows are), as
/// (probe index, gain) for the probes that gained; `last` takes `now`.
fn counts_since(probes: &[ProbeCost], last: &mut [u64], now: &[u64]) -> Vec<(usize, u64)> {
    let mut out = Vec::new();
    for (i, p) in probes.iter().enumerate() {
        let Some(&n) = now.get(p.id as usize) else {
            continue;
        };
        let d = n.saturating_sub(last[i]);
        last[i] = n;
        if d != 0 {
            out.push((i, d));
        }
    }
    out
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
    /// Runs that found a probe switched off, in all, as read so far
    /// ([`Budget::switched_off_since`], at each check).
    pub off_runs_total: u64,
    /// The same runs per probe as last read for the debit
    /// ([`Budget::switched_off_since`]), and of those, the ones not
    /// debited yet (each at its trap's price, [`Budget::check`]): a closed
    /// group's tail, counted in the kernel.
    last_off_seen: Vec<u64>,
    off_pending: Vec<u64>,
    /// The probes' off switches: set before their links are closed, so that
    /// their programs stop at once rather than when the kernel reaches each
    /// link (`None`: the links are closed with their programs running, as in
    /// unit tests).
    switch: Option<ProbeSwitch>,
    /// The governed probes' grant slot in the kernel
    /// ([`tracer_common::ProbeSpec::grant`] minus one; `None`: none, as in
    /// unit tests), set at each check ([`grant`]).
    grant_slot: Option<u32>,
    /// Runs of each probe that found its grant spent, as last read
    /// ([`Budget::denied_since`]).
    last_denied: Vec<u64>,
    /// Of those, per probe, the ones not debited yet (each at its trap's
    /// price, [`Budget::check`]).
    denied_pending: Vec<u64>,
    /// Runs that returned at once (grant spent or probe switched off), per
    /// program, that [`Budget::returned_runs`] has not handed out yet.
    returned_by_program: Vec<(&'static str, u64)>,
    /// Runs that found the governed probes' grant spent, in all.
    pub denied_total: u64,
    /// Cost rate (CPUs) of each probe over the last check.
    last_site_rate: Vec<f64>,
    /// What each probe's breakpoint would cost over the last check with no
    /// program behind it (its hits at the trap's price, CPUs): the rate of
    /// its tail once its link is closed ([`Tail`]).
    last_site_trap_rate: Vec<f64>,
    /// Attached links of the classes in [`CLASSES`]: a uprobe_multi group
    /// or one probe, with the probe indices behind it.
    links: Vec<(ProbeClass, Link, Vec<usize>)>,
    /// Per class of [`CLASSES`]: breakpoints still in the target's code
    /// after their links were closed.
    tails: [Tail; 3],
    /// Per class: how long its tails last, measured ([`TailLength`]),
    /// from which the close reserves are set.
    pub tail_length: [TailLength; 3],
    /// Per class: closes in progress.
    detaching: [Detaching; 3],
    /// Per class: cost rate (CPUs) over the last check.
    last_rate: [f64; 3],
    /// Per class: its breakpoints' rate at the trap's price alone over the
    /// last check (CPUs), which its tail costs after a close.
    last_trap_rate: [f64; 3],
    /// The large-growth probes' cost rate (CPUs), averaged over about
    /// [`LARGE_RATE_TAU_S`] of the time they were attached: what decides
    /// whether pausing them for a debt pays it back.
    large_rate_mean: f64,
    /// Per class: attaches asked of the main loop, and those it is doing.
    want: [bool; 3],
    attaching: [bool; 3],
    /// Per class: the attach asked for is its first ([`Budget::attach_at_start`]),
    /// not a resume.
    first_attach: [bool; 3],
    /// Check closely until then (a group was just attached).
    fast_until: Instant,
    last_check: Instant,
    /// The tracer's own CPU debited (seconds).
    pub tracer_cpu_debited: f64,
    /// The tracer's own CPU debited, as a share of one CPU, averaged over
    /// about [`TRACER_RATE_TAU_S`].
    pub tracer_rate: f64,
    /// Tracer CPU seconds spent reading this process's memory (its samples'
    /// worker threads, [`WorkerClocks`]) since the governor's last check:
    /// debited to it alone.
    pub own_cpu: f64,
    /// When the governed probes were last paused (`CLOCK_MONOTONIC` ns).
    pub paused_ns: u64,
    /// No more checks: the process is gone or the trace is over.
    pub ended: bool,
    /// Mean cost of one run of each of this process's programs, as last
    /// measured (seconds, reference machine; see [`crate::runcost`]).
    pub program_run_s: std::collections::BTreeMap<&'static str, f64>,
    /// Which reading of the run statistics this budget's prices come from
    /// (the governor's thread counts its readings from 1; 0: none yet, as
    /// for a process attached since the last reading).
    pub prices_reading: u64,
    mem: Memory,
    /// The CPU the process uses (node-wide mode splits the budget by it).
    cpu: CpuMeter,
}

/// Time constant of [`Budget::tracer_rate`] (seconds): a sample's CPU,
/// debited at one check, counts for a few seconds.
pub const TRACER_RATE_TAU_S: f64 = 5.0;

/// Time constant of the large-growth probes' mean cost rate (seconds), on
/// which an empty main bucket pauses them
/// (`governor::LARGE_DEBT_PAUSE_MIN_SHARE`). Taken over one check (10-100
/// ms), one burst counted as a rate: a map grown to a million entries
/// splits a thousand tables in 100 ms, a millisecond or two of CPU, which
/// over 10 ms is many times a 1 % budget. With a small debt left by the
/// first write window's tail, that paused them until a quarter of the
/// bucket was back, while the tracer's samples spent part of the refill:
/// in the scenario fixture at 1 %, for 5.5 s of a 6.7 s trace, and a map
/// growing by 5,000 entries a second went unseen. A service that grows
/// large maps steadily (1,000-key maps per request) keeps the mean near
/// its rate of the moment, and they pause as before.
pub const LARGE_RATE_TAU_S: f64 = 2.0;

/// Share of the budget the tracer's own work may take before a budget in
/// debt holds its samples back: below it, the debt is the probes', which
/// the governor pauses, and the samples (what finds a map growing) go on.
pub const SAMPLES_HELD_AT_SHARE: f64 = 0.5;

impl Budget {
    /// Whether the samples should wait: the budget is in debt and the
    /// tracer's own work is at least [`SAMPLES_HELD_AT_SHARE`] of it.
    #[must_use]
    pub fn holds_samples(&self) -> bool {
        self.gov.credit < 0.0 && self.tracer_rate >= SAMPLES_HELD_AT_SHARE * self.gov.rate
    }

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
            off_runs_total: 0,
            last_off_seen: vec![0; probes.len()],
            off_pending: vec![0; probes.len()],
            switch: None,
            grant_slot: None,
            last_denied: vec![0; probes.len()],
            denied_pending: vec![0; probes.len()],
            returned_by_program: Vec::new(),
            denied_total: 0,
            last_site_rate: vec![0.0; probes.len()],
            last_site_trap_rate: vec![0.0; probes.len()],
            probes,
            links: Vec::new(),
            tails: Default::default(),
            tail_length: Default::default(),
            detaching: Default::default(),
            last_rate: [0.0; 3],
            last_trap_rate: [0.0; 3],
            large_rate_mean: 0.0,
            want: [false; 3],
            attaching: [false; 3],
            first_attach: [false; 3],
            fast_until: now + FAST_AFTER_ATTACH,
            last_check: now,
            tracer_cpu_debited: 0.0,
            tracer_rate: 0.0,
            own_cpu: 0.0,
            paused_ns: 0,
            ended: false,
            program_run_s: std::collections::BTreeMap::new(),
            prices_reading: 0,
            cpu: CpuMeter::open(pid),
            mem,
        }
    }

    /// CPUs the process used over the last [`SPLIT_WINDOW`] (since it
    /// started, at the first call): 0 when it cannot be read.
    fn cpu_used(&mut self, now: Instant) -> f64 {
        self.cpu.read(now).unwrap_or(0.0)
    }

    /// Gives the budget the probes' off switches ([`ProbeSwitch`]) and the
    /// governed probes' grant slot, if they have one.
    pub fn set_switch(&mut self, switch: ProbeSwitch, grant_slot: Option<u32>) {
        self.switch = Some(switch);
        self.grant_slot = grant_slot;
    }

    /// Switches the programs of `members` (indices into the probes) off
    /// or on.
    fn switch_probes(&self, members: impl IntoIterator<Item = usize>, off: bool) {
        if let Some(sw) = &self.switch {
            for i in members {
                sw.set(self.probes[i].id, off);
            }
        }
    }

    /// Classes the main loop should attach now; they count as being
    /// attached until [`Budget::install`]. Their probes are switched on
    /// again (they were switched off when their links were closed).
    pub fn wants(&mut self) -> Vec<ProbeClass> {
        let mut out = Vec::new();
        for class in CLASSES {
            let i = slot(class);
            if std::mem::take(&mut self.want[i]) {
                self.attaching[i] = true;
                out.push(class);
            }
        }
        let members: Vec<usize> = (0..self.probes.len())
            .filter(|&i| out.contains(&self.probes[i].class))
            .collect();
        if out.contains(&ProbeClass::Governed) {
            self.write_grant();
        }
        self.switch_probes(members, false);
        out
    }

    /// Runs per program that returned at once since the last call: found
    /// one of this budget's probes switched off or its grant spent, as
    /// [`Budget::switched_off_since`] and [`Budget::denied_since`] took them
    /// at the checks.
    pub fn returned_runs(&mut self) -> Vec<(&'static str, u64)> {
        std::mem::take(&mut self.returned_by_program)
    }

    /// Takes the runs per probe id that found their probe switched off
    /// (`off`, [`crate::bpf::HitsReader::off_runs`], read at each check):
    /// the calls that trapped on a closed group's breakpoints before the
    /// kernel removed them, debited at the trap's price at the next check.
    pub fn switched_off_since(&mut self, off: &[u64]) {
        for (i, d) in counts_since(&self.probes, &mut self.last_off_seen, off) {
            self.off_runs_total += d;
            self.off_pending[i] += d;
            add_runs(&mut self.returned_by_program, self.probes[i].program, d);
        }
    }

    /// Asks the main loop to attach `class` for the first time. A session's
    /// governed and large-growth probes are attached this way, by the loop,
    /// once the governor's thread checks the budget: attached while the
    /// tracer was still starting, they ran unchecked until then (with a
    /// second `--pid` whose executable was being read, creators on Go 1.26
    /// spent 66 ms of CPU in the first 100 ms, 2.6 buckets).
    pub fn attach_at_start(&mut self, class: ProbeClass) {
        let i = slot(class);
        self.want[i] = true;
        self.first_attach[i] = true;
    }

    /// Whether the attach of `class` under way is its first
    /// ([`Budget::attach_at_start`]).
    #[must_use]
    pub fn attaching_first(&self, class: ProbeClass) -> bool {
        self.first_attach[slot(class)]
    }

    /// Takes the links the main loop attached for `class`; `true` when they
    /// resume it (`false`: its first attach, [`Budget::attach_at_start`]).
    pub fn install(&mut self, class: ProbeClass, links: Vec<(Link, Vec<usize>)>) -> bool {
        let now = Instant::now();
        let initial = std::mem::take(&mut self.first_attach[slot(class)]);
        self.attaching[slot(class)] = false;
        self.links
            .extend(links.into_iter().map(|(l, idx)| (class, l, idx)));
        if !initial {
            match class {
                ProbeClass::Window => self.gov.opened(now),
                ProbeClass::LargeGrowth => self.gov.large_resumed(now),
                _ => self.gov.resumed(now),
            }
        }
        // Their rate is unknown until measured: check it closely at first.
        self.fast_until = now + FAST_AFTER_ATTACH;
        !initial
    }

    /// Whether `class` has links attached.
    fn attached(&self, class: ProbeClass) -> bool {
        self.links.iter().any(|l| l.0 == class)
    }

    /// Reads `hits`, debits the probes' cost and `tracer_cpu` seconds of the
    /// tracer's own CPU, and closes what must close. `runs`: the programs'
    /// measured cost per run, when the kernel gives it and this budget has
    /// not had this reading yet (a hit then costs its trap plus its
    /// program's mean run, until the next reading; until a program is
    /// measured, or without it, the fixed price).
    pub fn check(&mut self, hits: &[u64], runs: Option<&RunCosts>, tracer_cpu: f64, now: Instant) {
        if let Some(runs) = runs {
            for p in &mut self.probes {
                if let Some(r) = runs.per_run_s(p.program) {
                    p.hit_cost = p.in_situ * (p.trap_cost + r);
                    self.program_run_s.insert(p.program, r);
                }
            }
        }
        let dt = now.duration_since(self.last_check).as_secs_f64();
        let mut cost = tracer_cpu;
        self.tracer_cpu_debited += tracer_cpu;
        if dt > 0.0 {
            let keep = (-dt / TRACER_RATE_TAU_S).exp();
            self.tracer_rate = keep * self.tracer_rate + (1.0 - keep) * tracer_cpu / dt;
        }
        let mut by_class = [0.0; 3];
        let mut traps_by_class = [0.0; 3];
        let mut off_by_class = [0.0; 3];
        for (i, p) in self.probes.iter().enumerate() {
            let h = hits.get(p.id as usize).copied().unwrap_or(0);
            let d = h.saturating_sub(self.last_hits[i]);
            self.last_hits[i] = h;
            // Runs past the grant: the trap alone.
            let denied = std::mem::take(&mut self.denied_pending[i]) as f64 * p.trap_cost;
            let c = d as f64 * p.hit_cost + denied;
            let traps = d as f64 * p.trap_cost + denied;
            // Runs that found the probe switched off (its breakpoints not
            // yet removed after a close): the trap alone, apart from the
            // class's rate (the class is closed).
            let off = std::mem::take(&mut self.off_pending[i]) as f64 * p.trap_cost;
            if dt > 0.0 {
                self.last_site_rate[i] = c / dt;
                self.last_site_trap_rate[i] = traps / dt;
            }
            cost += c + off;
            if let Some(k) = slot_of(p.class) {
                by_class[k] += c;
                traps_by_class[k] += traps;
                off_by_class[k] += off;
            }
        }
        // Breakpoints of a closed group still trap until the kernel removes
        // them, with no program left to run: each call is counted in the
        // kernel (its probe is switched off) and debited above at the
        // trap's price; here the tail's sites are polled until they are
        // gone, and its length measured. A governed hit's in-situ price is mostly
        // its program's work (the stack walk, the event and the tracer
        // woken to read it), and a write probe's breakpoint cost 0.77 µs
        // a call while it waited to be removed against 0.97 µs with its
        // program (`tracer_common::governor::WRITE_HIT_S`). At the governed
        // price, the tail of the first close after attach on the JSON
        // workload (190 ms until the last breakpoint went) was debited
        // 0.046 s, twice the default budget's bucket, and the governed
        // probes never came back in a 60 s trace.
        let dbg = crate::app::debug_timing();
        for ((t, length), off) in self
            .tails
            .iter_mut()
            .zip(&mut self.tail_length)
            .zip(off_by_class)
        {
            if t.sites.is_empty() {
                continue;
            }
            t.debited += off;
            let before = t.sites.len();
            let left = t.poll(&self.mem);
            if dbg && t.sites.len() != before {
                eprintln!(
                    "tail: {} of {before} breakpoints gone {:?} after close (debited {:.2} ms, {:.2} ms at the close's rate)",
                    before - t.sites.len(),
                    t.since.map(|at| at.elapsed()).unwrap_or_default(),
                    t.debited * 1e3,
                    t.since
                        .map_or(0.0, |at| at.elapsed().as_secs_f64() * t.rate_at_close)
                        * 1e3,
                );
            }
            if !left {
                length.observe(t.debited, t.rate_at_close);
                t.since = None;
            }
        }
        if dt > 0.0 {
            self.last_rate = by_class.map(|c| (c / dt).min(MAX_TAIL_RATE));
            self.last_trap_rate = traps_by_class.map(|c| (c / dt).min(MAX_TAIL_RATE));
            // Averaged over the time they are attached: paused, they cost
            // nothing, and a mean that decayed meanwhile would let a steady
            // rate run unpaused into debt for seconds after each resume.
            if self.gov.large.on {
                let keep = (-dt / LARGE_RATE_TAU_S).exp();
                self.large_rate_mean = keep * self.large_rate_mean
                    + (1.0 - keep) * self.last_rate[slot(ProbeClass::LargeGrowth)];
            }
        }
        if by_class[slot(ProbeClass::Window)] > 0.0 {
            self.gov.written(now);
        }
        self.last_check = now;
        // The large-growth tier's own bucket: its probes' hits, and the
        // tail of their breakpoints after a pause.
        let large = by_class[2] + off_by_class[2];
        self.gov.account(dt, cost, large);
        if crate::app::debug_credit() {
            eprintln!(
                "credit {:.1} ms dt {:.1} ms credit {:.5} tracer {:.6} probes {:.6} creation_on {} large_on {}",
                crate::app::now_ns() as f64 / 1e6,
                dt * 1e3,
                self.gov.credit,
                tracer_cpu,
                cost - tracer_cpu,
                self.gov.creation_on,
                self.gov.large.on
            );
        }

        let busy_c = self.detaching[0].busy() || self.attaching[0];
        let busy_w = self.detaching[1].busy() || self.attaching[1];
        let busy_l = self.detaching[2].busy() || self.attaching[2];
        let have_window = self.probes.iter().any(|p| p.class == ProbeClass::Window);
        self.gov.debt_is_tracers = self.tracer_rate >= SAMPLES_HELD_AT_SHARE * self.gov.rate;
        self.gov.large_rate = self.large_rate_mean;
        // What closing each group now would cost after the close.
        self.gov.set_reserve(Reserve {
            creation: self.tail_length[0].reserve(self.last_trap_rate[0]),
            window: self.tail_length[1].reserve(self.last_trap_rate[1]),
        });
        let a = self.gov.decide(now, busy_c, busy_w, busy_l, have_window);
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
        let pause_l = a.pause_large && self.gov.large.on;
        let closing: Vec<ProbeClass> = [
            (close_w, ProbeClass::Window),
            (pause_c, ProbeClass::Governed),
            (pause_l, ProbeClass::LargeGrowth),
        ]
        .into_iter()
        .filter_map(|(close, class)| close.then_some(class))
        .collect();
        if !closing.is_empty() {
            self.detach(&closing);
        }
        // A pause decided before the loop served a first attach: the next
        // attach is a resume.
        for (paused, class) in [
            (pause_c, ProbeClass::Governed),
            (pause_l, ProbeClass::LargeGrowth),
        ] {
            let i = slot(class);
            if paused {
                self.want[i] = false;
                self.first_attach[i] = false;
            }
        }
        if pause_l {
            self.gov.large_paused(now);
        }
        if a.resume_large && !self.attaching[2] && !self.attached(ProbeClass::LargeGrowth) {
            self.want[2] = true;
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
        if self.gov.creation_on || self.attaching[0] {
            self.write_grant();
        }
    }

    /// Closes the links of the given classes on one thread, busiest probe
    /// first whatever its class, and starts measuring their tails (each
    /// site at its trap rate, [`Budget::check`]).
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
        let mut sites = self.tail_sites(&members);
        // Their programs stop now; the kernel removes the breakpoints as it
        // reaches each link, and those left trap until then (the tails).
        self.switch_probes(members.iter().copied(), true);
        let h = crate::bpf::close_links(links.into_iter().map(|l| l.1).collect()).map(Arc::new);
        for &c in classes {
            let i = slot(c);
            self.tails[i] = Tail::new(std::mem::take(&mut sites[i]));
            if let Some(h) = &h {
                self.detaching[i].0.push(h.clone());
            }
        }
    }

    /// The breakpoints probes `members` leave in the target's code once
    /// their links are closed, per class: each at its trap rate over the
    /// last check ([`Budget::check`]).
    fn tail_sites(&self, members: &[usize]) -> [Vec<(u64, [u8; 4], f64)>; 3] {
        let mut sites: [Vec<_>; 3] = Default::default();
        for &i in members {
            let p = &self.probes[i];
            if let Some(o) = p.orig {
                let rate = self.last_site_trap_rate.get(i).copied().unwrap_or(0.0);
                sites[slot(p.class)].push((p.addr, o, rate));
            }
        }
        sites
    }

    /// How soon this budget must be checked again. Busy breakpoints still
    /// being removed, probes asked for or being attached by the main loop
    /// or just attached (their rate is not known yet) and creation probes
    /// costing more than the budget: every few milliseconds,
    /// so that the overshoot is small and tails are measured closely. An
    /// open window: as often as its last rate needs
    /// ([`crate::governor::window_period`]). Governed probes on and costing
    /// a quarter of the budget or more, or large-growth probes costing more
    /// than the whole budget: every 20 ms, so that a burst is seen soon
    /// (each check costs the tracer's CPU: with checks every 20 ms while the
    /// large-growth probes cost a quarter of the budget, as permaps1000 keeps
    /// them, the tracer used 0.8 % of one CPU there instead of 0.4 %; at
    /// 100 ms they overshoot their bucket by a tenth of a second's cost).
    /// A quiet budget ([`Budget::quiet`]): every
    /// [`crate::governor::PERIOD_IDLE`]; otherwise every 100 ms.
    #[must_use]
    pub fn period(&self, now: Instant) -> Duration {
        use crate::governor::{PERIOD, PERIOD_CREATION, PERIOD_IDLE, PERIOD_WINDOW, window_period};
        // An attach asked for: the thread sleeps on, so the first check
        // after the main loop installs the links must already be near (at
        // 100 ms, a window on a write loop, costing about one CPU, spent
        // four buckets before its first check).
        if self.tails.iter().any(|t| t.rate() > 0.0)
            || self.want.iter().chain(&self.attaching).any(|&b| b)
            || now < self.fast_until
            || (self.gov.creation_on && self.last_rate[0] > self.gov.rate)
        {
            PERIOD_WINDOW
        } else if self.gov.window_open.is_some() {
            window_period(self.last_rate[1])
        } else if (self.gov.creation_on && self.last_rate[0] > self.gov.rate / 4.0)
            || (self.gov.large.on && self.last_rate[2] > self.gov.rate)
        {
            PERIOD_CREATION
        } else if self.quiet() {
            PERIOD_IDLE
        } else {
            PERIOD
        }
    }

    /// Nothing to watch closely: nothing being attached or detached, no
    /// write window open, the attached probes together costing under a
    /// quarter of the budget, and, while the governed probes are on, at
    /// least half the bucket left. Governed probes that start costing `r`
    /// CPUs right after a check spend `r` times
    /// [`crate::governor::PERIOD_IDLE`] before the next: that overdraws
    /// half a bucket ([`crate::governor::BURST_S`] of the budget) only when
    /// `r` is over ten times the budget (5 % of one CPU at the default 0.5 %),
    /// and the pause that follows pays it back. While they are paused, only
    /// probes whose hits are bounded by map memory are attached, and the
    /// checks wait only to resume them or to open a window, which may come a
    /// little later.
    #[must_use]
    pub fn quiet(&self) -> bool {
        let moving = self.want.iter().chain(&self.attaching).any(|&b| b)
            || self
                .detaching
                .iter()
                .any(|d| d.0.iter().any(|h| !h.is_finished()));
        !moving
            && self.gov.window_open.is_none()
            && self.last_rate.iter().sum::<f64>() < self.gov.rate / 4.0
            && (!self.gov.creation_on || self.gov.credit >= 0.5 * self.gov.max())
    }

    /// A check left an attach for the main loop to do ([`Budget::wants`]).
    #[must_use]
    pub fn wants_attach(&self) -> bool {
        self.want.iter().any(|&w| w)
    }

    /// Every link of the classes the budget attaches, busiest first, for
    /// the final detach; waits for closes already in progress.
    pub fn take_all_links(&mut self) -> Vec<Link> {
        let rate = |i: usize| self.last_site_rate.get(i).copied().unwrap_or(0.0);
        let members: Vec<usize> = self.links.iter().flat_map(|l| l.2.clone()).collect();
        self.switch_probes(members, true);
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

fn lock_budget(b: &Mutex<Budget>) -> std::sync::MutexGuard<'_, Budget> {
    b.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests;
