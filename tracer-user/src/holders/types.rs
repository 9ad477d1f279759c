//! Go runtime type descriptors, read from one copy of the target's types
//! region (`moduledata.types` to `etypes`), to name the steps of a holder
//! path. Stripped binaries keep these descriptors: struct field names, field
//! types and offsets, and pointer element types.
//!
//! Layouts (64-bit, the same from Go 1.19 to 1.27; checked on the go1.23.12
//! and go1.26.8 fixtures by decoding `main.server` and `*main.cache`):
//! - `abi.Type` (48 bytes): `Size_` @0, `TFlag` @20, `Kind_` @23 (low 5
//!   bits), `Str` (nameOff from `types`) @40, `PtrToThis` (typeOff from
//!   `types`, 0 when the binary has no `*T`) @44
//!   (`golang/go@go1.26.0:src/internal/abi/type.go#L20`);
//! - `abi.PtrType`, `abi.SliceType`: `Elem` @48;
//! - `abi.StructType`: `PkgPath` @48, `Fields` slice @56 (ptr, len, cap);
//!   `abi.StructField` (24 bytes): `Name` (a pointer to an `abi.Name`) @0,
//!   `Typ` @8, `Offset` @16 (`#L457` there);
//! - `abi.Name`: a flags byte, a uvarint length, the bytes.
//!
//! Every read is checked against the copy: a descriptor that runs off it, or
//! a field table that does not point back at its struct, is not used.
use std::collections::HashMap;

use crate::inspect::buildinfo::uvarint;

const SIZE_OFF: u64 = 0;
const TFLAG_OFF: u64 = 20;
const KIND_OFF: u64 = 23;
const STR_OFF: u64 = 40;
const PTR_TO_THIS_OFF: u64 = 44;
const ELEM_OFF: u64 = 48;
const FIELDS_OFF: u64 = 56;
const FIELD_SIZE: u64 = 24;

/// `abi.KindMask`.
const KIND_MASK: u8 = 0x1f;
/// `abi.Map`.
pub(crate) const KIND_MAP: u8 = 21;
/// `MapType.Elem`.
const MAP_ELEM_OFF: u64 = 56;
/// `abi.Pointer`.
pub(crate) const KIND_PTR: u8 = 22;
/// `abi.Slice`.
pub(crate) const KIND_SLICE: u8 = 23;
/// `abi.Struct`.
pub(crate) const KIND_STRUCT: u8 = 25;
/// `abi.Array`: `Elem` @48, `Slice` @56, `Len` @64.
pub(crate) const KIND_ARRAY: u8 = 17;
const ARRAY_LEN_OFF: u64 = 64;
/// `abi.Interface`.
pub(crate) const KIND_INTERFACE: u8 = 20;
/// `abi.ITab`: `Inter` @0, `Type` @8. Static itabs (`go:itab.*`) sit in
/// the types region, between the type descriptors (checked on the go1.23.12
/// and go1.26.8 fixtures: `runtime.types` ≤ `go:itab.*errors.errorString,error`
/// < `runtime.etypes`); those the runtime makes for conversions it could not
/// see at compile time are outside it, and not followed.
const ITAB_TYPE_OFF: u64 = 8;
/// `abi.TFlagExtraStar`: the name's first byte is a `*` to drop.
const TFLAG_EXTRA_STAR: u8 = 0x2;

/// Fields of one struct looked at: Go allows more, but a holder struct with
/// thousands of fields is not worth the time.
const MAX_FIELDS: u64 = 1024;
/// Struct fields of one type returned (a map type used in many structs).
pub(crate) const MAX_FIELD_MATCHES: usize = 16;

/// A struct field whose type is the one asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FieldRef {
    /// The struct's descriptor.
    pub(crate) struct_type: u64,
    /// The field's name.
    pub(crate) name: String,
    /// The field's offset in the struct.
    pub(crate) offset: u64,
    /// The struct's size.
    pub(crate) struct_size: u64,
}

/// A copy of the types region with an index of the words in it that point
/// back into it (field types, field tables, pointer elements).
#[derive(Debug)]
pub(crate) struct TypeTable {
    /// Run-time address of `moduledata.types`.
    base: u64,
    bytes: Vec<u8>,
    /// Word value (an address in the region) -> addresses of the words
    /// holding it.
    refs: HashMap<u64, Vec<u64>>,
    /// The descriptor of `interface {}`, looked for at the first need.
    empty_interface: std::sync::OnceLock<Option<u64>>,
}

