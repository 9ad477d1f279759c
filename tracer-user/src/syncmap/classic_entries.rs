//! The entries of a classic `sync.Map`: the dynamic types of its keys and
//! values, and its keys' data words (objects with finalizers held as its
//! keys), read through the runtime map that holds every key (`dirty` when
//! `read.amended`, else `read.m`; [`super::classic::generations`]).
//!
//! That map is a `map[interface {}]*sync.entry`: each slot's key is an
//! interface (type word, data word) and its element a `*entry`, whose
//! first word `p` points to the boxed value, an `any` (type word, data
//! word). Three reads per sample and instance, each batched: the map's
//! buckets or groups (the key snapshot's walk), every entry's `p`, every
//! value's type word. An entry whose `p` is nil was deleted: it stays in
//! the map until the next dirty map is made without it, but it is no
//! longer an entry of the `sync.Map`, and it is left out (its key object
//! is freed with that copy). An expunged entry (`p` the package's
//! `expunged` sentinel) is only in a read map that a dirty map already
//! supersedes, which is never the one read here.
//!
//! Reference: golang/go@go1.23.12:src/sync/map.go (`#L80` entry, `#L105`
//! expunged).
use std::sync::Arc;

use super::Entries;
use crate::{
    inspect::{BinaryInfo, RuntimeLayout},
    keys::{
        KeyLayout, Reader,
        values::{self, ElemLayout, Entry},
    },
    sample::Memory,
};

/// Where the keys and elements of `map[interface {}]*sync.entry` are in
/// this binary, from its type descriptor.
#[derive(Clone, Debug)]
pub struct EntryMapLayout {
    pub(crate) keys: KeyLayout,
    pub(crate) elems: ElemLayout,
}

impl EntryMapLayout {
    /// The layouts of the entry map type whose descriptor is at run-time
    /// address `map_type`; `None` when it is not such a map (an interface
    /// key, word-sized elements stored in place).
    pub(crate) fn resolve<R: Reader>(
        r: &R,
        rt: &RuntimeLayout,
        keys: KeyLayout,
        map_type: u64,
    ) -> Option<Arc<Self>> {
        if keys.key_size != 16 || keys.indirect_key {
            return None;
        }
        let elems = values::elem_layout(r, rt, &keys, map_type)?;
        Some(Arc::new(Self { keys, elems }))
    }
}

/// The run-time address of the entry maps' type descriptor, from DWARF
/// (binaries that keep it; a stripped one learns it from a generation the
/// probes saw, [`resolve_at`]).
#[must_use]
pub fn type_from_dwarf(info: &BinaryInfo, bias: u64) -> Option<u64> {
    info.dwarf_type_names()
        .find(|(_, n)| *n == super::classic::ENTRY_MAP_TYPE)
        .map(|(va, _)| va.wrapping_add(bias))
}

/// The layouts of the entry maps from the type descriptor at run-time
/// address `map_type`, if it is theirs.
#[must_use]
pub fn resolve_at(
    mem: &Memory,
    info: &BinaryInfo,
    bias: u64,
    map_type: u64,
) -> Option<Arc<EntryMapLayout>> {
    let keys = crate::keys::key_layout(mem, info, bias, map_type)?;
    if keys.map_type != super::classic::ENTRY_MAP_TYPE {
        return None;
    }
    EntryMapLayout::resolve(mem, &info.layout, keys, map_type)
}

/// Bytes of buckets or groups one instance's walk may read.
const MAX_WALK_BYTES: u64 = 64 << 20;

/// Reads the entries of the runtime map at `map_addr` (the generation
/// holding every key of one `sync.Map`), at most `*budget` of them, which
/// it lowers by those read. `None` when the map could not be walked (freed
/// and reused, or replaced meanwhile: the next sample tries again).
pub(crate) fn read<R: Reader>(
    r: &R,
    rt: &RuntimeLayout,
    l: &EntryMapLayout,
    map_addr: u64,
    budget: &mut u64,
    keep_keys: bool,
) -> Option<Entries> {
    let max = usize::try_from(*budget).unwrap_or(usize::MAX);
    if max == 0 {
        return None;
    }
    let (entries, walked) =
        values::entries(r, rt, &l.keys, l.elems, map_addr, max, MAX_WALK_BYTES)?;
    // Any part of the map: its earlier walk stands (the arm64 VM's last
    // sample, as the target exited, read none of a cache's 30,000 keys;
    // one read while the cache grew typed 17,408 of about 18,000).
    if matches!(walked, values::Walked::Unreadable | values::Walked::Torn) {
        return None;
    }
    *budget = budget.saturating_sub(entries.len() as u64);
    // Within 2% of the header's count (`Near`) is whole enough for the
    // types; for the keys, only an exact walk is (a key missed would count
    // as released).
    let mut out = Entries {
        keys_kept: keep_keys,
        keys_partial: walked != values::Walked::Whole,
        ..Entries::default()
    };
    fold(r, &entries, keep_keys, &mut out).then_some(out)
}

/// The two words of an interface key, from its first 16 bytes.
fn key_words(e: &Entry) -> (u64, u64) {
    let b = e.key.raw.as_bytes();
    let word = |i: usize| {
        b.get(i..i + 8)
            .and_then(|w| w.try_into().ok())
            .map_or(0, u64::from_le_bytes)
    };
    (word(0), word(8))
}

