//! Reading every key of one live map.
//!
//! hmap (`go1.18:src/runtime/map.go`, go-runtime.md 3.1): 2^B buckets of
//! `bucket_size` bytes, each `tophash[8]` @0, `keys[8]` @8, the overflow
//! pointer in the last word; tophash >= 5 marks a full slot. While the map
//! grows (`oldbuckets != 0`) an old bucket whose `tophash[0]` is 2..=4 has
//! been moved; the others still hold live keys.
//!
//! Swiss (`1.24:src/internal/runtime/maps`, go-runtime.md 3.4): `dirLen == 0`
//! means `dirPtr` is one group; else `dirPtr` is `[dirLen]*table` (entries
//! repeat), each table `groups.data` with `lengthMask + 1` groups. A group is
//! a ctrl word (byte i for slot i; top bit clear = full) then slots; slot i's
//! key is at `keys_off + i * key_stride`.
//!
//! Arrays are read in chunks of [`CHUNK`] bytes batched into few
//! `process_vm_readv` calls, keys' strings in batches. The map may change
//! while it is read, so a snapshot is a double collect: walk, read strings,
//! then read the header (and Swiss table headers) and walk again; the keys
//! are a moment's keys when both walks found the same slot bytes under the
//! same header. Otherwise it tries again; after [`ATTEMPTS`] the last keys
//! are returned marked `partial`.
use std::collections::HashSet;

use super::{IdHasher, KeyKind, KeyLayout, Reader, Seg, le16, le64};
use crate::{
    inspect::{MapImpl, RuntimeLayout},
    sample::{self, Memory},
};

/// Bytes of a key slot kept in [`Key::raw`] for rendering.
pub const RAW_CAP: usize = 64;
/// Bytes of a string key's content read (and hashed, with the length).
pub const STR_READ: u64 = 256;
/// Bytes of an indirect key read (and hashed).
pub const MAX_KEY_BYTES: u64 = 4096;
/// Most bytes one walk of one map reads (arrays, indirect keys and strings);
/// a bigger map is `truncated`. Also bounds the memory a walk holds. A
/// snapshot makes at most `ATTEMPTS + 1` walks.
pub const MAX_SNAPSHOT_BYTES: u64 = 128 << 20;
/// Bytes per read of bucket and group arrays.
pub const CHUNK: u64 = 64 << 10;
/// Walks tried before giving up on a consistent one.
pub const ATTEMPTS: u32 = 3;
/// String leaves per key whose content is read (more: only lengths hashed).
pub const MAX_STR_LEAVES: usize = 8;
/// Overflow buckets followed per walk.
const MAX_OVERFLOW: usize = 1 << 20;
/// Chunks held in memory at once.
const BATCH: usize = 256;

/// The first [`RAW_CAP`] bytes of a key, inline.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct RawKey {
    len: u8,
    buf: [u8; RAW_CAP],
}

impl RawKey {
    /// Keeps the first [`RAW_CAP`] bytes of `b`.
    #[must_use]
    pub fn new(b: &[u8]) -> Self {
        let n = b.len().min(RAW_CAP);
        let mut buf = [0u8; RAW_CAP];
        buf[..n].copy_from_slice(&b[..n]);
        Self {
            len: u8::try_from(n).unwrap_or(0),
            buf,
        }
    }

    /// The bytes kept.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..usize::from(self.len)]
    }
}

impl std::fmt::Debug for RawKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for b in self.as_bytes() {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// A string in a key (the key itself, or a string field or element).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StrVal {
    /// Length in bytes.
    pub len: u64,
    /// Hash of the first [`STR_READ`] bytes and the length.
    pub hash: u64,
    /// The first up to [`STR_READ`] bytes; `None` when unreadable.
    pub text: Option<Box<[u8]>>,
}

