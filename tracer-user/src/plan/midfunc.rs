//! Probes inside a function body, at instructions the kernel emulates.
//!
//! A RET-site probe is single-stepped (~11 µs a hit); an entry probe sees
//! the arguments but not what the function computes. Two places in the map
//! runtime have both what the tracer needs and an emulated instruction:
//!
//! - **The seed call of a new map** ([`seed_call`]): every creation function
//!   (`makemap_small`, `makemap`, Swiss `NewMap`, Go 1.22+) allocates the
//!   map, stores it to a stack slot, calls `rand` for its hash seed, then
//!   loads the slot back and stores the seed into the map
//!   (go1.22:src/runtime/map.go `h.hash0 = uint32(rand())`,
//!   1.24:src/internal/runtime/maps/map.go `m.seed = uintptr(rand())`). At
//!   that CALL (emulated on amd64, simulated BL on arm64) the map is in the
//!   register just stored. Earlier releases inline `fastrand` and keep the
//!   RET-site probes.
//! - **A large hmap bucket array** ([`large_bucket_array`]):
//!   `makeBucketArray` rounds the array's size up with an inlined
//!   `roundupsize`, whose branch for sizes beyond the largest size class
//!   (32 KiB) is taken only for arrays of about a thousand slots or more.
//!   The first emulated instruction on that path fires once per such array:
//!   its rate is bounded by map memory allocated, never by maps grown. The
//!   map itself is `hashGrow`'s second argument, read from the stack slot
//!   `hashGrow` keeps it in across the call; calls from elsewhere
//!   (`makemap` with a large hint, `mapclear`) are told apart by their return
//!   address and not counted.
//!
//! Both are found by decoding, and checked by what the code does next (the
//! seed stored into the map at the hash-seed offset; the threshold compared
//! against 32 KiB). When a shape does not match, the caller falls back.

use iced_x86::{
    Code, Decoder, DecoderOptions, FlowControl, InstructionInfoFactory, Mnemonic, OpAccess, OpKind,
    Register,
};

use super::disasm::Insn;
use crate::inspect::{BinaryInfo, Func, GoArch};

/// Functions that return a map's hash seed.
const SEED_FUNCS: &[&str] = &["runtime.rand", "internal/runtime/maps.rand"];
/// Offsets of the hash seed: hmap `hash0`, Swiss `Map.seed`.
const SEED_OFFSETS: &[i64] = &[12, 8];
/// `roundupsize`'s small-object limit: `maxSmallSize - mallocHeaderSize`
/// (Go 1.22+) or `maxSmallSize` (earlier).
const SMALL_LIMITS: &[u64] = &[0x7ff8, 0x8000];

/// A probe at the seed call of a creation function.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeedProbe {
    /// The CALL (BL).
    pub insn: Insn,
    /// ABIInternal index of the register holding the new map.
    pub map_arg: u8,
    /// Offset from SP to the return address at the CALL.
    pub ret_sp_off: i32,
}

/// A probe on the large-array path of `makeBucketArray`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LargeArrayProbe {
    /// The emulated instruction.
    pub insn: Insn,
    /// Offset from SP to `hashGrow`'s map argument.
    pub map_sp_off: i32,
    /// Offset from SP to the return address.
    pub ret_sp_off: i32,
    /// Return address into `hashGrow` minus the probed address.
    pub ret_delta: i64,
    /// ABIInternal register still holding the map type, if unchanged.
    pub type_arg: Option<u8>,
    /// ABIInternal register still holding the new B, if unchanged.
    pub size_arg: Option<u8>,
}

/// Branch condition, as far as the size test needs it (unsigned).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cond {
    /// Taken when the first operand is above (or above or equal).
    Above,
    /// Taken when below or equal (or below).
    BelowEq,
    /// Anything else.
    Other,
}

/// What an instruction does, as far as these analyses need.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    /// `[SP + disp] = reg` (64-bit).
    StoreSp {
        reg: u8,
        disp: i64,
    },
    /// `reg = [SP + disp]` (64-bit).
    LoadSp {
        reg: u8,
        disp: i64,
    },
    /// `[base + disp] = src` (32 or 64-bit).
    Store {
        src: u8,
        base: u8,
        disp: i64,
    },
    /// Flags of `reg - imm`.
    CmpImm {
        reg: u8,
        imm: u64,
    },
    /// Flags of `a - b`.
    CmpRegs {
        a: u8,
        b: u8,
    },
    /// `reg = imm`.
    MovImm {
        reg: u8,
        imm: u64,
    },
    /// Direct branch.
    Branch {
        cond: Option<Cond>,
        target: u64,
    },
    /// Direct call.
    Call {
        target: u64,
    },
    Nop,
    Other,
}

