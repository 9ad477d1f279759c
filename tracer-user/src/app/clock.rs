//! `app::clock`: when a process is sampled. Pure: GC cycles, read times and
//! the current time in; "sample now", "wait this long" and the counts of
//! cycles left out come out. No I/O, so every rule is unit-tested here.
//!
//! The rules: the newest GC cycle is sampled, never an older one still
//! waiting (the headers read now show the maps as they are now); a cycle
//! whose event is processed more than [`MAX_SAMPLE_LAG_NS`] after it
//! happened is not sampled; a sample starts [`sample_gap`] after the
//! previous one started (paced by the budget); one sample at a time; and
//! when no cycle came for `timer_every`, a timer sample is taken instead.
use std::time::{Duration, Instant};

use crate::model::SampleAt;

/// A GC event processed later than this is not sampled.
pub(super) const MAX_SAMPLE_LAG_NS: u64 = 150_000_000;

/// Shortest time between two samples: a GC-heavy program (hundreds of
/// cycles a second) is sampled at most this often.
pub(super) const MIN_SAMPLE_GAP: Duration = Duration::from_millis(100);

/// A sample's header reads are followed by a pause of at least this many
/// times their length.
pub(super) const SAMPLE_GAP_FACTOR: u32 = 9;

/// Share of the overhead budget the tracer's header reads may take (the
/// governor debits the tracer's CPU with the probes' cost). Samples are
/// what sees a map grow, so they are paced rather than made to wait for
/// credit; the governed probes get what is left, and key reads come last.
pub(super) const HEADER_SHARE: f64 = 0.3;

/// How far the time from which GC cycles wake the loop may drift from the
/// gap's end before it is written again (the two clocks are read a little
/// apart at each loop turn).
const GC_WAKE_SLACK_NS: u64 = 2_000_000;

/// Longest pause between two header samples, unless one sample takes more
/// than a tenth of it.
pub(super) const MAX_SAMPLE_GAP: Duration = Duration::from_secs(10);

/// How long after its start the next sample may start, when its header
/// reads took `took`: paced to [`HEADER_SHARE`] of a budget of `rate` CPUs,
/// within [`MIN_SAMPLE_GAP`]..[`MAX_SAMPLE_GAP`], and never less than ten
/// times `took`.
pub(super) fn sample_gap(took: Duration, rate: f64) -> Duration {
    let base = MIN_SAMPLE_GAP.max(took * (SAMPLE_GAP_FACTOR + 1));
    let r = rate * HEADER_SHARE;
    let paced = if r > 0.0 {
        Duration::from_secs_f64((took.as_secs_f64() / r).min(3600.0))
    } else {
        MAX_SAMPLE_GAP
    };
    paced.min(MAX_SAMPLE_GAP).max(base)
}

/// A sample waiting for the gap after the previous one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Pending {
    /// GC cycle (a timer sample: the latest one seen).
    cycle: u64,
    /// Its GC event's time, or when the timer sample was asked for (ns).
    ts_ns: u64,
    /// It came before the previous sample and its gap were over.
    early: bool,
    /// Taken on the timer, not at a GC cycle.
    timer: bool,
}

/// A sample whose reads are under way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct InFlight {
    pub(super) at: SampleAt,
    /// When its header reads started.
    pub(super) started: Instant,
    /// Age of its GC event when they started (ns).
    pub(super) age_ns: u64,
}

/// The sampling schedule of one process.
#[derive(Debug, Clone)]
pub(super) struct SampleClock {
    /// The budget's rate (share of one CPU): paces the samples.
    rate: f64,
    /// The budget is in debt through the tracer's own work
    /// ([`crate::budget::Budget::holds_samples`], as last read): no sample
    /// starts before [`MAX_SAMPLE_GAP`] has passed since the last, unless
    /// the budget is a whole CPU (no limit).
    in_debt: bool,
    /// Timer samples are taken when no sample came for this long.
    pub(super) timer_every: Duration,
    /// When tracing started (sample times are counted from it).
    started: Instant,
    pending: Option<Pending>,
    /// When the last sample started, and how long its header reads took.
    last: Option<(Instant, Duration)>,
    in_flight: Option<InFlight>,
    /// GC cycles whose event came too late to sample.
    pub(super) late_cycles: u64,
    /// GC cycles left out to bound the tracer's CPU: a newer one came
    /// first, or the gap after the previous sample made it late.
    pub(super) skipped_cycles: u64,
    /// GC cycles sampled.
    pub(super) sampled_cycles: u64,
    /// Timer samples taken.
    pub(super) timer_samples: u64,
}

