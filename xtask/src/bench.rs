//! `cargo xtask bench`: measures what mapleak-trace costs a Go program, and
//! writes `docs/benchmarks.md` (or `target/bench/smoke.md` with `--smoke`).
//!
//! The workload is `testdata/go/bench` (one program, several modes), built
//! here into `target/bench/` with Go 1.23 (hmap) and Go 1.26 (Swiss maps),
//! plus a stripped copy of each for the per-hit microbenchmark
//! (`binaries`). The parts (`parts`; their sections of the report are in
//! `report`):
//!
//! 1. Throughput of `mapwrite` (12 s runs) and `http` (20 s): untraced, under
//!    mapleak-trace in default mode (its overhead governor: a token bucket
//!    that pauses the creation probes and opens write-path windows), and
//!    under bpftrace with a counting uprobe on the entry of every function
//!    default mode keeps attached. Runs alternate (the order rotates with
//!    each repetition); the loss is the median of the per-repetition ratios
//!    traced/untraced, and the budget check compares it with the budget
//!    plus 1 % (`report::throughput`).
//!    Part 1b: throughput in alternating phases of one process, for one
//!    workload or the whole suite (`parts::phases`, `suite`). Part 1c: the
//!    same with 20 processes traced at once by one `mapleak-trace --all`
//!    (`parts::fleet`).
//! 2. Cost per probe hit by placement, on `runtime.mapassign_fast64` (which
//!    default mode probes only in write windows): bpftrace at the entry (`CMPQ`,
//!    single-stepped), at the `JBE` and at the `PUSHQ BP` (both emulated by
//!    the kernel). cost/hit = (t_traced - t_untraced) / hits.
//!    Part 2b: cost per map creation under each tracer.
//! 3. The tracer's own CPU and peak RSS with 100,000 live grown maps.
//!
//! Every run writes its raw figures to `target/bench/results.json`
//! (`smoke-results.json` with `--smoke`, `partial-results.json` for a
//! partial run) and renders the report from them (`record`). With `--only
//! PART --merge`, the figures of the parts not measured now come from the
//! previous results.json: the parts measured now replace theirs in it, and
//! the whole report is rendered from the merged file, which is written back.
//!
//! Every process started here is a child of this one, is waited for with a
//! deadline and is killed by its pid (never by name) when it outlives it,
//! also when a step fails (`proc`). Targets only listen on 127.0.0.1.
//! Timing is reported, never asserted.
use std::{
    ffi::OsString,
    fmt::Write as _,
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use serde_json::Value;
use tracer_common::governor as gov;

mod accounting;
mod binaries;
mod machine;
mod parts;
mod proc;
mod record;
mod report;
mod runner;
mod stats;
mod suite;

use binaries::prepare;
use machine::{cmd_out, loadavg};
use parts::{
    create_cost::{CreateSample, run_create_cost},
    manymaps::{ManyResult, run_manymaps},
    phases::{self, Phase},
    probe_cost::{CostSample, run_probe_cost},
    throughput::{TpSample, run_throughput},
};
use record::Provenance;
use report::Ctx;
use runner::Bench;

/// Arguments of `cargo xtask bench`.
#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// A short run that only checks the benchmark still works (CI): ~1 s
    /// runs, one repetition, small workloads; writes target/bench/smoke.md.
    #[arg(long)]
    pub(crate) smoke: bool,
    /// Repetitions of each measurement (default 5; 1 with --smoke).
    #[arg(long)]
    pub(crate) reps: Option<usize>,
    /// Length of each throughput run in seconds, both workloads (default:
    /// mapwrite 12, http 20, long enough for the overhead governor's initial
    /// 5 s bucket not to dominate; 1 with --smoke).
    #[arg(long)]
    pub(crate) seconds: Option<f64>,
    /// The mapleak-trace binary to measure (default: built here with cargo,
    /// release profile; debug profile with --smoke).
    #[arg(long)]
    pub(crate) tracer: Option<PathBuf>,
    /// Traced phases per workload and Go release in the alternating-phases
    /// measurement (part 1b; default 20, 7 with `--workload suite`; 2 with
    /// --smoke), and per Go release in part 1c (default 10; 1 with --smoke).
    #[arg(long)]
    pub(crate) rounds: Option<usize>,
    /// Length of each phase (traced and untraced) of parts 1b and 1c, in
    /// seconds (default 10, 6 with `--workload suite`; 1.5 with --smoke).
    #[arg(long)]
    pub(crate) phase_seconds: Option<f64>,
    /// Parts 1b and 1c: seconds after the tracer attaches (1c: every
    /// process) before its traced phase is measured (default 5, the
    /// governor's bucket; 0.5 with --smoke).
    /// Those first seconds are measured apart (the startup loss).
    #[arg(long)]
    pub(crate) attach_settle_seconds: Option<f64>,
    /// Part 1c (fleet): target processes traced at once by one
    /// `mapleak-trace --all` (default 20; 3 with --smoke). Its rounds, phase
    /// length and settling delay are `--rounds` (default 10; 1 with
    /// --smoke), `--phase-seconds` and `--attach-settle-seconds` (as part 1b).
    #[arg(long)]
    pub(crate) fleet_procs: Option<usize>,
    /// Part 3 (manymaps): live maps per run, one run per count and Go
    /// release (default 100000,1000000; 10000 with --smoke).
    #[arg(long, value_delimiter = ',')]
    pub(crate) many_maps: Vec<u64>,
    /// Only these parts: throughput, phases, fleet, twin, probe-cost,
    /// create-cost, manymaps, search-cost (default: all).
    /// A partial run writes target/bench/partial.md unless --out is given.
    #[arg(long, value_delimiter = ',')]
    pub(crate) only: Vec<String>,
    /// Only these Go toolchains (default: go1.23.12,go1.26.8).
    #[arg(long, value_delimiter = ',')]
    pub(crate) go: Vec<String>,
    /// Where to write the report.
    #[arg(long)]
    pub(crate) out: Option<PathBuf>,
    /// With --only: replace the parts measured now in the last record of
    /// figures (target/bench/results.json; smoke-results.json with --smoke),
    /// write it back, and render docs/benchmarks.md (or --out) from it with
    /// every part, each saying what run measured it (or that none did).
    #[arg(long, requires = "only")]
    pub(crate) merge: bool,
    /// Part 1b's workload (xtask/src/bench/suite.rs): `http` (GET, a
    /// bounded counter map), `json` (POSTed JSON documents decoded into
    /// `map[string]any`), `permaps10`/`100`/`1000` (a map of that many keys
    /// built per request), `mapwrite`, `gcheavy` (100+ GC cycles/s),
    /// `creators` (maps created on every CPU), `livemaps` (100,000 live
    /// maps), or `suite` (alias `all`): every one in turn. Each grows a
    /// planted map the tracer must report.
    #[arg(long, default_value = "http", value_parser = suite::NAMES)]
    pub(crate) workload: String,
    /// Parts 1h (twin) and 1c (fleet) as a control: no tracer is started,
    /// and the phases that would be traced are measured untraced, at the
    /// same length and after the same settling pause (fleet: without the
    /// attach time before it). What the method reports then is what it
    /// reports for a tracer that costs nothing (an A/A run).
    #[arg(long)]
    pub(crate) no_tracer: bool,
}