/// One decoded instruction.
#[derive(Clone, Debug)]
struct Decoded {
    insn: Insn,
    op: Op,
    /// The kernel emulates (simulates) it rather than single-stepping.
    emulated: bool,
    /// Registers it may write (bit per hardware register number).
    writes: u64,
}

/// Hardware register number used below: amd64 in iced's order from RAX
/// (RAX RCX RDX RBX RSP RBP RSI RDI R8..R15), arm64 X0..X30 and 31 for
/// SP/ZR.
const AMD64_ABI: [u8; 9] = [0, 3, 1, 7, 6, 8, 9, 10, 11];
const SP_ARM64: u8 = 31;

fn abi_index(arch: GoArch, hw: u8) -> Option<u8> {
    match arch {
        GoArch::Amd64 => AMD64_ABI.iter().position(|&r| r == hw).map(|i| i as u8),
        GoArch::Arm64 => (hw < 9).then_some(hw),
    }
}

fn abi_hw(arch: GoArch, abi: u8) -> u8 {
    match arch {
        GoArch::Amd64 => AMD64_ABI[usize::from(abi)],
        GoArch::Arm64 => abi,
    }
}

fn hw_x86(r: Register) -> Option<u8> {
    let full = r.full_register();
    let n = (full as u32).checked_sub(Register::RAX as u32)?;
    (n < 16).then_some(n as u8)
}

fn decode(info: &BinaryInfo, f: &Func) -> Vec<Decoded> {
    let Some(code) = usize::try_from(f.end.saturating_sub(f.entry))
        .ok()
        .and_then(|len| info.read_va(f.entry, len))
    else {
        return Vec::new();
    };
    match info.goarch {
        GoArch::Amd64 => decode_amd64(code, f.entry),
        GoArch::Arm64 => decode_arm64(code, f.entry),
    }
}

