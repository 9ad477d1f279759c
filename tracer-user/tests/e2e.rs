//! Tier 2: end-to-end tests against real Go processes built from
//! `testdata/go/target` (`cargo xtask fixtures`), with real uprobes.
//!
//! They need root (or CAP_BPF + CAP_PERFMON + CAP_SYS_PTRACE). Without it
//! they say so and return, unless `CI` is set: then they fail loudly. Runs
//! are serialized (one tracer at a time) so "no probe left behind" can be
//! checked, and every process a test starts is killed by a guard, also when
//! the test fails.
use std::{
    io::{BufRead, BufReader, Read, Write},
    path::PathBuf,
    process::{Command, Stdio},
    sync::Mutex,
    time::{Duration, Instant},
};

mod e2e_common;

use e2e_common::{Guard, is_root};
use serde_json::Value;

static SERIAL: Mutex<()> = Mutex::new(());

fn privileged() -> bool {
    let root = is_root();
    if !root {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but the end-to-end tests are not running as root: they must run in CI"
        );
        // A skip is asked for, never silent: a passing test that ran
        // nothing would read as a success.
        assert!(
            std::env::var_os("MAPLEAK_ALLOW_SKIP").is_some(),
            "end-to-end tests need root (CAP_BPF, CAP_PERFMON, CAP_SYS_PTRACE): run as root, or set MAPLEAK_ALLOW_SKIP=1 to skip them"
        );
        println!("SKIPPED (MAPLEAK_ALLOW_SKIP): end-to-end tests need root");
    }
    root
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The fixtures' GOARCH: that of the machine the tests run on (the same
/// tests run on arm64 under `cargo xtask arm64-e2e`).
const GOARCH: &str = if cfg!(target_arch = "aarch64") {
    "arm64"
} else {
    "amd64"
};

fn fixture(go: &str, variant: &str) -> PathBuf {
    fixture_of("target", go, variant)
}

fn fixture_of(program: &str, go: &str, variant: &str) -> PathBuf {
    let p = root().join(format!("target/fixtures/{program}-{go}-{GOARCH}-{variant}"));
    assert!(
        p.exists(),
        "{} missing: run `cargo xtask fixtures`",
        p.display()
    );
    p
}

fn tracer() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mapleak-trace"))
}

/// Our programs still loaded in the kernel (by name), via bpftool.
fn our_programs_loaded() -> Vec<String> {
    let out = Command::new("bpftool")
        .args(["prog", "show"])
        .output()
        .expect("bpftool (scripts/setup.sh installs it)");
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .filter(|l| {
            [
                "map_create_entr",
                "map_create_ret",
                "map_grow",
                "gc_start",
                "gc_sweep",
                "map_write",
                "fin_hook",
            ]
            .iter()
            .any(|n| l.contains(&format!("name {n}")))
        })
        .map(str::to_owned)
        .collect()
}

/// Whether the running kernel is at least `major.minor`.
fn kernel_at_least(major: u32, minor: u32) -> bool {
    let rel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut it = rel
        .trim()
        .split(['.', '-'])
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let (a, b) = (it.next().unwrap_or(0), it.next().unwrap_or(0));
    (a, b) >= (major, minor)
}

/// Ids of the BPF programs that process `pid` holds through its file
/// descriptors (`prog_id:` in `/proc/PID/fdinfo`, for program and link fds).
fn programs_held_by(pid: u32) -> std::collections::BTreeSet<u32> {
    let mut ids = std::collections::BTreeSet::new();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return ids;
    };
    for e in dir.flatten() {
        let Ok(text) = std::fs::read_to_string(e.path()) else {
            continue;
        };
        for l in text.lines() {
            if let Some(v) = l.strip_prefix("prog_id:")
                && let Ok(id) = v.trim().parse()
            {
                ids.insert(id);
            }
        }
    }
    ids
}

/// Ids of the programs in `lines` (bpftool's "ID: type name …").
fn prog_ids(lines: &[String]) -> std::collections::BTreeSet<u32> {
    lines
        .iter()
        .filter_map(|l| l.split(':').next()?.trim().parse().ok())
        .collect()
}

/// Programs loaded by the tracer of this test (loaded while it ran, not
/// before it started) that are still loaded.
fn leftover(
    before: &std::collections::BTreeSet<u32>,
    during: &std::collections::BTreeSet<u32>,
) -> Vec<u32> {
    let now = prog_ids(&our_programs_loaded());
    during
        .difference(before)
        .filter(|id| now.contains(id))
        .copied()
        .collect()
}

const TARGET_ARGS: [&str; 4] = ["-steps", "10", "-step-ms", "250"];

struct Run {
    report: Value,
    /// Our programs left loaded after the tracer exited (must be empty).
    leftover: Vec<u32>,
    target_stdout: String,
    target_stderr: String,
    tracer_stderr: String,
}

/// Starts the target paused, attaches the tracer, releases the target, and
/// collects the tracer's JSON report once the target exits.
fn traced_run(bin: &PathBuf) -> Run {
    let mut cmd = Command::new(bin);
    cmd.args(["-wait"]).args(TARGET_ARGS);
    traced_run_cmd(cmd, &|| {})
}

/// As [`traced_run`], for any command that ends up exec'ing the target in the
/// same pid; `before_attach` runs once the target is ready.
fn traced_run_cmd(cmd: Command, before_attach: &dyn Fn()) -> Run {
    traced_run_args(cmd, before_attach, &[])
}