/// `--overhead-budget` given to mapleak-trace (its default, in percent of
/// one CPU), and the margin the budget check allows on top of it: "the
/// target loses no more than the budget plus 1 % throughput".
const BUDGET_PCT: f64 = tracer_common::governor::DEFAULT_BUDGET_PCT;
const BUDGET_MARGIN_PCT: f64 = 1.0;

/// What mapleak-trace's governor debits per probe hit, in µs
/// (`tracer_common::governor`: EMULATED_HIT_S, SINGLE_STEP_HIT_S,
/// WRITE_HIT_S), the size of its bucket in seconds of budget (BURST_S),
/// the longest write window (WINDOW_MAX) and the least gap between two
/// (WINDOW_GAP): quoted in the report.
const GOV_EMULATED_US: f64 = gov::EMULATED_HIT_S / 1e-6;
const GOV_SINGLE_STEP_US: f64 = gov::SINGLE_STEP_HIT_S / 1e-6;
const GOV_WRITE_US: f64 = gov::WRITE_HIT_S / 1e-6;
const GOV_BURST_S: f64 = gov::BURST_S;
const GOV_WINDOW_MAX_S: f64 = gov::WINDOW_MAX.as_secs_f64();
const GOV_WINDOW_GAP_S: f64 = gov::WINDOW_GAP.as_secs_f64();

