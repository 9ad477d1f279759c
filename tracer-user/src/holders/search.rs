//! The holder search: from each suspect map back to a global, level by
//! level, over the target's memory ([`Snapshot`]: the globals and stacks
//! copied, the heap read live), typed by the runtime type descriptors
//! ([`TypeTable`]). A [`Search`] stops at a deadline and goes on at the
//! next call, from where its scan of the heap stopped.
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
//! A struct found that way may also be an element of a slice's backing
//! array: then the next level also looks for a slice data pointer of type
//! `[]Struct` at most [`MAX_INDEX`] elements before it, and the path says
//! which element (`[2]`) and names the field of the struct value
//! (`(main.shard).m`).
//!
//! Bounds: [`Limits`]. What is found is re-read live ([`confirm`]): a path
//! is reported only if every word on it still holds what it held.
use std::collections::{HashMap, HashSet};

use super::{
    heap::{Hit, Matcher, RegionKind, Snapshot},
    types::TypeTable,
    values::ValueRef,
};
use crate::keys::Reader;

/// A map to find a holder for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
    /// Its root is a goroutine's stack.
    pub(crate) stack: bool,
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

/// Elements of a slice searched back from one found to its array's start.
pub(crate) const MAX_INDEX: u64 = 1024;

/// Something a word should hold: a pointer of type `ty` to `want` or, for
/// a slice (`stride` > 0, the element size), to `want - i * stride` for an
/// index `i` below [`MAX_INDEX`].
#[derive(Debug)]
struct Node {
    want: u64,
    ty: u64,
    stride: u64,
    suspect: usize,
    /// The steps from this object to its child, e.g. `(*main.cache).items`,
    /// or an interface field and its dynamic type (`(*main.router).store`,
    /// `.(*main.memStore)`).
    label: Vec<String>,
    /// The node this object holds: its index, the address and value of the
    /// word that holds it, and the element step (`[i]`) when it is a slice.
    child: Option<Link>,
}

#[derive(Debug)]
struct Link {
    node: usize,
    at: u64,
    value: u64,
    index: Option<u64>,
    /// Held in an interface: its type word (address, the dynamic type or
    /// the itab), re-read with the data word.
    tag: Option<(u64, u64)>,
}

impl Node {
    /// The element index `value` points at, for a slice node; whether the
    /// node wants `value` at all.
    fn wants(&self, value: u64) -> Option<Option<u64>> {
        if self.stride == 0 {
            return (value == self.want).then_some(None);
        }
        let d = self.want.checked_sub(value)?;
        (d.is_multiple_of(self.stride) && d / self.stride < MAX_INDEX)
            .then_some(Some(d / self.stride))
    }
}

/// Searches holder paths for `suspects` in one go (a deadline that passes
/// cuts it short). `root_name(addr, type name)` names the global word at
/// `addr` (`None`: not a root, e.g. a runtime global).
#[cfg(test)]
pub(crate) fn search(
    snap: &Snapshot<'_>,
    types: &TypeTable,
    root_name: &dyn Fn(u64, Option<&str>) -> Option<String>,
    suspects: &[Suspect],
    values: &HashMap<u64, Vec<ValueRef>>,
    limits: Limits,
    deadline: std::time::Instant,
) -> Outcome {
    let mut s = Search::new(suspects, limits);
    if !s.run(snap, types, root_name, values, deadline) {
        s.out.cut_short = true;
    }
    s.into_outcome()
}

/// A holder search that can stop at a deadline and go on at a later call,
/// over memory read again then: the nodes it follows, the level it is at
/// and how far that level's scan of the heap got.
#[derive(Debug)]
pub(crate) struct Search {
    suspects: Vec<Suspect>,
    limits: Limits,
    nodes: Vec<Node>,
    /// (address, type) of every node made, so that none is followed twice.
    seen: HashSet<(u64, u64)>,
    /// The nodes the next level looks for.
    frontier: Vec<usize>,
    field_cache: HashMap<u64, Vec<super::types::FieldRef>>,
    /// The level being scanned.
    level: Option<Level>,
    out: Outcome,
}

