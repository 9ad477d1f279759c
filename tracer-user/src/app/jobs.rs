//! `app::jobs`: the reads of a sample, run on a worker thread (tokio's
//! blocking pool) with a deadline, so that no slow read of the target's
//! memory delays an event, a signal or a timer in the loop. A job owns what
//! it reads with and returns what it found; the loop applies the result
//! (`sampling::on_done`).
//!
//! A read cannot be interrupted, so the deadline is checked between batches:
//! a job stops at the first check past it and says it was cut short.
use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::{Duration, Instant},
};

use crate::{
    inspect::BinaryInfo,
    keys::{KeyLayout, KeyTracker, MAX_TRACKED_KEYS},
    sample::{self, BatchReader, HeaderRead, Memory, SampleStats, TypeSizes},
};

/// Longest a header job reads: the maps not reached are read first by the
/// next sample (100,000 maps take about 150 ms here).
pub(super) const HEADER_DEADLINE: Duration = sample::MAX_SAMPLE_TIME;

/// Longest the owner search may run (up to 64 MiB of globals).
pub(super) const OWNERS_DEADLINE: Duration = Duration::from_secs(1);

/// Longest the holder search may run, after the owner search: a copy of up
/// to [`crate::holders`]' bound of heap (tens of ms) and a few levels over
/// it.
pub(super) const HOLDERS_DEADLINE: Duration = Duration::from_secs(1);

/// Least time (on the reference machine) a holder search is started with:
/// below it the budget's spare credit cannot pay for one, and it waits.
pub(super) const MIN_HOLDERS_TIME: Duration = Duration::from_millis(10);

/// Work for a worker thread.
pub(super) enum Job {
    Headers(HeaderJob),
    Keys(KeysJob),
}

/// What a job found.
pub(super) enum Done {
    Headers(HeaderResult),
    Keys(KeysResult),
}

impl Job {
    /// Runs the job (blocking).
    pub(super) fn run(self) -> Done {
        match self {
            Self::Headers(j) => Done::Headers(j.run()),
            Self::Keys(j) => Done::Keys(j.run()),
        }
    }
}

/// Reads the headers (and Swiss tables) of `maps`.
pub(super) struct HeaderJob {
    pub(super) mem: Memory,
    /// The binary (its runtime layout and map implementation).
    pub(super) info: Arc<BinaryInfo>,
    /// Map address and the sizes of its type, from the sample cursor on.
    pub(super) maps: Vec<(u64, TypeSizes)>,
    /// sync.Map instances among them (read first: walked as tries, or
    /// through their read and dirty maps) and whether each was sampled
    /// before, and their layout (`None`: the binary has no sync.Map).
    pub(super) syncmaps: Vec<(u64, bool)>,
    pub(super) sync_layout: Option<crate::syncmap::SyncLayout>,
    /// Classic sync.Maps: where their runtime maps' keys and elements are
    /// (`None` until their type descriptor is known: no entries read).
    pub(super) classic_entries: Option<Arc<crate::syncmap::classic_entries::EntryMapLayout>>,
    /// Keep the keys of the sync.Maps' entries: followed as their retained
    /// keys, and matched against the objects with pending finalizers.
    pub(super) keep_sync_keys: bool,
    /// Where `maps` starts among the tracked maps, and how many there are.
    pub(super) start: usize,
    pub(super) total: usize,
    pub(super) deadline: Instant,
    /// A pause after the reads (`MAPLEAK_TEST_SAMPLE_DELAY_MS`, tests only).
    pub(super) test_delay: Option<Duration>,
}

/// What the header reads gave, in the order of the job's maps (those past
/// the deadline are not in it).
pub(super) struct HeaderResult {
    pub(super) reads: Vec<(u64, HeaderRead)>,
    /// The walks of the sync.Maps, as header reads (`len` the entries).
    pub(super) sync_reads: Vec<(u64, HeaderRead)>,
    pub(super) sync_stats: crate::syncmap::SampleStats,
    /// The runtime maps of the classic sync.Maps read: folded into them.
    pub(super) sync_generations: Vec<u64>,
    /// What the tries' entries held, per sync.Map walked whole or in part.
    pub(super) sync_entries: Vec<(u64, crate::syncmap::Entries)>,
    /// Some header was read: a failed read means that map is gone, not
    /// the process.
    pub(super) any_read: bool,
    /// The deadline passed before every map was read.
    pub(super) cut_short: bool,
    pub(super) stats: SampleStats,
    pub(super) start: usize,
    pub(super) total: usize,
    /// What the reads cost: the worker thread's CPU time (on a loaded
    /// machine the wall clock also counts the time spent waiting for a
    /// CPU, and spaced the samples by it), the test delay not included.
    pub(super) took: Duration,
}

