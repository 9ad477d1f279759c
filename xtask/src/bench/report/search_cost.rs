//! Part 3b of the report: what the holder search and the sync.Map walks
//! cost.
use std::fmt::Write as _;

use crate::bench::{parts::search_cost::SearchCost, stats::num};

/// Writes section 3b.
pub(super) fn render(o: &mut String, runs: &[SearchCost]) {
    let _ = writeln!(o, "## 3b. Holder search and sync.Map walks\n");
    let _ = writeln!(
        o,
        "`bench -mode=retainers -heap-mib H -sync-entries N`: a live heap of H MiB of pointer-linked 64-byte \
         records, a map reached only through a global pointer and a struct field (`main.retSrv → \
         (*main.retServer).cache → (*main.retCache).items`) that gains 1,000 entries a GC cycle, and a global \
         sync.Map of N entries; a GC cycle every 200 ms. mapleak-trace runs at `--overhead-budget 100` (every \
         sample taken) for the run's `--duration`. The figures are the tracer's own accounting in its report: \
         `overhead.holder_search` (the map is a suspect no global holds directly, so its holder is searched: \
         the heap is read live, level by level, and searched back from the map pointer; a search its 1 s \
         deadline stops goes on at the next sample, a turn each) and \
         `overhead.sync_map_walks` (the sync.Map is walked at every sample on Go 1.24+; on Go 1.23 it is the \
         classic one, read in three small reads, and there is no walk). Wall time on the sampling worker, on \
         this shared machine.\n"
    );
    let _ = writeln!(
        o,
        "| Go | heap in use (MiB) | holder searches | their turns | heap read (MiB) | search time (ms) | ms per GiB searched | searches cut short | path found | sync.Map entries | walks | entries read | walk time (s) | ms per 100k entries | walks estimated | tracer CPU (s) over the trace (s) |"
    );
    let _ = writeln!(
        o,
        "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---|"
    );
    for r in runs {
        let path = if r.path.is_empty() {
            "**none**".to_owned()
        } else {
            format!("`{}`", r.path)
        };
        let _ = writeln!(
            o,
            "| {} | {:.0} | {} | {} | {:.0} | {:.0} | {} | {} | {} | {} | {} | {} | {:.3} | {} | {} | {:.2} over {:.0} |",
            r.go,
            r.heap_inuse / 1048576.0,
            r.searches,
            if r.turns > 0 {
                r.turns.to_string()
            } else {
                "n/a".to_owned()
            },
            r.heap_bytes_read as f64 / 1048576.0,
            r.search_ms,
            num(r.ms_per_gib()),
            r.search_cut_short,
            path,
            num(r.sync_entries as f64),
            r.walks,
            num(r.entries_read as f64),
            r.walk_s,
            if r.entries_read > 0 {
                format!("{:.1}", r.ms_per_100k_entries())
            } else {
                "n/a (no walk)".to_owned()
            },
            r.walks_estimated,
            r.tracer_cpu_s,
            r.duration_s
        );
    }
    let _ = writeln!(o);
}

/// Lines of the reading.
pub(super) fn reading(runs: &[SearchCost]) -> Vec<String> {
    runs.iter()
        .map(|r| {
            format!(
                "**Searches, {}**: the holder search read and searched {:.0} MiB in {:.0} ms ({} ms per GiB) \
                 and {}; the sync.Map walks read {} entries in {:.3} s ({}).",
                r.go,
                r.heap_bytes_read as f64 / 1048576.0,
                r.search_ms,
                num(r.ms_per_gib()),
                if r.path.is_empty() {
                    "found **no path**".to_owned()
                } else {
                    format!("found `{}`", r.path)
                },
                num(r.entries_read as f64),
                r.walk_s,
                if r.entries_read > 0 {
                    format!("{:.1} ms per 100,000 entries", r.ms_per_100k_entries())
                } else {
                    "no walk: a classic sync.Map".to_owned()
                }
            )
        })
        .collect()
}
