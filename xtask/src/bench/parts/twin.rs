//! Part 1h: twin processes, one traced at a time.
//!
//! Part 1b compares a traced phase with the untraced phases before and
//! after it, in one process. On this shared VM the host's speed drifts by
//! several % within a minute, and 10 such phases cannot resolve 1 %
//! (their noise floors reach ±15 %). Here two copies of the same workload
//! run side by side for the whole measurement (the second from a copy of
//! the binary, so that no probe placed in one file traps the other), and
//! the traced one is compared with its twin over the same seconds: a slow
//! or busy host slows both alike and cancels out of their ratio.
//!
//! Each round has four phases, in this order (the twins' roles swapped in
//! odd rounds): twin 0 traced, both untraced, twin 1 traced, both
//! untraced. With `v(i)` twin i's figure in a phase, the twins' ratio in
//! the phase where twin 0 is traced is `(1 - L) b` and in the phase where
//! twin 1 is traced `(1 - L) / b`, whatever fixed advantage `b` one twin
//! has over the other (its place in memory, its scheduling), so the round's
//! loss is `L = 1 - sqrt(r0 r1)`. The two untraced phases give, by the same
//! formula, the round's noise floor (near 0 with no tracer at all).
//!
//! Two figures: operations per CPU-second, the tracer's CPU charged to the
//! twin it traces (the primary: what tracing costs the work the target
//! does, its own CPU included, whatever share of the machine each twin got);
//! and operations per wall-clock second (the tracer's CPU then slows both
//! twins, so this lens sees the probes' cost alone).
use std::{fs, path::Path, process::Command, thread, time::Duration};

use anyhow::{Context as _, Result, bail};
use serde::{Deserialize, Serialize};

use crate::bench::{
    accounting::{proc_cpu_s, system_busy_s},
    binaries::GoBin,
    parts::phases::{TICK_MS, WARMUP, cpu_delta, drain, gc_rate, now, parse_ticks, rate},
    proc::Proc,
    runner::{Bench, report_hits, spawn_mapleak, take_report},
    stats::nan_if_null,
    suite::{Traced, Workload},
};

/// After the tracer exits, before the next phase.
const GAP: Duration = Duration::from_secs(1);

/// One twin in one phase.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct TwinFigures {
    /// Operations per second, from its ticks wholly inside the phase.
    #[serde(deserialize_with = "nan_if_null")]
    pub(crate) rate: f64,
    /// Its CPU time in the phase (user + system: probe traps and handlers
    /// run on its threads).
    #[serde(deserialize_with = "nan_if_null")]
    pub(crate) cpu_s: f64,
    /// Its own GC cycles per second.
    #[serde(deserialize_with = "nan_if_null")]
    pub(crate) gc_rate: f64,
}

/// One phase of a round.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct TwinPhase {
    pub(crate) workload: String,
    pub(crate) go: String,
    pub(crate) round: usize,
    /// The twin traced in this phase (none: both untraced).
    pub(crate) traced: Option<usize>,
    /// Start and end, seconds since the Unix epoch (the targets' ticks use
    /// the same clock). A traced phase starts `--attach-settle-seconds`
    /// after the tracer attached.
    pub(crate) start: f64,
    pub(crate) end: f64,
    pub(crate) twins: [TwinFigures; 2],
    /// The tracer's CPU time in the phase.
    #[serde(deserialize_with = "nan_if_null")]
    pub(crate) tracer_cpu_s: f64,
    /// CPU time of the other processes meanwhile.
    #[serde(deserialize_with = "nan_if_null")]
    pub(crate) foreign_cpu_s: f64,
    /// From the tracer's report (attach to exit) of a traced phase.
    #[serde(deserialize_with = "nan_if_null")]
    pub(crate) trace_s: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub(crate) debit_s: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub(crate) attached_share: f64,
    /// Share of the trace the large-growth probes were attached (absent
    /// from records made before they could be paused).
    #[serde(default = "one", deserialize_with = "nan_if_null")]
    pub(crate) large_share: f64,
    pub(crate) planted: bool,
    pub(crate) gc_cycles: u64,
    pub(crate) gc_sampled: u64,
    pub(crate) hits: u64,
}

/// How a twin's work is counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Lens {
    /// Operations per CPU-second, the tracer's CPU charged to the twin it
    /// traces.
    Cpu,
    /// Operations per wall-clock second.
    Wall,
}

