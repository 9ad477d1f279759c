//! Part 1b: HTTP throughput in alternating phases of one process.
//!
//! Part 1 compares separate runs, and on this shared 2-CPU machine separate
//! HTTP runs differ by 5 % or more among themselves: far more than the 1 %
//! the goal is about. Here one HTTP server runs for the whole measurement
//! and prints its request count every `TICK_MS`; untraced phases alternate
//! with phases during which mapleak-trace is attached (default mode, from
//! the moment it reports it attached until it is stopped with SIGINT). Each
//! traced phase is compared with the untraced phases on either side of it,
//! so slow drifts of the machine cancel out and the process is the same.
use std::{
    fmt::Write as _,
    path::Path,
    process::Command,
    thread,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context as _, Result, bail};
use serde_json::{Value, json};

use super::{
    BUDGET_PCT, Bench, GoBin, Proc, f, median, min_max, num, pct, proc_cpu_s, report_hits,
    spawn_mapleak, system_busy_s, take_report,
};

/// The target's tick: how often it prints its request count.
const TICK_MS: u64 = 250;

/// Before the first phase: connections set up, the heap at its size.
const WARMUP: Duration = Duration::from_secs(3);

/// After the tracer exits, before the next untraced phase.
const GAP: Duration = Duration::from_secs(1);

/// Confidence of the interval quoted for a median.
const CONFIDENCE: f64 = 0.95;

