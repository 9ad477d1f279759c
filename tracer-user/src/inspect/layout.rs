//! Runtime struct layouts the tracer depends on, per Go version.
//!
//! Offsets are data: a built-in table keyed by Go version (a fallback for
//! binaries without DWARF), overridden by the binary's own DWARF when it has
//! some. Tier-1 tests check the table against the DWARF of every fixture.

/// Offsets (bytes) into runtime structures. `None` when the field does not
/// exist in that version or map implementation.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct RuntimeLayout {
    // --- hmap (runtime.hmap) ---
    /// `hmap.count`.
    pub hmap_count: Option<u32>,
    /// `hmap.flags`.
    pub hmap_flags: Option<u32>,
    /// `hmap.B`.
    pub hmap_b: Option<u32>,
    /// `hmap.noverflow`.
    pub hmap_noverflow: Option<u32>,
    /// `hmap.hash0`.
    pub hmap_hash0: Option<u32>,
    /// `hmap.buckets`.
    pub hmap_buckets: Option<u32>,
    /// `hmap.oldbuckets`.
    pub hmap_oldbuckets: Option<u32>,
    /// `hmap.nevacuate`.
    pub hmap_nevacuate: Option<u32>,
    /// `hmap.extra`.
    pub hmap_extra: Option<u32>,
    /// `sizeof(hmap)`.
    pub hmap_size: Option<u32>,
    // --- old map type (maptype / abi.MapType / abi.OldMapType) ---
    /// `maptype.key`.
    pub maptype_key: Option<u32>,
    /// `maptype.elem`.
    pub maptype_elem: Option<u32>,
    /// `maptype.bucket`.
    pub maptype_bucket: Option<u32>,
    /// `maptype.keysize` (u8).
    pub maptype_keysize: Option<u32>,
    /// `maptype.valuesize` (u8).
    pub maptype_valuesize: Option<u32>,
    /// `maptype.bucketsize` (u16).
    pub maptype_bucketsize: Option<u32>,
    /// `maptype.flags` (u32).
    pub maptype_flags: Option<u32>,
    // --- Swiss map header (internal/runtime/maps.Map) ---
    /// `Map.used`.
    pub swiss_used: Option<u32>,
    /// `Map.seed`.
    pub swiss_seed: Option<u32>,
    /// `Map.dirPtr`.
    pub swiss_dir_ptr: Option<u32>,
    /// `Map.dirLen`.
    pub swiss_dir_len: Option<u32>,
    /// `Map.globalDepth`.
    pub swiss_global_depth: Option<u32>,
    /// `sizeof(Map)`.
    pub swiss_map_size: Option<u32>,
    // --- Swiss table (internal/runtime/maps.table) ---
    /// `table.used` (u16).
    pub table_used: Option<u32>,
    /// `table.capacity` (u16).
    pub table_capacity: Option<u32>,
    /// `table.growthLeft` (u16).
    pub table_growth_left: Option<u32>,
    /// `table.localDepth` (u8).
    pub table_local_depth: Option<u32>,
    /// `table.groups.data`.
    pub table_groups_data: Option<u32>,
    /// `table.groups.lengthMask`.
    pub table_groups_length_mask: Option<u32>,
    // --- Swiss map type (abi.SwissMapType / abi.MapType) ---
    /// `Key`.
    pub swisstype_key: Option<u32>,
    /// `Elem`.
    pub swisstype_elem: Option<u32>,
    /// `Group`.
    pub swisstype_group: Option<u32>,
    /// `GroupSize`.
    pub swisstype_group_size: Option<u32>,
    /// `SlotSize` (1.24 to 1.26).
    pub swisstype_slot_size: Option<u32>,
    /// `ElemOff`.
    pub swisstype_elem_off: Option<u32>,
    /// `KeysOff` (1.27+).
    pub swisstype_keys_off: Option<u32>,
    /// `KeyStride` (1.27+).
    pub swisstype_key_stride: Option<u32>,
    /// `ElemsOff` (1.27+).
    pub swisstype_elems_off: Option<u32>,
    /// `ElemStride` (1.27+).
    pub swisstype_elem_stride: Option<u32>,
    /// `Flags`.
    pub swisstype_flags: Option<u32>,
    // --- abi.Type / runtime._type ---
    /// `Size_`.
    pub type_size: Option<u32>,
    /// `TFlag`.
    pub type_tflag: Option<u32>,
    /// `Kind_`.
    pub type_kind: Option<u32>,
    /// `Str` (nameOff).
    pub type_str: Option<u32>,
    // --- GC globals ---
    /// `work.cycles` inside `runtime.work`.
    pub work_cycles: Option<u32>,
    /// `memstats.numgc` inside `runtime.memstats`.
    pub memstats_numgc: Option<u32>,
    /// `gcController.heapLive`.
    pub gc_heap_live: Option<u32>,
    /// `gcController.heapMarked`.
    pub gc_heap_marked: Option<u32>,
    // --- goroutine and modules ---
    /// `g.goid`.
    pub g_goid: Option<u32>,
    /// `g.stack.lo` and `g.stack.hi`.
    pub g_stack_lo: Option<u32>,
    pub g_stack_hi: Option<u32>,
    /// `g.sched.sp`.
    pub g_sched_sp: Option<u32>,
    /// `g.atomicstatus`.
    pub g_atomicstatus: Option<u32>,
    /// `g.startpc`.
    pub g_startpc: Option<u32>,
    /// `moduledata.types`.
    pub moduledata_types: Option<u32>,
    /// `moduledata.etypes`.
    pub moduledata_etypes: Option<u32>,
}

