//! `runcost`: what one run of each eBPF program costs, measured live.
//!
//! A probe hit costs the target the trap ([`crate::governor::EMULATED_HIT_S`])
//! and then the program's own run, which the fixed prices leave out: the
//! kernel measured 1-2.6 µs a run for ours (`map_create_ret` and
//! `map_grow` walk the user stack), more than the trap. With statistics
//! on, the kernel counts each program's runs and their total time
//! ([`crate::bpf::RunStats`]);
//! [`RunCosts`] turns those cumulative counts into a moving mean cost per
//! run, for the governor to add to the trap.
//!
//! The mean is over runs, not readings: each delta between two readings
//! moves it as much as its runs weigh against the last [`MEMORY_RUNS`],
//! so a burst of many runs counts more than a few stray ones, and
//! splitting a delta in two readings gives the same mean as reading once.
//! The kernel's time is the wall time around each run, so a run that is
//! interrupted or preempted (the programs run preemptibly on a fully
//! preemptible kernel) counts the interruption too: rare, and diluted
//! among the runs of its delta.
//!
//! Pure: the caller reads the counts and feeds them in.
use std::collections::HashMap;

/// Runs a program needs, since it was first seen, before its first mean:
/// a handful of runs (cold caches, the first faults of a stack walk) says
/// little about the next thousand.
pub const MIN_RUNS: u64 = 20;

/// How many runs the mean remembers: a delta of this many runs gives the
/// mean before it a weight of 1/e.
pub const MEMORY_RUNS: f64 = 1000.0;

/// One program's cumulative run statistics, as the kernel counts them
/// (`bpf_prog_info.run_time_ns`, `run_cnt`): since the program was loaded,
/// while statistics were on; its uprobe_multi copies added in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProgramRun {
    /// Total time spent running, nanoseconds.
    pub run_time_ns: u64,
    /// Runs.
    pub run_cnt: u64,
}

/// One program's mean and the reading its next delta starts from.
#[derive(Debug, Clone, Copy, Default)]
struct Track {
    /// The last reading folded into the mean (or the first seen).
    base: ProgramRun,
    /// Mean cost per run in this machine's time, nanoseconds.
    mean_ns: Option<f64>,
}

/// Moving mean cost per run of each program, from cumulative readings.
#[derive(Debug, Clone, Default)]
pub struct RunCosts {
    tracks: HashMap<&'static str, Track>,
}

