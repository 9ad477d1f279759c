//! The frames of a parked goroutine, so that a map found on its stack is
//! named by the function whose frame holds it (`goroutine 7
//! (main.privateWorker)`), not by the function the goroutine started with:
//! since Go 1.21 `go f(x)` starts a compiler wrapper (`main.main.gowrap2`).
//!
//! A parked goroutine's `sched.pc`/`sched.sp` are those of its innermost
//! frame (`runtime.gopark` after `mcall`). Each function's frame size at a
//! pc is pclntab's `pcsp` value, so the walk is the runtime's own: on
//! amd64 the frame is `[sp, sp + size + 8)`, the return address in its
//! last word; on arm64 it is `[sp, sp + size)`, the return address (the
//! saved link register) in its first word. The walk reads only the copy of
//! the stack and stops at the first pc it cannot place, a frame that would
//! leave the copy, or `runtime.goexit`.

/// Frames walked at most.
const MAX_FRAMES: usize = 256;

/// What the walk needs of the target's code.
pub(crate) trait Code {
    /// The name of the function holding run-time `pc`, and its frame size
    /// there (pclntab's `pcsp`).
    fn func_at(&self, pc: u64) -> Option<(&str, u64)>;
    /// Calls leave the return address in a register that the callee saves
    /// at the bottom of its frame (arm64), not on the stack (amd64).
    fn link_register(&self) -> bool;
    /// The name of the function that the function at run-time `entry`
    /// calls first outside the runtime (what a `go` wrapper runs).
    fn callee(&self, _entry: u64) -> Option<&str> {
        None
    }
}

/// Whether `func` is a wrapper the compiler made for a `go` statement with
/// arguments (Go 1.21+: `main.main.gowrap2`, `main.(*T).run.gowrap1`).
#[must_use]
pub(crate) fn is_go_wrapper(func: &str) -> bool {
    func.rsplit('.')
        .next()
        .and_then(|last| last.strip_prefix("gowrap"))
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// One frame: `[lo, hi)` of the stack, and its function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Frame<'c> {
    pub(crate) lo: u64,
    pub(crate) hi: u64,
    pub(crate) func: &'c str,
}

/// The frames, innermost first, of a goroutine parked at `pc`/`sp`, whose
/// stack from `base` up is copied in `stack`.
pub(crate) fn frames<'c>(
    stack: &[u8],
    base: u64,
    pc: u64,
    sp: u64,
    code: &'c dyn Code,
) -> Vec<Frame<'c>> {
    let end = base.saturating_add(stack.len() as u64);
    let lr = code.link_register();
    let mut out = Vec::new();
    let (mut pc, mut sp) = (pc, sp);
    while out.len() < MAX_FRAMES && pc != 0 && sp >= base && sp < end {
        // A return address follows its call: look the caller up just
        // before it (the call may be its function's last instruction).
        let at = if out.is_empty() { pc } else { pc - 1 };
        let Some((func, size)) = code.func_at(at) else {
            break;
        };
        // A frameless function on arm64 kept its return address in the
        // link register, which a parked goroutine does not show.
        if lr && size == 0 {
            break;
        }
        let hi = sp
            .saturating_add(size)
            .saturating_add(if lr { 0 } else { 8 });
        if hi > end || size % 8 != 0 {
            break;
        }
        out.push(Frame { lo: sp, hi, func });
        if func == "runtime.goexit" {
            break;
        }
        let ret_at = if lr { sp } else { hi - 8 };
        let Some(ret) = crate::keys::le64(stack, ret_at - base) else {
            break;
        };
        (pc, sp) = (ret, hi);
    }
    out
}

/// The runtime's own functions (and those it lends to other packages,
/// `sync.runtime_Semacquire`): a goroutine blocked in them is named by the
/// first frame under them that is not.
#[must_use]
pub(crate) fn is_runtime(func: &str) -> bool {
    func.starts_with("runtime.") || func.starts_with("internal/") || func.contains(".runtime_")
}

