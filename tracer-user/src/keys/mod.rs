//! `keys`: which keys a live map holds, and which of them stay across GC
//! cycles. User space only: reads the target with `process_vm_readv`
//! ([`Memory`]); never writes to, stops or signals it.
//!
//! Three parts:
//! * [`key_layout`] resolves, once per map type, where keys sit in buckets or
//!   groups and what the key type is ([`KeyType`]), from the type descriptors
//!   in the target's memory (so PIE relocations are applied) and names from
//!   [`BinaryInfo::type_name`] (works stripped).
//! * [`snapshot()`] reads every key of one map: [`Snapshot`] of [`Key`]s,
//!   each with a 64-bit identity hash of its content.
//! * [`render()`] turns a key into text (strings redacted by default), and
//!   [`KeyTracker`] follows key identities across GC cycles.
//!
//! Use at a GC cycle (the caller keeps one [`KeyLayout`] per map type
//! pointer and one [`KeyTracker`] per map):
//!
//! ```no_run
//! # use mapleak::{inspect::BinaryInfo, keys, sample::Memory};
//! # fn f(mem: &Memory, info: &BinaryInfo, bias: u64, type_ptr: u64, addr: u64, cycle: u64) {
//! let kl = keys::key_layout(mem, info, bias, type_ptr).expect("a map type");
//! let mut tracker = keys::KeyTracker::new(kl.key_type.clone(), false);
//! if let Some(snap) = keys::snapshot(mem, &info.layout, &kl, addr, 1_000_000) {
//!     tracker.update(cycle, &snap);
//! }
//! let stats = tracker.stats();
//! # }
//! ```
//!
//! Identity limits: strings are hashed on their first [`STR_READ`] bytes
//! plus their length; past [`MAX_STR_LEAVES`] string leaves per key only the
//! lengths; interface keys by their two words (an assignment that re-boxes
//! an existing interface key gives it a new identity); keys over
//! [`MAX_KEY_BYTES`] on their first bytes; NaN keys all hash alike.
//!
//! Offsets: type header (`abi.Type`) `Size_` @0, `Kind_` @23, `Str` @40;
//! `PtrType.Elem` @48; `ArrayType` `Elem` @48, `Len` @64; `StructType`
//! `Fields` slice @56 (ptr) / @64 (len), each `StructField` 24 bytes: `Name`
//! (*byte) @0, `Typ` @8, `Offset` @16. Checked against the DWARF of the
//! keyzoo fixtures for Go 1.19 (`runtime.structtype`, `runtime.structfield`,
//! `runtime.arraytype`, `runtime.ptrtype`) and 1.27 (`internal/abi.*`).

mod dynamic;
pub use dynamic::{InterfaceValues, LiveInterfaces};
mod identity;
pub(crate) use identity::IdHasher;
use identity::{Plan, Seg};
mod render;
mod retention;
mod snapshot;
pub(crate) mod values;

pub use render::{PREFIX_CHARS, SHOW_CHARS, escape_bytes, render, render_with};
pub use retention::{
    KeyBudget, KeyTracker, MAX_TOTAL_KEYS, MAX_TRACKED_KEYS, RetainedKeys, TRACKER_COST,
};
pub use snapshot::{
    ATTEMPTS, CHUNK, Key, MAX_KEY_BYTES, MAX_SNAPSHOT_BYTES, MAX_STR_LEAVES, RAW_CAP, RawKey,
    STR_READ, Snapshot, StrVal, snapshot,
};

use crate::{
    inspect::{BinaryInfo, MapImpl, RuntimeLayout, buildinfo::uvarint},
    model::Model,
    sample::Memory,
};

/// Whether a map not followed yet may start being followed: a suspect
/// while the process-wide key budget has room for a tracker
/// ([`TRACKER_COST`]), any other map while less than half of it is spent
/// (the rest is kept for suspects).
#[must_use]
pub fn room_for_tracker(suspect: bool) -> bool {
    let b = KeyBudget::global();
    if suspect {
        b.used() + TRACKER_COST <= b.limit()
    } else {
        b.room_for_others()
    }
}

