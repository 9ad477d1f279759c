//! Part 1c: many Go processes traced at once by one node-wide tracer
//! (`mapleak-trace --all`), in alternating phases as part 1b.
//!
//! N target processes (`bench` in part 1b's `json` workload, each with its
//! planted growing map, `GOMAXPROCS` 1 so that they share the machine's
//! CPUs) run for the whole measurement and tick their operation counts.
//! After a warm-up, untraced phases alternate with traced ones: one
//! `mapleak-trace --all --exe BIN` (BIN a copy of the bench binary that
//! only these processes run) is started, its traced phase runs from the
//! moment it has reported every target attached plus the settling delay
//! until it is stopped with SIGINT, and its JSON report must name every
//! target. As many control processes run the same program from another
//! copy of the binary, which `--exe` does not select, and are never traced:
//! each phase's rates are taken relative to theirs, so that what the shared
//! host does to every process at once (another tenant, a slower minute)
//! cancels out, as the twins of part 1h do. Each process's phases are then
//! compared as in part 1b (its stats: `phases::losses`, `median_interval`);
//! the figures and the section are `report::fleet`'s.
use std::{
    collections::HashSet,
    fs,
    path::{Path, PathBuf},
    process::Command,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::bench::{
    BUDGET_PCT,
    accounting::{proc_cpu_s, proc_hwm_bytes, system_busy_s},
    binaries::GoBin,
    parts::phases::{self, GAP, Phase, TICK_MS, WARMUP, cpu_delta, drain, now, parse_ticks},
    proc::Proc,
    runner::Bench,
    stats::nan_if_null,
    suite::{self, Traced, Workload},
};

/// The workload every target runs (part 1b's `json`).
pub(crate) const WORKLOAD: &str = "json";

/// `GOMAXPROCS` of each target: N processes share the machine's CPUs.
pub(crate) const GOMAXPROCS: u32 = 1;

/// One process in one phase.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct FleetProc {
    pub(crate) pid: u32,
    /// Operations per second in the phase (its ticks wholly inside it).
    #[serde(deserialize_with = "nan_if_null")]
    pub(crate) rate: f64,
    /// Its CPU time in the phase (user + system).
    #[serde(deserialize_with = "nan_if_null")]
    pub(crate) target_cpu_s: f64,
    /// Traced phases: the tracer's report names it; its planted map is
    /// reported growing; the budget rate it was given (mean over the trace,
    /// `overhead.budget_rate_mean`, share of one CPU) and what the governor
    /// debited (`overhead.budget_spent_target_cpu_s`).
    pub(crate) reported: bool,
    pub(crate) planted: bool,
    #[serde(deserialize_with = "nan_if_null")]
    pub(crate) budget_rate: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub(crate) debit_s: f64,
}

/// One phase of the alternation, every process in it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct FleetPhase {
    pub(crate) go: String,
    pub(crate) round: usize,
    pub(crate) traced: bool,
    /// Start and end (Unix seconds), and when the tracer had reported every
    /// target attached (untraced: the start).
    pub(crate) start: f64,
    pub(crate) end: f64,
    pub(crate) attached: f64,
    /// Seconds from the tracer's start to every target attached.
    #[serde(deserialize_with = "nan_if_null")]
    pub(crate) attach_s: f64,
    /// The tracer's CPU time in the phase, and its peak resident memory
    /// (VmHWM, read before SIGINT).
    #[serde(deserialize_with = "nan_if_null")]
    pub(crate) tracer_cpu_s: f64,
    pub(crate) tracer_peak_rss: u64,
    /// CPU time of other processes (not the targets, not the tracer).
    #[serde(deserialize_with = "nan_if_null")]
    pub(crate) foreign_cpu_s: f64,
    pub(crate) procs: Vec<FleetProc>,
    /// The control processes (never traced) in the same phase: their rates
    /// and CPU. Empty in runs made before there were controls.
    #[serde(default)]
    pub(crate) controls: Vec<FleetProc>,
}

