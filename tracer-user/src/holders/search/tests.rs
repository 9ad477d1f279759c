//! Tests of the holder search over synthetic memory and type descriptors.
use super::{
    super::{
        heap::{Region, RegionKind, Snapshot},
        types::build,
    },
    *,
};
use crate::{holders::live::LiveHeap, keys::testmem::FakeMem};

const MAP: u8 = 21;
const GLOBALS: u64 = 0x5b_0000;
const HEAP: u64 = 0xc000_0000;

/// Types of `main.srv → (*main.server).cache → (*main.cache).items`, and
/// a decoy struct with a field of the map's type at another offset.
struct World {
    types: TypeTable,
    map_type: u64,
}

fn world() -> World {
    let mut r = build::Region::new(0x40_0000);
    let m = r.plain("map[string][]uint8", MAP, 8);
    let s = r.plain("string", 24, 16);
    let cache = r.strukt("main.cache", 32, &[("name", s, 0), ("items", m, 24)]);
    let pcache = r.ptr(cache, "*main.cache", true);
    let server = r.strukt("main.server", 32, &[("addr", s, 0), ("cache", pcache, 24)]);
    r.ptr(server, "*main.server", true);
    let decoy = r.strukt("main.decoy", 16, &[("m", m, 0)]);
    r.ptr(decoy, "*main.decoy", true);
    World {
        types: TypeTable::new(r.base, r.bytes),
        map_type: m,
    }
}

fn put(buf: &mut [u8], off: usize, v: u64) {
    buf[off..off + 8].copy_from_slice(&v.to_le_bytes());
}

/// Heap: server @0x100 (cache @+24 → 0x200), cache @0x200 (items @+24
/// → the map @0x800), a stale stack-like copy of the map pointer @0x400.
fn memory() -> (Vec<u8>, Vec<u8>) {
    let mut g = vec![0u8; 64];
    put(&mut g, 16, HEAP + 0x100);
    let mut h = vec![0u8; 0x1000];
    put(&mut h, 0x100 + 24, HEAP + 0x200);
    put(&mut h, 0x200 + 24, HEAP + 0x800);
    put(&mut h, 0x400, HEAP + 0x800);
    (g, h)
}

fn snapshot(g: Vec<u8>, h: Vec<u8>) -> Snapshot<'static> {
    Snapshot::from_regions(vec![
        Region {
            addr: GLOBALS,
            bytes: g,
            kind: RegionKind::Globals,
        },
        Region {
            addr: HEAP,
            bytes: h,
            kind: RegionKind::Heap,
        },
    ])
}

fn name_root(at: u64, ty: Option<&str>) -> Option<String> {
    (at == GLOBALS + 16)
        .then(|| "main.srv".to_owned())
        .or_else(|| Some(format!("global at {at:#x} ({})", ty.unwrap_or("?"))))
}

fn far() -> std::time::Instant {
    std::time::Instant::now() + std::time::Duration::from_secs(60)
}

/// global → *server → .cache → *cache → .items → map, named from the
/// descriptors, with the words it goes through; confirmed when memory
/// still holds them, not once one changed.
#[test]
fn finds_and_confirms_the_path() {
    let w = world();
    let (g, h) = memory();
    let snap = snapshot(g.clone(), h.clone());
    let sus = [Suspect {
        map: HEAP + 0x800,
        map_type: w.map_type,
    }];
    let out = search(
        &snap,
        &w.types,
        &name_root,
        &sus,
        &HashMap::new(),
        Limits::default(),
        far(),
    );
    let paths = &out.paths[&(HEAP + 0x800)];
    assert_eq!(
        paths[0].steps,
        ["main.srv", "(*main.server).cache", "(*main.cache).items"]
    );
    assert_eq!(
        paths[0].edges,
        [
            (GLOBALS + 16, HEAP + 0x100),
            (HEAP + 0x118, HEAP + 0x200),
            (HEAP + 0x218, HEAP + 0x800)
        ]
    );
    assert!(!out.cut_short, "{out:?}");
    let mem = FakeMem::default();
    mem.put(GLOBALS, g);
    mem.put(HEAP, h);
    assert_eq!(confirm(&mem, paths).as_ref(), Some(&paths[0]));
    // The cache's field now points elsewhere: the path is gone.
    mem.poke(HEAP + 0x218, &0u64.to_le_bytes());
    assert_eq!(confirm(&mem, paths), None);
    mem.remove(HEAP);
    assert_eq!(confirm(&mem, paths), None);
}

