//! `doctor`: can this kernel and this user trace? Each check says what to do
//! when it fails. `trace` runs the same checks first.
use std::{fs, io::Write};

/// One check.
#[derive(Debug, Clone)]
pub struct Check {
    /// What was checked.
    pub name: &'static str,
    /// Passed.
    pub ok: bool,
    /// What was found.
    pub detail: String,
    /// What to do when it failed.
    pub fix: &'static str,
}

fn cap_eff() -> u64 {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(0)
}

const CAP_SYS_PTRACE: u32 = 19;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

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

/// Runs every check.
#[must_use]
pub fn checks() -> Vec<Check> {
    let caps = cap_eff();
    let has = |c: u32| caps & (1u64 << c) != 0;
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let mut v = Vec::new();
    let privs = root
        || ((has(CAP_BPF) || has(CAP_SYS_ADMIN))
            && (has(CAP_PERFMON) || has(CAP_SYS_ADMIN))
            && has(CAP_SYS_PTRACE));
    v.push(Check {
        name: "privileges",
        ok: privs,
        detail: format!(
            "euid {}, CAP_BPF {}, CAP_PERFMON {}, CAP_SYS_PTRACE {}",
            // SAFETY: as above.
            unsafe { libc::geteuid() },
            has(CAP_BPF),
            has(CAP_PERFMON),
            has(CAP_SYS_PTRACE)
        ),
        fix: "run with sudo, or grant: sudo setcap cap_bpf,cap_perfmon,cap_sys_ptrace+ep $(which mapleak-trace)",
    });
    let kv = kernel_version();
    v.push(Check {
        name: "kernel >= 5.15 (ring buffer, uprobe cookies)",
        ok: kv.is_some_and(|k| k >= (5, 15)),
        detail: kv.map_or("unknown".to_owned(), |(a, b)| format!("{a}.{b}")),
        fix: "upgrade the kernel to 5.15 or newer",
    });
    let bpf = bpf_syscall();
    v.push(Check {
        name: "bpf() syscall",
        ok: bpf.is_ok(),
        detail: bpf.as_ref().map_or_else(|e| e.clone(), |()| "map created".to_owned()),
        fix: "needs CONFIG_BPF_SYSCALL and the privileges above; check kernel.unprivileged_bpf_disabled and any LSM (lockdown) policy",
    });
    let uprobe = fs::metadata("/sys/bus/event_source/devices/uprobe/type").is_ok();
    v.push(Check {
        name: "uprobes (perf PMU)",
        ok: uprobe,
        detail: if uprobe {
            "uprobe PMU present".to_owned()
        } else {
            "/sys/bus/event_source/devices/uprobe missing".to_owned()
        },
        fix: "needs a kernel with CONFIG_UPROBE_EVENTS=y",
    });
    let btf = fs::metadata("/sys/kernel/btf/vmlinux").is_ok();
    v.push(Check {
        name: "kernel BTF",
        ok: btf,
        detail: if btf {
            "/sys/kernel/btf/vmlinux present".to_owned()
        } else {
            "missing".to_owned()
        },
        fix: "needs CONFIG_DEBUG_INFO_BTF=y",
    });
    v
}

/// Prints the checks; returns true when all passed.
pub fn print(out: &mut dyn Write, checks: &[Check]) -> std::io::Result<bool> {
    let mut all = true;
    for c in checks {
        writeln!(
            out,
            "{} {:<45} {}",
            if c.ok { "ok  " } else { "FAIL" },
            c.name,
            c.detail
        )?;
        if !c.ok {
            writeln!(out, "       -> {}", c.fix)?;
            all = false;
        }
    }
    Ok(all)
}

/// The message `trace` fails with when a check fails.
#[must_use]
pub fn failure_message(checks: &[Check]) -> Option<String> {
    let failed: Vec<String> = checks
        .iter()
        .filter(|c| !c.ok)
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
        Check {
            name,
            ok,
            detail: format!("{name} detail"),
            fix: "do this",
        }
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
