//! Part 1: throughput of `mapwrite` and `http` in separate runs, untraced,
//! under mapleak-trace in default mode and under bpftrace; the
//! configurations alternate and their order rotates with each repetition.
use std::{path::Path, time::Duration};

use anyhow::{Context as _, Result};

use super::{BPFTRACE_REPS, Mode};
use crate::bench::{
    binaries::GoBin,
    runner::{Bench, Tracing, f, report_hits},
};

/// One run of part 1.
pub(crate) struct TpSample {
    pub(crate) go: String,
    pub(crate) workload: &'static str,
    pub(crate) rep: usize,
    pub(crate) mode: Mode,
    /// `-seconds` of the run.
    pub(crate) seconds: f64,
    pub(crate) value: f64,
    pub(crate) hits: u64,
    /// Hits on single-stepped (RET-site) probes; mapleak-trace only.
    pub(crate) ss_hits: u64,
    pub(crate) est_cpu_s: f64,
    /// CPU the tracer process used during the measured part, and its length.
    pub(crate) tracer_cpu_s: f64,
    pub(crate) window_s: f64,
    /// Seconds mapleak-trace's governor kept creation probes detached.
    pub(crate) paused_s: f64,
    /// mapleak-trace's governor: write windows opened, seconds they were
    /// open, hits on the write-path probes, maps first found through them,
    /// and the target CPU it debited for all hits (its own estimate of
    /// what it took). NaN / 0 for the other configurations.
    pub(crate) write_windows: f64,
    pub(crate) write_windows_s: f64,
    pub(crate) write_hits: u64,
    pub(crate) maps_by_windows: f64,
    pub(crate) budget_spent_s: f64,
    /// The target's CPU time, all and in the kernel (whole life).
    pub(crate) target_cpu_s: f64,
    pub(crate) target_sys_s: f64,
}

/// The workloads of part 1, and the figure each prints.
pub(crate) const WORKLOADS: [(&str, &str); 2] =
    [("mapwrite", "ops_per_sec"), ("http", "req_per_sec")];

/// bpftrace's program for parts 1 and 2b: a counting uprobe at the entry
/// of every function default mode keeps attached.
pub(crate) fn bpftrace_default_program(g: &GoBin) -> String {
    let bin = g.bin.display();
    g.functions
        .iter()
        .map(|f| format!("uprobe:{bin}:\"{f}\" {{ @c[probe] = count(); }}"))
        .collect::<Vec<_>>()
        .join("\n")
}

pub(crate) fn run_throughput(b: &mut Bench, gos: &[GoBin], tracer: &Path) -> Result<Vec<TpSample>> {
    let mut out = Vec::new();
    for g in gos {
        for (workload, metric) in WORKLOADS {
            let secs = b.s.tp_seconds(workload);
            for rep in 0..b.s.reps {
                let mut modes = vec![Mode::Untraced, Mode::Mapleak];
                if rep < BPFTRACE_REPS {
                    modes.push(Mode::Bpftrace);
                }
                let n = modes.len();
                modes.rotate_left(rep % n);
                for mode in modes {
                    let tracing = match mode {
                        Mode::Untraced => Tracing::Untraced,
                        Mode::Mapleak | Mode::Unbudgeted => Tracing::Mapleak {
                            exe: tracer.to_path_buf(),
                            duration_s: secs.ceil() as u64 + 120,
                            stop_target: false,
                            budget_pct: if mode == Mode::Unbudgeted {
                                100.0
                            } else {
                                crate::bench::BUDGET_PCT
                            },
                        },
                        Mode::Bpftrace => Tracing::Bpftrace {
                            program: bpftrace_default_program(g),
                            unsafe_mode: false,
                        },
                    };
                    let args = vec![
                        format!("-mode={workload}"),
                        "-seconds".to_owned(),
                        format!("{secs}"),
                    ];
                    let budget = Duration::from_secs_f64(secs * 3.0 + 60.0);
                    let r = b
                        .run_once(&g.bin, &args, &tracing, budget)
                        .with_context(|| format!("{workload} {} {}", g.tag, mode.label()))?;
                    let value = r.num(metric)?;
                    let mut s = TpSample {
                        go: g.tag.clone(),
                        workload,
                        rep,
                        mode,
                        seconds: secs,
                        value,
                        hits: r.bpf_hits(),
                        ss_hits: 0,
                        est_cpu_s: 0.0,
                        tracer_cpu_s: r.tracer_cpu_window_s,
                        window_s: r.window_s,
                        paused_s: 0.0,
                        write_windows: f64::NAN,
                        write_windows_s: f64::NAN,
                        write_hits: 0,
                        maps_by_windows: f64::NAN,
                        budget_spent_s: f64::NAN,
                        target_cpu_s: r.target_cpu_s,
                        target_sys_s: r.target_sys_s,
                    };
                    if let Some(rep) = &r.report {
                        let (hits, ss) = report_hits(rep, &g.ret_sites);
                        s.hits = hits;
                        s.ss_hits = ss;
                        s.write_hits = report_hits(rep, &g.write_sites).1;
                        s.est_cpu_s = f(rep, &["overhead", "estimated_target_cpu_s"]);
                        s.paused_s = f(rep, &["overhead", "creation_probes_paused_s"]);
                        s.write_windows = f(rep, &["overhead", "write_windows"]);
                        s.write_windows_s = f(rep, &["overhead", "write_windows_s"]);
                        s.maps_by_windows = f(rep, &["overhead", "maps_found_by_write_windows"]);
                        s.budget_spent_s = f(rep, &["overhead", "budget_spent_target_cpu_s"]);
                    }
                    if mode == Mode::Mapleak {
                        eprintln!(
                            "bench: {workload:8} {:9} {:13} rep {rep}: {metric} {value:.0} hits {} \
                             (write path {}), {} windows open {:.2} s, budget spent {:.3} s = {:.2} % of {:.1} s, \
                             creation paused {:.1} s",
                            g.tag,
                            mode.label(),
                            s.hits,
                            s.write_hits,
                            s.write_windows,
                            s.write_windows_s,
                            s.budget_spent_s,
                            s.budget_spent_s / s.window_s * 100.0,
                            s.window_s,
                            s.paused_s
                        );
                    } else {
                        eprintln!(
                            "bench: {workload:8} {:9} {:13} rep {rep}: {metric} {value:.0} hits {}",
                            g.tag,
                            mode.label(),
                            s.hits
                        );
                    }
                    out.push(s);
                }
            }
        }
    }
    Ok(out)
}
