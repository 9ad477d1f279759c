//! `model`: per-map history and verdicts. Pure and deterministic: time is
//! the GC cycle number from events, never the wall clock.
//!
//! A map is judged over GC cycles:
//! - **growing**: its length rose at least twice over the recent cycles and
//!   seldom fell, is at its high-water mark, and rose over the second half of
//!   the window (level cycles in between are fine: a leak may grow slower
//!   than the GC runs);
//! - **bloated**: capacity far above length (Go maps never shrink,
//!   golang/go#20135);
//! - **idle**: nothing changed across the recent cycles;
//! - **stable**: anything else (bounded, even under heavy churn).
//!
//! Memory: a tracked map costs about 170 bytes ([`TrackedMap`] in a slab,
//! [`table`]), whatever the target does with it: its samples are a fixed
//! window ([`history`]), its sites 4-byte references ([`sites`]), and what
//! only some maps have (an owner, write counts, a long history) is boxed.
//! Everything that grows with the target has a cap, counted when reached
//! ([`Model::caps`]).
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};

use serde::Serialize;

use crate::sample::{HeaderRead, HeaderSample};

pub mod families;
pub mod history;
mod reuse;
mod samples;
pub mod sites;
mod syncmaps;
pub mod table;
mod verdict;

pub use history::{MAX_LONG_HISTORIES, MAX_SAMPLES, Points, Slot, Window};
pub use samples::{Latest, Sample, SampleAt, Verdict};
pub use sites::{RawSite, SiteRef, Sites};
pub use table::MapTable;
use verdict::judge;
pub use verdict::verdict;

/// Samples kept for a map that is neither growing nor bloated: what a
/// verdict looks at.
pub const QUIET_SAMPLES: usize = WINDOW;
/// Samples a verdict looks at.
pub const WINDOW: usize = 8;
/// Fewest samples before a map can be called growing.
pub const MIN_SAMPLES_GROWING: usize = 3;
/// Most maps tracked per process; beyond it the least interesting are
/// dropped. 2^20 (1,048,576): a program with a million maps (and the
/// runtime's own) is tracked whole; the slab then holds 2^20 maps of
/// 160 bytes and the index 2^21 slots of 5: 170 MiB at the cap.
pub const MAX_TRACKED: usize = 1 << 20;
/// Implausible headers in a row before a map is taken for dead: one read
/// may catch a header mid-update (Go's Swiss `installTableSplit` writes the
/// depth before the directory), and the maps that grow are the ones read
/// mid-update.
pub const RETIRE_AFTER: u8 = 3;
/// Share of [`MAX_TRACKED`] dropped at once when it is reached: one pass
/// over every map picks them, rather than a pass per new map.
const EVICT_DIVISOR: usize = 100;

/// What only some maps have, boxed out of [`TrackedMap`].
#[derive(Debug, Clone, Default)]
struct Extra {
    owner: Option<String>,
    /// A path from a global to the map through pointers and struct fields
    /// (`None`: none found, or the owner holds the map pointer itself).
    held_by: Option<crate::holders::HeldBy>,
    type_name: Option<String>,
    assigns: u64,
    deletes: u64,
    insert_sites: Vec<(u64, u64)>,
    /// Samples older than the window, oldest first, for a growing or
    /// bloated map (one of the [`MAX_LONG_HISTORIES`]).
    older: Option<VecDeque<Slot>>,
}

/// Insert sites kept per map.
pub const MAX_INSERT_SITES: usize = 16;

/// [`TrackedMap`] flags.
const HAS_SEED: u8 = 1;
const LAST_TIMER: u8 = 2;
/// A seed change showed a new map at this address: its creation is
/// unknown, and a creation record must be newer than `alive_ns`.
const REUSED: u8 = 4;
/// The creation record has not been looked up since the map was tracked
/// (or its address reused).
const WANTS_CREATION: u8 = 8;
/// It has write counts (one of [`MAX_WRITE_RECORDS`]).
const WRITES: u8 = 16;
/// A `sync.Map` (Go 1.24+ HashTrieMap, [`crate::syncmap`]), not a runtime
/// map: sampled by walking its trie, never read as a map header.
const SYNC_MAP: u8 = 32;
/// A runtime map that is a generation (the read or the dirty map) of a
/// classic `sync.Map` ([`crate::syncmap::classic`]): folded into it, so
/// not reported, grouped, searched or read for keys on its own.
const SYNC_GENERATION: u8 = 64;

