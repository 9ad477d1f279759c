//! `app::session`: one traced process: attaching its probes, the events
//! from the kernel, write-window discovery, symbolization and type names.
#![allow(
    clippy::wildcard_imports,
    reason = "the app modules share one set of imports and items"
)]
use super::*;

/// Per-process state.
pub(super) struct Session {
    /// Unique in this run (a pid may be reused by a later process).
    pub(super) id: u64,
    pub(super) target: Target,
    /// The binary, shared with the keys jobs.
    pub(super) info: Arc<BinaryInfo>,
    pub(super) bias: u64,
    pub(super) probes: Vec<budget::SessionProbe>,
    pub(super) model: Model,
    pub(super) mem: Memory,
    pub(super) types: HashMap<u64, (String, Option<String>, Option<String>, TypeSizes)>,
    pub(super) owners_searched: HashMap<u64, (u64, u32)>,
    /// The holder search's index of type descriptors (travels with the
    /// keys jobs in their `KeyState`), and what the searches cost.
    pub(super) holder_cache: crate::holders::Cache,
    pub(super) holder_stats: crate::holders::SearchStats,
    pub(super) ended: Option<String>,
    /// What started the GC cycles seen.
    pub(super) gc_causes: report::GcCauses,
    /// Attach requests, parallel to `probes`.
    pub(super) reqs: Vec<ProbeRequest>,
    /// The budget, shared with the governor's thread.
    pub(super) budget: Arc<Mutex<Budget>>,
    /// When keys were last read and owners searched, and how long it took.
    pub(super) last_keys: Option<(Instant, Duration)>,
    /// When a holder search last ran in a sample (`None`: never).
    pub(super) last_holder_search: Option<Instant>,
    /// A holder search is under way (it goes on at the next keys job).
    pub(super) holders_pending: bool,
    /// When the keys of the sample in flight started to be read.
    pub(super) last_keys_start: Option<Instant>,
    /// Samples whose header reads stopped at their deadline.
    pub(super) samples_cut_short: u64,
    /// Samples whose key reads were deferred to stay within the budget.
    pub(super) keys_deferred: u64,
    /// When samples are taken.
    pub(super) clock: SampleClock,
    /// The time from which its GC cycles wake the loop, as last written
    /// to the kernel (0: never written, every cycle does).
    pub(super) gc_wake_written: u64,
    /// The runtime's GC counters, read instead of probing `gcSweep`
    /// (`None`: not located, the probe is attached).
    pub(super) gc_poll: Option<super::gc_poll::GcPoll>,
    /// Maps first found by the write windows.
    pub(super) discovered_by_writes: u64,
    pub(super) fin: FinTracker,
    /// Key layouts by map type descriptor (`None`: not resolvable).
    pub(super) key_layouts: HashMap<u64, Option<KeyLayout>>,
    /// Key retention by map address.
    pub(super) key_trackers: HashMap<u64, KeyTracker>,
    /// Key retention of every sync.Map, by address: fed by their walks on
    /// this thread (not by the keys jobs).
    pub(super) sync_key_trackers: HashMap<u64, KeyTracker>,
    /// Shows what interface keys hold in their examples (`sync.Map` keys,
    /// `map[any]V`), with the dynamic types seen so far.
    pub(super) interfaces: Arc<dyn crate::keys::InterfaceValues>,
    /// Cycle of each map's latest key snapshot (to rotate when time runs out).
    pub(super) snap_cycle: HashMap<u64, u64>,
    /// Where the target counts its GC cycles (`memstats.numgc`, load bias
    /// applied; `None`: not found): a key snapshot is dated by it.
    pub(super) numgc_addr: Option<u64>,
    /// Objects with pending finalizers or cleanups among each followed
    /// map's keys, counted when its snapshot came back (cycle, count): as of
    /// that snapshot, so that a key released and finalized since is not
    /// subtracted from a count the report dates by the snapshot's cycle.
    pub(super) held_keys: HashMap<u64, (u64, crate::finalizers::HeldCount)>,
    pub(super) show_keys: bool,
    /// `--all-maps`.
    pub(super) all_maps: bool,
    /// The binary's HashTrieMap layout (`None`: its sync.Map, if any, is
    /// not one; [`crate::syncmap`]).
    pub(super) sync_layout: Option<crate::syncmap::SyncLayout>,
    /// Classic sync.Maps: where their runtime maps' keys and elements
    /// are, once known, and the last type descriptor tried for it.
    pub(super) classic_entry_map: Option<Arc<crate::syncmap::classic_entries::EntryMapLayout>>,
    pub(super) classic_entry_tried: u64,
    /// What the entries of each sync.Map held at its latest walk.
    pub(super) sync_entries: HashMap<u64, SyncEntries>,
    /// What walking the sync.Maps cost, over all samples.
    pub(super) sync_walks: report::SyncMapWalks,
    /// Maps by type and site, summed at each sampled GC cycle.
    pub(super) families: Families,
}

