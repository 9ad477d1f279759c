//! The report's finalizer section: finalizers and cleanups seen, and the
//! objects with pending ones that map keys keep alive.
use serde::Serialize;

/// Objects with pending finalizers or cleanups that are keys of one map:
/// while the map holds them they stay reachable, so these never run.
#[derive(Debug, Clone, Serialize)]
pub struct HeldAsMapKeys {
    /// The map's id in `maps`.
    pub map_id: u64,
    /// The map's type.
    pub map_type: String,
    /// The global holding the map, if known.
    pub owner: Option<String>,
    /// Keys with a pending finalizer or cleanup.
    pub count: u64,
    /// Of which with a finalizer.
    pub finalizers: u64,
    /// Of which with a cleanup.
    pub cleanups: u64,
    /// Keys whose finalizer or cleanup was pending before a pause of the
    /// probes and that became keys after it: it may have run unseen (not in
    /// `count`).
    pub unverified: u64,
    /// The objects' type (the key's pointee), e.g. `main.resource`.
    #[serde(rename = "type")]
    pub type_name: String,
    /// The GC cycle of the key snapshot counted (the last one the tracer
    /// could read: a target that exits right after a cycle may have left
    /// no time to read that cycle's keys).
    pub as_of_cycle: u64,
}

/// Finalizer and cleanup counts, since the trace started.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Finalizers {
    /// `SetFinalizer` calls that set a finalizer.
    pub set: u64,
    /// `SetFinalizer(obj, nil)` calls.
    pub removed: u64,
    /// Finalizers queued to run (their object became unreachable).
    pub ran: u64,
    /// Of those, finalizers set before the trace started.
    pub ran_set_before_trace: u64,
    /// Finalizers and cleanups set during the trace that have not run, seen
    /// the whole time since they were set.
    pub pending: u64,
    /// Set before a pause of the (governed) probes and not seen to run
    /// since: they may have run, or been removed, unseen.
    pub pending_unverified: u64,
    /// Times the finalizer probes were paused to stay within the budget
    /// (the counts above are then a sample).
    pub probe_pauses: u64,
    /// `[age in GC cycles, count]` of the pending ones.
    pub pending_age_cycles_histogram: Vec<(u64, u64)>,
    /// `AddCleanup` calls (Go 1.24+).
    pub cleanups_added: u64,
    /// Cleanups queued to run.
    pub cleanups_ran: u64,
    /// `Cleanup.Stop` calls.
    pub cleanups_stopped: u64,
    /// Pending objects not remembered (the cap was reached).
    pub dropped: u64,
    /// Objects with pending finalizers or cleanups that are map keys.
    pub held_as_map_keys: Vec<HeldAsMapKeys>,
}
