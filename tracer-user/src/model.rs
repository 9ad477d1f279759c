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
use std::collections::{HashMap, VecDeque};

use serde::Serialize;

use crate::{inspect::Frame, sample::HeaderSample};

/// How many per-cycle samples are kept per map (the first one is kept too).
pub const MAX_SAMPLES: usize = 128;
/// Samples kept for a map that is neither growing nor bloated: what a
/// verdict looks at. With 100,000 tracked maps the history is a large part
/// of the tracer's memory (8 samples of 40 bytes: 32 MB).
pub const QUIET_SAMPLES: usize = WINDOW;
/// Samples a verdict looks at.
pub const WINDOW: usize = 8;
/// Fewest samples before a map can be called growing.
pub const MIN_SAMPLES_GROWING: usize = 3;
/// Most maps tracked per process; beyond it the least interesting are dropped.
pub const MAX_TRACKED: usize = 100_000;

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

/// Everything known about one map.
#[derive(Debug, Clone)]
pub struct TrackedMap {
    /// Stable id within this run.
    pub id: u64,
    /// Header address (run-time).
    pub addr: u64,
    /// Type descriptor (run-time address), 0 if unknown.
    pub type_ptr: u64,
    /// Where it was created, innermost user frame first ([] if not seen).
    pub created_at: Vec<Frame>,
    /// Creation time (ns, kernel clock), if seen.
    pub created_ns: Option<u64>,
    /// First time this map was seen (ns).
    pub first_seen_ns: u64,
    /// Growth events seen.
    pub growth_events: u64,
    /// Where the latest growth was triggered (the inserting code).
    pub grow_site: Vec<Frame>,
    /// Samples, oldest first (bounded; the first is always kept).
    pub samples: VecDeque<Sample>,
    /// The very first sample.
    pub first: Option<Sample>,
    /// Hash seed at the last sample.
    pub seed: Option<u64>,
    /// Global variable holding it, if known.
    pub owner: Option<String>,
    /// Go type name from DWARF, when the type descriptor is not known yet.
    pub type_name: Option<String>,
    /// Inserts or updates seen in write windows.
    pub assigns: u64,
    /// Deletes seen in write windows.
    pub deletes: u64,
    /// Insert sites seen in write windows: (return address, count), at most
    /// [`MAX_INSERT_SITES`], the busiest kept.
    pub insert_sites: Vec<(u64, u64)>,
}

/// Insert sites kept per map.
pub const MAX_INSERT_SITES: usize = 16;

impl TrackedMap {
    /// Adds write-window counts: an insert (or update) at `pc`, or a delete.
    pub fn on_write(&mut self, assign: bool, pc: u64, count: u64) {
        if !assign {
            self.deletes += count;
            return;
        }
        self.assigns += count;
        if let Some(e) = self.insert_sites.iter_mut().find(|e| e.0 == pc) {
            e.1 += count;
        } else {
            self.insert_sites.push((pc, count));
        }
        self.insert_sites
            .sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        self.insert_sites.truncate(MAX_INSERT_SITES);
    }
}

impl TrackedMap {
    /// The latest sample.
    #[must_use]
    pub fn last(&self) -> Option<&Sample> {
        self.samples.back()
    }

    /// The verdict over the recent samples.
    #[must_use]
    pub fn verdict(&self) -> Verdict {
        // The verdict only looks at the last WINDOW samples: copy them to
        // the stack instead of allocating (this runs for every map, often).
        let mut w = [Sample {
            cycle: 0,
            len: 0,
            capacity: 0,
            bytes: 0,
            t_ms: 0,
            timer: false,
        }; WINDOW];
        let skip = self.samples.len().saturating_sub(WINDOW);
        let mut n = 0;
        for (slot, s) in w.iter_mut().zip(self.samples.iter().skip(skip)) {
            *slot = *s;
            n += 1;
        }
        verdict(&w[..n])
    }
}

