//! `mapleak-trace`: command line. Parses arguments, calls the library, maps
//! errors to exit codes: 0 ok (a closed pipe is not an error), 2 usage
//! error, 3 cannot trace (or inspect): nothing was attached, 4 the trace
//! failed after attaching (the JSON report was still written if it could
//! be).
use std::{path::PathBuf, process::ExitCode, time::Duration};

use anyhow::{Context as _, Result};
use clap::{CommandFactory as _, Parser, Subcommand};
use mapleak::{app, color, doctor, generate, inspect::BinaryInfo, inspect_cmd, progress};

#[derive(Parser)]
#[command(
    name = "mapleak-trace",
    version,
    about = "Find Go maps that keep growing in a running process (eBPF, no restart, no code change)",
    after_help = "Tracing needs root (or CAP_BPF, CAP_PERFMON, CAP_SYS_PTRACE); `mapleak-trace doctor` says what is missing.\n\
A verdict needs at least three samples: GC cycles, or timer samples every --interval when cycles are rarer.\n\n\
Examples:\n  sudo mapleak-trace --pid 1234\n  sudo mapleak-trace -p 1234 --duration 2m --json report.json\n  mapleak-trace inspect ./server\n\n\
Environment: MAPLEAK_NO_UPROBE_MULTI=1 attaches one perf link per probe (the pre-6.6 path);\n\
MAPLEAK_GC_PROBE=1 probes runtime.gcSweep even where the GC counters can be read (the fallback path);\n\
MAPLEAK_DEBUG_TIMING=1 prints sample, GC event and governor timings to stderr.",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    #[command(flatten)]
    trace: TraceArgs,
    /// Colour the text output: auto (only a terminal, and only while
    /// NO_COLOR is unset or empty), always, never. JSON is never coloured.
    /// With a subcommand, give it after the subcommand's name.
    #[arg(long, global = true, value_enum, value_name = "WHEN", default_value_t = color::ColorChoice::Auto)]
    color: color::ColorChoice,
}

#[derive(clap::Args, Clone)]
struct TraceArgs {
    /// Process to trace (repeat for several).
    #[arg(long = "pid", short = 'p', value_name = "PID")]
    pids: Vec<u32>,
    /// Stop after this long (e.g. 30s, 2m); default: until Ctrl-C, SIGTERM or the target exits.
    #[arg(long, short = 'd', value_parser = parse_positive_duration)]
    duration: Option<Duration>,
    /// Live view refresh interval.
    #[arg(long, default_value = "2s", value_parser = parse_positive_duration)]
    interval: Duration,
    /// Write the report as JSON (schema mapleak-trace/report/v2, see
    /// docs/report-schema.md) to FILE, or `-` for stdout.
    #[arg(long, value_name = "FILE|-")]
    json: Option<String>,
    /// Write the maps as a pprof profile (gzipped profile.proto) to FILE:
    /// maps, bytes, entries and growth by creation stack, never-released
    /// keys by insert site. Read it with `go tool pprof -top FILE`.
    #[arg(long, value_name = "FILE")]
    pprof: Option<String>,
    /// Maps shown in the text report.
    #[arg(long, default_value_t = 10)]
    top: usize,
    /// What tracing may cost, in percent of one CPU: the probes' cost to the
    /// target and the tracer process's own CPU, in one budget. The governed
    /// probes (creation, small-map growth) are paused and write-path windows
    /// sized to stay within it, and the tracer spaces out its own reads;
    /// only probes bounded by the GC's pace or by map memory stay always on.
    /// Per process with `--pid`; with `--all`, for the whole node, split
    /// among the processes in proportion to the CPU each uses. 100 (a whole
    /// CPU) lifts the limit for a process: its cost is still reported.
    #[arg(long, value_name = "PERCENT", default_value_t = tracer_common::governor::DEFAULT_BUDGET_PCT, value_parser = parse_budget)]
    overhead_budget: f64,
    /// Show retained map keys whole in the report. By default a string key
    /// shows a short prefix and a hash: keys are often secrets (session tokens).
    #[arg(long)]
    show_keys: bool,
    /// List every tracked map in full in the report. By default the report
    /// details growing and bloated maps and the 20 largest others, and
    /// counts the rest by type and creation site (`map_groups`).
    #[arg(long)]
    all_maps: bool,
    /// Print the eBPF programs' own diagnostics to stderr, as `bpf: ` lines:
    /// failed reads of target memory, a full event ring buffer, a probe hit
    /// in a process with no configuration, each GC cycle. Off by default:
    /// the kernel's verifier then removes the logging code from the programs.
    #[arg(long)]
    bpf_log: bool,
    #[command(flatten)]
    fleet: FleetArgs,
}

