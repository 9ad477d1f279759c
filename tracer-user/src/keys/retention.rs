//! Which keys of one map survive GC cycles.
//!
//! [`KeyTracker::update`] takes one [`Snapshot`] per GC cycle. A key is
//! identified by [`Key::id`] (its content hash). A complete snapshot (not
//! `partial`, not `truncated`) releases every tracked key it does not hold;
//! an incomplete one only adds keys, since it cannot prove a key is gone.
//!
//! Memory per map is bounded: at most [`MAX_TRACKED_KEYS`] keys of 32 bytes
//! plus the hash table, and [`POOL`] rendered examples; no raw keys are kept.
//! Memory over all maps is bounded too: every tracker takes its keys from
//! one [`KeyBudget`] of [`MAX_TOTAL_KEYS`] (a target with many growing maps
//! would otherwise hold 200,000 keys per map), and gives them back when they
//! are released or the tracker is dropped.
use std::{
    collections::{BTreeMap, HashMap},
    hash::{BuildHasherDefault, Hasher},
    sync::{
        Arc, OnceLock,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
};

use super::{InterfaceValues, Key, KeyType, Snapshot, render_with};

/// Most keys tracked per map; more are counted in `untracked_last` and set
/// `cap_reached`.
pub const MAX_TRACKED_KEYS: usize = 200_000;
/// Most keys tracked over every map of every traced process (about 60
/// bytes each with the hash table: 24 MiB). Twice [`MAX_TRACKED_KEYS`]: one
/// large leak is followed whole, with room for the others.
pub const MAX_TOTAL_KEYS: usize = 2 * MAX_TRACKED_KEYS;

/// Budget units a tracker costs besides its keys: its fields, key type and
/// rendered examples, about what 8 keys take. Without it, 200,000 maps of
/// one key each would fit in the budget and cost ten times as much.
pub const TRACKER_COST: usize = 8;

/// Keys tracked over all trackers, against a limit.
#[derive(Debug)]
pub struct KeyBudget {
    used: AtomicUsize,
    limit: usize,
    /// Keys not tracked because the budget was spent.
    refused: AtomicU64,
}

impl KeyBudget {
    /// A budget of `limit` keys.
    #[must_use]
    pub const fn new(limit: usize) -> Self {
        Self {
            used: AtomicUsize::new(0),
            limit,
            refused: AtomicU64::new(0),
        }
    }

    /// The process-wide budget of [`MAX_TOTAL_KEYS`].
    #[must_use]
    pub fn global() -> Arc<Self> {
        static GLOBAL: OnceLock<Arc<KeyBudget>> = OnceLock::new();
        GLOBAL
            .get_or_init(|| Arc::new(Self::new(MAX_TOTAL_KEYS)))
            .clone()
    }

    /// Keys tracked now.
    #[must_use]
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// Its limit.
    #[must_use]
    pub const fn limit(&self) -> usize {
        self.limit
    }

    /// Keys refused so far.
    #[must_use]
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Whether maps that are not suspects may start being followed: at
    /// most half the budget goes to them, the rest is kept for suspects.
    #[must_use]
    pub fn room_for_others(&self) -> bool {
        self.used() < self.limit / 2
    }

    /// Takes `n` units whatever is left (a new tracker: the caller checked
    /// there was room).
    fn take_all(&self, n: usize) {
        self.used.fetch_add(n, Ordering::Relaxed);
    }

    /// Takes up to `n` keys; returns how many it got.
    fn take(&self, n: usize) -> usize {
        let mut got = 0;
        let _ = self
            .used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |u| {
                got = n.min(self.limit.saturating_sub(u));
                Some(u + got)
            });
        got
    }

    /// Counts keys that were not tracked for want of budget.
    fn refuse(&self, n: u64) {
        if n > 0 {
            self.refused.fetch_add(n, Ordering::Relaxed);
        }
    }

    fn give(&self, n: usize) {
        let _ = self
            .used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |u| {
                Some(u.saturating_sub(n))
            });
    }
}

/// Rendered examples kept (the oldest present keys).
pub const POOL: usize = 16;
/// Examples reported.
pub const EXAMPLES: usize = 5;

/// Key ids are already hashes: use them as they are.
#[derive(Default)]
struct IdHash(u64);

