//! `mapleak-trace inspect <BINARY | --pid PID> [--json]`: what `inspect`
//! learned about a binary and what `plan` would probe, without root.

use std::io::Write;

use serde_json::{Value, json};

use crate::inspect::{BinaryInfo, Func};
use crate::plan::{self, PlannedProbe, ProbePlan, hooks};

fn hex(v: u64) -> String {
    format!("{v:#x}")
}

fn hex_opt(v: Option<u64>) -> Value {
    v.map_or(Value::Null, |v| Value::String(hex(v)))
}

/// Function names of the default probe set for this binary, in plan order.
/// What `inspect` says of the binary's sync.Map.
fn sync_map_line(info: &BinaryInfo) -> String {
    match crate::syncmap::detect(info) {
        crate::syncmap::SyncMapImpl::HashTrie => format!(
            "HashTrieMap (internal/sync, Go 1.24+): new instances from initSlow's receiver, tries walked at samples; {} global(s) from DWARF",
            info.sync_map_globals().len()
        ),
        crate::syncmap::SyncMapImpl::Classic => {
            "classic read/dirty maps (seen as map[interface {}]*sync.entry runtime maps)".to_owned()
        }
        crate::syncmap::SyncMapImpl::Unused => "not linked in".to_owned(),
    }
}

fn probe_set_functions(info: &BinaryInfo) -> Vec<&'static str> {
    let mut names: Vec<&'static str> = Vec::new();
    for h in hooks::default_hooks(info.map_impl) {
        // Optional hooks (finalizers, the write path) are listed when the
        // program links them.
        if h.group == hooks::Group::Optional && info.func_by_name(h.function).is_none() {
            continue;
        }
        if !names.contains(&h.function) {
            names.push(h.function);
        }
    }
    names
}

/// Whether a type name can be produced for descriptors (DWARF or moduledata).
fn type_names_resolvable(info: &BinaryInfo) -> bool {
    info.dwarf_type_count() > 0 || info.moduledata.is_some()
}

struct FnRow<'a> {
    name: &'static str,
    func: Option<&'a Func>,
    /// Probes that are not RET sites (an entry, a seed call, ...), in plan order.
    inner: Vec<&'a PlannedProbe>,
    rets: Vec<&'a PlannedProbe>,
}

fn rows<'a>(info: &'a BinaryInfo, plan: Option<&'a ProbePlan>) -> Vec<FnRow<'a>> {
    probe_set_functions(info)
        .into_iter()
        .map(|name| {
            let probes: Vec<&PlannedProbe> = plan
                .map(|p| p.probes.iter().filter(|p| p.function == name).collect())
                .unwrap_or_default();
            FnRow {
                name,
                func: info.func_by_name(name),
                inner: probes.iter().copied().filter(|p| !p.ret_site).collect(),
                rets: probes.into_iter().filter(|p| p.ret_site).collect(),
            }
        })
        .collect()
}