fn decode_amd64(code: &[u8], addr: u64) -> Vec<Decoded> {
    let mut d = Decoder::with_ip(64, code, addr, DecoderOptions::NONE);
    let mut factory = InstructionInfoFactory::new();
    let mut out = Vec::new();
    for ins in &mut d {
        let mut writes = 0u64;
        for u in factory.info(&ins).used_registers() {
            if matches!(
                u.access(),
                OpAccess::Write
                    | OpAccess::CondWrite
                    | OpAccess::ReadWrite
                    | OpAccess::ReadCondWrite
            ) && let Some(n) = hw_x86(u.register())
            {
                writes |= 1 << n;
            }
        }
        let mem_rsp = |i: u32| {
            ins.op_kind(i) == OpKind::Memory
                && ins.memory_base() == Register::RSP
                && ins.memory_index() == Register::None
        };
        let reg64 = |i: u32| {
            let r = ins.op_register(i);
            (ins.op_kind(i) == OpKind::Register && r.is_gpr64())
                .then(|| hw_x86(r))
                .flatten()
        };
        let disp = ins.memory_displacement64() as i64;
        let op = match ins.flow_control() {
            FlowControl::Call if ins.op0_kind() == OpKind::NearBranch64 => {
                writes = u64::MAX;
                Op::Call {
                    target: ins.near_branch_target(),
                }
            }
            FlowControl::Call | FlowControl::IndirectCall => {
                writes = u64::MAX;
                Op::Other
            }
            FlowControl::ConditionalBranch if ins.op0_kind() == OpKind::NearBranch64 => {
                let cond = match ins.mnemonic() {
                    Mnemonic::Ja | Mnemonic::Jae => Cond::Above,
                    Mnemonic::Jbe | Mnemonic::Jb => Cond::BelowEq,
                    _ => Cond::Other,
                };
                Op::Branch {
                    cond: Some(cond),
                    target: ins.near_branch_target(),
                }
            }
            FlowControl::UnconditionalBranch if ins.op0_kind() == OpKind::NearBranch64 => {
                Op::Branch {
                    cond: None,
                    target: ins.near_branch_target(),
                }
            }
            _ => match ins.mnemonic() {
                Mnemonic::Nop => Op::Nop,
                Mnemonic::Mov if mem_rsp(0) && ins.memory_size().size() == 8 => {
                    reg64(1).map_or(Op::Other, |reg| Op::StoreSp { reg, disp })
                }
                Mnemonic::Mov if mem_rsp(1) && ins.memory_size().size() == 8 => {
                    reg64(0).map_or(Op::Other, |reg| Op::LoadSp { reg, disp })
                }
                Mnemonic::Mov
                    if ins.op0_kind() == OpKind::Memory
                        && ins.op1_kind() == OpKind::Register
                        && ins.memory_index() == Register::None =>
                {
                    match (hw_x86(ins.op1_register()), hw_x86(ins.memory_base())) {
                        (Some(src), Some(base)) => Op::Store { src, base, disp },
                        _ => Op::Other,
                    }
                }
                Mnemonic::Mov if ins.op0_kind() == OpKind::Register && ins.op_count() == 2 => {
                    match (hw_x86(ins.op0_register()), ins.op1_kind()) {
                        (
                            Some(reg),
                            OpKind::Immediate32 | OpKind::Immediate64 | OpKind::Immediate32to64,
                        ) => Op::MovImm {
                            reg,
                            imm: ins.immediate(1),
                        },
                        _ => Op::Other,
                    }
                }
                Mnemonic::Cmp
                    if ins.op0_kind() == OpKind::Register
                        && matches!(
                            ins.op1_kind(),
                            OpKind::Immediate8to64
                                | OpKind::Immediate32to64
                                | OpKind::Immediate32
                                | OpKind::Immediate8to32
                        ) =>
                {
                    hw_x86(ins.op0_register()).map_or(Op::Other, |reg| Op::CmpImm {
                        reg,
                        imm: ins.immediate(1),
                    })
                }
                Mnemonic::Cmp
                    if ins.op0_kind() == OpKind::Register && ins.op1_kind() == OpKind::Register =>
                {
                    match (hw_x86(ins.op0_register()), hw_x86(ins.op1_register())) {
                        (Some(a), Some(b)) => Op::CmpRegs { a, b },
                        _ => Op::Other,
                    }
                }
                _ => Op::Other,
            },
        };
        // arch/x86/kernel/uprobes.c: direct CALL, JMP and Jcc are emulated.
        let emulated =
            matches!(op, Op::Call { .. } | Op::Branch { .. }) && ins.code() != Code::INVALID;
        out.push(Decoded {
            insn: Insn {
                address: ins.ip(),
                len: ins.len() as u64,
                text: super::disasm::format_x86(&ins),
            },
            op,
            emulated,
            writes,
        });
    }
    out
}

fn sext(v: u32, bits: u32) -> i64 {
    let shift = 64 - bits;
    (i64::from(v) << shift) >> shift
}

/// The value of an A64 logical (bitmask) immediate, or `None`.
fn arm64_bitmask(n: u32, immr: u32, imms: u32, is64: bool) -> Option<u64> {
    let len = 31 - ((n << 6) | (!imms & 0x3f)).leading_zeros();
    if len < 1 || (!is64 && n == 1) {
        return None;
    }
    let size = 1u32 << len;
    let levels = size - 1;
    let s = imms & levels;
    let r = immr & levels;
    if s == levels {
        return None;
    }
    let ones = (1u64 << (s + 1)) - 1;
    let elem = if r == 0 {
        ones
    } else {
        ((ones >> r) | (ones << (size - r))) & (u64::MAX >> (64 - size))
    };
    let mut v = 0u64;
    let mut i = 0;
    while i < 64 {
        v |= elem << i;
        i += size;
    }
    Some(if is64 { v } else { v & 0xffff_ffff })
}

