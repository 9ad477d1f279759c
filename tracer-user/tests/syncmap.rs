//! Tier-1 `syncmap` tests over the fixtures (no root): detection, the
//! layout table against DWARF, the initSlow probe, and DWARF globals.

mod inspect_common;

use inspect_common::{fixtures, is_stripped, open};
use mapleak::{
    plan::{ProbeClass, ProbePlan},
    syncmap::{self, ClassicLayout, SyncLayout, SyncMapImpl, TrieLayout},
};

/// `T[interface {},interface {}]`: DWARF's name of an `internal/sync` type.
fn any_any(t: &str) -> String {
    format!("internal/sync.{t}[interface {{}},interface {{}}]")
}

/// The HashTrieMap layout table agrees with the DWARF of every Go 1.24+
/// fixture whose sync.Map is a HashTrieMap (the syncmap fixture at least).
#[test]
fn syncmap_layout_matches_dwarf() {
    let mut checked = Vec::new();
    for f in fixtures() {
        let info = open(&f);
        if !info.has_dwarf || syncmap::detect(&info) != SyncMapImpl::HashTrie {
            continue;
        }
        let l = TrieLayout::for_minor(info.go_version.minor).expect("a layout for 1.24+");
        // Go 1.27 describes some only by their shape (`[go.shape.interface
        // {},…]`): the same layout.
        let st = |name: &str| {
            info.dwarf_sync_struct(name)
                .or_else(|| {
                    info.dwarf_sync_struct(&name.replace("interface {}", "go.shape.interface {}"))
                })
                .unwrap_or_else(|| panic!("{}: no DWARF for {name}", f.path.display()))
        };
        let at =
            |name: &str, member: &str| {
                st(name).members.get(member).copied().unwrap_or_else(|| {
                    panic!("{}: {name} has no member {member}", f.path.display())
                })
            };
        let size = |name: &str| st(name).size.expect("byte size");
        let (m, ind, ent) = (
            any_any("HashTrieMap"),
            any_any("indirect"),
            any_any("entry"),
        );
        let cases = [
            ("sync.Map.m", at("sync.Map", "m"), 0),
            ("sync.Map size", size("sync.Map"), l.map_size),
            ("inited", at(&m, "inited"), l.map_inited),
            ("root", at(&m, "root"), l.map_root),
            ("seed", at(&m, "seed"), l.map_seed),
            ("HashTrieMap size", size(&m), l.map_size),
            (
                "node.isEntry",
                at(&any_any("node"), "isEntry"),
                l.node_is_entry,
            ),
            ("indirect.node", at(&ind, "node"), 0),
            ("indirect.dead", at(&ind, "dead"), l.indirect_dead),
            ("indirect.parent", at(&ind, "parent"), l.indirect_parent),
            (
                "indirect.children",
                at(&ind, "children"),
                l.indirect_children,
            ),
            ("indirect size", size(&ind), l.indirect_size),
            ("entry.node", at(&ent, "node"), 0),
            ("entry.overflow", at(&ent, "overflow"), l.entry_overflow),
            ("entry.key", at(&ent, "key"), l.entry_key),
            ("entry.value", at(&ent, "value"), l.entry_value),
            ("entry size", size(&ent), l.entry_size),
        ];
        for (what, dwarf, table) in cases {
            assert_eq!(
                dwarf,
                u64::from(table),
                "{}: {what}: DWARF {dwarf}, table {table}",
                f.path.display()
            );
        }
        checked.push(info.go_version.raw.clone());
    }
    assert!(
        checked.iter().any(|v| v.starts_with("go1.26"))
            && checked.iter().any(|v| v.starts_with("go1.24")),
        "no Go 1.26 HashTrieMap fixture with DWARF (checked {checked:?}): run `cargo xtask fixtures`"
    );
}

