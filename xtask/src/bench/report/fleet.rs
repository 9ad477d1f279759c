//! Part 1c's figures (per process and across them, per Go release), its
//! section of the report and its lines of the reading.
use std::fmt::Write as _;

use crate::bench::{
    BUDGET_PCT,
    binaries::GoBin,
    parts::{
        fleet::{Against, FleetPhase, GOMAXPROCS, as_phases, workload},
        phases::{CONFIDENCE, TICK_MS, WARMUP, cpu_losses, losses, median_interval},
    },
    stats::{median, min_max, num, pct},
};

/// One process's phases.
struct ProcRow {
    pid: u32,
    untraced: f64,
    loss: f64,
    interval: Option<(f64, f64)>,
    null: f64,
    /// The same per CPU-second of the process (and an equal share of the
    /// tracer's): the loss, its interval, the noise floor.
    cpu_loss: f64,
    cpu_interval: Option<(f64, f64)>,
    cpu_null: f64,
    /// Median budget rate it was given (share of one CPU) over the traced
    /// phases, and its planted map reported growing (phases, of traced).
    budget_rate: f64,
    planted: (usize, usize),
}

/// One Go release's run.
struct Row {
    go: String,
    map_impl: String,
    procs: Vec<ProcRow>,
    /// Control processes (never traced) the rates were measured against.
    controls: usize,
    rounds: usize,
    phase_s: f64,
    settle_s: f64,
    attach_s: f64,
    /// The node: every process's operations summed.
    node_loss: f64,
    node_interval: Option<(f64, f64)>,
    node_null: f64,
    node_null_interval: Option<(f64, f64)>,
    /// Per CPU-second of the processes and the tracer.
    node_cpu_loss: f64,
    node_cpu_interval: Option<(f64, f64)>,
    node_cpu_null: f64,
    /// The tracer: CPU (share of one CPU, mean over the traced phases and
    /// the greatest), peak RSS (greatest, bytes).
    tracer_cpu: (f64, f64),
    tracer_rss: u64,
    /// The budget rates given, summed over the processes (median over the
    /// traced phases).
    rate_sum: f64,
    foreign: (f64, f64),
}

impl Row {
    fn worst(&self, per_cpu: bool) -> f64 {
        self.procs
            .iter()
            .map(|p| if per_cpu { p.cpu_loss } else { p.loss })
            .fold(f64::NEG_INFINITY, f64::max)
    }

    /// Processes whose median loss is at most 1 %, and of them those whose
    /// whole interval is (per CPU-second with `per_cpu`).
    fn met(&self, per_cpu: bool) -> (usize, usize) {
        let of = |p: &ProcRow| {
            if per_cpu {
                (p.cpu_loss, p.cpu_interval)
            } else {
                (p.loss, p.interval)
            }
        };
        let met = self.procs.iter().filter(|p| of(p).0 <= 0.01).count();
        let sure = self
            .procs
            .iter()
            .filter(|p| of(p).1.is_some_and(|(_, hi)| hi <= 0.01))
            .count();
        (met, sure)
    }

    fn planted(&self) -> (usize, usize) {
        self.procs
            .iter()
            .fold((0, 0), |(a, b), p| (a + p.planted.0, b + p.planted.1))
    }
}

fn rows(gos: &[GoBin], fleet: &[FleetPhase]) -> Vec<Row> {
    let mut out = Vec::new();
    for g in gos {
        let ph: Vec<&FleetPhase> = fleet.iter().filter(|p| p.go == g.tag).collect();
        if !ph.is_empty() {
            out.push(row(g, &ph));
        }
    }
    out
}

/// `losses` of process `k` (None: the node), its rates against the
/// controls' per wall-clock second.
fn losses_against_controls(ph: &[&FleetPhase], k: Option<usize>) -> (Vec<f64>, Vec<f64>) {
    let p = as_phases(ph, k, Against::ControlsPerSecond);
    losses(&p.iter().collect::<Vec<_>>())
}