/// Most maps whose writes in write windows are recorded (about 200 bytes
/// each with their insert sites): a service that writes to all of its
/// 1,000,000 maps would otherwise give each a record. Past it, writes to
/// maps without one are counted in [`Caps::writes_dropped`].
pub const MAX_WRITE_RECORDS: usize = 1 << 16;

/// Everything known about one map.
#[derive(Debug, Clone)]
pub struct TrackedMap {
    /// Stable id within this run (a new one when the address is reused).
    pub id: u64,
    /// Header address (run-time).
    pub addr: u64,
    /// Type descriptor (run-time address), 0 if unknown.
    pub type_ptr: u64,
    /// Hash seed at the last sample (see `HAS_SEED`).
    seed: u64,
    /// Latest time (ns, kernel clock) this map is known to have existed:
    /// its creation or a growth event. After a reuse it stays where the
    /// old map was last seen, the floor for the new map's creation record.
    alive_ns: u64,
    /// Length at the first sample.
    first_len: u64,
    /// Bytes at the latest sample.
    bytes_last: u64,
    /// Growth events seen (saturating).
    growth_events: u32,
    /// Low bits of its storage pointer at the last sample
    /// ([`HeaderSample::storage`]).
    storage: u32,
    /// Where it was created, where its latest growth was triggered, and
    /// the growth site before that (another probe may give a stack with
    /// nothing outside the runtime).
    created: SiteRef,
    grow: SiteRef,
    grow_prev: SiteRef,
    flags: u8,
    /// Implausible headers in a row.
    fails: u8,
    win: Window,
    /// An owner, write counts, a long history: what most maps lack.
    extra: Option<Box<Extra>>,
}

impl TrackedMap {
    fn new(id: u64, addr: u64, type_ptr: u64) -> Self {
        Self {
            id,
            addr,
            type_ptr,
            seed: 0,
            alive_ns: 0,
            first_len: 0,
            bytes_last: 0,
            growth_events: 0,
            storage: 0,
            created: SiteRef::NONE,
            grow: SiteRef::NONE,
            grow_prev: SiteRef::NONE,
            flags: WANTS_CREATION,
            fails: 0,
            win: Window::default(),
            extra: None,
        }
    }

    fn extra(&mut self) -> &mut Extra {
        self.extra.get_or_insert_with(Box::default)
    }

    /// Adds write-window counts: an insert (or update) at `pc`, or a delete.
    fn add_write(&mut self, assign: bool, pc: u64, count: u64) {
        let x = self.extra();
        if !assign {
            x.deletes += count;
            return;
        }
        x.assigns += count;
        if let Some(e) = x.insert_sites.iter_mut().find(|e| e.0 == pc) {
            e.1 += count;
        } else {
            x.insert_sites.push((pc, count));
        }
        x.insert_sites
            .sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        x.insert_sites.truncate(MAX_INSERT_SITES);
    }

    /// The global variable holding it, if known.
    #[must_use]
    pub fn owner(&self) -> Option<&str> {
        self.extra.as_ref()?.owner.as_deref()
    }

    /// Names the global variable holding it.
    pub fn set_owner(&mut self, owner: String) {
        self.extra().owner = Some(owner);
    }

    /// What holds it: the path found by the holder search, else its owner
    /// holding the map pointer itself.
    #[must_use]
    pub fn held_by(&self) -> Option<crate::holders::HeldBy> {
        let x = self.extra.as_ref()?;
        x.held_by
            .clone()
            .or_else(|| x.owner.as_deref().map(crate::holders::HeldBy::direct))
    }

    /// Records a holder path; its root becomes the owner.
    pub fn set_held_by(&mut self, held: crate::holders::HeldBy) {
        let x = self.extra();
        x.owner = Some(held.root().to_owned());
        x.held_by = Some(held);
    }

    /// Go type name from DWARF, when the type descriptor is not known.
    #[must_use]
    pub fn type_name(&self) -> Option<&str> {
        self.extra.as_ref()?.type_name.as_deref()
    }

    /// Inserts or updates, and deletes, seen in write windows.
    #[must_use]
    pub fn writes(&self) -> (u64, u64) {
        self.extra
            .as_ref()
            .map_or((0, 0), |x| (x.assigns, x.deletes))
    }

