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
//! Memory is bounded: at most [`MAX_PENDING`] pending objects of each kind;
//! beyond it new ones are counted but not remembered (said in the report).
use std::collections::{HashMap, HashSet};

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
}

/// A pending cleanup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingCleanup {
    /// The object.
    pub ptr: u64,
    /// GC cycle when it was added.
    pub set_cycle: u64,
}

/// Finalizer and cleanup state of one process.
#[derive(Debug, Default)]
pub struct FinTracker {
    /// Pending finalizers by object.
    pub finalizers: HashMap<u64, Pending>,
    /// Pending cleanups by correlation key (several may share one key).
    pub cleanups: HashMap<u64, Vec<PendingCleanup>>,
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
}

impl FinTracker {
    /// Applies one event. `minor` is the Go minor version (24 for 1.24).
    pub fn on_event(&mut self, ev: &FinEvent, minor: u32, cycle: u64) {
        let a = ev.args;
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
                    if self.finalizers.len() < MAX_PENDING {
                        self.finalizers.insert(
                            a[1],
                            Pending {
                                type_ptr: a[0],
                                set_cycle: cycle,
                            },
                        );
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
                if self.cleanups.len() < MAX_PENDING {
                    self.cleanups
                        .entry(cleanup_key)
                        .or_default()
                        .push(PendingCleanup {
                            ptr: a[0],
                            set_cycle: cycle,
                        });
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
        }
        if v.is_empty() {
            self.cleanups.remove(&key);
        }
        true
    }

    /// Pending finalizers plus pending cleanups.
    #[must_use]
    pub fn pending(&self) -> u64 {
        self.finalizers.len() as u64 + self.cleanups.values().map(|v| v.len() as u64).sum::<u64>()
    }

    /// Ages in GC cycles of everything pending.
    #[must_use]
    pub fn pending_ages(&self, cycle: u64) -> Vec<u64> {
        self.finalizers
            .values()
            .map(|p| cycle.saturating_sub(p.set_cycle))
            .chain(
                self.cleanups
                    .values()
                    .flatten()
                    .map(|c| cycle.saturating_sub(c.set_cycle)),
            )
            .collect()
    }

    /// Objects with a pending cleanup.
    #[must_use]
    pub fn cleanup_objects(&self) -> HashSet<u64> {
        self.cleanups.values().flatten().map(|c| c.ptr).collect()
    }
}

/// What holds objects with pending finalizers or cleanups as map keys.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct HeldCount {
    /// Keys that are objects with a pending finalizer.
    pub finalizers: u64,
    /// Keys that are objects with a pending cleanup.
    pub cleanups: u64,
    /// Pointer type of one such finalizer object (run-time address), or 0.
    pub type_ptr: u64,
}

/// Counts the pointer keys of one map that are objects with a pending
/// finalizer or cleanup.
pub fn held_keys(
    fin: &FinTracker,
    cleanup_objs: &HashSet<u64>,
    keys: impl Iterator<Item = u64>,
) -> HeldCount {
    let mut h = HeldCount::default();
    for k in keys {
        if let Some(p) = fin.finalizers.get(&k) {
            h.finalizers += 1;
            if h.type_ptr == 0 {
                h.type_ptr = p.type_ptr;
            }
        }
        if cleanup_objs.contains(&k) {
            h.cleanups += 1;
        }
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
        assert_eq!(t.pending_ages(5), vec![4]);
        let h = held_keys(&t, &t.cleanup_objects(), [0xa, 0xb, 0xe].into_iter());
        assert_eq!((h.finalizers, h.cleanups, h.type_ptr), (1, 0, 0x50));
    }

    #[test]
    fn cleanups_per_version() {
        // 1.24: queued through queuefinalizer(nil, fn, 0, nil, nil), keyed by fn.
        let mut t = FinTracker::default();
        t.on_event(&ev(FinKind::AddCleanup, [0xa, 0xf1, 0, 0, 0]), 24, 1);
        t.on_event(&ev(FinKind::AddCleanup, [0xb, 0xf2, 0, 0, 0]), 24, 1);
        t.on_event(&ev(FinKind::QueueFinalizer, [0, 0xf2, 0, 0, 0]), 24, 2);
        assert_eq!((t.cleanups_ran, t.pending()), (1, 1));
        assert!(t.cleanup_objects().contains(&0xa));
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
            t.cleanup_objects().into_iter().collect::<Vec<_>>(),
            vec![0xa]
        );
        // Stop by object pointer.
        t.on_event(&ev(FinKind::CleanupStop, [7, 0xa, 0, 0, 0]), 26, 3);
        assert_eq!((t.cleanups_stopped, t.pending()), (1, 0));
    }
}
