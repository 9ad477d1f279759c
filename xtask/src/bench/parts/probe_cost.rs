//! Part 2: cost per probe hit by placement, on `runtime.mapassign_fast64`:
//! bpftrace at the entry (`CMPQ`, single-stepped), at the `JBE` and at the
//! `PUSHQ BP` (both emulated by the kernel), with a counting or an empty
//! program. cost/hit = (t_traced - t_untraced) / hits.
use std::time::Duration;

use anyhow::{Context as _, Result, bail};

use crate::bench::{
    binaries::{GoBin, Micro},
    runner::{Bench, Tracing},
};

/// Where bpftrace puts the microbenchmark's probe, and its program.
pub(crate) struct Placement {
    pub(crate) label: &'static str,
    pub(crate) kernel: &'static str,
    /// 0 = entry, 1 = JBE, 2 = PUSHQ BP.
    pub(crate) at: u8,
    pub(crate) counting: bool,
}

pub(crate) const PLACEMENTS: [Placement; 5] = [
    Placement {
        label: "entry `CMPQ SP, 16(R14)`",
        kernel: "single-stepped",
        at: 0,
        counting: true,
    },
    Placement {
        label: "entry, empty program `{}`",
        kernel: "single-stepped",
        at: 0,
        counting: false,
    },
    Placement {
        label: "`JBE` after the stack check",
        kernel: "emulated",
        at: 1,
        counting: true,
    },
    Placement {
        label: "`PUSHQ BP`",
        kernel: "emulated",
        at: 2,
        counting: true,
    },
    Placement {
        label: "`PUSHQ BP`, empty program `{}`",
        kernel: "emulated",
        at: 2,
        counting: false,
    },
];

/// One run of the microbenchmark.
pub(crate) struct CostSample {
    pub(crate) go: String,
    pub(crate) rep: usize,
    /// None = untraced.
    pub(crate) placement: Option<usize>,
    pub(crate) elapsed_s: f64,
    pub(crate) hits: Option<u64>,
    /// `mapassign_fast64` calls in the run.
    pub(crate) ops: u64,
}

/// Offset of a placement from the function's entry.
pub(crate) fn placement_delta(m: &Micro, at: u8) -> u64 {
    match at {
        1 => m.jbe,
        2 => m.push,
        _ => 0,
    }
}

pub(crate) fn run_probe_cost(b: &mut Bench, gos: &[GoBin]) -> Result<Vec<CostSample>> {
    // Debian's bpftrace 0.17 is built without instruction-boundary checks
    // and refuses `func+off` probes even with --unsafe; on a binary with no
    // symbol table, `uprobe:BIN:0xN` (N a file offset) with --unsafe is
    // accepted. So all placements, the entry included, use the stripped
    // binary and file offsets.
    let mut out = Vec::new();
    let ops = b.s.micro_ops;
    for g in gos {
        for rep in 0..b.s.reps {
            // The smoke run skips the empty-program variants.
            let mut order: Vec<Option<usize>> = std::iter::once(None)
                .chain(
                    (0..PLACEMENTS.len())
                        .filter(|&i| !b.s.smoke || PLACEMENTS[i].counting)
                        .map(Some),
                )
                .collect();
            let n = order.len();
            order.rotate_left(rep % n);
            for which in order {
                let tracing = match which {
                    None => Tracing::Untraced,
                    Some(i) => {
                        let p = &PLACEMENTS[i];
                        let off = g.micro.file_offset + placement_delta(&g.micro, p.at);
                        let body = if p.counting {
                            "{ @c = count(); }"
                        } else {
                            "{}"
                        };
                        Tracing::Bpftrace {
                            program: format!("uprobe:{}:{off:#x} {body}", g.stripped.display()),
                            unsafe_mode: true,
                        }
                    }
                };
                let args = vec![
                    "-mode=mapwrite".to_owned(),
                    "-ops".to_owned(),
                    ops.to_string(),
                ];
                // 30 µs per hit is twice the worst single-step cost seen.
                let budget = Duration::from_secs_f64(ops as f64 * 30e-6 + 60.0);
                let counting = which.is_some_and(|i| PLACEMENTS[i].counting);
                // bpftrace prints "Attaching" before it attaches: on a busy
                // machine it can attach after the (short) loop has begun, or
                // ended. Every call is a hit once attached, so fewer hits
                // than calls means a late attach: measured again.
                let mut attempt = 0;
                let r = loop {
                    attempt += 1;
                    let r = b
                        .run_once(&g.stripped, &args, &tracing, budget)
                        .with_context(|| format!("probe cost {} {which:?}", g.tag))?;
                    if !counting || r.bpf_hits() >= ops || attempt >= 3 {
                        break r;
                    }
                    let msg = format!(
                        "bpftrace counted {} of {ops} calls at {} ({}): attached late, measured again",
                        r.bpf_hits(),
                        which.map_or("untraced", |i| PLACEMENTS[i].label),
                        g.tag
                    );
                    b.note(msg);
                };
                let elapsed_s = r.num("elapsed_s")?;
                let hits = counting.then(|| r.bpf_hits());
                if counting && hits == Some(0) {
                    bail!(
                        "bpftrace counted no hit at {which:?} in {}",
                        g.stripped.display()
                    );
                }
                eprintln!(
                    "bench: probe cost {:9} rep {rep} {:32} {elapsed_s:.4} s hits {hits:?}",
                    g.tag,
                    which.map_or("untraced", |i| PLACEMENTS[i].label)
                );
                out.push(CostSample {
                    go: g.tag.clone(),
                    rep,
                    placement: which,
                    elapsed_s,
                    hits,
                    ops,
                });
            }
        }
    }
    Ok(out)
}
