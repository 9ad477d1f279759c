//! `inspect`: a Go ELF binary in, facts out. Pure: never touches `/proc`, the
//! kernel or the network, and needs no privileges.
//!
//! Produces [`BinaryInfo`]: Go version and GOARCH (from `.go.buildinfo`), the
//! function table (from `.gopclntab`, so stripped binaries work), runtime
//! struct layouts (from DWARF when present, else the built-in table), global
//! variable addresses, and map type names (DWARF, or type descriptors found
//! through `runtime.moduledata`).

pub mod buildinfo;
pub mod coderefs;
pub mod dwarf;
pub mod elf;
mod facts;
pub mod gcglobals;
pub mod layout;
pub mod moduledata;
pub mod pclntab;
mod types;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

pub use facts::{
    DataSymbol, FoundBy, Frame, Func, Globals, GlobalsFoundBy, GoArch, GoVersion, InspectError,
    LayoutSource, MapImpl, ModuleData,
};
pub use layout::RuntimeLayout;
pub use types::MapTypeInfo;

/// Facts about one Go executable. Built once per binary (share it by build
/// id); every accessor is pure.
#[derive(Debug)]
pub struct BinaryInfo {
    /// The file inspected.
    pub path: PathBuf,
    /// Go version from `.go.buildinfo`.
    pub go_version: GoVersion,
    /// Target architecture.
    pub goarch: GoArch,
    /// Map implementation.
    pub map_impl: MapImpl,
    /// GOEXPERIMENT entries.
    pub experiments: Vec<String>,
    /// `.symtab` present.
    pub has_symtab: bool,
    /// `.debug_info` present and readable.
    pub has_dwarf: bool,
    /// `ET_DYN` (PIE).
    pub pie: bool,
    /// pclntab magic.
    pub pclntab_magic: u32,
    /// Runtime struct offsets used.
    pub layout: RuntimeLayout,
    /// Where [`Self::layout`] came from.
    pub layout_source: LayoutSource,
    /// Runtime globals.
    pub globals: Globals,
    /// `runtime.firstmoduledata`, when found.
    pub moduledata: Option<ModuleData>,
    /// GNU build id (hex).
    pub build_id: Option<String>,
    /// Main package path from the module info.
    pub main_path: Option<String>,
    data: FileBytes,
    elf: elf::Elf,
    pcln: pclntab::Pclntab,
    funcs: Vec<Func>,
    by_name: HashMap<String, usize>,
    data_syms: Vec<DataSymbol>,
    dwarf_layout: Option<RuntimeLayout>,
    dwarf_types: HashMap<u64, String>,
    map_globals: Vec<(String, u64, String)>,
    sync_globals: Vec<(String, u64, bool)>,
    sync_structs: HashMap<String, dwarf::StructInfo>,
    type_cache: Mutex<HashMap<u64, Option<String>>>,
}

/// The bytes of the file: a copy on the heap, or a read-only mapping.
enum FileBytes {
    Heap(Vec<u8>),
    Mapped(memmap2::Mmap),
}

impl std::ops::Deref for FileBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Self::Heap(v) => v,
            Self::Mapped(m) => m,
        }
    }
}

impl std::fmt::Debug for FileBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Heap(v) => write!(f, "Heap({} bytes)", v.len()),
            Self::Mapped(m) => write!(f, "Mapped({} bytes)", m.len()),
        }
    }
}

impl BinaryInfo {
    /// A warning when the runtime layout is a guess: a Go release newer than
    /// the built-in table, and no DWARF in the binary to read it from.
    #[must_use]
    pub fn layout_warning(&self) -> Option<String> {
        (self.layout_source == LayoutSource::Builtin
            && self.go_version.minor > layout::NEWEST_KNOWN_MINOR)
            .then(|| {
                format!(
                    "{} is newer than the runtime layouts this tracer knows (up to go1.{}) and the binary has no DWARF: go1.{}'s offsets are assumed; maps may show as implausible and be dropped",
                    self.go_version.raw,
                    layout::NEWEST_KNOWN_MINOR,
                    layout::NEWEST_KNOWN_MINOR
                )
            })
    }

