//! Holder paths: who holds a suspect map that no global holds directly.
//!
//! `main.srv → (*main.server).cache → (*main.cache).items`: a path from a
//! root to the map, found live without stopping the target. Roots are
//! globals and goroutine stacks (`goroutine 7 (main.privateWorker)`, by frame,
//! [`goroutines`]); steps are pointers and struct fields, slice and array
//! elements (`[2]`, then the element's field), interfaces (empty or not, in
//! globals and in heap objects: `.(*T)`) and values of other maps, named by their key (`["acme"]`, redacted as the
//! report redacts keys unless `--show-keys`; [`values`]).
//! 1. copy the globals and the live part of each goroutine's stack (at most
//!    4 MiB), and find the present pages of the anonymous writable memory,
//!    the stacks left out ([`heap`], [`live`]);
//! 2. walk the maps whose elements are maps (tracked ones, and maps of a
//!    suspect's type that globals point to), indexing the elements that
//!    hold a wanted map ([`values`]);
//! 3. search back from the map pointer, level by level, each level reading
//!    the heap again, live, typing each step by the runtime type
//!    descriptors, which stripped binaries keep ([`search`], [`types`]); a
//!    search its deadline stops is kept ([`Cache`]) and goes on at the next
//!    call, from where it stopped;
//! 4. re-read every word of a path found and report it only if each still
//!    holds what it held; a path from a global is preferred to one from a
//!    stack (scanned conservatively).
//!
//! Runs in the sampling job thread (charged to the overhead budget), only
//! for suspects that have no owner yet, and at most once every four samples
//! per map (`app::sampling::owner_candidates`). A path is best-effort: the
//! target wrote on while it was copied, a struct type is inferred from
//! where its field sits (checked at every step), and a stack word may be a
//! dead slot's. Not followed yet: closure objects (a frame holding the
//! closure rather than the captured map), map values that are structs
//! holding the map.
mod goroutines;
mod heap;
mod live;
mod search;
mod types;
mod unwind;
mod values;

pub use values::{MAX_CONTAINERS, elem_is_map};

use std::{collections::HashMap, time::Instant};

use serde::Serialize;

use crate::{inspect::BinaryInfo, keys::Reader, sample::Memory};

/// What holds a map: a path from a root to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HeldBy {
    /// Steps, root first: a global (`main.srv`; `global at 0x… (*T)` in a
    /// stripped binary) or a goroutine (`goroutine 7 (main.worker)`), then
    /// each field, e.g. `(*main.server).cache`, element (`[2]`) or map key
    /// (`["acme"]`).
    pub path: Vec<String>,
    /// Found in a copy of memory the target kept writing, with struct types
    /// inferred from field positions, or in a goroutine's stack (each word
    /// re-read before reporting). False for a global that holds the map
    /// pointer itself.
    pub best_effort: bool,
}

impl HeldBy {
    /// A global holding the map pointer itself.
    #[must_use]
    pub fn direct(owner: &str) -> Self {
        Self {
            path: vec![owner.to_owned()],
            best_effort: false,
        }
    }

    /// The root: the global.
    #[must_use]
    pub fn root(&self) -> &str {
        self.path.first().map_or("", String::as_str)
    }
}

/// Cost and outcome of the holder searches over a trace.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SearchStats {
    /// Searches run (each covers every suspect without an owner).
    pub searches: u64,
    /// Suspects searched for (summed over searches).
    pub maps_searched: u64,
    /// Paths found and confirmed.
    pub paths_found: u64,
    /// Heap bytes read (each level of a search reads the heap again).
    pub heap_bytes_read: u64,
    /// Calls that searched: a search over a large heap goes on over several,
    /// a deadline's worth each.
    pub turns: u64,
    /// Entries read from maps whose elements are maps (to step through
    /// their values).
    pub map_entries_read: u64,
    /// Goroutine stack bytes copied (their live part; at most 4 MiB a
    /// search).
    pub stack_bytes_read: u64,
    /// Wall time the searches took (copy, search and re-reads), in ms.
    pub took_ms: u64,
    /// Searches stopped by a bound (heap bytes, depth, fan-out or time)
    /// before every suspect was found: their misses are not proof that no
    /// global holds the map.
    pub cut_short: u64,
}