/// One key.
#[derive(Clone, Debug)]
pub struct Key {
    /// Identity: a hash of the key's content (string contents, not their
    /// addresses; padding left out).
    pub id: u64,
    /// The first [`RAW_CAP`] bytes of the key (of the pointed-to key when
    /// stored indirectly).
    pub raw: RawKey,
    /// The pointer, for `*T` and `unsafe.Pointer` keys.
    pub ptr: Option<u64>,
    /// String leaves in type order, the first [`MAX_STR_LEAVES`].
    pub strs: Vec<StrVal>,
}

/// The keys of one map at one moment.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// Keys found (each once).
    pub keys: Vec<Key>,
    /// `len(m)` from the header.
    pub header_len: u64,
    /// The map's hash seed (hmap `hash0`, Swiss `seed`): another seed with
    /// entries is another map at the same address.
    pub seed: u64,
    /// The map changed while being read, or some memory was unreadable: keys
    /// may be missing (or, rarely, stale).
    pub partial: bool,
    /// Stopped at `max_keys` or [`MAX_SNAPSHOT_BYTES`].
    pub truncated: bool,
    /// Walks made (1 to [`ATTEMPTS`]).
    pub attempts: u32,
    /// Bytes read from the target, all attempts.
    pub bytes_read: u64,
    /// When the walk that produced it ended (`CLOCK_MONOTONIC` ns): every
    /// key in it was in the map before then.
    pub done_ns: u64,
}

/// Reads the keys of the map whose header is at `map_addr`, at most
/// `max_keys` of them. `None` when the header is unreadable or not a map of
/// `kl.imp` (freed and reused memory, for example). Never panics.
#[must_use]
pub fn snapshot(
    mem: &Memory,
    layout: &RuntimeLayout,
    kl: &KeyLayout,
    map_addr: u64,
    max_keys: usize,
) -> Option<Snapshot> {
    snapshot_in(mem, layout, kl, map_addr, max_keys, MAX_SNAPSHOT_BYTES)
}

/// What the header (and Swiss table headers) said; equal before and after a
/// walk means no resize, clear or count change happened in between.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Shape {
    Hmap(HmapHdr),
    Swiss {
        used: u64,
        seed: u64,
        dir_ptr: u64,
        dir_len: u64,
        /// (table, groups.data, lengthMask, used) of each distinct table.
        tables: Vec<(u64, u64, u64, u16)>,
    },
}