/// A level under way.
#[derive(Debug)]
struct Level {
    /// Plain nodes by the value they want.
    by_value: HashMap<u64, Vec<usize>>,
    /// Slice nodes, and the values they may want.
    slices: Vec<usize>,
    ranges: Vec<(u64, u64)>,
    /// Nodes for the next level found so far.
    next: Vec<usize>,
    /// The copied regions (globals, stacks) were scanned.
    copied: bool,
    /// Where the scan of the live heap goes on.
    cursor: u64,
    /// Hits so far, and per value.
    hits: Vec<Hit>,
    per: HashMap<u64, usize>,
}

impl Search {
    #[must_use]
    pub(crate) fn new(suspects: &[Suspect], limits: Limits) -> Self {
        let mut s = Self {
            suspects: suspects.to_vec(),
            limits,
            nodes: Vec::new(),
            seen: HashSet::new(),
            frontier: Vec::new(),
            field_cache: HashMap::new(),
            level: None,
            out: Outcome::default(),
        };
        for (i, m) in suspects.iter().enumerate() {
            if s.seen.insert((m.map, m.map_type)) {
                s.frontier.push(s.nodes.len());
                s.nodes.push(Node {
                    want: m.map,
                    ty: m.map_type,
                    stride: 0,
                    suspect: i,
                    label: Vec::new(),
                    child: None,
                });
            }
        }
        s
    }

