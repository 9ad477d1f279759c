//! Tests of `keys::snapshot`: walks over a fake heap (hmap buckets and
//! overflow chains, Swiss groups and directories), double collects, budgets.
use super::{
    super::{KeyField, KeyType, testmem::FakeMem},
    *,
};
use crate::inspect::GoArch;

fn t(name: &str, size: u64, kind: KeyKind) -> KeyType {
    KeyType {
        name: name.to_owned(),
        size,
        kind,
    }
}

fn string_t() -> KeyType {
    t("string", 16, KeyKind::String)
}

/// A fake Go heap: strings and buckets placed at increasing addresses.
struct Heap {
    m: FakeMem,
    next: u64,
}

impl Heap {
    fn new() -> Self {
        Self {
            m: FakeMem::default(),
            next: 0xc000_0000,
        }
    }
    fn alloc(&mut self, bytes: Vec<u8>) -> u64 {
        let a = self.next;
        self.next += (bytes.len() as u64).div_ceil(16) * 16 + 16;
        self.m.put(a, bytes);
        a
    }
    fn string(&mut self, s: &str) -> [u8; 16] {
        let p = if s.is_empty() {
            0
        } else {
            self.alloc(s.as_bytes().to_vec())
        };
        let mut h = [0u8; 16];
        h[..8].copy_from_slice(&p.to_le_bytes());
        h[8..].copy_from_slice(&(s.len() as u64).to_le_bytes());
        h
    }
}

/// hmap bucket for map[string]int: tophash 8, keys 8*16, elems 8*8, overflow.
const BS: u64 = 8 + 8 * 16 + 8 * 8 + 8;

fn hmap_kl() -> KeyLayout {
    KeyLayout::hmap("map[string]int".into(), string_t(), false, 16, BS).unwrap()
}

fn hmap_l() -> RuntimeLayout {
    RuntimeLayout::builtin(22, MapImpl::Hmap, GoArch::Amd64)
}

fn bucket(heap: &mut Heap, keys: &[(u8, &str)], overflow: u64) -> Vec<u8> {
    let mut b = vec![0u8; usize::try_from(BS).unwrap()];
    for (i, (top, k)) in keys.iter().enumerate() {
        b[i] = *top;
        let h = heap.string(k);
        b[8 + i * 16..8 + i * 16 + 16].copy_from_slice(&h);
    }
    let o = usize::try_from(BS - 8).unwrap();
    b[o..].copy_from_slice(&overflow.to_le_bytes());
    b
}

fn hmap_header(count: u64, b: u8, buckets: u64, old: u64, flags: u8) -> Vec<u8> {
    let mut h = vec![0u8; 48];
    h[0..8].copy_from_slice(&count.to_le_bytes());
    h[8] = flags;
    h[9] = b;
    h[12..16].copy_from_slice(&77u32.to_le_bytes());
    h[16..24].copy_from_slice(&buckets.to_le_bytes());
    h[24..32].copy_from_slice(&old.to_le_bytes());
    h
}

fn texts(s: &Snapshot) -> Vec<String> {
    let mut v: Vec<String> = s
        .keys
        .iter()
        .map(|k| String::from_utf8_lossy(k.strs[0].text.as_deref().unwrap()).into_owned())
        .collect();
    v.sort();
    v
}

