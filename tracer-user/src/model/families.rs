//! `model::families`: maps grouped by type and site, judged as one.
//!
//! A service may hold 100,000 small per-tenant maps made at one function;
//! each grows too slowly to be called growing (or is too small to be
//! detailed), while together they hold most of the heap and gain thousands
//! of entries a cycle. A family is the maps of one type made at one site
//! (the creation site; when creation was not seen, the latest growth site;
//! else the busiest insert site seen in a write window; maps with no site
//! known, such as globals found in DWARF, are in no family). Its total entries
//! at every sampled GC cycle are judged with the same rules as one map's
//! length ([`super::verdict`]).
//!
//! Memory: nothing per map. At each sampled GC cycle the maps are summed
//! per family in one pass (a scratch table reused from cycle to cycle),
//! and each followed family keeps its last [`WINDOW`] totals (what a
//! verdict looks at) and a downsampled series of at most
//! [`MAX_SERIES_POINTS`] points. At most [`MAX_FAMILIES`] families are
//! followed (the largest first); the others are counted
//! ([`Families::not_followed`]). A family is followed from the first
//! sample at which it has two maps: a single map is judged as itself. The
//! pass costs about 30 ms for 1,000,000 maps of 3,000 families (release
//! build, every map of another family than the one before it), counted in
//! the sample's pacing.
//!
//! Membership is what the model knows at each sample: a map that dies
//! leaves its family's total (a family of short-lived maps is bounded, not
//! growing), and a map whose growth site changes (only when its creation
//! was not seen) moves to that site's family.
use std::collections::{HashMap, VecDeque};

use serde::Serialize;

use super::{MapTable, SiteRef, Sites, TrackedMap, Verdict, WINDOW, verdict::judge};

/// Most families followed. Each costs under a kilobyte (its window and
/// series): 4,096 are 4 MiB at most. Real services have a few hundred
/// (map types times the sites that make them).
pub const MAX_FAMILIES: usize = 4096;

/// Most points in a family's `entries_by_cycle`: older points are thinned
/// (every other one dropped) when it is full, so the series always spans
/// the whole trace, its first and latest samples included.
pub const MAX_SERIES_POINTS: usize = 32;

/// Which kind of site names a family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SiteKind {
    /// Where the maps were made (`makemap`'s caller).
    Created,
    /// Where their latest growth was triggered: their creation was not seen
    /// (before the tracer attached, or while the creation probes were
    /// paused).
    Grown,
    /// The busiest insert site seen in a write window: neither creation nor
    /// growth was seen.
    Inserted,
}

impl SiteKind {
    /// Lower-case name.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Grown => "grown",
            Self::Inserted => "inserted",
        }
    }
}

/// The site a family is named after.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FamilySite {
    /// A creation site.
    Created(SiteRef),
    /// A growth site.
    Grown(SiteRef),
    /// An insert site: a return address in the target (run-time).
    Inserted(u64),
}

impl FamilySite {
    /// Its kind.
    #[must_use]
    pub const fn kind(self) -> SiteKind {
        match self {
            Self::Created(_) => SiteKind::Created,
            Self::Grown(_) => SiteKind::Grown,
            Self::Inserted(_) => SiteKind::Inserted,
        }
    }
}

/// What makes maps one family: their type descriptor (0: unknown) and site.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FamilyKey {
    /// Map type descriptor (run-time address), 0 if unknown.
    pub type_ptr: u64,
    /// The site.
    pub site: FamilySite,
}

impl FamilyKey {
    /// The family of `m`: its creation site, else its latest growth site,
    /// else its busiest insert site; none when no site is known. A site is
    /// its call ([`Sites::call_site`]): maps made at one line are one
    /// family whatever the stacks above it, and whether or not the kernel
    /// walked their stack.
    #[must_use]
    pub fn of(m: &TrackedMap, sites: &Sites) -> Option<Self> {
        let site = if m.created_site().is_some() {
            FamilySite::Created(sites.call_site(m.created_site()))
        } else if m.grow_site().is_some() {
            FamilySite::Grown(sites.call_site(m.grow_site()))
        } else {
            FamilySite::Inserted(m.insert_sites().first()?.0)
        };
        Some(Self {
            type_ptr: m.type_ptr,
            site,
        })
    }
}