impl HeaderJob {
    fn run(mut self) -> HeaderResult {
        let t = crate::speed::RunClock::start();
        // The sync.Maps first: few, bounded by a node cap, and invisible
        // otherwise; then the maps, with what is left of the deadline.
        let mut sync_stats = crate::syncmap::SampleStats::default();
        let mut sync_reads = Vec::with_capacity(self.syncmaps.len());
        let mut sync_generations = Vec::new();
        let mut sync_entries = Vec::new();
        if let Some(crate::syncmap::SyncLayout::Classic(l)) = self.sync_layout {
            let addrs: Vec<u64> = self.syncmaps.iter().map(|x| x.0).collect();
            let s = crate::syncmap::classic::sample(
                &self.mem,
                &l,
                &self.info.layout,
                self.info.map_impl,
                &addrs,
            );
            sync_reads = s.reads;
            sync_generations = s.generations;
            if let Some(el) = &self.classic_entries {
                let mut budget = crate::syncmap::MAX_NODES_PER_SAMPLE;
                for &(addr, map) in &s.complete {
                    if Instant::now() >= self.deadline {
                        break;
                    }
                    let t = Instant::now();
                    if let Some(e) = crate::syncmap::classic_entries::read(
                        &self.mem,
                        &self.info.layout,
                        el,
                        map,
                        &mut budget,
                        self.keep_sync_keys,
                    ) {
                        sync_stats.walks += 1;
                        sync_stats.entries_read +=
                            e.types.iter().map(|t| t.1).sum::<u64>() + e.other_types;
                        sync_stats.walk_us +=
                            u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX);
                        sync_entries.push((addr, e));
                    }
                }
            }
        }
        if let Some(crate::syncmap::SyncLayout::Trie(l)) = self.sync_layout {
            let mut budget = crate::syncmap::MAX_NODES_PER_SAMPLE;
            for &(addr, sampled) in &self.syncmaps {
                let mut entries = crate::syncmap::Entries {
                    keys_kept: self.keep_sync_keys,
                    ..crate::syncmap::Entries::default()
                };
                let read = crate::syncmap::sample(
                    &mut self.mem,
                    &l,
                    (addr, sampled),
                    &mut budget,
                    self.deadline,
                    &mut sync_stats,
                    (&mut entries, self.keep_sync_keys),
                );
                if matches!(read, HeaderRead::Ok(_)) {
                    sync_entries.push((addr, entries));
                }
                sync_reads.push((addr, read));
            }
        }
        let mut reader = BatchReader::new(&self.info.layout, self.info.map_impl);
        let mut reads = Vec::with_capacity(self.maps.len());
        let mut any_read = sync_reads
            .iter()
            .any(|(_, r)| matches!(r, HeaderRead::Ok(_)));
        let mut cut_short = sync_stats.cut_short > 0;
        for (i, batch) in self.maps.chunks(sample::BATCH).enumerate() {
            if i > 0 && Instant::now() >= self.deadline {
                cut_short = true;
                break;
            }
            any_read |= reader.read(&self.mem, batch, &mut reads);
        }
        let took = t.elapsed();
        if let Some(d) = self.test_delay {
            std::thread::sleep(d);
        }
        HeaderResult {
            reads,
            sync_reads,
            sync_stats,
            sync_generations,
            sync_entries,
            any_read,
            cut_short,
            stats: reader.stats,
            start: self.start,
            total: self.total,
            took,
        }
    }
}