/// An hmap mid-grow: live keys are in the new buckets, in the one old
/// bucket not yet evacuated and in its overflow chain; an evacuated old
/// bucket (tophash[0] = 2) and empty/evacuated slots are skipped.
#[test]
fn hmap_walk_with_grow_and_overflow() {
    let mut heap = Heap::new();
    let ovf = bucket(&mut heap, &[(9, "o1"), (1, "gone"), (7, "o2")], 0);
    let ovf_addr = heap.alloc(ovf);
    // New array: B = 1, two buckets.
    let mut newb = bucket(&mut heap, &[(5, "n1"), (0, ""), (200, "n2")], 0);
    newb.extend(bucket(&mut heap, &[(1, "deleted"), (6, "n3")], 0));
    let new_addr = heap.alloc(newb);
    // Old array: one bucket, not evacuated, with an overflow bucket.
    let old = bucket(&mut heap, &[(8, "old1")], ovf_addr);
    let old_addr = heap.alloc(old);
    let hdr = heap.alloc(hmap_header(6, 1, new_addr, old_addr, 0));
    let s = snapshot_in(&heap.m, &hmap_l(), &hmap_kl(), hdr, 100, MAX_SNAPSHOT_BYTES).unwrap();
    assert_eq!(texts(&s), ["n1", "n2", "n3", "o1", "o2", "old1"]);
    assert!(!s.partial && !s.truncated, "{s:?}");
    assert_eq!(s.header_len, 6);
    // Evacuate the old bucket: its keys are no longer read, and the count
    // (still 6) no longer matches: partial after ATTEMPTS walks.
    heap.m.poke(old_addr, &[2]);
    let s = snapshot_in(&heap.m, &hmap_l(), &hmap_kl(), hdr, 100, MAX_SNAPSHOT_BYTES).unwrap();
    assert_eq!(texts(&s), ["n1", "n2", "n3"]);
    assert!(s.partial);
    assert_eq!(s.attempts, ATTEMPTS);
    // max_keys: truncated, not partial.
    heap.m.poke(old_addr, &[8]);
    let s = snapshot_in(&heap.m, &hmap_l(), &hmap_kl(), hdr, 4, MAX_SNAPSHOT_BYTES).unwrap();
    assert_eq!(s.keys.len(), 4);
    assert!(s.truncated && !s.partial);
}

/// The byte budget bounds a walk: too small for the bucket array gives no
/// keys; enough for the array but not all strings cuts keys off. Both are
/// `truncated`, not `partial`.
#[test]
fn byte_budget_truncates() {
    let mut heap = Heap::new();
    let long = "x".repeat(200);
    let b = bucket(&mut heap, &[(5, &long), (6, &long), (7, &long)], 0);
    let b_addr = heap.alloc(b);
    let hdr = heap.alloc(hmap_header(3, 0, b_addr, 0, 0));
    let s = snapshot_in(&heap.m, &hmap_l(), &hmap_kl(), hdr, 100, BS - 1).unwrap();
    assert!(s.truncated && !s.partial && s.keys.is_empty());
    let s = snapshot_in(&heap.m, &hmap_l(), &hmap_kl(), hdr, 100, BS + 450).unwrap();
    assert!(s.truncated && !s.partial);
    assert_eq!(s.keys.len(), 2);
    // Two walks of the bucket array and the strings of two keys.
    assert!(s.bytes_read <= 2 * BS + 450, "{}", s.bytes_read);
    let s = snapshot_in(&heap.m, &hmap_l(), &hmap_kl(), hdr, 100, BS + 600).unwrap();
    assert!(!s.truncated && !s.partial);
    assert_eq!(s.keys.len(), 3);
}

/// A header that changes during the walk makes the walk retry; one that
/// keeps changing gives a partial snapshot; unreadable buckets too.
#[test]
fn hmap_retries_when_the_map_changes() {
    let mut heap = Heap::new();
    let b = bucket(&mut heap, &[(5, "a"), (6, "b")], 0);
    let b_addr = heap.alloc(b);
    let hdr = heap.alloc(hmap_header(2, 0, b_addr, 0, 0));
    // The first walk sees the map cleared under it; the second is quiet.
    let mut calls = 0u32;
    *heap.m.on_read.borrow_mut() = Some(Box::new(move |m: &FakeMem| {
        calls += 1;
        if calls == 1 {
            m.poke(hdr + 12, &78u32.to_le_bytes()); // hash0: cleared
        }
    }));
    let s = snapshot_in(&heap.m, &hmap_l(), &hmap_kl(), hdr, 100, MAX_SNAPSHOT_BYTES).unwrap();
    assert!(!s.partial);
    assert_eq!(s.attempts, 2);
    assert_eq!(texts(&s), ["a", "b"]);
    // A key replaced by another while the header stays the same (one
    // delete, one insert): the second walk differs, the third agrees.
    let c = heap.string("c");
    let mut calls = 0u32;
    *heap.m.on_read.borrow_mut() = Some(Box::new(move |m: &FakeMem| {
        calls += 1;
        if calls == 1 {
            m.poke(b_addr + 8, &c);
        }
    }));
    let s = snapshot_in(&heap.m, &hmap_l(), &hmap_kl(), hdr, 100, MAX_SNAPSHOT_BYTES).unwrap();
    assert!(!s.partial);
    assert_eq!(s.attempts, 2);
    assert_eq!(texts(&s), ["b", "c"]);
    // Always changing.
    *heap.m.on_read.borrow_mut() = Some(Box::new(move |m: &FakeMem| {
        let mut c = [0u8; 1];
        m.read(hdr, &mut c);
        m.poke(hdr, &[c[0].wrapping_add(1)]);
    }));
    let s = snapshot_in(&heap.m, &hmap_l(), &hmap_kl(), hdr, 100, MAX_SNAPSHOT_BYTES).unwrap();
    assert!(s.partial);
    assert_eq!(s.attempts, ATTEMPTS);
    *heap.m.on_read.borrow_mut() = None;
    // Unreadable bucket array: partial, no panic.
    heap.m.poke(hdr, &2u64.to_le_bytes());
    heap.m.remove(b_addr);
    let s = snapshot_in(&heap.m, &hmap_l(), &hmap_kl(), hdr, 100, MAX_SNAPSHOT_BYTES).unwrap();
    assert!(s.partial && s.keys.is_empty());
    // Garbage header: None.
    heap.m.poke(hdr + 9, &[200]);
    assert!(snapshot_in(&heap.m, &hmap_l(), &hmap_kl(), hdr, 100, MAX_SNAPSHOT_BYTES).is_none());
    assert!(snapshot_in(&heap.m, &hmap_l(), &hmap_kl(), 8, 100, MAX_SNAPSHOT_BYTES).is_none());
}

