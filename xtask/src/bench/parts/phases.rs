//! Part 1b: throughput in alternating phases of one process, for one
//! workload or the whole suite (`suite`).
//!
//! Part 1 compares separate runs, and on this shared 2-CPU machine separate
//! HTTP runs differ by 5 % or more among themselves: far more than the 1 %
//! the goal is about. Here one target process (a workload of `suite`) runs
//! for the whole measurement and prints its operation count every
//! `TICK_MS`; untraced phases alternate with phases during which
//! mapleak-trace is attached (default mode, from the moment it reports it
//! attached until it is stopped with SIGINT). Each traced phase is compared
//! with the untraced phases on either side of it, so slow drifts of the
//! machine cancel out and the process is the same. The figures and the
//! report's section are `report::phases`'s.
use std::{
    path::Path,
    process::Command,
    thread,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context as _, Result, bail};

use crate::bench::{
    accounting::{proc_cpu_s, system_busy_s},
    binaries::GoBin,
    proc::Proc,
    runner::{Bench, report_hits, spawn_mapleak, take_report},
    suite::{Traced, Workload},
};

/// The target's tick: how often it prints its operation count.
pub(crate) const TICK_MS: u64 = 250;

/// Before the first phase: connections set up, the heap at its size.
pub(crate) const WARMUP: Duration = Duration::from_secs(3);

/// After the tracer exits, before the next untraced phase.
pub(crate) const GAP: Duration = Duration::from_secs(1);

/// Confidence of the interval quoted for a median.
pub(crate) const CONFIDENCE: f64 = 0.95;

/// One phase of the alternation.
pub(crate) struct Phase {
    pub(crate) workload: &'static Workload,
    pub(crate) go: String,
    pub(crate) round: usize,
    pub(crate) traced: bool,
    /// Start and end (seconds since the Unix epoch; the target's ticks use
    /// the same clock). A traced phase starts `phase_settle` after the
    /// tracer attached.
    pub(crate) start: f64,
    pub(crate) end: f64,
    /// When the tracer reported it attached (untraced: `start`).
    pub(crate) attached: f64,
    /// Operations per second in the phase, from the ticks wholly inside it.
    pub(crate) rate: f64,
    /// Operations per second from attach to the phase's start (the
    /// startup: the governor's full bucket, the first write window).
    pub(crate) startup_rate: f64,
    /// The target's GC cycles per second in the phase (its own count).
    pub(crate) gc_rate: f64,
    /// The tracer's CPU time in the phase.
    pub(crate) tracer_cpu_s: f64,
    /// What the tracer's report says (traced phases; from attach to exit),
    /// and its probe hits.
    pub(crate) report: Option<Traced>,
    pub(crate) hits: u64,
    /// CPU time of other processes (not the target, not the tracer).
    pub(crate) foreign_cpu_s: f64,
    /// The target's CPU time in the phase (user + system: the probes' traps
    /// and handlers run on its threads and count here).
    pub(crate) target_cpu_s: f64,
}

impl Phase {
    /// The governor's debit (`overhead.budget_spent_target_cpu_s`).
    pub(crate) fn debit_s(&self) -> f64 {
        self.report.map_or(f64::NAN, |r| r.debit_s)
    }

    /// Operations per CPU-second of the target and the tracer together:
    /// what the phase's work cost in CPU, whatever share of the machine
    /// the other tenants of this shared host left it (NaN if unknown).
    pub(crate) fn ops_per_cpu_s(&self) -> f64 {
        let cpu = self.target_cpu_s + self.tracer_cpu_s;
        if cpu > 0.0 {
            self.rate * (self.end - self.start) / cpu
        } else {
            f64::NAN
        }
    }
}

pub(crate) fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Every selected workload in turn, each on every Go release.
pub(crate) fn run(b: &mut Bench, gos: &[GoBin], tracer: &Path) -> Result<Vec<Phase>> {
    let mut out = Vec::new();
    let workloads = b.s.phase_workloads.clone();
    for w in workloads {
        for g in gos {
            out.extend(
                run_one(b, g, w, tracer)
                    .with_context(|| format!("{} phases, {}", w.name, g.tag))?,
            );
        }
    }
    Ok(out)
}