    /// Reads and inspects `path` (a copy in memory: the file may change
    /// while it is read).
    pub fn open(path: &Path) -> Result<Self, InspectError> {
        let data = std::fs::read(path).map_err(|cause| InspectError::Io {
            path: path.to_owned(),
            cause,
        })?;
        Self::from_bytes(path.to_owned(), data)
    }

    /// Inspects the executable of a running process (`/proc/PID/exe`),
    /// mapped rather than read: only the pages of the sections it needs
    /// become resident (a 50 MB binary costs its pclntab, type data and
    /// symbols, not 50 MB), and the kernel can drop them again. The file
    /// cannot be truncated under the mapping while the process runs it
    /// (writes to a running executable fail with ETXTBSY).
    pub fn open_executable(path: &Path) -> Result<Self, InspectError> {
        let io = |cause| InspectError::Io {
            path: path.to_owned(),
            cause,
        };
        let file = std::fs::File::open(path).map_err(io)?;
        // SAFETY: the mapping is read-only and private; the file is a running
        // executable, which the kernel refuses to open for writing, so its
        // contents and length do not change under the mapping.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
        let info = Self::parse(path.to_owned(), FileBytes::Mapped(map))?;
        if let FileBytes::Mapped(m) = &info.data {
            // Parsing walked the whole pclntab; later lookups (a frame, a
            // type name) touch a few pages each. Give the pages back: they
            // are read from the file again when needed.
            // SAFETY: a private read-only file mapping that nothing writes:
            // MADV_DONTNEED only drops pages the kernel refills from the file.
            let _ = unsafe { m.unchecked_advise(memmap2::UncheckedAdvice::DontNeed) };
        }
        Ok(info)
    }

    /// Inspects an in-memory copy of an ELF file. Never panics.
    pub fn from_bytes(path: PathBuf, data: Vec<u8>) -> Result<Self, InspectError> {
        Self::parse(path, FileBytes::Heap(data))
    }

