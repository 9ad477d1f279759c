//! Tier 2 (root): holder paths. The target's `holders` scenario grows a map
//! that no global holds directly: `srv *server` → `cache *cache` → `items
//! map[string][]byte`; its `shards` scenario a map in an element of a slice
//! of structs (`shardReg *shardSet` → `shards []shard` → `[2]` → `m`); its
//! `iface` scenario a map behind an interface (`handler any` holding a
//! `*box` → `m`); its `ifaceheap` scenario a map behind a non-empty
//! interface in a heap object (`rtr *router` → `store Store` holding a
//! `*memStore` → `data`); its `array` scenario a map in an element of an
//! array of structs (`shc *shardedCache` → `parts [8]part` → `[5]` → `m`);
//! its `nested` scenario a map held as the value of another
//! map (`tenantMaps map[string]map[string]int64` → `["tenant-acme"]`); its
//! `goroutine` scenario a map that only a goroutine's closure holds (no
//! global: the root is the goroutine, by id and the function whose frame
//! holds it, here its start function). Each
//! prints the path it declares (from its own types, through reflect, its
//! goroutine id from runtime.Stack and the function whose frame holds it from
//! runtime.FuncForPC). The report's `held_by` for each map is that path
//! (with the map key redacted, as the report redacts keys, or whole with
//! `--show-keys` on the Swiss release's default build), and its
//! `owner` the root; in a stripped binary a global root is the global's
//! address and type, and the fields, keys and goroutines are still named
//! (from the runtime type descriptors and pclntab). On a classic-hmap
//! release and a Swiss-table one, default and stripped.
use std::process::Command;

mod e2e_common;

#[allow(
    clippy::wildcard_imports,
    reason = "the harness is the tests' vocabulary"
)]
use e2e_common::{harness::*, privileged};
use serde_json::Value;

/// The scenarios run, the type of the map each grows, the steps of its
/// declared path, and the type a stripped binary names its root global by.
const SCENARIOS: [(&str, &str, usize, &str); 7] = [
    // main.srv → (*main.server).cache → (*main.cache).items
    ("holders", "map[string][]uint8", 3, "*main.server"),
    // main.shardReg → (*main.shardSet).shards → [2] → (main.shard).m
    ("shards", "map[int64]string", 4, "*main.shardSet"),
    // main.handler → .(*main.box) → (*main.box).m
    ("iface", "map[string]int", 3, "interface {}"),
    // main.rtr → (*main.router).store → .(*main.memStore) → (*main.memStore).data
    ("ifaceheap", "map[string]uint16", 4, "*main.router"),
    // main.shc → (*main.shardedCache).parts → [5] → (main.part).m
    ("array", "map[uint64]string", 4, "*main.shardedCache"),
    // main.tenantMaps → ["tenant-acme"]
    (
        "nested",
        "map[string]int64",
        2,
        "map[string]map[string]int64",
    ),
    // goroutine N (main.startAggregator.func1)
    ("goroutine", "map[string]int32", 1, ""),
];

/// What the report shows for the declared map step `["K"]` without
/// `--show-keys`: the key redacted as retained keys are, a prefix of at
/// most 4 characters and half the key, its length and a hash (random per
/// run), e.g. `["tena…" (len 11, #1a2b3c4d)]`. Other steps as declared.
fn redacted_matches(got: &str, want: &str) -> bool {
    let Some(key) = want.strip_prefix("[\"").and_then(|k| k.strip_suffix("\"]")) else {
        return got == want;
    };
    let keep: String = key.chars().take(4.min(key.chars().count() / 2)).collect();
    let head = format!("[\"{keep}…\" (len {}, #", key.len());
    got.starts_with(&head)
        && got.len() == head.len() + 10
        && got.ends_with(")]")
        && got[head.len()..head.len() + 8]
            .chars()
            .all(|c| c.is_ascii_hexdigit())
        && !got.contains(key)
}

/// The path the target declares on its "holder <scenario> …" line.
fn declared(stderr: &str, scenario: &str) -> Vec<String> {
    let prefix = format!("holder {scenario} ");
    let line = stderr
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no holder line for {scenario}:\n{stderr}"));
    line.split(" → ").map(str::to_owned).collect()
}

