//! `finalizers`: bookkeeping of finalizers and cleanups from the `fin_hook`
//! events. Pure and deterministic (cycles come from the caller).
//!
//! Which register means what, per function and Go version, is in
//! go-runtime.md section 5:
//! - `SetFinalizer(obj, fin)`: a0 obj type (`*T`), a1 obj, a2 finalizer type
//!   (0 when the finalizer is removed).
//! - `queuefinalizer(p, fn, …)`: a0 p, the object whose finalizer is about to
//!   run; on 1.24 a cleanup comes through here too, with p = 0 and a1 its
//!   funcval.
//! - `addCleanup(p, …)`: a0 p; the correlation key is a1 (the funcval) on
//!   1.24 and 1.25, a3 (the argument box) on 1.26+.
//! - `(*cleanupQueue).enqueue` (1.25+): the key in a1 (1.25) or a3 (1.26+).
//! - `Cleanup.Stop()`: a0 id, a1 ptr.
//!
//! Memory is bounded: at most [`MAX_PENDING`] pending finalizers and
//! [`MAX_PENDING`] pending cleanups (counted one by one, whatever key they
//! share: on Go 1.24 and 1.25 every cleanup of one function shares its
//! funcval as the key, so one key's list may be long, and the total bounds
//! it); beyond it new ones are counted but not remembered (said in the
//! report).
//!
//! The probes are governed (`plan::classify`): while they are paused, a
//! finalizer may run, or be removed, unseen. Everything pending when a pause
//! starts is marked with that moment ([`FinTracker::probes_paused`]) and
//! counts as *unverified* from then on. An unverified object that is a map
//! key still counts as held when the key was already in the map before the
//! pause and in every complete snapshot since: an object that stayed a key
//! stayed reachable, so its finalizer cannot have run (a removal by
//! `SetFinalizer(obj, nil)` during the pause is the one thing missed).
use std::collections::HashMap;

use tracer_common::{FinEvent, FinKind};

/// Most pending finalizers (and, separately, cleanups) remembered.
pub const MAX_PENDING: usize = 1 << 20;

/// A pending finalizer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pending {
    /// Run-time address of the object's pointer type (`*T`), 0 if unknown.
    pub type_ptr: u64,
    /// GC cycle when it was set.
    pub set_cycle: u64,
    /// When the first probe pause after it was set started
    /// (`CLOCK_MONOTONIC` ns), [`NO_PAUSE`] if none yet.
    pub paused_ns: u64,
}

/// [`Pending::paused_ns`] of an entry seen pending the whole time.
pub const NO_PAUSE: u64 = u64::MAX;

/// A pending cleanup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingCleanup {
    /// The object.
    pub ptr: u64,
    /// GC cycle when it was added.
    pub set_cycle: u64,
    /// As [`Pending::paused_ns`].
    pub paused_ns: u64,
}

/// Finalizer and cleanup state of one process.
#[derive(Debug, Default)]
pub struct FinTracker {
    /// Pending finalizers by object.
    pub finalizers: HashMap<u64, Pending>,
    /// Pending cleanups by correlation key (several may share one key).
    pub cleanups: HashMap<u64, Vec<PendingCleanup>>,
    /// Entries in all of `cleanups`' lists.
    cleanups_len: usize,
    /// `SetFinalizer` calls that set one.
    pub set: u64,
    /// `SetFinalizer(obj, nil)` calls.
    pub removed: u64,
    /// Finalizers queued to run (their object became unreachable).
    pub ran: u64,
    /// Queued finalizers set before the trace started.
    pub ran_unknown: u64,
    /// `AddCleanup` calls.
    pub cleanups_added: u64,
    /// Cleanups queued to run.
    pub cleanups_ran: u64,
    /// `Cleanup.Stop` calls.
    pub cleanups_stopped: u64,
    /// Pending objects not remembered because the cap was reached.
    pub dropped: u64,
    /// Times the probes were paused.
    pub pauses: u64,
    /// Start of the latest pause (ns).
    last_pause_ns: Option<u64>,
    /// End of the latest pause (ns), `None` while it lasts.
    last_resume_ns: Option<u64>,
    /// Finalizer objects and cleanup keys set since the latest pause (some
    /// may be gone already): the entries a new pause marks.
    fresh: Vec<u64>,
    fresh_cleanups: Vec<u64>,
    /// [`FinTracker::pauses`] when unverified finalizers (0) and cleanups
    /// (1) were last evicted to make room.
    evicted_at: [u64; 2],
}

