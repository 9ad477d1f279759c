//! Tier 2 (root): holder paths. The target's `holders` scenario grows a map
//! that no global holds directly: `srv *server` → `cache *cache` → `items
//! map[string][]byte`; its `shards` scenario a map in an element of a slice
//! of structs (`shardReg *shardSet` → `shards []shard` → `[2]` → `m`); its
//! `iface` scenario a map behind an interface (`handler any` holding a
//! `*box` → `m`). Each
//! prints the path it declares (from its own types, through reflect). The
//! report's `held_by` for each map is that path, and its `owner` the global;
//! in a stripped binary the root is the global's address and type, and the
//! fields are still named (from the runtime type descriptors). On a
//! classic-hmap release and a Swiss-table one, default and stripped.
use std::process::Command;

mod e2e_common;

#[allow(
    clippy::wildcard_imports,
    reason = "the harness is the tests' vocabulary"
)]
use e2e_common::{harness::*, privileged};
use serde_json::Value;

/// The scenarios run, the type of the map each grows, and the steps of its
/// declared path.
const SCENARIOS: [(&str, &str, usize); 3] = [
    // main.srv → (*main.server).cache → (*main.cache).items
    ("holders", "map[string][]uint8", 3),
    // main.shardReg → (*main.shardSet).shards → [2] → (main.shard).m
    ("shards", "map[int64]string", 4),
    // main.handler → .(*main.box) → (*main.box).m
    ("iface", "map[string]int", 3),
];

/// The path the target declares on its "holder <scenario> …" line.
fn declared(stderr: &str, scenario: &str) -> Vec<String> {
    let prefix = format!("holder {scenario} ");
    let line = stderr
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no holder line for {scenario}:\n{stderr}"));
    line.split(" → ").map(str::to_owned).collect()
}

fn check_holders(go: &str, variant: &str) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut cmd = Command::new(fixture(go, variant));
    cmd.args([
        "-wait",
        "-scenarios",
        "holders,shards,iface",
        "-steps",
        "12",
        "-step-ms",
        "250",
    ]);
    let run = traced_run_cmd(cmd, &|| {});
    let r = &run.report;
    assert_eq!(r["target"]["go_version"], go);
    for (scenario, ty, steps) in SCENARIOS {
        check_path(&run, scenario, ty, steps, variant == "stripped");
    }
    // The search's cost is reported, within its bound.
    let hs = &r["overhead"]["holder_search"];
    let searches = hs["searches"].as_u64().unwrap();
    assert!(searches >= 1, "{hs:#}");
    assert!(hs["paths_found"].as_u64().unwrap() >= 3, "{hs:#}");
    assert!(
        hs["heap_bytes_read"].as_u64().unwrap() <= searches * (32 << 20),
        "{hs:#}"
    );
    assert!(run.leftover.is_empty(), "programs left: {:?}", run.leftover);
}

/// The growing map of type `ty` is held by the path `scenario` declares.
fn check_path(run: &Run, scenario: &str, ty: &str, steps: usize, stripped: bool) {
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
    if stripped {
        // No symbols: the global by address and its type (of the pointer
        // it holds; `interface {}` for an interface).
        let ptr = if want[1].starts_with(".(") {
            "interface {}"
        } else {
            want[1].split(')').next().unwrap().trim_start_matches('(')
        };
        assert!(
            path[0].starts_with("global at 0x") && path[0].ends_with(&format!(" ({ptr})")),
            "{path:?}"
        );
        assert_eq!(path[1..], want[1..], "{m:#}");
    } else {
        assert_eq!(path, want, "{m:#}");
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
        check_holders("go1.23.12", "default");
    }
}

/// Holder path on a classic-hmap release, stripped.
#[test]
fn holders_hmap_go123_stripped() {
    if privileged() {
        check_holders("go1.23.12", "stripped");
    }
}

/// Holder path on a Swiss-table release.
#[test]
fn holders_swiss_go126() {
    if privileged() {
        check_holders("go1.26.8", "default");
    }
}

/// Holder path on a Swiss-table release, stripped.
#[test]
fn holders_swiss_go126_stripped() {
    if privileged() {
        check_holders("go1.26.8", "stripped");
    }
}