impl Hasher for IdHash {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    first_cycle: u64,
    /// When the snapshot that first saw it ended (`CLOCK_MONOTONIC` ns).
    first_ns: u64,
    /// The pointer of a pointer key (0: none).
    ptr: u64,
    /// Update number when first seen.
    first_seq: u32,
    /// Update number when last seen.
    last_seq: u32,
}

#[derive(Clone, Debug)]
struct Example {
    id: u64,
    first_cycle: u64,
    text: String,
}

/// Key retention of one map, as of the latest update.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct RetainedKeys {
    /// Updates so far.
    pub snapshots: u64,
    /// GC cycle of the latest update.
    pub cycle: u64,
    /// Keys present: in the latest snapshot, plus (after an incomplete one)
    /// keys it missed that no complete snapshot has shown gone.
    pub tracked: u64,
    /// Present keys first seen at an earlier snapshot than the latest: they
    /// survived at least one GC cycle and were never absent since.
    pub never_released: u64,
    /// Keys seen before and now gone (cumulative).
    pub released: u64,
    /// Keys added plus keys released at the latest update.
    pub churn_last_cycle: u64,
    /// Oldest present key's age: latest cycle minus its first cycle.
    pub oldest_cycles: u64,
    /// `(age in cycles, keys)` of present keys, ascending by age (feed the
    /// pairs to a histogram with `record_n`).
    pub age_cycles_histogram: Vec<(u64, u64)>,
    /// Up to 5 of the oldest present keys, rendered (strings redacted
    /// unless `show_keys`), oldest first.
    pub examples: Vec<String>,
    /// [`MAX_TRACKED_KEYS`] (or the budget over all maps,
    /// [`MAX_TOTAL_KEYS`]) was reached: some keys are not tracked.
    pub cap_reached: bool,
    /// Keys of the latest snapshot not tracked because of the cap.
    pub untracked_last: u64,
    /// Updates with a partial or truncated snapshot (they release nothing).
    pub partial_snapshots: u64,
}

/// Follows the keys of one map across snapshots.
#[derive(Debug)]
pub struct KeyTracker {
    key_type: KeyType,
    show_keys: bool,
    keys: HashMap<u64, Entry, BuildHasherDefault<IdHash>>,
    budget: Arc<KeyBudget>,
    /// The map's hash seed at the latest update.
    seed: Option<u64>,
    seq: u32,
    latest_cycle: u64,
    released: u64,
    churn_last: u64,
    cap_reached: bool,
    untracked_last: u64,
    partial_snapshots: u64,
    pool: Vec<Example>,
    /// Shows what interface keys hold ([`super::dynamic`]).
    iface: Option<Arc<dyn InterfaceValues>>,
}

impl KeyTracker {
    /// A tracker for keys of type `key_type`; examples are rendered with
    /// `show_keys` (see [`render()`]). Its keys count against the
    /// process-wide [`KeyBudget::global`].
    #[must_use]
    pub fn new(key_type: KeyType, show_keys: bool) -> Self {
        Self::with_budget(key_type, show_keys, KeyBudget::global())
    }

    /// [`KeyTracker::new`] against `budget` (it costs [`TRACKER_COST`]).
    #[must_use]
    pub fn with_budget(key_type: KeyType, show_keys: bool, budget: Arc<KeyBudget>) -> Self {
        budget.take_all(TRACKER_COST);
        Self {
            key_type,
            show_keys,
            keys: HashMap::default(),
            budget,
            seed: None,
            seq: 0,
            latest_cycle: 0,
            released: 0,
            churn_last: 0,
            cap_reached: false,
            untracked_last: 0,
            partial_snapshots: 0,
            pool: Vec::new(),
            iface: None,
        }
    }

    /// Examples of interface keys show the value they hold, read through
    /// `iface` when they are rendered (a few reads per example).
    #[must_use]
    pub fn with_interfaces(mut self, iface: Arc<dyn InterfaceValues>) -> Self {
        self.iface = Some(iface);
        self
    }

