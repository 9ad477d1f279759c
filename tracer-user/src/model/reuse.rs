//! Addresses that came to hold a new map. A runtime map's header says
//! nothing of its type, so the new map is not tracked from its header: it
//! is found again, with its type, by its next growth or write window. The
//! old map's last sign of life is kept as the floor its creation record
//! must be newer than (the in-kernel record at that address may still be
//! the old map's).
#![allow(
    clippy::wildcard_imports,
    reason = "a part of model/mod.rs, with its items"
)]
use super::*;

impl TrackedMap {
    /// Forgets everything about the `sync.Map` that was at this address:
    /// another one lives there now.
    fn reset_sync_map(&mut self, id: u64) {
        let (addr, alive_ns) = (self.addr, self.alive_ns);
        *self = Self::new(id, addr, 0);
        self.alive_ns = alive_ns;
        self.flags = (self.flags | REUSED | SYNC_MAP) & !WANTS_CREATION;
        self.extra().type_name = Some(crate::syncmap::TYPE_NAME.to_owned());
    }
}

impl Model {
    /// A sample showed a new map at `addr`. A `sync.Map` starts over under
    /// a new id (returns true: the sample is its first); a runtime map is
    /// retired (returns false), its address remembered for the new one.
    pub(super) fn on_reused(&mut self, addr: u64) -> bool {
        self.reused += 1;
        let Some(m) = self.maps.get_mut(&addr) else {
            return false;
        };
        if m.is_sync_map() {
            if m.has_long() {
                self.long_histories -= 1;
            }
            if m.flags & WRITES != 0 {
                self.write_records -= 1;
            }
            m.reset_sync_map(self.next_id + 1);
            return true;
        }
        let alive_ns = m.alive_ns;
        // Bounded: past the cap the floors are forgotten (a creation record
        // then may be an older map's, as before any reuse was seen).
        if self.reuse_floors.len() >= self.max_tracked {
            self.reuse_floors.clear();
        }
        self.reuse_floors.insert(addr, alive_ns);
        self.retire(addr);
        false
    }

    /// A map newly tracked at `addr`: if an earlier map there was retired by
    /// reuse, its creation record must be newer than that map's last sign
    /// of life.
    pub(super) fn take_reuse_floor(&mut self, m: &mut TrackedMap) {
        if let Some(floor) = self.reuse_floors.remove(&m.addr) {
            m.alive_ns = floor;
            m.flags |= REUSED;
        }
    }
}
