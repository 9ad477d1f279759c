//! `metrics`: reports in, OpenMetrics text out (`--metrics-addr`'s
//! `/metrics`), with the official `prometheus-client` crate. Pure: no
//! reads of any process, so it is unit-tested without root.
//!
//! Cardinality is bounded per process: maps are folded by (type, site,
//! holder), ranked (growing first, then bloated, then by bytes), and the
//! first [`TOP`] rows are exported, the rest summed into one row whose
//! labels are all `other` (so that sums still add up); families and
//! finalizer holders likewise. Labels carry the pid, the executable, the
//! map type, the site (a function name) and the holder (a global's name);
//! never a key, never an address. Label values longer than
//! [`LABEL_MAX`] characters are cut and end with a hash of the whole.
use std::{collections::HashMap, fmt::Write as _, sync::atomic::AtomicU64};

use prometheus_client::{
    encoding::text::encode,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

use crate::{
    model::Verdict,
    report::{MapReport, Report},
};

/// Rows exported per process for maps, families and finalizer holders
/// (plus one `other` row).
pub const TOP: usize = 20;

/// Longest label value exported.
pub const LABEL_MAX: usize = 128;

/// The content type of `/metrics`.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The label value of the row that sums the rest.
pub const OTHER: &str = "other";

const VERDICTS: [(Verdict, &str); 4] = [
    (Verdict::Growing, "growing"),
    (Verdict::Bloated, "bloated"),
    (Verdict::Stable, "stable"),
    (Verdict::Idle, "idle"),
];

/// One traced process as a scrape sees it.
#[derive(Debug, Clone, Copy)]
pub struct ProcessView<'a> {
    /// Its report, as the live view builds it.
    pub report: &'a Report,
    /// The governed probes (creation, small-map growth, finalizers) are
    /// attached now (false: paused by the governor).
    pub governed_on: bool,
    /// A write-path window is open now.
    pub window_open: bool,
    /// The large-growth probes (large bucket arrays, table splits) are
    /// attached now (false: paused by the governor).
    pub large_growth_on: bool,
}

/// The tracer process itself.
#[derive(Debug, Clone, Copy, Default)]
pub struct TracerView {
    /// Its CPU seconds (user + system) so far.
    pub cpu_s: f64,
    /// Its resident memory now, bytes.
    pub rss_bytes: u64,
    /// Its peak resident memory, bytes.
    pub max_rss_bytes: u64,
    /// Seconds the snapshot behind this scrape took to build.
    pub snapshot_build_s: f64,
    /// `--all`: how new processes were looked for.
    pub scans: Option<ScanCounts>,
}

/// `--all`: the looks for new processes so far.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ScanCounts {
    /// Scans of all of `/proc`.
    pub full: u64,
    /// Processes checked because they ran exec.
    pub execs: u64,
    /// Seconds spent in both.
    pub seconds: f64,
}

/// Maps folded by (type, site, holder): one row.
#[derive(Debug, Clone, PartialEq)]
pub struct MapRow {
    /// Go type (or `sync.Map`'s).
    pub map_type: String,
    /// Creation site's function (else the last growth's), `""` unknown.
    pub site: String,
    /// The global holding the maps, `""` none known.
    pub holder: String,
    /// Maps folded in.
    pub instances: u64,
    /// Their entries.
    pub entries: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Their entries gained per GC cycle (summed).
    pub growth_per_cycle: f64,
    /// Their keys never released.
    pub never_released: u64,
    /// The most severe verdict among them (`None`: the `other` row).
    pub verdict: Option<Verdict>,
}

impl MapRow {
    fn merge(&mut self, o: &Self) {
        self.instances += o.instances;
        self.entries += o.entries;
        self.bytes += o.bytes;
        self.growth_per_cycle += o.growth_per_cycle;
        self.never_released += o.never_released;
        self.verdict = match (self.verdict, o.verdict) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }

    fn rank(&self) -> (Verdict, std::cmp::Reverse<u64>) {
        (
            self.verdict.unwrap_or(Verdict::Idle),
            std::cmp::Reverse(self.bytes),
        )
    }
}