/// Suspects whose keys may be read per cycle, at most (the time a cycle
/// gives key reads gets through far fewer): bounds the list, not the work.
pub const MAX_SUSPECT_SNAPSHOTS: usize = 4096;

/// A candidate for a key snapshot: (rank: 0 growing, 1 bloated, 2 other;
/// length; address; type).
pub type SnapshotCandidate = (u8, u64, u64, u64);

/// The maps whose keys to read at `cycle` (sampled then, type known), in
/// order: suspects, growing before bloated, and the longest without a
/// snapshot (`last_snap`) first, at most [`MAX_SUSPECT_SNAPSHOTS`]; then at
/// most `max_others` others of 1 to `max_len` entries, in the same order,
/// those not `followed` yet only while [`room_for_tracker`] allows. Among
/// equals the longest map first. The choice is made in one pass with
/// bounded heaps: no list of every map (32 MB with 1,000,000 maps).
pub fn snapshot_candidates(
    model: &Model,
    cycle: u64,
    last_snap: impl Fn(u64) -> u64,
    followed: impl Fn(u64) -> bool,
    max_others: usize,
    max_len: u64,
) -> Vec<SnapshotCandidate> {
    use std::{cmp::Reverse, collections::BinaryHeap};
    type Item = (u8, u64, Reverse<u64>, u64, u64);
    let push = |heap: &mut BinaryHeap<Item>, cap: usize, item: Item| {
        heap.push(item);
        if heap.len() > cap {
            heap.pop();
        }
    };
    let mut suspects: BinaryHeap<Item> = BinaryHeap::new();
    let mut others: BinaryHeap<Item> = BinaryHeap::new();
    let room = room_for_tracker(false);
    for m in model.maps.values() {
        let Some(last) = m.last() else {
            continue;
        };
        if m.type_ptr == 0 || last.cycle != cycle || m.is_sync_generation() {
            continue;
        }
        let rank = match m.verdict() {
            crate::model::Verdict::Growing => 0,
            crate::model::Verdict::Bloated => 1,
            _ => 2,
        };
        let item = (
            rank,
            last_snap(m.addr),
            Reverse(last.len),
            m.addr,
            m.type_ptr,
        );
        if rank < 2 {
            push(&mut suspects, MAX_SUSPECT_SNAPSHOTS, item);
        } else if last.len > 0 && last.len <= max_len && (room || followed(m.addr)) {
            push(&mut others, max_others, item);
        }
    }
    suspects
        .into_sorted_vec()
        .into_iter()
        .chain(others.into_sorted_vec())
        .map(|(rank, _, Reverse(len), addr, tp)| (rank, len, addr, tp))
        .collect()
}

/// Keeps the trackers of maps still tracked, and only while they follow the
/// map now at their address (not one that lived there before). When more
/// than three quarters of the process-wide key budget is spent, the
/// trackers of maps that are neither growing nor bloated go too: suspects
/// come first, and others start again only below half
/// ([`room_for_others`]).
pub fn retain_trackers(trackers: &mut std::collections::HashMap<u64, KeyTracker>, model: &Model) {
    trackers.retain(|addr, t| {
        model
            .maps
            .get(addr)
            .is_some_and(|m| t.follows(m.seed(), m.last().map_or(0, |l| l.len)))
    });
    let b = KeyBudget::global();
    if b.used() > b.limit() / 4 * 3 {
        trackers.retain(|addr, _| {
            model
                .maps
                .get(addr)
                .is_some_and(|m| m.verdict().is_suspect())
        });
    }
}