impl SampleClock {
    pub(super) fn new(rate: f64, timer_every: Duration, started: Instant) -> Self {
        Self {
            rate,
            in_debt: false,
            timer_every,
            started,
            pending: None,
            last: None,
            in_flight: None,
            late_cycles: 0,
            skipped_cycles: 0,
            sampled_cycles: 0,
            timer_samples: 0,
        }
    }

    /// Paces the samples to a budget of `rate` from now on; `in_debt`: its
    /// credit is below zero (what the probes and the tracer cost went over
    /// it) and the tracer's own work is a large part of that, so samples
    /// wait.
    pub(super) fn set_budget(&mut self, rate: f64, in_debt: bool) {
        self.rate = rate;
        self.in_debt = in_debt;
    }

    /// The sample under way, if any.
    pub(super) fn in_flight(&self) -> Option<InFlight> {
        self.in_flight
    }

    /// Time left of the gap after the last sample (zero: one may start):
    /// the header reads' pace ([`sample_gap`]), or [`MAX_SAMPLE_GAP`] while
    /// the budget is in debt.
    pub(super) fn gap_left(&self, now: Instant) -> Duration {
        self.last.map_or(Duration::ZERO, |(start, took)| {
            let gap = if self.in_debt && !crate::governor::lifts_limit(self.rate) {
                MAX_SAMPLE_GAP.max(sample_gap(took, self.rate))
            } else {
                sample_gap(took, self.rate)
            };
            gap.saturating_sub(now.saturating_duration_since(start))
        })
    }

    /// Time until the GC counters should be read at the cycles' pace
    /// (`app::gc_poll`): from `lead` before a sample could start, so that
    /// the cycle it takes was found by a recent read rather than by the
    /// last slow one (too old to sample: a timer sample would be taken
    /// instead). `None` while a sample is under way.
    pub(super) fn poll_lead_left(&self, now: Instant, lead: Duration) -> Option<Duration> {
        self.in_flight
            .is_none()
            .then(|| self.gap_left(now).saturating_sub(lead))
    }

    /// Time until a timer sample is due: `timer_every` after the last
    /// sample started (so a program whose GC runs more often gets none).
    fn timer_left(&self, now: Instant) -> Duration {
        self.last.map_or(Duration::ZERO, |(start, _)| {
            self.timer_every
                .saturating_sub(now.saturating_duration_since(start))
        })
    }

    /// How long the loop may sleep before [`Self::start`] has work: `None`
    /// while a sample is under way (its end wakes the loop).
    pub(super) fn wait(&self, now: Instant) -> Option<Duration> {
        if self.in_flight.is_some() {
            return None;
        }
        // During a gap the loop wakes at its end even with nothing pending:
        // the cycles that came in the gap did not wake it (see
        // [`Self::gc_wake_update`]) and may be waiting in the ring buffer.
        let gap = self.gap_left(now);
        Some(match self.pending {
            None if gap.is_zero() => self.timer_left(now),
            _ => gap,
        })
    }

    /// When GC cycles should wake the loop from now on, given the time
    /// `written` last set in the kernel (on the GC events' clock; `u64::MAX`:
    /// never; 0: always): `Some(t)` when that must change to `t`. A cycle
    /// wakes the loop only when a sample could start on it; while a sample
    /// is under way or its gap runs, the cycles wait in the ring buffer and
    /// the loop reads them when it wakes (at the gap's end at the latest).
    /// The value moves at most twice per sample.
    pub(super) fn gc_wake_update(&self, now: Instant, now_ns: u64, written: u64) -> Option<u64> {
        if self.in_flight.is_some() {
            return (written != u64::MAX).then_some(u64::MAX);
        }
        let gap = self.gap_left(now);
        if gap.is_zero() {
            return (written > now_ns).then_some(now_ns);
        }
        let from = now_ns.saturating_add(u64::try_from(gap.as_nanos()).unwrap_or(u64::MAX));
        (written.abs_diff(from) > GC_WAKE_SLACK_NS).then_some(from)
    }