fn site_of(m: &MapReport) -> String {
    m.created_at
        .first()
        .or_else(|| m.grown_at.first())
        .map(|f| f.function.clone())
        .unwrap_or_default()
}

/// The map rows of one report: folded, ranked, the first `top` and one
/// `other` row with the rest (none when nothing is left over).
#[must_use]
pub fn map_rows(r: &Report, top: usize) -> Vec<MapRow> {
    let mut rows: Vec<MapRow> = Vec::new();
    let mut at: HashMap<(String, String, String), usize> = HashMap::new();
    let mut add = |row: MapRow| {
        let key = (row.map_type.clone(), row.site.clone(), row.holder.clone());
        match at.get(&key) {
            Some(&i) => rows[i].merge(&row),
            None => {
                at.insert(key, rows.len());
                rows.push(row);
            }
        }
    };
    for m in &r.maps {
        add(MapRow {
            map_type: m.type_name.clone(),
            site: site_of(m),
            holder: m.owner.clone().unwrap_or_default(),
            instances: 1,
            entries: m.len_last,
            bytes: m.bytes,
            growth_per_cycle: m.growth_per_cycle,
            never_released: m
                .retained_keys
                .as_ref()
                .and_then(|k| k["never_released"].as_u64())
                .unwrap_or(0),
            verdict: Some(m.verdict),
        });
    }
    for g in &r.map_groups {
        let verdict = [
            (g.growing, Verdict::Growing),
            (g.bloated, Verdict::Bloated),
            (g.stable, Verdict::Stable),
        ]
        .into_iter()
        .find(|x| x.0 > 0)
        .map_or(Verdict::Idle, |x| x.1);
        add(MapRow {
            map_type: g.type_name.clone(),
            // `function (file:line)`: the function, as for the maps in full.
            site: g
                .site
                .as_deref()
                .map(|s| s.split(" (").next().unwrap_or(s).to_owned())
                .unwrap_or_default(),
            holder: String::new(),
            instances: g.maps,
            entries: g.entries,
            bytes: g.bytes,
            growth_per_cycle: 0.0,
            never_released: 0,
            verdict: Some(verdict),
        });
    }
    rows.sort_by_key(MapRow::rank);
    fold_other(rows, top, |rest| {
        let mut o = MapRow {
            map_type: OTHER.to_owned(),
            site: OTHER.to_owned(),
            holder: OTHER.to_owned(),
            instances: 0,
            entries: 0,
            bytes: 0,
            growth_per_cycle: 0.0,
            never_released: 0,
            verdict: None,
        };
        for r in rest {
            o.merge(&MapRow { verdict: None, ..r });
        }
        o
    })
}

/// The first `top` of `rows` (already ranked), and one row made by
/// `other` of the rest when there is a rest.
pub fn fold_other<T>(mut rows: Vec<T>, top: usize, other: impl FnOnce(Vec<T>) -> T) -> Vec<T> {
    if rows.len() <= top {
        return rows;
    }
    let rest = rows.split_off(top);
    rows.push(other(rest));
    rows
}

/// A label value no longer than [`LABEL_MAX`]: a longer one is cut and
/// ends with `~` and 8 hex digits of its FNV-1a hash (two long types that
/// share a prefix stay apart).
#[must_use]
pub fn label(v: &str) -> String {
    if v.chars().count() <= LABEL_MAX {
        return v.to_owned();
    }
    let mut h: u32 = 0x811c_9dc5;
    for b in v.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    let head: String = v.chars().take(LABEL_MAX - 9).collect();
    format!("{head}~{h:08x}")
}

type Labels = Vec<(String, String)>;
type G = Family<Labels, Gauge<f64, AtomicU64>>;
type C = Family<Labels, Counter<f64, AtomicU64>>;

