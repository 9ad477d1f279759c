//! The measured parts: what each runs and the samples it keeps (their
//! sections of the report are in `report`).
//!
//! 1. `throughput`: separate runs, untraced, under mapleak-trace and under
//!    bpftrace.
//! 2. `phases` (1b): alternating phases of one process (`suite`'s
//!    workloads); `fleet` (1c): of many processes traced at once by one
//!    `mapleak-trace --all`.
//! 3. `probe_cost` (2): cost per probe hit by placement.
//! 4. `create_cost` (2b): cost per map creation under each tracer.
//! 5. `manymaps` (3): the tracer's CPU and memory with many live maps.
//! 6. `search_cost` (3b): what the holder search and the sync.Map walks
//!    cost.
//! 7. `twin` (1h): two copies of a workload side by side, one traced at a
//!    time (`suite`'s workloads).
pub(super) mod create_cost;
pub(super) mod fleet;
pub(super) mod manymaps;
pub(super) mod phases;
pub(super) mod probe_cost;
pub(super) mod search_cost;
pub(super) mod throughput;
pub(super) mod twin;

/// A run's configuration in parts 1 and 2b.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Mode {
    Untraced,
    /// mapleak-trace at the bench's budget (the default).
    Mapleak,
    /// mapleak-trace at `--overhead-budget 100`: every probe attached all
    /// the time, so part 2b gives the cost of one hit (part 2b only).
    Unbudgeted,
    Bpftrace,
}

impl Mode {
    pub(super) const ALL: [Mode; 4] = [
        Mode::Untraced,
        Mode::Mapleak,
        Mode::Unbudgeted,
        Mode::Bpftrace,
    ];

    pub(super) fn label(self) -> &'static str {
        match self {
            Mode::Untraced => "untraced",
            Mode::Mapleak => "mapleak-trace",
            Mode::Unbudgeted => "mapleak-trace, no budget",
            Mode::Bpftrace => "bpftrace",
        }
    }

    /// The mode a label stands for (results.json).
    pub(super) fn from_label(label: &str) -> Option<Mode> {
        Mode::ALL.into_iter().find(|m| m.label() == label)
    }
}

/// Repetitions that also run bpftrace (its loss is tens of %: a few
/// repetitions show it, and the time goes to the closer comparison).
pub(super) const BPFTRACE_REPS: usize = 3;