/// `cpu_losses` of process `k` (None: the node), against the controls'
/// operations per CPU-second.
fn cpu_losses_against_controls(ph: &[&FleetPhase], k: Option<usize>) -> (Vec<f64>, Vec<f64>) {
    let p = as_phases(ph, k, Against::ControlsPerCpuSecond);
    cpu_losses(&p.iter().collect::<Vec<_>>())
}

fn row(g: &GoBin, ph: &[&FleetPhase]) -> Row {
    let on: Vec<&&FleetPhase> = ph.iter().filter(|p| p.traced).collect();
    let n = ph.iter().map(|p| p.procs.len()).min().unwrap_or(0);
    let procs = (0..n)
        .map(|k| {
            let mine = as_phases(ph, Some(k), Against::Nothing);
            let (l, null) = losses_against_controls(ph, Some(k));
            let (cl, cnull) = cpu_losses_against_controls(ph, Some(k));
            ProcRow {
                pid: ph[0].procs[k].pid,
                untraced: median(
                    &mine
                        .iter()
                        .filter(|p| !p.traced)
                        .map(|p| p.rate)
                        .collect::<Vec<_>>(),
                ),
                loss: median(&l),
                interval: median_interval(&l),
                null: median(&null),
                cpu_loss: median(&cl),
                cpu_interval: median_interval(&cl),
                cpu_null: median(&cnull),
                budget_rate: median(
                    &on.iter()
                        .map(|p| p.procs[k].budget_rate)
                        .collect::<Vec<_>>(),
                ),
                planted: (on.iter().filter(|p| p.procs[k].planted).count(), on.len()),
            }
        })
        .collect();
    let (l, null) = losses_against_controls(ph, None);
    let (cl, cnull) = cpu_losses_against_controls(ph, None);
    let cpu: Vec<f64> = on
        .iter()
        .map(|p| p.tracer_cpu_s / (p.end - p.start))
        .collect();
    let fr: Vec<f64> = ph
        .iter()
        .map(|p| p.foreign_cpu_s / (p.end - p.start))
        .collect();
    Row {
        go: g.tag.clone(),
        map_impl: g.map_impl.clone(),
        procs,
        controls: ph.iter().map(|p| p.controls.len()).min().unwrap_or(0),
        rounds: on.len(),
        phase_s: median(&ph.iter().map(|p| p.end - p.start).collect::<Vec<_>>()),
        settle_s: median(&on.iter().map(|p| p.start - p.attached).collect::<Vec<_>>()),
        attach_s: median(&on.iter().map(|p| p.attach_s).collect::<Vec<_>>()),
        node_loss: median(&l),
        node_interval: median_interval(&l),
        node_null: median(&null),
        node_null_interval: median_interval(&null),
        node_cpu_loss: median(&cl),
        node_cpu_interval: median_interval(&cl),
        node_cpu_null: median(&cnull),
        // The mean over the phases (all their CPU over all their time), as
        // when each phase's was read in clock ticks (10 ms, a tenth of a
        // percent of a 10 s phase, which a median kept); now read to the
        // nanosecond (`accounting::proc_cpu_s`).
        tracer_cpu: (
            on.iter().map(|p| p.tracer_cpu_s).sum::<f64>()
                / on.iter().map(|p| p.end - p.start).sum::<f64>(),
            min_max(&cpu).1,
        ),
        tracer_rss: on.iter().map(|p| p.tracer_peak_rss).max().unwrap_or(0),
        rate_sum: median(
            &on.iter()
                .map(|p| p.procs.iter().map(|x| x.budget_rate).sum())
                .collect::<Vec<_>>(),
        ),
        foreign: (median(&fr), min_max(&fr).1),
    }
}

fn interval(i: Option<(f64, f64)>) -> String {
    i.map_or_else(
        || "n/a (too few phases)".to_owned(),
        |(a, b)| format!("{} .. {}", pct(a), pct(b)),
    )
}