/// The metric families of one scrape, registered under the `mapleak_`
/// prefix.
struct Families {
    target_info: G,
    gc_cycles: C,
    maps_tracked: G,
    maps_by_verdict: G,
    map_entries: G,
    map_bytes: G,
    map_instances: G,
    map_growth: G,
    map_keys: G,
    map_verdict: G,
    family_entries: G,
    family_bytes: G,
    family_maps: G,
    family_growth: G,
    family_verdict: G,
    fin_pending: G,
    fin_held: G,
    probe_hits: C,
    probe_cpu: C,
    budget_debited: C,
    budget_tracer: C,
    budget_rate: G,
    probes_attached: G,
    governed_pauses: C,
    tracer_cpu: C,
    tracer_rss: G,
    tracer_max_rss: G,
    traced: G,
    snapshot_build: G,
    scans: C,
    exec_checks: C,
    scan_seconds: C,
}

impl Families {
    fn new() -> Self {
        Self {
            target_info: G::default(),
            gc_cycles: C::default(),
            maps_tracked: G::default(),
            maps_by_verdict: G::default(),
            map_entries: G::default(),
            map_bytes: G::default(),
            map_instances: G::default(),
            map_growth: G::default(),
            map_keys: G::default(),
            map_verdict: G::default(),
            family_entries: G::default(),
            family_bytes: G::default(),
            family_maps: G::default(),
            family_growth: G::default(),
            family_verdict: G::default(),
            fin_pending: G::default(),
            fin_held: G::default(),
            probe_hits: C::default(),
            probe_cpu: C::default(),
            budget_debited: C::default(),
            budget_tracer: C::default(),
            budget_rate: G::default(),
            probes_attached: G::default(),
            governed_pauses: C::default(),
            tracer_cpu: C::default(),
            tracer_rss: G::default(),
            tracer_max_rss: G::default(),
            traced: G::default(),
            snapshot_build: G::default(),
            scans: C::default(),
            exec_checks: C::default(),
            scan_seconds: C::default(),
        }
    }

