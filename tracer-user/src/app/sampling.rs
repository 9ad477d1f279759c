//! `app::sampling`: the reads of a sample (map headers, then keys and
//! owners) started when the session's [`SampleClock`] says so, run on
//! worker threads ([`jobs`]) and applied when they come back.
#![allow(
    clippy::wildcard_imports,
    reason = "the app modules share one set of imports and items"
)]
use super::*;

/// Most maps one sample reads (from where the previous one stopped): bounds
/// the buffers a sample holds (its addresses and results, about 64 bytes a
/// map) whatever the number of maps tracked.
pub(super) const MAX_MAPS_PER_SAMPLE: usize = 131_072;

/// Longest time keys go unread while samples are taken.
pub(super) const MAX_KEYS_GAP: Duration = Duration::from_secs(60);

/// Longest time a holder search waits for the tracer's turn at the budget
/// (the first one does not wait): paid from the spare credit all the same.
pub(super) const MAX_HOLDERS_GAP: Duration = Duration::from_secs(30);

/// Whether keys may be read at this sample: when the budget has credit to
/// spare after the governed probes and the write window (keys are the
/// tracer's costliest work, and come last), and at least every
/// [`MAX_KEYS_GAP`].
pub(super) fn keys_due(s: &Session) -> bool {
    lock(&s.budget).spare_for_tracer()
        || s.last_keys
            .is_none_or(|(start, _)| start.elapsed() >= MAX_KEYS_GAP)
}

/// How long the loop may sleep before `s` has a sample to start.
pub(super) fn sample_wait(s: &Session) -> Option<Duration> {
    if s.ended.is_some() {
        return None;
    }
    let now = Instant::now();
    let clock = s.clock.wait(now);
    // Where the GC counters are read, the loop also wakes to read them
    // from a little before a sample could start (the clock has nothing
    // sooner).
    let poll = s.gc_poll.as_ref().and_then(|p| p.wake(&s.clock, now));
    match (clock, poll) {
        (Some(c), Some(p)) => Some(c.min(p)),
        (c, p) => c.or(p),
    }
}

/// Starts a sample if the clock says so: returns the header reads to run
/// on a worker thread.
pub(super) fn sample_due(s: &mut Session) -> Option<Job> {
    let latest = s.model.cycles.back().map_or(0, |c| c.cycle);
    let f = s.clock.start(Instant::now(), now_ns(), latest)?;
    // Types not seen yet are read here, once per type.
    for tp in s.model.unknown_types(|tp| s.types.contains_key(&tp)) {
        type_entry(s, tp);
    }
    let types = &s.types;
    let sizes = |tp: u64| types.get(&tp).map_or_else(TypeSizes::default, |e| e.3);
    // From where the previous sample stopped, at most MAX_MAPS_PER_SAMPLE.
    let total = s.model.maps.len();
    let start = s.model.sample_cursor % total.max(1);
    // sync.Maps are walked as tries, never read as map headers.
    let (sync, maps): (
        Vec<&crate::model::TrackedMap>,
        Vec<&crate::model::TrackedMap>,
    ) = s
        .model
        .maps
        .values()
        .skip(start)
        .chain(s.model.maps.values().take(start))
        .take(MAX_MAPS_PER_SAMPLE)
        .partition(|m| m.is_sync_map());
    let maps: Vec<(u64, TypeSizes)> = maps
        .into_iter()
        .map(|m| (m.addr, sizes(m.type_ptr)))
        .collect();
    let syncmaps: Vec<(u64, bool)> = sync
        .into_iter()
        .map(|m| (m.addr, m.last().is_some()))
        .collect();
    Some(Job::Headers(HeaderJob {
        mem: s.mem.clone(),
        info: s.info.clone(),
        maps,
        syncmaps,
        sync_layout: s.sync_layout,
        classic_entries: s.classic_entry_map.clone(),
        // Every sync.Map's keys are followed (retained keys, their ages):
        // its walk reads them anyway.
        keep_sync_keys: true,
        start,
        total,
        deadline: f.started + crate::speed::scaled(HEADER_DEADLINE),
        test_delay: test_sample_delay(),
    }))
}

