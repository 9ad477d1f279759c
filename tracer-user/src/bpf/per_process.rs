//! What the tracer writes per traced process into the kernel's maps: its
//! configuration ([`tracer_common::MAP_PROC_CONFIG`]) and the time from
//! which its marked-cycle GC events wake the tracer
//! ([`tracer_common::MAP_GC_WAKE`]; the sampling clock decides it,
//! `app::clock`). Both hold [`tracer_common::MAX_PROCS`] processes, so a
//! process let go of is removed from both.
use anyhow::{Context as _, Result, anyhow};
use aya::{Pod, maps::HashMap};
use tracer_common::{MAP_GC_WAKE, MAP_PROC_CONFIG, ProcConfig};

use super::Tracer;

impl Tracer {
    /// Writes the configuration of process `tgid`.
    pub fn configure(&mut self, tgid: u32, cfg: ProcConfig) -> Result<()> {
        self.write_for(MAP_PROC_CONFIG, tgid, cfg)
            .context("writing the per-process configuration")
    }

    /// GC cycles of process `tgid` marked at or after `from_ns` (on the
    /// `bpf_ktime_get_ns` clock, `CLOCK_MONOTONIC`) wake the tracer;
    /// `u64::MAX`: none does.
    pub fn set_gc_wake(&mut self, tgid: u32, from_ns: u64) -> Result<()> {
        self.write_for(MAP_GC_WAKE, tgid, from_ns)
            .context("writing when the next GC cycle wakes the tracer")
    }

    /// Removes what was written for process `tgid` (it was let go of).
    pub fn unconfigure(&mut self, tgid: u32) {
        self.remove_for::<ProcConfig>(MAP_PROC_CONFIG, tgid);
        self.remove_for::<u64>(MAP_GC_WAKE, tgid);
    }

    fn write_for<V: Pod>(&mut self, map: &str, tgid: u32, v: V) -> Result<()> {
        let mut m: HashMap<_, u32, V> = HashMap::try_from(
            self.ebpf
                .map_mut(map)
                .ok_or_else(|| anyhow!("map {map} missing"))?,
        )?;
        Ok(m.insert(tgid, v, 0)?)
    }

    fn remove_for<V: Pod>(&mut self, map: &str, tgid: u32) {
        if let Some(m) = self.ebpf.map_mut(map)
            && let Ok(mut m) = HashMap::<_, u32, V>::try_from(m)
        {
            let _ = m.remove(&tgid);
        }
    }
}
