//! `sample`: reads map headers from the target with `process_vm_readv` at GC
//! boundaries, and decodes them into length, capacity and bytes.
//!
//! Reads never write to, stop or signal the target. A read that fails (the
//! memory was unmapped) or a header that makes no sense (the map died and its
//! memory was reused) yields `None`, never a panic.
//!
//! [`sample_model`] reads every tracked map in batches of [`BATCH`] headers
//! into one reused buffer: what it holds at once does not grow with the
//! number of maps, and the Swiss directories and tables it reads are
//! capped per sample ([`MAX_TABLE_BYTES_PER_SAMPLE`]).
use std::time::{Duration, Instant};

use crate::{
    inspect::{MapImpl, RuntimeLayout},
    model::{Model, SampleAt},
};

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

    /// The process's pid.
    #[must_use]
    pub fn pid(&self) -> u32 {
        self.pid.cast_unsigned()
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

    /// Reads many small regions, one after the other, into `buf` (resized
    /// to their total length), with few system calls (up to 1024 regions
    /// per call). Returns, per region, whether it was read whole.
    pub fn read_flat(&self, regions: &[(u64, usize)], buf: &mut Vec<u8>) -> Vec<bool> {
        let total: usize = regions.iter().map(|r| r.1).sum();
        buf.clear();
        buf.resize(total, 0);
        let mut ok = Vec::with_capacity(regions.len());
        let mut off = 0;
        for chunk in regions.chunks(1024) {
            let len: usize = chunk.iter().map(|r| r.1).sum();
            let part = &mut buf[off..off + len];
            let mut local: Vec<libc::iovec> = Vec::with_capacity(chunk.len());
            let mut o = 0;
            for &(_, l) in chunk {
                local.push(libc::iovec {
                    iov_base: part[o..].as_mut_ptr().cast(),
                    iov_len: l,
                });
                o += l;
            }
            let remote: Vec<libc::iovec> = chunk
                .iter()
                .map(|&(a, l)| libc::iovec {
                    iov_base: a as *mut libc::c_void,
                    iov_len: l,
                })
                .collect();
            // SAFETY: every local iovec points into `part`, which we hold
            // mutably for the call; the kernel checks the remote ones.
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
                ok.extend(chunk.iter().map(|_| false));
                off += len;
                continue;
            }
            // process_vm_readv stops at the first region it cannot read; we
            // then read the rest one at a time.
            let mut done = usize::try_from(n).unwrap_or(0);
            let mut o = 0;
            for &(a, l) in chunk {
                if done >= l {
                    done -= l;
                    ok.push(true);
                } else {
                    done = 0;
                    ok.push(self.read(a, &mut part[o..o + l]));
                }
                o += l;
            }
            off += len;
        }
        ok
    }

    /// Reads a little-endian u64.
    #[must_use]
    pub fn u64(&self, addr: u64) -> Option<u64> {
        let mut b = [0u8; 8];
        self.read(addr, &mut b).then(|| u64::from_le_bytes(b))
    }
}

/// What one read of a map's header gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderRead {
    /// A live map's header.
    Ok(HeaderSample),
    /// Read, but not a live map's header (or one caught mid-update).
    Implausible,
    /// The memory could not be read: the map is gone.
    Failed,
    /// Not read this time (the sample's read budget ran out).
    Skipped,
}

/// Bytes of Swiss directories and table headers one sample reads at most,
/// over every map. A directory is up to 512 KiB ([`MAX_DIR_LEN`] entries)
/// and each distinct table 32 bytes: without a cap, maps whose headers
/// claim large directories drive the tracer's reads (and buffers) to
/// gigabytes. 1,000,000 maps of one table each read 40 MB. Maps past the
/// cap are not sampled that time (counted; the next sample starts
/// elsewhere).
pub const MAX_TABLE_BYTES_PER_SAMPLE: u64 = 64 << 20;

/// Maps whose headers are read per batch: the buffers of one batch are
/// all a sample holds at once, whatever the number of maps.
pub const BATCH: usize = 1024;

/// Directory bytes read per system call batch.
const DIR_BATCH_BYTES: u64 = 1 << 20;

