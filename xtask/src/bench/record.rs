//! `target/bench/results.json` (`smoke-results.json` for `--smoke`): every
//! run's raw figures, and the record the report is rendered from.
//!
//! A run writes what it measured ([`to_json`]) and renders the Markdown
//! from that JSON read back ([`parse`]), so the report never says more
//! than the file holds. With `--only PART --merge`, the previous record is
//! loaded ([`load`]) before anything is measured, the parts measured now
//! replace that part's figures in it whole (every Go release and workload
//! of the part), the other parts are kept as they were ([`merge`]), and the
//! merged record is written back and rendered. `measured` says which run
//! measured each part, for the report to quote; a part the record has no
//! figures for is reported as not measured. (serde_json reads a float back
//! to within one unit in its last place, so a kept figure may change in
//! its 17th significant digit when the record is written back.)
use std::{collections::BTreeMap, fs, path::Path};

use anyhow::{Context as _, Result, anyhow, bail};
use serde_json::{Map, Value, json};

use super::{
    Results, TOOLCHAINS,
    binaries::{GoBin, Micro, hex},
    parts::{
        Mode,
        create_cost::{CREATIONS, CreateSample},
        fleet::FleetPhase,
        manymaps::ManyResult,
        phases::Phase,
        probe_cost::{CostSample, PLACEMENTS},
        search_cost::SearchCost,
        throughput::{TpSample, WORKLOADS},
        twin::TwinPhase,
    },
    suite::{self, Traced},
};

/// What the file holds, written with every run.
const SCHEMA: &str = "mapleak-trace/bench-results/v2";

/// The JSON key of each part's figures.
const KEYS: [(&str, &str); 8] = [
    ("throughput", "throughput"),
    ("phases", "http_phases"),
    ("fleet", "fleet"),
    ("twin", "twin_phases"),
    ("probe-cost", "probe_cost"),
    ("create-cost", "create_cost"),
    ("manymaps", "manymaps"),
    ("search-cost", "search_cost"),
];

/// The run that measured a part, as the report quotes it.
#[derive(Clone, Debug, Default, PartialEq)]
pub(super) struct Provenance {
    /// `cargo xtask bench ...`.
    pub(super) cmdline: String,
    pub(super) date: String,
    pub(super) commit: String,
    pub(super) took_s: f64,
    /// `bpftrace --version`.
    pub(super) bpftrace: String,
}

impl Provenance {
    fn to_json(&self) -> Value {
        json!({
            "cmdline": self.cmdline, "date": self.date, "commit": self.commit,
            "took_s": self.took_s, "bpftrace": self.bpftrace,
        })
    }

    fn from_json(v: &Value) -> Option<Provenance> {
        let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
        Some(Provenance {
            cmdline: s("cmdline")?,
            date: s("date").unwrap_or_else(|| "?".to_owned()),
            commit: s("commit").unwrap_or_else(|| "?".to_owned()),
            took_s: v.get("took_s").and_then(Value::as_f64).unwrap_or(f64::NAN),
            bpftrace: s("bpftrace").unwrap_or_default(),
        })
    }

    /// "`cargo xtask bench ...` on DATE, commit `C`, in N s".
    pub(super) fn made_by(&self) -> String {
        format!(
            "`{}` on {}, commit `{}`, in {:.0} s",
            self.cmdline, self.date, self.commit, self.took_s
        )
    }
}

/// What a report is rendered from.
#[derive(Default)]
pub(super) struct Record {
    /// The Go releases, in the order of `TOOLCHAINS`.
    pub(super) gos: Vec<GoBin>,
    pub(super) res: Results,
    /// The run that measured each part, where the record says.
    pub(super) measured_by: BTreeMap<&'static str, Provenance>,
    /// Parts the record has no usable figures for, and why.
    pub(super) missing: BTreeMap<&'static str, String>,
}

/// The record at `path`, if there is one. Read before anything is
/// measured: a file that is there but unreadable fails the run at once.
pub(super) fn load(path: &Path) -> Result<Option<Value>> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let v: Value = serde_json::from_str(&text).with_context(|| {
        format!(
            "{} is not JSON: move it away to start a new record",
            path.display()
        )
    })?;
    if !v.is_object() {
        bail!("{} is not a bench record (no JSON object)", path.display());
    }
    Ok(Some(v))
}

