//! `app::fleet`: node-wide mode (`--all`). Finds the Go processes of the
//! host that the filters select, and decides once per executable (device
//! and inode) whether it can be traced: a non-Go or refused binary is never
//! inspected again, and each refusal is reported once on stderr.
//!
//! New processes are found as they exec: the kernel reports each exec on
//! the host ([`crate::bpf::Tracer::watch_execs`]) and only that process is
//! checked. All of `/proc` is scanned at the start, when an inspection
//! finds a new traceable executable (its processes wait for it), and every
//! [`FULL_SCAN_EVERY`] in case an exec report was lost; every
//! [`SCAN_EVERY`] instead when execs cannot be watched.
//!
//! What checking a process costs: a `readlink` of its `/proc/PID/exe`
//! (kernel threads fail it at once) and, when the filters keep it, a `stat`
//! of it. A full scan does that for every process not traced yet after one
//! `readdir` of `/proc`: about 1 ms a scan of 100 processes here, and ten
//! times that on a node running a thousand. A new executable is inspected
//! once on a worker thread (its ELF headers and build info; a Go binary's
//! pclntab and DWARF too), never in the loop.
use std::{
    collections::{HashMap, HashSet},
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::task::JoinSet;

use crate::{
    inspect::{BinaryInfo, InspectError},
    plan::ProbePlan,
};

/// How often all of `/proc` is scanned for new processes when execs
/// cannot be watched.
pub(super) const SCAN_EVERY: Duration = Duration::from_secs(1);

/// How often all of `/proc` is scanned while execs are watched: a
/// process whose exec report was lost (the ring buffer full) is found
/// this late.
pub(super) const FULL_SCAN_EVERY: Duration = Duration::from_secs(30);

/// Processes kept to check after their exec; beyond this (an exec storm
/// between two turns of the loop) the next look is a full scan, which
/// costs no more than checking them one by one.
const MAX_EXEC_PIDS: usize = 4096;

/// What the next look for new processes covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ScanKind {
    /// Every process in `/proc`.
    Full,
    /// Only the processes that ran exec since the last look.
    Execs,
}

/// How long a process that could not be attached waits before it is tried
/// again (at the next full scan after that), doubled at each further
/// failure up to [`RETRY_MAX`]: a failure may pass (a process still
/// starting, a kernel short of memory for a moment, a limit on open files
/// reached while many processes started at once), and a node agent runs
/// for weeks.
const RETRY_FIRST: Duration = Duration::from_secs(30);
const RETRY_MAX: Duration = Duration::from_secs(30 * 60);

/// The wait after the `failures`-th failure in a row.
fn retry_wait(failures: u32) -> Duration {
    RETRY_FIRST
        .saturating_mul(1 << failures.saturating_sub(1).min(16))
        .min(RETRY_MAX)
}

/// A process that could not be attached.
#[derive(Debug)]
struct Failed {
    /// Not tried again before this.
    retry_at: Instant,
    /// Failures in a row.
    failures: u32,
    /// The last one's reason, as reported (a reason reported once is not
    /// repeated at each retry).
    why: String,
}

/// How often the loop looks for finished inspections while some run.
const INSPECTION_POLL: Duration = Duration::from_millis(100);

/// Processes traced at once (the kernel side's per-process configuration
/// holds this many).
pub(super) const MAX_SESSIONS: usize = tracer_common::MAX_PROCS as usize;

/// Traceable executables whose inspection is kept while none of their
/// processes is traced (a program started again and again is not parsed
/// every time); beyond this the oldest are dropped (and parsed again when
/// one of their processes appears).
const IDLE_BINARIES: usize = 8;

/// Executables remembered as not traceable; beyond this the memory is
/// cleared (and they are inspected, and reported, again).
const MAX_REFUSED: usize = 65_536;

/// `--all` and its filters.
#[derive(Debug, Clone, Default)]
pub struct FleetOptions {
    /// `--exe GLOB`: trace only executables whose path matches one of these
    /// (all of them when empty).
    pub include: Vec<String>,
    /// `--exclude-exe GLOB`: never those whose path matches one of these.
    pub exclude: Vec<String>,
}

impl FleetOptions {
    /// Whether the executable at `path` is selected by the filters.
    #[must_use]
    pub fn selects(&self, path: &str) -> bool {
        (self.include.is_empty() || self.include.iter().any(|g| glob_path(g, path)))
            && !self.exclude.iter().any(|g| glob_path(g, path))
    }
}