/// A string key's identity is its content and length, not where it lives.
#[test]
fn string_identity_is_content() {
    let mut heap = Heap::new();
    let mut b = bucket(&mut heap, &[(5, "same"), (6, "other")], 0);
    let b_addr = heap.alloc(b.clone());
    let hdr = heap.alloc(hmap_header(2, 0, b_addr, 0, 0));
    let s1 = snapshot_in(&heap.m, &hmap_l(), &hmap_kl(), hdr, 100, MAX_SNAPSHOT_BYTES).unwrap();
    // Same strings at new addresses (an assignment of an existing key
    // stores the new header).
    let same = heap.string("same");
    b[8..24].copy_from_slice(&same);
    heap.m.poke(b_addr, &b);
    let s2 = snapshot_in(&heap.m, &hmap_l(), &hmap_kl(), hdr, 100, MAX_SNAPSHOT_BYTES).unwrap();
    let ids = |s: &Snapshot| {
        let mut v: Vec<u64> = s.keys.iter().map(|k| k.id).collect();
        v.sort_unstable();
        v
    };
    assert_eq!(ids(&s1), ids(&s2));
    assert_ne!(s1.keys[0].id, s1.keys[1].id);
}

fn swiss_l() -> RuntimeLayout {
    RuntimeLayout::builtin(26, MapImpl::Swiss, GoArch::Amd64)
}

/// Swiss, key `struct{A int32; S string}` (24 bytes), elem bool: slot 32.
fn swiss_kl(keys_off: u64, stride: u64, group: u64) -> KeyLayout {
    let kt = t(
        "struct { A int32; S string }",
        24,
        KeyKind::Struct(vec![
            KeyField {
                name: "A".into(),
                offset: 0,
                ty: t("int32", 4, KeyKind::Int),
            },
            KeyField {
                name: "S".into(),
                offset: 8,
                ty: string_t(),
            },
        ]),
    );
    KeyLayout::swiss("m".into(), kt, false, group, keys_off, stride).unwrap()
}

fn group(heap: &mut Heap, kl: &KeyLayout, keys: &[(u8, i32, &str)]) -> Vec<u8> {
    let mut g = vec![0u8; usize::try_from(kl.group_size).unwrap()];
    let mut ctrl = [0x80u8; 8];
    for (i, &(c, a, s)) in keys.iter().enumerate() {
        ctrl[i] = c;
        let o = usize::try_from(kl.keys_off + i as u64 * kl.key_stride).unwrap();
        g[o..o + 4].copy_from_slice(&a.to_le_bytes());
        // Padding garbage must not matter.
        g[o + 4..o + 8].copy_from_slice(&[0xde, 0xad, 0xbe, u8::try_from(i).unwrap()]);
        let h = heap.string(s);
        g[o + 8..o + 24].copy_from_slice(&h);
    }
    g[..8].copy_from_slice(&ctrl);
    g
}

