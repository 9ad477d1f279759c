//! A bounded copy of the target's writable memory: its globals (`.data`,
//! `.bss`) and its anonymous writable mappings (the Go heap, among them),
//! read while it runs. Only pages present in memory are read (from
//! `/proc/PID/pagemap`), so that a reserved but untouched arena costs
//! nothing and faults nothing in; the copy stops at a byte bound and says
//! so.
//!
//! The copy is not atomic: the target writes on while it is taken. What the
//! search finds in it is re-read live before it is reported
//! ([`super::search::confirm`]).
use std::{collections::HashMap, fs::File, os::unix::fs::FileExt};

use crate::{discover::Mapping, keys::Reader};

/// What a region of the copy is.
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

/// The copy.
#[derive(Debug, Default)]
pub(crate) struct Snapshot {
    regions: Vec<Region>,
    /// The goroutines whose stacks were copied, by address.
    pub(crate) stacks: Vec<super::goroutines::StackRoot>,
    /// Heap bytes copied.
    pub(crate) heap_bytes: u64,
    /// The byte bound (or a deadline) stopped the copy before every
    /// writable page was read.
    pub(crate) cut_short: bool,
}

impl Snapshot {
    /// A copy made of `regions` (tests, and [`take`]).
    #[must_use]
    pub(crate) fn from_regions(mut regions: Vec<Region>) -> Self {
        regions.sort_by_key(|r| r.addr);
        let heap_bytes = regions
            .iter()
            .filter(|r| r.kind == RegionKind::Heap)
            .map(|r| r.bytes.len() as u64)
            .sum();
        Self {
            regions,
            stacks: Vec::new(),
            heap_bytes,
            cut_short: false,
        }
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
    /// region they are in; at most `max` hits per value.
    #[must_use]
    pub(crate) fn find<T>(
        &self,
        targets: &HashMap<u64, T>,
        ranges: &[(u64, u64)],
        max: usize,
    ) -> Vec<(u64, u64, RegionKind)> {
        let mut out = Vec::new();
        if targets.is_empty() && ranges.is_empty() {
            return out;
        }
        let merged = merge(ranges);
        // Most heap words are pointers into the heap, between `lo` and
        // `hi`: a bit per hash of each wanted value answers most of them
        // before the hash table is asked.
        let filter = Prefilter::new(targets.keys().copied());
        let (rlo, rhi) = (
            merged.first().map_or(u64::MAX, |r| r.0),
            merged.last().map_or(0, |r| r.1),
        );
        let in_range = |v: u64| {
            if v < rlo || v > rhi {
                return false;
            }
            let i = merged.partition_point(|r| r.1 < v);
            merged.get(i).is_some_and(|r| r.0 <= v)
        };
        let lo = targets
            .keys()
            .copied()
            .chain(merged.first().map(|r| r.0))
            .min()
            .unwrap_or(0);
        let hi = targets
            .keys()
            .copied()
            .chain(merged.last().map(|r| r.1))
            .max()
            .unwrap_or(u64::MAX);
        let mut per: HashMap<u64, usize> = HashMap::new();
        for r in &self.regions {
            // Regions start page-aligned; a word is 8-aligned from there.
            let skip = usize::try_from(r.addr.wrapping_neg() & 7).unwrap_or(0);
            let Some(words) = r.bytes.get(skip..) else {
                continue;
            };
            for (i, w) in words.chunks_exact(8).enumerate() {
                let v = u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
                if v < lo || v > hi {
                    continue;
                }
                let wanted = filter.may_hold(v) && targets.contains_key(&v);
                if !wanted && !in_range(v) {
                    continue;
                }
                let n = per.entry(v).or_default();
                if *n < max {
                    *n += 1;
                    out.push((r.addr + (skip + i * 8) as u64, v, r.kind));
                }
            }
        }
        out
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

    /// The word at `addr`, if copied.
    #[must_use]
    pub(crate) fn word(&self, addr: u64) -> Option<u64> {
        let i = self
            .regions
            .partition_point(|r| r.addr <= addr)
            .checked_sub(1)?;
        let r = &self.regions[i];
        let o = usize::try_from(addr.checked_sub(r.addr)?).ok()?;
        Some(u64::from_le_bytes(
            r.bytes.get(o..o.checked_add(8)?)?.try_into().ok()?,
        ))
    }

    /// The kind of region holding `[addr, addr + len)`, if copied.
    #[must_use]
    pub(crate) fn kind_of(&self, addr: u64, len: u64) -> Option<RegionKind> {
        let i = self
            .regions
            .partition_point(|r| r.addr <= addr)
            .checked_sub(1)?;
        let r = &self.regions[i];
        let end = r.addr.checked_add(r.bytes.len() as u64)?;
        (addr.checked_add(len)? <= end).then_some(r.kind)
    }
}

/// A set of values that may answer "maybe" for a value not in it, never
/// "no" for one in it: 64 Ki bits (8 KiB, in the first-level cache) set by
/// a multiplicative hash of each value.
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

/// Heap bytes one search copies at most: enough for the heaps of small and
/// medium services (and every fixture), a bounded cost on large ones
/// (about 10 ms of copying per 32 MiB here), whose searches then say they
/// were cut short.
pub(crate) const MAX_HEAP_BYTES: u64 = 32 << 20;

/// Globals copied at most (as the direct owner search).
pub(crate) const MAX_GLOBAL_BYTES: u64 = 64 << 20;

/// The anonymous writable mappings to copy, `first` (the mappings holding
/// the suspects: the Go heap) before the others, without `exclude` (the
/// globals, copied as such).
#[must_use]
pub(crate) fn heap_mappings(
    maps: &[Mapping],
    first: &[u64],
    exclude: (u64, u64),
) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64, bool)> = maps
        .iter()
        .filter(|m| {
            m.perms.starts_with("rw")
                && m.inode == 0
                // [heap] is C's brk heap, [stack] the main thread's C stack;
                // Go's heap is anonymous.
                && m.path.is_none()
                && m.end > m.start
                && (m.end <= exclude.0 || m.start >= exclude.1)
        })
        .map(|m| {
            let holds = first.iter().any(|&a| a >= m.start && a < m.end);
            (m.start, m.end, holds)
        })
        .collect();
    out.sort_by_key(|&(s, _, holds)| (!holds, s));
    out.into_iter().map(|(s, e, _)| (s, e)).collect()
}

