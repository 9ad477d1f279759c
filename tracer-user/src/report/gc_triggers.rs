//! What started the GC cycles, counted from the runtime's own counters.
use serde::Serialize;

/// What started the GC cycles completed while traced, from the runtime's own
/// counters at each marked event (`memstats.numgc` and `numforcedgc`: see
/// [`GcCauses`]). A program whose cycles are all periodic allocates little:
/// its samples come from the timer (`overhead.timer_samples`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct GcTriggers {
    /// The heap reached its goal (the cycles neither forced nor periodic).
    pub heap: u64,
    /// No cycle for two minutes (`forcegcperiod`): a cycle not forced that
    /// was marked at least two minutes after the one before it (or after
    /// attach).
    pub periodic: u64,
    /// `runtime.GC` or `debug.FreeOSMemory` (`memstats.numforcedgc`).
    pub forced: u64,
}

impl GcTriggers {
    pub(super) fn total(&self) -> u64 {
        self.heap + self.periodic + self.forced
    }
}

/// The runtime's two-minute period for a forced cycle when none ran
/// (`forcegcperiod`, `go1.19:src/runtime/proc.go` to 1.27).
pub const FORCE_GC_PERIOD_NS: u64 = 120_000_000_000;

/// Counts what started the GC cycles from the marked events. Pure.
///
/// At a cycle's marked event (`gcSweep`) the runtime has not yet counted
/// that cycle in `memstats.numgc` or `numforcedgc`: it does so later in
/// `gcMarkTermination`. So the event of cycle N+1 says whether cycle N was
/// forced, and the counts cover the cycles from the first marked event seen
/// to the one before the last. A cycle that no marked event was seen for
/// (a lost event) is counted from the counters all the same.
#[derive(Debug, Clone, Copy)]
pub struct GcCauses {
    /// When tracing started (`CLOCK_MONOTONIC` ns, as the events' times).
    attached_ns: u64,
    /// The last marked event with known counters: its `numgc` and
    /// `numforcedgc`, and whether its cycle came after a two-minute gap.
    last: Option<(u32, u32, bool)>,
    /// Time of the last marked event, known counters or not.
    last_ns: Option<u64>,
    counts: GcTriggers,
}

impl GcCauses {
    /// Nothing counted; tracing started at `attached_ns`.
    #[must_use]
    pub fn new(attached_ns: u64) -> Self {
        Self {
            attached_ns,
            last: None,
            last_ns: None,
            counts: GcTriggers::default(),
        }
    }

    /// A cycle's marked event at `ts_ns`, with the counters it read
    /// (`u32::MAX`: unknown).
    pub fn on_marked(&mut self, ts_ns: u64, numgc: u32, numforcedgc: u32) {
        let since = self.last_ns.unwrap_or(self.attached_ns);
        let after_gap = ts_ns.saturating_sub(since) >= FORCE_GC_PERIOD_NS;
        self.last_ns = Some(ts_ns);
        if numgc == u32::MAX || numforcedgc == u32::MAX {
            return;
        }
        // Only when exactly the previous event's cycle completed is it
        // known whether that one was forced, and its gap is the one that
        // counts.
        if let Some((_, _, gap0)) = self.last {
            self.count_since_last(numgc, numforcedgc, gap0);
        }
        self.last = Some((numgc, numforcedgc, after_gap));
    }

    /// Counts the cycles completed since the last counters (none at the
    /// first): forced ones from `numforcedgc`, one alone that came after a
    /// two-minute `gap` as periodic, the rest as heap cycles.
    fn count_since_last(&mut self, numgc: u32, numforcedgc: u32, gap: bool) {
        let Some((n0, f0, _)) = self.last else {
            return;
        };
        let done = u64::from(numgc.wrapping_sub(n0));
        let forced = u64::from(numforcedgc.wrapping_sub(f0)).min(done);
        let periodic = u64::from(done == 1 && forced == 0 && gap);
        self.counts.forced += forced;
        self.counts.periodic += periodic;
        self.counts.heap += done - forced - periodic;
    }