    /// Insert sites seen in write windows: (return address, count), the
    /// busiest first, at most [`MAX_INSERT_SITES`].
    #[must_use]
    pub fn insert_sites(&self) -> &[(u64, u64)] {
        self.extra.as_ref().map_or(&[], |x| &x.insert_sites)
    }

    /// Growth events seen.
    #[must_use]
    pub fn growth_events(&self) -> u64 {
        u64::from(self.growth_events)
    }

    /// Where it was created ([`SiteRef::NONE`] if not seen).
    #[must_use]
    pub const fn created_site(&self) -> SiteRef {
        self.created
    }

    /// Where its latest growth was triggered ([`SiteRef::NONE`] if not seen).
    #[must_use]
    pub const fn grow_site(&self) -> SiteRef {
        self.grow
    }

    /// The growth sites to show, in order of preference: the latest, then
    /// the one before it (when the latest has nothing outside the runtime).
    #[must_use]
    pub const fn grow_sites(&self) -> [SiteRef; 2] {
        [self.grow, self.grow_prev]
    }

    /// Its creation record has not been looked up yet (a new map, or a new
    /// one at a reused address).
    #[must_use]
    pub const fn wants_creation(&self) -> bool {
        self.flags & WANTS_CREATION != 0
    }

    /// Hash seed at the last sample.
    #[must_use]
    pub const fn seed(&self) -> Option<u64> {
        if self.flags & HAS_SEED != 0 {
            Some(self.seed)
        } else {
            None
        }
    }

    /// Length at the first sample (since its address was last reused).
    #[must_use]
    pub const fn first_len(&self) -> Option<u64> {
        if self.flags & HAS_SEED != 0 {
            Some(self.first_len)
        } else {
            None
        }
    }

    /// The latest sample.
    #[must_use]
    pub fn last(&self) -> Option<Latest> {
        let s = self.win.last()?;
        Some(Latest {
            cycle: u64::from(self.win.cycle()),
            len: s.len,
            capacity: self.win.capacity(),
            bytes: self.bytes_last,
        })
    }

    fn older(&self) -> Option<&VecDeque<Slot>> {
        self.extra.as_ref()?.older.as_ref()
    }

    /// Whether it holds a long history (one of [`MAX_LONG_HISTORIES`]).
    fn has_long(&self) -> bool {
        self.older().is_some()
    }

    /// Drops its long history; returns whether it had one.
    fn drop_long(&mut self) -> bool {
        self.extra.as_mut().and_then(|x| x.older.take()).is_some()
    }

    /// Samples held (window and older).
    #[must_use]
    pub fn samples_len(&self) -> usize {
        self.win.len() + self.older().map_or(0, VecDeque::len)
    }

    /// The verdict over the recent samples.
    #[must_use]
    pub fn verdict(&self) -> Verdict {
        let mut lens = [0u64; WINDOW];
        let n = self.win.lens(&mut lens);
        judge(
            &lens[..n],
            self.win.capacity(),
            self.win.capacity_constant(),
        )
    }
}

/// One GC cycle seen.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct GcCycle {
    /// Cycle number (the runtime's own when known, else counted from attach).
    pub cycle: u64,
    /// Seconds since the trace started.
    pub t_s: f64,
    /// Live heap after marking (`gcController.heapMarked`), if known.
    pub heap_marked_bytes: Option<u64>,
}

/// How often the model's caps were reached.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Caps {
    /// Samples not kept beyond the window because [`MAX_LONG_HISTORIES`]
    /// maps had a long history.
    pub long_history_refused: u64,
    /// GC cycles dropped from the list because [`MAX_CYCLES`] were kept.
    pub cycles_dropped: u64,
    /// Sites not kept (see [`sites::MAX_SITE_REFS`]).
    pub sites_dropped: u64,
    /// Header reads skipped to keep a sample's reads bounded
    /// ([`crate::sample::MAX_TABLE_BYTES_PER_SAMPLE`]).
    pub reads_skipped: u64,
    /// Maps a sample did not reach in its time
    /// ([`crate::sample::MAX_SAMPLE_TIME`]), read first by the next one.
    pub reads_unreached: u64,
    /// Writes seen in write windows and not recorded: their map had no
    /// record and [`MAX_WRITE_RECORDS`] maps had one.
    pub writes_dropped: u64,
}

