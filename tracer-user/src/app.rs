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
    ingest::{Event, decode},
    inspect::{BinaryInfo, Frame, MapImpl},
    model::{Model, Verdict},
    plan::ProbePlan,
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
    /// Probes on creation functions, parallel to `probes`.
    creation: Vec<bool>,
    gov: Governor,
}

/// Keeps the creation probes within the overhead budget. Their rate grows
/// with map *creation*, which a busy service does per request (every
/// `http.Header` is a map), and their RET-site probes are single-stepped:
/// when the estimated cost exceeds the budget they are detached, then tried
/// again after a back-off that doubles up to a minute.
#[derive(Debug)]
struct Governor {
    last_check: Instant,
    last_hits: Vec<u64>,
    paused_until: Option<Instant>,
    paused_at: Option<Instant>,
    backoff: Duration,
    paused_total: Duration,
    pauses: u64,
}

impl Governor {
    fn new() -> Self {
        Self {
            last_check: Instant::now(),
            last_hits: Vec::new(),
            paused_until: None,
            paused_at: None,
            backoff: Duration::from_secs(2),
            paused_total: Duration::ZERO,
            pauses: 0,
        }
    }
}

/// How often the governor looks at the hit rates.
const GOVERNOR_PERIOD: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

fn govern(s: &mut Session, tracer: &mut Tracer, budget: f64) {
    let now = Instant::now();
    if let Some(until) = s.gov.paused_until {
        if now < until {
            return;
        }
        if let Some(at) = s.gov.paused_at.take() {
            s.gov.paused_total += now.duration_since(at);
        }
        for i in 0..s.probes.len() {
            if s.creation[i] {
                let _ =
                    tracer.reattach(&s.target.exe, s.target.pid, &mut s.probes[i].0, &s.reqs[i]);
            }
        }
        s.gov.paused_until = None;
        s.gov.last_check = now;
        s.gov.last_hits = tracer.probe_hits();
        return;
    }
    let dt = now.duration_since(s.gov.last_check);
    if dt < GOVERNOR_PERIOD {
        return;
    }
    let hits = tracer.probe_hits();
    let mut cost = 0.0;
    for (i, (p, _, _, emulated)) in s.probes.iter().enumerate() {
        if !s.creation[i] {
            continue;
        }
        let now_h = hits.get(p.id as usize).copied().unwrap_or(0);
        let before = s.gov.last_hits.get(p.id as usize).copied().unwrap_or(0);
        cost += now_h.saturating_sub(before) as f64
            * if *emulated {
                EMULATED_HIT_S
            } else {
                SINGLE_STEP_HIT_S
            };
    }
    s.gov.last_hits = hits;
    s.gov.last_check = now;
    if cost / dt.as_secs_f64() > budget {
        for i in 0..s.probes.len() {
            if s.creation[i] {
                tracer.detach(&mut s.probes[i].0);
            }
        }
        s.gov.pauses += 1;
        s.gov.paused_until = Some(now + s.gov.backoff);
        s.gov.paused_at = Some(now);
        s.gov.backoff = (s.gov.backoff * 2).min(MAX_BACKOFF);
    }
}

/// A probe on a conditional branch of the stack check (arm64, and amd64 on
/// Go <= 1.20, whose prologue has no PUSHQ BP) fires twice when the
/// goroutine's stack grows: the function restarts after morestack. The
/// second hit carries the same arguments within microseconds.
const DOUBLE_HIT_NS: u64 = 200_000;

/// Cost of one probe hit, measured by `cargo xtask bench` on this kind of VM
/// (docs/benchmarks.md part 2: 0.7-0.9 µs emulated, 9.4-11.6 µs single-stepped).
const EMULATED_HIT_S: f64 = 0.8e-6;
const SINGLE_STEP_HIT_S: f64 = 11.0e-6;

