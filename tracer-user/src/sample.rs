//! `sample`: reads map headers from the target with `process_vm_readv` at GC
//! boundaries, and decodes them into length, capacity and bytes.
//!
//! Reads never write to, stop or signal the target. A read that fails (the
//! memory was unmapped) or a header that makes no sense (the map died and its
//! memory was reused) yields `None`, never a panic.
use crate::inspect::{MapImpl, RuntimeLayout};

/// Reads memory of one process.
#[derive(Debug, Clone)]
pub struct Memory {
    pid: i32,
    /// With a pidfd, a read is trusted only if the process had not exited
    /// when it returned: a pid reused by another process is never read as
    /// the target.
    pidfd: Option<crate::discover::PidFd>,
}

impl Memory {
    /// A reader for `pid` (its number only).
    #[must_use]
    pub fn new(pid: u32) -> Self {
        Self {
            pid: pid as i32,
            pidfd: None,
        }
    }

    /// A reader for the process `pidfd` holds, whose pid is `pid`.
    #[must_use]
    pub fn with_pidfd(pid: u32, pidfd: Option<crate::discover::PidFd>) -> Self {
        Self {
            pid: pid as i32,
            pidfd,
        }
    }

    /// The process is gone: what was read may be another's.
    fn gone(&self) -> bool {
        self.pidfd
            .as_ref()
            .is_some_and(crate::discover::PidFd::exited)
    }

    /// Reads `buf.len()` bytes at `addr`. Returns false on a short or failed read.
    pub fn read(&self, addr: u64, buf: &mut [u8]) -> bool {
        buf.is_empty() || self.read_some(addr, buf) == buf.len()
    }

    /// Reads up to `buf.len()` bytes at `addr`; returns how many were read
    /// (a read stops at the first unmapped page).
    pub fn read_some(&self, addr: u64, buf: &mut [u8]) -> usize {
        let local = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        let remote = libc::iovec {
            iov_base: addr as *mut libc::c_void,
            iov_len: buf.len(),
        };
        // SAFETY: `local` describes `buf`, which we own mutably; the kernel
        // checks `remote` against the target's address space.
        let n = unsafe {
            libc::process_vm_readv(self.pid, &raw const local, 1, &raw const remote, 1, 0)
        };
        if self.gone() {
            return 0;
        }
        usize::try_from(n).unwrap_or(0)
    }

    /// Reads many small regions with few system calls (up to 1024 per call).
    /// Each result is `None` when its region could not be read whole.
    #[must_use]
    pub fn read_many(&self, regions: &[(u64, usize)]) -> Vec<Option<Vec<u8>>> {
        let mut out: Vec<Option<Vec<u8>>> = Vec::with_capacity(regions.len());
        for chunk in regions.chunks(1024) {
            let mut bufs: Vec<Vec<u8>> = chunk.iter().map(|&(_, len)| vec![0u8; len]).collect();
            let local: Vec<libc::iovec> = bufs
                .iter_mut()
                .map(|b| libc::iovec {
                    iov_base: b.as_mut_ptr().cast(),
                    iov_len: b.len(),
                })
                .collect();
            let remote: Vec<libc::iovec> = chunk
                .iter()
                .map(|&(a, len)| libc::iovec {
                    iov_base: a as *mut libc::c_void,
                    iov_len: len,
                })
                .collect();
            // SAFETY: every local iovec points into a Vec we own for the call.
            let n = unsafe {
                libc::process_vm_readv(
                    self.pid,
                    local.as_ptr(),
                    local.len() as libc::c_ulong,
                    remote.as_ptr(),
                    remote.len() as libc::c_ulong,
                    0,
                )
            };
            if self.gone() {
                out.extend(chunk.iter().map(|_| None));
                continue;
            }
            // process_vm_readv stops at the first region it cannot read; we
            // then read the rest one at a time.
            let mut done = usize::try_from(n).unwrap_or(0);
            for (i, b) in bufs.into_iter().enumerate() {
                if done >= b.len() {
                    done -= b.len();
                    out.push(Some(b));
                } else {
                    done = 0;
                    let mut b = b;
                    let ok = self.read(chunk[i].0, &mut b);
                    out.push(ok.then_some(b));
                }
            }
        }
        out
    }

    /// Reads a little-endian u64.
    #[must_use]
    pub fn u64(&self, addr: u64) -> Option<u64> {
        let mut b = [0u8; 8];
        self.read(addr, &mut b).then(|| u64::from_le_bytes(b))
    }
}

/// What one read of a map header tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderSample {
    /// `len(m)`.
    pub len: u64,
    /// Slots allocated.
    pub capacity: u64,
    /// Bytes of buckets or groups (an estimate: overflow buckets counted).
    pub bytes: u64,
    /// Hash seed: changes when the map is emptied or the memory now holds another map.
    pub seed: u64,
}

/// The smallest hmap bucket (`tophash[8]` and the overflow pointer, with
/// zero-size keys and elems): the floor when a map's type is unknown, so a
/// map with capacity never counts 0 bytes.
const MIN_BUCKET: u64 = 16;
/// The smallest Swiss group (the control word).
const MIN_GROUP: u64 = 8;