/// Per-process model state.
#[derive(Debug)]
pub struct Model {
    /// Tracked maps by header address.
    pub maps: MapTable,
    /// GC cycles seen (bounded).
    pub cycles: VecDeque<GcCycle>,
    /// Maps dropped because they died (memory reused by another map).
    pub retired: u64,
    /// Maps dropped because the tracked set was full.
    pub evicted: u64,
    /// Maps whose address came to hold a new map (seen by a seed change):
    /// retired (a `sync.Map` starts over under a new id).
    pub reused: u64,
    /// Addresses of maps retired by reuse, with when the old map was last
    /// alive: the floor of the new map's creation record ([`reuse`]).
    reuse_floors: HashMap<u64, u64>,
    /// When the samples were taken.
    pub points: Points,
    /// Creation and growth sites.
    pub sites: Sites,
    /// Most maps tracked.
    pub max_tracked: usize,
    /// Caps reached (besides `evicted`).
    pub caps: Caps,
    /// Slab position the next sample starts at (see
    /// [`crate::sample::sample_model`]).
    pub sample_cursor: usize,
    long_histories: usize,
    write_records: usize,
    next_id: u64,
    counted_cycles: u64,
}

impl Default for Model {
    fn default() -> Self {
        Self::with_max_tracked(MAX_TRACKED)
    }
}

/// Most GC cycles kept.
pub const MAX_CYCLES: usize = 4096;

impl Model {
    /// A model tracking at most `max_tracked` maps.
    #[must_use]
    pub fn with_max_tracked(max_tracked: usize) -> Self {
        Self {
            maps: MapTable::default(),
            cycles: VecDeque::new(),
            retired: 0,
            evicted: 0,
            reused: 0,
            reuse_floors: HashMap::new(),
            points: Points::default(),
            sites: Sites::default(),
            max_tracked: max_tracked.max(1),
            caps: Caps::default(),
            sample_cursor: 0,
            long_histories: 0,
            write_records: 0,
            next_id: 0,
            counted_cycles: 0,
        }
    }

    /// Records a growth of the map at `addr` (triggered at `site`); starts
    /// tracking it if new. Returns true when its creation record should be
    /// looked up: the map was not tracked before, or its address now holds
    /// a new map whose creation has not been seen.
    pub fn on_grow(&mut self, addr: u64, type_ptr: u64, ts_ns: u64, site: Option<RawSite>) -> bool {
        let site = site.map_or(SiteRef::NONE, |r| self.sites.intern(r));
        if let Some(m) = self.maps.get_mut(&addr) {
            m.growth_events = m.growth_events.saturating_add(1);
            if type_ptr != 0 {
                m.type_ptr = type_ptr;
            }
            if site.is_some() && site != m.grow {
                m.grow_prev = m.grow;
                m.grow = site;
            }
            if m.flags & REUSED == 0 {
                m.alive_ns = m.alive_ns.max(ts_ns);
            }
            let wants = m.wants_creation();
            m.flags &= !WANTS_CREATION;
            return wants;
        }
        if self.maps.len() >= self.max_tracked {
            self.evict();
        }
        self.next_id += 1;
        let mut m = TrackedMap::new(self.next_id, addr, type_ptr);
        m.growth_events = 1;
        m.grow = site;
        m.alive_ns = ts_ns;
        m.flags &= !WANTS_CREATION;
        self.take_reuse_floor(&mut m);
        self.maps.insert(m);
        true
    }

    /// The creation record of the map at `addr`: when it was made, its
    /// type and where. Ignored when it is older than what is known of the
    /// map now at that address (it is an earlier map's). Returns whether
    /// it was taken.
    pub fn on_created(&mut self, addr: u64, ts_ns: u64, type_ptr: u64, site: RawSite) -> bool {
        let Some(m) = self.maps.get(&addr) else {
            return false;
        };
        if m.flags & REUSED != 0 && ts_ns <= m.alive_ns {
            return false;
        }
        let site = self.sites.intern(site);
        let Some(m) = self.maps.get_mut(&addr) else {
            return false;
        };
        m.flags &= !(REUSED | WANTS_CREATION);
        m.alive_ns = m.alive_ns.max(ts_ns);
        m.created = site;
        if m.type_ptr == 0 {
            m.type_ptr = type_ptr;
        }
        true
    }

    /// The creation record of the map at `addr` was looked up and not
    /// found (or not taken).
    pub fn creation_looked_up(&mut self, addr: u64) {
        if let Some(m) = self.maps.get_mut(&addr) {
            m.flags &= !WANTS_CREATION;
        }
    }