fn attach_session(tracer: &mut Tracer, pid: u32) -> Result<Session> {
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
    let mut creation = Vec::new();
    for p in &plan.probes {
        let file_offset = info
            .va_to_file_offset(p.address)
            .with_context(|| format!("{} at {:#x} is outside the file", p.function, p.address))?;
        let req = ProbeRequest {
            program: p.role.program(),
            file_offset,
            spec: p.spec,
        };
        let a = tracer.attach(&target.exe, pid, &req)?;
        let emulated = !p.ret_site && !p.reason.starts_with("entry");
        probes.push((a, p.function.clone(), p.address, emulated));
        reqs.push(req);
        creation.push(matches!(
            p.role,
            tracer_common::ProbeRole::CreateEntry | tracer_common::ProbeRole::CreateRet
        ));
    }
    let mut s = Session {
        mem: Memory::new(pid),
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
        creation,
        gov: Governor::new(),
    };
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
        None => (
            s.info
                .type_name(link)
                .unwrap_or_else(|| "unknown".to_owned()),
            None,
            None,
            TypeSizes::default(),
        ),
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
            if s.model.on_grow(g.map_addr, g.type_ptr, g.hdr.ts_ns, site) {
                if let Some(rec) = tracer.created(s.target.pid, g.map_addr)
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
            sample_all(s, cycle);
            find_owners(s, false);
        }
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
    for ((addr, tp), hb) in addrs.into_iter().zip(headers) {
        // Cache hit without cloning the type's strings (hot: every map, every cycle).
        let sizes = if tp == 0 {
            TypeSizes::default()
        } else if let Some(e) = s.types.get(&tp) {
            e.3
        } else {
            type_entry(s, tp).3
        };
        let sample = hb.and_then(|b| match imp {
            MapImpl::Hmap => sample::decode_hmap(&b, &layout, sizes),
            MapImpl::Swiss => {
                let h = sample::decode_swiss(&b, &layout)?;
                let tables = if h.dir_len == 0 {
                    Vec::new()
                } else {
                    let mut dir = vec![0u8; (h.dir_len * 8) as usize];
                    if !s.mem.read(h.dir_ptr, &mut dir) {
                        return None;
                    }
                    let mut ptrs: Vec<u64> = dir
                        .chunks_exact(8)
                        .filter_map(|c| c.try_into().ok().map(u64::from_le_bytes))
                        .collect();
                    ptrs.dedup();
                    ptrs.sort_unstable();
                    ptrs.dedup();
                    let regs: Vec<(u64, usize)> = ptrs.iter().map(|&p| (p, 32)).collect();
                    s.mem.read_many(&regs)
                };
                Some(sample::swiss_sample(&h, &tables, &layout, sizes))
            }
        });
        s.model.on_sample(addr, cycle, sample);
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
                    .is_none_or(|&c| s.gc_seen >= c + 4)
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
        s.owners_searched.insert(c, s.gc_seen);
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
    for (p, func, addr, emulated) in &s.probes {
        let n = hits.get(p.id as usize).copied().unwrap_or(0);
        *overhead
            .probe_hits
            .entry(format!("{func}@{addr:#x}"))
            .or_default() += n;
        overhead.estimated_target_cpu_s += n as f64
            * if *emulated {
                EMULATED_HIT_S
            } else {
                SINGLE_STEP_HIT_S
            };
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
    ] {
        overhead.counters.insert(
            name.to_owned(),
            counters.get(c as usize).copied().unwrap_or(0),
        );
    }
    overhead.creation_probes_paused = s.gov.pauses;
    overhead.creation_probes_paused_s = (s.gov.paused_total
        + s.gov.paused_at.map_or(Duration::ZERO, |at| at.elapsed()))
    .as_secs_f64();
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
            retained_keys: None,
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
        finalizers: report::Finalizers::default(),
        overhead,
        maps_retired: s.model.retired,
        maps_evicted: s.model.evicted,
    }
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
        sessions.push(attach_session(&mut tracer, pid)?);
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
    let mut events: Vec<Event> = Vec::new();
    let mut bad_events = 0u64;
    let end_reason = loop {
        tracer.wait(100);
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
                govern(s, &mut tracer, opts.overhead_budget);
            }
            if s.ended.is_none() && !s.target.alive() {
                s.ended = Some("target exited".to_owned());
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
    for s in &mut sessions {
        for p in &mut s.probes {
            tracer.detach(&mut p.0);
        }
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
