//! Tests of the text report.
use super::*;

/// Histograms of (value, count) pairs record each pair once: a count of
/// a trillion costs no more than a count of one.
#[test]
fn histogram_of_counts() {
    let mut out = Vec::new();
    histogram_counts(&mut out, "t", [(3, 1_000_000_000_000), (100, 1)], 10).unwrap();
    let s = String::from_utf8(out).unwrap();
    assert!(s.contains("n=1000000000001"), "{s}");
}

/// pid 1 of `/x`, an amd64 build of Go `go` with maps `map_impl`.
fn target(go: &str, map_impl: &str) -> TargetInfo {
    TargetInfo {
        pid: 1,
        exe: "/x".into(),
        go_version: go.into(),
        goarch: "amd64".into(),
        map_impl: map_impl.into(),
        stripped: false,
    }
}

/// The text report leads with the growing map, its owner and creation site.
#[test]
fn render_leads_with_answer() {
    let r = Report {
        target: target("go1.23.12", "hmap"),
        duration_s: 3.0,
        ended: "duration reached".into(),
        gc_cycles: vec![],
        gc_triggers: GcTriggers::default(),
        maps_summarized: 0,
        map_groups: Vec::new(),
        families: Vec::new(),
        maps: vec![MapReport {
            entry_types: Vec::new(),
            kind: "map",
            id: 1,
            addr: "0xc000010000".into(),
            type_name: "map[string]*main.session".into(),
            key_type: None,
            elem_type: None,
            created_at: vec![Frame {
                function: "main.newStore".into(),
                file: "main.go".into(),
                line: 7,
            }],
            grown_at: vec![],
            owner: Some("main.sessions".into()),
            held_by: Some(crate::holders::HeldBy::direct("main.sessions")),
            len_by_cycle: vec![(1, 10), (2, 20), (3, 30)],
            timer_samples: Vec::new(),
            growth_per_s: 0.0,
            len_first: 10,
            len_last: 30,
            capacity: 64,
            bytes: 4096,
            growth_events: 2,
            growth_per_cycle: 10.0,
            verdict: Verdict::Growing,
            retained_keys: None,
            inserted_at: vec![],
            writes_seen: WritesSeen::default(),
        }],
        finalizers: Finalizers::default(),
        overhead: Overhead::default(),
        maps_retired: 0,
        maps_evicted: 0,
        maps_reused: 0,
        caps_reached: CapReached::new("tracked_maps", 100, 3, "maps evicted")
            .into_iter()
            .collect(),
    };
    let mut out = Vec::new();
    render(&r, &mut out, 10).unwrap();
    let s = String::from_utf8(out).unwrap();
    assert!(!s.contains('\x1b'), "plain: no escape code");
    // With colour: the verdict is painted, and the text is otherwise the same.
    let on = crate::color::Palette::new(true);
    let mut colored = Vec::new();
    render_styled(&r, &mut colored, 10, on).unwrap();
    let c = String::from_utf8(colored).unwrap();
    assert!(
        c.contains(&format!("  {}  len 30", on.verdict(Verdict::Growing))),
        "{c:?}"
    );
    assert!(
        c.contains(&on.heading("Tracked maps:").to_string()),
        "{c:?}"
    );
    assert_eq!(strip_escapes(&c), s);
    let first_map = s.find("map[string]*main.session").unwrap();
    assert!(s.find("1 map(s) keep growing").unwrap() < first_map);
    assert!(s.contains("held by:    main.sessions"));
    assert!(s.contains("created at: main.newStore (main.go:7)"));
    assert!(s.contains("caps reached: tracked_maps (100): 3 maps evicted"));
    let v: serde_json::Value = serde_json::to_value(&r).unwrap();
    assert_eq!(v["maps"][0]["verdict"], "growing");
    assert_eq!(v["maps"][0]["len_by_cycle"][2][1], 30);
    assert_eq!(v["caps_reached"][0]["cap"], "tracked_maps");
    assert_eq!(v["maps"][0]["kind"], "map");
    assert_eq!(CapReached::new("x", 1, 0, "y"), None);
    // A sync.Map: its kind in the JSON, no capacity and no creation site
    // in the text.
    let mut r = r;
    let m = &mut r.maps[0];
    m.kind = "sync.Map";
    m.type_name = "sync.Map".into();
    m.capacity = 0;
    m.created_at.clear();
    let mut out = Vec::new();
    render(&r, &mut out, 10).unwrap();
    let s = String::from_utf8(out).unwrap();
    assert!(
        s.contains("#1 sync.Map  GROWING  len 30 (+10/cycle over 3 cycles)  4.0 KiB"),
        "{s}"
    );
    assert!(
        s.contains("created at: (a sync.Map: no creation site)"),
        "{s}"
    );
    let v: serde_json::Value = serde_json::to_value(&r).unwrap();
    assert_eq!(v["maps"][0]["kind"], "sync.Map");
}

