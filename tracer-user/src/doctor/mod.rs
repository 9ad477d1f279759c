//! `doctor`: can this kernel and this user trace? Each check says what to do
//! when it fails. `trace` runs the same checks first and refuses to start
//! when one that blocks tracing fails; a warning (`WARN`) is printed but
//! does not stop it.
use std::{fs, io::Write, path::Path};

use crate::color::Palette;

pub mod access;

use access::{CAP_SYS_PTRACE, has};

/// One check.
#[derive(Debug, Clone)]
pub struct Check {
    /// What was checked.
    pub name: &'static str,
    /// Passed.
    pub ok: bool,
    /// A failure stops tracing (else it is a warning: tracing may work, or
    /// work for some targets only).
    pub blocking: bool,
    /// What was found.
    pub detail: String,
    /// What to do when it failed.
    pub fix: String,
}

impl Check {
    fn new(name: &'static str, ok: bool, detail: String, fix: impl Into<String>) -> Self {
        Self {
            name,
            ok,
            blocking: true,
            detail,
            fix: fix.into(),
        }
    }

    fn warning(mut self) -> Self {
        self.blocking = false;
        self
    }
}

fn kernel_version() -> Option<(u32, u32)> {
    let r = fs::read_to_string("/proc/sys/kernel/osrelease").ok()?;
    let mut it = r.trim().split(['.', '-']);
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

/// Tries to create a tiny BPF array map: proves the bpf() syscall works and
/// that we may use it.
fn bpf_syscall() -> Result<(), String> {
    #[repr(C)]
    struct MapCreate {
        map_type: u32,
        key_size: u32,
        value_size: u32,
        max_entries: u32,
        map_flags: u32,
    }
    let attr = MapCreate {
        map_type: 2,
        key_size: 4,
        value_size: 8,
        max_entries: 1,
        map_flags: 0,
    };
    // SAFETY: BPF_MAP_CREATE (0) with a valid attr struct of the given size.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            0,
            &raw const attr,
            size_of::<MapCreate>() as u32,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error().to_string());
    }
    // SAFETY: fd was returned by the kernel and is ours.
    unsafe { libc::close(fd as i32) };
    Ok(())
}

/// Whether this process runs in a container: a PID namespace of its own,
/// or a runtime's marker (`/.dockerenv`, podman's `/run/.containerenv`,
/// the service variables Kubernetes gives every pod). Only chooses how a
/// fix is worded.
fn in_container(host_pid_ns: bool) -> bool {
    !host_pid_ns
        || Path::new("/.dockerenv").exists()
        || Path::new("/run/.containerenv").exists()
        || std::env::var_os("KUBERNETES_SERVICE_HOST").is_some()
}

/// The checks of what the process may do to others: capabilities, file
/// access, Yama, PID namespace.
fn access_checks(v: &mut Vec<Check>) {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let caps = access::parse_cap_eff(&status).unwrap_or(0);
    let pid_ns = fs::read_link("/proc/self/ns/pid")
        .ok()
        .and_then(|l| access::parse_ns_inode(&l.to_string_lossy()));
    let host_pid_ns = access::in_host_pid_namespace(pid_ns);
    let container = in_container(host_pid_ns);
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    // Judged on CapEff, not on the uid: root in a container may lack them.
    let missing = access::missing_for_tracing(caps);
    v.push(Check::new(
        "capabilities: BPF, PERFMON, SYS_PTRACE",
        missing.is_empty(),
        format!("euid {euid}, {}", access::describe_caps(caps)),
        access::grant(&missing, container),
    ));
    v.push(
        Check::new(
            "capabilities: read any binary",
            access::reads_any_file(caps),
            if access::reads_any_file(caps) {
                "CAP_DAC_READ_SEARCH or CAP_DAC_OVERRIDE held".to_owned()
            } else {
                "neither CAP_DAC_READ_SEARCH nor CAP_DAC_OVERRIDE: a binary only its owner may read cannot be inspected".to_owned()
            },
            access::grant(&["CAP_DAC_READ_SEARCH"], container),
        )
        .warning(),
    );
    let scope = fs::read_to_string("/proc/sys/kernel/yama/ptrace_scope")
        .ok()
        .and_then(|s| s.trim().parse().ok());
    let (ok, detail, fix) = match access::yama_verdict(scope, has(caps, CAP_SYS_PTRACE)) {
        Ok(d) => (true, d, String::new()),
        Err((d, f)) => (false, d, f),
    };
    v.push(Check::new(
        "Yama ptrace scope (reading target memory)",
        ok,
        detail,
        fix,
    ));
    v.push(
        Check::new(
            "host PID namespace",
            host_pid_ns,
            match pid_ns {
                Some(i) if !host_pid_ns => format!(
                    "pid namespace {i}, not the host's: only this container's processes are visible, by their pids here"
                ),
                Some(i) => format!("pid namespace {i} (the host's)"),
                None => "unknown".to_owned(),
            },
            "to trace the host's or other pods' processes, run in the host's PID namespace: Kubernetes hostPID: true, docker/podman --pid=host",
        )
        .warning(),
    );
}