/// A search stopped by its deadline at every chunk of the live heap goes
/// on where it stopped, over memory read again at each call, and finds
/// what a search in one go finds.
#[test]
fn a_search_resumes_over_the_live_heap() {
    const MIB: u64 = 1 << 20;
    let w = world();
    let mut g = vec![0u8; 64];
    put(&mut g, 16, HEAP + 0x100);
    // server, cache and map a chunk apart.
    let mut h = vec![0u8; 3 * MIB as usize];
    put(&mut h, 0x100 + 24, HEAP + MIB + 0x200);
    put(&mut h, (MIB + 0x200 + 24) as usize, HEAP + 2 * MIB + 0x800);
    let mem = FakeMem::default();
    mem.put(HEAP, h);
    let runs = [(HEAP, HEAP + 3 * MIB)];
    let globals = || {
        Snapshot::from_regions(vec![Region {
            addr: GLOBALS,
            bytes: g.clone(),
            kind: RegionKind::Globals,
        }])
    };
    let sus = [Suspect {
        map: HEAP + 2 * MIB + 0x800,
        map_type: w.map_type,
    }];
    let none = HashMap::new();
    let whole = search(
        &globals().with_live(LiveHeap::new(&mem, &runs)),
        &w.types,
        &name_root,
        &sus,
        &none,
        Limits::default(),
        far(),
    );
    assert_eq!(
        whole.paths[&sus[0].map][0].steps,
        ["main.srv", "(*main.server).cache", "(*main.cache).items"]
    );
    let mut s = Search::new(&sus, Limits::default());
    let mut calls = 0;
    loop {
        calls += 1;
        assert!(calls < 100, "no end");
        let snap = globals().with_live(LiveHeap::new(&mem, &runs));
        if s.run(
            &snap,
            &w.types,
            &name_root,
            &none,
            std::time::Instant::now(),
        ) {
            break;
        }
    }
    let parts = s.into_outcome();
    assert_eq!(parts.paths, whole.paths);
    assert_eq!(parts.levels, whole.levels);
    assert!(!parts.cut_short && !whole.cut_short);
    // A chunk per call: three calls a level.
    assert_eq!(
        calls,
        3 * whole.levels,
        "{calls} calls for {} levels",
        whole.levels
    );
}

/// A map held directly by a global is a path of one step; a global the
/// namer rejects (a runtime global) is no root; the depth bound stops a
/// search and says so.
#[test]
fn direct_roots_rejected_roots_and_depth() {
    let w = world();
    let (mut g, h) = memory();
    put(&mut g, 40, HEAP + 0x800);
    let snap = snapshot(g, h);
    let sus = [Suspect {
        map: HEAP + 0x800,
        map_type: w.map_type,
    }];
    let out = search(
        &snap,
        &w.types,
        &name_root,
        &sus,
        &HashMap::new(),
        Limits::default(),
        far(),
    );
    let first = &out.paths[&(HEAP + 0x800)][0];
    assert_eq!(
        first.steps,
        [format!(
            "global at {:#x} (map[string][]uint8)",
            GLOBALS + 40
        )]
    );
    let only_srv = |at: u64, _: Option<&str>| (at == GLOBALS + 16).then(|| "main.srv".to_owned());
    let out = search(
        &snap,
        &w.types,
        &only_srv,
        &sus,
        &HashMap::new(),
        Limits::default(),
        far(),
    );
    assert_eq!(out.paths[&(HEAP + 0x800)][0].steps.len(), 3);
    let shallow = Limits {
        depth: 2,
        ..Limits::default()
    };
    let out = search(
        &snap,
        &w.types,
        &only_srv,
        &sus,
        &HashMap::new(),
        shallow,
        far(),
    );
    assert!(out.paths.is_empty());
    assert!(out.cut_short);
}

