//! A sync.Map's keys, followed from walk to walk as a suspect map's are
//! (`retained_keys`: how many were never released, how old they are).
//!
//! A sync.Map's keys are interfaces (`any`). The walks that count its
//! entries' types keep each key's two words, its dynamic type's descriptor
//! and its data word, and a key is that pair: the runtime stores a key
//! once, in its entry (the trie's `entry.key`, the classic read or dirty
//! map's key, copied between the two unchanged), so the pair stays the
//! same for as long as the key is in the map. No more is read: the walks
//! already read these words, and a key's contents (a boxed string) would
//! cost a read per key per sample.
use crate::keys::{IdHasher, Key, KeyKind, KeyType, RawKey, Snapshot};

use super::Entries;

/// A sync.Map's key type: `any`.
#[must_use]
pub fn key_type() -> KeyType {
    KeyType {
        name: "interface {}".to_owned(),
        size: 16,
        kind: KeyKind::Interface,
    }
}

/// The keys a walk kept (`e.keys_kept`), as a snapshot of a map with seed
/// `seed` taken at `now_ns`: truncated when the walk kept fewer than it
/// saw.
#[must_use]
pub fn snapshot(e: &Entries, seed: u64, now_ns: u64) -> Snapshot {
    let keys = e
        .keys
        .iter()
        .map(|&(t, d)| {
            let mut raw = [0u8; 16];
            raw[..8].copy_from_slice(&t.to_le_bytes());
            raw[8..].copy_from_slice(&d.to_le_bytes());
            let mut h = IdHasher::new();
            h.write(&raw);
            Key {
                id: h.finish(),
                raw: RawKey::new(&raw),
                ptr: None,
                strs: Vec::new(),
            }
        })
        .collect();
    Snapshot {
        keys,
        header_len: e.keys.len() as u64 + e.keys_dropped,
        seed,
        partial: e.keys_partial,
        truncated: e.keys_dropped > 0,
        attempts: 1,
        bytes_read: 0,
        done_ns: now_ns,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{KeyBudget, KeyTracker};
    use std::sync::Arc;

    fn walked(keys: &[(u64, u64)], dropped: u64) -> Entries {
        Entries {
            keys_kept: true,
            keys: keys.to_vec(),
            keys_dropped: dropped,
            ..Entries::default()
        }
    }

    /// Keys kept across walks are never released, and age; a key gone is
    /// released; a key is its two words (the same data word under another
    /// type is another key).
    #[test]
    fn keys_followed_across_walks() {
        let budget = Arc::new(KeyBudget::new(1 << 20));
        let mut t = KeyTracker::with_budget(key_type(), false, budget);
        let (s, a, b, c) = (0x4a_0000, 0xc000_1000, 0xc000_2000, 0xc000_3000);
        t.update(1, &snapshot(&walked(&[(s, a), (s, b)], 0), 7, 1));
        t.update(2, &snapshot(&walked(&[(s, a), (s, b), (s, c)], 0), 7, 2));
        t.update(
            4,
            &snapshot(&walked(&[(s, a), (s, c), (s + 8, b)], 0), 7, 3),
        );
        let st = t.stats();
        assert_eq!(st.snapshots, 3);
        assert_eq!(st.tracked, 3);
        assert_eq!(st.released, 1, "{st:?}");
        assert_eq!(st.never_released, 2, "{st:?}");
        assert_eq!(st.oldest_cycles, 3);
        assert_eq!(st.age_cycles_histogram, [(0, 1), (2, 1), (3, 1)]);
        // A walk that kept only some keys releases none of the others.
        t.update(5, &snapshot(&walked(&[(s, a)], 2), 7, 4));
        let st = t.stats();
        assert_eq!((st.released, st.partial_snapshots), (1, 1), "{st:?}");
        assert_eq!(st.tracked, 3);
    }

    #[test]
    fn snapshot_counts_what_the_walk_dropped() {
        let snap = snapshot(&walked(&[(1, 2)], 5), 9, 42);
        assert_eq!(snap.keys.len(), 1);
        assert_eq!(snap.header_len, 6);
        assert!(snap.truncated);
        assert_eq!((snap.seed, snap.done_ns), (9, 42));
        assert_eq!(snap.keys[0].raw.as_bytes().len(), 16);
        let other = snapshot(&walked(&[(1, 3)], 0), 9, 42);
        assert_ne!(snap.keys[0].id, other.keys[0].id);
        assert!(!other.truncated && !other.partial);
        let mut torn = walked(&[(1, 3)], 0);
        torn.keys_partial = true;
        assert!(snapshot(&torn, 9, 42).partial);
    }
}