/// Adds `entries` (key, and the `*entry` in each element's first word) to
/// `out`: reads each entry's `p`, then each live value's type word. False
/// (and `out` is to be dropped) when most reads of a step failed: the
/// process is exiting, or its heap was returned to the kernel; a value
/// freed and unmapped since the walk is only left out.
pub(crate) fn fold<R: Reader>(
    r: &R,
    entries: &[Entry],
    keep_keys: bool,
    out: &mut Entries,
) -> bool {
    let plausible = super::walk::plausible_ptr;
    let mostly_failed =
        |reads: &[Option<Vec<u8>>]| reads.iter().filter(|b| b.is_none()).count() * 2 > reads.len();
    // `entry.p`: the boxed value, nil once deleted.
    let at: Vec<usize> = (0..entries.len())
        .filter(|&i| plausible(entries[i].word))
        .collect();
    let ps = r.read_many(&at.iter().map(|&i| (entries[i].word, 8)).collect::<Vec<_>>());
    if mostly_failed(&ps) {
        return false;
    }
    // A read that failed (not a deleted entry) leaves a live key out.
    out.keys_partial |= ps.iter().any(Option::is_none);
    let live: Vec<(usize, u64)> = at
        .iter()
        .zip(ps)
        .filter_map(|(&i, p)| {
            let p = u64::from_le_bytes(p?.get(..8)?.try_into().ok()?);
            plausible(p).then_some((i, p))
        })
        .collect();
    // The value's type word (0: a nil value stored).
    let types = r.read_many(&live.iter().map(|&(_, p)| (p, 8)).collect::<Vec<_>>());
    if mostly_failed(&types) {
        return false;
    }
    out.keys_partial |= types.iter().any(Option::is_none);
    for (&(i, _), t) in live.iter().zip(types) {
        let Some(t) = t.and_then(|t| Some(u64::from_le_bytes(t.get(..8)?.try_into().ok()?))) else {
            continue;
        };
        let (key_type, key_data) = key_words(&entries[i]);
        out.count((key_type, t), key_data, keep_keys);
    }
    true
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::keys::{Key, RawKey};

    /// A sparse address space of 8-byte words.
    #[derive(Default)]
    struct Words(HashMap<u64, u64>);

    impl Reader for Words {
        fn read(&self, addr: u64, buf: &mut [u8]) -> bool {
            self.read_some(addr, buf) == buf.len()
        }
        fn read_some(&self, addr: u64, buf: &mut [u8]) -> usize {
            let mut n = 0;
            for (i, c) in buf.chunks_mut(8).enumerate() {
                let Some(w) = self.0.get(&(addr + 8 * i as u64)) else {
                    break;
                };
                c.copy_from_slice(&w.to_le_bytes()[..c.len()]);
                n += c.len();
            }
            n
        }
        fn read_many(&self, regions: &[(u64, usize)]) -> Vec<Option<Vec<u8>>> {
            regions
                .iter()
                .map(|&(a, len)| {
                    let mut b = vec![0u8; len];
                    self.read(a, &mut b).then_some(b)
                })
                .collect()
        }
    }

    fn entry(key_type: u64, key_data: u64, elem: u64) -> Entry {
        let mut raw = key_type.to_le_bytes().to_vec();
        raw.extend(key_data.to_le_bytes());
        Entry {
            key: Key {
                id: key_data,
                raw: RawKey::new(&raw),
                ptr: None,
                strs: Vec::new(),
            },
            at: 0,
            word: elem,
        }
    }

    #[test]
    fn live_entries_are_counted_by_their_dynamic_types() {
        const STR: u64 = 0x4a_0000;
        const RES: u64 = 0x4b_0000;
        const VAL: u64 = 0x4c_0000;
        let mut m = Words::default();
        // Three entries: two live values of type VAL, one deleted (p nil).
        for (e, p) in [
            (0xc000_1000, 0xc000_2000),
            (0xc000_1010, 0xc000_2010),
            (0xc000_1020, 0),
        ] {
            m.0.insert(e, p);
        }
        m.0.insert(0xc000_2000, VAL);
        m.0.insert(0xc000_2010, VAL);
        // A fourth entry whose value was freed between the reads.
        m.0.insert(0xc000_1030, 0xc000_2030);
        let entries = [
            entry(STR, 0xc000_5000, 0xc000_1000),
            entry(RES, 0xc000_6000, 0xc000_1010),
            entry(RES, 0xc000_6010, 0xc000_1020),
            entry(RES, 0xc000_6020, 0xc000_1030),
            // An element that is no pointer at all.
            entry(RES, 0xc000_6030, 7),
        ];
        let mut out = Entries::default();
        assert!(fold(&m, &entries, true, &mut out));
        assert_eq!(out.types, vec![((STR, VAL), 1), ((RES, VAL), 1)]);
        assert_eq!(
            out.keys.iter().map(|k| k.1).collect::<Vec<_>>(),
            vec![0xc000_5000, 0xc000_6000]
        );
        // The value freed meanwhile: its key may still be in the map.
        assert!(out.keys_partial);
        // Deleted entries leave nothing out.
        let mut out = Entries::default();
        assert!(fold(&m, &entries[..3], true, &mut out));
        assert!(!out.keys_partial);
        // Without keys asked for, only the types.
        let mut out = Entries::default();
        assert!(fold(&m, &entries, false, &mut out));
        assert_eq!(out.types.len(), 2);
        assert!(out.keys.is_empty());
        // The process gone after the walk (the arm64 VM's last sample): no
        // entry can be read, which is no map of deleted entries.
        let mut out = Entries::default();
        assert!(!fold(&Words::default(), &entries, true, &mut out));
    }
}
