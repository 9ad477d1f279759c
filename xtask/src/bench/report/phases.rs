//! Part 1b's figures (one row per workload and Go release), its section of
//! the report and its lines of the reading.
use std::fmt::Write as _;

use crate::bench::{
    BUDGET_PCT,
    binaries::GoBin,
    parts::phases::{
        CONFIDENCE, Phase, TICK_MS, WARMUP, cpu_losses, losses, median_interval, traced_losses,
    },
    stats::{median, min_max, num, pct},
    suite::Workload,
};

/// What one workload's phases on one Go release add up to.
struct Row {
    workload: &'static Workload,
    go: String,
    map_impl: String,
    rounds: usize,
    phase_s: f64,
    untraced: f64,
    traced: f64,
    loss: f64,
    interval: Option<(f64, f64)>,
    spread: (f64, f64),
    null: f64,
    null_interval: Option<(f64, f64)>,
    null_spread: (f64, f64),
    /// The same in operations per CPU-second of the target and the tracer
    /// ([`Phase::ops_per_cpu_s`]): the loss, its interval, the noise floor
    /// and its interval.
    cpu_loss: f64,
    cpu_interval: Option<(f64, f64)>,
    cpu_null: f64,
    cpu_null_interval: Option<(f64, f64)>,
    untraced_per_cpu: f64,
    /// Median loss over the first seconds after attach (before the traced
    /// phase), against the same neighbours.
    startup_loss: f64,
    /// Per second of traced phase: the governor's debit and the tracer's
    /// CPU (shares of one CPU), probe hits.
    debit: f64,
    tracer_cpu: f64,
    hits: f64,
    /// Median share of the traced phases the governed probes were attached.
    attached: f64,
    /// Traced phases whose report has the planted map growing, of all.
    planted: (usize, usize),
    /// Medians over the traced phases: GC cycles the trace spanned, and
    /// those it sampled.
    gc_cycles: f64,
    gc_sampled: f64,
    /// The target's own GC cycles per second (median), untraced and traced.
    gc_rate: (f64, f64),
    foreign: (f64, f64),
}

impl Row {
    fn goal(&self) -> &'static str {
        goal(self.loss, self.interval)
    }

    fn cpu_goal(&self) -> &'static str {
        goal(self.cpu_loss, self.cpu_interval)
    }
}

/// The 1 % goal against a median loss and its interval.
pub(super) fn goal(loss: f64, interval: Option<(f64, f64)>) -> &'static str {
    if !loss.is_finite() {
        "not measured"
    } else if loss > 0.01 {
        "NOT met"
    } else if interval.is_some_and(|(_, hi)| hi <= 0.01) {
        "met (the whole 95 % interval of the median is within 1 %)"
    } else {
        "met by the median (its 95 % interval reaches past 1 %)"
    }
}

/// The workloads measured, in the order they ran.
fn workloads(phases: &[Phase]) -> Vec<&'static Workload> {
    let mut out: Vec<&'static Workload> = Vec::new();
    for p in phases {
        if !out.iter().any(|w| w.name == p.workload.name) {
            out.push(p.workload);
        }
    }
    out
}

fn rows(gos: &[GoBin], phases: &[Phase]) -> Vec<Row> {
    let mut out = Vec::new();
    for w in workloads(phases) {
        for g in gos {
            let ph: Vec<&Phase> = phases
                .iter()
                .filter(|p| p.go == g.tag && p.workload.name == w.name)
                .collect();
            if !ph.is_empty() {
                out.push(row(w, &g.tag, &g.map_impl, &ph));
            }
        }
    }
    out
}