/// global → *shardSet → .shards → [2] → (main.shard).m: a map in an
/// element of a slice of structs.
#[test]
fn slice_elements() {
    let mut r = build::Region::new(0x40_0000);
    let m = r.plain("map[int]int", MAP, 8);
    let s = r.plain("string", 24, 16);
    let shard = r.strukt("main.shard", 24, &[("name", s, 0), ("m", m, 16)]);
    let shards = r.slice(shard, "[]main.shard");
    let set = r.strukt("main.shardSet", 32, &[("n", s, 0), ("shards", shards, 8)]);
    r.ptr(set, "*main.shardSet", true);
    let types = TypeTable::new(r.base, r.bytes);
    let mut g = vec![0u8; 64];
    put(&mut g, 16, HEAP + 0x100);
    // A second global holding the array directly: `var all []shard`.
    put(&mut g, 32, HEAP + 0x300);
    let mut h = vec![0u8; 0x1000];
    put(&mut g, 40, 4);
    put(&mut g, 48, 4);
    // A pointer near the array, not a slice header (len 0): no path.
    put(&mut g, 8, HEAP + 0x300);
    // A slice header whose array starts 100 elements below: a path,
    // but more doubtful than the ones through element 2.
    g.resize(128, 0);
    put(&mut g, 64, HEAP + 0x330 - 24 * 100);
    put(&mut g, 72, 200);
    put(&mut g, 80, 200);
    // The set: shards = {ptr 0x300, len 4, cap 4}.
    put(&mut h, 0x100 + 8, HEAP + 0x300);
    put(&mut h, 0x100 + 16, 4);
    put(&mut h, 0x100 + 24, 4);
    // Element 2 of the array at 0x300 holds the map @0x800.
    put(&mut h, 0x300 + 2 * 24 + 16, HEAP + 0x800);
    let snap = snapshot(g, h);
    let sus = [Suspect {
        map: HEAP + 0x800,
        map_type: m,
    }];
    let names = |at: u64, _: Option<&str>| match at - GLOBALS {
        8 => Some("main.near".to_owned()),
        16 => Some("main.set".to_owned()),
        32 => Some("main.all".to_owned()),
        64 => Some("main.far".to_owned()),
        _ => None,
    };
    let out = search(
        &snap,
        &types,
        &names,
        &sus,
        &HashMap::new(),
        Limits::default(),
        far(),
    );
    let paths = &out.paths[&(HEAP + 0x800)];
    let steps: Vec<&[String]> = paths.iter().map(|p| p.steps.as_slice()).collect();
    assert_eq!(
        steps,
        [
            &["main.all", "[2]", "(main.shard).m"][..],
            &[
                "main.set",
                "(*main.shardSet).shards",
                "[2]",
                "(main.shard).m"
            ][..],
            &["main.far", "[100]", "(main.shard).m"][..],
        ],
        "{paths:?}"
    );
    assert_eq!(
        paths[1].edges,
        [
            (GLOBALS + 16, HEAP + 0x100),
            (HEAP + 0x108, HEAP + 0x300),
            (HEAP + 0x340, HEAP + 0x800)
        ]
    );
}