/// How much of the budget the holder search gets.
#[derive(Clone, Copy, PartialEq)]
enum Budget {
    /// `--overhead-budget 10`: the search may also spend the main bucket's
    /// spare credit, and runs at about every fourth sample.
    Ample,
    /// The default (0.5 %): only the search's own share of it.
    Default,
}

/// `show_keys`: the tracer runs with `--show-keys`, and a map key step is
/// then the declared one exactly.
fn check_holders(go: &str, variant: &str, show_keys: bool) {
    check_holders_at(go, variant, show_keys, Budget::Ample);
}

fn check_holders_at(go: &str, variant: &str, show_keys: bool, budget: Budget) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut cmd = Command::new(fixture(go, variant));
    // At the default budget the first search waits for suspects (a few
    // cycles) and then runs once on its own credit. The test's tracer is
    // a debug build, several times the release build's CPU: on a loaded
    // machine its own work can put the budget in debt, which holds the
    // samples for up to `MAX_SAMPLE_GAP` (10 s). With 24 steps (6 s) the
    // growing map was then sampled once, at its second step, and judged
    // idle (1 run in 8-10 with a busy loop beside it, and once in CI). 64
    // steps (16 s) outlast one such hold.
    let steps = if budget == Budget::Default {
        "64"
    } else {
        "12"
    };
    cmd.args([
        "-wait",
        "-scenarios",
        "holders,shards,iface,ifaceheap,array,nested,goroutine",
        "-steps",
        steps,
        "-step-ms",
        "250",
    ]);
    // 10%: each hit is debited at its measured cost (trap and program,
    // 2-3 µs for the stack-walking programs), which at 5% left the spare
    // credit ~0.1 s, cut short on Go 1.23; the search then runs on the
    // main bucket's spare credit as well as its own.
    // At the product's default on this machine's CPU (tests that give no
    // budget run at `harness::TEST_BUDGET`); under emulation, at the
    // harness's emulated default.
    let mut args: Vec<String> = if budget == Budget::Ample {
        vec!["--overhead-budget".to_string(), "10".to_string()]
    } else {
        default_budget_args()
    };
    if show_keys {
        args.push("--show-keys".to_string());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = traced_run_args(cmd, &|| {}, &args);
    let r = &run.report;
    assert_eq!(r["target"]["go_version"], go);
    for (scenario, ty, steps, root_type) in SCENARIOS {
        let stripped = (variant == "stripped").then_some(root_type);
        check_path(&run, scenario, ty, steps, stripped, show_keys);
    }
    // The search's cost is reported, within its bound.
    let hs = &r["overhead"]["holder_search"];
    let searches = hs["searches"].as_u64().unwrap();
    assert!(searches >= 1, "{hs:#}");
    assert!(hs["paths_found"].as_u64().unwrap() >= 7, "{hs:#}");
    // Each search read the heap (live, a level at a time) in one turn or
    // more.
    assert!(hs["heap_bytes_read"].as_u64().unwrap() > 0, "{hs:#}");
    assert!(hs["turns"].as_u64().unwrap() >= searches, "{hs:#}");
    // Stacks were copied, within their bound; the outer map's entries read.
    let stack = hs["stack_bytes_read"].as_u64().unwrap();
    assert!(stack > 0 && stack <= searches * (4 << 20), "{hs:#}");
    assert!(hs["map_entries_read"].as_u64().unwrap() >= 3, "{hs:#}");
    assert!(run.leftover.is_empty(), "programs left: {:?}", run.leftover);
}

