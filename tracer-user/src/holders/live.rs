//! The target's heap, read live: the runs of present pages of its anonymous
//! writable mappings (from `/proc/PID/pagemap`, so that a reserved but
//! untouched arena costs nothing and faults nothing in), scanned a chunk
//! at a time by each level of a holder search, and read a page at a time
//! for the words around what a scan found.
//!
//! At most [`MAX_KEPT_BYTES`] of what a scan read is kept for the next
//! levels of the same turn (a small heap is read once a turn, as a copy
//! would be); past that, each level reads the heap again, and nothing is
//! kept between the turns of a search, which goes on from where the last
//! turn stopped ([`LiveHeap::scan`]'s cursor). So a search's memory does
//! not grow with the heap, and a heap of any size is searched, a
//! deadline's worth of it at a time.
use std::{
    cell::{Cell, RefCell},
    collections::{BTreeMap, HashMap},
    fs::File,
    os::unix::fs::FileExt,
    time::Instant,
};

use super::heap::{Matcher, RegionKind};
use crate::{discover::Mapping, keys::Reader};

/// Heap searched at most: the present pages of the anonymous writable
/// mappings past it are left out (and the search says it was cut short).
pub(crate) const MAX_HEAP_BYTES: u64 = 64 << 30;

/// Largest single read (of a scan, or of a copy of the globals).
pub(crate) const CHUNK: u64 = 1 << 20;

pub(crate) const PAGE: u64 = 4096;

/// Pages kept for [`LiveHeap::word`] (4 MiB); all are dropped when full.
const MAX_CACHED_PAGES: usize = 1024;

/// Chunks a scan keeps for the next levels of the turn: a heap this small
/// is read once a turn.
pub(crate) const MAX_KEPT_BYTES: u64 = 32 << 20;

/// The heap of a running target, as runs of present pages.
pub(crate) struct LiveHeap<'a> {
    mem: &'a dyn Reader,
    /// Sorted, not overlapping.
    runs: &'a [(u64, u64)],
    /// Pages read for single words: `None` for one that could not be read.
    pages: RefCell<HashMap<u64, Option<Box<[u8]>>>>,
    /// Chunks read by scans, by address, up to [`MAX_KEPT_BYTES`].
    kept: RefCell<BTreeMap<u64, Vec<u8>>>,
    kept_bytes: Cell<u64>,
    /// Bytes read so far, scans and pages.
    read: Cell<u64>,
}

impl std::fmt::Debug for LiveHeap<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveHeap")
            .field("runs", &self.runs.len())
            .field("read", &self.read.get())
            .finish_non_exhaustive()
    }
}

impl<'a> LiveHeap<'a> {
    #[must_use]
    pub(crate) fn new(mem: &'a dyn Reader, runs: &'a [(u64, u64)]) -> Self {
        Self {
            mem,
            runs,
            pages: RefCell::default(),
            kept: RefCell::default(),
            kept_bytes: Cell::new(0),
            read: Cell::new(0),
        }
    }

    /// Bytes read so far.
    #[must_use]
    pub(crate) fn bytes_read(&self) -> u64 {
        self.read.get()
    }

    /// Whether `[addr, addr + len)` lies in one run.
    #[must_use]
    pub(crate) fn holds(&self, addr: u64, len: u64) -> bool {
        let Some(end) = addr.checked_add(len) else {
            return false;
        };
        let i = self.runs.partition_point(|r| r.1 <= addr);
        self.runs.get(i).is_some_and(|r| r.0 <= addr && end <= r.1)
    }

    /// The aligned word at `addr`, read live (its page kept for the next).
    #[must_use]
    pub(crate) fn word(&self, addr: u64) -> Option<u64> {
        if !addr.is_multiple_of(8) || !self.holds(addr, 8) {
            return None;
        }
        if let Some((&at, bytes)) = self.kept.borrow().range(..=addr).next_back()
            && let Some(w) = usize::try_from(addr - at)
                .ok()
                .and_then(|o| bytes.get(o..o.checked_add(8)?))
        {
            return Some(u64::from_le_bytes(w.try_into().ok()?));
        }
        let page = addr & !(PAGE - 1);
        let mut pages = self.pages.borrow_mut();
        if pages.len() >= MAX_CACHED_PAGES && !pages.contains_key(&page) {
            pages.clear();
        }
        let bytes = pages.entry(page).or_insert_with(|| {
            let mut buf = vec![0u8; PAGE as usize];
            let ok = self.mem.read(page, &mut buf);
            self.read.set(self.read.get() + PAGE);
            ok.then(|| buf.into_boxed_slice())
        });
        let o = usize::try_from(addr - page).ok()?;
        Some(u64::from_le_bytes(
            bytes.as_ref()?.get(o..o + 8)?.try_into().ok()?,
        ))
    }

