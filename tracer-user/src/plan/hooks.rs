//! The default probe set as data: runtime symbol, role, argument registers.
//!
//! Register numbers are positions in Go's ABIInternal integer sequence
//! (`go1.18:src/cmd/compile/abi-internal.md`): amd64 RAX RBX RCX RDI …,
//! arm64 R0 R1 R2 R3 …. Signatures: go-runtime.md sections 1.2, 1.3 and 4.1.

use tracer_common::{FinKind, GrowKind, NO_ARG, ProbeRole, WriteKind};

use crate::inspect::MapImpl;

/// Which essential capability a hook provides; the plan fails only when no
/// hook of a group is present.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Group {
    /// Map creation.
    Create,
    /// Map growth.
    Grow,
    /// `gcSweep`.
    GcSweep,
    /// Not essential: finalizers, cleanups, the write path.
    Optional,
}

/// Where a hook is placed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// One probe at the function's entry placement (3.2 of DESIGN.md).
    Entry,
    /// One probe at every RET site.
    RetSites,
    /// The emulated call that seeds a new map's hash (`midfunc::seed_call`);
    /// every RET site when the function does not have that shape.
    SeedCall,
    /// `makeBucketArray`'s large-array path, the map read from the frame of
    /// the named caller (`midfunc::large_bucket_array`); nothing when the
    /// shape does not match.
    LargeArray {
        /// The caller whose map argument is read.
        caller: &'static str,
    },
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
        Placement::SeedCall,
        [N, N, N],
        1,
        Group::Create,
    ),
    // func makemap_small() *hmap: no type argument.
    hook(
        "runtime.makemap_small",
        ProbeRole::CreateRet,
        Placement::SeedCall,
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
    // func makeBucketArray(t *maptype, b uint8, dirtyalloc unsafe.Pointer)
    // (buckets unsafe.Pointer, nextOverflow *bmap), on its path for arrays
    // of 32 KiB or more; the map is hashGrow's.
    hook(
        "runtime.makeBucketArray",
        ProbeRole::Grow,
        Placement::LargeArray {
            caller: "runtime.hashGrow",
        },
        [N, N, N],
        GrowKind::BucketArray as u8,
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
        Placement::SeedCall,
        [N, N, N],
        1,
        Group::Create,
    ),
    hook(
        "runtime.makemap_small",
        ProbeRole::CreateRet,
        Placement::SeedCall,
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

/// `go1.18:src/runtime/mgc.go`: `gcSweep(mode gcMode)`, entered once a
/// cycle is marked. `gcStart` is not probed: the cycles' causes are read
/// from `memstats` at this probe.
const GC: &[Hook] = &[hook(
    "runtime.gcSweep",
    ProbeRole::GcSweep,
    Placement::Entry,
    [N, N, N],
    0,
    Group::GcSweep,
)];

const fn fin(function: &'static str, kind: FinKind) -> Hook {
    hook(
        function,
        ProbeRole::Fin,
        Placement::Entry,
        [N, N, N],
        kind as u8,
        Group::Optional,
    )
}

/// Finalizers and cleanups (go-runtime.md section 5). The program sends the
/// first five argument registers; user space reads them per kind and version.
/// Functions a binary does not use are not linked into it, and are skipped.
const FIN: &[Hook] = &[
    // func SetFinalizer(obj any, finalizer any).
    fin("runtime.SetFinalizer", FinKind::SetFinalizer),
    // func queuefinalizer(p unsafe.Pointer, fn *funcval, nret uintptr, fint *_type, ot *ptrtype).
    fin("runtime.queuefinalizer", FinKind::QueueFinalizer),
    // 1.24+: func addCleanup(p unsafe.Pointer, f *funcval) uint64 (1.26: c cleanupFn).
    fin("runtime.addCleanup", FinKind::AddCleanup),
    // 1.25+: func (q *cleanupQueue) enqueue(fn *funcval) (1.26: c cleanupFn).
    fin("runtime.(*cleanupQueue).enqueue", FinKind::CleanupQueued),
    // 1.24+: func (c Cleanup) Stop().
    fin("runtime.Cleanup.Stop", FinKind::CleanupStop),
];

/// sync.Map (`crate::syncmap`), the instance in argument 0: on Go 1.24+
/// `initSlow(ht)`, once per instance; the classic one's `dirtyLocked(m)`,
/// once per generation of its dirty map. Absent from programs that use
/// no sync.Map (and each from the other kind's releases): skipped then.
const SYNC: &[Hook] = &[
    fin(crate::syncmap::INIT_SLOW, FinKind::SyncMapInit),
    fin(crate::syncmap::DIRTY_LOCKED, FinKind::SyncMapInit),
];

const fn write(function: &'static str, map_type: [u8; 2], kind: WriteKind) -> Hook {
    hook(
        function,
        ProbeRole::Write,
        Placement::Entry,
        [map_type[0], map_type[1], N],
        kind as u8,
        Group::Optional,
    )
}

/// `mapassign*(t, h, key)`: map in register 1, type in 0, the same entry
/// points for hmap and Swiss (`go1.18:src/runtime/map*.go`,
/// `1.24:src/runtime/map_swiss.go`).
const WRITE_ASSIGN: &[Hook] = &[
    write("runtime.mapassign", [1, 0], WriteKind::Assign),
    write("runtime.mapassign_fast32", [1, 0], WriteKind::Assign),
    write("runtime.mapassign_fast32ptr", [1, 0], WriteKind::Assign),
    write("runtime.mapassign_fast64", [1, 0], WriteKind::Assign),
    write("runtime.mapassign_fast64ptr", [1, 0], WriteKind::Assign),
    write("runtime.mapassign_faststr", [1, 0], WriteKind::Assign),
];

/// hmap: `mapdelete*(t, h, key)`, map in register 1, type in 0.
const DELETE_HMAP: &[Hook] = &[
    write("runtime.mapdelete", [1, 0], WriteKind::Delete),
    write("runtime.mapdelete_fast32", [1, 0], WriteKind::Delete),
    write("runtime.mapdelete_fast64", [1, 0], WriteKind::Delete),
    write("runtime.mapdelete_faststr", [1, 0], WriteKind::Delete),
];

/// Swiss: every delete funnels into
/// `func (m *Map) Delete(typ *abi.SwissMapType, key unsafe.Pointer)`.
const DELETE_SWISS: &[Hook] = &[write(
    "internal/runtime/maps.(*Map).Delete",
    [0, 1],
    WriteKind::Delete,
)];

/// The hooks for a map implementation, in plan order: the default set, then
/// finalizers, then the write path (attached only in windows).
#[must_use]
pub fn default_hooks(map_impl: MapImpl) -> Vec<Hook> {
    let (maps, deletes) = match map_impl {
        MapImpl::Hmap => (HMAP, DELETE_HMAP),
        MapImpl::Swiss => (SWISS, DELETE_SWISS),
    };
    maps.iter()
        .chain(GC)
        .chain(FIN)
        .chain(SYNC)
        .chain(WRITE_ASSIGN)
        .chain(deletes)
        .copied()
        .collect()
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
