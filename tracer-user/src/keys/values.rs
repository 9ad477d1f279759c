//! The elements of a live map, for the holder search: which map holds
//! another map as the value of which key (`main.tenants → ["acme"]`).
//! The walk is the key snapshot's ([`super::snapshot`]); this adds where
//! each slot's element is, from the map type descriptor:
//! - hmap (`go1.23:src/runtime/map.go` `bmap`): the 8 elements follow the 8
//!   keys, `8 + 8 * keysize + i * valuesize` into the bucket;
//!   `OldMapType.Flags & 2` (indirect element) leaves it out;
//! - Swiss 1.24 to 1.26 (`1.26:src/internal/abi/map.go`): slot `i` at
//!   `8 + i * SlotSize`, its element `ElemOff` into it; 1.27+: `ElemsOff +
//!   i * ElemStride`; `Flags & 8` (indirect element) leaves it out.
use super::{Key, KeyLayout, KeyType, Reader, le32, le64, snapshot};
use crate::inspect::{MapImpl, RuntimeLayout};

/// Where a map's elements are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ElemLayout {
    /// Slot `i`'s element at `base + i * stride` of its bucket or group.
    pub(crate) base: u64,
    pub(crate) stride: u64,
    /// The element type descriptor (run-time address).
    pub(crate) elem_type: u64,
}

/// The element layout of the map type at `map_type` (run-time address),
/// whose keys `kl` describes. `None`: elements stored indirectly, or
/// smaller than a word.
pub(crate) fn elem_layout<R: Reader>(
    r: &R,
    l: &RuntimeLayout,
    kl: &KeyLayout,
    map_type: u64,
) -> Option<ElemLayout> {
    let mut d = [0u8; 136];
    let n = r.read_some(map_type, &mut d);
    let d = &d[..n];
    let f = |o: Option<u32>| o.map(u64::from);
    let (base, stride, elem_type) = match kl.imp {
        MapImpl::Hmap => {
            let flags = le32(d, f(l.maptype_flags)?)?;
            if flags & 2 != 0 {
                return None;
            }
            let vs = u64::from(*d.get(usize::try_from(l.maptype_valuesize?).ok()?)?);
            // The overflow pointer ends the bucket.
            if 16 + 8 * kl.slot_key_size + 8 * vs != kl.bucket_size {
                return None;
            }
            (8 + 8 * kl.slot_key_size, vs, le64(d, f(l.maptype_elem)?)?)
        }
        MapImpl::Swiss => {
            let flags = le32(d, f(l.swisstype_flags)?)?;
            if flags & 8 != 0 {
                return None;
            }
            let elem = le64(d, f(l.swisstype_elem)?)?;
            match (l.swisstype_elems_off, l.swisstype_elem_stride) {
                (Some(eo), Some(es)) => (le64(d, eo.into())?, le64(d, es.into())?, elem),
                _ => (
                    8 + le64(d, f(l.swisstype_elem_off)?)?,
                    le64(d, f(l.swisstype_slot_size)?)?,
                    elem,
                ),
            }
        }
    };
    // Eight slots' elements inside one bucket or group.
    let end = base.checked_add(stride.checked_mul(7)?)?.checked_add(8)?;
    let unit = match kl.imp {
        MapImpl::Hmap => kl.bucket_size,
        MapImpl::Swiss => kl.group_size,
    };
    (stride >= 8 && end <= unit).then_some(ElemLayout {
        base,
        stride,
        elem_type,
    })
}

/// One entry of a map: its key, and the address and value of its
/// element's first word.
#[derive(Clone, Debug)]
pub(crate) struct Entry {
    pub(crate) key: Key,
    pub(crate) at: u64,
    pub(crate) word: u64,
}

/// One walk of the map at `map_addr` gathering each entry's key and the
/// first word of its element. One walk, not a double collect: the map may
/// change meanwhile, so a caller re-reads an element before it relies on
/// it. Returns the entries and whether the walk was complete.
pub(crate) fn entries<R: Reader>(
    r: &R,
    l: &RuntimeLayout,
    kl: &KeyLayout,
    el: ElemLayout,
    map_addr: u64,
    max_keys: usize,
    max_bytes: u64,
) -> Option<(Vec<Entry>, bool)> {
    let shape = snapshot::read_shape(r, l, kl, map_addr)?;
    let w = snapshot::walk_with(
        r,
        kl,
        &shape,
        max_keys,
        max_bytes,
        Some((el.base, el.stride)),
    );
    let (keys, unreadable, cut, _) =
        snapshot::materialize(r, kl, &w.slots, max_bytes.saturating_sub(w.bytes));
    // Keys come in slot order; an indirect key that could not be read is
    // left out, and then they no longer line up.
    if kl.indirect_key && unreadable {
        return Some((Vec::new(), false));
    }
    let complete = !(w.unreadable || w.truncated || unreadable || cut);
    let out = keys
        .into_iter()
        .zip(&w.values)
        .map(|(key, &(at, word))| Entry { key, at, word })
        .collect();
    Some((out, complete))
}

/// A map step named by its key: `["acme"]`, `[42]` (rendered as the
/// report renders keys, so redacted unless `show_keys`); `[…]` for other
/// key types.
#[must_use]
pub(crate) fn key_step(key: &Key, kt: &KeyType, show_keys: bool) -> String {
    use super::KeyKind;
    match kt.kind {
        KeyKind::String | KeyKind::Int | KeyKind::Uint | KeyKind::Uintptr => {
            format!("[{}]", super::render(key, kt, show_keys))
        }
        _ => "[…]".to_owned(),
    }
}
