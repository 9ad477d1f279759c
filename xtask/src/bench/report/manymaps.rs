//! Part 3 of the report: the tracer's CPU and memory with many live maps.
use std::fmt::Write as _;

use serde_json::Value;

use crate::bench::{parts::manymaps::ManyResult, runner::f, stats::num};

/// The map counts measured, ascending, each once.
fn counts(many: &[ManyResult]) -> Vec<u64> {
    let mut ns: Vec<u64> = many.iter().map(|m| m.n).collect();
    ns.sort_unstable();
    ns.dedup();
    ns
}

/// Writes section 3.
pub(super) fn render(o: &mut String, many: &[ManyResult], fallback_trace_s: u64) {
    let ns = counts(many);
    let listed: Vec<String> = ns.iter().map(|&n| num(n as f64)).collect();
    let _ = writeln!(
        o,
        "## 3. Tracer CPU and memory with {} live maps\n",
        listed.join(" and ")
    );
    // The --duration of each count (results.json says; else this run's).
    let durations: Vec<String> = ns
        .iter()
        .map(|&n| {
            let t = many
                .iter()
                .find(|m| m.n == n && m.trace_s > 0)
                .map_or(fallback_trace_s, |m| m.trace_s);
            format!("{t} s with {} maps", num(n as f64))
        })
        .collect();
    let n = ns
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join("` / `");
    let _ = writeln!(
        o,
        "`bench -mode=manymaps -n {n}`: creates that many `map[int32]int32` of 150 entries each (every one grows \
             past 128 slots, so the kernel side reports its growth and the tracer tracks it), then forces a GC \
             cycle every 200 ms. mapleak-trace attaches before the maps are created, at `--overhead-budget 100` \
             (growth probes are governed: at the default budget most growths go unseen and few maps are \
             tracked, and this part measures the tracer with every map tracked), and runs for {durations} \
             (`--duration`; the target keeps running until the tracer has exited, then is stopped); at GC \
             cycles it reads the tracked maps' headers (at most every 100 ms, for at most 500 ms, the next \
             read starting where that one stopped, and after a read it waits nine times as long as the read \
             took: \"sampled\" cycles). \"Total\" CPU and \
             \"peak RSS\" are `overhead.tracer_cpu_s` and `overhead.tracer_max_rss_bytes` from its JSON report \
             (its own getrusage: startup and the final report included). From /proc, sampled every 250 ms: \
             \"startup\" is its CPU time when the maps start being created, \"steady\" its CPU use from then \
             to one second before `--duration` ends, and the RSS is the largest seen up to that point. \
             \"ms per sampled cycle\" = steady CPU / cycles sampled per second. \"JSON\" is the size of the \
             report it wrote, \"caps reached\" its `caps_reached` (the bounds on what the target makes it \
             hold that were reached, with what each left out). One run per map count and Go release.\n",
        durations = durations.join(", ")
    );
    let _ = writeln!(
        o,
        "| Go | maps made | maps in report | evicted | events lost (ring buffer full) | creation probes paused (s) | GC cycles run / seen / sampled | tracer CPU total (s) | startup (s) | steady (CPUs) | ms per sampled cycle | RSS until 1 s before --duration ends (MiB) | peak RSS (MiB) | JSON (KB) | caps reached | target heap (MiB) | probe hits | creation untraced / traced (s) |"
    );
    let _ = writeln!(
        o,
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---|"
    );
    let mut rows: Vec<&ManyResult> = many.iter().collect();
    rows.sort_by(|a, b| a.n.cmp(&b.n).then(a.go.cmp(&b.go)));
    for r in rows {
        let m = many_figures(r);
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} | {} | {:.1} | {:.0} / {} / {} | {:.2} | {:.2} | {:.2} | {:.0} | {:.0} | {:.0} | {} | {} | {:.0} | {} | {:.2} / {:.2} |",
            r.go,
            num(r.n as f64),
            num(m.maps as f64),
            m.evicted,
            num(m.lost as f64),
            m.paused_s,
            r.target_gcs,
            m.gcs,
            m.sampled,
            m.cpu,
            r.startup_cpu_s,
            r.steady_cpu,
            m.ms_per_gc,
            r.steady_rss / 1048576.0,
            m.peak_rss / 1048576.0,
            if r.report_bytes > 0 {
                format!("{:.0}", r.report_bytes as f64 / 1000.0)
            } else {
                "?".to_owned()
            },
            caps_text(&r.report),
            r.heap_inuse / 1048576.0,
            num(m.hits as f64),
            r.untraced_create_s,
            r.traced_create_s
        );
    }
    let _ = writeln!(o);
}

/// The caps a report says were reached: `name` (what they left out), or
/// `none`; `?` for a record older than `caps_reached`.
pub(super) fn caps_text(report: &Value) -> String {
    match report.get("caps_reached").and_then(Value::as_array) {
        None => "?".to_owned(),
        Some(caps) if caps.is_empty() => "none".to_owned(),
        Some(caps) => caps
            .iter()
            .map(|c| {
                format!(
                    "`{}` ({} {})",
                    c.get("cap").and_then(Value::as_str).unwrap_or("?"),
                    num(c.get("count").and_then(Value::as_u64).unwrap_or(0) as f64),
                    c.get("effect").and_then(Value::as_str).unwrap_or("")
                )
            })
            .collect::<Vec<_>>()
            .join("; "),
    }
}

/// Figures of a manymaps run, from the tracer's report.
pub(super) struct ManyFigures {
    pub(super) maps: usize,
    pub(super) evicted: u64,
    pub(super) gcs: usize,
    /// Cycles whose headers were read.
    pub(super) sampled: u64,
    pub(super) cpu: f64,
    pub(super) duration: f64,
    pub(super) ms_per_gc: f64,
    pub(super) peak_rss: f64,
    pub(super) hits: u64,
    /// Events the kernel side could not queue, and seconds the governor
    /// kept creation probes detached (NaN: no governor).
    pub(super) lost: u64,
    pub(super) paused_s: f64,
}

pub(super) fn many_figures(r: &ManyResult) -> ManyFigures {
    let rep = &r.report;
    let gcs = r.gcs_n;
    let duration = f(rep, &["duration_s"]);
    let sampled = rep
        .pointer("/overhead/gc_cycles_sampled")
        .and_then(Value::as_u64)
        .unwrap_or(gcs as u64);
    let sample_rate = sampled as f64 / duration;
    ManyFigures {
        maps: r.maps_n,
        evicted: rep.get("maps_evicted").and_then(Value::as_u64).unwrap_or(0),
        gcs,
        sampled,
        cpu: f(rep, &["overhead", "tracer_cpu_s"]),
        duration,
        ms_per_gc: if sampled > 0 {
            r.steady_cpu / sample_rate * 1e3
        } else {
            f64::NAN
        },
        peak_rss: f(rep, &["overhead", "tracer_max_rss_bytes"]),
        lost: rep
            .pointer("/overhead/counters/ring_buffer_full")
            .and_then(Value::as_u64)
            .unwrap_or(0),
        paused_s: f(rep, &["overhead", "creation_probes_paused_s"]),
        hits: rep
            .pointer("/overhead/probe_hits")
            .and_then(Value::as_object)
            .map_or(0, |m| m.values().filter_map(Value::as_u64).sum()),
    }
}
