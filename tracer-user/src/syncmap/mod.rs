//! `syncmap`: `sync.Map` on Go 1.24+, where it is
//! `internal/sync.HashTrieMap[any, any]` and makes no runtime map call, so
//! the map probes never see it.
//!
//! - **Detection** ([`detect`], pure): a Go 1.24+ binary whose pclntab has
//!   [`INIT_SLOW`] (the `[interface {},interface {}]` shape only `sync.Map`
//!   uses; `unique` uses others). The pclntab survives stripping.
//! - **Discovery**: a probe on `initSlow` gives each new instance (its
//!   receiver); instances initialised before attach are found among the
//!   globals, by one pass over them for initialised headers ([`scan`]:
//!   stripped binaries and sync.Maps inside global structs too) and
//!   through the globals DWARF types `*sync.Map` ([`globals`]).
//! - **Walking** ([`walk`], pure, and [`sample`], the reads): at each
//!   sample the trie is walked level by level with batched
//!   `process_vm_readv`, for its entries and an estimate of its bytes.
//! - [`layout`]: the offsets, as data.
//!
//! Reference: golang/go@go1.24.0:src/internal/sync/hashtriemap.go, and
//! go1.26.0:src/sync/map.go (`m isync.HashTrieMap[any, any]` at `#L41`).
//!
//! ```text
//! detect(&info) == SyncMapImpl::HashTrie  ->  probe INIT_SLOW (arg 0 = receiver)
//! sample(&mem, &layout, addr, budget)     ->  HeaderRead (len = entries)
//! ```

pub mod classic;
pub mod classic_entries;
pub mod keys;
pub mod layout;
pub mod scan;
pub mod walk;

use std::time::Instant;

pub use classic::ClassicLayout;
pub use layout::TrieLayout;
pub use walk::{Header, NodeReader, Walk};

use crate::{
    inspect::BinaryInfo,
    sample::{HeaderRead, HeaderSample, Memory},
};

/// The function every `sync.Map` method calls on an instance's first use
/// (`//go:noinline`; `golang/go@go1.24.0:src/internal/sync/hashtriemap.go#L37`).
/// Its receiver (ABIInternal argument 0: amd64 RAX, arm64 R0) is the
/// `*HashTrieMap`, that is the `*sync.Map`. The same name in 1.24 to 1.27.
pub const INIT_SLOW: &str =
    "internal/sync.(*HashTrieMap[go.shape.interface {},go.shape.interface {}]).initSlow";

/// The classic implementation's function that makes each dirty map
/// (`golang/go@go1.23.12:src/sync/map.go#L517`).
pub const DIRTY_LOCKED: &str = "sync.(*Map).dirtyLocked";

/// The type name a sync.Map is reported with.
pub const TYPE_NAME: &str = "sync.Map";

/// Which `sync.Map` a binary has.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncMapImpl {
    /// `internal/sync.HashTrieMap` (Go 1.24+ by default): traced here.
    HashTrie,
    /// The read/dirty runtime maps (Go ≤ 1.23, or 1.24/1.25 built with
    /// `GOEXPERIMENT=nosynchashtriemap`): its maps are seen as runtime maps
    /// of type `map[interface {}]*sync.entry`.
    Classic,
    /// No sync.Map code linked in (the program does not use one).
    Unused,
}

impl SyncMapImpl {
    /// `hashtrie`, `classic` or `unused`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::HashTrie => "hashtrie",
            Self::Classic => "classic",
            Self::Unused => "unused",
        }
    }
}

/// Which `sync.Map` `info`'s binary has, from its Go version and pclntab.
#[must_use]
pub fn detect(info: &BinaryInfo) -> SyncMapImpl {
    if info.go_version.minor >= 24 && info.func_by_name(INIT_SLOW).is_some() {
        SyncMapImpl::HashTrie
    } else if info.func_by_name(DIRTY_LOCKED).is_some() {
        SyncMapImpl::Classic
    } else {
        SyncMapImpl::Unused
    }
}

/// How a binary's `sync.Map`s are read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncLayout {
    /// Walked as tries.
    Trie(TrieLayout),
    /// Read through their read and dirty maps ([`classic`]).
    Classic(ClassicLayout),
}