/// A share of one CPU, in %.
fn share(x: f64) -> String {
    if x.is_finite() {
        format!("{:.3} %", x * 100.0)
    } else {
        "n/a".to_owned()
    }
}

fn mib(x: u64) -> String {
    format!("{:.0} MiB", x as f64 / f64::from(1u32 << 20))
}

/// Writes section 1c.
pub(super) fn render(o: &mut String, gos: &[GoBin], fleet: &[FleetPhase]) {
    let rows = rows(gos, fleet);
    let n = rows.first().map_or(0, |r| r.procs.len());
    let w = workload();
    let _ = writeln!(o, "## 1c. {n} processes traced at once (node-wide mode)\n");
    let _ = writeln!(
        o,
        "{n} processes of part 1b's `{}` workload ({}), each `GOMAXPROCS={GOMAXPROCS}` so that they share the \
         machine's CPUs, run for the whole measurement and print their operation counts every {TICK_MS} ms. \
         After {} s of warm-up, untraced phases alternate with traced ones: one `mapleak-trace --all --exe BIN \
         --overhead-budget {BUDGET_PCT}` (BIN: a copy of the bench binary only these processes run) is \
         started, and its traced phase runs from {:.1} s after it has reported every process attached until \
         it is stopped with SIGINT; its JSON report must name every process. With `--all` the budget is the \
         node's, split among the processes by the CPU each uses (README, node-wide mode). Each process's loss \
         is computed as in part 1b: per traced phase `1 - traced / mean(untraced before, untraced after)`, \
         the median over the traced phases with a distribution-free {:.0} % interval, and as its noise floor \
         the same formula over its inner untraced phases. \"Node\" is the same over every traced process's \
         operations summed. The tracer's CPU is its own (user + system) over each traced phase, in % of one \
         CPU; every CPU time here is read from the process's CPU-time clock, to the nanosecond (not in 10 ms \
         ticks); its peak RSS is `VmHWM` read before SIGINT.\n",
        w.name,
        w.what,
        WARMUP.as_secs(),
        median(&rows.iter().map(|r| r.settle_s).collect::<Vec<_>>()),
        CONFIDENCE * 100.0,
    );
    let controls = rows.first().map_or(0, |r| r.controls);
    if controls > 0 {
        let _ = writeln!(
            o,
            "{controls} control processes run the same program beside them from another copy of the binary, \
             which `--exe` does not select, and are never traced. Every rate is taken against theirs in the \
             same phase (a process's operations over the controls' summed, per wall-clock second; per \
             CPU-second, over the controls' operations per CPU-second), so that what the shared host does to \
             every process at once cancels out, as between the twins of part 1h. The tracer's CPU slows the \
             controls as much as the traced processes in the wall-clock lens, which then sees the probes' cost \
             alone; the CPU-second lens charges each traced process an equal share of the tracer's CPU.\n"
        );
    }
    let _ = writeln!(
        o,
        "| Go (maps) | processes | traced phases x length | all attached after (median) | worst process's loss (median) | processes at most 1 % (median; whole interval) | median of the processes' losses | processes' noise floors (median, min .. max) | node loss (median) | its 95 % interval | node noise floor | its 95 % interval | budget rates given, summed (of one CPU) | tracer CPU (of one CPU; mean over the phases, max) | tracer peak RSS | planted maps reported growing | other processes' CPU (median, max) |"
    );
    let _ = writeln!(
        o,
        "|---|---:|---|---:|---:|---|---:|---|---:|---|---:|---|---:|---|---:|---:|---|"
    );
    for r in &rows {
        let losses: Vec<f64> = r.procs.iter().map(|p| p.loss).collect();
        let nulls: Vec<f64> = r.procs.iter().map(|p| p.null).collect();
        let (met, sure) = r.met(false);
        let (pl, of) = r.planted();
        let _ = writeln!(
            o,
            "| {} ({}) | {} | {} x {:.1} s | {:.1} s | **{}** | {met} of {}; {sure} | {} | {} ({} .. {}) | {} | {} | {} | {} | {} | {}, {} | {} | {pl}/{of} | {:.2}, {:.2} |",
            r.go,
            r.map_impl,
            r.procs.len(),
            r.rounds,
            r.phase_s,
            r.attach_s,
            pct(r.worst(false)),
            r.procs.len(),
            pct(median(&losses)),
            pct(median(&nulls)),
            pct(min_max(&nulls).0),
            pct(min_max(&nulls).1),
            pct(r.node_loss),
            interval(r.node_interval),
            pct(r.node_null),
            interval(r.node_null_interval),
            share(r.rate_sum),
            share(r.tracer_cpu.0),
            share(r.tracer_cpu.1),
            mib(r.tracer_rss),
            r.foreign.0,
            r.foreign.1,
        );
    }
    let _ = writeln!(
        o,
        "\nThe same per CPU-second: each phase's operations over the CPU time the process used in it (user + \
         system: the probes' traps and handlers run on its threads) plus an equal share of the tracer's (the \
         node: all of it). {n} processes of one CPU-bound program on a shared 2-CPU host do not get equal \
         shares of the CPUs phase after phase, so each one's throughput per wall-clock second moves by several \
         % with no tracer at all (its noise floor above); per CPU-second it does not.\n"
    );
    let _ = writeln!(
        o,
        "| Go (maps) | worst process's loss per CPU-s (median) | processes at most 1 % per CPU-s (median; whole interval) | processes' noise floors per CPU-s (median, min .. max) | node loss per CPU-s (median) | its 95 % interval | node noise floor per CPU-s |"
    );
    let _ = writeln!(o, "|---|---:|---|---|---:|---|---:|");
    for r in &rows {
        let (met, sure) = r.met(true);
        let nulls: Vec<f64> = r.procs.iter().map(|p| p.cpu_null).collect();
        let _ = writeln!(
            o,
            "| {} ({}) | **{}** | {met} of {}; {sure} | {} ({} .. {}) | {} | {} | {} |",
            r.go,
            r.map_impl,
            pct(r.worst(true)),
            r.procs.len(),
            pct(median(&nulls)),
            pct(min_max(&nulls).0),
            pct(min_max(&nulls).1),
            pct(r.node_cpu_loss),
            interval(r.node_cpu_interval),
            pct(r.node_cpu_null),
        );
    }
    let _ = writeln!(o, "\nEvery process:\n");
    let _ = writeln!(
        o,
        "| Go | process | untraced {}/s | loss (median) | 95 % interval | noise floor | loss per CPU-s (median) | its 95 % interval | noise floor per CPU-s | budget rate given (of one CPU, median) | planted map growing | 1 % goal |",
        w.unit
    );
    let _ = writeln!(
        o,
        "|---|---:|---:|---:|---|---:|---:|---|---:|---:|---:|---|"
    );
    for r in &rows {
        for (k, p) in r.procs.iter().enumerate() {
            let _ = writeln!(
                o,
                "| {} | {k} (pid {}) | {} | {} | {} | {} | {} | {} | {} | {} | {}/{} | {} |",
                r.go,
                p.pid,
                num(p.untraced),
                pct(p.loss),
                interval(p.interval),
                pct(p.null),
                pct(p.cpu_loss),
                interval(p.cpu_interval),
                pct(p.cpu_null),
                share(p.budget_rate),
                p.planted.0,
                p.planted.1,
                if !p.loss.is_finite() {
                    "not measured"
                } else if p.loss > 0.01 {
                    "NOT met"
                } else if p.interval.is_some_and(|(_, hi)| hi <= 0.01) {
                    "met (whole interval)"
                } else {
                    "met by the median"
                }
            );
        }
    }
    let _ = writeln!(o);
}

