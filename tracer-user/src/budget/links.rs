//! Attaching a budget's probe classes: one uprobe_multi link per program
//! where the kernel has them, else one perf link per probe; and the closes
//! still in progress ([`Detaching`]).
use std::{sync::Arc, thread::JoinHandle, time::Duration};

use crate::{
    bpf::{AttachedProbe, Link, ProbeRequest, Tracer},
    plan::ProbeClass,
};

use super::ProbeCost;

/// A session's probe.
#[derive(Debug)]
pub struct SessionProbe {
    /// The probe (its id, program and link, if attached on its own).
    pub probe: AttachedProbe,
    /// The probed function.
    pub function: String,
    /// Link-time address of the probed instruction.
    pub address: u64,
}

/// Attaches the probes of `class` for the main loop: one uprobe_multi link
/// per program where the kernel has them, else one perf link per probe
/// (taken out of the tracer, so that the governor's thread can close it).
pub fn attach_links(
    tracer: &mut Tracer,
    exe: &std::path::Path,
    pid: u32,
    probes: &mut [SessionProbe],
    reqs: &[ProbeRequest],
    costs: &[ProbeCost],
    class: ProbeClass,
) -> anyhow::Result<Vec<(Link, Vec<usize>)>> {
    let mut by_prog: Vec<(&'static str, Vec<usize>)> = Vec::new();
    for i in (0..probes.len()).filter(|&i| costs[i].class == class) {
        let prog = probes[i].probe.program;
        match by_prog.iter_mut().find(|(p, _)| *p == prog) {
            Some((_, v)) => v.push(i),
            None => by_prog.push((prog, vec![i])),
        }
    }
    let mut out = Vec::new();
    for (prog, idx) in by_prog {
        let sites: Vec<(u64, u32)> = idx
            .iter()
            .map(|&i| (reqs[i].file_offset, probes[i].probe.id))
            .collect();
        match tracer.attach_group(exe, pid, prog, &sites) {
            Ok(link) => out.push((link, idx)),
            Err(e) => {
                if crate::app::debug_timing() {
                    eprintln!("group {prog}: {e:#}; one perf link per probe");
                }
                for i in idx {
                    tracer.reattach(exe, pid, &mut probes[i].probe, &reqs[i])?;
                    if let Some(l) = tracer.take_link(&mut probes[i].probe) {
                        out.push((l, vec![i]));
                    }
                }
            }
        }
    }
    Ok(out)
}

/// Detaches of one group still in progress (a thread may close the links
/// of both groups, so handles are shared).
#[derive(Debug, Default)]
pub struct Detaching(pub(super) Vec<Arc<JoinHandle<()>>>);

impl Detaching {
    /// Whether a close is still in progress.
    pub(super) fn busy(&mut self) -> bool {
        self.0.retain(|h| !h.is_finished());
        !self.0.is_empty()
    }

    /// Waits until every close has finished.
    pub fn join(&mut self) {
        for h in self.0.drain(..) {
            match Arc::try_unwrap(h) {
                Ok(h) => {
                    let _ = h.join();
                }
                Err(h) => {
                    while !h.is_finished() {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                }
            }
        }
    }

    /// Adds closes in progress (and forgets those finished: a node-wide
    /// trace lets go of processes for as long as it runs).
    pub fn push(&mut self, h: Option<JoinHandle<()>>) {
        self.0.retain(|h| !h.is_finished());
        self.0.extend(h.map(Arc::new));
    }
}