/// This run's figures. `measured`: the parts it ran (the others' keys hold
/// empty lists), each recorded as measured by `run`.
pub(super) fn to_json(gos: &[GoBin], r: &Results, measured: &[&str], run: &Provenance) -> Value {
    let (tp, cost, many) = (&r.tp, &r.cost, &r.many);
    let by: Map<String, Value> = measured
        .iter()
        .map(|p| ((*p).to_owned(), run.to_json()))
        .collect();
    json!({
        "schema": SCHEMA,
        "measured": by,
        "binaries": gos.iter().map(|g| json!({
            "go": g.tag, "map_impl": g.map_impl, "bin": g.bin, "stripped": g.stripped,
            "default_functions": g.functions, "write_functions": g.write_functions,
            "micro": {"function": g.micro.func, "address": format!("{:#x}", g.micro.addr),
                      "file_offset": format!("{:#x}", g.micro.file_offset),
                      "jbe": g.micro.jbe, "push": g.micro.push},
        })).collect::<Vec<_>>(),
        "throughput": tp.iter().map(|s| json!({
            "go": s.go, "workload": s.workload, "rep": s.rep, "mode": s.mode.label(),
            "seconds": s.seconds, "value": s.value, "hits": s.hits, "single_stepped_hits": s.ss_hits,
            "estimated_target_cpu_s": s.est_cpu_s, "tracer_cpu_s": s.tracer_cpu_s,
            "window_s": s.window_s, "creation_probes_paused_s": s.paused_s,
            "write_windows": s.write_windows, "write_windows_s": s.write_windows_s,
            "write_path_hits": s.write_hits, "maps_found_by_write_windows": s.maps_by_windows,
            "budget_spent_target_cpu_s": s.budget_spent_s,
            "target_cpu_s": s.target_cpu_s, "target_sys_s": s.target_sys_s,
        })).collect::<Vec<_>>(),
        "http_phases": r.phases.iter().map(|p| json!({
            "workload": p.workload.name, "go": p.go, "round": p.round, "traced": p.traced,
            "start_unix_s": p.start, "end_unix_s": p.end, "ops_per_sec": p.rate,
            "attached_unix_s": p.attached, "startup_ops_per_sec": p.startup_rate,
            "unit": p.workload.unit, "target_gc_per_sec": p.gc_rate,
            "tracer_cpu_s": p.tracer_cpu_s, "budget_spent_target_cpu_s": p.debit_s(),
            "governed_probes_attached_share": p.report.map(|r| r.attached_share),
            "large_growth_probes_attached_share": p.report.map(|r| r.large_share),
            "planted_map_growing": p.report.map(|r| r.planted),
            "gc_cycles": p.report.map(|r| r.gc_cycles),
            "gc_cycles_sampled": p.report.map(|r| r.gc_sampled),
            "probe_hits": p.hits, "foreign_cpu_s": p.foreign_cpu_s,
            "target_cpu_s": p.target_cpu_s,
        })).collect::<Vec<_>>(),
        "create_cost": r.create.iter().map(|c| json!({
            "go": c.go, "kind": c.kind, "rep": c.rep, "mode": c.mode.label(),
            "elapsed_s": c.elapsed_s, "hits": c.hits, "ops": c.ops,
        })).collect::<Vec<_>>(),
        "probe_cost": cost.iter().map(|c| json!({
            "go": c.go, "rep": c.rep,
            "placement": c.placement.map(|i| PLACEMENTS[i].label),
            "elapsed_s": c.elapsed_s, "hits": c.hits, "ops": c.ops,
        })).collect::<Vec<_>>(),
        "manymaps": many.iter().map(|m| json!({
            "go": m.go, "n": m.n, "trace_s": m.trace_s, "untraced_create_s": m.untraced_create_s,
            "traced_create_s": m.traced_create_s, "heap_inuse_bytes": m.heap_inuse,
            "tracer_startup_cpu_s": m.startup_cpu_s,
            "tracer_steady_rss_bytes": m.steady_rss, "tracer_steady_cpu": m.steady_cpu,
            "target_gc_cycles": m.target_gcs,
            "overhead": m.report.get("overhead"),
            "maps": m.maps_n,
            "maps_evicted": m.report.get("maps_evicted"),
            "caps_reached": m.report.get("caps_reached"),
            "report_bytes": m.report_bytes,
            "gc_cycles": m.gcs_n,
            "duration_s": m.report.get("duration_s"),
        })).collect::<Vec<_>>(),
        "search_cost": r.search.iter().map(|x| serde_json::to_value(x).unwrap_or(Value::Null)).collect::<Vec<_>>(),
        "fleet": r.fleet.iter().map(|x| serde_json::to_value(x).unwrap_or(Value::Null)).collect::<Vec<_>>(),
        "twin_phases": r.twin.iter().map(|x| serde_json::to_value(x).unwrap_or(Value::Null)).collect::<Vec<_>>(),
    })
}