    fn register(&self, r: &mut Registry) {
        let g = |r: &mut Registry, name: &str, help: &str, m: &G| {
            r.register(name, help, m.clone());
        };
        let c = |r: &mut Registry, name: &str, help: &str, m: &C| {
            r.register(name, help, m.clone());
        };
        g(
            r,
            "target_info",
            "A traced process (value 1): pid, executable, Go version, GOARCH, map implementation",
            &self.target_info,
        );
        c(
            r,
            "gc_cycles",
            "The target's GC cycle number (runtime.NumGC) at the last cycle seen: the denominator of growth per GC cycle",
            &self.gc_cycles,
        );
        g(
            r,
            "maps_tracked",
            "Maps the tracer follows in the process",
            &self.maps_tracked,
        );
        g(
            r,
            "maps",
            "Maps of the process by verdict",
            &self.maps_by_verdict,
        );
        g(
            r,
            "map_entries",
            "Entries of the maps of one type, site and holder (top rows, then other)",
            &self.map_entries,
        );
        g(
            r,
            "map_storage_bytes",
            "Bytes of buckets or groups of those maps",
            &self.map_bytes,
        );
        g(
            r,
            "map_instances",
            "Maps folded into the row",
            &self.map_instances,
        );
        g(
            r,
            "map_growth_per_gc_cycle",
            "Entries gained per GC cycle by those maps (mean over the samples kept)",
            &self.map_growth,
        );
        g(
            r,
            "map_never_released_keys",
            "Keys of those maps present since they were first read and never released",
            &self.map_keys,
        );
        g(
            r,
            "map_verdict",
            "The row's verdict as a state set: 1 for its verdict, 0 for the others (the most severe of its maps)",
            &self.map_verdict,
        );
        g(
            r,
            "family_entries",
            "Entries of a family (maps of one type made at one site)",
            &self.family_entries,
        );
        g(
            r,
            "family_storage_bytes",
            "Bytes of a family's maps",
            &self.family_bytes,
        );
        g(r, "family_maps", "Maps in a family", &self.family_maps);
        g(
            r,
            "family_growth_per_gc_cycle",
            "Entries a family gains per GC cycle",
            &self.family_growth,
        );
        g(
            r,
            "family_verdict",
            "A family's verdict as a state set",
            &self.family_verdict,
        );
        g(
            r,
            "finalizers_pending",
            "Finalizers and cleanups set during the trace that have not run",
            &self.fin_pending,
        );
        g(
            r,
            "finalizers_held_as_keys",
            "Objects with a pending finalizer or cleanup that are keys of a map: they can never run while it holds them",
            &self.fin_held,
        );
        c(
            r,
            "probe_hits",
            "Hits of the process's probes, by probed function",
            &self.probe_hits,
        );
        c(
            r,
            "probe_target_cpu_seconds",
            "Target CPU seconds the probe hits are estimated to have cost",
            &self.probe_cpu,
        );
        c(
            r,
            "budget_debited_cpu_seconds",
            "CPU seconds the governor debited to the process's overhead budget (probe hits and the process's share of the tracer's CPU)",
            &self.budget_debited,
        );
        c(
            r,
            "budget_tracer_cpu_seconds",
            "Of the debit, the tracer's own CPU (what its workers spent reading the process's memory, and a share of the rest in proportion to the budgets' rates)",
            &self.budget_tracer,
        );
        g(
            r,
            "budget_rate",
            "Share of one CPU the process's overhead budget refills at now: --overhead-budget, or in node-wide mode (--all) the process's share of it, in proportion to the CPU it uses",
            &self.budget_rate,
        );
        g(
            r,
            "probes_attached",
            "Whether a probe class is attached now (0: paused by the governor); class governed, large_growth or write_window",
            &self.probes_attached,
        );
        c(
            r,
            "governed_probe_pauses",
            "Times the governed probes were paused to stay within the budget",
            &self.governed_pauses,
        );
        c(
            r,
            "tracer_cpu_seconds",
            "The tracer process's CPU seconds (user + system)",
            &self.tracer_cpu,
        );
        g(
            r,
            "tracer_resident_memory_bytes",
            "The tracer process's resident memory",
            &self.tracer_rss,
        );
        g(
            r,
            "tracer_max_resident_memory_bytes",
            "The tracer process's peak resident memory",
            &self.tracer_max_rss,
        );
        g(r, "traced_processes", "Processes traced now", &self.traced);
        g(
            r,
            "snapshot_build_seconds",
            "Seconds the tracer's loop spent building the snapshot behind this scrape (scrapes within max(0.5 s, 100 times this) of it reuse it: building snapshots takes at most 1% of one CPU)",
            &self.snapshot_build,
        );
        c(
            r,
            "scans",
            "Scans of all of /proc for new processes (--all: every 30 s while execs are watched, every second when they cannot be)",
            &self.scans,
        );
        c(
            r,
            "exec_checks",
            "Processes checked for tracing because they ran exec (--all)",
            &self.exec_checks,
        );
        c(
            r,
            "scan_seconds",
            "Seconds spent looking for new processes in /proc (--all)",
            &self.scan_seconds,
        );
    }
}

fn with(base: &Labels, more: &[(&str, &str)]) -> Labels {
    let mut l = base.clone();
    l.extend(more.iter().map(|(k, v)| ((*k).to_owned(), label(v))));
    l
}

fn set(f: &G, l: &Labels, v: f64) {
    f.get_or_create(l).set(v);
}

fn count(f: &C, l: &Labels, v: f64) {
    if v.is_finite() && v > 0.0 {
        f.get_or_create(l).inc_by(v);
    } else {
        // Present at 0.
        let _ = f.get_or_create(l);
    }
}

fn u(v: u64) -> f64 {
    v as f64
}

