//! `app::session`: one traced process: attaching its probes, the events
//! from the kernel, write-window discovery, symbolization and type names.
#![allow(
    clippy::wildcard_imports,
    reason = "the app modules share one set of imports and items"
)]
use super::*;

/// Per-process state.
pub(super) struct Session {
    pub(super) target: Target,
    pub(super) info: BinaryInfo,
    pub(super) bias: u64,
    pub(super) probes: Vec<budget::SessionProbe>,
    pub(super) model: Model,
    pub(super) mem: Memory,
    pub(super) types: HashMap<u64, (String, Option<String>, Option<String>, TypeSizes)>,
    pub(super) owners_searched: HashMap<u64, u64>,
    pub(super) ended: Option<String>,
    pub(super) gc_seen: u64,
    pub(super) last_grow: Option<(u64, u8, u64, u64, u64, u64)>,
    pub(super) last_gc_ns: [u64; 2],
    /// Attach requests, parallel to `probes`.
    pub(super) reqs: Vec<ProbeRequest>,
    /// The budget, shared with the governor's thread.
    pub(super) budget: Arc<Mutex<Budget>>,
    /// Its rate, share of one CPU.
    pub(super) rate: f64,
    /// When keys were last read and owners searched, and how long it took.
    pub(super) last_keys: Option<(Instant, Duration)>,
    /// Samples whose key reads were deferred to stay within the budget.
    pub(super) keys_deferred: u64,
    /// GC cycles not sampled because their event was processed too late.
    pub(super) late_cycles: u64,
    /// GC cycles whose headers were read.
    pub(super) sampled_cycles: u64,
    /// The sample to take when the gap allows: the newest GC cycle not
    /// sampled yet, or a timer sample.
    pub(super) pending_sample: Option<PendingSample>,
    /// Timer samples are taken when no sample came for this long (GC
    /// cycles rarer than `--interval`).
    pub(super) timer_every: Duration,
    /// Timer samples taken.
    pub(super) timer_samples: u64,
    /// When tracing this process started.
    pub(super) started: Instant,
    /// When the last sample started, and how long its header reads took:
    /// the next one waits [`sample_gap`] after it. (Key snapshots have
    /// their own bound per sample, `SNAPSHOT_TIME`.)
    pub(super) last_sample: Option<(Instant, Duration)>,
    /// Maps first found by the write windows.
    pub(super) discovered_by_writes: u64,
    pub(super) fin: FinTracker,
    /// Key layouts by map type descriptor (`None`: not resolvable).
    pub(super) key_layouts: HashMap<u64, Option<KeyLayout>>,
    /// Key retention by map address.
    pub(super) key_trackers: HashMap<u64, KeyTracker>,
    /// Cycle of each map's latest key snapshot (to rotate when time runs out).
    pub(super) snap_cycle: HashMap<u64, u64>,
    /// GC cycles not sampled to bound the tracer's CPU: a newer one came
    /// before the sample, or the gap after the previous sample made it late.
    pub(super) skipped_cycles: u64,
    pub(super) show_keys: bool,
    /// `--all-maps`.
    pub(super) all_maps: bool,
}

/// A probe on a conditional branch of the stack check (arm64, and amd64 on
/// Go <= 1.20, whose prologue has no PUSHQ BP) fires twice when the
/// goroutine's stack grows: the function restarts after morestack. The
/// second hit carries the same arguments within microseconds.
pub(super) const DOUBLE_HIT_NS: u64 = 200_000;

/// Fewest inserts into an untracked map within one drain of the write
/// counts before it is tracked: keeps the many short-lived maps of a busy
/// service (an HTTP header gets a handful) out.
pub(super) const DISCOVER_MIN_ASSIGNS: u64 = 256;

/// Most maps discovered per drain (the busiest first).
pub(super) const DISCOVER_MAX: usize = 64;

/// Applies write-path counts drained from the kernel.
pub(super) fn on_writes(
    s: &mut Session,
    writes: &[(tracer_common::WriteKey, tracer_common::WriteStat)],
) {
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
        s.model.on_write(
            k.map_addr,
            st.type_ptr,
            k.kind == assign,
            k.caller_pc,
            st.count,
        );
    }
}

