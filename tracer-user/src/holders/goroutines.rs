//! Goroutine stacks as roots of the holder search: a map that only a
//! goroutine holds (a local, or a value its closure captured, which the
//! compiler loads into the goroutine's frame at entry).
//!
//! The goroutines are `runtime.allgs` (a `[]*g`): its symbol when the
//! binary has one, else the global slice whose first element is a `g`
//! with goid 1 and `startpc` at `runtime.main` (pclntab still names that
//! function in a stripped binary). Of each `g` (offsets in
//! [`RuntimeLayout`], from DWARF when present, else the built-in table):
//! `stack.lo`, `stack.hi`, `sched.sp`, `sched.pc`, `atomicstatus`, `goid`,
//! `startpc`. The live part of a parked goroutine's stack is
//! `[sched.sp, stack.hi)`; a running one's `sched.sp` is stale, so its
//! whole stack is copied (conservative: dead slots may still hold an old
//! pointer; what is found is re-read before it is reported, and the path
//! is best-effort).
//!
//! A parked goroutine's frames are walked ([`super::unwind`]) and each is
//! a root named by its function (the runtime's frames by the function
//! under them); the rest of its stack, and a running goroutine's, is named
//! by the function it started with.
//! Goroutines the runtime started for itself (`runtime.*` but
//! `runtime.main`) are left out: their frames hold heap pointers for a
//! moment (GC workers), as the runtime's globals do.
use super::heap::{Region, RegionKind};
use super::unwind::{self, Code};
use crate::{inspect::RuntimeLayout, keys::Reader};

/// Goroutines read at most.
pub(crate) const MAX_GOROUTINES: usize = 100_000;
/// Stack bytes copied per search at most.
pub(crate) const MAX_STACK_BYTES: u64 = 4 << 20;
/// Bytes of a `g` read (past `startpc` on every release).
const G_BYTES: usize = 320;
/// Largest stack believed (Go's default `maxstacksize` is 1 GB).
const MAX_STACK: u64 = 1 << 30;
/// Global slices tried as `allgs` in a binary without symbols.
const MAX_CANDIDATES: usize = 4096;

/// `g` offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct GLayout {
    pub(crate) lo: u64,
    pub(crate) hi: u64,
    pub(crate) sp: u64,
    pub(crate) status: u64,
    pub(crate) goid: u64,
    pub(crate) startpc: u64,
}

impl GLayout {
    /// From the runtime layout; `None` when a field is unknown.
    #[must_use]
    pub(crate) fn new(l: &RuntimeLayout) -> Option<Self> {
        let f = |o: Option<u32>| o.map(u64::from);
        let g = Self {
            lo: f(l.g_stack_lo)?,
            hi: f(l.g_stack_hi)?,
            sp: f(l.g_sched_sp)?,
            status: f(l.g_atomicstatus)?,
            goid: f(l.g_goid)?,
            startpc: f(l.g_startpc)?,
        };
        [g.lo, g.hi, g.sp, g.status, g.goid, g.startpc]
            .iter()
            .all(|&o| o + 8 <= G_BYTES as u64)
            // `sched.pc` follows `sched.sp` (`gobuf`).
            .then_some(g)
            .filter(|g| g.sp + 16 <= G_BYTES as u64)
    }
}

/// One goroutine, as read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct G {
    pub(crate) goid: u64,
    pub(crate) status: u32,
    pub(crate) lo: u64,
    pub(crate) hi: u64,
    pub(crate) sp: u64,
    /// `sched.pc`.
    pub(crate) pc: u64,
    pub(crate) startpc: u64,
}

fn word(b: &[u8], off: u64) -> Option<u64> {
    crate::keys::le64(b, off)
}

impl G {
    fn decode(b: &[u8], gl: &GLayout) -> Option<Self> {
        Some(Self {
            goid: word(b, gl.goid)?,
            status: crate::keys::le32(b, gl.status)?,
            lo: word(b, gl.lo)?,
            hi: word(b, gl.hi)?,
            sp: word(b, gl.sp)?,
            pc: word(b, gl.sp + 8)?,
            startpc: word(b, gl.startpc)?,
        })
    }

