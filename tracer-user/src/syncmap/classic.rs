//! The classic `sync.Map` (Go 1.19 to 1.23, and 1.24/1.25 built with
//! `GOEXPERIMENT=nosynchashtriemap`): a `read` map and a `dirty` map, both
//! runtime maps of type `map[interface {}]*sync.entry`. Each promotion of
//! the dirty map and each new dirty map (made by `dirtyLocked`, which the
//! probes see) is a new runtime map: a growing cache would read as a chain
//! of short-lived maps. Here the generations are folded into one logical
//! map identified by the `*sync.Map`:
//!
//! - **Discovery**: a probe on [`super::DIRTY_LOCKED`] (its receiver, once
//!   per generation) and the DWARF globals of type `sync.Map`/`*sync.Map`.
//! - **Sampling** ([`sample`]): three small reads per instance (the
//!   `sync.Map`, its `readOnly`, the header of the map that holds every
//!   key: `dirty` when `read.amended`, else `read.m`), in batches.
//! - **Folding**: the generations a sample finds are handed back, and the
//!   model keeps them out of the report ([`crate::model::Model::fold_sync_generation`]).
//! - **Entries** ([`super::classic_entries`]): the map holding every key
//!   is then read whole, for the entries' dynamic types and the keys that
//!   are objects with finalizers, once its type descriptor is known.
//!
//! The length is an upper bound: a key deleted from `read` stays (its entry
//! nil) until the next `dirtyLocked` copies the live ones.
//!
//! Reference: golang/go@go1.23.12:src/sync/map.go (`#L38` Map, `#L74`
//! readOnly, `#L517` dirtyLocked); go1.19.13 keeps `read` in an
//! `atomic.Value`.

use crate::{
    inspect::{MapImpl, RuntimeLayout},
    sample::{BatchReader, HeaderRead, HeaderSample, Memory, TypeSizes},
};

/// Offsets of one release's classic `sync.Map` (64-bit; amd64 and arm64
/// are the same).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClassicLayout {
    /// Where the `*readOnly` is: `read` (an `atomic.Pointer`, 1.20+) or
    /// the data word of `read` (an `atomic.Value` holding it, 1.19).
    pub map_read: u32,
    /// `Map.dirty` (`map[any]*entry`).
    pub map_dirty: u32,
    /// `sizeof(sync.Map)`.
    pub map_size: u32,
    /// `readOnly.m`.
    pub ro_m: u32,
    /// `readOnly.amended` (`bool`).
    pub ro_amended: u32,
    /// `sizeof(readOnly)`.
    pub ro_size: u32,
}

/// Go 1.19: `read atomic.Value` at 8 (its data word at 16), `dirty` at 24.
const GO119: ClassicLayout = ClassicLayout {
    map_read: 16,
    map_dirty: 24,
    map_size: 40,
    ro_m: 0,
    ro_amended: 8,
    ro_size: 16,
};

/// Go 1.20 to 1.25: `read atomic.Pointer[readOnly]` at 8, `dirty` at 16.
const GO120: ClassicLayout = ClassicLayout {
    map_read: 8,
    map_dirty: 16,
    map_size: 32,
    ..GO119
};

impl ClassicLayout {
    /// The layout of Go 1.`minor`; `None` from 1.26, which has only the
    /// HashTrieMap `sync.Map`.
    #[must_use]
    pub const fn for_minor(minor: u32) -> Option<Self> {
        match minor {
            ..=19 => Some(GO119),
            20..=25 => Some(GO120),
            _ => None,
        }
    }
}

/// The sizes of `map[interface {}]*sync.entry` (16-byte keys, 8-byte
/// elems): an hmap bucket holds 8 tophash bytes, 8 keys, 8 elems and the
/// overflow pointer; a Swiss group its control word and 8 slots.
pub const ENTRY_MAP_SIZES: TypeSizes = TypeSizes {
    bucket_size: 8 + 8 * 16 + 8 * 8 + 8,
    group_size: 8 + 8 * (16 + 8),
};

/// Bytes each entry costs besides its map slot: the `entry` (8 bytes) and
/// the boxed value it points to (an `any`, 16 bytes).
pub const ENTRY_BYTES: u64 = 8 + 16;

/// The type name of the runtime maps a classic `sync.Map` is made of.
pub const ENTRY_MAP_TYPE: &str = "map[interface {}]*sync.entry";

/// A `sync.Map` header: where its `readOnly` and its dirty map are (0:
/// none yet).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub read_only: u64,
    pub dirty: u64,
}

/// `readOnly`: the read map and whether the dirty map has keys it lacks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadOnly {
    pub m: u64,
    pub amended: bool,
}

/// The runtime maps of one instance: the one holding every key, and the
/// other live generation (0 when there is none).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Generations {
    pub complete: u64,
    pub other: u64,
}

/// A null pointer, or one that may be a heap object's.
const fn ptr_or_null(p: u64) -> bool {
    p == 0 || super::walk::plausible_ptr(p)
}

