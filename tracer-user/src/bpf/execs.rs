//! `bpf::execs`: node-wide mode's exec watch. The raw tracepoint program
//! `exec_seen` sends an [`crate::ingest::Event::Exec`] for every exec on
//! the host, so that new processes are checked when they start instead of
//! by scanning `/proc` every second (about 1 ms a scan of 100 processes,
//! ten times that on a node running a thousand).
use anyhow::{Context as _, Result, anyhow};
use aya::programs::RawTracePoint;
use tracer_common::programs;

use super::Tracer;

impl Tracer {
    /// Loads `exec_seen` and attaches it to `sched_process_exec` for the
    /// tracer's lifetime. A raw tracepoint, found by name: no tracefs
    /// needed (a container without `/sys/kernel/tracing` can use it).
    /// Fails on a kernel or in a sandbox that refuses raw tracepoints;
    /// the caller then scans `/proc` every second as before.
    pub fn watch_execs(&mut self) -> Result<()> {
        if self.execs_watched {
            return Ok(());
        }
        let prog: &mut RawTracePoint = self
            .ebpf
            .program_mut(programs::EXEC)
            .ok_or_else(|| anyhow!("eBPF program {} missing from the object", programs::EXEC))?
            .try_into()?;
        prog.load()
            .with_context(|| format!("verifying eBPF program {}", programs::EXEC))?;
        prog.attach(programs::EXEC_TRACEPOINT).with_context(|| {
            format!(
                "attaching to the raw tracepoint {}",
                programs::EXEC_TRACEPOINT
            )
        })?;
        self.execs_watched = true;
        Ok(())
    }

    /// Whether execs are reported ([`Tracer::watch_execs`] succeeded).
    #[must_use]
    pub const fn watching_execs(&self) -> bool {
        self.execs_watched
    }
}