/// Each frame with the name it is reported by: its function, or for the
/// runtime's frames the first frame under them that is not the runtime's
/// (`None` when there is none).
#[must_use]
pub(crate) fn labels<'c>(frames: &[Frame<'c>]) -> Vec<Option<&'c str>> {
    let mut out = vec![None; frames.len()];
    let mut below = None;
    for (i, f) in frames.iter().enumerate().rev() {
        if !is_runtime(f.func) {
            below = Some(f.func);
        }
        out[i] = below;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Functions at 0x1000 steps: (name, frame size).
    struct Fake {
        funcs: Vec<(&'static str, u64)>,
        lr: bool,
    }

    impl Code for Fake {
        fn func_at(&self, pc: u64) -> Option<(&str, u64)> {
            let i = usize::try_from(pc / 0x1000).ok()?.checked_sub(1)?;
            self.funcs.get(i).map(|&(n, s)| (n, s))
        }
        fn link_register(&self) -> bool {
            self.lr
        }
    }

    fn fake(lr: bool) -> Fake {
        Fake {
            funcs: vec![
                ("runtime.gopark", 0x18),
                ("runtime.chanrecv", 0x40),
                ("main.privateWorker", 0x30),
                ("main.main.gowrap2", 0x10),
                ("runtime.goexit", 0),
            ],
            lr,
        }
    }

    fn put(stack: &mut [u8], base: u64, at: u64, v: u64) {
        let o = usize::try_from(at - base).unwrap();
        stack[o..o + 8].copy_from_slice(&v.to_le_bytes());
    }

    /// amd64: each return address in the frame's last word; the frames
    /// tile the stack from sched.sp; the runtime's frames are named by the
    /// function under them.
    #[test]
    fn amd64_walk() {
        let base = 0x8000;
        let mut stack = vec![0u8; 0x200];
        // gopark [0x8000, 0x8020): returns into chanrecv.
        put(&mut stack, base, 0x8018, 0x2010);
        // chanrecv [0x8020, 0x8068): into privateWorker.
        put(&mut stack, base, 0x8060, 0x3020);
        // privateWorker [0x8068, 0x80a0): into gowrap2.
        put(&mut stack, base, 0x8098, 0x4008);
        // gowrap2 [0x80a0, 0x80b8): into goexit (just past its entry).
        put(&mut stack, base, 0x80b0, 0x5001);
        let code = fake(false);
        let f = frames(&stack, base, 0x1010, 0x8000, &code);
        let got: Vec<(u64, u64, &str)> = f.iter().map(|f| (f.lo, f.hi, f.func)).collect();
        assert_eq!(
            got,
            [
                (0x8000, 0x8020, "runtime.gopark"),
                (0x8020, 0x8068, "runtime.chanrecv"),
                (0x8068, 0x80a0, "main.privateWorker"),
                (0x80a0, 0x80b8, "main.main.gowrap2"),
                (0x80b8, 0x80c0, "runtime.goexit"),
            ]
        );
        assert_eq!(
            labels(&f),
            [
                Some("main.privateWorker"),
                Some("main.privateWorker"),
                Some("main.privateWorker"),
                Some("main.main.gowrap2"),
                None
            ]
        );
    }

    /// arm64: the return address at the bottom of each frame.
    #[test]
    fn arm64_walk() {
        let base = 0x8000;
        let mut stack = vec![0u8; 0x100];
        put(&mut stack, base, 0x8000, 0x2010);
        put(&mut stack, base, 0x8018, 0x3020);
        put(&mut stack, base, 0x8058, 0x4008);
        let code = fake(true);
        let f = frames(&stack, base, 0x1010, 0x8000, &code);
        let got: Vec<(u64, u64, &str)> = f.iter().map(|f| (f.lo, f.hi, f.func)).collect();
        assert_eq!(
            got,
            [
                (0x8000, 0x8018, "runtime.gopark"),
                (0x8018, 0x8058, "runtime.chanrecv"),
                (0x8058, 0x8088, "main.privateWorker"),
                (0x8088, 0x8098, "main.main.gowrap2"),
            ]
        );
        // gowrap2's saved return address (0) ends the walk.
    }

    /// A pc nowhere, a frame past the copy, or a frameless arm64 function
    /// ends the walk where it is; nothing is read out of bounds.
    #[test]
    fn walk_stops_safely() {
        let base = 0x8000;
        let mut stack = vec![0u8; 0x40];
        put(&mut stack, base, 0x8018, 0x9_9999);
        let code = fake(false);
        assert_eq!(frames(&stack, base, 0x1010, 0x8000, &code).len(), 1);
        assert!(frames(&stack, base, 0x10, 0x8000, &code).is_empty());
        // chanrecv's frame (0x48) does not fit in 0x40 bytes.
        assert!(frames(&stack, base, 0x2010, 0x8000, &code).is_empty());
        // sp outside the copy.
        assert!(frames(&stack, base, 0x1010, 0x7ff8, &code).is_empty());
        assert!(frames(&stack, base, 0x1010, 0x8040, &code).is_empty());
        let code = fake(true);
        assert!(frames(&stack, base, 0x5010, 0x8000, &code).is_empty());
        // A loop (a return address leading back) cannot go on: sp only
        // grows, and the walk ends at the copy's end.
        let mut stack = vec![0u8; 0x1000];
        for at in (0..0x1000).step_by(0x18) {
            if at + 8 <= 0x1000 {
                put(&mut stack, base, base + at as u64, 0x1010);
            }
        }
        assert!(frames(&stack, base, 0x1010, 0x8000, &code).len() <= MAX_FRAMES);
    }

    #[test]
    fn go_wrappers() {
        assert!(is_go_wrapper("main.main.gowrap2"));
        assert!(is_go_wrapper("main.(*T).run.gowrap13"));
        assert!(!is_go_wrapper("main.gowrap"));
        assert!(!is_go_wrapper("main.main.func1"));
        assert!(!is_go_wrapper("main.gowrapper"));
    }

    #[test]
    fn runtime_functions() {
        assert!(is_runtime("runtime.gopark"));
        assert!(is_runtime("internal/poll.runtime_pollWait"));
        assert!(is_runtime("sync.runtime_SemacquireMutex"));
        assert!(!is_runtime("sync.(*Mutex).Lock"));
        assert!(!is_runtime("main.worker"));
        assert!(!is_runtime("net/http.(*conn).serve"));
    }
}