fn swiss_header(used: u64, dir_ptr: u64, dir_len: u64, depth: u8) -> Vec<u8> {
    let mut h = vec![0u8; 48];
    h[0..8].copy_from_slice(&used.to_le_bytes());
    h[8..16].copy_from_slice(&99u64.to_le_bytes());
    h[16..24].copy_from_slice(&dir_ptr.to_le_bytes());
    h[24..32].copy_from_slice(&dir_len.to_le_bytes());
    h[32] = depth;
    h
}

fn table(used: u16, data: u64, mask: u64) -> Vec<u8> {
    let mut t = vec![0u8; 32];
    t[0..2].copy_from_slice(&used.to_le_bytes());
    t[16..24].copy_from_slice(&data.to_le_bytes());
    t[24..32].copy_from_slice(&mask.to_le_bytes());
    t
}

fn struct_keys(s: &Snapshot) -> Vec<(i32, String)> {
    let mut v: Vec<(i32, String)> = s
        .keys
        .iter()
        .map(|k| {
            (
                i32::from_le_bytes(k.raw.as_bytes()[..4].try_into().unwrap()),
                String::from_utf8_lossy(k.strs[0].text.as_deref().unwrap()).into_owned(),
            )
        })
        .collect();
    v.sort();
    v
}

/// Swiss small map (one group) and directory (two entries sharing one
/// table plus another table of two groups), for the 1.24-1.26 layout
/// (keys at 8 + i*SlotSize) and the 1.27 split layout (keys[8] then
/// elems[8]: KeysOff 8, KeyStride 24). Deleted (0xfe) and empty (0x80)
/// slots are skipped.
#[test]
fn swiss_walks() {
    for kl in [
        swiss_kl(8, 32, 8 + 8 * 32),
        swiss_kl(8, 24, 8 + 8 * 24 + 8 * 8),
    ] {
        let mut heap = Heap::new();
        let g = group(
            &mut heap,
            &kl,
            &[(0x12, 1, "x"), (0xfe, 9, "dead"), (0x7f, 2, "yy")],
        );
        let g_addr = heap.alloc(g);
        let hdr = heap.alloc(swiss_header(2, g_addr, 0, 0));
        let s = snapshot_in(&heap.m, &swiss_l(), &kl, hdr, 100, MAX_SNAPSHOT_BYTES).unwrap();
        assert_eq!(struct_keys(&s), [(1, "x".into()), (2, "yy".into())]);
        assert!(!s.partial);
        // Padding differs between slots but does not enter the identity:
        // the same key in another slot has the same id.
        let g2 = group(&mut heap, &kl, &[(0x80, 0, ""), (0x01, 1, "x")]);
        let g2_addr = heap.alloc(g2);
        let hdr2 = heap.alloc(swiss_header(1, g2_addr, 0, 0));
        let s2 = snapshot_in(&heap.m, &swiss_l(), &kl, hdr2, 100, MAX_SNAPSHOT_BYTES).unwrap();
        assert!(s.keys.iter().any(|k| k.id == s2.keys[0].id));

        let mut ga = group(&mut heap, &kl, &[(1, 10, "t1-a")]);
        ga.extend(group(&mut heap, &kl, &[(1, 11, "t1-b"), (2, 12, "t1-c")]));
        let ga_addr = heap.alloc(ga);
        let gb = group(&mut heap, &kl, &[(3, 20, "t2-a")]);
        let gb_addr = heap.alloc(gb);
        let t1 = heap.alloc(table(3, ga_addr, 1));
        let t2 = heap.alloc(table(1, gb_addr, 0));
        let mut dir = Vec::new();
        for p in [t1, t1, t2, t1] {
            dir.extend_from_slice(&p.to_le_bytes());
        }
        let dir_addr = heap.alloc(dir);
        let hdr = heap.alloc(swiss_header(4, dir_addr, 4, 2));
        let s = snapshot_in(&heap.m, &swiss_l(), &kl, hdr, 100, MAX_SNAPSHOT_BYTES).unwrap();
        assert_eq!(
            struct_keys(&s),
            [
                (10, "t1-a".into()),
                (11, "t1-b".into()),
                (12, "t1-c".into()),
                (20, "t2-a".into())
            ]
        );
        assert!(!s.partial, "{s:?}");
        // A table whose group array moved (it grew) while being read.
        let seen = std::rc::Rc::new(std::cell::Cell::new(false));
        let seen2 = seen.clone();
        *heap.m.on_read.borrow_mut() = Some(Box::new(move |m: &FakeMem| {
            if !seen2.replace(true) {
                m.poke(t2 + 16, &(gb_addr + 8).to_le_bytes());
                m.poke(t2 + 16, &gb_addr.to_le_bytes());
                m.poke(t2, &2u16.to_le_bytes());
            }
        }));
        let s = snapshot_in(&heap.m, &swiss_l(), &kl, hdr, 100, MAX_SNAPSHOT_BYTES).unwrap();
        assert!(s.attempts >= 2, "{s:?}");
        *heap.m.on_read.borrow_mut() = None;
        // Nil dirPtr: an empty map allocated lazily.
        let hdr = heap.alloc(swiss_header(0, 0, 0, 0));
        let s = snapshot_in(&heap.m, &swiss_l(), &kl, hdr, 100, MAX_SNAPSHOT_BYTES).unwrap();
        assert!(s.keys.is_empty() && !s.partial);
    }
}

