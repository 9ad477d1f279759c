//! The report's reading: short statements derived from the figures, so
//! that they stay true when the benchmark is rerun.
use std::{collections::BTreeMap, fmt::Write as _, thread};

use super::{
    manymaps::many_figures,
    phases, probe_cost,
    throughput::{TpRow, tp_rows},
};
use crate::bench::{
    BUDGET_MARGIN_PCT, BUDGET_PCT, GOV_EMULATED_US, GOV_SINGLE_STEP_US, GOV_WRITE_US, Results,
    Settings,
    binaries::GoBin,
    parts::{
        Mode,
        create_cost::{CREATIONS, create_cost},
    },
    stats::{median, num, pct},
};

/// The reading of one throughput row.
fn tp_reading(r: &TpRow, res: &Results, cost: &BTreeMap<String, (f64, f64)>, ncpu: f64) -> String {
    let mut line = format!(
        "**{} on {} ({})**: mapleak-trace default mode {} (median; spread {} .. {}), bpftrace on the \
         always-attached functions' entries {}. Budget check: **{}** (at most {} %); the 1 % goal is {}.",
        r.workload,
        r.go,
        r.map_impl,
        pct(r.loss_mapleak),
        pct(r.spread_mapleak.0),
        pct(r.spread_mapleak.1),
        pct(r.loss_bpftrace),
        if r.budget_ok() { "PASS" } else { "FAIL" },
        BUDGET_PCT + BUDGET_MARGIN_PCT,
        match r.goal() {
            "met" => "met",
            "NOT met" => "**not met**",
            other => other,
        }
    );
    let _ = write!(
        line,
        " Against the same repetition's untraced run, {} (the untraced runs alone vary by {:.1} %).",
        r.noise_note(),
        r.untraced_noise * 100.0
    );
    if r.workload == "http" {
        line.push_str(
            " Part 1b measures the same service in alternating phases of one process, which resolves \
             smaller differences than separate runs.",
        );
    }
    let _ = write!(
        line,
        " Its probes fired {} times/s: {} on the write path, in {:.0} window(s) per run open {:.0} % of the \
         time (they found {:.0} maps), {} on single-stepped RET sites (creation, `makemap`/`NewMap`{})",
        num(r.mapleak_hits_per_s),
        num(r.write_hits_per_s),
        r.windows,
        r.window_share.min(1.0) * 100.0,
        r.maps_by_windows,
        num(r.mapleak_ss_per_s),
        if r.workload == "http" {
            "; net/http allocates header maps for every request, on both sides here"
        } else {
            ""
        }
    );
    if r.paused_share.is_finite() && r.paused_share > 0.005 {
        let _ = write!(
            line,
            "; the governor kept the creation probes detached {:.0} % of the time",
            r.paused_share.min(1.0) * 100.0
        );
    }
    let _ = write!(
        line,
        ". It debited {:.4} CPU-s/s ({:.2} % of one CPU, against a budget of {BUDGET_PCT} %)",
        r.spent_share,
        r.spent_share * 100.0
    );
    // What the hits would cost at the measured per-hit and per-creation
    // costs (bpftrace's counting programs: a lower bound for mapleak-trace's).
    let per_map: Vec<f64> = CREATIONS
        .iter()
        .map(|(k, _)| create_cost(&res.create, &r.go, k, Mode::Mapleak).0)
        .filter(|x| x.is_finite())
        .collect();
    if let Some(&(_, em)) = cost.get(&r.go)
        && em.is_finite()
    {
        let creation = if per_map.is_empty() {
            r.mapleak_ss_per_s * cost.get(&r.go).map_or(f64::NAN, |c| c.0)
        } else {
            r.mapleak_ss_per_s * per_map.iter().sum::<f64>() / per_map.len() as f64
        };
        let other = (r.mapleak_hits_per_s - r.mapleak_ss_per_s).max(0.0) * em;
        let model = (creation + other) * 1e-6;
        if model.is_finite() {
            let _ = write!(
                line,
                "; at the costs measured in parts 2 and 2b those hits cost about {model:.4} CPU-s/s, on a \
                 target that can use {ncpu:.0} CPUs"
            );
        }
    }
    // The probes run in the kernel on the target's threads: its system
    // CPU shows what they really took.
    let [u_sys, ml_sys, _] = r.target_sys_per_s;
    if u_sys.is_finite() && ml_sys.is_finite() {
        let extra = ml_sys - u_sys;
        let _ = write!(
            line,
            ". The target itself spent {ml_sys:.3} CPU-s/s in the kernel, against {u_sys:.3} untraced: \
             {extra:.3} CPU-s/s more{}",
            if r.spent_share > 0.0 && extra > 2.0 * r.spent_share {
                format!(
                    ", {:.1}x what the governor debited: most of the probes' cost is in no hit count \
                     (kernel work on the target's threads that the in-kernel counters do not see, or \
                     hits that cost far more than the per-hit figures of part 2)",
                    extra / r.spent_share
                )
            } else if r.spent_share > 0.0 && extra > 0.0 {
                format!(", {:.1}x what the governor debited", extra / r.spent_share)
            } else {
                String::new()
            }
        );
    }
    let _ = write!(
        line,
        ". The tracer process itself used {:.3} CPU-s/s.",
        r.tracer_cpu_per_s
    );
    line
}