    /// Takes the snapshot made at GC cycle `cycle`. A snapshot of another
    /// map at the same address (another seed, with entries: see
    /// `model::Model::on_sample`) starts the tracker over.
    pub fn update(&mut self, cycle: u64, snap: &Snapshot) {
        if self.seed.is_some_and(|s| s != snap.seed) && snap.header_len != 0 {
            self.reset();
        }
        self.seed = Some(snap.seed);
        self.seq = self.seq.saturating_add(1);
        let seq = self.seq;
        self.latest_cycle = cycle;
        let mut added = 0u64;
        let mut untracked = 0u64;
        let mut refused = 0u64;
        // Keys are taken from the budget in batches (one atomic operation
        // per batch, not per key).
        let mut credit = 0usize;
        for k in &snap.keys {
            if let Some(e) = self.keys.get_mut(&k.id) {
                e.last_seq = seq;
                continue;
            }
            if self.keys.len() >= MAX_TRACKED_KEYS {
                self.cap_reached = true;
                untracked += 1;
                continue;
            }
            if credit == 0 {
                credit = self
                    .budget
                    .take((MAX_TRACKED_KEYS - self.keys.len()).min(1024));
            }
            if credit == 0 {
                self.cap_reached = true;
                untracked += 1;
                refused += 1;
            } else {
                credit -= 1;
                self.keys.insert(
                    k.id,
                    Entry {
                        first_cycle: cycle,
                        first_ns: snap.done_ns,
                        ptr: k.ptr.unwrap_or(0),
                        first_seq: seq,
                        last_seq: seq,
                    },
                );
                added += 1;
            }
        }
        self.budget.give(credit);
        self.budget.refuse(refused);
        let mut released = 0u64;
        if snap.partial || snap.truncated {
            self.partial_snapshots += 1;
        } else {
            self.keys.retain(|_, e| {
                let keep = e.last_seq == seq;
                released += u64::from(!keep);
                keep
            });
            self.budget.give(released as usize);
            // A map that was emptied gives its table back.
            if self.keys.capacity() > 4 * self.keys.len().max(256) {
                self.keys.shrink_to_fit();
            }
        }
        self.released += released;
        self.churn_last = added + released;
        self.untracked_last = untracked;
        self.refill_pool(&snap.keys);
    }

    /// Forgets every key (given back to the budget) and the counts.
    fn reset(&mut self) {
        self.budget.give(self.keys.len());
        self.keys = HashMap::default();
        self.seed = None;
        self.seq = 0;
        self.latest_cycle = 0;
        self.released = 0;
        self.churn_last = 0;
        self.cap_reached = false;
        self.untracked_last = 0;
        self.partial_snapshots = 0;
        self.pool.clear();
    }

    /// The map's hash seed at the latest update.
    #[must_use]
    pub const fn seed(&self) -> Option<u64> {
        self.seed
    }

    /// The GC cycle of the last snapshot followed.
    #[must_use]
    pub fn latest_cycle(&self) -> u64 {
        self.latest_cycle
    }

    /// Keys tracked.
    #[must_use]
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// No key tracked.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Whether this tracker follows the map now at its address, whose
    /// seed is `seed` and latest length `len`: not when another map
    /// (another seed, with entries) lives there now. An emptied map draws
    /// a new seed too, and is still the same map.
    #[must_use]
    pub fn follows(&self, seed: Option<u64>, len: u64) -> bool {
        len == 0 || self.seed.is_none() || seed.is_none() || self.seed == seed
    }

    /// Keeps [`POOL`] rendered keys, the oldest present ones: keys only get
    /// older, so the pool only needs refilling (from the current snapshot)
    /// when some of its keys are released.
    fn refill_pool(&mut self, snap: &[Key]) {
        self.pool.retain(|p| self.keys.contains_key(&p.id));
        let want = POOL.saturating_sub(self.pool.len());
        if want == 0 {
            return;
        }
        let mut cands: Vec<(u32, u64, usize)> = snap
            .iter()
            .enumerate()
            .filter(|(_, k)| !self.pool.iter().any(|p| p.id == k.id))
            .filter_map(|(i, k)| self.keys.get(&k.id).map(|e| (e.first_seq, k.id, i)))
            .collect();
        if cands.len() > want {
            cands.select_nth_unstable(want);
            cands.truncate(want);
        }
        for (_, id, i) in cands {
            if self.pool.iter().any(|p| p.id == id) {
                continue; // the same key twice in one snapshot
            }
            let first_cycle = self
                .keys
                .get(&id)
                .map_or(self.latest_cycle, |e| e.first_cycle);
            self.pool.push(Example {
                id,
                first_cycle,
                text: render_with(
                    &snap[i],
                    &self.key_type,
                    self.show_keys,
                    self.iface.as_deref(),
                ),
            });
        }
    }

