//! Tests of the metric families: folding, top-N, labels, the text.
use super::*;
use crate::{
    inspect::Frame,
    report::{
        CapReached, Finalizers, GcTriggers, HeldAsMapKeys, Overhead, TargetInfo, WritesSeen,
        summary::MapGroup,
    },
};

fn map(ty: &str, site: &str, owner: Option<&str>, len: u64, bytes: u64, v: Verdict) -> MapReport {
    MapReport {
        kind: "map",
        id: 1,
        addr: "0xc000010000".into(),
        type_name: ty.into(),
        key_type: None,
        elem_type: None,
        entry_types: Vec::new(),
        held_by: None,
        created_at: vec![Frame {
            function: site.into(),
            file: "main.go".into(),
            line: 7,
        }],
        grown_at: vec![],
        owner: owner.map(Into::into),
        len_by_cycle: vec![(1, 10), (2, 20), (3, len)],
        timer_samples: Vec::new(),
        growth_per_s: 0.0,
        len_first: 10,
        len_last: len,
        capacity: 64,
        bytes,
        growth_events: 2,
        growth_per_cycle: if v == Verdict::Growing { 10.0 } else { 0.0 },
        verdict: v,
        retained_keys: Some(serde_json::json!({"never_released": 7})),
        inserted_at: vec![],
        writes_seen: WritesSeen::default(),
    }
}

fn report(maps: Vec<MapReport>) -> Report {
    Report {
        target: TargetInfo {
            pid: 42,
            exe: "/srv/api".into(),
            go_version: "go1.26.8".into(),
            goarch: "amd64".into(),
            map_impl: "swiss".into(),
            stripped: false,
        },
        duration_s: 3.0,
        ended: String::new(),
        gc_cycles: vec![],
        gc_triggers: GcTriggers::default(),
        maps_summarized: 0,
        map_groups: Vec::new(),
        families: Vec::new(),
        maps,
        finalizers: Finalizers::default(),
        overhead: Overhead::default(),
        maps_retired: 0,
        maps_evicted: 0,
        maps_reused: 0,
        caps_reached: Vec::<CapReached>::new(),
    }
}

/// Maps of one type, site and holder fold into one row; the growing rows
/// lead; what is past the top N is one `other` row whose sums add up.
#[test]
fn top_rows_and_other() {
    let mut maps = vec![
        map("map[string]int", "main.a", None, 100, 1000, Verdict::Stable),
        map("map[string]int", "main.a", None, 50, 500, Verdict::Stable),
        map(
            "map[int]int",
            "main.b",
            Some("main.g"),
            30,
            64,
            Verdict::Growing,
        ),
    ];
    for i in 0..5 {
        maps.push(map(
            &format!("map[t{i}]int"),
            "main.c",
            None,
            1,
            10,
            Verdict::Idle,
        ));
    }
    let r = report(maps);
    let rows = map_rows(&r, 3);
    assert_eq!(rows.len(), 4, "{rows:#?}");
    assert_eq!(rows[0].map_type, "map[int]int");
    assert_eq!(rows[0].verdict, Some(Verdict::Growing));
    assert_eq!(rows[0].holder, "main.g");
    assert_eq!(rows[1].instances, 2);
    assert_eq!(rows[1].entries, 150);
    assert_eq!(rows[1].never_released, 14);
    let other = &rows[3];
    assert_eq!(
        (other.map_type.as_str(), other.site.as_str()),
        (OTHER, OTHER)
    );
    assert_eq!(other.instances, 4);
    assert_eq!(other.verdict, None);
    let total: u64 = rows.iter().map(|r| r.entries).sum();
    assert_eq!(total, 100 + 50 + 30 + 5);
    // Nothing left over: no `other` row.
    assert_eq!(map_rows(&r, 100).len(), 7);
}

/// Summarized maps (map_groups) fold in by type and site, judged by
/// their most severe verdict.
#[test]
fn groups_fold_in() {
    let mut r = report(vec![map(
        "map[int]int",
        "main.b",
        None,
        30,
        64,
        Verdict::Stable,
    )]);
    r.map_groups.push(MapGroup {
        type_name: "map[int]int".into(),
        site: Some("main.b (main.go:7)".into()),
        maps: 10,
        entries: 100,
        bytes: 1000,
        stable: 9,
        idle: 0,
        growing: 1,
        bloated: 0,
    });
    let rows = map_rows(&r, 20);
    assert_eq!(rows.len(), 1, "{rows:#?}");
    assert_eq!(rows[0].instances, 11);
    assert_eq!(rows[0].verdict, Some(Verdict::Growing));
}