/// The largest hmap `B` taken as real: 2^40 buckets of at least 16 bytes
/// already fill 16 TiB.
const MAX_B: u32 = 40;

/// Sizes of one map type needed to turn a header into bytes.
#[derive(Debug, Clone, Copy, Default)]
pub struct TypeSizes {
    /// hmap: bucket size.
    pub bucket_size: u64,
    /// Swiss: group size.
    pub group_size: u64,
}

fn le_u64(b: &[u8], off: Option<u32>) -> Option<u64> {
    let o = off? as usize;
    Some(u64::from_le_bytes(b.get(o..o + 8)?.try_into().ok()?))
}
fn le_u32(b: &[u8], off: Option<u32>) -> Option<u32> {
    let o = off? as usize;
    Some(u32::from_le_bytes(b.get(o..o + 4)?.try_into().ok()?))
}
fn le_u16(b: &[u8], off: Option<u32>) -> Option<u16> {
    let o = off? as usize;
    Some(u16::from_le_bytes(b.get(o..o + 2)?.try_into().ok()?))
}
fn byte(b: &[u8], off: Option<u32>) -> Option<u8> {
    b.get(off? as usize).copied()
}

/// Bytes to read for a map header.
#[must_use]
pub fn header_len(layout: &RuntimeLayout, imp: MapImpl) -> usize {
    match imp {
        MapImpl::Hmap => layout.hmap_size.unwrap_or(48) as usize,
        MapImpl::Swiss => layout.swiss_map_size.unwrap_or(48) as usize,
    }
}

/// Decodes an hmap header. `None` when it cannot be a live hmap.
#[must_use]
pub fn decode_hmap(b: &[u8], l: &RuntimeLayout, t: TypeSizes) -> Option<HeaderSample> {
    let count = le_u64(b, l.hmap_count)?;
    let big_b = u32::from(byte(b, l.hmap_b)?);
    let noverflow = u64::from(le_u16(b, l.hmap_noverflow)?);
    let hash0 = u64::from(le_u32(b, l.hmap_hash0)?);
    let buckets = le_u64(b, l.hmap_buckets)?;
    let old = le_u64(b, l.hmap_oldbuckets)?;
    let flags = byte(b, l.hmap_flags)?;
    // A live hmap: B small enough for its buckets to fit in a 47-bit
    // address space, only the four defined flag bits
    // (go1.18:src/runtime/map.go `iterator`..`sameSizeGrow`), 8-aligned
    // bucket pointers. Freed memory reused for something else rarely
    // passes all of these (a torn read of a reused address once showed
    // B = 46).
    if big_b > MAX_B
        || flags >= 16
        || buckets % 8 != 0
        || old % 8 != 0
        || (buckets == 0 && big_b > 0)
        || count > (1u64 << 52)
    {
        return None;
    }
    let nb = 1u64 << big_b;
    // No bucket array yet (a map made without a hint): no slots.
    let capacity = if buckets == 0 { 0 } else { nb * 8 };
    // No bucket array holds nothing, and a count beyond every slot of the
    // buckets and overflow buckets (growth starts at 6.5 per bucket) is a
    // header read from memory reused for something else.
    if (buckets == 0 && count > 0) || count > (nb + noverflow).saturating_mul(8) {
        return None;
    }
    let bs = t.bucket_size.max(MIN_BUCKET);
    let mut bytes = if buckets == 0 {
        0
    } else {
        nb.saturating_mul(bs)
    };
    if old != 0 && big_b > 0 {
        bytes = bytes.saturating_add((nb / 2).saturating_mul(bs));
    }
    bytes = bytes.saturating_add(noverflow.saturating_mul(bs));
    Some(HeaderSample {
        len: count,
        capacity,
        bytes,
        seed: hash0,
    })
}

/// A Swiss map's header fields; tables still need reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SwissHeader {
    /// `Map.used`.
    pub used: u64,
    /// `Map.seed`.
    pub seed: u64,
    /// `Map.dirPtr`.
    pub dir_ptr: u64,
    /// `Map.dirLen`.
    pub dir_len: u64,
}

/// Most directory entries read for one map (a directory of 2^16 tables holds
/// about 58 million entries).
pub const MAX_DIR_LEN: u64 = 1 << 16;

/// Decodes a Swiss `Map` header. `None` when it cannot be a live map.
#[must_use]
pub fn decode_swiss(b: &[u8], l: &RuntimeLayout) -> Option<SwissHeader> {
    let used = le_u64(b, l.swiss_used)?;
    let seed = le_u64(b, l.swiss_seed)?;
    let dir_ptr = le_u64(b, l.swiss_dir_ptr)?;
    let dir_len = le_u64(b, l.swiss_dir_len)?;
    let depth = u32::from(byte(b, l.swiss_global_depth)?);
    if dir_len > MAX_DIR_LEN || used > (1u64 << 52) {
        return None;
    }
    if dir_len == 0 {
        if used > 8 {
            return None;
        }
    } else if depth > 16 || dir_len != 1u64 << depth || dir_ptr == 0 {
        return None;
    }
    Some(SwissHeader {
        used,
        seed,
        dir_ptr,
        dir_len,
    })
}