/// `glob` against an executable path: the whole path, or, for a pattern
/// without `/`, its file name too (`--exe 'server*'` selects
/// `/usr/bin/server-a`).
#[must_use]
pub fn glob_path(glob: &str, path: &str) -> bool {
    if glob_match(glob, path) {
        return true;
    }
    !glob.contains('/') && glob_match(glob, path.rsplit('/').next().unwrap_or(path))
}

/// Shell-style matching of the whole of `text`: `*` any run of characters
/// (`/` included), `?` one character, `[abc]`, `[a-z]` and `[!a-z]` one of
/// (or none of) a set, `\x` the character x. A malformed set (`[` without
/// `]`) matches a literal `[`.
#[must_use]
pub fn glob_match(glob: &str, text: &str) -> bool {
    let g: Vec<char> = glob.chars().collect();
    let t: Vec<char> = text.chars().collect();
    // Iterative, with one backtrack point for the last `*`: linear in
    // practice, never exponential.
    let (mut gi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if gi < g.len() {
            match g[gi] {
                '*' => {
                    star = Some((gi, ti));
                    gi += 1;
                    continue;
                }
                '?' => {
                    gi += 1;
                    ti += 1;
                    continue;
                }
                '[' => {
                    if let Some((hit, next)) = class(&g, gi, t[ti]) {
                        if hit {
                            gi = next;
                            ti += 1;
                            continue;
                        }
                    } else if t[ti] == '[' {
                        gi += 1;
                        ti += 1;
                        continue;
                    }
                }
                '\\' if gi + 1 < g.len() => {
                    if g[gi + 1] == t[ti] {
                        gi += 2;
                        ti += 1;
                        continue;
                    }
                }
                c => {
                    if c == t[ti] {
                        gi += 1;
                        ti += 1;
                        continue;
                    }
                }
            }
        }
        match star {
            Some((sg, st)) => {
                gi = sg + 1;
                ti = st + 1;
                star = Some((sg, st + 1));
            }
            None => return false,
        }
    }
    g[gi..].iter().all(|&c| c == '*')
}

/// The set starting at `g[at]` (`[`): whether `c` is in it, and the index
/// after its `]`; `None` when there is no closing `]`.
fn class(g: &[char], at: usize, c: char) -> Option<(bool, usize)> {
    let mut i = at + 1;
    let negate = matches!(g.get(i), Some('!' | '^'));
    if negate {
        i += 1;
    }
    let mut hit = false;
    let mut first = true;
    while i < g.len() {
        if g[i] == ']' && !first {
            return Some((hit != negate, i + 1));
        }
        first = false;
        if i + 2 < g.len() && g[i + 1] == '-' && g[i + 2] != ']' {
            if g[i] <= c && c <= g[i + 2] {
                hit = true;
            }
            i += 3;
        } else {
            if g[i] == c {
                hit = true;
            }
            i += 1;
        }
    }
    None
}

/// Why an executable cannot be traced.
struct Refusal {
    /// Not a Go program at all (counted, not named, without `--exe`).
    not_go: bool,
    why: String,
}

/// An inspection's outcome: the executable (device and inode), its path
/// as shown, and the binary or why it cannot be traced.
type Inspected = ((u64, u64), String, Result<BinaryInfo, Refusal>);

/// What was decided about one executable.
enum Decision {
    /// A Go program that can be traced.
    Go(Arc<BinaryInfo>, Instant),
    /// A Go program that can be traced, whose inspection was dropped.
    GoDropped,
    /// Not traceable, and why (already reported).
    Refused,
}

/// A process to attach now.
pub(super) struct Found {
    pub(super) pid: u32,
    /// Device and inode of the executable inspected.
    pub(super) dev_ino: (u64, u64),
    pub(super) info: Arc<BinaryInfo>,
}

