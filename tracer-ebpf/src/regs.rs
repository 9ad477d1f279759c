//! Go ABIInternal register access at a uprobe, per architecture.
//!
//! aya's `ProbeContext::arg` follows the C calling convention, which is wrong
//! for Go: integer arguments go in RAX RBX RCX RDI RSI R8 R9 R10 R11 (amd64)
//! or R0..R15 (arm64), the goroutine is in R14 (amd64) or R28 (arm64).
//! See `src/cmd/compile/abi-internal.md` in the Go tree.

use aya_ebpf::programs::ProbeContext;

#[cfg(bpf_target_arch = "x86_64")]
mod imp {
    use aya_ebpf::{bindings::pt_regs, helpers::bpf_probe_read_user, programs::ProbeContext};

    #[inline(always)]
    fn regs(ctx: &ProbeContext) -> &pt_regs {
        // SAFETY: a uprobe context is a pt_regs the kernel filled in.
        unsafe { &*ctx.regs }
    }

    #[inline(always)]
    pub(crate) fn arg(ctx: &ProbeContext, n: u8) -> u64 {
        let r = regs(ctx);
        match n {
            0 => r.rax,
            1 => r.rbx,
            2 => r.rcx,
            3 => r.rdi,
            4 => r.rsi,
            5 => r.r8,
            6 => r.r9,
            7 => r.r10,
            8 => r.r11,
            _ => 0,
        }
    }

    #[inline(always)]
    pub(crate) fn g(ctx: &ProbeContext) -> u64 {
        regs(ctx).r14
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
    use aya_ebpf::{bindings::user_pt_regs, programs::ProbeContext};

    #[inline(always)]
    fn regs(ctx: &ProbeContext) -> &user_pt_regs {
        // SAFETY: on arm64 the kernel's pt_regs starts with user_pt_regs.
        unsafe { &*ctx.regs.cast::<user_pt_regs>() }
    }

    #[inline(always)]
    pub(crate) fn arg(ctx: &ProbeContext, n: u8) -> u64 {
        let r = regs(ctx);
        if n < 16 { r.regs[n as usize] } else { 0 }
    }

    #[inline(always)]
    pub(crate) fn g(ctx: &ProbeContext) -> u64 {
        regs(ctx).regs[28]
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

#[inline(always)]
pub(crate) fn g(ctx: &ProbeContext) -> u64 {
    imp::g(ctx)
}

#[inline(always)]
pub(crate) fn caller_pc(ctx: &ProbeContext) -> u64 {
    imp::caller_pc(ctx)
}