    /// Parked, so `sched.sp`/`sched.pc` say where it is.
    fn parked(&self) -> bool {
        matches!(self.status & !0x1000, 1 | 4 | 9 | 10)
    }

    /// The part of its stack to copy: `[sched.sp, stack.hi)` when parked,
    /// the whole stack when running or in a system call (`sched.sp` stale)
    /// or when `sched.sp` is outside it; `None` for a goroutine with no
    /// stack to look at (idle, dead, its stack being copied).
    #[must_use]
    pub(crate) fn live(&self) -> Option<(u64, u64)> {
        // `_Gscan` (0x1000) marks a status being scanned by the GC.
        let status = self.status & !0x1000;
        // 1 runnable, 4 waiting, 9 preempted, 10 leaked (1.27); 2 running,
        // 3 syscall; 0 idle, 5 unused, 6 dead, 7 enqueue_unused, 8
        // copystack, 11 deadextra (1.27).
        let parked = self.parked();
        let running = matches!(status, 2 | 3);
        if !(parked || running)
            || self.lo == 0
            || self.hi <= self.lo
            || self.hi - self.lo > MAX_STACK
            || !self.lo.is_multiple_of(8)
        {
            return None;
        }
        if parked && self.sp >= self.lo && self.sp < self.hi {
            Some((self.sp & !7, self.hi))
        } else {
            Some((self.lo, self.hi))
        }
    }
}

/// Reads the `g`s of the `allgs` slice header at `at` (run-time address).
pub(crate) fn read_all<R: Reader>(r: &R, at: u64, gl: &GLayout) -> (Vec<G>, bool) {
    let mut hdr = [0u8; 16];
    if !r.read(at, &mut hdr) {
        return (Vec::new(), false);
    }
    let (ptr, len) = (word(&hdr, 0).unwrap_or(0), word(&hdr, 8).unwrap_or(0));
    let cut = len > MAX_GOROUTINES as u64;
    let n = usize::try_from(len).unwrap_or(0).min(MAX_GOROUTINES);
    if ptr == 0 || n == 0 {
        return (Vec::new(), false);
    }
    let mut arr = vec![0u8; n * 8];
    let got = r.read_some(ptr, &mut arr) / 8;
    let regs: Vec<(u64, usize)> = arr[..got * 8]
        .chunks_exact(8)
        .filter_map(|c| word(c, 0))
        .filter(|&g| g != 0)
        .map(|g| (g, G_BYTES))
        .collect();
    let gs = r
        .read_many(&regs)
        .into_iter()
        .flatten()
        .filter_map(|b| G::decode(&b, gl))
        .collect();
    (gs, cut || got < n)
}

/// The `allgs` slice header in the copy of the globals `globals` (for a
/// binary without symbols): the first slice whose element 0 is a `g` with
/// goid 1, a stack, and `startpc == main_entry` (`runtime.main`,
/// run-time address).
pub(crate) fn find_allgs<R: Reader>(
    r: &R,
    globals: &Region,
    gl: &GLayout,
    main_entry: u64,
) -> Option<u64> {
    let b = &globals.bytes;
    let mut tried = 0;
    for off in (0..b.len().saturating_sub(23)).step_by(8) {
        let (Some(ptr), Some(len), Some(cap)) = (
            word(b, off as u64),
            word(b, off as u64 + 8),
            word(b, off as u64 + 16),
        ) else {
            continue;
        };
        if ptr == 0 || ptr % 8 != 0 || len == 0 || len > cap || cap > 1 << 24 {
            continue;
        }
        tried += 1;
        if tried > MAX_CANDIDATES {
            return None;
        }
        let mut first = [0u8; 8];
        if !r.read(ptr, &mut first) {
            continue;
        }
        let g0 = u64::from_le_bytes(first);
        let mut gb = vec![0u8; G_BYTES];
        if g0 == 0 || g0 % 8 != 0 || !r.read(g0, &mut gb) {
            continue;
        }
        let Some(g) = G::decode(&gb, gl) else {
            continue;
        };
        if g.goid == 1 && g.startpc == main_entry && g.hi > g.lo && g.lo != 0 {
            return Some(globals.addr + off as u64);
        }
    }
    None
}