/// Prints the inspect report for `info` as text or JSON.
pub fn run(
    info: &BinaryInfo,
    pid: Option<u32>,
    json: bool,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let plan = ProbePlan::build(info);
    let plan_ok = plan.as_ref().ok();
    let plan_err = plan.as_ref().err().map(ToString::to_string);
    if json {
        return write_json(info, pid, plan_ok, plan_err, out);
    }
    let yn = |b: bool| if b { "yes" } else { "no" };
    if let Some(pid) = pid {
        writeln!(out, "pid:              {pid}")?;
    }
    writeln!(out, "binary:           {}", info.path.display())?;
    writeln!(out, "go version:       {}", info.go_version.raw)?;
    writeln!(out, "GOARCH:           {}", info.goarch.as_str())?;
    let exp = if info.experiments.is_empty() {
        String::new()
    } else {
        format!(" (GOEXPERIMENT={})", info.experiments.join(","))
    };
    writeln!(out, "map impl:         {}{exp}", info.map_impl.as_str())?;
    writeln!(out, "sync.Map:         {}", sync_map_line(info))?;
    writeln!(out, ".symtab:          {}", yn(info.has_symtab))?;
    writeln!(out, "DWARF:            {}", yn(info.has_dwarf))?;
    writeln!(
        out,
        "pclntab:          magic {:#x} ({}), {} functions",
        info.pclntab_magic,
        info.pclntab_format(),
        info.functions().len()
    )?;
    writeln!(out, "PIE:              {}", yn(info.pie))?;
    if let Some(id) = &info.build_id {
        writeln!(out, "build id:         {id}")?;
    }
    writeln!(out)?;
    writeln!(out, "probe set (default mode):")?;
    for r in rows(info, plan_ok) {
        let Some(f) = r.func else {
            writeln!(out, "  {:<46} NOT FOUND", r.name)?;
            continue;
        };
        writeln!(
            out,
            "  {:<46} {} size {}",
            r.name,
            hex(f.entry),
            f.end - f.entry
        )?;
        for p in &r.inner {
            writeln!(
                out,
                "      probe {} (+{}) `{}`: {}",
                hex(p.address),
                p.address - f.entry,
                p.instruction,
                p.reason,
            )?;
            writeln!(out, "      class {}: {}", p.class.as_str(), p.class_reason)?;
        }
        if r.inner.is_empty()
            && let Some(p) = r.rets.first()
        {
            writeln!(out, "      class {}: {}", p.class.as_str(), p.class_reason)?;
        }
        if !r.rets.is_empty() {
            let sites: Vec<String> = r
                .rets
                .iter()
                .map(|p| format!("{} `{}`", hex(p.address), p.instruction))
                .collect();
            writeln!(
                out,
                "      RET sites ({}): {}",
                sites.len(),
                sites.join(", ")
            )?;
        }
    }
    if let Some(p) = plan_ok {
        for s in &p.skipped {
            writeln!(out, "  skipped {}: {}", s.function, s.reason)?;
        }
        writeln!(out, "  {} probes planned", p.probes.len())?;
    }
    if let Some(e) = &plan_err {
        writeln!(out, "  plan error: {e}")?;
    }
    writeln!(out)?;
    writeln!(
        out,
        "write-path functions (probed only while a write window is open):"
    )?;
    for f in plan::write_path_functions(info) {
        writeln!(
            out,
            "  {:<46} {} size {}",
            f.name,
            hex(f.entry),
            f.end - f.entry
        )?;
    }
    writeln!(out)?;
    writeln!(
        out,
        "layout (source: {}):",
        match info.layout_source {
            crate::inspect::LayoutSource::Dwarf => "DWARF, over the built-in table",
            crate::inspect::LayoutSource::Builtin => "built-in table",
        }
    )?;
    if let Some(w) = info.layout_warning() {
        writeln!(out, "  warning: {w}")?;
    }
    for (name, v) in info.layout.fields() {
        if let Some(v) = v {
            writeln!(out, "  {name:<26} {v}")?;
        }
    }
    writeln!(out)?;
    match &info.moduledata {
        Some(m) => writeln!(
            out,
            "moduledata:       {} (types {}..{}, text {}; found by {})",
            hex(m.addr),
            hex(m.types),
            hex(m.etypes),
            hex(m.text),
            info.globals
                .found_by
                .firstmoduledata
                .map_or_else(|| "?".to_owned(), |b| b.to_string())
        )?,
        None => writeln!(out, "moduledata:       not found")?,
    }
    writeln!(
        out,
        "type names:       {}",
        if type_names_resolvable(info) {
            "resolvable"
        } else {
            "not resolvable"
        }
    )?;
    let g = &info.globals;
    let by = &g.found_by;
    for (n, v, how) in [
        ("runtime.work", g.work, by.work),
        ("runtime.memstats", g.memstats, by.memstats),
        ("runtime.gcController", g.gc_controller, by.gc_controller),
        (
            "runtime.firstmoduledata",
            g.firstmoduledata,
            by.firstmoduledata,
        ),
    ] {
        match (v, how) {
            (Some(a), Some(how)) => writeln!(out, "  {n:<24} {} (by {how})", hex(a))?,
            (Some(a), None) => writeln!(out, "  {n:<24} {}", hex(a))?,
            (None, _) => writeln!(out, "  {n:<24} unknown")?,
        }
    }
    let maps = info.global_maps();
    if !maps.is_empty() {
        writeln!(out)?;
        writeln!(out, "map globals (DWARF):")?;
        for (n, a, t) in maps {
            writeln!(out, "  {n:<40} {} {t}", hex(a))?;
        }
    }
    Ok(())
}

