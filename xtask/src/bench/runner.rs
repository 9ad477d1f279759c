//! One measured run: the target started with `-wait`, the tracer (if any)
//! attached, the target told to go, and what both did meanwhile. Also what
//! is read from the target's output and the tracer's JSON report.
use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
    process::Command,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use serde_json::Value;

use super::{
    BUDGET_PCT, Settings,
    accounting::{
        children_cpu_s, children_sys_s, proc_cpu_s, proc_exited, proc_rss_bytes, system_busy_s,
    },
    proc::{Proc, foreign_tracers},
};

/// How a run is traced.
pub(super) enum Tracing {
    Untraced,
    /// `stop_target`: the target runs longer than `--duration`; stop it
    /// (SIGKILL) as soon as the tracer has exited.
    /// `budget_pct`: `--overhead-budget` (the default, [`BUDGET_PCT`],
    /// unless a part needs every probe on).
    Mapleak {
        exe: PathBuf,
        duration_s: u64,
        stop_target: bool,
        budget_pct: f64,
    },
    Bpftrace {
        program: String,
        unsafe_mode: bool,
    },
}

/// What one run measured.
pub(super) struct RunResult {
    /// `key value` lines printed by the bench program.
    pub(super) target: BTreeMap<String, String>,
    /// mapleak-trace's JSON report, and the size of the document it wrote
    /// (bytes).
    pub(super) report: Option<Value>,
    pub(super) report_bytes: u64,
    /// bpftrace's `@c` counts, by key (empty key for a plain `@c`).
    pub(super) counts: BTreeMap<String, u64>,
    /// The tracer's CPU time (user + system) when the measured part began
    /// (its startup), and during the measured part, from /proc.
    pub(super) tracer_cpu_startup_s: f64,
    pub(super) tracer_cpu_window_s: f64,
    /// Wall time from "go" to the target's exit.
    pub(super) window_s: f64,
    /// The target's CPU time in total, and in the kernel (uprobe traps and
    /// BPF programs run there), over its whole life.
    pub(super) target_cpu_s: f64,
    pub(super) target_sys_s: f64,
    /// CPU time other processes used meanwhile (user + system).
    pub(super) foreign_cpu_s: f64,
    /// The tracer's RSS and CPU time every 250 ms of the measured part:
    /// (s since go, bytes, CPU s).
    pub(super) tracer_rss: Vec<(f64, u64, f64)>,
}

impl RunResult {
    pub(super) fn num(&self, key: &str) -> Result<f64> {
        let v = self
            .target
            .get(key)
            .with_context(|| format!("bench printed no `{key}` (got {:?})", self.target))?;
        let first = v.split_whitespace().next().unwrap_or("");
        first
            .parse()
            .with_context(|| format!("`{key} {v}` is not a number"))
    }

    pub(super) fn bpf_hits(&self) -> u64 {
        self.counts.values().sum()
    }
}

/// One bench run: its settings, and what it noted about the machine.
pub(super) struct Bench {
    pub(super) s: Settings,
    pub(super) root: PathBuf,
    pub(super) out_dir: PathBuf,
    /// Runs started while other tracers were running.
    pub(super) contaminated: usize,
    pub(super) runs: usize,
    /// Other processes' CPU use during each kept run (CPU-s per s).
    pub(super) foreign: Vec<f64>,
    /// Runs made again because of it, and runs kept despite it.
    pub(super) retried: usize,
    pub(super) noisy: usize,
    /// Time spent waiting for other tracers to end.
    waited: Duration,
    pub(super) log: Vec<String>,
}

/// Other processes' CPU use (in CPUs) above which a run is made again.
pub(super) const FOREIGN_MAX: f64 = 0.2;

impl Bench {
    pub(super) fn new(s: Settings, root: PathBuf, out_dir: PathBuf) -> Bench {
        Bench {
            s,
            root,
            out_dir,
            contaminated: 0,
            runs: 0,
            foreign: Vec::new(),
            retried: 0,
            noisy: 0,
            waited: Duration::ZERO,
            log: Vec::new(),
        }
    }

    pub(super) fn note(&mut self, msg: String) {
        eprintln!("bench: {msg}");
        self.log.push(msg);
    }

