//! Walking a HashTrieMap from outside: level by level, every node of a level
//! in one batched read (many regions per system call), validating what is
//! read. Pure: the reads go through [`NodeReader`], so the walk is tested
//! on made-up memory without a process.
//!
//! The trie changes while it is read (nothing is stopped). What can go
//! wrong, and what the walk does:
//! - a node freed and its memory reused between reading its parent and
//!   reading it: its `isEntry` byte is neither 0 nor 1, or an indirect's
//!   `parent` is not the node it was reached from: counted in
//!   [`Walk::bad`], its subtree left out;
//! - a pruned indirect (`dead` set): empty by construction, counted in
//!   [`Walk::dead`];
//! - child pointers that are null (empty slots), or not aligned or out of
//!   the user address range (garbage): skipped, the latter counted bad;
//! - a trie deeper than 16 levels (impossible in a real one): bad.
//!
//! Nothing read is trusted to size a buffer or a loop: the levels are
//! bounded by [`MAX_LEVELS`] and the nodes read by the caller's cap.
//!
//! **Big tries.** The nodes read per walk are capped. When a level holds
//! more nodes than half of what is left of the cap, an evenly spaced
//! sample of it is read instead, and what is found below counts for the
//! nodes left out (hashes spread keys evenly over the trie, so subtrees of
//! one level are alike). The walk then says it is an estimate
//! ([`Walk::exact`] false).
use std::time::Instant;

use super::layout::{CHILDREN, MAX_LEVELS, TrieLayout};

/// Reads regions of the target.
pub trait NodeReader {
    /// Reads each `(address, length)` region, one after the other, into
    /// `buf` (resized to their total); returns per region whether it was
    /// read whole.
    fn read_regions(&mut self, regions: &[(u64, usize)], buf: &mut Vec<u8>) -> Vec<bool>;
}

/// Regions per batch: one `process_vm_readv` reads at most 1024 (`IOV_MAX`).
pub const BATCH: usize = 1024;

/// What a HashTrieMap header says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Header {
    /// Never used: `initSlow` has not run (no root yet).
    Uninit,
    /// Initialised: its root and hash seed.
    Ready {
        /// `root`, the top indirect node.
        root: u64,
        /// `seed`: a new instance at a reused address has another.
        seed: u64,
    },
    /// Not a HashTrieMap's header (or one caught mid-init).
    Implausible,
}

/// Decodes the header bytes `b` (at least `map_size`).
#[must_use]
pub fn decode_header(b: &[u8], l: &TrieLayout) -> Header {
    let (Some(inited), Some(root), Some(seed)) = (
        u32_at(b, l.map_inited),
        u64_at(b, l.map_root),
        u64_at(b, l.map_seed),
    ) else {
        return Header::Implausible;
    };
    match inited {
        // initSlow sets root before inited: a root without inited is
        // one being initialised now.
        0 if root == 0 => Header::Uninit,
        1 if plausible_ptr(root) => Header::Ready { root, seed },
        _ => Header::Implausible,
    }
}

/// What one walk found.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Walk {
    /// Entries (an estimate when not [`Self::exact`]).
    pub entries: f64,
    /// Indirect nodes (an estimate when not [`Self::exact`]).
    pub indirects: f64,
    /// Entries actually read.
    pub entries_read: u64,
    /// Nodes read (regions).
    pub nodes_read: u64,
    /// Nodes (or pointers) that were not what they should be.
    pub bad: u64,
    /// Of those, nodes that could not be read at all: the process is
    /// exiting (a Go heap stays mapped), and the counts are any part of
    /// the trie.
    pub unreadable: u64,
    /// Pruned indirects reached.
    pub dead: u64,
    /// Levels of indirects seen.
    pub levels: u32,
    /// Every node was read: the counts are exact (for that moment).
    pub exact: bool,
    /// The deadline passed before the walk ended: its counts mean nothing.
    pub cut_short: bool,
}

impl Walk {
    /// Entries, rounded.
    #[must_use]
    pub fn len(&self) -> u64 {
        self.entries.round() as u64
    }