/// `earlier` (the previous record; null for none) with the parts in
/// `measured` replaced by `now`'s: their figures and who measured them.
/// The other parts stay as they were, with their provenance (none, for a
/// record older than provenance). The binaries are `now`'s, then the
/// record's for the Go releases not run now.
pub(super) fn merge(earlier: &Value, now: &Value, measured: &[&str]) -> Value {
    let mut out = earlier.as_object().cloned().unwrap_or_default();
    let mut bins: Vec<Value> = now["binaries"].as_array().cloned().unwrap_or_default();
    for b in earlier["binaries"].as_array().into_iter().flatten() {
        if !bins.iter().any(|x| x["go"] == b["go"]) {
            bins.push(b.clone());
        }
    }
    out.insert("binaries".to_owned(), Value::Array(bins));
    let mut by = earlier["measured"].as_object().cloned().unwrap_or_default();
    for (part, key) in KEYS {
        if !measured.contains(&part) {
            continue;
        }
        out.insert(
            key.to_owned(),
            now.get(key).cloned().unwrap_or_else(|| json!([])),
        );
        match now["measured"].get(part) {
            Some(p) => by.insert(part.to_owned(), p.clone()),
            None => by.remove(part),
        };
    }
    out.insert("measured".to_owned(), Value::Object(by));
    out.insert("schema".to_owned(), json!(SCHEMA));
    Value::Object(out)
}

/// Reads a record back. Entries are taken as written by [`to_json`] (or
/// by the runs before it, which wrote the same keys but for the ones marked
/// optional below); a part whose entries lack a needed key goes to
/// `missing` with the reason, not half rendered.
pub(super) fn parse(v: &Value) -> Record {
    let mut rec = Record {
        gos: binaries(v),
        ..Record::default()
    };
    for (part, key) in KEYS {
        let entries = v
            .get(key)
            .and_then(Value::as_array)
            .map_or(&[][..], Vec::as_slice);
        if entries.is_empty() {
            rec.missing.insert(part, "no earlier figures".to_owned());
            continue;
        }
        // Figures for Go releases with no binary recorded are not shown.
        if !entries
            .iter()
            .any(|e| rec.gos.iter().any(|b| e["go"] == b.tag.as_str()))
        {
            rec.missing.insert(
                part,
                "the earlier figures are for Go releases with no binary in the record".to_owned(),
            );
            continue;
        }
        let ok = match part {
            "throughput" => each(entries, tp_sample).map(|x| rec.res.tp = x),
            "phases" => each(entries, phase).map(|x| rec.res.phases = x),
            "probe-cost" => each(entries, cost_sample).map(|x| rec.res.cost = x),
            "create-cost" => each(entries, create_sample).map(|x| rec.res.create = x),
            "search-cost" => each(entries, |e| {
                Ok(serde_json::from_value::<SearchCost>(e.0.clone())?)
            })
            .map(|x| rec.res.search = x),
            "fleet" => each(entries, |e| {
                Ok(serde_json::from_value::<FleetPhase>(e.0.clone())?)
            })
            .map(|x| rec.res.fleet = x),
            "twin" => each(entries, |e| {
                Ok(serde_json::from_value::<TwinPhase>(e.0.clone())?)
            })
            .map(|x| rec.res.twin = x),
            _ => each(entries, many_result).map(|x| rec.res.many = x),
        };
        if let Err(e) = ok {
            rec.missing
                .insert(part, format!("the earlier figures cannot be used: {e:#}"));
            continue;
        }
        if let Some(p) = v["measured"].get(part).and_then(Provenance::from_json) {
            rec.measured_by.insert(part, p);
        }
    }
    rec
}

