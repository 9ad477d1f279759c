//! What a holder search reads: a copy of the target's globals (`.data`,
//! `.bss`) and of the live part of its goroutine stacks, and its heap (its
//! anonymous writable mappings), read live ([`super::live`]).
//!
//! Nothing is atomic: the target writes on while it is read. What the
//! search finds is re-read live before it is reported
//! ([`super::search::confirm`]).
use std::{
    collections::{HashMap, HashSet},
    time::Instant,
};

use super::live::{CHUNK, LiveHeap, PAGE};
use crate::keys::Reader;

/// What a region of memory is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RegionKind {
    /// The binary's writable globals: a word here is a root.
    Globals,
    /// Anonymous writable memory: heap objects.
    Heap,
    /// The live part of a goroutine's stack: a word here is a root.
    Stack,
}

/// One copied range.
#[derive(Debug)]
pub(crate) struct Region {
    pub(crate) addr: u64,
    pub(crate) bytes: Vec<u8>,
    pub(crate) kind: RegionKind,
}

/// A word found: its address, the value it holds, the kind of memory.
pub(crate) type Hit = (u64, u64, RegionKind);

/// The memory a search looks through: copied regions, and the heap read
/// live.
#[derive(Debug, Default)]
pub(crate) struct Snapshot<'a> {
    regions: Vec<Region>,
    /// The goroutines whose stacks were copied, by address.
    pub(crate) stacks: Vec<super::goroutines::StackRoot>,
    /// The heap, read live.
    live: Option<LiveHeap<'a>>,
}

impl<'a> Snapshot<'a> {
    /// A copy made of `regions` (tests, and the globals and stacks).
    #[must_use]
    pub(crate) fn from_regions(mut regions: Vec<Region>) -> Self {
        regions.sort_by_key(|r| r.addr);
        Self {
            regions,
            stacks: Vec::new(),
            live: None,
        }
    }

    /// The same, with the heap read live.
    #[must_use]
    pub(crate) fn with_live(mut self, live: LiveHeap<'a>) -> Self {
        self.live = Some(live);
        self
    }

    /// The copied regions and the stacks' names back (the heap let go).
    #[must_use]
    pub(crate) fn into_parts(self) -> (Vec<Region>, Vec<super::goroutines::StackRoot>) {
        (self.regions, self.stacks)
    }

    /// Heap bytes read live so far.
    #[must_use]
    pub(crate) fn live_bytes(&self) -> u64 {
        self.live.as_ref().map_or(0, LiveHeap::bytes_read)
    }

    /// The goroutine whose copied stack holds `addr`.
    #[must_use]
    pub(crate) fn stack_root(&self, addr: u64) -> Option<&str> {
        self.stacks
            .iter()
            .find(|s| addr >= s.lo && addr < s.hi)
            .map(|s| s.name.as_str())
    }

    /// Addresses of the aligned words whose value is a key of `targets` or
    /// lies in one of `ranges` (inclusive), with that value and the kind of
    /// memory they are in; at most `max` hits per value. The copied regions
    /// first, then the heap read live, all of it.
    #[cfg(test)]
    #[must_use]
    pub(crate) fn find<T>(
        &self,
        targets: &HashMap<u64, T>,
        ranges: &[(u64, u64)],
        max: usize,
    ) -> Vec<Hit> {
        let m = Matcher::new(targets.keys().copied(), ranges, max);
        let mut per = HashMap::new();
        let mut out = Vec::new();
        self.find_copied(&m, &mut per, &mut out);
        let mut cursor = 0;
        let far = Instant::now() + std::time::Duration::from_secs(3600);
        while !self.find_live(&m, &mut cursor, &mut per, &mut out, far) {}
        out
    }

    /// The words `m` wants in the copied regions.
    pub(crate) fn find_copied(
        &self,
        m: &Matcher,
        per: &mut HashMap<u64, usize>,
        out: &mut Vec<Hit>,
    ) {
        for r in &self.regions {
            m.scan(r.addr, &r.bytes, r.kind, per, out);
        }
    }