impl RunCosts {
    /// No program measured yet.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Folds in cumulative `readings` ([`crate::bpf::RunStats::read`]).
    /// A program's first reading counts from zero (the kernel's counts
    /// start at zero when a program is loaded); one lower than the last
    /// (a program loaded again, a copy left out) starts over from it, the
    /// mean kept. Programs left out keep their mean and base.
    pub fn update(&mut self, readings: &[(&'static str, ProgramRun)]) {
        for &(name, now) in readings {
            self.tracks.entry(name).or_default().fold(now);
        }
    }

    /// Mean cost of one run of `program`, seconds in this machine's time
    /// (as the kernel measured it, as the governor debits everything);
    /// `None` until [`MIN_RUNS`] runs were measured.
    #[must_use]
    pub fn per_run_s(&self, program: &str) -> Option<f64> {
        let ns = self.tracks.get(program)?.mean_ns?;
        Some(ns * 1e-9)
    }
}

/// `readings` with the runs that found a probe switched off taken out of
/// each program's count (`off`: such runs per program since the tracer
/// started, [`crate::bpf::ProbeSwitch`]). Those runs return at once, so
/// their few tens of nanoseconds stay in the time, spread over the full
/// runs: a slight overprice. Kept in, the thousands of them while a busy
/// group's links are closed would pull a stack-walking program's mean
/// down to a fraction of a full run's cost.
#[must_use]
pub fn without_off_runs(
    readings: &[(&'static str, ProgramRun)],
    off: &HashMap<&'static str, u64>,
) -> Vec<(&'static str, ProgramRun)> {
    readings
        .iter()
        .map(|&(name, r)| {
            let off = off.get(name).copied().unwrap_or(0);
            (
                name,
                ProgramRun {
                    run_time_ns: r.run_time_ns,
                    run_cnt: r.run_cnt.saturating_sub(off),
                },
            )
        })
        .collect()
}

impl Track {
    fn fold(&mut self, now: ProgramRun) {
        let (Some(runs), Some(ns)) = (
            now.run_cnt.checked_sub(self.base.run_cnt),
            now.run_time_ns.checked_sub(self.base.run_time_ns),
        ) else {
            // A counter went back: start over from this reading.
            self.base = now;
            return;
        };
        if runs == 0 || (self.mean_ns.is_none() && runs < MIN_RUNS) {
            // Too few runs yet: the delta grows until the next reading.
            // (Time without runs cannot be told apart from a reset's
            // leftovers either; it waits for runs to go with it.)
            return;
        }
        let cost = ns as f64 / runs as f64;
        self.mean_ns = Some(match self.mean_ns {
            None => cost,
            Some(m) => {
                // The weight of `runs` runs against the mean's memory:
                // 1 - e^(-runs / MEMORY_RUNS).
                let w = -(-(runs as f64) / MEMORY_RUNS).exp_m1();
                m + w * (cost - m)
            }
        });
        self.base = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: &str = "map_grow";

    fn run(runs: u64, ns: u64) -> ProgramRun {
        ProgramRun {
            run_time_ns: ns,
            run_cnt: runs,
        }
    }

    fn approx(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * b.abs().max(1e-12)
    }

    /// Nothing until a program has run [`MIN_RUNS`] times; the small
    /// deltas before add up rather than being lost.
    #[test]
    fn unmeasured_until_enough_runs() {
        let mut c = RunCosts::new();
        assert_eq!(c.per_run_s(P), None);
        c.update(&[(P, run(0, 0))]);
        assert_eq!(c.per_run_s(P), None);
        c.update(&[(P, run(10, 30_000))]);
        assert_eq!(c.per_run_s(P), None);
        c.update(&[(P, run(19, 57_000))]);
        assert_eq!(c.per_run_s(P), None);
        // 20 runs in all, 3 µs each.
        c.update(&[(P, run(20, 60_000))]);
        assert!(approx(c.per_run_s(P).unwrap(), 3e-6));
        assert_eq!(c.per_run_s("map_write"), None);
    }

    /// Weighted by runs: a burst replaces the mean almost entirely, a few
    /// runs hardly move it; a delta read in two parts gives the same mean.
    #[test]
    fn weighted_by_runs() {
        let mut c = RunCosts::new();
        c.update(&[(P, run(100, 100_000))]); // 1 µs
        c.update(&[(P, run(105, 150_000))]); // 5 runs at 10 µs
        let few = c.per_run_s(P).unwrap();
        assert!(few > 1e-6 && few < 1.1e-6, "{few}");
        c.update(&[(P, run(20_105, 40_150_000))]); // 20,000 runs at 2 µs
        let burst = c.per_run_s(P).unwrap();
        assert!((burst - 2e-6).abs() < 1e-12, "{burst}");

        let mut once = RunCosts::new();
        let mut twice = RunCosts::new();
        for c in [&mut once, &mut twice] {
            c.update(&[(P, run(100, 100_000))]);
        }
        once.update(&[(P, run(1100, 3_100_000))]);
        twice.update(&[(P, run(600, 1_600_000))]);
        twice.update(&[(P, run(1100, 3_100_000))]);
        assert!(approx(
            once.per_run_s(P).unwrap(),
            twice.per_run_s(P).unwrap()
        ));
        // 1000 runs at 3 µs against a mean of 1 µs: weight 1 - 1/e.
        let want = 1e-6 + (1.0 - (-1.0f64).exp()) * 2e-6;
        assert!(approx(once.per_run_s(P).unwrap(), want));
    }

    /// A counter that goes back starts over from there, the mean kept;
    /// readings without runs and programs left out change nothing.
    #[test]
    fn resets_and_gaps() {
        let mut c = RunCosts::new();
        c.update(&[(P, run(1000, 2_000_000)), ("map_write", run(50, 50_000))]);
        let m = c.per_run_s(P).unwrap();
        assert!(approx(m, 2e-6));
        c.update(&[(P, run(10, 10_000))]);
        assert_eq!(c.per_run_s(P), Some(m));
        c.update(&[(P, run(10, 1_010_000))]);
        assert_eq!(c.per_run_s(P), Some(m));
        // The time without runs goes with the next runs: 1000 runs since
        // the reset, 3 ms with the idle reading's 1 ms.
        c.update(&[(P, run(1010, 3_010_000))]);
        let after = c.per_run_s(P).unwrap();
        assert!(
            approx(after, 2e-6 + (1.0 - (-1.0f64).exp()) * 1e-6),
            "{after}"
        );
        // Only the time going back.
        c.update(&[(P, run(2010, 0))]);
        assert_eq!(c.per_run_s(P), Some(after));
        c.update(&[]);
        assert_eq!(c.per_run_s(P), Some(after));
        assert!(approx(c.per_run_s("map_write").unwrap(), 1e-6));
        // Huge counters do not overflow.
        c.update(&[(P, run(u64::MAX, u64::MAX))]);
        assert!(c.per_run_s(P).unwrap().is_finite());
    }

    /// Runs that found their probe off come out of the count, not the
    /// time: 1,000 full runs of 2 µs and 3,000 off runs of 30 ns give a
    /// mean near 2 µs, not 0.5 µs.
    #[test]
    fn off_runs_leave_the_mean_of_the_full_runs() {
        let mut off = HashMap::new();
        off.insert(P, 3_000u64);
        let mut c = RunCosts::new();
        let readings = [
            (P, run(4_000, 2_000_000 + 90_000)),
            ("map_write", run(50, 50_000)),
        ];
        c.update(&without_off_runs(&readings, &off));
        let m = c.per_run_s(P).unwrap();
        assert!((m - 2.09e-6).abs() < 1e-9, "{m}");
        // A program with no off runs is left as it is.
        assert!(approx(c.per_run_s("map_write").unwrap(), 1e-6));
        // More off runs than runs (a count reset) give zero runs, not a wrap.
        off.insert(P, 10_000);
        assert_eq!(without_off_runs(&readings, &off)[0].1.run_cnt, 0);
    }
}