    /// The maps it searches for.
    pub(crate) fn maps(&self) -> impl Iterator<Item = u64> + '_ {
        self.suspects.iter().map(|s| s.map)
    }

    /// What it found (its paths shortest and surest first).
    #[must_use]
    pub(crate) fn into_outcome(mut self) -> Outcome {
        for paths in self.out.paths.values_mut() {
            paths.sort_by_key(Path::doubt);
        }
        self.out
    }

    /// Searches on over `snap` until it is done (true: every level it
    /// could go is searched, or a bound stopped it) or `deadline` passes
    /// (false: call again, over memory read then, to go on). Each call
    /// scans at least a chunk of the heap.
    pub(crate) fn run(
        &mut self,
        snap: &Snapshot<'_>,
        types: &TypeTable,
        root_name: &dyn Fn(u64, Option<&str>) -> Option<String>,
        values: &HashMap<u64, Vec<ValueRef>>,
        deadline: std::time::Instant,
    ) -> bool {
        let mut worked = false;
        loop {
            if self.level.is_none() {
                if self.frontier.is_empty() {
                    return true;
                }
                if self.out.levels >= self.limits.depth {
                    self.out.cut_short = true;
                    return true;
                }
                if worked && std::time::Instant::now() >= deadline {
                    return false;
                }
                self.out.levels += 1;
                self.level = Some(self.start_level(values));
            }
            let Some(lv) = self.level.as_mut() else {
                continue;
            };
            let m = Matcher::new(
                lv.by_value.keys().copied(),
                &lv.ranges,
                self.limits.hits_per_value,
            );
            if !lv.copied {
                snap.find_copied(&m, &mut lv.per, &mut lv.hits);
                lv.copied = true;
            }
            if !snap.find_live(&m, &mut lv.cursor, &mut lv.per, &mut lv.hits, deadline) {
                return false;
            }
            worked = true;
            if let Some(lv) = self.level.take() {
                self.end_level(snap, types, root_name, lv);
            }
        }
    }

    /// The nodes of the frontier still wanted, and the maps whose values
    /// hold them (nodes of the next level already).
    fn start_level(&mut self, values: &HashMap<u64, Vec<ValueRef>>) -> Level {
        let nodes = &mut self.nodes;
        let mut by_value: HashMap<u64, Vec<usize>> = HashMap::new();
        let mut slices: Vec<usize> = Vec::new();
        for &n in &self.frontier {
            let done = self
                .out
                .paths
                .get(&self.suspects[nodes[n].suspect].map)
                // Paths from goroutine stacks rank after those from
                // globals: they do not end the search for one.
                .is_some_and(|p| {
                    p.iter().filter(|p| !p.stack).count() >= self.limits.paths_per_suspect
                });
            if done {
                continue;
            }
            if nodes[n].stride == 0 {
                by_value.entry(nodes[n].want).or_default().push(n);
            } else {
                slices.push(n);
            }
        }
        let ranges: Vec<(u64, u64)> = slices
            .iter()
            .map(|&n| {
                let x = &nodes[n];
                let span = (MAX_INDEX - 1).saturating_mul(x.stride);
                (x.want.saturating_sub(span), x.want)
            })
            .collect();
        let mut next = Vec::new();
        // Held as the value of another map: the next level looks for that
        // map, of its type.
        for (value, ns) in &by_value {
            for r in values.get(value).into_iter().flatten() {
                for &n in ns {
                    if r.elem_type != nodes[n].ty
                        || !self.seen.insert((r.container, r.container_type))
                    {
                        continue;
                    }
                    next.push(nodes.len());
                    nodes.push(Node {
                        want: r.container,
                        ty: r.container_type,
                        stride: 0,
                        suspect: nodes[n].suspect,
                        label: vec![r.step.clone()],
                        child: Some(Link {
                            node: n,
                            at: r.at,
                            value: *value,
                            index: None,
                            tag: None,
                        }),
                    });
                }
            }
        }
        Level {
            by_value,
            slices,
            ranges,
            next,
            copied: false,
            cursor: 0,
            hits: Vec::new(),
            per: HashMap::new(),
        }
    }

    /// Follows a level's hits: a root ends a path, a heap word gives the
    /// objects that may hold it, the next level's frontier.
    fn end_level(
        &mut self,
        snap: &Snapshot<'_>,
        types: &TypeTable,
        root_name: &dyn Fn(u64, Option<&str>) -> Option<String>,
        lv: Level,
    ) {
        let Level {
            by_value,
            slices,
            mut next,
            hits,
            ..
        } = lv;
        let (nodes, limits, out) = (&mut self.nodes, self.limits, &mut self.out);
        for (at, value, kind) in hits {
            let wanting: Vec<(usize, Option<u64>)> = by_value
                .get(&value)
                .into_iter()
                .flatten()
                .map(|&n| (n, None))
                .chain(slices.iter().filter_map(|&n| {
                    let index = nodes[n].wants(value)?;
                    // A slice header: data, len, cap, the element within
                    // len (a pointer that merely lands near the array is
                    // not one).
                    let len = snap.word(at.checked_add(8)?)?;
                    let cap = snap.word(at.checked_add(16)?)?;
                    (index? < len && len <= cap && cap.checked_mul(nodes[n].stride).is_some())
                        .then_some((n, index))
                }))
                .collect();
            for (n, index) in wanting {
                let link = Link {
                    node: n,
                    at,
                    value,
                    index,
                    tag: None,
                };
                match kind {
                    RegionKind::Globals => {
                        let ty = types.name(nodes[n].ty);
                        // An interface holding the pointer: its type word,
                        // just before, is the pointer's type (or an itab
                        // of it).
                        let iface = if index.is_none() {
                            interface_of(snap, types, at, nodes[n].ty)
                        } else {
                            None
                        };
                        let path = if let Some((tw, inter)) = iface {
                            let inter = types
                                .name(inter)
                                .unwrap_or_else(|| "interface {}".to_owned());
                            let Some(root) = root_name(at - 8, Some(&inter)) else {
                                continue;
                            };
                            let mut p = path_from(nodes, root, &link);
                            p.steps
                                .insert(1, format!(".({})", ty.as_deref().unwrap_or("?")));
                            p.edges.insert(0, (at - 8, tw));
                            p
                        } else {
                            let Some(root) = root_name(at, ty.as_deref()) else {
                                continue;
                            };
                            path_from(nodes, root, &link)
                        };
                        let list = out
                            .paths
                            .entry(self.suspects[nodes[n].suspect].map)
                            .or_default();
                        let globals = list.iter().filter(|p| !p.stack).count();
                        if globals < limits.paths_per_suspect && !list.contains(&path) {
                            list.push(path);
                        }
                    }
                    RegionKind::Stack => {
                        let Some(root) = snap.stack_root(at) else {
                            continue;
                        };
                        let mut path = path_from(nodes, root.to_owned(), &link);
                        path.stack = true;
                        let list = out
                            .paths
                            .entry(self.suspects[nodes[n].suspect].map)
                            .or_default();
                        let stacks = list.iter().filter(|p| p.stack).count();
                        if stacks < limits.paths_per_suspect && !list.contains(&path) {
                            list.push(path);
                        }
                    }
                    RegionKind::Heap => {
                        for h in
                            heap_holders(snap, types, &mut self.field_cache, at, &nodes[n], index)
                        {
                            if !self.seen.insert((h.want, h.ty)) {
                                continue;
                            }
                            next.push(nodes.len());
                            nodes.push(Node {
                                want: h.want,
                                ty: h.ty,
                                stride: h.stride,
                                suspect: nodes[n].suspect,
                                label: h.label,
                                child: Some(Link {
                                    node: n,
                                    at: link.at,
                                    value: link.value,
                                    index: link.index,
                                    tag: h.tag,
                                }),
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
        self.frontier = next;
    }
}

impl Path {
    /// How doubtful the path is, least first: a global root before a
    /// goroutine's stack (scanned conservatively: a dead slot may hold an
    /// old pointer), then slice steps, then the largest element index,
    /// then its length. A slice step is inferred
    /// from a header whose data pointer lies up to [`MAX_INDEX`] elements
    /// below the element, so any slice of the runtime's whose array sits
    /// just below can pass for one (seen in a stripped binary, where
    /// runtime globals have no names to exclude them by): the nearer the
    /// element is to the array's start, the likelier the header is its own.
    fn doubt(&self) -> (bool, usize, u64, usize) {
        // A slice element (`[2]`) is followed by its field (`(main.shard).m`);
        // a map key (`[2]` too) is not.
        let index: Vec<u64> = self
            .steps
            .windows(2)
            .filter(|w| w[1].starts_with('('))
            .filter_map(|w| w[0].strip_prefix('[')?.strip_suffix(']')?.parse().ok())
            .collect();
        (
            self.stack,
            index.len(),
            index.iter().copied().max().unwrap_or(0),
            self.steps.len(),
        )
    }
}

/// Elements of an array searched back from one found to the array's
/// start (an array of 256 shards is searched up to its 64th).
pub(crate) const MAX_ARRAY_INDEX: u64 = 64;

/// How a struct field may hold a value found in the heap.
struct HeldAs {
    /// The field's type.
    field_type: u64,
    /// Where such a field would start, for element 0 of an array.
    start: u64,
    /// The interface's type word (address, value), when the field is one.
    tag: Option<(u64, u64)>,
    /// An array of the value's type: its elements searched (the value may
    /// be any of them, the field starting that many words earlier).
    elements: Option<u64>,
}

/// An object that may hold a node's value found in the heap.
struct Holder {
    /// Its address, and the type of a pointer to it (or of a slice whose
    /// elements it is, `stride` > 0).
    want: u64,
    ty: u64,
    stride: u64,
    /// The steps from it to the value.
    label: Vec<String>,
    /// The interface's type word, when the value is an interface's data.
    tag: Option<(u64, u64)>,
}

/// The objects that may hold `node`'s value, found at `at` in the heap
/// (`index`: at an element of a slice the node stands for): a struct
/// whose field at that offset is of the value's type, of an array of it
/// (`[N]map[K]V`, `[N]*T`: the field's element `[i]`), or of an interface
/// type whose value holds it (the field starts at the type word, a word
/// before); each such struct held through a `*Struct`, as an element of a
/// `[]Struct`, or as an element of a `[N]Struct` field of another struct.
fn heap_holders(
    snap: &Snapshot<'_>,
    types: &TypeTable,
    field_cache: &mut HashMap<u64, Vec<super::types::FieldRef>>,
    at: u64,
    node: &Node,
    index: Option<u64>,
) -> Vec<Holder> {
    let mut out = Vec::new();
    let mut held_as = vec![HeldAs {
        field_type: node.ty,
        start: at,
        tag: None,
        elements: None,
    }];
    let mut dynamic = None;
    if index.is_none() {
        if let Some((tw, inter)) = interface_of(snap, types, at, node.ty).filter(|i| i.1 != 0) {
            dynamic = types.name(node.ty);
            held_as.push(HeldAs {
                field_type: inter,
                start: at - 8,
                tag: Some((at - 8, tw)),
                elements: None,
            });
        }
        for (arr, len) in types.arrays_of(node.ty) {
            held_as.push(HeldAs {
                field_type: arr,
                start: at,
                tag: None,
                elements: Some(len.min(MAX_ARRAY_INDEX)),
            });
        }
    }
    let mut fields_of = |t: u64| {
        field_cache
            .entry(t)
            .or_insert_with(|| types.fields_of_type(t))
            .clone()
    };
    for h in held_as {
        let tag = h.tag;
        for f in fields_of(h.field_type) {
            for i in 0..h.elements.unwrap_or(1) {
                let element = h.elements.map(|_| i);
                let Some(base) = i
                    .checked_mul(8)
                    .and_then(|d| d.checked_add(f.offset))
                    .and_then(|d| h.start.checked_sub(d))
                else {
                    break;
                };
                if !base.is_multiple_of(8)
                    || snap.kind_of(base, f.struct_size) != Some(RegionKind::Heap)
                {
                    continue;
                }
                let name = types
                    .name(f.struct_type)
                    .unwrap_or_else(|| format!("type at {:#x}", f.struct_type));
                // The steps inside the struct: its field, the array element,
                // the interface's dynamic type.
                let mut inner = Vec::new();
                inner.extend(element.map(|i| format!("[{i}]")));
                if tag.is_some() {
                    inner.push(format!(".({})", dynamic.as_deref().unwrap_or("?")));
                }
                let step = |holder: String| {
                    let mut l = vec![format!("{holder}.{}", f.name)];
                    l.extend(inner.iter().cloned());
                    l
                };
                if let Some(p) = types.ptr_to(f.struct_type) {
                    out.push(Holder {
                        want: base,
                        ty: p,
                        stride: 0,
                        label: step(format!("(*{name})")),
                        tag,
                    });
                }
                if let Some(sl) = types.slice_of(f.struct_type) {
                    out.push(Holder {
                        want: base,
                        ty: sl,
                        stride: f.struct_size,
                        label: step(format!("({name})")),
                        tag,
                    });
                }
                // An element of a `[N]Struct` field of another struct.
                for (arr, len) in types.arrays_of(f.struct_type) {
                    for g in fields_of(arr) {
                        let Some(pt) = types.ptr_to(g.struct_type) else {
                            continue;
                        };
                        let outer = types
                            .name(g.struct_type)
                            .unwrap_or_else(|| format!("type at {:#x}", g.struct_type));
                        for k in 0..len.min(MAX_ARRAY_INDEX) {
                            let Some(b) = k
                                .checked_mul(f.struct_size)
                                .and_then(|d| d.checked_add(g.offset))
                                .and_then(|d| base.checked_sub(d))
                            else {
                                break;
                            };
                            if !b.is_multiple_of(8)
                                || snap.kind_of(b, g.struct_size) != Some(RegionKind::Heap)
                            {
                                continue;
                            }
                            let mut label =
                                vec![format!("(*{outer}).{}", g.name), format!("[{k}]")];
                            label.extend(step(format!("({name})")));
                            out.push(Holder {
                                want: b,
                                ty: pt,
                                stride: 0,
                                label,
                                tag,
                            });
                        }
                    }
                }
            }
        }
    }
    out
}

/// When the word at `at` is the data word of an interface holding a value
/// of type `ty` (a pointer): the interface's type word and its type (the
/// empty interface when the type word is `ty` itself, else the interface
/// of the itab whose dynamic type is `ty`).
fn interface_of(snap: &Snapshot<'_>, types: &TypeTable, at: u64, ty: u64) -> Option<(u64, u64)> {
    let tw = snap.word(at.checked_sub(8)?)?;
    if tw == ty {
        // 0: the descriptor of `interface {}` was not found (a global
        // holding one is still a root; no heap field can be looked up).
        return Some((tw, types.empty_interface().unwrap_or(0)));
    }
    let (inter, dynamic) = types.itab(tw)?;
    (dynamic == ty).then_some((tw, inter))
}

/// The path from a root word (`root`, the link to the node it holds) down
/// to its map.
fn path_from(nodes: &[Node], root: String, link: &Link) -> Path {
    let mut steps = vec![root];
    let mut edges = Vec::new();
    let mut link = Some(link);
    // Each node's child has a lower index: the walk ends.
    while let Some(l) = link {
        edges.extend(l.tag);
        edges.push((l.at, l.value));
        steps.extend(l.index.map(|i| format!("[{i}]")));
        steps.extend(nodes[l.node].label.iter().cloned());
        link = nodes[l.node].child.as_ref();
    }
    Path {
        steps,
        edges,
        stack: false,
    }
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
mod tests;
