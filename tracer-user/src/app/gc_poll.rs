//! `app::gc_poll`: GC cycles read from the runtime's own counters instead
//! of a probe.
//!
//! `runtime.gcSweep`, probed, trapped the target once per GC cycle: on a
//! service running 400 cycles a second that alone was 0.2 % of one CPU,
//! and it was never paused. Where `memstats.numgc` can be located (every
//! fixture binary, stripped and PIE included), the probe is not attached:
//! the tracer reads the counter (with `numforcedgc` after it and
//! `gcController.heapMarked`) in one `process_vm_readv` at the turns of
//! its loop: while a sample could start, every [`MIN_POLL`] to
//! [`READY_MAX_POLL`] (the loop wakes for it); once in the
//! [`READY_MAX_POLL`] before (so that the cycle the sample takes at the
//! gap's end is dated by a recent read, not by the last slow one, too old
//! to sample, which would leave a timer sample); otherwise every
//! [`MAX_POLL`]. A cycle found is dated by the read before it, the earliest
//! it may have ended, so that one that ended while the sampler waited out
//! its gap is too old to sample (its maps have moved on since), as a
//! probe's event read late would be. A new value is a cycle seen, numbered as the runtime
//! numbers it. The reads cost the tracer's CPU (debited like the rest of
//! its work) and nothing in the target.
use std::time::{Duration, Instant};

use super::clock::SampleClock;
use crate::sample::Memory;

/// Shortest time between two reads of the counters.
pub(super) const MIN_POLL: Duration = Duration::from_millis(20);

/// Longest time between two reads while a sample could start: well under
/// the 150 ms after which a cycle is too old to sample
/// (`clock::MAX_SAMPLE_LAG_NS`), since a cycle found by a read is dated
/// by the read before it (it may have ended just after that one).
pub(super) const READY_MAX_POLL: Duration = Duration::from_millis(100);

/// Time between two reads otherwise (the loop does not wake for them).
pub(super) const MAX_POLL: Duration = Duration::from_secs(1);

/// How often the counters are read at a turn of the loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Pace {
    /// A sample could start: at the cycles' pace (the loop wakes for it).
    Cycles,
    /// A sample could start within [`READY_MAX_POLL`]: one read in that
    /// time (the loop wakes for it), so that the cycle found at the gap's
    /// end is dated by a recent read, not by the last slow one.
    Lead,
    /// Otherwise: every [`MAX_POLL`] (the loop does not wake for it).
    Idle,
}

impl Pace {
    /// The pace for a sample clock whose gap ends in `gap_left`, with the
    /// lead before it `lead_left` (`None`: a sample is under way).
    pub(super) fn of(lead_left: Option<Duration>, gap_left: Duration) -> Self {
        match lead_left {
            Some(Duration::ZERO) if gap_left.is_zero() => Self::Cycles,
            Some(Duration::ZERO) => Self::Lead,
            _ => Self::Idle,
        }
    }

    /// The pace at `now` for the sample clock `clock`, with the time until
    /// its lead starts (`None`: a sample is under way).
    pub(super) fn at(clock: &SampleClock, now: Instant) -> (Self, Option<Duration>) {
        let lead_left = clock.poll_lead_left(now, READY_MAX_POLL);
        (Self::of(lead_left, clock.gap_left(now)), lead_left)
    }
}

/// What one read found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Counters {
    /// When the read before it was made (`None`: the first read): the
    /// earliest the newest cycle may have ended.
    pub(super) since: Option<Instant>,
    /// `memstats.numgc`: cycles completed.
    pub(super) numgc: u32,
    /// `memstats.numforcedgc`, the field after it.
    pub(super) numforcedgc: u32,
    /// `gcController.heapMarked` (`None`: not located or not read).
    pub(super) heap_marked: Option<u64>,
}

/// Where the counters are, and what was read last. Pure but for [`Self::read`].
#[derive(Debug, Clone)]
pub(super) struct GcPoll {
    /// `memstats.numgc` (load bias applied).
    numgc_addr: u64,
    /// `gcController.heapMarked` (0: not located).
    heap_marked_addr: u64,
    last_numgc: Option<u32>,
    last_read: Option<Instant>,
    /// When the counter last moved (or reading started).
    last_cycle_at: Instant,
    /// Reads made, and reads that failed.
    pub(super) reads: u64,
    pub(super) failed: u64,
}