/// Lines of the reading.
pub(super) fn reading(gos: &[GoBin], fleet: &[FleetPhase]) -> Vec<String> {
    rows(gos, fleet)
        .iter()
        .map(|r| {
            let (met, sure) = r.met(false);
            let (pl, of) = r.planted();
            format!(
                "**{} processes at once, {} ({})**: one `mapleak-trace --all` over {} traced phases of {:.1} s; \
                 the worst process lost {} (median), {met} of {} lost at most 1 % by their median ({sure} by \
                 their whole 95 % interval); all together they lost {} (interval {}; noise floor {}). Per \
                 CPU-second: worst process {}, {} of {} at most 1 %, node {} (interval {}). The \
                 budget rates given summed to {} of one CPU; the tracer used {} of one CPU (mean over the phases; max {}) and at most \
                 {} of memory; the planted maps were reported growing in {pl}/{of} process-phases.",
                r.procs.len(),
                r.go,
                r.map_impl,
                r.rounds,
                r.phase_s,
                pct(r.worst(false)),
                r.procs.len(),
                pct(r.node_loss),
                interval(r.node_interval),
                pct(r.node_null),
                pct(r.worst(true)),
                r.met(true).0,
                r.procs.len(),
                pct(r.node_cpu_loss),
                interval(r.node_cpu_interval),
                share(r.rate_sum),
                share(r.tracer_cpu.0),
                share(r.tracer_cpu.1),
                mib(r.tracer_rss),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::{
        binaries::Micro,
        parts::fleet::{FleetPhase, FleetProc},
    };

    fn go() -> GoBin {
        GoBin {
            tag: "g".to_owned(),
            map_impl: "swiss".to_owned(),
            bin: std::path::PathBuf::new(),
            stripped: std::path::PathBuf::new(),
            functions: Vec::new(),
            write_functions: Vec::new(),
            ret_sites: Vec::new(),
            write_sites: Vec::new(),
            micro: Micro {
                func: String::new(),
                addr: 0,
                file_offset: 0,
                jbe: 0,
                push: 0,
            },
        }
    }

    /// Two processes, one losing 2 % in every traced phase: the worst
    /// median, one of two within 1 %, the planted maps counted.
    #[test]
    fn worst_process_and_count_within_one_percent() {
        let phase = |round: usize, traced: bool| FleetPhase {
            go: "g".to_owned(),
            round,
            traced,
            start: round as f64 * 10.0,
            end: round as f64 * 10.0 + 5.0,
            attached: round as f64 * 10.0,
            tracer_cpu_s: if traced { 0.05 } else { 0.0 },
            tracer_peak_rss: 40 << 20,
            procs: [(1, 100.0), (2, 50.0)]
                .iter()
                .map(|&(pid, r)| FleetProc {
                    pid,
                    rate: if traced && pid == 2 { r * 0.98 } else { r },
                    target_cpu_s: 0.5,
                    reported: traced,
                    planted: traced,
                    budget_rate: if traced { 0.005 } else { f64::NAN },
                    debit_s: 0.0,
                })
                .collect(),
            ..FleetPhase::default()
        };
        let ph: Vec<FleetPhase> = (0..7).map(|i| phase(i, i % 2 == 1)).collect();
        let rows = rows(&[go()], &ph);
        assert_eq!(rows.len(), 1);
        let r = &rows[0];
        assert_eq!((r.rounds, r.procs.len()), (3, 2));
        assert!((r.worst(false) - 0.02).abs() < 1e-12, "{}", r.worst(false));
        assert_eq!(r.met(false).0, 1);
        assert_eq!(r.planted(), (6, 6));
        assert!((r.rate_sum - 0.01).abs() < 1e-12);
        assert!((r.tracer_cpu.0 - 0.01).abs() < 1e-12);
        let mut md = String::new();
        render(&mut md, &[go()], &ph);
        assert!(md.contains("## 1c. 2 processes traced at once"), "{md}");
        assert!(md.contains("| g (swiss) | 2 | 3 x 5.0 s |"), "{md}");
        assert!(md.contains("| g | 1 (pid 2) | 50 | +2.0 % |"), "{md}");
    }
}