/// Go releases measured: one with the bucket hash map, one with Swiss maps.
const TOOLCHAINS: [(&str, &str); 2] = [("go1.23.12", "hmap"), ("go1.26.8", "swiss")];

/// The parts, in the report's order (`--only`).
const PARTS: [&str; 8] = [
    "throughput",
    "phases",
    "fleet",
    "twin",
    "probe-cost",
    "create-cost",
    "manymaps",
    "search-cost",
];

/// Sizes and lengths of one bench run.
struct Settings {
    smoke: bool,
    reps: usize,
    /// Length of every throughput run (--seconds), else per workload.
    seconds: Option<f64>,
    /// Pause between the tracer reporting it attached and the measured part
    /// (the same pause in untraced runs).
    settle: Duration,
    /// Part 1b: traced phases per workload and Go release, and the length
    /// of each phase (traced and untraced).
    phase_rounds: usize,
    phase: Duration,
    /// Part 1b: from attach to the traced phase's start.
    phase_settle: Duration,
    /// Part 1b's workloads (one, or the suite).
    phase_workloads: Vec<&'static suite::Workload>,
    /// Parts 1h and 1c: `--no-tracer`, every phase untraced (a control).
    no_tracer: bool,
    /// Part 1c: processes traced at once, traced phases, phase length and
    /// settling delay after every process is attached.
    fleet_procs: usize,
    fleet_rounds: usize,
    fleet_phase: Duration,
    fleet_settle: Duration,
    /// mapassign_fast64 calls per microbenchmark run.
    micro_ops: u64,
    /// Maps created per creation-cost run.
    create_ops: u64,
    /// manymaps: live maps per run, and how long the tracer watches 100,000
    /// of them (see [`Settings::many_trace_s`]).
    many_n: Vec<u64>,
    many_trace_base_s: u64,
    /// Part 3b: the target's live heap (MiB) and sync.Map entries, and the
    /// tracer's --duration.
    search_heap_mib: u64,
    search_sync_entries: u64,
    search_trace_s: u64,
    /// How long to wait for other tracers (another engineer's tests) to end
    /// before a measured run, and in all (the bench's run time stays
    /// bounded however busy the machine is).
    wait_idle: Duration,
    wait_idle_total: Duration,
    /// Runs made again because other processes were busy, at most, in all.
    retries_total: usize,
}

