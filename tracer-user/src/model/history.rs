//! `model::history`: each map's samples, compactly.
//!
//! Every tracked map is read at the same moments (a GC cycle, or a timer
//! sample), so when a sample was taken is stored once per moment in
//! [`Points`], and a map's sample holds the moment's sequence number and
//! its length. A map keeps the last [`WINDOW`] samples inline (what a
//! verdict looks at): lengths as 32-bit offsets from a base, moments as
//! 16-bit distances (the span of [`MAX_POINTS`]), capacities as "same as
//! the latest" bits. Only a growing or
//! bloated map keeps more (up to [`MAX_SAMPLES`]), in a box, and at most
//! [`MAX_LONG_HISTORIES`] maps have one.
use std::collections::VecDeque;

use super::{SampleAt, WINDOW};

/// Samples kept per growing or bloated map (the window included).
pub const MAX_SAMPLES: usize = 128;

/// Most maps that keep more than the window: a target whose every map
/// grows gets long histories for this many (16 bytes a sample: 4 MiB at
/// most), the others keep the window and the report says so.
pub const MAX_LONG_HISTORIES: usize = 2048;

/// Moments remembered. At the fastest pace (one sample every 100 ms) that
/// is 1.8 hours; a map not read for that long (its reads skipped) drops
/// the samples older than that.
pub const MAX_POINTS: usize = 1 << 16;

/// When the samples were taken, by sequence number.
#[derive(Debug, Default)]
pub struct Points {
    first_seq: u32,
    points: VecDeque<SampleAt>,
}

impl Points {
    /// The sequence number of `at`: the latest one when `at` is the same
    /// moment, else a new one.
    pub fn seq(&mut self, at: SampleAt) -> u32 {
        if self.points.back() == Some(&at) {
            return self.last_seq();
        }
        if self.points.len() >= MAX_POINTS {
            self.points.pop_front();
            self.first_seq = self.first_seq.wrapping_add(1);
        }
        self.points.push_back(at);
        self.last_seq()
    }

    fn last_seq(&self) -> u32 {
        self.first_seq
            .wrapping_add(self.points.len() as u32)
            .wrapping_sub(1)
    }

    /// The moment of `seq`, if still remembered.
    #[must_use]
    pub fn get(&self, seq: u32) -> Option<SampleAt> {
        self.points
            .get(seq.wrapping_sub(self.first_seq) as usize)
            .copied()
    }

    /// Whether `seq` is still remembered.
    #[must_use]
    pub fn holds(&self, seq: u32) -> bool {
        (seq.wrapping_sub(self.first_seq) as usize) < self.points.len()
    }
}

/// The last [`WINDOW`] samples of one map, oldest first.
///
/// 72 bytes: lengths as offsets from their smallest, moments as the latest
/// sequence number and the distance from each sample to the next, and
/// whether each sample had the latest capacity (Go maps never shrink: an
/// older capacity is never the latest again, short of a new map, which
/// starts a new history).
#[derive(Debug, Clone, Copy, Default)]
pub struct Window {
    /// Lengths are `base + len_off[i]`.
    base: u64,
    len_off: [u32; WINDOW],
    /// Latest capacity.
    cap_last: u64,
    /// Sequence number of the latest sample.
    seq_last: u32,
    /// `gap[i]`: sequence numbers from sample `i` to sample `i + 1`.
    gap: [u16; WINDOW - 1],
    /// GC cycle of the latest sample (saturating; in what would be
    /// padding).
    cycle: u32,
    /// Bit `i`: sample `i` had the latest capacity.
    cap_same: u8,
    n: u8,
}

/// A sample as a window stores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    /// Sequence number of its moment.
    pub seq: u32,
    /// `len(m)`.
    pub len: u64,
}

impl Window {
    /// Samples held.
    #[must_use]
    pub const fn len(&self) -> usize {
        self.n as usize
    }

    /// No sample.
    #[must_use]
    pub const fn is_empty(&self) -> bool {
        self.n == 0
    }