/// Go minor versions of the `work.cycles` rows below (amd64, arm64), from
/// go-runtime.md section 4.2 (DWARF of the reference binaries):
/// `runtime.workType` embeds `cpu.CacheLinePad`, 64 bytes on amd64 and 128 on
/// arm64 from 1.20 (`go1.20:src/internal/cpu/cpu_arm64.go:CacheLinePadSize`).
fn work_cycles(minor: u32, arm64: bool) -> u32 {
    // go1.18:src/runtime/mgc.go:671 `work.cycles++` (uint32 field of `work`).
    let (amd, arm) = match minor {
        ..=19 => (344, 344),
        20 => (336, 400),
        21 | 22 => (400, 528),
        23 | 24 => (424, 552),
        // 1.25:src/runtime/mgc.go (workType gained the cleanup fields).
        25 => (512, 704),
        // 1.26:src/runtime/mgc.go:877 `work.cycles.Add(1)`.
        _ => (648, 904),
    };
    if arm64 { arm } else { amd }
}

/// The newest Go release (`1.minor`) the built-in table was checked
/// against. A newer one gets its last row, and a warning.
pub const NEWEST_KNOWN_MINOR: u32 = 27;

impl RuntimeLayout {
    /// The built-in layout for Go `1.minor` with map implementation
    /// `map_impl` on `arch`. Versions newer than the table use its last row.
    ///
    /// Sources: go-runtime.md sections 3, 4.2 and 6.2, each checked there
    /// against the DWARF of real binaries, and by this crate's tier-1 tests
    /// against every fixture that has DWARF.
    #[must_use]
    pub fn builtin(minor: u32, map_impl: super::MapImpl, arch: super::GoArch) -> Self {
        let mut l = Self {
            // go1.20:src/runtime/type.go `_type`, 1.26:src/internal/abi/type.go `Type`:
            // Size_ @0, TFlag @20, Kind_ @23, Str @40 (unchanged 1.18..1.27).
            type_size: Some(0),
            type_tflag: Some(20),
            type_kind: Some(23),
            type_str: Some(40),
            // go1.18:src/runtime/mgc.go `work.cycles`; see work_cycles().
            work_cycles: Some(work_cycles(minor, arch == super::GoArch::Arm64)),
            // go1.18:src/runtime/mstats.go `numgc`; mstats was reorganised in 1.19
            // (heapStats moved in) and 1.25 (`1.25:src/runtime/mstats.go`).
            memstats_numgc: Some(match minor {
                ..=18 => 4280,
                19..=24 => 7704,
                _ => 7680,
            }),
            // go1.18:src/runtime/mgcpacer.go `gcControllerState.heapLive`;
            // reordered in go1.19, go1.20 and go1.21 (atomic.Uint64).
            gc_heap_live: Some(match minor {
                ..=18 => 120,
                19 => 136,
                20 => 80,
                _ => 104,
            }),
            // same file, `heapMarked`.
            gc_heap_marked: Some(match minor {
                ..=18 => 168,
                19 => 184,
                20 => 128,
                _ => 152,
            }),
            // go1.18:src/runtime/runtime2.go `g.goid`; go1.23 added `syscallbp`
            // before it, 1.25 removed fields before it again.
            g_goid: Some(match minor {
                23 | 24 => 160,
                _ => 152,
            }),
            // go1.18:src/runtime/runtime2.go `g.stack` @0 (`stack{lo, hi}`),
            // `g.sched` @56 (`gobuf.sp` its first word), `atomicstatus` 8
            // bytes before `goid`; `startpc` moved with the fields before
            // it (DWARF of 1.19, 1.21 to 1.27 here; 1.20 assumed as 1.21).
            g_stack_lo: Some(0),
            g_stack_hi: Some(8),
            g_sched_sp: Some(56),
            g_atomicstatus: Some(match minor {
                23 | 24 => 152,
                _ => 144,
            }),
            g_startpc: Some(match minor {
                ..=19 => 312,
                20..=22 | 25 => 296,
                _ => 304,
            }),
            // go1.18:src/runtime/symtab.go `moduledata.types`; go1.20 added
            // covctrs/ecovctrs before it; 1.27 added `typedesclen` before etypes.
            moduledata_types: Some(if minor <= 19 { 280 } else { 296 }),
            moduledata_etypes: Some(match minor {
                ..=19 => 288,
                20..=26 => 304,
                _ => 312,
            }),
            ..Self::default()
        };
        match map_impl {
            super::MapImpl::Hmap => {
                // go1.18:src/runtime/map.go `type hmap struct`;
                // 1.24:src/runtime/map_noswiss.go adds `clearSeq` @40.
                let noswiss = minor >= 24;
                l.hmap_count = Some(0);
                l.hmap_flags = Some(8);
                l.hmap_b = Some(9);
                l.hmap_noverflow = Some(10);
                l.hmap_hash0 = Some(12);
                l.hmap_buckets = Some(16);
                l.hmap_oldbuckets = Some(24);
                l.hmap_nevacuate = Some(32);
                l.hmap_extra = Some(if noswiss { 48 } else { 40 });
                l.hmap_size = Some(if noswiss { 56 } else { 48 });
                // go1.20:src/runtime/type.go `maptype`, go1.21.0:src/internal/abi/type.go
                // `MapType`, 1.25:src/internal/abi/map_noswiss.go `OldMapType`.
                l.maptype_key = Some(48);
                l.maptype_elem = Some(56);
                l.maptype_bucket = Some(64);
                l.maptype_keysize = Some(80);
                l.maptype_valuesize = Some(81);
                l.maptype_bucketsize = Some(82);
                l.maptype_flags = Some(84);
            }
            super::MapImpl::Swiss => {
                // 1.24:src/internal/runtime/maps/map.go `type Map struct`.
                l.swiss_used = Some(0);
                l.swiss_seed = Some(8);
                l.swiss_dir_ptr = Some(16);
                l.swiss_dir_len = Some(24);
                l.swiss_global_depth = Some(32);
                l.swiss_map_size = Some(48);
                // 1.24:src/internal/runtime/maps/table.go `type table struct`.
                l.table_used = Some(0);
                l.table_capacity = Some(2);
                l.table_growth_left = Some(4);
                l.table_local_depth = Some(6);
                l.table_groups_data = Some(16);
                l.table_groups_length_mask = Some(24);
                // 1.24:src/internal/abi/map_swiss.go `SwissMapType`,
                // 1.26:src/internal/abi/map.go `MapType`.
                l.swisstype_key = Some(48);
                l.swisstype_elem = Some(56);
                l.swisstype_group = Some(64);
                l.swisstype_group_size = Some(80);
                if minor <= 26 {
                    l.swisstype_slot_size = Some(88);
                    l.swisstype_elem_off = Some(96);
                    l.swisstype_flags = Some(104);
                } else {
                    // 1.27:src/internal/abi/map.go (KeysOff/KeyStride/ElemsOff/ElemStride).
                    l.swisstype_keys_off = Some(88);
                    l.swisstype_key_stride = Some(96);
                    l.swisstype_elems_off = Some(104);
                    l.swisstype_elem_stride = Some(112);
                    l.swisstype_elem_off = Some(120);
                    l.swisstype_flags = Some(128);
                }
            }
        }
        l
    }

