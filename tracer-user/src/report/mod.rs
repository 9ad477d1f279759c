//! `report`: plain data for the `mapleak-trace/report/v2` JSON schema, and a
//! terminal rendering that leads with the answer: which maps grow, where they
//! were created, what holds them, how fast they grow.
use std::io::{self, Write};

use serde::Serialize;

use crate::{
    color::Palette,
    inspect::Frame,
    model::{GcCycle, Verdict},
};

pub mod families;
mod finalizers;
mod gc_triggers;
mod histogram;
mod overhead;
pub mod pprof;
pub mod summary;

pub use finalizers::{Finalizers, HeldAsMapKeys};
pub use gc_triggers::{FORCE_GC_PERIOD_NS, GcCauses, GcTriggers};
pub use histogram::{histogram, histogram_counts};
pub use overhead::{Overhead, SyncMapWalks};

/// The schema name. v2: the document is `{"schema", "processes": [...]}`
/// for one or several processes (v1 gave one process's report as the
/// document, and an array of them for several).
pub const SCHEMA: &str = "mapleak-trace/report/v2";

/// The whole report (one traced process; several `--pid` give several).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The process.
    pub target: TargetInfo,
    /// Seconds traced.
    pub duration_s: f64,
    /// Why tracing ended.
    pub ended: String,
    /// GC cycles observed.
    pub gc_cycles: Vec<GcCycle>,
    /// What started the GC cycles completed while traced ([`GcCauses`]).
    pub gc_triggers: GcTriggers,
    /// Maps in full, most suspicious first: every growing or bloated map
    /// and the largest others (every map with `--all-maps`).
    pub maps: Vec<MapReport>,
    /// Tracked maps not in `maps`, counted in `map_groups`.
    pub maps_summarized: u64,
    /// The maps not in `maps`, by type and creation (or growth) site,
    /// largest first.
    pub map_groups: Vec<summary::MapGroup>,
    /// Maps by type and site (creation, else growth, else insert), judged
    /// on their total entries per GC cycle: growing first, then largest.
    pub families: Vec<families::FamilyReport>,
    /// Finalizer and cleanup bookkeeping.
    pub finalizers: Finalizers,
    /// The tracer's own cost.
    pub overhead: Overhead,
    /// Maps dropped: died (address reused) or evicted by the tracking bound.
    pub maps_retired: u64,
    /// See `maps_retired`.
    pub maps_evicted: u64,
    /// Maps whose address came to hold a new map (a new hash seed with
    /// entries): the old map's history ended there; the new one is tracked
    /// again, with its type, at its next growth or write window.
    pub maps_reused: u64,
    /// The tracer's bounds on what the target can make it hold that were
    /// reached in this run, each with what it left out. Empty: nothing was
    /// left out.
    pub caps_reached: Vec<CapReached>,
}

/// [`CapReached::cap`] of the list of GC cycles (`Report::gc_cycles`
/// keeps the newest; the header counts the dropped ones too).
pub const GC_CYCLES_CAP: &str = "gc_cycles";

/// A bound on the tracer's memory or work that the target reached.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CapReached {
    /// Which bound, e.g. `tracked_maps`.
    pub cap: String,
    /// Its value.
    pub limit: u64,
    /// How much was left out because of it (see `effect`).
    pub count: u64,
    /// What was left out, e.g. `maps evicted (the smallest quiet ones)`.
    pub effect: String,
}

impl CapReached {
    /// `count` things of `effect` left out by `cap` at `limit`; `None`
    /// when `count` is 0.
    #[must_use]
    pub fn new(cap: &str, limit: u64, count: u64, effect: &str) -> Option<Self> {
        (count > 0).then(|| Self {
            cap: cap.to_owned(),
            limit,
            count,
            effect: effect.to_owned(),
        })
    }
}

