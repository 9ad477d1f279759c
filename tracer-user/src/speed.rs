//! How much slower than the reference machine this one runs the tracer's
//! kind of work, measured once.
//!
//! Some of the tracer's constants are in the reference machine's time
//! (x86-64, 2 cores, the machine `cargo xtask bench` measured the probe-hit
//! costs on): the probes' trap per hit, the key-snapshot time per cycle,
//! the sample reads' deadlines. On a CPU ten times slower (an emulated
//! arm64 VM, a small board) fixed limits would cover a tenth of the work:
//! a map's last key snapshot would be deferred to a cycle that may never
//! come. So limits are multiplied by [`slowdown`] ([`scaled`]), and so are
//! the trap prices: the budget is debited in this machine's time, what the
//! target loses here (the tracer's CPU, its programs' runs and the traps,
//! as measured or scaled). [`to_reference`] goes the other way, for the
//! samples' pace, a floor of ten times their length between them.
use std::{
    sync::OnceLock,
    time::{Duration, Instant},
};

/// The most [`slowdown`] reports.
pub const MAX_SLOWDOWN: f64 = 40.0;

/// The calibration work's time on the reference machine, rounded up so
/// that it scores 1 there.
pub const REFERENCE_WORK: Duration = Duration::from_micros(1150);

/// This machine's time for the calibration work over the reference
/// machine's, between 1 and [`MAX_SLOWDOWN`]; measured at the first call.
pub fn slowdown() -> f64 {
    static F: OnceLock<f64> = OnceLock::new();
    *F.get_or_init(|| {
        (measure().as_secs_f64() / REFERENCE_WORK.as_secs_f64()).clamp(1.0, MAX_SLOWDOWN)
    })
}

/// A duration measured here, in the reference machine's time.
#[must_use]
pub fn to_reference(d: Duration) -> Duration {
    d.div_f64(slowdown())
}

/// A limit in the reference machine's time, here.
#[must_use]
pub fn scaled(d: Duration) -> Duration {
    d.mul_f64(slowdown())
}

/// The best of five runs of work like a sample's: system calls (2048
/// `getppid`), 32 reads of `/proc/self/stat`, hashing 256 KiB, and 16
/// `process_vm_readv` calls of 64 pieces of this process's memory, one per
/// page (a sample's map header reads, in miniature). Without the last part
/// its time in an emulated arm64 VM was 14 times that on the reference
/// machine while a sample's header reads were 20 times (plain computation
/// is under 2 times): the reads themselves set the scale.
///
/// Each run is timed on this thread's CPU clock, not the wall clock: what
/// is measured is how fast this machine does the work, not how much of a
/// CPU the tracer gets at that moment. Timed on the wall clock next to 20
/// busy processes on 2 CPUs, it scored 15.2 (1.6 on the same machine
/// idle), and every trap was then priced at 15 times its cost. The wall
/// clock is the fallback when the thread's clock cannot be read.
pub fn measure() -> Duration {
    use std::hash::{Hash as _, Hasher as _};
    let words: Vec<u64> = (0..32 * 1024u64)
        .map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15))
        .collect();
    let pages = vec![1u8; 64 * PAGE];
    let mut pieces = vec![0u8; 64 * PIECE];
    let mut best = Duration::MAX;
    for _ in 0..5 {
        let t = RunClock::start();
        for _ in 0..2048 {
            // SAFETY: getppid has no preconditions.
            std::hint::black_box(unsafe { libc::getppid() });
        }
        for _ in 0..32 {
            std::hint::black_box(std::fs::read("/proc/self/stat").ok());
        }
        let mut h = std::collections::hash_map::DefaultHasher::new();
        for w in &words {
            w.hash(&mut h);
        }
        std::hint::black_box(h.finish());
        for _ in 0..16 {
            read_own_pages(&pages, &mut pieces);
        }
        best = best.min(t.elapsed());
    }
    best
}