impl SyncLayout {
    /// The HashTrieMap layout, if that is the kind.
    #[must_use]
    pub const fn trie(&self) -> Option<TrieLayout> {
        match self {
            Self::Trie(l) => Some(*l),
            Self::Classic(_) => None,
        }
    }
}

/// The `sync.Map` layout of `info`'s binary, when it links one in.
#[must_use]
pub fn layout_of(info: &BinaryInfo) -> Option<SyncLayout> {
    let minor = info.go_version.minor;
    match detect(info) {
        SyncMapImpl::HashTrie => TrieLayout::for_minor(minor).map(SyncLayout::Trie),
        SyncMapImpl::Classic => ClassicLayout::for_minor(minor).map(SyncLayout::Classic),
        SyncMapImpl::Unused => None,
    }
}

/// A sync.Map held by a global: the variable's name, and where the
/// `sync.Map` is (link-time, or a heap address read through a pointer).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GlobalSyncMap {
    /// The variable (`main.cache`; `*main.cachePtr` through a pointer).
    pub name: String,
    /// The sync.Map's run-time address.
    pub addr: u64,
}

/// The sync.Maps that DWARF-described globals hold: variables of type
/// `sync.Map` (the map is the variable) and `*sync.Map` (read through the
/// pointer; nil ones are left out). One read per pointer; nothing without
/// DWARF (the `initSlow` probe still finds instances first used after
/// attach).
#[must_use]
pub fn globals(info: &BinaryInfo, mem: &Memory, bias: u64) -> Vec<GlobalSyncMap> {
    let mut out = Vec::new();
    for (name, va, pointer) in info.sync_map_globals() {
        let at = va.wrapping_add(bias);
        if !pointer {
            out.push(GlobalSyncMap { name, addr: at });
        } else if let Some(p) = mem.u64(at)
            && walk::plausible_ptr(p)
        {
            out.push(GlobalSyncMap {
                name: format!("*{name}"),
                addr: p,
            });
        }
    }
    out
}

/// The owner of a sync.Map at run-time `addr`: the data symbol it lies in
/// (with the offset when it is a field), or `None` off the globals.
#[must_use]
pub fn owner_of(info: &BinaryInfo, bias: u64, addr: u64) -> Option<String> {
    let va = addr.wrapping_sub(bias);
    let (lo, hi) = info.data_range()?;
    if !(lo..hi).contains(&va) {
        return None;
    }
    Some(match info.data_symbol_at(va) {
        Some((sym, 0)) => sym.name.clone(),
        Some((sym, off)) => format!("{}+{off}", sym.name),
        None => format!("global at {va:#x} (no symbol: stripped binary)"),
    })
}

impl NodeReader for Memory {
    fn read_regions(&mut self, regions: &[(u64, usize)], buf: &mut Vec<u8>) -> Vec<bool> {
        self.read_flat(regions, buf)
    }
}

/// Nodes read per sample at most, over every sync.Map (about 1.4 per
/// entry: 190,000 entries whole; bigger tries are estimated from an even
/// sample of their levels, [`walk`]). About 40 MB of 152-byte reads; 200,000
/// entries took 196 ms in the reference doc's prototype.
pub const MAX_NODES_PER_SAMPLE: u64 = 262_144;

/// Least node budget a walk starts with: below it the instance is left for
/// the next sample (counted as skipped).
pub const MIN_NODES_PER_WALK: u64 = 64;

/// Distinct (key type, value type) pairs counted per instance; entries of
/// other pairs are counted together.
pub const MAX_ENTRY_TYPES: usize = 8;

/// Keys remembered per instance and sample (16 bytes each): to match
/// against the objects with pending finalizers, and to follow a suspect's
/// keys from sample to sample.
pub const MAX_KEYS: usize = 1 << 19;

/// What a walk saw in the entries it read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Entries {
    /// Entries read per (key type, value type): the run-time addresses of
    /// their dynamic types' descriptors (0 for a nil interface), at most
    /// [`MAX_ENTRY_TYPES`] pairs.
    pub types: Vec<((u64, u64), u64)>,
    /// Entries of other pairs.
    pub other_types: u64,
    /// The keys were asked for (`keys` is all of them, up to the cap).
    pub keys_kept: bool,
    /// The keys' two words, when asked for: their dynamic type's
    /// descriptor and their data word (for a pointer key, the object); at
    /// most [`MAX_KEYS`].
    pub keys: Vec<(u64, u64)>,
    /// Keys not remembered past the cap.
    pub keys_dropped: u64,
    /// The walk may have missed live keys (it stopped at a cap, or the
    /// map changed or could not all be read meanwhile): a key absent from
    /// `keys` is not known to be gone.
    pub keys_partial: bool,
}

