//! Part 1h's figures (one row per workload and Go release) and its section
//! of the report.
use std::fmt::Write as _;

use super::phases::{gc_per_s, goal, interval, share};
use crate::bench::{
    BUDGET_PCT,
    binaries::GoBin,
    parts::{
        phases::median_interval,
        twin::{Lens, TwinPhase, round_losses},
    },
    stats::{median, min_max, num, pct},
    suite,
};

/// One workload on one Go release.
struct Row {
    workload: String,
    go: String,
    map_impl: String,
    rounds: usize,
    phase_s: f64,
    /// Median operations per second of a twin, untraced.
    untraced: f64,
    /// Per lens: median loss, its interval, min..max, noise floor and its
    /// interval.
    cpu: Losses,
    wall: Losses,
    debit: f64,
    tracer_cpu: f64,
    attached: f64,
    large: f64,
    planted: (usize, usize),
    gc_cycles: f64,
    gc_rate: f64,
    foreign: (f64, f64),
}

struct Losses {
    loss: f64,
    interval: Option<(f64, f64)>,
    spread: (f64, f64),
    null: f64,
    null_interval: Option<(f64, f64)>,
}

impl Losses {
    fn of(ph: &[&TwinPhase], lens: Lens) -> Losses {
        let (l, null) = round_losses(ph, lens);
        Losses {
            loss: median(&l),
            interval: median_interval(&l),
            spread: min_max(&l),
            null: median(&null),
            null_interval: median_interval(&null),
        }
    }
}

fn rows(gos: &[GoBin], phases: &[TwinPhase]) -> Vec<Row> {
    let mut names: Vec<&str> = Vec::new();
    for p in phases {
        if !names.contains(&p.workload.as_str()) {
            names.push(&p.workload);
        }
    }
    let mut out = Vec::new();
    for w in names {
        for g in gos {
            let ph: Vec<&TwinPhase> = phases
                .iter()
                .filter(|p| p.go == g.tag && p.workload == w)
                .collect();
            if !ph.is_empty() {
                out.push(row(w, g, &ph));
            }
        }
    }
    out
}

fn row(w: &str, g: &GoBin, ph: &[&TwinPhase]) -> Row {
    let (on, off): (Vec<&TwinPhase>, Vec<&TwinPhase>) = ph.iter().partition(|p| p.traced.is_some());
    let med = |v: &[&TwinPhase], f: &dyn Fn(&TwinPhase) -> f64| {
        median(&v.iter().map(|p| f(p)).collect::<Vec<_>>())
    };
    let fr: Vec<f64> = ph.iter().map(|p| p.foreign_cpu_s / p.secs()).collect();
    Row {
        workload: w.to_owned(),
        go: g.tag.clone(),
        map_impl: g.map_impl.clone(),
        rounds: round_losses(ph, Lens::Wall).0.len(),
        phase_s: med(&on, &TwinPhase::secs),
        untraced: median(
            &off.iter()
                .flat_map(|p| p.twins.iter().map(|t| t.rate))
                .collect::<Vec<_>>(),
        ),
        cpu: Losses::of(ph, Lens::Cpu),
        wall: Losses::of(ph, Lens::Wall),
        debit: med(&on, &|p| p.debit_s / p.trace_s),
        tracer_cpu: med(&on, &|p| p.tracer_cpu_s / p.secs()),
        attached: med(&on, &|p| p.attached_share),
        large: med(&on, &|p| p.large_share),
        planted: (on.iter().filter(|p| p.planted).count(), on.len()),
        gc_cycles: med(&on, &|p| p.gc_cycles as f64),
        gc_rate: median(
            &off.iter()
                .flat_map(|p| p.twins.iter().map(|t| t.gc_rate))
                .collect::<Vec<_>>(),
        ),
        foreign: (median(&fr), min_max(&fr).1),
    }
}