    /// Retention figures as of the latest update.
    #[must_use]
    pub fn stats(&self) -> RetainedKeys {
        let mut hist: BTreeMap<u64, u64> = BTreeMap::new();
        let mut never_released = 0u64;
        for e in self.keys.values() {
            *hist
                .entry(self.latest_cycle.saturating_sub(e.first_cycle))
                .or_default() += 1;
            never_released += u64::from(e.first_seq < self.seq);
        }
        let mut ex: Vec<&Example> = self.pool.iter().collect();
        ex.sort_by(|a, b| a.first_cycle.cmp(&b.first_cycle).then(a.text.cmp(&b.text)));
        RetainedKeys {
            snapshots: u64::from(self.seq),
            cycle: self.latest_cycle,
            tracked: self.keys.len() as u64,
            never_released,
            released: self.released,
            churn_last_cycle: self.churn_last,
            oldest_cycles: hist.keys().next_back().copied().unwrap_or(0),
            age_cycles_histogram: hist.into_iter().collect(),
            examples: ex
                .into_iter()
                .take(EXAMPLES)
                .map(|e| e.text.clone())
                .collect(),
            cap_reached: self.cap_reached,
            untracked_last: self.untracked_last,
            partial_snapshots: self.partial_snapshots,
        }
    }

    /// Pointer values of present pointer keys (`*T`, `unsafe.Pointer`), for
    /// matching against objects with finalizers or cleanups, each with the
    /// end of the snapshot that first saw it (ns): present in every complete
    /// snapshot since.
    pub fn present_pointers(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.keys
            .values()
            .filter(|e| e.ptr != 0)
            .map(|e| (e.ptr, e.first_ns))
    }

    /// GC cycle when the key `id` was first seen, if present.
    #[must_use]
    pub fn first_cycle(&self, id: u64) -> Option<u64> {
        self.keys.get(&id).map(|e| e.first_cycle)
    }
}

impl Drop for KeyTracker {
    fn drop(&mut self) {
        self.budget.give(self.keys.len() + TRACKER_COST);
    }
}

#[cfg(test)]
mod tests {
    use super::{
        super::{KeyKind, RawKey, StrVal},
        *,
    };

    fn int_t() -> KeyType {
        KeyType {
            name: "int64".into(),
            size: 8,
            kind: KeyKind::Int,
        }
    }

    /// A tracker with a budget of its own (tests run in parallel).
    fn tracker() -> KeyTracker {
        KeyTracker::with_budget(int_t(), false, Arc::new(KeyBudget::new(MAX_TOTAL_KEYS)))
    }

    fn snap(ids: &[u64], partial: bool) -> Snapshot {
        Snapshot {
            keys: ids
                .iter()
                .map(|&i| Key {
                    id: i.wrapping_mul(0x9e37_79b9_7f4a_7c15),
                    raw: RawKey::new(&i.to_le_bytes()),
                    ptr: Some(0xc000_0000 + i),
                    strs: Vec::<StrVal>::new(),
                })
                .collect(),
            header_len: ids.len() as u64,
            seed: 1,
            partial,
            truncated: false,
            attempts: 1,
            bytes_read: 0,
            done_ns: ids.len() as u64,
        }
    }