/// Runs of pages present in memory in `[start, end)`, from pagemap entries
/// (`entries[i]` for page `start / 4096 + i`; bit 63 present, 62 swapped:
/// a swapped page would be read in, so it is skipped).
#[must_use]
pub(crate) fn present_runs(start: u64, entries: &[u64]) -> Vec<(u64, u64)> {
    let mut runs: Vec<(u64, u64)> = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        if e >> 63 & 1 == 0 {
            continue;
        }
        let page = start + (i as u64) * PAGE;
        match runs.last_mut() {
            Some(r) if r.1 == page => r.1 += PAGE,
            _ => runs.push((page, page + PAGE)),
        }
    }
    runs
}

const PAGE: u64 = 4096;

/// Largest single read.
const CHUNK: u64 = 1 << 20;

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

/// `[start, end)` less the ranges of `cut` (sorted, not overlapping).
#[must_use]
pub(crate) fn subtract(start: u64, end: u64, cut: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut a = start;
    for &(lo, hi) in cut {
        if hi <= a || lo >= end {
            continue;
        }
        if lo > a {
            out.push((a, lo));
        }
        a = a.max(hi);
    }
    if a < end {
        out.push((a, end));
    }
    out
}

/// Adds to `regions` (the globals and stacks already copied) the present
/// pages of the target's anonymous writable mappings but `exclude` (the
/// goroutine stacks), the mappings holding `first` first, up to
/// [`MAX_HEAP_BYTES`] of heap or until `deadline`. `globals`: the range
/// the globals were copied from.
pub(crate) fn take<R: Reader>(
    mem: &R,
    pid: u32,
    mut regions: Vec<Region>,
    globals: (u64, u64),
    exclude: &[(u64, u64)],
    first: &[u64],
    deadline: std::time::Instant,
) -> Snapshot {
    let (glo, ghi) = globals;
    let mut exclude = exclude.to_vec();
    exclude.sort_unstable();
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .map(|t| crate::discover::parse_maps(&t))
        .unwrap_or_default();
    let pagemap = File::open(format!("/proc/{pid}/pagemap")).ok();
    let mut budget = MAX_HEAP_BYTES;
    let mut cut_short = false;
    for (start, end) in heap_mappings(&maps, first, (glo, ghi)) {
        if std::time::Instant::now() >= deadline || budget == 0 {
            cut_short = true;
            break;
        }
        let runs = match &pagemap {
            Some(f) => present(f, start, end, budget),
            // No pagemap: read it all (bounded by the budget).
            None => vec![(start, end)],
        };
        for (s, e) in runs.into_iter().flat_map(|(s, e)| subtract(s, e, &exclude)) {
            if budget == 0 {
                cut_short = true;
                break;
            }
            copy_range(mem, s, e, RegionKind::Heap, &mut regions, &mut budget);
        }
    }
    let mut snap = Snapshot::from_regions(regions);
    snap.cut_short = cut_short;
    snap
}