/// `abi.Kind` values (`Kind_ & 0x1f`), the same in Go 1.18 to 1.27.
pub mod kind {
    /// `bool`.
    pub const BOOL: u8 = 1;
    /// `int`.
    pub const INT: u8 = 2;
    /// `int64`.
    pub const INT64: u8 = 6;
    /// `uint`.
    pub const UINT: u8 = 7;
    /// `uint64`.
    pub const UINT64: u8 = 11;
    /// `uintptr`.
    pub const UINTPTR: u8 = 12;
    /// `float32`.
    pub const FLOAT32: u8 = 13;
    /// `float64`.
    pub const FLOAT64: u8 = 14;
    /// `complex64`.
    pub const COMPLEX64: u8 = 15;
    /// `complex128`.
    pub const COMPLEX128: u8 = 16;
    /// Arrays.
    pub const ARRAY: u8 = 17;
    /// Channels.
    pub const CHAN: u8 = 18;
    /// Interfaces.
    pub const INTERFACE: u8 = 20;
    /// Maps.
    pub const MAP: u8 = 21;
    /// Pointers.
    pub const POINTER: u8 = 22;
    /// `string`.
    pub const STRING: u8 = 24;
    /// Structs.
    pub const STRUCT: u8 = 25;
    /// `unsafe.Pointer`.
    pub const UNSAFE_POINTER: u8 = 26;
    /// `abi.KindMask`.
    pub const MASK: u8 = 0x1f;
}

/// Deepest nesting of structs and arrays resolved in a key type.
pub const MAX_TYPE_DEPTH: u32 = 4;
/// Most struct fields resolved per struct.
pub const MAX_FIELDS: u64 = 64;
/// Most types resolved for one key type (fields of fields included).
const MAX_TYPES: u32 = 256;

/// A Go key type, resolved from its descriptor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyType {
    /// Go name, e.g. `string`, `*main.T`, `struct { A int32; S string }`.
    pub name: String,
    /// `Size_`.
    pub size: u64,
    /// What it is.
    pub kind: KeyKind,
}

/// The shape of a [`KeyType`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyKind {
    /// `bool`.
    Bool,
    /// `int`, `int8` .. `int64` (width from the size).
    Int,
    /// `uint`, `uint8` .. `uint64`.
    Uint,
    /// `uintptr`.
    Uintptr,
    /// `float32`, `float64`.
    Float,
    /// `complex64`, `complex128`.
    Complex,
    /// `string` (a data pointer and a length).
    String,
    /// `*T`.
    Pointer,
    /// `unsafe.Pointer`.
    UnsafePointer,
    /// `chan T` (a pointer).
    Chan,
    /// An interface (two words: type or itab, and data).
    Interface,
    /// A struct, fields in declaration (= offset) order.
    Struct(Vec<KeyField>),
    /// `[len]elem`.
    Array {
        /// Element type.
        elem: Box<KeyType>,
        /// Number of elements.
        len: u64,
    },
    /// Anything not resolved (too deep, unreadable): shown as hex, hashed as bytes.
    Other(u8),
}

/// One struct field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyField {
    /// Field name.
    pub name: String,
    /// Byte offset in the struct.
    pub offset: u64,
    /// Field type.
    pub ty: KeyType,
}

impl KeyType {
    /// Number of string leaves (strings, also inside structs and arrays).
    #[must_use]
    pub fn string_leaves(&self) -> u64 {
        match &self.kind {
            KeyKind::String => 1,
            KeyKind::Struct(fs) => fs.iter().map(|f| f.ty.string_leaves()).sum(),
            KeyKind::Array { elem, len } => elem.string_leaves().saturating_mul(*len),
            _ => 0,
        }
    }
}

/// Where the keys of one map type are, resolved once per type descriptor.
#[derive(Clone, Debug)]
pub struct KeyLayout {
    /// Map implementation.
    pub imp: MapImpl,
    /// Map type name, e.g. `map[string]int`.
    pub map_type: String,
    /// The key type.
    pub key_type: KeyType,
    /// `Key.Size_`.
    pub key_size: u64,
    /// Keys over 128 bytes are stored as pointers to the key.
    pub indirect_key: bool,
    /// Bytes of a key in a slot: 8 when indirect, else `key_size`.
    pub slot_key_size: u64,
    /// hmap: bucket size (`tophash[8]`, `keys[8]`, `elems[8]`, overflow pointer).
    pub bucket_size: u64,
    /// Swiss: group size (ctrl word then slots).
    pub group_size: u64,
    /// Swiss: offset of slot 0's key in a group (8 up to 1.26; `KeysOff` on 1.27+).
    pub keys_off: u64,
    /// Swiss: distance between keys (`SlotSize` up to 1.26; `KeyStride` on 1.27+).
    pub key_stride: u64,
    plan: Plan,
}

