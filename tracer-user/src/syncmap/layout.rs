//! The HashTrieMap layout as data: offsets of the `sync.Map` header, trie
//! nodes and entries (64-bit; amd64 and arm64 are the same), per Go release.
//!
//! Source: `golang/go@go1.24.0:src/internal/sync/hashtriemap.go` (`#L21`
//! HashTrieMap, `#L541` indirect, `#L564` entry, `#L702` node), unchanged up
//! to go1.27.4 (checked against DWARF of go1.24.13, go1.26.8 and go1.27.4;
//! the test `tests/inspect.rs::syncmap_layout_matches_dwarf` checks every
//! fixture that has DWARF).

/// Offsets and sizes of one Go release's HashTrieMap (the
/// `[interface {}, interface {}]` instantiation `sync.Map` is).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrieLayout {
    /// `HashTrieMap.inited` (`atomic.Uint32`): 1 once `initSlow` ran.
    pub map_inited: u32,
    /// `HashTrieMap.root` (`atomic.Pointer[indirect]`).
    pub map_root: u32,
    /// `HashTrieMap.seed` (`uintptr`, `runtime.rand()` per map).
    pub map_seed: u32,
    /// `sizeof(sync.Map)` = `sizeof(HashTrieMap[any, any])`.
    pub map_size: u32,
    /// `node.isEntry` (`bool`), first in both node kinds.
    pub node_is_entry: u32,
    /// `indirect.dead` (`atomic.Bool`, a `uint32`): set when pruned.
    pub indirect_dead: u32,
    /// `indirect.parent` (`*indirect`, nil only for the root).
    pub indirect_parent: u32,
    /// `indirect.children` (`[16]atomic.Pointer[node]`).
    pub indirect_children: u32,
    /// `sizeof(indirect)`.
    pub indirect_size: u32,
    /// The size class an indirect is allocated in.
    pub indirect_alloc: u32,
    /// `entry.overflow` (`atomic.Pointer[entry]`): full-hash collisions.
    pub entry_overflow: u32,
    /// `entry.key` (`any`).
    pub entry_key: u32,
    /// `entry.value` (`any`).
    pub entry_value: u32,
    /// `sizeof(entry[any, any])`, also its size class.
    pub entry_size: u32,
}

/// Children per indirect node (`nChildrenLog2 = 4`, `#L535`).
pub const CHILDREN: usize = 16;

/// Levels of indirect nodes at most: 64 hash bits, 4 per level; deeper
/// panics with "ran out of hash bits" (`#L183`).
pub const MAX_LEVELS: usize = 16;

/// The go1.24.0 to go1.27.4 layout.
const GO124: TrieLayout = TrieLayout {
    map_inited: 0,
    map_root: 16,
    map_seed: 40,
    map_size: 48,
    node_is_entry: 0,
    indirect_dead: 4,
    indirect_parent: 16,
    indirect_children: 24,
    indirect_size: 152,
    indirect_alloc: 160,
    entry_overflow: 8,
    entry_key: 16,
    entry_value: 32,
    entry_size: 48,
};

/// Newest Go minor release whose layout was checked.
pub const NEWEST_KNOWN_MINOR: u32 = 27;

impl TrieLayout {
    /// The layout of Go 1.`minor` (`None` before 1.24, which has no
    /// HashTrieMap `sync.Map`); releases newer than
    /// [`NEWEST_KNOWN_MINOR`] are assumed to keep the last known one.
    #[must_use]
    pub const fn for_minor(minor: u32) -> Option<Self> {
        if minor >= 24 { Some(GO124) } else { None }
    }

    /// Bytes of one node read (an indirect, the larger kind: a child's kind
    /// is only known once read).
    #[must_use]
    pub const fn node_read_len(&self) -> usize {
        self.indirect_size as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every offset lies inside its struct and children fill the indirect.
    #[test]
    fn offsets_fit_their_structs() {
        let l = TrieLayout::for_minor(26).unwrap();
        assert!(l.map_seed + 8 <= l.map_size);
        assert_eq!(
            l.indirect_children as usize + CHILDREN * 8,
            l.indirect_size as usize
        );
        assert!(l.entry_value + 16 <= l.entry_size);
        assert!(l.indirect_alloc >= l.indirect_size);
        assert_eq!(TrieLayout::for_minor(23), None);
        assert_eq!(TrieLayout::for_minor(24), TrieLayout::for_minor(27));
    }
}
