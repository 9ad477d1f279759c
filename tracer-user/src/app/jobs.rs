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
    inspect::{BinaryInfo, MapImpl, RuntimeLayout},
    keys::{KeyLayout, KeyTracker, MAX_TRACKED_KEYS},
    sample::{self, HeaderSample, Memory, TypeSizes},
};

/// Maps whose headers are read between two deadline checks (three batched
/// reads each: headers, Swiss directories, Swiss tables).
const HEADER_BATCH: usize = 4096;

/// Longest a header job may run: 100,000 maps take about 150 ms here.
pub(super) const HEADER_DEADLINE: Duration = Duration::from_secs(2);

/// Longest the owner search may run (up to 64 MiB of globals).
pub(super) const OWNERS_DEADLINE: Duration = Duration::from_secs(1);

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
    /// Map address and the sizes of its type.
    pub(super) maps: Vec<(u64, TypeSizes)>,
    pub(super) deadline: Instant,
    /// A pause after the reads (`MAPLEAK_TEST_SAMPLE_DELAY_MS`, tests only).
    pub(super) test_delay: Option<Duration>,
}

/// Decoded headers, in the order of the job's maps (`None`: the read failed
/// or the header makes no sense).
pub(super) struct HeaderResult {
    pub(super) samples: Vec<(u64, Option<HeaderSample>)>,
    /// Every read failed: the process is gone (or going), not every map.
    pub(super) all_failed: bool,
    /// The deadline passed before every map was read (the rest were not).
    pub(super) cut_short: bool,
    /// How long the reads took (the test delay not included).
    pub(super) took: Duration,
}

impl HeaderJob {
    fn run(self) -> HeaderResult {
        let t = Instant::now();
        let mut samples = Vec::with_capacity(self.maps.len());
        let mut any_read = false;
        let mut cut_short = false;
        for batch in self.maps.chunks(HEADER_BATCH) {
            if Instant::now() >= self.deadline {
                cut_short = true;
                break;
            }
            any_read |= read_headers(
                &self.mem,
                &self.info.layout,
                self.info.map_impl,
                batch,
                &mut samples,
            );
        }
        let took = t.elapsed();
        if let Some(d) = self.test_delay {
            std::thread::sleep(d);
        }
        HeaderResult {
            all_failed: !samples.is_empty() && !any_read,
            samples,
            cut_short,
            took,
        }
    }
}

/// Reads one batch of headers into `out`; returns whether any header read
/// succeeded. Swiss maps with a directory need two more reads each (the
/// directory, then its tables): batched over the whole batch, three system
/// calls in all rather than two per map.
fn read_headers(
    mem: &Memory,
    layout: &RuntimeLayout,
    imp: MapImpl,
    batch: &[(u64, TypeSizes)],
    out: &mut Vec<(u64, Option<HeaderSample>)>,
) -> bool {
    let hlen = sample::header_len(layout, imp);
    let regions: Vec<(u64, usize)> = batch.iter().map(|&(a, _)| (a, hlen)).collect();
    let headers = mem.read_many(&regions);
    let any_read = headers.iter().any(Option::is_some);
    match imp {
        MapImpl::Hmap => {
            for (&(addr, sizes), hb) in batch.iter().zip(headers) {
                out.push((
                    addr,
                    hb.and_then(|b| sample::decode_hmap(&b, layout, sizes)),
                ));
            }
        }
        MapImpl::Swiss => {
            let swiss: Vec<Option<sample::SwissHeader>> = headers
                .iter()
                .map(|hb| hb.as_deref().and_then(|b| sample::decode_swiss(b, layout)))
                .collect();
            let dir_regions: Vec<(u64, usize)> = swiss
                .iter()
                .flatten()
                .filter(|h| h.dir_len > 0)
                .map(|h| (h.dir_ptr, (h.dir_len * 8) as usize))
                .collect();
            // Per map with a directory: its distinct table pointers (None:
            // the directory could not be read).
            let table_ptrs: Vec<Option<Vec<u64>>> = mem
                .read_many(&dir_regions)
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
            let mut tables = mem.read_many(&table_regions).into_iter();
            let mut table_ptrs = table_ptrs.into_iter();
            for (&(addr, sizes), h) in batch.iter().zip(swiss) {
                let s = h.and_then(|h| {
                    if h.dir_len == 0 {
                        return Some(sample::swiss_sample(&h, &[], layout, sizes));
                    }
                    // Consumed in the order they were collected above.
                    let ptrs = table_ptrs.next().flatten()?;
                    let mine: Vec<Option<Vec<u8>>> = tables.by_ref().take(ptrs.len()).collect();
                    Some(sample::swiss_sample(&h, &mine, layout, sizes))
                });
                out.push((addr, s));
            }
        }
    }
    any_read
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
}