impl Settings {
    fn new(args: &Args) -> Settings {
        let smoke = args.smoke;
        let phase_workloads = suite::select(&args.workload);
        // The suite's defaults keep a full run (9 workloads, 2 Go releases)
        // within about 35 minutes: each workload's run is the warm-up (3 s),
        // rounds x (2 phases + about 2 s for the tracer's startup and exit
        // and the gap) and a last untraced phase, 107 s with 7 rounds of
        // 6 s phases. 7 rounds give both the loss and the noise floor (6
        // inner untraced phases) a 95 % interval.
        let whole_suite = phase_workloads.len() > 1;
        Settings {
            smoke,
            reps: args.reps.unwrap_or(if smoke { 1 } else { 5 }).max(1),
            seconds: args.seconds.or(smoke.then_some(1.0)).map(|x| x.max(0.2)),
            settle: Duration::from_millis(if smoke { 300 } else { 1000 }),
            phase_rounds: args
                .rounds
                .unwrap_or(match (smoke, whole_suite) {
                    (true, _) => 2,
                    (false, true) => 7,
                    (false, false) => 20,
                })
                .max(1),
            phase: Duration::from_secs_f64(
                args.phase_seconds
                    .unwrap_or(match (smoke, whole_suite) {
                        (true, _) => 1.5,
                        (false, true) => 6.0,
                        (false, false) => 10.0,
                    })
                    .max(1.0),
            ),
            phase_settle: Duration::from_secs_f64(
                args.attach_settle_seconds
                    .unwrap_or(if smoke { 0.5 } else { 5.0 })
                    .max(0.0),
            ),
            phase_workloads,
            no_tracer: args.no_tracer,
            fleet_procs: args
                .fleet_procs
                .unwrap_or(if smoke { 3 } else { 20 })
                .max(1),
            fleet_rounds: args.rounds.unwrap_or(if smoke { 1 } else { 10 }).max(1),
            fleet_phase: Duration::from_secs_f64(
                args.phase_seconds
                    .unwrap_or(if smoke { 1.5 } else { 10.0 })
                    .max(1.0),
            ),
            fleet_settle: Duration::from_secs_f64(
                args.attach_settle_seconds
                    .unwrap_or(if smoke { 0.5 } else { 5.0 })
                    .max(0.0),
            ),
            micro_ops: if smoke { 20_000 } else { 300_000 },
            create_ops: if smoke { 10_000 } else { 100_000 },
            many_n: if args.many_maps.is_empty() {
                if smoke {
                    vec![10_000]
                } else {
                    vec![100_000, 1_000_000]
                }
            } else {
                args.many_maps.clone()
            },
            many_trace_base_s: if smoke { 3 } else { 20 },
            search_heap_mib: if smoke { 16 } else { 128 },
            search_sync_entries: if smoke { 10_000 } else { 200_000 },
            search_trace_s: if smoke { 4 } else { 20 },
            wait_idle: Duration::from_secs(if smoke { 0 } else { 120 }),
            wait_idle_total: Duration::from_secs(if smoke { 0 } else { 300 }),
            retries_total: if smoke { 0 } else { 12 },
        }
    }

    /// The tracer's `--duration` with `n` live maps: the base (20 s; 3 s
    /// with --smoke) for up to 100,000, and a second more per 10,000 maps
    /// beyond (1,000,000 maps: 110 s). Creating them traced takes about a
    /// minute then, and a sample reads at most 500 ms of maps and waits ten
    /// times that: the run lasts long enough to read every map a few times.
    fn many_trace_s(&self, n: u64) -> u64 {
        self.many_trace_base_s + n.saturating_sub(100_000) / 10_000
    }

    /// Length of one throughput run of `workload`.
    fn tp_seconds(&self, workload: &str) -> f64 {
        self.seconds.unwrap_or(match workload {
            // The governor starts with a full bucket (5 s of budget, 50 ms at
            // 1 %): over 12 s that first burst is 0.4 % of the run, and two
            // or three refills follow, which is what the budget check is about.
            "mapwrite" => 12.0,
            // http spreads the probes' cost over both CPUs, so the first
            // burst weighs more against the 1 % goal there; 20 s also
            // averages over the other tenants' slowdowns of a few seconds.
            _ => 20.0,
        })
    }
}

fn build_tracer(root: &Path, release: bool) -> Result<PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root)
        .arg("build")
        .arg("-p")
        .arg("tracer-user");
    if release {
        cmd.arg("--release");
    }
    eprintln!("bench: {cmd:?}");
    let st = cmd.status().context("running cargo build")?;
    if !st.success() {
        bail!("cargo build -p tracer-user failed: {st}");
    }
    Ok(root
        .join("target")
        .join(if release { "release" } else { "debug" })
        .join("mapleak-trace"))
}