/// An empty interface global holding a *cache: the root is the
/// interface, then the type assertion step.
#[test]
fn interface_roots() {
    let w = world();
    let (_, mut h) = memory();
    let pcache = w
        .types
        .ptr_to(w.types.fields_of_type(w.map_type)[0].struct_type);
    let mut g = vec![0u8; 64];
    put(&mut g, 24, pcache.unwrap());
    put(&mut g, 32, HEAP + 0x200);
    h[0x118..0x120].fill(0);
    let snap = snapshot(g, h);
    let sus = [Suspect {
        map: HEAP + 0x800,
        map_type: w.map_type,
    }];
    let names = |at: u64, ty: Option<&str>| {
        (at == GLOBALS + 24).then(|| format!("main.handler ({})", ty.unwrap_or("?")))
    };
    let out = search(
        &snap,
        &w.types,
        &names,
        &sus,
        &HashMap::new(),
        Limits::default(),
        far(),
    );
    let p = &out.paths[&(HEAP + 0x800)][0];
    assert_eq!(
        p.steps,
        [
            "main.handler (interface {})",
            ".(*main.cache)",
            "(*main.cache).items"
        ]
    );
    assert_eq!(p.edges[0], (GLOBALS + 24, pcache.unwrap()));
    assert_eq!(p.edges.len(), 3);
}

/// A map behind an interface field of a heap object: a non-empty
/// interface (its itab names the dynamic type) and an empty one (its type
/// word is the dynamic type); the interface's type word is re-read with the
/// path. A type word of another type leads nowhere.
#[test]
fn interface_fields_in_the_heap() {
    let mut r = build::Region::new(0x40_0000);
    let m = r.plain("map[string][]uint8", MAP, 8);
    let s = r.plain("string", 24, 16);
    let cache = r.strukt("main.cache", 32, &[("name", s, 0), ("items", m, 24)]);
    let pcache = r.ptr(cache, "*main.cache", true);
    let store = r.interface("main.Store");
    let any = r.interface("interface {}");
    let router = r.strukt("main.router", 40, &[("prefix", s, 0), ("store", store, 16)]);
    r.ptr(router, "*main.router", true);
    let slot = r.strukt("main.slot", 24, &[("n", s, 0), ("v", any, 8)]);
    r.ptr(slot, "*main.slot", true);
    let tab = r.itab(store, pcache);
    let types = TypeTable::new(r.base, r.bytes);
    assert_eq!(types.itab(tab), Some((store, pcache)));
    assert_eq!(types.empty_interface(), Some(any));
    let sus = [Suspect {
        map: HEAP + 0x800,
        map_type: m,
    }];
    // router @0x100: store = (tab, cache @0x200); cache.items → the map.
    let mut g = vec![0u8; 64];
    put(&mut g, 16, HEAP + 0x100);
    let mut h = vec![0u8; 0x1000];
    put(&mut h, 0x110, tab);
    put(&mut h, 0x118, HEAP + 0x200);
    put(&mut h, 0x218, HEAP + 0x800);
    let run = |g: Vec<u8>, h: Vec<u8>| {
        let snap = snapshot(g, h);
        search(
            &snap,
            &types,
            &name_root,
            &sus,
            &HashMap::new(),
            Limits::default(),
            far(),
        )
    };
    let out = run(g.clone(), h.clone());
    let p = &out.paths[&(HEAP + 0x800)][0];
    assert_eq!(
        p.steps,
        [
            "main.srv",
            "(*main.router).store",
            ".(*main.cache)",
            "(*main.cache).items"
        ]
    );
    assert_eq!(
        p.edges,
        [
            (GLOBALS + 16, HEAP + 0x100),
            (HEAP + 0x110, tab),
            (HEAP + 0x118, HEAP + 0x200),
            (HEAP + 0x218, HEAP + 0x800)
        ]
    );
    let mem = FakeMem::default();
    mem.put(GLOBALS, g.clone());
    mem.put(HEAP, h.clone());
    assert!(confirm(&mem, &out.paths[&(HEAP + 0x800)]).is_some());
    // The interface now holds another type: the path is gone.
    mem.poke(HEAP + 0x110, &pcache.to_le_bytes());
    assert_eq!(confirm(&mem, &out.paths[&(HEAP + 0x800)]), None);

    // slot @0x300: v = (*main.cache, cache @0x200), an empty interface.
    let mut g2 = vec![0u8; 64];
    put(&mut g2, 16, HEAP + 0x300);
    let mut h2 = h.clone();
    h2[0x110..0x120].fill(0);
    put(&mut h2, 0x308, pcache);
    put(&mut h2, 0x310, HEAP + 0x200);
    let out = run(g2, h2.clone());
    assert_eq!(
        out.paths[&(HEAP + 0x800)][0].steps,
        [
            "main.srv",
            "(*main.slot).v",
            ".(*main.cache)",
            "(*main.cache).items"
        ]
    );
    // A type word of another type: not an interface holding the cache.
    put(&mut h2, 0x308, s);
    let mut g3 = vec![0u8; 64];
    put(&mut g3, 16, HEAP + 0x300);
    let out = run(g3, h2);
    assert!(
        out.paths.get(&(HEAP + 0x800)).is_none_or(Vec::is_empty),
        "{:?}",
        out.paths
    );
}