/// `MAPLEAK_TEST_SAMPLE_DELAY_MS`: a pause inside every sample's reads,
/// for tests that check the governor and the loop do not wait for them.
pub(super) fn test_sample_delay() -> Option<Duration> {
    static D: std::sync::OnceLock<Option<Duration>> = std::sync::OnceLock::new();
    *D.get_or_init(|| {
        std::env::var("MAPLEAK_TEST_SAMPLE_DELAY_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .map(Duration::from_millis)
    })
}

/// Applies what a worker found; returns the next job of the same sample
/// (the keys and owners after the headers).
pub(super) fn on_done(s: &mut Session, tracer: &Tracer, done: Done) -> Option<Job> {
    match done {
        Done::Headers(r) => on_headers(s, tracer, r),
        Done::Keys(r) => {
            on_keys(s, r);
            None
        }
    }
}

fn on_headers(s: &mut Session, tracer: &Tracer, r: HeaderResult) -> Option<Job> {
    let InFlight {
        at,
        started,
        age_ns,
    } = s.clock.in_flight()?;
    // Every read failing means the process is gone (or going), not that
    // every map died: keep the history for the final report. So do reads
    // that failed because the process exited during the sample (a slow
    // sample, on an emulated CPU, straddles the exit): the maps not read
    // before it are not retired.
    let applying = crate::speed::RunClock::start();
    let done = r.reads.len() + r.sync_reads.len();
    let sync_addrs: Vec<u64> = r.sync_reads.iter().map(|x| x.0).collect();
    // A read fails in a live process only when a map's memory is gone
    // (rare); a process that is exiting fails them before its pidfd says
    // so: given up to 100 ms to say it.
    let failed = r
        .reads
        .iter()
        .chain(&r.sync_reads)
        .any(|(_, read)| *read == HeaderRead::Failed);
    let exited = !s.target.alive() || (failed && exits_soon(s));
    let failures_count = r.any_read && !exited;
    for (addr, read) in r.reads.into_iter().chain(r.sync_reads) {
        if failures_count || read != HeaderRead::Failed {
            s.model.on_sample(addr, at, read);
        }
    }
    add_sync_stats(s, &r.sync_stats, &sync_addrs);
    // A stripped binary's classic sync.Maps: their runtime maps' type,
    // from a generation the probes saw made or grown.
    if s.classic_entry_map.is_none()
        && let Some(tp) = r
            .sync_generations
            .iter()
            .filter_map(|g| s.model.maps.get(g))
            .map(|m| m.type_ptr)
            .find(|&t| t != 0 && t != s.classic_entry_tried)
    {
        super::session::learn_classic_entry_map(s, tp);
    }
    for g in r.sync_generations {
        s.model.fold_sync_generation(g);
    }
    note_sync_entries(s, at.cycle, r.sync_entries);
    // The next sample starts with the maps this one did not reach.
    let n = s.model.maps.len();
    s.model.sample_cursor = (r.start + done) % n.max(1);
    s.model.caps.reads_skipped += r.stats.skipped;
    s.model.caps.reads_unreached += r.total.saturating_sub(done) as u64;
    // A timer sample counts for the latest cycle before it (replacing what
    // the family had for that cycle): when GC cycles are skipped to pace
    // the tracer, it is the only sample some cycles get.
    // A sample the exit cut into is left out: the maps it did not reach
    // would count with their previous lengths.
    if !exited {
        s.families
            .observe_maps(at.cycle, &s.model.maps, &s.model.sites);
    }
    if r.cut_short {
        s.samples_cut_short += 1;
    }
    // Paced by the sample's whole cost, the reads on the worker and their
    // results applied here, in the reference machine's time: the pace is a
    // floor between samples (ten times their length), which on an emulated
    // CPU would otherwise space them by tens of seconds. What they cost
    // here is debited in this machine's time, and a budget in debt holds
    // them back (`SampleClock::set_budget`). SAMPLE_HANDOFF_CPU counts what
    // neither figure sees: the wakeups and hand-offs between the loop and
    // the worker.
    s.clock
        .headers_read(crate::speed::to_reference(r.took + applying.elapsed()) + SAMPLE_HANDOFF_CPU);
    resolve_sites(s, tracer, |m| {
        matches!(m.verdict(), Verdict::Growing | Verdict::Bloated)
    });
    if debug_timing() {
        let now_ms = now_ns() as f64 / 1e6;
        let start_ms = now_ms - started.elapsed().as_secs_f64() * 1e3;
        eprintln!(
            "gc {}: event age {:.1} ms, headers {:?}, {} maps; sample from {start_ms:.1} ms to {now_ms:.1} ms",
            at.cycle,
            age_ns as f64 / 1e6,
            r.took,
            s.model.maps.len(),
        );
    }
    if s.ended.is_some() {
        s.clock.finished();
        return None;
    }
    let cands = if keys_due(s) {
        Some(key_candidates(s, at.cycle))
    } else {
        s.keys_deferred += 1;
        None
    };
    // They spend at most the credit above half the bucket: the governed
    // probes, paused below half, are not starved by them.
    let (spare, holders_in_line, search_credit) = {
        let b = lock(&s.budget);
        (
            (b.gov.credit - b.gov.max() / 2.0).max(0.0),
            b.spare_for_tracer()
                || s.last_holder_search
                    .is_none_or(|t| t.elapsed() >= MAX_HOLDERS_GAP),
            b.gov.search_credit.max(0.0),
        )
    };
    let limit = crate::speed::scaled(Duration::from_secs_f64(
        spare.min(SNAPSHOT_TIME.as_secs_f64()),
    ))
    .max(MIN_SNAPSHOT_TIME);
    s.last_keys_start = cands.as_ref().map(|_| Instant::now());
    // A holder search under way goes on at every job the credit allows.
    let owner_cands = owner_candidates(s, s.holders_pending);
    Some(Job::Keys(KeysJob {
        mem: s.mem.clone(),
        interfaces: s.interfaces.clone(),
        info: s.info.clone(),
        bias: s.bias,
        cycle: at.cycle,
        numgc_addr: s.numgc_addr,
        limit,
        show_keys: s.show_keys,
        cands,
        state: take_key_state(s),
        containers: if owner_cands.is_empty() {
            Vec::new()
        } else {
            containers(s)
        },
        owner_cands,
        // A search spends tens of ms, seconds of a small budget's refill.
        // It is paid from its own credit (a share of the budget, in this
        // machine's time), or, when more, from the main bucket's spare
        // credit when the tracer's optional work is next in line (the
        // governed probes on, no write window waiting for a full bucket)
        // or at the first search and every MAX_HOLDERS_GAP. Too little of
        // either (under MIN_HOLDERS_TIME): it waits.
        search_time: {
            let spare = if holders_in_line {
                crate::speed::scaled(Duration::from_secs_f64(spare))
            } else {
                Duration::ZERO
            };
            spare
                .max(Duration::from_secs_f64(search_credit))
                .min(crate::speed::scaled(jobs::HOLDERS_DEADLINE))
        },
    }))
}

/// Adds a sample's sync.Map walks to the session's totals, and names the
/// global holding each sync.Map that has no owner (one whose address a new
/// instance took has lost its old one).
fn add_sync_stats(s: &mut Session, st: &crate::syncmap::SampleStats, addrs: &[u64]) {
    let w = &mut s.sync_walks;
    w.nodes_read += st.nodes;
    w.estimated += st.estimated;
    w.cut_short += st.cut_short;
    w.skipped += st.skipped;
    w.bad_nodes += st.bad_nodes;
    w.unreadable += st.unreadable;
    w.walks += st.walks;
    w.entries_read += st.entries_read;
    w.seconds += st.walk_us as f64 / 1e6;
    let (info, bias) = (&s.info, s.bias);
    for a in addrs {
        if let Some(m) = s.model.maps.get_mut(a)
            && m.owner().is_none()
            && let Some(o) = crate::syncmap::owner_of(info, bias, m.addr)
        {
            m.set_owner(o);
        }
    }
}

/// Keeps what each sync.Map walked held: its entries' types, its keys
/// that are objects with pending finalizers or cleanups (counted now, as
/// of this walk; a key is taken as first seen now, so an object pending
/// since before a probe pause counts as unverified), and its keys,
/// followed from walk to walk (`retained_keys`) from its first walk that
/// found any.
fn note_sync_entries(s: &mut Session, cycle: u64, walked: Vec<(u64, crate::syncmap::Entries)>) {
    // A lookup per sync.Map kept, not a pass over every tracked map.
    let maps = &s.model.maps;
    let is_sync = |a: &u64| maps.get(a).is_some_and(|m| m.is_sync_map());
    s.sync_entries.retain(|a, _| is_sync(a));
    s.sync_key_trackers.retain(|a, _| is_sync(a));
    let none_pending = s.fin.finalizers.is_empty() && s.fin.cleanups.is_empty();
    let mut cleanup_objs = None;
    let now = now_ns();
    for (addr, e) in walked {
        let held = if e.keys.is_empty() || none_pending {
            crate::finalizers::HeldCount::default()
        } else {
            let objs = cleanup_objs.get_or_insert_with(|| s.fin.cleanup_objects());
            crate::finalizers::held_keys(&s.fin, objs, e.keys.iter().map(|&(_, k)| (k, now)))
        };
        if e.keys_kept
            && (e.keys_dropped > 0 || !e.keys.is_empty() || s.sync_key_trackers.contains_key(&addr))
            && let Some(m) = s.model.maps.get(&addr)
        {
            let snap = crate::syncmap::keys::snapshot(&e, m.seed().unwrap_or(0), now);
            let (show, iface) = (s.show_keys, &s.interfaces);
            s.sync_key_trackers
                .entry(addr)
                .or_insert_with(|| {
                    crate::keys::KeyTracker::new(crate::syncmap::keys::key_type(), show)
                        .with_interfaces(iface.clone())
                })
                .update(cycle, &snap);
        }
        s.sync_entries.insert(
            addr,
            SyncEntries {
                cycle,
                types: e.types,
                other_types: e.other_types,
                held,
            },
        );
    }
}

fn on_keys(s: &mut Session, r: KeysResult) {
    s.clock.finished();
    put_key_state(s, r.state);
    if let (Some(start), Some(took)) = (s.last_keys_start.take(), r.keys_took) {
        s.last_keys = Some((start, took));
    }
    s.holder_stats.add(&r.holder_stats);
    if r.holders_ran && !r.owners_searched.is_empty() {
        s.last_holder_search = Some(Instant::now());
        lock(&s.budget)
            .gov
            .search_spent(r.search_took.as_secs_f64());
    }
    // A search under way stays so through a job the credit did not let
    // it run in.
    s.holders_pending = match r.holders {
        crate::holders::Progress::Pending => true,
        crate::holders::Progress::Done(_) => false,
        crate::holders::Progress::Idle => s.holders_pending && !r.holders_ran,
    };
    let covered = r.holders.into_covered();
    apply_owners(s, r.owners, r.held, &r.owners_searched, &covered);
}

/// Whether the target is found gone within 100 ms.
fn exits_soon(s: &Session) -> bool {
    for _ in 0..10 {
        std::thread::sleep(Duration::from_millis(10));
        if !s.target.alive() {
            return true;
        }
    }
    false
}

/// Moves the key state out of the session for a keys job.
fn take_key_state(s: &mut Session) -> KeyState {
    KeyState {
        layouts: std::mem::take(&mut s.key_layouts),
        trackers: std::mem::take(&mut s.key_trackers),
        snap_cycle: std::mem::take(&mut s.snap_cycle),
        holders: std::mem::take(&mut s.holder_cache),
    }
}

/// Puts back what a keys job carried (maps retired meanwhile are dropped).
fn put_key_state(s: &mut Session, mut k: KeyState) {
    crate::keys::retain_trackers(&mut k.trackers, &s.model);
    k.snap_cycle
        .retain(|addr, _| s.model.maps.contains_key(addr));
    s.key_layouts = k.layouts;
    s.key_trackers = k.trackers;
    s.snap_cycle = k.snap_cycle;
    s.holder_cache = k.holders;
    count_held_keys(s);
}

/// Counts, for each map whose keys were read since the last count, its
/// keys that are objects with a pending finalizer or cleanup, against the
/// pending set now: a key's finalizer cannot run while it is a key, and a
/// snapshot comes back within a job's time, long before a key released
/// after it could be found unreachable and finalized.
fn count_held_keys(s: &mut Session) {
    let trackers = &s.key_trackers;
    s.held_keys.retain(|a, _| trackers.contains_key(a));
    let none_pending = s.fin.finalizers.is_empty() && s.fin.cleanups.is_empty();
    let mut cleanup_objs = None;
    for (&addr, t) in trackers {
        let cycle = t.latest_cycle();
        if s.held_keys.get(&addr).is_some_and(|(c, _)| *c == cycle) {
            continue;
        }
        let held = if none_pending {
            crate::finalizers::HeldCount::default()
        } else {
            let objs = cleanup_objs.get_or_insert_with(|| s.fin.cleanup_objects());
            crate::finalizers::held_keys(&s.fin, objs, t.present_pointers())
        };
        s.held_keys.insert(addr, (cycle, held));
    }
}

/// The tracer's CPU for one sample beyond its reads and their results
/// (reference machine): the wakeups of the loop and a worker for its GC
/// event and each of its jobs, their hand-offs, the events drained with
/// them. On gcheavy (a few dozen maps, GC cycles every 4 ms, a sample
/// every 100 ms) the tracer used 0.65 % of one CPU above its idle floor,
/// 0.65 ms a sample, on a VM that ran about twice as slow as the
/// reference; pacing the samples by their reads alone let it spend most of
/// the budget on hand-offs. At 1 % this alone spaced samples 167 ms apart
/// (they were 100 ms); at the default 0.5 %, 333 ms.
pub(super) const SAMPLE_HANDOFF_CPU: Duration = Duration::from_micros(500);

/// Wall time for key snapshots per GC cycle on the reference machine
/// ([`crate::speed`]: scaled to this one, or a tenth of the keys would be
/// read on a CPU ten times slower); maps left out go first next cycle.
/// Reading keys must not delay the next cycle's header reads.
pub(super) const SNAPSHOT_TIME: Duration = Duration::from_millis(100);

/// Least time given to key snapshots when they are due.
pub(super) const MIN_SNAPSHOT_TIME: Duration = Duration::from_millis(5);

/// Maps sampled at `cycle` whose keys may be read: suspects first; within
/// a rank, the longest without a snapshot first, then the largest.
fn key_candidates(s: &mut Session, cycle: u64) -> Vec<KeyCandidate> {
    crate::keys::retain_trackers(&mut s.key_trackers, &s.model);
    s.snap_cycle
        .retain(|addr, _| s.model.maps.contains_key(addr));
    let last = |a: u64| s.snap_cycle.get(&a).copied().unwrap_or(0);
    let followed = |a: u64| s.key_trackers.contains_key(&a);
    crate::keys::snapshot_candidates(
        &s.model,
        cycle,
        last,
        followed,
        jobs::MAX_OTHER_SNAPSHOTS,
        jobs::MAX_OTHER_LEN,
    )
}

/// Suspects (growing, bloated) without an owner, not searched in the last
/// four samples, or, after holder searches that found nothing, in the last
/// 8, 16, ... 256 (`force`: whatever the last search). A search copies up
/// to tens of MiB of heap: one that keeps finding nothing (a map held by a
/// goroutine's stack) must not be paid for every few samples.
pub(super) fn owner_candidates(s: &Session, force: bool) -> Vec<(u64, u64)> {
    s.model
        .maps
        .values()
        .filter(|m| {
            m.owner().is_none()
                && !m.is_sync_generation()
                && matches!(m.verdict(), Verdict::Growing | Verdict::Bloated)
        })
        .filter(|m| {
            force
                || s.owners_searched.get(&m.addr).is_none_or(|&(c, misses)| {
                    s.clock.sampled_cycles >= c + (4 << misses.min(MAX_SEARCH_BACKOFF))
                })
        })
        .map(|m| (m.addr, m.type_ptr))
        .collect()
}

/// Tracked maps whose elements are maps (map, type descriptor), the
/// largest first, at most [`crate::holders::MAX_CONTAINERS`]: the holder
/// search steps through their values.
pub(super) fn containers(s: &Session) -> Vec<(u64, u64)> {
    let types: std::collections::HashSet<u64> = s
        .types
        .iter()
        .filter(|(_, t)| crate::holders::elem_is_map(&t.0))
        .map(|(&p, _)| p)
        .collect();
    if types.is_empty() {
        return Vec::new();
    }
    let mut out: Vec<(u64, u64, u64)> = s
        .model
        .maps
        .values()
        .filter(|m| types.contains(&m.type_ptr))
        .map(|m| (m.last().map_or(0, |l| l.len), m.addr, m.type_ptr))
        .collect();
    out.sort_unstable_by(|a, b| b.cmp(a));
    out.truncate(crate::holders::MAX_CONTAINERS);
    out.into_iter().map(|(_, a, t)| (a, t)).collect()
}

/// Doublings of the wait between holder searches that find nothing.
const MAX_SEARCH_BACKOFF: u32 = 6;

/// Records an owner search's result (`covered`: the maps a holder search
/// ended for; one of them it found no path for has missed, which doubles
/// its wait).
pub(super) fn apply_owners(
    s: &mut Session,
    mut found: HashMap<u64, String>,
    mut held: HashMap<u64, crate::holders::HeldBy>,
    searched: &[u64],
    covered: &[u64],
) {
    for &c in searched {
        let misses = s.owners_searched.get(&c).map_or(0, |x| x.1);
        let Some(m) = s.model.maps.get_mut(&c) else {
            continue;
        };
        let hit = if let Some(name) = found.remove(&c) {
            m.set_owner(name);
            true
        } else if let Some(h) = held.remove(&c) {
            m.set_held_by(h);
            true
        } else {
            false
        };
        let misses = if hit || !covered.contains(&c) {
            misses
        } else {
            misses.saturating_add(1)
        };
        s.owners_searched
            .insert(c, (s.clock.sampled_cycles, misses));
    }
}

/// The owner search before the final report, for every suspect without
/// one (the loop is over: nothing waits behind it but the report).
pub(super) fn final_owner_search(s: &mut Session) {
    // A process that is gone has nothing left to read.
    if !s.target.alive() {
        return;
    }
    let cands = owner_candidates(s, true);
    let containers = if cands.is_empty() {
        Vec::new()
    } else {
        containers(s)
    };
    let mut cache = std::mem::take(&mut s.holder_cache);
    let deadline = Instant::now() + crate::speed::scaled(jobs::HOLDERS_DEADLINE);
    let through = crate::holders::Through {
        containers: &containers,
        show_keys: s.show_keys,
    };
    let (found, held, mut stats, progress) = jobs::find_holders(
        &s.mem,
        &s.info,
        s.bias,
        &cands,
        through,
        &mut cache,
        Some(deadline),
    );
    // Left unfinished: what it did not reach is not known.
    stats.cut_short += u64::from(progress == crate::holders::Progress::Pending);
    let covered = progress.into_covered();
    s.holder_cache = cache;
    s.holder_stats.add(&stats);
    let addrs: Vec<u64> = cands.iter().map(|c| c.0).collect();
    apply_owners(s, found, held, &addrs, &covered);
}