/// One phase of the alternation.
pub(super) struct Phase {
    go: String,
    round: usize,
    traced: bool,
    /// Start and end (seconds since the Unix epoch; the target's ticks use
    /// the same clock).
    start: f64,
    end: f64,
    /// Requests per second in the phase, from the ticks wholly inside it.
    rate: f64,
    /// The tracer's CPU time in the phase.
    tracer_cpu_s: f64,
    /// The governor's debit (`overhead.budget_spent_target_cpu_s`) and the
    /// probe hits, from attach to exit.
    debit_s: f64,
    hits: u64,
    /// CPU time of other processes (not the target, not the tracer).
    foreign_cpu_s: f64,
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

pub(super) fn run(b: &mut Bench, gos: &[GoBin], tracer: &Path) -> Result<Vec<Phase>> {
    let mut out = Vec::new();
    for g in gos {
        out.extend(run_one(b, g, tracer).with_context(|| format!("http phases, {}", g.tag))?);
    }
    Ok(out)
}

fn run_one(b: &mut Bench, g: &GoBin, tracer: &Path) -> Result<Vec<Phase>> {
    let (rounds, p) = (b.s.phase_rounds, b.s.phase);
    b.wait_idle();
    // An upper bound on the target's life (it is killed when done): each
    // round is two phases plus the tracer's startup and exit.
    let life = rounds as f64 * (2.0 * p.as_secs_f64() + 120.0) + 60.0;
    let mut cmd = Command::new(&g.bin);
    cmd.args([
        "-mode=http".to_owned(),
        "-seconds".to_owned(),
        format!("{life:.0}"),
        "-tick".to_owned(),
        format!("{TICK_MS}ms"),
        "-wait".to_owned(),
    ]);
    let json = b.s.phase_workload == "json";
    if json {
        cmd.arg("-json");
    }
    let mut target = Proc::spawn("bench target (http phases)", cmd)?;
    target.wait_line(|l| l == "waiting", Duration::from_secs(30))?;
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
        Phase {
            go: g.tag.clone(),
            round,
            traced: false,
            start,
            end,
            rate: f64::NAN,
            tracer_cpu_s: 0.0,
            debit_s: f64::NAN,
            hits: 0,
            foreign_cpu_s: foreign(busy0, t0, 0.0),
        }
    };
    let mut phases = Vec::new();
    for round in 0..rounds {
        if !target.running() {
            bail!("the HTTP target exited early: {}", target.stderr_tail());
        }
        phases.push(untraced(round));
        // Traced, from attach.
        let mut tr = spawn_mapleak(tracer, pid, p.as_secs() + 600, &json_path)?;
        let (busy0, t0) = (system_busy_s(), proc_cpu_s(pid));
        let cpu0 = proc_cpu_s(tr.pid());
        let start = now();
        thread::sleep(p);
        let end = now();
        let cpu1 = proc_cpu_s(tr.pid());
        let tracer_cpu_s = match (cpu0, cpu1) {
            (Some(a), Some(b)) => b - a,
            _ => f64::NAN,
        };
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
        let debit_s = f(&rep, &["overhead", "budget_spent_target_cpu_s"]);
        let hits = report_hits(&rep, &[]).0;
        // The planted map (json workload): reported growing, with its type?
        let planted = rep["maps"].as_array().is_some_and(|ms| {
            ms.iter()
                .any(|m| m["type"] == "map[int64][64]uint8" && m["verdict"] == "growing")
        });
        eprintln!(
            "bench: {} phases {:9} round {round}: traced {:.1} s, debit {debit_s:.4} s, tracer CPU {tracer_cpu_s:.3} s, governed probes attached {:.0}%{}",
            b.s.phase_workload,
            g.tag,
            end - start,
            f(&rep, &["overhead", "governed_probes_attached_share"]) * 100.0,
            if json {
                if planted {
                    ", planted map reported growing"
                } else {
                    ", planted map NOT reported growing"
                }
            } else {
                ""
            }
        );
        phases.push(Phase {
            go: g.tag.clone(),
            round,
            traced: true,
            start,
            end,
            rate: f64::NAN,
            tracer_cpu_s,
            debit_s,
            hits,
            foreign_cpu_s,
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
        bail!("the HTTP target exited early: {}", target.stderr_tail());
    }
    let ticks = parse_ticks(&drain(&mut target));
    drop(target);
    for ph in &mut phases {
        ph.rate = rate(&ticks, ph.start, ph.end);
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

/// The lines the process printed so far.
fn drain(p: &mut Proc) -> Vec<String> {
    while let Ok(l) = p.lines.try_recv() {
        p.seen.push(l);
    }
    p.seen.clone()
}

/// `tick UNIX_NS OPS` lines: (end of the tick in seconds, requests in it).
fn parse_ticks(lines: &[String]) -> Vec<(f64, u64)> {
    lines
        .iter()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            (f.next()? == "tick").then_some(())?;
            let ns: u64 = f.next()?.parse().ok()?;
            let ops: u64 = f.next()?.parse().ok()?;
            Some((ns as f64 / 1e9, ops))
        })
        .collect()
}

/// Requests per second over the ticks that lie wholly within [start, end].
fn rate(ticks: &[(f64, u64)], start: f64, end: f64) -> f64 {
    let tick = TICK_MS as f64 / 1e3;
    let inside: Vec<u64> = ticks
        .iter()
        .filter(|(t, _)| *t - tick >= start && *t <= end)
        .map(|(_, n)| *n)
        .collect();
    if inside.is_empty() {
        return f64::NAN;
    }
    inside.iter().sum::<u64>() as f64 / (inside.len() as f64 * tick)
}

/// Each traced phase's loss against the mean of the untraced phases either
/// side of it; and, as the noise floor, each inner untraced phase's "loss"
/// against its untraced neighbours (two phases away) by the same formula.
fn losses(ph: &[&Phase]) -> (Vec<f64>, Vec<f64>) {
    let mut traced = Vec::new();
    let mut null = Vec::new();
    let off: Vec<usize> = (0..ph.len()).filter(|&i| !ph[i].traced).collect();
    for (i, p) in ph.iter().enumerate() {
        if p.traced {
            let (prev, next) = (i.checked_sub(1).map(|j| ph[j]), ph.get(i + 1));
            if let (Some(a), Some(b)) = (prev, next)
                && !a.traced
                && !b.traced
            {
                traced.push(1.0 - p.rate / ((a.rate + b.rate) / 2.0));
            }
        }
    }
    for w in off.windows(3) {
        let (a, m, b) = (ph[w[0]], ph[w[1]], ph[w[2]]);
        null.push(1.0 - m.rate / ((a.rate + b.rate) / 2.0));
    }
    (traced, null)
}

/// A distribution-free interval for the median: the k-th smallest and
/// k-th largest values, k the largest rank for which the binomial tail
/// P(X < k), X ~ B(n, 1/2), stays within (1 - CONFIDENCE) / 2. None when n
/// is too small for any such interval.
fn median_interval(v: &[f64]) -> Option<(f64, f64)> {
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

/// What one Go release's phases add up to.
struct Row {
    go: String,
    map_impl: String,
    rounds: usize,
    phase_s: f64,
    untraced: f64,
    traced: f64,
    loss: f64,
    interval: Option<(f64, f64)>,
    mean: f64,
    spread: (f64, f64),
    null: f64,
    null_interval: Option<(f64, f64)>,
    null_spread: (f64, f64),
    debit: f64,
    tracer_cpu: f64,
    hits: f64,
    foreign: (f64, f64),
}

impl Row {
    fn goal(&self) -> &'static str {
        if !self.loss.is_finite() {
            "not measured"
        } else if self.loss > 0.01 {
            "NOT met"
        } else if self.interval.is_some_and(|(_, hi)| hi <= 0.01) {
            "met (the whole 95 % interval of the median is within 1 %)"
        } else {
            "met by the median (its 95 % interval reaches past 1 %)"
        }
    }
}

fn rows(gos: &[GoBin], phases: &[Phase]) -> Vec<Row> {
    let mut out = Vec::new();
    for g in gos {
        let ph: Vec<&Phase> = phases.iter().filter(|p| p.go == g.tag).collect();
        if ph.is_empty() {
            continue;
        }
        let (on, off): (Vec<&Phase>, Vec<&Phase>) = ph.iter().partition(|p| p.traced);
        let (l, null) = losses(&ph);
        let per_s = |get: fn(&Phase) -> f64| {
            median(
                &on.iter()
                    .map(|p| get(p) / (p.end - p.start))
                    .collect::<Vec<_>>(),
            )
        };
        let fr: Vec<f64> = ph
            .iter()
            .map(|p| p.foreign_cpu_s / (p.end - p.start))
            .collect();
        out.push(Row {
            go: g.tag.clone(),
            map_impl: g.map_impl.clone(),
            rounds: on.len(),
            phase_s: median(&ph.iter().map(|p| p.end - p.start).collect::<Vec<_>>()),
            untraced: median(&off.iter().map(|p| p.rate).collect::<Vec<_>>()),
            traced: median(&on.iter().map(|p| p.rate).collect::<Vec<_>>()),
            loss: median(&l),
            interval: median_interval(&l),
            mean: l.iter().sum::<f64>() / l.len() as f64,
            spread: min_max(&l),
            null: median(&null),
            null_interval: median_interval(&null),
            null_spread: min_max(&null),
            debit: per_s(|p| p.debit_s),
            tracer_cpu: per_s(|p| p.tracer_cpu_s),
            hits: per_s(|p| p.hits as f64),
            foreign: (median(&fr), min_max(&fr).1),
        });
    }
    out
}

fn interval(i: Option<(f64, f64)>) -> String {
    i.map_or_else(
        || "n/a (too few phases)".to_owned(),
        |(a, b)| format!("{} .. {}", pct(a), pct(b)),
    )
}

/// Writes section 1b.
pub(super) fn render(o: &mut String, gos: &[GoBin], phases: &[Phase]) {
    let rows = rows(gos, phases);
    let _ = writeln!(
        o,
        "## 1b. HTTP throughput in alternating phases of one process\n"
    );
    let _ = writeln!(
        o,
        "Part 1 compares separate runs, and separate `http` runs on this machine differ by several % among \
         themselves: more than the 1 % goal. Here one `bench -mode=http -tick {TICK_MS}ms` process serves for \
         the whole measurement and prints its request count every {TICK_MS} ms. After {} s of warm-up, \
         untraced phases alternate with traced ones: `mapleak-trace --pid P --overhead-budget {BUDGET_PCT}` \
         (default mode) is started, and its traced phase runs from the moment it reports `attached` (so the \
         governor's full initial bucket and first write window are inside it) until it is stopped with \
         SIGINT. The tracer's startup before attaching and its final report after SIGINT fall between phases \
         (they use the tracer's CPU, not the target's; part 3 measures them). A phase's rate counts the ticks \
         wholly inside it. Each traced phase's loss is `1 - traced / mean(untraced before, untraced after)`; \
         the figure is the median over all traced phases, with a distribution-free {:.0} % interval for that \
         median (order statistics of the binomial). As a noise floor, the same formula is applied to every \
         inner untraced phase against its untraced neighbours: with no tracer at all it should be near 0.\n",
        WARMUP.as_secs(),
        CONFIDENCE * 100.0
    );
    let _ = writeln!(
        o,
        "| Go (maps) | traced phases x length | untraced req/s | traced req/s | loss (median) | 95 % interval | mean | min .. max | untraced vs untraced: median (min .. max) | its 95 % interval | governor's debit (CPUs) | tracer CPU (s/s) | probe hits/s | other processes' CPU (median, max) | 1 % goal |"
    );
    let _ = writeln!(
        o,
        "|---|---|---:|---:|---:|---|---:|---|---:|---|---:|---:|---:|---|---|"
    );
    for r in &rows {
        let _ = writeln!(
            o,
            "| {} ({}) | {} x {:.1} s | {} | {} | **{}** | {} | {} | {} .. {} | {} ({} .. {}) | {} | {:.4} | {:.4} | {} | {:.2}, {:.2} | {} |",
            r.go,
            r.map_impl,
            r.rounds,
            r.phase_s,
            num(r.untraced),
            num(r.traced),
            pct(r.loss),
            interval(r.interval),
            pct(r.mean),
            pct(r.spread.0),
            pct(r.spread.1),
            pct(r.null),
            pct(r.null_spread.0),
            pct(r.null_spread.1),
            interval(r.null_interval),
            r.debit,
            r.tracer_cpu,
            num(r.hits),
            r.foreign.0,
            r.foreign.1,
            r.goal()
        );
    }
    let _ = writeln!(
        o,
        "\nThe governor's debit is its own estimate of what its probes took, in CPUs (from attach to exit); \
         the server and its clients keep both CPUs busy, so it should cost the throughput about half of \
         that, plus the tracer's own CPU over two.\n"
    );
    let _ = writeln!(o, "Every phase (req/s; loss against the neighbours):\n");
    let _ = writeln!(
        o,
        "| Go | round | untraced before | traced | loss | governor's debit (CPU-s) | tracer CPU (s) | other processes' CPU (s) |"
    );
    let _ = writeln!(o, "|---|---:|---:|---:|---:|---:|---:|---:|");
    for g in gos {
        let ph: Vec<&Phase> = phases.iter().filter(|p| p.go == g.tag).collect();
        for (i, p) in ph.iter().enumerate() {
            if !p.traced {
                continue;
            }
            let (a, b) = (ph.get(i.wrapping_sub(1)), ph.get(i + 1));
            let loss = match (a, b) {
                (Some(a), Some(b)) => 1.0 - p.rate / ((a.rate + b.rate) / 2.0),
                _ => f64::NAN,
            };
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {} | {:.4} | {:.3} | {:.2} |",
                g.tag,
                p.round,
                a.map_or_else(|| "n/a".to_owned(), |a| num(a.rate)),
                num(p.rate),
                pct(loss),
                p.debit_s,
                p.tracer_cpu_s,
                p.foreign_cpu_s
            );
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
                "**HTTP in alternating phases, {} ({})**: over {} traced phases of {:.1} s in one process, \
                 mapleak-trace cost the HTTP service {} of its throughput (median; 95 % interval {}; \
                 the governor debited {:.2} % of one CPU); untraced phases against their neighbours: {} \
                 (interval {}). 1 % goal: {}.",
                r.go,
                r.map_impl,
                r.rounds,
                r.phase_s,
                pct(r.loss),
                interval(r.interval),
                r.debit * 100.0,
                pct(r.null),
                interval(r.null_interval),
                match r.goal() {
                    "NOT met" => "**not met**",
                    other => other,
                }
            )
        })
        .collect()
}