/// A family's sums at one sample.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Maps.
    pub maps: u64,
    /// Their entries.
    pub entries: u64,
    /// Their slots.
    pub capacity: u64,
    /// Their bytes.
    pub bytes: u64,
}

impl Totals {
    /// One map's latest sample.
    #[must_use]
    pub const fn one(len: u64, capacity: u64, bytes: u64) -> Self {
        Self {
            maps: 1,
            entries: len,
            capacity,
            bytes,
        }
    }

    fn add(&mut self, o: Self) {
        self.maps += o.maps;
        self.entries += o.entries;
        self.capacity += o.capacity;
        self.bytes += o.bytes;
    }
}

/// A bounded series of `(cycle, value)` points: every sample until it holds
/// [`MAX_SERIES_POINTS`], then every other one, every fourth…, always with
/// the first and the latest.
#[derive(Debug, Clone, Default)]
pub struct Series {
    /// `(sample index, cycle, value)`, oldest first. The last is the
    /// latest sample even when its index is not on the stride.
    points: Vec<(u64, u64, u64)>,
    /// Samples between kept points.
    stride: u64,
    /// Samples pushed.
    n: u64,
}

impl Series {
    /// Adds the value at `cycle`; a value at the latest point's cycle
    /// replaces it.
    pub fn push(&mut self, cycle: u64, value: u64) {
        if let Some(last) = self.points.last_mut()
            && last.1 == cycle
        {
            last.2 = value;
            return;
        }
        let stride = self.stride.max(1);
        // The latest point stays only while it is on the stride.
        if self.points.last().is_some_and(|p| p.0 % stride != 0) {
            self.points.pop();
        }
        self.points.push((self.n, cycle, value));
        self.n += 1;
        if self.points.len() > MAX_SERIES_POINTS {
            let stride = stride * 2;
            let last = self.points.len() - 1;
            let mut i = 0;
            self.points.retain(|p| {
                i += 1;
                p.0 % stride == 0 || i - 1 == last
            });
            self.stride = stride;
        }
    }

    /// `(cycle, value)` pairs, oldest first.
    pub fn points(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.points.iter().map(|p| (p.1, p.2))
    }
}

/// One family followed over the sampled cycles.
#[derive(Debug, Clone, Default)]
pub struct Family {
    /// Sums at the latest sample.
    pub latest: Totals,
    /// `(cycle, entries, capacity)` of the last [`WINDOW`] samples.
    recent: VecDeque<(u64, u64, u64)>,
    /// Total entries per sampled cycle, downsampled.
    pub entries_by_cycle: Series,
}

impl Family {
    fn push(&mut self, cycle: u64, t: Totals) {
        self.latest = t;
        self.entries_by_cycle.push(cycle, t.entries);
        if let Some(last) = self.recent.back_mut()
            && last.0 == cycle
        {
            *last = (cycle, t.entries, t.capacity);
            return;
        }
        if self.recent.len() == WINDOW {
            self.recent.pop_front();
        }
        self.recent.push_back((cycle, t.entries, t.capacity));
    }

    /// The verdict on its total entries over the last [`WINDOW`] samples,
    /// by the rules for one map's length; bloated when its maps together
    /// have 16 times more slots than entries (each map may be too small
    /// to be called bloated alone).
    ///
    /// While the window still holds the family's first sample, the step
    /// from it is the largest rise and the total fell somewhere after it,
    /// that sample is left out: a family's total first jumps as the tracer
    /// attaches (its maps are found, or a sample reads them while they are
    /// being filled), one rise that would make a bounded family that goes
    /// up and down look like it grows.
    #[must_use]
    pub fn verdict(&self) -> Verdict {
        let mut lens = [0u64; WINDOW];
        for (l, r) in lens.iter_mut().zip(&self.recent) {
            *l = r.1;
        }
        let mut lens = &lens[..self.recent.len()];
        let fell = lens.windows(2).any(|p| p[1] < p[0]);
        if self.entries_by_cycle.n <= WINDOW as u64 && fell && first_step_is_largest_rise(lens) {
            lens = &lens[1..];
        }
        let capacity = self.latest.capacity;
        let constant = self.recent.iter().all(|r| r.2 == capacity);
        judge(lens, capacity, constant)
    }