impl FinTracker {
    /// Applies one event. `minor` is the Go minor version (24 for 1.24).
    pub fn on_event(&mut self, ev: &FinEvent, minor: u32, cycle: u64) {
        let a = ev.args;
        // Set before the latest pause was noted, or during it (while the
        // probes were being detached or attached): marked at once.
        let paused_ns = match self.last_pause_ns {
            Some(p) if self.last_resume_ns.is_none_or(|r| ev.hdr.ts_ns < r) => p,
            _ => NO_PAUSE,
        };
        let cleanup_key = if minor >= 26 { a[3] } else { a[1] };
        match ev.fin_kind {
            k if k == FinKind::SetFinalizer as u8 => {
                if a[1] == 0 {
                    return;
                }
                if a[2] == 0 {
                    self.removed += 1;
                    self.finalizers.remove(&a[1]);
                } else {
                    self.set += 1;
                    if self.finalizers.len() >= MAX_PENDING && self.evicted_at[0] < self.pauses {
                        // Full: unverified entries go first (once per pause).
                        self.evicted_at[0] = self.pauses;
                        self.finalizers.retain(|_, p| p.paused_ns == NO_PAUSE);
                    }
                    if self.finalizers.len() < MAX_PENDING {
                        self.finalizers.insert(
                            a[1],
                            Pending {
                                type_ptr: a[0],
                                set_cycle: cycle,
                                paused_ns,
                            },
                        );
                        if paused_ns == NO_PAUSE {
                            self.fresh.push(a[1]);
                        }
                    } else {
                        self.dropped += 1;
                    }
                }
            }
            k if k == FinKind::QueueFinalizer as u8 => {
                if a[0] != 0 {
                    if self.finalizers.remove(&a[0]).is_some() {
                        self.ran += 1;
                    } else {
                        self.ran_unknown += 1;
                    }
                } else if a[2] == 0 && a[3] == 0 && a[4] == 0 {
                    // 1.24: a cleanup runs through the finalizer queue.
                    self.cleanup_done(a[1]);
                }
            }
            k if k == FinKind::AddCleanup as u8 => {
                self.cleanups_added += 1;
                if self.cleanups_len >= MAX_PENDING && self.evicted_at[1] < self.pauses {
                    self.evicted_at[1] = self.pauses;
                    self.cleanups.retain(|_, v| {
                        v.retain(|c| c.paused_ns == NO_PAUSE);
                        !v.is_empty()
                    });
                    self.cleanups_len = self.cleanups.values().map(Vec::len).sum();
                }
                if self.cleanups_len < MAX_PENDING {
                    self.cleanups_len += 1;
                    self.cleanups
                        .entry(cleanup_key)
                        .or_default()
                        .push(PendingCleanup {
                            ptr: a[0],
                            set_cycle: cycle,
                            paused_ns,
                        });
                    if paused_ns == NO_PAUSE {
                        self.fresh_cleanups.push(cleanup_key);
                    }
                } else {
                    self.dropped += 1;
                }
            }
            k if k == FinKind::CleanupQueued as u8 => self.cleanup_done(cleanup_key),
            k if k == FinKind::CleanupStop as u8 => {
                self.cleanups_stopped += 1;
                let ptr = a[1];
                let key = self
                    .cleanups
                    .iter()
                    .find(|(_, v)| v.iter().any(|c| c.ptr == ptr))
                    .map(|(k, _)| *k);
                if let Some(k) = key {
                    self.take_cleanup(k, Some(ptr));
                }
            }
            _ => {}
        }
        self.compact();
    }

    fn cleanup_done(&mut self, key: u64) {
        if self.take_cleanup(key, None) {
            self.cleanups_ran += 1;
        }
    }

    fn take_cleanup(&mut self, key: u64, ptr: Option<u64>) -> bool {
        let Some(v) = self.cleanups.get_mut(&key) else {
            return false;
        };
        let i = ptr
            .and_then(|p| v.iter().position(|c| c.ptr == p))
            .unwrap_or(0);
        if i < v.len() {
            v.swap_remove(i);
            self.cleanups_len -= 1;
        }
        if v.is_empty() {
            self.cleanups.remove(&key);
        }
        true
    }