/// What [`as_phases`] measures each phase's rate against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Against {
    /// Nothing: operations per second as counted.
    Nothing,
    /// The control processes' operations per wall-clock second in the same
    /// phase (for `phases::losses`).
    ControlsPerSecond,
    /// The control processes' operations per CPU-second in the same phase
    /// (for `phases::cpu_losses`).
    ControlsPerCpuSecond,
}

impl FleetPhase {
    /// The control processes' figure in this phase that `against` names
    /// (NaN if there are none, or it cannot be computed).
    fn control(&self, against: Against) -> f64 {
        let rate: f64 = self.controls.iter().map(|c| c.rate).sum();
        let cpu: f64 = self.controls.iter().map(|c| c.target_cpu_s).sum();
        let x = match against {
            Against::Nothing => return 1.0,
            Against::ControlsPerSecond => rate,
            Against::ControlsPerCpuSecond => rate * (self.end - self.start) / cpu,
        };
        if self.controls.is_empty() || !(x.is_finite() && x > 0.0) {
            f64::NAN
        } else {
            x
        }
    }
}

/// Each phase's factor that puts its rates against the controls' (their
/// mean over `ph` over theirs in the phase, so that the rates keep their
/// scale); 1 for every phase when no phase has controls.
fn control_factors(ph: &[&FleetPhase], against: Against) -> Vec<f64> {
    if against == Against::Nothing || ph.iter().all(|p| p.controls.is_empty()) {
        return vec![1.0; ph.len()];
    }
    let c: Vec<f64> = ph.iter().map(|p| p.control(against)).collect();
    let known: Vec<f64> = c.iter().copied().filter(|x| x.is_finite()).collect();
    let mean = known.iter().sum::<f64>() / known.len().max(1) as f64;
    c.iter().map(|x| mean / x).collect()
}

/// The workload the targets run.
pub(crate) fn workload() -> &'static Workload {
    suite::select(WORKLOAD)[0]
}

/// Process `k`'s phases (of one Go release, in order) as part 1b's, for
/// its statistics; `k == None`: the whole node (every traced process's
/// operations summed). A process's share of the tracer's CPU (for its
/// operations per CPU-second) is an equal one; the node's is all of it.
/// Each phase's rate is scaled by what `against` names: a phase in which
/// the controls did 5 % less than their mean has its rates raised by 5 %.
pub(crate) fn as_phases(ph: &[&FleetPhase], k: Option<usize>, against: Against) -> Vec<Phase> {
    let factors = control_factors(ph, against);
    ph.iter()
        .zip(factors)
        .map(|(p, f)| {
            let of = |f: &dyn Fn(&FleetProc) -> f64| match k {
                Some(k) => p.procs.get(k).map_or(f64::NAN, f),
                None => p.procs.iter().map(f).sum(),
            };
            Phase {
                workload: workload(),
                go: p.go.clone(),
                round: p.round,
                traced: p.traced,
                start: p.start,
                end: p.end,
                attached: p.attached,
                rate: of(&|x| x.rate) * f,
                startup_rate: f64::NAN,
                gc_rate: f64::NAN,
                tracer_cpu_s: match k {
                    Some(_) => p.tracer_cpu_s / p.procs.len().max(1) as f64,
                    None => p.tracer_cpu_s,
                },
                report: None,
                hits: 0,
                foreign_cpu_s: p.foreign_cpu_s,
                target_cpu_s: of(&|x| x.target_cpu_s),
            }
        })
        .collect()
}

/// Every selected Go release in turn.
pub(crate) fn run(b: &mut Bench, gos: &[GoBin], tracer: &Path) -> Result<Vec<FleetPhase>> {
    let mut out = Vec::new();
    for g in gos {
        out.extend(run_one(b, g, tracer).with_context(|| format!("fleet, {}", g.tag))?);
    }
    Ok(out)
}