    /// Whether it found no entry.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Estimated bytes of the trie: the header, its indirect nodes and its
    /// entries in their size classes. The keys' and values' own memory
    /// (boxed ints, string bytes, pointees) is not counted.
    #[must_use]
    pub fn bytes(&self, l: &TrieLayout) -> u64 {
        let nodes =
            self.indirects * f64::from(l.indirect_alloc) + self.entries * f64::from(l.entry_size);
        u64::from(l.map_size) + nodes.round() as u64
    }
}

/// What the walk expects at an address.
#[derive(Clone, Copy)]
enum Expect {
    /// A child slot's node, of either kind, below the indirect `parent`.
    Child { parent: u64 },
    /// An entry on an overflow chain.
    Overflow,
}

/// Walks the trie under `root`, reading at most `max_nodes` nodes, and
/// stops (cut short) at the first batch boundary past `deadline`.
pub fn walk(
    r: &mut dyn NodeReader,
    l: &TrieLayout,
    root: u64,
    max_nodes: u64,
    deadline: Option<Instant>,
) -> Walk {
    walk_entries(r, l, root, max_nodes, deadline, &mut |_| {})
}

/// [`walk`], handing each entry read (its node's bytes) to `on_entry`.
pub fn walk_entries(
    r: &mut dyn NodeReader,
    l: &TrieLayout,
    root: u64,
    max_nodes: u64,
    deadline: Option<Instant>,
    on_entry: &mut dyn FnMut(&[u8]),
) -> Walk {
    let mut w = Walk {
        exact: true,
        ..Walk::default()
    };
    // The root's parent is nil.
    let mut level: Vec<(u64, Expect)> = vec![(root, Expect::Child { parent: 0 })];
    let mut next: Vec<(u64, Expect)> = Vec::new();
    let mut regions: Vec<(u64, usize)> = Vec::new();
    // Per region, the range of `level` it holds.
    let mut runs: Vec<(usize, usize)> = Vec::new();
    let mut buf = Vec::new();
    let mut weight = 1.0f64;
    // Indirect levels below the current round (overflow-only rounds do not
    // go deeper).
    let mut depth = 0usize;
    // Rounds: every level of indirects, and overflow chains (a chain of
    // full 64-bit hash collisions; two keys in one is already rare).
    for _round in 0..2 * MAX_LEVELS {
        if level.is_empty() {
            return w;
        }
        let left = max_nodes.saturating_sub(w.nodes_read);
        if left == 0 {
            w.exact = false;
            return w;
        }
        let room = (left / 2).max(1) as usize;
        if level.len() > room {
            let n = level.len();
            let stride = n.div_ceil(room);
            level = level.into_iter().step_by(stride).collect();
            weight *= n as f64 / level.len() as f64;
            w.exact = false;
        }
        let mut saw_indirect = false;
        // Neighbours in memory are read as one region (see `spans`).
        level.sort_unstable_by_key(|x| x.0);
        spans(&level, l, &mut regions, &mut runs);
        let mut first = 0usize;
        while first < runs.len() {
            if deadline.is_some_and(|d| Instant::now() >= d) {
                w.cut_short = true;
                w.exact = false;
                return w;
            }
            // A batch: up to BATCH regions and BATCH_BYTES.
            let mut end = first;
            let mut bytes = 0usize;
            while end < runs.len() && end - first < BATCH && (end == first || bytes < BATCH_BYTES) {
                bytes += regions[end].1;
                end += 1;
            }
            let ok = r.read_regions(&regions[first..end], &mut buf);
            let mut off = 0usize;
            for k in first..end {
                let (start, len) = regions[k];
                let span_ok = ok.get(k - first) == Some(&true);
                for &(addr, e) in &level[runs[k].0..runs[k].1] {
                    w.nodes_read += 1;
                    let at = off + (addr - start) as usize;
                    let got = buf.get(at..at + node_len(l, e)).filter(|_| span_ok);
                    let reread;
                    let node: &[u8] = match got {
                        Some(b) => b,
                        // A region that could not be read whole: its nodes
                        // alone (an entry near the end of a mapping: its
                        // 48 bytes are readable, an indirect's 152 not).
                        None => match reread_entry(r, l, addr, e) {
                            Some(b) => {
                                reread = b;
                                &reread
                            }
                            None => {
                                w.bad += 1;
                                w.unreadable += 1;
                                continue;
                            }
                        },
                    };
                    saw_indirect |= visit(
                        &mut w,
                        l,
                        (addr, e),
                        node,
                        weight,
                        depth,
                        &mut next,
                        on_entry,
                    );
                }
                off += len;
            }
            first = end;
        }
        if saw_indirect {
            depth += 1;
            w.levels = w.levels.max(depth as u32);
        }
        std::mem::swap(&mut level, &mut next);
        next.clear();
    }
    if !level.is_empty() {
        w.bad += level.len() as u64;
    }
    w
}