impl GcPoll {
    pub(super) fn new(numgc_addr: u64, heap_marked_addr: u64, now: Instant) -> Self {
        Self {
            numgc_addr,
            heap_marked_addr,
            last_numgc: None,
            last_read: None,
            last_cycle_at: now,
            reads: 0,
            failed: 0,
        }
    }

    /// Time between reads while a sample could start: an eighth of the
    /// time since the last cycle, so that a program running many cycles a
    /// second is read often and a quieter one less, within
    /// [`MIN_POLL`]..[`READY_MAX_POLL`].
    fn every(&self, now: Instant) -> Duration {
        (now.saturating_duration_since(self.last_cycle_at) / 8).clamp(MIN_POLL, READY_MAX_POLL)
    }

    /// Whether a read is due at a turn of the loop, at `pace`
    /// (with many processes traced the loop turns often, and most of them
    /// wait out the gap after a sample).
    pub(super) fn due(&self, now: Instant, pace: Pace) -> bool {
        let every = match pace {
            Pace::Cycles => self.every(now),
            Pace::Lead => READY_MAX_POLL,
            Pace::Idle => MAX_POLL,
        };
        self.last_read
            .is_none_or(|t| now.saturating_duration_since(t) >= every)
    }

    /// Whether a read is due for a count that must be current (a
    /// finalizer's cycle): when the last read is [`MIN_POLL`] old or more.
    pub(super) fn stale(&self, now: Instant) -> bool {
        self.last_read
            .is_none_or(|t| now.saturating_duration_since(t) >= MIN_POLL)
    }

    /// How long the loop may sleep before the next read at `pace` (`None`:
    /// the sample clock wakes it).
    pub(super) fn wait(&self, now: Instant, pace: Pace) -> Option<Duration> {
        let every = match pace {
            Pace::Cycles => self.every(now),
            Pace::Lead => READY_MAX_POLL,
            Pace::Idle => return None,
        };
        Some(self.last_read.map_or(Duration::ZERO, |t| {
            every.saturating_sub(now.saturating_duration_since(t))
        }))
    }

    /// How long the loop may sleep before the next read for `clock`: until
    /// the read due at the cycles' or the lead's pace, or else until the
    /// lead starts (`None`: the sample clock wakes it).
    pub(super) fn wake(&self, clock: &SampleClock, now: Instant) -> Option<Duration> {
        match Pace::at(clock, now) {
            (Pace::Idle, lead_left) => lead_left,
            (pace, _) => self.wait(now, pace),
        }
    }

    /// Reads the counters at `now`: `Some` when they show a cycle not seen
    /// before (or at the first read, where counting starts).
    pub(super) fn read(&mut self, mem: &Memory, now: Instant) -> Option<Counters> {
        let mut regions = vec![(self.numgc_addr, 8)];
        if self.heap_marked_addr != 0 {
            regions.push((self.heap_marked_addr, 8));
        }
        let mut buf = Vec::new();
        let ok = mem.read_flat(&regions, &mut buf);
        let c = ok.first().copied().unwrap_or(false).then(|| {
            let word = |at: usize| u64::from_le_bytes(buf[at..at + 8].try_into().unwrap_or([0; 8]));
            let n = word(0);
            Counters {
                since: None,
                numgc: n as u32,
                numforcedgc: (n >> 32) as u32,
                heap_marked: (ok.get(1).copied().unwrap_or(false)).then(|| word(8)),
            }
        });
        self.on_read(now, c)
    }