    /// The counters as read by the tracer at `ts_ns` (no probe: see
    /// `app::gc_poll`), after cycle `numgc` completed: unlike a marked
    /// event's, they count the cycle just seen, so its own gap (since the
    /// cycle before it, or attach) says whether it was periodic. Called at
    /// the first read (the counters then only set where counting starts)
    /// and whenever `numgc` moved.
    pub fn on_polled(&mut self, ts_ns: u64, numgc: u32, numforcedgc: u32) {
        let since = self.last_ns.unwrap_or(self.attached_ns);
        let after_gap = ts_ns.saturating_sub(since) >= FORCE_GC_PERIOD_NS;
        let first = self.last.is_none();
        self.last_ns = Some(ts_ns);
        self.count_since_last(numgc, numforcedgc, after_gap);
        if first {
            // Cycles before attach are not ours: the gap of the next one
            // counts from attach.
            self.last_ns = Some(self.attached_ns.min(ts_ns));
        }
        self.last = Some((numgc, numforcedgc, after_gap));
    }

    /// The counts so far.
    #[must_use]
    pub fn counts(&self) -> GcTriggers {
        self.counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    /// The counters at cycle N+1's event say what cycle N was: forced
    /// cycles come from `numforcedgc`, the others are heap cycles.
    #[test]
    fn forced_and_heap_cycles() {
        let mut c = GcCauses::new(0);
        // Cycles 10..14 marked one second apart; 11 and 13 forced.
        for (i, (numgc, forced)) in [(9, 4), (10, 4), (11, 5), (12, 5), (13, 6)]
            .into_iter()
            .enumerate()
        {
            c.on_marked((i as u64 + 1) * S, numgc, forced);
        }
        // Cycles 10 to 13 completed between the first event and the last.
        assert_eq!(
            c.counts(),
            GcTriggers {
                heap: 2,
                periodic: 0,
                forced: 2
            }
        );
    }

    /// A cycle marked two minutes after the one before (or after attach)
    /// and not forced is periodic; a forced one after the same gap is not.
    #[test]
    fn periodic_cycles() {
        let mut c = GcCauses::new(0);
        c.on_marked(121 * S, 0, 0); // cycle 1: two minutes after attach
        c.on_marked(122 * S, 1, 0); // cycle 2
        c.on_marked(300 * S, 2, 0); // cycle 3: after a gap, then forced
        c.on_marked(301 * S, 3, 1);
        assert_eq!(
            c.counts(),
            GcTriggers {
                heap: 1,
                periodic: 1,
                forced: 1
            }
        );
    }

    /// Read counters count the cycle just seen: the first read only sets
    /// where counting starts; a cycle seen alone two minutes after the one
    /// before is periodic unless forced; cycles seen together are heap or
    /// forced ones.
    #[test]
    fn polled_counters() {
        let mut c = GcCauses::new(S);
        c.on_polled(2 * S, 40, 3); // at attach: cycles before it not counted
        assert_eq!(c.counts(), GcTriggers::default());
        c.on_polled(3 * S, 41, 3); // a heap cycle
        c.on_polled(4 * S, 44, 4); // three more, one forced
        c.on_polled(200 * S, 45, 4); // alone after a gap: periodic
        c.on_polled(400 * S, 46, 5); // after a gap, forced
        assert_eq!(
            c.counts(),
            GcTriggers {
                heap: 3,
                periodic: 1,
                forced: 2
            }
        );
        // A first cycle two minutes after attach is periodic too.
        let mut p = GcCauses::new(0);
        p.on_polled(S, 7, 0);
        p.on_polled(121 * S, 8, 0);
        assert_eq!(p.counts().periodic, 1);
    }

    /// Unknown counters count nothing but still mark the time; a missed
    /// event's cycles are counted from the counters, none of them as
    /// periodic; a counter that wraps counts on.
    #[test]
    fn unknown_missed_and_wrapped() {
        let mut c = GcCauses::new(0);
        c.on_marked(S, u32::MAX, u32::MAX);
        assert_eq!(c.counts(), GcTriggers::default());
        c.on_marked(200 * S, 7, 1);
        c.on_marked(400 * S, 10, 2); // cycles 8..10: one forced
        assert_eq!(
            c.counts(),
            GcTriggers {
                heap: 2,
                periodic: 0,
                forced: 1
            }
        );
        let mut w = GcCauses::new(0);
        w.on_marked(S, u32::MAX - 1, 5);
        w.on_marked(2 * S, 0, 6);
        assert_eq!(w.counts().total(), 2);
        assert_eq!(w.counts().forced, 1);
    }
}