/// What a sync.Map's entries held at its latest walk (the entries read: all
/// of them, or an even sample of a trie too big to read whole).
#[derive(Debug, Clone, Default)]
pub(super) struct SyncEntries {
    pub(super) cycle: u64,
    /// Entries per (key type, value type), run-time descriptor addresses.
    pub(super) types: Vec<((u64, u64), u64)>,
    /// Entries of other pairs.
    pub(super) other_types: u64,
    /// Keys that are objects with pending finalizers or cleanups.
    pub(super) held: crate::finalizers::HeldCount,
}

/// Binaries inspected so far, by device and inode: processes of one
/// executable share one [`BinaryInfo`].
pub(super) type Binaries = HashMap<(u64, u64), Arc<BinaryInfo>>;

pub(super) fn attach_session(
    tracer: &mut Tracer,
    binaries: &mut Binaries,
    pid: u32,
    rate: f64,
    show_keys: bool,
) -> Result<Session> {
    let target = Target::discover(pid)?;
    let info = match binaries.get(&target.dev_ino) {
        Some(info) => info.clone(),
        None => {
            // A line on a terminal's stderr while a large binary is read.
            let _reading = crate::progress::Progress::reading(
                &target.exe,
                std::path::Path::new(&target.exe_display),
            );
            let info = Arc::new(BinaryInfo::open_executable(&target.exe).with_context(|| {
                format!(
                    "pid {pid} ({}) is not a traceable Go program",
                    target.exe_display
                )
            })?);
            binaries.insert(target.dev_ino, info.clone());
            info
        }
    };
    let plan = ProbePlan::build(&info).with_context(|| format!("planning probes for pid {pid}"))?;
    let first = plan.probes.first().context("empty probe plan")?;
    let off = info
        .va_to_file_offset(first.address)
        .context("probe address outside the file")?;
    let bias = target.load_bias(off, first.address)?;
    let addr = |g: Option<u64>, f: Option<u32>| match (g, f) {
        (Some(g), Some(f)) => g.wrapping_add(u64::from(f)).wrapping_add(bias),
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
    let slowdown = crate::speed::slowdown();
    // The original instruction bytes, read before any probe is attached
    // (two probes may share an address): a detached probe's breakpoint is
    // gone when they are back (see `Tail`).
    let mem = Memory::with_pidfd(pid, target.pidfd.clone());
    let orig: Vec<Option<[u8; 4]>> = plan
        .probes
        .iter()
        .map(|p| {
            let mut b = [0u8; 4];
            mem.read(p.address.wrapping_add(bias), &mut b).then_some(b)
        })
        .collect();
    // The governed probes share one grant of full runs in the kernel, in
    // the slot of the first one's id (`ProbeSpec::grant`).
    let mut grant_slot: Option<u32> = None;
    // MAPLEAK_GC_PROBE: the probe even so (the fallback path, for tests).
    let read_gc = crate::plan::reads_gc_counters(&info)
        && cfg.numgc_addr != 0
        && std::env::var_os("MAPLEAK_GC_PROBE").is_none();
    for (i, p) in plan.probes.iter().enumerate() {
        if read_gc && p.role == tracer_common::ProbeRole::GcSweep {
            continue;
        }
        let file_offset = info
            .va_to_file_offset(p.address)
            .with_context(|| format!("{} at {:#x} is outside the file", p.function, p.address))?;
        let mut req = ProbeRequest {
            program: p.role.program(),
            file_offset,
            spec: p.spec,
        };
        if let Some(slot) = grant_slot.filter(|_| p.class == ProbeClass::Governed) {
            req.spec.grant = slot + 1;
        }
        let grouped = p.class != ProbeClass::Always;
        let a = if grouped {
            tracer.register(&req)?
        } else {
            tracer.attach(&target.exe, pid, &req)?
        };
        if p.class == ProbeClass::Governed && grant_slot.is_none() {
            grant_slot = Some(a.id);
            req.spec.grant = a.id + 1;
            tracer.set_spec(a.id, req.spec)?;
        }
        // The reference machine's prices, in this machine's time (a trap
        // is kernel work, as the calibration's is). A write-path hit's
        // fixed price counts its program too, and so does a governed one's
        // (until the kernel has timed its program: the first second).
        let trap_cost = slowdown
            * if p.emulated {
                EMULATED_HIT_S
            } else {
                SINGLE_STEP_HIT_S
            };
        let in_situ = budget::in_situ_factor(p.class);
        let hit_cost = in_situ
            * if p.emulated && p.class == ProbeClass::Window {
                slowdown * WRITE_HIT_S
            } else if p.class == ProbeClass::Governed {
                trap_cost + slowdown * GOVERNED_RUN_PRIOR_S
            } else {
                trap_cost
            };
        costs.push(ProbeCost {
            id: a.id,
            class: p.class,
            hit_cost,
            trap_cost,
            in_situ,
            program: req.program,
            addr: p.address.wrapping_add(bias),
            orig: orig[i],
        });
        probes.push(budget::SessionProbe {
            probe: a,
            function: p.function.clone(),
            address: p.address,
        });
        reqs.push(req);
    }
    let mut budget = Budget::with_memory(pid, rate, costs, mem.clone());
    budget.set_switch(tracer.probe_switch(), grant_slot);
    // Attached by the main loop once the governor's thread checks them.
    budget.attach_at_start(ProbeClass::Governed);
    budget.attach_at_start(ProbeClass::LargeGrowth);
    static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let interfaces = Arc::new(crate::keys::LiveInterfaces::live(
        mem.clone(),
        info.clone(),
        bias,
    ));
    let mut s = Session {
        id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        interfaces,
        mem,
        target,
        info,
        bias,
        probes,
        model: Model::default(),
        types: HashMap::new(),
        owners_searched: HashMap::new(),
        holder_cache: crate::holders::Cache::default(),
        holder_stats: crate::holders::SearchStats::default(),
        ended: None,
        gc_causes: report::GcCauses::new(super::now_ns()),
        reqs,
        budget: Arc::new(Mutex::new(budget)),
        last_keys: None,
        last_holder_search: None,
        holders_pending: false,
        last_keys_start: None,
        samples_cut_short: 0,
        keys_deferred: 0,
        clock: SampleClock::new(rate, Duration::from_secs(2), Instant::now()),
        gc_wake_written: 0,
        gc_poll: read_gc.then(|| {
            super::gc_poll::GcPoll::new(cfg.numgc_addr, cfg.heap_marked_addr, Instant::now())
        }),
        discovered_by_writes: 0,
        fin: FinTracker::default(),
        key_layouts: HashMap::new(),
        key_trackers: HashMap::new(),
        sync_key_trackers: HashMap::new(),
        snap_cycle: HashMap::new(),
        // Only when the cycles are numbered as the runtime does (from
        // `work.cycles`), not counted from attach.
        numgc_addr: (cfg.numgc_addr != 0 && cfg.work_cycles_addr != 0).then_some(cfg.numgc_addr),
        held_keys: HashMap::new(),
        show_keys,
        all_maps: false,
        sync_layout: None,
        classic_entry_map: None,
        classic_entry_tried: 0,
        sync_entries: HashMap::new(),
        sync_walks: report::SyncMapWalks::default(),
        families: Families::default(),
    };
    s.sync_layout = crate::syncmap::layout_of(&s.info);
    if matches!(s.sync_layout, Some(crate::syncmap::SyncLayout::Classic(_)))
        && let Some(tp) = crate::syncmap::classic_entries::type_from_dwarf(&s.info, s.bias)
    {
        learn_classic_entry_map(&mut s, tp);
    }
    discover_globals(&mut s);
    Ok(s)
}

/// Tries the type descriptor at `map_type` as the classic sync.Maps'
/// runtime map type (each descriptor once in a row).
pub(super) fn learn_classic_entry_map(s: &mut Session, map_type: u64) {
    s.classic_entry_tried = map_type;
    s.classic_entry_map =
        crate::syncmap::classic_entries::resolve_at(&s.mem, &s.info, s.bias, map_type);
}

/// Attaches what the governor's thread asked for (it closes on its own;
/// attaching needs the loaded programs), and a session's first attach of
/// its governed and large-growth probes ([`Budget::attach_at_start`]). A
/// failure leaves the probes detached: said on stderr when it is a first
/// attach, silent for a resume (the process is exiting).
pub(super) fn serve_attaches(s: &mut Session, tracer: &mut Tracer) {
    let (wants, costs) = {
        let mut b = lock(&s.budget);
        let w: Vec<(ProbeClass, bool)> = b
            .wants()
            .into_iter()
            .map(|c| (c, b.attaching_first(c)))
            .collect();
        if w.is_empty() {
            return;
        }
        (w, b.probes.clone())
    };
    for (class, first) in wants {
        let links = budget::attach_links(
            tracer,
            &s.target.exe,
            s.target.pid,
            &mut s.probes,
            &s.reqs,
            &costs,
            class,
        )
        .unwrap_or_else(|e| {
            if first {
                eprintln!(
                    "mapleak-trace: pid {}: its {} probes could not be attached ({e:#}); traced without them",
                    s.target.pid,
                    class.as_str()
                );
            }
            Vec::new()
        });
        let resumed = lock(&s.budget).install(class, links);
        if resumed && class == ProbeClass::Governed {
            s.fin.probes_resumed(now_ns());
        }
    }
}

/// Tells the finalizer bookkeeping that the governor's thread paused the
/// governed probes (the finalizer probes among them), and the sample clock
/// the budget's rate. Called before [`serve_attaches`]: a resume waits for
/// it, so no pause goes unnoted.
pub(super) fn note_pauses(s: &mut Session) {
    let (pauses, ns, rate, in_debt) = {
        let b = lock(&s.budget);
        (b.gov.pauses, b.paused_ns, b.gov.rate, b.holds_samples())
    };
    // Node-wide mode changes the budget's rate, and a budget in debt
    // through the tracer's own work holds the samples back: the clock
    // follows both.
    s.clock.set_budget(rate, in_debt);
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
        if let Some(ptr) = s.mem.u64(va.wrapping_add(s.bias))
            && ptr != 0
        {
            s.model.on_discovered(ptr, Some(ty), 0, Some(name));
        }
    }
    // sync.Maps initialised before attach (their initSlow is past); those
    // first used later are found by the probe as well.
    // A classic one is found by DWARF, or at its next dirtyLocked.
    if let Some(l) = s.sync_layout {
        let deadline = Instant::now() + crate::speed::scaled(SYNC_SCAN_DEADLINE);
        let scanned = l.trie().map_or_else(Vec::new, |l| {
            crate::syncmap::scan::scan_globals(&s.info, &s.mem, s.bias, &l, deadline)
        });
        let found = crate::syncmap::globals(&s.info, &s.mem, s.bias)
            .into_iter()
            .chain(scanned);
        for g in found {
            s.model.on_sync_map(g.addr, 0, Some(g.name));
        }
    }
}

