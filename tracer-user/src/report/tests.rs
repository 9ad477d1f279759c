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

/// The text report leads with the growing map, its owner and creation site.
#[test]
fn render_leads_with_answer() {
    let r = Report {
        target: TargetInfo {
            pid: 1,
            exe: "/x".into(),
            go_version: "go1.23.12".into(),
            goarch: "amd64".into(),
            map_impl: "hmap".into(),
            stripped: false,
        },
        duration_s: 3.0,
        ended: "duration reached".into(),
        gc_cycles: vec![],
        gc_triggers: GcTriggers::default(),
        maps_summarized: 0,
        map_groups: Vec::new(),
        families: Vec::new(),
        maps: vec![MapReport {
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
    let first_map = s.find("map[string]*main.session").unwrap();
    assert!(s.find("1 map(s) keep growing").unwrap() < first_map);
    assert!(s.contains("held by:    main.sessions"));
    assert!(s.contains("created at: main.newStore (main.go:7)"));
    assert!(s.contains("caps reached: tracked_maps (100): 3 maps evicted"));
    let v: serde_json::Value = serde_json::to_value(&r).unwrap();
    assert_eq!(v["maps"][0]["verdict"], "growing");
    assert_eq!(v["maps"][0]["len_by_cycle"][2][1], 30);
    assert_eq!(v["caps_reached"][0]["cap"], "tracked_maps");
    assert_eq!(CapReached::new("x", 1, 0, "y"), None);
}
