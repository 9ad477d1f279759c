//! `plan`: from [`BinaryInfo`] to the list of uprobes to attach. Pure.
//!
//! Which functions: [`hooks`] (go-runtime.md 10.1, DESIGN.md 3.1). Where in
//! each function: [`disasm`] (DESIGN.md 3.2): the first instruction the kernel
//! emulates rather than single-steps, and for return values every RET site
//! (never uretprobes: Go moves goroutine stacks, golang/go#22008).

pub mod disasm;
pub mod hooks;
pub mod midfunc;

use tracer_common::{NO_SP_OFF, ProbeRole, ProbeSpec};

use crate::inspect::{BinaryInfo, Func};

/// One uprobe to attach.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedProbe {
    /// Symbol name.
    pub function: String,
    /// Role (selects the eBPF program).
    pub role: ProbeRole,
    /// What the program reads.
    pub spec: ProbeSpec,
    /// Function entry (link-time VA).
    pub func_addr: u64,
    /// Function size in bytes (pclntab bounds).
    pub func_size: u64,
    /// Link-time VA of the probed instruction.
    pub address: u64,
    /// The probed instruction, e.g. `push rbp`.
    pub instruction: String,
    /// Why this instruction.
    pub reason: String,
    /// `true` for a RET-site probe.
    pub ret_site: bool,
    /// The kernel emulates the probed instruction (~1 µs a hit), rather
    /// than single-stepping it (~11 µs): what the budget debits per hit.
    pub emulated: bool,
    /// How the overhead budget governs it.
    pub class: ProbeClass,
    /// Why that class: for an always-on probe, what bounds its hit rate.
    pub class_reason: &'static str,
}

/// How the overhead budget governs a probe (one budget covers them all, and
/// the tracer's own CPU).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProbeClass {
    /// Always attached: its hit rate is bounded by the GC's pace, never by
    /// the number of maps created or grown.
    Always,
    /// Attached unless it spends its share of the budget
    /// (`governor::LARGE_GROWTH_SHARE`) or the whole budget is spent
    /// (`governor::LARGE_RESUME_SHARE`): its hit rate is bounded by map
    /// memory allocated, never by the number of maps created or grown, so
    /// it stays on while the governed probes are paused; a service that
    /// allocates large maps fast pauses it too.
    LargeGrowth,
    /// Attached while the budget has credit, paused when it runs out and
    /// attached again when half of it is back: the report says for how long
    /// (what it saw is a sample of that share of the time).
    Governed,
    /// The write path: attached only in short windows opened when the
    /// budget is full.
    Window,
}

impl ProbeClass {
    /// `always`, `governed` or `window`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Always => "always",
            Self::LargeGrowth => "large-growth",
            Self::Governed => "governed",
            Self::Window => "window",
        }
    }
}

/// Whether the tracer reads the runtime's GC counters (`memstats.numgc`,
/// located and laid out for this binary) instead of attaching the
/// `gcSweep` probe: see `app::gc_poll`.
#[must_use]
pub fn reads_gc_counters(info: &BinaryInfo) -> bool {
    info.globals.memstats.is_some() && info.layout.memstats_numgc.is_some()
}

/// Why `gcSweep` is planned but not attached where the counters are read.
pub const GC_READ_INSTEAD: &str = "planned as the fallback only: this binary's memstats.numgc is located, so GC cycles are read from it by the tracer (no trap in the target) and this probe is not attached";