/// Bytes read of each Swiss table (its header: `capacity` is in it).
const TABLE_HEADER: usize = 32;

/// Longest a sample reads: the maps not reached are read first by the
/// next sample. The main loop drains the ring buffer only between samples;
/// with 1,000,000 maps a whole sample takes seconds (each map is one to
/// three `process_vm_readv` regions), and a burst of growth events in that
/// time overflows the ring buffer. At 2 to 4 µs a map this is 125,000 to
/// 250,000 maps a sample; the gap after a sample is 10 times its length
/// either way, so maps are read as often as when a sample reads them all.
pub const MAX_SAMPLE_TIME: Duration = Duration::from_millis(500);

/// What [`sample_model`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SampleStats {
    /// Maps whose header was read.
    pub read: u64,
    /// Maps not sampled because [`MAX_TABLE_BYTES_PER_SAMPLE`] was reached.
    pub skipped: u64,
    /// Maps not reached within [`MAX_SAMPLE_TIME`] (the next sample starts
    /// with them).
    pub unreached: u64,
    /// Directory and table bytes read.
    pub table_bytes: u64,
}

/// Reads the tracked maps' headers (and Swiss directories and tables) and
/// records a sample at `at` in `model`: every map, or as many as
/// [`MAX_SAMPLE_TIME`] allows, starting where the previous sample stopped.
/// `sizes` gives a map type's bucket or group size (0: unknown type). When
/// every header read fails the process is gone (or going), not every map
/// dead: nothing is recorded, and the history stays for the final report.
pub fn sample_model(
    model: &mut Model,
    mem: &Memory,
    layout: &RuntimeLayout,
    imp: MapImpl,
    sizes: impl Fn(u64) -> TypeSizes,
    at: SampleAt,
) -> SampleStats {
    sample_model_within(model, mem, layout, imp, sizes, at, MAX_SAMPLE_TIME)
}

/// [`sample_model`] within `max_time` (at least one batch is read).
pub fn sample_model_within(
    model: &mut Model,
    mem: &Memory,
    layout: &RuntimeLayout,
    imp: MapImpl,
    sizes: impl Fn(u64) -> TypeSizes,
    at: SampleAt,
    max_time: Duration,
) -> SampleStats {
    let started = Instant::now();
    let n = model.maps.len();
    let start = model.sample_cursor % n.max(1);
    let mut reader = BatchReader::new(layout, imp);
    let mut failed: Vec<u64> = Vec::new();
    let mut any_read = false;
    let mut chunk: Vec<(u64, TypeSizes)> = Vec::with_capacity(BATCH);
    let mut out: Vec<(u64, HeaderRead)> = Vec::with_capacity(BATCH);
    // Maps share a few types: the last one's sizes are kept at hand.
    let mut last_type = (u64::MAX, TypeSizes::default());
    let mut sizes_of = |t: u64| {
        if last_type.0 != t {
            last_type = (t, sizes(t));
        }
        last_type.1
    };
    let mut done = 0;
    while done < n {
        if done > 0 && started.elapsed() >= max_time {
            break;
        }
        // A batch of slab positions (a map retired meanwhile moves the
        // last one into its place: that one waits for the next sample).
        let pos = (start + done) % n;
        let take = BATCH.min(n - pos).min(n - done);
        chunk.clear();
        for m in model.maps.values().skip(pos).take(take) {
            chunk.push((m.addr, sizes_of(m.type_ptr)));
        }
        if chunk.is_empty() {
            break;
        }
        done += take;
        any_read |= reader.read(mem, &chunk, &mut out);
        for (addr, read) in out.drain(..) {
            if read == HeaderRead::Failed {
                failed.push(addr);
            } else {
                model.on_sample(addr, at, read);
            }
        }
    }
    if any_read {
        for addr in failed {
            model.on_sample(addr, at, HeaderRead::Failed);
        }
    }
    let mut st = reader.stats;
    st.unreached = (n - done.min(n)) as u64;
    model.sample_cursor = (start + done) % n.max(1);
    model.caps.reads_skipped += st.skipped;
    model.caps.reads_unreached += st.unreached;
    st
}