/// The node-wide scanner's state.
pub(super) struct Fleet {
    pub(super) opts: FleetOptions,
    /// By device and inode of the executable.
    decisions: HashMap<(u64, u64), Decision>,
    /// Inspections in progress, by device and inode.
    inspecting: JoinSet<Inspected>,
    pending: HashSet<(u64, u64)>,
    /// Processes that could not be attached, until they are gone, attached
    /// or run another program.
    failed_pids: HashMap<u32, Failed>,
    /// Non-Go executables seen (reported as one count without filters).
    non_go: u64,
    non_go_reported: u64,
    /// The session cap was reached for these (reported once).
    over_cap: HashSet<u32>,
    /// When all of `/proc` was last scanned.
    last_full: Option<Instant>,
    /// An inspection found a traceable executable since the last scan.
    fresh: bool,
    /// Execs are reported by the kernel ([`Fleet::exec_seen`]).
    execs_watched: bool,
    /// Processes that ran exec since the last look.
    exec_pids: HashSet<u32>,
    /// More than [`MAX_EXEC_PIDS`] ran exec since the last look.
    exec_overflow: bool,
    own_pid: u32,
    /// Full scans, processes checked after an exec, and the time both
    /// took (the cost of `--all`).
    full_scans: u64,
    exec_checks: u64,
    scan_time: Duration,
}

impl Fleet {
    /// `execs_watched`: the kernel reports execs (see the module's doc).
    pub(super) fn new(opts: FleetOptions, execs_watched: bool) -> Self {
        Self {
            opts,
            decisions: HashMap::new(),
            inspecting: JoinSet::new(),
            pending: HashSet::new(),
            failed_pids: HashMap::new(),
            non_go: 0,
            non_go_reported: 0,
            over_cap: HashSet::new(),
            last_full: None,
            fresh: false,
            execs_watched,
            exec_pids: HashSet::new(),
            exec_overflow: false,
            own_pid: std::process::id(),
            full_scans: 0,
            exec_checks: 0,
            scan_time: Duration::ZERO,
        }
    }

    /// The looks for new processes so far.
    pub(super) fn counts(&self) -> crate::metrics::ScanCounts {
        crate::metrics::ScanCounts {
            full: self.full_scans,
            execs: self.exec_checks,
            seconds: self.scan_time.as_secs_f64(),
        }
    }

    /// Process `pid` ran exec (as the kernel reported it; 0: a process
    /// outside the tracer's PID namespace): it is checked at the next look.
    pub(super) fn exec_seen(&mut self, pid: u32) {
        if pid == 0 || pid == self.own_pid {
            return;
        }
        // It runs another program now: one that could not be attached
        // before may be traceable.
        self.failed_pids.remove(&pid);
        if self.exec_pids.len() >= MAX_EXEC_PIDS {
            self.exec_overflow = true;
            self.exec_pids.clear();
        } else if !self.exec_overflow {
            self.exec_pids.insert(pid);
        }
    }

    /// How often all of `/proc` is scanned.
    fn full_every(&self) -> Duration {
        if self.execs_watched {
            FULL_SCAN_EVERY
        } else {
            SCAN_EVERY
        }
    }

    /// Which look is due, if any: a full scan at the start, every
    /// [`Fleet::full_every`], at once when an inspection found a traceable
    /// executable (its processes wait for it) and after an exec storm; else
    /// a check of the processes that ran exec since the last look.
    pub(super) fn due(&mut self, now: Instant) -> Option<ScanKind> {
        self.collect();
        let every = self.full_every();
        if std::mem::take(&mut self.fresh)
            || self.exec_overflow
            || self
                .last_full
                .is_none_or(|t| now.duration_since(t) >= every)
        {
            Some(ScanKind::Full)
        } else if self.exec_pids.is_empty() {
            None
        } else {
            Some(ScanKind::Execs)
        }
    }

    /// How long the loop may sleep before a look is due; while executables
    /// are being inspected, [`INSPECTION_POLL`] (a finished inspection's
    /// processes wait for the next scan). Exec reports do not shorten it:
    /// the loop drains them at least every 500 ms and checks them then.
    pub(super) fn scan_wait(&self, now: Instant) -> Duration {
        let every = self.full_every();
        let next = self.last_full.map_or(Duration::ZERO, |t| {
            every.saturating_sub(now.duration_since(t))
        });
        if self.inspecting.is_empty() {
            next
        } else {
            next.min(INSPECTION_POLL)
        }
    }

    /// A process that could not be attached at `now`: tried again after
    /// [`retry_wait`] (each new reason reported once).
    pub(super) fn attach_failed(&mut self, pid: u32, why: &anyhow::Error, now: Instant) {
        let why = format!("{why:#}");
        let f = self.failed_pids.entry(pid).or_insert_with(|| Failed {
            retry_at: now,
            failures: 0,
            why: String::new(),
        });
        f.failures += 1;
        let wait = retry_wait(f.failures);
        f.retry_at = now + wait;
        if f.why != why {
            eprintln!(
                "mapleak-trace: --all: pid {pid} skipped: {why}; tried again in {} s, then less often (at least every {} min)",
                wait.as_secs(),
                RETRY_MAX.as_secs() / 60
            );
            f.why = why;
        }
    }