fn run_one(b: &mut Bench, g: &GoBin, w: &'static Workload, tracer: &Path) -> Result<Vec<Phase>> {
    let (rounds, p, settle) = (b.s.phase_rounds, b.s.phase, b.s.phase_settle);
    b.wait_idle();
    // An upper bound on the target's life (it is killed when done): each
    // round is two phases plus the tracer's startup and exit.
    let life = rounds as f64 * (2.0 * p.as_secs_f64() + 120.0) + 60.0;
    let mut cmd = Command::new(&g.bin);
    cmd.args(w.args).args([
        "-seconds".to_owned(),
        format!("{life:.0}"),
        "-tick".to_owned(),
        format!("{TICK_MS}ms"),
        "-wait".to_owned(),
    ]);
    let mut target = Proc::spawn(&format!("bench target ({} phases)", w.name), cmd)?;
    // livemaps builds its maps first.
    target.wait_line(|l| l == "waiting", Duration::from_secs(120))?;
    let pid = target.pid();
    target.send_line("go")?;
    thread::sleep(WARMUP);
    let json_path = b.out_dir.join(format!("phase-report-{pid}.json"));
    // Other processes' CPU: the machine's busy time less the target's and
    // the tracer's.
    let foreign = |busy0: Option<f64>, t0: Option<f64>, tr: f64| -> f64 {
        match (busy0, system_busy_s(), t0, proc_cpu_s(pid)) {
            (Some(a), Some(b), Some(c), Some(d)) => ((b - a) - (d - c) - tr).max(0.0),
            _ => f64::NAN,
        }
    };
    // An untraced phase: the target alone for `p`.
    let untraced = |round: usize| -> Phase {
        let (busy0, t0) = (system_busy_s(), proc_cpu_s(pid));
        let start = now();
        thread::sleep(p);
        let end = now();
        let target_cpu_s = cpu_delta(t0, proc_cpu_s(pid));
        Phase {
            go: g.tag.clone(),
            round,
            traced: false,
            start,
            end,
            attached: start,
            rate: f64::NAN,
            startup_rate: f64::NAN,
            gc_rate: f64::NAN,
            tracer_cpu_s: 0.0,
            report: None,
            hits: 0,
            foreign_cpu_s: foreign(busy0, t0, 0.0),
            target_cpu_s,
            workload: w,
        }
    };
    let mut phases = Vec::new();
    for round in 0..rounds {
        if !target.running() {
            bail!(
                "the {} target exited early: {}",
                w.name,
                target.stderr_tail()
            );
        }
        phases.push(untraced(round));
        // Traced, from attach.
        let mut tr = spawn_mapleak(tracer, pid, p.as_secs() + 600, &json_path)?;
        let attached = now();
        thread::sleep(settle);
        let (busy0, t0) = (system_busy_s(), proc_cpu_s(pid));
        let cpu0 = proc_cpu_s(tr.pid());
        let start = now();
        thread::sleep(p);
        let end = now();
        let cpu1 = proc_cpu_s(tr.pid());
        let target_cpu_s = cpu_delta(t0, proc_cpu_s(pid));
        let tracer_cpu_s = cpu_delta(cpu0, cpu1);
        let foreign_cpu_s = foreign(busy0, t0, tracer_cpu_s);
        tr.signal(libc::SIGINT);
        let st = tr.wait_exit(Duration::from_secs(60))?;
        if !st.success() {
            bail!(
                "mapleak-trace exited with {st} after SIGINT: {}",
                tr.stderr_tail()
            );
        }
        let rep = take_report(&json_path, &tr)?;
        let hits = report_hits(&rep, &[]).0;
        let t = Traced::from_report(&rep);
        eprintln!(
            "bench: {} phases {:9} round {round}: traced {:.1} s, debit {:.4} s, tracer CPU {tracer_cpu_s:.3} s, \
             governed probes attached {:.0}%, {} GC cycles ({} sampled), planted map {}reported growing",
            w.name,
            g.tag,
            end - start,
            t.debit_s,
            t.attached_share * 100.0,
            t.gc_cycles,
            t.gc_sampled,
            if t.planted { "" } else { "NOT " }
        );
        phases.push(Phase {
            go: g.tag.clone(),
            round,
            traced: true,
            start,
            end,
            attached,
            rate: f64::NAN,
            startup_rate: f64::NAN,
            gc_rate: f64::NAN,
            tracer_cpu_s,
            report: Some(t),
            hits,
            foreign_cpu_s,
            target_cpu_s,
            workload: w,
        });
        thread::sleep(GAP);
    }
    // A last untraced phase, so that every traced one has two neighbours.
    phases.push(untraced(rounds));
    b.foreign.extend(
        phases
            .iter()
            .map(|p| p.foreign_cpu_s / (p.end - p.start))
            .filter(|x| x.is_finite()),
    );
    // Let the last tick in, then stop the target (Drop kills it).
    thread::sleep(Duration::from_millis(2 * TICK_MS));
    if !target.running() {
        bail!(
            "the {} target exited early: {}",
            w.name,
            target.stderr_tail()
        );
    }
    let ticks = parse_ticks(&drain(&mut target));
    drop(target);
    for ph in &mut phases {
        ph.rate = rate(&ticks, ph.start, ph.end);
        if ph.traced && ph.start > ph.attached {
            ph.startup_rate = rate(&ticks, ph.attached, ph.start);
        }
        ph.gc_rate = gc_rate(&ticks, ph.start, ph.end);
        if !ph.rate.is_finite() {
            bail!(
                "no tick of the target fell inside the {} phase of round {}",
                if ph.traced { "traced" } else { "untraced" },
                ph.round
            );
        }
    }
    Ok(phases)
}