fn process(f: &Families, p: &ProcessView<'_>, top: usize) {
    let r = p.report;
    let base: Labels = vec![
        ("pid".to_owned(), r.target.pid.to_string()),
        ("exe".to_owned(), label(&r.target.exe)),
    ];
    set(
        &f.target_info,
        &with(
            &base,
            &[
                ("go_version", &r.target.go_version),
                ("goarch", &r.target.goarch),
                ("map_impl", &r.target.map_impl),
            ],
        ),
        1.0,
    );
    count(
        &f.gc_cycles,
        &base,
        r.gc_cycles.last().map_or(0.0, |c| u(c.cycle)),
    );
    let mut by_verdict = [0u64; 4];
    for m in &r.maps {
        by_verdict[VERDICTS.iter().position(|v| v.0 == m.verdict).unwrap_or(3)] += 1;
    }
    for g in &r.map_groups {
        by_verdict[0] += g.growing;
        by_verdict[1] += g.bloated;
        by_verdict[2] += g.stable;
        by_verdict[3] += g.idle;
    }
    set(&f.maps_tracked, &base, u(by_verdict.iter().sum()));
    for (i, (_, name)) in VERDICTS.iter().enumerate() {
        set(
            &f.maps_by_verdict,
            &with(&base, &[("verdict", name)]),
            u(by_verdict[i]),
        );
    }
    for row in map_rows(r, top) {
        let l = with(
            &base,
            &[
                ("map_type", &row.map_type),
                ("site", &row.site),
                ("holder", &row.holder),
            ],
        );
        set(&f.map_entries, &l, u(row.entries));
        set(&f.map_bytes, &l, u(row.bytes));
        set(&f.map_instances, &l, u(row.instances));
        set(&f.map_growth, &l, row.growth_per_cycle);
        set(&f.map_keys, &l, u(row.never_released));
        if let Some(v) = row.verdict {
            for (x, name) in VERDICTS {
                let mut lv = l.clone();
                lv.push(("verdict".to_owned(), name.to_owned()));
                set(&f.map_verdict, &lv, f64::from(u8::from(x == v)));
            }
        }
    }
    families(f, &base, r, top);
    set(&f.fin_pending, &base, u(r.finalizers.pending));
    let mut held: Vec<(String, String, String, u64)> = Vec::new();
    for h in &r.finalizers.held_as_map_keys {
        let key = (
            h.map_type.clone(),
            h.owner.clone().unwrap_or_default(),
            h.type_name.clone(),
        );
        match held
            .iter_mut()
            .find(|x| (&x.0, &x.1, &x.2) == (&key.0, &key.1, &key.2))
        {
            Some(x) => x.3 += h.count,
            None => held.push((key.0, key.1, key.2, h.count)),
        }
    }
    held.sort_by_key(|h| std::cmp::Reverse(h.3));
    let held = fold_other(held, top, |rest| {
        (
            OTHER.to_owned(),
            OTHER.to_owned(),
            OTHER.to_owned(),
            rest.iter().map(|h| h.3).sum(),
        )
    });
    for (map_type, holder, object_type, n) in held {
        let l = with(
            &base,
            &[
                ("map_type", &map_type),
                ("holder", &holder),
                ("object_type", &object_type),
            ],
        );
        set(&f.fin_held, &l, u(n));
    }
    overhead(f, &base, p);
}

/// Families folded by (type, site): one row.
struct FamilyRow {
    map_type: String,
    site: String,
    maps: u64,
    entries: u64,
    bytes: u64,
    growth: f64,
    verdict: Option<Verdict>,
}