fn decode_arm64(code: &[u8], addr: u64) -> Vec<Decoded> {
    code.chunks_exact(4)
        .enumerate()
        .map(|(i, c)| {
            let w = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            let pc = addr + 4 * i as u64;
            let rd = (w & 0x1f) as u8;
            let rn = ((w >> 5) & 0x1f) as u8;
            let rm = ((w >> 16) & 0x1f) as u8;
            let imm12 = u64::from((w >> 10) & 0xfff);
            let mut writes: u64 = 0;
            let op = if w == 0xd503_201f {
                Op::Nop
            } else if w & 0xfc00_0000 == 0x9400_0000 {
                writes = u64::MAX;
                Op::Call {
                    target: pc.wrapping_add_signed(sext(w & 0x3ff_ffff, 26) * 4),
                }
            } else if w & 0xfc00_0000 == 0x1400_0000 {
                Op::Branch {
                    cond: None,
                    target: pc.wrapping_add_signed(sext(w & 0x3ff_ffff, 26) * 4),
                }
            } else if w & 0xff00_0010 == 0x5400_0000 {
                let cond = match w & 0xf {
                    8 | 2 => Cond::Above,
                    9 | 3 => Cond::BelowEq,
                    _ => Cond::Other,
                };
                Op::Branch {
                    cond: Some(cond),
                    target: pc.wrapping_add_signed(sext((w >> 5) & 0x7_ffff, 19) * 4),
                }
            } else if w & 0x7e00_0000 == 0x3400_0000 {
                // CBZ/CBNZ.
                Op::Branch {
                    cond: Some(Cond::Other),
                    target: pc.wrapping_add_signed(sext((w >> 5) & 0x7_ffff, 19) * 4),
                }
            } else if w & 0x7e00_0000 == 0x3600_0000 {
                // TBZ/TBNZ.
                Op::Branch {
                    cond: Some(Cond::Other),
                    target: pc.wrapping_add_signed(sext((w >> 5) & 0x3fff, 14) * 4),
                }
            } else if w & 0xffc0_0000 == 0xf900_0000 {
                if rn == SP_ARM64 {
                    Op::StoreSp {
                        reg: rd,
                        disp: (imm12 * 8) as i64,
                    }
                } else {
                    Op::Store {
                        src: rd,
                        base: rn,
                        disp: (imm12 * 8) as i64,
                    }
                }
            } else if w & 0xffc0_0000 == 0xb900_0000 {
                Op::Store {
                    src: rd,
                    base: rn,
                    disp: (imm12 * 4) as i64,
                }
            } else if w & 0xffc0_0000 == 0xf940_0000 && rn == SP_ARM64 {
                writes = 1 << rd;
                Op::LoadSp {
                    reg: rd,
                    disp: (imm12 * 8) as i64,
                }
            } else if w & 0x7f80_001f == 0x7100_001f {
                let sh = (w >> 22) & 1;
                Op::CmpImm {
                    reg: rn,
                    imm: imm12 << (12 * sh),
                }
            } else if w & 0x7f20_fc1f == 0x6b00_001f {
                Op::CmpRegs { a: rn, b: rm }
            } else if w & 0x7f80_0000 == 0x5280_0000 {
                // MOVZ.
                writes = 1 << rd;
                let hw = (w >> 21) & 3;
                Op::MovImm {
                    reg: rd,
                    imm: u64::from((w >> 5) & 0xffff) << (16 * hw),
                }
            } else if w & 0x7f80_0000 == 0x3200_0000 && rn == 31 {
                // ORR Rd, ZR, #bitmask (MOV of a bitmask immediate).
                writes = 1 << rd;
                match arm64_bitmask(
                    (w >> 22) & 1,
                    (w >> 16) & 0x3f,
                    (w >> 10) & 0x3f,
                    w >> 31 == 1,
                ) {
                    Some(imm) => Op::MovImm { reg: rd, imm },
                    None => Op::Other,
                }
            } else {
                Op::Other
            };
            if matches!(op, Op::Other) {
                // Conservative: everything but stores and branches may write Rd.
                let branch = w & 0x1c00_0000 == 0x1400_0000;
                let load_store = w & 0x0a00_0000 == 0x0800_0000;
                let is_load = w & (1 << 22) != 0;
                if branch && w & 0xffff_fc1f == 0xd63f_0000 {
                    writes = u64::MAX; // BLR
                } else if !branch && (!load_store || is_load) {
                    writes = 1 << rd;
                    if load_store && w & 0x3a00_0000 == 0x2800_0000 {
                        writes |= 1 << ((w >> 10) & 0x1f); // LDP Rt2
                    }
                }
            }
            // arch/arm64/kernel/probes/decode-insn.c: branches, ADR/ADRP and
            // LDR (literal) are simulated.
            let emulated = matches!(op, Op::Call { .. } | Op::Branch { .. })
                || w & 0x1f00_0000 == 0x1000_0000
                || w & 0x3b00_0000 == 0x1800_0000;
            Decoded {
                insn: Insn {
                    address: pc,
                    len: 4,
                    text: super::disasm::arm64_text(w, pc),
                },
                op,
                emulated,
                writes,
            }
        })
        .collect()
}

