//! Part 2b: what each map creation costs under each tracer
//! (`bench -mode=makemap`), in the same three configurations as part 1.
use std::{path::Path, time::Duration};

use anyhow::{Context as _, Result};

use super::{BPFTRACE_REPS, Mode, throughput::bpftrace_default_program};
use crate::bench::{
    binaries::GoBin,
    runner::{Bench, Tracing, report_hits},
    stats::median,
};

/// Map creations measured: `make(map[int64]int64)` and with a hint of 16.
pub(crate) const CREATIONS: [(&str, &str); 2] = [("small", "0"), ("hint 16", "16")];

/// One run of part 2b.
pub(crate) struct CreateSample {
    pub(crate) go: String,
    pub(crate) kind: &'static str,
    pub(crate) rep: usize,
    pub(crate) mode: Mode,
    pub(crate) elapsed_s: f64,
    pub(crate) hits: u64,
    pub(crate) ops: u64,
}

pub(crate) fn run_create_cost(
    b: &mut Bench,
    gos: &[GoBin],
    tracer: &Path,
) -> Result<Vec<CreateSample>> {
    let mut out = Vec::new();
    let ops = b.s.create_ops;
    for g in gos {
        // The smoke run measures one kind of creation.
        for (kind, hint) in CREATIONS.iter().take(if b.s.smoke { 1 } else { 2 }) {
            let kind: &'static str = kind;
            for rep in 0..b.s.reps {
                let mut modes = vec![Mode::Untraced, Mode::Mapleak, Mode::Unbudgeted];
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
                            duration_s: 600,
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
                        "-mode=makemap".to_owned(),
                        "-ops".to_owned(),
                        ops.to_string(),
                        "-hint".to_owned(),
                        (*hint).to_owned(),
                    ];
                    let budget = Duration::from_secs_f64(ops as f64 * 100e-6 + 60.0);
                    let r = b
                        .run_once(&g.bin, &args, &tracing, budget)
                        .with_context(|| format!("makemap {kind} {} {}", g.tag, mode.label()))?;
                    let elapsed_s = r.num("elapsed_s")?;
                    let hits = match &r.report {
                        Some(rep) => report_hits(rep, &g.ret_sites).0,
                        None => r.bpf_hits(),
                    };
                    eprintln!(
                        "bench: makemap {kind:7} {:9} {:13} rep {rep}: {elapsed_s:.4} s hits {hits}",
                        g.tag,
                        mode.label()
                    );
                    out.push(CreateSample {
                        go: g.tag.clone(),
                        kind,
                        rep,
                        mode,
                        elapsed_s,
                        hits,
                        ops,
                    });
                }
            }
        }
    }
    Ok(out)
}

/// Median µs added per creation by `mode` (against the untraced run of the
/// same repetition), and median hits per creation.
pub(crate) fn create_cost(v: &[CreateSample], go: &str, kind: &str, mode: Mode) -> (f64, f64) {
    let sel = |m: Mode| -> Vec<&CreateSample> {
        v.iter()
            .filter(|c| c.go == go && c.kind == kind && c.mode == m)
            .collect()
    };
    let u = sel(Mode::Untraced);
    let t = sel(mode);
    let mut per = Vec::new();
    let mut hits = Vec::new();
    for c in &t {
        if let Some(x) = u.iter().find(|x| x.rep == c.rep) {
            if mode == Mode::Untraced {
                per.push(c.elapsed_s / c.ops as f64 * 1e6);
            } else {
                per.push((c.elapsed_s - x.elapsed_s) / c.ops as f64 * 1e6);
            }
            hits.push(c.hits as f64 / c.ops as f64);
        }
    }
    (median(&per), median(&hits))
}