    fn parse(path: PathBuf, data: FileBytes) -> Result<Self, InspectError> {
        let elf = match elf::Elf::parse(&data) {
            Ok(e) => e,
            Err(elf::ElfError::NotElf) => return Err(InspectError::NotElf { path }),
            Err(elf::ElfError::Malformed(what)) => {
                return Err(InspectError::MalformedElf { path, what });
            }
        };
        let bi = read_buildinfo(&elf, &data, &path)?;
        let Some((raw, major, minor, patch)) = buildinfo::parse_version(&bi.version) else {
            return Err(InspectError::BuildInfo {
                path,
                cause: buildinfo::BuildInfoError::BadVersion,
            });
        };
        if major != 1 || minor < 18 {
            return Err(InspectError::TooOld {
                path,
                minor: if major == 1 { minor } else { 0 },
            });
        }
        let go_version = GoVersion {
            raw,
            major,
            minor,
            patch,
        };
        let goarch = match bi.setting("GOARCH") {
            Some("amd64") => GoArch::Amd64,
            Some("arm64") => GoArch::Arm64,
            Some(other) => {
                return Err(InspectError::UnsupportedArch {
                    path,
                    arch: other.to_owned(),
                });
            }
            None => match elf.arch {
                object::Architecture::X86_64 => GoArch::Amd64,
                object::Architecture::Aarch64 => GoArch::Arm64,
                other => {
                    return Err(InspectError::UnsupportedArch {
                        path,
                        arch: format!("{other:?}"),
                    });
                }
            },
        };
        let experiments = bi.experiments();
        let map_impl = match minor {
            ..=23 => MapImpl::Hmap,
            24 | 25 if experiments.iter().any(|e| e == "noswissmap") => MapImpl::Hmap,
            _ => MapImpl::Swiss,
        };
        let text_section = elf.section(".text").map_or(0, |s| s.addr);
        let dwarf = dwarf::read(&data);
        let has_dwarf = dwarf.as_ref().is_some_and(|d| d.units > 0);
        let mut layout = RuntimeLayout::builtin(minor, map_impl, goarch);
        let mut layout_source = LayoutSource::Builtin;
        let dwarf_layout = dwarf.as_ref().map(|d| d.layout(map_impl));
        if let Some(dl) = &dwarf_layout
            && *dl != RuntimeLayout::default()
        {
            layout.overlay(dl);
            layout_source = LayoutSource::Dwarf;
        }
        let sym = |n: &str| elf.symbols.iter().find(|s| s.name == n).map(|s| s.addr);
        let var = |n: &str| match sym(n) {
            Some(a) => (Some(a), Some(FoundBy::Symbol)),
            None => match dwarf.as_ref().and_then(|d| d.vars.get(n).copied()) {
                Some(a) => (Some(a), Some(FoundBy::Dwarf)),
                None => (None, None),
            },
        };
        let (work, work_by) = var("runtime.work");
        let (memstats, memstats_by) = var("runtime.memstats");
        let (gc_controller, gc_controller_by) = var("runtime.gcController");
        let (firstmoduledata, md_by) = var("runtime.firstmoduledata");
        let mut globals = Globals {
            work,
            memstats,
            gc_controller,
            firstmoduledata,
            found_by: GlobalsFoundBy {
                work: work_by,
                memstats: memstats_by,
                gc_controller: gc_controller_by,
                firstmoduledata: md_by,
            },
        };
        let pcln_loc =
            moduledata::locate_pclntab(&elf, &data, &|b| pclntab::parse(b, text_section).is_ok())
                .ok_or_else(|| InspectError::NotGo { path: path.clone() })?;
        let header_text_start = pclntab::header_text_start(pcln_loc.bytes).unwrap_or(0);
        let found = moduledata::find(
            &elf,
            &data,
            &layout,
            globals.firstmoduledata,
            pcln_loc.va,
            header_text_start,
        );
        if globals.firstmoduledata.is_none()
            && let Some((m, by)) = &found
        {
            globals.firstmoduledata = Some(m.addr);
            globals.found_by.firstmoduledata = Some(*by);
        }
        let moduledata = found.map(|(m, _)| m);
        // Go 1.26+ leaves the header's textStart 0: function entries are
        // relative to moduledata.text, which external linking moves past
        // the start of `.text`.
        let text_start = moduledata.as_ref().map_or(text_section, |m| m.text);
        let pcln = pclntab::parse(pcln_loc.bytes, text_start).map_err(|e| match e {
            pclntab::PclntabError::TooOld(_) => InspectError::TooOld {
                path: path.clone(),
                minor: 0,
            },
            cause => InspectError::Pclntab {
                path: path.clone(),
                cause,
            },
        })?;
        let funcs: Vec<Func> = pcln
            .funcs
            .iter()
            .map(|f| Func {
                name: f.name.clone(),
                entry: f.entry,
                end: f.end,
            })
            .collect();
        // Names can repeat (an ABI0 wrapper and its ABIInternal body share a
        // pclntab name); the `.symtab` plain name is the ABIInternal entry.
        let sym_addr: HashMap<&str, u64> = elf
            .symbols
            .iter()
            .filter(|s| s.is_text)
            .map(|s| (s.name.as_str(), s.addr))
            .collect();
        let mut by_name: HashMap<String, usize> = HashMap::with_capacity(funcs.len());
        for (i, f) in funcs.iter().enumerate() {
            match by_name.get(&f.name) {
                None => {
                    by_name.insert(f.name.clone(), i);
                }
                Some(_) if sym_addr.get(f.name.as_str()) == Some(&f.entry) => {
                    by_name.insert(f.name.clone(), i);
                }
                Some(_) => {}
            }
        }
        let mut data_syms: Vec<DataSymbol> = elf
            .symbols
            .iter()
            .filter(|s| s.is_data)
            .map(|s| DataSymbol {
                name: s.name.clone(),
                addr: s.addr,
                size: s.size,
            })
            .collect();
        data_syms.sort_by_key(|s| (s.addr, std::cmp::Reverse(s.size)));

        // DW_AT_go_runtime_type is an offset into the Go linker's own
        // section of type descriptors (.rodata up to 1.26, .go.type from
        // 1.27, .data.rel.ro in PIE), which starts at `runtime.types` =
        // moduledata.types. An external linker may put C data first in the
        // output section, so the output section's start is only the
        // fallback.
        let type_base = moduledata.as_ref().map(|m| m.types).or_else(|| {
            elf.section(".go.type")
                .or_else(|| elf.section(".rodata"))
                .map(|s| s.addr)
        });
        let type_base = type_base.unwrap_or(0);
        let (dwarf_types, map_globals, sync_globals, sync_structs) = match dwarf {
            Some(d) => (
                d.runtime_types
                    .into_iter()
                    .filter_map(|(off, n)| Some((type_base.checked_add(off)?, n)))
                    .collect(),
                d.map_globals,
                d.sync_globals,
                d.structs
                    .into_iter()
                    .filter(|(n, _)| n.starts_with("sync.") || n.starts_with("internal/sync."))
                    .collect(),
            ),
            None => (HashMap::new(), Vec::new(), Vec::new(), HashMap::new()),
        };
        let mut info = Self {
            path,
            go_version,
            goarch,
            map_impl,
            experiments,
            has_symtab: elf.has_symtab,
            has_dwarf,
            pie: elf.pie,
            pclntab_magic: pcln.magic,
            layout,
            layout_source,
            globals,
            moduledata,
            build_id: elf.build_id.clone(),
            main_path: bi.path.clone(),
            data,
            elf,
            pcln,
            funcs,
            by_name,
            data_syms,
            dwarf_layout,
            dwarf_types,
            map_globals,
            sync_globals,
            sync_structs,
            type_cache: Mutex::new(HashMap::new()),
        };
        info.complete_globals_from_code();
        Ok(info)
    }