impl Shape {
    /// Entries the header counts.
    pub(super) const fn count(&self) -> u64 {
        match self {
            Self::Hmap(h) => h.count,
            Self::Swiss { used, .. } => *used,
        }
    }
    const fn seed(&self) -> u64 {
        match self {
            Self::Hmap(h) => h.hash0 as u64,
            Self::Swiss { seed, .. } => *seed,
        }
    }
    const fn writing(&self) -> bool {
        // go1.18:src/runtime/map.go `hashWriting` = 4.
        matches!(self, Self::Hmap(h) if h.flags & 4 != 0)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct HmapHdr {
    count: u64,
    flags: u8,
    b: u8,
    hash0: u32,
    buckets: u64,
    oldbuckets: u64,
    nevacuate: u64,
}

fn opt(o: Option<u32>) -> Option<u64> {
    o.map(u64::from)
}

fn read_hmap<R: Reader>(r: &R, l: &RuntimeLayout, addr: u64) -> Option<HmapHdr> {
    let mut b = vec![0u8; sample::header_len(l, MapImpl::Hmap)];
    if addr == 0 || !r.read(addr, &mut b) {
        return None;
    }
    let byte = |o: Option<u32>| b.get(usize::try_from(o?).ok()?).copied();
    let h = HmapHdr {
        count: le64(&b, opt(l.hmap_count)?)?,
        flags: byte(l.hmap_flags)?,
        b: byte(l.hmap_b)?,
        hash0: super::le32(&b, opt(l.hmap_hash0)?)?,
        buckets: le64(&b, opt(l.hmap_buckets)?)?,
        oldbuckets: le64(&b, opt(l.hmap_oldbuckets)?)?,
        nevacuate: l
            .hmap_nevacuate
            .and_then(|o| le64(&b, u64::from(o)))
            .unwrap_or(0),
    };
    // Same sanity rules as sample::decode_hmap.
    if h.b > 48 || (h.buckets == 0 && h.b > 0) || h.count > 1 << 52 {
        return None;
    }
    Some(h)
}

/// Reads the Swiss header and, for a directory, its distinct tables.
fn read_swiss<R: Reader>(r: &R, l: &RuntimeLayout, addr: u64) -> Option<(Shape, bool)> {
    let mut b = vec![0u8; sample::header_len(l, MapImpl::Swiss)];
    if addr == 0 || !r.read(addr, &mut b) {
        return None;
    }
    let h = sample::decode_swiss(&b, l)?;
    let mut tables = Vec::new();
    let mut ok = true;
    if h.dir_len > 0 {
        let mut dir = vec![0u8; usize::try_from(h.dir_len * 8).ok()?];
        if !r.read(h.dir_ptr, &mut dir) {
            return None;
        }
        let mut ptrs: Vec<u64> = dir
            .chunks_exact(8)
            .filter_map(|c| le64(c, 0))
            .filter(|&p| p != 0)
            .collect();
        ptrs.sort_unstable();
        ptrs.dedup();
        let (d_off, m_off, u_off) = (
            opt(l.table_groups_data)?,
            opt(l.table_groups_length_mask)?,
            opt(l.table_used)?,
        );
        let len = usize::try_from(d_off.max(m_off) + 8).ok()?;
        let regs: Vec<(u64, usize)> = ptrs.iter().map(|&p| (p, len)).collect();
        for (p, t) in ptrs.iter().zip(r.read_many(&regs)) {
            match t
                .as_deref()
                .and_then(|t| Some((le64(t, d_off)?, le64(t, m_off)?, le16(t, u_off)?)))
            {
                Some((data, mask, used)) => tables.push((*p, data, mask, used)),
                None => ok = false,
            }
        }
    }
    Some((
        Shape::Swiss {
            used: h.used,
            seed: h.seed,
            dir_ptr: h.dir_ptr,
            dir_len: h.dir_len,
            tables,
        },
        ok,
    ))
}

pub(super) fn read_shape<R: Reader>(
    r: &R,
    l: &RuntimeLayout,
    kl: &KeyLayout,
    addr: u64,
) -> Option<(Shape, bool)> {
    match kl.imp {
        MapImpl::Hmap => read_hmap(r, l, addr).map(|h| (Shape::Hmap(h), true)),
        MapImpl::Swiss => read_swiss(r, l, addr),
    }
}

/// Key slots gathered by one walk.
pub(super) struct Walk<'a, R> {
    r: &'a R,
    kl: &'a KeyLayout,
    max_keys: usize,
    max_bytes: u64,
    /// Key slot bytes, `slot_key_size` each.
    pub(super) slots: Vec<u8>,
    n: usize,
    /// Where slot `i`'s element is in its bucket or group, when elements
    /// are gathered too: `base + i * stride`.
    elems: Option<(u64, u64)>,
    /// (address, word) of each gathered slot's element, with `elems`.
    pub(super) values: Vec<(u64, u64)>,
    pub(super) unreadable: bool,
    pub(super) truncated: bool,
    pub(super) bytes: u64,
}

impl<R: Reader> Walk<'_, R> {
    fn take(&mut self, n: u64) -> bool {
        if self.bytes.saturating_add(n) > self.max_bytes {
            self.truncated = true;
            return false;
        }
        self.bytes += n;
        true
    }