impl TypeTable {
    /// Indexes `bytes`, the copy of the types region that starts at
    /// run-time address `base`.
    #[must_use]
    pub(crate) fn new(base: u64, bytes: Vec<u8>) -> Self {
        let end = base.saturating_add(bytes.len() as u64);
        let mut refs: HashMap<u64, Vec<u64>> = HashMap::new();
        for (i, w) in bytes.chunks_exact(8).enumerate() {
            let v = u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
            if v >= base && v < end {
                refs.entry(v).or_default().push(base + (i as u64) * 8);
            }
        }
        Self {
            base,
            bytes,
            refs,
            empty_interface: std::sync::OnceLock::new(),
        }
    }

    fn slice(&self, addr: u64, len: u64) -> Option<&[u8]> {
        let o = usize::try_from(addr.checked_sub(self.base)?).ok()?;
        self.bytes
            .get(o..o.checked_add(usize::try_from(len).ok()?)?)
    }

    fn word(&self, addr: u64) -> Option<u64> {
        Some(u64::from_le_bytes(self.slice(addr, 8)?.try_into().ok()?))
    }

    fn u32_at(&self, addr: u64) -> Option<u32> {
        Some(u32::from_le_bytes(self.slice(addr, 4)?.try_into().ok()?))
    }

    fn byte(&self, addr: u64) -> Option<u8> {
        Some(self.slice(addr, 1)?[0])
    }

    /// Kind of the descriptor at `t` (`abi.Kind`).
    #[must_use]
    pub(crate) fn kind(&self, t: u64) -> Option<u8> {
        // A descriptor is at least an `abi.Type`.
        self.slice(t, 48)?;
        Some(self.byte(t.checked_add(KIND_OFF)?)? & KIND_MASK)
    }

    /// `Size_` of the descriptor at `t`.
    #[must_use]
    pub(crate) fn size(&self, t: u64) -> Option<u64> {
        self.word(t.checked_add(SIZE_OFF)?)
    }

    /// The `abi.Name` at `addr`.
    fn name_at(&self, addr: u64) -> Option<String> {
        let head = self.slice(addr, 1)?;
        let _flags = head[0];
        let avail = self
            .bytes
            .len()
            .saturating_sub(usize::try_from(addr - self.base).ok()? + 1)
            .min(10);
        let (len, n) = uvarint(self.slice(addr + 1, avail as u64)?)?;
        if len > 4096 {
            return None;
        }
        let b = self.slice(addr + 1 + n as u64, len)?;
        Some(String::from_utf8_lossy(b).into_owned())
    }

    /// Name of the type at `t`, e.g. `*main.server`.
    #[must_use]
    pub(crate) fn name(&self, t: u64) -> Option<String> {
        self.kind(t)?;
        let tflag = self.byte(t + TFLAG_OFF)?;
        let off = self.u32_at(t + STR_OFF)?.cast_signed();
        let name = self.name_at(self.base.checked_add_signed(i64::from(off))?)?;
        if tflag & TFLAG_EXTRA_STAR != 0 {
            return Some(name.strip_prefix('*').unwrap_or(&name).to_owned());
        }
        Some(name)
    }

    /// Element of the pointer type at `p`.
    #[must_use]
    pub(crate) fn elem(&self, p: u64) -> Option<u64> {
        (self.kind(p)? == KIND_PTR).then_some(())?;
        self.word(p + ELEM_OFF)
    }

    /// A slice type `[]T` of the type at `t`, if the binary has one.
    #[must_use]
    pub(crate) fn slice_of(&self, t: u64) -> Option<u64> {
        self.refs.get(&t)?.iter().find_map(|&w| {
            let s = w.checked_sub(ELEM_OFF)?;
            (self.kind(s)? == KIND_SLICE && self.word(s + ELEM_OFF)? == t).then_some(s)
        })
    }

    /// The pointer type `*T` of the type at `t`: `PtrToThis`, else a
    /// pointer descriptor whose element is `t`.
    #[must_use]
    pub(crate) fn ptr_to(&self, t: u64) -> Option<u64> {
        self.kind(t)?;
        let off = self.u32_at(t + PTR_TO_THIS_OFF)?;
        if off != 0 {
            let p = self.base.checked_add(u64::from(off))?;
            if self.elem(p) == Some(t) {
                return Some(p);
            }
        }
        self.refs.get(&t)?.iter().find_map(|&w| {
            let p = w.checked_sub(ELEM_OFF)?;
            (self.elem(p) == Some(t)).then_some(p)
        })
    }