/// The growing map of type `ty` is held by the path `scenario` declares
/// (`stripped`: the type a stripped binary names a global root by).
fn check_path(
    run: &Run,
    scenario: &str,
    ty: &str,
    steps: usize,
    stripped: Option<&str>,
    show_keys: bool,
) {
    let r = &run.report;
    let want = declared(&run.target_stderr, scenario);
    assert_eq!(want.len(), steps, "{want:?}");
    let maps = maps_of(r, ty);
    let grown: Vec<&&Value> = maps.iter().filter(|m| m["verdict"] == "growing").collect();
    assert_eq!(grown.len(), 1, "one growing {ty}: {maps:#?}");
    let m = grown[0];
    let held = &m["held_by"];
    let path: Vec<String> = held["path"]
        .as_array()
        .unwrap_or_else(|| panic!("no held_by: {m:#}\n{:#}", r["overhead"]))
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(held["best_effort"], true, "{m:#}");
    assert_eq!(path.len(), want.len(), "{m:#}");
    match stripped {
        // No symbols: a global by address and its type (of the pointer it
        // holds; `interface {}` for an interface). A goroutine is named as
        // in any binary.
        Some(root_type) if !want[0].starts_with("goroutine ") => assert!(
            path[0].starts_with("global at 0x") && path[0].ends_with(&format!(" ({root_type})")),
            "{path:?}"
        ),
        _ => assert_eq!(path[0], want[0], "{m:#}"),
    }
    for (got, want) in path[1..].iter().zip(&want[1..]) {
        assert!(
            if show_keys {
                got == want
            } else {
                redacted_matches(got, want)
            },
            "{got:?} for {want:?}: {m:#}"
        );
    }
    assert_eq!(m["owner"].as_str(), Some(path[0].as_str()), "{m:#}");
    // The text report shows the path.
    let text = &run.tracer_stdout;
    assert!(
        text.contains(&format!("held by:    {}  (best-effort)", path.join(" → "))),
        "{text}"
    );
}

/// Holder path on a classic-hmap release.
#[test]
fn holders_hmap_go123() {
    if privileged() {
        check_holders("go1.23.12", "default", false);
    }
}

/// Holder path on a classic-hmap release, stripped.
#[test]
fn holders_hmap_go123_stripped() {
    if privileged() {
        check_holders("go1.23.12", "stripped", false);
    }
}

/// Holder path on a Swiss-table release, keys shown whole.
#[test]
fn holders_swiss_go126() {
    if privileged() {
        check_holders("go1.26.8", "default", true);
    }
}

/// Holder path on a Swiss-table release, stripped.
#[test]
fn holders_swiss_go126_stripped() {
    if privileged() {
        check_holders("go1.26.8", "stripped", false);
    }
}

/// Holder paths at the default budget (0.5 %): five scenarios' inserts keep
/// the main bucket below half, where no spare credit is left for optional
/// work, and the search runs on its own share of the budget.
#[test]
fn holders_at_the_default_budget() {
    if privileged() {
        check_holders_at("go1.26.8", "default", false, Budget::Default);
    }
}

/// A holder path in a heap of over 2 GiB: linked objects allocated before
/// the `holders` scenario's, so that its objects lie past the first 2 GiB
/// of the heap (a search that copied at most 32 MiB of it, as until
/// 2026-12, found nothing). The search reads the heap live, level by
/// level, about 1.5 GiB a second here, and its turns last a second (in
/// the reference machine's time, as the scan's speed): it is stopped by
/// its deadline and goes on at later samples. Not in the arm64 tier: the
/// emulated VM has neither the memory nor the speed.
#[cfg(target_arch = "x86_64")]
#[test]
fn holders_in_a_large_heap() {
    if !privileged() {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut cmd = Command::new(fixture("go1.26.8", "default"));
    cmd.args([
        "-wait",
        "-scenarios",
        "holders",
        "-ballast-mib",
        "2048",
        "-steps",
        "30",
        "-step-ms",
        "250",
    ]);
    // A budget that lets the search run at every sample, a second a turn.
    let run = traced_run_args(cmd, &|| {}, &["--overhead-budget", "100"]);
    assert!(
        run.target_stderr.contains("ballast 2048 MiB"),
        "{}",
        run.target_stderr
    );
    check_path(&run, "holders", "map[string][]uint8", 3, None, false);
    let hs = &run.report["overhead"]["holder_search"];
    eprintln!("holder search: {hs:#}");
    // It read the whole heap at least once, and went on after a deadline.
    assert!(
        hs["heap_bytes_read"].as_u64().unwrap() >= 2048 << 20,
        "{hs:#}"
    );
    assert!(
        hs["turns"].as_u64().unwrap() > hs["searches"].as_u64().unwrap(),
        "{hs:#}"
    );
    assert!(run.leftover.is_empty(), "programs left: {:?}", run.leftover);
}
