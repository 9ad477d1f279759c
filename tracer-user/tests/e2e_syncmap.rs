//! Tier 2: sync.Map against real processes of `testdata/go/syncmap` with
//! real uprobes. On Go 1.24+ (a HashTrieMap, no runtime map calls): an
//! unbounded global cache found by the `initSlow` probe, and a bounded one
//! initialised before attach, found among the globals (by their headers'
//! shape: stripped binaries too). The classic sync.Map (Go 1.23, and 1.24
//! built with `GOEXPERIMENT=nosynchashtriemap`): the same two, their read
//! and dirty runtime maps folded into one row each, found by the
//! `dirtyLocked` probe and DWARF. On both, the entries' dynamic types and
//! the finalizer objects held as keys of `main.finkeys`.
//!
//! They need root, like every tier-2 test: without it they fail unless
//! `MAPLEAK_ALLOW_SKIP=1` asks for a skip, and with `CI` set they always
//! fail; a kernel without BPF or uprobes fails the tracer, and the test.
use std::process::Command;

mod e2e_common;

use e2e_common::{harness::*, privileged};
use serde_json::Value;

/// `cycle N cache L bounded M` lines of the target: (N, L, M).
fn printed(stderr: &str) -> Vec<(u64, u64, u64)> {
    stderr
        .lines()
        .filter(|l| l.starts_with("cycle "))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let num = |name: &str| -> u64 {
                f[f.iter().position(|x| *x == name).unwrap() + 1]
                    .parse()
                    .unwrap()
            };
            (f[1].parse().unwrap(), num("cache"), num("bounded"))
        })
        .collect()
}

/// `(cycle, finkeys)` from the target's "cycle N ..." lines.
fn printed_finkeys(stderr: &str) -> Vec<(u64, u64)> {
    stderr
        .lines()
        .filter(|l| l.starts_with("cycle "))
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let at = f.iter().position(|x| *x == "finkeys")?;
            Some((f[1].parse().ok()?, f.get(at + 1)?.parse().ok()?))
        })
        .collect()
}

fn sync_maps(r: &Value) -> Vec<&Value> {
    r["maps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["kind"] == "sync.Map")
        .collect()
}

/// The sync.Map held by the global `owner`.
fn by_owner_exact<'a>(r: &'a Value, owner: &str) -> &'a Value {
    let found: Vec<&Value> = sync_maps(r)
        .into_iter()
        .filter(|m| m["owner"] == owner)
        .collect();
    assert_eq!(found.len(), 1, "sync.Map {owner}: {found:#?}");
    found[0]
}