/// The binaries, in the order of `TOOLCHAINS` (others after them).
fn binaries(v: &Value) -> Vec<GoBin> {
    let strs = |b: &Value, k: &str| -> Vec<String> {
        b[k].as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str().map(str::to_owned))
            .collect()
    };
    let mut out: Vec<GoBin> = v["binaries"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|b| {
            let tag = b["go"].as_str()?.to_owned();
            let map_impl = b["map_impl"].as_str().map(str::to_owned).or_else(|| {
                TOOLCHAINS
                    .iter()
                    .find(|(t, _)| *t == tag)
                    .map(|(_, m)| (*m).to_owned())
            })?;
            let m = &b["micro"];
            Some(GoBin {
                tag,
                map_impl,
                bin: b["bin"].as_str().unwrap_or_default().into(),
                stripped: b["stripped"].as_str().unwrap_or_default().into(),
                functions: strs(b, "default_functions"),
                write_functions: strs(b, "write_functions"),
                ret_sites: Vec::new(),
                write_sites: Vec::new(),
                micro: Micro {
                    func: m["function"].as_str().unwrap_or_default().to_owned(),
                    addr: hex(&m["address"]).unwrap_or(0),
                    file_offset: hex(&m["file_offset"]).unwrap_or(0),
                    jbe: m["jbe"].as_u64().unwrap_or(0),
                    push: m["push"].as_u64().unwrap_or(0),
                },
            })
        })
        .collect();
    let rank = |g: &GoBin| {
        TOOLCHAINS
            .iter()
            .position(|(t, _)| *t == g.tag)
            .unwrap_or(TOOLCHAINS.len())
    };
    out.sort_by_key(rank);
    out
}

/// Every entry through `one`; the first failure, with the entry's index.
fn each<T>(entries: &[Value], one: fn(&Entry<'_>) -> Result<T>) -> Result<Vec<T>> {
    entries
        .iter()
        .enumerate()
        .map(|(i, v)| one(&Entry(v)).with_context(|| format!("entry {i}")))
        .collect()
}

/// One entry of a part.
struct Entry<'a>(&'a Value);

impl Entry<'_> {
    fn has(&self, k: &str) -> Result<&Value> {
        self.0.get(k).ok_or_else(|| anyhow!("no `{k}`"))
    }

    fn str(&self, k: &str) -> Result<&str> {
        self.has(k)?
            .as_str()
            .ok_or_else(|| anyhow!("`{k}` is not a string"))
    }

    fn u64(&self, k: &str) -> Result<u64> {
        self.has(k)?
            .as_u64()
            .ok_or_else(|| anyhow!("`{k}` is not a count"))
    }

    /// A figure that must be there: null (NaN when written) is NaN.
    fn num(&self, k: &str) -> Result<f64> {
        Ok(self.has(k)?.as_f64().unwrap_or(f64::NAN))
    }

    /// A figure older runs may not have written: NaN.
    fn opt_num(&self, k: &str) -> f64 {
        self.0.get(k).and_then(Value::as_f64).unwrap_or(f64::NAN)
    }

    /// A count older runs may not have written: 0.
    fn opt_u64(&self, k: &str) -> u64 {
        self.0.get(k).and_then(Value::as_u64).unwrap_or(0)
    }

    fn mode(&self) -> Result<Mode> {
        let m = self.str("mode")?;
        Mode::from_label(m).ok_or_else(|| anyhow!("unknown mode {m:?}"))
    }

    fn rep(&self) -> Result<usize> {
        Ok(usize::try_from(self.u64("rep")?)?)
    }
}

fn tp_sample(e: &Entry<'_>) -> Result<TpSample> {
    let w = e.str("workload")?;
    let workload = WORKLOADS
        .iter()
        .map(|(n, _)| *n)
        .find(|n| *n == w)
        .ok_or_else(|| anyhow!("unknown workload {w:?}"))?;
    Ok(TpSample {
        go: e.str("go")?.to_owned(),
        workload,
        rep: e.rep()?,
        mode: e.mode()?,
        seconds: e.num("seconds")?,
        value: e.num("value")?,
        hits: e.opt_u64("hits"),
        ss_hits: e.opt_u64("single_stepped_hits"),
        est_cpu_s: e.opt_num("estimated_target_cpu_s"),
        tracer_cpu_s: e.opt_num("tracer_cpu_s"),
        window_s: e.num("window_s")?,
        paused_s: e.opt_num("creation_probes_paused_s"),
        write_windows: e.opt_num("write_windows"),
        write_windows_s: e.opt_num("write_windows_s"),
        write_hits: e.opt_u64("write_path_hits"),
        maps_by_windows: e.opt_num("maps_found_by_write_windows"),
        budget_spent_s: e.opt_num("budget_spent_target_cpu_s"),
        target_cpu_s: e.opt_num("target_cpu_s"),
        target_sys_s: e.opt_num("target_sys_s"),
    })
}