/// Writes section 1h.
pub(super) fn render(o: &mut String, gos: &[GoBin], phases: &[TwinPhase]) {
    let rows = rows(gos, phases);
    let _ = writeln!(o, "## 1h. Twin processes, one traced at a time\n");
    let _ = writeln!(
        o,
        "Two copies of one workload (the second started from a copy of the binary, so that no probe placed \
         in one file traps the other) run side by side for the whole measurement, sharing the machine. Each \
         round has four phases: twin 0 traced by `mapleak-trace --pid P --overhead-budget {BUDGET_PCT}` (its \
         default mode), both untraced, twin 1 traced, both untraced (the twins' roles swapped in odd \
         rounds). A traced phase starts after the tracer reported `attached` and the settle time (the \
         governor's full initial bucket is spent then) and ends when the tracer is stopped with SIGINT; an \
         untraced phase is half as long. In a traced phase the twins' ratio is `(1 - L) b` (twin 0 traced) \
         or `(1 - L) / b` (twin 1 traced), whatever fixed advantage `b` one twin has, so each round gives \
         `L = 1 - sqrt(r0 r1)`; the two untraced phases of the round give its noise floor by the same \
         formula. Both twins feel a slow or busy host over the same seconds, so host drift cancels out of \
         the ratio, which part 1b's neighbouring phases of one process cannot do.\n"
    );
    let _ = writeln!(
        o,
        "Two lenses: **per CPU-second** (operations over the twin's CPU time, the tracer's CPU added to the \
         traced twin's: what tracing costs the work, the tracer's own CPU included) and **per wall-clock \
         second** (the tracer's CPU then slows both twins alike, so this lens sees the probes' cost alone). \
         The interval is the distribution-free 95 % interval of the median over the rounds (order \
         statistics of the binomial; at least 6 rounds give one). Workloads: as part 1b (`xtask/src/bench/\
         suite.rs`); each twin grows the planted map `main.planted` (`{}`), and each traced phase's report \
         is checked for it.\n",
        suite::PLANTED_TYPE
    );
    let _ = writeln!(
        o,
        "| workload | Go (maps) | rounds x traced phase | untraced ops/s (a twin) | loss per CPU-s (median) | 95 % interval | min .. max | noise floor (median) | its 95 % interval | loss per wall-clock s (median) | 95 % interval | noise floor | governor's debit (of one CPU) | tracer CPU (of one CPU) | governed probes attached | large-growth probes attached | planted map reported growing | GC cycles per trace | a twin's GC/s | other processes' CPU (median, max) | 1 % goal (per CPU-s) |"
    );
    let _ = writeln!(
        o,
        "|---|---|---|---:|---:|---|---|---:|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|"
    );
    for r in &rows {
        let _ = writeln!(
            o,
            "| {} | {} ({}) | {} x {:.1} s | {} | **{}** | {} | {} .. {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {}/{} | {} | {} | {:.2}, {:.2} | {} |",
            r.workload,
            r.go,
            r.map_impl,
            r.rounds,
            r.phase_s,
            num(r.untraced),
            pct(r.cpu.loss),
            interval(r.cpu.interval),
            pct(r.cpu.spread.0),
            pct(r.cpu.spread.1),
            pct(r.cpu.null),
            interval(r.cpu.null_interval),
            pct(r.wall.loss),
            interval(r.wall.interval),
            pct(r.wall.null),
            share(r.debit),
            share(r.tracer_cpu),
            share(r.attached),
            share(r.large),
            r.planted.0,
            r.planted.1,
            num(r.gc_cycles),
            gc_per_s(r.gc_rate),
            r.foreign.0,
            r.foreign.1,
            goal(r.cpu.loss, r.cpu.interval),
        );
    }
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "The governor's debit is its own estimate of what its probes and the tracer's CPU cost the traced \
         twin, per second from attach to exit (its initial bucket included); the tracer's CPU is per second \
         of traced phase. Every round (CPU-second lens; loss, then noise floor):\n"
    );
    let _ = writeln!(o, "| workload | Go | round | loss | noise floor |");
    let _ = writeln!(o, "|---|---|---:|---:|---:|");
    for r in &rows {
        let ph: Vec<&TwinPhase> = phases
            .iter()
            .filter(|p| p.go == r.go && p.workload == r.workload)
            .collect();
        let mut rounds: Vec<usize> = ph.iter().map(|p| p.round).collect();
        rounds.dedup();
        for k in rounds {
            let one: Vec<&TwinPhase> = ph.iter().copied().filter(|p| p.round == k).collect();
            let (l, n) = round_losses(&one, Lens::Cpu);
            let _ = writeln!(
                o,
                "| {} | {} | {k} | {} | {} |",
                r.workload,
                r.go,
                l.first().map_or_else(|| "n/a".to_owned(), |x| pct(*x)),
                n.first().map_or_else(|| "n/a".to_owned(), |x| pct(*x)),
            );
        }
    }
    let _ = writeln!(o);
}