/// Runs every check.
#[must_use]
pub fn checks() -> Vec<Check> {
    let mut v = Vec::new();
    access_checks(&mut v);
    let kv = kernel_version();
    v.push(Check::new(
        "kernel >= 5.15 (ring buffer, uprobe cookies)",
        kv.is_some_and(|k| k >= (5, 15)),
        kv.map_or("unknown".to_owned(), |(a, b)| format!("{a}.{b}")),
        "upgrade the kernel to 5.15 or newer",
    ));
    let bpf = bpf_syscall();
    v.push(Check::new(
        "bpf() syscall",
        bpf.is_ok(),
        bpf.as_ref().map_or_else(|e| e.clone(), |()| "map created".to_owned()),
        "needs CONFIG_BPF_SYSCALL and the capabilities above; check kernel.unprivileged_bpf_disabled, any LSM (lockdown) policy, and in a container its seccomp profile (RuntimeDefault allows bpf() with CAP_BPF on current runtimes; else run it privileged)",
    ));
    let uprobe = fs::metadata("/sys/bus/event_source/devices/uprobe/type").is_ok();
    v.push(Check::new(
        "uprobes (perf PMU)",
        uprobe,
        if uprobe {
            "uprobe PMU present".to_owned()
        } else {
            "/sys/bus/event_source/devices/uprobe missing".to_owned()
        },
        "needs a kernel with CONFIG_UPROBE_EVENTS=y",
    ));
    let btf = fs::metadata("/sys/kernel/btf/vmlinux").is_ok();
    v.push(Check::new(
        "kernel BTF",
        btf,
        if btf {
            "/sys/kernel/btf/vmlinux present".to_owned()
        } else {
            "missing".to_owned()
        },
        "needs CONFIG_DEBUG_INFO_BTF=y",
    ));
    v
}

/// The checks that load the tracer's eBPF programs into this kernel, as a
/// trace does: whether its verifier accepts them, whether probes can be
/// grouped behind uprobe_multi links, and whether execs can be watched
/// (`--all`). Run by `doctor` alone, once [`checks`] passed (a trace loads
/// the programs anyway, and says what it could not use).
#[must_use]
pub fn program_checks() -> Vec<Check> {
    let mut v = Vec::new();
    let mut tracer = match crate::bpf::Tracer::load() {
        Ok(t) => {
            v.push(Check::new(
                "eBPF programs load (verifier)",
                true,
                "loaded and verified".to_owned(),
                "",
            ));
            t
        }
        Err(e) => {
            v.push(Check::new(
                "eBPF programs load (verifier)",
                false,
                format!("{e:#}"),
                "this kernel refused the tracer's programs (the verifier's words, if any, are above): tracing cannot work here; report them with `uname -r` and `mapleak-trace --version`",
            ));
            return v;
        }
    };
    let multi = tracer.multi_error().map(str::to_owned);
    v.push(
        Check::new(
            "uprobe_multi links (Linux 6.6+)",
            multi.is_none(),
            multi.unwrap_or_else(|| "available".to_owned()),
            "tracing works without them, one perf link per probe: pausing a probe class then takes 70-150 ms a probe instead of one close, and the calls that trap meanwhile are debited from the budget (less time with the probes on)",
        )
        .warning(),
    );
    let execs = tracer.watch_execs();
    v.push(
        Check::new(
            "exec tracepoint (--all finds new processes)",
            execs.is_ok(),
            execs.map_or_else(|e| format!("{e:#}"), |()| "attached".to_owned()),
            "--all then scans all of /proc every second instead (about 1 ms a scan of 100 processes), and finds new processes as fast",
        )
        .warning(),
    );
    v
}

/// Prints the checks in the colours of `p`; returns true when none that
/// blocks tracing failed (warnings are printed with their fix).
pub fn print(out: &mut dyn Write, checks: &[Check], p: Palette) -> std::io::Result<bool> {
    let mut all = true;
    for c in checks {
        let status = match (c.ok, c.blocking) {
            (true, _) => p.good("ok  ").to_string(),
            (false, true) => p.bad("FAIL").to_string(),
            (false, false) => p.warn("WARN").to_string(),
        };
        writeln!(out, "{status} {:<45} {}", c.name, c.detail)?;
        if !c.ok {
            writeln!(out, "       -> {}", c.fix)?;
            all &= !c.blocking;
        }
    }
    Ok(all)
}

/// The message `trace` fails with when a check fails.
#[must_use]
pub fn failure_message(checks: &[Check]) -> Option<String> {
    let failed: Vec<String> = checks
        .iter()
        .filter(|c| !c.ok && c.blocking)
        .map(|c| format!("{} ({}): {}", c.name, c.detail, c.fix))
        .collect();
    (!failed.is_empty()).then(|| {
        // The caller says "cannot trace".
        format!(
            "{}. Run `mapleak-trace doctor` for details.",
            failed.join("; ")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(name: &'static str, ok: bool) -> Check {
        Check::new(name, ok, format!("{name} detail"), "do this")
    }

    #[test]
    fn warnings_are_shown_but_do_not_block() {
        let checks = [check("a", true), check("w", false).warning()];
        assert_eq!(failure_message(&checks), None);
        let mut out = Vec::new();
        assert!(print(&mut out, &checks, Palette::PLAIN).unwrap());
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("ok   a "), "{text}");
        assert!(
            text.contains("WARN w ") && text.contains("-> do this"),
            "{text}"
        );
        assert!(!text.contains('\x1b'));
        let mut out = Vec::new();
        assert!(!print(&mut out, &[check("f", false)], Palette::PLAIN).unwrap());
        assert!(String::from_utf8(out).unwrap().starts_with("FAIL f "));
    }

    #[test]
    fn failure_message_names_each_failed_check_once() {
        assert_eq!(failure_message(&[check("a", true)]), None);
        let m = failure_message(&[check("a", false), check("b", true), check("c", false)])
            .expect("two checks failed");
        assert_eq!(
            m,
            "a (a detail): do this; c (c detail): do this. Run `mapleak-trace doctor` for details."
        );
        // Wrapped as `trace` does: "cannot trace" is said once.
        let e = crate::app::TraceError::CannotTrace(anyhow::anyhow!(m));
        let shown = e.to_string();
        assert_eq!(shown.matches("cannot trace").count(), 1, "{shown}");
    }
}