impl SearchStats {
    /// Adds another's counts.
    pub fn add(&mut self, o: &Self) {
        self.searches += o.searches;
        self.maps_searched += o.maps_searched;
        self.paths_found += o.paths_found;
        self.heap_bytes_read += o.heap_bytes_read;
        self.turns += o.turns;
        self.map_entries_read += o.map_entries_read;
        self.stack_bytes_read += o.stack_bytes_read;
        self.took_ms += o.took_ms;
        self.cut_short += o.cut_short;
    }
}

/// What one process's searches keep: its type descriptors, indexed once.
#[derive(Debug, Default)]
pub struct Cache {
    /// `None`: not read yet; `Some(None)`: unreadable.
    types: Option<Option<Box<types::TypeTable>>>,
    /// A search under way.
    pending: Option<Box<Pending>>,
    /// Run-time address of `runtime.allgs` (`Some(None)`: not found).
    allgs: Option<Option<u64>>,
}

/// Types regions larger than this are not indexed (a binary with hundreds
/// of MiB of type descriptors).
const MAX_TYPES_BYTES: u64 = 64 << 20;

/// What a search looks through besides memory: the tracked maps whose
/// elements are maps (map, type descriptor; the largest first, at most
/// [`MAX_CONTAINERS`] walked), and whether keys naming a step through
/// them are shown whole (`--show-keys`) or redacted.
#[derive(Debug, Clone, Copy, Default)]
pub struct Through<'a> {
    pub containers: &'a [(u64, u64)],
    pub show_keys: bool,
}

/// A search that a deadline paused, to go on at the next call: what it
/// read when it started (the globals, the goroutine stacks, the heap's
/// runs of present pages, the values of maps of maps) and how far it got.
#[derive(Debug)]
struct Pending {
    search: search::Search,
    copied: Vec<heap::Region>,
    roots: Vec<goroutines::StackRoot>,
    runs: Vec<(u64, u64)>,
    values: HashMap<u64, Vec<values::ValueRef>>,
    /// A bound left memory or values out (misses prove nothing).
    bounded: bool,
    started: Instant,
}

/// Where a call left the holder search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// None ran: nothing to search, or nothing to search with.
    Idle,
    /// One is under way and goes on at the next call.
    Pending,
    /// One ended, for these maps: those it found no path for were searched
    /// as far as its bounds let it.
    Done(Vec<u64>),
}

impl Progress {
    /// The maps a search ended for (none unless it is done).
    #[must_use]
    pub fn into_covered(self) -> Vec<u64> {
        match self {
            Self::Done(maps) => maps,
            Self::Idle | Self::Pending => Vec::new(),
        }
    }
}

/// A search not done in this long is dropped (what it copied is stale):
/// at the default budget a search is paid about 1 ms of CPU a second,
/// which reads and scans about 1.5 MiB of heap, so a 1 GiB heap takes an
/// hour for six levels.
const MAX_SEARCH_AGE: std::time::Duration = std::time::Duration::from_secs(2 * 3600);