fn phase(e: &Entry<'_>) -> Result<Phase> {
    // The first records of part 1b measured `http` alone, and did not say.
    let w =
        e.0.get("workload")
            .and_then(Value::as_str)
            .unwrap_or("http");
    let workload = suite::WORKLOADS
        .iter()
        .find(|x| x.name == w)
        .ok_or_else(|| anyhow!("unknown workload {w:?}"))?;
    let traced = e
        .has("traced")?
        .as_bool()
        .ok_or_else(|| anyhow!("`traced` is not a boolean"))?;
    let start = e.num("start_unix_s")?;
    let report = traced.then(|| Traced {
        debit_s: e.opt_num("budget_spent_target_cpu_s"),
        attached_share: e.opt_num("governed_probes_attached_share"),
        large_share: e.opt_num("large_growth_probes_attached_share"),
        planted: e.0["planted_map_growing"].as_bool().unwrap_or(false),
        gc_cycles: e.opt_u64("gc_cycles"),
        gc_sampled: e.opt_u64("gc_cycles_sampled"),
    });
    Ok(Phase {
        workload,
        go: e.str("go")?.to_owned(),
        round: usize::try_from(e.u64("round")?)?,
        traced,
        start,
        end: e.num("end_unix_s")?,
        attached: e
            .0
            .get("attached_unix_s")
            .and_then(Value::as_f64)
            .unwrap_or(start),
        rate: e.num("ops_per_sec")?,
        startup_rate: e.opt_num("startup_ops_per_sec"),
        gc_rate: e.opt_num("target_gc_per_sec"),
        tracer_cpu_s: e.opt_num("tracer_cpu_s"),
        report,
        hits: e.opt_u64("probe_hits"),
        foreign_cpu_s: e.opt_num("foreign_cpu_s"),
        target_cpu_s: e.opt_num("target_cpu_s"),
    })
}

fn cost_sample(e: &Entry<'_>) -> Result<CostSample> {
    let placement = match e.has("placement")? {
        Value::Null => None,
        p => {
            let label = p
                .as_str()
                .ok_or_else(|| anyhow!("`placement` is not a string"))?;
            Some(
                PLACEMENTS
                    .iter()
                    .position(|x| x.label == label)
                    .ok_or_else(|| anyhow!("unknown placement {label:?}"))?,
            )
        }
    };
    Ok(CostSample {
        go: e.str("go")?.to_owned(),
        rep: e.rep()?,
        placement,
        elapsed_s: e.num("elapsed_s")?,
        hits: e.0.get("hits").and_then(Value::as_u64),
        // Not written before the record was the report's source: the
        // report then quotes this run's setting.
        ops: e.opt_u64("ops"),
    })
}

fn create_sample(e: &Entry<'_>) -> Result<CreateSample> {
    let k = e.str("kind")?;
    let kind = CREATIONS
        .iter()
        .map(|(n, _)| *n)
        .find(|n| *n == k)
        .ok_or_else(|| anyhow!("unknown kind {k:?}"))?;
    Ok(CreateSample {
        go: e.str("go")?.to_owned(),
        kind,
        rep: e.rep()?,
        mode: e.mode()?,
        elapsed_s: e.num("elapsed_s")?,
        hits: e.opt_u64("hits"),
        ops: e.u64("ops")?,
    })
}

