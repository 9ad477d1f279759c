//! `app::writes`: what the write windows found. Pure: the write counts
//! drained from the kernel and the model in; maps discovered, insert
//! counts and sites out.
use std::collections::HashMap;

use tracer_common::{WriteKey, WriteKind, WriteStat};

use crate::model::Model;

/// Fewest inserts into an untracked map within one drain of the write
/// counts before it is tracked: keeps the many short-lived maps of a busy
/// service (an HTTP header gets a handful) out.
pub(super) const DISCOVER_MIN_ASSIGNS: u64 = 256;

/// Most maps discovered per drain (the busiest first).
pub(super) const DISCOVER_MAX: usize = 64;

/// Applies the write counts of process `pid` (other processes' are
/// ignored) to `model`: untracked maps with at least
/// [`DISCOVER_MIN_ASSIGNS`] inserts are tracked (the busiest
/// [`DISCOVER_MAX`]), and tracked maps get their insert and delete counts,
/// insert sites and, when unknown, their type. Returns the maps discovered.
pub(super) fn apply_writes(model: &mut Model, pid: u32, writes: &[(WriteKey, WriteStat)]) -> u64 {
    let assign = u32::from(WriteKind::Assign as u8);
    let mut per_map: HashMap<u64, u64> = HashMap::new();
    for (k, st) in writes {
        if k.tgid == pid && k.kind == assign && k.map_addr != 0 {
            *per_map.entry(k.map_addr).or_default() += st.count;
        }
    }
    let mut busiest: Vec<(u64, u64)> = per_map
        .iter()
        .filter(|(a, n)| **n >= DISCOVER_MIN_ASSIGNS && !model.maps.contains_key(a))
        .map(|(a, n)| (*n, *a))
        .collect();
    busiest.sort_unstable_by(|a, b| b.cmp(a));
    let mut discovered = 0;
    for &(_, addr) in busiest.iter().take(DISCOVER_MAX) {
        model.on_discovered(addr, None, 0, None);
        discovered += 1;
    }
    for (k, st) in writes {
        if k.tgid != pid || k.map_addr == 0 {
            continue;
        }
        model.on_write(
            k.map_addr,
            st.type_ptr,
            k.kind == assign,
            k.caller_pc,
            st.count,
        );
    }
    discovered
}

#[cfg(test)]
mod tests {
    use super::*;

    const PID: u32 = 42;

    fn write(map_addr: u64, pc: u64, kind: WriteKind, count: u64) -> (WriteKey, WriteStat) {
        (
            WriteKey {
                map_addr,
                caller_pc: pc,
                tgid: PID,
                kind: u32::from(kind as u8),
            },
            WriteStat {
                count,
                type_ptr: 0xfeed,
            },
        )
    }

    #[test]
    fn busy_untracked_maps_are_discovered_quiet_ones_are_not() {
        let mut m = Model::default();
        let w = [
            // 200 + 100 inserts from two sites: 300, discovered.
            write(0x1000, 0xa, WriteKind::Assign, 200),
            write(0x1000, 0xb, WriteKind::Assign, 100),
            // Deletes do not count towards discovery.
            write(0x2000, 0xa, WriteKind::Delete, 10_000),
            // Under the threshold.
            write(0x3000, 0xa, WriteKind::Assign, DISCOVER_MIN_ASSIGNS - 1),
        ];
        assert_eq!(apply_writes(&mut m, PID, &w), 1);
        let t = m.maps.get(&0x1000).expect("discovered");
        assert_eq!(t.writes().0, 300);
        assert_eq!(t.type_ptr, 0xfeed);
        assert!(!m.maps.contains_key(&0x2000));
        assert!(!m.maps.contains_key(&0x3000));
    }

    #[test]
    fn another_process_and_null_maps_are_ignored() {
        let mut m = Model::default();
        let mut other = write(0x1000, 0xa, WriteKind::Assign, 10_000);
        other.0.tgid = PID + 1;
        let null = write(0, 0xa, WriteKind::Assign, 10_000);
        assert_eq!(apply_writes(&mut m, PID, &[other, null]), 0);
        assert!(m.maps.is_empty());
    }

    #[test]
    fn the_busiest_maps_are_discovered_first_up_to_the_cap() {
        let mut m = Model::default();
        let w: Vec<_> = (0..DISCOVER_MAX as u64 + 10)
            .map(|i| write(0x1000 + i * 0x100, 0xa, WriteKind::Assign, 1000 + i))
            .collect();
        assert_eq!(apply_writes(&mut m, PID, &w), DISCOVER_MAX as u64);
        // The ten least busy are left for a later drain.
        for i in 0..10u64 {
            assert!(!m.maps.contains_key(&(0x1000 + i * 0x100)), "{i}");
        }
        assert!(
            m.maps
                .contains_key(&(0x1000 + (DISCOVER_MAX as u64 + 9) * 0x100))
        );
    }

    #[test]
    fn tracked_maps_count_inserts_and_deletes_and_keep_their_type() {
        let mut m = Model::default();
        m.on_discovered(0x1000, None, 0, None);
        m.maps.get_mut(&0x1000).unwrap().type_ptr = 0xbeef;
        let w = [
            write(0x1000, 0xa, WriteKind::Assign, 3),
            write(0x1000, 0xb, WriteKind::Assign, 5),
            write(0x1000, 0xa, WriteKind::Delete, 2),
        ];
        assert_eq!(apply_writes(&mut m, PID, &w), 0);
        let t = &m.maps[&0x1000];
        assert_eq!(t.writes(), (8, 2));
        assert_eq!(t.type_ptr, 0xbeef, "a known type is kept");
        let mut sites = t.insert_sites().to_vec();
        sites.sort_unstable();
        assert_eq!(sites, vec![(0xa, 3), (0xb, 5)]);
    }
}
