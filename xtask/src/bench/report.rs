//! The Markdown report, rendered from the record (`record`): the header,
//! the machine table, the method, each part's section (or why it has none),
//! the reading and the run's notes.
use std::{collections::BTreeMap, fmt::Write as _, path::PathBuf, time::Duration};

use super::{
    PARTS,
    parts::BPFTRACE_REPS,
    record::{Provenance, Record},
    runner::{Bench, FOREIGN_MAX},
    stats::{median, min_max},
};

mod create_cost;
mod fleet;
mod manymaps;
mod phases;
mod probe_cost;
mod reading;
mod search_cost;
mod throughput;
mod twin;

/// How the report was made, besides the figures.
pub(super) struct Ctx {
    /// How the bench was invoked (`cargo xtask bench ...`).
    pub(super) cmdline: String,
    /// `--merge`: every part is shown, from the merged record.
    pub(super) merge: bool,
    /// The parts this run measured.
    pub(super) measured: Vec<&'static str>,
    /// File name of the raw figures under target/bench.
    pub(super) raw_name: &'static str,
    pub(super) machine: BTreeMap<&'static str, String>,
    pub(super) tracer_path: PathBuf,
    pub(super) profile: String,
    pub(super) load_before: String,
    pub(super) load_after: String,
    pub(super) took: Duration,
    pub(super) commit: String,
}

/// A part's number and the title of its section.
fn heading(part: &str) -> (&'static str, &'static str) {
    match part {
        "throughput" => ("1", "Target throughput"),
        "phases" => ("1b", "Throughput in alternating phases of one process"),
        "fleet" => ("1c", "Many processes traced at once (node-wide mode)"),
        "probe-cost" => ("2", "Cost per probe hit, by placement"),
        "create-cost" => ("2b", "Cost per map creation, per tracer"),
        "search-cost" => ("3b", "Holder search and sync.Map walks"),
        "twin" => ("1h", "Twin processes, one traced at a time"),
        _ => ("3", "Tracer CPU and memory with many live maps"),
    }
}

/// A section measured by an earlier run: the same, saying so under its
/// heading.
fn kept(section: &str, by: Option<&Provenance>) -> String {
    let note = match by {
        Some(p) => format!(
            "*Measured by an earlier run, {}, and kept: not rerun for this report.*\n\n",
            p.made_by()
        ),
        None => "*Measured by an earlier run (its record does not say which), and kept: not rerun \
                 for this report.*\n\n"
            .to_owned(),
    };
    match section.split_once("\n\n") {
        Some((heading, body)) => format!("{heading}\n\n{note}{body}"),
        None => format!("{section}{note}"),
    }
}