fn u64_at(b: &[u8], off: u32) -> Option<u64> {
    let o = off as usize;
    Some(u64::from_le_bytes(b.get(o..o + 8)?.try_into().ok()?))
}

/// Decodes a `sync.Map` header; `None` when it cannot be one (a pointer
/// no heap object can have).
#[must_use]
pub fn decode_header(b: &[u8], l: &ClassicLayout) -> Option<Header> {
    let h = Header {
        read_only: u64_at(b, l.map_read)?,
        dirty: u64_at(b, l.map_dirty)?,
    };
    (ptr_or_null(h.read_only) && ptr_or_null(h.dirty)).then_some(h)
}

/// Decodes a `readOnly`; `None` when it cannot be one (`amended` neither 0
/// nor 1, or the padding after it not zero: the runtime zeroes it).
#[must_use]
pub fn decode_read_only(b: &[u8], l: &ClassicLayout) -> Option<ReadOnly> {
    let m = u64_at(b, l.ro_m)?;
    let tail = b.get(l.ro_amended as usize..l.ro_size as usize)?;
    let (&amended, pad) = tail.split_first()?;
    (ptr_or_null(m) && amended <= 1 && pad.iter().all(|&x| x == 0)).then_some(ReadOnly {
        m,
        amended: amended == 1,
    })
}

/// Which map holds every key (`golang/go@go1.23.12:src/sync/map.go#L67`:
/// the dirty map when `read.amended`, else the read map), and the other.
#[must_use]
pub fn generations(h: Header, ro: Option<ReadOnly>) -> Generations {
    match ro {
        // Never stored to: no read map yet.
        None => Generations {
            complete: h.dirty,
            other: 0,
        },
        Some(ro) if ro.amended => Generations {
            complete: h.dirty,
            other: ro.m,
        },
        // Not amended: every key is in the read map; a dirty map left
        // there (after `Clear`) is empty or a copy of it.
        Some(ro) => Generations {
            complete: ro.m,
            other: h.dirty,
        },
    }
}

/// The sample of one instance from its generations' headers.
#[must_use]
pub fn combine(
    l: &ClassicLayout,
    addr: u64,
    complete: Option<&HeaderSample>,
    other: Option<&HeaderSample>,
) -> HeaderSample {
    let len = complete.map_or(0, |c| c.len);
    let bytes = u64::from(l.map_size + l.ro_size)
        + complete.map_or(0, |c| c.bytes)
        + other.map_or(0, |o| o.bytes)
        + len.saturating_mul(ENTRY_BYTES);
    HeaderSample {
        len,
        capacity: complete.map_or(0, |c| c.capacity),
        bytes,
        // One instance whatever its generations: the model must not take a
        // new generation's seed for a new map.
        seed: 1,
        storage: addr,
    }
}

/// What sampling the classic sync.Maps found: a read per instance, and the
/// generations to fold.
#[derive(Debug, Default)]
pub struct Sampled {
    pub reads: Vec<(u64, HeaderRead)>,
    pub generations: Vec<u64>,
    /// Each instance read and the runtime map that holds its every key
    /// (for [`super::classic_entries::read`]).
    pub complete: Vec<(u64, u64)>,
}