/// The traced process.
#[derive(Debug, Clone, Serialize)]
pub struct TargetInfo {
    /// Process id.
    pub pid: u32,
    /// Executable path.
    pub exe: String,
    /// e.g. `go1.23.12`.
    pub go_version: String,
    /// `amd64` or `arm64`.
    pub goarch: String,
    /// `hmap` or `swiss`.
    pub map_impl: String,
    /// No `.symtab`.
    pub stripped: bool,
}

/// One map.
#[derive(Debug, Clone, Serialize)]
pub struct MapReport {
    /// Id within this run.
    pub id: u64,
    /// Header address, hex.
    pub addr: String,
    /// `map` (a runtime map) or `sync.Map` (a Go 1.24+ HashTrieMap, whose
    /// length is its trie's entries, or a classic one, whose length is its
    /// read or dirty map's).
    pub kind: &'static str,
    /// Go type, e.g. `map[string]*main.session`, or `unknown`.
    #[serde(rename = "type")]
    pub type_name: String,
    /// Key type.
    pub key_type: Option<String>,
    /// Element type.
    pub elem_type: Option<String>,
    /// Creation site, innermost user frame first; [] when creation was not seen.
    pub created_at: Vec<Frame>,
    /// Where the latest growth was triggered (the inserting code).
    pub grown_at: Vec<Frame>,
    /// Global variable holding the map (the root of `held_by`).
    pub owner: Option<String>,
    /// What holds the map: a path from a global through pointers and struct
    /// fields, root first; null when nothing was found.
    pub held_by: Option<crate::holders::HeldBy>,
    /// `[cycle, len]` pairs, one per GC cycle sampled.
    pub len_by_cycle: Vec<(u64, u64)>,
    /// `[seconds since the trace started, len]` of the samples taken on the
    /// timer, between GC cycles (a program whose GC runs less often than
    /// `--interval`). Verdicts are judged over both kinds.
    pub timer_samples: Vec<(f64, u64)>,
    /// Entries per second over the samples kept.
    pub growth_per_s: f64,
    /// First length seen.
    pub len_first: u64,
    /// Last length seen.
    pub len_last: u64,
    /// Slots allocated.
    pub capacity: u64,
    /// Bytes of buckets or groups.
    pub bytes: u64,
    /// Growth events seen.
    pub growth_events: u64,
    /// Mean length change per GC cycle over the samples.
    pub growth_per_cycle: f64,
    /// The verdict.
    pub verdict: Verdict,
    /// Key retention, for maps whose keys were read; null otherwise.
    pub retained_keys: Option<serde_json::Value>,
    /// Busiest insert sites seen in the write windows.
    pub inserted_at: Vec<InsertSite>,
    /// Writes seen in the write windows.
    pub writes_seen: WritesSeen,
    /// A sync.Map's entries by their dynamic key and value types, as its
    /// latest walk read them (most first; empty for a runtime map).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub entry_types: Vec<EntryTypes>,
}

/// Entries of a sync.Map whose key and value have these dynamic types.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct EntryTypes {
    /// The key's type (`nil` for a nil interface, `other` for the pairs
    /// past the first few).
    pub key: String,
    /// The value's type.
    pub value: String,
    /// Entries read with them.
    pub entries: u64,
}

/// An insert site and how many inserts (or updates) it made in the windows.
#[derive(Debug, Clone, Serialize)]
pub struct InsertSite {
    /// Where.
    #[serde(flatten)]
    pub frame: Frame,
    /// Inserts or updates seen.
    pub count: u64,
}

/// Writes seen in the write windows.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct WritesSeen {
    /// `mapassign*` calls.
    pub assigns: u64,
    /// `mapdelete*` calls.
    pub deletes: u64,
}

fn human_bytes(b: u64) -> String {
    const U: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut i = 0;
    while v >= 1024.0 && i < U.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", U[i])
    }
}

fn sparkline(vals: &[u64]) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let max = vals.iter().copied().max().unwrap_or(0).max(1);
    let min = vals.iter().copied().min().unwrap_or(0);
    let span = (max - min).max(1);
    vals.iter()
        .map(|&v| BARS[(((v - min) * 7) / span) as usize])
        .collect()
}