/// `ph`: one workload's phases on one Go release, in order.
fn row(w: &'static Workload, go: &str, map_impl: &str, ph: &[&Phase]) -> Row {
    let (on, off): (Vec<&Phase>, Vec<&Phase>) = ph.iter().partition(|p| p.traced);
    let (l, null) = losses(ph);
    let (cl, cnull) = cpu_losses(ph);
    let per_s = |get: &dyn Fn(&Phase) -> f64| {
        median(
            &on.iter()
                .map(|p| get(p) / (p.end - p.start))
                .collect::<Vec<_>>(),
        )
    };
    // The report covers the whole trace, from attach.
    let per_traced_s = |get: &dyn Fn(&Phase) -> f64| {
        median(
            &on.iter()
                .map(|p| get(p) / (p.end - p.attached))
                .collect::<Vec<_>>(),
        )
    };
    let of_report = |get: &dyn Fn(&crate::bench::suite::Traced) -> f64| {
        median(
            &on.iter()
                .filter_map(|p| p.report.as_ref().map(get))
                .collect::<Vec<_>>(),
        )
    };
    let fr: Vec<f64> = ph
        .iter()
        .map(|p| p.foreign_cpu_s / (p.end - p.start))
        .collect();
    let rates = |v: &[&Phase]| median(&v.iter().map(|p| p.gc_rate).collect::<Vec<_>>());
    Row {
        workload: w,
        go: go.to_owned(),
        map_impl: map_impl.to_owned(),
        rounds: on.len(),
        phase_s: median(&ph.iter().map(|p| p.end - p.start).collect::<Vec<_>>()),
        untraced: median(&off.iter().map(|p| p.rate).collect::<Vec<_>>()),
        traced: median(&on.iter().map(|p| p.rate).collect::<Vec<_>>()),
        loss: median(&l),
        interval: median_interval(&l),
        spread: min_max(&l),
        null: median(&null),
        null_interval: median_interval(&null),
        null_spread: min_max(&null),
        cpu_loss: median(&cl),
        cpu_interval: median_interval(&cl),
        cpu_null: median(&cnull),
        cpu_null_interval: median_interval(&cnull),
        untraced_per_cpu: median(&off.iter().map(|p| p.ops_per_cpu_s()).collect::<Vec<_>>()),
        startup_loss: median(&traced_losses(ph, |p| p.startup_rate)),
        debit: per_traced_s(&Phase::debit_s),
        tracer_cpu: per_s(&|p| p.tracer_cpu_s),
        hits: per_s(&|p| p.hits as f64),
        attached: of_report(&|r| r.attached_share),
        planted: (
            on.iter()
                .filter(|p| p.report.is_some_and(|r| r.planted))
                .count(),
            on.len(),
        ),
        gc_cycles: of_report(&|r| r.gc_cycles as f64),
        gc_sampled: of_report(&|r| r.gc_sampled as f64),
        gc_rate: (rates(&off), rates(&on)),
        foreign: (median(&fr), min_max(&fr).1),
    }
}

pub(super) fn interval(i: Option<(f64, f64)>) -> String {
    i.map_or_else(
        || "n/a (too few phases)".to_owned(),
        |(a, b)| format!("{} .. {}", pct(a), pct(b)),
    )
}

/// Cycles per second: one decimal below 10.
pub(super) fn gc_per_s(x: f64) -> String {
    if x.is_finite() && x.abs() < 10.0 {
        format!("{x:.1}")
    } else {
        num(x)
    }
}

/// A share of one CPU (or of the time), in %.
pub(super) fn share(x: f64) -> String {
    if x.is_finite() {
        format!("{:.2} %", x * 100.0)
    } else {
        "n/a".to_owned()
    }
}