    /// Entries gained per GC cycle over the samples its verdict looks at
    /// (the last [`WINDOW`]): the median over those cycles of the pace of
    /// the samples around each, its pace now. Samples are not taken at
    /// every cycle (the tracer paces them), so a pace between samples 4
    /// cycles apart stands for 4 cycles. Not the mean: when the tracer
    /// attaches, a family's total first rises as its maps are found (a
    /// grown map is tracked at its next growth), one jump that would swamp
    /// the mean; and a sample that reads the maps while the target fills
    /// them sees part of the next step early.
    #[must_use]
    pub fn entries_per_cycle(&self) -> f64 {
        let mut paces = [(0f64, 0u64); WINDOW];
        let mut n = 0;
        for (pace, (a, b)) in paces
            .iter_mut()
            .zip(self.recent.iter().zip(self.recent.iter().skip(1)))
        {
            let span = b.0.saturating_sub(a.0).max(1);
            *pace = ((b.1 as f64 - a.1 as f64) / span as f64, span);
            n += 1;
        }
        weighted_median(&mut paces[..n])
    }
}

/// Whether the rise from `w`'s first value to its second is the largest
/// rise between neighbours (ties included).
fn first_step_is_largest_rise(w: &[u64]) -> bool {
    let rise = |p: &[u64]| p[1].saturating_sub(p[0]);
    match w {
        [a, b, ..] if b > a => w.windows(2).all(|p| rise(p) <= b - a),
        _ => false,
    }
}

/// The median of `(value, weight)` pairs: the value in the middle when
/// each counts `weight` times; the midpoint of two values when the middle
/// falls between them. 0 when there are none.
fn weighted_median(v: &mut [(f64, u64)]) -> f64 {
    v.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
    let total: u64 = v.iter().map(|p| p.1).sum();
    let mut below = 0u64;
    for (i, &(value, weight)) in v.iter().enumerate() {
        below += weight;
        if below * 2 > total {
            return value;
        }
        if below * 2 == total {
            return v
                .get(i + 1)
                .map_or(value, |next| f64::midpoint(value, next.0));
        }
    }
    0.0
}

/// The families followed in one process.
#[derive(Debug, Default)]
pub struct Families {
    followed: HashMap<FamilyKey, Family>,
    /// Families of two maps or more at the latest sample that were not
    /// followed because [`MAX_FAMILIES`] were.
    pub not_followed: u64,
    /// Reused from sample to sample: the sums of the one in progress.
    scratch: HashMap<FamilyKey, Totals>,
}

impl Families {
    /// Sums the maps' latest samples (`(family, its sample)`) per family at
    /// GC cycle `cycle` (for a timer sample: the latest cycle before it),
    /// and adds the sums to the families followed: a newer sum of the same
    /// cycle replaces the older. Families with no map left are dropped
    /// (their maps died).
    pub fn observe(&mut self, cycle: u64, maps: impl IntoIterator<Item = (FamilyKey, Totals)>) {
        self.scratch.clear();
        // Maps made one after the other sit side by side in the model's
        // slab and are mostly of one family: a run of them is summed before
        // one lookup, not one lookup each (1,000,000 maps a sample).
        let mut run: Option<(FamilyKey, Totals)> = None;
        for (k, t) in maps {
            match &mut run {
                Some((rk, acc)) if *rk == k => acc.add(t),
                _ => {
                    if let Some((rk, acc)) = run.replace((k, t)) {
                        self.scratch.entry(rk).or_default().add(acc);
                    }
                }
            }
        }
        if let Some((rk, acc)) = run {
            self.scratch.entry(rk).or_default().add(acc);
        }
        self.followed.retain(|k, _| self.scratch.contains_key(k));
        let mut new: Vec<(FamilyKey, Totals)> = Vec::new();
        for (k, t) in &self.scratch {
            match self.followed.get_mut(k) {
                Some(f) => f.push(cycle, *t),
                None if t.maps >= 2 => new.push((*k, *t)),
                None => {}
            }
        }
        // The largest first, while there is room.
        new.sort_unstable_by(|a, b| b.1.bytes.cmp(&a.1.bytes).then(a.0.cmp(&b.0)));
        let room = MAX_FAMILIES.saturating_sub(self.followed.len());
        self.not_followed = new.len().saturating_sub(room) as u64;
        for (k, t) in new.into_iter().take(room) {
            let mut f = Family::default();
            f.push(cycle, t);
            self.followed.insert(k, f);
        }
    }