/// What key snapshots carry from one sample to the next. It travels with
/// the keys job and comes back with its result.
#[derive(Default)]
pub(super) struct KeyState {
    /// Key layouts by map type descriptor (`None`: not resolvable).
    pub(super) layouts: HashMap<u64, Option<KeyLayout>>,
    /// Key retention by map address.
    pub(super) trackers: HashMap<u64, KeyTracker>,
    /// Cycle of each map's latest key snapshot (to rotate when time runs out).
    pub(super) snap_cycle: HashMap<u64, u64>,
    /// The holder search's index of the target's type descriptors.
    pub(super) holders: crate::holders::Cache,
}

/// A map whose keys may be read: (rank: 0 growing, 1 bloated, 2 other;
/// length; address; type descriptor), in the order to read them.
pub(super) type KeyCandidate = (u8, u64, u64, u64);

/// Reads keys of the candidates, then searches the globals for owners.
pub(super) struct KeysJob {
    pub(super) mem: Memory,
    /// Shows what interface keys hold in their examples.
    pub(super) interfaces: Arc<dyn crate::keys::InterfaceValues>,
    pub(super) info: Arc<BinaryInfo>,
    pub(super) bias: u64,
    pub(super) cycle: u64,
    /// `memstats.numgc` in the target (`None`: unknown): the cycle a
    /// snapshot is dated by when the target has run more cycles since
    /// `cycle` (a tracer behind the target, as on a slow CPU).
    pub(super) numgc_addr: Option<u64>,
    /// Key snapshots stop starting after this long.
    pub(super) limit: Duration,
    pub(super) show_keys: bool,
    /// `None`: keys are not read at this sample (deferred to the budget).
    pub(super) cands: Option<Vec<KeyCandidate>>,
    pub(super) state: KeyState,
    /// Maps whose owner is searched, and their type descriptors.
    pub(super) owner_cands: Vec<(u64, u64)>,
    /// Tracked maps whose elements are maps, and their type descriptors
    /// (the holder search steps through their values).
    pub(super) containers: Vec<(u64, u64)>,
    /// What the budget's spare credit pays for the key snapshots and then
    /// the holder search together: the search gets what the snapshots left
    /// (none below [`MIN_HOLDERS_TIME`]: it waits for credit).
    pub(super) search_time: Duration,
}

/// What a keys job found.
pub(super) struct KeysResult {
    pub(super) state: KeyState,
    /// How long the key snapshots took (`None`: not read at this sample).
    pub(super) keys_took: Option<Duration>,
    /// Owner names found, by map.
    pub(super) owners: HashMap<u64, String>,
    /// Holder paths found, by map (for maps no global holds directly).
    pub(super) held: HashMap<u64, crate::holders::HeldBy>,
    pub(super) holder_stats: crate::holders::SearchStats,
    /// Maps searched for an owner (all of them, even when the search
    /// stopped at its deadline: they are searched again four samples on).
    pub(super) owners_searched: Vec<u64>,
    /// Whether the holder search ran for those the owner search did not
    /// name (else the budget had no credit for it).
    pub(super) holders_ran: bool,
    /// Where the holder search stands: under way, it goes on at the next
    /// job; done, the maps it covered.
    pub(super) holders: crate::holders::Progress,
    /// How long the owner and holder searches took (debited from the
    /// search's own credit when the holder search ran).
    pub(super) search_took: Duration,
}

/// Keys read per GC cycle, over all maps: bounds the tracer's memory and the
/// time a cycle takes.
pub(super) const MAX_KEYS_PER_CYCLE: u64 = 1_000_000;

/// Maps that are not suspects whose keys are read per cycle (the largest).
pub(super) const MAX_OTHER_SNAPSHOTS: usize = 64;

/// Largest map that is not a suspect whose keys are read.
pub(super) const MAX_OTHER_LEN: u64 = 20_000;

impl KeysJob {
    fn run(mut self) -> KeysResult {
        let keys_took = self.cands.take().map(|cands| {
            let t = Instant::now();
            self.snapshot_keys(cands);
            t.elapsed()
        });
        let left = self
            .search_time
            .saturating_sub(keys_took.unwrap_or_default());
        let holders_deadline =
            (left >= crate::speed::scaled(MIN_HOLDERS_TIME)).then(|| Instant::now() + left);
        let searching = Instant::now();
        let (owners, held, holder_stats, holders) = find_holders(
            &self.mem,
            &self.info,
            self.bias,
            &self.owner_cands,
            crate::holders::Through {
                containers: &self.containers,
                show_keys: self.show_keys,
            },
            &mut self.state.holders,
            holders_deadline,
        );
        KeysResult {
            state: self.state,
            keys_took,
            owners,
            held,
            holder_stats,
            owners_searched: self.owner_cands.iter().map(|c| c.0).collect(),
            holders_ran: holders_deadline.is_some(),
            holders,
            search_took: searching.elapsed(),
        }
    }

