//! Instruction decoding for probe placement: the prologue instruction the
//! kernel emulates, and every RET site.
//!
//! Why not the entry: a uprobe on an instruction the kernel cannot emulate is
//! single-stepped out of line, 4-15 µs per hit on the reference VM against
//! about 0.45 µs for an emulated one (DESIGN.md 3.2).
//! - amd64 (`arch/x86/kernel/uprobes.c`: push, jmp/jcc/call emulation): the
//!   `PUSHQ BP` that follows Go's stack check runs exactly once per call.
//! - arm64 (`arch/arm64/kernel/probes/decode-insn.c`: only branches,
//!   ADR/ADRP and LDR literal are simulated): the `B.LS` of the stack check.
//!   It fires a second time when the stack grows (morestack jumps back to the
//!   entry). The same holds on amd64 before Go 1.21, probed on the stack
//!   check's `JBE`. Such a placement carries the branch's condition
//!   ([`Placement::restart_cond`]): the eBPF program leaves out a hit whose
//!   branch is about to be taken (the call restarts), so each call counts
//!   once, whatever the time between the two hits.

use iced_x86::{
    Decoder, DecoderOptions, FlowControl, Formatter, Instruction, IntelFormatter, Mnemonic,
    Register,
};

use crate::inspect::{BinaryInfo, Func, GoArch};

/// How far into the function the prologue scan looks, in bytes.
const PROLOGUE_WINDOW: u64 = 40;

/// A decoded instruction at an address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Insn {
    /// Link-time VA.
    pub address: u64,
    /// Length in bytes.
    pub len: u64,
    /// Intel syntax (amd64) or a short arm64 mnemonic.
    pub text: String,
}

/// A chosen probe location.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    /// The instruction.
    pub insn: Insn,
    /// Why this one.
    pub reason: String,
    /// The kernel emulates (or simulates) it, rather than single-stepping
    /// it out of line: ~1 µs a hit instead of ~11.
    pub emulated: bool,
    /// For a probe on the stack check's conditional branch:
    /// [`tracer_common::RESTART_COND`] plus the branch's condition code
    /// (taken: morestack, then the function restarts and the probe fires
    /// again); otherwise [`tracer_common::NO_RESTART`].
    pub restart_cond: u8,
}

pub(super) fn format_x86(ins: &Instruction) -> String {
    let mut f = IntelFormatter::new();
    f.options_mut().set_uppercase_hex(false);
    f.options_mut().set_hex_prefix("0x");
    f.options_mut().set_hex_suffix("");
    f.options_mut().set_branch_leading_zeros(false);
    let mut s = String::new();
    f.format(ins, &mut s);
    s
}

fn func_bytes<'a>(info: &'a BinaryInfo, f: &Func) -> Option<&'a [u8]> {
    let len = usize::try_from(f.end.checked_sub(f.entry)?).ok()?;
    info.read_va(f.entry, len)
}

/// Decodes every instruction of `f` in address order (linear sweep).
#[must_use]
pub fn decode_function(info: &BinaryInfo, f: &Func) -> Vec<Insn> {
    let Some(code) = func_bytes(info, f) else {
        return Vec::new();
    };
    match info.goarch {
        GoArch::Amd64 => {
            let mut d = Decoder::with_ip(64, code, f.entry, DecoderOptions::NONE);
            let mut out = Vec::new();
            let mut ins = Instruction::default();
            while d.can_decode() {
                d.decode_out(&mut ins);
                out.push(Insn {
                    address: ins.ip(),
                    len: ins.len() as u64,
                    text: format_x86(&ins),
                });
            }
            out
        }
        GoArch::Arm64 => code
            .chunks_exact(4)
            .enumerate()
            .map(|(i, w)| {
                let addr = f.entry + 4 * i as u64;
                let word = u32::from_le_bytes([w[0], w[1], w[2], w[3]]);
                Insn {
                    address: addr,
                    len: 4,
                    text: arm64_text(word, addr),
                }
            })
            .collect(),
    }
}