/// Samples the classic sync.Maps at `addrs`: their headers, `readOnly`s and
/// generations' headers, each kind in one batch.
#[must_use]
pub fn sample(
    mem: &Memory,
    l: &ClassicLayout,
    rt: &RuntimeLayout,
    imp: MapImpl,
    addrs: &[u64],
) -> Sampled {
    let mut out = Sampled::default();
    let mut buf = Vec::new();
    let regions: Vec<(u64, usize)> = addrs.iter().map(|&a| (a, l.map_size as usize)).collect();
    let ok = mem.read_flat(&regions, &mut buf);
    let size = l.map_size as usize;
    let headers: Vec<Result<Header, HeaderRead>> = ok
        .iter()
        .enumerate()
        .map(|(i, &ok)| {
            if !ok {
                return Err(HeaderRead::Failed);
            }
            decode_header(&buf[i * size..(i + 1) * size], l).ok_or(HeaderRead::Implausible)
        })
        .collect();
    // The readOnlys.
    let ro_at: Vec<(u64, usize)> = headers
        .iter()
        .filter_map(|h| h.as_ref().ok())
        .filter(|h| h.read_only != 0)
        .map(|h| (h.read_only, l.ro_size as usize))
        .collect();
    let mut ro_buf = Vec::new();
    let ro_ok = mem.read_flat(&ro_at, &mut ro_buf);
    let mut ro_next = 0;
    let mut gens: Vec<Result<Generations, HeaderRead>> = Vec::with_capacity(addrs.len());
    for h in headers {
        gens.push(h.and_then(|h| {
            if h.read_only == 0 {
                return Ok(generations(h, None));
            }
            let i = ro_next;
            ro_next += 1;
            if !ro_ok[i] {
                // Replaced and freed between the two reads: next time.
                return Err(HeaderRead::Skipped);
            }
            let sz = l.ro_size as usize;
            decode_read_only(&ro_buf[i * sz..(i + 1) * sz], l)
                .map(|ro| generations(h, Some(ro)))
                .ok_or(HeaderRead::Implausible)
        }));
    }
    // The generations' headers.
    let mut maps: Vec<(u64, TypeSizes)> = Vec::new();
    for g in gens.iter().flatten() {
        for a in [g.complete, g.other] {
            if a != 0 && !maps.iter().any(|(m, _)| *m == a) {
                maps.push((a, ENTRY_MAP_SIZES));
            }
        }
    }
    let mut reader = BatchReader::new(rt, imp);
    let mut map_reads = Vec::with_capacity(maps.len());
    for chunk in maps.chunks(crate::sample::BATCH) {
        reader.read(mem, chunk, &mut map_reads);
    }
    let header_of = |a: u64| -> Option<&HeaderRead> {
        (a != 0).then(|| map_reads.iter().find(|(m, _)| *m == a).map(|(_, r)| r))?
    };
    for (&addr, g) in addrs.iter().zip(gens) {
        let read = match g {
            Err(e) => e,
            Ok(g) => {
                out.generations
                    .extend([g.complete, g.other].into_iter().filter(|&a| a != 0));
                let ok = |r: Option<&HeaderRead>| match r {
                    Some(HeaderRead::Ok(h)) => Some(*h),
                    _ => None,
                };
                match header_of(g.complete) {
                    // A generation replaced meanwhile: next time.
                    Some(HeaderRead::Failed | HeaderRead::Implausible | HeaderRead::Skipped) => {
                        HeaderRead::Skipped
                    }
                    c => {
                        if matches!(c, Some(HeaderRead::Ok(_))) {
                            out.complete.push((addr, g.complete));
                        }
                        HeaderRead::Ok(combine(
                            l,
                            addr,
                            ok(c).as_ref(),
                            ok(header_of(g.other)).as_ref(),
                        ))
                    }
                }
            }
        };
        out.reads.push((addr, read));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(w: &[u64]) -> Vec<u8> {
        w.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    #[test]
    fn layouts_per_release() {
        assert_eq!(ClassicLayout::for_minor(19), Some(GO119));
        assert_eq!(ClassicLayout::for_minor(23), Some(GO120));
        assert_eq!(ClassicLayout::for_minor(25), Some(GO120));
        assert_eq!(ClassicLayout::for_minor(26), None);
        for l in [GO119, GO120] {
            assert!(l.map_read + 8 <= l.map_size && l.map_dirty + 8 <= l.map_size);
        }
    }

    #[test]
    fn headers_and_read_only() {
        let l = GO120;
        // mu, read, dirty, misses.
        let h = decode_header(&words(&[0, 0xc000_1000, 0xc000_2000, 3]), &l).unwrap();
        assert_eq!((h.read_only, h.dirty), (0xc000_1000, 0xc000_2000));
        // A misaligned pointer is not a header.
        assert_eq!(decode_header(&words(&[0, 0xc000_1001, 0, 0]), &l), None);
        // Too short.
        assert_eq!(decode_header(&[0; 16], &l), None);
        let ro = decode_read_only(&words(&[0xc000_3000, 1]), &l).unwrap();
        assert_eq!(
            ro,
            ReadOnly {
                m: 0xc000_3000,
                amended: true
            }
        );
        // amended 2, or garbage in the padding: not a readOnly.
        assert_eq!(decode_read_only(&words(&[0xc000_3000, 2]), &l), None);
        assert_eq!(decode_read_only(&words(&[0xc000_3000, 0x100]), &l), None);
        // Go 1.19: the readOnly pointer is the atomic.Value's data word.
        let h = decode_header(&words(&[0, 0x5000, 0xc000_1000, 0xc000_2000, 0]), &GO119).unwrap();
        assert_eq!((h.read_only, h.dirty), (0xc000_1000, 0xc000_2000));
    }

    #[test]
    fn the_complete_generation() {
        let h = Header {
            read_only: 0x10,
            dirty: 0xd000,
        };
        let ro = |m, amended| Some(ReadOnly { m, amended });
        assert_eq!(
            generations(h, ro(0xa000, true)),
            Generations {
                complete: 0xd000,
                other: 0xa000
            }
        );
        assert_eq!(generations(h, ro(0xa000, false)).complete, 0xa000);
        assert_eq!(
            generations(h, None),
            Generations {
                complete: 0xd000,
                other: 0
            }
        );
    }

    #[test]
    fn a_sample_counts_both_generations_bytes() {
        let c = HeaderSample {
            len: 100,
            capacity: 128,
            bytes: 4000,
            seed: 7,
            storage: 0xb000,
        };
        let o = HeaderSample { bytes: 2000, ..c };
        let s = combine(&GO120, 0x5000, Some(&c), Some(&o));
        assert_eq!(
            (s.len, s.capacity, s.seed, s.storage),
            (100, 128, 1, 0x5000)
        );
        assert_eq!(s.bytes, 32 + 16 + 4000 + 2000 + 100 * ENTRY_BYTES);
        let empty = combine(&GO120, 0x5000, None, None);
        assert_eq!((empty.len, empty.bytes), (0, 48));
    }
}