/// Judges a sample history (oldest first).
#[must_use]
pub fn verdict(samples: &[Sample]) -> Verdict {
    let Some(last) = samples.last() else {
        return Verdict::Idle;
    };
    let w = &samples[samples.len().saturating_sub(WINDOW)..];
    if w.len() >= MIN_SAMPLES_GROWING {
        let first = w[0];
        let max = w.iter().map(|s| s.len).max().unwrap_or(0);
        let ups = w.windows(2).filter(|p| p[1].len > p[0].len).count();
        let downs = w.windows(2).filter(|p| p[1].len < p[0].len).count();
        let big_drop = w.windows(2).any(|p| p[1].len * 20 < p[0].len * 19);
        // Still rising: the cycles it has been level at the end are no more
        // than its longest level run before. A map that grows slower than
        // the GC runs rises only every few cycles and stays level in
        // between; one that stopped stays level longer than it ever did.
        let mut level_at = [false; WINDOW];
        for (slot, p) in level_at.iter_mut().zip(w.windows(2)) {
            *slot = p[1].len == p[0].len;
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
        if last.len > first.len
            && ups >= 2
            && downs * 3 <= ups
            && !big_drop
            && last.len * 20 >= max * 19
            && recent
        {
            return Verdict::Growing;
        }
    }
    if last.capacity >= 2048 && last.len * 16 <= last.capacity {
        return Verdict::Bloated;
    }
    if w.iter()
        .all(|s| s.len == last.len && s.capacity == last.capacity)
    {
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

/// Per-process model state.
#[derive(Debug, Default)]
pub struct Model {
    /// Tracked maps by header address.
    pub maps: HashMap<u64, TrackedMap>,
    /// GC cycles seen (bounded).
    pub cycles: VecDeque<GcCycle>,
    /// Maps dropped because they died (memory reused by another map).
    pub retired: u64,
    /// Maps dropped because the tracked set was full.
    pub evicted: u64,
    next_id: u64,
    counted_cycles: u64,
}

/// Most GC cycles kept.
pub const MAX_CYCLES: usize = 4096;

impl Model {
    /// Records a growth of the map at `addr`; starts tracking it if new.
    /// Returns true when the map was not tracked before.
    pub fn on_grow(&mut self, addr: u64, type_ptr: u64, ts_ns: u64, site: Vec<Frame>) -> bool {
        if let Some(m) = self.maps.get_mut(&addr) {
            m.growth_events += 1;
            if type_ptr != 0 {
                m.type_ptr = type_ptr;
            }
            if !site.is_empty() {
                m.grow_site = site;
            }
            return false;
        }
        if self.maps.len() >= MAX_TRACKED {
            self.evict_one();
        }
        self.next_id += 1;
        self.maps.insert(
            addr,
            TrackedMap {
                id: self.next_id,
                addr,
                type_ptr,
                created_at: Vec::new(),
                created_ns: None,
                first_seen_ns: ts_ns,
                growth_events: 1,
                grow_site: site,
                samples: VecDeque::new(),
                first: None,
                seed: None,
                owner: None,
                type_name: None,
                assigns: 0,
                deletes: 0,
                insert_sites: Vec::new(),
            },
        );
        true
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
        if self.on_grow(addr, 0, ts_ns, Vec::new()) {
            if let Some(m) = self.maps.get_mut(&addr) {
                m.growth_events = 0;
                m.owner = owner;
                m.type_name = type_name;
            }
            true
        } else {
            false
        }
    }

    fn evict_one(&mut self) {
        // Drop the smallest non-growing map.
        let victim = self
            .maps
            .values()
            .filter(|m| m.verdict() != Verdict::Growing)
            .min_by_key(|m| (m.last().map_or(0, |s| s.len), m.id))
            .or_else(|| self.maps.values().min_by_key(|m| m.id))
            .map(|m| m.addr);
        if let Some(a) = victim {
            self.maps.remove(&a);
            self.evicted += 1;
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
        }
        self.cycles.push_back(GcCycle {
            cycle,
            t_s,
            heap_marked_bytes: heap,
        });
        cycle
    }

    /// Records a header read at `at`; `None` means the read failed or the
    /// header was not a live map, and the map is dropped.
    pub fn on_sample(&mut self, addr: u64, at: SampleAt, h: Option<HeaderSample>) {
        let Some(m) = self.maps.get_mut(&addr) else {
            return;
        };
        let Some(h) = h else {
            self.maps.remove(&addr);
            self.retired += 1;
            return;
        };
        if let Some(seed) = m.seed
            && seed != h.seed
            && h.len != 0
        {
            // A new seed with entries: the memory now holds another map
            // (or this one was emptied and refilled). Start over.
            m.samples.clear();
            m.first = None;
        }
        m.seed = Some(h.seed);
        let s = Sample {
            cycle: at.cycle,
            len: h.len,
            capacity: h.capacity,
            bytes: h.bytes,
            t_ms: at.t_ms,
            timer: at.timer,
        };
        // One sample per GC cycle (the latest); timer samples all count.
        if !at.timer
            && m.samples
                .back()
                .is_some_and(|p| p.cycle == at.cycle && !p.timer)
        {
            m.samples.pop_back();
        }
        // Room is made before the push: a VecDeque doubles its capacity
        // when full, and 100,000 maps of 32 slots instead of 16 would be
        // 64 MB more.
        let keep = if matches!(m.verdict(), Verdict::Growing | Verdict::Bloated) {
            MAX_SAMPLES
        } else {
            QUIET_SAMPLES
        };
        if m.samples.len() >= keep {
            m.samples.drain(..=m.samples.len() - keep);
            if m.samples.capacity() > 2 * keep {
                m.samples.shrink_to(keep);
            }
        }
        m.samples.push_back(s);
        if m.first.is_none() {
            m.first = Some(s);
        }
    }

    /// Drops a map known to be dead (its address was reused by a newer map).
    pub fn retire(&mut self, addr: u64) {
        if self.maps.remove(&addr).is_some() {
            self.retired += 1;
        }
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

    /// A seed change resets the history; a failed read retires the map.
    #[test]
    fn seed_change_and_death() {
        let mut m = Model::default();
        assert!(m.on_grow(0x10, 1, 0, vec![]));
        assert!(!m.on_grow(0x10, 1, 0, vec![]));
        let h = |len, seed| {
            Some(HeaderSample {
                len,
                capacity: 64,
                bytes: 0,
                seed,
            })
        };
        m.on_sample(0x10, SampleAt::gc(1), h(10, 5));
        m.on_sample(0x10, SampleAt::gc(2), h(20, 5));
        assert_eq!(m.maps[&0x10].samples.len(), 2);
        m.on_sample(0x10, SampleAt::gc(3), h(3, 9));
        assert_eq!(m.maps[&0x10].samples.len(), 1);
        m.on_sample(0x10, SampleAt::gc(4), None);
        assert!(m.maps.is_empty());
        assert_eq!(m.retired, 1);
    }

    /// Without GC cycles, timer samples make the history: all of them count
    /// (one GC cycle keeps only its latest sample), and a map that grows
    /// between them is growing.
    #[test]
    fn timer_samples_judge_quiet_programs() {
        let mut m = Model::default();
        m.on_grow(0x10, 1, 0, vec![]);
        let h = |len| {
            Some(HeaderSample {
                len,
                capacity: 64,
                bytes: 0,
                seed: 5,
            })
        };
        let timer = |t_ms| SampleAt {
            cycle: 7,
            t_ms,
            timer: true,
        };
        m.on_sample(0x10, SampleAt::gc(7), h(5));
        m.on_sample(0x10, SampleAt::gc(7), h(6));
        assert_eq!(m.maps[&0x10].samples.len(), 1, "one sample per GC cycle");
        for (i, len) in [10, 20, 30].into_iter().enumerate() {
            m.on_sample(0x10, timer(2_000 * (i as u32 + 1)), h(len));
        }
        let t = &m.maps[&0x10];
        assert_eq!(t.samples.len(), 4);
        assert_eq!(t.samples.iter().filter(|x| x.timer).count(), 3);
        assert_eq!(t.verdict(), Verdict::Growing);
    }

    /// A quiet map keeps a short history, in a buffer that does not grow
    /// past it; a growing one keeps the long one.
    #[test]
    fn history_is_bounded_by_verdict() {
        let mut m = Model::default();
        let h = |len| {
            Some(HeaderSample {
                len,
                capacity: 64,
                bytes: 0,
                seed: 5,
            })
        };
        m.on_grow(0x10, 1, 0, vec![]);
        m.on_grow(0x20, 1, 0, vec![]);
        for c in 1..=200u64 {
            m.on_sample(0x10, SampleAt::gc(c), h(7));
            m.on_sample(0x20, SampleAt::gc(c), h(c * 10));
        }
        let idle = &m.maps[&0x10];
        assert_eq!(idle.samples.len(), QUIET_SAMPLES);
        assert!(
            idle.samples.capacity() <= 2 * QUIET_SAMPLES,
            "{}",
            idle.samples.capacity()
        );
        assert_eq!(idle.first.map(|f| f.cycle), Some(1));
        let growing = &m.maps[&0x20];
        assert_eq!(growing.samples.len(), MAX_SAMPLES);
        assert_eq!(growing.samples.back().map(|s| s.cycle), Some(200));
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
}