    /// The words `m` wants in the live heap from `*cursor` on, until
    /// `deadline`: true when all of it was read (or there is none).
    pub(crate) fn find_live(
        &self,
        m: &Matcher,
        cursor: &mut u64,
        per: &mut HashMap<u64, usize>,
        out: &mut Vec<Hit>,
        deadline: Instant,
    ) -> bool {
        self.live
            .as_ref()
            .is_none_or(|l| l.scan(m, cursor, per, out, deadline))
    }

    /// (address, value) of every aligned word of the globals.
    pub(crate) fn globals_words(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.regions
            .iter()
            .filter(|r| r.kind == RegionKind::Globals)
            .flat_map(|r| {
                let skip = usize::try_from(r.addr.wrapping_neg() & 7).unwrap_or(0);
                r.bytes
                    .get(skip..)
                    .unwrap_or_default()
                    .chunks_exact(8)
                    .enumerate()
                    .map(move |(i, w)| {
                        let v =
                            u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
                        (r.addr + (skip + i * 8) as u64, v)
                    })
            })
    }

    /// The copied region holding `addr`.
    fn region(&self, addr: u64) -> Option<&Region> {
        let i = self
            .regions
            .partition_point(|r| r.addr <= addr)
            .checked_sub(1)?;
        let r = &self.regions[i];
        (addr < r.addr.checked_add(r.bytes.len() as u64)?).then_some(r)
    }

    /// The word at `addr`: copied, or read live from the heap.
    #[must_use]
    pub(crate) fn word(&self, addr: u64) -> Option<u64> {
        if let Some(r) = self.region(addr) {
            let o = usize::try_from(addr - r.addr).ok()?;
            return Some(u64::from_le_bytes(
                r.bytes.get(o..o.checked_add(8)?)?.try_into().ok()?,
            ));
        }
        self.live.as_ref()?.word(addr)
    }

    /// The kind of memory holding `[addr, addr + len)`, if it is in one
    /// copied region or one run of the live heap.
    #[must_use]
    pub(crate) fn kind_of(&self, addr: u64, len: u64) -> Option<RegionKind> {
        if let Some(r) = self.region(addr) {
            let end = r.addr.checked_add(r.bytes.len() as u64)?;
            return (addr.checked_add(len)? <= end).then_some(r.kind);
        }
        self.live
            .as_ref()
            .is_some_and(|l| l.holds(addr, len))
            .then_some(RegionKind::Heap)
    }
}

/// What a scan looks for: words equal to one of a set of values, or in one
/// of a set of ranges, at most so many per value.
#[derive(Debug)]
pub(crate) struct Matcher {
    targets: HashSet<u64>,
    filter: Prefilter,
    /// `ranges`, merged.
    merged: Vec<(u64, u64)>,
    /// Every wanted word is in `[lo, hi]`.
    lo: u64,
    hi: u64,
    max: usize,
}

impl Matcher {
    #[must_use]
    pub(crate) fn new(
        targets: impl Iterator<Item = u64>,
        ranges: &[(u64, u64)],
        max: usize,
    ) -> Self {
        let targets: HashSet<u64> = targets.collect();
        let merged = merge(ranges);
        let lo = targets
            .iter()
            .copied()
            .chain(merged.first().map(|r| r.0))
            .min()
            .unwrap_or(u64::MAX);
        let hi = targets
            .iter()
            .copied()
            .chain(merged.last().map(|r| r.1))
            .max()
            .unwrap_or(0);
        // Most heap words are pointers into the heap, between `lo` and
        // `hi`: a bit per hash of each wanted value answers most of them
        // before the hash set is asked.
        let filter = Prefilter::new(targets.iter().copied());
        Self {
            targets,
            filter,
            merged,
            lo,
            hi,
            max,
        }
    }

    fn in_range(&self, v: u64) -> bool {
        let i = self.merged.partition_point(|r| r.1 < v);
        self.merged.get(i).is_some_and(|r| r.0 <= v)
    }

