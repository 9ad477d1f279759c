//! DWARF (4 and 5, via `gimli`): runtime struct member offsets, addresses of
//! runtime globals, map-typed global variables, and the
//! `DW_AT_go_runtime_type` → type name table.
//!
//! Go's linker compresses `.debug_*` sections (`SHF_COMPRESSED`); `object`
//! inflates them. Any DWARF error simply means "no DWARF facts": the caller
//! falls back to the built-in layout table.

use std::borrow::Cow;
use std::collections::HashMap;

use gimli::{AttributeValue, EndianSlice, LittleEndian};
use object::{Object, ObjectSection};

use super::MapImpl;
use super::layout::RuntimeLayout;

/// `DW_AT_go_kind` (`cmd/internal/dwarf/dwarf.go`).
const DW_AT_GO_KIND: u16 = 0x2900;
/// `DW_AT_go_runtime_type`: offset of the type descriptor in its section.
const DW_AT_GO_RUNTIME_TYPE: u16 = 0x2904;
/// `abi.Map` kind.
const KIND_MAP: u64 = 21;

/// Struct types whose members `inspect` reads.
const STRUCTS: &[&str] = &[
    "runtime.hmap",
    "runtime.maptype",
    "internal/abi.MapType",
    "internal/abi.OldMapType",
    "internal/abi.SwissMapType",
    "internal/runtime/maps.Map",
    "internal/runtime/maps.table",
    "internal/runtime/maps.groupsReference",
    "internal/abi.Type",
    "runtime._type",
    "runtime.mstats",
    "runtime.gcControllerState",
    "runtime.g",
    "runtime.stack",
    "runtime.gobuf",
    "runtime.moduledata",
    // sync.Map on Go 1.24+ (checked against `syncmap::layout`).
    "sync.Map",
    // The classic one (before 1.24, and GOEXPERIMENT=nosynchashtriemap).
    "sync.readOnly",
    "internal/sync.HashTrieMap[interface {},interface {}]",
    "internal/sync.indirect[interface {},interface {}]",
    "internal/sync.entry[interface {},interface {}]",
    "internal/sync.node[interface {},interface {}]",
    // 1.27 describes some only by their shape.
    "internal/sync.indirect[go.shape.interface {},go.shape.interface {}]",
    "internal/sync.entry[go.shape.interface {},go.shape.interface {}]",
    "internal/sync.node[go.shape.interface {},go.shape.interface {}]",
];

/// Globals whose address (and, for `runtime.work`, type) `inspect` needs.
const VARS: &[&str] = &[
    "runtime.work",
    "runtime.memstats",
    "runtime.gcController",
    "runtime.firstmoduledata",
];

/// A struct type: byte size and member offsets.
#[derive(Clone, Debug, Default)]
pub struct StructInfo {
    /// `DW_AT_byte_size`.
    pub size: Option<u64>,
    /// Member name → offset.
    pub members: HashMap<String, u64>,
}

/// Facts read from DWARF.
#[derive(Clone, Debug, Default)]
pub struct DwarfInfo {
    /// Struct name → layout.
    pub structs: HashMap<String, StructInfo>,
    /// Members of `runtime.work`'s type (anonymous in 1.18).
    pub work: Option<StructInfo>,
    /// Global name → address, for [`VARS`].
    pub vars: HashMap<String, u64>,
    /// Map-typed globals: (name, address, type name).
    pub map_globals: Vec<(String, u64, String)>,
    /// Globals of type `sync.Map` (false) or `*sync.Map` (true): (name,
    /// address, through a pointer).
    pub sync_globals: Vec<(String, u64, bool)>,
    /// `DW_AT_go_runtime_type` value (section offset) → type name.
    pub runtime_types: HashMap<u64, String>,
    /// Number of compile units seen.
    pub units: usize,
}

type R<'a> = EndianSlice<'a, LittleEndian>;

/// Reads DWARF from an ELF file; `None` without `.debug_info` or on any error.
#[must_use]
pub fn read(data: &[u8]) -> Option<DwarfInfo> {
    let file = object::File::parse(data).ok()?;
    file.section_by_name(".debug_info")?;
    let load = |id: gimli::SectionId| -> Result<Cow<'_, [u8]>, gimli::Error> {
        Ok(file
            .section_by_name(id.name())
            .and_then(|s| s.uncompressed_data().ok())
            .unwrap_or(Cow::Borrowed(&[])))
    };
    let sections = gimli::DwarfSections::load(load).ok()?;
    let dwarf = sections.borrow(|s| EndianSlice::new(s, LittleEndian));
    collect(&dwarf).ok()
}