fn families(f: &Families, base: &Labels, r: &Report, top: usize) {
    let mut rows: Vec<FamilyRow> = Vec::new();
    for fam in &r.families {
        let site = fam.site.clone().unwrap_or_default();
        match rows
            .iter_mut()
            .find(|x| x.map_type == fam.type_name && x.site == site)
        {
            Some(x) => {
                x.maps += fam.count;
                x.entries += fam.entries;
                x.bytes += fam.bytes;
                x.growth += fam.entries_per_cycle;
                x.verdict = x.verdict.map(|v| v.min(fam.verdict));
            }
            None => rows.push(FamilyRow {
                map_type: fam.type_name.clone(),
                site,
                maps: fam.count,
                entries: fam.entries,
                bytes: fam.bytes,
                growth: fam.entries_per_cycle,
                verdict: Some(fam.verdict),
            }),
        }
    }
    rows.sort_by_key(|x| {
        (
            x.verdict.unwrap_or(Verdict::Idle),
            std::cmp::Reverse(x.bytes),
        )
    });
    let rows = fold_other(rows, top, |rest| {
        let mut o = FamilyRow {
            map_type: OTHER.to_owned(),
            site: OTHER.to_owned(),
            maps: 0,
            entries: 0,
            bytes: 0,
            growth: 0.0,
            verdict: None,
        };
        for x in rest {
            o.maps += x.maps;
            o.entries += x.entries;
            o.bytes += x.bytes;
            o.growth += x.growth;
        }
        o
    });
    for x in rows {
        let l = with(base, &[("map_type", &x.map_type), ("site", &x.site)]);
        set(&f.family_maps, &l, u(x.maps));
        set(&f.family_entries, &l, u(x.entries));
        set(&f.family_bytes, &l, u(x.bytes));
        set(&f.family_growth, &l, x.growth);
        if let Some(v) = x.verdict {
            for (state, name) in VERDICTS {
                let mut lv = l.clone();
                lv.push(("verdict".to_owned(), name.to_owned()));
                set(&f.family_verdict, &lv, f64::from(u8::from(state == v)));
            }
        }
    }
}

fn overhead(f: &Families, base: &Labels, p: &ProcessView<'_>) {
    let o = &p.report.overhead;
    // `function@0xaddr`: summed by function (no address in a label).
    let mut hits: Vec<(&str, u64)> = Vec::new();
    for (k, &n) in &o.probe_hits {
        let func = k.split('@').next().unwrap_or(k);
        match hits.iter_mut().find(|h| h.0 == func) {
            Some(h) => h.1 += n,
            None => hits.push((func, n)),
        }
    }
    for (func, n) in hits {
        count(&f.probe_hits, &with(base, &[("probe", func)]), u(n));
    }
    count(&f.probe_cpu, base, o.estimated_target_cpu_s);
    count(&f.budget_debited, base, o.budget_spent_target_cpu_s);
    count(&f.budget_tracer, base, o.budget_tracer_cpu_s);
    set(&f.budget_rate, base, o.budget_rate);
    count(&f.governed_pauses, base, u(o.creation_probes_paused));
    set(
        &f.probes_attached,
        &with(base, &[("class", "governed")]),
        f64::from(u8::from(p.governed_on)),
    );
    set(
        &f.probes_attached,
        &with(base, &[("class", "write_window")]),
        f64::from(u8::from(p.window_open)),
    );
    set(
        &f.probes_attached,
        &with(base, &[("class", "large_growth")]),
        f64::from(u8::from(p.large_growth_on)),
    );
}

/// The OpenMetrics text of one scrape: every process in `processes` (at
/// most `top` rows of maps, families and finalizer holders each, plus
/// `other`) and the tracer's own figures.
#[must_use]
pub fn render(processes: &[ProcessView<'_>], tracer: &TracerView, top: usize) -> String {
    let f = Families::new();
    for p in processes {
        process(&f, p, top);
    }
    let none: Labels = Vec::new();
    count(&f.tracer_cpu, &none, tracer.cpu_s);
    set(&f.tracer_rss, &none, u(tracer.rss_bytes));
    set(&f.tracer_max_rss, &none, u(tracer.max_rss_bytes));
    set(&f.traced, &none, u(processes.len() as u64));
    set(&f.snapshot_build, &none, tracer.snapshot_build_s);
    if let Some(s) = tracer.scans {
        count(&f.scans, &none, u(s.full));
        count(&f.exec_checks, &none, u(s.execs));
        count(&f.scan_seconds, &none, s.seconds);
    }
    let mut registry = Registry::with_prefix("mapleak");
    f.register(&mut registry);
    let mut out = String::new();
    if encode(&mut out, &registry).is_err() {
        // Writing to a String does not fail; say so in the output if it did.
        out.clear();
        let _ = writeln!(out, "# EOF");
    }
    out
}

#[cfg(test)]
mod tests;