impl TwinPhase {
    pub(crate) fn secs(&self) -> f64 {
        self.end - self.start
    }

    /// Twin `i`'s figure in `lens`.
    pub(crate) fn value(&self, i: usize, lens: Lens) -> f64 {
        let t = &self.twins[i];
        match lens {
            Lens::Wall => t.rate,
            Lens::Cpu => {
                let tracer = if self.traced == Some(i) {
                    self.tracer_cpu_s
                } else {
                    0.0
                };
                let cpu = t.cpu_s + tracer;
                if cpu > 0.0 {
                    t.rate * self.secs() / cpu
                } else {
                    f64::NAN
                }
            }
        }
    }

    /// Twin `i`'s figure over its twin's.
    fn ratio(&self, i: usize, lens: Lens) -> f64 {
        self.value(i, lens) / self.value(1 - i, lens)
    }
}

/// Each round's loss (`1 - sqrt(r0 r1)`, r_i the ratio of twin i to its
/// twin while twin i is traced) and noise floor (the same over the round's
/// two untraced phases, the first standing for twin 0 traced). `ph`: one
/// workload on one Go release. Rounds lacking a phase are left out.
pub(crate) fn round_losses(ph: &[&TwinPhase], lens: Lens) -> (Vec<f64>, Vec<f64>) {
    let mut rounds: Vec<usize> = ph.iter().map(|p| p.round).collect();
    rounds.sort_unstable();
    rounds.dedup();
    let (mut loss, mut null) = (Vec::new(), Vec::new());
    for r in rounds {
        let of = |t: Option<usize>| ph.iter().filter(move |p| p.round == r && p.traced == t);
        let (t0, t1) = (of(Some(0)).next(), of(Some(1)).next());
        if let (Some(a), Some(b)) = (t0, t1) {
            let l = 1.0 - (a.ratio(0, lens) * b.ratio(1, lens)).sqrt();
            if l.is_finite() {
                loss.push(l);
            }
        }
        let mut untraced = of(None);
        if let (Some(a), Some(b)) = (untraced.next(), untraced.next()) {
            let l = 1.0 - (a.ratio(0, lens) * b.ratio(1, lens)).sqrt();
            if l.is_finite() {
                null.push(l);
            }
        }
    }
    (loss, null)
}

/// Every selected workload in turn, each on every Go release.
pub(crate) fn run(b: &mut Bench, gos: &[GoBin], tracer: &Path) -> Result<Vec<TwinPhase>> {
    let mut out = Vec::new();
    let workloads = b.s.phase_workloads.clone();
    for w in workloads {
        for g in gos {
            out.extend(
                run_one(b, g, w, tracer).with_context(|| format!("{} twins, {}", w.name, g.tag))?,
            );
        }
    }
    Ok(out)
}

/// The two targets, started together and told to go together.
fn start_twins(b: &Bench, g: &GoBin, w: &Workload, life_s: f64) -> Result<[Proc; 2]> {
    let name = g
        .bin
        .file_name()
        .map_or_else(|| "bench".into(), |n| n.to_string_lossy().into_owned());
    let copy = b.out_dir.join(format!("{name}-twin"));
    fs::copy(&g.bin, &copy)
        .with_context(|| format!("copying {} to {}", g.bin.display(), copy.display()))?;
    let spawn = |bin: &Path, i: usize| -> Result<Proc> {
        let mut cmd = Command::new(bin);
        cmd.args(w.args).args([
            "-seconds".to_owned(),
            format!("{life_s:.0}"),
            "-tick".to_owned(),
            format!("{TICK_MS}ms"),
            "-wait".to_owned(),
        ]);
        Proc::spawn(&format!("bench target ({} twin {i})", w.name), cmd)
    };
    let mut twins = [spawn(&g.bin, 0)?, spawn(&copy, 1)?];
    // livemaps builds its maps first.
    for t in &mut twins {
        t.wait_line(|l| l == "waiting", Duration::from_secs(180))?;
    }
    for t in &mut twins {
        t.send_line("go")?;
    }
    Ok(twins)
}

