//! The CPU clocks the budget reads: a traced process's CPU
//! (`/proc/PID/stat`), the tracer's own, and its worker threads' while they
//! read a process's memory.
use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
    time::Instant,
};

use super::{Budget, SPLIT_WINDOW, lock_budget};

/// The CPU a traced process uses, from its `/proc/PID/stat` (utime +
/// stime), read every [`SPLIT_EVERY`] and averaged over [`SPLIT_WINDOW`].
/// The file is opened once, with the budget: a reading never comes from
/// another process that reused the pid (it fails once the process is gone).
#[derive(Debug, Default)]
pub(super) struct CpuMeter {
    stat: Option<std::fs::File>,
    /// Readings (when, CPU seconds), the oldest the newest one at least
    /// [`SPLIT_WINDOW`] old.
    samples: VecDeque<(Instant, f64)>,
}

impl CpuMeter {
    pub(super) fn open(pid: u32) -> Self {
        Self {
            stat: std::fs::File::open(format!("/proc/{pid}/stat")).ok(),
            samples: VecDeque::new(),
        }
    }

    /// CPUs the process used over the last [`SPLIT_WINDOW`] (at the first
    /// reading: since it started); `None` when unreadable.
    pub(super) fn read(&mut self, now: Instant) -> Option<f64> {
        use std::os::unix::fs::FileExt as _;
        let f = self.stat.as_ref()?;
        let mut buf = [0u8; 1024];
        let n = f.read_at(&mut buf, 0).ok()?;
        let (cpu, started) = parse_stat(buf.get(..n)?)?;
        self.samples.push_back((now, cpu));
        while self.samples.len() > 2 && now.duration_since(self.samples[1].0) >= SPLIT_WINDOW {
            self.samples.pop_front();
        }
        let (t0, c0) = self.samples[0];
        let dt = now.duration_since(t0).as_secs_f64();
        if dt > 0.0 {
            return Some(((cpu - c0) / dt).max(0.0));
        }
        // A process started within the clocks' resolution (a tick) has no
        // figure yet.
        let age = uptime_s()? - started;
        (age > 0.05).then(|| (cpu / age).max(0.0))
    }
}

/// User + system CPU seconds and start time (seconds after boot) from the
/// text of a `/proc/PID/stat`.
fn parse_stat(raw: &[u8]) -> Option<(f64, f64)> {
    let text = std::str::from_utf8(raw).ok()?;
    // The fields after the command name (which may hold spaces and `)`):
    // state is field 3, utime 14, stime 15, starttime 22.
    let rest = text.get(text.rfind(')')? + 1..)?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let num = |i: usize| f.get(i).and_then(|x| x.parse::<f64>().ok());
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (hz > 0.0).then_some(((num(11)? + num(12)?) / hz, num(19)? / hz))
}