/// A map in an element of an array field: of a struct with the map
/// (`[4]main.part`, the map in part 2) and of maps (`[4]map[..]..`, the
/// map at 3); the path names the array's field and the element.
#[test]
fn array_elements() {
    let mut r = build::Region::new(0x40_0000);
    let m = r.plain("map[string][]uint8", MAP, 8);
    let s = r.plain("string", 24, 16);
    let part = r.strukt("main.part", 24, &[("name", s, 0), ("m", m, 16)]);
    r.ptr(part, "*main.part", true);
    let parts = r.array(part, 4, "[4]main.part");
    let sharded = r.strukt("main.sharded", 112, &[("name", s, 0), ("parts", parts, 16)]);
    r.ptr(sharded, "*main.sharded", true);
    let maps = r.array(m, 4, "[4]map[string][]uint8");
    let table = r.strukt("main.table", 48, &[("n", s, 0), ("maps", maps, 16)]);
    r.ptr(table, "*main.table", true);
    let types = TypeTable::new(r.base, r.bytes);
    assert_eq!(types.arrays_of(part), vec![(parts, 4)]);
    let sus = [Suspect {
        map: HEAP + 0x800,
        map_type: m,
    }];
    let run = |h: Vec<u8>| {
        let mut g = vec![0u8; 64];
        put(&mut g, 16, HEAP + 0x100);
        let snap = snapshot(g, h);
        search(
            &snap,
            &types,
            &name_root,
            &sus,
            &HashMap::new(),
            Limits::default(),
            far(),
        )
    };
    // sharded @0x100: parts @+16, part 2 @0x100+16+48, its m @+16.
    let mut h = vec![0u8; 0x1000];
    put(&mut h, 0x100 + 16 + 2 * 24 + 16, HEAP + 0x800);
    let out = run(h);
    let p = &out.paths[&(HEAP + 0x800)][0];
    assert_eq!(
        p.steps,
        ["main.srv", "(*main.sharded).parts", "[2]", "(main.part).m"]
    );
    assert_eq!(
        p.edges,
        [(GLOBALS + 16, HEAP + 0x100), (HEAP + 0x150, HEAP + 0x800)]
    );
    // table @0x100: maps @+16, maps[3] the suspect.
    let mut h = vec![0u8; 0x1000];
    put(&mut h, 0x100 + 16 + 3 * 8, HEAP + 0x800);
    let out = run(h);
    assert_eq!(
        out.paths[&(HEAP + 0x800)][0].steps,
        ["main.srv", "(*main.table).maps", "[3]"]
    );
}