fn family(count: u64, verdict: Verdict, bytes: u64) -> families::FamilyReport {
    families::FamilyReport {
        type_name: "map[int32]int32".into(),
        site: Some(format!("main.newTenant{count} (main.go:40)")),
        site_kind: crate::model::families::SiteKind::Created,
        count,
        entries: count * 60,
        bytes,
        verdict,
        entries_per_cycle: 1000.0,
        entries_by_cycle: vec![(1, 100), (2, 1100), (3, 2100)],
    }
}

/// A growing family leads the report even when no map grows: the leading
/// line counts it, its row comes before the counts of tracked maps, a
/// single map is no family, and the rows are bounded.
#[test]
fn growing_family_leads() {
    let mut fams: Vec<_> = (0..10)
        .map(|i| family(2 + i, Verdict::Stable, 100 * i))
        .collect();
    fams.push(family(1, Verdict::Growing, 1 << 30));
    fams.push(family(20_000, Verdict::Growing, 24 << 20));
    fams.sort_by(families::FamilyReport::order);
    assert_eq!(fams[0].count, 1, "growing first, then largest");
    let r = Report {
        target: target("go1.26.8", "swiss"),
        duration_s: 3.0,
        ended: "target exited".into(),
        gc_cycles: vec![],
        gc_triggers: GcTriggers::default(),
        maps: vec![],
        maps_summarized: 0,
        map_groups: Vec::new(),
        families: fams,
        finalizers: Finalizers::default(),
        overhead: Overhead::default(),
        maps_retired: 0,
        maps_evicted: 0,
        maps_reused: 0,
        caps_reached: Vec::new(),
    };
    let mut out = Vec::new();
    render(&r, &mut out, 10).unwrap();
    let s = String::from_utf8(out).unwrap();
    let lead = s
        .find("No single map kept growing, but 1 family(ies) of maps keep growing:")
        .unwrap();
    let row = s
        .find("20000 maps map[int32]int32  GROWING  created at main.newTenant20000 (main.go:40)")
        .unwrap();
    assert!(lead < row && row < s.find("Tracked maps:").unwrap(), "{s}");
    assert!(s.contains("1200000 entries (+1000/cycle lately"), "{s}");
    assert!(!s.contains("newTenant1 "), "a single map is no family: {s}");
    assert_eq!(
        s.matches(" maps map[int32]int32  ").count(),
        families::FAMILY_ROWS
    );
    let v: serde_json::Value = serde_json::to_value(&r).unwrap();
    assert_eq!(v["families"][1]["site_kind"], "created");
    assert_eq!(v["families"][1]["entries_by_cycle"][2][1], 2100);
}

/// `s` without its `ESC [ … m` sequences.
fn strip_escapes(s: &str) -> String {
    let mut out = String::new();
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c == '\x1b' {
            for d in it.by_ref() {
                if d == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The header counts every GC cycle seen, the ones the list dropped (its
/// cap) included; the large-growth note says why they were paused.
#[test]
fn header_counts_dropped_cycles_and_pause_reasons() {
    let cycle = |c: u64| crate::model::GcCycle {
        cycle: c,
        t_s: 0.0,
        heap_marked_bytes: None,
    };
    let mut r = Report {
        target: target("go1.23.12", "hmap"),
        duration_s: 3.0,
        ended: "duration reached".into(),
        gc_cycles: vec![cycle(41), cycle(42)],
        gc_triggers: GcTriggers::default(),
        maps: vec![],
        maps_summarized: 0,
        map_groups: Vec::new(),
        families: Vec::new(),
        finalizers: Finalizers::default(),
        overhead: Overhead {
            large_growth_probes_paused: 3,
            large_growth_probes_paused_for_debt: 2,
            large_growth_probes_paused_s: 1.5,
            ..Overhead::default()
        },
        maps_retired: 0,
        maps_evicted: 0,
        maps_reused: 0,
        caps_reached: Vec::new(),
    };
    let text = |r: &Report| {
        let mut out = Vec::new();
        render(r, &mut out, 10).unwrap();
        String::from_utf8(out).unwrap()
    };
    let s = text(&r);
    assert!(s.contains(" 2 GC cycles (#41..#42) "), "{s}");
    assert!(
        s.contains("paused 3 time(s), 1.5 s in all: 1 time(s) they alone spent their half of the budget, 2 time(s) the budget as a whole was in debt"),
        "{s}"
    );
    r.caps_reached.push(CapReached {
        cap: GC_CYCLES_CAP.into(),
        limit: 2,
        count: 40,
        effect: String::new(),
    });
    r.overhead.large_growth_probes_paused_for_debt = 0;
    let s = text(&r);
    assert!(
        s.contains(" 42 GC cycles (the last 2 listed: #41..#42) "),
        "{s}"
    );
    // Cycles read from the counters: the numbers count those between.
    r.caps_reached.clear();
    r.gc_cycles = vec![cycle(41), cycle(45), cycle(50)];
    let s = text(&r);
    assert!(
        s.contains(" 10 GC cycles (#41..#50; 3 listed, as read) "),
        "{s}"
    );
    assert!(
        s.contains("1.5 s in all: they alone spent their half"),
        "{s}"
    );
}