    /// Waits (bounded) until no other tracer runs; counts the run as noisy
    /// if one still does.
    pub(super) fn wait_idle(&mut self) {
        let start = Instant::now();
        let mut others = foreign_tracers();
        let mut told = false;
        let limit = self
            .s
            .wait_idle
            .min(self.s.wait_idle_total.saturating_sub(self.waited));
        while !others.is_empty() && start.elapsed() < limit {
            if !told {
                eprintln!(
                    "bench: waiting up to {:?} for other tracers to finish: {others:?}",
                    self.s.wait_idle
                );
                told = true;
            }
            thread::sleep(Duration::from_secs(1));
            others = foreign_tracers();
        }
        self.waited += start.elapsed();
        self.runs += 1;
        if !others.is_empty() {
            self.contaminated += 1;
            eprintln!("bench: measuring while other tracers run: {others:?}");
        }
    }

    /// One run; outside --smoke, a run during which other processes used
    /// more than FOREIGN_MAX of a CPU is discarded and made again (twice at
    /// most).
    pub(super) fn run_once(
        &mut self,
        bin: &Path,
        args: &[String],
        tracing: &Tracing,
        budget: Duration,
    ) -> Result<RunResult> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let r = self.run_attempt(bin, args, tracing, budget)?;
            let busy = r.foreign_cpu_s / r.window_s;
            if self.s.smoke
                || attempt >= 3
                || self.retried >= self.s.retries_total
                || busy.is_nan()
                || busy <= FOREIGN_MAX
            {
                self.foreign.push(busy);
                if busy > FOREIGN_MAX {
                    self.noisy += 1;
                }
                return Ok(r);
            }
            self.retried += 1;
            let msg = format!(
                "other processes used {busy:.2} CPU during `{} {}`: measured again",
                bin.file_name()
                    .map_or(String::new(), |n| n.to_string_lossy().into_owned()),
                args.join(" ")
            );
            self.note(msg);
        }
    }

    fn run_attempt(
        &mut self,
        bin: &Path,
        args: &[String],
        tracing: &Tracing,
        budget: Duration,
    ) -> Result<RunResult> {
        self.wait_idle();
        let mut cmd = Command::new(bin);
        cmd.args(args).arg("-wait");
        let mut target = Proc::spawn("bench target", cmd)?;
        target.wait_line(|l| l == "waiting", Duration::from_secs(30))?;
        let pid = target.pid();
        let json_path = self.out_dir.join(format!("report-{pid}.json"));
        let mut tracer = match tracing {
            Tracing::Untraced => None,
            Tracing::Mapleak {
                exe,
                duration_s,
                budget_pct,
                ..
            } => Some(spawn_mapleak_at(
                exe,
                pid,
                *duration_s,
                &json_path,
                *budget_pct,
            )?),
            Tracing::Bpftrace {
                program,
                unsafe_mode,
            } => {
                let mut c = Command::new("bpftrace");
                if *unsafe_mode {
                    c.arg("--unsafe");
                }
                c.arg("-p").arg(pid.to_string()).arg("-e").arg(program);
                let mut p = Proc::spawn("bpftrace", c)?;
                p.wait_line(|l| l.starts_with("Attaching"), Duration::from_secs(60))?;
                Some(p)
            }
        };
        // "Attaching N probes..." comes just before bpftrace attaches; the
        // pause covers that, and is the same for every mode.
        thread::sleep(self.s.settle);
        if let Some(t) = tracer.as_mut()
            && !t.running()
        {
            bail!("{} exited before the run: {}", t.what, t.stderr_tail());
        }
        let cpu_go = tracer.as_ref().and_then(|t| proc_cpu_s(t.pid()));
        let (sys0, ch0) = (system_busy_s(), children_cpu_s());
        let ksys0 = children_sys_s();
        let go = Instant::now();
        target.send_line("go")?;
        // Wait for the target, sampling the tracer's RSS on the way.
        let mut rss = Vec::new();
        let mut polls = 0u32;
        let stop_target = matches!(
            tracing,
            Tracing::Mapleak {
                stop_target: true,
                ..
            }
        );
        let mut stopped = false;
        let st = loop {
            if let Some(st) = target.child.try_wait()? {
                break st;
            }
            if stop_target && !stopped && tracer.as_ref().is_some_and(|t| proc_exited(t.pid())) {
                // The tracer is a zombie (not reaped: its pid is still ours
                // and its /proc entry still has its times).
                let _ = target.child.kill();
                stopped = true;
            }
            if go.elapsed() >= budget {
                bail!(
                    "bench {args:?} still running after {budget:?}; stderr: {}",
                    target.stderr_tail()
                );
            }
            if polls.is_multiple_of(5)
                && let Some(t) = tracer.as_ref()
                && let (Some(r), Some(c)) = (proc_rss_bytes(t.pid()), proc_cpu_s(t.pid()))
            {
                rss.push((go.elapsed().as_secs_f64(), r, c));
            }
            polls += 1;
            thread::sleep(Duration::from_millis(50));
        };
        let window_s = go.elapsed().as_secs_f64();
        // The tracer has not been reaped yet (at worst it is a zombie whose
        // /proc/PID/stat still holds its final times): its pid is still ours.
        let cpu_end = tracer.as_ref().and_then(|t| proc_cpu_s(t.pid()));
        let (sys1, ch1) = (system_busy_s(), children_cpu_s());
        // The target was reaped in the window (the tracer is reaped later):
        // this is the target's own CPU, split by mode.
        let target_sys_s = children_sys_s() - ksys0;
        let tracer_window = match (cpu_go, cpu_end) {
            (Some(a), Some(b)) => b - a,
            _ => f64::NAN,
        };
        // Busy time of the machine that is neither the target (reaped in
        // the window, so in RUSAGE_CHILDREN) nor the tracer.
        let foreign_cpu_s = match (sys0, sys1) {
            (Some(a), Some(b)) => ((b - a)
                - (ch1 - ch0)
                - if tracer_window.is_finite() {
                    tracer_window
                } else {
                    0.0
                })
            .max(0.0),
            _ => f64::NAN,
        };
        let lines = target.output();
        if !st.success() && !stopped {
            bail!("bench {args:?} failed ({st}): {}", target.stderr_tail());
        }
        let tracer_rss = rss;
        let mut res = RunResult {
            target: parse_kv(&lines),
            report: None,
            report_bytes: 0,
            counts: BTreeMap::new(),
            tracer_cpu_startup_s: cpu_go.unwrap_or(f64::NAN),
            tracer_cpu_window_s: tracer_window,
            window_s,
            target_cpu_s: ch1 - ch0,
            target_sys_s,
            foreign_cpu_s,
            tracer_rss,
        };
        match (tracing, tracer.as_mut()) {
            (Tracing::Mapleak { .. }, Some(t)) => {
                // It stops by itself when the target exits (or its
                // --duration ends).
                if t.wait_exit(Duration::from_secs(120)).is_err() {
                    t.stop(Duration::from_secs(30));
                }
                let (report, bytes) = take_report_sized(&json_path, t)?;
                res.report = Some(report);
                res.report_bytes = bytes;
            }
            (Tracing::Bpftrace { .. }, Some(t)) => {
                t.stop(Duration::from_secs(30));
                // No `@c` line when no probe fired (mapwrite rarely calls
                // the functions default mode probes): zero hits.
                res.counts = parse_bpftrace_counts(&t.output());
            }
            _ => {}
        }
        Ok(res)
    }
}

