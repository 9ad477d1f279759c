//! Go type names and map type descriptors, read from the file.
//!
//! A type descriptor starts with `abi.Type` (`1.26:src/internal/abi/type.go`):
//! `Size_` @0, `TFlag` @20, `Kind_` @23, `Str` (nameOff i32) @40. The name is
//! at `moduledata.types + Str`: a flags byte, a uvarint length, then the bytes
//! (`go1.18:src/runtime/type.go:name`); `TFlagExtraStar` (0x2) means the
//! first byte is a `*` to drop. DWARF's `DW_AT_go_runtime_type` gives the same
//! names without decoding, and is preferred when present.

use super::BinaryInfo;
use super::MapImpl;
use super::buildinfo::uvarint;

/// `abi.Map`.
const KIND_MAP: u8 = 21;
/// `abi.KindMask`.
const KIND_MASK: u8 = 0x1f;
/// `abi.TFlagExtraStar`.
const TFLAG_EXTRA_STAR: u8 = 0x2;

/// A map type descriptor, decoded.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct MapTypeInfo {
    /// `map[K]V`.
    pub name: String,
    /// Key type name.
    pub key: String,
    /// Elem type name.
    pub elem: String,
    /// `Key.Size_`.
    pub key_size: u64,
    /// `Elem.Size_`.
    pub elem_size: u64,
    /// hmap `bucketsize` (0 for Swiss).
    pub bucket_size: u64,
    /// Swiss `GroupSize` (0 for hmap).
    pub group_size: u64,
    /// Swiss `SlotSize` (1.27+: `KeyStride`; 0 for hmap).
    pub slot_size: u64,
}

impl BinaryInfo {
    fn read_u64(&self, va: u64) -> Option<u64> {
        self.elf.read_word(&self.data, va)
    }

    fn read_u16(&self, va: u64) -> Option<u16> {
        Some(u16::from_le_bytes(self.read_va(va, 2)?.try_into().ok()?))
    }

    /// Name of the Go type whose descriptor is at link-time `va`, e.g.
    /// `map[string]*main.session`. Cached.
    #[must_use]
    pub fn type_name(&self, va: u64) -> Option<String> {
        if let Ok(cache) = self.type_cache.lock()
            && let Some(hit) = cache.get(&va)
        {
            return hit.clone();
        }
        let name = self
            .dwarf_types
            .get(&va)
            .cloned()
            .or_else(|| self.decode_type_name(va));
        if let Ok(mut cache) = self.type_cache.lock() {
            cache.insert(va, name.clone());
        }
        name
    }

    /// Decodes `abi.Type.Str` through `moduledata.types` (works stripped).
    #[must_use]
    pub fn decode_type_name(&self, va: u64) -> Option<String> {
        let md = self.moduledata.as_ref()?;
        if va < md.types || va >= md.etypes {
            return None;
        }
        let hdr = self.read_va(va, 48)?;
        let tflag = hdr[usize::try_from(self.layout.type_tflag.unwrap_or(20))
            .ok()?
            .min(47)];
        let str_at = usize::try_from(self.layout.type_str.unwrap_or(40)).ok()?;
        let off = i32::from_le_bytes(hdr.get(str_at..str_at + 4)?.try_into().ok()?);
        let name_va = md.types.checked_add_signed(i64::from(off))?;
        let head = self.read_va(name_va, 1)?;
        let _flags = head[0];
        // uvarint length: at most 10 bytes, but the file may end sooner.
        let mut lenbuf = Vec::new();
        for i in 1..=10u64 {
            match self.read_va(name_va.checked_add(i)?, 1) {
                Some(b) => lenbuf.push(b[0]),
                None => break,
            }
            if lenbuf.last().is_some_and(|b| b & 0x80 == 0) {
                break;
            }
        }
        let (len, n) = uvarint(&lenbuf)?;
        if len > 1 << 16 {
            return None;
        }
        let bytes = self.read_va(
            name_va.checked_add(1 + n as u64)?,
            usize::try_from(len).ok()?,
        )?;
        let mut s = std::str::from_utf8(bytes).ok()?;
        if tflag & TFLAG_EXTRA_STAR != 0 {
            s = s.strip_prefix('*').unwrap_or(s);
        }
        Some(s.to_owned())
    }

    /// Whether the descriptor at `va` is a map type (`Kind_ & 0x1f == 21`).
    #[must_use]
    pub fn is_map_type(&self, va: u64) -> bool {
        let k = u64::from(self.layout.type_kind.unwrap_or(23));
        va.checked_add(k)
            .and_then(|a| self.read_va(a, 1))
            .is_some_and(|b| b[0] & KIND_MASK == KIND_MAP)
    }

    /// Key/elem names and sizes and bucket or group geometry of the map type
    /// descriptor at `va`. Unresolvable names read `?` (the name is then
    /// built from the key and elem names); the sizes never depend on them.
    #[must_use]
    pub fn map_type_info(&self, va: u64) -> Option<MapTypeInfo> {
        if !self.is_map_type(va) {
            return None;
        }
        let l = &self.layout;
        let field = |o: Option<u32>| va.checked_add(u64::from(o?));
        let (key_off, elem_off) = match self.map_impl {
            MapImpl::Hmap => (l.maptype_key, l.maptype_elem),
            MapImpl::Swiss => (l.swisstype_key, l.swisstype_elem),
        };
        let key_t = self.read_u64(field(key_off)?)?;
        let elem_t = self.read_u64(field(elem_off)?)?;
        let size_of = |t: u64| self.read_u64(t.checked_add(u64::from(l.type_size.unwrap_or(0)))?);
        // Sizes come from the descriptor alone: a name that cannot be
        // resolved must not cost the map its bytes.
        let key = self.type_name(key_t).unwrap_or_else(|| "?".to_owned());
        let elem = self.type_name(elem_t).unwrap_or_else(|| "?".to_owned());
        let mut info = MapTypeInfo {
            name: self
                .type_name(va)
                .unwrap_or_else(|| format!("map[{key}]{elem}")),
            key,
            elem,
            key_size: size_of(key_t)?,
            elem_size: size_of(elem_t)?,
            bucket_size: 0,
            group_size: 0,
            slot_size: 0,
        };
        match self.map_impl {
            MapImpl::Hmap => {
                info.bucket_size = u64::from(self.read_u16(field(l.maptype_bucketsize)?)?);
            }
            MapImpl::Swiss => {
                info.group_size = self.read_u64(field(l.swisstype_group_size)?)?;
                let slot = l.swisstype_slot_size.or(l.swisstype_key_stride);
                info.slot_size = self.read_u64(field(slot)?)?;
            }
        }
        Some(info)
    }
}
