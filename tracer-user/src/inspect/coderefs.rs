//! Data addresses that machine code computes: what a function loads,
//! increments or passes by address, decoded from its bytes. Stripped Go
//! binaries keep their code and function names (pclntab) but not the names
//! of their globals; these references recover a global's address from the
//! runtime functions known to use it (see [`super::gcglobals`]).
//!
//! amd64: RIP-relative operands (iced-x86). arm64: the `ADRP` + `ADD`/`LDR`/
//! `STR` pairs the Go linker emits for every global (`R_ADDRARM64`), then
//! `LDAR` through the register an `ADRP`+`ADD` pair filled (atomic loads).
//! Both are linear sweeps over one function; nothing here can panic on
//! arbitrary bytes.

use iced_x86::{Code, Decoder, DecoderOptions, FlowControl, OpKind, Register};

use super::GoArch;

/// How an instruction uses a data address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// A 32-bit read (`MOV`, `CMP`, `ADD`/`SUB` into a register from
    /// `[X]`; arm64 `LDR Wt` or `LDAR Wt`).
    Load32,
    /// A 32-bit `X += 1` (`INC dword [X]`, `ADD dword [X], 1`; arm64
    /// `LDR Wt` / `ADD t, t, #1` / `STR Wt` on the same address).
    Inc32,
    /// The address itself lands in a register (`LEA`; arm64 `ADRP`+`ADD`).
    AddrOf,
    /// A 32-bit atomic add (`LOCK XADD` through the register a `LEA` just
    /// filled; arm64 `LDADD*` or an `LDAXR` loop through an `ADRP`+`ADD`).
    AtomicAdd32,
}

/// One data reference.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DataRef {
    /// Instruction address.
    pub pc: u64,
    /// The data address.
    pub ea: u64,
    /// What is done with it.
    pub access: Access,
}

/// A call and the data address in the first integer argument register (RAX
/// on amd64, X0 on arm64, Go's ABIInternal) when one was put there shortly
/// before: a method call on a global passes the global's address there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CallSite {
    /// Address of the call instruction.
    pub pc: u64,
    /// The address in the first argument register, if known.
    pub arg0: Option<u64>,
    /// The callee of a direct call (`CALL rel32`, `BL`).
    pub target: Option<u64>,
}

/// Everything [`scan`] found in one function, in address order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CodeRefs {
    /// Data references.
    pub refs: Vec<DataRef>,
    /// Calls.
    pub calls: Vec<CallSite>,
}

/// How many instructions before a call an address put in the first argument
/// register still counts as that call's argument (argument set-up between
/// them moves other registers).
const ARG0_WINDOW: usize = 8;

/// Decodes `code` (the bytes of one function at link-time address `addr`).
#[must_use]
pub fn scan(arch: GoArch, code: &[u8], addr: u64) -> CodeRefs {
    match arch {
        GoArch::Amd64 => scan_amd64(code, addr),
        GoArch::Arm64 => scan_arm64(code, addr),
    }
}