    /// Adds the wanted aligned words of `bytes` (copied from `addr`) to
    /// `out`, `per` counting the hits per value.
    pub(crate) fn scan(
        &self,
        addr: u64,
        bytes: &[u8],
        kind: RegionKind,
        per: &mut HashMap<u64, usize>,
        out: &mut Vec<Hit>,
    ) {
        // A word is 8-aligned.
        let skip = usize::try_from(addr.wrapping_neg() & 7).unwrap_or(0);
        let Some(words) = bytes.get(skip..) else {
            return;
        };
        for (i, w) in words.chunks_exact(8).enumerate() {
            let v = u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
            if v < self.lo || v > self.hi {
                continue;
            }
            let wanted = self.filter.may_hold(v) && self.targets.contains(&v);
            if !wanted && !self.in_range(v) {
                continue;
            }
            let n = per.entry(v).or_default();
            if *n < self.max {
                *n += 1;
                out.push((addr + (skip + i * 8) as u64, v, kind));
            }
        }
    }
}

/// A set of values that may answer "maybe" for a value not in it, never
/// "no" for one in it: 64 Ki bits (8 KiB, in the first-level cache) set by
/// a multiplicative hash of each value.
#[derive(Debug)]
struct Prefilter {
    bits: Vec<u64>,
}

impl Prefilter {
    const BITS: u32 = 16;

    fn new(values: impl Iterator<Item = u64>) -> Self {
        let mut bits = vec![0u64; (1 << Self::BITS) / 64];
        for v in values {
            let b = Self::bit(v);
            bits[b / 64] |= 1 << (b % 64);
        }
        Self { bits }
    }

    const fn bit(v: u64) -> usize {
        (v.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - Self::BITS)) as usize
    }

    fn may_hold(&self, v: u64) -> bool {
        let b = Self::bit(v);
        self.bits[b / 64] >> (b % 64) & 1 != 0
    }
}

/// `ranges` sorted and merged where they overlap.
fn merge(ranges: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut v: Vec<(u64, u64)> = ranges.iter().copied().filter(|r| r.0 <= r.1).collect();
    v.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(v.len());
    for (lo, hi) in v {
        match out.last_mut() {
            Some(last) if lo <= last.1.saturating_add(1) => last.1 = last.1.max(hi),
            _ => out.push((lo, hi)),
        }
    }
    out
}

/// Globals copied at most (as the direct owner search).
pub(crate) const MAX_GLOBAL_BYTES: u64 = 64 << 20;

/// Copies the globals `[glo, ghi)` (at most [`MAX_GLOBAL_BYTES`]).
pub(crate) fn take_globals<R: Reader>(mem: &R, globals: (u64, u64)) -> Vec<Region> {
    let mut regions = Vec::new();
    let hi = globals.1.min(globals.0.saturating_add(MAX_GLOBAL_BYTES));
    let mut unbounded = u64::MAX;
    copy_range(
        mem,
        globals.0,
        hi,
        RegionKind::Globals,
        &mut regions,
        &mut unbounded,
    );
    regions
}

