//! Tier-1 `plan` tests over every fixture: probe addresses are instruction
//! boundaries inside their function, on the instruction the plan names.

mod inspect_common;

use iced_x86::{Decoder, DecoderOptions, Formatter, IntelFormatter, Mnemonic, Register};
use inspect_common::{fixtures, is_stripped, open, twin};
use mapleak::inspect::{BinaryInfo, GoArch, MapImpl};
use mapleak::plan::{ProbePlan, write_path_functions};
use tracer_common::{GrowKind, NO_ARG, NO_RESTART, NO_SP_OFF, ProbeRole, RESTART_COND};

/// Decodes `[entry, end)` independently of the plan and returns
/// `(address, mnemonic, text)` per instruction.
fn sweep(info: &BinaryInfo, entry: u64, end: u64) -> Vec<(u64, String)> {
    let code = info
        .read_va(entry, (end - entry) as usize)
        .expect("function bytes");
    match info.goarch {
        GoArch::Amd64 => {
            let mut d = Decoder::with_ip(64, code, entry, DecoderOptions::NONE);
            let mut f = IntelFormatter::new();
            f.options_mut().set_hex_prefix("0x");
            f.options_mut().set_hex_suffix("");
            f.options_mut().set_uppercase_hex(false);
            f.options_mut().set_branch_leading_zeros(false);
            d.iter()
                .map(|i| {
                    let mut s = String::new();
                    f.format(&i, &mut s);
                    (i.ip(), s)
                })
                .collect()
        }
        GoArch::Arm64 => code
            .chunks_exact(4)
            .enumerate()
            .map(|(k, w)| {
                (
                    entry + 4 * k as u64,
                    format!("{:#010x}", u32::from_le_bytes(w.try_into().unwrap())),
                )
            })
            .collect(),
    }
}

/// Every probe sits on an instruction boundary inside its function, and the
/// instruction there is the one the plan names.
#[test]
fn probes_on_named_instruction_boundaries() {
    for fx in fixtures() {
        let info = open(&fx);
        let plan = ProbePlan::build(&info).unwrap_or_else(|e| panic!("{}: {e}", fx.path.display()));
        assert!(!plan.probes.is_empty());
        for p in &plan.probes {
            let f = info.func_by_name(&p.function).expect("function");
            assert_eq!(
                (p.func_addr, p.func_size),
                (f.entry, f.end - f.entry),
                "{}",
                p.function
            );
            assert!(
                p.address >= f.entry && p.address < f.end,
                "{}: {:#x} outside",
                p.function,
                p.address
            );
            let (text_lo, text_hi) = info.text_range().expect(".text");
            assert!(p.address >= text_lo && p.address < text_hi);
            assert!(info.va_to_file_offset(p.address).is_some());
            let insns = sweep(&info, f.entry, f.end);
            let at = insns.iter().find(|(a, _)| *a == p.address);
            let at = at.unwrap_or_else(|| {
                panic!(
                    "{}: {} {:#x} is not an instruction boundary",
                    fx.path.display(),
                    p.function,
                    p.address
                )
            });
            let word = info
                .read_va(p.address, 4)
                .map(|b| u32::from_le_bytes(b.try_into().unwrap()));
            match info.goarch {
                GoArch::Amd64 => {
                    assert_eq!(at.1, p.instruction, "{}: {}", fx.path.display(), p.function);
                    let code = info.read_va(p.address, 16).unwrap();
                    let ins = Decoder::with_ip(64, code, p.address, DecoderOptions::NONE).decode();
                    if p.ret_site {
                        assert!(
                            ins.mnemonic() == Mnemonic::Ret || ins.mnemonic() == Mnemonic::Jmp,
                            "{}: {}",
                            p.function,
                            p.instruction
                        );
                    } else if p.spec.ret_sp_off != NO_SP_OFF {
                        // Inside the body: a direct CALL (the seed call) or a
                        // Jcc (the large bucket array path), both emulated.
                        assert!(
                            ins.mnemonic() == Mnemonic::Call || ins.is_jcc_short_or_near(),
                            "{}: {}",
                            p.function,
                            p.instruction
                        );
                        assert!(p.spec.ret_sp_off > 0, "{}", p.function);
                    } else if info.go_version.minor >= 21 {
                        assert_eq!(
                            (ins.mnemonic(), ins.op0_register()),
                            (Mnemonic::Push, Register::RBP),
                            "{}: {}",
                            p.function,
                            p.reason
                        );
                        assert!(
                            p.address > f.entry,
                            "{}: expected the PUSHQ BP after the stack check",
                            p.function
                        );
                    } else {
                        assert!(
                            matches!(ins.mnemonic(), Mnemonic::Jbe | Mnemonic::Push),
                            "{}: {}",
                            p.function,
                            p.instruction
                        );
                    }
                    // The stack check's JBE restarts the call when taken:
                    // the probe says so (0x6: JBE's condition nibble).
                    let want = if !p.ret_site
                        && p.spec.ret_sp_off == NO_SP_OFF
                        && ins.mnemonic() == Mnemonic::Jbe
                    {
                        RESTART_COND | 0x6
                    } else {
                        NO_RESTART
                    };
                    assert_eq!(
                        p.spec.restart_cond, want,
                        "{}: {}",
                        p.function, p.instruction
                    );
                }
                GoArch::Arm64 => {
                    let w = word.unwrap();
                    if p.ret_site {
                        assert!(
                            w == 0xd65f_03c0 || w & 0xfc00_0000 == 0x1400_0000,
                            "{}: {w:#x}",
                            p.function
                        );
                        assert!(p.instruction == "ret" || p.instruction.starts_with("b "));
                    } else if p.spec.ret_sp_off != NO_SP_OFF {
                        // Inside the body: BL (the seed call) or B.cond (the
                        // large bucket array path), both simulated.
                        assert!(
                            w & 0xfc00_0000 == 0x9400_0000 || w & 0xff00_0010 == 0x5400_0000,
                            "{}: {w:#x}",
                            p.function
                        );
                        assert_eq!(p.spec.ret_sp_off, 0, "{}", p.function);
                    } else {
                        // B.cond, simulated by the kernel.
                        assert_eq!(
                            w & 0xff00_0010,
                            0x5400_0000,
                            "{}: {w:#x} is not B.cond",
                            p.function
                        );
                        assert!(
                            p.instruction.starts_with("b.ls"),
                            "{}: {}",
                            p.function,
                            p.instruction
                        );
                        assert!(p.address > f.entry && p.address - f.entry <= 16);
                        // B.LS (condition 0x9) restarts the call when taken.
                        assert_eq!(p.spec.restart_cond, RESTART_COND | 0x9, "{}", p.function);
                    }
                    if p.ret_site || p.spec.ret_sp_off != NO_SP_OFF {
                        assert_eq!(p.spec.restart_cond, NO_RESTART, "{}", p.function);
                    }
                }
            }
            assert!(!p.reason.is_empty());
            assert_eq!(p.spec.role, p.role as u32);
        }
    }
}