/// Node-wide mode and the HTTP endpoint.
#[derive(clap::Args, Clone)]
struct FleetArgs {
    /// Trace every Go process on the host that the tracer may trace, and
    /// those that start later (found within about a second); processes that
    /// exit are let go of. Runs until Ctrl-C or SIGTERM (or --duration).
    #[arg(long, conflicts_with = "pids")]
    all: bool,
    /// With --all: only executables whose path matches GLOB (`*`, `?`,
    /// `[a-z]`; a GLOB without `/` also matches the file name). Repeatable.
    #[arg(long = "exe", value_name = "GLOB", requires = "all")]
    exe: Vec<String>,
    /// With --all: never executables whose path matches GLOB. Repeatable.
    #[arg(long = "exclude-exe", value_name = "GLOB", requires = "all")]
    exclude_exe: Vec<String>,
    /// Serve OpenMetrics at http://IP:PORT/metrics and the pprof profile at
    /// /debug/pprof/mapleak (e.g. 127.0.0.1:9464; a numeric address).
    #[arg(long, value_name = "IP:PORT")]
    metrics_addr: Option<std::net::SocketAddr>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Trace processes (the default command).
    Trace(TraceArgs),
    /// What would be probed in a Go binary, and how (no root needed).
    Inspect {
        /// The Go binary.
        binary: Option<PathBuf>,
        /// Inspect the executable of a running process instead.
        #[arg(long, short = 'p', value_name = "PID")]
        pid: Option<u32>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Can this kernel and this user trace? Says what to do for each miss.
    Doctor,
    /// Shell completions or man pages, for packagers.
    #[command(subcommand)]
    Generate(generate::What),
}

fn parse_budget(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .trim_end_matches('%')
        .parse()
        .map_err(|_| format!("not a number: {s:?} (a percentage of one CPU, e.g. 1 or 0.5)"))?;
    if !(v > 0.0 && v <= 100.0) {
        return Err(format!(
            "{s}: the budget is a percentage of one CPU above 0 and at most 100 (100 lifts the limit)"
        ));
    }
    Ok(v)
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s
        .find(|c: char| c.is_ascii_alphabetic())
        .map_or((s, "s"), |i| s.split_at(i));
    let v: f64 = num
        .parse()
        .map_err(|_| format!("not a duration: {s:?} (try 30s, 2m, 500ms)"))?;
    let secs = match unit {
        "ms" => v / 1000.0,
        "s" => v,
        "m" => v * 60.0,
        "h" => v * 3600.0,
        _ => return Err(format!("unknown unit in {s:?} (use ms, s, m or h)")),
    };
    if !(secs.is_finite() && secs >= 0.0) {
        return Err(format!("not a duration: {s:?}"));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn parse_positive_duration(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d < Duration::from_millis(1) {
        return Err(format!("{s:?}: must be at least 1ms (try 2s)"));
    }
    Ok(d)
}

/// A command line that asks for nothing runnable (exit code 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Usage(String);

fn trace(a: &TraceArgs) -> Result<()> {
    if a.pids.is_empty() && !a.fleet.all {
        return Err(Usage(
            "nothing to trace: give --pid PID or --all (see --help; `mapleak-trace inspect` and `doctor` need no pid)"
                .to_owned(),
        )
        .into());
    }
    if let Some(msg) = doctor::failure_message(&doctor::checks()) {
        return Err(app::TraceError::CannotTrace(anyhow::anyhow!(msg)).into());
    }
    // The same pid twice would attach every probe twice.
    let mut pids = a.pids.clone();
    pids.sort_unstable();
    pids.dedup();
    app::run(&app::TraceOptions {
        pids,
        duration: a.duration,
        interval: a.interval,
        json: a.json.clone(),
        pprof: a.pprof.clone(),
        top: a.top,
        overhead_budget: a.overhead_budget / 100.0,
        show_keys: a.show_keys,
        all_maps: a.all_maps,
        bpf_log: a.bpf_log,
        all: a.fleet.all.then(|| app::FleetOptions {
            include: a.fleet.exe.clone(),
            exclude: a.fleet.exclude_exe.clone(),
        }),
        metrics_addr: a.fleet.metrics_addr,
    })?;
    Ok(())
}

fn run() -> Result<()> {
    let cli = Cli::parse();
    color::set_choice(cli.color);
    match cli.cmd {
        None => trace(&cli.trace),
        Some(Cmd::Trace(a)) => trace(&a),
        Some(Cmd::Doctor) => {
            let mut c = doctor::checks();
            if doctor::failure_message(&c).is_none() {
                c.extend(doctor::program_checks());
            }
            if !doctor::print(&mut std::io::stdout(), &c, color::Palette::stdout())? {
                std::process::exit(2);
            }
            Ok(())
        }
        Some(Cmd::Generate(what)) => {
            for f in generate::run(&what, Cli::command(), &mut std::io::stdout().lock())? {
                eprintln!("wrote {}", f.display());
            }
            Ok(())
        }
        Some(Cmd::Inspect { binary, pid, json }) => {
            // The path to open, and the one to show (`/proc/N/exe` opens the
            // very file the process runs; its link target names it).
            let (path, shown) = match (binary, pid) {
                (Some(b), None) => (b.clone(), b),
                (None, Some(p)) => {
                    let t = mapleak::discover::Target::discover(p)?;
                    (t.exe, PathBuf::from(t.exe_display))
                }
                _ => return Err(Usage("give either a BINARY or --pid PID".to_owned()).into()),
            };
            // The error names the path already (for a pid, `/proc/N/exe`:
            // the executable's name goes first).
            let reading = progress::Progress::reading(&path, &shown);
            let mut info = match pid {
                Some(p) => BinaryInfo::open(&path)
                    .with_context(|| format!("pid {p} ({})", shown.display()))?,
                None => BinaryInfo::open(&path)?,
            };
            drop(reading);
            info.path = shown;
            inspect_cmd::run(&info, pid, json, &mut std::io::stdout())?;
            // The report says why no probe can be placed; the exit code too
            // (3: this binary cannot be traced).
            mapleak::plan::ProbePlan::build(&info)
                .map(|_| ())
                .with_context(|| format!("{} cannot be traced", info.path.display()))
        }
    }
}

/// 2 usage, 3 nothing attached, 4 failed after attaching.
fn exit_code(e: &anyhow::Error) -> u8 {
    if e.downcast_ref::<Usage>().is_some() {
        return 2;
    }
    match e.downcast_ref::<app::TraceError>() {
        Some(app::TraceError::AfterAttach(_)) => 4,
        _ => 3,
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // A closed pipe ends `inspect | head` normally; a JSON report
            // that could not be written (`--json -` to a closed pipe) is a
            // failure.
            let lost_report = matches!(
                e.downcast_ref::<app::TraceError>(),
                Some(app::TraceError::AfterAttach(_))
            );
            if !lost_report
                && e.chain().any(|c| {
                    c.downcast_ref::<std::io::Error>()
                        .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
                })
            {
                return ExitCode::SUCCESS;
            }
            eprintln!("mapleak-trace: error: {e:#}");
            ExitCode::from(exit_code(&e))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_say_how_far_it_got() {
        assert_eq!(exit_code(&Usage("x".into()).into()), 2);
        let cannot = app::TraceError::CannotTrace(anyhow::anyhow!("no such pid"));
        assert_eq!(exit_code(&cannot.into()), 3);
        let after = app::TraceError::AfterAttach(anyhow::anyhow!("disk full"));
        assert_eq!(exit_code(&after.into()), 4);
        // Anything else (inspect on a bad file): nothing was attached.
        assert_eq!(exit_code(&anyhow::anyhow!("corrupt")), 3);
    }

    /// Every `--long` option of `cmd` and its subcommands, with the
    /// command path (`help` and `version` are clap's own).
    fn long_options(cmd: &clap::Command, path: &str, out: &mut Vec<(String, String)>) {
        for a in cmd.get_arguments() {
            if let Some(l) = a.get_long().filter(|l| !matches!(*l, "help" | "version")) {
                out.push((path.to_owned(), l.to_owned()));
            }
        }
        for sub in cmd.get_subcommands() {
            long_options(sub, &format!("{path}-{}", sub.get_name()), out);
        }
    }

    /// The pages as roff writes `--name`: `\-\-name`.
    fn roff_flag(long: &str) -> String {
        format!("\\-\\-{}", long.replace('-', "\\-"))
    }

    #[test]
    fn the_man_pages_mention_every_option() {
        let cmd = Cli::command();
        let mut opts = Vec::new();
        long_options(&cmd, "mapleak-trace", &mut opts);
        assert!(opts.len() > 15, "{opts:?}");
        let dir = tempfile::tempdir().unwrap();
        let what = generate::What::Man {
            out: Some(dir.path().to_owned()),
        };
        let files = generate::run(&what, Cli::command(), &mut Vec::new()).unwrap();
        for (path, long) in &opts {
            let page = dir.path().join(format!("{path}.1"));
            assert!(files.contains(&page), "no page {}", page.display());
            let text = std::fs::read_to_string(&page).unwrap();
            assert!(
                text.contains(&roff_flag(long)),
                "{} does not mention --{long}",
                page.display()
            );
        }
        // The page on stdout: every option of the trace command line, and
        // each subcommand by name.
        let mut page = Vec::new();
        generate::run(&generate::What::Man { out: None }, cmd, &mut page).unwrap();
        let page = String::from_utf8(page).unwrap();
        for (_, long) in opts.iter().filter(|(p, _)| p == "mapleak-trace") {
            assert!(page.contains(&roff_flag(long)), "--{long} missing");
        }
        for sub in ["trace", "inspect", "doctor", "generate"] {
            assert!(
                page.contains(&format!("mapleak\\-trace\\-{sub}(1)")),
                "{sub}"
            );
        }
    }

    #[test]
    fn bash_completion_names_the_subcommands() {
        let mut out = Vec::new();
        let what = generate::What::Completions {
            shell: clap_complete::Shell::Bash,
            out: None,
        };
        generate::run(&what, Cli::command(), &mut out).unwrap();
        let script = String::from_utf8(out).unwrap();
        assert!(
            script.contains("complete -F _mapleak__trace -o")
                && script.contains("default mapleak-trace\n"),
            "{script}"
        );
        for sub in Cli::command()
            .get_subcommands()
            .map(clap::Command::get_name)
        {
            assert!(
                script.contains(&format!("cmd=\"mapleak__trace__subcmd__{sub}\"")),
                "bash completion misses {sub}"
            );
        }
        assert!(script.contains("--pid") && script.contains("--color"));
    }

    #[test]
    fn color_is_accepted_after_a_subcommand_or_with_trace_options() {
        for args in [
            &["mapleak-trace", "doctor", "--color", "never"][..],
            &["mapleak-trace", "inspect", "x", "--color", "never"],
            &["mapleak-trace", "--pid", "1", "--color", "always"],
        ] {
            let cli = Cli::try_parse_from(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
            assert_ne!(cli.color, color::ColorChoice::Auto, "{args:?}");
        }
        assert!(Cli::try_parse_from(["mapleak-trace", "--color", "blue"]).is_err());
    }

    #[test]
    fn flags_are_validated() {
        assert!(parse_positive_duration("0s").is_err());
        assert!(parse_positive_duration("0").is_err());
        assert_eq!(parse_positive_duration("2s"), Ok(Duration::from_secs(2)));
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("nan").is_err());
        assert!(parse_budget("nan").is_err());
        assert!(parse_budget("0").is_err());
        assert!(parse_budget("-1").is_err());
        assert!(parse_budget("101").is_err());
        assert_eq!(parse_budget("1%"), Ok(1.0));
    }
}