/// global → outer map → ["acme"] → the suspect, and a map of maps in
/// a map of maps (`[7]` is a map key, not a slice element: no doubt).
#[test]
fn map_values() {
    let mut r = build::Region::new(0x40_0000);
    let inner = r.plain("map[string]int", MAP, 8);
    let outer = r.plain("map[string]map[string]int", MAP, 8);
    let top = r.plain("map[int]map[string]map[string]int", MAP, 8);
    let types = TypeTable::new(r.base, r.bytes);
    let mut g = vec![0u8; 64];
    put(&mut g, 8, HEAP + 0x100);
    put(&mut g, 24, HEAP + 0x200);
    let snap = snapshot(g, vec![0u8; 0x1000]);
    let vref = |container, container_type, elem_type, at, step: &str| ValueRef {
        container,
        container_type,
        elem_type,
        at,
        step: step.to_owned(),
    };
    let values: HashMap<u64, Vec<ValueRef>> = [
        // outer @0x100 holds inner @0x800 under "acme"; an element of
        // the wrong type holding it leads nowhere.
        (
            HEAP + 0x800,
            vec![
                vref(HEAP + 0x300, top, outer, HEAP + 0x348, "[9]"),
                vref(HEAP + 0x100, outer, inner, HEAP + 0x148, "[\"acme\"]"),
            ],
        ),
        // top @0x200 holds a second outer @0x400 under 7, which holds
        // inner @0x900 under "b".
        (
            HEAP + 0x400,
            vec![vref(HEAP + 0x200, top, outer, HEAP + 0x230, "[7]")],
        ),
        (
            HEAP + 0x900,
            vec![vref(HEAP + 0x400, outer, inner, HEAP + 0x470, "[\"b\"]")],
        ),
    ]
    .into();
    let names = |at: u64, _: Option<&str>| match at - GLOBALS {
        8 => Some("main.tenants".to_owned()),
        24 => Some("main.top".to_owned()),
        _ => None,
    };
    let sus = [
        Suspect {
            map: HEAP + 0x800,
            map_type: inner,
        },
        Suspect {
            map: HEAP + 0x900,
            map_type: inner,
        },
    ];
    let out = search(
        &snap,
        &types,
        &names,
        &sus,
        &values,
        Limits::default(),
        far(),
    );
    let p = &out.paths[&(HEAP + 0x800)];
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!(p[0].steps, ["main.tenants", "[\"acme\"]"]);
    assert_eq!(
        p[0].edges,
        [(GLOBALS + 8, HEAP + 0x100), (HEAP + 0x148, HEAP + 0x800)]
    );
    let p = &out.paths[&(HEAP + 0x900)][0];
    assert_eq!(p.steps, ["main.top", "[7]", "[\"b\"]"]);
    assert_eq!(p.doubt(), (false, 0, 0, 3));
}

/// Pointer cycles and self-references end; garbage memory finds nothing
/// and never panics.
#[test]
fn cycles_and_garbage() {
    let w = world();
    let mut h = vec![0u8; 0x1000];
    // Two caches pointing at each other through their `name` words and
    // a server pointing at itself.
    put(&mut h, 0x100 + 24, HEAP + 0x100);
    put(&mut h, 0x200 + 24, HEAP + 0x800);
    put(&mut h, 0x300 + 24, HEAP + 0x200);
    put(&mut h, 0x200, HEAP + 0x300);
    let snap = snapshot(vec![0u8; 64], h);
    let sus = [Suspect {
        map: HEAP + 0x800,
        map_type: w.map_type,
    }];
    let out = search(
        &snap,
        &w.types,
        &name_root,
        &sus,
        &HashMap::new(),
        Limits::default(),
        far(),
    );
    assert!(out.paths.is_empty(), "{:?}", out.paths);
    let junk: Vec<u8> = (0..0x2000u32).map(|i| (i * 7919 % 251) as u8).collect();
    let snap = snapshot(junk.clone(), junk);
    let _ = search(
        &snap,
        &w.types,
        &name_root,
        &sus,
        &HashMap::new(),
        Limits::default(),
        far(),
    );
}