    /// Process `pid` is traced now: a failure before counts no more.
    pub(super) fn attached(&mut self, pid: u32) {
        self.failed_pids.remove(&pid);
    }

    /// Whether `pid` could not be attached and is not to be tried again
    /// yet at `now`.
    fn waits_for_retry(&self, pid: u32, now: Instant) -> bool {
        self.failed_pids.get(&pid).is_some_and(|f| now < f.retry_at)
    }

    /// Looks for new processes (all of `/proc`, or those that ran exec):
    /// the processes to attach now (`traced` says which are traced
    /// already; `room` how many more may be). Collects finished
    /// inspections first; a new executable is inspected on a worker and
    /// its processes attached at a later scan.
    pub(super) fn scan(
        &mut self,
        kind: ScanKind,
        traced: &dyn Fn(u32) -> bool,
        room: usize,
        clocks: &Arc<crate::budget::WorkerClocks>,
    ) -> Vec<Found> {
        let t0 = Instant::now();
        self.collect();
        let mut out = Vec::new();
        match kind {
            ScanKind::Full => {
                self.last_full = Some(t0);
                // Every one of them is in /proc too.
                self.exec_pids.clear();
                self.exec_overflow = false;
                let Ok(dir) = std::fs::read_dir("/proc") else {
                    return out;
                };
                let mut present = HashSet::new();
                for e in dir.flatten() {
                    let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok())
                    else {
                        continue;
                    };
                    present.insert(pid);
                    self.check(pid, traced, room, clocks, t0, &mut out);
                }
                self.failed_pids.retain(|p, _| present.contains(p));
                self.over_cap.retain(|p| present.contains(p));
                self.full_scans += 1;
            }
            ScanKind::Execs => {
                let mut pids: Vec<u32> = self.exec_pids.drain().collect();
                pids.sort_unstable();
                for pid in pids {
                    self.exec_checks += 1;
                    self.check(pid, traced, room, clocks, t0, &mut out);
                }
            }
        }
        if self.opts.include.is_empty() && self.non_go > self.non_go_reported {
            eprintln!(
                "mapleak-trace: --all: {} executables are not Go programs and are skipped (--exe GLOB selects executables; each one given by --exe is reported by name)",
                self.non_go
            );
            self.non_go_reported = self.non_go;
        }
        self.scan_time += t0.elapsed();
        out
    }

    /// Checks process `pid`: adds it to `out` when its executable is a
    /// traceable Go program the filters select, or starts inspecting an
    /// executable not seen before.
    fn check(
        &mut self,
        pid: u32,
        traced: &dyn Fn(u32) -> bool,
        room: usize,
        clocks: &Arc<crate::budget::WorkerClocks>,
        t0: Instant,
        out: &mut Vec<Found>,
    ) {
        if pid == self.own_pid || traced(pid) || self.waits_for_retry(pid, t0) {
            return;
        }
        let exe = PathBuf::from(format!("/proc/{pid}/exe"));
        // Kernel threads have no executable; a process that exited since
        // the readdir (or its exec) neither.
        let Ok(path) = std::fs::read_link(&exe) else {
            return;
        };
        let shown = path.display().to_string();
        if !self.opts.selects(&shown) {
            return;
        }
        let key = match std::fs::metadata(&exe) {
            Ok(m) => {
                use std::os::unix::fs::MetadataExt as _;
                (m.dev(), m.ino())
            }
            Err(e) => {
                if e.kind() == std::io::ErrorKind::PermissionDenied {
                    self.attach_failed(
                        pid,
                        &anyhow::anyhow!(
                            "cannot read /proc/{pid}/exe ({shown}): {e}; run as root or with CAP_SYS_PTRACE"
                        ),
                        t0,
                    );
                }
                return;
            }
        };
        let known = match self.decisions.get_mut(&key) {
            Some(Decision::Refused) => return,
            Some(Decision::Go(info, used)) => {
                *used = t0;
                Some(info.clone())
            }
            Some(Decision::GoDropped) | None => None,
        };
        if let Some(info) = known {
            if out.len() < room {
                out.push(Found {
                    pid,
                    dev_ino: key,
                    info,
                });
            } else if self.over_cap.insert(pid) {
                eprintln!(
                    "mapleak-trace: --all: pid {pid} ({shown}) not traced: {MAX_SESSIONS} processes are traced at once (narrow the selection with --exe or --exclude-exe)"
                );
            }
        } else if self.pending.insert(key) {
            self.decisions.remove(&key);
            let clocks = clocks.clone();
            self.inspecting.spawn_blocking(move || {
                // Start-up work: debited to no process.
                let r = clocks
                    .run_unbudgeted(|| BinaryInfo::open_executable(&exe))
                    .map_err(|e| Refusal {
                        not_go: matches!(
                            e,
                            InspectError::NotGo { .. } | InspectError::NotElf { .. }
                        ),
                        why: format!("not a traceable Go program: {e}"),
                    })
                    .and_then(|info| match ProbePlan::build(&info) {
                        Ok(_) => Ok(info),
                        Err(e) => Err(Refusal {
                            not_go: false,
                            why: format!("cannot be traced: {e}"),
                        }),
                    });
                (key, shown, r)
            });
        }
    }

    /// Takes the finished inspections into the decisions, reporting each
    /// refusal once.
    fn collect(&mut self) {
        while let Some(joined) = self.inspecting.try_join_next() {
            let Ok((key, shown, r)) = joined else {
                continue;
            };
            self.pending.remove(&key);
            if self.decisions.len() >= MAX_REFUSED {
                self.decisions.retain(|_, d| matches!(d, Decision::Go(..)));
            }
            match r {
                Ok(info) => {
                    self.decisions
                        .insert(key, Decision::Go(Arc::new(info), Instant::now()));
                    self.fresh = true;
                }
                Err(Refusal { not_go, why }) => {
                    if not_go && self.opts.include.is_empty() {
                        self.non_go += 1;
                    } else {
                        eprintln!("mapleak-trace: --all: {shown} skipped: {why}");
                    }
                    self.decisions.insert(key, Decision::Refused);
                }
            }
        }
    }

    /// Drops the inspections of executables none of whose processes is
    /// traced, beyond [`IDLE_BINARIES`], oldest first.
    pub(super) fn trim(&mut self) {
        let mut idle: Vec<((u64, u64), Instant)> = self
            .decisions
            .iter()
            .filter_map(|(k, d)| match d {
                Decision::Go(info, used) if Arc::strong_count(info) == 1 => Some((*k, *used)),
                _ => None,
            })
            .collect();
        if idle.len() <= IDLE_BINARIES {
            return;
        }
        idle.sort_by_key(|x| x.1);
        for (k, _) in &idle[..idle.len() - IDLE_BINARIES] {
            self.decisions.insert(*k, Decision::GoDropped);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Globs match whole paths, `*` across `/`, sets and escapes.
    #[test]
    fn glob_matches_paths() {
        assert!(glob_match("*target*", "/tmp/x/target-go1.26"));
        assert!(glob_match("/usr/bin/*", "/usr/bin/prometheus"));
        assert!(!glob_match("/usr/bin/*", "/usr/local/bin/prometheus"));
        assert!(glob_match("*", ""));
        assert!(!glob_match("?", ""));
        assert!(glob_match("a?c", "abc"));
        assert!(!glob_match("abc", "abcd"));
        assert!(glob_match("*.go*", "/a/b.go.c"));
        assert!(glob_match("[a-c]x", "bx"));
        assert!(!glob_match("[!a-c]x", "bx"));
        assert!(glob_match("[!a-c]x", "dx"));
        assert!(glob_match("\\*", "*"));
        assert!(!glob_match("\\*", "a"));
        assert!(glob_match("a[", "a["));
        assert!(glob_match("*a*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaab"));
        assert!(!glob_match("*a*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"));
    }

    /// With execs watched, the first look is a full scan, then only the
    /// processes that ran exec are checked, and all of `/proc` again after
    /// [`FULL_SCAN_EVERY`], after an inspection found a traceable
    /// executable, or after more execs than are kept.
    #[test]
    fn execs_are_checked_between_full_scans() {
        let mut f = Fleet::new(FleetOptions::default(), true);
        let t0 = Instant::now();
        assert_eq!(f.due(t0), Some(ScanKind::Full));
        assert_eq!(f.scan_wait(t0), Duration::ZERO);
        f.last_full = Some(t0);
        assert_eq!(f.due(t0), None);
        assert_eq!(f.scan_wait(t0), FULL_SCAN_EVERY);
        // Outside the tracer's PID namespace (0), or the tracer itself.
        f.exec_seen(0);
        f.exec_seen(std::process::id());
        assert_eq!(f.due(t0), None);
        // A pid that is not running: checked once, found nothing.
        let gone = u32::MAX - 1;
        f.exec_seen(gone);
        f.exec_seen(gone);
        assert_eq!(f.due(t0), Some(ScanKind::Execs));
        let clocks = Arc::new(crate::budget::WorkerClocks::default());
        let found = f.scan(ScanKind::Execs, &|_| false, 10, &clocks);
        assert!(found.is_empty());
        assert_eq!(f.counts().execs, 1);
        assert_eq!(f.counts().full, 0);
        assert_eq!(f.due(t0), None);
        // A process that could not be attached runs another program now.
        f.attach_failed(gone, &anyhow::anyhow!("refused"), t0);
        assert!(f.waits_for_retry(gone, t0));
        f.exec_seen(gone);
        assert!(!f.waits_for_retry(gone, t0));
        // An exec storm: the next look is a full scan.
        for pid in 1..=MAX_EXEC_PIDS as u32 + 1 {
            f.exec_seen(pid);
        }
        assert!(f.exec_pids.is_empty());
        assert_eq!(f.due(t0), Some(ScanKind::Full));
        f.exec_overflow = false;
        // A traceable executable inspected: its processes wait for a scan.
        f.fresh = true;
        assert_eq!(f.due(t0), Some(ScanKind::Full));
        assert_eq!(f.due(t0), None);
        assert_eq!(f.due(t0 + FULL_SCAN_EVERY), Some(ScanKind::Full));
    }

    /// A process that could not be attached is tried again after 30 s, then
    /// after twice as long at each failure, up to every 30 minutes; once
    /// attached, its failures are forgotten.
    #[test]
    fn failed_attaches_are_tried_again_less_and_less_often() {
        let mut f = Fleet::new(FleetOptions::default(), true);
        let t0 = Instant::now();
        let pid = 4242;
        assert!(!f.waits_for_retry(pid, t0));
        f.attach_failed(pid, &anyhow::anyhow!("busy"), t0);
        assert!(f.waits_for_retry(pid, t0 + RETRY_FIRST - Duration::from_millis(1)));
        assert!(!f.waits_for_retry(pid, t0 + RETRY_FIRST));
        let t1 = t0 + RETRY_FIRST;
        f.attach_failed(pid, &anyhow::anyhow!("busy"), t1);
        assert!(f.waits_for_retry(pid, t1 + RETRY_FIRST));
        assert!(!f.waits_for_retry(pid, t1 + 2 * RETRY_FIRST));
        assert_eq!(retry_wait(1), RETRY_FIRST);
        assert_eq!(retry_wait(3), 4 * RETRY_FIRST);
        assert_eq!(retry_wait(7), RETRY_MAX);
        assert_eq!(retry_wait(u32::MAX), RETRY_MAX);
        // Another pid is not held back.
        assert!(!f.waits_for_retry(pid + 1, t1));
        f.attached(pid);
        assert!(!f.waits_for_retry(pid, t1));
        // A failure after that starts from 30 s again.
        f.attach_failed(pid, &anyhow::anyhow!("busy"), t1);
        assert!(!f.waits_for_retry(pid, t1 + RETRY_FIRST));
    }

    /// Without exec reports, all of `/proc` is scanned every second.
    #[test]
    fn without_exec_reports_proc_is_scanned_every_second() {
        let mut f = Fleet::new(FleetOptions::default(), false);
        let t0 = Instant::now();
        f.last_full = Some(t0);
        assert_eq!(f.scan_wait(t0), SCAN_EVERY);
        assert_eq!(f.due(t0), None);
        assert_eq!(f.due(t0 + SCAN_EVERY), Some(ScanKind::Full));
    }

    /// A pattern without `/` also matches the file name; filters combine.
    #[test]
    fn filters_select_executables() {
        assert!(glob_path("server*", "/usr/bin/server-a"));
        assert!(!glob_path("/server*", "/usr/bin/server-a"));
        let f = FleetOptions {
            include: vec!["*svc*".into()],
            exclude: vec!["*-debug".into()],
        };
        assert!(f.selects("/opt/svc/api"));
        assert!(!f.selects("/opt/svc/api-debug"));
        assert!(!f.selects("/usr/bin/bash"));
        assert!(FleetOptions::default().selects("/anything"));
    }
}