/// Reads map headers (and Swiss directories and tables) batch by batch,
/// within [`MAX_TABLE_BYTES_PER_SAMPLE`] over all its batches: one per
/// sample. Its buffers are reused from batch to batch.
pub struct BatchReader<'a> {
    layout: &'a RuntimeLayout,
    imp: MapImpl,
    budget: u64,
    buf: Vec<u8>,
    regions: Vec<(u64, usize)>,
    swiss: Vec<(u64, SwissHeader, TypeSizes)>,
    /// What the reads so far did (`unreached` is the caller's).
    pub stats: SampleStats,
}

impl<'a> BatchReader<'a> {
    /// A reader for one sample.
    #[must_use]
    pub fn new(layout: &'a RuntimeLayout, imp: MapImpl) -> Self {
        Self {
            layout,
            imp,
            budget: MAX_TABLE_BYTES_PER_SAMPLE,
            buf: Vec::new(),
            regions: Vec::with_capacity(BATCH),
            swiss: Vec::new(),
            stats: SampleStats::default(),
        }
    }

    /// Reads the headers of `chunk` (map address, its type's sizes; at
    /// most [`BATCH`] is best) into `out`, one entry per map, a read that
    /// failed as [`HeaderRead::Failed`]. Returns whether any header was read.
    pub fn read(
        &mut self,
        mem: &Memory,
        chunk: &[(u64, TypeSizes)],
        out: &mut Vec<(u64, HeaderRead)>,
    ) -> bool {
        let (layout, imp) = (self.layout, self.imp);
        let hlen = header_len(layout, imp);
        self.regions.clear();
        self.regions.extend(chunk.iter().map(|&(a, _)| (a, hlen)));
        let ok = mem.read_flat(&self.regions, &mut self.buf);
        let mut any_read = false;
        for (i, (&(addr, sizes), &ok)) in chunk.iter().zip(&ok).enumerate() {
            if !ok {
                out.push((addr, HeaderRead::Failed));
                continue;
            }
            any_read = true;
            self.stats.read += 1;
            let b = &self.buf[i * hlen..(i + 1) * hlen];
            let read = match imp {
                MapImpl::Hmap => {
                    decode_hmap(b, layout, sizes).map_or(HeaderRead::Implausible, HeaderRead::Ok)
                }
                MapImpl::Swiss => match decode_swiss(b, layout) {
                    None => HeaderRead::Implausible,
                    Some(h) if h.dir_len == 0 => {
                        HeaderRead::Ok(swiss_sample(&h, &[], layout, sizes))
                    }
                    Some(h) => {
                        self.swiss.push((addr, h, sizes));
                        continue;
                    }
                },
            };
            out.push((addr, read));
        }
        read_tables(
            mem,
            layout,
            &mut self.swiss,
            &mut self.budget,
            &mut self.stats,
            out,
        );
        any_read
    }
}

