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
use std::collections::{BinaryHeap, HashSet, VecDeque};

use serde::Serialize;

use crate::sample::{HeaderRead, HeaderSample};

pub mod history;
pub mod sites;
pub mod table;

pub use history::{MAX_LONG_HISTORIES, MAX_SAMPLES, Points, Slot, Window};
pub use sites::{RawSite, SiteRef, Sites};
pub use table::MapTable;

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

/// A verdict on one map.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Length keeps rising across GC cycles.
    Growing,
    /// Capacity far above length.
    Bloated,
    /// Bounded.
    Stable,
    /// Unchanged.
    Idle,
}

impl Verdict {
    /// Lower-case name.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Growing => "growing",
            Self::Bloated => "bloated",
            Self::Stable => "stable",
            Self::Idle => "idle",
        }
    }

    /// Growing or bloated: a map the report details and whose keys, owner
    /// and sites are looked up.
    #[must_use]
    pub const fn is_suspect(self) -> bool {
        matches!(self, Self::Growing | Self::Bloated)
    }
}

/// One observation of a map's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Sample {
    /// GC cycle (for a timer sample: the latest cycle before it).
    pub cycle: u64,
    /// Length.
    pub len: u64,
    /// Slots.
    pub capacity: u64,
    /// Bytes.
    pub bytes: u64,
    /// Milliseconds since the trace started.
    pub t_ms: u32,
    /// Taken on the timer (GC cycles came less often than `--interval`),
    /// not at a GC cycle.
    pub timer: bool,
}

/// The latest sample of a map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Latest {
    /// GC cycle (for a timer sample: the latest cycle before it).
    pub cycle: u64,
    /// Length.
    pub len: u64,
    /// Slots.
    pub capacity: u64,
    /// Bytes.
    pub bytes: u64,
}

/// When a sample was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SampleAt {
    /// GC cycle (for a timer sample: the latest cycle before it).
    pub cycle: u64,
    /// Milliseconds since the trace started.
    pub t_ms: u32,
    /// A timer sample.
    pub timer: bool,
}

impl SampleAt {
    /// A sample at GC cycle `cycle`, at time 0 (tests).
    #[must_use]
    pub const fn gc(cycle: u64) -> Self {
        Self {
            cycle,
            t_ms: 0,
            timer: false,
        }
    }
}

/// What only some maps have, boxed out of [`TrackedMap`].
#[derive(Debug, Clone, Default)]
struct Extra {
    owner: Option<String>,
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

    /// Forgets everything about the map that was at this address: a new
    /// one lives there now.
    fn reset(&mut self, id: u64) {
        let (addr, alive_ns) = (self.addr, self.alive_ns);
        *self = Self::new(id, addr, 0);
        self.alive_ns = alive_ns;
        self.flags |= REUSED;
    }
}

/// Judges a sample history (oldest first).
#[must_use]
pub fn verdict(samples: &[Sample]) -> Verdict {
    let w = &samples[samples.len().saturating_sub(WINDOW)..];
    let Some(last) = w.last() else {
        return Verdict::Idle;
    };
    let mut lens = [0u64; WINDOW];
    for (l, s) in lens.iter_mut().zip(w) {
        *l = s.len;
    }
    let constant = w.iter().all(|s| s.capacity == last.capacity);
    judge(&lens[..w.len()], last.capacity, constant)
}