/// Longest the scan of the globals for sync.Maps may take at attach (once).
const SYNC_SCAN_DEADLINE: Duration = Duration::from_millis(500);

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
        // A probe on a stack-check branch (arm64, amd64 before Go 1.21)
        // fires again when the call restarts after growing the stack; the
        // eBPF program leaves out the first hit (its branch is taken), so
        // every event here is one call.
        Event::MapGrow(g) => {
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
        Event::Fin(f) if f.fin_kind == tracer_common::FinKind::SyncMapInit as u8 => {
            // A new sync.Map (its first use; classic: a new generation):
            // tracked once, however many goroutines raced into initSlow.
            let addr = f.args[0];
            if s.sync_layout.is_some() && crate::syncmap::walk::plausible_ptr(addr) {
                let owner = crate::syncmap::owner_of(&s.info, s.bias, addr);
                s.model.on_sync_map(addr, f.hdr.ts_ns, owner);
            }
        }
        Event::Fin(f) => {
            // Its age is counted in cycles from here: where they are read,
            // read them now rather than take a count up to MAX_POLL old.
            poll_gc(s, t0_ns, true);
            let cycle = s.model.cycles.back().map_or(0, |c| c.cycle);
            s.fin.on_event(f, s.info.go_version.minor, cycle);
        }
        Event::GcMarked(g) => {
            s.gc_causes.on_marked(g.hdr.ts_ns, g.numgc, g.numforcedgc);
            let rc = (g.work_cycles != u32::MAX).then_some(u64::from(g.work_cycles));
            let heap = (g.heap_marked != 0).then_some(g.heap_marked);
            cycle_seen(s, rc, g.hdr.ts_ns, heap, t0_ns);
        }
        // Node-wide mode's, for the scanner (a traced process that runs
        // another executable keeps its session until it exits).
        Event::Exec(_) => {}
    }
}

