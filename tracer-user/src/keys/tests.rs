//! Tests of key layouts, identity, the key budget and candidates.
use super::{testmem::FakeMem, *};

/// Writes a type descriptor header (size, kind) at `addr`.
fn ty(m: &FakeMem, addr: u64, size: u64, k: u8, extra: &[(usize, u64)]) {
    let mut d = vec![0u8; 72];
    d[0..8].copy_from_slice(&size.to_le_bytes());
    d[23] = k | 0x20;
    for &(o, v) in extra {
        d[o..o + 8].copy_from_slice(&v.to_le_bytes());
    }
    m.put(addr, d);
}

fn name(m: &FakeMem, addr: u64, s: &str) {
    let mut v = vec![0u8, u8::try_from(s.len()).unwrap()];
    v.extend_from_slice(s.as_bytes());
    m.put(addr, v);
}

fn layout() -> RuntimeLayout {
    RuntimeLayout::builtin(26, MapImpl::Swiss, crate::inspect::GoArch::Amd64)
}

/// A struct key {A int32; S string; P [2]uint16} resolves field by field,
/// with names and offsets, and a map type descriptor gives the Swiss
/// geometry (1.26 layout: SlotSize) and the IndirectKey flag.
#[test]
fn resolves_struct_key_and_swiss_geometry() {
    let m = FakeMem::default();
    ty(&m, 0x1000, 4, 5, &[]); // int32
    ty(&m, 0x1100, 16, kind::STRING, &[]);
    ty(&m, 0x1200, 2, 9, &[]); // uint16
    ty(&m, 0x1300, 4, kind::ARRAY, &[(48, 0x1200), (64, 2)]);
    ty(&m, 0x2000, 32, kind::STRUCT, &[(56, 0x3000), (64, 3)]);
    let mut f = Vec::new();
    for (n, t, o) in [
        (0x4000u64, 0x1000u64, 0u64),
        (0x4100, 0x1100, 8),
        (0x4200, 0x1300, 24),
    ] {
        f.extend_from_slice(&n.to_le_bytes());
        f.extend_from_slice(&t.to_le_bytes());
        f.extend_from_slice(&o.to_le_bytes());
    }
    m.put(0x3000, f);
    name(&m, 0x4000, "A");
    name(&m, 0x4100, "S");
    name(&m, 0x4200, "P");
    // map type: Key @48, GroupSize @80, SlotSize @88, Flags @104.
    let mut d = vec![0u8; 136];
    d[23] = kind::MAP;
    d[48..56].copy_from_slice(&0x2000u64.to_le_bytes());
    d[80..88].copy_from_slice(&(8u64 + 8 * 40).to_le_bytes());
    d[88..96].copy_from_slice(&40u64.to_le_bytes());
    m.put(0x5000, d);
    let names = |a: u64| Some(format!("t{a:x}"));
    let kl = key_layout_in(&m, &layout(), MapImpl::Swiss, 26, &names, 0x5000).unwrap();
    assert_eq!(kl.map_type, "t5000");
    assert_eq!((kl.keys_off, kl.key_stride, kl.group_size), (8, 40, 328));
    assert!(!kl.indirect_key);
    let KeyKind::Struct(fs) = &kl.key_type.kind else {
        panic!("{:?}", kl.key_type)
    };
    let got: Vec<(&str, u64, &KeyKind)> = fs
        .iter()
        .map(|f| (f.name.as_str(), f.offset, &f.ty.kind))
        .collect();
    assert_eq!(got[0], ("A", 0, &KeyKind::Int));
    assert_eq!(got[1], ("S", 8, &KeyKind::String));
    assert!(matches!(got[2].2, KeyKind::Array { len: 2, .. }));
    // The identity plan skips the padding at 4..8 and 28..32.
    assert_eq!(
        kl.plan.segs,
        vec![
            Seg::Bytes { off: 0, len: 4 },
            Seg::Str { off: 8 },
            Seg::Bytes { off: 24, len: 4 }
        ]
    );
    // Not a map: None.
    assert!(key_layout_in(&m, &layout(), MapImpl::Swiss, 26, &names, 0x2000).is_none());
    // Keys that do not fit in the group: None.
    m.poke(0x5000 + 80, &100u64.to_le_bytes());
    assert!(key_layout_in(&m, &layout(), MapImpl::Swiss, 26, &names, 0x5000).is_none());
    // Field offsets that overlap: the struct is not trusted.
    m.poke(0x3000 + 24 + 16, &2u64.to_le_bytes());
    m.poke(0x5000 + 80, &328u64.to_le_bytes());
    let kl = key_layout_in(&m, &layout(), MapImpl::Swiss, 26, &names, 0x5000).unwrap();
    assert_eq!(kl.key_type.kind, KeyKind::Other(kind::STRUCT));
}

/// The identity hash separates lengths, tails and word order.
#[test]
fn id_hash_separates() {
    let h = |parts: &[&[u8]]| {
        let mut x = IdHasher::new();
        for p in parts {
            x.write(p);
        }
        x.finish()
    };
    let all = [
        h(&[b""]),
        h(&[b"a"]),
        h(&[b"a\0"]),
        h(&[b"abcdefgh", b"ijklmnop"]),
        h(&[b"ijklmnop", b"abcdefgh"]),
        h(&[b"abcdefghi"]),
    ];
    let uniq: std::collections::HashSet<u64> = all.iter().copied().collect();
    assert_eq!(uniq.len(), all.len());
    assert_eq!(h(&[b"key-00001"]), h(&[b"key-00001"]));
}

/// Key snapshot candidates: suspects first (growing, then bloated; the
/// longest without a snapshot first), then at most `max_others` others
/// within the length bounds, largest first; maps not sampled at the
/// cycle or of unknown type are left out.
#[test]
fn snapshot_candidates_are_ordered_and_bounded() {
    use crate::{
        model::{Model, SampleAt},
        sample::{HeaderRead, HeaderSample},
    };
    let mut m = Model::default();
    let ok = |len: u64, capacity| {
        HeaderRead::Ok(HeaderSample {
            len,
            capacity,
            bytes: 0,
            seed: 1,
            storage: 0x100,
        })
    };
    for a in 1..=9u64 {
        m.on_grow(a * 16, if a == 9 { 0 } else { 0x77 }, 0, None);
    }
    for c in 1..=4u64 {
        for a in 1..=9u64 {
            let len = match a {
                1 | 2 => c * 100,
                6 => 0,
                7 => 30_000,
                _ => a,
            };
            let cap = if a == 8 { 1 << 20 } else { (len * 2).max(64) };
            m.on_sample(a * 16, SampleAt::gc(c), ok(len, cap));
        }
    }
    // 1 and 2 grow; 8 is bloated (2^20 slots); 3, 4, 5 idle; 6 empty;
    // 7 too long; 9 has no type.
    let last = |a: u64| if a == 16 { 3 } else { 0 };
    let got = snapshot_candidates(&m, 4, last, |_| false, 2, 20_000);
    let addrs: Vec<(u8, u64)> = got.iter().map(|c| (c.0, c.2)).collect();
    assert_eq!(addrs, [(0, 32), (0, 16), (1, 128), (2, 80), (2, 64)]);
    assert!(snapshot_candidates(&m, 3, last, |_| false, 2, 20_000).is_empty());
}
