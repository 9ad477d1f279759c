//! `app`: wires the stages for `mapleak-trace trace`. One loop polls the ring
//! buffer, applies events to each process's model, reads map headers at GC
//! cycles, attaches what the governor asks for, and renders; the governor
//! checks the budget and closes probes on its own thread ([`crate::budget`]).
use std::{
    collections::HashMap,
    io::{IsTerminal as _, Write},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use tracer_common::{Counter, ProcConfig};

use crate::{
    bpf::{AttachedProbe, ProbeRequest, Tracer},
    budget::{self, Budget, GovernorThread, ProbeCost},
    discover::Target,
    finalizers::{self, FinTracker},
    governor::{EMULATED_HIT_S, SINGLE_STEP_HIT_S, WRITE_HIT_S},
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
    /// The budget, shared with the governor's thread.
    budget: Arc<Mutex<Budget>>,
    /// Its rate, share of one CPU.
    rate: f64,
    /// When keys were last read and owners searched, and how long it took.
    last_keys: Option<(Instant, Duration)>,
    /// Samples whose key reads were deferred to stay within the budget.
    keys_deferred: u64,
    /// Growth and creation sites not symbolized yet, by map.
    unresolved: HashMap<u64, Unresolved>,
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

/// A probe on a conditional branch of the stack check (arm64, and amd64 on
/// Go <= 1.20, whose prologue has no PUSHQ BP) fires twice when the
/// goroutine's stack grows: the function restarts after morestack. The
/// second hit carries the same arguments within microseconds.
const DOUBLE_HIT_NS: u64 = 200_000;

/// How often the targets are checked for exit.
const ALIVE_CHECK: Duration = Duration::from_millis(250);

/// Longest wait for events: GC events are written to the ring buffer
/// without waking the tracer, so this bounds how late they are read.
const IDLE_WAIT: Duration = Duration::from_millis(100);

/// A GC event processed later than this is not sampled (see `sample_due`).
const MAX_SAMPLE_LAG_NS: u64 = 150_000_000;

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

fn attach_session(tracer: &mut Tracer, pid: u32, rate: f64, show_keys: bool) -> Result<Session> {
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
    let mut costs = Vec::new();
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
        costs.push(ProbeCost {
            id: a.id,
            class: p.class,
            hit_cost: match (emulated, p.window) {
                (false, _) => SINGLE_STEP_HIT_S,
                (true, true) => WRITE_HIT_S,
                (true, false) => EMULATED_HIT_S,
            },
            addr: p.address + bias,
            orig: orig[costs.len()],
        });
        probes.push((a, p.function.clone(), p.address, emulated));
        reqs.push(req);
    }
    let mut budget = Budget::new(pid, rate, costs);
    let links = budget::attach_links(
        tracer,
        &target.exe,
        pid,
        &mut probes,
        &reqs,
        &budget.probes,
        ProbeClass::Governed,
    )?;
    budget.install(ProbeClass::Governed, links, true);
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
        budget: Arc::new(Mutex::new(budget)),
        rate,
        last_keys: None,
        keys_deferred: 0,
        unresolved: HashMap::new(),
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
    discover_globals(&mut s);
    Ok(s)
}

/// Attaches what the governor's thread asked for (it closes on its own;
/// attaching needs the loaded programs). A failure (the process is
/// exiting) leaves the probes detached.
fn serve_attaches(s: &mut Session, tracer: &mut Tracer) {
    let (wants, costs) = {
        let mut b = lock(&s.budget);
        let w = b.wants();
        if w.is_empty() {
            return;
        }
        (w, b.probes.clone())
    };
    for class in wants {
        let links = budget::attach_links(
            tracer,
            &s.target.exe,
            s.target.pid,
            &mut s.probes,
            &s.reqs,
            &costs,
            class,
        )
        .unwrap_or_default();
        lock(&s.budget).install(class, links, false);
        if class == ProbeClass::Governed {
            s.fin.probes_resumed(now_ns());
        }
    }
}

/// Tells the finalizer bookkeeping that the governor's thread paused the
/// governed probes (the finalizer probes among them). Called before
/// [`serve_attaches`]: a resume waits for it, so no pause goes unnoted.
fn note_pauses(s: &mut Session) {
    let (pauses, ns) = {
        let b = lock(&s.budget);
        (b.gov.pauses, b.paused_ns)
    };
    if pauses > s.fin.pauses {
        s.fin.probes_paused(ns);
        s.fin.pauses = pauses;
    }
}

/// The budget, even if the governor's thread panicked while holding it.
fn lock(b: &Mutex<Budget>) -> std::sync::MutexGuard<'_, Budget> {
    b.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
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

/// A map's sites as the kernel gave them: the latest growth's (stack id,
/// return address) and its creation record.
#[derive(Debug, Default)]
struct Unresolved {
    grow: Option<(i32, u64)>,
    created: Option<tracer_common::CreateRecord>,
}

/// Symbolizes the sites of the maps `pick` selects (and forgets those of
/// maps no longer tracked).
fn resolve_sites(
    s: &mut Session,
    tracer: &Tracer,
    pick: impl Fn(&crate::model::TrackedMap) -> bool,
) {
    s.unresolved
        .retain(|addr, _| s.model.maps.contains_key(addr));
    let addrs: Vec<u64> = s
        .unresolved
        .keys()
        .copied()
        .filter(|a| s.model.maps.get(a).is_some_and(&pick))
        .collect();
    for addr in addrs {
        let Some(u) = s.unresolved.remove(&addr) else {
            continue;
        };
        let grown = u
            .grow
            .map(|(id, caller)| symbolize(s, &tracer.stack(id), caller));
        let created = u
            .created
            .map(|rec| symbolize(s, &tracer.stack(rec.stack_id), rec.caller_pc));
        if let Some(m) = s.model.maps.get_mut(&addr) {
            if let Some(g) = grown.filter(|g| !g.is_empty()) {
                m.grow_site = g;
            }
            if let Some(c) = created {
                m.created_at = c;
            }
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
            // Symbolizing is left until the map matters (a suspect, or the
            // report): a service that builds large maps per request sends
            // thousands of growth events a second, for maps that die young.
            let new = s
                .model
                .on_grow(g.map_addr, g.type_ptr, g.hdr.ts_ns, Vec::new());
            let u = s.unresolved.entry(g.map_addr).or_default();
            u.grow = Some((g.stack_id, g.caller_pc));
            // The creation record is read now: the in-kernel LRU may drop it
            // before the map is resolved.
            if new
                && let Some(rec) = tracer.created(s.target.pid, g.map_addr)
                && rec.ts_ns <= g.hdr.ts_ns
            {
                u.created = Some(rec);
                if let Some(m) = s.model.maps.get_mut(&g.map_addr) {
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

/// A sample's header reads are followed by a pause of at least this many
/// times their length.
const SAMPLE_GAP_FACTOR: u32 = 9;

/// Share of the overhead budget the tracer's header reads may take (the
/// governor debits the tracer's CPU with the probes' cost). Samples are
/// what sees a map grow, so they are paced rather than made to wait for
/// credit; the governed probes get what is left, and key reads come last.
const HEADER_SHARE: f64 = 0.3;

/// Longest pause between two header samples, unless one sample takes more
/// than a tenth of it.
const MAX_SAMPLE_GAP: Duration = Duration::from_secs(10);

/// Longest time keys go unread while samples are taken.
const MAX_KEYS_GAP: Duration = Duration::from_secs(60);

/// How long after its start the next sample may start, when its header
/// reads took `took`: paced to [`HEADER_SHARE`] of a budget of `rate` CPUs,
/// within [`MIN_SAMPLE_GAP`]..[`MAX_SAMPLE_GAP`], and never less than ten
/// times `took`.
fn sample_gap(took: Duration, rate: f64) -> Duration {
    let base = MIN_SAMPLE_GAP.max(took * (SAMPLE_GAP_FACTOR + 1));
    let r = rate * HEADER_SHARE;
    let paced = if r > 0.0 {
        Duration::from_secs_f64((took.as_secs_f64() / r).min(3600.0))
    } else {
        MAX_SAMPLE_GAP
    };
    paced.min(MAX_SAMPLE_GAP).max(base)
}

/// Time left of the gap after `s`'s last sample (zero: a sample may start).
fn gap_left(s: &Session) -> Duration {
    s.last_sample.map_or(Duration::ZERO, |(start, took)| {
        sample_gap(took, s.rate).saturating_sub(start.elapsed())
    })
}

/// Whether keys may be read at this sample: when the budget has credit to
/// spare after the governed probes and the write window (keys are the
/// tracer's costliest work, and come last), and at least every
/// [`MAX_KEYS_GAP`].
fn keys_due(s: &Session) -> bool {
    lock(&s.budget).spare_for_tracer()
        || s.last_keys
            .is_none_or(|(start, _)| start.elapsed() >= MAX_KEYS_GAP)
}

/// Time until `s` may take its pending sample (zero: now), or `None` when
/// nothing is pending.
fn sample_wait(s: &Session) -> Option<Duration> {
    s.sample_due.map(|_| gap_left(s))
}

/// Samples the newest GC cycle seen, if one is pending and the gap since
/// the previous sample has passed: map headers, then keys, then owners.
fn sample_due(s: &mut Session, tracer: &Tracer) {
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
    let start_ms = now_ns() as f64 / 1e6;
    sample_all(s, cycle);
    s.sampled_cycles += 1;
    resolve_sites(s, tracer, |m| {
        matches!(m.verdict(), Verdict::Growing | Verdict::Bloated)
    });
    let headers = t.elapsed();
    s.last_sample = Some((t, headers));
    if let Some(d) = test_sample_delay() {
        std::thread::sleep(d);
    }
    if keys_due(s) {
        let k = Instant::now();
        // They spend at most the credit above half the bucket: the governed
        // probes, paused below half, are not starved by them.
        let spare = {
            let b = lock(&s.budget);
            (b.gov.credit - b.gov.max() / 2.0).max(0.0)
        };
        let limit =
            Duration::from_secs_f64(spare.min(SNAPSHOT_TIME.as_secs_f64())).max(MIN_SNAPSHOT_TIME);
        snapshot_keys(s, cycle, limit);
        s.last_keys = Some((k, k.elapsed()));
    } else {
        s.keys_deferred += 1;
    }
    find_owners(s, false);
    if debug_timing() {
        eprintln!(
            "gc {cycle}: event age {:.1} ms, headers {headers:?}, all {:?}, {} maps; sample from {start_ms:.1} ms to {:.1} ms",
            age_ns as f64 / 1e6,
            t.elapsed(),
            s.model.maps.len(),
            now_ns() as f64 / 1e6,
        );
    }
}

/// `MAPLEAK_TEST_SAMPLE_DELAY_MS`: a pause inside every sample, for tests
/// that check the governor does not wait for the main loop's work.
fn test_sample_delay() -> Option<Duration> {
    static D: std::sync::OnceLock<Option<Duration>> = std::sync::OnceLock::new();
    *D.get_or_init(|| {
        std::env::var("MAPLEAK_TEST_SAMPLE_DELAY_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .map(Duration::from_millis)
    })
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
/// Least time given to key snapshots when they are due.
const MIN_SNAPSHOT_TIME: Duration = Duration::from_millis(5);

/// Reads the keys of suspects (growing, bloated) and of a bounded number of
/// other maps, and follows them across cycles.
fn snapshot_keys(s: &mut Session, cycle: u64, limit: Duration) {
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
        if started.elapsed() >= limit {
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
    if final_report {
        resolve_sites(s, tracer, |_| true);
    } else {
        resolve_sites(s, tracer, |m| m.verdict() != Verdict::Idle);
    }
    find_owners(s, final_report);
    let hits = tracer.probe_hits();
    let mut overhead = Overhead::default();
    let b = lock(&s.budget);
    for (i, (p, func, addr, _)) in s.probes.iter().enumerate() {
        let n = hits.get(p.id as usize).copied().unwrap_or(0);
        *overhead
            .probe_hits
            .entry(format!("{func}@{addr:#x}"))
            .or_default() += n;
        overhead.estimated_target_cpu_s += n as f64 * b.probes[i].hit_cost;
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
    overhead.creation_probes_paused = b.gov.pauses;
    overhead.creation_probes_resumed = b.gov.resumes;
    overhead.creation_probes_paused_s = b.gov.paused_s(Instant::now());
    overhead.governed_probes_attached_share = if duration_s > 0.0 {
        (1.0 - overhead.creation_probes_paused_s / duration_s).clamp(0.0, 1.0)
    } else {
        1.0
    };
    overhead.write_windows = b.gov.windows;
    overhead.write_windows_s = (b.gov.window_total
        + b.gov.window_open.map_or(Duration::ZERO, |at| at.elapsed()))
    .as_secs_f64();
    overhead.write_windows_closed_over_budget = b.gov.windows_over_budget;
    overhead.maps_found_by_write_windows = s.discovered_by_writes;
    overhead.budget_spent_target_cpu_s = b.gov.spent;
    overhead.budget_tracer_cpu_s = b.tracer_cpu_debited;
    overhead.key_reads_deferred = s.keys_deferred;
    drop(b);
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
            if h.finalizers + h.cleanups + h.unverified == 0 {
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
                unverified: h.unverified,
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
        pending_unverified: f.pending_unverified(),
        probe_pauses: f.pauses,
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
    let mut governor = GovernorThread::spawn(
        sessions.iter().map(|s| s.budget.clone()).collect(),
        tracer.hits_reader()?,
    )
    .context("starting the governor's thread")?;
    let start = Instant::now();
    let mut last_render = Instant::now();
    let mut t0: Option<u64> = None;
    let mut last_drain = Instant::now();
    let mut last_alive = Instant::now();
    let mut events: Vec<Event> = Vec::new();
    let mut bad_events = 0u64;
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
        for ev in events.drain(..) {
            if let Some(s) = sessions
                .iter_mut()
                .find(|s| s.target.pid == ev.tgid() && s.ended.is_none())
            {
                on_event(s, &tracer, &ev, &mut t0);
            }
        }
        // Attaches first: they are quick, and a sample may be long.
        for s in &mut sessions {
            if s.ended.is_none() {
                note_pauses(s);
                serve_attaches(s, &mut tracer);
                sample_due(s, &tracer);
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
                    lock(&s.budget).ended = true;
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
    governor.stop();
    let mut pending = budget::Detaching::default();
    for s in &mut sessions {
        let mut b = lock(&s.budget);
        b.ended = true;
        let mut links = b.take_all_links();
        let mut order: Vec<usize> = (0..s.probes.len()).collect();
        order.sort_by(|&x, &y| b.site_rate(y).total_cmp(&b.site_rate(x)));
        drop(b);
        links.extend(
            order
                .into_iter()
                .filter_map(|i| tracer.take_link(&mut s.probes[i].0)),
        );
        pending.push(crate::bpf::close_links(links));
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
    fn sample_gap_paces_header_reads_by_the_budget() {
        assert_eq!(sample_gap(Duration::ZERO, 0.01), MIN_SAMPLE_GAP);
        assert_eq!(sample_gap(Duration::from_micros(200), 0.01), MIN_SAMPLE_GAP);
        // 3 ms of reads at a 1% budget take 30% of it when 1 s apart.
        let g = sample_gap(Duration::from_millis(3), 0.01);
        assert!((g.as_secs_f64() - 1.0).abs() < 1e-9, "{g:?}");
        // Never more than 10 s without a sample, unless one takes a tenth
        // of that.
        assert_eq!(sample_gap(Duration::from_millis(140), 0.01), MAX_SAMPLE_GAP);
        assert_eq!(
            sample_gap(Duration::from_secs(2), 0.01),
            Duration::from_secs(20)
        );
        // A larger budget samples more often, down to ten times the reads;
        // none (or NaN), the longest gap.
        assert_eq!(
            sample_gap(Duration::from_millis(140), 1.0),
            Duration::from_millis(1400)
        );
        assert_eq!(sample_gap(Duration::from_millis(3), 0.0), MAX_SAMPLE_GAP);
        assert_eq!(
            sample_gap(Duration::from_millis(3), f64::NAN),
            MAX_SAMPLE_GAP
        );
    }
}