/// Reads one node alone: its whole read length, else (an entry near the
/// end of a mapping) an entry's.
fn reread_entry(r: &mut dyn NodeReader, l: &TrieLayout, addr: u64, e: Expect) -> Option<Vec<u8>> {
    let mut b = Vec::new();
    let len = node_len(l, e);
    if r.read_regions(&[(addr, len)], &mut b).first() == Some(&true) && b.len() >= len {
        return Some(b);
    }
    let len = l.entry_size as usize;
    let ok = r.read_regions(&[(addr, len)], &mut b);
    (ok.first() == Some(&true) && b.len() >= len && b[l.node_is_entry as usize] == 1).then_some(b)
}

/// Bytes read of a node expected as `e`.
const fn node_len(l: &TrieLayout, e: Expect) -> usize {
    match e {
        Expect::Child { .. } => l.node_read_len(),
        Expect::Overflow => l.entry_size as usize,
    }
}

/// Largest gap between two nodes read as one region: a region costs
/// `process_vm_readv` about as much as copying a few KiB (it pins the
/// pages of every region), and the nodes of a trie sit in few spans of
/// their size classes (48 and 160 bytes), often next to each other.
pub const MERGE_GAP: u64 = 1024;
/// Longest region.
pub const MAX_REGION: u64 = 64 << 10;
/// Bytes read per batch at most (besides [`BATCH`] regions).
pub const BATCH_BYTES: usize = 4 << 20;

/// The regions covering the nodes of `level` (sorted by address): nodes
/// at most [`MERGE_GAP`] apart share one, of at most [`MAX_REGION`]
/// bytes. `runs[k]` is the range of `level` that region `k` holds.
fn spans(
    level: &[(u64, Expect)],
    l: &TrieLayout,
    regions: &mut Vec<(u64, usize)>,
    runs: &mut Vec<(usize, usize)>,
) {
    regions.clear();
    runs.clear();
    let mut i = 0;
    while i < level.len() {
        let start = level[i].0;
        let mut end = start.saturating_add(node_len(l, level[i].1) as u64);
        let mut j = i + 1;
        while j < level.len() {
            let (a, e) = level[j];
            let node_end = a.saturating_add(node_len(l, e) as u64);
            if a > end.saturating_add(MERGE_GAP) || node_end - start > MAX_REGION {
                break;
            }
            end = end.max(node_end);
            j += 1;
        }
        regions.push((start, (end - start) as usize));
        runs.push((i, j));
        i = j;
    }
}

/// Takes one node read at `addr`; queues what it points to. Returns
/// whether it was an indirect.
#[expect(
    clippy::too_many_arguments,
    reason = "the walk's state, passed apart to borrow it apart"
)]
fn visit(
    w: &mut Walk,
    l: &TrieLayout,
    (addr, e): (u64, Expect),
    node: &[u8],
    weight: f64,
    depth: usize,
    next: &mut Vec<(u64, Expect)>,
    on_entry: &mut dyn FnMut(&[u8]),
) -> bool {
    match node.get(l.node_is_entry as usize) {
        Some(1) => {
            w.entries += weight;
            w.entries_read += 1;
            on_entry(node);
            if let Some(o) = u64_at(node, l.entry_overflow)
                && o != 0
            {
                if plausible_ptr(o) {
                    next.push((o, Expect::Overflow));
                } else {
                    w.bad += 1;
                }
            }
            false
        }
        Some(0) => {
            let Expect::Child { parent } = e else {
                // An overflow chain holds entries only.
                w.bad += 1;
                return false;
            };
            if depth >= MAX_LEVELS || u64_at(node, l.indirect_parent) != Some(parent) {
                w.bad += 1;
                return false;
            }
            if u32_at(node, l.indirect_dead).is_some_and(|d| d != 0) {
                w.dead += 1;
                return false;
            }
            w.indirects += weight;
            for i in 0..CHILDREN {
                let Some(c) = u64_at(node, l.indirect_children + 8 * i as u32) else {
                    w.bad += 1;
                    break;
                };
                if c == 0 {
                    continue;
                }
                if plausible_ptr(c) {
                    next.push((c, Expect::Child { parent: addr }));
                } else {
                    w.bad += 1;
                }
            }
            true
        }
        _ => {
            w.bad += 1;
            false
        }
    }
}