/// Part of a goroutine's copied stack (a frame, or the rest of it), for
/// naming a root found in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StackRoot {
    pub(crate) lo: u64,
    pub(crate) hi: u64,
    /// `goroutine 7 (main.privateWorker)`.
    pub(crate) name: String,
}

/// The goroutine stacks copied for a search.
#[derive(Debug, Default)]
pub(crate) struct Stacks {
    pub(crate) regions: Vec<Region>,
    pub(crate) roots: Vec<StackRoot>,
    /// Every goroutine's whole stack (kept out of the heap's scans).
    pub(crate) whole: Vec<(u64, u64)>,
    /// Bytes copied.
    pub(crate) bytes: u64,
    /// The bound (or the count of goroutines) left stacks out.
    pub(crate) cut_short: bool,
}

/// The function a goroutine started with, `None` for the runtime's own
/// goroutines (GC workers and the like hold heap pointers for a moment;
/// `runtime.main` runs `main.main`). A `go f(x)` wrapper is named by the
/// `f` it calls: a running goroutine, whose frames cannot be walked, is
/// named by it.
fn start_func<'c>(g: &G, code: &'c dyn Code) -> Option<&'c str> {
    let (f, _) = code.func_at(g.startpc)?;
    if f.starts_with("runtime.") && f != "runtime.main" {
        return None;
    }
    if unwind::is_go_wrapper(f) {
        return Some(code.callee(g.startpc).unwrap_or(f));
    }
    Some(f)
}

/// Roots covering a goroutine's copied stack `[from, from + bytes.len())`:
/// one per frame of a parked goroutine, named by its function (see
/// [`unwind::labels`]), and the rest named by its start function `start`.
fn roots_of(g: &G, start: &str, from: u64, bytes: &[u8], code: &dyn Code) -> Vec<StackRoot> {
    let name = |f: &str| format!("goroutine {} ({f})", g.goid);
    let end = from + bytes.len() as u64;
    let mut roots = Vec::new();
    let mut covered = from;
    if g.parked() && g.sp == from {
        let frames = unwind::frames(bytes, from, g.pc, g.sp, code);
        for (f, label) in frames.iter().zip(unwind::labels(&frames)) {
            roots.push(StackRoot {
                lo: f.lo,
                hi: f.hi,
                name: name(label.unwrap_or(start)),
            });
            covered = f.hi;
        }
    }
    if covered < end {
        roots.push(StackRoot {
            lo: covered,
            hi: end,
            name: name(start),
        });
    }
    roots
}