pub(super) fn attach_session(
    tracer: &mut Tracer,
    pid: u32,
    rate: f64,
    show_keys: bool,
) -> Result<Session> {
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
    let mem = Memory::with_pidfd(pid, target.pidfd.clone());
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
        let grouped = p.class != ProbeClass::Always;
        let a = if grouped {
            tracer.register(&req)?
        } else {
            tracer.attach(&target.exe, pid, &req)?
        };
        costs.push(ProbeCost {
            id: a.id,
            class: p.class,
            hit_cost: match (p.emulated, p.class == ProbeClass::Window) {
                (false, _) => SINGLE_STEP_HIT_S,
                (true, true) => WRITE_HIT_S,
                (true, false) => EMULATED_HIT_S,
            },
            addr: p.address + bias,
            orig: orig[costs.len()],
        });
        probes.push(budget::SessionProbe {
            probe: a,
            function: p.function.clone(),
            address: p.address,
        });
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
        late_cycles: 0,
        sampled_cycles: 0,
        pending_sample: None,
        timer_every: Duration::from_secs(2),
        timer_samples: 0,
        started: Instant::now(),
        last_sample: None,
        discovered_by_writes: 0,
        fin: FinTracker::default(),
        key_layouts: HashMap::new(),
        key_trackers: HashMap::new(),
        snap_cycle: HashMap::new(),
        skipped_cycles: 0,
        show_keys,
        all_maps: false,
    };
    discover_globals(&mut s);
    Ok(s)
}

/// Attaches what the governor's thread asked for (it closes on its own;
/// attaching needs the loaded programs). A failure (the process is
/// exiting) leaves the probes detached.
pub(super) fn serve_attaches(s: &mut Session, tracer: &mut Tracer) {
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
pub(super) fn note_pauses(s: &mut Session) {
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
pub(super) fn lock(b: &Mutex<Budget>) -> std::sync::MutexGuard<'_, Budget> {
    b.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Smallest table a growth must reach to be reported by the kernel side:
/// keeps the thousands of tiny short-lived maps of a busy service out of
/// user space entirely.
pub const MIN_GROW_SLOTS: u32 = 128;

/// Maps held by global variables that DWARF names are tracked from the start.
pub(super) fn discover_globals(s: &mut Session) {
    for (name, va, ty) in s.info.global_maps() {
        if let Some(ptr) = s.mem.u64(va + s.bias)
            && ptr != 0
        {
            s.model.on_discovered(ptr, Some(ty), 0, Some(name));
        }
    }
}

pub(super) fn symbolize(s: &Session, ips: &[u64], caller: u64) -> Vec<Frame> {
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

pub(super) fn is_runtime(func: &str) -> bool {
    func.starts_with("runtime.")
        || func.starts_with("internal/runtime/")
        || func.starts_with("internal/abi")
        || func.starts_with("maps.clone")
}

pub(super) fn type_entry(
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

pub(super) fn on_event(s: &mut Session, tracer: &Tracer, ev: &Event, t0_ns: &mut Option<u64>) {
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
            let site = crate::model::RawSite {
                stack_id: g.stack_id,
                pc: g.caller_pc,
            };
            let new = s
                .model
                .on_grow(g.map_addr, g.type_ptr, g.hdr.ts_ns, Some(site));
            // The creation record is read now: the in-kernel LRU may drop it
            // before the map is resolved.
            if new
                && let Some(rec) = tracer.created(s.target.pid, g.map_addr)
                && rec.ts_ns <= g.hdr.ts_ns
            {
                let site = crate::model::RawSite {
                    stack_id: rec.stack_id,
                    pc: rec.caller_pc,
                };
                s.model
                    .on_created(g.map_addr, rec.ts_ns, rec.type_ptr, site);
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
            if s.pending_sample.is_some_and(|p| !p.timer) {
                s.skipped_cycles += 1;
            }
            s.pending_sample = Some(PendingSample {
                cycle,
                ts_ns: g.hdr.ts_ns,
                early: !gap_left(s).is_zero(),
                timer: false,
            });
        }
    }
}
