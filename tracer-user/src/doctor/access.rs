//! What the process may do to other processes: its effective capabilities,
//! Yama's ptrace scope, and whether it sees the host's PID namespace. The
//! parsing and the verdicts are pure; [`super::checks`] reads the files.
//!
//! Why each matters:
//! - `CAP_BPF` loads the programs and maps, `CAP_PERFMON` attaches uprobes
//!   (`perf_event_open`), `CAP_SYS_ADMIN` covers both (kernels before 5.8
//!   had only it);
//! - `CAP_SYS_PTRACE`: `process_vm_readv` (map headers and keys) and
//!   `/proc/PID/{maps,exe,root}` of another user's process pass the
//!   kernel's ptrace access check (`PTRACE_MODE_ATTACH_REALCREDS` for the
//!   read), which Yama tightens (below);
//! - `CAP_DAC_READ_SEARCH` (or `CAP_DAC_OVERRIDE`): reading a binary that
//!   only its owner may read. A container that drops ALL capabilities and
//!   adds back only the ones above has neither.

/// Capability numbers (`linux/capability.h`).
pub const CAP_DAC_OVERRIDE: u32 = 1;
/// See [`CAP_DAC_OVERRIDE`].
pub const CAP_DAC_READ_SEARCH: u32 = 2;
/// See [`CAP_DAC_OVERRIDE`].
pub const CAP_SYS_PTRACE: u32 = 19;
/// See [`CAP_DAC_OVERRIDE`].
pub const CAP_SYS_ADMIN: u32 = 21;
/// See [`CAP_DAC_OVERRIDE`].
pub const CAP_PERFMON: u32 = 38;
/// See [`CAP_DAC_OVERRIDE`].
pub const CAP_BPF: u32 = 39;

/// `PROC_PID_INIT_INO`: the inode of the initial (the host's) PID
/// namespace, the same on every kernel.
pub const INIT_PID_NS_INO: u64 = 0xEFFF_FFFC;

/// The `CapEff:` mask of a `/proc/PID/status` text.
#[must_use]
pub fn parse_cap_eff(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
}

/// Whether `mask` holds capability `cap`.
#[must_use]
pub fn has(mask: u64, cap: u32) -> bool {
    cap < 64 && mask & (1u64 << cap) != 0
}

/// The capabilities tracing needs that `mask` lacks (`CAP_SYS_ADMIN`
/// stands in for `CAP_BPF` and `CAP_PERFMON`).
#[must_use]
pub fn missing_for_tracing(mask: u64) -> Vec<&'static str> {
    let admin = has(mask, CAP_SYS_ADMIN);
    let mut v = Vec::new();
    if !(has(mask, CAP_BPF) || admin) {
        v.push("CAP_BPF");
    }
    if !(has(mask, CAP_PERFMON) || admin) {
        v.push("CAP_PERFMON");
    }
    if !has(mask, CAP_SYS_PTRACE) {
        v.push("CAP_SYS_PTRACE");
    }
    v
}

/// Whether `mask` lets the process read files it has no permission for.
#[must_use]
pub fn reads_any_file(mask: u64) -> bool {
    has(mask, CAP_DAC_READ_SEARCH) || has(mask, CAP_DAC_OVERRIDE)
}

/// `CapEff` in words: which of the capabilities that matter are there.
#[must_use]
pub fn describe_caps(mask: u64) -> String {
    let yn = |c| if has(mask, c) { "yes" } else { "no" };
    format!(
        "CapEff {mask:016x}: CAP_BPF {}, CAP_PERFMON {}, CAP_SYS_PTRACE {}, CAP_DAC_READ_SEARCH {}, CAP_SYS_ADMIN {}",
        yn(CAP_BPF),
        yn(CAP_PERFMON),
        yn(CAP_SYS_PTRACE),
        yn(CAP_DAC_READ_SEARCH),
        yn(CAP_SYS_ADMIN)
    )
}

/// What to do to get capabilities `caps`: on a host, `setcap` (or sudo);
/// in a container, its security context.
#[must_use]
pub fn grant(caps: &[&str], in_container: bool) -> String {
    let bare: Vec<String> = caps
        .iter()
        .map(|c| c.trim_start_matches("CAP_").to_owned())
        .collect();
    if in_container {
        format!(
            "add {} to the container's capabilities (Kubernetes: securityContext.capabilities.add: [{}]; docker/podman: {}), or run it privileged",
            caps.join(", "),
            bare.join(", "),
            bare.iter()
                .map(|c| format!("--cap-add {c}"))
                .collect::<Vec<_>>()
                .join(" ")
        )
    } else {
        format!(
            "run with sudo, or grant them to the binary: sudo setcap {}+ep $(command -v mapleak-trace)",
            caps.iter()
                .map(|c| c.to_ascii_lowercase())
                .collect::<Vec<_>>()
                .join(",")
        )
    }
}

