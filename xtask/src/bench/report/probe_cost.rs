//! Part 2 of the report: cost per probe hit, by placement.
use std::{collections::BTreeMap, fmt::Write as _};

use crate::bench::{
    GOV_EMULATED_US, GOV_SINGLE_STEP_US, GOV_WRITE_US,
    binaries::GoBin,
    parts::probe_cost::{CostSample, PLACEMENTS, placement_delta},
    stats::{median, min_max, num},
};

/// Per-placement figures of the microbenchmark for one Go release.
struct CostRow {
    elapsed: f64,
    hits: f64,
    us_per_hit: f64,
    spread: (f64, f64),
}

/// The median untraced time, and each placement's figures (in the order
/// of `PLACEMENTS`), over repetitions `0..reps`.
fn cost_rows(g: &GoBin, cost: &[CostSample], reps: usize) -> (f64, Vec<CostRow>) {
    let mine: Vec<&CostSample> = cost.iter().filter(|c| c.go == g.tag).collect();
    let untraced: Vec<f64> = mine
        .iter()
        .filter(|c| c.placement.is_none())
        .map(|c| c.elapsed_s)
        .collect();
    let mut rows = Vec::new();
    for (i, p) in PLACEMENTS.iter().enumerate() {
        let at: Vec<&&CostSample> = mine.iter().filter(|c| c.placement == Some(i)).collect();
        // Hits of an empty program: those the counting program at the same
        // place saw (the loop is deterministic).
        let hits_of = |rep: usize| -> Option<f64> {
            let own = at.iter().find(|c| c.rep == rep).and_then(|c| c.hits);
            own.or_else(|| {
                mine.iter()
                    .filter(|c| {
                        c.rep == rep
                            && c.placement
                                .is_some_and(|j| PLACEMENTS[j].at == p.at && PLACEMENTS[j].counting)
                    })
                    .find_map(|c| c.hits)
            })
            .map(|h| h as f64)
        };
        let mut per_hit = Vec::new();
        let mut hits = Vec::new();
        for rep in 0..reps {
            let t = at.iter().find(|c| c.rep == rep).map(|c| c.elapsed_s);
            let u = mine
                .iter()
                .find(|c| c.rep == rep && c.placement.is_none())
                .map(|c| c.elapsed_s);
            if let (Some(t), Some(u), Some(h)) = (t, u, hits_of(rep))
                && h > 0.0
            {
                per_hit.push((t - u) / h * 1e6);
                hits.push(h);
            }
        }
        let elapsed: Vec<f64> = at.iter().map(|c| c.elapsed_s).collect();
        rows.push(CostRow {
            elapsed: median(&elapsed),
            hits: median(&hits),
            us_per_hit: median(&per_hit),
            spread: min_max(&per_hit),
        });
    }
    (median(&untraced), rows)
}

/// Repetitions in the samples (they are numbered from 0).
fn reps(cost: &[CostSample]) -> usize {
    cost.iter().map(|c| c.rep + 1).max().unwrap_or(0)
}

/// µs per hit by Go release: (entry, single-stepped; `PUSHQ BP`,
/// emulated), both with the counting program.
pub(super) fn per_hit(gos: &[GoBin], cost: &[CostSample]) -> BTreeMap<String, (f64, f64)> {
    let mut out = BTreeMap::new();
    if cost.is_empty() {
        return out;
    }
    for g in gos {
        let (_, rows) = cost_rows(g, cost, reps(cost));
        // Counting programs, entry and PUSHQ BP: for the model of part 1's
        // reading.
        let ss = rows.first().map_or(f64::NAN, |r| r.us_per_hit);
        let em = rows.get(3).map_or(f64::NAN, |r| r.us_per_hit);
        out.insert(g.tag.clone(), (ss, em));
    }
    out
}

/// Writes section 2. `micro_ops` and `bpftrace` (its version) describe the
/// run that measured it.
pub(super) fn render(
    o: &mut String,
    gos: &[GoBin],
    cost: &[CostSample],
    micro_ops: u64,
    bpftrace: &str,
) {
    let _ = writeln!(o, "## 2. Cost per probe hit, by placement\n");
    let _ = writeln!(
        o,
        "`bench -mode=mapwrite -ops {micro_ops}`: exactly that many `runtime.mapassign_fast64` calls in a timed loop. \
         bpftrace (`{bpftrace}`) puts one uprobe on that function, at the entry, at the `JBE` of the stack check or at \
         the `PUSHQ BP` after it, with a counting program (`{{ @c = count(); }}`, which gives the hits) or an \
         empty one (`{{}}`, hits taken from the counting run at the same place). cost/hit = \
         (t_traced - t_untraced) / hits, per repetition, then the median. Debian's bpftrace 0.17 is built \
         without instruction-boundary checks and refuses `func+offset` even with `--unsafe`; it does take \
         `uprobe:BIN:0xN` with `--unsafe` on a binary without a symbol table, N being a file offset. So all \
         placements use a stripped build (`-ldflags=-s -w`) of the same program and file offsets computed \
         from `mapleak-trace inspect` and the ELF headers; the entry placement is where \
         `uprobe:BIN:runtime.mapassign_fast64` attaches.\n"
    );
    let _ = writeln!(
        o,
        "| Go | placement | offset | kernel | hits | median time (s) | µs/hit | spread (µs) |"
    );
    let _ = writeln!(o, "|---|---|---:|---|---:|---:|---:|---|");
    for g in gos {
        let (u, rows) = cost_rows(g, cost, reps(cost));
        let _ = writeln!(o, "| {} | untraced | | | | {u:.4} | | |", g.tag);
        for (p, r) in PLACEMENTS.iter().zip(&rows) {
            let _ = writeln!(
                o,
                "| {} | {} | +{} | {} | {} | {:.4} | **{:.2}** | {:.2} .. {:.2} |",
                g.tag,
                p.label,
                placement_delta(&g.micro, p.at),
                p.kernel,
                num(r.hits),
                r.elapsed,
                r.us_per_hit,
                r.spread.0,
                r.spread.1
            );
        }
    }
    let _ = writeln!(o, "\n{}\n", footnote());
}

/// What part 2 says about the governor's per-hit costs.
pub(super) fn footnote() -> String {
    format!(
        "mapleak-trace's overhead governor debits {GOV_EMULATED_US} µs per emulated hit, {GOV_SINGLE_STEP_US} µs \
         per single-stepped hit and {GOV_WRITE_US} µs per write-path hit (emulated, plus a kernel hash-map \
         update), from these figures (tracer-user/src/governor.rs); `overhead.estimated_target_cpu_s` uses \
         the same costs."
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_governor_costs_as_the_tracer_has_them() {
        // tracer_common::governor, in µs, written as before they were shared.
        let f = footnote();
        assert!(
            f.contains("debits 0.8 µs per emulated hit, 11 µs per single-stepped hit and 1 µs per write-path hit"),
            "{f}"
        );
    }
}
