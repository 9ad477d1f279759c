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

/// How much of a map one walk saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Walked {
    /// Every slot, as many entries as the header counted.
    Whole,
    /// Every slot, within 2% of the entries the header counted: the map
    /// was written while it was read, and a few were missed or seen twice.
    Near,
    /// Those within the walk's limits (entries or bytes).
    Cut,
    /// Some read failed: the map was freed or replaced meanwhile, or the
    /// process is exiting; what was read may be any part of it.
    Unreadable,
    /// Every slot in reach was read, but they are not as many as the
    /// header counted (by more than 2%): the map grew or was written while
    /// it was read, and entries were missed or seen twice.
    Torn,
}

/// One walk of the map at `map_addr` gathering each entry's key and the
/// first word of its element. One walk, not a double collect: the map may
/// change meanwhile, so a caller re-reads an element before it relies on
/// it. Returns the entries and how much of the map they are.
pub(crate) fn entries<R: Reader>(
    r: &R,
    l: &RuntimeLayout,
    kl: &KeyLayout,
    el: ElemLayout,
    map_addr: u64,
    max_keys: usize,
    max_bytes: u64,
) -> Option<(Vec<Entry>, Walked)> {
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
        return Some((Vec::new(), Walked::Unreadable));
    }
    let count = shape.0.count();
    let walked = if w.unreadable || unreadable {
        Walked::Unreadable
    } else if w.truncated || cut {
        Walked::Cut
    } else if (keys.len() as u64).abs_diff(count) > count / 50 + 8 {
        Walked::Torn
    } else if keys.len() as u64 != count {
        Walked::Near
    } else {
        Walked::Whole
    };
    let out = keys
        .into_iter()
        .zip(&w.values)
        .map(|(key, &(at, word))| Entry { key, at, word })
        .collect();
    Some((out, walked))
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

#[cfg(test)]
mod tests {
    use super::{super::KeyKind, *};
    use crate::{
        inspect::GoArch,
        keys::{KeyLayout, testmem::FakeMem},
    };

    fn int64() -> KeyType {
        KeyType {
            name: "int64".into(),
            size: 8,
            kind: KeyKind::Int,
        }
    }

    /// hmap `map[int64]map[string]int`: bucket 8 + 8*8 + 8*8 + 8.
    const BS: u64 = 144;

    /// The element layout from a map type descriptor; indirect elements
    /// and slots that do not add up are refused.
    #[test]
    fn elem_layouts() {
        let mem = FakeMem::default();
        let l = RuntimeLayout::builtin(23, MapImpl::Hmap, GoArch::Amd64);
        let kl = KeyLayout::hmap("m".into(), int64(), false, 8, BS).unwrap();
        let mut d = vec![0u8; 136];
        d[56..64].copy_from_slice(&0x4a_0000u64.to_le_bytes());
        d[81] = 8;
        mem.put(0x40_0000, d.clone());
        let el = elem_layout(&mem, &l, &kl, 0x40_0000);
        assert_eq!(
            el,
            Some(ElemLayout {
                base: 72,
                stride: 8,
                elem_type: 0x4a_0000
            })
        );
        d[84] = 2;
        mem.put(0x40_0000, d.clone());
        assert_eq!(elem_layout(&mem, &l, &kl, 0x40_0000), None);
        d[84] = 0;
        d[81] = 16;
        mem.put(0x40_0000, d);
        assert_eq!(elem_layout(&mem, &l, &kl, 0x40_0000), None);
        // Swiss 1.26: slot 16 (key 8, elem 8 at ElemOff 8), group 8 + 8*16.
        let l = RuntimeLayout::builtin(26, MapImpl::Swiss, GoArch::Amd64);
        let kl = KeyLayout::swiss("m".into(), int64(), false, 136, 8, 16).unwrap();
        let mut d = vec![0u8; 136];
        d[56..64].copy_from_slice(&0x4b_0000u64.to_le_bytes());
        d[88..96].copy_from_slice(&16u64.to_le_bytes());
        d[96..104].copy_from_slice(&8u64.to_le_bytes());
        mem.put(0x41_0000, d.clone());
        assert_eq!(
            elem_layout(&mem, &l, &kl, 0x41_0000),
            Some(ElemLayout {
                base: 16,
                stride: 16,
                elem_type: 0x4b_0000
            })
        );
        d[104] = 8;
        mem.put(0x41_0000, d);
        assert_eq!(elem_layout(&mem, &l, &kl, 0x41_0000), None);
    }

    /// Each full slot's key, element address and element word; steps named
    /// by integer keys.
    #[test]
    fn entries_of_an_hmap() {
        let mem = FakeMem::default();
        let l = RuntimeLayout::builtin(23, MapImpl::Hmap, GoArch::Amd64);
        let kl = KeyLayout::hmap("m".into(), int64(), false, 8, BS).unwrap();
        let el = ElemLayout {
            base: 72,
            stride: 8,
            elem_type: 0,
        };
        let mut b = vec![0u8; BS as usize];
        for (i, (k, v)) in [(3usize, (42i64, 0xc000_1000u64)), (5, (-7, 0xc000_2000))] {
            b[i] = 9;
            b[8 + 8 * i..16 + 8 * i].copy_from_slice(&k.to_le_bytes());
            b[72 + 8 * i..80 + 8 * i].copy_from_slice(&v.to_le_bytes());
        }
        mem.put(0xc000_8000, b);
        let mut h = vec![0u8; 48];
        h[0] = 2;
        h[16..24].copy_from_slice(&0xc000_8000u64.to_le_bytes());
        mem.put(0xc000_9000, h);
        let (es, walked) = entries(&mem, &l, &kl, el, 0xc000_9000, 100, 1 << 20).unwrap();
        assert_eq!(walked, Walked::Whole);
        let got: Vec<(String, u64, u64)> = es
            .iter()
            .map(|e| (key_step(&e.key, &kl.key_type, false), e.at, e.word))
            .collect();
        assert_eq!(
            got,
            [
                ("[42]".to_owned(), 0xc000_8000 + 72 + 24, 0xc000_1000),
                ("[-7]".to_owned(), 0xc000_8000 + 72 + 40, 0xc000_2000)
            ]
        );
        // Buckets that cannot be read (freed, or the process exiting): no
        // entries, and the walk says so rather than "an empty map".
        let mut h = vec![0u8; 48];
        h[0] = 2;
        h[16..24].copy_from_slice(&0xc100_8000u64.to_le_bytes());
        mem.put(0xc000_a000, h);
        let (es, walked) = entries(&mem, &l, &kl, el, 0xc000_a000, 100, 1 << 20).unwrap();
        assert!(es.is_empty());
        assert_eq!(walked, Walked::Unreadable);
        // A header counting 40 entries over buckets holding 2: the map grew
        // while it was read.
        let mut h = vec![0u8; 48];
        h[0] = 40;
        h[16..24].copy_from_slice(&0xc000_8000u64.to_le_bytes());
        mem.put(0xc000_b000, h);
        let (es, walked) = entries(&mem, &l, &kl, el, 0xc000_b000, 100, 1 << 20).unwrap();
        assert_eq!((es.len(), walked), (2, Walked::Torn));
    }
}
