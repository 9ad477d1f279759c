//! The holder search: from each suspect map back to a global, level by
//! level, over a copy of the target's memory ([`Snapshot`]), typed by the
//! runtime type descriptors ([`TypeTable`]).
//!
//! Level 0 looks for words holding the map pointer. A word found in the
//! globals is a root. A word found in the heap is taken to be a field of a
//! struct whose field of that exact type sits at that offset: each such
//! struct (from the descriptors) gives an object base (the word's address
//! less the field's offset), and the next level looks for words holding a
//! pointer to that base, of type `*Struct`. So a path names each step by the
//! struct and field it went through, stripped binaries included, and an
//! integer that happens to equal a pointer leads nowhere unless the types
//! line up at every step.
//!
//! Bounds: [`Limits`]. What is found is re-read live ([`confirm`]): a path
//! is reported only if every word on it still holds what it held.
use std::collections::{HashMap, HashSet};

use super::{
    heap::{RegionKind, Snapshot},
    types::TypeTable,
};
use crate::keys::Reader;

/// A map to find a holder for.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Suspect {
    /// The map pointer (header address).
    pub(crate) map: u64,
    /// Its type descriptor (run-time address).
    pub(crate) map_type: u64,
}

/// How far a search goes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Levels (pointer steps from the map) searched.
    pub(crate) depth: usize,
    /// Objects followed per level, over all suspects.
    pub(crate) frontier: usize,
    /// Words holding one value that are followed.
    pub(crate) hits_per_value: usize,
    /// Candidate paths kept per suspect (the first that holds on re-read
    /// is reported).
    pub(crate) paths_per_suspect: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            depth: 6,
            frontier: 256,
            hits_per_value: 16,
            paths_per_suspect: 4,
        }
    }
}

/// A path from a root to a map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Path {
    /// Steps, root first: `main.srv`, `(*main.server).cache`, …
    pub(crate) steps: Vec<String>,
    /// The words it goes through, root first: (address, value held).
    pub(crate) edges: Vec<(u64, u64)>,
}

/// What a search found.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    /// Candidate paths per map, shortest first (not yet confirmed).
    pub(crate) paths: HashMap<u64, Vec<Path>>,
    /// Levels searched.
    pub(crate) levels: usize,
    /// A bound (depth, frontier, deadline) stopped it with suspects left.
    pub(crate) cut_short: bool,
}

/// Something a word should hold: a pointer of type `ty` to `want`.
struct Node {
    want: u64,
    ty: u64,
    suspect: usize,
    /// The step from this object to its child, e.g. `(*main.cache).items`.
    label: Option<String>,
    /// The node this object holds, and the address of the word that holds it.
    child: Option<(usize, u64)>,
}

