//! Child processes: every process the bench starts is a [`Proc`], waited
//! for with a deadline and killed by its pid (never by name) when dropped
//! before it exited; and the other tracers running on the machine.
use std::{
    fs,
    io::{BufRead as _, BufReader, Read as _, Write as _},
    process::{Child, ChildStdin, Command, ExitStatus, Stdio},
    sync::{
        Arc, Mutex,
        mpsc::{self, Receiver, RecvTimeoutError},
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

/// A child process whose stdout is read line by line on a thread, and which
/// is killed (by its pid, while it is still our unreaped child) when dropped.
pub(super) struct Proc {
    pub(super) what: String,
    pub(super) child: Child,
    stdin: Option<ChildStdin>,
    pub(super) lines: Receiver<String>,
    pub(super) seen: Vec<String>,
    stderr: Arc<Mutex<String>>,
}

/// How much of a child's stderr is kept for error messages.
const STDERR_KEEP: usize = 16 << 10;

impl Proc {
    pub(super) fn spawn(what: &str, cmd: Command) -> Result<Proc> {
        Self::spawn_logged(what, cmd, None)
    }

    /// [`Self::spawn`], all of its stderr also written to the file `log`
    /// (created; kept whatever happens to the run).
    pub(super) fn spawn_logged(
        what: &str,
        mut cmd: Command,
        log: Option<&std::path::Path>,
    ) -> Result<Proc> {
        let mut log = match log {
            Some(path) => Some(
                fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
            ),
            None => None,
        };
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting {what}: {cmd:?}"))?;
        // From here on nothing may fail before the Proc exists (its Drop is
        // what kills the child).
        let (tx, rx) = mpsc::channel();
        if let Some(out) = child.stdout.take() {
            thread::spawn(move || {
                for line in BufReader::new(out).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        let stderr = Arc::new(Mutex::new(String::new()));
        if let Some(mut err) = child.stderr.take() {
            let keep = Arc::clone(&stderr);
            thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = err.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    if let Some(f) = log.as_mut()
                        && f.write_all(&buf[..n]).is_err()
                    {
                        log = None;
                    }
                    if let Ok(mut s) = keep.lock() {
                        s.push_str(&String::from_utf8_lossy(&buf[..n]));
                        if s.len() > STDERR_KEEP {
                            let mut cut = s.len() - STDERR_KEEP;
                            while !s.is_char_boundary(cut) {
                                cut += 1;
                            }
                            s.drain(..cut);
                        }
                    }
                }
            });
        }
        Ok(Proc {
            what: what.to_owned(),
            stdin: child.stdin.take(),
            child,
            lines: rx,
            seen: Vec::new(),
            stderr,
        })
    }

    pub(super) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(super) fn stderr_tail(&self) -> String {
        let s = self.stderr.lock().map(|s| s.clone()).unwrap_or_default();
        let s = s.trim();
        let lines: Vec<&str> = s.lines().collect();
        let from = lines.len().saturating_sub(12);
        lines[from..].join("\n")
    }

    /// Waits for a stdout line that satisfies `pred`.
    pub(super) fn wait_line(
        &mut self,
        pred: impl Fn(&str) -> bool,
        timeout: Duration,
    ) -> Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!(
                    "{} (pid {}): no expected output within {timeout:?}; stdout so far: {:?}; stderr: {}",
                    self.what,
                    self.pid(),
                    self.seen,
                    self.stderr_tail()
                );
            }
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if pred(&line) {
                        return Ok(line);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    // Give the stderr reader a moment to catch up.
                    thread::sleep(Duration::from_millis(100));
                    bail!(
                        "{} (pid {}) closed its output early (stdout: {:?}); stderr: {}",
                        self.what,
                        self.pid(),
                        self.seen,
                        self.stderr_tail()
                    );
                }
            }
        }
    }

    pub(super) fn send_line(&mut self, line: &str) -> Result<()> {
        let w = self.stdin.as_mut().context("stdin already closed")?;
        w.write_all(line.as_bytes())?;
        w.write_all(b"\n")?;
        w.flush()?;
        // One line is all the bench program reads.
        self.stdin = None;
        Ok(())
    }

    pub(super) fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub(super) fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.child.try_wait()? {
                return Ok(st);
            }
            if Instant::now() >= deadline {
                bail!(
                    "{} (pid {}) still running after {timeout:?}; stderr: {}",
                    self.what,
                    self.pid(),
                    self.stderr_tail()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends `sig` to the child, if it is still our unreaped child (so the
    /// pid cannot have been reused).
    pub(super) fn signal(&mut self, sig: libc::c_int) {
        if self.running()
            && let Ok(pid) = libc::pid_t::try_from(self.child.id())
        {
            // SAFETY: kill(2) with a pid we own (not yet reaped) and a valid
            // signal number; no memory is involved.
            unsafe { libc::kill(pid, sig) };
        }
    }

    /// Asks the child to stop with SIGINT, then kills it after `grace`.
    pub(super) fn stop(&mut self, grace: Duration) -> Option<ExitStatus> {
        self.signal(libc::SIGINT);
        match self.wait_exit(grace) {
            Ok(st) => Some(st),
            Err(_) => {
                let _ = self.child.kill();
                self.child.wait().ok()
            }
        }
    }

    /// All stdout lines, once the child has exited.
    pub(super) fn output(&mut self) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(_) => break,
            }
        }
        self.seen.clone()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // Child::kill sends SIGKILL to this child's pid only.
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Other tracers running on the machine (someone's e2e tests): they compete
/// for the two CPUs and make a measurement noisy.
pub(super) fn foreign_tracers() -> Vec<String> {
    let me = std::process::id();
    let mut found = Vec::new();
    let Ok(dir) = fs::read_dir("/proc") else {
        return found;
    };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(raw) = fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&raw).replace('\0', " ");
        let exe = cmd.split(' ').next().unwrap_or("");
        if exe.ends_with("mapleak-trace") || exe.ends_with("bpftrace") {
            found.push(format!("{pid} {}", cmd.trim()));
        }
    }
    found
}
