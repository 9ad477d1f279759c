//! Tier 2: end-to-end tests against real Go processes built from
//! `testdata/go/target` (`cargo xtask fixtures`), with real uprobes: the
//! scenarios, the budget, keys and finalizers. Lifecycles (signals, exits,
//! namespaces, bad targets) are in `e2e_lifecycle.rs`.
//!
//! They need root (or CAP_BPF + CAP_PERFMON + CAP_SYS_PTRACE). Without it
//! they fail, unless `MAPLEAK_ALLOW_SKIP=1` asks for a skip; with `CI` set
//! they always fail. Runs are serialized (one tracer at a time) so "no
//! probe left behind" can be checked, and every process a test starts is
//! killed by a guard, also when the test fails.
use std::process::Command;

mod e2e_common;

#[allow(
    clippy::wildcard_imports,
    reason = "the harness is the tests' vocabulary"
)]
use e2e_common::{harness::*, privileged};
use serde_json::Value;

/// The scenario tests' budget (share of one CPU, in %): twice
/// [`TEST_BUDGET`]. The fixture runs for about three seconds, and a verdict
/// needs three samples of a map. At 1 % its start used the whole bucket
/// (the first write window and the creation probes over a million inserts
/// and thousands of short-lived maps a second), the holder search of the
/// goroutine's map then put it in debt, and the samples were held: the
/// goroutine-private map was sampled three times in a passing run, and a
/// loaded CI machine left it with fewer (a failed run of d0a66d7). What
/// the product finds at the default budget over a longer trace is the
/// bench's planted map and `holders_at_the_default_budget`.
const SCENARIO_BUDGET: &str = "2";

fn check_scenarios(go: &str, variant: &str) {
    check_scenarios_gc(go, variant, false);
}

/// [`check_scenarios`]; `gc_probe`: with `runtime.gcSweep` probed, as
/// where the GC counters cannot be located (`MAPLEAK_GC_PROBE=1`).
fn check_scenarios_gc(go: &str, variant: &str, gc_probe: bool) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let bin = fixture(go, variant);
    let mut cmd = Command::new(&bin);
    cmd.args(["-wait"]).args(TARGET_ARGS);
    let mut args = vec!["--overhead-budget", SCENARIO_BUDGET];
    if gc_probe {
        args.push("env:MAPLEAK_GC_PROBE=1");
    }
    let run = traced_run_args(cmd, &|| {}, &args);
    let r = &run.report;
    let stripped = variant.ends_with("stripped");
    assert_eq!(r["target"]["go_version"], go);
    assert_eq!(r["target"]["stripped"], stripped);
    let dump = serde_json::to_string_pretty(&r["maps"]).unwrap();
    // What the governor did, for a verdict that missed (under TCG a loaded
    // moment can hold the samples).
    let why = format!(
        "overhead: {:#}\ntracer stderr:\n{}",
        r["overhead"], run.tracer_stderr
    );

    // A global cache that only grows: growing, with type, owner and creator.
    let leaky = maps_of(r, "map[string]*main.session");
    assert_eq!(leaky.len(), 1, "leaky cache not found once:\n{dump}");
    let leaky = leaky[0];
    assert_eq!(leaky["verdict"], "growing", "{leaky:#}\n{why}");
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
    // A global holding the map pointer itself: a path of one step, the
    // owner, not best-effort.
    if !leaky["owner"].is_null() {
        assert_eq!(
            leaky["held_by"],
            serde_json::json!({"path": [leaky["owner"]], "best_effort": false}),
            "{leaky:#}"
        );
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
    assert_eq!(private.len(), 1, "{why}\n{dump}");
    assert_eq!(private[0]["verdict"], "growing", "{:#}\n{why}", private[0]);
    assert_eq!(
        private[0]["created_at"][0]["function"],
        "main.privateWorker"
    );
    // Held by a goroutine only: no global owns it; its holder, when the
    // search has run, is that goroutine (`goroutine N (main.privateWorker)`).
    let owner = private[0]["owner"].as_str();
    assert!(
        owner.is_none_or(|o| o.starts_with("goroutine ") && o.ends_with(" (main.privateWorker)")),
        "{:#}",
        private[0]
    );
    assert_eq!(
        private[0]["held_by"]["path"][0].as_str(),
        owner,
        "{:#}",
        private[0]
    );
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
        // At least two cycles of both maps (of ten): a tracer on an
        // emulated CPU, or on a loaded machine, samples fewer cycles than
        // the target runs.
        assert!(
            matched >= 4,
            "only {matched} (cycle, len) pairs to compare:\n{}",
            run.target_stderr
        );
    }

    // What started the cycles (memstats.numforcedgc at the marked events):
    // the target forces its cycles (runtime.GC) and prints one line for
    // each.
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
        // A run of seconds has no two-minute gap.
        assert_eq!(t["periodic"], 0, "{t}");
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
    // GC cycles are read from the runtime's counters (located in every
    // fixture), not trapped: no gcSweep hit, and the reads saw the cycles;
    // or, asked for, the probe saw them.
    let reads = r["overhead"]["gc_counter_reads"].as_u64();
    if gc_probe {
        assert!(sum("runtime.gcSweep@") >= 8, "{hits:?}");
        assert_eq!(reads, None, "{:#}", r["overhead"]);
    } else {
        assert_eq!(sum("runtime.gcSweep@"), 0, "{hits:?}");
        let seen = gc_cycles_counted(r);
        assert!(
            reads.unwrap_or(0) > 0 && seen >= 6,
            "{reads:?} reads, cycles {}",
            r["gc_triggers"]
        );
    }
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