    /// Pushes the key slot at `off` of `buf` (the bucket or group at
    /// `at`), slot `i` of it.
    fn push(&mut self, buf: &[u8], at: u64, off: u64, i: u64) {
        if self.n >= self.max_keys {
            self.truncated = true;
            return;
        }
        let sz = self.kl.slot_key_size;
        match usize::try_from(off)
            .ok()
            .and_then(|o| buf.get(o..o + usize::try_from(sz).ok()?))
        {
            Some(s) => {
                if let Some((base, stride)) = self.elems {
                    let o = base.saturating_add(i.saturating_mul(stride));
                    match le64(buf, o) {
                        Some(v) => self.values.push((at.wrapping_add(o), v)),
                        None => {
                            self.unreadable = true;
                            return;
                        }
                    }
                }
                self.slots.extend_from_slice(s);
                self.n += 1;
            }
            None => self.unreadable = true,
        }
    }

    /// Reads `[base, base + count * unit)` in chunks of whole units (as
    /// many units as the byte budget allows) and calls `f(self, unit
    /// address, unit_bytes)` for each unit read.
    fn chunked(
        &mut self,
        base: u64,
        mut count: u64,
        unit: u64,
        mut f: impl FnMut(&mut Self, u64, &[u8]),
    ) {
        if count == 0 || unit == 0 {
            return;
        }
        let fit = self.max_bytes.saturating_sub(self.bytes) / unit;
        if count > fit {
            count = fit;
            self.truncated = true;
        }
        let per = (CHUNK / unit).max(1);
        let regions: Vec<(u64, usize)> = (0..count.div_ceil(per))
            .filter_map(|c| {
                let first = c * per;
                let n = per.min(count - first);
                Some((
                    base.checked_add(first * unit)?,
                    usize::try_from(n * unit).ok()?,
                ))
            })
            .collect();
        for batch in regions.chunks(BATCH) {
            let regs: Vec<(u64, usize)> = batch.iter().map(|&(a, n)| (a, n)).collect();
            self.bytes += regs.iter().map(|r| r.1 as u64).sum::<u64>();
            for (buf, &(at, _)) in self.r.read_many(&regs).into_iter().zip(&regs) {
                let Some(buf) = buf else {
                    self.unreadable = true;
                    continue;
                };
                let chunks = buf.chunks_exact(usize::try_from(unit).unwrap_or(usize::MAX));
                for (j, u) in (0u64..).zip(chunks) {
                    if self.n >= self.max_keys && self.truncated {
                        return;
                    }
                    f(self, at.wrapping_add(j * unit), u);
                }
            }
        }
    }

    /// Scans one hmap bucket (at `at`); returns its overflow pointer.
    fn hmap_bucket(&mut self, at: u64, b: &[u8]) -> u64 {
        for (i, &top) in (0u64..).zip(&b[..8]) {
            // minTopHash = 5: below are empty and evacuated marks.
            if top >= 5 {
                self.push(b, at, 8 + i * self.kl.slot_key_size, i);
            }
        }
        le64(b, self.kl.bucket_size - 8).unwrap_or(0)
    }

    /// Follows overflow chains breadth first.
    fn overflow(&mut self, mut next: Vec<u64>) {
        let bs = self.kl.bucket_size;
        let mut seen: HashSet<u64> = HashSet::new();
        while !next.is_empty() && !self.truncated {
            next.retain(|&p| p != 0 && seen.insert(p));
            if seen.len() > MAX_OVERFLOW {
                self.unreadable = true;
                return;
            }
            if !self.take(next.len() as u64 * bs) {
                return;
            }
            let regs: Vec<(u64, usize)> = next
                .iter()
                .map(|&p| (p, usize::try_from(bs).unwrap_or(0)))
                .collect();
            let mut more = Vec::new();
            for (b, &(at, _)) in self.r.read_many(&regs).into_iter().zip(&regs) {
                match b {
                    Some(b) => more.push(self.hmap_bucket(at, &b)),
                    None => self.unreadable = true,
                }
            }
            next = more;
        }
    }