fn scan_amd64(code: &[u8], addr: u64) -> CodeRefs {
    let mut out = CodeRefs::default();
    let mut dec = Decoder::with_ip(64, code, addr, DecoderOptions::NONE);
    // (instruction index, address) of the last LEA into RAX.
    let mut arg0: Option<(usize, u64)> = None;
    // The last LEA of a global into each register: (register, index, address).
    let mut leas: Vec<(Register, usize, u64)> = Vec::new();
    let mut i = 0usize;
    while dec.can_decode() {
        let ins = dec.decode();
        i += 1;
        if ins.is_invalid() {
            continue;
        }
        if ins.code() == Code::Xadd_rm32_r32
            && ins.has_lock_prefix()
            && ins.op0_kind() == OpKind::Memory
            && ins.memory_index() == Register::None
            && ins.memory_displacement64() == 0
            && let Some(&(_, _, ea)) = leas
                .iter()
                .rev()
                .find(|(r, at, _)| *r == ins.memory_base() && i - at <= ARG0_WINDOW)
        {
            out.refs.push(DataRef {
                pc: ins.ip(),
                ea,
                access: Access::AtomicAdd32,
            });
        }
        if ins.flow_control() == FlowControl::Call {
            out.calls.push(CallSite {
                pc: ins.ip(),
                arg0: arg0
                    .filter(|&(at, _)| i - at <= ARG0_WINDOW)
                    .map(|(_, a)| a),
                target: (ins.op0_kind() == OpKind::NearBranch64).then(|| ins.near_branch_target()),
            });
            arg0 = None;
            continue;
        }
        if !ins.is_ip_rel_memory_operand() {
            continue;
        }
        let ea = ins.ip_rel_memory_address();
        let access = match ins.code() {
            Code::Lea_r64_m => {
                if ins.op0_register() == Register::RAX {
                    arg0 = Some((i, ea));
                }
                leas.retain(|(r, _, _)| *r != ins.op0_register());
                leas.push((ins.op0_register(), i, ea));
                Some(Access::AddrOf)
            }
            Code::Xadd_rm32_r32 if ins.has_lock_prefix() => Some(Access::AtomicAdd32),
            Code::Mov_r32_rm32
            | Code::Sub_r32_rm32
            | Code::Add_r32_rm32
            | Code::Cmp_r32_rm32
            | Code::Cmp_rm32_r32
            | Code::Cmp_rm32_imm8
            | Code::Cmp_rm32_imm32
                if ins.op0_kind() == OpKind::Memory || ins.op1_kind() == OpKind::Memory =>
            {
                Some(Access::Load32)
            }
            Code::Inc_rm32 => Some(Access::Inc32),
            Code::Add_rm32_imm8 | Code::Add_rm32_imm32 if ins.try_immediate(1).ok() == Some(1) => {
                Some(Access::Inc32)
            }
            _ => None,
        };
        if let Some(access) = access {
            out.refs.push(DataRef {
                pc: ins.ip(),
                ea,
                access,
            });
        }
    }
    out
}

/// arm64 register state: a value and the instruction index that set it.
type Tracked = [Option<(u64, usize)>; 32];

/// How many instructions a tracked register value stays usable; any
/// instruction that writes the register forgets it sooner.
const ARM64_WINDOW: usize = 6;

fn sext(v: u64, bits: u32) -> i64 {
    let shift = 64 - bits;
    ((v << shift) as i64) >> shift
}

/// Whether instruction `w` may write register `w & 0x1f`: everything but
/// stores and branches (a conservative reading of the A64 encoding groups).
fn writes_rd(w: u32) -> bool {
    let branch = w & 0x1c00_0000 == 0x1400_0000;
    let load_store = w & 0x0a00_0000 == 0x0800_0000;
    let is_load = w & (1 << 22) != 0;
    !branch && (!load_store || is_load)
}

