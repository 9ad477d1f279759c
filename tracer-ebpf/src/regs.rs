//! Go ABIInternal register access at a uprobe, per architecture.
//!
//! aya's `ProbeContext::arg` follows the C calling convention, which is wrong
//! for Go: integer arguments go in RAX RBX RCX RDI RSI R8 R9 R10 R11 (amd64)
//! or R0..R15 (arm64), the goroutine is in R14 (amd64) or R28 (arm64).
//! See `src/cmd/compile/abi-internal.md` in the Go tree.

use aya_ebpf::programs::ProbeContext;

#[cfg(bpf_target_arch = "x86_64")]
mod imp {
    use super::select;
    use aya_ebpf::{bindings::pt_regs, helpers::bpf_probe_read_user, programs::ProbeContext};

    #[inline(always)]
    fn regs(ctx: &ProbeContext) -> &pt_regs {
        // SAFETY: a uprobe context is a pt_regs the kernel filled in.
        unsafe { &*ctx.regs }
    }

    /// All argument registers are loaded first, each with a volatile load
    /// at a constant offset, and only then selected: the verifier rejects a
    /// context access through a computed offset, which is what the
    /// optimiser makes of a `match` over loads.
    #[inline(always)]
    pub(crate) fn arg(ctx: &ProbeContext, n: u8) -> u64 {
        let r: *const pt_regs = regs(ctx);
        // SAFETY: r points at the kernel-provided context for this probe.
        let v: [u64; 9] = unsafe {
            [
                core::ptr::read_volatile(&raw const (*r).rax),
                core::ptr::read_volatile(&raw const (*r).rbx),
                core::ptr::read_volatile(&raw const (*r).rcx),
                core::ptr::read_volatile(&raw const (*r).rdi),
                core::ptr::read_volatile(&raw const (*r).rsi),
                core::ptr::read_volatile(&raw const (*r).r8),
                core::ptr::read_volatile(&raw const (*r).r9),
                core::ptr::read_volatile(&raw const (*r).r10),
                core::ptr::read_volatile(&raw const (*r).r11),
            ]
        };
        select(&v, n)
    }

    #[inline(always)]
    pub(crate) fn g(ctx: &ProbeContext) -> u64 {
        regs(ctx).r14
    }

    #[inline(always)]
    pub(crate) fn sp(ctx: &ProbeContext) -> u64 {
        regs(ctx).rsp
    }

    #[inline(always)]
    pub(crate) fn ip(ctx: &ProbeContext) -> u64 {
        regs(ctx).rip
    }

    /// Whether a `Jcc` with condition nibble `cc` (the low 4 bits of its
    /// opcode: `0x6` = JBE) is taken, from RFLAGS at the probe (the kernel
    /// runs the program before it emulates the jump).
    #[inline(always)]
    pub(crate) fn branch_taken(ctx: &ProbeContext, cc: u8) -> bool {
        let f = regs(ctx).eflags;
        let (cf, zf, sf, of) = (f & 1 != 0, f & 0x40 != 0, f & 0x80 != 0, f & 0x800 != 0);
        let base = match cc >> 1 {
            0 => of,
            1 => cf,
            2 => zf,
            3 => cf || zf,
            4 => sf,
            5 => f & 0x4 != 0,
            6 => sf != of,
            _ => zf || sf != of,
        };
        base != (cc & 1 != 0)
    }

    /// At a function entry (before `PUSHQ BP`) and at a `RET`, the return
    /// address is at `[RSP]`.
    #[inline(always)]
    pub(crate) fn caller_pc(ctx: &ProbeContext) -> u64 {
        let sp = regs(ctx).rsp;
        // SAFETY: bpf_probe_read_user checks the address.
        unsafe { bpf_probe_read_user(sp as *const u64) }.unwrap_or(0)
    }
}

#[cfg(bpf_target_arch = "aarch64")]
mod imp {
    use super::select;
    use aya_ebpf::{bindings::user_pt_regs, programs::ProbeContext};

