//! The probes' hit counts, mapped into this process.
//!
//! The programs add each hit to
//! `PROBE_HITS[(PROBE_SWITCH_ROWS + cpu) * MAX_PROBES + id]`, an array made
//! with `BPF_F_MMAPABLE`: a row of counters per possible CPU, so that no two
//! CPUs add to the same slot. Its first rows are each probe's off switch,
//! set before its link is closed, and the runs that found it off; the
//! groups' grants of full runs, and the runs that found theirs spent
//! ([`tracer_common::PROBE_SWITCH_ROWS`]). The tracer maps the array once
//! and reads it with plain loads. The governor reads every probe's count at
//! each check (four a second when idle, up to a hundred while a window is
//! open); as a per-CPU array read with `BPF_MAP_LOOKUP_BATCH`, that read was
//! a fifth of the tracer's own CPU with twenty processes traced on two CPUs,
//! and grows with the number of CPUs times the number of probes.
//!
//! [`HitCounts`] is the mapping; [`HitsReader`] reads the counts from the
//! governor's thread, and [`ProbeSwitch`] sets the switches and the grants
//! from the thread that closes the links.
use std::{
    io,
    os::fd::{AsRawFd as _, BorrowedFd},
    ptr::NonNull,
    sync::atomic::{AtomicU64, Ordering},
};

use tracer_common::{
    MAX_PROBES, PROBE_DENIED_ROW, PROBE_GRANT_ROW, PROBE_OFF_ROW, PROBE_OFF_RUNS_ROW,
    PROBE_SWITCH_ROWS,
};

/// Slots of the array for `cpus` possible CPUs (the `max_entries` the
/// tracer sets at load time: the switch rows and a row per CPU), or `None`
/// if it would not fit a `u32`.
#[must_use]
pub fn slots(cpus: usize) -> Option<u32> {
    u32::try_from(cpus)
        .ok()?
        .checked_add(PROBE_SWITCH_ROWS)?
        .checked_mul(MAX_PROBES)
}

/// Slot of probe `id` in row `row`.
fn slot_of(row: u32, id: u32) -> usize {
    (row * MAX_PROBES + id) as usize
}

/// Sums of `rows` rows of `MAX_PROBES` counters, for the first `n` ids:
/// `read(slot)` gives a slot's count.
fn sum_rows(rows: usize, n: u32, read: impl Fn(usize) -> u64) -> Vec<u64> {
    let n = n.min(MAX_PROBES) as usize;
    let mut sums = vec![0u64; n];
    for row in 0..rows {
        let base = row * MAX_PROBES as usize;
        for (id, sum) in sums.iter_mut().enumerate() {
            *sum = sum.wrapping_add(read(base + id));
        }
    }
    sums
}

/// The mapped hit counts (shared between the tracer and the governor's
/// thread; the mapping lives until the last handle is dropped).
#[derive(Debug)]
pub struct HitCounts {
    base: NonNull<u64>,
    /// Bytes mapped.
    len: usize,
    /// Rows (possible CPUs).
    cpus: usize,
}

// SAFETY: the mapping is shared memory only ever accessed through atomic
// loads and stores (`AtomicU64::from_ptr`), from any thread.
unsafe impl Send for HitCounts {}
// SAFETY: as for Send.
unsafe impl Sync for HitCounts {}

impl HitCounts {
    /// Maps the array behind `fd`, made with `BPF_F_MMAPABLE` and
    /// [`slots`]`(cpus)` entries of 8 bytes, for reading and writing. Every
    /// probe starts switched on (the kernel zeroes a new array).
    pub fn map(fd: BorrowedFd<'_>, cpus: usize) -> io::Result<Self> {
        let words = slots(cpus).ok_or_else(|| io::Error::other("too many CPUs"))? as usize;
        let len = words * std::mem::size_of::<u64>();
        // SAFETY: a fresh shared mapping of the map's data, at an address
        // the kernel picks; the kernel refuses a length beyond the array.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let base =
            NonNull::new(p.cast::<u64>()).ok_or_else(|| io::Error::other("mmap gave null"))?;
        Ok(Self { base, len, cpus })
    }

    fn slot(&self, i: usize) -> &AtomicU64 {
        debug_assert!(i < (PROBE_SWITCH_ROWS as usize + self.cpus) * MAX_PROBES as usize);
        // SAFETY: `i` is within the mapping (the switch rows and `cpus`
        // rows of MAX_PROBES words; callers index rows below those and ids
        // below MAX_PROBES), which is 8-aligned (page-aligned) and lives as
        // long as `self`; the kernel and the programs only ever change it
        // with 8-byte atomic adds, and the tracer with 8-byte stores.
        unsafe { AtomicU64::from_ptr(self.base.as_ptr().add(i)) }
    }

    /// Hits of probes `0..n`, summed over CPUs.
    #[must_use]
    pub fn sums(&self, n: u32) -> Vec<u64> {
        let first = slot_of(PROBE_SWITCH_ROWS, 0);
        sum_rows(self.cpus, n, |i| {
            self.slot(first + i).load(Ordering::Relaxed)
        })
    }

    /// Counts of row `row` for probes `0..n`.
    fn row(&self, row: u32, n: u32) -> Vec<u64> {
        (0..n.min(MAX_PROBES))
            .map(|id| self.slot(slot_of(row, id)).load(Ordering::Relaxed))
            .collect()
    }