/// The inode in a namespace link's text (`pid:[4026531836]`).
#[must_use]
pub fn parse_ns_inode(link: &str) -> Option<u64> {
    link.trim()
        .split_once(":[")?
        .1
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// Yama's `kernel.yama.ptrace_scope` (`None`: no Yama) against what
/// the tracer does: read the memory of processes that are not its
/// children. `Ok(detail)` or `Err((detail, fix))`. Pure.
///
/// - 0, classic: the usual checks (same user, or `CAP_SYS_PTRACE`);
/// - 1, restricted: without `CAP_SYS_PTRACE` only a process's own
///   descendants (or a declared debugger): the tracer's targets are
///   never its children, so this is the value that blocks
///   `process_vm_readv` of a target without the capability;
/// - 2, admin-only: only with `CAP_SYS_PTRACE`;
/// - 3, no attach: nobody, not even root, until the next boot (the value
///   cannot be lowered once set).
pub fn yama_verdict(scope: Option<u8>, ptrace_cap: bool) -> Result<String, (String, String)> {
    let Some(scope) = scope else {
        return Ok("Yama not active (classic ptrace rules)".to_owned());
    };
    let detail = format!("kernel.yama.ptrace_scope = {scope}");
    match scope {
        0 => Ok(format!("{detail} (classic ptrace rules)")),
        1 | 2 if ptrace_cap => Ok(format!("{detail}, and CAP_SYS_PTRACE is held")),
        1 => Err((
            format!("{detail}: without CAP_SYS_PTRACE only a process's own children can be read, and targets are not the tracer's children"),
            "grant CAP_SYS_PTRACE (see the capabilities check) or run as root; or, on a host you own, sudo sysctl kernel.yama.ptrace_scope=0".to_owned(),
        )),
        2 => Err((
            format!("{detail}: only processes with CAP_SYS_PTRACE may read other processes"),
            "grant CAP_SYS_PTRACE (see the capabilities check) or run as root".to_owned(),
        )),
        _ => Err((
            format!("{detail}: no process may read another's memory, not even root"),
            "the value cannot be lowered until a reboot: set kernel.yama.ptrace_scope = 2 (or less) in /etc/sysctl.d/ and reboot".to_owned(),
        )),
    }
}

/// Whether the process sees the host's PID namespace (`ns` the inode of
/// `/proc/self/ns/pid`; `None` when it cannot be read: assumed to).
#[must_use]
pub fn in_host_pid_namespace(ns: Option<u64>) -> bool {
    ns.is_none_or(|i| i == INIT_PID_NS_INO)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "Name:\tmapleak-trace\nCapInh:\t0000000000000000\nCapPrm:\t000001ffffffffff\nCapEff:\t000000c000080004\nCapBnd:\t000001ffffffffff\n";

    #[test]
    fn cap_eff_is_parsed_and_read() {
        let m = parse_cap_eff(STATUS).unwrap();
        // BPF (39), PERFMON (38), SYS_PTRACE (19), DAC_READ_SEARCH (2).
        assert_eq!(m, (1 << 39) | (1 << 38) | (1 << 19) | (1 << 2));
        assert!(missing_for_tracing(m).is_empty());
        assert!(reads_any_file(m));
        assert_eq!(parse_cap_eff("Name: x\n"), None);
        assert_eq!(parse_cap_eff("CapEff:\tzz\n"), None);
        assert!(!has(u64::MAX, 64), "no capability 64");
    }

    #[test]
    fn missing_capabilities_are_named() {
        assert_eq!(
            missing_for_tracing(0),
            ["CAP_BPF", "CAP_PERFMON", "CAP_SYS_PTRACE"]
        );
        // CAP_SYS_ADMIN stands in for BPF and PERFMON, not for SYS_PTRACE.
        assert_eq!(missing_for_tracing(1 << CAP_SYS_ADMIN), ["CAP_SYS_PTRACE"]);
        assert_eq!(
            missing_for_tracing((1 << CAP_BPF) | (1 << CAP_SYS_PTRACE)),
            ["CAP_PERFMON"]
        );
        assert!(!reads_any_file(1 << CAP_SYS_PTRACE));
        assert!(reads_any_file(1 << CAP_DAC_OVERRIDE));
        let d = describe_caps(1 << CAP_BPF);
        assert!(
            d.contains("CAP_BPF yes") && d.contains("CAP_PERFMON no"),
            "{d}"
        );
    }

    #[test]
    fn the_fix_fits_where_the_tracer_runs() {
        let host = grant(&["CAP_BPF", "CAP_SYS_PTRACE"], false);
        assert!(host.contains("setcap cap_bpf,cap_sys_ptrace+ep"), "{host}");
        let pod = grant(&["CAP_BPF", "CAP_SYS_PTRACE"], true);
        assert!(pod.contains("capabilities.add: [BPF, SYS_PTRACE]"), "{pod}");
        assert!(pod.contains("--cap-add BPF --cap-add SYS_PTRACE"), "{pod}");
    }

    #[test]
    fn namespace_links_are_parsed() {
        assert_eq!(parse_ns_inode("pid:[4026531836]"), Some(INIT_PID_NS_INO));
        assert_eq!(parse_ns_inode("pid:[4026532201]\n"), Some(4_026_532_201));
        assert_eq!(parse_ns_inode("pid:4026531836"), None);
        assert_eq!(parse_ns_inode("pid:[x]"), None);
        assert!(in_host_pid_namespace(Some(INIT_PID_NS_INO)));
        assert!(!in_host_pid_namespace(Some(4_026_532_201)));
        assert!(in_host_pid_namespace(None));
    }

    #[test]
    fn yama_scope_1_blocks_only_without_the_capability() {
        assert!(yama_verdict(None, false).is_ok());
        assert!(yama_verdict(Some(0), false).is_ok());
        assert!(yama_verdict(Some(1), true).is_ok());
        let (detail, fix) = yama_verdict(Some(1), false).unwrap_err();
        assert!(detail.contains("children"), "{detail}");
        assert!(fix.contains("CAP_SYS_PTRACE"), "{fix}");
        assert!(yama_verdict(Some(2), true).is_ok());
        assert!(yama_verdict(Some(2), false).is_err());
        // 3 blocks everyone, and the fix is a reboot.
        let (_, fix) = yama_verdict(Some(3), true).unwrap_err();
        assert!(fix.contains("reboot"), "{fix}");
    }
}