    /// Reads the keys of suspects (growing, bloated) and of a bounded number
    /// of other maps, and follows them across cycles.
    fn snapshot_keys(&mut self, cands: Vec<KeyCandidate>) {
        let started = Instant::now();
        let mut budget = MAX_KEYS_PER_CYCLE;
        let mut others = 0;
        // The cycle the target is in, read again after each snapshot.
        let mut now = cycle_now(&self.mem, self.numgc_addr, self.cycle);
        for (rank, len, addr, tp) in cands {
            if started.elapsed() >= self.limit {
                break;
            }
            if rank == 2 {
                if others >= MAX_OTHER_SNAPSHOTS || len == 0 || len > MAX_OTHER_LEN {
                    continue;
                }
                others += 1;
            }
            if !self.state.trackers.contains_key(&addr) && !crate::keys::room_for_tracker(rank < 2)
            {
                continue;
            }
            if len > budget {
                continue;
            }
            let (mem, info, bias) = (&self.mem, &*self.info, self.bias);
            let Some(kl) = self
                .state
                .layouts
                .entry(tp)
                .or_insert_with(|| crate::keys::key_layout(mem, info, bias, tp))
                .as_ref()
            else {
                continue;
            };
            // No cycle since this map's last snapshot (read late, and dated
            // by the cycle it was read in): its keys have survived none.
            if self.state.snap_cycle.get(&addr).is_some_and(|&c| c >= now) {
                continue;
            }
            let max = MAX_TRACKED_KEYS.min(budget as usize);
            let Some(snap) = crate::keys::snapshot(mem, &info.layout, kl, addr, max) else {
                continue;
            };
            budget = budget.saturating_sub(snap.keys.len() as u64);
            // Dated when its read ended; the next map is checked against it.
            now = cycle_now(mem, self.numgc_addr, now);
            self.state.snap_cycle.insert(addr, now);
            let (show, iface) = (self.show_keys, &self.interfaces);
            self.state
                .trackers
                .entry(addr)
                .or_insert_with(|| {
                    KeyTracker::new(kl.key_type.clone(), show).with_interfaces(iface.clone())
                })
                .update(now, &snap);
        }
    }
}

/// The GC cycle the target is in now: `cycle` (the sample's), or a later
/// one the target has finished since, read at `numgc` (`memstats.numgc`):
/// keys read then are as of that cycle, not the sample's (the emulated
/// arm64 VM read a sample's keys a step or two late, CI of e2b5d9f). One
/// 4-byte read: once per keys job, then once per map read.
fn cycle_now(mem: &Memory, numgc: Option<u64>, cycle: u64) -> u64 {
    let mut b = [0u8; 4];
    match numgc {
        Some(addr) if mem.read(addr, &mut b) => cycle.max(u64::from(u32::from_le_bytes(b))),
        _ => cycle,
    }
}

/// Owners of `cands` (map, type descriptor): the globals holding the map
/// pointer itself ([`find_owners`]), then, for the others, holder paths
/// from a global through pointers and struct fields ([`crate::holders`]),
/// until `holders_deadline` (`None`: not searched); and where the holder
/// search stands.
pub(super) fn find_holders(
    mem: &Memory,
    info: &BinaryInfo,
    bias: u64,
    cands: &[(u64, u64)],
    through: crate::holders::Through<'_>,
    cache: &mut crate::holders::Cache,
    holders_deadline: Option<Instant>,
) -> (
    HashMap<u64, String>,
    HashMap<u64, crate::holders::HeldBy>,
    crate::holders::SearchStats,
    crate::holders::Progress,
) {
    let addrs: Vec<u64> = cands.iter().map(|c| c.0).collect();
    let (owners, _cut_short) = find_owners(
        mem,
        info,
        bias,
        &addrs,
        Instant::now() + crate::speed::scaled(OWNERS_DEADLINE),
    );
    let rest: Vec<(u64, u64)> = cands
        .iter()
        .filter(|c| !owners.contains_key(&c.0))
        .copied()
        .collect();
    let Some(deadline) = holders_deadline.filter(|_| !rest.is_empty()) else {
        return (
            owners,
            HashMap::new(),
            crate::holders::SearchStats::default(),
            crate::holders::Progress::Idle,
        );
    };
    let (held, stats, progress) =
        crate::holders::find(mem, info, bias, &rest, through, cache, deadline);
    (owners, held, stats, progress)
}