/// The short reading: derived from the numbers, so that it stays true when
/// the benchmark is rerun.
pub(super) fn reading(s: &Settings, gos: &[GoBin], res: &Results) -> Vec<String> {
    let (tp, many) = (&res.tp[..], &res.many[..]);
    let cost = &probe_cost::per_hit(gos, &res.cost);
    let ncpu = thread::available_parallelism().map_or(1.0, |n| n.get() as f64);
    let mut out = Vec::new();
    if s.smoke {
        out.push("Smoke run: the figures only show that every step works.".to_owned());
    }
    for r in &tp_rows(gos, tp) {
        out.push(tp_reading(r, res, cost, ncpu));
    }
    out.extend(phases::reading(gos, &res.phases));
    out.extend(super::fleet::reading(gos, &res.fleet));
    out.extend(super::search_cost::reading(&res.search));
    for g in gos {
        if let Some(&(ss, em)) = cost.get(&g.tag)
            && ss.is_finite()
            && em.is_finite()
            && em > 0.0
        {
            let mut line = format!(
                "**Per hit, {}**: {ss:.2} µs at the entry (single-stepped) against {em:.2} µs at `PUSHQ BP` \
                 (emulated), {:.0}x less (the governor debits {GOV_SINGLE_STEP_US} and {GOV_EMULATED_US} µs, \
                 {GOV_WRITE_US} µs for a write-path hit)",
                g.tag,
                ss / em
            );
            let write_ns = median(
                &tp.iter()
                    .filter(|x| {
                        x.go == g.tag && x.workload == "mapwrite" && x.mode == Mode::Untraced
                    })
                    .map(|x| 1e9 / x.value)
                    .collect::<Vec<_>>(),
            );
            if write_ns.is_finite() {
                let _ = write!(
                    line,
                    "; a map write costs about {write_ns:.0} ns, so even the emulated placement multiplies \
                     the cost of a write by {:.0}: this is why default mode attaches the write path only in \
                     short windows paid for by the budget",
                    (em * 1e3 + write_ns) / write_ns
                );
            }
            line.push('.');
            out.push(line);
        }
    }
    for g in gos {
        let (ml, _) = create_cost(&res.create, &g.tag, "small", Mode::Mapleak);
        let (bt, _) = create_cost(&res.create, &g.tag, "small", Mode::Bpftrace);
        let (u, _) = create_cost(&res.create, &g.tag, "small", Mode::Untraced);
        if ml.is_finite() && bt.is_finite() && u.is_finite() {
            out.push(format!(
                "**Per creation, {}**: `make(map)` costs {u:.3} µs untraced; mapleak-trace adds {ml:.1} µs \
                 (a single-stepped RET-site probe plus its program, which records a stack), a counting bpftrace \
                 probe at the entry {bt:.1} µs. Creation tracking, not the emulated probes, is what default \
                 mode costs on allocation-heavy code.",
                g.tag
            ));
        }
    }
    for r in many {
        let m = many_figures(r);
        let trace_s = if r.trace_s > 0 {
            r.trace_s
        } else {
            s.many_trace_base_s
        };
        out.push(format!(
            "**{} live maps, {}**: the tracer reported {} maps ({} evicted) and saw {} of the target's {:.0} GC \
             cycles in {:.0} s, and read the tracked maps' headers at {} of them. Past startup ({:.2} CPU-s) it \
             used {:.2} CPU, about {:.0} ms of CPU per sampled cycle{}. Its RSS was {:.0} MiB up to a second before `--duration` \
             ended; its peak over the whole run, final report included, was {:.0} MiB{}. Creating the maps took \
             {:.2} s traced against {:.2} s untraced (creation and growth probes fire then){}.",
            num(r.n as f64),
            r.go,
            num(m.maps as f64),
            m.evicted,
            m.gcs,
            r.target_gcs,
            m.duration,
            m.sampled,
            r.startup_cpu_s,
            r.steady_cpu,
            m.ms_per_gc,
            if m.duration > trace_s as f64 + 1.0 {
                format!(
                    ", and it overran its {} s `--duration` by {:.0} s",
                    trace_s,
                    m.duration - trace_s as f64
                )
            } else {
                String::new()
            },
            r.steady_rss / 1048576.0,
            m.peak_rss / 1048576.0,
            {
                let mut t = String::new();
                if r.report_bytes > 0 {
                    let _ = write!(t, ", and its JSON report {:.0} KB", r.report_bytes as f64 / 1000.0);
                }
                let caps = super::manymaps::caps_text(&r.report);
                if caps != "?" {
                    let _ = write!(t, " (caps reached: {caps})");
                }
                t
            },
            r.traced_create_s,
            r.untraced_create_s,
            {
                let mut extra = String::new();
                if m.lost > 0 {
                    let _ = write!(
                        extra,
                        "; meanwhile the kernel side dropped {} events because the ring buffer was full, so \
                         maps whose growth was lost are missing from the report",
                        num(m.lost as f64)
                    );
                }
                if m.paused_s.is_finite() && m.paused_s > 0.0 {
                    let _ = write!(
                        extra,
                        "; the governor kept creation probes detached for {:.1} s",
                        m.paused_s
                    );
                }
                extra
            }
        ));
    }
    out.push(
        "Caveats: a 2-CPU VM, possibly shared with other work (see the machine table); medians of few runs, \
         and the untraced runs alone vary by several % (\"untraced range\"), so a budget check within a \
         percent or two of its limit is decided by noise as much as by the tracer; \
         in `http` the clients run in the target process, so client-side map creations are traced too (a \
         server alone creates fewer maps per request); bpftrace's programs only count, mapleak-trace's do \
         more per hit (stack, maps, ring buffer), so per-hit figures from part 2 are a lower bound for it."
            .to_owned(),
    );
    out
}