fn write_json(
    info: &BinaryInfo,
    pid: Option<u32>,
    plan: Option<&ProbePlan>,
    plan_err: Option<String>,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let functions: Vec<Value> = rows(info, plan)
        .into_iter()
        .map(|r| {
            json!({
                "name": r.name,
                "found": r.func.is_some(),
                "address": hex_opt(r.func.map(|f| f.entry)),
                "size": r.func.map(|f| f.end - f.entry),
                "probe_address": hex_opt(r.inner.first().map(|p| p.address)),
                "probe_instruction": r.inner.first().map(|p| p.instruction.clone()),
                "probe_reason": r.inner.first().map(|p| p.reason.clone()),
                "ret_sites": r.rets.iter().map(|p| json!({"address": hex(p.address), "instruction": p.instruction})).collect::<Vec<_>>(),
            })
        })
        .collect();
    let probes: Vec<Value> = plan
        .map(|p| {
            p.probes
                .iter()
                .map(|p| {
                    json!({
                        "function": p.function, "role": format!("{:?}", p.role), "program": p.role.program(),
                        "address": hex(p.address), "file_offset": hex_opt(info.va_to_file_offset(p.address)),
                        "instruction": p.instruction, "reason": p.reason, "ret_site": p.ret_site, "emulated": p.emulated,
                        "class": p.class, "class_reason": p.class_reason,
                        "map_arg": p.spec.map_arg, "type_arg": p.spec.type_arg, "size_arg": p.spec.size_arg, "aux": p.spec.aux,
                        "map_sp_off": p.spec.map_sp_off, "ret_sp_off": p.spec.ret_sp_off, "ret_delta": p.spec.ret_delta,
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let write_path: Vec<Value> = plan::write_path_functions(info)
        .into_iter()
        .map(|f| json!({"name": f.name, "address": hex(f.entry), "size": f.end - f.entry}))
        .collect();
    let layout: serde_json::Map<String, Value> = info
        .layout
        .fields()
        .into_iter()
        .filter_map(|(n, v)| Some((n.to_owned(), Value::from(v?))))
        .collect();
    let doc = json!({
        "pid": pid,
        "path": info.path.display().to_string(),
        "go_version": info.go_version.raw,
        "goarch": info.goarch.as_str(),
        "map_impl": info.map_impl.as_str(),
        "sync_map_impl": crate::syncmap::detect(info).as_str(),
        "experiments": info.experiments,
        "stripped": !info.has_symtab,
        "has_symtab": info.has_symtab,
        "has_dwarf": info.has_dwarf,
        "pie": info.pie,
        "build_id": info.build_id,
        "pclntab_version": {"magic": hex(u64::from(info.pclntab_magic)), "format": info.pclntab_format()},
        "functions": functions,
        "probes": probes,
        "skipped": plan.map(|p| p.skipped.iter().map(|s| json!({"function": s.function, "reason": s.reason})).collect::<Vec<_>>()),
        "plan_error": plan_err,
        "write_path_functions": write_path,
        "layout": layout,
        "layout_source": info.layout_source,
        "moduledata": info.moduledata.as_ref().map(|m| json!({"addr": hex(m.addr), "types": hex(m.types), "etypes": hex(m.etypes), "text": hex(m.text)})),
        "type_names_resolvable": type_names_resolvable(info),
        "globals": {
            "work": hex_opt(info.globals.work),
            "memstats": hex_opt(info.globals.memstats),
            "gc_controller": hex_opt(info.globals.gc_controller),
            "firstmoduledata": hex_opt(info.globals.firstmoduledata),
            "found_by": info.globals.found_by,
        },
        "map_globals": info.global_maps().into_iter().map(|(n, a, t)| json!({"name": n, "address": hex(a), "type": t})).collect::<Vec<_>>(),
        "sync_map_globals": info.sync_map_globals().into_iter().map(|(n, a, ptr)| json!({"name": n, "address": hex(a), "pointer": ptr})).collect::<Vec<_>>(),
    });
    serde_json::to_writer_pretty(&mut *out, &doc)?;
    writeln!(out)?;
    Ok(())
}