fn frame_line(f: &Frame) -> String {
    format!("{} ({}:{})", f.function, f.file, f.line)
}

/// Renders the final report, without colour.
pub fn render(r: &Report, w: &mut dyn Write, top: usize) -> io::Result<()> {
    render_styled(r, w, top, Palette::PLAIN)
}

/// Renders the final report in the colours of `p` (verdicts, headings).
pub fn render_styled(r: &Report, w: &mut dyn Write, top: usize, p: Palette) -> io::Result<()> {
    let t = &r.target;
    let first = r.gc_cycles.first().map_or(0, |c| c.cycle);
    let last = r.gc_cycles.last().map_or(0, |c| c.cycle);
    // The list keeps the newest cycles only: the count says all of them.
    let dropped = r
        .caps_reached
        .iter()
        .find(|c| c.cap == GC_CYCLES_CAP)
        .map_or(0, |c| c.count);
    let listed = r.gc_cycles.len() as u64 + dropped;
    // Numbered as the runtime numbers them, from the first seen to the last.
    let count = if r.gc_cycles.is_empty() {
        0
    } else {
        listed.max(last.saturating_sub(first) + 1)
    };
    writeln!(
        w,
        "{} ({}) {} {} {}{} - {:.1} s, {} GC cycles{} - {}",
        p.heading(format_args!("mapleak-trace: pid {}", t.pid)),
        t.exe,
        t.go_version,
        t.goarch,
        t.map_impl,
        if t.stripped { ", stripped" } else { "" },
        r.duration_s,
        count,
        if r.gc_cycles.is_empty() {
            String::new()
        } else if count > listed {
            // Read from the runtime's counters: the cycles between two
            // reads are counted, not listed.
            format!(
                " (#{first}..#{last}; {} listed, as read)",
                r.gc_cycles.len()
            )
        } else if dropped > 0 {
            format!(
                " (the last {} listed: #{first}..#{last})",
                r.gc_cycles.len()
            )
        } else {
            format!(" (#{first}..#{last})")
        },
        r.ended
    )?;
    let g = r.gc_triggers;
    if g.total() > 0 {
        writeln!(
            w,
            "  GC cycles started by: heap {}, periodic {}, forced {}",
            g.heap, g.periodic, g.forced,
        )?;
    }
    let growing: Vec<&MapReport> = r
        .maps
        .iter()
        .filter(|m| m.verdict == Verdict::Growing)
        .collect();
    let growing_families = families::growing(&r.families);
    writeln!(w)?;
    if growing.is_empty() && growing_families > 0 {
        writeln!(
            w,
            "{}",
            p.heading(format_args!(
                "No single map kept growing, but {growing_families} family(ies) of maps keep growing:"
            ))
        )?;
    } else if growing.is_empty() {
        writeln!(w, "No map kept growing across the GC cycles observed.")?;
        let samples = r.overhead.gc_cycles_sampled + r.overhead.timer_samples;
        if samples < 3 {
            writeln!(
                w,
                "  (only {samples} samples taken: a verdict needs three; trace longer, or lower --interval for timer samples)"
            )?;
        }
    } else if growing_families > 0 {
        writeln!(
            w,
            "{}",
            p.heading(format_args!(
                "{} map(s) and {growing_families} family(ies) of maps keep growing:",
                growing.len()
            ))
        )?;
    } else {
        writeln!(
            w,
            "{}",
            p.heading(format_args!("{} map(s) keep growing:", growing.len()))
        )?;
    }
    families::render(w, &r.families)?;
    let shown: Vec<&MapReport> = r
        .maps
        .iter()
        .filter(|m| matches!(m.verdict, Verdict::Growing | Verdict::Bloated))
        .take(top)
        .collect();
    for m in &shown {
        writeln!(w)?;
        let pace = if m.timer_samples.is_empty() {
            format!(
                "{:+.0}/cycle over {} cycles",
                m.growth_per_cycle,
                m.len_by_cycle.len()
            )
        } else {
            // GC cycles were rarer than the sampling interval.
            format!(
                "{:+.1}/s over {} samples, {} of them at GC cycles",
                m.growth_per_s,
                m.len_by_cycle.len() + m.timer_samples.len(),
                m.len_by_cycle.len()
            )
        };
        // A sync.Map has no slots ahead of its entries: no capacity.
        let cap = if m.kind == "map" {
            format!("  cap {}", m.capacity)
        } else {
            String::new()
        };
        writeln!(
            w,
            "  #{} {}  {}  len {} ({pace}){cap}  {}",
            m.id,
            m.type_name,
            p.verdict(m.verdict),
            m.len_last,
            human_bytes(m.bytes)
        )?;
        let held = m.held_by.as_ref().map_or_else(
            || {
                m.owner
                    .clone()
                    .unwrap_or_else(|| unfound_holder(&r.overhead.holder_search).to_owned())
            },
            |h| {
                let path = h.path.join(" → ");
                if h.best_effort {
                    format!("{path}  (best-effort)")
                } else {
                    path
                }
            },
        );
        writeln!(w, "     held by:    {held}")?;
        match m.created_at.split_first() {
            Some((f, rest)) => {
                writeln!(w, "     created at: {}", frame_line(f))?;
                for f in rest.iter().take(3) {
                    writeln!(w, "                 {}", frame_line(f))?;
                }
            }
            // Its first use (initSlow) is seen, not where it was declared.
            None if m.kind != "map" => {
                writeln!(w, "     created at: (a sync.Map: no creation site)")?
            }
            None => writeln!(w, "     created at: (before the tracer attached)")?,
        }
        if !m.entry_types.is_empty() {
            let types: Vec<String> = m
                .entry_types
                .iter()
                .take(3)
                .map(|e| format!("{} → {} ({})", e.key, e.value, e.entries))
                .collect();
            writeln!(w, "     entries:    {}", types.join(", "))?;
        }
        if let Some(f) = m.grown_at.first() {
            writeln!(w, "     grown by:   {}", frame_line(f))?;
        }
        for (i, site) in m.inserted_at.iter().take(3).enumerate() {
            writeln!(
                w,
                "     {}{} ({} inserts seen in write windows)",
                if i == 0 {
                    "inserted by: "
                } else {
                    "             "
                },
                frame_line(&site.frame),
                site.count
            )?;
        }
        if let Some(k) = m.retained_keys.as_ref().filter(|k| k.is_object()) {
            let n = |f: &str| k[f].as_u64().unwrap_or(0);
            writeln!(
                w,
                "     keys:       {} never released (oldest {} GC cycles), {} released since attach{}{}",
                n("never_released"),
                n("oldest_cycles"),
                n("released"),
                if k["cap_reached"] == true {
                    "; key cap reached, not all keys followed"
                } else {
                    ""
                },
                if n("partial_snapshots") > 0 {
                    format!("; {} partial reads", n("partial_snapshots"))
                } else {
                    String::new()
                }
            )?;
            if let Some(ex) = k["examples"].as_array() {
                for (i, e) in ex.iter().take(3).enumerate() {
                    writeln!(
                        w,
                        "     {}{}",
                        if i == 0 {
                            "oldest keys: "
                        } else {
                            "             "
                        },
                        e.as_str().unwrap_or("?")
                    )?;
                }
            }
        }
        let (label, lens): (&str, Vec<u64>) = if m.len_by_cycle.len() >= m.timer_samples.len() {
            ("len/cycle: ", m.len_by_cycle.iter().map(|p| p.1).collect())
        } else {
            ("len/sample:", m.timer_samples.iter().map(|p| p.1).collect())
        };
        writeln!(
            w,
            "     {label} {} {:?}",
            sparkline(&lens),
            lens.iter().rev().take(6).rev().collect::<Vec<_>>()
        )?;
    }
    let count = |v: Verdict| {
        let grouped: u64 = r
            .map_groups
            .iter()
            .map(|g| match v {
                Verdict::Growing => g.growing,
                Verdict::Bloated => g.bloated,
                Verdict::Stable => g.stable,
                Verdict::Idle => g.idle,
            })
            .sum();
        r.maps.iter().filter(|m| m.verdict == v).count() as u64 + grouped
    };
    writeln!(w)?;
    writeln!(
        w,
        "{} {} growing, {} bloated, {} stable, {} idle ({} retired when their memory was reused, {} evicted)",
        p.heading("Tracked maps:"),
        count(Verdict::Growing),
        count(Verdict::Bloated),
        count(Verdict::Stable),
        count(Verdict::Idle),
        r.maps_retired,
        r.maps_evicted
    )?;
    if r.maps_summarized > 0 {
        writeln!(
            w,
            "  {} maps neither growing nor bloated nor among the largest, by type and site (largest first; all: --all-maps):",
            r.maps_summarized
        )?;
        for g in r.map_groups.iter().take(5) {
            writeln!(
                w,
                "    {} maps {}{}: {} entries, {}",
                g.maps,
                g.type_name,
                g.site
                    .as_ref()
                    .map_or(String::new(), |s| format!(" made at {s}")),
                g.entries,
                human_bytes(g.bytes)
            )?;
        }
    }
    writeln!(w)?;
    let lens: Vec<u64> = r.maps.iter().map(|m| m.len_last).collect();
    histogram(w, "map length, maps in full", &lens, 40)?;
    let growth: Vec<u64> = r
        .maps
        .iter()
        .filter(|m| m.verdict == Verdict::Growing)
        .flat_map(|m| {
            m.len_by_cycle
                .windows(2)
                .map(|p| p[1].1.saturating_sub(p[0].1))
                .collect::<Vec<_>>()
        })
        .collect();
    histogram(w, "growth per GC cycle, growing maps", &growth, 40)?;
    let ages: Vec<(u64, u64)> = r
        .maps
        .iter()
        .filter(|m| m.verdict == Verdict::Growing)
        .filter_map(|m| m.retained_keys.as_ref()?["age_cycles_histogram"].as_array())
        .flatten()
        .map(|p| (p[0].as_u64().unwrap_or(0), p[1].as_u64().unwrap_or(0)))
        .collect();
    if !ages.is_empty() {
        histogram_counts(
            w,
            "age of present keys in growing maps, GC cycles",
            ages,
            40,
        )?;
    }
    let f = &r.finalizers;
    if f.set + f.ran + f.cleanups_added + f.cleanups_ran > 0 || !f.held_as_map_keys.is_empty() {
        writeln!(w)?;
        writeln!(
            w,
            "{} {} set, {} removed, {} ran; cleanups: {} added, {} ran, {} stopped; {} pending",
            p.heading("Finalizers:"),
            f.set,
            f.removed,
            f.ran,
            f.cleanups_added,
            f.cleanups_ran,
            f.cleanups_stopped,
            f.pending
        )?;
        if f.probe_pauses > 0 {
            writeln!(
                w,
                "  (a sample: the probes were paused {} times to stay within the budget; {} more set before a pause may have run unseen)",
                f.probe_pauses, f.pending_unverified
            )?;
        }
        for h in &f.held_as_map_keys {
            writeln!(
                w,
                "  {} {} {} with a pending {} are keys of map #{} {}{}: the map keeps them reachable (GC cycle {})",
                p.bad("NEVER RUN:"),
                h.count,
                h.type_name,
                match (h.finalizers > 0, h.cleanups > 0) {
                    (true, true) => "finalizer or cleanup",
                    (false, true) => "cleanup",
                    _ => "finalizer",
                },
                h.map_id,
                h.map_type,
                h.owner
                    .as_ref()
                    .map_or(String::new(), |o| format!(" (held by {o})")),
                h.as_of_cycle
            )?;
            if h.unverified > 0 {
                writeln!(
                    w,
                    "    and {} more keys whose finalizer or cleanup may have run while the probes were paused",
                    h.unverified
                )?;
            }
        }
        if !f.pending_age_cycles_histogram.is_empty() {
            histogram_counts(
                w,
                "age of pending finalizers and cleanups, GC cycles",
                f.pending_age_cycles_histogram.iter().copied(),
                40,
            )?;
        }
    }
    writeln!(w)?;
    let hits: u64 = r.overhead.probe_hits.values().sum();
    writeln!(
        w,
        "Tracer cost: {hits} probe hits, est. {:.3} ms of target CPU ({:.4}% of one CPU); tracer {:.2} s CPU, {} peak RSS",
        r.overhead.estimated_target_cpu_s * 1e3,
        if r.duration_s > 0.0 {
            r.overhead.estimated_target_cpu_s / r.duration_s * 100.0
        } else {
            0.0
        },
        r.overhead.tracer_cpu_s,
        human_bytes(r.overhead.tracer_max_rss_bytes)
    )?;
    if r.overhead.creation_probes_paused > 0 {
        writeln!(
            w,
            "  note: governed probes (creation, small-map growth) paused {} time(s), {:.1} s in all, to stay within the overhead budget: attached {:.0}% of the run, so creation sites and small-map growths are a sample of that share; maps created while paused show no creation site",
            r.overhead.creation_probes_paused,
            r.overhead.creation_probes_paused_s,
            r.overhead.governed_probes_attached_share * 100.0
        )?;
    }
    if !r.overhead.program_run_ns.is_empty() {
        let runs: Vec<String> = r
            .overhead
            .program_run_ns
            .iter()
            .map(|(p, ns)| format!("{p} {:.2} µs", ns / 1e3))
            .collect();
        writeln!(
            w,
            "  each hit debited at its trap plus its program's measured run: {}",
            runs.join(", ")
        )?;
    }
    if r.overhead.large_growth_probes_paused > 0 {
        let o = &r.overhead;
        let debt = o.large_growth_probes_paused_for_debt;
        let own = o.large_growth_probes_paused.saturating_sub(debt);
        const OWN: &str = "they alone spent their half of the budget";
        const DEBT: &str = "the budget as a whole was in debt (the GC probes and the tracer's own work, which cannot be paused, spent it)";
        let why = match (own, debt) {
            (_, 0) => OWN.to_owned(),
            (0, _) => DEBT.to_owned(),
            _ => format!("{own} time(s) {OWN}, {debt} time(s) {DEBT}"),
        };
        writeln!(
            w,
            "  note: large-growth probes (large hmap bucket arrays, Swiss table splits) paused {} time(s), {:.1} s in all: {why}; a large map that grew only then is found at its next growth or sample",
            o.large_growth_probes_paused, o.large_growth_probes_paused_s,
        )?;
    }
    if r.overhead.write_windows > 0 {
        writeln!(
            w,
            "  write windows: {} opened, {:.1} s in all; {} map(s) found through them",
            r.overhead.write_windows,
            r.overhead.write_windows_s,
            r.overhead.maps_found_by_write_windows
        )?;
    }
    for (p, n) in &r.overhead.probe_hits {
        if *n > 0 {
            writeln!(w, "    {n:>10}  {p}")?;
        }
    }
    for (c, n) in &r.overhead.counters {
        if *n > 0 && c != "created" {
            writeln!(w, "  warning: {c}: {n}")?;
        }
    }
    if !r.caps_reached.is_empty() {
        let caps: Vec<String> = r
            .caps_reached
            .iter()
            .map(|c| format!("{} ({}): {} {}", c.cap, c.limit, c.count, c.effect))
            .collect();
        writeln!(w, "  caps reached: {}", caps.join("; "))?;
    }
    Ok(())
}

/// What the report says of a suspect no holder was found for.
fn unfound_holder(hs: &crate::holders::SearchStats) -> &'static str {
    if hs.cut_short > 0 {
        "(none found yet: a holder search was cut short or is still under way; \
         a larger --overhead-budget gives it more time)"
    } else if hs.searches > 0 {
        "(none found: a local, or a path the holder search does not follow)"
    } else {
        "(not searched yet: the budget left no time for a holder search)"
    }
}

#[cfg(test)]
mod tests;
