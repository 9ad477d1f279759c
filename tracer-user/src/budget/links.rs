//! Attaching a budget's probe classes: one uprobe_multi link per program
//! where the kernel has them, else one perf link per probe.
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
