//! `.gopclntab` (Go 1.18+): the function table and the pc → file:line tables.
//!
//! Format: `runtime.pcHeader` (`go1.18:src/runtime/symtab.go`; magic values
//! in `go1.20:src/debug/gosym/pclntab.go`, and `internal/abi/symtab.go` from
//! 1.26). All offsets in the header are relative to the header. The `ftab`
//! (`nfunc+1` pairs of `{entryoff u32, funcoff u32}`) starts the
//! `pclntable`; each `_func` record starts with `entryOff u32, nameOff i32`,
//! and `pcfile`/`pcln` (@20/@24) index `pctab`, `cuOffset` (@32) indexes
//! `cutab`. This works on binaries without `.symtab` or DWARF.
//!
//! Everything is bounds-checked: corrupted input yields `Err` or `None`.

use super::buildinfo::uvarint;

/// Go 1.18 / 1.19.
pub const MAGIC_118: u32 = 0xffff_fff0;
/// Go 1.20 and later.
pub const MAGIC_120: u32 = 0xffff_fff1;
/// Go 1.16 / 1.17.
pub const MAGIC_116: u32 = 0xffff_fffa;
/// Go 1.2 to 1.15.
pub const MAGIC_12: u32 = 0xffff_fffb;

/// Upper bound on `nfunc` to keep corrupt headers from allocating wildly.
const MAX_FUNCS: u64 = 4_000_000;