/// Offset from SP to the return address at `pc`, inside the body of a
/// function with a frame: `[SP + pcsp]` on amd64 (the CALL pushed it), `[SP]`
/// on arm64 (the prologue saves the link register there).
fn ret_slot(info: &BinaryInfo, pc: u64) -> Option<i32> {
    let delta = info.sp_delta(pc)?;
    if delta <= 0 {
        return None;
    }
    match info.goarch {
        GoArch::Amd64 => i32::try_from(delta).ok(),
        GoArch::Arm64 => Some(0),
    }
}

/// The seed call of a map creation function, when it has the expected shape.
#[must_use]
pub fn seed_call(info: &BinaryInfo, f: &Func) -> Option<SeedProbe> {
    let code = decode(info, f);
    let ret_reg = 0; // RAX / X0
    for (i, d) in code.iter().enumerate() {
        let Op::Call { target } = d.op else { continue };
        if !info
            .func_by_pc(target)
            .is_some_and(|g| g.entry == target && SEED_FUNCS.contains(&g.name.as_str()))
        {
            continue;
        }
        let before = code[..i].iter().rev().find(|p| p.op != Op::Nop)?;
        let Op::StoreSp { reg, disp } = before.op else {
            return None;
        };
        let mut after = code[i + 1..].iter().filter(|p| p.op != Op::Nop);
        let Op::LoadSp {
            reg: back,
            disp: d2,
        } = after.next()?.op
        else {
            return None;
        };
        let Op::Store {
            src,
            base,
            disp: seed_off,
        } = after.next()?.op
        else {
            return None;
        };
        if d2 != disp || base != back || src != ret_reg || !SEED_OFFSETS.contains(&seed_off) {
            return None;
        }
        return Some(SeedProbe {
            insn: d.insn.clone(),
            map_arg: abi_index(info.goarch, reg)?,
            ret_sp_off: ret_slot(info, d.insn.address)?,
        });
    }
    None
}

/// The size test of the inlined `roundupsize`: the address where the
/// large-object path starts.
fn large_path_start(code: &[Decoded]) -> Option<u64> {
    for (i, d) in code.iter().enumerate() {
        let Some(next) = code.get(i + 1) else { break };
        let Op::Branch {
            cond: Some(cond),
            target,
        } = next.op
        else {
            continue;
        };
        let fall = next.insn.address + next.insn.len;
        let konst = |r: u8| {
            code[i.saturating_sub(3)..i]
                .iter()
                .rev()
                .find_map(|p| match p.op {
                    Op::MovImm { reg, imm } if reg == r => Some(imm),
                    _ => None,
                })
        };
        // `size - limit` (true) or `limit - size` (false).
        let size_first = match d.op {
            Op::CmpImm { imm, .. } if SMALL_LIMITS.contains(&imm) => true,
            Op::CmpRegs { b, .. } if konst(b).is_some_and(|k| SMALL_LIMITS.contains(&k)) => true,
            Op::CmpRegs { a, .. } if konst(a).is_some_and(|k| SMALL_LIMITS.contains(&k)) => false,
            _ => continue,
        };
        return match (cond, size_first) {
            (Cond::Above, true) | (Cond::BelowEq, false) => Some(target),
            (Cond::BelowEq, true) | (Cond::Above, false) => Some(fall),
            (Cond::Other, _) => None,
        };
    }
    None
}