/// Present runs of `[start, end)` from the pagemap file, until they add up
/// to `enough` bytes (a huge mapping's pagemap is not read past what can be
/// copied).
fn present(f: &File, start: u64, end: u64, enough: u64) -> Vec<(u64, u64)> {
    let pages = (end - start) / PAGE;
    let mut out = Vec::new();
    // 64 Ki entries (256 MiB of address space) per read.
    let mut buf = vec![0u8; 8 << 16];
    let mut done = 0;
    while done < pages {
        let n = (pages - done).min(1 << 16);
        let b = &mut buf[..usize::try_from(n * 8).unwrap_or(0)];
        let Ok(got) = f.read_at(b, (start / PAGE + done) * 8) else {
            break;
        };
        if got < 8 {
            break;
        }
        let entries: Vec<u64> = b[..got - got % 8]
            .chunks_exact(8)
            .map(|w| u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]))
            .collect();
        let mut runs = present_runs(start + done * PAGE, &entries);
        // Join a run that crosses the read boundary.
        if let (Some(last), Some(first)) = (out.last_mut(), runs.first())
            && let (&mut (_, ref mut e), &(s, ne)) = (last, first)
            && *e == s
        {
            *e = ne;
            runs.remove(0);
        }
        out.extend(runs);
        done += entries.len() as u64;
        if out.iter().map(|r| r.1 - r.0).sum::<u64>() >= enough {
            break;
        }
    }
    out
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

    fn mapping(start: u64, end: u64, perms: &str, inode: u64, path: Option<&str>) -> Mapping {
        Mapping {
            start,
            end,
            perms: perms.into(),
            offset: 0,
            inode,
            path: path.map(str::to_owned),
        }
    }

    /// Anonymous writable mappings only, the suspects' first, the globals
    /// left out.
    #[test]
    fn which_mappings() {
        let maps = [
            mapping(0x40_0000, 0x50_0000, "r-xp", 7, Some("/bin/x")),
            mapping(0x50_0000, 0x51_0000, "rw-p", 7, Some("/bin/x")),
            mapping(0x51_0000, 0x52_0000, "rw-p", 0, None),
            mapping(0x100_0000, 0x200_0000, "rw-p", 0, None),
            mapping(0xc0_0000_0000, 0xc0_0040_0000, "rw-p", 0, None),
            mapping(0xc0_0040_0000, 0xc4_0000_0000, "---p", 0, None),
            mapping(0x7fff_0000, 0x7fff_1000, "rw-p", 0, Some("[stack]")),
        ];
        let got = heap_mappings(&maps, &[0xc0_0000_1000], (0x50_0000, 0x52_0000));
        assert_eq!(
            got,
            vec![(0xc0_0000_0000, 0xc0_0040_0000), (0x100_0000, 0x200_0000)]
        );
    }

    /// A real copy of this process (no root needed to read oneself): a
    /// word written into an anonymous mapping (a large allocation) is found
    /// at its address, among present pages only, within the bound.
    #[test]
    fn copies_this_process() {
        let marker = 0x6d61_706c_6561_6b21_u64;
        // 4 MiB of an anonymous mapping, as Go's heap is. (A Vec of that
        // size may come from the brk heap, which is left out: malloc raises
        // its mmap threshold after other tests free large blocks.)
        let len = 4 << 20;
        // SAFETY: a new private anonymous mapping, unmapped below.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(base, libc::MAP_FAILED);
        let slot = base.cast::<u64>().wrapping_add(12_345);
        // SAFETY: within the mapping, aligned, writable.
        unsafe { slot.write_volatile(marker) };
        let at = slot as u64;
        let mem = crate::sample::Memory::new(std::process::id());
        let far = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let snap = take(
            &mem,
            std::process::id(),
            Vec::new(),
            (0, 0),
            &[],
            &[at],
            far,
        );
        assert!(snap.heap_bytes > 0 && snap.heap_bytes <= MAX_HEAP_BYTES);
        let targets: HashMap<u64, ()> = [(marker, ())].into();
        // The copy holds copies of the marker too (its own buffers are
        // in this process): all hits.
        let hits = snap.find(&targets, &[], usize::MAX);
        assert!(
            hits.contains(&(at, marker, RegionKind::Heap)),
            "{hits:x?} (marker at {at:#x})"
        );
        // SAFETY: the mapping made above, no longer used.
        unsafe { libc::munmap(base, len) };
    }

    /// Present pages are joined into runs; absent and swapped ones split them.
    #[test]
    fn runs_of_present_pages() {
        let p = 1u64 << 63;
        let s = 1u64 << 62;
        let runs = present_runs(0x1000, &[p, p, 0, s, p, p | 5, 0]);
        assert_eq!(runs, vec![(0x1000, 0x3000), (0x5000, 0x7000)]);
        assert!(present_runs(0, &[]).is_empty());
    }

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
        assert_eq!(snap.heap_bytes, 64);
        // Ranges: 0x99 in [0x90, 0xa0]; none hit by [0x100, 0x200].
        let none: HashMap<u64, ()> = HashMap::new();
        let hits = snap.find(&none, &[(0x100, 0x200), (0x90, 0xa0), (0x95, 0x99)], 8);
        assert_eq!(hits, vec![(0x2028, 0x99, RegionKind::Heap)]);
        assert_eq!(merge(&[(5, 9), (1, 3), (4, 4), (20, 10)]), vec![(1, 9)]);
        // Stacks cut out of a run.
        assert_eq!(
            subtract(
                0x1000,
                0x9000,
                &[(0, 0x1800), (0x3000, 0x4000), (0x8000, 0xa000)]
            ),
            vec![(0x1800, 0x3000), (0x4000, 0x8000)]
        );
        assert_eq!(subtract(0x1000, 0x2000, &[]), vec![(0x1000, 0x2000)]);
        assert!(subtract(0x1000, 0x2000, &[(0x800, 0x2000)]).is_empty());
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