    /// The interface type and the dynamic type of the itab at `tab`, when
    /// it is one in the types region.
    #[must_use]
    pub(crate) fn itab(&self, tab: u64) -> Option<(u64, u64)> {
        let inter = self.word(tab)?;
        let typ = self.word(tab.checked_add(ITAB_TYPE_OFF)?)?;
        (self.kind(inter)? == KIND_INTERFACE && self.kind(typ).is_some()).then_some((inter, typ))
    }

    /// The descriptor of the empty interface (`interface {}`, `any`): the
    /// type of a struct field that holds any value behind a type word.
    /// Found by its kind and name among the region's aligned words, once.
    #[must_use]
    pub(crate) fn empty_interface(&self) -> Option<u64> {
        *self.empty_interface.get_or_init(|| {
            let words = (self.bytes.len() / 8) as u64;
            (0..words).map(|i| self.base + i * 8).find(|&t| {
                self.kind(t) == Some(KIND_INTERFACE)
                    && self.name(t).is_some_and(|n| n == "interface {}")
            })
        })
    }

    /// Descriptors of kind `kind` whose word at `off` is the type at `t`
    /// (their element type), at most 8.
    fn with_elem(&self, t: u64, off: u64, kind: u8) -> Vec<u64> {
        let Some(words) = self.refs.get(&t) else {
            return Vec::new();
        };
        words
            .iter()
            .filter_map(|&w| {
                let d = w.checked_sub(off)?;
                (self.kind(d)? == kind).then_some(d)
            })
            .take(8)
            .collect()
    }

    /// Array types `[N]T` of the type at `t` and their lengths (at most 8).
    #[must_use]
    pub(crate) fn arrays_of(&self, t: u64) -> Vec<(u64, u64)> {
        self.with_elem(t, ELEM_OFF, KIND_ARRAY)
            .into_iter()
            .filter_map(|a| Some((a, self.word(a + ARRAY_LEN_OFF)?)))
            .filter(|&(_, len)| len > 0)
            .collect()
    }

    /// Map types whose element is the type at `t` (at most 8): `MapType.Elem`
    /// @56 in both layouts (`abi.OldMapType`, `abi.SwissMapType` / 1.26
    /// `abi.MapType`).
    #[must_use]
    pub(crate) fn maps_of(&self, t: u64) -> Vec<u64> {
        self.with_elem(t, MAP_ELEM_OFF, KIND_MAP)
    }

    /// Fields of the struct at `s`: (name, type, offset).
    fn fields(&self, s: u64) -> Option<Vec<(String, u64, u64)>> {
        (self.kind(s)? == KIND_STRUCT).then_some(())?;
        let ptr = self.word(s + FIELDS_OFF)?;
        let len = self.word(s + FIELDS_OFF + 8)?;
        if len > MAX_FIELDS {
            return None;
        }
        (0..len)
            .map(|i| {
                let f = ptr.checked_add(i * FIELD_SIZE)?;
                let name = self.name_at(self.word(f)?)?;
                Some((name, self.word(f + 8)?, self.word(f + 16)?))
            })
            .collect()
    }

    /// Struct fields whose type is the descriptor at `t`: the structs that
    /// can hold a value of type `t` inline. At most [`MAX_FIELD_MATCHES`].
    #[must_use]
    pub(crate) fn fields_of_type(&self, t: u64) -> Vec<FieldRef> {
        let mut out: Vec<FieldRef> = Vec::new();
        let Some(holders) = self.refs.get(&t) else {
            return out;
        };
        for &typ_word in holders {
            // A `StructField.Typ` is 8 bytes into its field; its struct's
            // `Fields.ptr` points at field 0, `i` fields before it.
            let Some(field) = typ_word.checked_sub(8) else {
                continue;
            };
            for i in 0..MAX_FIELDS {
                let Some(field0) = field.checked_sub(i * FIELD_SIZE) else {
                    break;
                };
                let Some(tables) = self.refs.get(&field0) else {
                    continue;
                };
                for &w in tables {
                    let Some(s) = w.checked_sub(FIELDS_OFF) else {
                        continue;
                    };
                    let Some(fields) = self.fields(s) else {
                        continue;
                    };
                    let Some((name, typ, offset)) =
                        fields.get(usize::try_from(i).unwrap_or(usize::MAX))
                    else {
                        continue;
                    };
                    if *typ != t
                        || out
                            .iter()
                            .any(|f| f.struct_type == s && f.offset == *offset)
                    {
                        continue;
                    }
                    let Some(struct_size) = self.size(s) else {
                        continue;
                    };
                    // A Swiss map's slot (`struct { key K; elem V }`): a
                    // value of that map, stepped through as such
                    // (`super::values`), not as a struct in a slice.
                    if self
                        .name(s)
                        .is_some_and(|n| n.starts_with("struct { key ") && name == "elem")
                    {
                        continue;
                    }
                    if offset.checked_add(8).is_none_or(|e| e > struct_size) {
                        continue;
                    }
                    out.push(FieldRef {
                        struct_type: s,
                        name: name.clone(),
                        offset: *offset,
                        struct_size,
                    });
                    if out.len() >= MAX_FIELD_MATCHES {
                        return out;
                    }
                }
                // Field tables are found by their start: once one is, the
                // fields before it belong to another struct.
                break;
            }
        }
        out
    }
}