    /// GC cycle `cycle` ended at `ts_ns` (`ended`: the same moment on the
    /// loop's clock; for a cycle found by reading the counters, the
    /// earliest it may have ended): it replaces any cycle still waiting,
    /// which is then left out. A cycle that ended while a sample was under
    /// way or its gap ran is "early": if it is too old to sample by the
    /// time the gap is over, the gap left it out, not the tracer's delay.
    pub(super) fn on_gc(&mut self, cycle: u64, ts_ns: u64, ended: Instant) {
        if self.pending.is_some_and(|p| !p.timer) {
            self.skipped_cycles += 1;
        }
        self.pending = Some(Pending {
            cycle,
            ts_ns,
            early: self.in_flight.is_some() || !self.gap_left(ended).is_zero(),
            timer: false,
        });
    }

    /// Whether a sample starts now (`now_ns` on the GC events' clock;
    /// `latest_cycle` is the newest cycle seen, for a timer sample). The
    /// caller reads the headers and then calls [`Self::headers_read`].
    pub(super) fn start(
        &mut self,
        now: Instant,
        now_ns: u64,
        latest_cycle: u64,
    ) -> Option<InFlight> {
        if self.in_flight.is_some() {
            return None;
        }
        if self.pending.is_none() && self.timer_left(now).is_zero() {
            self.pending = Some(Pending {
                cycle: latest_cycle,
                ts_ns: now_ns,
                early: false,
                timer: true,
            });
        }
        if self.pending.is_none() || !self.gap_left(now).is_zero() {
            return None;
        }
        let p = self.pending.take()?;
        // Lengths read long after the cycle belong to a later moment. When
        // it came during the gap, the gap made it late (the tracer did not
        // fall behind).
        let age_ns = now_ns.saturating_sub(p.ts_ns);
        if age_ns > MAX_SAMPLE_LAG_NS {
            if p.early {
                self.skipped_cycles += 1;
            } else {
                self.late_cycles += 1;
            }
            return None;
        }
        let at = SampleAt {
            cycle: p.cycle,
            t_ms: u32::try_from(now.saturating_duration_since(self.started).as_millis())
                .unwrap_or(u32::MAX),
            timer: p.timer,
        };
        let f = InFlight {
            at,
            started: now,
            age_ns,
        };
        self.in_flight = Some(f);
        Some(f)
    }

    /// The headers of the sample under way were read in `took`: the gap to
    /// the next sample counts from its start.
    pub(super) fn headers_read(&mut self, took: Duration) {
        let Some(f) = self.in_flight else {
            return;
        };
        if f.at.timer {
            self.timer_samples += 1;
        } else {
            self.sampled_cycles += 1;
        }
        self.last = Some((f.started, took));
    }