/// As [`traced_run_cmd`], with more tracer arguments.
fn traced_run_args(mut cmd: Command, before_attach: &dyn Fn(), extra: &[&str]) -> Run {
    let mut target = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = target.id();
    let mut stdin = target.stdin.take().unwrap();
    let mut stderr = BufReader::new(target.stderr.take().unwrap());
    let mut stdout = target.stdout.take().unwrap();
    let mut tg = Guard(Some(target));
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    assert!(line.starts_with("ready"), "target said {line:?}");
    before_attach();

    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("report.json");
    let before = prog_ids(&our_programs_loaded());
    // `env:NAME=VALUE` items of `extra` go to the tracer's environment.
    let (envs, extra): (Vec<&str>, Vec<&str>) = extra.iter().partition(|a| a.starts_with("env:"));
    let no_multi = envs
        .iter()
        .any(|e| e.starts_with("env:MAPLEAK_NO_UPROBE_MULTI="));
    let mut tr = tracer();
    for e in envs {
        let (k, v) = e["env:".len()..].split_once('=').unwrap();
        tr.env(k, v);
    }
    let mut tr = tr
        .args([
            "--pid",
            &pid.to_string(),
            // Longer than any target here runs, also on an emulated CPU
            // (the tracer stops when the target exits).
            "--duration",
            "600s",
            "--interval",
            "1s",
            "--json",
        ])
        .arg(&json)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut tout = BufReader::new(tr.stdout.take().unwrap());
    let tracer_pid = tr.id();
    let mut trg = Guard(Some(tr));
    let mut first = String::new();
    tout.read_line(&mut first).unwrap();
    assert!(first.contains("attached"), "tracer said {first:?}");
    let loaded = our_programs_loaded();
    // Only this tracer's programs (those its file descriptors hold): a
    // previous tracer's may still be on their way out of the kernel, and
    // another test run's tracer may be running.
    let mine = programs_held_by(tracer_pid);
    let during: std::collections::BTreeSet<u32> =
        prog_ids(&loaded).intersection(&mine).copied().collect();
    let copies = if no_multi || !kernel_at_least(6, 6) {
        1
    } else {
        2
    };
    // On 6.6+ the grouped programs have a second copy for uprobe_multi
    // links (one close removes a whole group): the fallback to one perf
    // link per probe must not kick in unless asked for.
    for name in ["map_create_ret", "map_write"] {
        let n = loaded
            .iter()
            .filter(|l| l.contains(&format!("name {name} ")))
            .filter(|l| prog_ids(std::slice::from_ref(l)).is_subset(&mine))
            .count();
        assert_eq!(n, copies, "{name}: copies loaded: {loaded:#?}");
    }
    // Let the target create its maps only now.
    stdin.write_all(b"go\n").unwrap();
    drop(stdin);
    let mut target_stdout = String::new();
    stdout.read_to_string(&mut target_stdout).unwrap();
    let mut target_stderr = String::new();
    stderr.read_to_string(&mut target_stderr).unwrap();
    let st = tg.0.take().unwrap().wait().unwrap();
    assert!(st.success(), "target failed under the tracer: {st}");
    let mut rest = String::new();
    tout.read_to_string(&mut rest).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut tr = trg.0.take().unwrap();
    let status = loop {
        if let Some(s) = tr.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "tracer did not stop after the target exited"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut terr = String::new();
    tr.stderr.take().unwrap().read_to_string(&mut terr).unwrap();
    assert!(status.success(), "tracer failed: {status}\n{terr}\n{rest}");
    assert!(
        rest.contains("target exited"),
        "report should say the target exited:\n{rest}"
    );
    let report = the_process(&json);
    let leftover = leftover(&before, &during);
    Run {
        report,
        leftover,
        target_stdout,
        target_stderr,
        tracer_stderr: terr,
    }
}

/// The one process's report in the JSON document at `path` (schema v2:
/// one shape for one or several processes).
fn the_process(path: &std::path::Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap();
    let doc: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("incomplete JSON report ({e}): {text}"));
    assert_eq!(doc["schema"], "mapleak-trace/report/v2");
    let procs = doc["processes"].as_array().unwrap();
    assert_eq!(procs.len(), 1, "{doc:#}");
    procs[0].clone()
}

fn untraced_stdout(bin: &PathBuf) -> String {
    let out = Command::new(bin).args(TARGET_ARGS).output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

fn maps_of<'a>(r: &'a Value, ty: &str) -> Vec<&'a Value> {
    r["maps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["type"] == ty)
        .collect()
}

fn lru_maps(r: &Value) -> Vec<&Value> {
    let mut v = maps_of(r, "map[int]*list.Element");
    v.extend(maps_of(r, "map[int]*container/list.Element"));
    v
}

fn check_scenarios(go: &str, variant: &str) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let bin = fixture(go, variant);
    let run = traced_run(&bin);
    let r = &run.report;
    let stripped = variant.ends_with("stripped");
    assert_eq!(r["target"]["go_version"], go);
    assert_eq!(r["target"]["stripped"], stripped);
    let dump = serde_json::to_string_pretty(&r["maps"]).unwrap();

    // A global cache that only grows: growing, with type, owner and creator.
    let leaky = maps_of(r, "map[string]*main.session");
    assert_eq!(leaky.len(), 1, "leaky cache not found once:\n{dump}");
    let leaky = leaky[0];
    assert_eq!(leaky["verdict"], "growing", "{leaky:#}");
    assert_eq!(leaky["key_type"], "string");
    assert!(leaky["bytes"].as_u64().unwrap_or(0) > 0, "{leaky:#}");
    assert_eq!(
        leaky["created_at"][0]["function"], "main.newSessionStore",
        "{leaky:#}"
    );
    if stripped {
        assert!(
            leaky["owner"]
                .as_str()
                .is_none_or(|o| o.contains("global at")),
            "{leaky:#}"
        );
    } else {
        assert_eq!(leaky["owner"], "main.sessions", "{leaky:#}");
    }

    // A bounded LRU under heavy churn is not growing (DWARF names the
    // element type by its import path, the runtime by its package name).
    let lru = lru_maps(r);
    assert_eq!(lru.len(), 1, "{dump}");
    assert_ne!(lru[0]["verdict"], "growing", "{:#}", lru[0]);
    // Thousands of short-lived maps per second: none growing (the two
    // growing maps are named above), whether listed or grouped.
    // Grown to a million entries, emptied to ten: bloated.
    let bloat = maps_of(r, "map[uint64]uint32");
    assert_eq!(bloat.len(), 1, "{dump}");
    assert_eq!(bloat[0]["verdict"], "bloated", "{:#}", bloat[0]);
    assert_eq!(bloat[0]["len_last"], 10);
    // A goroutine-private map that only grows: growing, created there.
    let private = maps_of(r, "map[main.key24]int");
    assert_eq!(private.len(), 1, "{dump}");
    assert_eq!(private[0]["verdict"], "growing", "{:#}", private[0]);
    assert_eq!(
        private[0]["created_at"][0]["function"],
        "main.privateWorker"
    );
    assert!(private[0]["owner"].is_null());
    // Nothing else is called growing.
    let growing = r["maps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["verdict"] == "growing")
        .count();
    assert_eq!(growing, 2, "{dump}");

    // len_by_cycle agrees with what the target printed at its forced GCs:
    // the cycle numbers are the runtime's own (`runtime.MemStats.NumGC`),
    // stripped or not (the GC globals are then found from runtime code).
    {
        let mut matched = 0;
        for line in run
            .target_stderr
            .lines()
            .filter(|l| l.starts_with("cycle "))
        {
            let f: Vec<&str> = line.split_whitespace().collect();
            let cycle: u64 = f[1].parse().unwrap();
            let want_leaky: u64 = f[f.iter().position(|x| *x == "leaky").unwrap() + 1]
                .parse()
                .unwrap();
            let want_private: u64 = f[f.iter().position(|x| *x == "private").unwrap() + 1]
                .parse()
                .unwrap();
            for (m, want) in [(leaky, want_leaky), (private[0], want_private)] {
                if let Some(p) = m["len_by_cycle"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|p| p[0] == cycle)
                {
                    assert_eq!(
                        p[1], want,
                        "cycle {cycle}: tracer saw {} for {}, target printed {want}",
                        p[1], m["type"]
                    );
                    matched += 1;
                }
            }
        }
        assert!(
            matched >= 8,
            "only {matched} (cycle, len) pairs to compare:\n{}",
            run.target_stderr
        );
    }

    // gcStart's trigger: the target forces its cycles (runtime.GC), and
    // prints one line for each; none is of a kind the tracer does not know.
    {
        let t = &run.report["gc_triggers"];
        let forced = t["forced"].as_u64().unwrap();
        let printed = run
            .target_stderr
            .lines()
            .filter(|l| l.starts_with("cycle "))
            .count() as u64;
        assert!(
            forced >= 3 && forced <= printed,
            "forced GC cycles seen {forced}, printed by the target {printed}: {t}"
        );
        assert_eq!(t["other"], 0, "{t}");
    }

    // Hit counts (read from the kernel's per-CPU counters in one batch)
    // see the forced GC cycles and the map creations.
    let hits = r["overhead"]["probe_hits"].as_object().unwrap();
    let sum = |prefix: &str| -> u64 {
        hits.iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(_, v)| v.as_u64().unwrap())
            .sum()
    };
    assert!(sum("runtime.gcSweep@") >= 8, "{hits:?}");
    assert!(sum("runtime.makemap") > 0, "{hits:?}");

    // The target's own output is the same without the tracer.
    assert_eq!(run.target_stdout, untraced_stdout(&bin));
    // No probe stays attached.
    assert!(run.leftover.is_empty(), "programs left: {:?}", run.leftover);
}

