//! `app::fleet`: node-wide mode (`--all`). Finds the Go processes of the
//! host that the filters select, once a second, and decides once per
//! executable (device and inode) whether it can be traced: a non-Go or
//! refused binary is never inspected again, and each refusal is reported
//! once on stderr.
//!
//! What a scan costs: one `readdir` of `/proc` and, for each process not
//! traced yet, a `readlink` of its `/proc/PID/exe` (kernel threads fail it
//! at once) and, when the filters keep it, a `stat` of it: about 1 ms a
//! scan of 100 processes here. A new
//! executable is inspected once on a worker thread (its ELF headers and
//! build info; a Go binary's pclntab and DWARF too), never in the loop.
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

/// How often `/proc` is scanned for new processes.
pub(super) const SCAN_EVERY: Duration = Duration::from_secs(1);

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
    /// Processes that could not be attached (reported once), until they
    /// are gone.
    failed_pids: HashSet<u32>,
    /// Non-Go executables seen (reported as one count without filters).
    non_go: u64,
    non_go_reported: u64,
    /// The session cap was reached for these (reported once).
    over_cap: HashSet<u32>,
    last_scan: Option<Instant>,
    /// An inspection found a traceable executable since the last scan.
    fresh: bool,
    own_pid: u32,
    /// Scans done, and their total time (the cost of `--all`).
    pub(super) scans: u64,
    pub(super) scan_time: Duration,
}

impl Fleet {
    pub(super) fn new(opts: FleetOptions) -> Self {
        Self {
            opts,
            decisions: HashMap::new(),
            inspecting: JoinSet::new(),
            pending: HashSet::new(),
            failed_pids: HashSet::new(),
            non_go: 0,
            non_go_reported: 0,
            over_cap: HashSet::new(),
            last_scan: None,
            fresh: false,
            own_pid: std::process::id(),
            scans: 0,
            scan_time: Duration::ZERO,
        }
    }

    /// Whether a scan is due: every [`SCAN_EVERY`], and at once when an
    /// inspection found a traceable executable (its processes wait for it).
    pub(super) fn due(&mut self, now: Instant) -> bool {
        self.collect();
        std::mem::take(&mut self.fresh)
            || self
                .last_scan
                .is_none_or(|t| now.duration_since(t) >= SCAN_EVERY)
    }

    /// How long the loop may sleep before a scan is due; while executables
    /// are being inspected, [`INSPECTION_POLL`] (a finished inspection's
    /// processes wait for the next scan).
    pub(super) fn scan_wait(&self, now: Instant) -> Duration {
        let next = self.last_scan.map_or(Duration::ZERO, |t| {
            SCAN_EVERY.saturating_sub(now.duration_since(t))
        });
        if self.inspecting.is_empty() {
            next
        } else {
            next.min(INSPECTION_POLL)
        }
    }

    /// A process that could not be attached: not retried while it lives.
    pub(super) fn attach_failed(&mut self, pid: u32, why: &anyhow::Error) {
        if self.failed_pids.insert(pid) {
            eprintln!("mapleak-trace: --all: pid {pid} skipped: {why:#}");
        }
    }

    /// Scans `/proc`: the processes to attach now (`traced` says which are
    /// traced already; `room` how many more may be). Collects finished
    /// inspections first; a new executable is inspected on a worker and
    /// its processes attached at a later scan.
    pub(super) fn scan(
        &mut self,
        traced: &dyn Fn(u32) -> bool,
        room: usize,
        clocks: &Arc<crate::budget::WorkerClocks>,
    ) -> Vec<Found> {
        let t0 = Instant::now();
        self.last_scan = Some(t0);
        self.collect();
        let mut out = Vec::new();
        let mut present = HashSet::new();
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return out;
        };
        for e in dir.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            present.insert(pid);
            if pid == self.own_pid || traced(pid) || self.failed_pids.contains(&pid) {
                continue;
            }
            let exe = PathBuf::from(format!("/proc/{pid}/exe"));
            // Kernel threads have no executable; a process that exited
            // since the readdir neither.
            let Ok(path) = std::fs::read_link(&exe) else {
                continue;
            };
            let shown = path.display().to_string();
            if !self.opts.selects(&shown) {
                continue;
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
                        );
                    }
                    continue;
                }
            };
            let known = match self.decisions.get_mut(&key) {
                Some(Decision::Refused) => continue,
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
        self.failed_pids.retain(|p| present.contains(p));
        self.over_cap.retain(|p| present.contains(p));
        if self.opts.include.is_empty() && self.non_go > self.non_go_reported {
            eprintln!(
                "mapleak-trace: --all: {} executables are not Go programs and are skipped (--exe GLOB selects executables; each one given by --exe is reported by name)",
                self.non_go
            );
            self.non_go_reported = self.non_go;
        }
        self.scans += 1;
        self.scan_time += t0.elapsed();
        out
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