    /// Runs of probes `0..n` that found their switch off (see
    /// [`HitCounts::switch_off`]), since they were registered.
    #[must_use]
    pub fn off_runs(&self, n: u32) -> Vec<u64> {
        self.row(PROBE_OFF_RUNS_ROW, n)
    }

    /// Runs of probes `0..n` that found their group's grant spent
    /// ([`HitCounts::grant`]), since they were registered.
    #[must_use]
    pub fn denied(&self, n: u32) -> Vec<u64> {
        self.row(PROBE_DENIED_ROW, n)
    }

    /// Sets the grant in slot `slot` ([`tracer_common::ProbeSpec::grant`]
    /// minus one): `runs` more full runs for its group, counted down by the
    /// programs (0: none, every run returns at once; at least
    /// [`tracer_common::GRANT_UNBOUNDED`], as `u64::MAX` is: unbounded,
    /// not counted down).
    pub fn grant(&self, slot: u32, runs: u64) {
        if slot < MAX_PROBES {
            let runs = runs.min(i64::MAX as u64);
            self.slot(slot_of(PROBE_GRANT_ROW, slot))
                .store(runs, Ordering::Relaxed);
        }
    }

    /// Switches probe `id`'s program off (`true`: every run returns at
    /// once, counted apart, before its link is closed) or on again (before
    /// its link is attached again).
    pub fn switch_off(&self, id: u32, off: bool) {
        if id < MAX_PROBES {
            self.slot(slot_of(PROBE_OFF_ROW, id))
                .store(u64::from(off), Ordering::Relaxed);
        }
    }

    /// Sets probe `id`'s counts to zero on every CPU and switches it on
    /// (its links are closed: nothing adds to it meanwhile; the id is
    /// handed out again).
    pub fn zero(&self, id: u32) {
        if id >= MAX_PROBES {
            return;
        }
        self.switch_off(id, false);
        for row in [PROBE_OFF_RUNS_ROW, PROBE_GRANT_ROW, PROBE_DENIED_ROW] {
            self.slot(slot_of(row, id)).store(0, Ordering::Relaxed);
        }
        for row in 0..self.cpus {
            self.slot(slot_of(PROBE_SWITCH_ROWS + row as u32, id))
                .store(0, Ordering::Relaxed);
        }
    }
}

impl Drop for HitCounts {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `map`, unmapped once.
        unsafe {
            libc::munmap(self.base.as_ptr().cast(), self.len);
        }
    }
}

/// The probe hit counts, readable from any thread.
#[derive(Debug)]
pub struct HitsReader {
    counts: std::sync::Arc<HitCounts>,
    /// Probes registered so far (the tracer's high-water id).
    n: std::sync::Arc<std::sync::atomic::AtomicU32>,
}

impl HitsReader {
    pub(super) fn new(
        counts: std::sync::Arc<HitCounts>,
        n: std::sync::Arc<std::sync::atomic::AtomicU32>,
    ) -> Self {
        Self { counts, n }
    }

    /// Hits per probe id, summed over CPUs (empty while no probe is
    /// registered).
    #[must_use]
    pub fn read(&self) -> Vec<u64> {
        self.counts
            .sums(self.n.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Runs per probe id that found the probe switched off
    /// ([`ProbeSwitch`]).
    #[must_use]
    pub fn off_runs(&self) -> Vec<u64> {
        self.counts
            .off_runs(self.n.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Runs per probe id that found their group's grant spent
    /// ([`ProbeSwitch::grant`]).
    #[must_use]
    pub fn denied(&self) -> Vec<u64> {
        self.counts
            .denied(self.n.load(std::sync::atomic::Ordering::Relaxed))
    }
}

/// The probes' off switches, for the thread that closes their links: a
/// probe switched off returns from its program at once, before anything is
/// counted, read or sent, while the kernel removes its breakpoints. Also the
/// groups' grants of full runs, which that thread sets at each check.
#[derive(Debug, Clone)]
pub struct ProbeSwitch(std::sync::Arc<HitCounts>);

impl ProbeSwitch {
    pub(super) fn new(counts: std::sync::Arc<HitCounts>) -> Self {
        Self(counts)
    }

    /// Switches probe `id` off (`true`) or on.
    pub fn set(&self, id: u32, off: bool) {
        self.0.switch_off(id, off);
    }

    /// Grants the group of grant slot `slot` `runs` more full runs
    /// ([`tracer_common::ProbeSpec::grant`]).
    pub fn grant(&self, slot: u32, runs: u64) {
        self.0.grant(slot, runs);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_summed_per_id() {
        // Two CPUs: id 0 hit 1 + 10 times, id 2 hit 3 + 30 times; id 3 is
        // beyond n and left out.
        let mut data = vec![0u64; 2 * MAX_PROBES as usize];
        let m = MAX_PROBES as usize;
        data[0] = 1;
        data[m] = 10;
        data[2] = 3;
        data[m + 2] = 30;
        data[3] = 99;
        assert_eq!(sum_rows(2, 3, |i| data[i]), vec![11, 0, 33]);
        // n past the array's ids is clamped.
        assert_eq!(sum_rows(1, MAX_PROBES + 5, |i| data[i]).len(), m);
    }

    #[test]
    fn slot_count_checked() {
        assert_eq!(slots(2), Some((2 + PROBE_SWITCH_ROWS) * MAX_PROBES));
        assert_eq!(slots(usize::MAX), None);
    }
}
