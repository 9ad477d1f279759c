//! Part 3b: what the tracer's user-space searches cost on a live heap
//! (`bench -mode=retainers`): the holder search (a map reached only through
//! pointers and a struct field, found by reading the target's heap live,
//! level by level, and searching back) and the sync.Map trie walks (a global sync.Map walked at
//! every sample on Go 1.24+). Read from the tracer's own accounting in its
//! report (`overhead.holder_search`, `overhead.sync_map_walks`).
use std::{path::Path, time::Duration};

use anyhow::{Context as _, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::bench::{
    binaries::GoBin,
    runner::{Bench, Tracing},
};

/// One run of part 3b on one Go release.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct SearchCost {
    pub(crate) go: String,
    /// `-heap-mib` and `-sync-entries` of the target, and the tracer's
    /// `--duration`.
    pub(crate) heap_mib: u64,
    pub(crate) sync_entries: u64,
    pub(crate) trace_s: u64,
    /// The target's heap in use once built (bytes).
    pub(crate) heap_inuse: f64,
    /// `overhead.holder_search`: searches, maps searched, paths found,
    /// heap bytes read, milliseconds, searches a bound cut short.
    pub(crate) searches: u64,
    pub(crate) paths_found: u64,
    pub(crate) heap_bytes_read: u64,
    pub(crate) search_ms: f64,
    pub(crate) search_cut_short: u64,
    /// Calls that searched: a search its deadline stops goes on at the
    /// next sample (0 in runs made before searches could go on).
    #[serde(default)]
    pub(crate) turns: u64,
    /// The growing map's `held_by` path, joined (empty: none found).
    pub(crate) path: String,
    /// `overhead.sync_map_walks`: walks, entries read, seconds, walks
    /// estimated from a sample of their levels.
    pub(crate) walks: u64,
    pub(crate) entries_read: u64,
    pub(crate) walk_s: f64,
    pub(crate) walks_estimated: u64,
    /// The tracer's CPU over its whole run (`overhead.tracer_cpu_s`) and
    /// the run's length from its report.
    pub(crate) tracer_cpu_s: f64,
    pub(crate) duration_s: f64,
}

impl SearchCost {
    /// Milliseconds of holder search per GiB of heap read and searched.
    pub(crate) fn ms_per_gib(&self) -> f64 {
        if self.heap_bytes_read == 0 {
            return f64::NAN;
        }
        self.search_ms / (self.heap_bytes_read as f64 / f64::from(1u32 << 30))
    }

    /// Milliseconds of trie walking per 100,000 entries read.
    pub(crate) fn ms_per_100k_entries(&self) -> f64 {
        if self.entries_read == 0 {
            return f64::NAN;
        }
        self.walk_s * 1e3 / (self.entries_read as f64 / 1e5)
    }
}

pub(crate) fn run(b: &mut Bench, gos: &[GoBin], tracer: &Path) -> Result<Vec<SearchCost>> {
    let mut out = Vec::new();
    for g in gos {
        out.push(run_one(b, g, tracer).with_context(|| format!("search-cost, {}", g.tag))?);
    }
    Ok(out)
}

fn run_one(b: &mut Bench, g: &GoBin, tracer: &Path) -> Result<SearchCost> {
    let (heap_mib, sync_entries, t) = (
        b.s.search_heap_mib,
        b.s.search_sync_entries,
        b.s.search_trace_s,
    );
    // The target outlives the tracer's --duration; it is stopped once the
    // tracer has exited.
    let args = vec![
        "-mode=retainers".to_owned(),
        format!("-heap-mib={heap_mib}"),
        format!("-sync-entries={sync_entries}"),
        "-seconds".to_owned(),
        (t + 30).to_string(),
    ];
    let r = b.run_once(
        &g.bin,
        &args,
        &Tracing::Mapleak {
            exe: tracer.to_path_buf(),
            duration_s: t,
            stop_target: true,
            // Every sample taken: the searches' cost per unit is the
            // figure, not how often the default budget lets them run.
            budget_pct: 100.0,
        },
        Duration::from_secs(t + 180),
    )?;
    // No NaN in the record (JSON has none): 0 for a figure not there.
    let heap_inuse = r.num("heap_inuse_bytes").unwrap_or(0.0);
    let rep = r.report.context("no report")?;
    let hs = |k: &str| rep.pointer(&format!("/overhead/holder_search/{k}"));
    let sw = |k: &str| rep.pointer(&format!("/overhead/sync_map_walks/{k}"));
    let u = |v: Option<&Value>| v.and_then(Value::as_u64).unwrap_or(0);
    let x = |v: Option<&Value>| v.and_then(Value::as_f64).unwrap_or(0.0);
    let path = rep["maps"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|m| m["type"] == "map[int64][]uint8")
        .and_then(|m| m["held_by"]["path"].as_array())
        .map(|p| {
            p.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(" → ")
        })
        .unwrap_or_default();
    let c = SearchCost {
        go: g.tag.clone(),
        heap_mib,
        sync_entries,
        trace_s: t,
        heap_inuse,
        searches: u(hs("searches")),
        paths_found: u(hs("paths_found")),
        heap_bytes_read: u(hs("heap_bytes_read")),
        search_ms: x(hs("took_ms")),
        search_cut_short: u(hs("cut_short")),
        turns: u(hs("turns")),
        path,
        walks: u(sw("walks")),
        entries_read: u(sw("entries_read")),
        walk_s: x(sw("seconds")),
        walks_estimated: u(sw("estimated")),
        tracer_cpu_s: x(rep.pointer("/overhead/tracer_cpu_s")),
        duration_s: x(rep.get("duration_s")),
    };
    eprintln!(
        "bench: search-cost {:9} holder search {} MiB in {:.0} ms ({:.0} ms/GiB, {} searches in {} turns), path {:?}; sync.Map walks {} entries in {:.3} s ({:.1} ms/100k)",
        g.tag,
        c.heap_bytes_read >> 20,
        c.search_ms,
        c.ms_per_gib(),
        c.searches,
        c.turns,
        c.path,
        c.entries_read,
        c.walk_s,
        c.ms_per_100k_entries()
    );
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn costs_per_unit() {
        let c = SearchCost {
            heap_bytes_read: 32 << 20,
            search_ms: 100.0,
            entries_read: 1_000_000,
            walk_s: 0.25,
            ..SearchCost::default()
        };
        assert!((c.ms_per_gib() - 3200.0).abs() < 1e-9);
        assert!((c.ms_per_100k_entries() - 25.0).abs() < 1e-9);
        assert!(SearchCost::default().ms_per_gib().is_nan());
    }
}