/// The verdict on the lengths of the window (oldest first, at most
/// [`WINDOW`]), the latest capacity and whether it was the same throughout.
fn judge(w: &[u64], capacity: u64, capacity_constant: bool) -> Verdict {
    let Some(&last) = w.last() else {
        return Verdict::Idle;
    };
    if w.len() >= MIN_SAMPLES_GROWING {
        let first = w[0];
        let max = w.iter().copied().max().unwrap_or(0);
        let ups = w.windows(2).filter(|p| p[1] > p[0]).count();
        let downs = w.windows(2).filter(|p| p[1] < p[0]).count();
        let big_drop = w.windows(2).any(|p| p[1] * 20 < p[0] * 19);
        // Still rising: the cycles it has been level at the end are no more
        // than its longest level run before. A map that grows slower than
        // the GC runs rises only every few cycles and stays level in
        // between; one that stopped stays level longer than it ever did.
        let mut level_at = [false; WINDOW];
        for (slot, p) in level_at.iter_mut().zip(w.windows(2)) {
            *slot = p[1] == p[0];
        }
        let steps = &level_at[..w.len() - 1];
        let tail = steps.iter().rev().take_while(|&&level| level).count();
        let mut prev_max = 0;
        let mut run = 0;
        for &level in &steps[..steps.len() - tail] {
            run = if level { run + 1 } else { 0 };
            prev_max = prev_max.max(run);
        }
        let recent = tail == 0 || tail <= prev_max;
        if last > first
            && ups >= 2
            && downs * 3 <= ups
            && !big_drop
            && last * 20 >= max * 19
            && recent
        {
            return Verdict::Growing;
        }
    }
    if capacity >= 2048 && last * 16 <= capacity {
        return Verdict::Bloated;
    }
    if capacity_constant && w.iter().all(|&l| l == last) {
        Verdict::Idle
    } else {
        Verdict::Stable
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
    /// their history started over, under a new id.
    pub reused: u64,
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
            if m.has_long() {
                self.long_histories -= 1;
            }
            if m.flags & WRITES != 0 {
                self.write_records -= 1;
            }
            m.reset(next_id);
            self.next_id = next_id;
            self.reused += 1;
        }
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
mod tests {
    use super::*;

    fn hist(lens: &[u64], cap: u64) -> Vec<Sample> {
        lens.iter()
            .enumerate()
            .map(|(i, &len)| Sample {
                cycle: i as u64 + 1,
                len,
                capacity: cap.max(len * 2),
                bytes: 0,
                t_ms: 0,
                timer: false,
            })
            .collect()
    }

    fn ok(len: u64, seed: u64) -> HeaderRead {
        at_storage(len, seed, 0x100)
    }

    /// A header of `len` entries, hash seed `seed`, entries at `storage`.
    fn at_storage(len: u64, seed: u64, storage: u64) -> HeaderRead {
        HeaderRead::Ok(HeaderSample {
            len,
            capacity: 64,
            bytes: 0,
            seed,
            storage,
        })
    }

    fn raw(pc: u64) -> Option<RawSite> {
        Some(RawSite { stack_id: 1, pc })
    }

    /// A leak slower than the GC rises every other cycle: still growing.
    /// A bounded map that wanders up and down is not.
    #[test]
    fn slow_leak_and_wandering_map() {
        let slow = hist(&[12, 14, 14, 16, 18, 18, 20, 20], 64);
        assert_eq!(verdict(&slow), Verdict::Growing);
        let wander = hist(&[990, 1000, 995, 1000, 992, 999, 994, 1000], 2048);
        assert_ne!(verdict(&wander), Verdict::Growing);
        let stopped = hist(&[10, 12, 14, 16, 18, 18, 18, 18], 64);
        assert_ne!(verdict(&stopped), Verdict::Growing);
    }

    /// A cache that only grows is growing; a plateau is not.
    #[test]
    fn growing_vs_plateau() {
        assert_eq!(verdict(&hist(&[100, 200, 300, 400], 0)), Verdict::Growing);
        assert_eq!(
            verdict(&hist(&[1000, 1000, 1000, 1000], 2048)),
            Verdict::Idle
        );
        assert_eq!(
            verdict(&hist(&[990, 1000, 995, 1000, 998], 2048)),
            Verdict::Stable
        );
        // Grew, then stopped for two cycles: no longer growing.
        assert_eq!(
            verdict(&hist(&[100, 200, 300, 300, 300], 1024)),
            Verdict::Stable
        );
        // Too few samples.
        assert_eq!(verdict(&hist(&[100, 200], 0)), Verdict::Stable);
        // Saw-tooth (grows, then is cut back): not growing.
        assert_eq!(
            verdict(&hist(&[100, 200, 300, 50, 100, 200], 1024)),
            Verdict::Stable
        );
    }

    /// Emptied after growth: bloated.
    #[test]
    fn bloated() {
        let mut s = hist(&[1_000_000, 10, 10], 0);
        for x in &mut s {
            x.capacity = 2_097_152;
        }
        assert_eq!(verdict(&s), Verdict::Bloated);
    }

    /// The compact window judges as the full samples do: the same lengths
    /// and capacities give the same verdict.
    #[test]
    fn window_verdict_matches_samples() {
        let cases: [&[u64]; 5] = [
            &[12, 14, 14, 16, 18, 18, 20, 20],
            &[1000, 1000, 1000, 1000],
            &[100, 200, 300, 300, 300],
            &[7, 7, 7, 7, 7, 7, 7, 7, 7, 7],
            &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12],
        ];
        for (i, lens) in cases.iter().enumerate() {
            for cap in [64, 4096] {
                let mut m = Model::default();
                m.on_grow(0x10, 1, 0, None);
                for (c, &len) in lens.iter().enumerate() {
                    m.on_sample(
                        0x10,
                        SampleAt::gc(c as u64 + 1),
                        HeaderRead::Ok(HeaderSample {
                            len,
                            capacity: cap.max(len * 2),
                            bytes: 0,
                            seed: 5,
                            storage: 0x100,
                        }),
                    );
                }
                let want = verdict(&hist(lens, cap));
                assert_eq!(m.maps[&0x10].verdict(), want, "case {i}, cap {cap}");
            }
        }
    }

    /// A failed read retires a map at once; an implausible header only
    /// after RETIRE_AFTER in a row (a read caught mid-update is not a
    /// death); a skipped read changes nothing.
    #[test]
    fn retire_after_repeated_implausible_headers() {
        let mut m = Model::default();
        m.on_grow(0x10, 1, 0, None);
        m.on_sample(0x10, SampleAt::gc(1), ok(10, 5));
        for c in 2..(1 + u64::from(RETIRE_AFTER)) {
            m.on_sample(0x10, SampleAt::gc(c), HeaderRead::Implausible);
            m.on_sample(0x10, SampleAt::gc(c), HeaderRead::Skipped);
        }
        assert!(m.maps.contains_key(&0x10), "not yet");
        // A good header in between starts the count over.
        m.on_sample(0x10, SampleAt::gc(10), ok(12, 5));
        for c in 11..(10 + u64::from(RETIRE_AFTER)) {
            m.on_sample(0x10, SampleAt::gc(c), HeaderRead::Implausible);
        }
        assert!(m.maps.contains_key(&0x10));
        assert_eq!(m.maps[&0x10].samples_len(), 2);
        m.on_sample(0x10, SampleAt::gc(20), HeaderRead::Implausible);
        assert!(m.maps.is_empty());
        assert_eq!(m.retired, 1);

        m.on_grow(0x20, 1, 0, None);
        m.on_sample(0x20, SampleAt::gc(21), HeaderRead::Failed);
        assert!(m.maps.is_empty());
        assert_eq!(m.retired, 2);
    }

    /// A new map at a dead map's address (a seed change with entries, in
    /// other storage) starts over with nothing of the old one: no samples,
    /// creation site,
    /// growth site, owner, type, write counts; a new id; and its creation
    /// record is looked up again, the old one's refused.
    #[test]
    fn address_reuse_forgets_the_old_map() {
        let mut m = Model::default();
        assert!(m.on_grow(0x10, 7, 1_000, raw(0x40)));
        assert!(!m.on_grow(0x10, 7, 2_000, raw(0x41)), "looked up once");
        let sites = m.maps[&0x10]
            .grow_sites()
            .map(|r| m.sites.raw(r).map(|r| r.pc));
        assert_eq!(
            sites,
            [Some(0x41), Some(0x40)],
            "the latest, then the one before"
        );
        assert!(m.on_created(
            0x10,
            500,
            7,
            RawSite {
                stack_id: 2,
                pc: 0x50
            }
        ));
        m.maps
            .get_mut(&0x10)
            .unwrap()
            .set_owner("main.cache".into());
        m.on_write(0x10, 7, true, 0x99, 3);
        assert_eq!(m.write_records, 1);
        m.on_sample(0x10, SampleAt::gc(1), ok(10, 5));
        m.on_sample(0x10, SampleAt::gc(2), ok(20, 5));
        let old_id = m.maps[&0x10].id;
        assert_eq!(m.maps[&0x10].samples_len(), 2);

        // Emptied by deletes: Go draws a new seed; the same map.
        m.on_sample(0x10, SampleAt::gc(3), ok(0, 6));
        assert_eq!(m.maps[&0x10].id, old_id);
        assert_eq!(m.maps[&0x10].samples_len(), 3);

        // Emptied and refilled between two samples: another seed with
        // entries, in the same storage; the same map.
        m.on_sample(0x10, SampleAt::gc(4), ok(4, 8));
        assert_eq!(m.maps[&0x10].id, old_id);
        assert_eq!(m.maps[&0x10].samples_len(), 4);

        // Another seed, with entries elsewhere: a new map.
        m.on_sample(0x10, SampleAt::gc(5), at_storage(3, 9, 0x200));
        let t = &m.maps[&0x10];
        assert_ne!(t.id, old_id);
        assert_eq!(t.samples_len(), 1);
        assert_eq!(t.first_len(), Some(3));
        assert_eq!(t.type_ptr, 0);
        assert!(!t.created_site().is_some());
        assert!(!t.grow_site().is_some());
        assert_eq!(t.owner(), None);
        assert_eq!(t.writes(), (0, 0));
        assert!(t.insert_sites().is_empty());
        assert_eq!(t.growth_events(), 0);
        assert!(t.wants_creation());
        assert_eq!(m.reused, 1);
        assert_eq!(m.write_records, 0);

        // Its first growth asks for the creation record again; the old
        // map's record (older than the old map's last growth) is refused.
        assert!(m.on_grow(0x10, 8, 9_000, raw(0x42)));
        assert!(!m.on_created(
            0x10,
            500,
            7,
            RawSite {
                stack_id: 2,
                pc: 0x50
            }
        ));
        assert!(!m.maps[&0x10].created_site().is_some());
        assert!(m.on_created(
            0x10,
            5_000,
            8,
            RawSite {
                stack_id: 3,
                pc: 0x60
            }
        ));
        let t = &m.maps[&0x10];
        assert_eq!(
            m.sites.raw(t.created_site()),
            Some(RawSite {
                stack_id: 3,
                pc: 0x60
            })
        );
        assert_eq!(t.type_ptr, 8);
    }

    /// Without GC cycles, timer samples make the history: all of them count
    /// (one GC cycle keeps only its latest sample), and a map that grows
    /// between them is growing.
    #[test]
    fn timer_samples_judge_quiet_programs() {
        let mut m = Model::default();
        m.on_grow(0x10, 1, 0, None);
        let timer = |t_ms| SampleAt {
            cycle: 7,
            t_ms,
            timer: true,
        };
        m.on_sample(0x10, SampleAt::gc(7), ok(5, 5));
        m.on_sample(0x10, SampleAt::gc(7), ok(6, 5));
        assert_eq!(m.maps[&0x10].samples_len(), 1, "one sample per GC cycle");
        assert_eq!(m.maps[&0x10].last().map(|l| l.len), Some(6));
        for (i, len) in [10, 20, 30].into_iter().enumerate() {
            m.on_sample(0x10, timer(2_000 * (i as u32 + 1)), ok(len, 5));
        }
        let t = &m.maps[&0x10];
        assert_eq!(t.samples_len(), 4);
        let h = m.history(t);
        assert_eq!(h.iter().filter(|x| x.timer).count(), 3);
        assert_eq!(h.last().map(|x| (x.t_ms, x.len)), Some((6_000, 30)));
        assert_eq!(t.verdict(), Verdict::Growing);
    }

    /// A quiet map keeps the window; a growing one the long history, up to
    /// MAX_SAMPLES.
    #[test]
    fn history_is_bounded_by_verdict() {
        let mut m = Model::default();
        m.on_grow(0x10, 1, 0, None);
        m.on_grow(0x20, 1, 0, None);
        for c in 1..=200u64 {
            m.on_sample(0x10, SampleAt::gc(c), ok(7, 5));
            m.on_sample(0x20, SampleAt::gc(c), ok(c * 10, 5));
        }
        let idle = &m.maps[&0x10];
        assert_eq!(idle.samples_len(), QUIET_SAMPLES);
        assert_eq!(idle.first_len(), Some(7));
        assert_eq!(idle.verdict(), Verdict::Idle);
        let growing = &m.maps[&0x20];
        assert_eq!(growing.samples_len(), MAX_SAMPLES);
        let h = m.history(growing);
        assert_eq!(h.len(), MAX_SAMPLES);
        assert_eq!(h.last().map(|s| s.cycle), Some(200));
        assert_eq!(h[0].cycle, 200 - MAX_SAMPLES as u64 + 1);
        assert_eq!(growing.first_len(), Some(10));
        // It stops growing: back to the window, and the long history is
        // given back.
        for c in 201..=220u64 {
            m.on_sample(0x20, SampleAt::gc(c), ok(2000, 5));
        }
        assert_eq!(m.maps[&0x20].samples_len(), WINDOW);
        assert_eq!(m.long_histories, 0);
    }

    /// At most MAX_LONG_HISTORIES maps keep more than the window; the
    /// others are counted.
    #[test]
    fn long_histories_are_capped() {
        let mut m = Model::default();
        let n = MAX_LONG_HISTORIES as u64 + 5;
        for a in 1..=n {
            m.on_grow(a * 16, 1, 0, None);
        }
        for c in 1..=12u64 {
            for a in 1..=n {
                m.on_sample(a * 16, SampleAt::gc(c), ok(c * 10, 5));
            }
        }
        assert_eq!(m.long_histories, MAX_LONG_HISTORIES);
        let long = m.maps.values().filter(|t| t.samples_len() > WINDOW).count();
        assert_eq!(long, MAX_LONG_HISTORIES);
        assert!(m.caps.long_history_refused >= 5);
    }

    /// At the cap the smallest non-growing maps go first, a hundredth of
    /// the cap at a time.
    #[test]
    fn eviction_spares_growing_maps() {
        let mut m = Model::with_max_tracked(200);
        for a in 1..=200u64 {
            m.on_grow(a * 16, 1, 0, None);
        }
        for c in 1..=4u64 {
            for a in 1..=200u64 {
                // Map 1 grows; the others are idle, map 2 the smallest.
                let len = if a == 1 { c * 100 } else { a };
                m.on_sample(a * 16, SampleAt::gc(c), ok(len, 5));
            }
        }
        m.on_grow(0x10_0000, 1, 0, None);
        assert_eq!(m.evicted, 2);
        assert_eq!(m.maps.len(), 199);
        assert!(m.maps.contains_key(&16), "the growing map stays");
        assert!(!m.maps.contains_key(&32) && !m.maps.contains_key(&48));
        assert!(m.maps.contains_key(&0x10_0000));
    }

    /// Writes are recorded for at most MAX_WRITE_RECORDS maps; past it,
    /// writes to other maps are counted as dropped, and a map that goes
    /// gives its record back.
    #[test]
    fn write_records_are_capped() {
        let mut m = Model::default();
        let n = MAX_WRITE_RECORDS as u64 + 1;
        for a in 1..=n {
            m.on_grow(a * 16, 0, 0, None);
            m.on_write(a * 16, 5, true, 0x40, 2);
        }
        assert_eq!(m.write_records, MAX_WRITE_RECORDS);
        assert_eq!(m.caps.writes_dropped, 2);
        assert_eq!(m.maps[&16].writes(), (2, 0));
        assert_eq!(m.maps[&16].insert_sites(), [(0x40, 2)]);
        assert_eq!(m.maps[&(n * 16)].writes(), (0, 0));
        assert_eq!(m.maps[&(n * 16)].type_ptr, 5);
        m.on_write(16, 5, false, 0, 1);
        assert_eq!(m.maps[&16].writes(), (2, 1));
        m.retire(16);
        m.on_write(n * 16, 5, true, 0x40, 1);
        assert_eq!(m.maps[&(n * 16)].writes(), (1, 0));
        assert_eq!(m.write_records, MAX_WRITE_RECORDS);
    }

    /// Cycle numbers come from the runtime when known, else are counted.
    #[test]
    fn cycles() {
        let mut m = Model::default();
        assert_eq!(m.on_gc_marked(None, 0.0, None), 1);
        assert_eq!(m.on_gc_marked(None, 0.05, None), 2);
        assert_eq!(m.on_gc_marked(Some(41), 0.1, None), 41);
        // A cycle whose number could not be read follows the last one.
        assert_eq!(m.on_gc_marked(None, 0.2, None), 42);
        assert_eq!(m.cycles.len(), 4);
    }

    /// What a tracked map costs: its slab entry (the 1,000,000-map goal
    /// of 300 MiB rests on it) and, in a model of 100,000 quiet maps read
    /// 20 times, the table's heap per map.
    #[test]
    fn per_map_memory() {
        assert!(
            std::mem::size_of::<TrackedMap>() <= 160,
            "{}",
            std::mem::size_of::<TrackedMap>()
        );
        let mut m = Model::default();
        let n = 100_000u64;
        for a in 1..=n {
            m.on_grow(a * 64, 1, 0, raw(0x40));
        }
        for c in 1..=20u64 {
            for a in 1..=n {
                m.on_sample(a * 64, SampleAt::gc(c), ok(150, a));
            }
        }
        let per_map = m.maps.heap_bytes() as u64 / n;
        assert!(per_map <= 230, "{per_map} bytes per map");
        assert_eq!(m.long_histories, 0);
        assert_eq!(m.sites.len(), 1);
    }
}