    /// The probes were paused at `ns` (`CLOCK_MONOTONIC`): whatever is
    /// pending and not yet marked may run unseen from then on.
    pub fn probes_paused(&mut self, ns: u64) {
        self.pauses += 1;
        self.last_pause_ns = Some(ns);
        self.last_resume_ns = None;
        for obj in self.fresh.drain(..) {
            if let Some(p) = self.finalizers.get_mut(&obj)
                && p.paused_ns == NO_PAUSE
            {
                p.paused_ns = ns;
            }
        }
        for key in self.fresh_cleanups.drain(..) {
            for c in self.cleanups.get_mut(&key).into_iter().flatten() {
                if c.paused_ns == NO_PAUSE {
                    c.paused_ns = ns;
                }
            }
        }
    }

    /// The probes were attached again at `ns`.
    pub fn probes_resumed(&mut self, ns: u64) {
        self.last_resume_ns = Some(ns);
    }

    /// Keeps the lists of fresh entries within twice what is pending (on a
    /// target whose probes are never paused they would grow forever).
    fn compact(&mut self) {
        if self.fresh.len() > 2 * self.finalizers.len() + 1024 {
            let f = &self.finalizers;
            self.fresh
                .retain(|o| f.get(o).is_some_and(|p| p.paused_ns == NO_PAUSE));
            self.fresh.sort_unstable();
            self.fresh.dedup();
        }
        if self.fresh_cleanups.len() > 2 * self.cleanups.len() + 1024 {
            let c = &self.cleanups;
            self.fresh_cleanups.retain(|k| c.contains_key(k));
            self.fresh_cleanups.sort_unstable();
            self.fresh_cleanups.dedup();
        }
    }

    /// Finalizers and cleanups seen pending the whole time since they were
    /// set.
    #[must_use]
    pub fn pending(&self) -> u64 {
        self.all_pending().filter(|p| p.2 == NO_PAUSE).count() as u64
    }

    /// Finalizers and cleanups set before a pause of the probes and not
    /// seen to run since: they may have run unseen.
    #[must_use]
    pub fn pending_unverified(&self) -> u64 {
        self.all_pending().filter(|p| p.2 != NO_PAUSE).count() as u64
    }

    /// (object or 0, set cycle, paused ns) of everything remembered.
    fn all_pending(&self) -> impl Iterator<Item = (u64, u64, u64)> + '_ {
        self.finalizers
            .iter()
            .map(|(o, p)| (*o, p.set_cycle, p.paused_ns))
            .chain(
                self.cleanups
                    .values()
                    .flatten()
                    .map(|c| (c.ptr, c.set_cycle, c.paused_ns)),
            )
    }

    /// `(age in GC cycles, count)` of everything seen pending the whole
    /// time, ascending by age.
    #[must_use]
    pub fn pending_age_histogram(&self, cycle: u64) -> Vec<(u64, u64)> {
        let mut ages: std::collections::BTreeMap<u64, u64> = std::collections::BTreeMap::new();
        for p in self.all_pending().filter(|p| p.2 == NO_PAUSE) {
            *ages.entry(cycle.saturating_sub(p.1)).or_default() += 1;
        }
        ages.into_iter().collect()
    }

    /// Pending cleanups remembered (every key's list).
    #[must_use]
    pub const fn cleanups_len(&self) -> usize {
        self.cleanups_len
    }

    /// Objects with a pending cleanup, with the latest [`Pending::paused_ns`]
    /// of their cleanups (the best evidence that one is still pending).
    #[must_use]
    pub fn cleanup_objects(&self) -> HashMap<u64, u64> {
        let mut out: HashMap<u64, u64> = HashMap::new();
        for c in self.cleanups.values().flatten() {
            let e = out.entry(c.ptr).or_insert(c.paused_ns);
            *e = (*e).max(c.paused_ns);
        }
        out
    }
}

/// What holds objects with pending finalizers or cleanups as map keys.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct HeldCount {
    /// Keys that are objects with a pending finalizer.
    pub finalizers: u64,
    /// Keys that are objects with a pending cleanup.
    pub cleanups: u64,
    /// Keys that are objects whose finalizer or cleanup was pending before
    /// a probe pause, and that became keys only after it: it may have run
    /// unseen and the memory been reused (not counted above).
    pub unverified: u64,
    /// Pointer type of one such finalizer object (run-time address), or 0.
    pub type_ptr: u64,
}