    /// tracked, never_released, released, churn, ages and examples follow the
    /// definitions over a scripted sequence of snapshots.
    #[test]
    fn retention_definitions() {
        let mut t = tracker();
        t.update(10, &snap(&[1, 2, 3], false));
        let s = t.stats();
        assert_eq!((s.tracked, s.never_released, s.released), (3, 0, 0));
        assert_eq!((s.churn_last_cycle, s.oldest_cycles), (3, 0));
        assert_eq!(s.age_cycles_histogram, [(0, 3)]);

        // 1 stays, 2 and 3 go, 4 and 5 come.
        t.update(11, &snap(&[1, 4, 5], false));
        let s = t.stats();
        assert_eq!((s.tracked, s.never_released, s.released), (3, 1, 2));
        assert_eq!((s.churn_last_cycle, s.oldest_cycles), (4, 1));
        assert_eq!(s.age_cycles_histogram, [(0, 2), (1, 1)]);
        assert_eq!(s.examples, ["1", "4", "5"]);

        // A partial snapshot missing 4 and 5 adds 6 and releases nothing.
        t.update(13, &snap(&[1, 6], true));
        let s = t.stats();
        assert_eq!((s.tracked, s.released, s.partial_snapshots), (4, 2, 1));
        assert_eq!(s.never_released, 3);
        assert_eq!(s.churn_last_cycle, 1);
        assert_eq!(s.age_cycles_histogram, [(0, 1), (2, 2), (3, 1)]);
        assert_eq!(s.oldest_cycles, 3);

        // A complete one releases what it lacks; 1 was released and comes
        // back: it is a new key again.
        t.update(14, &snap(&[4, 6], false));
        t.update(15, &snap(&[1, 4, 6], false));
        let s = t.stats();
        assert_eq!(s.released, 2 + 2);
        assert_eq!(t.first_cycle(snap(&[1], false).keys[0].id), Some(15));
        assert_eq!(s.examples, ["4", "6", "1"]);
        let mut ptrs: Vec<(u64, u64)> = t.present_pointers().collect();
        ptrs.sort_unstable();
        // First seen by snapshots of 3, 2 and 2 keys (done_ns = the count).
        assert_eq!(ptrs, [(0xc000_0001, 3), (0xc000_0004, 3), (0xc000_0006, 2)]);
        assert!(!s.cap_reached);
        serde_json::to_string(&s).unwrap();
    }

    /// The cap stops tracking new keys and says so.
    #[test]
    fn cap_is_reported() {
        let mut t = tracker();
        let ids: Vec<u64> = (0..MAX_TRACKED_KEYS as u64 + 10).collect();
        t.update(1, &snap(&ids, false));
        let s = t.stats();
        assert!(s.cap_reached);
        assert_eq!(s.tracked, MAX_TRACKED_KEYS as u64);
        assert_eq!(s.untracked_last, 10);
        assert_eq!(s.examples.len(), EXAMPLES);
    }

    /// Trackers share one budget: keys past it are not tracked (the cap
    /// is reported and the refusals counted), and released keys and
    /// dropped trackers give theirs back.
    #[test]
    fn budget_over_all_maps() {
        let b = Arc::new(KeyBudget::new(5 + 2 * TRACKER_COST));
        let mut t1 = KeyTracker::with_budget(int_t(), false, b.clone());
        let mut t2 = KeyTracker::with_budget(int_t(), false, b.clone());
        t1.update(1, &snap(&[1, 2, 3], false));
        t2.update(1, &snap(&[1, 2, 3, 4], false));
        let full = 5 + 2 * TRACKER_COST;
        assert_eq!((t1.len(), t2.len(), b.used(), b.refused()), (3, 2, full, 2));
        assert!(t2.stats().cap_reached && !t1.stats().cap_reached);
        assert_eq!(t2.stats().untracked_last, 2);
        assert!(!b.room_for_others());
        // t1 releases two keys; t2 gets them.
        t1.update(2, &snap(&[1], false));
        assert_eq!(b.used(), full - 2);
        t2.update(2, &snap(&[1, 2, 3, 4], false));
        assert_eq!((t2.len(), b.used()), (4, full));
        drop(t2);
        assert_eq!(b.used(), 1 + TRACKER_COST);
        assert!(b.room_for_others());
    }

    /// A snapshot of another map at the address (another seed, with
    /// entries) starts the tracker over; an emptied map (a new seed, no
    /// entries) is the same map.
    #[test]
    fn new_map_at_the_address_starts_over() {
        let b = Arc::new(KeyBudget::new(100));
        let mut t = KeyTracker::with_budget(int_t(), false, b.clone());
        t.update(1, &snap(&[1, 2, 3], false));
        t.update(2, &snap(&[1, 2, 3], false));
        assert_eq!(t.stats().never_released, 3);
        let mut empty = snap(&[], false);
        empty.seed = 2;
        t.update(3, &empty);
        assert_eq!((t.stats().released, t.seed()), (3, Some(2)));
        assert!(t.follows(Some(2), 0) && t.follows(Some(9), 0));
        assert!(!t.follows(Some(9), 4));
        let mut other = snap(&[7, 8], false);
        other.seed = 9;
        t.update(4, &other);
        let s = t.stats();
        assert_eq!((s.tracked, s.released, s.snapshots), (2, 0, 1));
        assert_eq!(b.used(), 2 + TRACKER_COST);
    }
}
