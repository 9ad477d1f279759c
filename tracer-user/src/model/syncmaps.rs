//! `sync.Map` instances in the model: tracked like maps (samples, verdicts,
//! owner), flagged so that they are walked as tries, never read as map
//! headers ([`crate::syncmap`]).
#![allow(
    clippy::wildcard_imports,
    reason = "a part of model/mod.rs, with its items"
)]
use super::*;

impl TrackedMap {
    /// Whether it is a `sync.Map` ([`Model::on_sync_map`]).
    #[must_use]
    pub const fn is_sync_map(&self) -> bool {
        self.flags & SYNC_MAP != 0
    }

    /// Whether it is a generation of a classic `sync.Map`, reported as part
    /// of it ([`Model::fold_sync_generation`]).
    #[must_use]
    pub const fn is_sync_generation(&self) -> bool {
        self.flags & SYNC_GENERATION != 0
    }
}

impl Model {
    /// Starts tracking the `sync.Map` at `addr` (its `initSlow` was seen,
    /// or a global holds it), held by `owner` when known. Returns false if
    /// it was tracked already (an instance first used by several
    /// goroutines at once calls `initSlow` once each). A runtime map
    /// tracked at that address is taken for dead: a sync.Map is there now.
    pub fn on_sync_map(&mut self, addr: u64, ts_ns: u64, owner: Option<String>) -> bool {
        if let Some(m) = self.maps.get(&addr) {
            if m.is_sync_map() {
                return false;
            }
            self.retire(addr);
        }
        self.on_discovered(
            addr,
            Some(crate::syncmap::TYPE_NAME.to_owned()),
            ts_ns,
            owner,
        );
        if let Some(m) = self.maps.get_mut(&addr) {
            m.flags = (m.flags | SYNC_MAP) & !WANTS_CREATION;
        }
        true
    }

    /// Marks the runtime map at `addr` (if tracked) as a generation of a
    /// classic `sync.Map`: a sample of the sync.Map found it as its read or
    /// dirty map. A new map later at that address (a new seed and storage)
    /// is not.
    pub fn fold_sync_generation(&mut self, addr: u64) {
        if let Some(m) = self.maps.get_mut(&addr)
            && !m.is_sync_map()
        {
            m.flags |= SYNC_GENERATION;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::{HeaderRead, HeaderSample};

    fn read(len: u64, seed: u64, root: u64) -> HeaderRead {
        HeaderRead::Ok(HeaderSample {
            len,
            capacity: 0,
            bytes: 48 + len * 100,
            seed,
            storage: root,
        })
    }

    /// A sync.Map is tracked once however often initSlow fires, judged
    /// growing like a map, and stays a sync.Map when a new instance takes
    /// its address.
    #[test]
    fn sync_maps_are_deduplicated_judged_and_followed() {
        let mut m = Model::default();
        assert!(m.on_sync_map(0x1000, 1, Some("main.cache".into())));
        assert!(!m.on_sync_map(0x1000, 2, None));
        for (c, len) in [(1, 100), (2, 200), (3, 300), (4, 400)] {
            m.on_sample(0x1000, SampleAt::gc(c), read(len, 7, 0xc000));
        }
        let t = m.maps.get(&0x1000).unwrap();
        assert!(t.is_sync_map() && !t.wants_creation());
        assert_eq!(t.owner(), Some("main.cache"));
        assert_eq!(t.type_name(), Some("sync.Map"));
        assert_eq!(t.verdict(), Verdict::Growing);
        // Another instance at the address: new seed, new root.
        m.on_sample(0x1000, SampleAt::gc(5), read(3, 8, 0xd000));
        let t = m.maps.get(&0x1000).unwrap();
        assert!(t.is_sync_map());
        assert_eq!(t.type_name(), Some("sync.Map"));
        assert_eq!(m.reused, 1);
        // A runtime map at an address a sync.Map now holds is retired.
        m.on_discovered(0x2000, None, 1, None);
        assert!(m.on_sync_map(0x2000, 2, None));
        assert_eq!(m.retired, 1);
        assert!(m.maps.get(&0x2000).unwrap().is_sync_map());
    }

    /// A classic sync.Map's generation is folded until its address holds
    /// another map; a sync.Map is never folded into another.
    #[test]
    fn generations_fold_until_the_address_is_reused() {
        let mut m = Model::default();
        m.on_discovered(0x3000, None, 1, None);
        m.on_sample(0x3000, SampleAt::gc(1), read(10, 7, 0xc000));
        m.fold_sync_generation(0x3000);
        assert!(m.maps.get(&0x3000).unwrap().is_sync_generation());
        m.on_sample(0x3000, SampleAt::gc(2), read(20, 7, 0xc000));
        assert!(m.maps.get(&0x3000).unwrap().is_sync_generation());
        // Another map there: new seed, new storage. The generation is
        // retired; the new map is tracked again when it grows or is written.
        m.on_sample(0x3000, SampleAt::gc(3), read(5, 9, 0xe000));
        assert!(m.maps.get(&0x3000).is_none());
        m.on_discovered(0x3000, None, 1, None);
        assert!(!m.maps.get(&0x3000).unwrap().is_sync_generation());
        assert!(m.on_sync_map(0x4000, 1, None));
        m.fold_sync_generation(0x4000);
        assert!(!m.maps.get(&0x4000).unwrap().is_sync_generation());
        m.fold_sync_generation(0x9999);
    }
}
