//! What a verdict is, and what a sample of a map's header is made of.
use serde::Serialize;

/// A verdict on one map.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Length keeps rising across GC cycles.
    Growing,
    /// Capacity far above length.
    Bloated,
    /// Bounded.
    Stable,
    /// Unchanged.
    Idle,
}

impl Verdict {
    /// Lower-case name.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Growing => "growing",
            Self::Bloated => "bloated",
            Self::Stable => "stable",
            Self::Idle => "idle",
        }
    }

    /// Growing or bloated: a map the report details and whose keys, owner
    /// and sites are looked up.
    #[must_use]
    pub const fn is_suspect(self) -> bool {
        matches!(self, Self::Growing | Self::Bloated)
    }
}

/// One observation of a map's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Sample {
    /// GC cycle (for a timer sample: the latest cycle before it).
    pub cycle: u64,
    /// Length.
    pub len: u64,
    /// Slots.
    pub capacity: u64,
    /// Bytes.
    pub bytes: u64,
    /// Milliseconds since the trace started.
    pub t_ms: u32,
    /// Taken on the timer (GC cycles came less often than `--interval`),
    /// not at a GC cycle.
    pub timer: bool,
}

/// The latest sample of a map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Latest {
    /// GC cycle (for a timer sample: the latest cycle before it).
    pub cycle: u64,
    /// Length.
    pub len: u64,
    /// Slots.
    pub capacity: u64,
    /// Bytes.
    pub bytes: u64,
}

/// When a sample was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SampleAt {
    /// GC cycle (for a timer sample: the latest cycle before it).
    pub cycle: u64,
    /// Milliseconds since the trace started.
    pub t_ms: u32,
    /// A timer sample.
    pub timer: bool,
}

impl SampleAt {
    /// A sample at GC cycle `cycle`, at time 0 (tests).
    #[must_use]
    pub const fn gc(cycle: u64) -> Self {
        Self {
            cycle,
            t_ms: 0,
            timer: false,
        }
    }
}