/// Seconds since boot (`/proc/uptime`).
fn uptime_s() -> Option<f64> {
    std::fs::read_to_string("/proc/uptime")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// CPU time of this process so far (all threads), seconds.
pub(super) fn self_cpu_s() -> f64 {
    // SAFETY: getrusage fills the struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer to a rusage.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &raw mut ru) } != 0 {
        return 0.0;
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// CPU time of each of this process's threads (ns on CPU, from
/// `/proc/self/task/*/schedstat`), with its name: for
/// `MAPLEAK_DEBUG_TIMING`'s report of a check in which the tracer used
/// much CPU, not read otherwise.
pub(super) fn threads_cpu_ns() -> Vec<(u32, String, u64)> {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in dir.flatten() {
        let Some(tid) = e.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        let path = e.path();
        let ns = std::fs::read_to_string(path.join("schedstat"))
            .ok()
            .and_then(|t| t.split_whitespace().next()?.parse().ok());
        let name = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        if let Some(ns) = ns {
            out.push((tid, name.trim().to_owned(), ns));
        }
    }
    out
}

/// What each thread of `now` used since `before` (both from
/// [`threads_cpu_ns`]), the busiest first, as "name/tid: ms" (a thread
/// new since `before` counts from zero), and the part of `total_s` (the
/// process's CPU over the same time) that no thread still running used.
pub(super) fn threads_burst(
    before: &[(u32, String, u64)],
    now: &[(u32, String, u64)],
    total_s: f64,
) -> String {
    let mut used: Vec<(u64, &str, u32)> = now
        .iter()
        .map(|(tid, name, ns)| {
            let was = before.iter().find(|b| b.0 == *tid).map_or(0, |b| b.2);
            (ns.saturating_sub(was), name.as_str(), *tid)
        })
        .filter(|u| u.0 >= 1_000_000)
        .collect();
    used.sort_unstable_by_key(|u| std::cmp::Reverse(u.0));
    let seen: u64 = used.iter().map(|u| u.0).sum();
    let mut s: Vec<String> = used
        .iter()
        .map(|(ns, name, tid)| format!("{name}/{tid} {:.1} ms", *ns as f64 / 1e6))
        .collect();
    s.push(format!(
        "threads gone since {:.1} ms",
        (total_s * 1e3 - seen as f64 / 1e6).max(0.0)
    ));
    s.join(", ")
}

/// CPU clock of the calling thread (`pthread_getcpuclockid`).
fn own_thread_clock() -> Option<libc::clockid_t> {
    let mut cid: libc::clockid_t = 0;
    // SAFETY: pthread_self is the calling thread; cid is a valid out pointer.
    (unsafe { libc::pthread_getcpuclockid(libc::pthread_self(), &raw mut cid) } == 0).then_some(cid)
}

/// Seconds on CPU clock `cid` (the clock of a live thread, see
/// `WorkerClocks`); 0 if it does not read.
fn clock_s(cid: libc::clockid_t) -> f64 {
    crate::speed::cpu_clock(cid).map_or(0.0, |d| d.as_secs_f64())
}

/// The CPU clocks of the worker threads while they read a process's
/// memory, with that process's budget: the governor's thread debits each
/// one's CPU to its process as it is spent ([`Budget::own_cpu`]). A thread
/// is listed only inside [`WorkerClocks::run`] (so its clock is valid
/// whenever the list is read, under its lock).
///
/// Start-up work while others are traced (`--all`: inspecting a new
/// executable, attaching a new process) runs inside
/// [`WorkerClocks::run_unbudgeted`]: its CPU is debited to no process. It
/// is a one-off cost of each new process, and as shared CPU it went to the
/// processes already traced: the first of twenty paid for the other
/// nineteen's attaches (70 ms of its 0.05 % budget: 140 s of debt) and got
/// two samples in 20 s.
#[derive(Debug, Default)]
pub struct WorkerClocks {
    list: Mutex<Vec<WorkerClock>>,
    /// Seconds spent by unbudgeted work since the governor last took them.
    unbudgeted: Mutex<f64>,
}

/// A worker thread's CPU clock, its reading at the last debit, and the
/// budget it is debited to (`None`: none, see [`WorkerClocks`]).
type WorkerClock = (libc::clockid_t, f64, Option<Arc<Mutex<Budget>>>);

impl WorkerClocks {
    fn list(&self) -> std::sync::MutexGuard<'_, Vec<WorkerClock>> {
        self.list
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn unbudgeted(&self) -> std::sync::MutexGuard<'_, f64> {
        self.unbudgeted
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Runs `f` on this thread with its CPU debited to `budget`.
    pub fn run<T>(&self, budget: Arc<Mutex<Budget>>, f: impl FnOnce() -> T) -> T {
        self.run_as(Some(budget), f)
    }

    /// Runs `f` on this thread with its CPU debited to no process (start-up
    /// work; see [`WorkerClocks`]).
    pub fn run_unbudgeted<T>(&self, f: impl FnOnce() -> T) -> T {
        self.run_as(None, f)
    }

    fn run_as<T>(&self, budget: Option<Arc<Mutex<Budget>>>, f: impl FnOnce() -> T) -> T {
        let Some(cid) = own_thread_clock() else {
            return f();
        };
        self.list().push((cid, clock_s(cid), budget));
        let out = f();
        let mut l = self.list();
        if let Some(i) = l.iter().position(|e| e.0 == cid) {
            let (_, last, b) = l.swap_remove(i);
            let spent = (clock_s(cid) - last).max(0.0);
            drop(l);
            self.debit(b.as_ref(), spent);
        }
        out
    }

    fn debit(&self, budget: Option<&Arc<Mutex<Budget>>>, spent: f64) {
        match budget {
            Some(b) => lock_budget(b).own_cpu += spent,
            None => *self.unbudgeted() += spent,
        }
    }

    /// Debits the CPU the listed threads spent since the last call to
    /// their budgets.
    pub(super) fn collect(&self) {
        for (cid, last, b) in self.list().iter_mut() {
            let now = clock_s(*cid);
            self.debit(b.as_ref(), (now - *last).max(0.0));
            *last = now;
        }
    }

    /// The unbudgeted CPU spent since the last call.
    pub(super) fn take_unbudgeted(&self) -> f64 {
        std::mem::take(&mut *self.unbudgeted())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_burst_names_the_busiest_threads_and_what_went() {
        let t = |tid, name: &str, ns| (tid, name.to_owned(), ns);
        let before = [t(1, "main", 5_000_000), t(2, "governor", 1_000_000)];
        let now = [
            t(1, "main", 45_000_000),
            t(2, "governor", 1_500_000),
            t(3, "worker", 12_000_000),
        ];
        // 40 + 12 ms on threads still there (under 1 ms left out), 8 ms on
        // threads gone.
        assert_eq!(
            threads_burst(&before, &now, 0.060),
            "main/1 40.0 ms, worker/3 12.0 ms, threads gone since 8.0 ms"
        );
        // The process's figure below the threads' (different clocks): none.
        assert!(threads_burst(&before, &now, 0.01).ends_with("gone since 0.0 ms"));
    }

    #[test]
    fn this_processs_threads_are_read() {
        let me = threads_cpu_ns();
        assert!(
            me.iter()
                .any(|(tid, _, _)| i64::from(*tid) == i64::from(std::process::id()))
        );
    }

    #[test]
    fn stat_fields_after_the_command_name() {
        // A command name with a space and a `)`.
        let line =
            b"42 (a b) c) S 1 42 42 0 -1 4194560 100 0 0 0 250 150 0 0 20 0 3 0 5000 1000 200";
        let (cpu, started) = parse_stat(line).unwrap();
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        assert!((cpu - 400.0 / hz).abs() < 1e-9, "{cpu}");
        assert!((started - 5000.0 / hz).abs() < 1e-9, "{started}");
        assert!(parse_stat(b"42 (x) S 1").is_none());
    }

    /// Work run unbudgeted is taken apart from the budgets' own CPU.
    #[test]
    fn unbudgeted_work_is_kept_apart() {
        let clocks = WorkerClocks::default();
        let spun = clocks.run_unbudgeted(|| {
            let spin = Instant::now();
            while spin.elapsed() < Duration::from_millis(50) {
                std::hint::black_box(0u64);
            }
            7
        });
        assert_eq!(spun, 7);
        let took = clocks.take_unbudgeted();
        assert!(took > 0.01 && took < 1.0, "{took}");
        assert!(clocks.take_unbudgeted().abs() < f64::EPSILON, "taken once");
        assert!(clocks.list().is_empty());
    }

    #[test]
    fn cpu_of_this_process() {
        let mut m = CpuMeter::open(std::process::id());
        let t0 = Instant::now();
        // The first reading: since the process started (none for a process
        // younger than a clock tick).
        if let Some(first) = m.read(t0) {
            assert!(first.is_finite() && first >= 0.0, "{first}");
        }
        let spin = Instant::now();
        while spin.elapsed() < Duration::from_millis(200) {
            std::hint::black_box(0u64);
        }
        let later = m.read(Instant::now()).unwrap();
        // About one CPU while it spun (ticks are coarse: loosely).
        assert!(later.is_finite() && (0.0..=4.0).contains(&later), "{later}");
        // Gone: no reading.
        assert!(CpuMeter::open(u32::MAX).read(t0).is_none());
    }
}