fn name_of(
    dwarf: &gimli::Dwarf<R<'_>>,
    unit: &gimli::Unit<R<'_>>,
    e: &gimli::DebuggingInformationEntry<R<'_>>,
) -> Option<String> {
    let v = e.attr_value(gimli::DW_AT_name)?;
    let s = dwarf.attr_string(unit, v).ok()?;
    Some(s.to_string_lossy().into_owned())
}

fn udata(v: &AttributeValue<R<'_>>) -> Option<u64> {
    match *v {
        AttributeValue::Udata(x) => Some(x),
        AttributeValue::Data1(x) => Some(u64::from(x)),
        AttributeValue::Data2(x) => Some(u64::from(x)),
        AttributeValue::Data4(x) => Some(u64::from(x)),
        AttributeValue::Data8(x) => Some(x),
        AttributeValue::Sdata(x) => u64::try_from(x).ok(),
        AttributeValue::Addr(x) => Some(x),
        AttributeValue::SecOffset(x) => Some(x as u64),
        _ => None,
    }
}

/// Global `.debug_info` offset of a type reference.
fn type_ref(unit: &gimli::Unit<R<'_>>, v: AttributeValue<R<'_>>) -> Option<usize> {
    match v {
        AttributeValue::UnitRef(o) => o.to_debug_info_offset(&unit.header).map(|d| d.0),
        AttributeValue::DebugInfoRef(d) => Some(d.0),
        _ => None,
    }
}

/// `DW_OP_addr <u64>` location.
fn static_addr(e: &gimli::DebuggingInformationEntry<R<'_>>) -> Option<u64> {
    let AttributeValue::Exprloc(expr) = e.attr_value(gimli::DW_AT_location)? else {
        return None;
    };
    let b = expr.0.slice();
    if b.len() == 9 && b[0] == gimli::DW_OP_addr.0 {
        let mut a = [0u8; 8];
        a.copy_from_slice(&b[1..9]);
        return Some(u64::from_le_bytes(a));
    }
    None
}

fn collect(dwarf: &gimli::Dwarf<R<'_>>) -> gimli::Result<DwarfInfo> {
    let mut out = DwarfInfo::default();
    let mut units = Vec::new();
    let mut headers = dwarf.units();
    while let Some(h) = headers.next()? {
        units.push(dwarf.unit(h)?);
    }
    out.units = units.len();
    // Variables whose type we must resolve after the walk: (name, addr, type offset).
    let mut typed_vars: Vec<(String, u64, usize)> = Vec::new();
    // Map-ish type DIEs: global offset → name.
    let mut map_types: HashMap<usize, String> = HashMap::new();
    // `sync.Map` and `*sync.Map` type DIEs: global offset → is a pointer.
    let mut sync_types: HashMap<usize, bool> = HashMap::new();
    let mut work_type: Option<usize> = None;
    for unit in &units {
        let mut cursor = unit.entries();
        let mut current: Option<(String, isize, StructInfo)> = None;
        while let Some(e) = cursor.next_dfs()? {
            let depth = e.depth();
            if let Some((_, d, _)) = &current
                && depth <= *d
                && let Some((n, _, s)) = current.take()
            {
                out.structs.insert(n, s);
            }
            let tag = e.tag();
            if let Some((_, d, s)) = &mut current {
                if depth == *d + 1
                    && tag == gimli::DW_TAG_member
                    && let (Some(n), Some(off)) = (
                        name_of(dwarf, unit, e),
                        e.attr_value(gimli::DW_AT_data_member_location)
                            .as_ref()
                            .and_then(udata),
                    )
                {
                    s.members.insert(n, off);
                }
                continue;
            }
            let rt = e.attr_value(gimli::DwAt(DW_AT_GO_RUNTIME_TYPE));
            let is_var = tag == gimli::DW_TAG_variable;
            let is_struct = tag == gimli::DW_TAG_structure_type;
            let go_kind = e
                .attr_value(gimli::DwAt(DW_AT_GO_KIND))
                .as_ref()
                .and_then(udata);
            // Go names a struct type by a typedef (`sync.Map` → its struct).
            let is_typedef = tag == gimli::DW_TAG_typedef;
            if rt.is_none() && !is_var && !is_struct && !is_typedef && go_kind != Some(KIND_MAP) {
                continue;
            }
            let Some(name) = name_of(dwarf, unit, e) else {
                continue;
            };
            if let Some(off) = rt.as_ref().and_then(udata) {
                out.runtime_types.entry(off).or_insert_with(|| name.clone());
            }
            if (go_kind == Some(KIND_MAP) || name.starts_with("map["))
                && let Some(g) = e.offset().to_debug_info_offset(&unit.header)
            {
                map_types.insert(g.0, name.clone());
            }
            if (name == "sync.Map" || name == "*sync.Map")
                && let Some(g) = e.offset().to_debug_info_offset(&unit.header)
            {
                sync_types.insert(g.0, name.starts_with('*'));
            }
            if is_struct && STRUCTS.contains(&name.as_str()) {
                let size = e
                    .attr_value(gimli::DW_AT_byte_size)
                    .as_ref()
                    .and_then(udata);
                current = Some((
                    name,
                    depth,
                    StructInfo {
                        size,
                        members: HashMap::new(),
                    },
                ));
                continue;
            }
            if is_var {
                let Some(addr) = static_addr(e) else { continue };
                let ty = e
                    .attr_value(gimli::DW_AT_type)
                    .and_then(|v| type_ref(unit, v));
                if name == "runtime.work" {
                    work_type = ty;
                }
                if VARS.contains(&name.as_str()) {
                    out.vars.insert(name.clone(), addr);
                }
                if let Some(t) = ty {
                    typed_vars.push((name, addr, t));
                }
            }
        }
        if let Some((n, _, s)) = current.take() {
            out.structs.insert(n, s);
        }
    }
    for (name, addr, t) in typed_vars {
        if let Some(ty) = map_types.get(&t) {
            out.map_globals.push((name, addr, ty.clone()));
        } else if let Some(&pointer) = sync_types.get(&t) {
            out.sync_globals.push((name, addr, pointer));
        }
    }
    out.map_globals.sort_by(|a, b| a.0.cmp(&b.0));
    out.sync_globals.sort_by(|a, b| a.0.cmp(&b.0));
    if let Some(t) = work_type {
        out.work = struct_at(dwarf, &units, t);
    }
    Ok(out)
}