/// The whole report.
pub(super) fn render(b: &Bench, ctx: &Ctx, rec: &Record) -> String {
    let (gos, res) = (&rec.gos[..], &rec.res);
    let s = &b.s;
    let m = &ctx.machine;
    let get = |k: &str| m.get(k).cloned().unwrap_or_else(|| "?".to_owned());
    let mut o = String::new();
    let _ = writeln!(o, "# mapleak-trace benchmarks\n");
    let _ = writeln!(
        o,
        "Written by `{}` (xtask/src/bench.rs; workload testdata/go/bench) on {}, commit `{}`, in {:.0} s. \
         Rerun it rather than editing this file; the raw runs are in `target/bench/{}`.\n",
        ctx.cmdline,
        get("date"),
        ctx.commit,
        ctx.took.as_secs_f64(),
        ctx.raw_name
    );
    if ctx.merge && ctx.measured.len() < PARTS.len() {
        let _ = writeln!(
            o,
            "This run measured only {}; the other parts ({}) and their lines in the reading come from the \
             figures of earlier runs kept in `target/bench/{}` (`--merge`), each section saying what run \
             measured it. The machine table's load and contention rows describe this run.\n",
            ctx.measured.join(", "),
            PARTS
                .iter()
                .filter(|p| !ctx.measured.contains(p))
                .copied()
                .collect::<Vec<_>>()
                .join(", "),
            ctx.raw_name
        );
    }
    if s.smoke {
        let _ = writeln!(
            o,
            "**Smoke run**: one repetition of short runs, small workloads. It checks that the \
             benchmark works; its numbers are not measurements.\n"
        );
    }
    let _ = writeln!(o, "## Machine\n");
    let _ = writeln!(o, "| | |\n|---|---|");
    let _ = writeln!(o, "| CPU | {} ({}) |", get("cpu"), get("virtualized"));
    let _ = writeln!(o, "| nproc | {} |", get("nproc"));
    let _ = writeln!(o, "| memory | {} |", get("memory"));
    let _ = writeln!(o, "| kernel | {} |", get("kernel"));
    let _ = writeln!(o, "| bpftrace | {} |", get("bpftrace"));
    let _ = writeln!(
        o,
        "| Go | {} |",
        gos.iter()
            .map(|g| format!("{} ({})", g.tag, g.map_impl))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = writeln!(
        o,
        "| mapleak-trace | `{}` ({} build) |",
        ctx.tracer_path
            .strip_prefix(&b.root)
            .unwrap_or(&ctx.tracer_path)
            .display(),
        ctx.profile
    );
    let _ = writeln!(
        o,
        "| load average (1, 5, 15 min) | {} before, {} after |",
        ctx.load_before, ctx.load_after
    );
    let _ = writeln!(
        o,
        "| runs started while another tracer ran | {} of {} |",
        b.contaminated, b.runs
    );
    let (_, fmax) = min_max(&b.foreign);
    if b.foreign.is_empty() {
        let _ = writeln!(
            o,
            "| other processes' CPU use during the kept runs | not measured in this run |\n"
        );
    } else {
        let _ = writeln!(
            o,
            "| other processes' CPU use during the kept runs (and phases) | median {:.2}, max {:.2} CPU; {} \
             run(s) made again for exceeding {FOREIGN_MAX} CPU, {} kept above it after 3 attempts |\n",
            median(&b.foreign),
            fmax,
            b.retried,
            b.noisy
        );
    }

    let _ = writeln!(o, "## Method\n");
    let _ = writeln!(
        o,
        "Every run starts the bench program with `-wait`; it prints `waiting` and blocks on stdin. The tracer \
         (if any) is attached to its pid; once it says so (`mapleak-trace: attached`, bpftrace's `Attaching N \
         probes...`) and after a further {:.1} s pause (also taken in untraced runs), the program is told to go \
         and measures its own throughput or time, so attach and startup costs are not in the numbers. \
         Configurations alternate within each repetition and their order rotates between repetitions; \
         bpftrace runs in the first {} repetitions only. \
         The machine has {} CPUs and is shared, so each figure is a median of {} repetition(s), and a loss is \
         the median of the per-repetition ratios `1 - traced/untraced`, each against the untraced run of the \
         same repetition (the min..max of those ratios is shown as the spread). \"Untraced range\" is \
         (max - min) / median of the untraced runs alone: differences smaller than that are noise.\n",
        s.settle.as_secs_f64(),
        BPFTRACE_REPS.min(s.reps),
        get("nproc"),
        s.reps
    );

    // The parts, in order.
    for part in PARTS {
        let mut section = String::new();
        if let Some(why) = rec.missing.get(part) {
            // Only a merged report shows every part.
            if ctx.merge {
                let (label, title) = heading(part);
                let _ = writeln!(
                    section,
                    "## {label}. {title}\n\n*Part {label}: not measured ({why}{}).*\n",
                    if why == "no earlier figures" {
                        format!(" in `target/bench/{}`", ctx.raw_name)
                    } else {
                        String::new()
                    }
                );
            }
        } else {
            match part {
                "throughput" => throughput::render(&mut section, s, gos, &res.tp),
                "phases" => phases::render(&mut section, gos, &res.phases),
                "fleet" => fleet::render(&mut section, gos, &res.fleet),
                "probe-cost" => {
                    let ops = res
                        .cost
                        .iter()
                        .map(|c| c.ops)
                        .find(|&n| n > 0)
                        .unwrap_or(s.micro_ops);
                    let bpftrace = rec
                        .measured_by
                        .get(part)
                        .map(|p| p.bpftrace.clone())
                        .filter(|v| !v.is_empty())
                        .unwrap_or_else(|| get("bpftrace"));
                    probe_cost::render(&mut section, gos, &res.cost, ops, &bpftrace);
                }
                "create-cost" => create_cost::render(&mut section, gos, &res.create),
                "search-cost" => search_cost::render(&mut section, &res.search),
                "twin" => twin::render(&mut section, gos, &res.twin),
                _ => manymaps::render(&mut section, &res.many, s.many_trace_base_s),
            }
            if ctx.merge && !ctx.measured.contains(&part) {
                section = kept(&section, rec.measured_by.get(part));
            }
        }
        o.push_str(&section);
    }

    // Reading.
    let _ = writeln!(o, "## Reading\n");
    for line in reading::reading(s, gos, res) {
        let _ = writeln!(o, "- {line}");
    }
    let _ = writeln!(o);
    if !b.log.is_empty() {
        let _ = writeln!(o, "## Notes from the run\n");
        for l in b.log.iter().take(30) {
            let _ = writeln!(o, "- {l}");
        }
        if b.log.len() > 30 {
            let _ = writeln!(o, "- ... and {} more", b.log.len() - 30);
        }
        let _ = writeln!(o);
    }
    o
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::bench::{Args, Settings, record};

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    fn ctx(merge: bool, measured: Vec<&'static str>) -> Ctx {
        Ctx {
            cmdline: "cargo xtask bench --smoke --only manymaps --merge".to_owned(),
            merge,
            measured,
            raw_name: "smoke-results.json",
            machine: BTreeMap::new(),
            tracer_path: PathBuf::new(),
            profile: String::new(),
            load_before: String::new(),
            load_after: String::new(),
            took: Duration::ZERO,
            commit: String::new(),
        }
    }

    #[test]
    fn a_merged_report_says_which_parts_have_no_figures() {
        use clap::Parser as _;
        let args = Cli::parse_from(["bench", "--smoke"]).args;
        let b = Bench::new(Settings::new(&args), PathBuf::new(), PathBuf::new());
        // A record with part 3 only (measured now), and one with nothing.
        let rec = record::parse(&json!({
            "binaries": [{"go": "go1.26.8", "map_impl": "swiss"}],
            "manymaps": [{"go": "go1.26.8", "n": 10, "trace_s": 3, "untraced_create_s": 0.1,
                          "traced_create_s": 0.2}],
        }));
        let md = render(&b, &ctx(true, vec!["manymaps"]), &rec);
        assert!(md.contains("This run measured only manymaps; the other parts (throughput, phases, fleet, twin, probe-cost, create-cost, search-cost)"));
        assert!(md.contains(
            "## 2. Cost per probe hit, by placement\n\n*Part 2: not measured (no earlier figures in \
             `target/bench/smoke-results.json`).*\n\n## 2b. "
        ));
        assert!(
            md.contains("## 3. Tracer CPU and memory with 10 live maps\n\n`bench -mode=manymaps")
        );
        assert!(!md.contains("Measured by an earlier run"));
        // Not merged: a partial report shows only what it has.
        let md = render(&b, &ctx(false, vec!["manymaps"]), &rec);
        assert!(!md.contains("## 2."));
        assert!(!md.contains("This run measured only"));
        // A kept part says what run measured it (or that its record does not say).
        let md = render(&b, &ctx(true, vec!["phases"]), &rec);
        assert!(md.contains(
            "## 3. Tracer CPU and memory with 10 live maps\n\n*Measured by an earlier run (its record \
             does not say which), and kept: not rerun for this report.*\n\n`bench -mode=manymaps"
        ));
    }

    /// Part 3 with two map counts: both in the heading, one row per count
    /// and release, the report size and the caps reached in the table; the
    /// larger count traced longer.
    #[test]
    fn part_3_with_two_map_counts() {
        use clap::Parser as _;
        let args = Cli::parse_from(["bench"]).args;
        let s = Settings::new(&args);
        assert_eq!(s.many_n, [100_000, 1_000_000]);
        assert_eq!(
            (s.many_trace_s(100_000), s.many_trace_s(1_000_000)),
            (20, 110)
        );
        let smoke = Settings::new(&Cli::parse_from(["bench", "--smoke"]).args);
        assert_eq!(
            (smoke.many_n.as_slice(), smoke.many_trace_s(10_000)),
            (&[10_000][..], 3)
        );
        let b = Bench::new(s, PathBuf::new(), PathBuf::new());
        let row = |n: u64, caps: serde_json::Value| {
            json!({"go": "go1.26.8", "n": n, "trace_s": 20, "untraced_create_s": 0.1,
                   "traced_create_s": 0.2, "report_bytes": 61_000, "caps_reached": caps,
                   "overhead": {"tracer_max_rss_bytes": 73_400_320}})
        };
        let rec = record::parse(&json!({
            "binaries": [{"go": "go1.26.8", "map_impl": "swiss"}],
            "manymaps": [
                row(1_000_000, json!([{"cap": "sample_time_ms", "limit": 500, "count": 7,
                                       "effect": "map reads left to the next sample"}])),
                row(100_000, json!([])),
            ],
        }));
        let md = render(&b, &ctx(false, vec!["manymaps"]), &rec);
        assert!(md.contains("## 3. Tracer CPU and memory with 100,000 and 1,000,000 live maps"));
        let at = |needle: &str| md.find(needle).unwrap_or_else(|| panic!("{needle}: {md}"));
        assert!(at("| go1.26.8 | 100,000 |") < at("| go1.26.8 | 1,000,000 |"));
        assert!(md.contains("| 70 | 61 | none |"), "{md}");
        assert!(md.contains("`sample_time_ms` (7 map reads left to the next sample)"));
    }
}