fn scan_arm64(code: &[u8], addr: u64) -> CodeRefs {
    let mut out = CodeRefs::default();
    // ADRP pages, ADRP+ADD addresses, 32-bit loads of globals and their +1.
    let mut page: Tracked = [None; 32];
    let mut full: Tracked = [None; 32];
    let mut loaded: Tracked = [None; 32];
    let mut bumped: Tracked = [None; 32];
    let live = |t: &Tracked, r: usize, i: usize| {
        t[r].filter(|&(_, at)| i - at <= ARM64_WINDOW)
            .map(|(v, _)| v)
    };
    for (i, chunk) in code.chunks_exact(4).enumerate() {
        let w = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        let pc = addr.wrapping_add(4 * i as u64);
        let rd = (w & 0x1f) as usize;
        let rn = ((w >> 5) & 0x1f) as usize;
        let imm12 = u64::from((w >> 10) & 0xfff);
        // The base a load or store through `rn` uses: an ADRP page, or an
        // ADRP+ADD address (Go 1.19's arm64 linker emits ADRP, ADD, LDR [Xn]).
        let base = live(&page, rn, i).or_else(|| live(&full, rn, i));
        // What this instruction leaves in rd, computed before rd is forgotten.
        let mut set_page = None;
        let mut set_full = None;
        let mut set_loaded = None;
        let mut set_bumped = None;
        if w & 0x9f00_0000 == 0x9000_0000 {
            // ADRP Xd, page
            let immlo = u64::from((w >> 29) & 3);
            let immhi = u64::from((w >> 5) & 0x7ffff);
            let off = sext((immhi << 2) | immlo, 21) << 12;
            set_page = Some((pc & !0xfff).wrapping_add_signed(off));
        } else if w & 0x7f80_0000 == 0x1100_0000 {
            // ADD Wd|Xd, Wn|Xn, #imm{, LSL 12}
            let imm = if w & (1 << 22) != 0 {
                imm12 << 12
            } else {
                imm12
            };
            let wide = w & (1 << 31) != 0;
            if let (true, Some(p)) = (wide, live(&page, rn, i)) {
                let ea = p.wrapping_add(imm);
                set_full = Some(ea);
                out.refs.push(DataRef {
                    pc,
                    ea,
                    access: Access::AddrOf,
                });
            } else if imm == 1 && rd == rn {
                set_bumped = live(&loaded, rn, i);
            }
        } else if w & 0xffc0_0000 == 0xb940_0000 {
            // LDR Wt, [Xn, #imm*4]
            if let Some(b) = base {
                let ea = b.wrapping_add(imm12 * 4);
                set_loaded = Some(ea);
                out.refs.push(DataRef {
                    pc,
                    ea,
                    access: Access::Load32,
                });
            }
        } else if w & 0xff20_fc00 == 0xb820_0000 || w & 0xffff_7c00 == 0x885f_7c00 {
            // LDADD{,A,L,AL} Ws, Wt, [Xn] or LDXR/LDAXR Wt, [Xn] (an add loop)
            if let Some(ea) = live(&full, rn, i) {
                out.refs.push(DataRef {
                    pc,
                    ea,
                    access: Access::AtomicAdd32,
                });
            }
        } else if w & 0xffff_fc00 == 0x88df_fc00 {
            // LDAR Wt, [Xn]
            if let Some(ea) = live(&full, rn, i) {
                out.refs.push(DataRef {
                    pc,
                    ea,
                    access: Access::Load32,
                });
            }
        } else if w & 0xffc0_0000 == 0xb900_0000 {
            // STR Wt, [Xn, #imm*4]: completes LDR / ADD #1 / STR.
            if let Some(b) = base {
                let ea = b.wrapping_add(imm12 * 4);
                if live(&bumped, rd, i) == Some(ea) {
                    out.refs.push(DataRef {
                        pc,
                        ea,
                        access: Access::Inc32,
                    });
                }
            }
        } else if w & 0xfc00_0000 == 0x9400_0000 {
            // BL: the callee may change any argument register.
            // imm26, in instructions, signed.
            let off = (i64::from(w & 0x03ff_ffff) << 38) >> 36;
            out.calls.push(CallSite {
                pc,
                arg0: full[0]
                    .filter(|&(_, at)| i - at <= ARG0_WINDOW)
                    .map(|(v, _)| v),
                target: Some(pc.wrapping_add_signed(off)),
            });
            for t in [&mut page, &mut full, &mut loaded, &mut bumped] {
                *t = [None; 32];
            }
            continue;
        }
        if writes_rd(w) {
            for t in [&mut page, &mut full, &mut loaded, &mut bumped] {
                t[rd] = None;
            }
        }
        page[rd] = set_page.map(|v| (v, i)).or(page[rd]);
        full[rd] = set_full.map(|v| (v, i)).or(full[rd]);
        loaded[rd] = set_loaded.map(|v| (v, i)).or(loaded[rd]);
        bumped[rd] = set_bumped.map(|v| (v, i)).or(bumped[rd]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(ws: &[u32]) -> Vec<u8> {
        ws.iter().flat_map(|w| w.to_le_bytes()).collect()
    }

    #[test]
    fn amd64_load_inc_and_call_argument() {
        // At 0x1000:
        //   mov eax, [rip+0x100]          8b 05 00 01 00 00
        //   inc dword [rip+0x200]         ff 05 00 02 00 00
        //   add dword [rip+0x300], 1      83 05 00 03 00 00 01
        //   lea rax, [rip+0x400]          48 8d 05 00 04 00 00
        //   call +0                       e8 00 00 00 00
        let code = [
            0x8b, 0x05, 0x00, 0x01, 0x00, 0x00, //
            0xff, 0x05, 0x00, 0x02, 0x00, 0x00, //
            0x83, 0x05, 0x00, 0x03, 0x00, 0x00, 0x01, //
            0x48, 0x8d, 0x05, 0x00, 0x04, 0x00, 0x00, //
            0xe8, 0x00, 0x00, 0x00, 0x00,
        ];
        let r = scan(GoArch::Amd64, &code, 0x1000);
        let got: Vec<(u64, Access)> = r.refs.iter().map(|d| (d.ea, d.access)).collect();
        assert_eq!(
            got,
            vec![
                (0x1006 + 0x100, Access::Load32),
                (0x100c + 0x200, Access::Inc32),
                (0x1013 + 0x300, Access::Inc32),
                (0x101a + 0x400, Access::AddrOf),
            ]
        );
        assert_eq!(r.calls.len(), 1);
        assert_eq!(r.calls[0].arg0, Some(0x101a + 0x400));
    }

    #[test]
    fn arm64_pairs_ldar_increment_and_call_argument() {
        // At 0x10000 (words from a go1.26 arm64 runtime.GC/gcMarkTermination):
        //   adrp x1, 0x18b000 ; add x1, x1, #0xb48 ; ldar w0, [x1]
        //   adrp x27, 0x1b5000 ; ldr w1, [x27, #224] ; add x1, x1, #1
        //   adrp x27, 0x1b5000 ; str w1, [x27, #224]
        //   adrp x0, 0x1b2000 ; add x0, x0, #0xa0 ; bl .
        let base = 0x10000u64;
        let adrp = |rd: u32, pc: u64, target: u64| {
            let delta = ((target >> 12) as i64 - (pc >> 12) as i64) as u32;
            0x9000_0000 | ((delta & 3) << 29) | (((delta >> 2) & 0x7ffff) << 5) | rd
        };
        let add_imm = |rd: u32, rn: u32, imm: u32| 0x9100_0000 | (imm << 10) | (rn << 5) | rd;
        let ws = [
            adrp(1, base, 0x18b000),
            add_imm(1, 1, 0xb48),
            0x88df_fc00 | (1 << 5),
            adrp(27, base + 12, 0x1b5000),
            0xb940_0000 | ((224 / 4) << 10) | (27 << 5) | 1,
            add_imm(1, 1, 1),
            adrp(27, base + 24, 0x1b5000),
            0xb900_0000 | ((224 / 4) << 10) | (27 << 5) | 1,
            adrp(0, base + 32, 0x1b2000),
            add_imm(0, 0, 0xa0),
            0x9400_0000,
        ];
        let r = scan(GoArch::Arm64, &words(&ws), base);
        let got: Vec<(u64, Access)> = r.refs.iter().map(|d| (d.ea, d.access)).collect();
        assert_eq!(
            got,
            vec![
                (0x18bb48, Access::AddrOf),
                (0x18bb48, Access::Load32),
                (0x1b50e0, Access::Load32),
                (0x1b50e0, Access::Inc32),
                (0x1b20a0, Access::AddrOf),
            ]
        );
        assert_eq!(
            r.calls,
            vec![CallSite {
                pc: base + 40,
                arg0: Some(0x1b20a0),
                target: Some(base + 40),
            }]
        );
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut buf = vec![0u8; 4096];
        for _ in 0..50 {
            for b in &mut buf {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = x as u8;
            }
            let _ = scan(GoArch::Amd64, &buf, u64::MAX - 100);
            let _ = scan(GoArch::Arm64, &buf, u64::MAX - 100);
        }
    }
}