    /// Scans the heap from `*cursor` (an address) on, a chunk at a time,
    /// adding the words `m` wants to `out` (`per`: hits so far per value),
    /// until every run past the cursor is read (true) or `deadline`
    /// passes (false; the cursor is where the next call goes on). At least
    /// one chunk is read per call.
    pub(crate) fn scan(
        &self,
        m: &Matcher,
        cursor: &mut u64,
        per: &mut HashMap<u64, usize>,
        out: &mut Vec<(u64, u64, RegionKind)>,
        deadline: Instant,
    ) -> bool {
        let first = self.runs.partition_point(|r| r.1 <= *cursor);
        for &(start, end) in &self.runs[first..] {
            let mut a = start.max(*cursor);
            while a < end {
                let n = self.scan_chunk(m, a, (end - a).min(CHUNK), per, out);
                a = if n == 0 {
                    // Unmapped since the runs were read: the next page.
                    (a + PAGE) & !(PAGE - 1)
                } else {
                    a + n
                };
                *cursor = a;
                if Instant::now() >= deadline && a < self.last_end() {
                    return false;
                }
            }
        }
        *cursor = self.last_end();
        true
    }

    /// Scans the chunk of `want` bytes at `a`, kept or read now (and kept
    /// while there is room); the bytes it had.
    fn scan_chunk(
        &self,
        m: &Matcher,
        a: u64,
        want: u64,
        per: &mut HashMap<u64, usize>,
        out: &mut Vec<(u64, u64, RegionKind)>,
    ) -> u64 {
        if let Some(b) = self.kept.borrow().get(&a) {
            m.scan(a, b, RegionKind::Heap, per, out);
            return b.len() as u64;
        }
        let mut buf = vec![0u8; usize::try_from(want).unwrap_or(0)];
        let n = self.mem.read_some(a, &mut buf);
        self.read.set(self.read.get() + n as u64);
        buf.truncate(n);
        m.scan(a, &buf, RegionKind::Heap, per, out);
        if n > 0 && self.kept_bytes.get() + n as u64 <= MAX_KEPT_BYTES {
            self.kept_bytes.set(self.kept_bytes.get() + n as u64);
            self.kept.borrow_mut().insert(a, buf);
        }
        n as u64
    }

    fn last_end(&self) -> u64 {
        self.runs.last().map_or(0, |r| r.1)
    }
}

/// The runs of present pages of the target's anonymous writable mappings
/// but `exclude` (the goroutine stacks, sorted), the mappings holding
/// `first` first, then by address, at most [`MAX_HEAP_BYTES`] of them;
/// sorted by address, and whether the bound left pages out. `globals`: the
/// range the globals are read from, left out.
#[must_use]
pub(crate) fn runs(
    pid: u32,
    globals: (u64, u64),
    exclude: &[(u64, u64)],
    first: &[u64],
) -> (Vec<(u64, u64)>, bool) {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .map(|t| crate::discover::parse_maps(&t))
        .unwrap_or_default();
    let pagemap = File::open(format!("/proc/{pid}/pagemap")).ok();
    let mut left = MAX_HEAP_BYTES;
    let mut cut_short = false;
    let mut out = Vec::new();
    for (start, end) in heap_mappings(&maps, first, globals) {
        if left == 0 {
            cut_short = true;
            break;
        }
        let present = match &pagemap {
            Some(f) => present(f, start, end, left),
            // No pagemap: all of it (bounded).
            None => vec![(start, end)],
        };
        for (s, e) in present
            .into_iter()
            .flat_map(|(s, e)| subtract(s, e, exclude))
        {
            let e = e.min(s.saturating_add(left));
            if e <= s {
                cut_short = true;
                break;
            }
            left -= e - s;
            out.push((s, e));
        }
    }
    out.sort_unstable();
    (out, cut_short)
}

/// The anonymous writable mappings to read, `first` (the mappings holding
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

/// Present runs of `[start, end)` from the pagemap file, until they add up
/// to `enough` bytes (a huge mapping's pagemap is not read past what can be
/// searched).
fn present(f: &File, start: u64, end: u64, enough: u64) -> Vec<(u64, u64)> {
    let pages = (end - start) / PAGE;
    let mut out: Vec<(u64, u64)> = Vec::new();
    // 64 Ki entries (256 MiB of address space) per read.
    let mut buf = vec![0u8; 8 << 16];
    let mut done = 0;
    let mut total = 0;
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
        for (s, e) in present_runs(start + done * PAGE, &entries) {
            total += e - s;
            // Join a run that crosses the read boundary.
            match out.last_mut() {
                Some(last) if last.1 == s => last.1 = e,
                _ => out.push((s, e)),
            }
        }
        done += entries.len() as u64;
        if total >= enough {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests;
