//! CPU and memory accounting, from /proc and getrusage: the machine's
//! busy time, this process's reaped children, and a live child's CPU time,
//! RSS and state.
use std::fs;

/// Busy CPU seconds of the whole machine since boot: the CPUs times the
/// uptime, less their idle and iowait time (/proc/stat). Idle time is
/// measured precisely (tickless idle); the busy columns are sampled at the
/// timer tick, and on this VM they come out a few % short of the processes'
/// own times (which, besides, include the softirq work done while they
/// ran): with them, a target that kept both CPUs busy left "other
/// processes" below zero.
pub(super) fn system_busy_s() -> Option<f64> {
    let stat = fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let f: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .take(5)
        .filter_map(|x| x.parse().ok())
        .collect();
    let ncpu = stat
        .lines()
        .filter(|l| {
            l.strip_prefix("cpu")
                .is_some_and(|r| r.starts_with(|c: char| c.is_ascii_digit()))
        })
        .count();
    let uptime: f64 = fs::read_to_string("/proc/uptime")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (f.len() == 5 && hz > 0 && ncpu > 0).then(|| ncpu as f64 * uptime - (f[3] + f[4]) / hz as f64)
}

/// CPU seconds of this process's reaped children.
pub(super) fn children_cpu_s() -> f64 {
    let (u, s) = children_usage();
    u + s
}

/// System CPU seconds of this process's reaped children.
pub(super) fn children_sys_s() -> f64 {
    children_usage().1
}

/// User and system CPU seconds of this process's reaped children.
fn children_usage() -> (f64, f64) {
    // SAFETY: an all-zero rusage is a valid value for getrusage to fill.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to a rusage.
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &raw mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (tv(ru.ru_utime), tv(ru.ru_stime))
}

/// Whether a child has exited (is a zombie not yet reaped), or is gone.
pub(super) fn proc_exited(pid: u32) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return true;
    };
    let state = stat
        .rfind(')')
        .and_then(|i| stat.get(i + 1..))
        .and_then(|r| r.split_whitespace().next());
    matches!(state, Some("Z" | "X"))
}

/// Resident set of a live process, from /proc/PID/status.
pub(super) fn proc_rss_bytes(pid: u32) -> Option<u64> {
    let st = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: u64 = st
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// Peak resident set of a live process (VmHWM), from /proc/PID/status.
pub(super) fn proc_hwm_bytes(pid: u32) -> Option<u64> {
    let st = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: u64 = st
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// CPU seconds a process has run (all its threads, live and exited), to
/// the nanosecond: its CPU-time clock (`clock_getcpuclockid`), else user +
/// system from /proc/PID/stat. The latter is in clock ticks (10 ms): a
/// process given a twentieth of a CPU runs 50 of them in a 10 s phase, so
/// a tick is 2 % of its CPU there, more than the losses measured.
pub(super) fn proc_cpu_s(pid: u32) -> Option<f64> {
    clock_cpu_s(pid).or_else(|| stat_cpu_s(pid))
}

/// A process's CPU-time clock (the scheduler's runtime of its whole thread
/// group), in seconds.
fn clock_cpu_s(pid: u32) -> Option<f64> {
    let pid = libc::pid_t::try_from(pid).ok()?;
    let mut id: libc::clockid_t = 0;
    // SAFETY: a valid pointer to a clockid_t.
    if unsafe { libc::clock_getcpuclockid(pid, &raw mut id) } != 0 {
        return None;
    }
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid pointer to a timespec.
    if unsafe { libc::clock_gettime(id, &raw mut ts) } != 0 {
        return None;
    }
    Some(ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9)
}

/// User + system CPU seconds of a process, from /proc/PID/stat.
fn stat_cpu_s(pid: u32) -> Option<f64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces): state is
    // field 3, utime 14, stime 15.
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (hz > 0).then(|| ticks / hz as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The clock reads this process's CPU to the nanosecond, and agrees
    /// with /proc within a few ticks; a pid that does not exist reads none.
    #[test]
    fn a_process_cpu_clock_is_precise() {
        let pid = std::process::id();
        let t0 = clock_cpu_s(pid).expect("own CPU clock");
        let mut x = 0u64;
        while clock_cpu_s(pid).unwrap() - t0 < 0.05 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let (c, st) = (clock_cpu_s(pid).unwrap(), stat_cpu_s(pid).unwrap());
        assert!(c - t0 >= 0.05);
        assert!((c - st).abs() < 0.1, "clock {c} s, /proc {st} s");
        assert_eq!(proc_cpu_s(u32::MAX), None);
    }
}
