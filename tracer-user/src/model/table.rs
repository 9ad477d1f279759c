//! `model::table`: the tracked maps, by header address.
//!
//! The maps live in one `Vec` (a slab) and a hash table of slab indices
//! finds them by address. A `HashMap<u64, TrackedMap>` keeps its slots at
//! most 7/8 full and doubles them, so with 1,000,000 maps it holds 2^21
//! slots of a whole `TrackedMap` each; here those slots are 4-byte indices
//! (10 MiB) and the maps themselves sit in a `Vec` that is exactly as long
//! as needed plus its growth.
use std::ops::Index;

use hashbrown::HashTable;

use super::TrackedMap;

/// Hash of a header address. Addresses are 8-aligned heap pointers: a
/// folded 128-bit multiply spreads every bit over both halves (hashbrown
/// uses the top 7 bits as tags and the low bits as the bucket).
fn hash(addr: u64) -> u64 {
    let x = u128::from(addr) * 0x9e37_79b9_7f4a_7c15_u128;
    (x as u64) ^ ((x >> 64) as u64)
}

/// Tracked maps by header address.
#[derive(Debug, Default)]
pub struct MapTable {
    maps: Vec<TrackedMap>,
    index: HashTable<u32>,
}

impl MapTable {
    /// Maps tracked.
    #[must_use]
    pub fn len(&self) -> usize {
        self.maps.len()
    }

    /// No map tracked.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.maps.is_empty()
    }

    fn slot(&self, addr: u64) -> Option<usize> {
        let maps = &self.maps;
        self.index
            .find(hash(addr), |&i| maps[i as usize].addr == addr)
            .map(|&i| i as usize)
    }

    /// The map at `addr`.
    #[must_use]
    pub fn get(&self, addr: &u64) -> Option<&TrackedMap> {
        self.slot(*addr).map(|i| &self.maps[i])
    }

    /// The map at `addr`, to change it.
    pub fn get_mut(&mut self, addr: &u64) -> Option<&mut TrackedMap> {
        self.slot(*addr).map(|i| &mut self.maps[i])
    }

    /// Whether a map at `addr` is tracked.
    #[must_use]
    pub fn contains_key(&self, addr: &u64) -> bool {
        self.slot(*addr).is_some()
    }

    /// Every map, in no particular order.
    pub fn values(&self) -> std::slice::Iter<'_, TrackedMap> {
        self.maps.iter()
    }

    /// Every map, to change them (not their addresses).
    pub fn values_mut(&mut self) -> std::slice::IterMut<'_, TrackedMap> {
        self.maps.iter_mut()
    }

    /// Adds `m`; the caller made sure its address is not tracked yet.
    pub(super) fn insert(&mut self, m: TrackedMap) {
        debug_assert!(!self.contains_key(&m.addr));
        let i = u32::try_from(self.maps.len()).unwrap_or(u32::MAX);
        let h = hash(m.addr);
        self.maps.push(m);
        let maps = &self.maps;
        self.index
            .insert_unique(h, i, |&j| hash(maps[j as usize].addr));
    }

    /// Removes the map at `addr`; the last map takes its place in the slab.
    pub(super) fn remove(&mut self, addr: u64) -> Option<TrackedMap> {
        let maps = &self.maps;
        let entry = self
            .index
            .find_entry(hash(addr), |&i| maps[i as usize].addr == addr)
            .ok()?;
        let (i, _) = entry.remove();
        let i = i as usize;
        let m = self.maps.swap_remove(i);
        if let Some(moved) = self.maps.get(i) {
            let old = self.maps.len() as u32;
            if let Some(slot) = self.index.find_mut(hash(moved.addr), |&j| j == old) {
                *slot = i as u32;
            }
        }
        // Give memory back after a large drop (the target freed most of
        // its maps): both shrink to what is left, with room to grow.
        if self.maps.capacity() > 64 && self.maps.len() * 4 < self.maps.capacity() {
            self.maps.shrink_to(self.maps.len() * 2);
            let maps = &self.maps;
            self.index
                .shrink_to(maps.len() * 2, |&j| hash(maps[j as usize].addr));
        }
        Some(m)
    }

    /// Bytes this table holds on the heap, tracked maps' own boxes not
    /// included (tests and the report's memory figures).
    #[must_use]
    pub fn heap_bytes(&self) -> usize {
        self.maps.capacity() * std::mem::size_of::<TrackedMap>() + self.index.allocation_size()
    }
}

impl Index<&u64> for MapTable {
    type Output = TrackedMap;

    fn index(&self, addr: &u64) -> &TrackedMap {
        self.get(addr).expect("no map tracked at that address")
    }
}