    /// [`Families::observe`] of every tracked map's latest sample.
    pub fn observe_maps(&mut self, cycle: u64, maps: &MapTable, sites: &Sites) {
        let latest = maps.values().filter_map(|m| {
            if m.is_sync_generation() {
                return None;
            }
            let l = m.last()?;
            Some((
                FamilyKey::of(m, sites)?,
                Totals::one(l.len, l.capacity, l.bytes),
            ))
        });
        self.observe(cycle, latest);
    }

    /// Families of two maps or more that grow.
    #[must_use]
    pub fn growing(&self) -> usize {
        self.followed
            .values()
            .filter(|f| f.latest.maps >= 2 && f.verdict() == Verdict::Growing)
            .count()
    }

    /// The families followed.
    pub fn iter(&self) -> impl Iterator<Item = (&FamilyKey, &Family)> {
        self.followed.iter()
    }

    /// Families followed.
    #[must_use]
    pub fn len(&self) -> usize {
        self.followed.len()
    }

    /// None followed.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.followed.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(type_ptr: u64, site: u64) -> FamilyKey {
        FamilyKey {
            type_ptr,
            site: FamilySite::Inserted(site),
        }
    }

    /// `n` maps of `len` entries each, in family `k`.
    fn maps(k: FamilyKey, n: u64, len: u64) -> impl Iterator<Item = (FamilyKey, Totals)> {
        (0..n).map(move |_| (k, Totals::one(len, 128, 1024)))
    }

    /// 20,000 maps at one site, each gaining an entry now and then (one map
    /// in ten a cycle: no map rises twice in a window), are one growing
    /// family; 5,000 maps of the same type at another site, whose total
    /// goes up and down, are not growing; a single map is no family.
    #[test]
    fn many_slow_maps_are_one_growing_family() {
        let tenants = key(0x10, 1);
        let fixed = key(0x10, 2);
        let single = key(0x10, 3);
        let mut fam = Families::default();
        let mut lens = vec![60u64; 20_000];
        for cycle in 1..=12u64 {
            for (i, l) in lens.iter_mut().enumerate() {
                if i as u64 % 10 == cycle % 10 {
                    *l += 1;
                }
            }
            let bounded = if cycle % 2 == 0 { 61 } else { 60 };
            let all = lens
                .iter()
                .map(|&l| (tenants, Totals::one(l, 128, 1024)))
                .chain(maps(fixed, 5_000, bounded))
                .chain(maps(single, 1, cycle * 100));
            fam.observe(cycle, all);
        }
        assert_eq!(fam.len(), 2, "a single map is no family");
        assert_eq!(fam.growing(), 1);
        let t = &fam.followed[&tenants];
        assert_eq!(t.latest.maps, 20_000);
        assert_eq!(t.latest.entries, lens.iter().sum::<u64>());
        assert_eq!(t.verdict(), Verdict::Growing);
        assert!((t.entries_per_cycle() - 2_000.0).abs() < 1.0);
        assert_eq!(
            t.entries_by_cycle.points().last(),
            Some((12, t.latest.entries))
        );
        let f = &fam.followed[&fixed];
        assert_eq!(f.latest.maps, 5_000);
        assert_ne!(f.verdict(), Verdict::Growing);
        assert_eq!(f.verdict(), Verdict::Stable);
    }

    /// A family whose maps all died is dropped; one that keeps the same
    /// total is idle; many slots and few entries over all its maps is
    /// bloated.
    #[test]
    fn dead_idle_and_bloated_families() {
        let a = key(1, 1);
        let b = key(1, 2);
        let mut fam = Families::default();
        for cycle in 1..=4 {
            fam.observe(
                cycle,
                maps(a, 3, 5).chain((0..200).map(|_| (b, Totals::one(4, 128, 1024)))),
            );
        }
        assert_eq!(fam.followed[&a].verdict(), Verdict::Idle);
        // 200 maps of 128 slots with 4 entries each: 25,600 slots, 800 entries.
        assert_eq!(fam.followed[&b].verdict(), Verdict::Bloated);
        fam.observe(5, maps(a, 3, 5));
        assert_eq!(fam.len(), 1);
        assert!(fam.followed.contains_key(&a));
    }

    /// A second sample of the same cycle (a timer sample) replaces the
    /// first: one total per cycle, in the series and in the verdict.
    #[test]
    fn one_total_per_cycle() {
        let k = key(1, 1);
        let mut fam = Families::default();
        for (cycle, len) in [(1, 10), (2, 20), (2, 25), (2, 30), (3, 40)] {
            fam.observe(cycle, maps(k, 2, len));
        }
        let f = &fam.followed[&k];
        let pts: Vec<_> = f.entries_by_cycle.points().collect();
        assert_eq!(pts, [(1, 20), (2, 60), (3, 80)]);
        assert_eq!(f.recent.len(), 3);
        assert_eq!(f.verdict(), Verdict::Growing);
    }

    /// Maps of several families in any order are summed per family.
    #[test]
    fn interleaved_maps_sum_per_family() {
        let (a, b) = (key(1, 1), key(2, 1));
        let mut fam = Families::default();
        let order = [a, a, b, a, b, b, a];
        fam.observe(1, order.iter().map(|&k| (k, Totals::one(10, 16, 100))));
        assert_eq!(fam.followed[&a].latest.maps, 4);
        assert_eq!(fam.followed[&a].latest.entries, 40);
        assert_eq!(fam.followed[&b].latest.maps, 3);
        assert_eq!(fam.followed[&b].latest.bytes, 300);
    }

    /// The pace is that of the last samples, whatever the jump when the
    /// family's maps were found.
    #[test]
    fn pace_ignores_the_jump_at_attach() {
        let k = key(1, 1);
        let mut fam = Families::default();
        // Found over three cycles, then 1,000 entries a cycle.
        let found = [2, 1_000, 20_000, 20_000, 20_000, 20_000, 20_000, 20_000];
        for (cycle, maps) in (1u64..).zip(found) {
            let entries = maps * 60 + cycle.saturating_sub(3) * 1_000;
            let t = Totals {
                maps,
                entries,
                capacity: maps * 128,
                bytes: maps * 1024,
            };
            fam.observe(cycle, [(k, t)]);
        }
        let f = &fam.followed[&k];
        assert_eq!(f.verdict(), Verdict::Growing);
        assert!(
            (f.entries_per_cycle() - 1_000.0).abs() < 1.0,
            "{}",
            f.entries_per_cycle()
        );
    }

    /// Samples of the arm64 VM, where a sample of 25,000 maps spans steps
    /// and the tracer samples every few cycles (CI of 45170d7): the pace
    /// counts each cycle once, so neither the jump while the maps were
    /// being filled nor a sample that saw part of the next step sets it;
    /// a bounded family whose first sample caught it being filled is not
    /// growing.
    #[test]
    fn sparse_samples_of_a_slow_cpu() {
        let growing = [
            (0, 1_073_580),
            (1, 1_200_000),
            (2, 1_201_871),
            (6, 1_205_485),
            (9, 1_208_586),
        ];
        let bounded = [
            (1, 286_191),
            (4, 300_000),
            (6, 301_000),
            (9, 300_000),
            (11, 301_000),
        ];
        let (g, b) = (key(1, 1), key(1, 2));
        let (mut fam, mut fixed) = (Families::default(), Families::default());
        for (cycle, entries) in growing {
            fam.observe(cycle, maps(g, 2, entries / 2));
        }
        for (cycle, entries) in bounded {
            fixed.observe(cycle, maps(b, 2, entries / 2));
        }
        let g = &fam.followed[&g];
        assert_eq!(g.verdict(), Verdict::Growing);
        // 1,871 over 1 cycle, 903.5 over 4, 1,033.7 over 3, the jump over
        // 1: the fifth of 9 cycles is one of the 3 at 1,033.7.
        let pace = g.entries_per_cycle();
        assert!((pace - 1_034.0).abs() < 1.0, "{pace}");
        assert_ne!(fixed.followed[&b].verdict(), Verdict::Growing);
    }

    /// The weighted median: the middle when each value counts as often as
    /// its weight, between two values when the middle falls between them.
    #[test]
    fn weighted_median_counts_weights() {
        assert!((weighted_median(&mut []) - 0.0).abs() < f64::EPSILON);
        let mut v = [(5.0, 1), (1.0, 1), (3.0, 1)];
        assert!((weighted_median(&mut v) - 3.0).abs() < f64::EPSILON);
        let mut v = [(100.0, 1), (1.0, 3)];
        assert!((weighted_median(&mut v) - 1.0).abs() < f64::EPSILON);
        let mut v = [(2.0, 2), (4.0, 2)];
        assert!((weighted_median(&mut v) - 3.0).abs() < f64::EPSILON);
        assert!(first_step_is_largest_rise(&[1, 10, 11, 10]));
        assert!(!first_step_is_largest_rise(&[1, 2, 11, 12]));
        assert!(!first_step_is_largest_rise(&[10, 1, 2]));
    }

    /// Past the cap, new families are counted and not followed, the
    /// largest admitted first; those followed stay.
    #[test]
    fn capped() {
        let mut fam = Families::default();
        let all = (0..MAX_FAMILIES as u64 + 10).flat_map(|s| maps(key(1, s), 2, s));
        fam.observe(1, all);
        assert_eq!(fam.len(), MAX_FAMILIES);
        assert_eq!(fam.not_followed, 10);
        // Same bytes: the smaller keys are taken.
        assert!(fam.followed.contains_key(&key(1, 0)));
        assert!(!fam.followed.contains_key(&key(1, MAX_FAMILIES as u64)));
    }

    /// The series keeps at most its cap of points, always with the first
    /// and the latest, evenly thinned; a value of the same cycle replaces
    /// the latest.
    #[test]
    fn series_is_bounded() {
        let mut s = Series::default();
        for c in 0..1000u64 {
            s.push(c, c * 10);
            let pts: Vec<_> = s.points().collect();
            assert!(pts.len() <= MAX_SERIES_POINTS, "{} points", pts.len());
            assert_eq!(pts[0], (0, 0));
            assert_eq!(pts.last(), Some(&(c, c * 10)));
            assert!(pts.windows(2).all(|p| p[0].0 < p[1].0));
        }
        s.push(999, 7);
        assert_eq!(s.points().last(), Some((999, 7)));
        let pts: Vec<_> = s.points().collect();
        // Evenly spaced but for the latest.
        let gaps: Vec<u64> = pts.windows(2).map(|p| p[1].0 - p[0].0).collect();
        assert!(
            gaps[..gaps.len() - 1].iter().all(|&g| g == gaps[0]),
            "{gaps:?}"
        );
        assert!(pts.len() >= MAX_SERIES_POINTS / 2);
    }

    /// A map's family is named by its creation site, else its growth site,
    /// else its insert site; a map with no site is in no family.
    #[test]
    fn family_of_a_map() {
        let mut m = super::super::Model::default();
        let site = super::super::RawSite {
            stack_id: 1,
            pc: 0x40,
        };
        m.on_grow(0x1000, 0x77, 1, Some(site));
        let k = FamilyKey::of(&m.maps[&0x1000], &m.sites).unwrap();
        assert_eq!(k.type_ptr, 0x77);
        assert_eq!(k.site.kind(), SiteKind::Grown);
        let created = super::super::RawSite {
            stack_id: 2,
            pc: 0x50,
        };
        assert!(m.on_created(0x1000, 1, 0x77, created));
        let k = FamilyKey::of(&m.maps[&0x1000], &m.sites).unwrap();
        assert_eq!(k.site.kind(), SiteKind::Created);
        m.on_discovered(0x2000, None, 2, None);
        m.on_write(0x2000, 0x77, true, 0x99, 3);
        assert_eq!(
            FamilyKey::of(&m.maps[&0x2000], &m.sites).map(|k| k.site),
            Some(FamilySite::Inserted(0x99))
        );
        m.on_discovered(0x3000, None, 2, None);
        assert_eq!(FamilyKey::of(&m.maps[&0x3000], &m.sites), None);
    }
}