/// Reading the target. [`Memory`] in production; a fake address space in tests.
pub(crate) trait Reader {
    fn read(&self, addr: u64, buf: &mut [u8]) -> bool;
    fn read_some(&self, addr: u64, buf: &mut [u8]) -> usize;
    fn read_many(&self, regions: &[(u64, usize)]) -> Vec<Option<Vec<u8>>>;
}

impl Reader for Memory {
    fn read(&self, addr: u64, buf: &mut [u8]) -> bool {
        Self::read(self, addr, buf)
    }
    fn read_some(&self, addr: u64, buf: &mut [u8]) -> usize {
        Self::read_some(self, addr, buf)
    }
    fn read_many(&self, regions: &[(u64, usize)]) -> Vec<Option<Vec<u8>>> {
        Self::read_many(self, regions)
    }
}

pub(crate) fn le64(b: &[u8], off: u64) -> Option<u64> {
    let o = usize::try_from(off).ok()?;
    Some(u64::from_le_bytes(
        b.get(o..o.checked_add(8)?)?.try_into().ok()?,
    ))
}
pub(crate) fn le32(b: &[u8], off: u64) -> Option<u32> {
    let o = usize::try_from(off).ok()?;
    Some(u32::from_le_bytes(
        b.get(o..o.checked_add(4)?)?.try_into().ok()?,
    ))
}
pub(crate) fn le16(b: &[u8], off: u64) -> Option<u16> {
    let o = usize::try_from(off).ok()?;
    Some(u16::from_le_bytes(
        b.get(o..o.checked_add(2)?)?.try_into().ok()?,
    ))
}

/// Resolves the key layout of the map type whose descriptor is at run-time
/// address `map_type` (what `makemap`/`mapassign` get as arg0). `bias` is the
/// load bias (run-time minus link-time address; 0 unless PIE). `None` when
/// the descriptor is unreadable, not a map type, or makes no sense.
#[must_use]
pub fn key_layout(mem: &Memory, bin: &BinaryInfo, bias: u64, map_type: u64) -> Option<KeyLayout> {
    let names = |rt: u64| type_name_at(mem, bin, bias, rt);
    key_layout_in(
        mem,
        &bin.layout,
        bin.map_impl,
        bin.go_version.minor,
        &names,
        map_type,
    )
}

/// [`key_layout`] over any [`Reader`], with names from `names(run-time address)`.
pub(crate) fn key_layout_in<R: Reader>(
    r: &R,
    l: &RuntimeLayout,
    imp: MapImpl,
    minor: u32,
    names: &dyn Fn(u64) -> Option<String>,
    map_type: u64,
) -> Option<KeyLayout> {
    let mut d = [0u8; 136];
    let n = r.read_some(map_type, &mut d);
    let d = &d[..n];
    let k = u64::from(l.type_kind.unwrap_or(23));
    if d.get(usize::try_from(k).ok()?)? & kind::MASK != kind::MAP {
        return None;
    }
    let field = |o: Option<u32>| o.map(u64::from);
    let key_ptr = le64(
        d,
        field(match imp {
            MapImpl::Hmap => l.maptype_key,
            MapImpl::Swiss => l.swisstype_key,
        })?,
    )?;
    let mut budget = MAX_TYPES;
    let key_type = resolve_type(r, l, minor, names, key_ptr, 0, &mut budget)?;
    let map_name = names(map_type).unwrap_or_else(|| format!("map[{}]?", key_type.name));
    match imp {
        MapImpl::Hmap => {
            let keysize = u64::from(*d.get(usize::try_from(field(l.maptype_keysize)?).ok()?)?);
            let bucket_size = u64::from(le16(d, field(l.maptype_bucketsize)?)?);
            let flags = le32(d, field(l.maptype_flags)?)?;
            // go1.18:src/runtime/type.go `indirectkey` = flags & 1.
            let indirect = flags & 1 != 0;
            KeyLayout::hmap(map_name, key_type, indirect, keysize, bucket_size)
        }
        MapImpl::Swiss => {
            let group_size = le64(d, field(l.swisstype_group_size)?)?;
            let (keys_off, key_stride) = match (l.swisstype_keys_off, l.swisstype_slot_size) {
                // 1.27+: KeysOff / KeyStride describe both group layouts.
                (Some(ko), _) => (
                    le64(d, u64::from(ko))?,
                    le64(d, field(l.swisstype_key_stride)?)?,
                ),
                // 1.24 to 1.26: slots from +8, key first in each slot.
                (None, Some(ss)) => (8, le64(d, u64::from(ss))?),
                (None, None) => return None,
            };
            let flags = le32(d, field(l.swisstype_flags)?)?;
            // 1.24:src/internal/abi/map_swiss.go `SwissMapFlagIndirectKey` = 4.
            let indirect = flags & 4 != 0;
            KeyLayout::swiss(
                map_name, key_type, indirect, group_size, keys_off, key_stride,
            )
        }
    }
}