impl Entries {
    /// Counts one entry node read (`l`'s offsets).
    pub fn add(&mut self, node: &[u8], l: &TrieLayout, keep_keys: bool) {
        let word = |off: u32| -> u64 {
            let o = off as usize;
            node.get(o..o + 8)
                .and_then(|b| b.try_into().ok())
                .map_or(0, u64::from_le_bytes)
        };
        self.count(
            (word(l.entry_key), word(l.entry_value)),
            word(l.entry_key + 8),
            keep_keys,
        );
    }

    /// Counts one entry whose key and value have the dynamic types `pair`
    /// and whose key's data word is `key_data`.
    pub fn count(&mut self, pair: (u64, u64), key_data: u64, keep_keys: bool) {
        if let Some(e) = self.types.iter_mut().find(|e| e.0 == pair) {
            e.1 += 1;
        } else if self.types.len() < MAX_ENTRY_TYPES {
            self.types.push((pair, 1));
        } else {
            self.other_types += 1;
        }
        if keep_keys {
            if self.keys.len() < MAX_KEYS {
                self.keys.push((pair.0, key_data));
            } else {
                self.keys_dropped += 1;
            }
        }
    }
}

/// What one sample of the sync.Maps did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SampleStats {
    /// Nodes read.
    pub nodes: u64,
    /// Walks that had to estimate (the node cap).
    pub estimated: u64,
    /// Walks stopped by the deadline (no sample taken).
    pub cut_short: u64,
    /// Instances not walked: the node cap was spent.
    pub skipped: u64,
    /// Bad nodes seen (concurrent changes or garbage).
    pub bad_nodes: u64,
    /// Walks that could not read some node (the process exiting): no
    /// length for that sample.
    pub unreadable: u64,
    /// Walks made (each, whole or capped, of one instance), the entries
    /// they read and their wall time in µs.
    pub walks: u64,
    pub entries_read: u64,
    pub walk_us: u64,
}