fn run_one(
    b: &mut Bench,
    g: &GoBin,
    w: &'static Workload,
    tracer: &Path,
) -> Result<Vec<TwinPhase>> {
    let (rounds, p, settle) = (b.s.phase_rounds, b.s.phase, b.s.phase_settle);
    let p_untraced = p / 2;
    b.wait_idle();
    // An upper bound on the targets' life (they are killed when done).
    let life = rounds as f64 * (3.0 * p.as_secs_f64() + 240.0) + 60.0;
    let mut twins = start_twins(b, g, w, life)?;
    thread::sleep(WARMUP);
    let pids = [twins[0].pid(), twins[1].pid()];
    let json_path = b.out_dir.join(format!("twin-report-{}.json", pids[0]));
    let mut phases = Vec::new();
    for round in 0..rounds {
        let first = round % 2;
        for traced in [Some(first), None, Some(1 - first), None] {
            for (i, t) in twins.iter_mut().enumerate() {
                if !t.running() {
                    bail!("{} twin {i} exited early: {}", w.name, t.stderr_tail());
                }
            }
            let mut tr = match traced {
                // The control: the same pause, and no tracer.
                Some(_) if b.s.no_tracer => {
                    thread::sleep(settle);
                    None
                }
                Some(i) => {
                    let t = spawn_mapleak(tracer, pids[i], p.as_secs() + 600, &json_path)?;
                    thread::sleep(settle);
                    Some(t)
                }
                None => None,
            };
            let busy0 = system_busy_s();
            let cpu0 = pids.map(proc_cpu_s);
            let tcpu0 = tr.as_ref().and_then(|t| proc_cpu_s(t.pid()));
            let start = now();
            thread::sleep(if traced.is_some() { p } else { p_untraced });
            let end = now();
            let tcpu1 = tr.as_ref().and_then(|t| proc_cpu_s(t.pid()));
            let cpu1 = pids.map(proc_cpu_s);
            let busy1 = system_busy_s();
            let cpu_s = [cpu_delta(cpu0[0], cpu1[0]), cpu_delta(cpu0[1], cpu1[1])];
            // No tracer (untraced, or the `--no-tracer` control): none of
            // its CPU to add.
            let tracer_cpu_s = if tr.is_some() {
                cpu_delta(tcpu0, tcpu1)
            } else {
                0.0
            };
            let foreign_cpu_s = match (busy0, busy1) {
                (Some(a), Some(b)) => ((b - a) - cpu_s[0] - cpu_s[1] - tracer_cpu_s).max(0.0),
                _ => f64::NAN,
            };
            let mut ph = TwinPhase {
                workload: w.name.to_owned(),
                go: g.tag.clone(),
                round,
                traced,
                start,
                end,
                twins: [0, 1].map(|i| TwinFigures {
                    rate: f64::NAN,
                    cpu_s: cpu_s[i],
                    gc_rate: f64::NAN,
                }),
                tracer_cpu_s,
                foreign_cpu_s,
                trace_s: f64::NAN,
                debit_s: f64::NAN,
                attached_share: f64::NAN,
                ..TwinPhase::default()
            };
            if let Some(t) = tr.as_mut() {
                t.signal(libc::SIGINT);
                let st = t.wait_exit(Duration::from_secs(60))?;
                if !st.success() {
                    bail!(
                        "mapleak-trace exited with {st} after SIGINT: {}",
                        t.stderr_tail()
                    );
                }
                let rep = take_report(&json_path, t)?;
                let r = Traced::from_report(&rep);
                ph.hits = report_hits(&rep, &[]).0;
                ph.trace_s = rep["duration_s"].as_f64().unwrap_or(f64::NAN);
                ph.debit_s = r.debit_s;
                ph.attached_share = r.attached_share;
                ph.large_share = r.large_share;
                ph.planted = r.planted;
                ph.gc_cycles = r.gc_cycles;
                ph.gc_sampled = r.gc_sampled;
                eprintln!(
                    "bench: {} twins {:9} round {round}: twin {} traced {:.1} s, debit {:.4} s over {:.1} s, \
                     tracer CPU {tracer_cpu_s:.3} s, governed probes attached {:.0}%, large-growth {:.0}%, planted map {}reported growing",
                    w.name,
                    g.tag,
                    traced.unwrap_or(0),
                    end - start,
                    r.debit_s,
                    ph.trace_s,
                    r.attached_share * 100.0,
                    r.large_share * 100.0,
                    if r.planted { "" } else { "NOT " }
                );
            }
            phases.push(ph);
            thread::sleep(GAP);
        }
    }
    b.foreign.extend(
        phases
            .iter()
            .map(|p| p.foreign_cpu_s / p.secs())
            .filter(|x| x.is_finite()),
    );
    // Let the last ticks in, then stop the targets (Drop kills them).
    thread::sleep(Duration::from_millis(2 * TICK_MS));
    let mut ticks = Vec::new();
    for (i, t) in twins.iter_mut().enumerate() {
        if !t.running() {
            bail!("{} twin {i} exited early: {}", w.name, t.stderr_tail());
        }
        ticks.push(parse_ticks(&drain(t)));
    }
    drop(twins);
    for ph in &mut phases {
        for (i, tk) in ticks.iter().enumerate() {
            ph.twins[i].rate = rate(tk, ph.start, ph.end);
            ph.twins[i].gc_rate = gc_rate(tk, ph.start, ph.end);
            if !ph.twins[i].rate.is_finite() {
                bail!(
                    "no tick of twin {i} fell inside a phase of round {}",
                    ph.round
                );
            }
        }
    }
    Ok(phases)
}