/// `fold_other` keeps the first N and sums the rest into one.
#[test]
fn fold_other_sums_the_rest() {
    let v = fold_other(vec![5, 4, 3, 2, 1], 2, |rest| rest.iter().sum());
    assert_eq!(v, vec![5, 4, 6]);
    assert_eq!(fold_other(vec![1, 2], 2, |_| 0), vec![1, 2]);
    assert_eq!(fold_other(Vec::<u8>::new(), 0, |_| 9), Vec::<u8>::new());
}

/// Long label values are cut, end with a hash, and stay distinct.
#[test]
fn long_labels_are_cut() {
    let a = format!("map[{}]int", "x".repeat(300));
    let b = format!("map[{}]uint", "x".repeat(300));
    let (la, lb) = (label(&a), label(&b));
    assert_eq!(la.chars().count(), LABEL_MAX);
    assert_ne!(la, lb);
    assert_eq!(label("map[int]int"), "map[int]int");
}

/// The text is OpenMetrics: prefixed names, `_total` counters, the state
/// set, the tracer's figures, `# EOF`; no address and no key in it.
#[test]
fn render_openmetrics() {
    let mut r = report(vec![
        map(
            "map[string]*main.session",
            "main.NewStore",
            Some("main.sessions"),
            300,
            4096,
            Verdict::Growing,
        ),
        map("map[int]int", "main.lru", None, 100, 2048, Verdict::Stable),
    ]);
    r.overhead
        .probe_hits
        .insert("runtime.makemap@0x4a1b2c".into(), 12);
    r.overhead
        .probe_hits
        .insert("runtime.makemap@0x4a1b99".into(), 3);
    r.finalizers.held_as_map_keys.push(HeldAsMapKeys {
        map_id: 1,
        map_type: "map[*main.res]bool".into(),
        owner: Some("main.live".into()),
        count: 5,
        finalizers: 5,
        cleanups: 0,
        unverified: 0,
        type_name: "main.res".into(),
        as_of_cycle: 3,
    });
    let p = [ProcessView {
        report: &r,
        governed_on: false,
        window_open: true,
        large_growth_on: true,
    }];
    let t = TracerView {
        cpu_s: 1.5,
        rss_bytes: 1 << 20,
        max_rss_bytes: 2 << 20,
        snapshot_build_s: 0.001,
        scans: Some(ScanCounts {
            full: 3,
            execs: 7,
            seconds: 0.01,
        }),
    };
    let text = render(&p, &t, 20);
    for want in [
        r#"mapleak_map_growth_per_gc_cycle{pid="42",exe="/srv/api",map_type="map[string]*main.session",site="main.NewStore",holder="main.sessions"} 10.0"#,
        r#"mapleak_map_verdict{pid="42",exe="/srv/api",map_type="map[string]*main.session",site="main.NewStore",holder="main.sessions",verdict="growing"} 1.0"#,
        r#"mapleak_map_verdict{pid="42",exe="/srv/api",map_type="map[int]int",site="main.lru",holder="",verdict="growing"} 0.0"#,
        r#"mapleak_map_storage_bytes{pid="42",exe="/srv/api",map_type="map[int]int",site="main.lru",holder=""} 2048.0"#,
        r#"mapleak_probe_hits_total{pid="42",exe="/srv/api",probe="runtime.makemap"} 15.0"#,
        r#"mapleak_probes_attached{pid="42",exe="/srv/api",class="governed"} 0.0"#,
        r#"mapleak_finalizers_held_as_keys{pid="42",exe="/srv/api",map_type="map[*main.res]bool",holder="main.live",object_type="main.res"} 5.0"#,
        r#"mapleak_target_info{pid="42",exe="/srv/api",go_version="go1.26.8",goarch="amd64",map_impl="swiss"} 1.0"#,
        "mapleak_tracer_cpu_seconds_total 1.5",
        "mapleak_traced_processes 1.0",
        "mapleak_scans_total 3",
        "mapleak_exec_checks_total 7",
        "# TYPE mapleak_gc_cycles counter",
        "# EOF",
    ] {
        assert!(text.contains(want), "missing {want}\n{text}");
    }
    assert!(!text.contains("0x4a1b2c"), "{text}");
    assert!(!text.contains("0xc000010000"), "{text}");
}