    /// Adds write-window counts to the map at `addr` (of type `type_ptr`,
    /// taken when its type is not known yet): an insert (or update) at `pc`,
    /// or a delete. Counted only for [`MAX_WRITE_RECORDS`] maps.
    pub fn on_write(&mut self, addr: u64, type_ptr: u64, assign: bool, pc: u64, count: u64) {
        let room = self.write_records < MAX_WRITE_RECORDS;
        let Some(m) = self.maps.get_mut(&addr) else {
            return;
        };
        if m.type_ptr == 0 {
            m.type_ptr = type_ptr;
        }
        if m.flags & WRITES == 0 {
            if !room {
                self.caps.writes_dropped += count;
                return;
            }
            m.flags |= WRITES;
            self.write_records += 1;
        }
        m.add_write(assign, pc, count);
    }

    /// Starts tracking a map found without a growth event (a global seen in
    /// DWARF, say). Returns false if it was tracked already.
    pub fn on_discovered(
        &mut self,
        addr: u64,
        type_name: Option<String>,
        ts_ns: u64,
        owner: Option<String>,
    ) -> bool {
        if self.maps.contains_key(&addr) {
            return false;
        }
        self.on_grow(addr, 0, ts_ns, None);
        if let Some(m) = self.maps.get_mut(&addr) {
            m.growth_events = 0;
            if owner.is_some() || type_name.is_some() {
                let x = m.extra();
                x.owner = owner;
                x.type_name = type_name;
            }
        }
        true
    }

    /// Drops the smallest non-growing maps (a hundredth of the cap at
    /// once, the oldest first among equals); growing ones only when nothing
    /// else is left.
    fn evict(&mut self) {
        let n = (self.max_tracked / EVICT_DIVISOR).max(1);
        // The n least interesting in a heap of n (not a list of every map:
        // at the cap that would be tens of megabytes at once).
        let mut worst: BinaryHeap<(bool, u64, u64, u64)> = BinaryHeap::with_capacity(n + 1);
        for m in self.maps.values() {
            worst.push((
                m.verdict() == Verdict::Growing,
                m.last().map_or(0, |s| s.len),
                m.id,
                m.addr,
            ));
            if worst.len() > n {
                worst.pop();
            }
        }
        for (_, _, _, addr) in worst {
            if self.remove(addr) {
                self.evicted += 1;
            }
        }
    }

    fn remove(&mut self, addr: u64) -> bool {
        match self.maps.remove(addr) {
            Some(m) => {
                if m.has_long() {
                    self.long_histories -= 1;
                }
                if m.flags & WRITES != 0 {
                    self.write_records -= 1;
                }
                true
            }
            None => false,
        }
    }

    /// A cycle was marked. `runtime_cycle` is the runtime's own number when
    /// known. Returns the cycle number used.
    pub fn on_gc_marked(&mut self, runtime_cycle: Option<u64>, t_s: f64, heap: Option<u64>) -> u64 {
        self.counted_cycles += 1;
        // Unknown: the one after the last seen (never backwards).
        let cycle = runtime_cycle.unwrap_or_else(|| {
            self.cycles
                .back()
                .map_or(self.counted_cycles, |c| c.cycle + 1)
        });
        if self.cycles.back().is_some_and(|c| c.cycle == cycle) {
            return cycle;
        }
        if self.cycles.len() >= MAX_CYCLES {
            self.cycles.pop_front();
            self.caps.cycles_dropped += 1;
        }
        self.cycles.push_back(GcCycle {
            cycle,
            t_s,
            heap_marked_bytes: heap,
        });
        cycle
    }