impl KeyLayout {
    /// An hmap layout; checks that keys fit in the bucket.
    pub(crate) fn hmap(
        map_type: String,
        key_type: KeyType,
        indirect: bool,
        slot_key_size: u64,
        bucket_size: u64,
    ) -> Option<Self> {
        let want = if indirect { 8 } else { key_type.size };
        if slot_key_size != want || bucket_size < 16 + 8 * slot_key_size || bucket_size > 1 << 16 {
            return None;
        }
        let plan = Plan::new(&key_type);
        Some(Self {
            imp: MapImpl::Hmap,
            map_type,
            key_size: key_type.size,
            key_type,
            indirect_key: indirect,
            slot_key_size,
            bucket_size,
            group_size: 0,
            keys_off: 0,
            key_stride: 0,
            plan,
        })
    }

    /// A Swiss layout; checks that the 8 keys fit in the group.
    pub(crate) fn swiss(
        map_type: String,
        key_type: KeyType,
        indirect: bool,
        group_size: u64,
        keys_off: u64,
        key_stride: u64,
    ) -> Option<Self> {
        let slot_key_size = if indirect { 8 } else { key_type.size };
        if keys_off < 8
            || key_stride < slot_key_size
            || group_size > 1 << 16
            // Each under 64 KiB before the sum: a descriptor read from the
            // target cannot make it overflow.
            || keys_off > group_size
            || key_stride > group_size
            || keys_off + 7 * key_stride + slot_key_size > group_size
        {
            return None;
        }
        let plan = Plan::new(&key_type);
        Some(Self {
            imp: MapImpl::Swiss,
            map_type,
            key_size: key_type.size,
            key_type,
            indirect_key: indirect,
            slot_key_size,
            bucket_size: 0,
            group_size,
            keys_off,
            key_stride,
            plan,
        })
    }
}

/// Reads a `abi.Name` at `addr`: flags byte, uvarint length, bytes.
fn read_name<R: Reader>(r: &R, addr: u64) -> Option<String> {
    if addr == 0 {
        return None;
    }
    let mut b = [0u8; 64];
    let got = r.read_some(addr, &mut b);
    let (len, n) = uvarint(b.get(1..got)?)?;
    if len > 4096 {
        return None;
    }
    let start = 1 + n;
    let end = start + usize::try_from(len).ok()?;
    if end <= got {
        return Some(String::from_utf8_lossy(&b[start..end]).into_owned());
    }
    let mut v = vec![0u8; end - start];
    r.read(addr + start as u64, &mut v)
        .then(|| String::from_utf8_lossy(&v).into_owned())
}

/// The name of the type descriptor at run-time `rt`: from the file, else
/// decoded from the target's memory.
fn type_name_at<R: Reader>(r: &R, bin: &BinaryInfo, bias: u64, rt: u64) -> Option<String> {
    bin.type_name(rt.wrapping_sub(bias)).or_else(|| {
        let md = bin.moduledata.as_ref()?;
        let types_rt = (md.types.wrapping_add(bias), md.etypes.wrapping_add(bias));
        name_from_memory(r, &bin.layout, types_rt, rt)
    })
}