/// Names the global variable holding each of `cands`, by scanning the
/// target's writable globals for the map pointer. The scan sees one moment,
/// so a transient copy of the pointer could be taken for the owner: the
/// runtime's own globals (its GC work buffers, caches and scratch hold
/// pointers to heap objects for a moment) are not owners, and each hit is
/// read again after the scan and dropped if it changed. Returns the names
/// found, and whether the deadline cut it short.
pub(super) fn find_owners(
    mem: &Memory,
    info: &BinaryInfo,
    bias: u64,
    cands: &[u64],
    deadline: Instant,
) -> (HashMap<u64, String>, bool) {
    let mut found: HashMap<u64, Vec<(u64, String)>> = HashMap::new();
    if cands.is_empty() {
        return (HashMap::new(), false);
    }
    let Some((lo, hi)) = info.data_range() else {
        return (HashMap::new(), false);
    };
    let wanted: HashSet<u64> = cands.iter().copied().collect();
    let hi = hi.min(lo.saturating_add(64 << 20));
    let mut buf = vec![0u8; 1 << 20];
    let mut a = lo;
    while a < hi {
        if Instant::now() >= deadline {
            return (confirmed(mem, bias, found), true);
        }
        let want = ((hi - a) as usize).min(buf.len()) & !7;
        if want == 0 {
            break;
        }
        let n = mem.read_some(a.wrapping_add(bias), &mut buf[..want]) & !7;
        if n == 0 {
            // Unmapped page: skip it.
            a = (a + 4096) & !4095;
            continue;
        }
        for (i, w) in buf[..n].chunks_exact(8).enumerate() {
            let v = u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
            if wanted.contains(&v) && found.get(&v).is_none_or(|h| h.len() < MAX_OWNER_HITS) {
                let va = a + (i as u64) * 8;
                let name = match info.data_symbol_at(va) {
                    Some((sym, _)) if sym.name.starts_with("runtime.") => continue,
                    Some((sym, 0)) => sym.name.clone(),
                    Some((sym, off)) => format!("{}+{off}", sym.name),
                    None => format!("global at {va:#x} (no symbol: stripped binary)"),
                };
                found.entry(v).or_default().push((va, name));
            }
        }
        a += n as u64;
    }
    (confirmed(mem, bias, found), false)
}

/// Globals holding one map pointer that [`find_owners`] remembers.
const MAX_OWNER_HITS: usize = 4;

/// For each map, the first hit of [`find_owners`] that still holds its
/// pointer.
fn confirmed(
    mem: &Memory,
    bias: u64,
    found: HashMap<u64, Vec<(u64, String)>>,
) -> HashMap<u64, String> {
    let holds = |va: u64, v: u64| {
        let mut w = [0u8; 8];
        mem.read_some(va.wrapping_add(bias), &mut w) == 8 && u64::from_le_bytes(w) == v
    };
    found
        .into_iter()
        .filter_map(|(v, hits)| {
            let (_, name) = hits.into_iter().find(|(va, _)| holds(*va, v))?;
            Some((v, name))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_is_dated_by_the_later_of_its_sample_and_the_targets_count() {
        // This process stands in for the target: its own memory is read.
        let numgc = Box::new(7u32);
        let addr = std::ptr::from_ref::<u32>(&numgc) as u64;
        let mem = Memory::new(std::process::id());
        assert_eq!(cycle_now(&mem, Some(addr), 5), 7);
        assert_eq!(cycle_now(&mem, Some(addr), 9), 9, "never earlier");
        assert_eq!(cycle_now(&mem, None, 5), 5);
        assert_eq!(cycle_now(&mem, Some(8), 5), 5, "unreadable");
    }
}