    /// Records a header read at `at`. A read that failed (the memory is
    /// gone) retires the map at once; a header that is not a live map's
    /// does after [`RETIRE_AFTER`] in a row; a skipped read changes nothing.
    pub fn on_sample(&mut self, addr: u64, at: SampleAt, read: HeaderRead) {
        let h = match read {
            HeaderRead::Skipped => return,
            HeaderRead::Failed => {
                self.retire(addr);
                return;
            }
            HeaderRead::Implausible => {
                let Some(m) = self.maps.get_mut(&addr) else {
                    return;
                };
                m.fails = m.fails.saturating_add(1);
                if m.fails >= RETIRE_AFTER {
                    self.retire(addr);
                }
                return;
            }
            HeaderRead::Ok(h) => h,
        };
        let seq = self.points.seq(at);
        let next_id = self.next_id + 1;
        let Some(m) = self.maps.get_mut(&addr) else {
            return;
        };
        m.fails = 0;
        let storage = storage_tag(h.storage);
        if m.seed().is_some_and(|s| s != h.seed) && h.len != 0 && storage != m.storage {
            // A new seed with entries, and its entries elsewhere: the
            // memory now holds another map. (Go also draws a new seed when
            // a map's last entry is deleted; such a map keeps its storage
            // when refilled, and is sampled empty or refilled as the same
            // map.) Nothing of the old one carries over.
            if !self.on_reused(addr) {
                return;
            }
            self.next_id = next_id;
        }
        let Some(m) = self.maps.get_mut(&addr) else {
            return;
        };
        if m.flags & HAS_SEED == 0 {
            m.first_len = h.len;
        }
        m.storage = storage;
        m.seed = h.seed;
        m.flags |= HAS_SEED;
        push_sample(
            m,
            &self.points,
            seq,
            at,
            &h,
            &mut self.long_histories,
            &mut self.caps,
        );
    }

    /// Drops a map known to be dead (its address was reused by a newer map,
    /// or its memory is gone).
    pub fn retire(&mut self, addr: u64) {
        if self.remove(addr) {
            self.retired += 1;
        }
    }

    /// Every sample kept of `m`, oldest first, with when it was taken
    /// (samples whose moment is forgotten are left out). Only the latest
    /// has its capacity and bytes; the others carry the latest's.
    #[must_use]
    pub fn history(&self, m: &TrackedMap) -> Vec<Sample> {
        let cap = m.win.capacity();
        let slots = m
            .older()
            .into_iter()
            .flat_map(|o| o.iter().copied())
            .chain((0..m.win.len()).filter_map(|i| m.win.get(i)));
        slots
            .filter_map(|s| {
                let at = self.points.get(s.seq)?;
                Some(Sample {
                    cycle: at.cycle,
                    len: s.len,
                    capacity: cap,
                    bytes: m.bytes_last,
                    t_ms: at.t_ms,
                    timer: at.timer,
                })
            })
            .collect()
    }

    /// Type pointers of tracked maps for which `known` says no: what a
    /// sample needs resolved first.
    #[must_use]
    pub fn unknown_types(&self, known: impl Fn(u64) -> bool) -> Vec<u64> {
        let mut seen: HashSet<u64> = HashSet::new();
        self.maps
            .values()
            .map(|m| m.type_ptr)
            .filter(|&t| t != 0 && !known(t) && seen.insert(t))
            .collect()
    }
}

/// The 32 bits of a storage pointer kept per map: heap pointers differ in
/// their low bits.
const fn storage_tag(p: u64) -> u32 {
    (p ^ (p >> 32)) as u32
}

/// Appends one sample to `m` (one per GC cycle: a newer sample of the same
/// cycle replaces the older; timer samples all count).
fn push_sample(
    m: &mut TrackedMap,
    points: &Points,
    seq: u32,
    at: SampleAt,
    h: &HeaderSample,
    long_histories: &mut usize,
    caps: &mut Caps,
) {
    let replace = !at.timer
        && !m.win.is_empty()
        && m.flags & LAST_TIMER == 0
        && u64::from(m.win.cycle()) == at.cycle.min(u64::from(u32::MAX));
    // Forgotten moments first: the window then holds only known samples.
    m.win.expire(points);
    if replace {
        m.win.replace_last(seq, h.len, h.capacity);
    } else {
        let keep_long = m.verdict().is_suspect();
        if let Some(out) = m.win.push(seq, h.len, h.capacity) {
            if keep_long {
                if !m.has_long() {
                    if *long_histories < MAX_LONG_HISTORIES {
                        *long_histories += 1;
                        m.extra().older = Some(VecDeque::new());
                    } else {
                        caps.long_history_refused += 1;
                    }
                }
                if let Some(o) = m.extra.as_mut().and_then(|x| x.older.as_mut()) {
                    if o.len() >= MAX_SAMPLES - WINDOW {
                        o.pop_front();
                    }
                    o.push_back(out);
                }
            } else if m.drop_long() {
                *long_histories -= 1;
            }
        }
    }
    m.bytes_last = h.bytes;
    m.win.set_cycle(u32::try_from(at.cycle).unwrap_or(u32::MAX));
    if at.timer {
        m.flags |= LAST_TIMER;
    } else {
        m.flags &= !LAST_TIMER;
    }
}

#[cfg(test)]
mod tests;