/// Searches holder paths for `suspects` (map address, type descriptor,
/// both run-time addresses) in the process `mem` reads, running the binary
/// `info` loaded at `bias`, until `deadline`. A search that the deadline
/// stops is kept in `cache` and goes on at the next call (for the maps it
/// started with, if any of them is still among `suspects`).
pub fn find(
    mem: &Memory,
    info: &BinaryInfo,
    bias: u64,
    suspects: &[(u64, u64)],
    through: Through<'_>,
    cache: &mut Cache,
    deadline: Instant,
) -> (HashMap<u64, HeldBy>, SearchStats, Progress) {
    let started = Instant::now();
    let mut stats = SearchStats::default();
    let suspects: Vec<search::Suspect> = suspects
        .iter()
        .filter(|&&(_, t)| t != 0)
        .map(|&(map, map_type)| search::Suspect { map, map_type })
        .collect();
    if let Some(p) = &cache.pending
        && (p.started.elapsed() > MAX_SEARCH_AGE
            || !p.search.maps().any(|m| suspects.iter().any(|s| s.map == m)))
    {
        cache.pending = None;
        stats.cut_short = 1;
    }
    if suspects.is_empty() && cache.pending.is_none() {
        return (HashMap::new(), stats, Progress::Idle);
    }
    let Some(types) = cache
        .types
        .get_or_insert_with(|| read_types(mem, info, bias))
        .as_ref()
    else {
        return (HashMap::new(), stats, Progress::Idle);
    };
    let Some((glo, ghi)) = info.data_range() else {
        return (HashMap::new(), stats, Progress::Idle);
    };
    let globals = (glo.wrapping_add(bias), ghi.wrapping_add(bias));
    let mut p = match cache.pending.take() {
        Some(p) => p,
        None => {
            let (p, st) = start(
                mem,
                info,
                bias,
                types,
                &suspects,
                through,
                &mut cache.allgs,
                globals,
                deadline,
            );
            stats.add(&st);
            p
        }
    };
    stats.turns = 1;
    let root_name = |at: u64, ty: Option<&str>| -> Option<String> {
        let va = at.wrapping_sub(bias);
        match info.data_symbol_at(va) {
            // The runtime's globals hold heap pointers for a moment (work
            // buffers, caches): not owners.
            Some((sym, _)) if sym.name.starts_with("runtime.") => None,
            Some((sym, 0)) => Some(sym.name.clone()),
            Some((sym, off)) => Some(format!("{}+{off}", sym.name)),
            None => Some(format!("global at {va:#x} ({})", ty.unwrap_or("?"))),
        }
    };
    let mut snap = heap::Snapshot::from_regions(std::mem::take(&mut p.copied))
        .with_live(live::LiveHeap::new(mem, &p.runs));
    snap.stacks = std::mem::take(&mut p.roots);
    let done = p.search.run(&snap, types, &root_name, &p.values, deadline);
    stats.heap_bytes_read += snap.live_bytes();
    let (copied, roots) = snap.into_parts();
    p.copied = copied;
    p.roots = roots;
    stats.took_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    if !done {
        cache.pending = Some(p);
        return (HashMap::new(), stats, Progress::Pending);
    }
    let covered: Vec<u64> = p.search.maps().collect();
    let bounded = p.bounded;
    let out = p.search.into_outcome();
    let mut held = HashMap::new();
    for (map, paths) in &out.paths {
        if let Some(p) = search::confirm(mem, paths) {
            held.insert(
                *map,
                HeldBy {
                    best_effort: p.steps.len() > 1 || p.stack,
                    path: p.steps,
                },
            );
        }
    }
    stats.paths_found = held.len() as u64;
    stats.took_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    if (bounded || out.cut_short) && held.len() < covered.len() {
        stats.cut_short = 1;
    }
    (held, stats, Progress::Done(covered))
}