/// CPU seconds between two readings (NaN if either failed).
pub(crate) fn cpu_delta(a: Option<f64>, b: Option<f64>) -> f64 {
    match (a, b) {
        (Some(a), Some(b)) => b - a,
        _ => f64::NAN,
    }
}

/// The lines the process printed so far.
pub(crate) fn drain(p: &mut Proc) -> Vec<String> {
    while let Ok(l) = p.lines.try_recv() {
        p.seen.push(l);
    }
    p.seen.clone()
}

/// One `tick UNIX_NS OPS [GC]` line.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Tick {
    /// End of the tick, in seconds since the Unix epoch.
    t: f64,
    /// Operations in it.
    ops: u64,
    /// GC cycles the target had completed by then (older targets: none).
    gc: Option<u64>,
}

pub(crate) fn parse_ticks(lines: &[String]) -> Vec<Tick> {
    lines
        .iter()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            (f.next()? == "tick").then_some(())?;
            let ns: u64 = f.next()?.parse().ok()?;
            let ops: u64 = f.next()?.parse().ok()?;
            let gc = f.next().and_then(|g| g.parse().ok());
            Some(Tick {
                t: ns as f64 / 1e9,
                ops,
                gc,
            })
        })
        .collect()
}

/// The ticks that lie wholly within [start, end].
fn inside(ticks: &[Tick], start: f64, end: f64) -> impl Iterator<Item = &Tick> {
    let tick = TICK_MS as f64 / 1e3;
    ticks
        .iter()
        .filter(move |k| k.t - tick >= start && k.t <= end)
}

/// Operations per second over the ticks that lie wholly within [start, end].
pub(crate) fn rate(ticks: &[Tick], start: f64, end: f64) -> f64 {
    let tick = TICK_MS as f64 / 1e3;
    let ops: Vec<u64> = inside(ticks, start, end).map(|k| k.ops).collect();
    if ops.is_empty() {
        return f64::NAN;
    }
    ops.iter().sum::<u64>() as f64 / (ops.len() as f64 * tick)
}