pub(super) fn raw_json(phases: &[Phase]) -> Value {
    json!(
        phases
            .iter()
            .map(|p| json!({
                "go": p.go, "round": p.round, "traced": p.traced,
                "start_unix_s": p.start, "end_unix_s": p.end, "req_per_sec": p.rate,
                "tracer_cpu_s": p.tracer_cpu_s, "budget_spent_target_cpu_s": p.debit_s,
                "probe_hits": p.hits, "foreign_cpu_s": p.foreign_cpu_s,
            }))
            .collect::<Vec<_>>()
    )
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

    #[test]
    fn rate_counts_only_ticks_inside() {
        let t = [(10.25, 100), (10.5, 100), (10.75, 100), (11.0, 900)];
        // [10.0, 10.8]: the ticks ending at 10.25, 10.5 and 10.75.
        assert!((rate(&t, 10.0, 10.8) - 400.0).abs() < 1e-9);
        assert!(rate(&t, 20.0, 21.0).is_nan());
    }

    fn phase(traced: bool, rate: f64) -> Phase {
        Phase {
            go: "g".to_owned(),
            round: 0,
            traced,
            start: 0.0,
            end: 1.0,
            rate,
            tracer_cpu_s: 0.0,
            debit_s: 0.0,
            hits: 0,
            foreign_cpu_s: 0.0,
        }
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
