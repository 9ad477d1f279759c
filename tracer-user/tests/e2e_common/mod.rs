//! Pieces shared by the tier-2 (root) test files.
#![allow(dead_code, reason = "each test binary uses a subset")]

use std::process::{Child, Command};

pub mod harness;

/// Kills and reaps the child on drop.
pub struct Guard(pub Option<Child>);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Kills the child's whole process group and reaps the child on drop: for
/// commands such as `go tool pprof -http`, where `go` runs the tool as a
/// child of its own that a kill of `go` alone would leave running. Spawn the
/// command with `process_group(0)`.
pub struct GroupGuard(pub Option<Child>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            if let Ok(pid) = i32::try_from(c.id()) {
                // SAFETY: kill takes a process group id and a signal; the
                // group is the one this child leads.
                unsafe { libc::kill(-pid, libc::SIGKILL) };
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Spawns `cmd`, trying again for up to 2 s while its executable is "busy"
/// (ETXTBSY). A test that writes an executable and then runs it can see that
/// error when another test's thread forks in between: the child holds a copy
/// of the file's write descriptor until it execs (close-on-exec closes it
/// then), and the kernel refuses to exec a file open for writing. Seen in a CI
/// run of `binary_replaced_after_start`; the window is a fork's length.
pub fn spawn_when_not_busy(cmd: &mut Command) -> Child {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        match cmd.spawn() {
            Err(e)
                if e.kind() == std::io::ErrorKind::ExecutableFileBusy
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            r => return r.unwrap_or_else(|e| panic!("spawning {cmd:?}: {e}")),
        }
    }
}

unsafe extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

/// Whether the tests run as root.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc_geteuid() == 0 }
}

/// Whether the root tests can run: root. Not root, they fail when `CI` is
/// set, and otherwise unless `MAPLEAK_ALLOW_SKIP=1` asks for the skip.
pub fn privileged() -> bool {
    let root = is_root();
    if !root {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but the end-to-end tests are not running as root: they must run in CI"
        );
        assert!(
            std::env::var_os("MAPLEAK_ALLOW_SKIP").is_some(),
            "end-to-end tests need root (CAP_BPF, CAP_PERFMON, CAP_SYS_PTRACE): run as root, or set MAPLEAK_ALLOW_SKIP=1 to skip them"
        );
        println!("SKIPPED (MAPLEAK_ALLOW_SKIP): end-to-end tests need root");
    }
    root
}

/// The `target` fixture of Go release `go` (e.g. `go1.26.8`) and build
/// variant, for the architecture the tests run on.
pub fn target_fixture(go: &str, variant: &str) -> std::path::PathBuf {
    let arch = if cfg!(target_arch = "aarch64") {
        "arm64"
    } else {
        "amd64"
    };
    let p = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(format!("../target/fixtures/target-{go}-{arch}-{variant}"));
    assert!(
        p.exists(),
        "{} missing: run `cargo xtask fixtures`",
        p.display()
    );
    p
}