/// Indirect keys are read through their pointers; pointer keys expose
/// the pointer.
#[test]
fn indirect_and_pointer_keys() {
    let mut heap = Heap::new();
    let big = t("main.Big", 160, KeyKind::Other(17));
    let bs = 8 + 8 * 8 + 8 * 8 + 8;
    let kl = KeyLayout::hmap("map[main.Big]int".into(), big, true, 8, bs).unwrap();
    let k1 = heap.alloc(vec![1u8; 160]);
    let k2 = heap.alloc(vec![2u8; 160]);
    let mut b = vec![0u8; usize::try_from(bs).unwrap()];
    b[0] = 5;
    b[1] = 5;
    b[8..16].copy_from_slice(&k1.to_le_bytes());
    b[16..24].copy_from_slice(&k2.to_le_bytes());
    let b_addr = heap.alloc(b);
    let hdr = heap.alloc(hmap_header(2, 0, b_addr, 0, 0));
    let s = snapshot_in(&heap.m, &hmap_l(), &kl, hdr, 100, MAX_SNAPSHOT_BYTES).unwrap();
    let mut raws: Vec<u8> = s.keys.iter().map(|k| k.raw.as_bytes()[0]).collect();
    raws.sort_unstable();
    assert_eq!(raws, [1, 2]);
    assert_eq!(s.keys[0].raw.as_bytes().len(), RAW_CAP);
    assert!(s.keys.iter().all(|k| k.ptr.is_none()));
    // Unreadable pointee: partial.
    heap.m.remove(k2);
    let s = snapshot_in(&heap.m, &hmap_l(), &kl, hdr, 100, MAX_SNAPSHOT_BYTES).unwrap();
    assert!(s.partial);

    let pt = t("*main.T", 8, KeyKind::Pointer);
    let bs = 8 + 8 * 8 + 8 * 8 + 8;
    let kl = KeyLayout::hmap("map[*main.T]int".into(), pt, false, 8, bs).unwrap();
    let mut b = vec![0u8; usize::try_from(bs).unwrap()];
    b[3] = 5;
    b[8 + 3 * 8..8 + 4 * 8].copy_from_slice(&0xc000_1234u64.to_le_bytes());
    let b_addr = heap.alloc(b);
    let hdr = heap.alloc(hmap_header(1, 0, b_addr, 0, 0));
    let s = snapshot_in(&heap.m, &hmap_l(), &kl, hdr, 100, MAX_SNAPSHOT_BYTES).unwrap();
    assert_eq!(s.keys[0].ptr, Some(0xc000_1234));
}

/// -0.0 and +0.0 are one key; padding is not hashed.
#[test]
fn float_zero_is_one_key() {
    let kl = KeyLayout::hmap(
        "m".into(),
        t("float64", 8, KeyKind::Float),
        false,
        8,
        8 + 64 + 64 + 8,
    )
    .unwrap();
    assert_eq!(
        identity(&kl, &0.0f64.to_le_bytes(), &[]),
        identity(&kl, &(-0.0f64).to_le_bytes(), &[])
    );
    assert_ne!(
        identity(&kl, &1.0f64.to_le_bytes(), &[]),
        identity(&kl, &(-1.0f64).to_le_bytes(), &[])
    );
}