/// A share of one (a field absent from older records).
fn one() -> f64 {
    1.0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A phase where the twins ran at `rates`, each on one CPU-second per
    /// second, twin `traced` with the tracer's `tracer_cpu_s` on top.
    fn phase(round: usize, traced: Option<usize>, rates: [f64; 2], tracer_cpu_s: f64) -> TwinPhase {
        TwinPhase {
            workload: "json".to_owned(),
            go: "go1.26.8".to_owned(),
            round,
            traced,
            start: 0.0,
            end: 10.0,
            twins: rates.map(|rate| TwinFigures {
                rate,
                cpu_s: 10.0,
                gc_rate: 1.0,
            }),
            tracer_cpu_s,
            ..TwinPhase::default()
        }
    }

    #[test]
    fn a_fixed_advantage_of_one_twin_cancels_out() {
        // Twin 0 is 10 % faster than twin 1 untraced; tracing costs 2 %.
        let (b, l) = (1.1, 0.02);
        let ph = [
            phase(0, Some(0), [100.0 * b * (1.0 - l), 100.0], 0.0),
            phase(0, None, [100.0 * b, 100.0], 0.0),
            phase(0, Some(1), [100.0 * b, 100.0 * (1.0 - l)], 0.0),
            phase(0, None, [100.0 * b, 100.0], 0.0),
        ];
        let refs: Vec<&TwinPhase> = ph.iter().collect();
        for lens in [Lens::Cpu, Lens::Wall] {
            let (loss, null) = round_losses(&refs, lens);
            assert_eq!(loss.len(), 1);
            assert!((loss[0] - l).abs() < 1e-9, "{lens:?}: {loss:?}");
            assert!(null[0].abs() < 1e-9, "{lens:?}: {null:?}");
        }
    }

    #[test]
    fn the_tracers_cpu_is_charged_to_the_traced_twin() {
        // The probes cost nothing; the tracer used 0.1 CPU-s over 10 s on
        // top of the traced twin's 10: 1/101 of the work's CPU.
        let ph = [
            phase(3, Some(1), [100.0, 100.0], 0.1),
            phase(3, Some(0), [100.0, 100.0], 0.1),
        ];
        let refs: Vec<&TwinPhase> = ph.iter().collect();
        let (loss, null) = round_losses(&refs, Lens::Cpu);
        assert!((loss[0] - (1.0 - 10.0 / 10.1)).abs() < 1e-9, "{loss:?}");
        // No untraced phases: no noise floor for the round.
        assert!(null.is_empty());
        let (wall, _) = round_losses(&refs, Lens::Wall);
        assert!(wall[0].abs() < 1e-12);
    }

    #[test]
    fn a_round_missing_a_traced_phase_is_left_out() {
        let ph = [
            phase(0, Some(0), [90.0, 100.0], 0.0),
            phase(1, Some(1), [100.0, 90.0], 0.0),
        ];
        let refs: Vec<&TwinPhase> = ph.iter().collect();
        assert!(round_losses(&refs, Lens::Wall).0.is_empty());
    }

    #[test]
    fn nan_figures_survive_the_record() {
        let mut p = phase(0, None, [f64::NAN, 5.0], 0.0);
        p.debit_s = f64::NAN;
        let v = serde_json::to_value(&p).unwrap();
        assert!(v["twins"][0]["rate"].is_null());
        let back: TwinPhase = serde_json::from_value(v).unwrap();
        assert!(back.twins[0].rate.is_nan() && back.debit_s.is_nan());
        assert!((back.twins[1].rate - 5.0).abs() < 1e-12);
    }
}