    fn walk_hmap(&mut self, h: &HmapHdr) {
        let bs = self.kl.bucket_size;
        let nb = 1u64 << h.b;
        let mut over = Vec::new();
        if h.buckets != 0 {
            self.chunked(h.buckets, nb, bs, |w, at, b| {
                over.push(w.hmap_bucket(at, b));
            });
        }
        if h.oldbuckets != 0 {
            // sameSizeGrow (flags & 8): as many old buckets as new.
            let old_n = if h.flags & 8 != 0 { nb } else { nb >> 1 };
            self.chunked(h.oldbuckets, old_n.max(1), bs, |w, at, b| {
                // evacuatedX, evacuatedY, evacuatedEmpty: moved to the new array.
                if !(2..=4).contains(&b[0]) {
                    over.push(w.hmap_bucket(at, b));
                }
            });
        }
        self.overflow(over);
    }

    fn swiss_group(&mut self, at: u64, g: &[u8]) {
        let Some(ctrl) = le64(g, 0) else {
            self.unreadable = true;
            return;
        };
        for i in 0..8u64 {
            // ctrlEmpty 0x80, ctrlDeleted 0xfe; full is 0b0hhhhhhh.
            if (ctrl >> (8 * i)) & 0x80 == 0 {
                self.push(g, at, self.kl.keys_off + i * self.kl.key_stride, i);
            }
        }
    }

    fn walk_swiss(&mut self, s: &Shape) {
        let Shape::Swiss {
            dir_ptr,
            dir_len,
            tables,
            ..
        } = s
        else {
            return;
        };
        let gs = self.kl.group_size;
        if *dir_len == 0 {
            if *dir_ptr != 0 {
                self.chunked(*dir_ptr, 1, gs, |w, at, g| w.swiss_group(at, g));
            }
            return;
        }
        for &(_, data, mask, _) in tables {
            // lengthMask = groups - 1; a table holds at most 1024 slots
            // (maxTableCapacity), 128 groups; allow some slack.
            if data == 0 || mask >= 1 << 12 || !(mask + 1).is_power_of_two() {
                self.unreadable = true;
                continue;
            }
            self.chunked(data, mask + 1, gs, |w, at, g| w.swiss_group(at, g));
            if self.truncated {
                return;
            }
        }
    }
}

/// Hashes the content of `key` (its bytes, `strs` its string leaves).
fn identity(kl: &KeyLayout, key: &[u8], strs: &[StrVal]) -> u64 {
    let mut h = IdHasher::new();
    let mut si = 0usize;
    for seg in &kl.plan.segs {
        match *seg {
            Seg::Bytes { off, len } => {
                let o = usize::try_from(off).unwrap_or(usize::MAX);
                let e = usize::try_from(off.saturating_add(len)).unwrap_or(usize::MAX);
                if let Some(b) = key.get(o.min(key.len())..e.min(key.len())) {
                    h.write(b);
                }
            }
            Seg::Str { off } => {
                match strs.get(si) {
                    Some(s) => h.word(s.hash),
                    // Past MAX_STR_LEAVES: the length only.
                    None => h.word(le64(key, off + 8).unwrap_or(0)),
                }
                si += 1;
            }
            Seg::Float { off, size } => {
                let o = usize::try_from(off).unwrap_or(usize::MAX);
                let z = usize::try_from(size).unwrap_or(0);
                if let Some(b) = key.get(o..o.saturating_add(z)) {
                    // -0.0 == +0.0: hash the bits of +0 for both.
                    let neg_zero = b
                        .iter()
                        .rev()
                        .enumerate()
                        .all(|(i, &x)| if i == 0 { x == 0x80 } else { x == 0 });
                    if neg_zero {
                        h.write(&vec![0u8; z]);
                    } else {
                        h.write(b);
                    }
                }
            }
        }
    }
    h.finish()
}