/// Starts a search: copies the globals and the goroutine stacks, finds the
/// heap's runs of present pages and reads the maps of maps to step
/// through.
#[allow(clippy::too_many_arguments, reason = "the inputs of one search")]
fn start(
    mem: &Memory,
    info: &BinaryInfo,
    bias: u64,
    types: &types::TypeTable,
    suspects: &[search::Suspect],
    through: Through<'_>,
    allgs: &mut Option<Option<u64>>,
    globals: (u64, u64),
    deadline: Instant,
) -> (Box<Pending>, SearchStats) {
    let mut stats = SearchStats {
        searches: 1,
        maps_searched: suspects.len() as u64,
        ..SearchStats::default()
    };
    let maps: Vec<u64> = suspects.iter().map(|s| s.map).collect();
    let mut copied = heap::take_globals(mem, globals);
    let stacks = stacks(mem, info, bias, &copied, allgs);
    copied.extend(stacks.regions);
    let mut whole = stacks.whole;
    whole.sort_unstable();
    let (runs, heap_cut) = live::runs(mem.pid(), globals, &whole, &maps);
    let snap = heap::Snapshot::from_regions(copied).with_live(live::LiveHeap::new(mem, &runs));
    // Containers: the tracked maps of maps, then maps of the suspects'
    // types that globals hold (a tracer may not track them: made before
    // attach, or never grown since).
    let mut containers = through.containers.to_vec();
    let ctypes: Vec<u64> = suspects
        .iter()
        .flat_map(|s| types.maps_of(s.map_type))
        .collect();
    if !ctypes.is_empty() {
        for p in global_map_pointers(&snap, info.map_impl, &maps, deadline) {
            if containers.len() >= values::MAX_CONTAINERS {
                break;
            }
            for &c in &ctypes {
                if !containers.contains(&(p, c)) {
                    containers.push((p, c));
                }
            }
        }
    }
    stats.heap_bytes_read += snap.live_bytes();
    let (copied, _) = snap.into_parts();
    let wanted: std::collections::HashSet<u64> = maps
        .iter()
        .copied()
        .chain(containers.iter().map(|c| c.0))
        .collect();
    let vals = values::read(
        mem,
        info,
        bias,
        &containers,
        &wanted,
        through.show_keys,
        deadline,
    );
    stats.map_entries_read = vals.entries_read;
    stats.stack_bytes_read = stacks.bytes;
    let p = Box::new(Pending {
        search: search::Search::new(suspects, search::Limits::default()),
        copied,
        roots: stacks.roots,
        runs,
        values: vals.by_word,
        bounded: heap_cut || vals.cut_short || stacks.cut_short,
        started: Instant::now(),
    });
    (p, stats)
}

/// Values of the globals in `snap` that point to what looks like a map
/// header in the heap (`used`/`count` at least 1, a storage pointer into
/// the heap, a sane `B` or directory length), at most
/// [`values::MAX_CONTAINERS`], until `deadline`; those whose storage (the
/// bucket array, the one group or the tables' groups, in the copy) holds
/// one of `wanted` first.
fn global_map_pointers(
    snap: &heap::Snapshot<'_>,
    imp: crate::inspect::MapImpl,
    wanted: &[u64],
    deadline: Instant,
) -> Vec<u64> {
    let mut out = Vec::new();
    let mut unchecked = Vec::new();
    for (i, (_, p)) in snap.globals_words().enumerate() {
        if out.len() >= values::MAX_CONTAINERS || (i % 65_536 == 0 && Instant::now() >= deadline) {
            break;
        }
        if out.len() + unchecked.len() >= 4 * values::MAX_CONTAINERS {
            // Enough candidates: only those that hold a wanted map now.
            unchecked.truncate(values::MAX_CONTAINERS);
        }
        if !p.is_multiple_of(8) || out.contains(&p) {
            continue;
        }
        if snap.kind_of(p, 48) != Some(heap::RegionKind::Heap) {
            continue;
        }
        let (Some(count), Some(w1), Some(store), Some(w3)) = (
            snap.word(p),
            snap.word(p + 8),
            snap.word(p + 16),
            snap.word(p + 24),
        ) else {
            continue;
        };
        let heap_ptr = |a: u64| snap.kind_of(a, 8) == Some(heap::RegionKind::Heap);
        let ok = (1..1 << 40).contains(&count)
            && heap_ptr(store)
            && match imp {
                // hmap: B, a byte at +9; oldbuckets nil or in the heap.
                crate::inspect::MapImpl::Hmap => {
                    (w1 >> 8) & 0xff <= 40 && (w3 == 0 || heap_ptr(w3))
                }
                // Swiss: dirLen 0 (one group) or a power of two.
                crate::inspect::MapImpl::Swiss => {
                    w3 == 0 || (w3.is_power_of_two() && w3 <= 1 << 24)
                }
            };
        if !ok || unchecked.contains(&p) {
            continue;
        }
        let holds = |lo: u64, len: u64| {
            (0..len.min(1 << 17) / 8)
                .any(|i| snap.word(lo + i * 8).is_some_and(|w| wanted.contains(&w)))
        };
        let found = match imp {
            crate::inspect::MapImpl::Hmap => {
                // 2^B buckets of at most 8 + 8 * (128 + 128) + 8 bytes.
                let b = (w1 >> 8) & 0xff;
                b <= 20 && holds(store, (1u64 << b) * 2064)
            }
            crate::inspect::MapImpl::Swiss if w3 == 0 => holds(store, 8 * 264),
            crate::inspect::MapImpl::Swiss => (0..w3.min(64)).any(|i| {
                snap.word(store + i * 8).is_some_and(|t| {
                    let (data, mask) = (snap.word(t + 16), snap.word(t + 24));
                    data.zip(mask)
                        .is_some_and(|(d, m)| m < 1 << 12 && holds(d, (m + 1) * 8 * 264))
                })
            }),
        };
        if found {
            out.push(p);
        } else {
            unchecked.push(p);
        }
    }
    out.extend(unchecked);
    out.truncate(values::MAX_CONTAINERS);
    out
}