/// A map whose keys may be read: (rank: 0 growing, 1 bloated, 2 other;
/// length; address; type descriptor), in the order to read them.
pub(super) type KeyCandidate = (u8, u64, u64, u64);

/// Reads keys of the candidates, then searches the globals for owners.
pub(super) struct KeysJob {
    pub(super) mem: Memory,
    pub(super) info: Arc<BinaryInfo>,
    pub(super) bias: u64,
    pub(super) cycle: u64,
    /// Key snapshots stop starting after this long.
    pub(super) limit: Duration,
    pub(super) show_keys: bool,
    /// `None`: keys are not read at this sample (deferred to the budget).
    pub(super) cands: Option<Vec<KeyCandidate>>,
    pub(super) state: KeyState,
    /// Maps whose owner is searched.
    pub(super) owner_cands: Vec<u64>,
}

/// What a keys job found.
pub(super) struct KeysResult {
    pub(super) state: KeyState,
    /// How long the key snapshots took (`None`: not read at this sample).
    pub(super) keys_took: Option<Duration>,
    /// Owner names found, by map.
    pub(super) owners: HashMap<u64, String>,
    /// Maps searched for an owner (all of them, even when the search
    /// stopped at its deadline: they are searched again four samples on).
    pub(super) owners_searched: Vec<u64>,
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
        let (owners, _cut_short) = find_owners(
            &self.mem,
            &self.info,
            self.bias,
            &self.owner_cands,
            Instant::now() + crate::speed::scaled(OWNERS_DEADLINE),
        );
        KeysResult {
            state: self.state,
            keys_took,
            owners,
            owners_searched: self.owner_cands,
        }
    }

    /// Reads the keys of suspects (growing, bloated) and of a bounded number
    /// of other maps, and follows them across cycles.
    fn snapshot_keys(&mut self, cands: Vec<KeyCandidate>) {
        let started = Instant::now();
        let mut budget = MAX_KEYS_PER_CYCLE;
        let mut others = 0;
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
            let max = MAX_TRACKED_KEYS.min(budget as usize);
            let Some(snap) = crate::keys::snapshot(mem, &info.layout, kl, addr, max) else {
                continue;
            };
            budget = budget.saturating_sub(snap.keys.len() as u64);
            self.state.snap_cycle.insert(addr, self.cycle);
            let show = self.show_keys;
            self.state
                .trackers
                .entry(addr)
                .or_insert_with(|| KeyTracker::new(kl.key_type.clone(), show))
                .update(self.cycle, &snap);
        }
    }
}

/// Names the global variable holding each of `cands`, by scanning the
/// target's writable globals for the map pointer. A transient copy of the
/// pointer in another global would be named instead: the scan sees one
/// moment. Returns the names found, and whether the deadline cut it short.
pub(super) fn find_owners(
    mem: &Memory,
    info: &BinaryInfo,
    bias: u64,
    cands: &[u64],
    deadline: Instant,
) -> (HashMap<u64, String>, bool) {
    let mut found: HashMap<u64, String> = HashMap::new();
    if cands.is_empty() {
        return (found, false);
    }
    let Some((lo, hi)) = info.data_range() else {
        return (found, false);
    };
    let wanted: HashSet<u64> = cands.iter().copied().collect();
    let hi = hi.min(lo.saturating_add(64 << 20));
    let mut buf = vec![0u8; 1 << 20];
    let mut a = lo;
    while a < hi {
        if Instant::now() >= deadline {
            return (found, true);
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
            if wanted.contains(&v) && !found.contains_key(&v) {
                let va = a + (i as u64) * 8;
                let name = match info.data_symbol_at(va) {
                    Some((sym, 0)) => sym.name.clone(),
                    Some((sym, off)) => format!("{}+{off}", sym.name),
                    None => format!("global at {va:#x} (no symbol: stripped binary)"),
                };
                found.insert(v, name);
            }
        }
        a += n as u64;
    }
    (found, false)
}