/// The probe location for an entry-type hook.
#[must_use]
pub fn entry_placement(info: &BinaryInfo, f: &Func) -> Placement {
    let found = match info.goarch {
        GoArch::Amd64 => amd64_push_rbp(info, f),
        GoArch::Arm64 => arm64_stack_check_branch(info, f),
    };
    if let Some(p) = found {
        return p;
    }
    let insn = decode_function(info, f).into_iter().next().unwrap_or(Insn {
        address: f.entry,
        len: 0,
        text: "?".to_owned(),
    });
    let what = match info.goarch {
        GoArch::Amd64 => "no PUSHQ BP in prologue",
        GoArch::Arm64 => "no stack-check B.cond in prologue",
    };
    Placement {
        insn,
        reason: format!("entry: {what}; single-stepped, ~4-15 µs/hit"),
        emulated: false,
        restart_cond: tracer_common::NO_RESTART,
    }
}

fn amd64_push_rbp(info: &BinaryInfo, f: &Func) -> Option<Placement> {
    let code = func_bytes(info, f)?;
    let window = usize::try_from(PROLOGUE_WINDOW.min(f.end - f.entry)).ok()?;
    let mut d = Decoder::with_ip(64, code.get(..window)?, f.entry, DecoderOptions::NONE);
    let mut ins = Instruction::default();
    let mut saw_check = false;
    let mut jcc: Option<(Insn, u8)> = None;
    // The previous instruction compared with `16(R14)` (g.stackguard0) or
    // `24(R14)` (g.stackguard1, in `//go:systemstack` functions): the
    // conditional jump after it is the stack check's.
    let mut after_guard_cmp = false;
    while d.can_decode() {
        d.decode_out(&mut ins);
        if ins.is_invalid() {
            break;
        }
        if ins.mnemonic() == Mnemonic::Push && ins.op0_register() == Register::RBP {
            let reason = if saw_check {
                "PUSHQ BP after the stack check: emulated by the kernel (~0.45 µs/hit), runs once per call"
            } else {
                "PUSHQ BP (no stack check): emulated by the kernel (~0.45 µs/hit), runs once per call"
            };
            return Some(Placement {
                insn: Insn {
                    address: ins.ip(),
                    len: ins.len() as u64,
                    text: format_x86(&ins),
                },
                reason: reason.to_owned(),
                emulated: true,
                restart_cond: tracer_common::NO_RESTART,
            });
        }
        let guard_cmp = ins.mnemonic() == Mnemonic::Cmp
            && ins.memory_base() == Register::R14
            && matches!(ins.memory_displacement64(), 16 | 24);
        match ins.flow_control() {
            FlowControl::Next => {}
            // The stack check's JBE/JLS to the morestack call at the end.
            FlowControl::ConditionalBranch => {
                saw_check = true;
                if jcc.is_none() {
                    // iced's ConditionCode: none, o, no, b, ae, e, ne, be,
                    // a, s, ns, p, np, l, ge, le, g; minus one is the
                    // opcode's condition nibble.
                    let cc = (ins.condition_code() as u8).wrapping_sub(1);
                    let restart = if after_guard_cmp && cc < 16 {
                        tracer_common::RESTART_COND | cc
                    } else {
                        tracer_common::NO_RESTART
                    };
                    jcc = Some((
                        Insn {
                            address: ins.ip(),
                            len: ins.len() as u64,
                            text: format_x86(&ins),
                        },
                        restart,
                    ));
                }
            }
            _ => break,
        }
        after_guard_cmp = guard_cmp;
    }
    // Go <= 1.20 frames are `SUBQ $n, SP; MOVQ BP, n-8(SP)` (no PUSHQ BP,
    // go1.20:src/cmd/internal/obj/x86/obj6.go:preprocess): the stack check's
    // conditional jump is the only emulated instruction in the prologue.
    jcc.map(|(insn, restart_cond)| Placement {
        insn,
        reason: "emulated conditional jump of the stack check (no PUSHQ BP prologue before Go 1.21); fires again when the goroutine stack grows, the taken (restarting) hit left out in the kernel".to_owned(),
        emulated: true,
        restart_cond,
    })
}

/// `B.cond`: `0101 0100 imm19 0 cond`.
fn is_bcond(w: u32) -> bool {
    w & 0xff00_0010 == 0x5400_0000
}