/// Every scenario on a classic-hmap release.
#[test]
fn scenarios_hmap_go123() {
    if privileged() {
        check_scenarios("go1.23.12", "default");
    }
}

/// Every scenario on a classic-hmap release, stripped of .symtab and DWARF.
#[test]
fn scenarios_hmap_go123_stripped() {
    if privileged() {
        check_scenarios("go1.23.12", "stripped");
    }
}

/// Every scenario on a Swiss-table release.
#[test]
fn scenarios_swiss_go126() {
    if privileged() {
        check_scenarios("go1.26.8", "default");
    }
}

/// Every scenario on a Swiss-table release, stripped.
#[test]
fn scenarios_swiss_go126_stripped() {
    if privileged() {
        check_scenarios("go1.26.8", "stripped");
    }
}

/// cgo binaries, externally linked and stripped, as distributions ship Go
/// programs: hmap and Swiss, and an external PIE (pclntab inside
/// `.data.rel.ro`, pointers as relocations).
#[test]
fn scenarios_cgo_external_stripped() {
    if privileged() {
        check_scenarios("go1.23.12", "cgo-stripped");
        check_scenarios("go1.26.8", "cgo-stripped");
        check_scenarios("go1.23.12", "cgo-pie-stripped");
    }
}

/// Position-independent executables (load bias) on hmap and Swiss.
#[test]
fn scenarios_pie() {
    if privileged() {
        check_scenarios("go1.23.12", "pie");
        check_scenarios("go1.26.8", "pie");
    }
}

/// The other releases of the matrix: oldest hmap (1.19), first Swiss
/// release (1.24) and its noswissmap build, and the 1.27 type layout.
#[test]
fn scenarios_other_releases() {
    if privileged() {
        check_scenarios("go1.19.8", "default");
        check_scenarios("go1.24.13", "default");
        check_scenarios("go1.24.13", "noswiss");
        check_scenarios("go1.27.4", "default");
    }
}

/// One budget governs the probes: at a budget the target's short-lived maps
/// exhaust (2%), the governed probes (creation, Swiss small-map growth,
/// finalizers) are paused and come back when the budget allows, the write
/// window is closed when its writes run the budget out and opens again
/// later, while the always-on ones (GC, table split) keep counting; the leak
/// is still found with its type.
#[test]
fn governed_probes_pause_and_come_back() {
    if !privileged() {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let bin = fixture("go1.26.8", "default");
    let mut cmd = Command::new(&bin);
    // 30 s: a pause lasts until half the bucket is back (2.5 s at any
    // budget), or longer while a write window is due; a window opens with a
    // full bucket (5 s from empty), 10 s after the last one: the second one
    // comes about 15 s in.
    // Short-lived maps without a pause (a goroutine doing nothing else):
    // tens of thousands a second, each grown twice, make the governed
    // probes cost several times the 2% budget; while they are paused, the
    // tracer's own CPU and the always-on probes (GC, split) cost well under
    // it.
    // Without the bloat scenario: its million keys and thousand tables make
    // the tracer's first key read and every sample costly, which is not
    // what this test is about.
    cmd.args([
        "-wait",
        "-scenarios",
        "leaky,lru,short,private",
        "-steps",
        "120",
        "-step-ms",
        "250",
        "-short-pause",
        "0s",
    ]);
    let run = traced_run_args(cmd, &|| {}, &["--overhead-budget", "2"]);
    let r = &run.report;
    let o = &r["overhead"];
    let pauses = o["creation_probes_paused"].as_u64().unwrap();
    let resumes = o["creation_probes_resumed"].as_u64().unwrap();
    let share = o["governed_probes_attached_share"].as_f64().unwrap();
    // Detached over budget, attached again when the budget allowed.
    assert!(
        pauses >= 1 && resumes >= 1,
        "governed probes paused {pauses} time(s), resumed {resumes}: {o:#}"
    );
    assert!(share > 0.0 && share < 1.0, "attached share {share}: {o:#}");
    // The finalizer bookkeeping saw the pauses (the last may fall after the
    // main loop's last look).
    let fin_pauses = r["finalizers"]["probe_pauses"].as_u64().unwrap();
    assert!(
        fin_pauses + 1 >= pauses && fin_pauses <= pauses,
        "finalizer probes paused {fin_pauses} times, governed {pauses}"
    );
    // The write window: closed when its writes ran the budget out, and
    // opened again later.
    let windows = o["write_windows"].as_u64().unwrap();
    let over = o["write_windows_closed_over_budget"].as_u64().unwrap();
    assert!(
        windows >= 2 && over >= 1,
        "{windows} write windows, {over} closed over budget: {o:#}"
    );
    let hits = o["probe_hits"].as_object().unwrap();
    let sum = |prefix: &str| -> u64 {
        hits.iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(_, v)| v.as_u64().unwrap())
            .sum()
    };
    assert!(
        sum("internal/runtime/maps.(*Map).growToTable@")
            + sum("internal/runtime/maps.(*table).grow@")
            > 0,
        "governed growth probes never hit: {hits:?}"
    );
    assert!(sum("runtime.gcSweep@") >= 8, "{hits:?}");
    let leaky = maps_of(r, "map[string]*main.session");
    assert_eq!(leaky.len(), 1, "{:#}", r["maps"]);
    assert_eq!(leaky[0]["verdict"], "growing", "{:#}", leaky[0]);
    assert!(run.leftover.is_empty(), "programs left: {:?}", run.leftover);
}

