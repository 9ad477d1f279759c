//! The kernel's run-time statistics of the tracer's programs: how often
//! each ran and how long it took, for the governor to debit what a hit
//! costs beyond the trap (`crate::runcost` turns the readings into a cost
//! per run).
//!
//! The kernel counts only while someone holds a `BPF_ENABLE_STATS` file
//! descriptor (Linux 5.8+, CAP_SYS_ADMIN), and then for every program on
//! the machine: two clock reads around each run, ours and others'.
//! [`RunStats`] holds one for as long as it lives, and its own descriptor
//! of each program, so that it can move to another thread and read there
//! without the [`super::Tracer`].
use std::os::fd::{AsFd as _, AsRawFd as _, OwnedFd};

use anyhow::{Context as _, Result, anyhow};
use aya::{Ebpf, programs::UProbe};
use aya_obj::generated::{bpf_attr, bpf_cmd, bpf_prog_info};
use tracer_common::programs;

pub use crate::runcost::ProgramRun;

use super::multi::{MultiPrograms, bpf_call};

/// Run counts and times of the tracer's programs, counted by the kernel
/// while this lives.
#[derive(Debug)]
pub struct RunStats {
    /// Keeps the kernel counting (closed on drop: it stops, unless another
    /// holder remains).
    _enabled: OwnedFd,
    /// A descriptor of each loaded program, the uprobe_multi copies under
    /// their program's name too, in [`programs::ALL`] order.
    progs: Vec<(&'static str, OwnedFd)>,
}

impl RunStats {
    /// Turns the statistics on and takes a descriptor of every program
    /// of `ebpf` (those of [`programs::ALL`]) and of every copy in
    /// `multi`. Fails when the kernel refuses to count (before 5.8, or
    /// without CAP_SYS_ADMIN): the caller keeps fixed prices.
    pub(super) fn new(ebpf: &Ebpf, multi: &MultiPrograms) -> Result<Self> {
        let mut progs = Vec::new();
        for name in programs::ALL {
            let prog: &UProbe = ebpf
                .program(name)
                .ok_or_else(|| anyhow!("eBPF program {name} missing"))?
                .try_into()?;
            let fd = prog
                .fd()
                .with_context(|| format!("eBPF program {name} is not loaded"))?
                .as_fd()
                .try_clone_to_owned()
                .with_context(|| format!("duplicating the descriptor of {name}"))?;
            progs.push((name, fd));
        }
        for (name, fd) in multi.copies() {
            let fd = fd
                .try_clone_to_owned()
                .with_context(|| format!("duplicating the descriptor of {name}'s copy"))?;
            progs.push((name, fd));
        }
        // Copies next to their program: `read` sums neighbours.
        let rank = |n: &str| programs::ALL.iter().position(|&p| p == n);
        progs.sort_by_key(|(n, _)| rank(n));
        let enabled = aya::sys::enable_stats(aya::sys::Stats::RunTime)
            .context("turning on the kernel's BPF run-time statistics (BPF_ENABLE_STATS)")?;
        Ok(Self {
            _enabled: enabled,
            progs,
        })
    }

    /// Cumulative runs and run time of each program since it was loaded
    /// (counted only while statistics were on), its copies added in, in
    /// [`programs::ALL`] order. A program some descriptor of which cannot
    /// be read is left out (a partial sum would look like a counter reset
    /// now and a burst at the next reading).
    #[must_use]
    pub fn read(&self) -> Vec<(&'static str, ProgramRun)> {
        let mut out: Vec<(&'static str, ProgramRun)> = Vec::new();
        let mut unread: Vec<&str> = Vec::new();
        for &(name, ref fd) in &self.progs {
            let Some(r) = prog_run(fd) else {
                unread.push(name);
                continue;
            };
            match out.last_mut() {
                Some((last, sum)) if *last == name => {
                    sum.run_time_ns = sum.run_time_ns.saturating_add(r.run_time_ns);
                    sum.run_cnt = sum.run_cnt.saturating_add(r.run_cnt);
                }
                _ => out.push((name, r)),
            }
        }
        out.retain(|(n, _)| !unread.contains(n));
        out
    }
}

/// The run statistics of the program behind `fd` (`BPF_OBJ_GET_INFO_BY_FD`).
fn prog_run(fd: &OwnedFd) -> Option<ProgramRun> {
    // SAFETY: bpf_prog_info is plain old data; all-zero is a valid value
    // (and asks for none of the arrays it can point to).
    let mut info: bpf_prog_info = unsafe { std::mem::zeroed() };
    // SAFETY: as above, for bpf_attr.
    let mut attr: bpf_attr = unsafe { std::mem::zeroed() };
    attr.info.bpf_fd = u32::try_from(fd.as_raw_fd()).ok()?;
    attr.info.info_len = u32::try_from(size_of::<bpf_prog_info>()).ok()?;
    attr.info.info = std::ptr::from_mut(&mut info) as u64;
    // SAFETY: `info` is a bpf_prog_info of the length given, valid for the
    // call; the kernel writes at most info_len bytes, and no array (every
    // count and pointer in it is zero).
    unsafe { bpf_call(bpf_cmd::BPF_OBJ_GET_INFO_BY_FD, &mut attr) }.ok()?;
    Some(ProgramRun {
        run_time_ns: info.run_time_ns,
        run_cnt: info.run_cnt,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The handle moves to the governor's thread.
    const _: () = {
        const fn send<T: Send>() {}
        send::<RunStats>();
    };

    /// As root (a failure when `CI` is set without it, else skipped): the
    /// loaded programs' statistics read, every program named once, none
    /// run yet.
    #[test]
    fn reads_loaded_programs() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI is set but the tests do not run as root"
            );
            eprintln!("skipped: loading the programs needs root");
            return;
        }
        let tracer = super::super::Tracer::load().unwrap();
        let stats = tracer.run_stats().unwrap();
        drop(tracer);
        let got = stats.read();
        let names: Vec<&str> = got.iter().map(|r| r.0).collect();
        assert_eq!(names, programs::ALL);
        assert!(got.iter().all(|r| r.1 == ProgramRun::default()), "{got:?}");
    }
}
