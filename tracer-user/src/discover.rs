//! `discover`: a pid in, a [`Target`] out: the executable as the kernel sees
//! it (`/proc/PID/exe`, which also works across mount namespaces and after
//! the file was replaced on disk), the start time (to notice pid reuse) and
//! the load bias (PIE).
use std::{fs, os::unix::fs::MetadataExt, path::PathBuf};

use thiserror::Error;

/// Errors finding a target process.
#[derive(Debug, Error)]
pub enum DiscoverError {
    /// No such process.
    #[error("no process with pid {pid}: check the pid (`pgrep -f <name>`)")]
    NoSuchPid {
        /// The pid.
        pid: u32,
    },
    /// `/proc/PID/exe` could not be read.
    #[error("cannot read /proc/{pid}/exe: {cause} ({})", exe_hint())]
    Exe {
        /// The pid.
        pid: u32,
        /// The cause (in the message, not a source: shown once).
        cause: std::io::Error,
    },
    /// The binary is not mapped in the process.
    #[error("pid {pid}: its executable is not mapped (kernel thread or exiting process?)")]
    NotMapped {
        /// The pid.
        pid: u32,
    },
}

/// What to do when another process's executable cannot be read: as root,
/// a container or a security module stands in the way, not privileges.
fn exe_hint() -> &'static str {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        "as root: a container without the host's PID namespace, or a security module (AppArmor, SELinux, Yama), denies it; run the tracer in the target's PID namespace or relax the policy"
    } else {
        "tracing another user's process needs root or CAP_SYS_PTRACE"
    }
}

/// A running process to trace.
#[derive(Debug, Clone)]
pub struct Target {
    /// Process id.
    pub pid: u32,
    /// `/proc/PID/exe`: opens the very inode the process runs.
    pub exe: PathBuf,
    /// Where the link points, for display (may not exist in our namespace).
    pub exe_display: String,
    /// Start time in clock ticks since boot (field 22 of `/proc/PID/stat`).
    pub start_time: u64,
    /// Device and inode of the executable.
    pub dev_ino: (u64, u64),
    /// A pidfd of the process (Linux 5.3+; `None` on older kernels): it
    /// says when this very process exited, whatever became of its pid.
    pub pidfd: Option<PidFd>,
}

/// A pidfd: a handle on one process that a reused pid cannot fool.
#[derive(Debug, Clone)]
pub struct PidFd(std::sync::Arc<std::os::fd::OwnedFd>);

impl PidFd {
    /// Opens a pidfd for `pid` (`None` when the kernel has no pidfd_open).
    #[must_use]
    pub fn open(pid: u32) -> Option<Self> {
        use std::os::fd::FromRawFd as _;
        // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
        let fd = i32::try_from(fd).ok().filter(|&fd| fd >= 0)?;
        // SAFETY: the kernel just returned this descriptor; we own it.
        Some(Self(std::sync::Arc::new(unsafe {
            std::os::fd::OwnedFd::from_raw_fd(fd)
        })))
    }

    /// Whether the process has exited (a zombie has).
    #[must_use]
    pub fn exited(&self) -> bool {
        use std::os::fd::AsRawFd as _;
        let mut p = libc::pollfd {
            fd: self.0.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, no wait.
        let n = unsafe { libc::poll(&raw mut p, 1, 0) };
        n != 0 && (n < 0 || p.revents != 0)
    }

    /// A second descriptor of the same pidfd, to wait on (it becomes
    /// readable when the process exits).
    pub fn try_clone_fd(&self) -> std::io::Result<std::os::fd::OwnedFd> {
        self.0.try_clone()
    }
}

impl Target {
    /// Finds process `pid`.
    pub fn discover(pid: u32) -> Result<Self, DiscoverError> {
        let proc = PathBuf::from(format!("/proc/{pid}"));
        if !proc.exists() {
            return Err(DiscoverError::NoSuchPid { pid });
        }
        let start_time = start_time_of(pid).ok_or(DiscoverError::NoSuchPid { pid })?;
        let exe = proc.join("exe");
        let meta = fs::metadata(&exe).map_err(|cause| DiscoverError::Exe { pid, cause })?;
        let exe_display = fs::read_link(&exe)
            .map(|p| p.display().to_string())
            .map_err(|cause| DiscoverError::Exe { pid, cause })?;
        // Opened after the start time was read, and checked against it: the
        // pidfd is of the process that start time belongs to.
        let pidfd = PidFd::open(pid);
        if pidfd.is_some() && start_time_of(pid) != Some(start_time) {
            return Err(DiscoverError::NoSuchPid { pid });
        }
        Ok(Self {
            pid,
            exe,
            exe_display,
            start_time,
            dev_ino: (meta.dev(), meta.ino()),
            pidfd,
        })
    }