    /// `(name, value)` of every field, for printing and comparison.
    #[must_use]
    pub fn fields(&self) -> Vec<(&'static str, Option<u32>)> {
        vec![
            ("hmap.count", self.hmap_count),
            ("hmap.flags", self.hmap_flags),
            ("hmap.B", self.hmap_b),
            ("hmap.noverflow", self.hmap_noverflow),
            ("hmap.hash0", self.hmap_hash0),
            ("hmap.buckets", self.hmap_buckets),
            ("hmap.oldbuckets", self.hmap_oldbuckets),
            ("hmap.nevacuate", self.hmap_nevacuate),
            ("hmap.extra", self.hmap_extra),
            ("sizeof(hmap)", self.hmap_size),
            ("maptype.key", self.maptype_key),
            ("maptype.elem", self.maptype_elem),
            ("maptype.bucket", self.maptype_bucket),
            ("maptype.keysize", self.maptype_keysize),
            ("maptype.valuesize", self.maptype_valuesize),
            ("maptype.bucketsize", self.maptype_bucketsize),
            ("maptype.flags", self.maptype_flags),
            ("Map.used", self.swiss_used),
            ("Map.seed", self.swiss_seed),
            ("Map.dirPtr", self.swiss_dir_ptr),
            ("Map.dirLen", self.swiss_dir_len),
            ("Map.globalDepth", self.swiss_global_depth),
            ("sizeof(Map)", self.swiss_map_size),
            ("table.used", self.table_used),
            ("table.capacity", self.table_capacity),
            ("table.growthLeft", self.table_growth_left),
            ("table.localDepth", self.table_local_depth),
            ("table.groups.data", self.table_groups_data),
            ("table.groups.lengthMask", self.table_groups_length_mask),
            ("MapType.Key", self.swisstype_key),
            ("MapType.Elem", self.swisstype_elem),
            ("MapType.Group", self.swisstype_group),
            ("MapType.GroupSize", self.swisstype_group_size),
            ("MapType.SlotSize", self.swisstype_slot_size),
            ("MapType.ElemOff", self.swisstype_elem_off),
            ("MapType.KeysOff", self.swisstype_keys_off),
            ("MapType.KeyStride", self.swisstype_key_stride),
            ("MapType.ElemsOff", self.swisstype_elems_off),
            ("MapType.ElemStride", self.swisstype_elem_stride),
            ("MapType.Flags", self.swisstype_flags),
            ("Type.Size_", self.type_size),
            ("Type.TFlag", self.type_tflag),
            ("Type.Kind_", self.type_kind),
            ("Type.Str", self.type_str),
            ("work.cycles", self.work_cycles),
            ("memstats.numgc", self.memstats_numgc),
            ("gcController.heapLive", self.gc_heap_live),
            ("gcController.heapMarked", self.gc_heap_marked),
            ("g.goid", self.g_goid),
            ("g.stack.lo", self.g_stack_lo),
            ("g.stack.hi", self.g_stack_hi),
            ("g.sched.sp", self.g_sched_sp),
            ("g.atomicstatus", self.g_atomicstatus),
            ("g.startpc", self.g_startpc),
            ("moduledata.types", self.moduledata_types),
            ("moduledata.etypes", self.moduledata_etypes),
        ]
    }

