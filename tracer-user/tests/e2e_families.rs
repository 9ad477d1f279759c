//! Tier 2 (root): families of maps. 20,000 small per-tenant maps made at
//! one function (`main.newTenant`), each gaining an entry every twentieth
//! step, together gain 1,000 entries a cycle while no map grows twice: the
//! report has one growing family for that site and type, whose entries are
//! what the target counted; 5,000 maps of the same shape whose total goes
//! up and down (`main.newFixedTenant`) are a family that is not growing.
//! On a classic-hmap release and a Swiss-table one.
use std::process::Command;

mod e2e_common;

#[allow(
    clippy::wildcard_imports,
    reason = "the harness is the tests' vocabulary"
)]
use e2e_common::{harness::*, privileged};
use serde_json::Value;

/// Per-tenant maps made by each scenario.
const TENANTS: u64 = 20_000;
const FIXED_TENANTS: u64 = 5_000;
const TYPE: &str = "map[int32]int32";

/// The one family of `TYPE` created at `function`.
fn family<'a>(r: &'a Value, function: &str) -> &'a Value {
    let all = r["families"].as_array().expect("families[] in the report");
    let found: Vec<&Value> = all
        .iter()
        .filter(|f| {
            f["type"] == TYPE
                && f["site_kind"] == "created"
                && f["site"]
                    .as_str()
                    .is_some_and(|s| s.starts_with(&format!("{function} (")))
        })
        .collect();
    assert_eq!(found.len(), 1, "one family made at {function}: {all:#?}");
    found[0]
}

/// `(cycle, total)` of `scenario` in the target's "cycle N ..." lines.
fn printed(stderr: &str, scenario: &str) -> Vec<(u64, u64)> {
    stderr
        .lines()
        .filter(|l| l.starts_with("cycle "))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let at = f.iter().position(|x| *x == scenario).unwrap();
            (f[1].parse().unwrap(), f[at + 1].parse().unwrap())
        })
        .collect()
}

fn check_families(go: &str) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut cmd = Command::new(fixture(go, "default"));
    cmd.args([
        "-wait",
        "-scenarios",
        "tenants,tenantsfixed",
        "-steps",
        "12",
        "-step-ms",
        "250",
    ]);
    // Every growth seen and every cycle sampled: at the default budget
    // (1%) the 25,000 maps made at once pause the governed probes (Swiss
    // small-map growth, creation), so the maps made while paused are
    // tracked later or not at all, and the budget's debt leaves the tracer
    // one GC sample or two in this short run.
    let run = traced_run_args(cmd, &|| {}, &["--overhead-budget", "100"]);
    let r = &run.report;
    assert_eq!(r["target"]["go_version"], go);

    let t = family(r, "main.newTenant");
    let count = t["count"].as_u64().unwrap();
    assert!(
        count * 100 >= TENANTS * 95 && count <= TENANTS,
        "family of {count} maps, {TENANTS} made: {t:#}\noverhead: {:#}\ncaps: {:#}",
        r["overhead"],
        r["caps_reached"]
    );
    assert_eq!(t["verdict"], "growing", "{t:#}");
    // 25,000 maps made at two lines: after each site's first calls on
    // each CPU the kernel walks one stack in 16, so most creations record
    // their site alone, and still land in their site's one family.
    let bare = r["overhead"]["counters"]["stack_not_walked"]
        .as_u64()
        .unwrap();
    assert!(
        bare * 2 >= TENANTS && bare < TENANTS + FIXED_TENANTS,
        "{bare} creations recorded without a stack walk of {} made",
        TENANTS + FIXED_TENANTS
    );
    let pace = t["entries_per_cycle"].as_f64().unwrap();
    assert!(
        (800.0..=1200.0).contains(&pace),
        "{pace} entries per cycle, the target adds 1,000 a cycle: {t:#}"
    );
    let series = t["entries_by_cycle"].as_array().unwrap();
    assert!(
        (3..=32).contains(&series.len()),
        "{} points: {t:#}",
        series.len()
    );
    // The totals are what the target counted at its forced cycles, less
    // the entries of the few maps not tracked (none when every growth is
    // seen).
    // A sample reads the maps one after another while the target runs on:
    // it may see some of the next step's entries, never more than the next
    // step's count. On a CPU many times slower (the emulated arm64 VM,
    // `speed::slowdown` 10 or more) a sample of 25,000 maps, queued behind
    // the events of 25,000 new maps, has been seen to end two steps later
    // (CI of f5a762a, kernel 6.1, with and without the run statistics):
    // there a step is allowed per 4 of slowdown.
    let lag = 1 + (mapleak::speed::slowdown() / 4.0) as usize;
    let want = printed(&run.target_stderr, "tenants");
    let mut matched = 0;
    for (i, (cycle, total)) in want.iter().enumerate() {
        if let Some(p) = series.iter().find(|p| p[0] == *cycle) {
            let got = p[1].as_u64().unwrap();
            let later = want.get(i + lag).or(want.last()).map_or(*total, |n| n.1);
            assert!(
                got <= later.max(*total) && got * 100 >= total * 95,
                "cycle {cycle}: family total {got}, target counted {total} ({lag} step(s) later {later}; slowdown {:.1})",
                mapleak::speed::slowdown()
            );
            matched += 1;
        }
    }
    // The tracer samples 25,000 maps every few cycles in the emulated
    // arm64 VM, and its first samples may come before the target's first
    // forced cycle (CI of e195750: samples at cycles 0, 1, 5 and 8, the
    // target printing 2 to 13): two cycles to compare there.
    let want_matched = if mapleak::speed::slowdown() >= 4.0 {
        2
    } else {
        3
    };
    assert!(
        matched >= want_matched,
        "only {matched} cycles to compare:\n{}\n{t:#}",
        run.target_stderr
    );
    let (_, last) = *want.last().unwrap();
    let entries = t["entries"].as_u64().unwrap();
    assert!(
        entries <= last && entries * 100 >= last * 95,
        "family has {entries} entries, the target counted {last} last"
    );
    // No single tenant map grows: the family is the only suspect.
    let growing_maps = r["maps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["type"] == TYPE && m["verdict"] == "growing")
        .count();
    assert_eq!(growing_maps, 0, "{:#}", r["maps"]);

    let f = family(r, "main.newFixedTenant");
    let count = f["count"].as_u64().unwrap();
    assert!(
        count * 100 >= FIXED_TENANTS * 95 && count <= FIXED_TENANTS,
        "family of {count} maps, {FIXED_TENANTS} made: {f:#}\noverhead: {:#}\ncaps: {:#}",
        r["overhead"],
        r["caps_reached"]
    );
    assert_ne!(f["verdict"], "growing", "a bounded family: {f:#}");

    // The text report leads with the growing family.
    let text = &run.tracer_stdout;
    let lead = text
        .find("No single map kept growing, but 1 family(ies) of maps keep growing:")
        .unwrap_or_else(|| panic!("{text}"));
    let row = text
        .find(&format!(
            "maps {TYPE}  GROWING  created at main.newTenant ("
        ))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        lead < row && row < text.find("Tracked maps:").unwrap(),
        "{text}"
    );
    assert!(run.leftover.is_empty(), "programs left: {:?}", run.leftover);
}

/// A growing family of small maps on a classic-hmap release.
#[test]
fn families_hmap_go123() {
    if privileged() {
        check_families("go1.23.12");
    }
}

/// A growing family of small maps on a Swiss-table release.
#[test]
fn families_swiss_go126() {
    if privileged() {
        check_families("go1.26.8");
    }
}