/// Every scenario on a Swiss-table release with `gcSweep` probed: the
/// fallback where the runtime's GC counters cannot be located.
#[test]
fn scenarios_swiss_go126_gc_probe() {
    if privileged() {
        check_scenarios_gc("go1.26.8", "default", true);
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
        serde_json::json!({"heap": 0, "periodic": 0, "forced": 0}),
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

/// Value the target printed on its last `cycle` line for `name`.
fn last_cycle_value(stderr: &str, name: &str) -> Option<u64> {
    cycle_values(stderr, name).last().map(|p| p.1)
}

/// What the target held of `name` at the GC cycle of a `held_as_map_keys`
/// entry's key snapshot (`as_of_cycle`): the value printed at the last step
/// ending at or before it and, when a background cycle fell between two
/// steps' lines, the next one too (the keys may have been read in between).
/// Fails when the snapshot is more than two steps older than the target's
/// last line (more on a slow CPU, below): a target that exits right after a cycle may leave a slow
/// tracer (an emulated CPU, 10 to 20 times slower) no time to read the last
/// cycles' keys, never more.
fn value_as_of(stderr: &str, name: &str, held: &Value) -> Vec<u64> {
    let c = held["as_of_cycle"].as_u64().unwrap();
    let v = cycle_values(stderr, name);
    let at = v.iter().rposition(|p| p.0 <= c);
    // On a CPU many times slower (the emulated arm64 VM) a step more is
    // allowed per 4 of `speed::slowdown`, both ways: the snapshot may be
    // older (its last one three steps before the target's last line), and
    // the finalizer events of the newest keys may not have been processed
    // when it came back, so the count may be the step before's (1,150 at
    // a cycle the target printed 1,200, the step before 1,050).
    let lag = (mapleak::speed::slowdown() / 4.0) as usize;
    assert!(
        at.is_some_and(|i| i + 3 + lag >= v.len()),
        "the keys held as map keys were counted at GC cycle {c}; the target printed {name} at {:?}: {held:#}",
        v.iter().rev().take(3).collect::<Vec<_>>()
    );
    let i = at.unwrap();
    let mut out = vec![v[i].1];
    out.extend(v[i.saturating_sub(lag)..i].iter().map(|p| p.1));
    if v[i].0 != c
        && let Some(n) = v.get(i + 1)
    {
        out.push(n.1);
    }
    // And the snapshot of cycle c has been read up to half a step later
    // (CI of ce06013).
    out.extend(v.iter().skip(i + 1).take(lag).map(|p| p.1));
    out
}

/// Whether `n` is within 2 % of the range of `then` (the values a snapshot
/// may have seen: the keys are read while the target runs on, so a slow
/// tracer's count can fall between two printed steps, as 1,300 between
/// 1,200 and 1,350 did on the emulated arm64 VM, CI of e2b5d9f).
fn between(n: u64, then: &[u64]) -> bool {
    let lo = then.iter().copied().min().unwrap_or(0);
    let hi = then.iter().copied().max().unwrap_or(0);
    n * 50 >= lo * 49 && n * 50 <= hi * 51
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
    let held_then = value_as_of(err, "fin", h);
    assert!(
        between(count, &held_then),
        "held_as_map_keys count {count}, target held {held_then:?} then (now {held_len}): {h:#}"
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
        let then = value_as_of(err, "cleanup", h);
        let n = h["cleanups"].as_u64().unwrap();
        assert!(
            between(n, &then),
            "{n} cleanups held as keys, the target held {then:?} then (now {hlen}): {h:#}"
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
    // Keys that survived a cycle: those present at the snapshot before the
    // last, whose cycle the youngest keys older than the last snapshot's
    // own date (a slow tracer's snapshots may skip cycles). Keys are read
    // while the target runs on: the next step's count counts too.
    let last_cycle = k["cycle"].as_u64().unwrap();
    let ages = k["age_cycles_histogram"].as_array().unwrap();
    let gap = ages
        .iter()
        .filter_map(|p| p[0].as_u64())
        .find(|&a| a > 0)
        .unwrap_or_else(|| panic!("no key older than the last snapshot: {k:#}"));
    let i = lens
        .iter()
        .rposition(|(c, _)| *c <= last_cycle - gap)
        .unwrap();
    let then: Vec<u64> = lens[i..].iter().take(2).map(|p| p.1).collect();
    let never = k["never_released"].as_u64().unwrap();
    // A partial snapshot (read while the map grew) misses keys until a
    // complete one finds them: after one, fewer keys may be counted, never
    // more (16,000 against 18,000 printed, two partial snapshots, arm64 VM).
    let partial = k["partial_snapshots"].as_u64().unwrap() > 0;
    assert!(
        then.iter().any(|&n| never.abs_diff(n) * 100 <= n * 3)
            || (partial && never * 2 >= then[0] && never * 100 <= then[then.len() - 1] * 103),
        "never_released {never}, target had inserted {then:?} keys at the previous snapshot ({gap} cycle(s) earlier): {k:#}"
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
    // A partial snapshot (read while the LRU changed) releases nothing:
    // then the keys it missed are still counted (up to the LRU's 1,000 for
    // each), and every snapshot may hold a few keys on their way in or out
    // (1,004 were seen, with 1,000 kept from the snapshot before: CI of
    // 00e9b95, arm64 VM; 3,022 after 2 partial snapshots, CI of e1eb173).
    const IN_TRANSIT: u64 = 50;
    let partial = k["partial_snapshots"].as_u64().unwrap();
    let most = if partial == 0 {
        1000
    } else {
        // Never below the 3,000 allowed before for any partial snapshot.
        (1000 + IN_TRANSIT) * (1 + partial).max(3)
    };
    assert!(k["tracked"].as_u64().unwrap() <= most, "{k:#}");
    // Every step replaces all 1,000 keys, so none survives two snapshots,
    // unless two cycles fell within one step (a background cycle after the
    // step's puts, then its forced one; samples closer than the clock's
    // 100 ms gap are coalesced, so it takes a slow machine, the emulated
    // arm64 VM, CI of ce06013): then the survivors are a cycle old. Each
    // partial snapshot keeps the keys it missed a snapshot longer (keys 2
    // cycles old after one, arm64 VM, CI of 682b2e9's check).
    let oldest = k["oldest_cycles"].as_u64().unwrap();
    assert!(oldest <= 1 + partial, "{k:#}");
    // No map is read twice within a cycle: a survivor is at least a cycle old.
    assert!(
        k["never_released"] == 0 || oldest >= 1,
        "keys survived without being a cycle old: {k:#}"
    );

    // Pointer keys with deletes: deleted keys are not retained.
    let nodes = find("map[*main.node]int");
    let k = &nodes["retained_keys"];
    assert!(k.is_object(), "{nodes:#}");
    // Its length at the cycle of the last key snapshot: the header read at
    // that cycle, or what the target printed then. A snapshot is dated by
    // the cycle the target was in when it was read (a slow tracer's may be
    // a cycle or two newer than its sample's, and newer than its last
    // header read); the keys are read while the target runs on, so the
    // next step's length counts too.
    let snap_cycle = k["cycle"].as_u64().unwrap();
    let mut lens: Vec<u64> = nodes["len_by_cycle"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p[0] == snap_cycle)
        .filter_map(|p| p[1].as_u64())
        .collect();
    let printed = cycle_values(&run.target_stderr, "ptrdel");
    if let Some(i) = printed.iter().rposition(|p| p.0 <= snap_cycle) {
        lens.extend(printed[i..].iter().take(2).map(|p| p.1));
    }
    let tracked = k["tracked"].as_u64().unwrap();
    assert!(
        lens.contains(&tracked),
        "{tracked} keys tracked at cycle {snap_cycle}, the map's length then {lens:?}: {k:#}"
    );
    assert!(k["never_released"].as_u64().unwrap() < tracked, "{k:#}");
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
            // The probe is on the branch: a call that grows the stack hits it
            // twice, and the extra hits are the restarts left out. Go 1.19
            // on amd64 grows the stack in some of these calls in every run
            // (the case this test is for); the arm64 builds of 1.26 did in
            // most runs under qemu, not in all.
            assert!(
                hits >= finset && restarts >= hits - finset,
                "{go}: {hits} probe hits for {finset} calls, {restarts} restarts: {o:#}"
            );
            if GOARCH != "arm64" {
                assert!(
                    hits > finset,
                    "{go}: no call grew the stack ({hits} probe hits for {finset} calls): {o:#}"
                );
            }
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