/// A tracer in a container with its own PID namespace (`unshare --pid
/// --fork --mount-proc`) traces a process of that namespace by the pid it
/// sees there: the programs report pids in the tracer's namespace.
#[test]
fn tracer_in_its_own_pid_namespace() {
    if !privileged() {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let bin = fixture("go1.23.12", "default");
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("report.json");
    // The target runs 12 s; the tracer attaches once it is up and stops
    // when it exits.
    let script = format!(
        "{bin} -scenarios leaky -steps 48 -step-ms 250 >/dev/null 2>&1 & t=$!; sleep 0.5; \
         {tracer} --pid $t --interval 1s --json {json}; rc=$?; wait $t; exit $rc",
        bin = bin.display(),
        tracer = env!("CARGO_BIN_EXE_mapleak-trace"),
        json = json.display(),
    );
    let out = Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", "sh", "-c", &script])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}\n{err}\n{stdout}", out.status);
    let r = the_process(&json);
    // Its pid in the namespace: the shell is 1.
    let pid = r["target"]["pid"].as_u64().unwrap();
    assert!(pid > 1 && pid < 100, "pid {pid}: not the namespace's");
    assert_eq!(
        r["overhead"]["counters"]["no_config"], 0,
        "{:#}",
        r["overhead"]
    );
    let leaky = maps_of(&r, "map[string]*main.session");
    assert_eq!(leaky.len(), 1, "{:#}", r["maps"]);
    assert_eq!(leaky[0]["verdict"], "growing", "{:#}", leaky[0]);
    // Found by its growth events: the kernel side matched the pid.
    assert!(
        leaky[0]["growth_events"].as_u64().unwrap() > 0,
        "no growth event: {:#}",
        leaky[0]
    );
}