/// Starts mapleak-trace on `pid` in default mode (the budget given
/// explicitly, at its default) for at most `duration_s`, its JSON report
/// going to `json`, and waits until it says it attached.
pub(super) fn spawn_mapleak(exe: &Path, pid: u32, duration_s: u64, json: &Path) -> Result<Proc> {
    spawn_mapleak_at(exe, pid, duration_s, json, BUDGET_PCT)
}

/// [`spawn_mapleak`] at `--overhead-budget budget_pct`.
pub(super) fn spawn_mapleak_at(
    exe: &Path,
    pid: u32,
    duration_s: u64,
    json: &Path,
    budget_pct: f64,
) -> Result<Proc> {
    let _ = fs::remove_file(json);
    let mut c = Command::new(exe);
    c.arg("--pid")
        .arg(pid.to_string())
        .arg("--overhead-budget")
        .arg(budget_pct.to_string())
        .arg("--duration")
        .arg(format!("{duration_s}s"))
        .arg("--json")
        .arg(json);
    let log = tracer_log(pid);
    let mut p = Proc::spawn_logged("mapleak-trace", c, log.as_deref())?;
    p.wait_line(
        |l| l.starts_with("mapleak-trace: attached"),
        Duration::from_secs(60),
    )?;
    Ok(p)
}

/// Where a trace of `pid` keeps its stderr: with `MAPLEAK_BENCH_TRACER_LOGS`
/// set to a directory, a file in it named by the time and the target's pid
/// (run the bench with `MAPLEAK_DEBUG_TIMING=1` too, inherited by every
/// tracer, to read afterwards what a phase's tracer did; it costs the
/// tracer CPU of its own).
fn tracer_log(pid: u32) -> Option<std::path::PathBuf> {
    let dir = std::path::PathBuf::from(std::env::var_os("MAPLEAK_BENCH_TRACER_LOGS")?);
    let _ = fs::create_dir_all(&dir);
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    Some(dir.join(format!("mapleak-{ms}-pid{pid}.err")))
}