/// GC cycles per second over the ticks that lie wholly within [start, end]
/// (from the count at the start of the first to the count at the end of
/// the last).
pub(crate) fn gc_rate(ticks: &[Tick], start: f64, end: f64) -> f64 {
    let tick = TICK_MS as f64 / 1e3;
    let Some(first) = ticks.iter().position(|k| k.t - tick >= start) else {
        return f64::NAN;
    };
    let Some(last) = inside(ticks, start, end).last() else {
        return f64::NAN;
    };
    // The count at the first tick's start is the one printed with the tick
    // before it.
    let Some(before) = first.checked_sub(1).map(|i| ticks[i]) else {
        return f64::NAN;
    };
    match (before.gc, last.gc) {
        (Some(a), Some(b)) if last.t > before.t && b >= a => (b - a) as f64 / (last.t - before.t),
        _ => f64::NAN,
    }
}

/// Each traced phase's loss against the mean of the untraced phases either
/// side of it; and, as the noise floor, each inner untraced phase's "loss"
/// against its untraced neighbours (two phases away) by the same formula.
/// `ph` is one workload on one Go release, in order.
pub(crate) fn losses(ph: &[&Phase]) -> (Vec<f64>, Vec<f64>) {
    losses_in(ph, |p| p.rate)
}

/// [`losses`] in operations per CPU-second ([`Phase::ops_per_cpu_s`]).
pub(crate) fn cpu_losses(ph: &[&Phase]) -> (Vec<f64>, Vec<f64>) {
    losses_in(ph, Phase::ops_per_cpu_s)
}

fn losses_in(ph: &[&Phase], rate: impl Fn(&Phase) -> f64) -> (Vec<f64>, Vec<f64>) {
    let mut null = Vec::new();
    let off: Vec<usize> = (0..ph.len()).filter(|&i| !ph[i].traced).collect();
    for w in off.windows(3) {
        let (a, m, b) = (ph[w[0]], ph[w[1]], ph[w[2]]);
        let l = 1.0 - rate(m) / ((rate(a) + rate(b)) / 2.0);
        if l.is_finite() {
            null.push(l);
        }
    }
    (traced_losses_in(ph, &rate, &rate), null)
}

/// Each traced phase's loss in `rate` (its steady part or its startup)
/// against the mean rate of the untraced phases either side of it.
pub(crate) fn traced_losses(ph: &[&Phase], rate: impl Fn(&Phase) -> f64) -> Vec<f64> {
    traced_losses_in(ph, &rate, &|p: &Phase| p.rate)
}

/// `traced` of each traced phase against `untraced` of its neighbours.
fn traced_losses_in(
    ph: &[&Phase],
    traced: &dyn Fn(&Phase) -> f64,
    untraced: &dyn Fn(&Phase) -> f64,
) -> Vec<f64> {
    let mut out = Vec::new();
    for (i, p) in ph.iter().enumerate() {
        if p.traced {
            let (prev, next) = (i.checked_sub(1).map(|j| ph[j]), ph.get(i + 1));
            if let (Some(a), Some(b)) = (prev, next)
                && !a.traced
                && !b.traced
            {
                let l = 1.0 - traced(p) / ((untraced(a) + untraced(b)) / 2.0);
                if l.is_finite() {
                    out.push(l);
                }
            }
        }
    }
    out
}