/// Writes section 1b.
pub(super) fn render(o: &mut String, gos: &[GoBin], phases: &[Phase]) {
    let rows = rows(gos, phases);
    let _ = writeln!(
        o,
        "## 1b. Throughput in alternating phases of one process\n"
    );
    let _ = writeln!(
        o,
        "Part 1 compares separate runs, and separate `http` runs on this machine differ by several % among \
         themselves: more than the 1 % goal. Here one target process (`bench -tick {TICK_MS}ms` in the mode of \
         the workload) runs for the whole measurement of a workload on a Go release and prints its operation \
         count (and its GC cycle count) every {TICK_MS} ms. After {} s of warm-up, untraced phases alternate \
         with traced ones: `mapleak-trace --pid P --overhead-budget {BUDGET_PCT}` (default mode) is started, \
         and its traced phase runs from {settle:.1} s after it reports `attached` until it is stopped with \
         SIGINT. Those first seconds after attach are measured apart (\"first seconds\" below): the governor \
         starts with a full bucket (5 s of its budget) and opens the first write window at once, a cost paid \
         once per attach that a short phase would otherwise count as a steady rate. The tracer's startup \
         before attaching and its final report after SIGINT fall between phases (they use the tracer's CPU, \
         not the target's; part 3 measures them). A phase's rate counts the ticks wholly inside it. Each \
         traced phase's loss is `1 - traced / mean(untraced before, untraced after)`; the figure is the \
         median over all traced phases, with a distribution-free {:.0} % interval for that median (order \
         statistics of the binomial). As a noise floor, the same formula is applied to every inner untraced \
         phase against its untraced neighbours: with no tracer at all it should be near 0. Every workload \
         grows a map planted in a global (`main.planted`, `map[int64][64]byte`) slowly and steadily; each \
         traced phase's report is checked for it (its type, verdict `growing`).\n",
        WARMUP.as_secs(),
        CONFIDENCE * 100.0,
        settle = median(
            &phases
                .iter()
                .filter(|p| p.traced)
                .map(|p| p.start - p.attached)
                .collect::<Vec<_>>()
        ),
    );
    let _ = writeln!(
        o,
        "Workloads (`testdata/go/bench`; what the ticks count in parentheses):\n"
    );
    for w in workloads(phases) {
        let _ = writeln!(o, "- `{}` ({}): {}", w.name, w.unit, w.what);
    }
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "| workload | Go (maps) | traced phases x length | untraced ops/s | traced ops/s | loss (median) | 95 % interval | min .. max | noise floor: untraced vs untraced, median (min .. max) | its 95 % interval | first seconds after attach: loss (median) | governor's debit (of one CPU) | tracer CPU (of one CPU) | governed probes attached | planted map reported growing | GC cycles per traced phase (sampled) | target GC/s untraced, traced | probe hits/s | other processes' CPU (median, max) | 1 % goal |"
    );
    let _ = writeln!(
        o,
        "|---|---|---|---:|---:|---:|---|---|---:|---|---:|---:|---:|---:|---:|---:|---|---:|---|---|"
    );
    for r in &rows {
        let _ = writeln!(
            o,
            "| {} | {} ({}) | {} x {:.1} s | {} {} | {} | **{}** | {} | {} .. {} | {} ({} .. {}) | {} | {} | {} | {} | {:.0} % | {}/{} | {} ({}) | {}, {} | {} | {:.2}, {:.2} | {} |",
            r.workload.name,
            r.go,
            r.map_impl,
            r.rounds,
            r.phase_s,
            num(r.untraced),
            r.workload.unit,
            num(r.traced),
            pct(r.loss),
            interval(r.interval),
            pct(r.spread.0),
            pct(r.spread.1),
            pct(r.null),
            pct(r.null_spread.0),
            pct(r.null_spread.1),
            interval(r.null_interval),
            pct(r.startup_loss),
            share(r.debit),
            share(r.tracer_cpu),
            r.attached * 100.0,
            r.planted.0,
            r.planted.1,
            num(r.gc_cycles),
            num(r.gc_sampled),
            gc_per_s(r.gc_rate.0),
            gc_per_s(r.gc_rate.1),
            num(r.hits),
            r.foreign.0,
            r.foreign.1,
            r.goal()
        );
    }
    let _ = writeln!(
        o,
        "\nThe same phases in operations per CPU-second: each phase's operations over the CPU time the target \
         (user + system: the probes' traps and handlers run on its threads) and the tracer used in it, \
         compared with the neighbours by the same formula. Throughput per wall-clock second moves with the \
         share of this shared 2-CPU host the other tenants leave (steal time is not the target's CPU time); \
         what the tracer adds to each operation, in the target's threads and in its own process, does show \
         here. What it cannot show is time the target spends waiting off-CPU because of the tracer (a probe \
         attach or detach holding its memory map's lock): the wall-clock figures above keep that.\n"
    );
    let _ = writeln!(
        o,
        "| workload | Go (maps) | untraced ops per CPU-s | loss per CPU-s (median) | 95 % interval | noise floor (median) | its 95 % interval | 1 % goal per CPU-s |"
    );
    let _ = writeln!(o, "|---|---|---:|---:|---|---:|---|---|");
    for r in &rows {
        let _ = writeln!(
            o,
            "| {} | {} ({}) | {} | **{}** | {} | {} | {} | {} |",
            r.workload.name,
            r.go,
            r.map_impl,
            num(r.untraced_per_cpu),
            pct(r.cpu_loss),
            interval(r.cpu_interval),
            pct(r.cpu_null),
            interval(r.cpu_null_interval),
            r.cpu_goal()
        );
    }
    let _ = writeln!(
        o,
        "\nThe governor's debit is its own estimate of what its probes took, per second of traced phase \
         (from attach to exit, the first seconds included); a workload that keeps both CPUs busy should lose about half of that, plus \
         the tracer's own CPU over two. \"Governed probes attached\" is the report's \
         `governed_probes_attached_share` (creation and Swiss small-map growth probes; the governor detaches \
         them to stay within its budget). The GC cycles are those the report lists (from the first cycle \
         number to the last) and those whose map lengths the tracer read; the target's GC/s is its own \
         count (`/gc/cycles/total:gc-cycles`).\n"
    );
    let _ = writeln!(o, "Every phase (ops/s; loss against the neighbours):\n");
    let _ = writeln!(
        o,
        "| workload | Go | round | untraced before | traced | loss | governor's debit (CPU-s) | tracer CPU (s) | governed probes attached | planted map growing | GC cycles (sampled) | target GC/s | other processes' CPU (s) |"
    );
    let _ = writeln!(
        o,
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|"
    );
    for w in workloads(phases) {
        for g in gos {
            let ph: Vec<&Phase> = phases
                .iter()
                .filter(|p| p.go == g.tag && p.workload.name == w.name)
                .collect();
            for (i, p) in ph.iter().enumerate() {
                let Some(rep) = p.report.filter(|_| p.traced) else {
                    continue;
                };
                let (a, b) = (ph.get(i.wrapping_sub(1)), ph.get(i + 1));
                let loss = match (a, b) {
                    (Some(a), Some(b)) => 1.0 - p.rate / ((a.rate + b.rate) / 2.0),
                    _ => f64::NAN,
                };
                let _ = writeln!(
                    o,
                    "| {} | {} | {} | {} | {} | {} | {:.4} | {:.3} | {:.0} % | {} | {} ({}) | {} | {:.2} |",
                    w.name,
                    g.tag,
                    p.round,
                    a.map_or_else(|| "n/a".to_owned(), |a| num(a.rate)),
                    num(p.rate),
                    pct(loss),
                    rep.debit_s,
                    p.tracer_cpu_s,
                    rep.attached_share * 100.0,
                    if rep.planted { "yes" } else { "**no**" },
                    rep.gc_cycles,
                    rep.gc_sampled,
                    gc_per_s(p.gc_rate),
                    p.foreign_cpu_s
                );
            }
        }
    }
    let _ = writeln!(o);
}