/// A pointer that may be a heap node's: non-null, 8-byte aligned, past
/// the zero page and inside the user half of a 57-bit address space.
#[must_use]
pub const fn plausible_ptr(p: u64) -> bool {
    p >= 0x1000 && p & 7 == 0 && p < 1 << 56
}

fn u64_at(b: &[u8], off: u32) -> Option<u64> {
    let o = off as usize;
    Some(u64::from_le_bytes(b.get(o..o + 8)?.try_into().ok()?))
}

fn u32_at(b: &[u8], off: u32) -> Option<u32> {
    let o = off as usize;
    Some(u32::from_le_bytes(b.get(o..o + 4)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: u64 = 0x10_0000;
    const SLOT: u64 = 160;

    /// Made-up memory: nodes in 160-byte slots of one arena.
    struct Arena {
        mem: Vec<u8>,
        /// Bytes between node slots.
        stride: u64,
        /// Regions read, over all calls.
        reads: usize,
        calls: usize,
    }

    impl Arena {
        fn new(slots: usize) -> Self {
            Self::with_stride(slots, SLOT)
        }
        fn with_stride(slots: usize, stride: u64) -> Self {
            Self {
                mem: vec![0; slots * stride as usize],
                stride,
                reads: 0,
                calls: 0,
            }
        }
        fn slot(&self, i: usize) -> u64 {
            BASE + i as u64 * self.stride
        }
        fn put_u64(&mut self, addr: u64, v: u64) {
            let o = (addr - BASE) as usize;
            self.mem[o..o + 8].copy_from_slice(&v.to_le_bytes());
        }
        fn put_u8(&mut self, addr: u64, v: u8) {
            self.mem[(addr - BASE) as usize] = v;
        }
    }

    impl NodeReader for Arena {
        fn read_regions(&mut self, regions: &[(u64, usize)], buf: &mut Vec<u8>) -> Vec<bool> {
            self.calls += regions.len().div_ceil(BATCH);
            self.reads += regions.len();
            buf.clear();
            regions
                .iter()
                .map(|&(a, len)| {
                    let src = a
                        .checked_sub(BASE)
                        .and_then(|o| self.mem.get(o as usize..o as usize + len));
                    match src {
                        Some(s) => {
                            buf.extend_from_slice(s);
                            true
                        }
                        None => {
                            buf.resize(buf.len() + len, 0);
                            false
                        }
                    }
                })
                .collect()
        }
    }

    /// A trie built the way Go's is: level `d` indexes children by the
    /// hash's nibble `60 - 4d`; equal full hashes chain on `overflow`.
    enum Node {
        Entry(u64, usize),
        Indirect(Box<[Option<Node>; CHILDREN]>),
    }

    fn nibble(h: u64, d: usize) -> usize {
        ((h >> (60 - 4 * d)) & 15) as usize
    }

    fn insert(children: &mut [Option<Node>; CHILDREN], h: u64, d: usize) {
        let i = nibble(h, d);
        match children[i].take() {
            None => children[i] = Some(Node::Entry(h, 1)),
            Some(Node::Entry(old, n)) if old == h => children[i] = Some(Node::Entry(h, n + 1)),
            Some(Node::Entry(old, n)) => {
                let mut sub: Box<[Option<Node>; CHILDREN]> = Box::default();
                sub[nibble(old, d + 1)] = Some(Node::Entry(old, n));
                insert(&mut sub, h, d + 1);
                children[i] = Some(Node::Indirect(sub));
            }
            Some(Node::Indirect(mut sub)) => {
                insert(&mut sub, h, d + 1);
                children[i] = Some(Node::Indirect(sub));
            }
        }
    }

    /// Lays the trie out in `a` from slot `*next`; returns the node's address.
    fn lay(a: &mut Arena, l: &TrieLayout, n: &Node, parent: u64, next: &mut usize) -> u64 {
        let addr = a.slot(*next);
        *next += 1;
        match n {
            Node::Entry(_, chain) => {
                a.put_u8(addr, 1);
                let mut prev = addr;
                for _ in 1..*chain {
                    let e = a.slot(*next);
                    *next += 1;
                    a.put_u8(e, 1);
                    a.put_u64(prev + u64::from(l.entry_overflow), e);
                    prev = e;
                }
            }
            Node::Indirect(children) => {
                a.put_u8(addr, 0);
                a.put_u64(addr + u64::from(l.indirect_parent), parent);
                for (i, c) in children.iter().enumerate() {
                    if let Some(c) = c {
                        let ca = lay(a, l, c, addr, next);
                        a.put_u64(addr + u64::from(l.indirect_children) + 8 * i as u64, ca);
                    }
                }
            }
        }
        addr
    }

    fn hashes(n: usize, seed: u64) -> Vec<u64> {
        let mut x = seed | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x
            })
            .collect()
    }

    /// A trie of `hs` in a fresh arena: (arena, root).
    fn build(hs: &[u64]) -> (Arena, u64) {
        build_spaced(hs, SLOT)
    }

    /// The same with `stride` bytes between nodes.
    fn build_spaced(hs: &[u64], stride: u64) -> (Arena, u64) {
        let l = TrieLayout::for_minor(26).unwrap();
        let mut root: Box<[Option<Node>; CHILDREN]> = Box::default();
        for &h in hs {
            insert(&mut root, h, 0);
        }
        let mut a = Arena::with_stride(hs.len() * 2 + 64, stride);
        let mut next = 0;
        let root = lay(&mut a, &l, &Node::Indirect(root), 0, &mut next);
        (a, root)
    }

    fn layout() -> TrieLayout {
        TrieLayout::for_minor(26).unwrap()
    }

    /// Nodes apart in memory are one region each (about 1.4 per entry);
    /// the counts are the same as when neighbours share regions.
    #[test]
    fn scattered_nodes_are_read_one_region_each() {
        let l = layout();
        let n = 5_000;
        let (mut a, root) = build_spaced(&hashes(n, 11), 4096);
        let w = walk(&mut a, &l, root, u64::MAX, None);
        assert!(w.exact && w.bad == 0);
        assert_eq!(w.len(), n as u64);
        assert_eq!(a.reads as u64, w.nodes_read);
        assert!(a.reads < n * 3 / 2, "{} regions read", a.reads);
        let (mut b, root) = build(&hashes(n, 11));
        let v = walk(&mut b, &l, root, u64::MAX, None);
        assert_eq!(
            (v.len(), v.indirects, v.nodes_read),
            (w.len(), w.indirects, w.nodes_read)
        );
        assert!(
            b.reads * 5 < a.reads,
            "{} regions merged, {} not",
            b.reads,
            a.reads
        );
    }

    /// Every entry is counted, overflow chains included, in few batched
    /// reads per level (neighbouring nodes share a region).
    #[test]
    fn counts_every_entry_exactly() {
        let l = layout();
        for n in [0, 1, 2, 17, 1000, 20_000] {
            let (mut a, root) = build(&hashes(n, 42));
            let w = walk(&mut a, &l, root, u64::MAX, None);
            assert!(w.exact, "{n}");
            assert_eq!(w.len(), n as u64, "{n}");
            assert_eq!(w.bad, 0);
            assert!(w.levels <= MAX_LEVELS as u32);
            if n == 20_000 {
                assert!(a.reads < n / 4, "{} regions read", a.reads);
                assert!(a.calls < 40, "{} calls", a.calls);
                let per_entry = w.bytes(&l) as f64 / n as f64;
                assert!((80.0..160.0).contains(&per_entry), "{per_entry} B/entry");
            }
        }
        let mut hs = hashes(100, 7);
        hs.push(hs[3]);
        hs.push(hs[3]);
        let (mut a, root) = build(&hs);
        let w = walk(&mut a, &l, root, u64::MAX, None);
        assert_eq!((w.len(), w.bad), (102, 0));
    }

    /// Past the node cap the walk samples levels evenly and estimates.
    #[test]
    fn big_tries_are_estimated_within_the_cap() {
        let l = layout();
        let n = 50_000;
        let (mut a, root) = build(&hashes(n, 9));
        let w = walk(&mut a, &l, root, 4_000, None);
        assert!(!w.exact);
        assert!(w.nodes_read <= 4_000, "{}", w.nodes_read);
        let err = (w.entries - n as f64).abs() / n as f64;
        assert!(err < 0.15, "estimated {} of {n}", w.entries);
    }

    /// Garbage where nodes should be is counted bad and left out; nothing
    /// panics and the walk ends.
    #[test]
    fn bad_nodes_are_counted_never_followed() {
        let l = layout();
        let (a0, root) = build(&hashes(500, 3));
        let child = |a: &Arena, i: u64| {
            let o = (root + u64::from(l.indirect_children) + 8 * i - BASE) as usize;
            u64::from_le_bytes(a.mem[o..o + 8].try_into().unwrap())
        };
        let slot = |i: u64| root + u64::from(l.indirect_children) + 8 * i;
        let full = walk(&mut clone(&a0), &l, root, u64::MAX, None).len();
        // An unaligned child, a child out of the arena, a node whose
        // isEntry is 7, and a child pointing back to the root (its parent
        // is then not the node it was reached from).
        let mut a = clone(&a0);
        a.put_u64(slot(0), child(&a0, 0) + 3);
        a.put_u64(slot(1), 0x7fff_0000_0000);
        a.put_u8(child(&a0, 2), 7);
        a.put_u64(slot(3), root);
        let w = walk(&mut a, &l, root, u64::MAX, None);
        assert!(w.bad >= 4, "{w:?}");
        assert!(w.len() < full);
        // Of those, the child out of the arena could not be read at all.
        assert_eq!(w.unreadable, 1, "{w:?}");
        // A dead indirect is left out, not bad.
        let mut a = clone(&a0);
        let ind = (0..16)
            .map(|i| child(&a0, i))
            .find(|&c| a0.mem[(c - BASE) as usize] == 0)
            .unwrap();
        a.put_u8(ind + u64::from(l.indirect_dead), 1);
        let w = walk(&mut a, &l, root, u64::MAX, None);
        assert_eq!((w.dead, w.bad, w.unreadable), (1, 0, 0));
        // Random bytes everywhere.
        for seed in 1..50u64 {
            let mut a = Arena::new(256);
            for (i, b) in a.mem.iter_mut().enumerate() {
                *b = (hashes(1, seed.wrapping_mul(i as u64 + 1))[0] & 0xff) as u8;
            }
            a.put_u8(BASE, 0);
            a.put_u64(BASE + u64::from(l.indirect_parent), 0);
            let _ = walk(&mut a, &l, BASE, 100_000, None);
        }
    }

    fn clone(a: &Arena) -> Arena {
        Arena {
            mem: a.mem.clone(),
            stride: a.stride,
            reads: 0,
            calls: 0,
        }
    }

    /// A deadline already passed stops the walk before it reads.
    #[test]
    fn a_passed_deadline_cuts_the_walk_short() {
        let l = layout();
        let (mut a, root) = build(&hashes(100, 5));
        let w = walk(&mut a, &l, root, u64::MAX, Some(Instant::now()));
        assert!(w.cut_short && !w.exact);
        assert_eq!(a.reads, 0);
    }

    /// Headers: never used, ready, and garbage.
    #[test]
    fn headers_decode() {
        let l = layout();
        let mut b = vec![0u8; l.map_size as usize];
        assert_eq!(decode_header(&b, &l), Header::Uninit);
        b[0] = 1;
        b[16..24].copy_from_slice(&0xc000_0100u64.to_le_bytes());
        b[40..48].copy_from_slice(&77u64.to_le_bytes());
        assert_eq!(
            decode_header(&b, &l),
            Header::Ready {
                root: 0xc000_0100,
                seed: 77
            }
        );
        b[0] = 2;
        assert_eq!(decode_header(&b, &l), Header::Implausible);
        b[0] = 1;
        b[16..24].copy_from_slice(&0xc000_0103u64.to_le_bytes());
        assert_eq!(decode_header(&b, &l), Header::Implausible);
        assert_eq!(decode_header(&b[..20], &l), Header::Implausible);
    }
}