pub(super) fn str_hash(text: &[u8], len: u64) -> u64 {
    let mut h = IdHasher::new();
    h.write(text);
    h.word(len);
    h.finish()
}

/// Turns gathered slots into keys: follows indirect keys, reads strings,
/// hashes. Returns the keys and whether anything was unreadable.
/// `budget`: bytes the walk may still read. Returns the keys, whether
/// anything was unreadable, whether the budget cut keys off, and bytes read.
pub(super) fn materialize<R: Reader>(
    r: &R,
    kl: &KeyLayout,
    slots: &[u8],
    mut budget: u64,
) -> (Vec<Key>, bool, bool, u64) {
    let sz = usize::try_from(kl.slot_key_size).unwrap_or(0).max(1);
    let mut unreadable = false;
    let mut truncated = false;
    let mut bytes = 0u64;
    let mut nkeys = slots.len() / sz;
    let owned: Vec<Option<Vec<u8>>> = if kl.indirect_key {
        let want = kl.key_size.min(MAX_KEY_BYTES);
        let fit = usize::try_from(budget / want.max(1)).unwrap_or(usize::MAX);
        if nkeys > fit {
            nkeys = fit;
            truncated = true;
        }
        let want = usize::try_from(want).unwrap_or(0);
        let regs: Vec<(u64, usize)> = slots
            .chunks_exact(8)
            .take(nkeys)
            .map(|c| (le64(c, 0).unwrap_or(0), want))
            .collect();
        bytes += (regs.len() * want) as u64;
        budget = budget.saturating_sub(bytes);
        r.read_many(&regs)
    } else {
        Vec::new()
    };
    let mut views: Vec<Option<&[u8]>> = if kl.indirect_key {
        owned.iter().map(Option::as_deref).collect()
    } else {
        slots.chunks_exact(sz).map(Some).collect()
    };
    // Strings: each key's headers, and content regions for those not empty.
    let nstr = kl.plan.strs.len().min(MAX_STR_LEAVES);
    let mut regs: Vec<(u64, usize)> = Vec::new();
    let mut hdrs: Vec<(u64, u64)> = Vec::with_capacity(views.len() * nstr);
    for (i, v) in views.iter().enumerate() {
        let (r0, h0) = (regs.len(), hdrs.len());
        let mut cost = 0u64;
        for &off in &kl.plan.strs[..nstr] {
            let (p, n) = v
                .and_then(|v| Some((le64(v, off)?, le64(v, off + 8)?)))
                .unwrap_or((0, 0));
            hdrs.push((p, n));
            if n > 0 && p != 0 && n < 1 << 48 {
                cost += n.min(STR_READ);
                regs.push((p, usize::try_from(n.min(STR_READ)).unwrap_or(0)));
            }
        }
        if cost > budget {
            regs.truncate(r0);
            hdrs.truncate(h0);
            nkeys = i;
            truncated = true;
            break;
        }
        budget -= cost;
        bytes += cost;
    }
    views.truncate(nkeys);
    let mut texts = r.read_many(&regs).into_iter();
    let mut keys = Vec::with_capacity(views.len());
    let is_ptr = matches!(kl.key_type.kind, KeyKind::Pointer | KeyKind::UnsafePointer);
    for (i, v) in views.iter().enumerate() {
        let hs = &hdrs[i * nstr..(i + 1) * nstr];
        let mut strs = Vec::with_capacity(nstr);
        for &(p, n) in hs {
            let text = if n == 0 {
                Some(Box::default())
            } else if p == 0 || n >= 1 << 48 {
                None
            } else {
                texts.next().flatten().map(Vec::into_boxed_slice)
            };
            if text.is_none() {
                unreadable = true;
            }
            let hash = match &text {
                Some(t) => str_hash(t, n),
                None => str_hash(&p.to_le_bytes(), n),
            };
            strs.push(StrVal { len: n, hash, text });
        }
        let Some(v) = v else {
            unreadable = true;
            continue;
        };
        keys.push(Key {
            id: identity(kl, v, &strs),
            raw: RawKey::new(v),
            ptr: if is_ptr { le64(v, 0) } else { None },
            strs,
        });
    }
    (keys, unreadable, truncated, bytes)
}