/// Lines of the reading.
pub(super) fn reading(gos: &[GoBin], phases: &[Phase]) -> Vec<String> {
    rows(gos, phases)
        .iter()
        .map(|r| {
            format!(
                "**Alternating phases, {}, {} ({})**: over {} traced phases of {:.1} s in one process, \
                 mapleak-trace cost `{}` {} of its throughput (median; 95 % interval {}; the governor debited \
                 {} of one CPU, the tracer used {}); untraced phases against their neighbours: {} (interval \
                 {}). Per CPU-second of the target and the tracer: {} (interval {}; noise floor {}). The planted \
                 map was reported growing in {}/{} traced phases ({} GC cycles each, median). 1 % goal: {}; per \
                 CPU-second: {}.",
                r.workload.name,
                r.go,
                r.map_impl,
                r.rounds,
                r.phase_s,
                r.workload.name,
                pct(r.loss),
                interval(r.interval),
                share(r.debit),
                share(r.tracer_cpu),
                pct(r.null),
                interval(r.null_interval),
                pct(r.cpu_loss),
                interval(r.cpu_interval),
                pct(r.cpu_null),
                r.planted.0,
                r.planted.1,
                num(r.gc_cycles),
                match r.goal() {
                    "NOT met" => "**not met**",
                    other => other,
                },
                match r.cpu_goal() {
                    "NOT met" => "**not met**",
                    other => other,
                }
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::suite::{Traced, WORKLOADS};

    fn phase(traced: bool, rate: f64, planted: bool, gc_cycles: u64) -> Phase {
        Phase {
            workload: &WORKLOADS[1],
            go: "g".to_owned(),
            round: 0,
            traced,
            start: 0.0,
            end: 2.0,
            attached: 0.0,
            rate,
            startup_rate: f64::NAN,
            gc_rate: 10.0,
            tracer_cpu_s: 0.02,
            report: traced.then_some(Traced {
                debit_s: 0.01,
                attached_share: 0.5,
                large_share: 1.0,
                planted,
                gc_cycles,
                gc_sampled: gc_cycles / 2,
            }),
            hits: 0,
            foreign_cpu_s: 0.0,
            target_cpu_s: 2.0,
        }
    }

    #[test]
    fn a_row_counts_the_phases_that_saw_the_planted_map() {
        let ph = [
            phase(false, 100.0, false, 0),
            phase(true, 99.0, true, 10),
            phase(false, 100.0, false, 0),
            phase(true, 98.0, false, 30),
            phase(false, 100.0, false, 0),
            phase(true, 97.0, true, 20),
            phase(false, 100.0, false, 0),
        ];
        let refs: Vec<&Phase> = ph.iter().collect();
        let r = row(&WORKLOADS[1], "g", "swiss", &refs);
        assert_eq!(r.rounds, 3);
        assert_eq!(r.planted, (2, 3));
        assert!((r.gc_cycles - 20.0).abs() < 1e-12);
        assert!((r.gc_sampled - 10.0).abs() < 1e-12);
        assert!((r.loss - 0.02).abs() < 1e-12);
        // Per second of a 2 s phase.
        assert!((r.debit - 0.005).abs() < 1e-12);
        assert!((r.tracer_cpu - 0.01).abs() < 1e-12);
        assert!((r.attached - 0.5).abs() < 1e-12);
        assert_eq!(r.goal(), "NOT met");
        // The noise floor: the inner untraced phases against theirs.
        assert!(r.null.abs() < 1e-12);
    }

    #[test]
    fn workloads_in_the_order_they_ran() {
        let mut a = phase(false, 1.0, false, 0);
        a.workload = &WORKLOADS[4];
        let b = phase(false, 1.0, false, 0);
        let mut c = phase(false, 1.0, false, 0);
        c.workload = &WORKLOADS[4];
        let names: Vec<&str> = workloads(&[a, b, c]).iter().map(|w| w.name).collect();
        assert_eq!(names, ["mapwrite", "permaps10"]);
    }
}