    /// Fills the GC globals that no symbol named from the runtime code
    /// that uses them (stripped binaries; see [`gcglobals`]).
    fn complete_globals_from_code(&mut self) {
        let g = &self.globals;
        if g.work.is_some() && g.memstats.is_some() && g.gc_controller.is_some() {
            return;
        }
        let code = self.gc_globals_from_code();
        let g = &mut self.globals;
        if g.work.is_none() && code.work.is_some() {
            g.work = code.work;
            g.found_by.work = Some(FoundBy::Code(gcglobals::WORK_FROM));
        }
        if g.memstats.is_none() && code.memstats.is_some() {
            g.memstats = code.memstats;
            g.found_by.memstats = Some(FoundBy::Code(gcglobals::MEMSTATS_FROM));
        }
        if g.gc_controller.is_none() && code.gc_controller.is_some() {
            g.gc_controller = code.gc_controller;
            g.found_by.gc_controller = Some(FoundBy::Code(gcglobals::GC_CONTROLLER_FROM));
        }
    }

    /// The function called `name`.
    #[must_use]
    pub fn func_by_name(&self, name: &str) -> Option<&Func> {
        self.funcs.get(*self.by_name.get(name)?)
    }

    /// The function containing link-time `pc`.
    #[must_use]
    pub fn func_by_pc(&self, pc: u64) -> Option<&Func> {
        self.funcs.get(self.pcln.index_for_pc(pc)?)
    }

    /// The first function outside the runtime that `f` calls directly: for
    /// the wrapper that `go f(x)` starts since Go 1.21
    /// (`main.main.gowrap2`), the function it runs. Reads at most 4 KiB of
    /// `f`'s code from the file.
    #[must_use]
    pub fn first_callee(&self, f: &Func) -> Option<&Func> {
        let len = usize::try_from(f.end.checked_sub(f.entry)?).ok()?.min(4096);
        let code = self.read_va(f.entry, len)?;
        coderefs::scan(self.goarch, code, f.entry)
            .calls
            .iter()
            .filter_map(|c| c.target)
            .find_map(|t| {
                let g = self.func_by_pc(t)?;
                (g.entry == t && !g.name.starts_with("runtime.")).then_some(g)
            })
    }

    /// Stack bytes the function containing link-time `pc` has pushed or
    /// reserved at `pc` (pclntab `pcsp`): 0 at its entry.
    #[must_use]
    pub fn sp_delta(&self, pc: u64) -> Option<i64> {
        self.pcln.sp_delta(self.pcln.index_for_pc(pc)?, pc)
    }