/// Walks the map of shape `shape`, gathering key slots.
fn walk<'a, R: Reader>(
    r: &'a R,
    kl: &'a KeyLayout,
    shape_ok: &(Shape, bool),
    max_keys: usize,
    max_bytes: u64,
) -> Walk<'a, R> {
    walk_with(r, kl, shape_ok, max_keys, max_bytes, None)
}

/// [`walk`], also gathering each slot's element word when `elems`.
pub(super) fn walk_with<'a, R: Reader>(
    r: &'a R,
    kl: &'a KeyLayout,
    (shape, tables_ok): &(Shape, bool),
    max_keys: usize,
    max_bytes: u64,
    elems: Option<(u64, u64)>,
) -> Walk<'a, R> {
    let mut w = Walk {
        r,
        kl,
        max_keys,
        max_bytes,
        slots: Vec::new(),
        n: 0,
        elems,
        values: Vec::new(),
        unreadable: !tables_ok,
        truncated: false,
        bytes: 0,
    };
    match shape {
        Shape::Hmap(h) => w.walk_hmap(h),
        s @ Shape::Swiss { .. } => w.walk_swiss(s),
    }
    w
}

/// A double collect: walk, read the keys' strings, then walk again. Two
/// walks that gather the same slot bytes, with the same header (and Swiss
/// table headers) around them, saw a map that did not change in between
/// (short of a key deleted and put back into the same slot), so the keys
/// read between them were all in the map at one moment. Otherwise the
/// second walk becomes the first of the next attempt.
pub(crate) fn snapshot_in<R: Reader>(
    r: &R,
    l: &RuntimeLayout,
    kl: &KeyLayout,
    map_addr: u64,
    max_keys: usize,
    max_bytes: u64,
) -> Option<Snapshot> {
    let mut before = read_shape(r, l, kl, map_addr)?;
    let mut w = walk(r, kl, &before, max_keys, max_bytes);
    let mut bytes_read = w.bytes;
    for attempt in 1..=ATTEMPTS {
        let (mut keys, unreadable, cut, more) =
            materialize(r, kl, &w.slots, max_bytes.saturating_sub(w.bytes));
        let truncated = w.truncated || cut;
        bytes_read += more;
        let count = before.0.count();
        if matches!(&before.0, Shape::Hmap(h) if h.oldbuckets != 0) {
            // A key is in an old bucket or in a new one, never both, unless
            // the map moved it while we read.
            let mut seen = HashSet::with_capacity(keys.len());
            keys.retain(|k| seen.insert(k.id));
        }
        let after = read_shape(r, l, kl, map_addr);
        let w2 = after.as_ref().map(|a| walk(r, kl, a, max_keys, max_bytes));
        bytes_read += w2.as_ref().map_or(0, |w2| w2.bytes);
        let consistent = after.as_ref().is_some_and(|a| a.0 == before.0)
            && w2
                .as_ref()
                .is_some_and(|w2| w2.slots == w.slots && !w2.unreadable)
            && !before.0.writing()
            && !w.unreadable
            && !unreadable
            && (truncated || keys.len() as u64 == count);
        let snap = Snapshot {
            keys,
            header_len: count,
            seed: before.0.seed(),
            partial: !consistent,
            truncated,
            attempts: attempt,
            bytes_read,
            done_ns: crate::app::now_ns(),
        };
        match (after, w2) {
            (Some(a), Some(w2)) if !consistent && attempt < ATTEMPTS => {
                before = a;
                w = w2;
            }
            // Consistent, out of attempts, or the map is gone.
            _ => return Some(snap),
        }
    }
    None
}

#[cfg(test)]
mod tests;