/// A distribution-free interval for the median: the k-th smallest and
/// k-th largest values, k the largest rank for which the binomial tail
/// P(X < k), X ~ B(n, 1/2), stays within (1 - CONFIDENCE) / 2. None when n
/// is too small for any such interval.
pub(crate) fn median_interval(v: &[f64]) -> Option<(f64, f64)> {
    let mut v: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let tail = (1.0 - CONFIDENCE) / 2.0;
    // P(X = i) for i = 0.., accumulated.
    let mut p = 0.5f64.powi(i32::try_from(n).ok()?);
    let mut cum = 0.0;
    let mut k = 0;
    for i in 0..n {
        cum += p;
        if cum > tail {
            break;
        }
        k = i + 1;
        p = p * (n - i) as f64 / (i + 1) as f64;
    }
    (k >= 1).then(|| (v[k - 1], v[n - k]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interval_of_twenty_is_sixth_from_each_end() {
        // n = 20: P(X <= 5) = 0.0207 <= 0.025 < P(X <= 6) = 0.0577.
        let v: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(median_interval(&v), Some((6.0, 15.0)));
    }

    #[test]
    fn no_interval_for_five_or_fewer() {
        // n = 5: P(X = 0) = 1/32 > 0.025.
        let v = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(median_interval(&v), None);
        // n = 6: P(X = 0) = 1/64: the extremes.
        let v = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        assert_eq!(median_interval(&v), Some((1.0, 6.0)));
    }

    fn tick(t: f64, ops: u64, gc: u64) -> Tick {
        Tick {
            t,
            ops,
            gc: Some(gc),
        }
    }

    #[test]
    fn rate_counts_only_ticks_inside() {
        let t = [
            tick(10.25, 100, 0),
            tick(10.5, 100, 0),
            tick(10.75, 100, 0),
            tick(11.0, 900, 0),
        ];
        // [10.0, 10.8]: the ticks ending at 10.25, 10.5 and 10.75.
        assert!((rate(&t, 10.0, 10.8) - 400.0).abs() < 1e-9);
        assert!(rate(&t, 20.0, 21.0).is_nan());
    }

    #[test]
    fn ticks_with_and_without_gc() {
        let lines = [
            "waiting".to_owned(),
            "tick 10250000000 100 7".to_owned(),
            "tick 10500000000 120".to_owned(),
        ];
        assert_eq!(
            parse_ticks(&lines),
            [
                tick(10.25, 100, 7),
                Tick {
                    t: 10.5,
                    ops: 120,
                    gc: None
                }
            ]
        );
    }

    #[test]
    fn gc_rate_from_the_tick_before_to_the_last_inside() {
        let t = [
            tick(10.0, 1, 100),
            tick(10.25, 1, 130),
            tick(10.5, 1, 150),
            tick(10.75, 1, 200),
            tick(11.0, 1, 900),
        ];
        // [10.0, 10.8]: 100 at 10.0 to 200 at 10.75.
        assert!((gc_rate(&t, 10.0, 10.8) - 100.0 / 0.75).abs() < 1e-9);
        // No tick before the first inside one.
        assert!(gc_rate(&t, 9.7, 10.3).is_nan());
        assert!(gc_rate(&t, 20.0, 21.0).is_nan());
    }

    fn phase(traced: bool, rate: f64) -> Phase {
        Phase {
            workload: &crate::bench::suite::WORKLOADS[0],
            go: "g".to_owned(),
            round: 0,
            traced,
            start: 0.0,
            end: 1.0,
            attached: 0.0,
            rate,
            startup_rate: f64::NAN,
            gc_rate: f64::NAN,
            tracer_cpu_s: 0.0,
            report: None,
            hits: 0,
            foreign_cpu_s: 0.0,
            target_cpu_s: 1.0,
        }
    }

    #[test]
    fn losses_per_cpu_second_count_the_tracer() {
        // Same throughput, but the traced phase used 2 % more CPU (the
        // target's 1.0 s plus the tracer's 0.02 s): 2 % fewer ops per CPU-s.
        let mut t = phase(true, 100.0);
        t.tracer_cpu_s = 0.02;
        let ph = [phase(false, 100.0), t, phase(false, 100.0)];
        let refs: Vec<&Phase> = ph.iter().collect();
        let (l, _) = cpu_losses(&refs);
        assert_eq!(l.len(), 1);
        assert!((l[0] - (1.0 - 1.0 / 1.02)).abs() < 1e-12, "{l:?}");
        assert!(losses(&refs).0[0].abs() < 1e-12);
    }

    #[test]
    fn losses_against_neighbours() {
        let ph = [
            phase(false, 100.0),
            phase(true, 90.0),
            phase(false, 80.0),
            phase(true, 80.0),
            phase(false, 80.0),
        ];
        let refs: Vec<&Phase> = ph.iter().collect();
        let (l, null) = losses(&refs);
        assert_eq!(l.len(), 2);
        assert!(l[0].abs() < 1e-12); // 90 against (100 + 80) / 2
        assert!(l[1].abs() < 1e-12);
        // The middle untraced phase against the outer two: 80 / 90.
        assert_eq!(null.len(), 1);
        assert!((null[0] - (1.0 - 80.0 / 90.0)).abs() < 1e-12);
    }
}