/// Why the pclntab could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PclntabError {
    /// Shorter than its header or a table runs past the end.
    #[error("pclntab truncated: {0}")]
    Truncated(&'static str),
    /// Unknown magic.
    #[error("unknown pclntab magic {0:#x}")]
    BadMagic(u32),
    /// A pre-1.18 format (Go 1.17 or older).
    #[error("pclntab magic {0:#x} is from Go 1.17 or older")]
    TooOld(u32),
    /// Header fields out of range.
    #[error("pclntab header is corrupt: {0}")]
    BadHeader(&'static str),
    /// Function table inconsistent.
    #[error("pclntab function table is corrupt: {0}")]
    BadFtab(&'static str),
}

/// One function record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PcFunc {
    /// Symbol name.
    pub name: String,
    /// Entry VA.
    pub entry: u64,
    /// End VA (exclusive): the next function's entry, or the sentinel.
    pub end: u64,
    /// Offset of the `_func` record within `data`.
    pub func_off: usize,
}

/// A parsed pclntab. Owns a copy of the section bytes for line lookups.
#[derive(Clone, Debug)]
pub struct Pclntab {
    data: Vec<u8>,
    /// Magic (`MAGIC_118` or `MAGIC_120`).
    pub magic: u32,
    /// Instruction size quantum: 1 (amd64) or 4 (arm64).
    pub min_lc: u8,
    /// Pointer size.
    pub ptr_size: u8,
    /// Text start used for function addresses.
    pub text_start: u64,
    /// `textStart` as stored in the header (0 on Go 1.26+).
    pub header_text_start: u64,
    cu_off: usize,
    filetab_off: usize,
    pctab_off: usize,
    /// Functions sorted by entry.
    pub funcs: Vec<PcFunc>,
}

fn u32_at(d: &[u8], off: usize) -> Option<u32> {
    let b = d.get(off..off.checked_add(4)?)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

fn word_at(d: &[u8], off: usize, ptr_size: u8) -> Option<u64> {
    if ptr_size == 4 {
        return u32_at(d, off).map(u64::from);
    }
    let b = d.get(off..off.checked_add(8)?)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(b);
    Some(u64::from_le_bytes(a))
}

fn cstr(d: &[u8], off: usize) -> Option<&str> {
    let tail = d.get(off..)?;
    let end = tail.iter().position(|&b| b == 0)?;
    std::str::from_utf8(&tail[..end]).ok()
}

/// `textStart` from the header of a Go 1.18+ pclntab (0 on Go 1.26+, where
/// the linker leaves it to `moduledata.text`), without parsing the rest.
#[must_use]
pub fn header_text_start(data: &[u8]) -> Option<u64> {
    let ptr_size = *data.get(7)?;
    if !matches!(ptr_size, 4 | 8) {
        return None;
    }
    word_at(data, 8 + 2 * usize::from(ptr_size), ptr_size)
}

/// Parses a pclntab. `text_addr` is where the Go text starts
/// (`moduledata.text`, else the `.text` section address), used when the
/// header's `textStart` is 0 (Go 1.26+). Never panics.
pub fn parse(data: &[u8], text_addr: u64) -> Result<Pclntab, PclntabError> {
    let magic = u32_at(data, 0).ok_or(PclntabError::Truncated("header"))?;
    match magic {
        MAGIC_118 | MAGIC_120 => {}
        MAGIC_116 | MAGIC_12 => return Err(PclntabError::TooOld(magic)),
        other => return Err(PclntabError::BadMagic(other)),
    }
    let hdr = data.get(..8).ok_or(PclntabError::Truncated("header"))?;
    if hdr[4] != 0 || hdr[5] != 0 {
        return Err(PclntabError::BadHeader("nonzero padding"));
    }
    let min_lc = hdr[6];
    let ptr_size = hdr[7];
    if !matches!(min_lc, 1 | 2 | 4) {
        return Err(PclntabError::BadHeader("minLC"));
    }
    if !matches!(ptr_size, 4 | 8) {
        return Err(PclntabError::BadHeader("ptrSize"));
    }
    let p = usize::from(ptr_size);
    let field =
        |i: usize| word_at(data, 8 + i * p, ptr_size).ok_or(PclntabError::Truncated("header"));
    let nfunc = field(0)?;
    let _nfiles = field(1)?;
    let header_text_start = field(2)?;
    let to_off = |v: u64, what: &'static str| -> Result<usize, PclntabError> {
        let o = usize::try_from(v).map_err(|_| PclntabError::BadHeader(what))?;
        if o > data.len() {
            return Err(PclntabError::BadHeader(what));
        }
        Ok(o)
    };
    let funcname_off = to_off(field(3)?, "funcnameOffset")?;
    let cu_off = to_off(field(4)?, "cuOffset")?;
    let filetab_off = to_off(field(5)?, "filetabOffset")?;
    let pctab_off = to_off(field(6)?, "pctabOffset")?;
    let pcln_off = to_off(field(7)?, "pclnOffset")?;
    if nfunc == 0 || nfunc > MAX_FUNCS {
        return Err(PclntabError::BadHeader("nfunc"));
    }
    let nfunc = usize::try_from(nfunc).map_err(|_| PclntabError::BadHeader("nfunc"))?;
    let text_start = if header_text_start == 0 {
        text_addr
    } else {
        header_text_start
    };
    // ftab: nfunc+1 entries of 8 bytes.
    let ftab_len = nfunc
        .checked_add(1)
        .and_then(|n| n.checked_mul(8))
        .ok_or(PclntabError::BadHeader("nfunc"))?;
    if pcln_off
        .checked_add(ftab_len)
        .is_none_or(|e| e > data.len())
    {
        return Err(PclntabError::Truncated("ftab"));
    }
    let mut funcs = Vec::with_capacity(nfunc);
    let sentinel = u32_at(data, pcln_off + nfunc * 8).ok_or(PclntabError::Truncated("ftab"))?;
    let mut prev_entry: u32 = 0;
    for i in 0..nfunc {
        let at = pcln_off + i * 8;
        let entryoff = u32_at(data, at).ok_or(PclntabError::Truncated("ftab"))?;
        let funcoff = u32_at(data, at + 4).ok_or(PclntabError::Truncated("ftab"))?;
        let next = if i + 1 < nfunc {
            u32_at(data, at + 8).ok_or(PclntabError::Truncated("ftab"))?
        } else {
            sentinel
        };
        if entryoff < prev_entry || next < entryoff {
            return Err(PclntabError::BadFtab("entries not sorted"));
        }
        prev_entry = entryoff;
        let func_off = usize::try_from(funcoff)
            .ok()
            .and_then(|f| pcln_off.checked_add(f))
            .ok_or(PclntabError::BadFtab("funcoff"))?;
        let rec_entry =
            u32_at(data, func_off).ok_or(PclntabError::BadFtab("_func out of range"))?;
        if rec_entry != entryoff {
            return Err(PclntabError::BadFtab("_func.entryOff disagrees with ftab"));
        }
        let name_off =
            u32_at(data, func_off + 4).ok_or(PclntabError::BadFtab("_func out of range"))?;
        let name_at = usize::try_from(name_off)
            .ok()
            .and_then(|n| funcname_off.checked_add(n))
            .ok_or(PclntabError::BadFtab("nameOff"))?;
        let name = cstr(data, name_at).ok_or(PclntabError::BadFtab("function name"))?;
        let entry = text_start
            .checked_add(u64::from(entryoff))
            .ok_or(PclntabError::BadFtab("entry"))?;
        let end = text_start
            .checked_add(u64::from(next))
            .ok_or(PclntabError::BadFtab("end"))?;
        funcs.push(PcFunc {
            name: name.to_owned(),
            entry,
            end,
            func_off,
        });
    }
    Ok(Pclntab {
        data: data.to_vec(),
        magic,
        min_lc,
        ptr_size,
        text_start,
        header_text_start,
        cu_off,
        filetab_off,
        pctab_off,
        funcs,
    })
}

impl Pclntab {
    /// Index of the function containing `pc`.
    #[must_use]
    pub fn index_for_pc(&self, pc: u64) -> Option<usize> {
        let i = self.funcs.partition_point(|f| f.entry <= pc);
        let i = i.checked_sub(1)?;
        let f = self.funcs.get(i)?;
        (pc < f.end).then_some(i)
    }

    /// `"Go 1.18/1.19 format"` or `"Go 1.20+ format"`.
    #[must_use]
    pub fn format_name(&self) -> &'static str {
        if self.magic == MAGIC_118 {
            "Go 1.18/1.19 format"
        } else {
            "Go 1.20+ format"
        }
    }

    /// Value of the pcvalue table at `table_off` (relative to `pctab`) for
    /// `pc` in the function starting at `entry`.
    fn pcvalue(&self, table_off: u32, entry: u64, pc: u64) -> Option<i64> {
        if table_off == 0 {
            return None;
        }
        let start = self
            .pctab_off
            .checked_add(usize::try_from(table_off).ok()?)?;
        let mut p = self.data.get(start..)?;
        let mut val: i64 = -1;
        let mut cur = entry;
        let mut first = true;
        // Each step: value delta (zig-zag uvarint), then pc delta (uvarint * minLC).
        for _ in 0..1_000_000 {
            let (uv, n) = uvarint(p)?;
            if uv == 0 && !first {
                return None;
            }
            p = p.get(n..)?;
            let delta = if uv & 1 != 0 {
                !(uv >> 1) as i64
            } else {
                (uv >> 1) as i64
            };
            val = val.wrapping_add(delta);
            let (pcd, n) = uvarint(p)?;
            p = p.get(n..)?;
            cur = cur.checked_add(pcd.checked_mul(u64::from(self.min_lc))?)?;
            first = false;
            if pc < cur {
                return Some(val);
            }
        }
        None
    }

    /// Bytes the function at `idx` has pushed or reserved on the stack at
    /// `pc` (the `pcsp` table): 0 at the entry, the frame size in the body.
    #[must_use]
    pub fn sp_delta(&self, idx: usize, pc: u64) -> Option<i64> {
        let f = self.funcs.get(idx)?;
        let pcsp = u32_at(&self.data, f.func_off.checked_add(16)?)?;
        self.pcvalue(pcsp, f.entry, pc)
    }

    /// (file, line) for `pc` inside function `idx`.
    #[must_use]
    pub fn file_line(&self, idx: usize, pc: u64) -> Option<(String, u32)> {
        let f = self.funcs.get(idx)?;
        let rec = f.func_off;
        let pcfile = u32_at(&self.data, rec.checked_add(20)?)?;
        let pcln = u32_at(&self.data, rec.checked_add(24)?)?;
        let cu = u32_at(&self.data, rec.checked_add(32)?)?;
        let fileno = self.pcvalue(pcfile, f.entry, pc)?;
        let line = self.pcvalue(pcln, f.entry, pc)?;
        let fileno = usize::try_from(fileno).ok()?;
        let cu_index = usize::try_from(cu).ok()?.checked_add(fileno)?;
        let cutab_at = self.cu_off.checked_add(cu_index.checked_mul(4)?)?;
        let file_off = u32_at(&self.data, cutab_at)?;
        if file_off == u32::MAX {
            return None;
        }
        let name_at = self
            .filetab_off
            .checked_add(usize::try_from(file_off).ok()?)?;
        let file = cstr(&self.data, name_at)?;
        Some((file.to_owned(), u32::try_from(line).ok()?))
    }
}