/// Searches holder paths for `suspects`. `root_name(addr, type name)` names
/// the global word at `addr` (`None`: not a root, e.g. a runtime global).
pub(crate) fn search(
    snap: &Snapshot,
    types: &TypeTable,
    root_name: &dyn Fn(u64, Option<&str>) -> Option<String>,
    suspects: &[Suspect],
    limits: Limits,
    deadline: std::time::Instant,
) -> Outcome {
    let mut out = Outcome::default();
    let mut nodes: Vec<Node> = Vec::new();
    let mut seen: HashSet<(u64, u64)> = HashSet::new();
    let mut frontier: Vec<usize> = Vec::new();
    for (i, s) in suspects.iter().enumerate() {
        if seen.insert((s.map, s.map_type)) {
            frontier.push(nodes.len());
            nodes.push(Node {
                want: s.map,
                ty: s.map_type,
                suspect: i,
                label: None,
                child: None,
            });
        }
    }
    let mut field_cache: HashMap<u64, Vec<super::types::FieldRef>> = HashMap::new();
    while !frontier.is_empty() {
        if out.levels >= limits.depth || std::time::Instant::now() >= deadline {
            out.cut_short = true;
            break;
        }
        out.levels += 1;
        let mut by_value: HashMap<u64, Vec<usize>> = HashMap::new();
        for &n in &frontier {
            let done = out
                .paths
                .get(&suspects[nodes[n].suspect].map)
                .is_some_and(|p| p.len() >= limits.paths_per_suspect);
            if !done {
                by_value.entry(nodes[n].want).or_default().push(n);
            }
        }
        let mut next = Vec::new();
        for (at, value, kind) in snap.find(&by_value, limits.hits_per_value) {
            for &n in by_value.get(&value).into_iter().flatten() {
                match kind {
                    RegionKind::Globals => {
                        let ty = types.name(nodes[n].ty);
                        let Some(root) = root_name(at, ty.as_deref()) else {
                            continue;
                        };
                        let path = path_from(&nodes, n, root, at);
                        let list = out.paths.entry(suspects[nodes[n].suspect].map).or_default();
                        if list.len() < limits.paths_per_suspect && !list.contains(&path) {
                            list.push(path);
                        }
                    }
                    RegionKind::Heap => {
                        let fields = field_cache
                            .entry(nodes[n].ty)
                            .or_insert_with(|| types.fields_of_type(nodes[n].ty));
                        for f in fields.iter() {
                            let Some(base) = at.checked_sub(f.offset) else {
                                continue;
                            };
                            if !base.is_multiple_of(8)
                                || snap.kind_of(base, f.struct_size) != Some(RegionKind::Heap)
                            {
                                continue;
                            }
                            let Some(ptr) = types.ptr_to(f.struct_type) else {
                                continue;
                            };
                            if !seen.insert((base, ptr)) {
                                continue;
                            }
                            let name = types
                                .name(ptr)
                                .unwrap_or_else(|| format!("*type at {:#x}", f.struct_type));
                            next.push(nodes.len());
                            nodes.push(Node {
                                want: base,
                                ty: ptr,
                                suspect: nodes[n].suspect,
                                label: Some(format!("({name}).{}", f.name)),
                                child: Some((n, at)),
                            });
                        }
                    }
                }
            }
        }
        if next.len() > limits.frontier {
            next.truncate(limits.frontier);
            out.cut_short = true;
        }
        frontier = next;
    }
    out
}

/// The path from a root word at `at` holding node `n`'s pointer down to its
/// map.
fn path_from(nodes: &[Node], n: usize, root: String, at: u64) -> Path {
    let mut steps = vec![root];
    let mut edges = vec![(at, nodes[n].want)];
    let mut cur = n;
    // Each node has a child of a lower index: the walk ends.
    while let Some((c, held_at)) = nodes[cur].child {
        steps.extend(nodes[cur].label.clone());
        edges.push((held_at, nodes[c].want));
        cur = c;
    }
    Path { steps, edges }
}

/// The first of `paths` whose every word still holds its value, read live.
pub(crate) fn confirm<R: Reader>(mem: &R, paths: &[Path]) -> Option<Path> {
    paths
        .iter()
        .find(|p| {
            p.edges.iter().all(|&(at, v)| {
                let mut w = [0u8; 8];
                mem.read(at, &mut w) && u64::from_le_bytes(w) == v
            })
        })
        .cloned()
}

#[cfg(test)]
mod tests {
    use super::{
        super::{
            heap::{Region, RegionKind, Snapshot},
            types::build,
        },
        *,
    };
    use crate::keys::testmem::FakeMem;

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

    fn snapshot(g: Vec<u8>, h: Vec<u8>) -> Snapshot {
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
        let out = search(&snap, &w.types, &name_root, &sus, Limits::default(), far());
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
        let out = search(&snap, &w.types, &name_root, &sus, Limits::default(), far());
        let first = &out.paths[&(HEAP + 0x800)][0];
        assert_eq!(
            first.steps,
            [format!(
                "global at {:#x} (map[string][]uint8)",
                GLOBALS + 40
            )]
        );
        let only_srv =
            |at: u64, _: Option<&str>| (at == GLOBALS + 16).then(|| "main.srv".to_owned());
        let out = search(&snap, &w.types, &only_srv, &sus, Limits::default(), far());
        assert_eq!(out.paths[&(HEAP + 0x800)][0].steps.len(), 3);
        let shallow = Limits {
            depth: 2,
            ..Limits::default()
        };
        let out = search(&snap, &w.types, &only_srv, &sus, shallow, far());
        assert!(out.paths.is_empty());
        assert!(out.cut_short);
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
        let out = search(&snap, &w.types, &name_root, &sus, Limits::default(), far());
        assert!(out.paths.is_empty(), "{:?}", out.paths);
        let junk: Vec<u8> = (0..0x2000u32).map(|i| (i * 7919 % 251) as u8).collect();
        let snap = snapshot(junk.clone(), junk);
        let _ = search(&snap, &w.types, &name_root, &sus, Limits::default(), far());
    }
}