    /// True while the same process (not a reused pid) is alive.
    #[must_use]
    pub fn alive(&self) -> bool {
        if let Some(fd) = &self.pidfd {
            return !fd.exited();
        }
        // One read of /proc/PID/stat: the tracer asks often.
        let Ok(stat) = fs::read_to_string(format!("/proc/{}/stat", self.pid)) else {
            return false;
        };
        parse_start_time(&stat) == Some(self.start_time) && !stat_is_zombie(&stat)
    }

    /// Load bias: run-time address minus link-time address, found from the
    /// mapping that holds `file_offset` of the executable. `link_va` is the
    /// link-time address of the byte at `file_offset`.
    pub fn load_bias(&self, file_offset: u64, link_va: u64) -> Result<u64, DiscoverError> {
        let maps = fs::read_to_string(format!("/proc/{}/maps", self.pid)).map_err(|cause| {
            DiscoverError::Exe {
                pid: self.pid,
                cause,
            }
        })?;
        for m in parse_maps(&maps) {
            if m.inode != self.dev_ino.1 {
                continue;
            }
            if file_offset >= m.offset && file_offset < m.offset + (m.end - m.start) {
                let runtime = m.start + (file_offset - m.offset);
                return Ok(runtime.wrapping_sub(link_va));
            }
        }
        Err(DiscoverError::NotMapped { pid: self.pid })
    }
}

fn start_time_of(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_start_time(&stat)
}

fn stat_is_zombie(s: &str) -> bool {
    s.rfind(')')
        .and_then(|i| s.get(i + 2..i + 3))
        .is_none_or(|c| c == "Z" || c == "X")
}

/// Field 22 of `/proc/PID/stat`; the command name (field 2) may hold spaces
/// and parentheses, so count from the last `)`.
#[must_use]
pub fn parse_start_time(stat: &str) -> Option<u64> {
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// One line of `/proc/PID/maps`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    /// Start address.
    pub start: u64,
    /// End address.
    pub end: u64,
    /// Permissions, e.g. `r-xp`.
    pub perms: String,
    /// File offset.
    pub offset: u64,
    /// Inode.
    pub inode: u64,
    /// Path, if any.
    pub path: Option<String>,
}

/// Parses `/proc/PID/maps`, skipping malformed lines.
#[must_use]
pub fn parse_maps(text: &str) -> Vec<Mapping> {
    text.lines()
        .filter_map(|line| {
            let mut it = line.splitn(6, char::is_whitespace);
            let range = it.next()?;
            let perms = it.next()?.to_owned();
            let offset = u64::from_str_radix(it.next()?, 16).ok()?;
            let _dev = it.next()?;
            let inode = it.next()?.parse().ok()?;
            let path = it
                .next()
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(str::to_owned);
            let (s, e) = range.split_once('-')?;
            Some(Mapping {
                start: u64::from_str_radix(s, 16).ok()?,
                end: u64::from_str_radix(e, 16).ok()?,
                perms,
                offset,
                inode,
                path,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The start time is found even when the command name has spaces and `)`.
    #[test]
    fn start_time_with_odd_comm() {
        let stat =
            "123 (a b) c) S 1 123 123 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 5 0 987654 1000 10";
        assert_eq!(parse_start_time(stat), Some(987_654));
        assert_eq!(parse_start_time("garbage"), None);
    }

    /// Maps lines with deleted files, spaces and no path are parsed.
    #[test]
    fn maps_lines() {
        let text = "00400000-00452000 r-xp 00000000 fd:01 1234 /usr/bin/my app (deleted)\n\
                    7ffd0000-7ffd1000 rw-p 00000000 00:00 0 \n\
                    bogus\n";
        let m = parse_maps(text);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].path.as_deref(), Some("/usr/bin/my app (deleted)"));
        assert_eq!(m[0].inode, 1234);
        assert_eq!(m[1].path, None);
    }

    /// Our own process is discovered and alive.
    #[test]
    fn discover_self() {
        let t = Target::discover(std::process::id()).unwrap();
        assert!(t.alive());
        assert!(matches!(
            Target::discover(u32::MAX - 1),
            Err(DiscoverError::NoSuchPid { .. })
        ));
    }
}