/// A GC cycle seen (`runtime_cycle`: the runtime's number for it, when
/// known) at `ts_ns`, from a marked event or a read of the counters.
fn cycle_seen(
    s: &mut Session,
    runtime_cycle: Option<u64>,
    ts_ns: u64,
    heap: Option<u64>,
    t0_ns: &mut Option<u64>,
) {
    let t0 = *t0_ns.get_or_insert(ts_ns);
    let t_s = (ts_ns.saturating_sub(t0)) as f64 / 1e9;
    let cycle = s.model.on_gc_marked(runtime_cycle, t_s, heap);
    if debug_timing() {
        eprintln!(
            "gc {cycle}: event processed at {:.1} ms",
            now_ns() as f64 / 1e6
        );
    }
    // The same moment on the loop's clock (an event read late, or a cycle
    // found by a read, ended before now).
    let ago = Duration::from_nanos(now_ns().saturating_sub(ts_ns));
    let now = Instant::now();
    s.clock
        .on_gc(cycle, ts_ns, now.checked_sub(ago).unwrap_or(now));
}

/// Reads the GC counters of `s` when due ([`super::gc_poll`]), or, with
/// `current`, when the last read is older than `MIN_POLL`: a cycle not
/// seen before is recorded as a marked event would be.
pub(super) fn poll_gc(s: &mut Session, t0_ns: &mut Option<u64>, current: bool) {
    let now = Instant::now();
    let clock = &s.clock;
    // A read due at any pace is also stale, so a current count needs
    // only `stale` (one clock read on each finalizer event).
    let Some(p) = s.gc_poll.as_mut().filter(|p| {
        if current {
            p.stale(now)
        } else {
            p.due(now, super::gc_poll::Pace::at(clock, now).0)
        }
    }) else {
        return;
    };
    // The first read only says where counting starts: its cycle ended
    // before attach, as the probe's first event would not show.
    let first = p.reads == p.failed;
    let Some(c) = p.read(&s.mem, now) else {
        return;
    };
    let ts_ns = now_ns();
    s.gc_causes.on_polled(ts_ns, c.numgc, c.numforcedgc);
    if !first {
        // The earliest it may have ended: the read before this one.
        let ended_ns = c.since.map_or(ts_ns, |t| {
            let ago = u64::try_from(now.saturating_duration_since(t).as_nanos()).unwrap_or(0);
            ts_ns.saturating_sub(ago)
        });
        cycle_seen(s, Some(u64::from(c.numgc)), ended_ns, c.heap_marked, t0_ns);
    }
}