    /// Function and file:line of `pc` (outermost function; inlined frames are
    /// not expanded).
    #[must_use]
    pub fn frame_for_pc(&self, pc: u64) -> Option<Frame> {
        let idx = self.pcln.index_for_pc(pc)?;
        let f = self.funcs.get(idx)?;
        let (file, line) = self
            .pcln
            .file_line(idx, pc)
            .unwrap_or_else(|| ("?".to_owned(), 0));
        Some(Frame {
            function: f.name.clone(),
            file,
            line,
        })
    }

    /// Every function, sorted by entry.
    #[must_use]
    pub fn functions(&self) -> &[Func] {
        &self.funcs
    }

    /// File-backed bytes at link-time `va`.
    #[must_use]
    pub fn read_va(&self, va: u64, len: usize) -> Option<&[u8]> {
        self.elf.read_va(&self.data, va, len)
    }

    /// File offset of link-time `va`.
    #[must_use]
    pub fn va_to_file_offset(&self, va: u64) -> Option<u64> {
        self.elf.va_to_file_offset(va)
    }

    /// The `.symtab` data symbol called `name` (a linear search: for a
    /// look-up made once per process).
    #[must_use]
    pub fn data_symbol(&self, name: &str) -> Option<&DataSymbol> {
        self.data_syms.iter().find(|s| s.name == name)
    }

    /// The `.symtab` data symbol containing `va`, and the offset into it.
    #[must_use]
    pub fn data_symbol_at(&self, va: u64) -> Option<(&DataSymbol, u64)> {
        let i = self.data_syms.partition_point(|s| s.addr <= va);
        // Walk back over symbols starting at or before va. Sized symbols win
        // over zero-sized section markers such as `runtime.bss`.
        let before = self.data_syms.get(..i)?;
        before
            .iter()
            .rev()
            .take(16)
            .find(|s| va - s.addr < s.size)
            .or_else(|| before.iter().rev().take(16).find(|s| s.addr == va))
            .map(|s| (s, va - s.addr))
    }

    /// The allocated section holding link-time `va`: its name and start.
    #[must_use]
    pub fn section_of(&self, va: u64) -> Option<(&str, u64)> {
        self.elf
            .sections
            .iter()
            .find(|s| s.addr != 0 && va >= s.addr && va < s.addr.saturating_add(s.size))
            .map(|s| (s.name.as_str(), s.addr))
    }

    /// Start of the section called `name`.
    #[must_use]
    pub fn section_start(&self, name: &str) -> Option<u64> {
        self.elf.section(name).map(|s| s.addr)
    }

    /// `[start, end)` covering `.noptrdata`, `.data`, `.bss`, `.noptrbss`.
    #[must_use]
    pub fn data_range(&self) -> Option<(u64, u64)> {
        let mut lo = u64::MAX;
        let mut hi = 0u64;
        for s in &self.elf.sections {
            if matches!(
                s.name.as_str(),
                ".noptrdata" | ".data" | ".bss" | ".noptrbss"
            ) && s.size > 0
            {
                lo = lo.min(s.addr);
                hi = hi.max(s.addr.saturating_add(s.size));
            }
        }
        if lo < hi {
            return Some((lo, hi));
        }
        // No section headers: the writable PT_LOAD segment.
        self.elf
            .segments
            .iter()
            .find(|s| s.flags & 2 != 0)
            .map(|s| (s.vaddr, s.vaddr.saturating_add(s.memsz)))
    }

    /// Map-typed globals from DWARF: (variable, address, Go type).
    #[must_use]
    pub fn global_maps(&self) -> Vec<(String, u64, String)> {
        self.map_globals.clone()
    }

    /// Globals DWARF types `sync.Map` (false) or `*sync.Map` (true):
    /// (variable, link-time address, through a pointer).
    #[must_use]
    pub fn sync_map_globals(&self) -> Vec<(String, u64, bool)> {
        self.sync_globals.clone()
    }