/// Copies the live part of the target's goroutine stacks (see
/// [`goroutines`]), finding `runtime.allgs` once (`allgs`, cached).
fn stacks(
    mem: &Memory,
    info: &BinaryInfo,
    bias: u64,
    globals: &[heap::Region],
    allgs: &mut Option<Option<u64>>,
) -> goroutines::Stacks {
    let Some(gl) = goroutines::GLayout::new(&info.layout) else {
        return goroutines::Stacks::default();
    };
    let main_entry = info.func_by_name("runtime.main").map(|f| f.entry);
    let at = *allgs.get_or_insert_with(|| {
        if let Some(s) = info.data_symbol("runtime.allgs") {
            return Some(s.addr.wrapping_add(bias));
        }
        let main = main_entry?.wrapping_add(bias);
        globals
            .iter()
            .find_map(|g| goroutines::find_allgs(mem, g, &gl, main))
    });
    let Some(at) = at else {
        return goroutines::Stacks::default();
    };
    let (gs, cut) = goroutines::read_all(mem, at, &gl);
    let code = TargetCode {
        info,
        bias,
        callees: std::cell::RefCell::default(),
    };
    let mut st = goroutines::copy(mem, &gs, &code);
    st.cut_short |= cut;
    st
}

/// The target's code, at run-time addresses, for walking its stacks.
struct TargetCode<'a> {
    info: &'a BinaryInfo,
    bias: u64,
    /// What each `go` wrapper seen runs, by its entry: decoded once per
    /// search, not once per goroutine (a server's 10,000 connection
    /// goroutines share one wrapper).
    callees: std::cell::RefCell<HashMap<u64, Option<&'a str>>>,
}

impl unwind::Code for TargetCode<'_> {
    fn func_at(&self, pc: u64) -> Option<(&str, u64)> {
        let pc = pc.wrapping_sub(self.bias);
        let f = self.info.func_by_pc(pc)?;
        let size = u64::try_from(self.info.sp_delta(pc)?).ok()?;
        Some((f.name.as_str(), size))
    }
    fn link_register(&self) -> bool {
        self.info.goarch == crate::inspect::GoArch::Arm64
    }
    fn callee(&self, entry: u64) -> Option<&str> {
        let info = self.info;
        *self.callees.borrow_mut().entry(entry).or_insert_with(|| {
            let f = info.func_by_pc(entry.wrapping_sub(self.bias))?;
            info.first_callee(f).map(|g| g.name.as_str())
        })
    }
}

/// Copies and indexes the target's types region.
fn read_types<R: Reader>(mem: &R, info: &BinaryInfo, bias: u64) -> Option<Box<types::TypeTable>> {
    let md = info.moduledata.as_ref()?;
    let len = md.etypes.checked_sub(md.types)?;
    if len == 0 || len > MAX_TYPES_BYTES {
        return None;
    }
    let base = md.types.wrapping_add(bias);
    let mut bytes = vec![0u8; usize::try_from(len).ok()?];
    let n = mem.read_some(base, &mut bytes);
    bytes.truncate(n - n % 8);
    (!bytes.is_empty()).then(|| Box::new(types::TypeTable::new(base, bytes)))
}
