//! Part 3: the tracer's own CPU and memory with many live grown maps
//! (`bench -mode=manymaps`), and how much longer creating them takes
//! traced.
use std::{path::Path, time::Duration};

use anyhow::{Context as _, Result};
use serde_json::Value;

use crate::bench::{
    binaries::GoBin,
    runner::{Bench, RunResult, Tracing, f},
};

/// The run of part 3 on one Go release with `n` maps.
pub(crate) struct ManyResult {
    pub(crate) go: String,
    pub(crate) n: u64,
    /// Bytes of the tracer's JSON report (0: not recorded).
    pub(crate) report_bytes: u64,
    /// The tracer's `--duration`, in seconds.
    pub(crate) trace_s: u64,
    pub(crate) untraced_create_s: f64,
    pub(crate) traced_create_s: f64,
    pub(crate) heap_inuse: f64,
    /// Tracer CPU before the maps were created (startup: parsing the binary).
    pub(crate) startup_cpu_s: f64,
    /// The tracer's RSS one second before its --duration ended (before it
    /// builds the final report), and GC cycles the target ran.
    pub(crate) steady_rss: f64,
    /// The tracer's CPU use (in CPUs) from "go" to then.
    pub(crate) steady_cpu: f64,
    pub(crate) target_gcs: f64,
    /// Maps and GC cycles in the report.
    pub(crate) maps_n: usize,
    pub(crate) gcs_n: usize,
    /// The tracer's report (results.json keeps its `overhead`,
    /// `maps_evicted`, `caps_reached` and `duration_s`).
    pub(crate) report: Value,
}

pub(crate) fn run_manymaps(b: &mut Bench, gos: &[GoBin], tracer: &Path) -> Result<Vec<ManyResult>> {
    let mut out = Vec::new();
    for n in b.s.many_n.clone() {
        for g in gos {
            out.push(run_one(b, g, tracer, n)?);
        }
    }
    Ok(out)
}

/// Part 3 on one Go release with `n` maps.
fn run_one(b: &mut Bench, g: &GoBin, tracer: &Path, n: u64) -> Result<ManyResult> {
    let t = b.s.many_trace_s(n);
    let args = |secs: u64| {
        vec![
            "-mode=manymaps".to_owned(),
            "-n".to_owned(),
            n.to_string(),
            "-seconds".to_owned(),
            secs.to_string(),
        ]
    };
    let u = b
        .run_once(
            &g.bin,
            &args(1),
            &Tracing::Untraced,
            // 1,000,000 maps take about 15 s to make untraced.
            Duration::from_secs(120 + n / 5_000),
        )
        .with_context(|| format!("manymaps {} {n} untraced", g.tag))?;
    let untraced_create_s = ready_seconds(&u)?;
    let heap_inuse = u.num("heap_inuse_bytes")?;
    // The tracer watches for `t` seconds from attach. The target would
    // run 30 s longer (a tracer that falls behind overruns its
    // --duration, and one whose target has exited reports no map); it
    // is stopped as soon as the tracer has exited.
    let r = b
        .run_once(
            &g.bin,
            &args(t + 30),
            &Tracing::Mapleak {
                exe: tracer.to_path_buf(),
                duration_s: t,
                stop_target: true,
                budget_pct: 100.0,
            },
            Duration::from_secs(t + 240),
        )
        .with_context(|| format!("manymaps {} {n} traced", g.tag))?;
    let traced_create_s = ready_seconds(&r)?;
    let startup_cpu_s = r.tracer_cpu_startup_s;
    // --duration counts from attach, `settle` before "go".
    let report_at = t as f64 - b.s.settle.as_secs_f64() - 1.0;
    let before: Vec<&(f64, u64, f64)> = r
        .tracer_rss
        .iter()
        .filter(|(at, _, _)| *at <= report_at)
        .collect();
    let steady_rss = before
        .iter()
        .map(|&&(_, v, _)| v as f64)
        .fold(f64::NAN, f64::max);
    // CPU rate from "go" to the last sample before the final report.
    let steady_cpu = before
        .last()
        .map_or(f64::NAN, |&&(at, _, c)| (c - r.tracer_cpu_startup_s) / at);
    let target_gcs = r.num("gc_cycles").unwrap_or(f64::NAN);
    let report_bytes = r.report_bytes;
    let report = r.report.context("no report")?;
    eprintln!(
        "bench: manymaps {:9} {n} create {untraced_create_s:.2} s untraced, {traced_create_s:.2} s traced; tracer cpu {:.2} s rss {:.0} MiB, {} maps, report {report_bytes} bytes",
        g.tag,
        f(&report, &["overhead", "tracer_cpu_s"]),
        f(&report, &["overhead", "tracer_max_rss_bytes"]) / 1048576.0,
        report
            .get("maps")
            .and_then(Value::as_array)
            .map_or(0, Vec::len)
            + report
                .get("maps_summarized")
                .and_then(Value::as_u64)
                .map_or(0, |n| usize::try_from(n).unwrap_or(usize::MAX))
    );
    let count = |k: &str| report.get(k).and_then(Value::as_array).map_or(0, Vec::len);
    // Maps in full plus those counted in groups (report v2).
    let summarized = report
        .get("maps_summarized")
        .and_then(Value::as_u64)
        .map_or(0, |n| usize::try_from(n).unwrap_or(usize::MAX));
    let (maps_n, gcs_n) = (count("maps") + summarized, count("gc_cycles"));
    Ok(ManyResult {
        go: g.tag.clone(),
        n,
        report_bytes,
        trace_s: t,
        untraced_create_s,
        traced_create_s,
        heap_inuse,
        startup_cpu_s,
        steady_rss,
        steady_cpu,
        target_gcs,
        maps_n,
        gcs_n,
        report,
    })
}

/// `ready 100000 maps in 1.234s`.
fn ready_seconds(r: &RunResult) -> Result<f64> {
    let v = r
        .target
        .get("ready")
        .context("manymaps printed no `ready` line")?;
    v.rsplit(' ')
        .next()
        .and_then(|s| s.trim_end_matches('s').parse().ok())
        .with_context(|| format!("cannot parse `ready {v}`"))
}