/// The class of a probe with `role` and role byte `aux`, and why.
///
/// Always on: `gcSweep` (one hit per GC cycle, even at 1,000 cycles a
/// second about 0.2% of one CPU; a cycle's start is not probed), and only
/// where `memstats.numgc` cannot be located ([`reads_gc_counters`]). Large growth, on unless it alone
/// spends its share of the budget: Swiss `(*table).split` (one hit per
/// full 1,024-slot table, that is per 1,024 slots of map memory allocated)
/// and hmap `makeBucketArray` on its path for arrays of 32 KiB or more (one
/// hit per such array; a service that builds a 1,000-key map per request
/// makes thousands a second).
/// Map creation, sync.Map's `initSlow` (Go 1.24+: about once per
/// instance, but a program may make one per request), all other growth and
/// the finalizer and cleanup probes are governed: decoding JSON into
/// `map[string]any` grows a small map per object (go1.26: `growToTable` and
/// `(*table).grow` at ~63,000 hits a second each; go1.22: `hashGrow` at
/// ~165,000).
#[must_use]
pub fn classify(role: ProbeRole, aux: u8) -> (ProbeClass, &'static str) {
    match role {
        ProbeRole::GcSweep => (
            ProbeClass::Always,
            "one hit per GC cycle: bounded by the GC's pace, not by maps; attached only where the runtime's GC counters cannot be located (they are read instead)",
        ),
        ProbeRole::Grow if aux == tracer_common::GrowKind::TableSplit as u8 => (
            ProbeClass::LargeGrowth,
            "one hit per full 1,024-slot table split: bounded by map memory allocated; paused while it spends its half of the budget or the whole budget is in debt",
        ),
        ProbeRole::Grow if aux == tracer_common::GrowKind::BucketArray as u8 => (
            ProbeClass::LargeGrowth,
            "one hit per hmap bucket array of 32 KiB or more allocated: bounded by map memory allocated; paused while it spends its half of the budget or the whole budget is in debt",
        ),
        ProbeRole::Grow => (
            ProbeClass::Governed,
            "one hit per map growth, small maps included: paused when over budget",
        ),
        ProbeRole::CreateEntry | ProbeRole::CreateRet => (
            ProbeClass::Governed,
            "one hit per map created: paused when over budget",
        ),
        ProbeRole::Fin if aux == tracer_common::FinKind::SyncMapInit as u8 => (
            ProbeClass::Governed,
            "about one hit per sync.Map instance, on its first use (one per goroutine racing on a new one), or, for the classic sync.Map, per new dirty map (about log2 of its growth): rare in most programs, but a program may make one per request, so paused when over budget with map creation; instances made before attach are found from the globals",
        ),
        ProbeRole::Fin => (
            ProbeClass::Governed,
            "one hit per SetFinalizer / AddCleanup call or finalizer run (a service may set thousands a second): paused when over budget; what was pending across a pause is reported as unverified",
        ),
        ProbeRole::Write => (
            ProbeClass::Window,
            "one hit per map write: attached only in windows while the budget is full",
        ),
    }
}

/// A hook that could not be planned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SkippedProbe {
    /// Symbol name.
    pub function: String,
    /// Why.
    pub reason: String,
}

/// The probes for one binary.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProbePlan {
    /// Probes, in cookie order.
    pub probes: Vec<PlannedProbe>,
    /// Hooks whose function is missing or unusable.
    pub skipped: Vec<SkippedProbe>,
}

/// Why no usable plan exists.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// None of the functions providing an essential capability exist.
    #[error("{go_version} binary has none of {functions}: cannot trace {what}")]
    MissingEssential {
        /// What is lost (e.g. "map creation").
        what: &'static str,
        /// The functions looked for.
        functions: String,
        /// Go version of the binary.
        go_version: String,
    },
    /// More probes than the BPF spec table holds.
    #[error("{count} probes planned, more than the {max} the BPF tables hold")]
    TooMany {
        /// Planned.
        count: usize,
        /// `tracer_common::MAX_PROBES`.
        max: u32,
    },
}

