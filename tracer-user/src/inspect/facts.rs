//! What `inspect` finds, as types: architecture, map implementation, Go
//! version, functions and frames, globals, moduledata, and its errors.
use std::path::PathBuf;

use super::{buildinfo, pclntab};

/// Target architecture of a Go binary.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GoArch {
    /// x86-64.
    Amd64,
    /// AArch64.
    Arm64,
}

impl GoArch {
    /// The name `go env GOARCH` prints.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Amd64 => "amd64",
            Self::Arm64 => "arm64",
        }
    }
}

/// Which builtin map implementation the binary uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MapImpl {
    /// Bucket hashmap `runtime.hmap` (1.18 to 1.23, and 1.24/1.25 with `noswissmap`).
    Hmap,
    /// Swiss tables `internal/runtime/maps.Map` (1.24+).
    Swiss,
}

impl MapImpl {
    /// `hmap` or `swiss`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Hmap => "hmap",
            Self::Swiss => "swiss",
        }
    }
}

/// A Go release as `go version` prints it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct GoVersion {
    /// As printed, e.g. `go1.23.5` (any ` X:…` suffix removed).
    pub raw: String,
    /// 1.
    pub major: u32,
    /// 23.
    pub minor: u32,
    /// 5 (0 when absent).
    pub patch: u32,
}

/// One function from the pclntab.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Func {
    /// Full Go symbol name, e.g. `runtime.mapassign_fast64`.
    pub name: String,
    /// Entry virtual address (link-time, no load bias).
    pub entry: u64,
    /// End virtual address (exclusive).
    pub end: u64,
}

/// A resolved source position.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Frame {
    /// Function name.
    pub function: String,
    /// Source file.
    pub file: String,
    /// Line.
    pub line: u32,
}

/// Where a layout came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LayoutSource {
    /// The binary's own DWARF.
    Dwarf,
    /// The built-in per-version table.
    Builtin,
}

/// A data symbol (global variable) from `.symtab`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataSymbol {
    /// Name, e.g. `main.sessions`.
    pub name: String,
    /// Virtual address.
    pub addr: u64,
    /// Size in bytes.
    pub size: u64,
}

/// How an address was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FoundBy {
    /// Its `.symtab` symbol.
    Symbol,
    /// Its DWARF variable.
    Dwarf,
    /// The section that holds exactly it.
    Section(&'static str),
    /// A scan of this part of the file, checked against what must be there.
    Scan(&'static str),
    /// The code of this runtime function.
    Code(&'static str),
}

impl std::fmt::Display for FoundBy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Symbol => f.write_str(".symtab symbol"),
            Self::Dwarf => f.write_str("DWARF variable"),
            Self::Section(s) => write!(f, "section {s}"),
            Self::Scan(s) => write!(f, "scan of {s}"),
            Self::Code(func) => write!(f, "code of {func}"),
        }
    }
}

impl serde::Serialize for FoundBy {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Virtual addresses (no load bias) of the runtime globals the tracer reads.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Globals {
    /// `runtime.work`.
    pub work: Option<u64>,
    /// `runtime.memstats`.
    pub memstats: Option<u64>,
    /// `runtime.gcController`.
    pub gc_controller: Option<u64>,
    /// `runtime.firstmoduledata`.
    pub firstmoduledata: Option<u64>,
    /// How each was found.
    pub found_by: GlobalsFoundBy,
}

/// How each of [`Globals`] was found (`None`: not found).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct GlobalsFoundBy {
    /// `runtime.work`.
    pub work: Option<FoundBy>,
    /// `runtime.memstats`.
    pub memstats: Option<FoundBy>,
    /// `runtime.gcController`.
    pub gc_controller: Option<FoundBy>,
    /// `runtime.firstmoduledata`.
    pub firstmoduledata: Option<FoundBy>,
}

/// Where `runtime.moduledata` and its type area are.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ModuleData {
    /// Address of `runtime.firstmoduledata`.
    pub addr: u64,
    /// `moduledata.types`.
    pub types: u64,
    /// `moduledata.etypes`.
    pub etypes: u64,
    /// `moduledata.text`: where Go's code starts (not `.text` when an
    /// external linker put C start-up code first).
    pub text: u64,
}

/// Why a file could not be inspected. Each message is one line that says
/// what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    /// The file could not be read.
    #[error("cannot read {}: {cause}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error (in the message, not a source: shown once).
        cause: std::io::Error,
    },
    /// Not an ELF file.
    #[error("{}: not an ELF file", path.display())]
    NotElf {
        /// The file.
        path: PathBuf,
    },
    /// ELF headers that `object` cannot parse.
    #[error("{}: malformed ELF: {what}", path.display())]
    MalformedElf {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        what: String,
    },
    /// ELF without Go build info or pclntab.
    #[error("{}: no .go.buildinfo / .gopclntab: not a Go binary", path.display())]
    NotGo {
        /// The file.
        path: PathBuf,
    },
    /// Go older than 1.18.
    #[error("{}: Go 1.{minor} is not supported: mapleak-trace needs Go 1.18 or newer", path.display())]
    TooOld {
        /// The file.
        path: PathBuf,
        /// Go minor version (0 when only "older than 1.18" is known).
        minor: u32,
    },
    /// An architecture other than amd64 and arm64.
    #[error("{}: GOARCH {arch} is not supported: mapleak-trace needs amd64 or arm64", path.display())]
    UnsupportedArch {
        /// The file.
        path: PathBuf,
        /// What the binary says.
        arch: String,
    },
    /// `.go.buildinfo` is corrupt.
    #[error("{}: corrupt .go.buildinfo: {cause}", path.display())]
    BuildInfo {
        /// The file.
        path: PathBuf,
        /// Parse error.
        cause: buildinfo::BuildInfoError,
    },
    /// `.gopclntab` is corrupt.
    #[error("{}: corrupt .gopclntab: {cause}", path.display())]
    Pclntab {
        /// The file.
        path: PathBuf,
        /// Parse error.
        cause: pclntab::PclntabError,
    },
}