/// Times one run: this thread's CPU time, or the wall clock's (when the
/// thread's clock cannot be read). Time the thread waits for a CPU on a
/// busy machine is not counted.
pub(crate) enum RunClock {
    Cpu(Duration),
    Wall(Instant),
}

impl RunClock {
    pub(crate) fn start() -> Self {
        thread_cpu().map_or_else(|| Self::Wall(Instant::now()), Self::Cpu)
    }

    pub(crate) fn elapsed(&self) -> Duration {
        match self {
            Self::Cpu(t0) => thread_cpu().map_or(Duration::MAX, |t| t.saturating_sub(*t0)),
            Self::Wall(t0) => t0.elapsed(),
        }
    }
}

/// This thread's CPU time so far (user + system), if its clock reads.
fn thread_cpu() -> Option<Duration> {
    cpu_clock(libc::CLOCK_THREAD_CPUTIME_ID)
}

/// The time on clock `cid` (a thread's or process's CPU clock), if it
/// reads.
pub(crate) fn cpu_clock(cid: libc::clockid_t) -> Option<Duration> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime fills the timespec we pass; a clock that does
    // not exist (a thread gone) is an error return, not undefined.
    if unsafe { libc::clock_gettime(cid, &raw mut ts) } != 0 {
        return None;
    }
    let secs = u64::try_from(ts.tv_sec).ok()?;
    let nanos = u32::try_from(ts.tv_nsec).ok()?;
    Some(Duration::new(secs, nanos))
}

const PAGE: usize = 4096;
const PIECE: usize = 64;

/// One `process_vm_readv` of this process: the first [`PIECE`] bytes of
/// every page of `pages` into `pieces`.
fn read_own_pages(pages: &[u8], pieces: &mut [u8]) {
    let local: Vec<libc::iovec> = pieces
        .chunks_mut(PIECE)
        .map(|c| libc::iovec {
            iov_base: c.as_mut_ptr().cast(),
            iov_len: c.len(),
        })
        .collect();
    let remote: Vec<libc::iovec> = pages
        .chunks(PAGE)
        .map(|p| libc::iovec {
            iov_base: p.as_ptr().cast_mut().cast(),
            iov_len: PIECE.min(p.len()),
        })
        .collect();
    let n = local.len().min(remote.len());
    // SAFETY: every iovec points into a live buffer of its length; the
    // remote ones are this process's own readable memory.
    let got = unsafe {
        libc::process_vm_readv(
            libc::getpid(),
            local.as_ptr(),
            n as libc::c_ulong,
            remote.as_ptr(),
            n as libc::c_ulong,
            0,
        )
    };
    std::hint::black_box(got);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A run is timed on the thread's CPU clock: time the thread spends
    /// off the CPU (here asleep; on a busy machine, waiting for it) is not
    /// counted, and work is.
    #[test]
    fn runs_are_timed_on_the_threads_cpu_clock() {
        let t = RunClock::start();
        assert!(
            matches!(t, RunClock::Cpu(_)),
            "the thread's CPU clock did not read"
        );
        std::thread::sleep(Duration::from_millis(200));
        let asleep = t.elapsed();
        assert!(
            asleep < Duration::from_millis(100),
            "{asleep:?} counted while asleep"
        );
        let t = RunClock::start();
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
        }
        assert!(t.elapsed() > Duration::ZERO, "{x}");
    }

    /// `cargo test -p tracer-user --lib -- --ignored --nocapture
    /// calibration_work`: the figure to set [`REFERENCE_WORK`] from, on the
    /// reference machine.
    #[test]
    #[ignore = "prints a figure; nothing to check"]
    fn calibration_work() {
        let runs: Vec<Duration> = (0..5).map(|_| measure()).collect();
        eprintln!("calibration work: {runs:?}");
    }

    #[test]
    fn scales_both_ways_within_bounds() {
        let f = slowdown();
        assert!((1.0..=MAX_SLOWDOWN).contains(&f));
        let d = Duration::from_millis(100);
        assert_eq!(to_reference(scaled(d)).as_millis(), 100);
        assert!(scaled(d) >= d && to_reference(d) <= d);
    }
}
