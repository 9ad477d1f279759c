//! `app`: wires the stages for `mapleak-trace trace`. Single-threaded: one
//! loop polls the ring buffer, applies events to each process's model, reads
//! map headers at every GC cycle, and renders.
use std::{
    collections::HashMap,
    io::{IsTerminal as _, Write},
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use tracer_common::{Counter, ProcConfig};

use crate::{
    bpf::{AttachedProbe, ProbeRequest, Tracer},
    discover::Target,
    finalizers::{self, FinTracker},
    governor::{EMULATED_HIT_S, Governor, SINGLE_STEP_HIT_S, WRITE_HIT_S},
    ingest::{Event, decode},
    inspect::{BinaryInfo, Frame, MapImpl},
    keys::{KeyLayout, KeyTracker, MAX_TRACKED_KEYS},
    model::{Model, Verdict},
    plan::{ProbeClass, ProbePlan},
    report::{self, MapReport, Overhead, Report, TargetInfo},
    sample::{self, Memory, TypeSizes},
};

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
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

fn install_signal_handlers() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { libc::signal(sig, on_signal as *const () as libc::sighandler_t) };
    }
}

/// Per-process state.
struct Session {
    target: Target,
    info: BinaryInfo,
    bias: u64,
    probes: Vec<(AttachedProbe, String, u64, bool)>,
    model: Model,
    mem: Memory,
    types: HashMap<u64, (String, Option<String>, Option<String>, TypeSizes)>,
    owners_searched: HashMap<u64, u64>,
    ended: Option<String>,
    gc_seen: u64,
    last_grow: Option<(u64, u8, u64, u64, u64, u64)>,
    last_gc_ns: [u64; 2],
    /// Attach requests, parallel to `probes`.
    reqs: Vec<ProbeRequest>,
    /// Governor class of each probe, parallel to `probes`.
    class: Vec<ProbeClass>,
    /// Estimated cost of one hit of each probe (seconds), parallel to `probes`.
    hit_cost: Vec<f64>,
    /// Hits of each probe at the last governor check.
    last_hits: Vec<u64>,
    /// Cost rate (CPUs) of each probe over the last check.
    last_site_rate: Vec<f64>,
    /// Check the budget every 10 ms until then (a group was just attached).
    fast_until: Instant,
    /// uprobe_multi links: group, link, the probes (indices) behind it.
    groups: Vec<(ProbeClass, crate::bpf::Link, Vec<usize>)>,
    /// Instruction bytes at each probe's address before any probe was
    /// attached, parallel to `probes` (`None`: unreadable).
    orig: Vec<Option<[u8; 4]>>,
    gov_check: Instant,
    gov: Governor,
    detaching_creation: Detaching,
    detaching_window: Detaching,
    /// GC cycles not sampled because their event was processed too late.
    late_cycles: u64,
    /// GC cycles whose headers were read.
    sampled_cycles: u64,
    /// The newest GC cycle not sampled yet, its event's time (ns), and
    /// whether it came before the gap after the previous sample had passed.
    sample_due: Option<(u64, u64, bool)>,
    /// When the last sample started, and how long its header reads took:
    /// the next one waits [`sample_gap`] after it. (Key snapshots have
    /// their own bound per sample, `SNAPSHOT_TIME`.)
    last_sample: Option<(Instant, Duration)>,
    /// Cost rate (CPUs) of the creation and write groups over the last check.
    last_rate: [f64; 2],
    /// Breakpoints of the creation and write groups still in the target's
    /// code after their links were closed.
    tails: [Tail; 2],
    /// Maps first found by the write windows.
    discovered_by_writes: u64,
    fin: FinTracker,
    /// Key layouts by map type descriptor (`None`: not resolvable).
    key_layouts: HashMap<u64, Option<KeyLayout>>,
    /// Key retention by map address.
    key_trackers: HashMap<u64, KeyTracker>,
    /// Cycle of each map's latest key snapshot (to rotate when time runs out).
    snap_cycle: HashMap<u64, u64>,
    /// GC cycles not sampled to bound the tracer's CPU: a newer one came
    /// before the sample, or the gap after the previous sample made it late.
    skipped_cycles: u64,
    show_keys: bool,
}

/// Detaches of one group still in progress (a thread may close the links
/// of both groups, so handles are shared).
#[derive(Debug, Default)]
struct Detaching(Vec<std::sync::Arc<std::thread::JoinHandle<()>>>);

impl Detaching {
    fn busy(&mut self) -> bool {
        self.0.retain(|h| !h.is_finished());
        !self.0.is_empty()
    }