/// A type's name decoded from the target's memory (`types + Str`), for
/// descriptors the file cannot name.
fn name_from_memory<R: Reader>(
    r: &R,
    l: &RuntimeLayout,
    (types, etypes): (u64, u64),
    addr: u64,
) -> Option<String> {
    if addr < types || addr >= etypes {
        return None;
    }
    let mut h = [0u8; 48];
    if !r.read(addr, &mut h) {
        return None;
    }
    let tflag = *h.get(usize::try_from(l.type_tflag.unwrap_or(20)).ok()?)?;
    let off = le32(&h, u64::from(l.type_str.unwrap_or(40)))?.cast_signed();
    let name = read_name(r, types.checked_add_signed(i64::from(off))?)?;
    Some(if tflag & 2 != 0 {
        name.strip_prefix('*').map(str::to_owned).unwrap_or(name)
    } else {
        name
    })
}

/// Resolves the type descriptor at run-time `addr` into a [`KeyType`].
fn resolve_type<R: Reader>(
    r: &R,
    l: &RuntimeLayout,
    minor: u32,
    names: &dyn Fn(u64) -> Option<String>,
    addr: u64,
    depth: u32,
    budget: &mut u32,
) -> Option<KeyType> {
    *budget = budget.checked_sub(1)?;
    let mut d = [0u8; 72];
    if !r.read(addr, &mut d) {
        return None;
    }
    let size = le64(&d, u64::from(l.type_size.unwrap_or(0)))?;
    let k = d[usize::try_from(l.type_kind.unwrap_or(23)).ok()?.min(71)] & kind::MASK;
    let name = names(addr).unwrap_or_else(|| format!("<type {addr:#x}>"));
    let scalar = |want: u64, kind: KeyKind| {
        if size == want {
            kind
        } else {
            KeyKind::Other(k)
        }
    };
    let kind = match k {
        kind::BOOL => scalar(1, KeyKind::Bool),
        kind::INT..=kind::INT64 if matches!(size, 1 | 2 | 4 | 8) => KeyKind::Int,
        kind::UINT..=kind::UINT64 if matches!(size, 1 | 2 | 4 | 8) => KeyKind::Uint,
        kind::UINTPTR => scalar(8, KeyKind::Uintptr),
        kind::FLOAT32 => scalar(4, KeyKind::Float),
        kind::FLOAT64 => scalar(8, KeyKind::Float),
        kind::COMPLEX64 => scalar(8, KeyKind::Complex),
        kind::COMPLEX128 => scalar(16, KeyKind::Complex),
        kind::STRING => scalar(16, KeyKind::String),
        kind::POINTER => scalar(8, KeyKind::Pointer),
        kind::UNSAFE_POINTER => scalar(8, KeyKind::UnsafePointer),
        kind::CHAN => scalar(8, KeyKind::Chan),
        kind::INTERFACE => scalar(16, KeyKind::Interface),
        kind::ARRAY if depth < MAX_TYPE_DEPTH => {
            // abi.ArrayType: Elem @48, Slice @56, Len @64.
            let elem_ptr = le64(&d, 48)?;
            let len = le64(&d, 64)?;
            match resolve_type(r, l, minor, names, elem_ptr, depth + 1, budget) {
                Some(elem) if elem.size.checked_mul(len) == Some(size) => KeyKind::Array {
                    elem: Box::new(elem),
                    len,
                },
                _ => KeyKind::Other(k),
            }
        }
        kind::STRUCT if depth < MAX_TYPE_DEPTH => {
            resolve_struct(r, l, minor, names, &d, size, depth, budget)
                .map_or(KeyKind::Other(k), KeyKind::Struct)
        }
        _ => KeyKind::Other(k),
    };
    Some(KeyType { name, size, kind })
}