/// Reads the sync.Map at `addr`: its header, then its trie (at most
/// `*budget` nodes, taken from it), counting what its entries hold in
/// `entries` (their keys too with `keep_keys`). An instance never used is
/// [`HeaderRead::Skipped`] (nothing to sample yet) unless it was
/// `sampled` before: then it was reset (`m = sync.Map{}`), and is empty
/// until its next first use (a new seed and root: a new instance for the
/// model). One whose walk the deadline stopped is skipped too.
pub fn sample(
    mem: &mut Memory,
    l: &TrieLayout,
    (addr, sampled): (u64, bool),
    budget: &mut u64,
    deadline: Instant,
    stats: &mut SampleStats,
    (entries, keep_keys): (&mut Entries, bool),
) -> HeaderRead {
    if *budget < MIN_NODES_PER_WALK {
        stats.skipped += 1;
        return HeaderRead::Skipped;
    }
    let mut b = vec![0u8; l.map_size as usize];
    if !mem.read(addr, &mut b) {
        return HeaderRead::Failed;
    }
    let (root, seed) = match walk::decode_header(&b, l) {
        Header::Uninit if sampled => {
            return HeaderRead::Ok(HeaderSample {
                len: 0,
                capacity: 0,
                bytes: u64::from(l.map_size),
                seed: 0,
                storage: 0,
            });
        }
        Header::Uninit => return HeaderRead::Skipped,
        Header::Implausible => return HeaderRead::Implausible,
        Header::Ready { root, seed } => (root, seed),
    };
    let t = Instant::now();
    let w = walk::walk_entries(mem, l, root, *budget, Some(deadline), &mut |node| {
        entries.add(node, l, keep_keys);
    });
    stats.walks += 1;
    stats.entries_read += w.entries_read;
    stats.walk_us += u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX);
    *budget = budget.saturating_sub(w.nodes_read);
    stats.nodes += w.nodes_read;
    stats.bad_nodes += w.bad;
    if w.cut_short {
        stats.cut_short += 1;
        return HeaderRead::Skipped;
    }
    // Nodes that could not be read: no length for this sample (the arm64
    // VM's last sample, as the target exited, read 17,902 of 24,000).
    if w.unreadable > 0 {
        stats.unreadable += 1;
        return HeaderRead::Skipped;
    }
    if !w.exact {
        stats.estimated += 1;
        entries.keys_partial = true;
    }
    // The root never reads as a node: not a trie (or it was freed).
    if w.nodes_read > 0 && w.indirects == 0.0 && w.dead == 0 {
        return HeaderRead::Implausible;
    }
    HeaderRead::Ok(HeaderSample {
        len: w.len(),
        // A trie has no slots allocated ahead of its entries.
        capacity: 0,
        bytes: w.bytes(l),
        seed,
        storage: root,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reads go through `process_vm_readv` of this very process (no
    /// privilege needed): a header and a root with two entries, then the
    /// same instance reset to never used.
    #[test]
    fn samples_a_trie_in_this_process() {
        let l = TrieLayout::for_minor(26).unwrap();
        // Nodes as u64 words (8-byte aligned); isEntry is the low byte of
        // word 0, parent word 2, children from word 3.
        let e1 = vec![1u64, 0, 0, 0, 0, 0];
        let e2 = vec![1u64, 0, 0, 0, 0, 0];
        let mut root = vec![0u64; 20];
        root[3] = e1.as_ptr() as u64;
        root[3 + 5] = e2.as_ptr() as u64;
        let mut header = [0u64; 6];
        header[0] = 1;
        header[2] = root.as_ptr() as u64;
        header[5] = 0x5eed;
        let mut mem = Memory::new(std::process::id());
        let mut st = SampleStats::default();
        let mut budget = MAX_NODES_PER_SAMPLE;
        let deadline = Instant::now() + std::time::Duration::from_secs(5);
        let addr = header.as_ptr() as u64;
        let mut entries = Entries::default();
        let HeaderRead::Ok(h) = sample(
            &mut mem,
            &l,
            (addr, false),
            &mut budget,
            deadline,
            &mut st,
            (&mut entries, true),
        ) else {
            panic!("not read: {st:?}");
        };
        // Both entries' key and value words are 0 here.
        assert_eq!(entries.types, [((0, 0), 2)]);
        assert_eq!(entries.keys.iter().map(|k| k.1).collect::<Vec<_>>(), [0, 0]);
        assert_eq!((h.len, h.capacity, h.seed), (2, 0, 0x5eed));
        assert_eq!(h.storage, root.as_ptr() as u64);
        assert_eq!(h.bytes, 48 + 160 + 2 * 48);
        assert_eq!((st.nodes, st.bad_nodes), (3, 0));
        assert_eq!(budget, MAX_NODES_PER_SAMPLE - 3);
        // Reset to never used: skipped at first, empty once sampled.
        header.iter_mut().for_each(|w| *w = 0);
        std::hint::black_box(&mut header);
        let r = sample(
            &mut mem,
            &l,
            (addr, false),
            &mut budget,
            deadline,
            &mut st,
            (&mut Entries::default(), false),
        );
        assert_eq!(r, HeaderRead::Skipped);
        let r = sample(
            &mut mem,
            &l,
            (addr, true),
            &mut budget,
            deadline,
            &mut st,
            (&mut Entries::default(), false),
        );
        assert!(matches!(r, HeaderRead::Ok(h) if h.len == 0 && h.seed == 0));
        // Garbage: inited 3.
        header[0] = 3;
        std::hint::black_box(&mut header);
        let r = sample(
            &mut mem,
            &l,
            (addr, true),
            &mut budget,
            deadline,
            &mut st,
            (&mut Entries::default(), false),
        );
        assert_eq!(r, HeaderRead::Implausible);
        // Out of budget: skipped and counted.
        let mut none = 0;
        let r = sample(
            &mut mem,
            &l,
            (addr, true),
            &mut none,
            deadline,
            &mut st,
            (&mut Entries::default(), false),
        );
        assert_eq!((r, st.skipped), (HeaderRead::Skipped, 1));
        drop((e1, e2, root));
    }
}