    fn join(&mut self) {
        for h in self.0.drain(..) {
            match std::sync::Arc::try_unwrap(h) {
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

/// A probe on a conditional branch of the stack check (arm64, and amd64 on
/// Go <= 1.20, whose prologue has no PUSHQ BP) fires twice when the
/// goroutine's stack grows: the function restarts after morestack. The
/// second hit carries the same arguments within microseconds.
const DOUBLE_HIT_NS: u64 = 200_000;

/// Reads hit counts, debits their cost, and attaches or detaches the
/// creation probes and the write window as the governor decides.
fn govern(s: &mut Session, tracer: &mut Tracer, hits: &[u64]) {
    let now = Instant::now();
    let dt = now.duration_since(s.gov_check).as_secs_f64();
    let mut cost = 0.0;
    let (mut cost_c, mut cost_w) = (0.0, 0.0);
    // One pass, updating the per-probe hit counts and cost rates in place
    // (this runs every 10 ms in windows).
    let n = s.probes.len();
    s.last_hits.resize(n, 0);
    s.last_site_rate.resize(n, 0.0);
    for (i, (p, ..)) in s.probes.iter().enumerate() {
        let h = hits.get(p.id as usize).copied().unwrap_or(0);
        let d = h.saturating_sub(s.last_hits[i]);
        s.last_hits[i] = h;
        let c = d as f64 * s.hit_cost[i];
        if dt > 0.0 {
            s.last_site_rate[i] = c / dt;
        }
        cost += c;
        match s.class[i] {
            ProbeClass::Governed => cost_c += c,
            ProbeClass::Window => cost_w += c,
            ProbeClass::Always => {}
        }
    }
    // Breakpoints of a closed group still trap until the kernel removes
    // them, with the program no longer counting: debited at the rate the
    // group cost when it was closed, for as long as they are still there.
    let dbg = debug_timing();
    for t in &mut s.tails {
        if t.sites.is_empty() {
            continue;
        }
        let rate = t.rate();
        cost += rate * dt;
        let before = t.sites.len();
        let left = t.poll(&s.mem);
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
        s.last_rate = [
            (cost_c / dt).min(MAX_TAIL_RATE),
            (cost_w / dt).min(MAX_TAIL_RATE),
        ];
    }
    s.gov_check = now;
    s.gov.account(dt, cost);

    let busy_c = s.detaching_creation.busy();
    let busy_w = s.detaching_window.busy();
    let have_window = s.class.contains(&ProbeClass::Window);
    let a = s.gov.decide(now, busy_c, busy_w, have_window);
    let a = s.gov.sequence(
        a,
        crate::governor::InFlight {
            busy_creation: busy_c,
            busy_window: busy_w,
            creation_tail: !s.tails[0].sites.is_empty(),
            window_hot_tail: s.tails[1].rate() > 0.0,
            creation_rate: s.last_rate[0],
        },
    );
    if dbg && a != crate::governor::Actions::default() {
        eprintln!(
            "gov {:.1} ms {a:?} credit {:.4}",
            now_ns() as f64 / 1e6,
            s.gov.credit
        );
    }
    let t = Instant::now();
    match (a.close_window, a.pause_creation) {
        (true, true) => detach_classes(s, tracer, &[ProbeClass::Window, ProbeClass::Governed]),
        (true, false) => detach_classes(s, tracer, &[ProbeClass::Window]),
        (false, true) => detach_classes(s, tracer, &[ProbeClass::Governed]),
        (false, false) => {}
    }
    if a.close_window {
        s.gov.closed(now);
    }
    if a.pause_creation {
        s.gov.paused(now);
    }
    if a.open_window {
        // A failure (the process is exiting) leaves probes detached.
        let _ = attach_class(s, tracer, ProbeClass::Window);
        s.gov.opened(now);
    }
    if a.resume_creation {
        let _ = attach_class(s, tracer, ProbeClass::Governed);
        s.gov.resumed(now);
    }
    if a.open_window || a.resume_creation {
        // Their rate is unknown until measured: check it closely at first.
        s.fast_until = Instant::now() + FAST_AFTER_ATTACH;
    }
    if dbg && t.elapsed() > Duration::from_millis(20) {
        eprintln!("gov actions took {:?}", t.elapsed());
    }
}

/// Probe indices in the order to close them: busiest (over the last
/// governor check) first.
fn close_order(s: &Session, pick: impl Fn(usize) -> bool) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..s.probes.len()).filter(|&i| pick(i)).collect();
    let rate = |i: usize| s.last_site_rate.get(i).copied().unwrap_or(0.0);
    idx.sort_by(|&a, &b| rate(b).total_cmp(&rate(a)));
    idx
}

/// Closes the links of the given groups on one thread, busiest probe
/// first whatever its group, and starts measuring their tails.
fn detach_classes(s: &mut Session, tracer: &mut Tracer, classes: &[ProbeClass]) {
    let rate = |s: &Session, i: usize| s.last_site_rate.get(i).copied().unwrap_or(0.0);
    // (cost rate, link): a group's rate is its probes' sum.
    let mut links: Vec<(f64, crate::bpf::Link)> = Vec::new();
    let mut members = Vec::new();
    let mut k = 0;
    while k < s.groups.len() {
        if classes.contains(&s.groups[k].0) {
            let (_, link, idx) = s.groups.swap_remove(k);
            links.push((idx.iter().map(|&i| rate(s, i)).sum(), link));
            members.extend(idx);
        } else {
            k += 1;
        }
    }
    for i in 0..s.probes.len() {
        if classes.contains(&s.class[i])
            && let Some(l) = tracer.take_link(&mut s.probes[i].0)
        {
            links.push((rate(s, i), l));
            members.push(i);
        }
    }
    links.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut sites: [Vec<_>; 2] = [Vec::new(), Vec::new()];
    for i in members {
        if let Some(o) = s.orig[i] {
            let slot = usize::from(s.class[i] == ProbeClass::Window);
            sites[slot].push((s.probes[i].2 + s.bias, o, rate(s, i)));
        }
    }
    let h =
        crate::bpf::close_links(links.into_iter().map(|l| l.1).collect()).map(std::sync::Arc::new);
    for &c in classes {
        let slot = usize::from(c == ProbeClass::Window);
        s.tails[slot] = Tail {
            sites: std::mem::take(&mut sites[slot]),
            since: Some(Instant::now()),
        };
        if let Some(h) = &h {
            match c {
                ProbeClass::Window => s.detaching_window.0.push(h.clone()),
                _ => s.detaching_creation.0.push(h.clone()),
            }
        }
    }
}

fn attach_class(s: &mut Session, tracer: &mut Tracer, class: ProbeClass) -> Result<()> {
    if s.groups.iter().any(|g| g.0 == class) {
        return Ok(());
    }
    let mut by_prog: Vec<(&'static str, Vec<usize>)> = Vec::new();
    for i in (0..s.probes.len()).filter(|&i| s.class[i] == class) {
        let prog = s.probes[i].0.program;
        match by_prog.iter_mut().find(|(p, _)| *p == prog) {
            Some((_, v)) => v.push(i),
            None => by_prog.push((prog, vec![i])),
        }
    }
    for (prog, idx) in by_prog {
        let sites: Vec<(u64, u32)> = idx
            .iter()
            .map(|&i| (s.reqs[i].file_offset, s.probes[i].0.id))
            .collect();
        match tracer.attach_group(&s.target.exe, s.target.pid, prog, &sites) {
            Ok(link) => s.groups.push((class, link, idx)),
            Err(e) => {
                if debug_timing() {
                    eprintln!("group {prog}: {e:#}; one perf link per probe");
                }
                for i in idx {
                    tracer.reattach(&s.target.exe, s.target.pid, &mut s.probes[i].0, &s.reqs[i])?;
                }
            }
        }
    }
    Ok(())
}

/// How long the budget is checked every [`crate::governor::PERIOD_WINDOW`]
/// after a group is attached, and while the creation probes cost more than
/// the budget.
const FAST_AFTER_ATTACH: Duration = Duration::from_millis(100);

/// How often the targets are checked for exit.
const ALIVE_CHECK: Duration = Duration::from_millis(250);

/// How soon the governor must look at `s` again. Busy breakpoints still
/// being removed, probes just attached (their rate is not known yet) and
/// creation probes costing more than the budget: every few milliseconds,
/// so that the overshoot is small and tails are measured closely. An open
/// window: as often as its last rate needs ([`crate::governor::window_period`]).
/// Creation probes on: every 20 ms, so that a sudden burst is seen soon.
fn check_period(s: &Session, now: Instant) -> Duration {
    use crate::governor::{PERIOD, PERIOD_CREATION, PERIOD_WINDOW, window_period};
    if s.tails.iter().any(|t| t.rate() > 0.0)
        || now < s.fast_until
        || (s.gov.creation_on && s.last_rate[0] > s.gov.rate)
    {
        PERIOD_WINDOW
    } else if s.gov.window_open.is_some() {
        window_period(s.last_rate[1])
    } else if s.gov.creation_on {
        PERIOD_CREATION
    } else {
        PERIOD
    }
}

/// Longest wait for events: GC events are written to the ring buffer
/// without waking the tracer, so this bounds how late they are read.
const IDLE_WAIT: Duration = Duration::from_millis(40);

/// A GC event processed later than this is not sampled (see `sample_due`).
const MAX_SAMPLE_LAG_NS: u64 = 150_000_000;

/// Most CPUs a detaching group is assumed to cost (the target's threads
/// trapping at once).
const MAX_TAIL_RATE: f64 = 2.0;

/// Fewest inserts into an untracked map within one drain of the write
/// counts before it is tracked: keeps the many short-lived maps of a busy
/// service (an HTTP header gets a handful) out.
const DISCOVER_MIN_ASSIGNS: u64 = 256;
/// Most maps discovered per drain (the busiest first).
const DISCOVER_MAX: usize = 64;
/// How often the write counts are drained from the kernel.
const WRITES_DRAIN: Duration = Duration::from_secs(1);

/// Applies write-path counts drained from the kernel.
fn on_writes(s: &mut Session, writes: &[(tracer_common::WriteKey, tracer_common::WriteStat)]) {
    let assign = u32::from(tracer_common::WriteKind::Assign as u8);
    let mut per_map: HashMap<u64, u64> = HashMap::new();
    for (k, st) in writes {
        if k.tgid == s.target.pid && k.kind == assign {
            *per_map.entry(k.map_addr).or_default() += st.count;
        }
    }
    let mut busiest: Vec<(u64, u64)> = per_map
        .iter()
        .filter(|(a, n)| **n >= DISCOVER_MIN_ASSIGNS && !s.model.maps.contains_key(a))
        .map(|(a, n)| (*n, *a))
        .collect();
    busiest.sort_unstable_by(|a, b| b.cmp(a));
    for &(_, addr) in busiest.iter().take(DISCOVER_MAX) {
        s.model.on_discovered(addr, None, 0, None);
        s.discovered_by_writes += 1;
    }
    for (k, st) in writes {
        if k.tgid != s.target.pid || k.map_addr == 0 {
            continue;
        }
        if let Some(m) = s.model.maps.get_mut(&k.map_addr) {
            if m.type_ptr == 0 {
                m.type_ptr = st.type_ptr;
            }
            m.on_write(k.kind == assign, k.caller_pc, st.count);
        }
    }
}

fn attach_session(tracer: &mut Tracer, pid: u32, budget: f64, show_keys: bool) -> Result<Session> {
    let target = Target::discover(pid)?;
    let info = BinaryInfo::open(&target.exe).with_context(|| {
        format!(
            "pid {pid} ({}) is not a traceable Go program",
            target.exe_display
        )
    })?;
    let plan = ProbePlan::build(&info).with_context(|| format!("planning probes for pid {pid}"))?;
    let first = plan.probes.first().context("empty probe plan")?;
    let off = info
        .va_to_file_offset(first.address)
        .context("probe address outside the file")?;
    let bias = target.load_bias(off, first.address)?;
    let addr = |g: Option<u64>, f: Option<u32>| match (g, f) {
        (Some(g), Some(f)) => g + u64::from(f) + bias,
        _ => 0,
    };
    let l = &info.layout;
    let cfg = ProcConfig {
        heap_marked_addr: addr(info.globals.gc_controller, l.gc_heap_marked),
        heap_live_addr: addr(info.globals.gc_controller, l.gc_heap_live),
        work_cycles_addr: addr(info.globals.work, l.work_cycles),
        numgc_addr: addr(info.globals.memstats, l.memstats_numgc),
        goid_offset: l.g_goid.unwrap_or(0),
        hmap_b_offset: if info.map_impl == MapImpl::Hmap {
            l.hmap_b.unwrap_or(0)
        } else {
            0
        },
        min_grow_slots: MIN_GROW_SLOTS,
        _pad: 0,
    };
    tracer.configure(pid, cfg)?;
    let mut probes = Vec::new();
    let mut reqs = Vec::new();
    let mut class = Vec::new();
    let mut hit_cost = Vec::new();
    // The original instruction bytes, read before any probe is attached
    // (two probes may share an address): a detached probe's breakpoint is
    // gone when they are back (see `Tail`).
    let mem = Memory::new(pid);
    let orig: Vec<Option<[u8; 4]>> = plan
        .probes
        .iter()
        .map(|p| {
            let mut b = [0u8; 4];
            mem.read(p.address + bias, &mut b).then_some(b)
        })
        .collect();
    for p in &plan.probes {
        let file_offset = info
            .va_to_file_offset(p.address)
            .with_context(|| format!("{} at {:#x} is outside the file", p.function, p.address))?;
        let req = ProbeRequest {
            program: p.role.program(),
            file_offset,
            spec: p.spec,
        };
        let emulated = !p.ret_site && !p.reason.starts_with("entry");
        let grouped = p.class != ProbeClass::Always;
        let a = if grouped {
            tracer.register(&req)?
        } else {
            tracer.attach(&target.exe, pid, &req)?
        };
        probes.push((a, p.function.clone(), p.address, emulated));
        reqs.push(req);
        class.push(p.class);
        hit_cost.push(match (emulated, p.window) {
            (false, _) => SINGLE_STEP_HIT_S,
            (true, true) => WRITE_HIT_S,
            (true, false) => EMULATED_HIT_S,
        });
    }
    let mut s = Session {
        mem,
        target,
        info,
        bias,
        probes,
        model: Model::default(),
        types: HashMap::new(),
        owners_searched: HashMap::new(),
        ended: None,
        gc_seen: 0,
        last_grow: None,
        last_gc_ns: [0; 2],
        reqs,
        class,
        hit_cost,
        last_hits: Vec::new(),
        last_site_rate: Vec::new(),
        fast_until: Instant::now() + FAST_AFTER_ATTACH,
        groups: Vec::new(),
        orig,
        gov_check: Instant::now(),
        gov: Governor::new(budget),
        detaching_creation: Detaching::default(),
        detaching_window: Detaching::default(),
        last_rate: [0.0; 2],
        tails: [Tail::default(), Tail::default()],
        late_cycles: 0,
        sampled_cycles: 0,
        sample_due: None,
        last_sample: None,
        discovered_by_writes: 0,
        fin: FinTracker::default(),
        key_layouts: HashMap::new(),
        key_trackers: HashMap::new(),
        snap_cycle: HashMap::new(),
        skipped_cycles: 0,
        show_keys,
    };
    attach_class(&mut s, tracer, ProbeClass::Governed)?;
    discover_globals(&mut s);
    Ok(s)
}

/// Smallest table a growth must reach to be reported by the kernel side:
/// keeps the thousands of tiny short-lived maps of a busy service out of
/// user space entirely.
pub const MIN_GROW_SLOTS: u32 = 128;

/// Maps held by global variables that DWARF names are tracked from the start.
fn discover_globals(s: &mut Session) {
    for (name, va, ty) in s.info.global_maps() {
        if let Some(ptr) = s.mem.u64(va + s.bias)
            && ptr != 0
        {
            s.model.on_discovered(ptr, Some(ty), 0, Some(name));
        }
    }
}

fn symbolize(s: &Session, ips: &[u64], caller: u64) -> Vec<Frame> {
    // ips[0] is the probed instruction; the caller's return address is not
    // on the frame-pointer chain yet, so it goes second.
    let mut pcs: Vec<u64> = Vec::with_capacity(ips.len() + 1);
    pcs.extend(ips.first());
    if caller != 0 {
        pcs.push(caller);
    }
    pcs.extend(ips.iter().skip(1).filter(|&&ip| ip != caller));
    let mut frames = Vec::new();
    for (i, pc) in pcs.iter().enumerate() {
        let link = pc.wrapping_sub(s.bias);
        let link = if i == 0 { link } else { link.wrapping_sub(1) };
        if let Some(f) = s.info.frame_for_pc(link)
            && !is_runtime(&f.function)
        {
            frames.push(f);
            if frames.len() >= 6 {
                break;
            }
        }
    }
    frames
}

fn is_runtime(func: &str) -> bool {
    func.starts_with("runtime.")
        || func.starts_with("internal/runtime/")
        || func.starts_with("internal/abi")
        || func.starts_with("maps.clone")
}

fn type_entry(
    s: &mut Session,
    type_ptr: u64,
) -> (String, Option<String>, Option<String>, TypeSizes) {
    if let Some(e) = s.types.get(&type_ptr) {
        return e.clone();
    }
    let link = type_ptr.wrapping_sub(s.bias);
    let e = match s.info.map_type_info(link) {
        Some(t) => (
            t.name,
            Some(t.key),
            Some(t.elem),
            TypeSizes {
                bucket_size: t.bucket_size,
                group_size: t.group_size,
            },
        ),
        // Not a descriptor in the file (a type made at run time by
        // reflect.MapOf): read it from the target.
        None => match crate::keys::key_layout(&s.mem, &s.info, s.bias, type_ptr) {
            Some(k) => (
                k.map_type.clone(),
                Some(k.key_type.name.clone()),
                None,
                TypeSizes {
                    bucket_size: k.bucket_size,
                    group_size: k.group_size,
                },
            ),
            None => (
                s.info
                    .type_name(link)
                    .unwrap_or_else(|| "unknown".to_owned()),
                None,
                None,
                TypeSizes::default(),
            ),
        },
    };
    s.types.insert(type_ptr, e.clone());
    e
}

fn on_event(s: &mut Session, tracer: &Tracer, ev: &Event, t0_ns: &mut Option<u64>) {
    match ev {
        Event::MapGrow(g) => {
            let key = (
                g.map_addr,
                g.grow_kind,
                g.size,
                g.goid,
                g.caller_pc,
                g.hdr.ts_ns,
            );
            if let Some(p) = s.last_grow
                && (p.0, p.1, p.2, p.3, p.4) == (key.0, key.1, key.2, key.3, key.4)
                && key.5.saturating_sub(p.5) < DOUBLE_HIT_NS
            {
                return;
            }
            s.last_grow = Some(key);
            let ips = tracer.stack(g.stack_id);
            let site = symbolize(s, &ips, g.caller_pc);
            if s.model.on_grow(g.map_addr, g.type_ptr, g.hdr.ts_ns, site)
                && let Some(rec) = tracer.created(s.target.pid, g.map_addr)
                && rec.ts_ns <= g.hdr.ts_ns
            {
                let ips = tracer.stack(rec.stack_id);
                let frames = symbolize(s, &ips, rec.caller_pc);
                if let Some(m) = s.model.maps.get_mut(&g.map_addr) {
                    m.created_at = frames;
                    m.created_ns = Some(rec.ts_ns);
                    if m.type_ptr == 0 {
                        m.type_ptr = rec.type_ptr;
                    }
                }
            }
        }
        Event::Fin(f) => {
            let cycle = s.model.cycles.back().map_or(0, |c| c.cycle);
            s.fin.on_event(f, s.info.go_version.minor, cycle);
        }
        Event::GcStart(g) => {
            s.last_gc_ns[0] = g.hdr.ts_ns;
        }
        Event::GcMarked(g) => {
            if g.hdr.ts_ns.saturating_sub(s.last_gc_ns[1]) < DOUBLE_HIT_NS {
                return;
            }
            s.last_gc_ns[1] = g.hdr.ts_ns;
            let t0 = *t0_ns.get_or_insert(g.hdr.ts_ns);
            let t_s = (g.hdr.ts_ns.saturating_sub(t0)) as f64 / 1e9;
            let rc = (g.work_cycles != u32::MAX).then_some(u64::from(g.work_cycles));
            let heap = (g.heap_marked != 0).then_some(g.heap_marked);
            let cycle = s.model.on_gc_marked(rc, t_s, heap);
            s.gc_seen += 1;
            // Only the newest cycle is sampled: headers read now show the
            // map as it is now, which belongs to the newest cycle, not to
            // earlier ones that are still in the same batch of events.
            if s.sample_due.is_some() {
                s.skipped_cycles += 1;
            }
            let early = !gap_left(s).is_zero();
            s.sample_due = Some((cycle, g.hdr.ts_ns, early));
        }
    }
}

/// Shortest time between two samples: a GC-heavy program (hundreds of
/// cycles a second) is sampled at most this often.
const MIN_SAMPLE_GAP: Duration = Duration::from_millis(100);

/// A sample's header reads are followed by a pause of this many times
/// their length, so reading headers takes at most 1/(1+N) of one CPU
/// however many maps there are.
const SAMPLE_GAP_FACTOR: u32 = 9;

/// How long after its start the next sample may start, when a sample's
/// header reads took `took`.
fn sample_gap(took: Duration) -> Duration {
    MIN_SAMPLE_GAP.max(took * (SAMPLE_GAP_FACTOR + 1))
}

/// Time left of the gap after `s`'s last sample (zero: a sample may start).
fn gap_left(s: &Session) -> Duration {
    s.last_sample.map_or(Duration::ZERO, |(start, took)| {
        sample_gap(took).saturating_sub(start.elapsed())
    })
}

/// Time until `s` may take its pending sample (zero: now), or `None` when
/// nothing is pending.
fn sample_wait(s: &Session) -> Option<Duration> {
    s.sample_due.map(|_| gap_left(s))
}

/// Samples the newest GC cycle seen, if one is pending and the gap since
/// the previous sample has passed: map headers, then keys, then owners.
fn sample_due(s: &mut Session) {
    if sample_wait(s) != Some(Duration::ZERO) {
        return;
    }
    let Some((cycle, ts_ns, early)) = s.sample_due.take() else {
        return;
    };
    // Lengths read long after the cycle belong to a later moment: a cycle
    // whose event is processed late is not sampled. When it came during
    // the gap, the gap made it late (the tracer did not fall behind).
    let age_ns = now_ns().saturating_sub(ts_ns);
    if age_ns > MAX_SAMPLE_LAG_NS {
        if early {
            s.skipped_cycles += 1;
        } else {
            s.late_cycles += 1;
        }
        return;
    }
    let t = Instant::now();
    sample_all(s, cycle);
    s.sampled_cycles += 1;
    let headers = t.elapsed();
    s.last_sample = Some((t, headers));
    snapshot_keys(s, cycle);
    let keys = t.elapsed();
    find_owners(s, false);
    if debug_timing() {
        eprintln!(
            "gc {cycle}: event age {:.1} ms, headers {headers:?}, +keys {keys:?}, all {:?}, {} maps",
            age_ns as f64 / 1e6,
            t.elapsed(),
            s.model.maps.len()
        );
    }
}

/// Reads every tracked map's header (and Swiss tables) at `cycle`.
fn sample_all(s: &mut Session, cycle: u64) {
    let imp = s.info.map_impl;
    let hlen = sample::header_len(&s.info.layout, imp);
    let addrs: Vec<(u64, u64)> = s
        .model
        .maps
        .values()
        .map(|m| (m.addr, m.type_ptr))
        .collect();
    let regions: Vec<(u64, usize)> = addrs.iter().map(|&(a, _)| (a, hlen)).collect();
    let headers = s.mem.read_many(&regions);
    // Every read failing means the process is gone (or going), not that
    // every map died: keep the history for the final report.
    if !headers.is_empty() && headers.iter().all(Option::is_none) {
        return;
    }
    let layout = s.info.layout.clone();
    // Swiss maps with a directory need two more reads each (the directory,
    // then its tables): batched over all maps, three system calls in all
    // rather than two per map.
    let swiss: Vec<Option<sample::SwissHeader>> = match imp {
        MapImpl::Hmap => Vec::new(),
        MapImpl::Swiss => headers
            .iter()
            .map(|hb| hb.as_deref().and_then(|b| sample::decode_swiss(b, &layout)))
            .collect(),
    };
    let dir_regions: Vec<(u64, usize)> = swiss
        .iter()
        .flatten()
        .filter(|h| h.dir_len > 0)
        .map(|h| (h.dir_ptr, (h.dir_len * 8) as usize))
        .collect();
    let dirs = s.mem.read_many(&dir_regions);
    // Per map with a directory: its distinct table pointers (None: the
    // directory could not be read).
    let table_ptrs: Vec<Option<Vec<u64>>> = dirs
        .into_iter()
        .map(|d| {
            d.map(|d| {
                let mut ptrs: Vec<u64> = d
                    .chunks_exact(8)
                    .filter_map(|c| c.try_into().ok().map(u64::from_le_bytes))
                    .collect();
                ptrs.sort_unstable();
                ptrs.dedup();
                ptrs
            })
        })
        .collect();
    let table_regions: Vec<(u64, usize)> = table_ptrs
        .iter()
        .flatten()
        .flatten()
        .map(|&p| (p, 32))
        .collect();
    let mut tables = s.mem.read_many(&table_regions).into_iter();
    let mut table_ptrs = table_ptrs.into_iter();
    for (i, ((addr, tp), hb)) in addrs.into_iter().zip(headers).enumerate() {
        // Cache hit without cloning the type's strings (hot: every map, every cycle).
        let sizes = if tp == 0 {
            TypeSizes::default()
        } else if let Some(e) = s.types.get(&tp) {
            e.3
        } else {
            type_entry(s, tp).3
        };
        let sample = match imp {
            MapImpl::Hmap => hb.and_then(|b| sample::decode_hmap(&b, &layout, sizes)),
            MapImpl::Swiss => swiss[i].and_then(|h| {
                if h.dir_len == 0 {
                    return Some(sample::swiss_sample(&h, &[], &layout, sizes));
                }
                // Consumed in the order they were collected above.
                let ptrs = table_ptrs.next().flatten()?;
                let mine: Vec<Option<Vec<u8>>> = tables.by_ref().take(ptrs.len()).collect();
                Some(sample::swiss_sample(&h, &mine, &layout, sizes))
            }),
        };
        s.model.on_sample(addr, cycle, sample);
    }
}

/// Keys read per GC cycle, over all maps: bounds the tracer's memory and the
/// time a cycle takes.
const MAX_KEYS_PER_CYCLE: u64 = 1_000_000;
/// Maps that are not suspects whose keys are read per cycle (the largest).
const MAX_OTHER_SNAPSHOTS: usize = 64;
/// Largest map that is not a suspect whose keys are read.
const MAX_OTHER_LEN: u64 = 20_000;
/// Wall time for key snapshots per GC cycle; maps left out go first next
/// cycle. Reading keys must not delay the next cycle's header reads.
const SNAPSHOT_TIME: Duration = Duration::from_millis(100);

/// Reads the keys of suspects (growing, bloated) and of a bounded number of
/// other maps, and follows them across cycles.
fn snapshot_keys(s: &mut Session, cycle: u64) {
    let started = Instant::now();
    s.key_trackers
        .retain(|addr, _| s.model.maps.contains_key(addr));
    s.snap_cycle
        .retain(|addr, _| s.model.maps.contains_key(addr));
    let mut cands: Vec<(u8, u64, u64, u64)> = s
        .model
        .maps
        .values()
        .filter(|m| m.type_ptr != 0 && m.last().is_some_and(|x| x.cycle == cycle))
        .map(|m| {
            let rank = match m.verdict() {
                Verdict::Growing => 0,
                Verdict::Bloated => 1,
                _ => 2,
            };
            (rank, m.last().map_or(0, |x| x.len), m.addr, m.type_ptr)
        })
        .collect();
    // Suspects first; within a rank, the longest without a snapshot first.
    let last = |a: u64| s.snap_cycle.get(&a).copied().unwrap_or(0);
    cands.sort_by(|a, b| {
        a.0.cmp(&b.0)
            .then(last(a.2).cmp(&last(b.2)))
            .then(b.1.cmp(&a.1))
            .then(a.2.cmp(&b.2))
    });
    let mut budget = MAX_KEYS_PER_CYCLE;
    let mut others = 0;
    for (rank, len, addr, tp) in cands {
        if started.elapsed() >= SNAPSHOT_TIME {
            break;
        }
        if rank == 2 {
            if others >= MAX_OTHER_SNAPSHOTS || len == 0 || len > MAX_OTHER_LEN {
                continue;
            }
            others += 1;
        }
        if len > budget {
            continue;
        }
        let (mem, info, bias) = (s.mem, &s.info, s.bias);
        let Some(kl) = s
            .key_layouts
            .entry(tp)
            .or_insert_with(|| crate::keys::key_layout(&mem, info, bias, tp))
            .as_ref()
        else {
            continue;
        };
        let max = MAX_TRACKED_KEYS.min(budget as usize);
        let Some(snap) = crate::keys::snapshot(&s.mem, &s.info.layout, kl, addr, max) else {
            continue;
        };
        budget = budget.saturating_sub(snap.keys.len() as u64);
        s.snap_cycle.insert(addr, cycle);
        let show = s.show_keys;
        s.key_trackers
            .entry(addr)
            .or_insert_with(|| KeyTracker::new(kl.key_type.clone(), show))
            .update(cycle, &snap);
    }
}

/// Names the global variable holding each suspicious map, by scanning the
/// target's writable globals for the map pointer.
fn find_owners(s: &mut Session, force: bool) {
    let cands: Vec<u64> = s
        .model
        .maps
        .values()
        .filter(|m| m.owner.is_none() && matches!(m.verdict(), Verdict::Growing | Verdict::Bloated))
        .filter(|m| {
            force
                || s.owners_searched
                    .get(&m.addr)
                    .is_none_or(|&c| s.sampled_cycles >= c + 4)
        })
        .map(|m| m.addr)
        .collect();
    if cands.is_empty() {
        return;
    }
    let Some((lo, hi)) = s.info.data_range() else {
        return;
    };
    let hi = hi.min(lo + (64 << 20));
    let mut found: HashMap<u64, String> = HashMap::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut a = lo;
    while a < hi {
        let want = ((hi - a) as usize).min(buf.len()) & !7;
        if want == 0 {
            break;
        }
        let n = s.mem.read_some(a + s.bias, &mut buf[..want]) & !7;
        if n == 0 {
            // Unmapped page: skip it.
            a = (a + 4096) & !4095;
            continue;
        }
        {
            for (i, w) in buf[..n].chunks_exact(8).enumerate() {
                let v = u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
                if cands.contains(&v) && !found.contains_key(&v) {
                    let va = a + (i as u64) * 8;
                    if let Some((sym, off)) = s.info.data_symbol_at(va) {
                        let name = if off == 0 {
                            sym.name.clone()
                        } else {
                            format!("{}+{off}", sym.name)
                        };
                        found.insert(v, name);
                    } else {
                        found.insert(v, format!("global at {va:#x} (no symbol: stripped binary)"));
                    }
                }
            }
        }
        a += n as u64;
    }
    for c in cands {
        s.owners_searched.insert(c, s.sampled_cycles);
        if let Some(name) = found.remove(&c)
            && let Some(m) = s.model.maps.get_mut(&c)
        {
            m.owner = Some(name);
        }
    }
}

fn build_report(s: &mut Session, tracer: &Tracer, duration_s: f64, final_report: bool) -> Report {
    find_owners(s, final_report);
    let hits = tracer.probe_hits();
    let mut overhead = Overhead::default();
    for (i, (p, func, addr, _)) in s.probes.iter().enumerate() {
        let n = hits.get(p.id as usize).copied().unwrap_or(0);
        *overhead
            .probe_hits
            .entry(format!("{func}@{addr:#x}"))
            .or_default() += n;
        overhead.estimated_target_cpu_s += n as f64 * s.hit_cost[i];
    }
    let counters = tracer.counters();
    for (name, c) in [
        ("ring_buffer_full", Counter::RingBufFull),
        ("read_failed", Counter::ReadFailed),
        ("stack_failed", Counter::StackFailed),
        ("no_config", Counter::NoConfig),
        ("bad_cookie", Counter::BadCookie),
        ("create_without_entry", Counter::CreateNoEntry),
        ("created", Counter::Created),
        ("write_table_full", Counter::WritesFull),
        ("other_caller", Counter::OtherCaller),
    ] {
        overhead.counters.insert(
            name.to_owned(),
            counters.get(c as usize).copied().unwrap_or(0),
        );
    }
    overhead.creation_probes_paused = s.gov.pauses;
    overhead.creation_probes_resumed = s.gov.resumes;
    overhead.creation_probes_paused_s = s.gov.paused_s(Instant::now());
    overhead.governed_probes_attached_share = if duration_s > 0.0 {
        (1.0 - overhead.creation_probes_paused_s / duration_s).clamp(0.0, 1.0)
    } else {
        1.0
    };
    overhead.write_windows = s.gov.windows;
    overhead.write_windows_s = (s.gov.window_total
        + s.gov.window_open.map_or(Duration::ZERO, |at| at.elapsed()))
    .as_secs_f64();
    overhead.maps_found_by_write_windows = s.discovered_by_writes;
    overhead.budget_spent_target_cpu_s = s.gov.spent;
    overhead.gc_cycles_not_sampled_late = s.late_cycles;
    overhead.gc_cycles_sampled = s.sampled_cycles;
    overhead.gc_cycles_skipped = s.skipped_cycles;
    let (cpu, rss) = self_usage();
    overhead.tracer_cpu_s = cpu;
    overhead.tracer_max_rss_bytes = rss;
    let mut maps: Vec<MapReport> = Vec::new();
    let ids: Vec<u64> = s.model.maps.keys().copied().collect();
    for addr in ids {
        let Some(m) = s.model.maps.get(&addr).cloned() else {
            continue;
        };
        let Some(last) = m.last().copied() else {
            continue;
        };
        let (type_name, key, elem, _) = if m.type_ptr == 0 {
            (
                m.type_name.clone().unwrap_or_else(|| "unknown".to_owned()),
                None,
                None,
                TypeSizes::default(),
            )
        } else {
            type_entry(s, m.type_ptr)
        };
        let first = m.samples.front().copied().unwrap_or(last);
        let span = last.cycle.saturating_sub(first.cycle).max(1) as f64;
        maps.push(MapReport {
            id: m.id,
            addr: format!("{addr:#x}"),
            type_name,
            key_type: key,
            elem_type: elem,
            created_at: m.created_at.clone(),
            grown_at: m.grow_site.clone(),
            owner: m.owner.clone(),
            len_by_cycle: m.samples.iter().map(|x| (x.cycle, x.len)).collect(),
            len_first: m.first.map_or(last.len, |f| f.len),
            len_last: last.len,
            capacity: last.capacity,
            bytes: last.bytes,
            growth_events: m.growth_events,
            growth_per_cycle: (last.len as f64 - first.len as f64) / span,
            verdict: m.verdict(),
            retained_keys: s
                .key_trackers
                .get(&addr)
                .and_then(|t| serde_json::to_value(t.stats()).ok()),
            inserted_at: m
                .insert_sites
                .iter()
                .filter_map(|&(pc, count)| {
                    let frame = s
                        .info
                        .frame_for_pc(pc.wrapping_sub(s.bias).wrapping_sub(1))?;
                    Some(report::InsertSite { frame, count })
                })
                .collect(),
            writes_seen: report::WritesSeen {
                assigns: m.assigns,
                deletes: m.deletes,
            },
        });
    }
    maps.sort_by(|a, b| {
        a.verdict
            .cmp(&b.verdict)
            .then(b.bytes.cmp(&a.bytes))
            .then(a.id.cmp(&b.id))
    });
    Report {
        schema: report::SCHEMA,
        target: TargetInfo {
            pid: s.target.pid,
            exe: s.target.exe_display.clone(),
            go_version: s.info.go_version.raw.clone(),
            goarch: s.info.goarch.as_str().to_owned(),
            map_impl: s.info.map_impl.as_str().to_owned(),
            stripped: !s.info.has_symtab,
        },
        duration_s,
        ended: s
            .ended
            .clone()
            .unwrap_or_else(|| "still running".to_owned()),
        gc_cycles: s.model.cycles.iter().copied().collect(),
        maps,
        finalizers: finalizer_report(s),
        overhead,
        maps_retired: s.model.retired,
        maps_evicted: s.model.evicted,
    }
}

fn finalizer_report(s: &Session) -> report::Finalizers {
    let f = &s.fin;
    let cycle = s.model.cycles.back().map_or(0, |c| c.cycle);
    let mut ages: std::collections::BTreeMap<u64, u64> = std::collections::BTreeMap::new();
    for a in f.pending_ages(cycle) {
        *ages.entry(a).or_default() += 1;
    }
    let cleanup_objs = f.cleanup_objects();
    let mut held = Vec::new();
    if !f.finalizers.is_empty() || !cleanup_objs.is_empty() {
        let mut addrs: Vec<&u64> = s.key_trackers.keys().collect();
        addrs.sort_unstable();
        for addr in addrs {
            let (Some(t), Some(m)) = (s.key_trackers.get(addr), s.model.maps.get(addr)) else {
                continue;
            };
            let h = finalizers::held_keys(f, &cleanup_objs, t.present_pointers());
            if h.finalizers + h.cleanups == 0 {
                continue;
            }
            let layout = s.key_layouts.get(&m.type_ptr).and_then(Option::as_ref);
            let key_type = layout.map_or("?", |l| l.key_type.name.as_str());
            held.push(report::HeldAsMapKeys {
                map_id: m.id,
                map_type: layout.map_or_else(|| "unknown".to_owned(), |l| l.map_type.clone()),
                owner: m.owner.clone(),
                count: h.finalizers.max(h.cleanups),
                finalizers: h.finalizers,
                cleanups: h.cleanups,
                type_name: key_type.strip_prefix('*').unwrap_or(key_type).to_owned(),
            });
        }
    }
    report::Finalizers {
        set: f.set,
        removed: f.removed,
        ran: f.ran + f.ran_unknown,
        ran_set_before_trace: f.ran_unknown,
        pending: f.pending(),
        pending_age_cycles_histogram: ages.into_iter().collect(),
        cleanups_added: f.cleanups_added,
        cleanups_ran: f.cleanups_ran,
        cleanups_stopped: f.cleanups_stopped,
        dropped: f.dropped,
        held_as_map_keys: held,
    }
}

/// `MAPLEAK_DEBUG_TIMING` set: print GC event lag, slow governor actions and
/// the final detach time to stderr. Read once (the governor runs every 10 ms).
fn debug_timing() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("MAPLEAK_DEBUG_TIMING").is_some())
}

fn now_ns() -> u64 {
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

/// Runs `trace`: attach, loop, report.
pub fn run(opts: &TraceOptions) -> Result<()> {
    if opts.pids.is_empty() {
        bail!("no --pid given");
    }
    let mut tracer = Tracer::load()?;
    let mut sessions: Vec<Session> = Vec::new();
    for &pid in &opts.pids {
        sessions.push(attach_session(
            &mut tracer,
            pid,
            opts.overhead_budget,
            opts.show_keys,
        )?);
    }
    install_signal_handlers();
    let json_to_stdout = opts.json.as_deref() == Some("-");
    let mut out: Box<dyn Write> = if json_to_stdout {
        Box::new(std::io::stderr())
    } else {
        Box::new(std::io::stdout())
    };
    let tty = if json_to_stdout {
        std::io::stderr().is_terminal()
    } else {
        std::io::stdout().is_terminal()
    };
    for s in &sessions {
        writeln!(
            out,
            "mapleak-trace: attached {} probes to pid {} ({} {} {}); report at {}",
            s.probes.len(),
            s.target.pid,
            s.info.go_version.raw,
            s.info.goarch.as_str(),
            s.info.map_impl.as_str(),
            opts.duration
                .map_or_else(|| "Ctrl-C".to_owned(), |d| format!("{:.0?}", d))
        )?;
    }
    let start = Instant::now();
    let mut last_render = Instant::now();
    let mut t0: Option<u64> = None;
    let mut last_govern = Instant::now();
    let mut last_drain = Instant::now();
    let mut last_alive = Instant::now();
    let mut events: Vec<Event> = Vec::new();
    let mut bad_events = 0u64;
    let end_reason = loop {
        let now = Instant::now();
        let period = sessions
            .iter()
            .filter(|s| s.ended.is_none())
            .map(|s| check_period(s, now))
            .fold(crate::governor::PERIOD, Duration::min);
        // GC events do not wake the loop (they are written without a
        // wakeup: a GC-heavy target runs hundreds of cycles a second), so it
        // wakes at least every IDLE_WAIT, or when a pending sample is due.
        let wait = sessions
            .iter()
            .filter_map(sample_wait)
            .fold(period.min(IDLE_WAIT), Duration::min);
        // Rounded up: a wait of 0 ms would spin until the sample is due.
        tracer.wait(wait.as_micros().div_ceil(1000) as i32);
        tracer.drain(|b| match decode(b) {
            Ok(e) => events.push(e),
            Err(_) => bad_events += 1,
        });
        for ev in events.drain(..) {
            if let Some(s) = sessions
                .iter_mut()
                .find(|s| s.target.pid == ev.tgid() && s.ended.is_none())
            {
                on_event(s, &tracer, &ev, &mut t0);
            }
        }
        for s in &mut sessions {
            if s.ended.is_none() {
                sample_due(s);
            }
        }
        if last_govern.elapsed() >= period {
            last_govern = Instant::now();
            let hits = tracer.probe_hits();
            for s in &mut sessions {
                if s.ended.is_none() {
                    govern(s, &mut tracer, &hits);
                }
            }
        }
        if last_drain.elapsed() >= WRITES_DRAIN {
            last_drain = Instant::now();
            let writes = tracer.drain_writes();
            if !writes.is_empty() {
                for s in &mut sessions {
                    on_writes(s, &writes);
                }
            }
        }
        // An exit is also seen as the end of the events; /proc is read at
        // most every 100 ms (the loop runs every 10 ms in windows).
        if last_alive.elapsed() >= ALIVE_CHECK {
            last_alive = Instant::now();
            for s in &mut sessions {
                if s.ended.is_none() && !s.target.alive() {
                    s.ended = Some("target exited".to_owned());
                }
            }
        }
        if last_render.elapsed() >= opts.interval {
            last_render = Instant::now();
            let el = start.elapsed().as_secs_f64();
            if tty {
                write!(out, "\x1b[2J\x1b[H")?;
                for s in &mut sessions {
                    let r = build_report(s, &tracer, el, false);
                    report::render(&r, &mut out, opts.top)?;
                }
            } else {
                for s in &sessions {
                    writeln!(out, "{}", live_line(s, el))?;
                }
            }
            out.flush()?;
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
    let el = start.elapsed().as_secs_f64();
    let mut reports = Vec::new();
    for s in &mut sessions {
        if s.ended.is_none() {
            s.ended = Some(end_reason.to_owned());
        }
        reports.push(build_report(s, &tracer, el, true));
    }
    // Detach everything, busiest probes first (closes serialize in the
    // kernel; a breakpoint waiting its turn still traps).
    let mut pending = Detaching::default();
    for s in &mut sessions {
        let order = close_order(s, |_| true);
        let mut links: Vec<crate::bpf::Link> = s.groups.drain(..).map(|g| g.1).collect();
        links.extend(
            order
                .into_iter()
                .filter_map(|i| tracer.take_link(&mut s.probes[i].0)),
        );
        pending
            .0
            .extend(crate::bpf::close_links(links).map(std::sync::Arc::new));
        s.detaching_creation.join();
        s.detaching_window.join();
    }
    let t_detach = Instant::now();
    pending.join();
    if debug_timing() {
        eprintln!("detach of all probes took {:?}", t_detach.elapsed());
    }
    drop(tracer);
    writeln!(out)?;
    for r in &reports {
        report::render(r, &mut out, opts.top)?;
        writeln!(out)?;
    }
    if bad_events > 0 {
        writeln!(out, "warning: {bad_events} events could not be decoded")?;
    }
    out.flush()?;
    if let Some(path) = &opts.json {
        // Serialized straight to the writer: a serde_json::Value of 100,000
        // maps would cost gigabytes.
        let mut w: Box<dyn Write> = if path == "-" {
            Box::new(std::io::BufWriter::new(std::io::stdout()))
        } else {
            Box::new(std::io::BufWriter::new(
                std::fs::File::create(path).with_context(|| format!("writing {path}"))?,
            ))
        };
        if reports.len() == 1 {
            serde_json::to_writer_pretty(&mut w, &reports[0])?;
        } else {
            serde_json::to_writer_pretty(&mut w, &reports)?;
        }
        writeln!(w)?;
        w.flush().with_context(|| format!("writing {path}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_gap_is_at_least_the_minimum_and_grows_with_cost() {
        assert_eq!(sample_gap(Duration::ZERO), MIN_SAMPLE_GAP);
        assert_eq!(sample_gap(Duration::from_millis(5)), MIN_SAMPLE_GAP);
        // 100,000 maps took about 140 ms to read: 1.4 s between samples,
        // so header reads stay at a tenth of one CPU.
        assert_eq!(
            sample_gap(Duration::from_millis(140)),
            Duration::from_millis(1400)
        );
    }
}