/// `abi.StructType`: Fields slice @56 (ptr) / @64 (len); `StructField` is
/// {Name *byte @0, Typ @8, Offset @16}, 24 bytes. Go 1.18 stored
/// `offsetAnon` = offset<<1 | embedded (go1.18:src/runtime/type.go
/// `structfield`); 1.19 made it a plain offset (checked: DWARF of the 1.19
/// fixtures names the field `offset`).
#[expect(clippy::too_many_arguments, reason = "recursion context")]
fn resolve_struct<R: Reader>(
    r: &R,
    l: &RuntimeLayout,
    minor: u32,
    names: &dyn Fn(u64) -> Option<String>,
    d: &[u8],
    size: u64,
    depth: u32,
    budget: &mut u32,
) -> Option<Vec<KeyField>> {
    let fields_ptr = le64(d, 56)?;
    let n = le64(d, 64)?;
    if n > MAX_FIELDS || (n > 0 && fields_ptr == 0) {
        return None;
    }
    let mut raw = vec![0u8; usize::try_from(n * 24).ok()?];
    if !r.read(fields_ptr, &mut raw) {
        return None;
    }
    let mut out = Vec::with_capacity(raw.len() / 24);
    let mut end = 0u64;
    for f in raw.chunks_exact(24) {
        let name_ptr = le64(f, 0)?;
        let typ = le64(f, 8)?;
        let mut offset = le64(f, 16)?;
        if minor <= 18 {
            offset >>= 1;
        }
        let ty = resolve_type(r, l, minor, names, typ, depth + 1, budget)?;
        if offset < end || offset.checked_add(ty.size)? > size {
            return None;
        }
        end = offset + ty.size;
        out.push(KeyField {
            name: read_name(r, name_ptr).unwrap_or_else(|| "?".to_owned()),
            offset,
            ty,
        });
    }
    Some(out)
}

#[cfg(test)]
pub(crate) mod testmem {
    //! A fake address space for unit tests.
    use std::{
        cell::{Cell, RefCell},
        collections::BTreeMap,
    };

    use super::Reader;

    /// Hook run after every `read_many`: lets a test change memory mid-walk.
    type Hook = Box<dyn FnMut(&FakeMem)>;

    /// Regions of bytes at addresses; reads outside them fail.
    #[derive(Default)]
    pub(crate) struct FakeMem {
        regions: RefCell<BTreeMap<u64, Vec<u8>>>,
        /// Number of `read_many` calls so far.
        pub(crate) calls: Cell<u64>,
        pub(crate) on_read: RefCell<Option<Hook>>,
    }

    impl FakeMem {
        pub(crate) fn put(&self, addr: u64, bytes: Vec<u8>) {
            self.regions.borrow_mut().insert(addr, bytes);
        }
        pub(crate) fn remove(&self, addr: u64) {
            self.regions.borrow_mut().remove(&addr);
        }
        /// Writes into an existing region.
        pub(crate) fn poke(&self, addr: u64, bytes: &[u8]) {
            let mut r = self.regions.borrow_mut();
            let (&base, buf) = r.range_mut(..=addr).next_back().expect("region");
            let o = usize::try_from(addr - base).unwrap();
            buf[o..o + bytes.len()].copy_from_slice(bytes);
        }
        fn get(&self, addr: u64, len: usize) -> Option<Vec<u8>> {
            let r = self.regions.borrow();
            let (&base, buf) = r.range(..=addr).next_back()?;
            let o = usize::try_from(addr - base).ok()?;
            buf.get(o..o.checked_add(len)?).map(<[u8]>::to_vec)
        }
    }

    impl Reader for FakeMem {
        fn read(&self, addr: u64, buf: &mut [u8]) -> bool {
            match self.get(addr, buf.len()) {
                Some(v) => {
                    buf.copy_from_slice(&v);
                    true
                }
                None => buf.is_empty(),
            }
        }
        fn read_some(&self, addr: u64, buf: &mut [u8]) -> usize {
            let r = self.regions.borrow();
            let Some((&base, v)) = r.range(..=addr).next_back() else {
                return 0;
            };
            let Ok(o) = usize::try_from(addr - base) else {
                return 0;
            };
            if o >= v.len() {
                return 0;
            }
            let n = v.len().saturating_sub(o).min(buf.len());
            buf[..n].copy_from_slice(&v[o..o + n]);
            n
        }
        fn read_many(&self, regions: &[(u64, usize)]) -> Vec<Option<Vec<u8>>> {
            let out = regions.iter().map(|&(a, n)| self.get(a, n)).collect();
            self.calls.set(self.calls.get() + 1);
            if let Some(f) = self.on_read.borrow_mut().as_mut() {
                f(self);
            }
            out
        }
    }
}

#[cfg(test)]
mod tests;