/// Turns a Swiss header plus its tables' headers into a sample.
#[must_use]
pub fn swiss_sample(
    h: &SwissHeader,
    tables: &[Option<Vec<u8>>],
    l: &RuntimeLayout,
    t: TypeSizes,
) -> HeaderSample {
    if h.dir_len == 0 {
        let (capacity, bytes) = if h.dir_ptr == 0 {
            (0, 0)
        } else {
            (8, t.group_size.max(MIN_GROUP))
        };
        return HeaderSample {
            len: h.used,
            capacity,
            bytes,
            seed: h.seed,
        };
    }
    let mut capacity = 0u64;
    for tb in tables.iter().flatten() {
        capacity += u64::from(le_u16(tb, l.table_capacity).unwrap_or(0));
    }
    let bytes = (capacity / 8)
        .saturating_mul(t.group_size.max(MIN_GROUP))
        .saturating_add(h.dir_len.saturating_mul(8))
        .saturating_add(tables.len() as u64 * 32);
    HeaderSample {
        len: h.used,
        capacity,
        bytes,
        seed: h.seed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hmap_layout() -> RuntimeLayout {
        RuntimeLayout {
            hmap_count: Some(0),
            hmap_flags: Some(8),
            hmap_b: Some(9),
            hmap_noverflow: Some(10),
            hmap_hash0: Some(12),
            hmap_buckets: Some(16),
            hmap_oldbuckets: Some(24),
            hmap_size: Some(48),
            ..Default::default()
        }
    }

    /// An hmap header decodes into len, capacity (8 slots per bucket) and bytes.
    #[test]
    fn hmap_header() {
        let mut b = [0u8; 48];
        b[0..8].copy_from_slice(&100u64.to_le_bytes());
        b[9] = 4;
        b[12..16].copy_from_slice(&7u32.to_le_bytes());
        b[16..24].copy_from_slice(&0xc000_0000u64.to_le_bytes());
        let s = decode_hmap(
            &b,
            &hmap_layout(),
            TypeSizes {
                bucket_size: 144,
                group_size: 0,
            },
        )
        .unwrap();
        assert_eq!(
            s,
            HeaderSample {
                len: 100,
                capacity: 128,
                bytes: 16 * 144,
                seed: 7
            }
        );
        // Garbage: B far too large, or count impossible for B.
        b[9] = 200;
        assert!(decode_hmap(&b, &hmap_layout(), TypeSizes::default()).is_none());
        b[9] = 1;
        b[0..8].copy_from_slice(&1_000_000u64.to_le_bytes());
        assert!(decode_hmap(&b, &hmap_layout(), TypeSizes::default()).is_none());
        // Reused memory: B = 46 with a count that fits it (seen on a real
        // service), undefined flag bits, a misaligned bucket pointer.
        let ok = |b: &[u8]| decode_hmap(b, &hmap_layout(), TypeSizes::default()).is_some();
        b[0..8].copy_from_slice(&5u64.to_le_bytes());
        assert!(ok(&b));
        b[9] = 46;
        assert!(!ok(&b));
        b[9] = 1;
        b[8] = 0x20;
        assert!(!ok(&b));
        b[8] = 0;
        b[16..24].copy_from_slice(&0xc000_0004u64.to_le_bytes());
        assert!(!ok(&b));
        // Entries without a bucket array (seen on prometheus: len 38, no
        // buckets), or more entries than slots.
        b[9] = 0;
        b[16..24].copy_from_slice(&0u64.to_le_bytes());
        b[0..8].copy_from_slice(&38u64.to_le_bytes());
        assert!(!ok(&b));
        b[9] = 1;
        b[16..24].copy_from_slice(&0xc000_0000u64.to_le_bytes());
        b[0..8].copy_from_slice(&17u64.to_le_bytes());
        assert!(!ok(&b));
        b[0..8].copy_from_slice(&5u64.to_le_bytes());
        // A map with capacity and an unknown type still counts its bucket
        // array at the smallest bucket size.
        b[16..24].copy_from_slice(&0xc000_0000u64.to_le_bytes());
        let s = decode_hmap(&b, &hmap_layout(), TypeSizes::default()).unwrap();
        assert_eq!(s.bytes, 2 * MIN_BUCKET);
    }

    /// Reading our own memory through process_vm_readv works, and an unmapped
    /// address fails cleanly.
    #[test]
    fn read_self() {
        let data: Vec<u8> = (0..=255).collect();
        let m = Memory::new(std::process::id());
        let mut buf = [0u8; 16];
        assert!(m.read(data.as_ptr() as u64 + 10, &mut buf));
        assert_eq!(buf[0], 10);
        assert!(!m.read(8, &mut buf));
        let many = m.read_many(&[
            (data.as_ptr() as u64, 4),
            (8, 4),
            (data.as_ptr() as u64 + 100, 2),
        ]);
        assert_eq!(many[0].as_deref(), Some(&[0u8, 1, 2, 3][..]));
        assert!(many[1].is_none());
        assert_eq!(many[2].as_deref(), Some(&[100u8, 101][..]));
    }
}
