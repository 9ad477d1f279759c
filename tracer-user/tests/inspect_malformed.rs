//! Malformed input never panics: synthesized ELFs, truncated and corrupted
//! fixtures, random bytes. Each error is one clear line.

mod inspect_common;

use std::path::PathBuf;

use inspect_common::fixtures;
use mapleak::inspect::{BinaryInfo, InspectError, buildinfo, pclntab};

/// A minimal little-endian ELF64 writer: sections with names, addresses and
/// contents, one `PT_LOAD` covering them. Written by hand so the tests need
/// no extra `object` features.
fn elf(sections: &[(&str, u64, &[u8])]) -> Vec<u8> {
    let mut shstr = vec![0u8];
    let mut names = Vec::new();
    for (n, _, _) in sections {
        names.push(shstr.len() as u32);
        shstr.extend_from_slice(n.as_bytes());
        shstr.push(0);
    }
    let shstr_name = shstr.len() as u32;
    shstr.extend_from_slice(b".shstrtab\0");
    let mut body = Vec::new();
    let mut offsets = Vec::new();
    let data_start = 64 + 56; // ehdr + one phdr
    for (_, _, d) in sections {
        while (data_start + body.len()) % 16 != 0 {
            body.push(0);
        }
        offsets.push((data_start + body.len()) as u64);
        body.extend_from_slice(d);
    }
    let shstr_off = (data_start + body.len()) as u64;
    body.extend_from_slice(&shstr);
    while (data_start + body.len()) % 8 != 0 {
        body.push(0);
    }
    let shoff = (data_start + body.len()) as u64;
    let shnum = sections.len() as u16 + 2;
    let mut out = Vec::new();
    out.extend_from_slice(b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0");
    out.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    out.extend_from_slice(&62u16.to_le_bytes()); // EM_X86_64
    out.extend_from_slice(&1u32.to_le_bytes());
    out.extend_from_slice(&0x401000u64.to_le_bytes()); // entry
    out.extend_from_slice(&64u64.to_le_bytes()); // phoff
    out.extend_from_slice(&shoff.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    for v in [64u16, 56, 1, 64, shnum, shnum - 1] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    // PT_LOAD mapping file offset 0 at 0x400000, R+W.
    let total = shoff + 64 * u64::from(shnum);
    out.extend_from_slice(&1u32.to_le_bytes());
    out.extend_from_slice(&6u32.to_le_bytes());
    for v in [0u64, 0x400000, 0x400000, total, total, 0x1000] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(&body);
    let mut sh = |name: u32, ty: u32, flags: u64, addr: u64, off: u64, size: u64| {
        out.extend_from_slice(&name.to_le_bytes());
        out.extend_from_slice(&ty.to_le_bytes());
        for v in [flags, addr, off, size] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&[0u8; 8]); // link, info
        out.extend_from_slice(&1u64.to_le_bytes()); // align
        out.extend_from_slice(&0u64.to_le_bytes()); // entsize
    };
    sh(0, 0, 0, 0, 0, 0);
    for (i, (_, addr, d)) in sections.iter().enumerate() {
        let va = if *addr == 0 {
            0x400000 + offsets[i]
        } else {
            *addr
        };
        sh(names[i], 1, 2, va, offsets[i], d.len() as u64);
    }
    sh(shstr_name, 3, 0, 0, shstr_off, shstr.len() as u64);
    out
}

fn new_buildinfo(version: &str, modinfo: &str) -> Vec<u8> {
    let mut b = buildinfo::MAGIC.to_vec();
    b.extend_from_slice(&[8, 2]);
    b.extend_from_slice(&[0; 16]);
    b.push(version.len() as u8);
    b.extend_from_slice(version.as_bytes());
    b.push(modinfo.len() as u8);
    b.extend_from_slice(modinfo.as_bytes());
    b
}

fn inspect(data: Vec<u8>) -> Result<BinaryInfo, InspectError> {
    BinaryInfo::from_bytes(PathBuf::from("synthetic"), data)
}

/// A missing file, non-ELF bytes and ELF without Go sections give one-line errors.
#[test]
fn clear_errors() {
    let e = BinaryInfo::open(std::path::Path::new("/nonexistent/mapleak")).unwrap_err();
    assert!(matches!(e, InspectError::Io { .. }), "{e}");
    let e = inspect(b"#!/bin/sh\necho hi\n".to_vec()).unwrap_err();
    assert_eq!(e.to_string(), "synthetic: not an ELF file");
    let e = inspect(elf(&[(".text", 0x401000, &[0xc3; 16])])).unwrap_err();
    assert_eq!(
        e.to_string(),
        "synthetic: no .go.buildinfo / .gopclntab: not a Go binary"
    );
    // New-format buildinfo but no pclntab.
    let bi = new_buildinfo("go1.23.12", "");
    let e = inspect(elf(&[
        (".text", 0x401000, &[0xc3; 16]),
        (".go.buildinfo", 0, &bi),
    ]))
    .unwrap_err();
    assert!(e.to_string().contains("not a Go binary"), "{e}");
    {
        let e = &e;
        assert!(!e.to_string().contains('\n'));
    }
}

/// Go 1.17's pointer-format buildinfo is recognised and refused by version.
#[test]
fn go117_is_refused() {
    // .go.buildinfo at 0x500000: old format, version pointer -> string header
    // at 0x500100 -> "go1.17.13" at 0x500200.
    let mut bi = buildinfo::MAGIC.to_vec();
    bi.extend_from_slice(&[8, 0]);
    bi.extend_from_slice(&0x500100u64.to_le_bytes());
    bi.extend_from_slice(&0u64.to_le_bytes());
    bi.resize(0x100, 0);
    bi.extend_from_slice(&0x500200u64.to_le_bytes());
    bi.extend_from_slice(&9u64.to_le_bytes());
    bi.resize(0x200, 0);
    bi.extend_from_slice(b"go1.17.13");
    let e = inspect(elf(&[(".go.buildinfo", 0x500000, &bi)])).unwrap_err();
    assert!(
        e.to_string()
            .ends_with("Go 1.17 is not supported: mapleak-trace needs Go 1.18 or newer"),
        "{e}"
    );
    // And an inline-format one claiming 1.16.
    let bi = new_buildinfo("go1.16.5", "");
    let e = inspect(elf(&[(".go.buildinfo", 0, &bi)])).unwrap_err();
    assert!(e.to_string().contains("Go 1.16 is not supported"), "{e}");
    // A Go 1.16/1.17 pclntab magic.
    let bi = new_buildinfo("go1.18", "");
    let mut pcln = 0xffff_fffau32.to_le_bytes().to_vec();
    pcln.extend_from_slice(&[0, 0, 1, 8]);
    pcln.resize(128, 0);
    let e = inspect(elf(&[(".go.buildinfo", 0, &bi), (".gopclntab", 0, &pcln)])).unwrap_err();
    assert!(e.to_string().contains("not supported"), "{e}");
}

/// Synthesized pclntab headers with hostile values return Err.
#[test]
fn hostile_pclntab_headers() {
    let bi = new_buildinfo("go1.23.12", "build\tGOARCH=amd64\n");
    for (nfunc, off) in [
        (0u64, 72u64),
        (u64::MAX, 72),
        (3, u64::MAX),
        (1 << 40, 72),
        (2, 1 << 20),
    ] {
        let mut p = 0xffff_fff1u32.to_le_bytes().to_vec();
        p.extend_from_slice(&[0, 0, 1, 8]);
        for v in [nfunc, 1, 0x401000, off, off, off, off, off] {
            p.extend_from_slice(&v.to_le_bytes());
        }
        p.extend_from_slice(&[0xff; 40]);
        let r = inspect(elf(&[
            (".text", 0x401000, &[0xc3; 64]),
            (".go.buildinfo", 0, &bi),
            (".gopclntab", 0, &p),
        ]));
        assert!(r.is_err(), "nfunc {nfunc} off {off}");
        assert!(pclntab::parse(&p, 0x401000).is_err());
    }
}

/// Deterministic pseudo-random bytes.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

/// Random bytes, with and without an ELF or buildinfo/pclntab prefix.
#[test]
fn random_bytes() {
    let mut rng = Lcg(7);
    for i in 0..3000 {
        let len = (rng.next() % 512) as usize;
        let mut v: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        match i % 4 {
            0 => {}
            1 => {
                let mut m = buildinfo::MAGIC.to_vec();
                m.extend(v);
                v = m;
            }
            2 => {
                let mut m = vec![0xf1, 0xff, 0xff, 0xff, 0, 0, 1, 8];
                m.extend(v);
                v = m;
            }
            _ => {
                let mut m = b"\x7fELF\x02\x01\x01".to_vec();
                m.extend(v);
                v = m;
            }
        }
        let _ = buildinfo::parse(&v);
        let _ = pclntab::parse(&v, 0x401000).map(|p| p.file_line(0, 0x401000));
        let _ = inspect(v);
    }
}

fn section_range(data: &[u8], name: &str) -> (usize, usize) {
    use object::{Object, ObjectSection};
    let f = object::File::parse(data).unwrap();
    let s = f.section_by_name(name).unwrap();
    let (o, n) = s.file_range().unwrap();
    (o as usize, n as usize)
}

fn small_fixtures() -> Vec<inspect_common::Fixture> {
    let all = fixtures();
    let mut pick: Vec<_> = all
        .iter()
        .filter(|f| f.variant == "stripped")
        .take(3)
        .cloned()
        .collect();
    pick.extend(
        all.iter()
            .filter(|f| f.variant == "stripped" && f.goarch == "arm64")
            .take(1)
            .cloned(),
    );
    assert!(
        !pick.is_empty(),
        "no stripped fixture: run `cargo xtask fixtures`"
    );
    pick
}

/// Truncated copies of fixtures at many lengths return Err or Ok, never panic.
#[test]
fn truncated_fixtures() {
    for fx in small_fixtures() {
        let data = std::fs::read(&fx.path).unwrap();
        let (po, pn) = section_range(&data, ".gopclntab");
        let mut lens: Vec<usize> = (0..100).map(|k| data.len() * k / 100).collect();
        lens.extend([
            0,
            1,
            4,
            16,
            63,
            64,
            65,
            po,
            po + 8,
            po + 72,
            po + pn / 2,
            po + pn - 1,
            data.len() - 1,
        ]);
        for n in lens {
            let r = inspect(data[..n.min(data.len())].to_vec());
            if n < po + pn {
                assert!(r.is_err(), "{} truncated to {n} parsed", fx.path.display());
            }
        }
        // The pclntab alone, cut everywhere near its header and table.
        let p = &data[po..po + pn];
        for n in (0..200).chain((0..pn).step_by(pn / 97 + 1)) {
            if let Ok(t) = pclntab::parse(&p[..n.min(pn)], 0x401000) {
                let _ = t.file_line(0, t.funcs[0].entry);
            }
        }
    }
}

/// Corrupted pclntab header, ftab and buildinfo bytes: Err or a consistent
/// result, never a panic; a broken magic is always Err.
#[test]
fn corrupted_sections() {
    let mut rng = Lcg(42);
    for fx in small_fixtures() {
        let data = std::fs::read(&fx.path).unwrap();
        let (po, pn) = section_range(&data, ".gopclntab");
        let (bo, bn) = section_range(&data, ".go.buildinfo");
        // Magic.
        let mut d = data.clone();
        d[po] ^= 0x55;
        assert!(inspect(d).is_err());
        // Every header byte, set to 0xff and to 0.
        for i in 0..72 {
            for v in [0u8, 0xff, 0x7f] {
                let mut d = data.clone();
                d[po + i] = v;
                if let Ok(info) = inspect(d) {
                    let f = &info.functions()[info.functions().len() / 2];
                    let _ = info.frame_for_pc(f.entry);
                }
            }
        }
        // ftab entries and random bytes anywhere in the table.
        let t = pclntab::parse(&data[po..po + pn], 0).unwrap();
        for _ in 0..300 {
            let mut p = data[po..po + pn].to_vec();
            for _ in 0..4 {
                let at = (rng.next() as usize) % pn;
                p[at] = rng.next() as u8;
            }
            if let Ok(t2) = pclntab::parse(&p, 0) {
                for k in [0, t2.funcs.len() / 2, t2.funcs.len() - 1] {
                    let _ = t2.file_line(k, t2.funcs[k].entry + 1);
                }
            }
        }
        let _ = t;
        // buildinfo bytes.
        for i in 0..bn.min(64) {
            for v in [0u8, 0xff, 0x80] {
                let mut d = data.clone();
                d[bo + i] = v;
                let _ = inspect(d);
            }
        }
    }
}

/// A Go release newer than the built-in layouts, in a binary without DWARF,
/// is inspected with the newest known layout and a warning that says so;
/// the same binary as built gets none.
#[test]
fn a_newer_go_release_without_dwarf_is_flagged() {
    let f = fixtures()
        .into_iter()
        .find(|f| f.go_version == "go1.26.8" && f.goarch == "amd64" && f.variant == "stripped")
        .expect("the go1.26.8 amd64 stripped fixture (run `cargo xtask fixtures`)");
    let data = std::fs::read(&f.path).unwrap();
    let built = BinaryInfo::from_bytes(f.path.clone(), data.clone()).unwrap();
    assert_eq!(built.layout_warning(), None);
    // The version string, as build info and runtime.buildVersion carry it.
    let (old, new) = (b"go1.26.8", b"go1.29.8");
    let mut patched = data;
    let mut n = 0;
    let mut i = 0;
    while let Some(at) = patched[i..].windows(old.len()).position(|w| w == old) {
        patched[i + at..i + at + old.len()].copy_from_slice(new);
        i += at + old.len();
        n += 1;
    }
    assert!(n >= 1, "no version string in {}", f.path.display());
    let newer = BinaryInfo::from_bytes(f.path.clone(), patched).unwrap();
    assert_eq!(newer.go_version.minor, 29);
    let w = newer.layout_warning().expect("a warning for go1.29");
    assert!(w.contains("go1.29.8") && w.contains("go1.27"), "{w}");
}
