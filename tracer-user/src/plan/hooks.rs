//! The default probe set as data: runtime symbol, role, argument registers.
//!
//! Register numbers are positions in Go's ABIInternal integer sequence
//! (`go1.18:src/cmd/compile/abi-internal.md`): amd64 RAX RBX RCX RDI …,
//! arm64 R0 R1 R2 R3 …. Signatures: go-runtime.md sections 1.2, 1.3 and 4.1.

use tracer_common::{GrowKind, NO_ARG, ProbeRole};

use crate::inspect::MapImpl;

/// Which essential capability a hook provides; the plan fails only when no
/// hook of a group is present.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Group {
    /// Map creation.
    Create,
    /// Map growth.
    Grow,
    /// `gcStart`.
    GcStart,
    /// `gcSweep`.
    GcSweep,
}

/// Where a hook is placed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// One probe at the function's entry placement (3.2 of DESIGN.md).
    Entry,
    /// One probe at every RET site.
    RetSites,
}

/// One row of the probe table.
#[derive(Clone, Copy, Debug)]
pub struct Hook {
    /// Symbol name.
    pub function: &'static str,
    /// Program role.
    pub role: ProbeRole,
    /// Where.
    pub placement: Placement,
    /// Map pointer register.
    pub map_arg: u8,
    /// Type descriptor register.
    pub type_arg: u8,
    /// Size register.
    pub size_arg: u8,
    /// Role-specific byte.
    pub aux: u8,
    /// Essential group.
    pub group: Group,
}

const fn hook(
    function: &'static str,
    role: ProbeRole,
    placement: Placement,
    regs: [u8; 3],
    aux: u8,
    group: Group,
) -> Hook {
    Hook {
        function,
        role,
        placement,
        map_arg: regs[0],
        type_arg: regs[1],
        size_arg: regs[2],
        aux,
        group,
    }
}

const N: u8 = NO_ARG;

/// `runtime.makemap(t *maptype, hint int, h *hmap) *hmap` (go1.18:src/runtime/map.go).
const HMAP: &[Hook] = &[
    hook(
        "runtime.makemap",
        ProbeRole::CreateEntry,
        Placement::Entry,
        [N, 0, 1],
        0,
        Group::Create,
    ),
    hook(
        "runtime.makemap",
        ProbeRole::CreateRet,
        Placement::RetSites,
        [N, N, N],
        1,
        Group::Create,
    ),
    // func makemap_small() *hmap: no type argument.
    hook(
        "runtime.makemap_small",
        ProbeRole::CreateRet,
        Placement::RetSites,
        [N, N, N],
        0,
        Group::Create,
    ),
    // func hashGrow(t *maptype, h *hmap).
    hook(
        "runtime.hashGrow",
        ProbeRole::Grow,
        Placement::Entry,
        [1, 0, N],
        GrowKind::HashGrow as u8,
        Group::Grow,
    ),
];

/// Swiss maps, `1.24:src/internal/runtime/maps/{map.go,table.go}`.
const SWISS: &[Hook] = &[
    // func NewMap(mt *abi.SwissMapType, hint uintptr, m *Map, maxAlloc uintptr) *Map.
    hook(
        "internal/runtime/maps.NewMap",
        ProbeRole::CreateEntry,
        Placement::Entry,
        [N, 0, 1],
        0,
        Group::Create,
    ),
    hook(
        "internal/runtime/maps.NewMap",
        ProbeRole::CreateRet,
        Placement::RetSites,
        [N, N, N],
        1,
        Group::Create,
    ),
    hook(
        "runtime.makemap_small",
        ProbeRole::CreateRet,
        Placement::RetSites,
        [N, N, N],
        0,
        Group::Create,
    ),
    // func (m *Map) growToTable(typ *abi.SwissMapType).
    hook(
        "internal/runtime/maps.(*Map).growToTable",
        ProbeRole::Grow,
        Placement::Entry,
        [0, 1, N],
        GrowKind::ToTable as u8,
        Group::Grow,
    ),
    // func (t *table) grow(typ *abi.SwissMapType, m *Map, newCapacity uint16).
    hook(
        "internal/runtime/maps.(*table).grow",
        ProbeRole::Grow,
        Placement::Entry,
        [2, 1, 3],
        GrowKind::TableGrow as u8,
        Group::Grow,
    ),
    // func (t *table) split(typ *abi.SwissMapType, m *Map).
    hook(
        "internal/runtime/maps.(*table).split",
        ProbeRole::Grow,
        Placement::Entry,
        [2, 1, N],
        GrowKind::TableSplit as u8,
        Group::Grow,
    ),
];

/// `go1.18:src/runtime/mgc.go`: `gcStart(trigger gcTrigger)`, `gcSweep(mode gcMode)`.
const GC: &[Hook] = &[
    hook(
        "runtime.gcStart",
        ProbeRole::GcStart,
        Placement::Entry,
        [N, N, N],
        0,
        Group::GcStart,
    ),
    hook(
        "runtime.gcSweep",
        ProbeRole::GcSweep,
        Placement::Entry,
        [N, N, N],
        0,
        Group::GcSweep,
    ),
];

/// The default hooks for a map implementation, in plan order.
#[must_use]
pub fn default_hooks(map_impl: MapImpl) -> Vec<Hook> {
    let maps = match map_impl {
        MapImpl::Hmap => HMAP,
        MapImpl::Swiss => SWISS,
    };
    maps.iter().chain(GC).copied().collect()
}

/// Write-path functions (not probed by default).
pub const WRITE_PATH: &[&str] = &[
    "runtime.mapassign",
    "runtime.mapassign_fast32",
    "runtime.mapassign_fast32ptr",
    "runtime.mapassign_fast64",
    "runtime.mapassign_fast64ptr",
    "runtime.mapassign_faststr",
    "runtime.mapdelete",
    "runtime.mapdelete_fast32",
    "runtime.mapdelete_fast64",
    "runtime.mapdelete_faststr",
    "runtime.mapclear",
    "internal/runtime/maps.(*Map).Delete",
    "internal/runtime/maps.(*Map).Clear",
];