pub(crate) fn run(args: &Args) -> Result<()> {
    let started = Instant::now();
    let s = Settings::new(args);
    for p in &args.only {
        if !PARTS.contains(&p.as_str()) {
            bail!("unknown part {p:?} for --only (one of {PARTS:?})");
        }
    }
    let want = |p: &str| args.only.is_empty() || args.only.iter().any(|o| o == p);
    let measured: Vec<&'static str> = PARTS.iter().copied().filter(|p| want(p)).collect();
    let root = crate::root();
    let out_dir = root.join("target/bench");
    fs::create_dir_all(&out_dir)?;
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("cargo xtask bench attaches uprobes: run it as root");
    }
    if cmd_out("bpftrace", &["--version"]).is_none() {
        bail!("bpftrace not found (scripts/setup.sh installs it)");
    }
    let raw_name = if s.smoke {
        "smoke-results.json"
    } else if args.merge || (args.only.is_empty() && args.go.is_empty()) {
        "results.json"
    } else {
        // A partial run does not replace the record of figures.
        "partial-results.json"
    };
    // Read before anything is measured: an unreadable record fails fast.
    let earlier = if args.merge {
        record::load(&out_dir.join(raw_name))?
    } else {
        None
    };
    let (tracer, profile) = match &args.tracer {
        Some(t) => (t.clone(), "given with --tracer".to_owned()),
        None => {
            let release = !s.smoke;
            (
                build_tracer(&root, release)?,
                if release { "release" } else { "debug" }.to_owned(),
            )
        }
    };
    if !tracer.exists() {
        bail!("{} does not exist", tracer.display());
    }
    let mut gos = Vec::new();
    for (tag, imp) in TOOLCHAINS {
        if args.go.is_empty() || args.go.iter().any(|g| g == tag) {
            gos.push(prepare(&root, &out_dir, &tracer, tag, imp)?);
        }
    }
    if gos.is_empty() {
        bail!("no Go toolchain selected (known: {TOOLCHAINS:?})");
    }
    let load_before = loadavg();
    let mut b = Bench::new(s, root.clone(), out_dir.clone());
    if args.merge && earlier.is_none() {
        let msg = format!(
            "--merge: there is no target/bench/{raw_name} yet, so the parts not measured now have no figures"
        );
        b.note(msg);
    }
    let tp = if want("throughput") {
        run_throughput(&mut b, &gos, &tracer)?
    } else {
        Vec::new()
    };
    let phases = if want("phases") {
        phases::run(&mut b, &gos, &tracer)?
    } else {
        Vec::new()
    };
    let fleet = if want("fleet") {
        parts::fleet::run(&mut b, &gos, &tracer)?
    } else {
        Vec::new()
    };
    let twin = if want("twin") {
        parts::twin::run(&mut b, &gos, &tracer)?
    } else {
        Vec::new()
    };
    let cost = if want("probe-cost") {
        run_probe_cost(&mut b, &gos)?
    } else {
        Vec::new()
    };
    let create = if want("create-cost") {
        run_create_cost(&mut b, &gos, &tracer)?
    } else {
        Vec::new()
    };
    let many = if want("manymaps") {
        run_manymaps(&mut b, &gos, &tracer)?
    } else {
        Vec::new()
    };
    let search = if want("search-cost") {
        parts::search_cost::run(&mut b, &gos, &tracer)?
    } else {
        Vec::new()
    };
    let load_after = loadavg();
    let took = started.elapsed();
    // `cmd_out` is None for an empty output: a clean tree.
    let dirty = cmd_out(
        "git",
        &[
            "-C",
            &root.display().to_string(),
            "status",
            "--porcelain",
            "--untracked-files=no",
        ],
    )
    .map_or_else(String::new, |_| " + uncommitted changes".to_owned());
    let machine = machine::machine();
    let ctx = Ctx {
        cmdline: cmdline(&b.s, args),
        merge: args.merge,
        measured: measured.clone(),
        raw_name,
        tracer_path: tracer.clone(),
        profile,
        load_before,
        load_after,
        took,
        commit: cmd_out(
            "git",
            &[
                "-C",
                &root.display().to_string(),
                "rev-parse",
                "--short",
                "HEAD",
            ],
        )
        .map_or_else(|| "?".to_owned(), |c| c + &dirty),
        machine,
    };
    let res = Results {
        tp,
        phases,
        fleet,
        twin,
        cost,
        create,
        many,
        search,
    };
    // The record first; the report is rendered from it.
    let this_run = Provenance {
        cmdline: ctx.cmdline.clone(),
        date: ctx
            .machine
            .get("date")
            .cloned()
            .unwrap_or_else(|| "?".to_owned()),
        commit: ctx.commit.clone(),
        took_s: took.as_secs_f64(),
        bpftrace: ctx.machine.get("bpftrace").cloned().unwrap_or_default(),
    };
    let mut raw = record::to_json(&gos, &res, &measured, &this_run);
    if args.merge {
        raw = record::merge(earlier.as_ref().unwrap_or(&Value::Null), &raw, &measured);
    }
    let raw_path = out_dir.join(raw_name);
    fs::write(&raw_path, serde_json::to_vec_pretty(&raw)?)
        .with_context(|| format!("writing {}", raw_path.display()))?;
    let md = report::render(&b, &ctx, &record::parse(&raw));
    let out = match &args.out {
        Some(p) => p.clone(),
        None if b.s.smoke => out_dir.join("smoke.md"),
        None if args.merge => root.join("docs/benchmarks.md"),
        None if !args.only.is_empty() || !args.go.is_empty() => out_dir.join("partial.md"),
        None => root.join("docs/benchmarks.md"),
    };
    if let Some(dir) = out.parent() {
        fs::create_dir_all(dir)?;
    }
    fs::write(&out, md).with_context(|| format!("writing {}", out.display()))?;
    eprintln!(
        "bench: wrote {} and {} in {:.0} s",
        out.display(),
        raw_path.display(),
        took.as_secs_f64()
    );
    Ok(())
}