/// The report of the one process an exited mapleak-trace wrote to `json`
/// (removed once read).
pub(super) fn take_report(json: &Path, t: &Proc) -> Result<Value> {
    take_report_sized(json, t).map(|(v, _)| v)
}

/// [`take_report`], with the size of the document in bytes.
pub(super) fn take_report_sized(json: &Path, t: &Proc) -> Result<(Value, u64)> {
    let text = fs::read_to_string(json).with_context(|| {
        format!(
            "mapleak-trace wrote no {}; stderr: {}",
            json.display(),
            t.stderr_tail()
        )
    })?;
    let _ = fs::remove_file(json);
    let doc = one_process(serde_json::from_str(&text).context("mapleak-trace JSON")?)?;
    Ok((doc, text.len() as u64))
}

/// The report of the one process in a JSON document of mapleak-trace.
fn one_process(mut doc: Value) -> Result<Value> {
    // Schema v2: {"schema", "processes": [one per --pid]}; one pid here.
    match doc.get_mut("processes").map(Value::take) {
        Some(Value::Array(mut v)) if v.len() == 1 => Ok(v.remove(0)),
        _ => bail!(
            "mapleak-trace JSON is not a {} document with one process",
            "mapleak-trace/report/v2"
        ),
    }
}

/// `key value` lines; the last one wins for a repeated key.
fn parse_kv(lines: &[String]) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    for l in lines {
        if let Some((k, v)) = l.trim().split_once(' ') {
            m.insert(k.to_owned(), v.trim().to_owned());
        }
    }
    m
}

/// `@c: 12`, `@c[uprobe:/bin:func]: 12`.
fn parse_bpftrace_counts(lines: &[String]) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for l in lines {
        let l = l.trim();
        if !l.starts_with("@c") {
            continue;
        }
        let Some((key, n)) = l.rsplit_once(": ") else {
            continue;
        };
        let Ok(n) = n.trim().parse::<u64>() else {
            continue;
        };
        let key = key
            .strip_prefix("@c")
            .unwrap_or(key)
            .trim_start_matches('[')
            .trim_end_matches(']');
        *m.entry(key.to_owned()).or_default() += n;
    }
    m
}

/// The number at `path` in a JSON value (NaN when there is none).
pub(super) fn f(v: &Value, path: &[&str]) -> f64 {
    let mut cur = v;
    for p in path {
        match cur.get(p) {
            Some(x) => cur = x,
            None => return f64::NAN,
        }
    }
    cur.as_f64().unwrap_or(f64::NAN)
}

/// Total probe hits in a report, and those on RET-site probes.
pub(super) fn report_hits(rep: &Value, ret_sites: &[u64]) -> (u64, u64) {
    let mut total = 0;
    let mut ss = 0;
    if let Some(m) = rep
        .pointer("/overhead/probe_hits")
        .and_then(Value::as_object)
    {
        for (k, v) in m {
            let n = v.as_u64().unwrap_or(0);
            total += n;
            let addr = k
                .rsplit_once('@')
                .and_then(|(_, a)| u64::from_str_radix(a.trim_start_matches("0x"), 16).ok());
            if addr.is_some_and(|a| ret_sites.contains(&a)) {
                ss += n;
            }
        }
    }
    (total, ss)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_report_of_the_one_process() {
        let doc = json!({"schema": "mapleak-trace/report/v2", "processes": [{"pid": 7}]});
        assert_eq!(one_process(doc).unwrap(), json!({"pid": 7}));
        let two = json!({"processes": [{"pid": 7}, {"pid": 8}]});
        assert!(one_process(two).is_err());
        assert!(one_process(json!({"pid": 7})).is_err());
    }

    #[test]
    fn bpftrace_counts_by_probe() {
        let lines: Vec<String> = [
            "Attaching 2 probes...",
            "@c[uprobe:/b:f]: 12",
            "@c[uprobe:/b:g]: 3",
            "@c: 5",
            "@other: 9",
        ]
        .map(str::to_owned)
        .to_vec();
        let m = parse_bpftrace_counts(&lines);
        assert_eq!(m["uprobe:/b:f"], 12);
        assert_eq!(m[""], 5);
        assert_eq!(m.values().sum::<u64>(), 20);
    }

    #[test]
    fn hits_on_ret_sites() {
        let rep =
            json!({"overhead": {"probe_hits": {"runtime.makemap@0x10": 4, "runtime.f@0x20": 6}}});
        assert_eq!(report_hits(&rep, &[0x10]), (10, 4));
        assert!(f(&rep, &["overhead", "nope"]).is_nan());
    }
}