    /// [`Self::read`]'s decision, on what was read (`None`: the read failed).
    pub(super) fn on_read(&mut self, now: Instant, c: Option<Counters>) -> Option<Counters> {
        let since = self.last_read.replace(now);
        self.reads += 1;
        let Some(c) = c else {
            self.failed += 1;
            return None;
        };
        if self.last_numgc == Some(c.numgc) {
            return None;
        }
        self.last_numgc = Some(c.numgc);
        self.last_cycle_at = now;
        Some(Counters { since, ..c })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(numgc: u32) -> Option<Counters> {
        Some(Counters {
            since: None,
            numgc,
            numforcedgc: 0,
            heap_marked: Some(1 << 20),
        })
    }

    /// The first read is a cycle (where counting starts); then only a
    /// counter that moved is; a failed read is none and is counted.
    #[test]
    fn a_cycle_is_a_counter_that_moved() {
        let t = Instant::now();
        let mut p = GcPoll::new(0x1000, 0, t);
        let at = |ms: u64| t + Duration::from_millis(ms);
        assert_eq!(p.on_read(t, c(7)), c(7));
        assert_eq!(p.on_read(at(10), c(7)), None);
        assert_eq!(p.on_read(at(20), None), None);
        // Dated by the read before it: it may have ended just after.
        let found = p.on_read(at(30), c(9)).unwrap();
        assert_eq!((found.numgc, found.since), (9, Some(at(20))));
        assert_eq!((p.reads, p.failed), (4, 1));
    }

    /// Reads come often while cycles do, rarely when they stop, and wake
    /// the loop only when a sample could start.
    #[test]
    fn reads_follow_the_cycles_pace() {
        let t = Instant::now();
        let mut p = GcPoll::new(0x1000, 0, t);
        assert!(p.due(t, Pace::Idle));
        assert_eq!(p.wait(t, Pace::Cycles), Some(Duration::ZERO));
        p.on_read(t, c(1));
        // Just after a cycle: every MIN_POLL while a sample could start,
        // else every MAX_POLL.
        assert!(!p.due(t + Duration::from_millis(10), Pace::Cycles));
        assert!(p.due(t + MIN_POLL, Pace::Cycles));
        assert!(!p.due(t + MIN_POLL, Pace::Idle));
        assert!(p.due(t + MAX_POLL, Pace::Idle));
        assert_eq!(
            p.wait(t + Duration::from_millis(5), Pace::Cycles),
            Some(MIN_POLL - Duration::from_millis(5))
        );
        assert_eq!(p.wait(t, Pace::Idle), None);
        // A count that must be current is read again after MIN_POLL,
        // whether a sample could start or not.
        assert!(!p.stale(t + Duration::from_millis(10)));
        assert!(p.stale(t + MIN_POLL));
        // No cycle for 400 ms: about every 57 ms (an eighth of the 457 ms
        // since the cycle); for a minute: every READY_MAX_POLL.
        let later = t + Duration::from_millis(400);
        p.on_read(later, c(1));
        assert!(!p.due(later + Duration::from_millis(56), Pace::Cycles));
        assert!(p.due(later + Duration::from_millis(58), Pace::Cycles));
        let idle = t + Duration::from_secs(60);
        p.on_read(idle, c(1));
        assert!(!p.due(idle + Duration::from_millis(99), Pace::Cycles));
        assert!(p.due(idle + READY_MAX_POLL, Pace::Cycles));
        // In the lead before a gap's end: one read in READY_MAX_POLL,
        // whatever the cycles' pace.
        p.on_read(idle, c(2));
        assert!(!p.due(idle + 3 * MIN_POLL, Pace::Lead));
        assert!(p.due(idle + READY_MAX_POLL, Pace::Lead));
        assert_eq!(
            p.wait(idle + MIN_POLL, Pace::Lead),
            Some(READY_MAX_POLL - MIN_POLL)
        );
    }

    /// The pace follows the sample clock: the cycles' once the gap is over,
    /// the lead's within READY_MAX_POLL of its end, slow otherwise.
    #[test]
    fn the_pace_follows_the_gap() {
        let ms = Duration::from_millis;
        assert_eq!(Pace::of(Some(Duration::ZERO), Duration::ZERO), Pace::Cycles);
        assert_eq!(Pace::of(Some(Duration::ZERO), ms(60)), Pace::Lead);
        assert_eq!(Pace::of(Some(ms(400)), ms(500)), Pace::Idle);
        assert_eq!(Pace::of(None, Duration::ZERO), Pace::Idle);
    }
}