    /// Fields set in `other` replace those in `self`.
    pub fn overlay(&mut self, other: &Self) {
        macro_rules! take {
            ($($f:ident),* $(,)?) => { $( if other.$f.is_some() { self.$f = other.$f; } )* };
        }
        take!(
            hmap_count,
            hmap_flags,
            hmap_b,
            hmap_noverflow,
            hmap_hash0,
            hmap_buckets,
            hmap_oldbuckets,
            hmap_nevacuate,
            hmap_extra,
            hmap_size,
            maptype_key,
            maptype_elem,
            maptype_bucket,
            maptype_keysize,
            maptype_valuesize,
            maptype_bucketsize,
            maptype_flags,
            swiss_used,
            swiss_seed,
            swiss_dir_ptr,
            swiss_dir_len,
            swiss_global_depth,
            swiss_map_size,
            table_used,
            table_capacity,
            table_growth_left,
            table_local_depth,
            table_groups_data,
            table_groups_length_mask,
            swisstype_key,
            swisstype_elem,
            swisstype_group,
            swisstype_group_size,
            swisstype_slot_size,
            swisstype_elem_off,
            swisstype_keys_off,
            swisstype_key_stride,
            swisstype_elems_off,
            swisstype_elem_stride,
            swisstype_flags,
            type_size,
            type_tflag,
            type_kind,
            type_str,
            work_cycles,
            memstats_numgc,
            gc_heap_live,
            gc_heap_marked,
            g_goid,
            g_stack_lo,
            g_stack_hi,
            g_sched_sp,
            g_atomicstatus,
            g_startpc,
            moduledata_types,
            moduledata_etypes,
        );
    }
}