    fn seq(&self, i: usize) -> u32 {
        let back: u32 = self.gap[i..self.len() - 1]
            .iter()
            .map(|&g| u32::from(g))
            .sum();
        self.seq_last.wrapping_sub(back)
    }

    /// Sample `i`, oldest first.
    #[must_use]
    pub fn get(&self, i: usize) -> Option<Slot> {
        (i < self.len()).then(|| Slot {
            seq: self.seq(i),
            len: self.base + u64::from(self.len_off[i]),
        })
    }

    /// The latest sample.
    #[must_use]
    pub fn last(&self) -> Option<Slot> {
        self.len().checked_sub(1).and_then(|i| self.get(i))
    }

    /// The latest capacity.
    #[must_use]
    pub const fn capacity(&self) -> u64 {
        self.cap_last
    }

    /// GC cycle of the latest sample (for a timer sample: the latest
    /// cycle before it).
    #[must_use]
    pub const fn cycle(&self) -> u32 {
        self.cycle
    }

    /// Sets [`Window::cycle`].
    pub const fn set_cycle(&mut self, cycle: u32) {
        self.cycle = cycle;
    }

    /// Lengths, oldest first, into `out`; returns how many.
    pub fn lens(&self, out: &mut [u64; WINDOW]) -> usize {
        for (o, &d) in out.iter_mut().zip(&self.len_off[..self.len()]) {
            *o = self.base + u64::from(d);
        }
        self.len()
    }

    /// Every sample had the latest capacity.
    #[must_use]
    pub fn capacity_constant(&self) -> bool {
        (0..self.len().saturating_sub(1)).all(|i| self.cap_same & (1 << i) != 0)
    }

    /// Drops the oldest `k` samples.
    fn drop_front(&mut self, k: usize) {
        let n = self.len();
        let k = k.min(n);
        if k == 0 {
            return;
        }
        self.len_off.copy_within(k..n, 0);
        if n > k {
            self.gap.copy_within(k..n - 1, 0);
        }
        self.cap_same >>= k;
        self.n = (n - k) as u8;
    }

    /// Sets the lengths of the samples (oldest first) as offsets from
    /// their smallest: exact while they span less than 2^32 entries (else
    /// clamped; no Go map gets there).
    fn set_lens(&mut self, lens: &[u64]) {
        let base = lens.iter().copied().min().unwrap_or(0);
        for (d, &l) in self.len_off.iter_mut().zip(lens) {
            *d = u32::try_from(l - base).unwrap_or(u32::MAX);
        }
        self.base = base;
    }

    /// Appends a sample; when full, the oldest is returned.
    pub fn push(&mut self, seq: u32, len: u64, capacity: u64) -> Option<Slot> {
        let mut out = None;
        if !self.is_empty() {
            match u16::try_from(seq.wrapping_sub(self.seq_last)) {
                Ok(g) => {
                    if self.len() == WINDOW {
                        out = self.get(0);
                        self.drop_front(1);
                    }
                    self.gap[self.len() - 1] = g;
                }
                // Too far apart: the older samples' moments are forgotten.
                Err(_) => self.n = 0,
            }
        }
        let mut lens = [0u64; WINDOW];
        let n = self.lens(&mut lens);
        lens[n] = len;
        self.set_lens(&lens[..=n]);
        if n > 0 {
            if capacity == self.cap_last {
                self.cap_same |= 1 << (n - 1);
            } else {
                self.cap_same = 0;
            }
        }
        self.cap_same &= !(1 << n);
        self.cap_last = capacity;
        self.seq_last = seq;
        self.n += 1;
        out
    }

    /// Replaces the latest sample (by a newer one of the same GC cycle).
    pub fn replace_last(&mut self, seq: u32, len: u64, capacity: u64) {
        let Some(last) = self.len().checked_sub(1) else {
            return;
        };
        if last > 0 {
            let g = u32::from(self.gap[last - 1]) + seq.wrapping_sub(self.seq_last);
            match u16::try_from(g) {
                Ok(g) => self.gap[last - 1] = g,
                Err(_) => {
                    self.drop_front(last);
                    return self.replace_last(seq, len, capacity);
                }
            }
        }
        self.seq_last = seq;
        let mut lens = [0u64; WINDOW];
        let n = self.lens(&mut lens);
        lens[last] = len;
        self.set_lens(&lens[..n]);
        if capacity != self.cap_last {
            self.cap_same = 0;
        }
        self.cap_last = capacity;
    }