/// The traced process exits and another process takes its pid (forced with
/// `ns_last_pid` in a PID namespace of the test's own), while the tracer
/// goes on with a second target: the first report ends at the exit, with
/// nothing read from the newcomer, which runs the same binary and so has
/// its maps at the same addresses.
#[test]
fn a_reused_pid_is_not_the_target() {
    if !privileged() {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let bin = fixture("go1.23.12", "default");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    let script = format!(
        "T={bin}; \
         $T -scenarios leaky -steps 300 -step-ms 50 >/dev/null 2>{d}/c.err & c=$!; \
         $T -scenarios leaky -steps 20 -step-ms 100 >/dev/null 2>{d}/a.err & a=$!; \
         sleep 0.5; \
         {tracer} --pid $a --pid $c --duration 10s --interval 1s --json {d}/r.json >{d}/tr.out 2>&1 & tr=$!; \
         wait $a; echo $((a - 1)) > /proc/sys/kernel/ns_last_pid; \
         $T -scenarios leaky -leak-per-step 100 -steps 80 -step-ms 100 >/dev/null 2>{d}/b.err & b=$!; \
         echo $a $b > {d}/pids; \
         wait $tr; rc=$?; kill $b $c 2>/dev/null; wait; exit $rc",
        bin = bin.display(),
        tracer = env!("CARGO_BIN_EXE_mapleak-trace"),
    );
    let out = Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", "sh", "-c", &script])
        .output()
        .unwrap();
    let read = |f: &str| std::fs::read_to_string(dir.path().join(f)).unwrap_or_default();
    assert!(
        out.status.success(),
        "{}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        read("tr.out")
    );
    let pids: Vec<u64> = read("pids")
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    assert!(
        pids.len() == 2 && pids[0] == pids[1],
        "pid not reused: {pids:?}"
    );
    let doc: Value = serde_json::from_str(&read("r.json")).unwrap();
    let procs = doc["processes"].as_array().unwrap();
    assert_eq!(procs.len(), 2, "{doc:#}");
    let a = procs
        .iter()
        .find(|p| p["target"]["pid"] == pids[0])
        .unwrap();
    assert_eq!(a["ended"], "target exited", "{:#}", a["target"]);
    // The first process leaked 2,000 sessions a step for 20 steps; the
    // newcomer leaks 100 a step from zero: a length of its would be a drop.
    let last_a: u64 = read("a.err")
        .lines()
        .rev()
        .find_map(|l| l.split_once(" leaky ")?.1.trim().parse().ok())
        .unwrap();
    let leaky = maps_of(a, "map[string]*main.session");
    assert_eq!(leaky.len(), 1, "{:#}", a["maps"]);
    let lens: Vec<u64> = leaky[0]["len_by_cycle"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p[1].as_u64().unwrap())
        .collect();
    assert!(
        lens.windows(2).all(|w| w[0] <= w[1]) && lens.iter().all(|&l| l <= last_a),
        "lengths {lens:?} (the first process's last: {last_a}): some read from the newcomer"
    );
    let c = procs
        .iter()
        .find(|p| p["target"]["pid"] != pids[0])
        .unwrap();
    assert_eq!(c["ended"], "duration reached");
}

/// A program that runs no GC cycle while traced (GOGC=off, no forced GC,
/// as quiet services between the runtime's two-minute forced cycles): its
/// growing map is still found and judged growing, from timer samples, within
/// the 15 s it runs, and the report says the samples came from the timer.
#[test]
fn growing_map_found_in_a_program_without_gc() {
    if !privileged() {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let bin = fixture("go1.26.8", "default");
    let mut cmd = Command::new(&bin);
    cmd.env("GOGC", "off").args([
        "-wait",
        "-force-gc=false",
        "-scenarios",
        "leaky",
        "-steps",
        "60",
        "-step-ms",
        "250",
    ]);
    // (traced_run_args gives --interval 1s: the timer samples every second.)
    let run = traced_run_args(cmd, &|| {}, &[]);
    let r = &run.report;
    // The target's own count: no cycle ran after the first step.
    let numgc: Vec<u64> = run
        .target_stderr
        .lines()
        .filter_map(|l| l.strip_prefix("cycle "))
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect();
    assert!(
        numgc.len() >= 50 && numgc.first() == numgc.last(),
        "the target ran GC cycles: {numgc:?}"
    );
    let gc = r["gc_cycles"].as_array().unwrap();
    assert!(gc.is_empty(), "GC cycles seen: {gc:?}");
    assert_eq!(
        r["gc_triggers"],
        serde_json::json!({"heap": 0, "periodic": 0, "forced": 0, "other": 0}),
        "no cycle started"
    );
    let timer = r["overhead"]["timer_samples"].as_u64().unwrap();
    assert!(timer >= 8, "{timer} timer samples in 15 s at --interval 1s");
    let leaky = maps_of(r, "map[string]*main.session");
    assert_eq!(leaky.len(), 1, "{:#}", r["maps"]);
    let m = leaky[0];
    assert_eq!(m["verdict"], "growing", "{m:#}");
    assert!(m["len_by_cycle"].as_array().unwrap().is_empty(), "{m:#}");
    let samples = m["timer_samples"].as_array().unwrap();
    assert!(samples.len() >= 3, "{m:#}");
    // Lengths come from the map: they rise, and never past what the target
    // held at the end (2,000 sessions a step).
    let lens: Vec<u64> = samples.iter().map(|p| p[1].as_u64().unwrap()).collect();
    assert!(lens.windows(2).all(|w| w[0] <= w[1]), "{lens:?}");
    assert!(*lens.last().unwrap() <= 60 * 2000, "{lens:?}");
    assert!(m["growth_per_s"].as_f64().unwrap() > 1000.0, "{m:#}");
}

/// hmap growth is governed, but a large map's growth is still seen: with
/// the budget so small that the governed probes (creation, every growth)
/// stay paused from the first check on, the always-on probe on
/// `makeBucketArray`'s large-array path finds a map no global holds, with
/// its type, from `hashGrow`'s frame. (With no credit the tracer samples
/// every 10 s: 30 s of steps give it the three samples a verdict needs.)
#[test]
fn large_hmap_growth_seen_while_governed_probes_are_paused() {
    if !privileged() {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let bin = fixture("go1.23.12", "default");
    let mut cmd = Command::new(&bin);
    cmd.args([
        "-wait",
        "-scenarios",
        "leaky,private",
        "-steps",
        "100",
        "-step-ms",
        "300",
    ]);
    let run = traced_run_args(cmd, &|| {}, &["--overhead-budget", "0.0001"]);
    let r = &run.report;
    let o = &r["overhead"];
    let share = o["governed_probes_attached_share"].as_f64().unwrap();
    assert!(share < 0.2, "governed probes attached {share}: {o:#}");
    let hits = o["probe_hits"].as_object().unwrap();
    let large: u64 = hits
        .iter()
        .filter(|(k, _)| k.starts_with("runtime.makeBucketArray@"))
        .map(|(_, v)| v.as_u64().unwrap())
        .sum();
    assert!(large >= 2, "large-array probe hits {large}: {hits:?}");
    assert_eq!(o["counters"]["read_failed"], 0, "{o:#}");
    let private = maps_of(r, "map[main.key24]int");
    assert_eq!(private.len(), 1, "{:#}", r["maps"]);
    let p = private[0];
    assert_eq!(p["verdict"], "growing", "{p:#}");
    assert!(p["growth_events"].as_u64().unwrap() >= 2, "{p:#}");
    assert_eq!(p["grown_at"][0]["function"], "main.privateWorker", "{p:#}");
    assert!(run.leftover.is_empty(), "programs left: {:?}", run.leftover);
}

/// Neither the governor nor the event loop waits for a sample's reads:
/// every sample's reads are made to last 2.5 s
/// (`MAPLEAK_TEST_SAMPLE_DELAY_MS`), longer than a window may stay open
/// (2 s), so a window opened before a sample must close during it, and the
/// GC events of the target (a forced cycle every 300 ms) must be processed
/// during it. With the governor, or the reads, on the loop's thread, every
/// close and every event would come after the sample.
#[test]
fn window_closes_while_a_sample_is_in_progress() {
    if !privileged() {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let bin = fixture("go1.26.8", "default");
    let mut cmd = Command::new(&bin);
    cmd.args([
        "-wait",
        "-scenarios",
        "leaky",
        "-steps",
        "20",
        "-step-ms",
        "300",
    ]);
    let run = traced_run_args(
        cmd,
        &|| {},
        &[
            "env:MAPLEAK_DEBUG_TIMING=1",
            "env:MAPLEAK_TEST_SAMPLE_DELAY_MS=2500",
        ],
    );
    let ms_after = |line: &str, key: &str| -> Option<f64> {
        let rest = &line[line.find(key)? + key.len()..];
        rest.split_whitespace().next()?.parse().ok()
    };
    let closes: Vec<f64> = run
        .tracer_stderr
        .lines()
        .filter_map(|l| ms_after(l, "window closed at "))
        .collect();
    let samples: Vec<(f64, f64)> = run
        .tracer_stderr
        .lines()
        .filter_map(|l| Some((ms_after(l, "sample from ")?, ms_after(l, " ms to ")?)))
        .collect();
    assert!(
        !closes.is_empty() && !samples.is_empty(),
        "no window closed or no sample taken:\n{}",
        run.tracer_stderr
    );
    assert!(
        closes
            .iter()
            .any(|&c| samples.iter().any(|&(a, b)| a < c && c < b)),
        "no window closed while a sample was in progress: closes {closes:?}, samples {samples:?}"
    );
    let gc_events: Vec<f64> = run
        .tracer_stderr
        .lines()
        .filter_map(|l| ms_after(l, "event processed at "))
        .collect();
    assert!(
        gc_events
            .iter()
            .any(|&e| samples.iter().any(|&(a, b)| a < e && e < b)),
        "no GC event processed while a sample was in progress: events {gc_events:?}, samples {samples:?}"
    );
    assert!(run.report["overhead"]["write_windows"].as_u64().unwrap() >= 1);
    assert!(run.leftover.is_empty(), "programs left: {:?}", run.leftover);
}

/// A tracer killed with SIGKILL leaves no probe behind, and the target runs
/// on to completion with unchanged output.
#[test]
fn sigkill_leaves_nothing_attached() {
    if !privileged() {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let bin = fixture("go1.26.8", "default");
    let mut target = Command::new(&bin)
        .args(["-wait"])
        .args(TARGET_ARGS)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = target.id();
    let mut stdin = target.stdin.take().unwrap();
    let mut stderr = BufReader::new(target.stderr.take().unwrap());
    let mut stdout = target.stdout.take().unwrap();
    let mut tg = Guard(Some(target));
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    let before = prog_ids(&our_programs_loaded());
    let mut tr = tracer()
        .args(["--pid", &pid.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut tout = BufReader::new(tr.stdout.take().unwrap());
    let _trg = Guard(Some(tr));
    let mut first = String::new();
    tout.read_line(&mut first).unwrap();
    assert!(first.contains("attached"), "{first}");
    // This tracer's programs only (another run's tracer may be running).
    let mine = programs_held_by(_trg.0.as_ref().unwrap().id());
    let during: std::collections::BTreeSet<u32> = prog_ids(&our_programs_loaded())
        .intersection(&mine)
        .copied()
        .collect();
    assert!(
        during.difference(&before).count() >= 5,
        "probes should be loaded while tracing"
    );
    stdin.write_all(b"go\n").unwrap();
    drop(stdin);
    std::thread::sleep(Duration::from_millis(700));
    // SIGKILL the tracer.
    let status = Command::new("kill")
        .args(["-9", &_trg.0.as_ref().unwrap().id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    drop(_trg);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !leftover(&before, &during).is_empty() {
        assert!(
            Instant::now() < deadline,
            "probes still loaded after SIGKILL: {:?}",
            leftover(&before, &during)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut out = String::new();
    stdout.read_to_string(&mut out).unwrap();
    let st = tg.0.take().unwrap().wait().unwrap();
    assert!(st.success());
    assert_eq!(out, untraced_stdout(&bin));
}

/// SIGTERM, and SIGHUP with the tracer's stdout closed (the terminal or
/// the pipe went away), each end the trace with a complete JSON report and
/// exit code 0; nothing is left attached.
#[test]
fn signals_and_a_closed_stdout_leave_a_complete_report() {
    if !privileged() {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let bin = fixture("go1.26.8", "default");
    let mut target = Command::new(&bin)
        .args([
            "-wait",
            "-scenarios",
            "leaky",
            "-steps",
            "200",
            "-step-ms",
            "100",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = target.id();
    let mut stdin = target.stdin.take().unwrap();
    let mut stderr = BufReader::new(target.stderr.take().unwrap());
    let _tg = Guard(Some(target));
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    assert!(line.starts_with("ready"), "target said {line:?}");
    let before = prog_ids(&our_programs_loaded());
    let dir = tempfile::tempdir().unwrap();
    let mut started = false;
    for (sig, close_stdout) in [(libc::SIGTERM, false), (libc::SIGHUP, true)] {
        let json = dir.path().join(format!("report-{sig}.json"));
        let mut tr = tracer()
            .args(["--pid", &pid.to_string(), "--interval", "200ms", "--json"])
            .arg(&json)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let tracer_pid = tr.id();
        let mut tout = BufReader::new(tr.stdout.take().unwrap());
        let mut terr = tr.stderr.take().unwrap();
        let mut trg = Guard(Some(tr));
        let mut first = String::new();
        tout.read_line(&mut first).unwrap();
        assert!(first.contains("attached"), "{first}");
        let mine = programs_held_by(tracer_pid);
        let during: std::collections::BTreeSet<u32> = prog_ids(&our_programs_loaded())
            .intersection(&mine)
            .copied()
            .collect();
        if !started {
            stdin.write_all(b"go\n").unwrap();
            started = true;
        }
        if close_stdout {
            // Its next live line meets a closed pipe.
            drop(tout);
            std::thread::sleep(Duration::from_secs(3));
        } else {
            std::thread::sleep(Duration::from_secs(3));
        }
        // SAFETY: kill(2) on the child we spawned.
        assert_eq!(unsafe { libc::kill(tracer_pid as i32, sig) }, 0);
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(st) = trg.0.as_mut().unwrap().try_wait().unwrap() {
                break st;
            }
            assert!(
                Instant::now() < deadline,
                "tracer did not stop on signal {sig}"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        trg.0.take();
        let mut err = String::new();
        terr.read_to_string(&mut err).unwrap();
        assert!(
            status.success(),
            "signal {sig}: tracer exited {status}: {err}"
        );
        let r = the_process(&json);
        assert_eq!(r["ended"], "interrupted", "signal {sig}");
        assert_eq!(r["target"]["pid"], pid, "signal {sig}");
        assert!(r["duration_s"].as_f64().unwrap() >= 2.5, "signal {sig}");
        assert!(
            r["gc_cycles"].as_array().is_some_and(|c| !c.is_empty()),
            "signal {sig}: no GC cycle in {r:#}"
        );
        assert!(
            !maps_of(&r, "map[string]*main.session").is_empty(),
            "signal {sig}: the growing map is missing: {:#}",
            r["maps"]
        );
        let deadline = Instant::now() + Duration::from_secs(5);
        while !leftover(&before, &during).is_empty() {
            assert!(
                Instant::now() < deadline,
                "signal {sig}: programs left: {:?}",
                leftover(&before, &during)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Bad targets give one clear line and exit code 3 (nothing attached), never
/// a panic or hang; so does an unwritable `--json`, before attaching.
#[test]
fn bad_targets() {
    if !privileged() {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let out = tracer()
        .args(["--pid", "999999999", "--duration", "1s"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no process with pid 999999999"), "{err}");
    assert!(!err.contains("panicked"));

    let sleeper = Command::new("sleep").arg("30").spawn().unwrap();
    let pid = sleeper.id();
    let _g = Guard(Some(sleeper));
    let out = tracer()
        .args(["--pid", &pid.to_string(), "--duration", "1s"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a traceable Go program"), "{err}");
    assert!(!err.contains("panicked"));

    // A Go target, but the JSON report cannot be written: refused at once.
    let target = Command::new(fixture("go1.23.12", "default"))
        .args(["-wait"])
        .args(TARGET_ARGS)
        .stdin(Stdio::piped())
        .stderr(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let pid = target.id();
    let _g = Guard(Some(target));
    let t0 = Instant::now();
    let out = tracer()
        .args(["--pid", &pid.to_string(), "--duration", "20s"])
        .args(["--json", "/nonexistent-dir/report.json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("/nonexistent-dir/report.json") && err.contains("nothing was attached"),
        "{err}"
    );
    assert_eq!(err.matches("os error").count(), 1, "{err}");
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
    assert!(String::from_utf8_lossy(&out.stdout).is_empty());
}

/// The binary was deleted and replaced on disk after the target started: the
/// tracer still probes the file the process runs (through /proc/PID/exe).
#[test]
fn binary_replaced_after_start() {
    if !privileged() {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let app = dir.path().join("app");
    std::fs::copy(fixture("go1.23.12", "default"), &app).unwrap();
    let mut cmd = Command::new(&app);
    cmd.args(["-wait"]).args(TARGET_ARGS);
    let other = fixture_of("mapzoo", "go1.26.8", "default");
    let run = traced_run_cmd(cmd, &|| {
        std::fs::remove_file(&app).unwrap();
        std::fs::copy(&other, &app).unwrap();
    });
    let leaky = maps_of(&run.report, "map[string]*main.session");
    assert_eq!(leaky.len(), 1);
    assert_eq!(leaky[0]["verdict"], "growing");
    assert_eq!(run.report["target"]["go_version"], "go1.23.12");
}

/// A target in another mount namespace, whose binary is reachable only
/// through /proc/PID/root, is traced like any other.
#[test]
fn other_mount_namespace() {
    if !privileged() {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    let bin = fixture("go1.26.8", "stripped");
    let script = format!(
        "mount -t tmpfs none {d} && cp {} {d}/app && exec {d}/app -wait {}",
        bin.display(),
        TARGET_ARGS.join(" ")
    );
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "sh", "-c", &script]);
    let run = traced_run_cmd(cmd, &|| {
        // Not visible from here: the tmpfs exists only in the target's namespace.
        assert!(!dir.path().join("app").exists());
    });
    let leaky = maps_of(&run.report, "map[string]*main.session");
    assert_eq!(leaky.len(), 1, "{:#}", run.report["maps"]);
    assert_eq!(leaky[0]["verdict"], "growing");
    assert_eq!(run.report["target"]["map_impl"], "swiss");
}

/// Value the target printed on its last `cycle` line for `name`.
fn last_cycle_value(stderr: &str, name: &str) -> Option<u64> {
    cycle_values(stderr, name).last().map(|p| p.1)
}

/// All `(cycle, value)` pairs the target printed for `name`.
fn cycle_values(stderr: &str, name: &str) -> Vec<(u64, u64)> {
    stderr
        .lines()
        .filter(|l| l.starts_with("cycle "))
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let c = f.get(1)?.parse().ok()?;
            let v = f
                .get(f.iter().position(|x| *x == name)? + 1)?
                .parse()
                .ok()?;
            Some((c, v))
        })
        .collect()
}

/// Line of `needle` in the target's source (1-based).
fn source_line(file: &str, needle: &str) -> u64 {
    let src = std::fs::read_to_string(root().join("testdata/go/target").join(file)).unwrap();
    src.lines().position(|l| l.contains(needle)).unwrap() as u64 + 1
}

/// Keys, finalizers, cleanups and insert sites (issue: keys that are never
/// released and finalizers that never run).
/// `perf_links`: without uprobe_multi links (the path of kernels before
/// 6.6: one perf link per probe).
fn check_keys_and_finalizers(go: &str, variant: &str, show_keys: bool, perf_links: bool) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let bin = fixture(go, variant);
    let mut cmd = Command::new(&bin);
    cmd.args(["-wait"])
        .args(TARGET_ARGS)
        .args(["-scenarios", "leaky,lru,fin,finstack,cleanup,ptrdel"]);
    // No limit: keys are read at every cycle (under a budget they are read
    // when it has credit, and the report counts the cycles deferred), and
    // the write windows (insert sites, the LRU's discovery) cover the first
    // steps of this short run.
    let mut extra = vec!["--overhead-budget", "100"];
    if show_keys {
        extra.push("--show-keys");
    }
    if perf_links {
        extra.push("env:MAPLEAK_NO_UPROBE_MULTI=1");
    }
    let run = traced_run_args(cmd, &|| {}, &extra);
    let r = &run.report;
    let err = &run.target_stderr;
    let dump = serde_json::to_string_pretty(&r["maps"]).unwrap();
    // With no limit nothing is paused: every creation is seen, and every
    // map of the target's own types that grew, made after attach (held by
    // no global: `main.nodes` is made at init), has its creation site.
    let o = &r["overhead"];
    assert_eq!(o["creation_probes_paused"], 0, "{o:#}");
    assert_eq!(o["governed_probes_attached_share"], 1.0, "{o:#}");
    for m in r["maps"].as_array().unwrap() {
        let own = m["type"].as_str().unwrap().contains("main.") && m["owner"].is_null();
        if own && m["growth_events"].as_u64().unwrap() > 0 {
            assert!(
                !m["created_at"].as_array().unwrap().is_empty(),
                "a map that grew has no creation site at --overhead-budget 100: {m:#}"
            );
        }
    }
    let one = |ty: &str| -> Value {
        let v = maps_of(r, ty);
        assert_eq!(v.len(), 1, "{ty} not found once:\n{dump}");
        v[0].clone()
    };
    let swiss_era = r["target"]["go_version"]
        .as_str()
        .and_then(|v| v.strip_prefix("go1."))
        .and_then(|v| v.split('.').next())
        .and_then(|m| m.parse::<u32>().ok())
        .is_some_and(|m| m >= 24);

    // Insert site of the growing session cache: function and line.
    let leaky = one("map[string]*main.session");
    assert_eq!(leaky["verdict"], "growing", "{leaky:#}");
    let site = &leaky["inserted_at"][0];
    assert_eq!(site["function"], "main.main", "{leaky:#}");
    assert_eq!(
        site["line"].as_u64().unwrap(),
        source_line("main.go", "sessions[tok] = &session"),
        "{leaky:#}"
    );
    assert!(site["count"].as_u64().unwrap() > 0);

    // Finalizers: every SetFinalizer seen; those that ran were queued.
    let fin = &r["finalizers"];
    let finset = last_cycle_value(err, "finset").unwrap();
    let finran = last_cycle_value(err, "finran").unwrap();
    let held_len = last_cycle_value(err, "fin").unwrap();
    assert_eq!(fin["set"].as_u64().unwrap(), finset, "{fin:#}");
    let ran = fin["ran"].as_u64().unwrap();
    assert!(
        ran >= finran && ran <= finset - held_len,
        "tracer saw {ran} finalizers run, target ran {finran} of {finset} with {held_len} held: {fin:#}"
    );
    // Objects with finalizers that are keys of a map: never run.
    let held: Vec<&Value> = fin["held_as_map_keys"].as_array().unwrap().iter().collect();
    let res = one("map[*main.resource]int");
    let h = held
        .iter()
        .find(|h| h["map_id"] == res["id"])
        .unwrap_or_else(|| panic!("map[*main.resource]int not in held_as_map_keys: {fin:#}"));
    assert_eq!(h["type"], "main.resource", "{h:#}");
    let count = h["count"].as_u64().unwrap();
    assert!(
        count.abs_diff(held_len) * 50 <= held_len,
        "held_as_map_keys count {count}, target holds {held_len}: {h:#}"
    );
    // No other map holds objects with finalizers (the transient ones ran).
    let nodes = one("map[*main.node]int");
    assert!(
        held.iter()
            .all(|h| h["map_id"] != nodes["id"] && h["map_id"] != leaky["id"]),
        "{fin:#}"
    );
    if swiss_era {
        let added = fin["cleanups_added"].as_u64().unwrap();
        assert_eq!(added, 250 * 10, "{fin:#}");
        let cleanran = last_cycle_value(err, "cleanran").unwrap();
        let hlen = last_cycle_value(err, "cleanup").unwrap();
        let cran = fin["cleanups_ran"].as_u64().unwrap();
        assert!(
            cran >= cleanran && cran <= added - hlen,
            "tracer saw {cran} cleanups run, target ran {cleanran}: {fin:#}"
        );
        let handles = one("map[*main.handle]int");
        let h = held
            .iter()
            .find(|h| h["map_id"] == handles["id"])
            .unwrap_or_else(|| panic!("map[*main.handle]int not in held_as_map_keys: {fin:#}"));
        assert_eq!(h["type"], "main.handle", "{h:#}");
        assert!(
            h["cleanups"].as_u64().unwrap().abs_diff(hlen) * 50 <= hlen,
            "{h:#}"
        );
    }
    check_retained_keys(&run, show_keys);
    assert!(run.leftover.is_empty(), "programs left: {:?}", run.leftover);
}

/// Key retention of the session cache, the LRU and the pointer map with deletes.
fn check_retained_keys(run: &Run, show_keys: bool) {
    let r = &run.report;
    let err = &run.target_stderr;
    let find = |ty: &str| -> Value { maps_of(r, ty)[0].clone() };

    // The session cache: keys never released, ages spread over the cycles.
    let leaky = find("map[string]*main.session");
    let k = &leaky["retained_keys"];
    assert!(
        k.is_object(),
        "no retained_keys for the session cache: {leaky:#}"
    );
    let lens = cycle_values(err, "leaky");
    // Keys that survived a cycle: those present one cycle before the last snapshot.
    let last_cycle = k["cycle"].as_u64().unwrap();
    let prev = lens
        .iter()
        .rfind(|(c, _)| *c < last_cycle)
        .map(|p| p.1)
        .unwrap();
    let never = k["never_released"].as_u64().unwrap();
    assert!(
        never.abs_diff(prev) * 100 <= prev * 3,
        "never_released {never}, target had inserted {prev} keys one cycle earlier: {k:#}"
    );
    assert!(k["oldest_cycles"].as_u64().unwrap() >= 5, "{k:#}");
    let ages = k["age_cycles_histogram"].as_array().unwrap();
    assert!(ages.len() >= 5, "ages not spread: {k:#}");
    let examples: Vec<&str> = k["examples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    assert!(!examples.is_empty(), "{k:#}");
    for e in &examples {
        let whole = e.contains("tok-") && e.matches(char::is_numeric).count() >= 12;
        if show_keys {
            assert!(whole, "--show-keys should show the whole key: {e}");
        } else {
            assert!(!whole, "keys must be redacted by default: {e}");
            assert!(e.contains('#'), "a redacted key carries a hash: {e}");
        }
    }

    // The LRU (found through the write windows, since it never grows): keys
    // churn; none outlives the capacity window.
    let lru = lru_maps(r);
    assert_eq!(lru.len(), 1, "LRU not found once: {:#}", r["maps"]);
    let k = &lru[0]["retained_keys"];
    assert!(k.is_object(), "{:#}", lru[0]);
    assert!(k["released"].as_u64().unwrap() >= 5000, "{k:#}");
    assert!(k["oldest_cycles"].as_u64().unwrap() <= 1, "{k:#}");
    assert_eq!(k["never_released"], 0, "{k:#}");

    // Pointer keys with deletes: deleted keys are not retained.
    let nodes = find("map[*main.node]int");
    let k = &nodes["retained_keys"];
    assert!(k.is_object(), "{nodes:#}");
    let len = nodes["len_last"].as_u64().unwrap();
    assert_eq!(k["tracked"].as_u64().unwrap(), len, "{k:#}");
    assert!(k["never_released"].as_u64().unwrap() < len, "{k:#}");
}

/// A `SetFinalizer` call that grows the goroutine stack restarts after
/// morestack, and a probe on its stack check's branch (arm64; amd64 before
/// Go 1.21, whose prologue has no `PUSHQ BP`) fires twice: the finalizers
/// set are still counted exactly, whatever the time between the two hits.
/// The target calls it 200 times a step from fresh goroutines at depths
/// 0..199, so that some calls grow the stack themselves.
#[test]
fn finalizer_counts_exact_under_stack_growth() {
    if !privileged() {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    for go in ["go1.19.8", "go1.26.8"] {
        let bin = fixture(go, "default");
        let mut cmd = Command::new(&bin);
        // New goroutines start with the smallest stack (not the runtime's
        // running average, Go 1.19+): the same calls grow it in every run.
        cmd.env("GODEBUG", "adaptivestackstart=0")
            .args(["-wait"])
            .args(TARGET_ARGS)
            .args(["-scenarios", "finstack"]);
        let run = traced_run_args(cmd, &|| {}, &["--overhead-budget", "100"]);
        let r = &run.report;
        let fin = &r["finalizers"];
        let finset = last_cycle_value(&run.target_stderr, "finset").unwrap();
        assert_eq!(finset, 200 * 10);
        assert_eq!(fin["set"].as_u64().unwrap(), finset, "{go}: {fin:#}");
        let o = &r["overhead"];
        let hits: u64 = o["probe_hits"]
            .as_object()
            .unwrap()
            .iter()
            .filter(|(k, _)| k.starts_with("runtime.SetFinalizer@"))
            .map(|(_, v)| v.as_u64().unwrap())
            .sum();
        let restarts = o["counters"]["stack_check_restart"].as_u64().unwrap();
        if GOARCH == "arm64" || go == "go1.19.8" {
            // The probe is on the branch: some calls hit it twice, and the
            // extra hits are the restarts left out.
            assert!(
                hits > finset && restarts >= hits - finset,
                "{go}: {hits} probe hits for {finset} calls, {restarts} restarts: {o:#}"
            );
        } else {
            // PUSHQ BP after the stack check: once per call.
            assert_eq!(hits, finset, "{go}: {o:#}");
        }
        assert!(run.leftover.is_empty(), "programs left: {:?}", run.leftover);
    }
}

/// Keys and finalizers on a classic-hmap release (redacted keys).
#[test]
fn keys_and_finalizers_hmap_go123() {
    if privileged() {
        check_keys_and_finalizers("go1.23.12", "default", false, false);
    }
}

/// Keys and cleanups on a Swiss-table release, keys shown whole.
#[test]
fn keys_and_finalizers_swiss_go126() {
    if privileged() {
        check_keys_and_finalizers("go1.26.8", "default", true, false);
    }
}

/// Stripped builds, the first Swiss release (cleanups through the finalizer
/// queue), 1.19 and the 1.27 layout.
#[test]
fn keys_and_finalizers_other_releases() {
    if privileged() {
        // The pre-6.6 path: one perf link per probe, no uprobe_multi.
        check_keys_and_finalizers("go1.23.12", "stripped", false, true);
        check_keys_and_finalizers("go1.26.8", "stripped", false, false);
        check_keys_and_finalizers("go1.19.8", "default", false, false);
        check_keys_and_finalizers("go1.24.13", "default", false, false);
        check_keys_and_finalizers("go1.27.4", "default", true, false);
    }
}