impl ProbePlan {
    /// Plans the default probe set for `info`.
    pub fn build(info: &BinaryInfo) -> Result<Self, PlanError> {
        let mut plan = Self::default();
        let table = hooks::default_hooks(info.map_impl);
        for h in &table {
            let Some(f) = info.func_by_name(h.function) else {
                if h.group == hooks::Group::Optional {
                    // Not linked in: the program never calls it.
                    continue;
                }
                if !plan.skipped.iter().any(|s| s.function == h.function) {
                    plan.skipped.push(SkippedProbe {
                        function: h.function.to_owned(),
                        reason: format!(
                            "not in the pclntab of this {} binary (inlined or absent)",
                            info.go_version.raw
                        ),
                    });
                }
                continue;
            };
            let spec = ProbeSpec {
                role: h.role as u32,
                map_arg: h.map_arg,
                type_arg: h.type_arg,
                size_arg: h.size_arg,
                aux: h.aux,
                map_sp_off: NO_SP_OFF,
                ret_sp_off: NO_SP_OFF,
                ret_delta: 0,
                ..ProbeSpec::default()
            };
            let (class, class_reason) = match classify(h.role, h.aux) {
                (c, _) if h.role == ProbeRole::GcSweep && reads_gc_counters(info) => {
                    (c, GC_READ_INSTEAD)
                }
                other => other,
            };
            let base = |spec: ProbeSpec,
                        address: u64,
                        instruction: String,
                        reason: String,
                        ret_site: bool,
                        emulated: bool| PlannedProbe {
                function: f.name.clone(),
                role: h.role,
                spec,
                func_addr: f.entry,
                func_size: f.end - f.entry,
                address,
                instruction,
                reason,
                ret_site,
                emulated,
                class,
                class_reason,
            };
            match h.placement {
                hooks::Placement::Entry => {
                    let p = disasm::entry_placement(info, f);
                    let spec = ProbeSpec {
                        restart_cond: p.restart_cond,
                        ..spec
                    };
                    plan.probes.push(base(
                        spec,
                        p.insn.address,
                        p.insn.text,
                        p.reason,
                        false,
                        p.emulated,
                    ));
                }
                hooks::Placement::SeedCall => {
                    if let Some(p) = midfunc::seed_call(info, f) {
                        let spec = ProbeSpec {
                            map_arg: p.map_arg,
                            ret_sp_off: p.ret_sp_off,
                            ..spec
                        };
                        plan.probes.push(base(
                            spec,
                            p.insn.address,
                            p.insn.text,
                            "the call that seeds the new map's hash, map in a register: emulated by the kernel (~1 µs/hit), runs once per map".to_owned(),
                            false,
                            true,
                        ));
                    } else {
                        plan.ret_site_probes(info, f, spec, &base);
                    }
                }
                hooks::Placement::RetSites => plan.ret_site_probes(info, f, spec, &base),
                hooks::Placement::LargeArray { caller } => {
                    let found = info
                        .func_by_name(caller)
                        .and_then(|c| midfunc::large_bucket_array(info, f, c));
                    let Some(p) = found else {
                        plan.skipped.push(SkippedProbe {
                            function: f.name.clone(),
                            reason: format!(
                                "no large-array path reading {caller}'s map found by disassembly: large hmap growth is seen only while the governed growth probe is on"
                            ),
                        });
                        continue;
                    };
                    let spec = ProbeSpec {
                        type_arg: p.type_arg.unwrap_or(tracer_common::NO_ARG),
                        size_arg: p.size_arg.unwrap_or(tracer_common::NO_ARG),
                        map_sp_off: p.map_sp_off,
                        ret_sp_off: p.ret_sp_off,
                        ret_delta: p.ret_delta,
                        ..spec
                    };
                    plan.probes.push(base(
                        spec,
                        p.insn.address,
                        p.insn.text,
                        format!("first emulated instruction of the path for bucket arrays of 32 KiB or more; map read from {caller}'s frame, other callers not counted"),
                        false,
                        true,
                    ));
                }
            }
        }
        for (group, what) in [
            (hooks::Group::Create, "map creation"),
            (hooks::Group::Grow, "map growth"),
            (hooks::Group::GcSweep, "GC cycle ends"),
        ] {
            let wanted: Vec<&str> = table
                .iter()
                .filter(|h| h.group == group)
                .map(|h| h.function)
                .collect();
            if !plan
                .probes
                .iter()
                .any(|p| wanted.contains(&p.function.as_str()))
            {
                let mut functions: Vec<&str> = wanted.clone();
                functions.dedup();
                return Err(PlanError::MissingEssential {
                    what,
                    functions: functions.join(", "),
                    go_version: info.go_version.raw.clone(),
                });
            }
        }
        let max = tracer_common::MAX_PROBES;
        if plan.probes.len() > max as usize {
            return Err(PlanError::TooMany {
                count: plan.probes.len(),
                max,
            });
        }
        Ok(plan)
    }
}

impl ProbePlan {
    fn ret_site_probes(
        &mut self,
        info: &BinaryInfo,
        f: &Func,
        spec: ProbeSpec,
        base: &dyn Fn(ProbeSpec, u64, String, String, bool, bool) -> PlannedProbe,
    ) {
        let sites = disasm::ret_sites(info, f);
        if sites.is_empty() {
            self.skipped.push(SkippedProbe {
                function: f.name.clone(),
                reason: "no RET site found by disassembly".to_owned(),
            });
        }
        for s in sites {
            let why = if s.text.starts_with("ret") {
                "RET site (return value in RAX/R0); single-stepped, ~4-15 µs/hit"
            } else {
                "tail-call jump out of the function; single-stepped, ~4-15 µs/hit"
            };
            self.probes
                .push(base(spec, s.address, s.text, why.to_owned(), true, false));
        }
    }
}

/// Write-path functions present in the binary (`mapassign*`, `mapdelete*`,
/// `mapclear`, Swiss `(*Map).Delete`/`Clear`). Not probed by default.
#[must_use]
pub fn write_path_functions(info: &BinaryInfo) -> Vec<&Func> {
    hooks::WRITE_PATH
        .iter()
        .filter_map(|n| info.func_by_name(n))
        .collect()
}
