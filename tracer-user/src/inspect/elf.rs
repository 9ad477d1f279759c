//! The ELF container: sections, `PT_LOAD` segments, symbols and the build id,
//! copied out of `object`'s borrowed view into owned tables so that
//! [`super::BinaryInfo`] owns its bytes and nothing borrows from them.
//!
//! Every lookup is bounds-checked: a corrupted header or a section whose file
//! range lies past the end of the file yields `None`, never a panic.

use object::{Object, ObjectSection, ObjectSegment, ObjectSymbol, SectionKind, SymbolKind};

/// A section header, reduced to what `inspect` needs.
#[derive(Clone, Debug)]
pub struct Section {
    /// Name, e.g. `.gopclntab`.
    pub name: String,
    /// Link-time virtual address (0 for non-allocated sections).
    pub addr: u64,
    /// Size in memory.
    pub size: u64,
    /// File range `(offset, size)`; `None` for `SHT_NOBITS` (`.bss`).
    pub file_range: Option<(u64, u64)>,
}

/// A `PT_LOAD` segment.
#[derive(Clone, Copy, Debug)]
pub struct Segment {
    /// Link-time virtual address.
    pub vaddr: u64,
    /// Size in memory.
    pub memsz: u64,
    /// File offset.
    pub offset: u64,
    /// Size in the file.
    pub filesz: u64,
    /// `p_flags` (1 = X, 2 = W, 4 = R).
    pub flags: u32,
}

/// A `.symtab` symbol.
#[derive(Clone, Debug)]
pub struct Symbol {
    /// Name.
    pub name: String,
    /// Value (link-time VA).
    pub addr: u64,
    /// `st_size`.
    pub size: u64,
    /// `STT_FUNC`.
    pub is_text: bool,
    /// `STT_OBJECT`.
    pub is_data: bool,
}

/// Owned summary of an ELF file.
#[derive(Clone, Debug)]
pub struct Elf {
    /// Sections in header order.
    pub sections: Vec<Section>,
    /// `PT_LOAD` segments.
    pub segments: Vec<Segment>,
    /// `.symtab` symbols (empty when stripped).
    pub symbols: Vec<Symbol>,
    /// `true` when a `.symtab` section exists.
    pub has_symtab: bool,
    /// `ET_DYN`.
    pub pie: bool,
    /// `object`'s architecture.
    pub arch: object::Architecture,
    /// Hex GNU build id, when present.
    pub build_id: Option<String>,
    /// `R_*_RELATIVE` dynamic relocations of a PIE, sorted by address:
    /// (word address, value once loaded at link-time addresses). GNU ld
    /// leaves these words 0 in the file on arm64, so a pointer read from
    /// the file must come from here.
    pub relative: Vec<(u64, u64)>,
}

/// Why the file is not usable as ELF.
#[derive(Debug, thiserror::Error)]
pub enum ElfError {
    /// Not ELF at all.
    #[error("not an ELF file")]
    NotElf,
    /// ELF, but `object` could not parse its headers.
    #[error("malformed ELF headers: {0}")]
    Malformed(String),
}