/// The probe on `makeBucketArray`'s large-array path, reading the map from
/// `caller` (`runtime.hashGrow`).
#[must_use]
pub fn large_bucket_array(info: &BinaryInfo, mba: &Func, caller: &Func) -> Option<LargeArrayProbe> {
    let code = decode(info, mba);
    let start = large_path_start(&code)?;
    let first = code.iter().position(|d| d.insn.address == start)?;
    let probe = code[first..]
        .iter()
        .find(|d| d.emulated || matches!(d.op, Op::Other) && d.insn.text.starts_with("ret"))?;
    if !probe.emulated {
        return None;
    }
    let p = probe.insn.address;
    // Straight-line from the start: nothing else jumps in before the probe.
    let jumps_in = code
        .iter()
        .any(|d| matches!(d.op, Op::Branch { target, .. } if target > start && target <= p));
    if jumps_in
        || code[first..]
            .iter()
            .take_while(|d| d.insn.address < p)
            .any(|d| matches!(d.op, Op::Branch { .. } | Op::Call { .. }))
    {
        return None;
    }
    let kept = |abi: u8| {
        let bit = 1u64 << abi_hw(info.goarch, abi);
        code.iter()
            .take_while(|d| d.insn.address < p)
            .all(|d| d.writes & bit == 0)
            .then_some(abi)
    };
    // hashGrow: the call, and the slot its map argument (register 1) lives in.
    let hg = decode(info, caller);
    let call = hg
        .iter()
        .position(|d| d.op == (Op::Call { target: mba.entry }))?;
    let map_hw = abi_hw(info.goarch, 1);
    let store = hg[..call]
        .iter()
        .rposition(|d| matches!(d.op, Op::StoreSp { reg, .. } if reg == map_hw))?;
    let Op::StoreSp { disp, .. } = hg[store].op else {
        return None;
    };
    let (s_addr, c_addr) = (hg[store].insn.address, hg[call].insn.address);
    let clean_block = !hg[store..call].iter().any(|d| {
        matches!(d.op, Op::Branch { .. } | Op::Call { .. })
            || matches!(d.op, Op::StoreSp { disp: x, .. } if x == disp) && d.insn.address != s_addr
    }) && !hg
        .iter()
        .any(|d| matches!(d.op, Op::Branch { target, .. } if target > s_addr && target <= c_addr))
        && hg[..store].iter().all(|d| d.writes & (1 << map_hw) == 0);
    if !clean_block {
        return None;
    }
    let pushed = match info.goarch {
        GoArch::Amd64 => 8,
        GoArch::Arm64 => 0,
    };
    let map_sp_off =
        info.sp_delta(p)? + pushed + info.sp_delta(c_addr)? - info.sp_delta(s_addr)? + disp;
    let ret = c_addr + hg[call].insn.len;
    Some(LargeArrayProbe {
        insn: probe.insn.clone(),
        map_sp_off: i32::try_from(map_sp_off).ok().filter(|&o| o > 0)?,
        ret_sp_off: ret_slot(info, p)?,
        ret_delta: i64::try_from(ret).ok()? - i64::try_from(p).ok()?,
        type_arg: kept(0),
        size_arg: kept(1),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitmask_immediates() {
        // ORR x8, xzr, #0x7ff8: N=1 immr=61 imms=11.
        assert_eq!(arm64_bitmask(1, 61, 11, true), Some(0x7ff8));
        // #0x1fff: N=1 immr=0 imms=12.
        assert_eq!(arm64_bitmask(1, 0, 12, true), Some(0x1fff));
        // All ones is not encodable.
        assert_eq!(arm64_bitmask(1, 0, 63, true), None);
    }

    fn d(address: u64, op: Op) -> Decoded {
        Decoded {
            insn: Insn {
                address,
                len: 4,
                text: String::new(),
            },
            op,
            emulated: matches!(op, Op::Branch { .. }),
            writes: 0,
        }
    }

    #[test]
    fn large_path_follows_the_compare_direction() {
        let above = [
            d(
                0,
                Op::CmpImm {
                    reg: 9,
                    imm: 0x7ff8,
                },
            ),
            d(
                4,
                Op::Branch {
                    cond: Some(Cond::Above),
                    target: 100,
                },
            ),
        ];
        assert_eq!(large_path_start(&above), Some(100));
        let below = [
            d(
                0,
                Op::CmpImm {
                    reg: 9,
                    imm: 0x8000,
                },
            ),
            d(
                4,
                Op::Branch {
                    cond: Some(Cond::BelowEq),
                    target: 100,
                },
            ),
        ];
        assert_eq!(large_path_start(&below), Some(8));
        // arm64 `MOVD $32760, R8; CMP R8, R4` is SUBS XZR, X4, X8: size first.
        let regs = [
            d(0, Op::MovImm { reg: 8, imm: 32760 }),
            d(4, Op::CmpRegs { a: 4, b: 8 }),
            d(
                8,
                Op::Branch {
                    cond: Some(Cond::Above),
                    target: 100,
                },
            ),
        ];
        assert_eq!(large_path_start(&regs), Some(100));
        let flipped = [
            d(0, Op::MovImm { reg: 8, imm: 32760 }),
            d(4, Op::CmpRegs { a: 8, b: 4 }),
            d(
                8,
                Op::Branch {
                    cond: Some(Cond::Above),
                    target: 100,
                },
            ),
        ];
        assert_eq!(large_path_start(&flipped), Some(12));
        let other = [
            d(
                0,
                Op::CmpImm {
                    reg: 9,
                    imm: 0x1000,
                },
            ),
            d(
                4,
                Op::Branch {
                    cond: Some(Cond::Above),
                    target: 100,
                },
            ),
        ];
        assert_eq!(large_path_start(&other), None);
    }
}