/// Reads the directories and table headers of `swiss` (maps whose header
/// has a directory), in batches of about [`DIR_BATCH_BYTES`], within
/// `budget` bytes; the samples go to `out`.
fn read_tables(
    mem: &Memory,
    layout: &RuntimeLayout,
    swiss: &mut Vec<(u64, SwissHeader, TypeSizes)>,
    budget: &mut u64,
    st: &mut SampleStats,
    out: &mut Vec<(u64, HeaderRead)>,
) {
    let mut dir_buf = Vec::new();
    let mut table_buf = Vec::new();
    let mut ptrs: Vec<u64> = Vec::new();
    let mut rest = &swiss[..];
    while !rest.is_empty() {
        // A batch: maps whose directories fit in DIR_BATCH_BYTES (at least
        // one) and in the budget (each map's directory plus its tables, at
        // most one table per entry).
        let mut take = 0;
        let mut bytes = 0u64;
        let mut batch: Vec<&(u64, SwissHeader, TypeSizes)> = Vec::new();
        for e in rest {
            let dir = e.1.dir_len * 8;
            if take > 0 && bytes + dir > DIR_BATCH_BYTES {
                break;
            }
            take += 1;
            let worst = dir + e.1.dir_len * TABLE_HEADER as u64;
            if worst > *budget {
                st.skipped += 1;
                out.push((e.0, HeaderRead::Skipped));
                continue;
            }
            *budget -= worst;
            bytes += dir;
            batch.push(e);
        }
        rest = &rest[take..];
        let regions: Vec<(u64, usize)> = batch
            .iter()
            .map(|e| (e.1.dir_ptr, (e.1.dir_len * 8) as usize))
            .collect();
        let ok = mem.read_flat(&regions, &mut dir_buf);
        st.table_bytes += bytes;
        // Each map's distinct tables, read in one go for the batch.
        let mut tables: Vec<(u64, usize)> = Vec::new();
        let mut spans: Vec<Option<(usize, usize)>> = Vec::with_capacity(batch.len());
        let mut off = 0;
        for (e, &ok) in batch.iter().zip(&ok) {
            let len = (e.1.dir_len * 8) as usize;
            let dir = &dir_buf[off..off + len];
            off += len;
            if !ok {
                spans.push(None);
                continue;
            }
            // Its distinct tables (entries repeat: a table of local depth
            // d is in 2^(depth-d) entries).
            ptrs.clear();
            ptrs.extend(
                dir.chunks_exact(8)
                    .filter_map(|c| c.try_into().ok().map(u64::from_le_bytes))
                    .filter(|&p| p != 0),
            );
            ptrs.sort_unstable();
            ptrs.dedup();
            let start = tables.len();
            tables.extend(ptrs.iter().map(|&p| (p, TABLE_HEADER)));
            spans.push(Some((start, tables.len())));
        }
        let tok = mem.read_flat(&tables, &mut table_buf);
        st.table_bytes += (tables.len() * TABLE_HEADER) as u64;
        for (e, span) in batch.iter().zip(spans) {
            let read = match span {
                // The directory is not readable: a torn header (or a dead
                // map) pointed elsewhere.
                None => HeaderRead::Implausible,
                // A table that cannot be read (the process exited between
                // the directory and the tables, or the header was torn):
                // no capacity to give. Counted as 0 it once turned a
                // bloated map stable at the target's exit (CI of 6741a91,
                // arm64 VM).
                Some((a, b)) if !tok[a..b].iter().all(|&ok| ok) => HeaderRead::Implausible,
                Some((a, b)) => {
                    let mine: Vec<Option<&[u8]>> = (a..b)
                        .map(|i| Some(&table_buf[i * TABLE_HEADER..(i + 1) * TABLE_HEADER]))
                        .collect();
                    HeaderRead::Ok(swiss_sample(&e.1, &mine, layout, e.2))
                }
            };
            out.push((e.0, read));
        }
    }
    swiss.clear();
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
    /// Where its entries are (hmap `buckets`, Swiss `dirPtr`): the same
    /// after a map is emptied and refilled, another for a new map at the
    /// same address (its storage is allocated anew); 0 for none yet.
    pub storage: u64,
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
        storage: buckets,
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

/// Most slots in one Swiss table (go1.24:src/internal/runtime/maps/table.go
/// `maxTableCapacity`): a directory of `dir_len` entries points to at most
/// that many tables, so the map holds at most `dir_len` times this many
/// entries.
pub const MAX_TABLE_CAPACITY: u64 = 1024;

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
    } else if depth > 16
        || dir_len != 1u64 << depth
        || dir_ptr == 0
        || used > dir_len * MAX_TABLE_CAPACITY
    {
        // A directory is 2^depth entries. `used` is checked against it
        // one way only: a map emptied by deletes keeps its directory (Swiss
        // maps never shrink), so a large directory with few entries is a
        // live map, but more entries than its tables can hold is not.
        return None;
    }
    Some(SwissHeader {
        used,
        seed,
        dir_ptr,
        dir_len,
    })
}

/// Turns a Swiss header plus its distinct tables' headers into a sample.
#[must_use]
pub fn swiss_sample(
    h: &SwissHeader,
    tables: &[Option<&[u8]>],
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
            storage: h.dir_ptr,
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
        storage: h.dir_ptr,
    }
}

#[cfg(test)]
mod tests;