/// The probe set has the roles and argument registers of the brief, for
/// both map implementations, and every RET site list is non-empty.
#[test]
fn probe_set_and_registers() {
    for fx in fixtures() {
        let info = open(&fx);
        let plan = ProbePlan::build(&info).unwrap();
        let get = |name: &'static str, role: ProbeRole| {
            plan.probes
                .iter()
                .filter(move |p| p.function == name && p.role == role)
        };
        let one = |name: &'static str, role: ProbeRole| {
            let v: Vec<_> = get(name, role).collect();
            assert_eq!(v.len(), 1, "{}: {name} {role:?}", fx.path.display());
            v[0].spec
        };
        let (create, grow) = match info.map_impl {
            MapImpl::Hmap => ("runtime.makemap", "runtime.hashGrow"),
            MapImpl::Swiss => (
                "internal/runtime/maps.NewMap",
                "internal/runtime/maps.(*table).grow",
            ),
        };
        let s = one(create, ProbeRole::CreateEntry);
        assert_eq!((s.type_arg, s.size_arg, s.map_arg), (0, 1, NO_ARG));
        assert!(get(create, ProbeRole::CreateRet).all(|p| p.spec.aux == 1));
        assert!(get(create, ProbeRole::CreateRet).count() >= 1);
        assert!(get("runtime.makemap_small", ProbeRole::CreateRet).count() >= 1);
        assert!(get("runtime.makemap_small", ProbeRole::CreateRet).all(|p| p.spec.aux == 0));
        // Go 1.22+ seeds every new map with a call to rand: one emulated
        // probe there, the map in a register; before, fastrand is inlined
        // and the RET sites are probed.
        for f in [create, "runtime.makemap_small"] {
            let rets: Vec<_> = get(f, ProbeRole::CreateRet).collect();
            if info.go_version.minor >= 22 {
                assert_eq!(rets.len(), 1, "{}: {f}", fx.path.display());
                assert!(!rets[0].ret_site && rets[0].spec.map_arg != NO_ARG);
                assert!(rets[0].class == mapleak::plan::ProbeClass::Governed);
            } else {
                assert!(
                    rets.iter().all(|p| p.ret_site),
                    "{}: {f}",
                    fx.path.display()
                );
            }
        }
        let g = one(grow, ProbeRole::Grow);
        match info.map_impl {
            MapImpl::Hmap => {
                assert_eq!(
                    (g.type_arg, g.map_arg, g.aux),
                    (0, 1, GrowKind::HashGrow as u8)
                );
                // Large arrays: on the fixtures' releases the type and the
                // new B are still in their argument registers, and the map
                // is in hashGrow's frame above the return address.
                let b = one("runtime.makeBucketArray", ProbeRole::Grow);
                assert_eq!(
                    (b.type_arg, b.size_arg, b.aux),
                    (0, 1, GrowKind::BucketArray as u8),
                    "{}",
                    fx.path.display()
                );
                assert!(b.ret_delta != 0 && b.map_sp_off > b.ret_sp_off);
                let class = |f: &str| {
                    plan.probes
                        .iter()
                        .find(|p| p.function == f)
                        .map(|p| p.class)
                };
                assert_eq!(
                    class("runtime.makeBucketArray"),
                    Some(mapleak::plan::ProbeClass::LargeGrowth)
                );
                assert_eq!(
                    class("runtime.hashGrow"),
                    Some(mapleak::plan::ProbeClass::Governed)
                );
            }
            MapImpl::Swiss => {
                assert_eq!(
                    (g.type_arg, g.map_arg, g.size_arg, g.aux),
                    (1, 2, 3, GrowKind::TableGrow as u8)
                );
                let t = one("internal/runtime/maps.(*Map).growToTable", ProbeRole::Grow);
                assert_eq!(
                    (t.map_arg, t.type_arg, t.aux),
                    (0, 1, GrowKind::ToTable as u8)
                );
                let sp = one("internal/runtime/maps.(*table).split", ProbeRole::Grow);
                assert_eq!(
                    (sp.type_arg, sp.map_arg, sp.aux),
                    (1, 2, GrowKind::TableSplit as u8)
                );
            }
        }
        one("runtime.gcSweep", ProbeRole::GcSweep);
        assert!(
            plan.skipped.is_empty(),
            "{}: {:?}",
            fx.path.display(),
            plan.skipped
        );
        let wp: Vec<&str> = write_path_functions(&info)
            .iter()
            .map(|f| f.name.as_str())
            .collect();
        assert!(
            wp.contains(&"runtime.mapassign") && wp.contains(&"runtime.mapassign_faststr"),
            "{wp:?}"
        );
    }
}