    #[inline(always)]
    fn regs(ctx: &ProbeContext) -> &user_pt_regs {
        // SAFETY: on arm64 the kernel's pt_regs starts with user_pt_regs.
        unsafe { &*ctx.regs.cast::<user_pt_regs>() }
    }

    /// Loads first, select after (see the x86-64 version).
    #[inline(always)]
    pub(crate) fn arg(ctx: &ProbeContext, n: u8) -> u64 {
        let r: *const user_pt_regs = regs(ctx);
        // SAFETY: r points at the kernel-provided context.
        let v: [u64; 9] = unsafe {
            [
                core::ptr::read_volatile(&raw const (*r).regs[0]),
                core::ptr::read_volatile(&raw const (*r).regs[1]),
                core::ptr::read_volatile(&raw const (*r).regs[2]),
                core::ptr::read_volatile(&raw const (*r).regs[3]),
                core::ptr::read_volatile(&raw const (*r).regs[4]),
                core::ptr::read_volatile(&raw const (*r).regs[5]),
                core::ptr::read_volatile(&raw const (*r).regs[6]),
                core::ptr::read_volatile(&raw const (*r).regs[7]),
                core::ptr::read_volatile(&raw const (*r).regs[8]),
            ]
        };
        select(&v, n)
    }

    #[inline(always)]
    pub(crate) fn g(ctx: &ProbeContext) -> u64 {
        regs(ctx).regs[28]
    }

    #[inline(always)]
    pub(crate) fn sp(ctx: &ProbeContext) -> u64 {
        regs(ctx).sp
    }

    #[inline(always)]
    pub(crate) fn ip(ctx: &ProbeContext) -> u64 {
        regs(ctx).pc
    }

    /// Whether a `B.cond` with condition `cond` (`0x9` = B.LS) is taken,
    /// from the NZCV flags in PSTATE at the probe (the kernel runs the
    /// program before it simulates the branch).
    #[inline(always)]
    pub(crate) fn branch_taken(ctx: &ProbeContext, cond: u8) -> bool {
        let p = regs(ctx).pstate;
        let (n, z, c, v) = (
            p & (1 << 31) != 0,
            p & (1 << 30) != 0,
            p & (1 << 29) != 0,
            p & (1 << 28) != 0,
        );
        let base = match cond >> 1 {
            0 => z,
            1 => c,
            2 => n,
            3 => v,
            4 => c && !z,
            5 => n == v,
            6 => !z && n == v,
            _ => return true, // AL, NV: always
        };
        base != (cond & 1 != 0)
    }

    /// At entry and at `RET` the return address is in the link register.
    #[inline(always)]
    pub(crate) fn caller_pc(ctx: &ProbeContext) -> u64 {
        regs(ctx).regs[30]
    }
}

#[inline(always)]
pub(crate) fn arg(ctx: &ProbeContext, n: u8) -> u64 {
    imp::arg(ctx, n)
}

/// Stack pointer at the probe.
#[inline(always)]
pub(crate) fn sp(ctx: &ProbeContext) -> u64 {
    imp::sp(ctx)
}

/// The probed instruction's address.
#[inline(always)]
pub(crate) fn ip(ctx: &ProbeContext) -> u64 {
    imp::ip(ctx)
}

/// Picks register `n` out of values already on the BPF stack.
#[inline(always)]
fn select(v: &[u64; 9], n: u8) -> u64 {
    match n {
        0 => v[0],
        1 => v[1],
        2 => v[2],
        3 => v[3],
        4 => v[4],
        5 => v[5],
        6 => v[6],
        7 => v[7],
        8 => v[8],
        _ => 0,
    }
}

#[inline(always)]
pub(crate) fn g(ctx: &ProbeContext) -> u64 {
    imp::g(ctx)
}

#[inline(always)]
pub(crate) fn caller_pc(ctx: &ProbeContext) -> u64 {
    imp::caller_pc(ctx)
}

/// Whether the conditional branch at the probe, with the architecture's
/// condition code `cc`, is about to be taken.
#[inline(always)]
pub(crate) fn branch_taken(ctx: &ProbeContext, cc: u8) -> bool {
    imp::branch_taken(ctx, cc & 0xf)
}