    /// Drops every sample whose moment is no longer remembered.
    pub fn expire(&mut self, points: &Points) {
        let keep = (0..self.len())
            .find(|&i| points.holds(self.seq(i)))
            .unwrap_or(self.len());
        self.drop_front(keep);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(cycle: u64) -> SampleAt {
        SampleAt::gc(cycle)
    }

    /// Samples of the same moment share a number; numbers past the cap are
    /// forgotten oldest first.
    #[test]
    fn points() {
        let mut p = Points::default();
        assert_eq!(p.seq(at(1)), 0);
        assert_eq!(p.seq(at(1)), 0);
        assert_eq!(p.seq(at(2)), 1);
        assert_eq!(p.get(1), Some(at(2)));
        for c in 3..(MAX_POINTS as u64 + 3) {
            p.seq(at(c));
        }
        assert!(!p.holds(0) && !p.holds(1) && p.holds(2));
        assert_eq!(p.get(2), Some(at(3)));
    }

    /// The window keeps the last samples in order, exact lengths whatever
    /// their size, and knows whether the capacity stayed the same.
    #[test]
    fn window() {
        let mut w = Window::default();
        assert!(w.push(0, 3_000_000_000, 64).is_none());
        assert!(w.push(1, 10, 64).is_none());
        assert_eq!(w.get(0).map(|s| s.len), Some(3_000_000_000));
        assert_eq!(w.get(1), Some(Slot { seq: 1, len: 10 }));
        assert!(w.capacity_constant());
        for i in 2..WINDOW as u32 {
            w.push(i * 3, u64::from(i), 64);
        }
        assert_eq!(w.len(), WINDOW);
        assert_eq!(w.get(2).map(|s| s.seq), Some(6));
        let out = w.push(100, 7, 128);
        assert_eq!(
            out,
            Some(Slot {
                seq: 0,
                len: 3_000_000_000
            })
        );
        assert_eq!(w.last(), Some(Slot { seq: 100, len: 7 }));
        assert_eq!(w.get(0), Some(Slot { seq: 1, len: 10 }));
        assert!(!w.capacity_constant());
        // Past WINDOW samples at the new capacity, constant again.
        for i in 0..WINDOW as u32 - 1 {
            w.push(200 + i, 7, 128);
        }
        assert!(w.capacity_constant());
        assert_eq!(w.get(0).map(|s| s.seq), Some(100));
        // Replaced at the same cycle.
        w.replace_last(207, 9, 128);
        assert!(w.capacity_constant());
        assert_eq!(w.last(), Some(Slot { seq: 207, len: 9 }));
        assert_eq!(w.get(w.len() - 2).map(|s| s.seq), Some(205));
        w.replace_last(207, 9, 256);
        assert!(!w.capacity_constant());
        // A moment too far from the last: the older ones are forgotten.
        w.push(207 + 70_000, 1, 256);
        assert_eq!(w.len(), 1);
        assert_eq!(
            w.last(),
            Some(Slot {
                seq: 70_207,
                len: 1
            })
        );
    }

    /// Samples whose moments are forgotten are dropped.
    #[test]
    fn expire() {
        let mut p = Points::default();
        let mut w = Window::default();
        let s = p.seq(at(1));
        w.push(s, 1, 8);
        for c in 2..(MAX_POINTS as u64 + 2) {
            p.seq(at(c));
        }
        let s = p.seq(at(0));
        w.push(s, 2, 8);
        w.expire(&p);
        assert_eq!(w.len(), 1);
        assert_eq!(w.get(0), Some(Slot { seq: s, len: 2 }));
    }
}