/// Counts the pointer keys of one map that are objects with a pending
/// finalizer or cleanup. `keys`: (pointer, when the key was first seen in
/// the map, ns), see [`FinTracker`] for why that matters.
pub fn held_keys(
    fin: &FinTracker,
    cleanup_objs: &HashMap<u64, u64>,
    keys: impl Iterator<Item = (u64, u64)>,
) -> HeldCount {
    // Pending the whole time, or a key since before the pause.
    let held = |paused_ns: u64, key_ns: u64| paused_ns == NO_PAUSE || key_ns < paused_ns;
    let mut h = HeldCount::default();
    for (k, key_ns) in keys {
        let mut unverified = false;
        if let Some(p) = fin.finalizers.get(&k) {
            if held(p.paused_ns, key_ns) {
                h.finalizers += 1;
                if h.type_ptr == 0 {
                    h.type_ptr = p.type_ptr;
                }
            } else {
                unverified = true;
            }
        }
        if let Some(&paused_ns) = cleanup_objs.get(&k) {
            if held(paused_ns, key_ns) {
                h.cleanups += 1;
            } else {
                unverified = true;
            }
        }
        h.unverified += u64::from(unverified);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracer_common::EventHeader;

    fn ev(kind: FinKind, args: [u64; 5]) -> FinEvent {
        FinEvent {
            hdr: EventHeader::default(),
            args,
            probe_id: 0,
            fin_kind: kind as u8,
            _pad: [0; 5],
        }
    }

    #[test]
    fn finalizer_set_run_remove() {
        let mut t = FinTracker::default();
        t.on_event(&ev(FinKind::SetFinalizer, [0x50, 0xa, 0x60, 0, 0]), 23, 1);
        t.on_event(&ev(FinKind::SetFinalizer, [0x50, 0xb, 0x60, 0, 0]), 23, 1);
        t.on_event(&ev(FinKind::SetFinalizer, [0x50, 0xc, 0x60, 0, 0]), 23, 2);
        assert_eq!((t.set, t.pending()), (3, 3));
        // b's finalizer runs, c's is removed.
        t.on_event(
            &ev(FinKind::QueueFinalizer, [0xb, 0x70, 0, 0x1, 0x2]),
            23,
            3,
        );
        t.on_event(&ev(FinKind::SetFinalizer, [0x50, 0xc, 0, 0, 0]), 23, 3);
        // An object whose finalizer was set before the trace.
        t.on_event(
            &ev(FinKind::QueueFinalizer, [0xd, 0x70, 0, 0x1, 0x2]),
            23,
            3,
        );
        assert_eq!((t.ran, t.removed, t.ran_unknown, t.pending()), (1, 1, 1, 1));
        assert_eq!(t.pending_age_histogram(5), [(4, 1)]);
        let h = held_keys(
            &t,
            &t.cleanup_objects(),
            [(0xa, 9), (0xb, 9), (0xe, 9)].into_iter(),
        );
        assert_eq!((h.finalizers, h.cleanups, h.type_ptr), (1, 0, 0x50));
        assert_eq!(h.unverified, 0);
    }

    fn at(mut e: FinEvent, ts_ns: u64) -> FinEvent {
        e.hdr.ts_ns = ts_ns;
        e
    }

    /// Across a pause of the probes, what was pending becomes unverified,
    /// and counts as held only through keys that were in the map before it.
    #[test]
    fn pauses_make_pending_unverified() {
        let mut t = FinTracker::default();
        let set = |obj| ev(FinKind::SetFinalizer, [0x50, obj, 0x60, 0, 0]);
        t.on_event(&at(set(0xa), 100), 23, 1);
        t.on_event(&at(set(0xb), 100), 23, 1);
        t.on_event(
            &at(ev(FinKind::AddCleanup, [0xc, 0xf1, 0, 0, 0]), 100),
            24,
            1,
        );
        assert_eq!((t.pending(), t.pending_unverified()), (3, 0));
        t.probes_paused(1_000);
        // Set before the pause, read after it was noted.
        t.on_event(&at(set(0xd), 900), 23, 2);
        // Set while the probes were being detached.
        t.on_event(&at(set(0xe), 1_100), 23, 2);
        t.probes_resumed(2_000);
        t.on_event(&at(set(0xf), 2_100), 23, 3);
        assert_eq!((t.pending(), t.pending_unverified()), (1, 5));
        assert_eq!(t.pending_age_histogram(4), [(1, 1)]);
        // 0xa: a key since before the pause (held); 0xb and 0xc: keys only
        // since after it (their finalizer or cleanup may have run, and the
        // memory be reused); 0xf: set after the pause (held).
        let keys = [(0xa, 500), (0xb, 1_500), (0xc, 3_000), (0xf, 3_000)];
        let h = held_keys(&t, &t.cleanup_objects(), keys.into_iter());
        assert_eq!((h.finalizers, h.cleanups, h.unverified), (2, 0, 2));
        let h = held_keys(&t, &t.cleanup_objects(), [(0xc, 999)].into_iter());
        assert_eq!((h.finalizers, h.cleanups, h.unverified), (0, 1, 0));
        // Seen to run after the pause: gone, verified or not.
        t.on_event(
            &at(ev(FinKind::QueueFinalizer, [0xb, 0x70, 0, 0x1, 0x2]), 2_200),
            23,
            3,
        );
        assert_eq!((t.ran, t.pending_unverified()), (1, 4));
        // A second pause marks only what was set since the first.
        t.probes_paused(5_000);
        let h = held_keys(&t, &t.cleanup_objects(), [(0xf, 6_000)].into_iter());
        assert_eq!((h.finalizers, h.unverified), (0, 1));
        let h = held_keys(&t, &t.cleanup_objects(), [(0xf, 3_000)].into_iter());
        assert_eq!((h.finalizers, h.unverified), (1, 0));
        assert_eq!(t.finalizers[&0xa].paused_ns, 1_000);
    }

    #[test]
    fn cleanups_per_version() {
        // 1.24: queued through queuefinalizer(nil, fn, 0, nil, nil), keyed by fn.
        let mut t = FinTracker::default();
        t.on_event(&ev(FinKind::AddCleanup, [0xa, 0xf1, 0, 0, 0]), 24, 1);
        t.on_event(&ev(FinKind::AddCleanup, [0xb, 0xf2, 0, 0, 0]), 24, 1);
        t.on_event(&ev(FinKind::QueueFinalizer, [0, 0xf2, 0, 0, 0]), 24, 2);
        assert_eq!((t.cleanups_ran, t.pending()), (1, 1));
        assert!(t.cleanup_objects().contains_key(&0xa));
        // 1.25: enqueue(q, fn).
        let mut t = FinTracker::default();
        t.on_event(&ev(FinKind::AddCleanup, [0xa, 0xf1, 0, 0, 0]), 25, 1);
        t.on_event(&ev(FinKind::CleanupQueued, [0x99, 0xf1, 0, 0, 0]), 25, 2);
        assert_eq!((t.cleanups_ran, t.pending()), (1, 0));
        // 1.26: keyed by the argument box in a3; the fn may be shared.
        let mut t = FinTracker::default();
        t.on_event(&ev(FinKind::AddCleanup, [0xa, 0xc0, 0xf1, 0xa1, 0]), 26, 1);
        t.on_event(&ev(FinKind::AddCleanup, [0xb, 0xc0, 0xf1, 0xa2, 0]), 26, 1);
        t.on_event(
            &ev(FinKind::CleanupQueued, [0x99, 0xc0, 0xf1, 0xa2, 0]),
            26,
            2,
        );
        assert_eq!(
            t.cleanup_objects().into_keys().collect::<Vec<_>>(),
            vec![0xa]
        );
        // Stop by object pointer.
        t.on_event(&ev(FinKind::CleanupStop, [7, 0xa, 0, 0, 0]), 26, 3);
        assert_eq!((t.cleanups_stopped, t.pending()), (1, 0));
    }

    /// Cleanups that share one key (every cleanup of one function on Go
    /// 1.24) are bounded by the total: past MAX_PENDING they are counted,
    /// not remembered, and a run frees room again.
    #[test]
    fn cleanups_sharing_a_key_are_bounded() {
        let mut t = FinTracker::default();
        let n = MAX_PENDING as u64 + 10;
        for obj in 0..n {
            t.on_event(
                &ev(FinKind::AddCleanup, [0x1000 + obj, 0xf1, 0, 0, 0]),
                24,
                1,
            );
        }
        assert_eq!(t.cleanups_len(), MAX_PENDING);
        assert_eq!(t.cleanups[&0xf1].len(), MAX_PENDING);
        assert_eq!(t.dropped, 10);
        t.on_event(&ev(FinKind::CleanupQueued, [0x99, 0xf1, 0, 0, 0]), 25, 2);
        assert_eq!(t.cleanups_len(), MAX_PENDING - 1);
        t.on_event(&ev(FinKind::AddCleanup, [0xa, 0xf1, 0, 0, 0]), 24, 2);
        assert_eq!((t.cleanups_len(), t.dropped), (MAX_PENDING, 10));
    }
}