/// Builds descriptors in a byte buffer, for tests.
#[cfg(test)]
pub(crate) mod build {
    use super::{FIELDS_OFF, KIND_OFF, PTR_TO_THIS_OFF, STR_OFF};

    /// A types region under construction; addresses are `base + offset`.
    pub(crate) struct Region {
        pub(crate) base: u64,
        pub(crate) bytes: Vec<u8>,
    }

    impl Region {
        pub(crate) fn new(base: u64) -> Self {
            Self {
                base,
                bytes: vec![0; 16],
            }
        }

        fn alloc(&mut self, n: usize) -> u64 {
            while !self.bytes.len().is_multiple_of(8) {
                self.bytes.push(0);
            }
            let at = self.base + self.bytes.len() as u64;
            self.bytes.resize(self.bytes.len() + n, 0);
            at
        }

        pub(crate) fn put(&mut self, at: u64, b: &[u8]) {
            let o = (at - self.base) as usize;
            self.bytes[o..o + b.len()].copy_from_slice(b);
        }

        fn name(&mut self, s: &str) -> u64 {
            let at = self.alloc(2 + s.len());
            self.put(at + 1, &[s.len() as u8]);
            self.put(at + 2, s.as_bytes());
            at
        }

        fn header(&mut self, extra: usize, size: u64, kind: u8, name: &str) -> u64 {
            let n = self.name(name);
            let t = self.alloc(48 + extra);
            self.put(t, &size.to_le_bytes());
            self.put(t + KIND_OFF, &[kind]);
            self.put(t + STR_OFF, &((n - self.base) as u32).to_le_bytes());
            t
        }

        /// A scalar or map type: a bare `abi.Type`.
        pub(crate) fn plain(&mut self, name: &str, kind: u8, size: u64) -> u64 {
            self.header(0, size, kind, name)
        }

        /// `*elem`, recorded as `elem`'s `PtrToThis` when `link`.
        pub(crate) fn ptr(&mut self, elem: u64, name: &str, link: bool) -> u64 {
            let p = self.header(8, 8, super::KIND_PTR, name);
            self.put(p + 48, &elem.to_le_bytes());
            if link {
                self.put(
                    elem + PTR_TO_THIS_OFF,
                    &((p - self.base) as u32).to_le_bytes(),
                );
            }
            p
        }

        /// `[len]elem`.
        pub(crate) fn array(&mut self, elem: u64, len: u64, name: &str) -> u64 {
            let size = self.word_at(elem) * len;
            let a = self.header(24, size, super::KIND_ARRAY, name);
            self.put(a + 48, &elem.to_le_bytes());
            self.put(a + 64, &len.to_le_bytes());
            a
        }

        fn word_at(&self, at: u64) -> u64 {
            let o = (at - self.base) as usize;
            u64::from_le_bytes(self.bytes[o..o + 8].try_into().unwrap())
        }

        /// An interface type (its methods are not read).
        pub(crate) fn interface(&mut self, name: &str) -> u64 {
            self.header(8, 16, super::KIND_INTERFACE, name)
        }

        /// A static itab of `inter` for the dynamic type `typ`.
        pub(crate) fn itab(&mut self, inter: u64, typ: u64) -> u64 {
            let t = self.alloc(32);
            self.put(t, &inter.to_le_bytes());
            self.put(t + 8, &typ.to_le_bytes());
            t
        }

        /// `[]elem`.
        pub(crate) fn slice(&mut self, elem: u64, name: &str) -> u64 {
            let s = self.header(8, 24, super::KIND_SLICE, name);
            self.put(s + 48, &elem.to_le_bytes());
            s
        }