/// The command line this run stands for.
fn cmdline(s: &Settings, args: &Args) -> String {
    let mut cmdline = String::from("cargo xtask bench");
    if s.smoke {
        cmdline += " --smoke";
    }
    if let Some(r) = args.reps {
        let _ = write!(cmdline, " --reps {r}");
    }
    if let Some(r) = args.rounds {
        let _ = write!(cmdline, " --rounds {r}");
    }
    if let Some(x) = args.seconds {
        let _ = write!(cmdline, " --seconds {x}");
    }
    if let Some(x) = args.phase_seconds {
        let _ = write!(cmdline, " --phase-seconds {x}");
    }
    if let Some(x) = args.attach_settle_seconds {
        let _ = write!(cmdline, " --attach-settle-seconds {x}");
    }
    if let Some(n) = args.fleet_procs {
        let _ = write!(cmdline, " --fleet-procs {n}");
    }
    if args.workload != "http" {
        let _ = write!(cmdline, " --workload {}", args.workload);
    }
    if args.no_tracer {
        let _ = write!(cmdline, " --no-tracer");
    }
    if !args.many_maps.is_empty() {
        let n: Vec<String> = args.many_maps.iter().map(u64::to_string).collect();
        let _ = write!(cmdline, " --many-maps {}", n.join(","));
    }
    if !args.only.is_empty() {
        let _ = write!(cmdline, " --only {}", args.only.join(","));
    }
    if !args.go.is_empty() {
        let _ = write!(cmdline, " --go {}", args.go.join(","));
    }
    if args.merge {
        cmdline += " --merge";
    }
    cmdline
}

/// Everything measured (or, with --merge, kept from the record).
#[derive(Default)]
struct Results {
    tp: Vec<TpSample>,
    phases: Vec<Phase>,
    fleet: Vec<parts::fleet::FleetPhase>,
    twin: Vec<parts::twin::TwinPhase>,
    cost: Vec<CostSample>,
    create: Vec<CreateSample>,
    many: Vec<ManyResult>,
    search: Vec<parts::search_cost::SearchCost>,
}