fn arm64_stack_check_branch(info: &BinaryInfo, f: &Func) -> Option<Placement> {
    let n = usize::try_from((PROLOGUE_WINDOW / 4).min((f.end - f.entry) / 4)).ok()?;
    let code = info.read_va(f.entry, n * 4)?;
    let mut saw_cmp = false;
    for (i, w) in code.chunks_exact(4).enumerate() {
        let word = u32::from_le_bytes([w[0], w[1], w[2], w[3]]);
        let addr = f.entry + 4 * i as u64;
        // CMP = SUBS (shifted or extended register) with Rd = ZR.
        if word & 0x7f20_001f == 0x6b00_001f || word & 0x7fe0_001f == 0x6b20_001f {
            saw_cmp = true;
            continue;
        }
        if is_bcond(word) {
            if !saw_cmp {
                return None;
            }
            return Some(Placement {
                insn: Insn { address: addr, len: 4, text: arm64_text(word, addr) },
                reason: "simulated B.cond of the stack check; fires again when the goroutine stack grows, the taken (restarting) hit left out in the kernel".to_owned(),
                emulated: true,
                restart_cond: tracer_common::RESTART_COND | (word & 0xf) as u8,
            });
        }
        // Any other branch ends the straight-line prologue.
        if arm64_is_branch(word) {
            return None;
        }
    }
    None
}

fn arm64_is_branch(w: u32) -> bool {
    is_bcond(w)
        || w & 0x7c00_0000 == 0x1400_0000 // B, BL
        || w & 0x7e00_0000 == 0x3400_0000 // CBZ/CBNZ
        || w & 0x7e00_0000 == 0x3600_0000 // TBZ/TBNZ
        || w & 0xfe1f_fc1f == 0xd61f_0000 // BR, BLR, RET
}

/// arm64 `RET` (x30).
pub const ARM64_RET: u32 = 0xd65f_03c0;

fn sext(v: u32, bits: u32) -> i64 {
    let shift = 64 - bits;
    (i64::from(v) << shift) >> shift
}

pub(super) fn arm64_text(w: u32, addr: u64) -> String {
    const CONDS: [&str; 16] = [
        "eq", "ne", "hs", "lo", "mi", "pl", "vs", "vc", "hi", "ls", "ge", "lt", "gt", "le", "al",
        "nv",
    ];
    if w == ARM64_RET {
        return "ret".to_owned();
    }
    if is_bcond(w) {
        let t = addr.wrapping_add_signed(sext((w >> 5) & 0x7_ffff, 19) * 4);
        return format!("b.{} {t:#x}", CONDS[(w & 0xf) as usize]);
    }
    if w & 0xfc00_0000 == 0x1400_0000 || w & 0xfc00_0000 == 0x9400_0000 {
        let t = addr.wrapping_add_signed(sext(w & 0x3ff_ffff, 26) * 4);
        let m = if w & 0x8000_0000 != 0 { "bl" } else { "b" };
        return format!("{m} {t:#x}");
    }
    if w & 0x7f20_001f == 0x6b00_001f || w & 0x7fe0_001f == 0x6b20_001f {
        return format!("cmp ({w:#010x})");
    }
    format!(".inst {w:#010x}")
}

/// Every RET site of `f`: `ret` instructions and jumps (tail calls) to the
/// entry of another function.
#[must_use]
pub fn ret_sites(info: &BinaryInfo, f: &Func) -> Vec<Insn> {
    let Some(code) = func_bytes(info, f) else {
        return Vec::new();
    };
    let leaves =
        |t: u64| (t < f.entry || t >= f.end) && info.func_by_pc(t).is_some_and(|g| g.entry == t);
    let mut out = Vec::new();
    match info.goarch {
        GoArch::Amd64 => {
            let mut d = Decoder::with_ip(64, code, f.entry, DecoderOptions::NONE);
            let mut ins = Instruction::default();
            while d.can_decode() {
                d.decode_out(&mut ins);
                let is_exit = match ins.flow_control() {
                    FlowControl::Return => true,
                    FlowControl::UnconditionalBranch => leaves(ins.near_branch_target()),
                    _ => false,
                };
                if is_exit {
                    out.push(Insn {
                        address: ins.ip(),
                        len: ins.len() as u64,
                        text: format_x86(&ins),
                    });
                }
            }
        }
        GoArch::Arm64 => {
            for (i, w) in code.chunks_exact(4).enumerate() {
                let word = u32::from_le_bytes([w[0], w[1], w[2], w[3]]);
                let addr = f.entry + 4 * i as u64;
                let is_exit = word == ARM64_RET
                    || (word & 0xfc00_0000 == 0x1400_0000
                        && leaves(addr.wrapping_add_signed(sext(word & 0x3ff_ffff, 26) * 4)));
                if is_exit {
                    out.push(Insn {
                        address: addr,
                        len: 4,
                        text: arm64_text(word, addr),
                    });
                }
            }
        }
    }
    out
}
