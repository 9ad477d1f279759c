//! The tail of a closed probe group: its breakpoints that are still in the
//! target's code, and how long such tails last ([`TailLength`]), from
//! which the governor's close reserve is set
//! ([`crate::governor::Reserve`]).
use std::time::Instant;

use crate::sample::Memory;

/// Most CPUs a detaching group is assumed to cost (the target's threads
/// trapping at once).
pub(super) const MAX_TAIL_RATE: f64 = 2.0;

/// The breakpoints of a detached group that are still in the target's code.
///
/// When a window closes, the program stops running at once but the kernel
/// removes each breakpoint only when it reaches that link (see
/// [`crate::bpf::close_links`]); until then every call still traps, costing
/// the target ~0.8 µs. Each such call is counted in the kernel (its probe is
/// switched off) and debited at the trap's price ([`super::Budget::check`]).
/// How long the tail lasts is measured, not guessed: the instruction bytes
/// at each probe address are read back from the target (a uprobe is a
/// breakpoint written into the target's copy of the page) until the
/// original bytes are back.
#[derive(Debug, Default)]
pub(super) struct Tail {
    /// Address, original bytes and cost rate (CPUs: its calls over the
    /// last check before the close, at the trap's price, as no program
    /// runs any more) of each breakpoint not yet removed: what the close
    /// is expected to cost while it is still there.
    pub(super) sites: Vec<(u64, [u8; 4], f64)>,
    /// When the links began to close.
    pub(super) since: Option<Instant>,
    /// Cost rate of all its sites at the close (CPUs).
    pub(super) rate_at_close: f64,
    /// Debited for it so far (seconds of target CPU: its calls as counted
    /// in the kernel, at the trap's price).
    pub(super) debited: f64,
}

impl Tail {
    /// A tail of `sites`, starting now.
    pub(super) fn new(sites: Vec<(u64, [u8; 4], f64)>) -> Self {
        let mut t = Self {
            sites,
            since: Some(Instant::now()),
            rate_at_close: 0.0,
            debited: 0.0,
        };
        t.rate_at_close = t.rate();
        t
    }

    /// Drops the sites whose original bytes are back (or that can no
    /// longer be read: the process is gone). True while some remain.
    pub(super) fn poll(&mut self, mem: &Memory) -> bool {
        self.sites.retain(|&(addr, orig, _)| {
            let mut b = [0u8; 4];
            mem.read(addr, &mut b) && b != orig
        });
        !self.sites.is_empty()
    }

    /// Cost rate (CPUs) of the breakpoints still there.
    pub(super) fn rate(&self) -> f64 {
        self.sites
            .iter()
            .map(|s| s.2)
            .sum::<f64>()
            .min(MAX_TAIL_RATE)
    }
}

/// A tail's length assumed before any was measured (seconds at the rate of
/// the close): the breakpoints of a closed window were measured gone 10-40
/// ms after the close on this kind of VM, the busiest first.
pub const TAIL_PRIOR_S: f64 = 0.02;

/// Weight of each measured tail in [`TailLength`]'s mean.
pub const TAIL_WEIGHT: f64 = 0.25;

/// Least cost rate at a close (CPUs) whose tail is measured: below it the
/// ratio of debit to rate says little.
pub const TAIL_MIN_RATE: f64 = 1e-3;

/// How long a group's tails last, in seconds at the group's trap rate at
/// its close (its calls at the trap's price): a moving mean of
/// `debited / rate_at_close` over its closes. The next close's reserve is
/// the group's trap rate times this.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TailLength(f64);

impl Default for TailLength {
    fn default() -> Self {
        Self(TAIL_PRIOR_S)
    }
}

impl TailLength {
    /// A tail is over: `debited` seconds of target CPU for a group that
    /// cost `rate_at_close` CPUs when it closed.
    pub fn observe(&mut self, debited: f64, rate_at_close: f64) {
        if rate_at_close >= TAIL_MIN_RATE && debited.is_finite() && debited >= 0.0 {
            let s = (debited / rate_at_close).min(1.0);
            self.0 = (1.0 - TAIL_WEIGHT) * self.0 + TAIL_WEIGHT * s;
        }
    }

    /// Seconds.
    #[must_use]
    pub fn seconds(self) -> f64 {
        self.0
    }

    /// What closing a group that costs `rate` CPUs now will cost after the
    /// close (seconds of target CPU).
    #[must_use]
    pub fn reserve(self, rate: f64) -> f64 {
        if rate.is_finite() && rate > 0.0 {
            rate.min(MAX_TAIL_RATE) * self.0
        } else {
            0.0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_at_the_prior_and_follows_measured_tails() {
        let mut l = TailLength::default();
        assert_eq!(l.seconds(), TAIL_PRIOR_S);
        // A window closed at 1 CPU whose breakpoints took 40 ms to go.
        for _ in 0..20 {
            l.observe(0.04, 1.0);
        }
        assert!((l.seconds() - 0.04).abs() < 1e-3, "{l:?}");
        // One 10 ms tail moves it a quarter of the way.
        l.observe(0.01, 1.0);
        let want = 0.75 * l_after_20() + 0.25 * 0.01;
        assert!((l.seconds() - want).abs() < 1e-6, "{l:?} {want}");
    }

    fn l_after_20() -> f64 {
        let mut l = TailLength::default();
        for _ in 0..20 {
            l.observe(0.04, 1.0);
        }
        l.seconds()
    }

    #[test]
    fn idle_closes_and_bad_figures_are_ignored() {
        let mut l = TailLength::default();
        l.observe(0.5, 0.0);
        l.observe(0.5, TAIL_MIN_RATE / 2.0);
        l.observe(f64::NAN, 1.0);
        l.observe(-1.0, 1.0);
        assert_eq!(l, TailLength::default());
        // A tail that never ended is counted as a second at most.
        l.observe(100.0, 1.0);
        assert!(l.seconds() <= 1.0);
    }

    #[test]
    fn reserve_is_the_rate_over_the_tail() {
        let mut l = TailLength::default();
        l.observe(0.03, 1.0);
        let s = l.seconds();
        assert!((l.reserve(0.5) - 0.5 * s).abs() < 1e-12);
        assert!((l.reserve(10.0) - MAX_TAIL_RATE * s).abs() < 1e-12);
        assert_eq!(l.reserve(0.0), 0.0);
        assert_eq!(l.reserve(f64::NAN), 0.0);
    }
}