    /// The sample under way is over (keys and owners too).
    pub(super) fn finished(&mut self) {
        self.in_flight = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn clock(t0: Instant) -> SampleClock {
        SampleClock::new(0.005, Duration::from_secs(1), t0)
    }

    /// Runs a whole sample at `now` whose headers take `took`.
    fn sample(c: &mut SampleClock, now: Instant, now_ns: u64, took: Duration) -> Option<SampleAt> {
        let f = c.start(now, now_ns, 0)?;
        c.headers_read(took);
        c.finished();
        Some(f.at)
    }

    #[test]
    fn sample_gap_paces_header_reads_by_the_budget() {
        assert_eq!(sample_gap(Duration::ZERO, 0.01), MIN_SAMPLE_GAP);
        assert_eq!(sample_gap(Duration::from_micros(200), 0.01), MIN_SAMPLE_GAP);
        // 3 ms of reads at a 1% budget take 30% of it when 1 s apart.
        let g = sample_gap(Duration::from_millis(3), 0.01);
        assert!((g.as_secs_f64() - 1.0).abs() < 1e-9, "{g:?}");
        // Never more than 10 s without a sample, unless one takes a tenth
        // of that.
        assert_eq!(sample_gap(Duration::from_millis(140), 0.01), MAX_SAMPLE_GAP);
        assert_eq!(
            sample_gap(Duration::from_secs(2), 0.01),
            Duration::from_secs(20)
        );
        // A larger budget samples more often, down to ten times the reads;
        // none (or NaN), the longest gap.
        assert_eq!(
            sample_gap(Duration::from_millis(140), 1.0),
            Duration::from_millis(1400)
        );
        assert_eq!(sample_gap(Duration::from_millis(3), 0.0), MAX_SAMPLE_GAP);
        assert_eq!(
            sample_gap(Duration::from_millis(3), f64::NAN),
            MAX_SAMPLE_GAP
        );
    }

    #[test]
    fn samples_wait_while_the_budget_is_in_debt() {
        let t0 = Instant::now();
        let mut c = SampleClock::new(0.01, Duration::from_secs(1), t0);
        c.on_gc(1, 0, t0);
        c.start(t0, 0, 1).unwrap();
        c.headers_read(Duration::from_micros(100));
        c.finished();
        assert_eq!(c.gap_left(t0), MIN_SAMPLE_GAP);
        // Over budget: the probes and the tracer cost more than it.
        c.set_budget(0.01, true);
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(c.gap_left(t1), MAX_SAMPLE_GAP - Duration::from_secs(1));
        c.on_gc(2, 1_000_000_000, t1);
        assert!(c.start(t1, 1_000_000_000, 2).is_none());
        // Out of debt: the header pace again, and the waiting cycle's turn.
        c.set_budget(0.01, false);
        let t2 = t1 + 20 * MS;
        assert!(c.gap_left(t2).is_zero());
        assert_eq!(c.start(t2, 1_020_000_000, 2).map(|f| f.at.cycle), Some(2));
        c.headers_read(Duration::from_micros(100));
        c.finished();
        // Still in debt at MAX_SAMPLE_GAP: a sample starts all the same.
        c.set_budget(0.01, true);
        let t3 = t2 + MAX_SAMPLE_GAP;
        assert!(c.gap_left(t3).is_zero());
        assert_eq!(c.wait(t3), Some(Duration::ZERO), "the timer sample is due");
        // A whole CPU lifts the limit: in debt or not, the header pace.
        c.on_gc(3, 0, t3);
        c.start(t3, 0, 3).unwrap();
        c.headers_read(Duration::from_micros(100));
        c.finished();
        c.set_budget(1.0, true);
        assert_eq!(c.gap_left(t3), MIN_SAMPLE_GAP);
    }

    #[test]
    fn the_newest_cycle_is_sampled_and_older_ones_are_counted_skipped() {
        let t0 = Instant::now();
        let mut c = clock(t0);
        c.on_gc(1, 1_000, t0);
        c.on_gc(2, 2_000, t0);
        c.on_gc(3, 3_000, t0);
        let f = c.start(t0, 4_000, 3).expect("a sample starts");
        assert_eq!(f.at.cycle, 3);
        assert!(!f.at.timer);
        assert_eq!(c.skipped_cycles, 2);
        assert_eq!(c.late_cycles, 0);
    }

    #[test]
    fn one_sample_at_a_time() {
        let t0 = Instant::now();
        let mut c = clock(t0);
        c.on_gc(1, 0, t0);
        assert!(c.start(t0, 0, 1).is_some());
        assert_eq!(c.wait(t0), None, "the end of the sample wakes the loop");
        c.on_gc(2, 1_000, t0 + MS);
        assert!(c.start(t0 + MS, 1_000, 2).is_none(), "one in flight");
        c.headers_read(MS);
        assert!(c.start(t0 + 2 * MS, 2_000, 2).is_none(), "keys still read");
        c.finished();
        // The gap after a 1 ms read at 0.5%: 667 ms. Cycle 2 waits for it
        // and is then too old: it came during the sample, so skipped, not late.
        assert!(c.wait(t0 + 2 * MS).unwrap() > Duration::from_millis(600));
        let later = t0 + Duration::from_millis(700);
        assert!(c.start(later, 700_000_000, 2).is_none());
        assert_eq!((c.skipped_cycles, c.late_cycles), (1, 0));
        assert_eq!(c.sampled_cycles, 1);
    }

    /// The counters are read at the cycles' pace from a lead before the
    /// gap ends, never while a sample is under way.
    #[test]
    fn gc_counters_are_read_from_a_little_before_the_gap_ends() {
        let t0 = Instant::now();
        let mut c = clock(t0);
        let lead = 100 * MS;
        assert_eq!(c.poll_lead_left(t0, lead), Some(Duration::ZERO));
        c.on_gc(1, 0, t0);
        c.start(t0, 0, 1).unwrap();
        assert_eq!(c.poll_lead_left(t0, lead), None);
        c.headers_read(MS);
        c.finished();
        // Gap: 667 ms after a 1 ms read at 0.5 %.
        let gap = c.gap_left(t0);
        assert_eq!(c.poll_lead_left(t0, lead), Some(gap - lead));
        assert_eq!(
            c.poll_lead_left(t0 + gap - lead, lead),
            Some(Duration::ZERO)
        );
        assert!(!c.gap_left(t0 + gap - lead).is_zero());
    }

    /// The loop wakes for the counters when the lead starts, once in the
    /// lead, then at the cycles' pace; not while a sample is under way.
    #[test]
    fn the_loop_wakes_for_the_counters_from_the_lead_on() {
        use super::super::gc_poll::{GcPoll, READY_MAX_POLL};
        let t0 = Instant::now();
        let mut c = clock(t0);
        let mut p = GcPoll::new(0x1000, 0, t0);
        c.on_gc(1, 0, t0);
        c.start(t0, 0, 1).unwrap();
        assert_eq!(p.wake(&c, t0), None, "a sample is under way");
        c.headers_read(MS);
        c.finished();
        let gap = c.gap_left(t0);
        assert_eq!(p.wake(&c, t0), Some(gap - READY_MAX_POLL));
        // Read just before the lead: once in it, READY_MAX_POLL after.
        let lead = t0 + gap - READY_MAX_POLL;
        p.on_read(lead - MS, None);
        assert_eq!(p.wake(&c, lead), Some(READY_MAX_POLL - MS));
        // The gap over: at the cycles' pace, an eighth of the time since
        // the last cycle (here since the poll began).
        let over = t0 + gap;
        p.on_read(over, None);
        assert_eq!(p.wake(&c, over), Some(gap / 8));
    }

    /// A cycle found by a read once the gap was over, which may have ended
    /// during it (the read before was within it) and is too old to sample:
    /// the gap left it out (skipped), the tracer did not fall behind (late).
    #[test]
    fn a_cycle_that_may_have_ended_in_the_gap_is_skipped_not_late() {
        let t0 = Instant::now();
        let mut c = clock(t0);
        sample(&mut c, t0, 0, MS).unwrap();
        // Gap: 667 ms. Read at 600 ms (no cycle), then at 900 ms: a cycle,
        // dated by the read before it.
        let ms = |n: u64| t0 + Duration::from_millis(n);
        c.on_gc(2, 600_000_000, ms(600));
        assert!(c.start(ms(900), 900_000_000, 2).is_none());
        assert_eq!((c.skipped_cycles, c.late_cycles), (1, 0));
        // One that ended after the gap and is read too late is late.
        c.on_gc(3, 700_000_000, ms(700));
        assert!(c.start(ms(900), 900_000_000, 3).is_none());
        assert_eq!((c.skipped_cycles, c.late_cycles), (1, 1));
    }

    #[test]
    fn gc_cycles_wake_the_loop_only_when_a_sample_could_start() {
        let t0 = Instant::now();
        let mut c = clock(t0);
        // Nothing written yet (every cycle wakes it): nothing to change.
        assert_eq!(c.gc_wake_update(t0, 1_000, 0), None);
        c.on_gc(1, 1_000, t0);
        c.start(t0, 1_000, 1).unwrap();
        // Under way: no cycle wakes it, written once.
        assert_eq!(c.gc_wake_update(t0, 1_000, 0), Some(u64::MAX));
        assert_eq!(c.gc_wake_update(t0, 1_000, u64::MAX), None);
        c.headers_read(MS);
        let t1 = t0 + MS;
        assert_eq!(
            c.gc_wake_update(t1, 2_000_000, u64::MAX),
            None,
            "keys still read"
        );
        c.finished();
        // In the gap (667 ms from the start): cycles wake it from its end.
        let from = c.gc_wake_update(t1, 2_000_000, u64::MAX).unwrap();
        assert!((666_000_000..668_000_000).contains(&from), "{from}");
        // Later turns of the loop read both clocks a little apart: no write.
        let t2 = t0 + 300 * MS;
        assert_eq!(c.gc_wake_update(t2, 301_500_000, from), None);
        // After the gap, a time already past stays.
        let t3 = t0 + 900 * MS;
        assert_eq!(c.gc_wake_update(t3, 901_000_000, from), None);
        // A time still ahead (written for a longer gap) is brought back.
        assert_eq!(
            c.gc_wake_update(t3, 901_000_000, 2_000_000_000),
            Some(901_000_000)
        );
    }

    #[test]
    fn a_cycle_processed_late_is_not_sampled() {
        let t0 = Instant::now();
        let mut c = clock(t0);
        c.on_gc(1, 0, t0);
        assert!(c.start(t0, MAX_SAMPLE_LAG_NS + 1, 1).is_none());
        assert_eq!((c.late_cycles, c.skipped_cycles), (1, 0));
        // Within the lag it is.
        c.on_gc(2, 0, t0);
        assert!(c.start(t0, MAX_SAMPLE_LAG_NS, 2).is_some());
    }

    #[test]
    fn samples_are_spaced_by_the_gap() {
        let t0 = Instant::now();
        let mut c = clock(t0);
        let mut taken = 0;
        // A cycle every 10 ms for 2 s, each read taking 1 ms: the gap
        // (667 ms) lets three through (0, 667, 1334 ms).
        for i in 0..200u64 {
            let now = t0 + 10 * MS * i as u32;
            let ns = i * 10_000_000;
            c.on_gc(i + 1, ns, now);
            if sample(&mut c, now, ns, MS).is_some() {
                taken += 1;
            }
        }
        assert_eq!(taken, 3);
        assert_eq!(c.sampled_cycles, 3);
        assert_eq!(c.skipped_cycles + c.sampled_cycles + c.late_cycles, 199);
    }

    #[test]
    fn timer_samples_come_when_cycles_do_not() {
        let t0 = Instant::now();
        let mut c = clock(t0);
        // The first sample is due at once, on the timer.
        let at = sample(&mut c, t0, 0, MS).expect("first timer sample");
        assert!(at.timer);
        assert_eq!(at.t_ms, 0);
        // None before timer_every (1 s)...
        let half = t0 + Duration::from_millis(500);
        assert!(c.start(half, 500_000_000, 0).is_none());
        // The loop wakes at the gap's end (667 ms: 1 ms of reads at 0.15%),
        // where cycles that came in the gap may wait, then at the timer.
        let w = c.wait(half).unwrap();
        assert!(w > 160 * MS && w < 170 * MS, "{w:?}");
        let after_gap = t0 + Duration::from_millis(700);
        assert_eq!(c.wait(after_gap), Some(Duration::from_millis(300)));
        // ...and one after, labelled with the latest cycle seen.
        let later = t0 + Duration::from_millis(1000);
        let f = c
            .start(later, 1_000_000_000, 7)
            .expect("second timer sample");
        assert!(f.at.timer);
        assert_eq!((f.at.cycle, f.at.t_ms), (7, 1000));
        c.headers_read(MS);
        c.finished();
        assert_eq!(c.timer_samples, 2);
        assert_eq!(c.sampled_cycles, 0);
    }

    #[test]
    fn a_gc_cycle_replaces_a_waiting_timer_sample_without_counting_it_skipped() {
        let t0 = Instant::now();
        let mut c = SampleClock::new(1.0, Duration::from_secs(1), t0);
        sample(&mut c, t0, 0, Duration::from_millis(200)).unwrap();
        // The gap after 200 ms of reads is 2 s (ten times the reads; the
        // budget of a whole CPU asks for less), the timer 1 s: the timer
        // sample waits for the gap, and a cycle comes meanwhile.
        let t1 = t0 + Duration::from_millis(1100);
        assert!(c.start(t1, 1_100_000_000, 0).is_none());
        c.on_gc(5, 1_900_000_000, t0 + Duration::from_millis(1900));
        let t2 = t0 + Duration::from_secs(2);
        let f = c.start(t2, 2_000_000_000, 5).expect("the cycle is sampled");
        assert!(!f.at.timer);
        assert_eq!(f.at.cycle, 5);
        assert_eq!(c.skipped_cycles, 0);
    }
}