/// The classic layout table agrees with the DWARF of every fixture whose
/// sync.Map is the classic one (before 1.24, and the `nosynchash` builds).
#[test]
fn classic_layout_matches_dwarf() {
    let mut checked = Vec::new();
    for f in fixtures() {
        let info = open(&f);
        if !info.has_dwarf || syncmap::detect(&info) != SyncMapImpl::Classic {
            continue;
        }
        let l = ClassicLayout::for_minor(info.go_version.minor).expect("a classic layout");
        let st = |name: &str| {
            info.dwarf_sync_struct(name)
                .unwrap_or_else(|| panic!("{}: no DWARF for {name}", f.path.display()))
        };
        let at =
            |name: &str, member: &str| {
                st(name).members.get(member).copied().unwrap_or_else(|| {
                    panic!("{}: {name} has no member {member}", f.path.display())
                })
            };
        // 1.19 keeps the pointer in an atomic.Value: its data word, 8 on.
        let boxed = if info.go_version.minor < 20 { 8 } else { 0 };
        let cases = [
            ("sync.Map.read", at("sync.Map", "read") + boxed, l.map_read),
            ("sync.Map.dirty", at("sync.Map", "dirty"), l.map_dirty),
            (
                "sync.Map size",
                st("sync.Map").size.expect("byte size"),
                l.map_size,
            ),
            ("readOnly.m", at("sync.readOnly", "m"), l.ro_m),
            (
                "readOnly.amended",
                at("sync.readOnly", "amended"),
                l.ro_amended,
            ),
            (
                "readOnly size",
                st("sync.readOnly").size.expect("byte size"),
                l.ro_size,
            ),
        ];
        for (what, dwarf, table) in cases {
            assert_eq!(
                dwarf,
                u64::from(table),
                "{}: {what}: DWARF {dwarf}, table {table}",
                f.path.display()
            );
        }
        checked.push(format!("{} {}", info.go_version.raw, f.variant));
    }
    for want in ["go1.19", "go1.23", "go1.24"] {
        assert!(
            checked.iter().any(|v| v.starts_with(want)),
            "no classic {want} fixture with DWARF (checked {checked:?}): run `cargo xtask fixtures`"
        );
    }
}

/// The syncmap fixture's sync.Map is a HashTrieMap on 1.24+, found from
/// the pclntab alone (stripped builds too), with an always-on entry probe
/// on initSlow; before 1.24, and in the `nosynchash` builds, it is the
/// classic one, with a probe on dirtyLocked.
#[test]
fn detection_and_init_slow_probe() {
    let all: Vec<_> = fixtures()
        .into_iter()
        .filter(|f| f.program == "syncmap")
        .collect();
    assert!(
        !all.is_empty(),
        "no syncmap fixture: run `cargo xtask fixtures --programs syncmap`"
    );
    for f in &all {
        let info = open(f);
        let plan = ProbePlan::build(&info).unwrap();
        let probe = plan
            .probes
            .iter()
            .find(|p| p.function == syncmap::INIT_SLOW);
        let dirty_locked = plan
            .probes
            .iter()
            .find(|p| p.function == syncmap::DIRTY_LOCKED);
        if info.go_version.minor >= 24 && f.variant != "nosynchash" {
            assert_eq!(
                syncmap::detect(&info),
                SyncMapImpl::HashTrie,
                "{}",
                f.path.display()
            );
            let p = probe.unwrap_or_else(|| panic!("{}: initSlow not planned", f.path.display()));
            assert_eq!(p.class, ProbeClass::Governed);
            assert!(p.class_reason.contains("per sync.Map instance"));
            assert!(!p.ret_site);
            // ABIInternal argument 0 is the receiver; the program sends it.
            assert_eq!(
                p.spec.aux,
                tracer_common::FinKind::SyncMapInit as u8,
                "{}",
                f.path.display()
            );
            assert!(matches!(
                syncmap::layout_of(&info),
                Some(SyncLayout::Trie(_))
            ));
            assert!(dirty_locked.is_none());
        } else {
            assert_eq!(syncmap::detect(&info), SyncMapImpl::Classic);
            assert!(probe.is_none());
            assert!(matches!(
                syncmap::layout_of(&info),
                Some(SyncLayout::Classic(_))
            ));
            let p = dirty_locked
                .unwrap_or_else(|| panic!("{}: dirtyLocked not planned", f.path.display()));
            assert_eq!(p.class, ProbeClass::Governed);
            assert!(p.class_reason.contains("per new dirty map"));
            assert_eq!(p.spec.aux, tracer_common::FinKind::SyncMapInit as u8);
        }
    }
}

/// DWARF names the fixture's global sync.Maps (none without DWARF).
#[test]
fn dwarf_globals_of_type_sync_map() {
    for f in fixtures().into_iter().filter(|f| f.program == "syncmap") {
        let info = open(&f);
        let names: Vec<String> = info
            .sync_map_globals()
            .into_iter()
            .map(|(n, _, ptr)| {
                assert!(!ptr);
                n
            })
            .collect();
        if is_stripped(&f) {
            assert!(names.is_empty(), "{names:?}");
            continue;
        }
        for want in ["main.bounded", "main.cache"] {
            assert!(
                names.iter().any(|n| n == want),
                "{}: {names:?}",
                f.path.display()
            );
        }
    }
}