fn check(go: &str, variant: &str) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let stripped = variant == "stripped";
    let classic = variant == "nosynchash" || go.starts_with("go1.23") || go.starts_with("go1.19");
    let bin = fixture_of("syncmap", go, variant);
    let mut cmd = Command::new(&bin);
    cmd.args(["-wait", "-steps", "10", "-step-ms", "250"]);
    // Every map in full (the bounded sync.Map is small). Walking a trie
    // costs about 0.2 µs an entry here: at a 1% budget, of
    // which samples may take 30%, a 20,000-entry cache is sampled every
    // 1.5 s or so, four samples in the 2.5 s the target runs; at 20%
    // nearly every cycle, so that lengths can be compared cycle by cycle.
    let run = traced_run_args(cmd, &|| {}, &["--all-maps", "--overhead-budget", "20"]);
    let r = &run.report;
    let dump = serde_json::to_string_pretty(&r["maps"]).unwrap();
    let lines = printed(&run.target_stderr);
    let bound = lines.last().map_or(500, |l| l.2);
    // The classic sync.Map's length counts keys deleted from its read map
    // until its next dirty map is made without them: up to the churn of a
    // few steps (half the bound each) more.
    let bounded_len = |len: u64| {
        if classic {
            len + 5 >= bound && len <= 3 * bound
        } else {
            len.abs_diff(bound) <= bound / 50 + 5
        }
    };
    // By owner; stripped, by length (the cache is the largest, the bounded
    // one holds about its bound), named by their address.
    let by_owner = |name: &str| -> &Value {
        let found: Vec<&Value> = sync_maps(r)
            .into_iter()
            .filter(|m| {
                if !stripped {
                    return m["owner"] == name;
                }
                let len = m["len_last"].as_u64().unwrap();
                if name == "main.cache" {
                    len > 10 * bound
                } else {
                    bounded_len(len)
                }
            })
            .collect();
        assert_eq!(found.len(), 1, "sync.Map {name} not found once:\n{dump}");
        if stripped {
            let owner = found[0]["owner"].as_str().unwrap_or_default();
            assert!(owner.starts_with("global at 0x"), "{:#}", found[0]);
        }
        found[0]
    };
    // Every map has a kind; the classic sync.Maps' runtime maps are
    // folded into them, not listed.
    for m in r["maps"].as_array().unwrap() {
        assert!(m["kind"] == "map" || m["kind"] == "sync.Map", "{m:#}");
        assert_ne!(
            m["type"],
            mapleak::syncmap::classic::ENTRY_MAP_TYPE,
            "a classic sync.Map's runtime map listed on its own:\n{dump}"
        );
    }
    assert!(
        r["map_groups"].as_array().is_none_or(|g| g
            .iter()
            .all(|g| g["type"] != mapleak::syncmap::classic::ENTRY_MAP_TYPE)),
        "{:#}",
        r["map_groups"]
    );

    // The unbounded cache (first used after attach: its initSlow was
    // probed): growing, its length what the target counted.
    let cache = by_owner("main.cache");
    assert_eq!(cache["type"], "sync.Map", "{cache:#}");
    assert_eq!(cache["verdict"], "growing", "{cache:#}");
    assert!(cache["bytes"].as_u64().unwrap() > 0, "{cache:#}");
    let mut matched = 0;
    for &(cycle, want, _) in &lines {
        if let Some(p) = cache["len_by_cycle"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p[0] == cycle)
        {
            let seen = p[1].as_u64().unwrap();
            assert!(
                seen.abs_diff(want) <= (want / 50).max(5),
                "cycle {cycle}: tracer saw {seen} entries in main.cache, target printed {want}:\n{cache:#}"
            );
            matched += 1;
        }
    }
    assert!(
        matched >= 5,
        "only {matched} (cycle, len) pairs to compare:\n{}\n{cache:#}",
        run.target_stderr
    );

    // The cache's keys, followed from walk to walk: none is ever deleted,
    // so every key seen at two walks was never released. On the emulated
    // CPU (slowdown 4 or more) the walks are few: one is enough there.
    let rk = &cache["retained_keys"];
    let snapshots = rk["snapshots"].as_u64().unwrap_or(0);
    let want_snapshots = if mapleak::speed::slowdown() >= 4.0 {
        1
    } else {
        2
    };
    assert!(snapshots >= want_snapshots, "retained_keys: {cache:#}");
    assert_eq!(rk["released"], 0, "{cache:#}");
    assert!(rk["tracked"].as_u64().unwrap() > 0, "{cache:#}");
    // Its keys are `any` holding strings ("key-N", shown redacted): the
    // examples show the string, not the interface's two words.
    let examples = rk["examples"].as_array().unwrap();
    assert!(!examples.is_empty(), "retained_keys: {cache:#}");
    for e in examples {
        let text = e.as_str().unwrap_or_default();
        assert!(text.starts_with("string(\"ke"), "example {e}: {cache:#}");
    }
    if snapshots >= 2 {
        assert!(rk["never_released"].as_u64().unwrap() > 0, "{cache:#}");
        assert!(rk["oldest_cycles"].as_u64().unwrap() >= 1, "{cache:#}");
    }
    // main.finkeys loses its 10 oldest keys a step and gains 50: growing,
    // its keys released as they are deleted, the rest kept.
    if !stripped {
        let fin = by_owner_exact(r, "main.finkeys");
        assert_eq!(fin["verdict"], "growing", "{fin:#}");
        let rk = &fin["retained_keys"];
        if rk["snapshots"].as_u64().unwrap_or(0) >= 3 {
            assert!(rk["released"].as_u64().unwrap() > 0, "{fin:#}");
            assert!(rk["never_released"].as_u64().unwrap() > 0, "{fin:#}");
        }
    }

    // The bounded one (initialised before attach: found among the
    // globals): not growing, about its bound.
    let bounded = by_owner("main.bounded");
    assert_ne!(bounded["verdict"], "growing", "{bounded:#}");
    let last = bounded["len_last"].as_u64().unwrap();
    assert!(
        bounded_len(last),
        "main.bounded: {last} entries, bound {bound}:\n{bounded:#}"
    );

    {
        // The trie walks (classic: the reads of the runtime map holding
        // every key, its entries and their values) give the entries'
        // dynamic types.
        assert_eq!(
            cache["key_type"], "string",
            "{cache:#}\n{:#}",
            r["overhead"]["sync_map_walks"]
        );
        assert_eq!(cache["elem_type"], "*main.entry", "{cache:#}");
        if classic {
            // Read after the header (the cache grows on meanwhile), at
            // the latest sample whose read of the entries succeeded (the
            // last one may find the target exiting): about the length at
            // one of the samples. On the emulated CPU (slowdown 4 or more)
            // the read may come in the middle of the next step (22,528 read
            // between samples of 21,000 and 27,000): between two samples'
            // lengths.
            let typed = cache["entry_types"][0]["entries"].as_u64().unwrap();
            let lens: Vec<u64> = cache["len_by_cycle"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|p| p[1].as_u64())
                .collect();
            let near = |len: u64| typed.abs_diff(len) <= len / 50 + 5;
            let between = mapleak::speed::slowdown() >= 4.0
                && lens
                    .windows(2)
                    .any(|w| typed + w[0] / 50 + 5 >= w[0] && typed <= w[1] + w[1] / 50 + 5);
            assert!(lens.iter().any(|&l| near(l)) || between, "{cache:#}");
        } else {
            assert_eq!(
                cache["entry_types"][0]["entries"], cache["len_last"],
                "{cache:#}"
            );
        }
        // Objects with finalizers that are keys of a sync.Map: all of
        // main.finkeys' keys (those deleted ran), as of the walk's cycle.
        let held = r["finalizers"]["held_as_map_keys"].as_array().unwrap();
        let h = held
            .iter()
            .find(|h| h["map_type"] == "sync.Map")
            .unwrap_or_else(|| panic!("no sync.Map in held_as_map_keys: {:#}", r["finalizers"]));
        assert_eq!(h["type"], "main.resource", "{h:#}");
        if !stripped {
            assert_eq!(h["owner"], "main.finkeys", "{h:#}");
        }
        let cycle = h["as_of_cycle"].as_u64().unwrap();
        let count = h["count"].as_u64().unwrap();
        // A walk reads while the target runs on: on a CPU many times
        // slower (the emulated arm64 VM) a classic sync.Map's entries,
        // read after every header of the sample, have been seen two steps
        // on (400 labelled cycle 8, held at cycle 10), or in the middle of
        // a step (its 50 stores come before its 10 deletes). There a step
        // is allowed per 4 of slowdown, as in e2e_families.
        let lag = 1 + (mapleak::speed::slowdown() / 4.0) as u64;
        let want: Vec<u64> = printed_finkeys(&run.target_stderr)
            .into_iter()
            .filter(|(c, _)| (cycle..=cycle + lag).contains(c))
            .map(|x| x.1)
            .collect();
        let exact = want.contains(&count);
        let within = lag > 1
            && want.iter().min().is_some_and(|&lo| count >= lo)
            && want.iter().max().is_some_and(|&hi| count <= hi + 50);
        assert!(
            exact || within,
            "{count} finalizer objects held as keys at cycle {cycle}, the target held {want:?} ({lag} step(s) allowed; slowdown {:.1}): {h:#}",
            mapleak::speed::slowdown()
        );
    }

    // initSlow (classic: dirtyLocked) is probed and was hit for the cache.
    let hits = r["overhead"]["probe_hits"].as_object().unwrap();
    let probed = if classic {
        mapleak::syncmap::DIRTY_LOCKED
    } else {
        mapleak::syncmap::INIT_SLOW
    };
    let init = hits
        .iter()
        .filter(|(k, _)| k.starts_with(probed))
        .map(|(_, v)| v.as_u64().unwrap())
        .sum::<u64>();
    assert!(init >= 1, "{probed} not hit: {hits:?}");
    let walks = &r["overhead"]["sync_map_walks"];
    if !classic {
        assert!(walks["nodes_read"].as_u64().unwrap() > 0, "{walks}");
    }
    assert_eq!(walks["cut_short"], 0, "{walks}");

    assert_eq!(run.target_stdout, {
        let out = Command::new(&bin)
            .args(["-steps", "10", "-step-ms", "0"])
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    });
    assert!(run.leftover.is_empty(), "programs left: {:?}", run.leftover);
}

/// A growing sync.Map cache and a bounded one on Go 1.26.
#[test]
fn syncmap_go126() {
    if privileged() {
        check("go1.26.8", "default");
    }
}

/// The same stripped (no symbols, no DWARF) and as a PIE (load bias).
#[test]
fn syncmap_go126_stripped_and_pie() {
    if privileged() {
        check("go1.26.8", "stripped");
        check("go1.26.8", "pie");
    }
}

/// The same on Go 1.24, the first HashTrieMap release, and on 1.27.
#[test]
fn syncmap_other_releases() {
    if privileged() {
        check("go1.24.13", "default");
        check("go1.27.4", "default");
    }
}

/// The classic sync.Map: Go 1.23, and Go 1.24 built with
/// `GOEXPERIMENT=nosynchashtriemap`; stripped too (the bounded one is then
/// found at its next dirty map, the churn makes one every few steps).
#[test]
fn syncmap_classic() {
    if privileged() {
        check("go1.23.12", "default");
        check("go1.24.13", "nosynchash");
        check("go1.23.12", "stripped");
    }
}