/// Stripping `.symtab` and DWARF does not change the plan.
#[test]
fn stripped_plan_equals_default_plan() {
    let all = fixtures();
    let mut compared = 0;
    for fx in all.iter().filter(|f| is_stripped(f)) {
        let Some(t) = twin(&all, fx) else { continue };
        let a = ProbePlan::build(&open(fx)).unwrap();
        let b = ProbePlan::build(&open(t)).unwrap();
        let key = |p: &ProbePlan| {
            p.probes
                .iter()
                .map(|p| (p.function.clone(), p.address, p.instruction.clone()))
                .collect::<Vec<_>>()
        };
        assert_eq!(key(&a), key(&b), "{}", fx.path.display());
        compared += 1;
    }
    assert!(compared > 0, "no stripped fixture with a default twin");
}

/// `inspect --json` has the documented fields, with hex-string addresses.
#[test]
fn inspect_json_shape() {
    for fx in fixtures().iter().take(6) {
        let info = open(fx);
        let mut out = Vec::new();
        mapleak::inspect_cmd::run(&info, None, true, &mut out).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["go_version"], fx.go_version.as_str());
        assert_eq!(v["goarch"], fx.goarch.as_str());
        assert!(v["map_impl"] == "hmap" || v["map_impl"] == "swiss");
        assert_eq!(v["stripped"], is_stripped(fx));
        for f in v["functions"].as_array().unwrap() {
            assert_eq!(f["found"], true, "{f}");
            assert!(f["address"].as_str().unwrap().starts_with("0x"));
            assert!(
                f["probe_address"].is_null()
                    || f["probe_address"].as_str().unwrap().starts_with("0x")
            );
            assert!(f["ret_sites"].is_array());
        }
        let mut text = Vec::new();
        mapleak::inspect_cmd::run(&info, Some(1), false, &mut text).unwrap();
        let text = String::from_utf8(text).unwrap();
        assert!(
            text.contains("probed only while a write window is open")
                && text.contains(&fx.go_version)
        );
    }
}