impl Elf {
    /// Parses `data` as a 64-bit little-endian ELF file.
    pub fn parse(data: &[u8]) -> Result<Self, ElfError> {
        if data.get(..4) != Some(b"\x7fELF".as_slice()) {
            return Err(ElfError::NotElf);
        }
        let file = object::File::parse(data).map_err(|e| ElfError::Malformed(e.to_string()))?;
        let mut sections = Vec::new();
        let mut has_symtab = false;
        for s in file.sections() {
            let name = s.name().unwrap_or("").to_owned();
            if name == ".symtab" {
                has_symtab = true;
            }
            let file_range = if s.kind() == SectionKind::UninitializedData {
                None
            } else {
                s.file_range()
            };
            sections.push(Section {
                name,
                addr: s.address(),
                size: s.size(),
                file_range,
            });
        }
        let mut segments = Vec::new();
        for seg in file.segments() {
            let (offset, filesz) = seg.file_range();
            let flags = match seg.flags() {
                object::SegmentFlags::Elf { p_flags } => p_flags,
                _ => 0,
            };
            segments.push(Segment {
                vaddr: seg.address(),
                memsz: seg.size(),
                offset,
                filesz,
                flags,
            });
        }
        let mut symbols = Vec::new();
        for sym in file.symbols() {
            let Ok(name) = sym.name() else { continue };
            if name.is_empty() {
                continue;
            }
            symbols.push(Symbol {
                name: name.to_owned(),
                addr: sym.address(),
                size: sym.size(),
                is_text: sym.kind() == SymbolKind::Text,
                is_data: sym.kind() == SymbolKind::Data,
            });
        }
        // R_X86_64_RELATIVE (8) and R_AARCH64_RELATIVE (1027): B + A.
        let mut relative: Vec<(u64, u64)> = file
            .dynamic_relocations()
            .into_iter()
            .flatten()
            .filter(|(_, r)| {
                matches!(
                    (file.architecture(), r.flags()),
                    (
                        object::Architecture::X86_64,
                        object::RelocationFlags::Elf { r_type: 8 }
                    ) | (
                        object::Architecture::Aarch64,
                        object::RelocationFlags::Elf { r_type: 1027 }
                    )
                )
            })
            .map(|(off, r)| (off, r.addend() as u64))
            .collect();
        relative.sort_unstable();
        // e_type at offset 16 (u16, little endian): ET_DYN = 3.
        let pie = data
            .get(16..18)
            .is_some_and(|b| u16::from_le_bytes([b[0], b[1]]) == 3);
        let build_id = file
            .build_id()
            .ok()
            .flatten()
            .map(|id| id.iter().map(|b| format!("{b:02x}")).collect::<String>());
        Ok(Self {
            sections,
            segments,
            symbols,
            has_symtab,
            pie,
            arch: file.architecture(),
            build_id,
            relative,
        })
    }

    /// The first section called `name`.
    #[must_use]
    pub fn section(&self, name: &str) -> Option<&Section> {
        self.sections.iter().find(|s| s.name == name)
    }

    /// File bytes of section `name` (empty slice never returned for NOBITS: `None`).
    #[must_use]
    pub fn section_data<'a>(&self, data: &'a [u8], name: &str) -> Option<&'a [u8]> {
        let (off, size) = self.section(name)?.file_range?;
        slice(data, off, size)
    }

    /// Bytes at link-time `va`, from the file-backed part of a `PT_LOAD`
    /// segment (or of an allocated section when there are no segments).
    #[must_use]
    pub fn read_va<'a>(&self, data: &'a [u8], va: u64, len: usize) -> Option<&'a [u8]> {
        let off = self.va_to_file_offset(va)?;
        let len64 = u64::try_from(len).ok()?;
        // The whole range must stay inside one file-backed mapping.
        let end_va = va.checked_add(len64)?;
        let fits = self
            .segments
            .iter()
            .any(|s| va >= s.vaddr && end_va <= s.vaddr.saturating_add(s.filesz))
            || self.sections.iter().any(|s| {
                s.addr != 0
                    && s.file_range.is_some()
                    && va >= s.addr
                    && end_va <= s.addr.saturating_add(s.size)
            });
        if !fits {
            return None;
        }
        slice(data, off, len64)
    }

    /// The pointer-sized word at link-time `va` as the loader leaves it: the
    /// relocated value when a relative relocation targets it, else the file's.
    #[must_use]
    pub fn read_word(&self, data: &[u8], va: u64) -> Option<u64> {
        if let Ok(i) = self.relative.binary_search_by_key(&va, |r| r.0) {
            return Some(self.relative[i].1);
        }
        let b = self.read_va(data, va, 8)?;
        Some(u64::from_le_bytes(b.try_into().ok()?))
    }

    /// File offset of link-time `va` (what uprobe attachment wants).
    #[must_use]
    pub fn va_to_file_offset(&self, va: u64) -> Option<u64> {
        for s in &self.segments {
            if va >= s.vaddr && va < s.vaddr.saturating_add(s.filesz) {
                return s.offset.checked_add(va - s.vaddr);
            }
        }
        for s in &self.sections {
            if let Some((off, size)) = s.file_range
                && s.addr != 0
                && va >= s.addr
                && va < s.addr.saturating_add(size)
            {
                return off.checked_add(va - s.addr);
            }
        }
        None
    }
}

/// `data[off..off+len]`, checked.
#[must_use]
pub fn slice(data: &[u8], off: u64, len: u64) -> Option<&[u8]> {
    let start = usize::try_from(off).ok()?;
    let len = usize::try_from(len).ok()?;
    data.get(start..start.checked_add(len)?)
}