fn many_result(e: &Entry<'_>) -> Result<ManyResult> {
    let count = |k: &str| e.0.get(k).and_then(Value::as_u64).unwrap_or(0) as usize;
    Ok(ManyResult {
        go: e.str("go")?.to_owned(),
        n: e.u64("n")?,
        // Not written before issue 13: 0 (not recorded).
        report_bytes: e.opt_u64("report_bytes"),
        // Not written before the record was the report's source: 0, and
        // the report then quotes this run's setting.
        trace_s: e.opt_u64("trace_s"),
        untraced_create_s: e.num("untraced_create_s")?,
        traced_create_s: e.num("traced_create_s")?,
        heap_inuse: e.opt_num("heap_inuse_bytes"),
        startup_cpu_s: e.opt_num("tracer_startup_cpu_s"),
        steady_rss: e.opt_num("tracer_steady_rss_bytes"),
        steady_cpu: e.opt_num("tracer_steady_cpu"),
        target_gcs: e.opt_num("target_gc_cycles"),
        maps_n: count("maps"),
        gcs_n: count("gc_cycles"),
        // What the report's figures are read from (`many_figures`).
        report: json!({
            "overhead": e.0["overhead"],
            "maps_evicted": e.0["maps_evicted"],
            "caps_reached": e.0["caps_reached"],
            "duration_s": e.0["duration_s"],
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::PARTS;

    fn run(cmd: &str) -> Value {
        json!({"cmdline": cmd, "date": "2026-11-30 06:00 UTC", "commit": "abc", "took_s": 60.0,
               "bpftrace": "bpftrace v0.17.0"})
    }

    fn bin(go: &str, functions: &[&str]) -> Value {
        json!({"go": go, "map_impl": "swiss", "bin": "/b", "stripped": "/s",
               "default_functions": functions, "write_functions": [],
               "micro": {"function": "f", "address": "0x10", "file_offset": "0x8", "jbe": 4, "push": 10}})
    }

    /// A record of every part, all measured by `cmd`.
    fn full(cmd: &str, tag: f64) -> Value {
        let by: Map<String, Value> = PARTS.iter().map(|p| ((*p).to_owned(), run(cmd))).collect();
        json!({
            "schema": SCHEMA,
            "measured": by,
            "binaries": [bin("go1.23.12", &["old"]), bin("go1.26.8", &["old"])],
            "throughput": [{"go": "go1.26.8", "workload": "http", "rep": 0, "mode": "untraced",
                            "seconds": 1.0, "value": tag, "window_s": 1.0}],
            "http_phases": [{"go": "go1.26.8", "workload": "json", "round": 0, "traced": false,
                             "start_unix_s": 1.0, "end_unix_s": 2.0, "ops_per_sec": tag}],
            "probe_cost": [{"go": "go1.26.8", "rep": 0, "placement": null, "elapsed_s": tag,
                            "hits": null, "ops": 10}],
            "create_cost": [{"go": "go1.26.8", "kind": "small", "rep": 0, "mode": "untraced",
                             "elapsed_s": tag, "hits": 0, "ops": 10}],
            "manymaps": [{"go": "go1.26.8", "n": 10, "trace_s": 3, "untraced_create_s": tag,
                          "traced_create_s": tag, "maps": 10, "gc_cycles": 3,
                          "overhead": {"tracer_cpu_s": 0.5}, "maps_evicted": 0, "duration_s": 3.0}],
            "search_cost": [serde_json::to_value(SearchCost {
                go: "go1.26.8".to_owned(), heap_bytes_read: 1 << 20, search_ms: tag,
                path: "main.a → (*main.b).m".to_owned(), ..SearchCost::default()
            }).unwrap()],
            "fleet": [serde_json::to_value(FleetPhase {
                go: "go1.26.8".to_owned(), end: tag, attach_s: f64::NAN, ..FleetPhase::default()
            }).unwrap()],
            "twin_phases": [serde_json::to_value(TwinPhase {
                go: "go1.26.8".to_owned(), workload: "json".to_owned(), tracer_cpu_s: tag,
                trace_s: f64::NAN, ..TwinPhase::default()
            }).unwrap()],
        })
    }

    #[test]
    fn merge_replaces_the_parts_measured_now_and_keeps_the_others() {
        let earlier = full("cargo xtask bench", 1.0);
        let mut now = full("cargo xtask bench --only phases --merge", 2.0);
        // A run of phases alone, on one Go release.
        for k in [
            "throughput",
            "fleet",
            "probe_cost",
            "create_cost",
            "manymaps",
            "search_cost",
            "twin_phases",
        ] {
            now[k] = json!([]);
        }
        now["measured"] = json!({"phases": run("cargo xtask bench --only phases --merge")});
        now["binaries"] = json!([bin("go1.26.8", &["new"])]);
        let m = merge(&earlier, &now, &["phases"]);
        assert_eq!(m["http_phases"], now["http_phases"]);
        for k in [
            "throughput",
            "fleet",
            "probe_cost",
            "create_cost",
            "manymaps",
            "search_cost",
            "twin_phases",
        ] {
            assert_eq!(m[k], earlier[k], "{k}");
        }
        assert_eq!(m["measured"]["phases"], now["measured"]["phases"]);
        assert_eq!(m["measured"]["manymaps"], earlier["measured"]["manymaps"]);
        // This run's binary, and the record's for the other Go release.
        let bins = m["binaries"].as_array().unwrap();
        assert_eq!(bins.len(), 2);
        assert_eq!(bins[0]["default_functions"], json!(["new"]));
        assert_eq!(bins[1]["go"], "go1.23.12");

        let rec = parse(&m);
        assert!(rec.missing.is_empty(), "{:?}", rec.missing);
        assert_eq!(
            rec.gos.iter().map(|g| g.tag.as_str()).collect::<Vec<_>>(),
            ["go1.23.12", "go1.26.8"]
        );
        assert!((rec.res.phases[0].rate - 2.0).abs() < 1e-12);
        assert!((rec.res.tp[0].value - 1.0).abs() < 1e-12);
        assert_eq!(rec.res.many[0].trace_s, 3);
        assert!((rec.res.search[0].search_ms - 1.0).abs() < 1e-12);
        assert!((rec.res.twin[0].tracer_cpu_s - 1.0).abs() < 1e-12);
        assert_eq!(
            rec.measured_by["phases"].cmdline,
            "cargo xtask bench --only phases --merge"
        );
        assert_eq!(rec.measured_by["throughput"].cmdline, "cargo xtask bench");
    }

    #[test]
    fn merge_onto_no_record_leaves_the_other_parts_missing() {
        let mut now = full("cargo xtask bench --only manymaps --merge", 2.0);
        for k in [
            "throughput",
            "http_phases",
            "fleet",
            "probe_cost",
            "create_cost",
            "search_cost",
            "twin_phases",
        ] {
            now[k] = json!([]);
        }
        let m = merge(&Value::Null, &now, &["manymaps"]);
        assert_eq!(m["measured"].as_object().unwrap().len(), 1);
        let rec = parse(&m);
        assert_eq!(rec.res.many.len(), 1);
        assert_eq!(
            rec.missing.keys().copied().collect::<Vec<_>>(),
            [
                "create-cost",
                "fleet",
                "phases",
                "probe-cost",
                "search-cost",
                "throughput",
                "twin"
            ]
        );
        assert_eq!(rec.missing["phases"], "no earlier figures");
    }

    #[test]
    fn a_part_lacking_a_needed_key_is_missing_with_the_reason() {
        let mut v = full("cargo xtask bench", 1.0);
        v["probe_cost"][0]
            .as_object_mut()
            .unwrap()
            .remove("elapsed_s");
        // Before provenance: still rendered, without saying who measured it.
        v.as_object_mut().unwrap().remove("measured");
        let rec = parse(&v);
        assert!(rec.res.cost.is_empty());
        assert!(
            rec.missing["probe-cost"].contains("no `elapsed_s`"),
            "{}",
            rec.missing["probe-cost"]
        );
        assert_eq!(rec.res.create.len(), 1);
        assert!(rec.measured_by.is_empty());
    }

    #[test]
    fn figures_survive_the_round_trip() {
        let rec = parse(&full("cargo xtask bench", 1.5));
        assert!(rec.missing.is_empty(), "{:?}", rec.missing);
        let p = Provenance::from_json(&run("cargo xtask bench")).unwrap();
        let v = to_json(&rec.gos, &rec.res, &PARTS, &p);
        let again = parse(&v);
        let w = to_json(&again.gos, &again.res, &PARTS, &p);
        assert_eq!(v, w);
        // An untraced phase has no report; NaN figures are written as null.
        assert!(again.res.phases[0].report.is_none());
        assert_eq!(v["throughput"][0]["write_windows"], Value::Null);
        assert_eq!(
            p.made_by(),
            "`cargo xtask bench` on 2026-11-30 06:00 UTC, commit `abc`, in 60 s"
        );
    }
}