        /// A struct with `fields` (name, type, offset).
        pub(crate) fn strukt(&mut self, name: &str, size: u64, fields: &[(&str, u64, u64)]) -> u64 {
            let names: Vec<u64> = fields.iter().map(|f| self.name(f.0)).collect();
            let s = self.header(32, size, super::KIND_STRUCT, name);
            let table = self.alloc(24 * fields.len());
            for (i, (f, n)) in fields.iter().zip(names).enumerate() {
                let at = table + 24 * i as u64;
                self.put(at, &n.to_le_bytes());
                self.put(at + 8, &f.1.to_le_bytes());
                self.put(at + 16, &f.2.to_le_bytes());
            }
            self.put(s + FIELDS_OFF, &table.to_le_bytes());
            self.put(s + FIELDS_OFF + 8, &(fields.len() as u64).to_le_bytes());
            self.put(s + FIELDS_OFF + 16, &(fields.len() as u64).to_le_bytes());
            s
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{build::Region, *};

    const MAP: u8 = 21;

    /// Struct fields are found by their type, with names and offsets, and
    /// pointer types by their element, with or without `PtrToThis`.
    #[test]
    fn fields_and_pointers() {
        let mut r = Region::new(0x40_0000);
        let m = r.plain("map[string][]uint8", MAP, 8);
        let s = r.plain("string", 24, 16);
        let cache = r.strukt("main.cache", 32, &[("name", s, 0), ("items", m, 24)]);
        let pcache = r.ptr(cache, "*main.cache", true);
        let server = r.strukt("main.server", 32, &[("addr", s, 0), ("cache", pcache, 24)]);
        let pserver = r.ptr(server, "*main.server", false);
        let t = TypeTable::new(r.base, r.bytes);
        assert_eq!(
            t.fields_of_type(m),
            vec![FieldRef {
                struct_type: cache,
                name: "items".into(),
                offset: 24,
                struct_size: 32
            }]
        );
        assert_eq!(t.fields_of_type(pcache)[0].name, "cache");
        assert_eq!(t.fields_of_type(pcache)[0].struct_type, server);
        assert_eq!(t.ptr_to(cache), Some(pcache));
        assert_eq!(t.ptr_to(server), Some(pserver));
        assert_eq!(t.name(pserver).as_deref(), Some("*main.server"));
        assert_eq!(t.name(cache).as_deref(), Some("main.cache"));
        assert!(t.fields_of_type(pserver).is_empty());
        assert_eq!(t.slice_of(server), None);
    }

    /// Slice types are found by their element.
    #[test]
    fn slices() {
        let mut r = Region::new(0x40_0000);
        let m = r.plain("map[int]int", MAP, 8);
        let shard = r.strukt("main.shard", 8, &[("m", m, 0)]);
        let p = r.ptr(shard, "*main.shard", true);
        let s = r.slice(shard, "[]main.shard");
        let t = TypeTable::new(r.base, r.bytes);
        assert_eq!(t.slice_of(shard), Some(s));
        assert_eq!(t.slice_of(m), None);
        assert_eq!(t.ptr_to(shard), Some(p));
        assert_eq!(t.name(s).as_deref(), Some("[]main.shard"));
    }

    /// Garbage (a truncated region, a field table that does not point back,
    /// a huge field count) gives nothing, never a panic.
    #[test]
    fn garbage_is_ignored() {
        let mut r = Region::new(0x1000);
        let m = r.plain("map[int]int", MAP, 8);
        let s = r.strukt("main.s", 16, &[("m", m, 8)]);
        r.put(s + FIELDS_OFF + 8, &u64::MAX.to_le_bytes());
        let t = TypeTable::new(r.base, r.bytes.clone());
        assert!(t.fields_of_type(m).is_empty());
        // The field's offset past the struct's size.
        let mut r = Region::new(0x1000);
        let m = r.plain("map[int]int", MAP, 8);
        r.strukt("main.s", 16, &[("m", m, 64)]);
        let t = TypeTable::new(r.base, r.bytes.clone());
        assert!(t.fields_of_type(m).is_empty());
        for cut in [0, 7, 50, r.bytes.len() / 2] {
            let t = TypeTable::new(r.base, r.bytes[..cut].to_vec());
            let _ = t.fields_of_type(m);
            let _ = t.name(m);
            let _ = t.ptr_to(m);
        }
        let t = TypeTable::new(u64::MAX - 8, vec![0xff; 64]);
        assert!(t.name(u64::MAX - 8).is_none());
    }
}