/// The pid in a `mapleak-trace: attached N probes to pid P (...)` line.
fn attached_pid(line: &str) -> Option<u32> {
    let rest = line.strip_prefix("mapleak-trace: attached ")?;
    rest.split_once(" to pid ")?
        .1
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The targets' CPU seconds now (NaN for one that cannot be read).
fn cpus(pids: &[u32]) -> Vec<f64> {
    pids.iter()
        .map(|&p| proc_cpu_s(p).unwrap_or(f64::NAN))
        .collect()
}

/// A phase of `p` with nothing traced, or the measured stretch of a traced
/// one: the targets' CPU and the other processes' over it.
struct Window {
    start: f64,
    end: f64,
    target_cpu: Vec<f64>,
    busy: f64,
}

fn measure(pids: &[u32], p: Duration) -> Window {
    let (busy0, c0) = (system_busy_s(), cpus(pids));
    let start = now();
    thread::sleep(p);
    let end = now();
    let c1 = cpus(pids);
    Window {
        start,
        end,
        target_cpu: c0.iter().zip(&c1).map(|(a, b)| b - a).collect(),
        busy: cpu_delta(busy0, system_busy_s()),
    }
}

/// Processes as an untraced phase has them: their CPU, rates to come.
fn untraced_procs(pids: &[u32], cpu: &[f64]) -> Vec<FleetProc> {
    pids.iter()
        .zip(cpu)
        .map(|(&pid, &c)| FleetProc {
            pid,
            rate: f64::NAN,
            target_cpu_s: c,
            reported: false,
            planted: false,
            budget_rate: f64::NAN,
            debit_s: f64::NAN,
        })
        .collect()
}

fn run_one(b: &mut Bench, g: &GoBin, tracer: &Path) -> Result<Vec<FleetPhase>> {
    let s = &b.s;
    let (n, rounds, p, settle) = (s.fleet_procs, s.fleet_rounds, s.fleet_phase, s.fleet_settle);
    let control = s.no_tracer;
    b.wait_idle();
    // A copy only these targets run: `--exe` selects them alone.
    let dir = b.out_dir.join("fleet");
    fs::create_dir_all(&dir)?;
    let bin: PathBuf = dir.join(format!("bench-{}", g.tag));
    fs::copy(&g.bin, &bin).with_context(|| format!("copying {}", g.bin.display()))?;
    // The controls' copy, which `--exe` does not select.
    let control_bin: PathBuf = dir.join(format!("control-{}", g.tag));
    fs::copy(&g.bin, &control_bin).with_context(|| format!("copying {}", g.bin.display()))?;
    let life = rounds as f64 * (2.0 * p.as_secs_f64() + settle.as_secs_f64() + 180.0) + 60.0;
    let w = workload();
    // Targets 0..n, then the controls n..2n; started in turns.
    let (mut targets, mut controls) = (Vec::new(), Vec::new());
    for i in 0..n {
        for (list, exe, what) in [
            (&mut targets, &bin, "target"),
            (&mut controls, &control_bin, "control"),
        ] {
            let mut cmd = Command::new(exe);
            cmd.env("GOMAXPROCS", GOMAXPROCS.to_string())
                .args(w.args)
                .args([
                    "-seconds".to_owned(),
                    format!("{life:.0}"),
                    "-tick".to_owned(),
                    format!("{TICK_MS}ms"),
                    "-wait".to_owned(),
                ]);
            list.push(Proc::spawn(&format!("fleet {what} {i}"), cmd)?);
        }
    }
    targets.append(&mut controls);
    for t in &mut targets {
        t.wait_line(|l| l == "waiting", Duration::from_secs(60))?;
    }
    let all_pids: Vec<u32> = targets.iter().map(Proc::pid).collect();
    let pids: Vec<u32> = all_pids[..n].to_vec();
    for t in &mut targets {
        t.send_line("go")?;
    }
    thread::sleep(WARMUP);
    let json_path = b
        .out_dir
        .join(format!("fleet-report-{}.json", std::process::id()));
    let phase = |round: usize, traced: bool, w: &Window, tracer_cpu_s: f64| FleetPhase {
        go: g.tag.clone(),
        round,
        traced,
        start: w.start,
        end: w.end,
        attached: w.start,
        attach_s: f64::NAN,
        tracer_cpu_s,
        tracer_peak_rss: 0,
        foreign_cpu_s: (w.busy - w.target_cpu.iter().sum::<f64>() - tracer_cpu_s).max(0.0),
        procs: untraced_procs(&all_pids[..n], &w.target_cpu[..n]),
        controls: untraced_procs(&all_pids[n..], &w.target_cpu[n..]),
    };
    let mut out = Vec::new();
    for round in 0..rounds {
        for t in &mut targets {
            if !t.running() {
                bail!("a fleet target exited early: {}", t.stderr_tail());
            }
        }
        out.push(phase(round, false, &measure(&all_pids, p), 0.0));
        if control {
            // `--no-tracer`: the settling pause, and the phase that would
            // be traced measured untraced (nothing attaches, nothing to
            // report).
            thread::sleep(settle);
            let mut ph = phase(round, true, &measure(&all_pids, p), 0.0);
            for x in &mut ph.procs {
                x.reported = true;
            }
            eprintln!(
                "bench: fleet {:9} round {round}: control, nothing traced",
                g.tag
            );
            out.push(ph);
            thread::sleep(GAP);
            continue;
        }
        // Traced: one tracer for every target.
        let _ = fs::remove_file(&json_path);
        let mut c = Command::new(tracer);
        c.arg("--all")
            .arg("--exe")
            .arg(&bin)
            .arg("--overhead-budget")
            .arg(BUDGET_PCT.to_string())
            .arg("--duration")
            .arg(format!("{}s", p.as_secs() + settle.as_secs() + 600))
            .arg("--json")
            .arg(&json_path);
        let t0 = Instant::now();
        let mut tr = Proc::spawn("mapleak-trace --all", c)?;
        let mut left: HashSet<u32> = pids.iter().copied().collect();
        let deadline = t0 + Duration::from_secs(60 + 5 * n as u64);
        while !left.is_empty() {
            let line = tr
                .wait_line(
                    |l| l.starts_with("mapleak-trace: attached "),
                    deadline.saturating_duration_since(Instant::now()),
                )
                .with_context(|| format!("{} of {n} targets not attached", left.len()))?;
            if let Some(pid) = attached_pid(&line) {
                left.remove(&pid);
            }
        }
        let attach_s = t0.elapsed().as_secs_f64();
        let attached = now();
        thread::sleep(settle);
        let cpu0 = proc_cpu_s(tr.pid());
        let win = measure(&all_pids, p);
        let tracer_cpu_s = cpu_delta(cpu0, proc_cpu_s(tr.pid()));
        let hwm = proc_hwm_bytes(tr.pid()).unwrap_or(0);
        tr.signal(libc::SIGINT);
        let st = tr.wait_exit(Duration::from_secs(90))?;
        if !st.success() {
            bail!(
                "mapleak-trace --all exited with {st} after SIGINT: {}",
                tr.stderr_tail()
            );
        }
        let text = fs::read_to_string(&json_path).with_context(|| {
            format!(
                "mapleak-trace --all wrote no {}; stderr: {}",
                json_path.display(),
                tr.stderr_tail()
            )
        })?;
        let _ = fs::remove_file(&json_path);
        let doc: Value = serde_json::from_str(&text).context("mapleak-trace JSON")?;
        let mut ph = phase(round, true, &win, tracer_cpu_s);
        ph.attached = attached;
        ph.attach_s = attach_s;
        ph.tracer_peak_rss = hwm;
        for rep in doc["processes"].as_array().into_iter().flatten() {
            let pid = rep["target"]["pid"].as_u64();
            if all_pids[n..].iter().any(|&c| Some(u64::from(c)) == pid) {
                bail!(
                    "the tracer traced control process {pid:?}, which `--exe` should have left out"
                );
            }
            if let Some(x) = ph.procs.iter_mut().find(|x| Some(u64::from(x.pid)) == pid) {
                let t = Traced::from_report(rep);
                x.reported = true;
                x.planted = t.planted;
                x.debit_s = t.debit_s;
                x.budget_rate = rep["overhead"]["budget_rate_mean"]
                    .as_f64()
                    .unwrap_or(f64::NAN);
            }
        }
        let missing: Vec<u32> = ph
            .procs
            .iter()
            .filter(|x| !x.reported)
            .map(|x| x.pid)
            .collect();
        if !missing.is_empty() {
            bail!("the tracer's report does not name targets {missing:?}");
        }
        eprintln!(
            "bench: fleet {:9} round {round}: {n} attached in {attach_s:.1} s, traced {:.1} s, tracer CPU \
             {:.2} % of one CPU, peak RSS {:.0} MiB, budget rates {:.4}..{:.4} % (sum {:.3} %), planted map \
             growing in {}/{n}",
            g.tag,
            win.end - win.start,
            tracer_cpu_s / (win.end - win.start) * 100.0,
            hwm as f64 / f64::from(1u32 << 20),
            ph.procs
                .iter()
                .map(|x| x.budget_rate)
                .fold(f64::INFINITY, f64::min)
                * 100.0,
            ph.procs.iter().map(|x| x.budget_rate).fold(0.0, f64::max) * 100.0,
            ph.procs.iter().map(|x| x.budget_rate).sum::<f64>() * 100.0,
            ph.procs.iter().filter(|x| x.planted).count(),
        );
        out.push(ph);
        thread::sleep(GAP);
    }
    out.push(phase(rounds, false, &measure(&all_pids, p), 0.0));
    b.foreign.extend(
        out.iter()
            .map(|p| p.foreign_cpu_s / (p.end - p.start))
            .filter(|x| x.is_finite()),
    );
    thread::sleep(Duration::from_millis(2 * TICK_MS));
    for (k, t) in targets.iter_mut().enumerate() {
        let what = if k < n {
            format!("target {k}")
        } else {
            format!("control {}", k - n)
        };
        if !t.running() {
            bail!("fleet {what} exited early: {}", t.stderr_tail());
        }
        let ticks = parse_ticks(&drain(t));
        for ph in &mut out {
            let x = if k < n {
                &mut ph.procs[k]
            } else {
                &mut ph.controls[k - n]
            };
            x.rate = phases::rate(&ticks, ph.start, ph.end);
            if !x.rate.is_finite() {
                bail!(
                    "no tick of fleet {what} fell inside the {} phase of round {}",
                    if ph.traced { "traced" } else { "untraced" },
                    ph.round
                );
            }
        }
    }
    drop(targets);
    let _ = fs::remove_file(&bin);
    let _ = fs::remove_file(&control_bin);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pid_of_an_attached_line() {
        assert_eq!(
            attached_pid(
                "mapleak-trace: attached 23 probes to pid 4242 (go1.26.8 amd64 swiss); report at Ctrl-C"
            ),
            Some(4242)
        );
        assert_eq!(attached_pid("mapleak-trace: --all: tracing"), None);
    }

    fn fp(traced: bool, rates: &[f64]) -> FleetPhase {
        FleetPhase {
            go: "g".to_owned(),
            traced,
            end: 1.0,
            procs: rates
                .iter()
                .map(|&rate| FleetProc {
                    rate,
                    target_cpu_s: 0.1,
                    ..FleetProc::default()
                })
                .collect(),
            ..FleetPhase::default()
        }
    }

    /// Phases whose controls did `ctl` operations a second each (two of
    /// them, 0.1 CPU-seconds each).
    fn with_controls(traced: bool, rates: &[f64], ctl: f64) -> FleetPhase {
        let mut p = fp(traced, rates);
        p.controls = fp(false, &[ctl, ctl]).procs;
        p
    }

    /// Process `k`'s losses in `ph` against `against` (per CPU-second for
    /// the CPU-second lens), and the noise floors.
    fn losses_of(ph: &[FleetPhase], k: usize, against: Against) -> (Vec<f64>, Vec<f64>) {
        let refs: Vec<&FleetPhase> = ph.iter().collect();
        let as_ph = as_phases(&refs, Some(k), against);
        let as_refs: Vec<&Phase> = as_ph.iter().collect();
        if against == Against::ControlsPerCpuSecond {
            phases::cpu_losses(&as_refs)
        } else {
            phases::losses(&as_refs)
        }
    }

    /// The host slows every process by 10 % in the traced phase: measured
    /// alone the traced process lost 10 %, against the controls nothing; a
    /// real loss of 2 % shows through the same slowdown, in both lenses.
    #[test]
    fn controls_cancel_what_the_host_does_to_every_process() {
        let slow = [
            with_controls(false, &[100.0], 50.0),
            with_controls(true, &[90.0], 45.0),
            with_controls(false, &[100.0], 50.0),
        ];
        let loss = |against| losses_of(&slow, 0, against).0[0];
        assert!((loss(Against::Nothing) - 0.1).abs() < 1e-12);
        assert!(loss(Against::ControlsPerSecond).abs() < 1e-12);
        let mut lossy = slow.clone();
        lossy[1].procs[0].rate = 90.0 * 0.98;
        let l = losses_of(&lossy, 0, Against::ControlsPerSecond).0[0];
        assert!((l - 0.02).abs() < 1e-12, "{l}");
        // Per CPU-second (every process used 0.1 CPU-seconds in every
        // phase): the controls did 10 % less per CPU-second in the slow
        // phase, and so did the traced process, besides its own 2 %.
        let l = losses_of(&lossy, 0, Against::ControlsPerCpuSecond).0[0];
        assert!((l - 0.02).abs() < 1e-9, "{l}");
        // A phase whose controls cannot be measured gives no loss.
        let mut gone = slow.clone();
        gone[1].controls[0].rate = f64::NAN;
        let (l, _) = losses_of(&gone, 0, Against::ControlsPerSecond);
        assert!(l.is_empty(), "{l:?}");
    }

    #[test]
    fn each_process_and_the_node_as_phases() {
        let ph = [
            fp(false, &[100.0, 10.0]),
            fp(true, &[99.0, 9.0]),
            fp(false, &[100.0, 10.0]),
        ];
        let refs: Vec<&FleetPhase> = ph.iter().collect();
        let (l, _) = losses_of(&ph, 1, Against::Nothing);
        assert!((l[0] - 0.1).abs() < 1e-12, "{l:?}");
        // No controls: measured against them is as measured.
        let (l2, _) = losses_of(&ph, 1, Against::ControlsPerSecond);
        assert_eq!(l, l2);
        let node = as_phases(&refs, None, Against::Nothing);
        assert!((node[1].rate - 108.0).abs() < 1e-12);
        assert!((node[1].target_cpu_s - 0.2).abs() < 1e-12);
        // A phase written with NaN figures reads back.
        let mut nan = ph[1].clone();
        nan.attach_s = f64::NAN;
        nan.procs[0].budget_rate = f64::NAN;
        let v = serde_json::to_value(&nan).unwrap();
        let back: FleetPhase = serde_json::from_value(v).unwrap();
        assert!(back.attach_s.is_nan() && back.procs[0].budget_rate.is_nan());
        assert_eq!(back.procs.len(), 2);
    }
}