/// Members of the struct DIE at global offset `off` (following typedefs).
fn struct_at(
    dwarf: &gimli::Dwarf<R<'_>>,
    units: &[gimli::Unit<R<'_>>],
    off: usize,
) -> Option<StructInfo> {
    let mut off = off;
    for _ in 0..4 {
        let unit = units.iter().find(|u| {
            gimli::DebugInfoOffset(off)
                .to_unit_offset(&u.header)
                .is_some()
        })?;
        let uoff = gimli::DebugInfoOffset(off).to_unit_offset(&unit.header)?;
        let mut cursor = unit.entries_at_offset(uoff).ok()?;
        let e = cursor.next_dfs().ok()??;
        let depth = e.depth();
        if e.tag() == gimli::DW_TAG_typedef {
            off = type_ref(unit, e.attr_value(gimli::DW_AT_type)?)?;
            continue;
        }
        if e.tag() != gimli::DW_TAG_structure_type {
            return None;
        }
        let mut s = StructInfo {
            size: e
                .attr_value(gimli::DW_AT_byte_size)
                .as_ref()
                .and_then(udata),
            members: HashMap::new(),
        };
        while let Ok(Some(c)) = cursor.next_dfs() {
            if c.depth() <= depth {
                break;
            }
            if c.depth() == depth + 1
                && c.tag() == gimli::DW_TAG_member
                && let (Some(n), Some(o)) = (
                    name_of(dwarf, unit, c),
                    c.attr_value(gimli::DW_AT_data_member_location)
                        .as_ref()
                        .and_then(udata),
                )
            {
                s.members.insert(n, o);
            }
        }
        return Some(s);
    }
    None
}

impl DwarfInfo {
    fn member(&self, st: &str, m: &str) -> Option<u32> {
        self.structs
            .get(st)?
            .members
            .get(m)
            .and_then(|&v| u32::try_from(v).ok())
    }

    fn size(&self, st: &str) -> Option<u32> {
        self.structs
            .get(st)?
            .size
            .and_then(|v| u32::try_from(v).ok())
    }

    /// The layout DWARF describes; fields DWARF lacks stay `None`. Only the
    /// fields of `map_impl` are filled.
    #[must_use]
    pub fn layout(&self, map_impl: MapImpl) -> RuntimeLayout {
        let mut l = RuntimeLayout::default();
        match map_impl {
            MapImpl::Hmap => {
                let h = "runtime.hmap";
                l.hmap_count = self.member(h, "count");
                l.hmap_flags = self.member(h, "flags");
                l.hmap_b = self.member(h, "B");
                l.hmap_noverflow = self.member(h, "noverflow");
                l.hmap_hash0 = self.member(h, "hash0");
                l.hmap_buckets = self.member(h, "buckets");
                l.hmap_oldbuckets = self.member(h, "oldbuckets");
                l.hmap_nevacuate = self.member(h, "nevacuate");
                l.hmap_extra = self.member(h, "extra");
                l.hmap_size = self.size(h);
                if self.structs.contains_key("runtime.maptype") {
                    let t = "runtime.maptype";
                    l.maptype_key = self.member(t, "key");
                    l.maptype_elem = self.member(t, "elem");
                    l.maptype_bucket = self.member(t, "bucket");
                    l.maptype_keysize = self.member(t, "keysize");
                    l.maptype_valuesize =
                        self.member(t, "elemsize").or(self.member(t, "valuesize"));
                    l.maptype_bucketsize = self.member(t, "bucketsize");
                    l.maptype_flags = self.member(t, "flags");
                } else {
                    let t = if self.member("internal/abi.OldMapType", "Bucket").is_some() {
                        "internal/abi.OldMapType"
                    } else {
                        "internal/abi.MapType"
                    };
                    if self.member(t, "Bucket").is_some() {
                        l.maptype_key = self.member(t, "Key");
                        l.maptype_elem = self.member(t, "Elem");
                        l.maptype_bucket = self.member(t, "Bucket");
                        l.maptype_keysize = self.member(t, "KeySize");
                        l.maptype_valuesize = self.member(t, "ValueSize");
                        l.maptype_bucketsize = self.member(t, "BucketSize");
                        l.maptype_flags = self.member(t, "Flags");
                    }
                }
            }
            MapImpl::Swiss => {
                let m = "internal/runtime/maps.Map";
                l.swiss_used = self.member(m, "used");
                l.swiss_seed = self.member(m, "seed");
                l.swiss_dir_ptr = self.member(m, "dirPtr");
                l.swiss_dir_len = self.member(m, "dirLen");
                l.swiss_global_depth = self.member(m, "globalDepth");
                l.swiss_map_size = self.size(m);
                let t = "internal/runtime/maps.table";
                l.table_used = self.member(t, "used");
                l.table_capacity = self.member(t, "capacity");
                l.table_growth_left = self.member(t, "growthLeft");
                l.table_local_depth = self.member(t, "localDepth");
                let g = self.member(t, "groups");
                let gr = "internal/runtime/maps.groupsReference";
                l.table_groups_data = g
                    .zip(self.member(gr, "data"))
                    .and_then(|(a, b)| a.checked_add(b));
                l.table_groups_length_mask = g
                    .zip(self.member(gr, "lengthMask"))
                    .and_then(|(a, b)| a.checked_add(b));
                let st = if self.member("internal/abi.SwissMapType", "Group").is_some() {
                    "internal/abi.SwissMapType"
                } else {
                    "internal/abi.MapType"
                };
                if self.member(st, "Group").is_some() {
                    l.swisstype_key = self.member(st, "Key");
                    l.swisstype_elem = self.member(st, "Elem");
                    l.swisstype_group = self.member(st, "Group");
                    l.swisstype_group_size = self.member(st, "GroupSize");
                    l.swisstype_slot_size = self.member(st, "SlotSize");
                    l.swisstype_elem_off = self.member(st, "ElemOff");
                    l.swisstype_keys_off = self.member(st, "KeysOff");
                    l.swisstype_key_stride = self.member(st, "KeyStride");
                    l.swisstype_elems_off = self.member(st, "ElemsOff");
                    l.swisstype_elem_stride = self.member(st, "ElemStride");
                    l.swisstype_flags = self.member(st, "Flags");
                }
            }
        }
        if self.structs.contains_key("internal/abi.Type") {
            let t = "internal/abi.Type";
            l.type_size = self.member(t, "Size_");
            l.type_tflag = self.member(t, "TFlag");
            l.type_kind = self.member(t, "Kind_");
            l.type_str = self.member(t, "Str");
        } else if self.structs.contains_key("runtime._type") {
            let t = "runtime._type";
            l.type_size = self.member(t, "size");
            l.type_tflag = self.member(t, "tflag");
            l.type_kind = self.member(t, "kind");
            l.type_str = self.member(t, "str");
        }
        l.work_cycles = self
            .work
            .as_ref()
            .and_then(|w| w.members.get("cycles"))
            .and_then(|&v| u32::try_from(v).ok());
        l.memstats_numgc = self.member("runtime.mstats", "numgc");
        l.gc_heap_live = self.member("runtime.gcControllerState", "heapLive");
        l.gc_heap_marked = self.member("runtime.gcControllerState", "heapMarked");
        l.g_goid = self.member("runtime.g", "goid");
        let sum = |a: Option<u32>, b: Option<u32>| a.zip(b).and_then(|(a, b)| a.checked_add(b));
        let stack = self.member("runtime.g", "stack");
        l.g_stack_lo = sum(stack, self.member("runtime.stack", "lo"));
        l.g_stack_hi = sum(stack, self.member("runtime.stack", "hi"));
        l.g_sched_sp = sum(
            self.member("runtime.g", "sched"),
            self.member("runtime.gobuf", "sp"),
        );
        l.g_atomicstatus = self.member("runtime.g", "atomicstatus");
        l.g_startpc = self.member("runtime.g", "startpc");
        l.moduledata_types = self.member("runtime.moduledata", "types");
        l.moduledata_etypes = self.member("runtime.moduledata", "etypes");
        l
    }
}
