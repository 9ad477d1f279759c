//! Where the pclntab and `runtime.firstmoduledata` are, in every way Go
//! binaries are linked: internal or external (cgo) linking, static or
//! dynamic, PIE or not, with or without `.symtab` and section names.
//!
//! - pclntab: the `.gopclntab` section (`.data.rel.ro.gopclntab` in Go <= 1.19
//!   internal PIE), else a scan of every loaded segment for a 1.18+
//!   `pcHeader`: externally linked PIE builds up to Go 1.25 keep it inside
//!   `.data.rel.ro`, a writable (RELRO) segment, with no section of its own.
//! - moduledata: the `.go.module` section (Go 1.26+), the symbol, else a scan
//!   of `.noptrdata` (or of the writable segments) for a word equal to the
//!   pclntab's address whose `minpc`/`maxpc`/`text` fields (@160/@168/@176,
//!   unchanged 1.18..1.27, `go1.18:src/runtime/symtab.go:moduledata`) point
//!   into the executable segment. With external linking `text` is not the
//!   start of `.text` (the C start-up code comes first), so it is checked
//!   against the pclntab header's `textStart`, not against the section.

use super::elf::{self, Elf};
use super::{FoundBy, ModuleData, RuntimeLayout};

/// `moduledata.minpc`, `.maxpc`, `.text` (`go1.18:src/runtime/symtab.go`).
const MINPC: u64 = 160;
const MAXPC: u64 = 168;
const TEXT: u64 = 176;

/// The pclntab: its link-time address and bytes.
pub struct PclntabLoc<'a> {
    /// Link-time address of the `pcHeader`.
    pub va: u64,
    /// From there to the end of its section or segment.
    pub bytes: &'a [u8],
}

/// Whether `h` starts like a Go 1.18+ `pcHeader` on a 64-bit target.
fn looks_like_pcheader(h: &[u8]) -> bool {
    h.len() >= 8
        && (h[0] == 0xf0 || h[0] == 0xf1)
        && h[1..4] == [0xff; 3]
        && h[4..6] == [0, 0]
        && matches!(h[6], 1 | 4)
        && h[7] == 8
}

/// Finds the pclntab. `accept` decides whether a candidate found by scanning
/// really is one (a full parse), so that a stray magic number is skipped.
pub fn locate_pclntab<'a>(
    elf: &Elf,
    data: &'a [u8],
    accept: &dyn Fn(&[u8]) -> bool,
) -> Option<PclntabLoc<'a>> {
    for name in [".gopclntab", ".data.rel.ro.gopclntab"] {
        if let (Some(s), Some(bytes)) = (elf.section(name), elf.section_data(data, name)) {
            return Some(PclntabLoc { va: s.addr, bytes });
        }
    }
    // Read-only segments first: that is where an internal linker puts it.
    let mut segs: Vec<_> = elf.segments.iter().collect();
    segs.sort_by_key(|s| s.flags & 2 != 0);
    for s in segs {
        let Some(seg) = elf::slice(data, s.offset, s.filesz) else {
            continue;
        };
        let mut off = 0usize;
        while off + 8 <= seg.len() {
            if looks_like_pcheader(&seg[off..off + 8]) && accept(&seg[off..]) {
                return Some(PclntabLoc {
                    va: s.vaddr.checked_add(off as u64)?,
                    bytes: &seg[off..],
                });
            }
            off += 8;
        }
    }
    None
}

/// Finds `runtime.firstmoduledata` (see the module documentation).
/// `symbol` is its address from `.symtab` or DWARF, when known; `pclntab`
/// the pclntab's address and `header_text_start` its header's `textStart`.
pub fn find(
    elf: &Elf,
    data: &[u8],
    layout: &RuntimeLayout,
    symbol: Option<u64>,
    pclntab: u64,
    header_text_start: u64,
) -> Option<(ModuleData, FoundBy)> {
    let read = |va: u64| elf.read_word(data, va);
    let t_off = u64::from(layout.moduledata_types?);
    let e_off = u64::from(layout.moduledata_etypes?);
    let exec = |a: u64| {
        elf.segments
            .iter()
            .any(|s| s.flags & 1 != 0 && a >= s.vaddr && a < s.vaddr.saturating_add(s.memsz))
    };
    let build = |addr: u64| -> Option<ModuleData> {
        let types = read(addr.checked_add(t_off)?)?;
        let etypes = read(addr.checked_add(e_off)?)?;
        let text = read(addr.checked_add(TEXT)?)?;
        (types != 0 && types <= etypes).then_some(ModuleData {
            addr,
            types,
            etypes,
            text,
        })
    };
    if let Some(s) = elf.section(".go.module")
        && let Some(m) = build(s.addr)
    {
        return Some((m, FoundBy::Section(".go.module")));
    }
    if let Some(a) = symbol
        && let Some(m) = build(a)
    {
        return Some((m, FoundBy::Symbol));
    }
    let plausible = |addr: u64| -> Option<ModuleData> {
        let minpc = read(addr.checked_add(MINPC)?)?;
        let maxpc = read(addr.checked_add(MAXPC)?)?;
        let text = read(addr.checked_add(TEXT)?)?;
        let text_ok = header_text_start == 0 || text == header_text_start;
        (text_ok && exec(text) && minpc >= text && minpc < maxpc && exec(maxpc - 1))
            .then(|| build(addr))
            .flatten()
    };
    let mut ranges: Vec<(u64, &[u8], &'static str)> = Vec::new();
    if let (Some(s), Some(b)) = (
        elf.section(".noptrdata"),
        elf.section_data(data, ".noptrdata"),
    ) {
        ranges.push((s.addr, b, ".noptrdata"));
    } else {
        for s in elf.segments.iter().filter(|s| s.flags & 2 != 0) {
            if let Some(b) = elf::slice(data, s.offset, s.filesz) {
                ranges.push((s.vaddr, b, "writable segments"));
            }
        }
    }
    for (base, bytes, what) in ranges {
        for (i, w) in bytes.chunks_exact(8).enumerate() {
            let addr = base.checked_add(8 * i as u64)?;
            let word = u64::from_le_bytes(w.try_into().ok()?);
            // A PIE's pointer may be a relocation over a zero word.
            if word != pclntab && (word != 0 || read(addr) != Some(pclntab)) {
                continue;
            }
            if let Some(m) = plausible(addr) {
                return Some((m, FoundBy::Scan(what)));
            }
        }
    }
    None
}