    /// A `sync` or `internal/sync` struct as DWARF describes it (`None`
    /// without DWARF): tests check `syncmap::layout` against it.
    #[must_use]
    pub fn dwarf_sync_struct(&self, name: &str) -> Option<&dwarf::StructInfo> {
        self.sync_structs.get(name)
    }

    /// The layout DWARF alone gives (fields DWARF lacks are `None`), or
    /// `None` without DWARF. Tests compare it with the built-in table.
    #[must_use]
    pub fn dwarf_layout(&self) -> Option<&RuntimeLayout> {
        self.dwarf_layout.as_ref()
    }

    /// The `.gopclntab` format, e.g. `"Go 1.20+ format"`.
    #[must_use]
    pub fn pclntab_format(&self) -> &'static str {
        self.pcln.format_name()
    }

    /// `.text` section `[start, end)`.
    #[must_use]
    pub fn text_range(&self) -> Option<(u64, u64)> {
        self.elf
            .section(".text")
            .map(|s| (s.addr, s.addr.saturating_add(s.size)))
    }

    /// `.symtab` `STT_FUNC` symbols: (name, address, size). Empty when stripped.
    #[must_use]
    pub fn symtab_functions(&self) -> Vec<(&str, u64, u64)> {
        self.elf
            .symbols
            .iter()
            .filter(|s| s.is_text)
            .map(|s| (s.name.as_str(), s.addr, s.size))
            .collect()
    }

    /// `(descriptor VA, name)` of every type DWARF names.
    pub fn dwarf_type_names(&self) -> impl Iterator<Item = (u64, &str)> {
        self.dwarf_types.iter().map(|(&va, n)| (va, n.as_str()))
    }

    /// Number of type names known from DWARF.
    #[must_use]
    pub fn dwarf_type_count(&self) -> usize {
        self.dwarf_types.len()
    }
}

fn read_buildinfo(
    elf: &elf::Elf,
    data: &[u8],
    path: &Path,
) -> Result<buildinfo::BuildInfo, InspectError> {
    let blob = if let Some(b) = elf.section_data(data, ".go.buildinfo") {
        b
    } else {
        // No section headers: scan writable PT_LOAD data for the magic.
        let mut found = None;
        for s in elf.segments.iter().filter(|s| s.flags & 2 != 0) {
            let Some(seg) = elf::slice(data, s.offset, s.filesz) else {
                continue;
            };
            if let Some(off) = buildinfo::find_magic(seg) {
                found = Some(&seg[off..]);
                break;
            }
        }
        match found {
            Some(b) => b,
            None if elf.section(".gopclntab").is_some()
                || elf.section(".data.rel.ro.gopclntab").is_some() =>
            {
                return Err(InspectError::BuildInfo {
                    path: path.to_owned(),
                    cause: buildinfo::BuildInfoError::NoMagic,
                });
            }
            None => {
                return Err(InspectError::NotGo {
                    path: path.to_owned(),
                });
            }
        }
    };
    match buildinfo::parse(blob) {
        Ok(b) => Ok(b),
        Err(buildinfo::BuildInfoError::OldFormat {
            ptr_size: 8,
            big_endian: false,
            version_ptr,
        }) => {
            // Go <= 1.17: follow the pointer to the version string header.
            let minor = elf
                .read_va(data, version_ptr, 16)
                .and_then(|h| {
                    let p = u64::from_le_bytes(h[..8].try_into().ok()?);
                    let n = u64::from_le_bytes(h[8..16].try_into().ok()?);
                    elf.read_va(data, p, usize::try_from(n.min(64)).ok()?)
                })
                .and_then(|s| buildinfo::parse_version(&String::from_utf8_lossy(s)))
                .map_or(0, |v| v.2);
            Err(InspectError::TooOld {
                path: path.to_owned(),
                minor,
            })
        }
        Err(buildinfo::BuildInfoError::OldFormat { .. }) => Err(InspectError::TooOld {
            path: path.to_owned(),
            minor: 0,
        }),
        Err(cause) => Err(InspectError::BuildInfo {
            path: path.to_owned(),
            cause,
        }),
    }
}
