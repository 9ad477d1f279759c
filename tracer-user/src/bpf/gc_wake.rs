//! When a GC cycle wakes the tracer: the time from which a process's
//! marked-cycle event is submitted with a wakeup ([`tracer_common::MAP_GC_WAKE`]).
//! The sampling clock decides it (`app::clock`); this only writes it.
use anyhow::{Context as _, Result, anyhow};
use aya::maps::HashMap;
use tracer_common::MAP_GC_WAKE;

use super::Tracer;

impl Tracer {
    /// GC cycles of process `tgid` marked at or after `from_ns` (on the
    /// `bpf_ktime_get_ns` clock, `CLOCK_MONOTONIC`) wake the tracer;
    /// `u64::MAX`: none does.
    pub fn set_gc_wake(&mut self, tgid: u32, from_ns: u64) -> Result<()> {
        let mut m: HashMap<_, u32, u64> = HashMap::try_from(
            self.ebpf
                .map_mut(MAP_GC_WAKE)
                .ok_or_else(|| anyhow!("map {MAP_GC_WAKE} missing"))?,
        )?;
        m.insert(tgid, from_ns, 0)
            .context("writing when the next GC cycle wakes the tracer")
    }

    /// Drops process `tgid`'s entry (it was let go of).
    pub(super) fn forget_gc_wake(&mut self, tgid: u32) {
        if let Some(map) = self.ebpf.map_mut(MAP_GC_WAKE)
            && let Ok(mut m) = HashMap::<_, u32, u64>::try_from(map)
        {
            let _ = m.remove(&tgid);
        }
    }
}