/// Copies `[start, end)` in chunks, skipping pages that cannot be read,
/// taking the bytes from `budget`.
fn copy_range<R: Reader>(
    mem: &R,
    start: u64,
    end: u64,
    kind: RegionKind,
    out: &mut Vec<Region>,
    budget: &mut u64,
) {
    let mut a = start;
    while a < end && *budget > 0 {
        let want = (end - a).min(CHUNK).min(*budget);
        let mut buf = vec![0u8; usize::try_from(want).unwrap_or(0)];
        let n = mem.read_some(a, &mut buf) as u64;
        if n == 0 {
            a = (a + PAGE) & !(PAGE - 1);
            continue;
        }
        buf.truncate(usize::try_from(n).unwrap_or(0));
        *budget -= n;
        match out.last_mut() {
            Some(r) if r.kind == kind && r.addr + r.bytes.len() as u64 == a => r.bytes.extend(buf),
            _ => out.push(Region {
                addr: a,
                bytes: buf,
                kind,
            }),
        }
        a += n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Words are found by value, bounded per value, in either kind of
    /// region, at their addresses.
    #[test]
    fn find_words() {
        let mut g = vec![0u8; 32];
        g[8..16].copy_from_slice(&0xabcdu64.to_le_bytes());
        let mut h = vec![0u8; 64];
        for at in [0, 16, 24] {
            h[at..at + 8].copy_from_slice(&0xabcdu64.to_le_bytes());
        }
        h[40..48].copy_from_slice(&0x99u64.to_le_bytes());
        let snap = Snapshot::from_regions(vec![
            Region {
                addr: 0x2000,
                bytes: h,
                kind: RegionKind::Heap,
            },
            Region {
                addr: 0x1000,
                bytes: g,
                kind: RegionKind::Globals,
            },
        ]);
        let targets: HashMap<u64, ()> = [(0xabcd, ()), (0x99, ())].into();
        let hits = snap.find(&targets, &[], 3);
        assert_eq!(
            hits,
            vec![
                (0x1008, 0xabcd, RegionKind::Globals),
                (0x2000, 0xabcd, RegionKind::Heap),
                (0x2010, 0xabcd, RegionKind::Heap),
                (0x2028, 0x99, RegionKind::Heap),
            ]
        );
        assert_eq!(snap.kind_of(0x2038, 8), Some(RegionKind::Heap));
        assert_eq!(snap.word(0x2028), Some(0x99));
        assert_eq!(snap.word(0x203c), None);
        assert_eq!(snap.word(0x10), None);
        assert_eq!(snap.kind_of(0x203c, 8), None);
        assert_eq!(snap.kind_of(0x1500, 8), None);
        // Ranges: 0x99 in [0x90, 0xa0]; none hit by [0x100, 0x200].
        let none: HashMap<u64, ()> = HashMap::new();
        let hits = snap.find(&none, &[(0x100, 0x200), (0x90, 0xa0), (0x95, 0x99)], 8);
        assert_eq!(hits, vec![(0x2028, 0x99, RegionKind::Heap)]);
        assert_eq!(merge(&[(5, 9), (1, 3), (4, 4), (20, 10)]), vec![(1, 9)]);
    }

    /// Every value put in the prefilter passes it; most others do not.
    #[test]
    fn prefilter_never_drops_a_wanted_value() {
        let wanted: Vec<u64> = (0..2000u64).map(|i| 0x00c0_0000_0000 + i * 48).collect();
        let f = Prefilter::new(wanted.iter().copied());
        assert!(wanted.iter().all(|&v| f.may_hold(v)));
        let others = (0..100_000u64)
            .map(|i| 0x00c1_0000_0000 + i * 8)
            .filter(|&v| f.may_hold(v))
            .count();
        assert!(others < 10_000, "{others} of 100,000 others pass");
    }

    /// Time of `find` over 256 MiB of a heap-like copy (a third of its words
    /// pointers into it), 300 wanted values: `cargo test --release -p
    /// tracer-user --lib find_speed -- --ignored --nocapture`.
    #[test]
    #[ignore = "a measurement, not a check"]
    fn find_speed() {
        let base = 0x00c0_0000_0000_u64;
        let len = 256usize << 20;
        let mut bytes = vec![0u8; len];
        let mut x = 0x1234_5678_9abc_def1u64;
        for w in bytes.chunks_exact_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let v = if x.is_multiple_of(3) {
                (base + (x >> 8) % len as u64) & !7
            } else {
                x % 1000
            };
            w.copy_from_slice(&v.to_le_bytes());
        }
        let targets: HashMap<u64, ()> = (0..300u64)
            .map(|i| (base + i * 0x10_0000 + 0x40, ()))
            .collect();
        let snap = Snapshot::from_regions(vec![Region {
            addr: base,
            bytes,
            kind: RegionKind::Heap,
        }]);
        let t = std::time::Instant::now();
        let hits = snap.find(&targets, &[(base + 0x100, base + 0x4100)], 16);
        let took = t.elapsed();
        eprintln!(
            "find: {} hits in {took:?} over 256 MiB: {:.0} ms per GiB",
            hits.len(),
            took.as_secs_f64() * 1e3 * 4.0
        );
    }
}