/// Copies the live part of each goroutine's stack, but the runtime's own
/// goroutines', up to [`MAX_STACK_BYTES`] in all, and names its parts.
pub(crate) fn copy<R: Reader>(r: &R, gs: &[G], code: &dyn Code) -> Stacks {
    let mut regions = Vec::new();
    let mut roots = Vec::new();
    let mut whole = Vec::new();
    let mut left = MAX_STACK_BYTES;
    let mut cut = false;
    for g in gs {
        let Some((from, to)) = g.live() else {
            continue;
        };
        whole.push((g.lo, g.hi));
        let Some(start) = start_func(g, code) else {
            continue;
        };
        let len = to - from;
        if len > left {
            cut = true;
            continue;
        }
        let mut bytes = vec![0u8; usize::try_from(len).unwrap_or(0)];
        let got = r.read_some(from, &mut bytes);
        bytes.truncate(got - got % 8);
        left -= bytes.len() as u64;
        if bytes.is_empty() {
            continue;
        }
        roots.extend(roots_of(g, start, from, &bytes, code));
        regions.push(Region {
            addr: from,
            bytes,
            kind: RegionKind::Stack,
        });
    }
    Stacks {
        regions,
        roots,
        whole,
        bytes: MAX_STACK_BYTES - left,
        cut_short: cut,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::testmem::FakeMem;

    /// Functions by entry (0x10000 apart): name, frame size.
    struct Funcs(Vec<(u64, &'static str, u64)>);

    impl Code for Funcs {
        fn func_at(&self, pc: u64) -> Option<(&str, u64)> {
            self.0
                .iter()
                .find(|f| pc >= f.0 && pc < f.0 + 0x10000)
                .map(|f| (f.1, f.2))
        }
        fn link_register(&self) -> bool {
            false
        }
        fn callee(&self, entry: u64) -> Option<&str> {
            let (f, _) = self.func_at(entry)?;
            (f == "main.main.gowrap2").then_some("main.privateWorker")
        }
    }

    const GL: GLayout = GLayout {
        lo: 0,
        hi: 8,
        sp: 56,
        status: 152,
        goid: 160,
        startpc: 304,
    };

    fn g_bytes(lo: u64, hi: u64, sp: u64, status: u32, goid: u64, pc: u64) -> Vec<u8> {
        let mut b = vec![0u8; G_BYTES];
        b[0..8].copy_from_slice(&lo.to_le_bytes());
        b[8..16].copy_from_slice(&hi.to_le_bytes());
        b[56..64].copy_from_slice(&sp.to_le_bytes());
        b[152..156].copy_from_slice(&status.to_le_bytes());
        b[160..168].copy_from_slice(&goid.to_le_bytes());
        b[304..312].copy_from_slice(&pc.to_le_bytes());
        b
    }

    /// Parked: from sched.sp; running or sp outside: the whole stack;
    /// dead, idle, copying or nonsense: nothing.
    #[test]
    fn live_parts() {
        let g = |status, lo, hi, sp| G {
            goid: 7,
            status,
            lo,
            hi,
            sp,
            pc: 0,
            startpc: 0,
        };
        assert_eq!(g(4, 0x1000, 0x3000, 0x2f00).live(), Some((0x2f00, 0x3000)));
        assert_eq!(
            g(4 | 0x1000, 0x1000, 0x3000, 0x2f03).live(),
            Some((0x2f00, 0x3000))
        );
        assert_eq!(g(2, 0x1000, 0x3000, 0x2f00).live(), Some((0x1000, 0x3000)));
        assert_eq!(g(3, 0x1000, 0x3000, 0x2f00).live(), Some((0x1000, 0x3000)));
        assert_eq!(g(1, 0x1000, 0x3000, 0x9000).live(), Some((0x1000, 0x3000)));
        for status in [0, 5, 6, 7, 8, 11] {
            assert_eq!(g(status, 0x1000, 0x3000, 0x2f00).live(), None);
        }
        assert_eq!(g(4, 0x3000, 0x1000, 0x2f00).live(), None);
        assert_eq!(g(4, 0, 0x1000, 0x800).live(), None);
        assert_eq!(g(4, 0x1000, 0x1000 + (2 << 30), 0x2f00).live(), None);
    }

    /// allgs found by its first g (goid 1 at runtime.main), its gs read,
    /// their live stacks copied within the bound and named.
    #[test]
    fn allgs_and_stacks() {
        let mem = FakeMem::default();
        let main_pc = 0x44_0000;
        // Globals: a decoy slice (its g has goid 5), then allgs.
        let mut glob = vec![0u8; 64];
        glob[0..8].copy_from_slice(&0x9000u64.to_le_bytes());
        glob[8..16].copy_from_slice(&1u64.to_le_bytes());
        glob[16..24].copy_from_slice(&1u64.to_le_bytes());
        glob[32..40].copy_from_slice(&0x8000u64.to_le_bytes());
        glob[40..48].copy_from_slice(&3u64.to_le_bytes());
        glob[48..56].copy_from_slice(&4u64.to_le_bytes());
        mem.put(0x5000, glob.clone());
        let arr: Vec<u8> = [0xa000u64, 0xb000, 0xc000]
            .iter()
            .flat_map(|p| p.to_le_bytes())
            .collect();
        mem.put(0x8000, arr);
        mem.put(0x9000, 0xd000u64.to_le_bytes().to_vec());
        mem.put(0xd000, g_bytes(0x20000, 0x28000, 0x27000, 4, 5, main_pc));
        mem.put(0xa000, g_bytes(0x10000, 0x18000, 0x17f00, 4, 1, main_pc));
        mem.put(0xb000, g_bytes(0x30000, 0x32000, 0x31000, 2, 7, 0x45_0000));
        mem.put(0xc000, g_bytes(0, 0, 0, 6, 9, 0x46_0000));
        mem.put(0x10000, vec![1u8; 0x8000]);
        mem.put(0x30000, vec![2u8; 0x2000]);
        let globals = Region {
            addr: 0x5000,
            bytes: glob,
            kind: RegionKind::Globals,
        };
        assert_eq!(find_allgs(&mem, &globals, &GL, main_pc), Some(0x5020));
        assert_eq!(find_allgs(&mem, &globals, &GL, main_pc + 1), None);
        let (gs, cut) = read_all(&mem, 0x5020, &GL);
        assert!(!cut);
        assert_eq!(gs.iter().map(|g| g.goid).collect::<Vec<_>>(), [1, 7, 9]);
        let code = Funcs(vec![
            (main_pc, "runtime.main", 0),
            (0x45_0000, "main.worker", 0),
            (0x46_0000, "runtime.bgsweep", 0),
        ]);
        let st = copy(&mem, &gs, &code);
        assert!(!st.cut_short);
        assert_eq!(st.bytes, 0x100 + 0x2000);
        assert_eq!(st.whole, [(0x10000, 0x18000), (0x30000, 0x32000)]);
        assert_eq!(st.regions[0].addr, 0x17f00);
        assert_eq!(st.regions[1].bytes.len(), 0x2000);
        // goroutine 1's sched.pc (0) gives no frame: named by its start.
        assert_eq!(
            st.roots.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
            ["goroutine 1 (runtime.main)", "goroutine 7 (main.worker)"]
        );
        // The runtime's own goroutines are not copied, still kept out of
        // the heap.
        mem.put(0xb000, g_bytes(0x30000, 0x32000, 0x31000, 2, 7, 0x46_0000));
        let (gs, _) = read_all(&mem, 0x5020, &GL);
        let st = copy(&mem, &gs, &code);
        assert_eq!(st.regions.len(), 1);
        assert_eq!(st.whole.len(), 2);
    }

    /// A parked goroutine started by a `go` wrapper: the frame holding a
    /// local is named by its function, the runtime's frame above it by
    /// that function too, the wrapper's frame by the wrapper, and the rest
    /// by the function the wrapper runs.
    #[test]
    fn parked_frames_named() {
        let mem = FakeMem::default();
        let code = Funcs(vec![
            (0x10_0000, "runtime.gopark", 0x18),
            (0x20_0000, "main.privateWorker", 0x30),
            (0x30_0000, "main.main.gowrap2", 0x10),
        ]);
        let mut g = g_bytes(0x40000, 0x41000, 0x40f00, 4, 19, 0x30_0000);
        g[64..72].copy_from_slice(&0x10_0040u64.to_le_bytes());
        mem.put(0xa000, g);
        mem.put(0x8000, 0xa000u64.to_le_bytes().to_vec());
        mem.put(
            0x5000,
            [0x8000u64, 1]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect(),
        );
        let mut stack = vec![0u8; 0x1000];
        // gopark [0x40f00, 0x40f20) returns into privateWorker, which
        // [0x40f20, 0x40f58) returns into gowrap2 [0x40f58, 0x40f70).
        stack[0xf18..0xf20].copy_from_slice(&0x20_0100u64.to_le_bytes());
        stack[0xf50..0xf58].copy_from_slice(&0x30_0020u64.to_le_bytes());
        mem.put(0x40000, stack);
        let (gs, _) = read_all(&mem, 0x5000, &GL);
        assert_eq!(gs[0].pc, 0x10_0040);
        let st = copy(&mem, &gs, &code);
        let got: Vec<(u64, u64, &str)> = st
            .roots
            .iter()
            .map(|r| (r.lo, r.hi, r.name.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (0x40f00, 0x40f20, "goroutine 19 (main.privateWorker)"),
                (0x40f20, 0x40f58, "goroutine 19 (main.privateWorker)"),
                (0x40f58, 0x40f70, "goroutine 19 (main.main.gowrap2)"),
                (0x40f70, 0x41000, "goroutine 19 (main.privateWorker)"),
            ]
        );
        // Running: sched is stale, the whole stack is named by the start,
        // the wrapper by the function it runs.
        let mut g = gs[0];
        g.status = 2;
        let st = copy(&mem, &[g], &code);
        assert_eq!(st.roots.len(), 1);
        assert_eq!(st.roots[0].name, "goroutine 19 (main.privateWorker)");
    }
}
