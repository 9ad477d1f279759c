//! uprobe_multi links (Linux 6.6+): many uprobes of one program behind one
//! link, attached and removed in one system call.
//!
//! aya 0.14 cannot attach them, and a program used by such a link must be
//! loaded with `expected_attach_type = BPF_TRACE_UPROBE_MULTI`, so the
//! programs that go into groups are loaded a second time here: parsed from
//! the same object with aya-obj, their map references relocated to the file
//! descriptors of the maps aya created (so both copies share every map),
//! and loaded with a raw `BPF_PROG_LOAD`.
//!
//! Why: closing a perf-event uprobe takes a kernel-wide mutex and waits for
//! RCU grace periods under it, so a group of N probes closes in N × 70-150
//! ms, each breakpoint trapping until its turn. A uprobe_multi link removes
//! all its breakpoints first and then waits once, without that mutex.
//!
//! The other raw `bpf(2)` calls aya 0.14 lacks live here too, next to
//! the map-fd helper they need: `BPF_MAP_LOOKUP_BATCH` for the hit counters
//! and `BPF_MAP_LOOKUP_AND_DELETE_BATCH` to drain the write-path counts.
use std::{
    collections::{HashMap, HashSet},
    ffi::CString,
    os::fd::{AsFd as _, AsRawFd as _, BorrowedFd, FromRawFd as _, OwnedFd},
    path::Path,
};

use anyhow::{Context as _, Result, anyhow, bail};
use aya::{Ebpf, maps::Map};
use aya_obj::generated::{bpf_attach_type, bpf_attr, bpf_cmd, bpf_insn, bpf_prog_type};

/// One raw `bpf(2)` call: its (non-negative) result, or the error.
///
/// # Safety
///
/// Every address in `attr` that `cmd` uses must point to memory valid for
/// what the kernel does there (reads, and for some commands writes, of the
/// sizes the other fields give) for the duration of the call.
pub(super) unsafe fn bpf_call(cmd: bpf_cmd, attr: &mut bpf_attr) -> std::io::Result<libc::c_long> {
    // SAFETY: `attr` is a valid bpf_attr of the size we pass; the addresses
    // in it are valid by the caller's contract.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd as libc::c_long,
            std::ptr::from_mut(attr),
            std::mem::size_of::<bpf_attr>(),
        )
    };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// A `bpf(2)` command that returns a new file descriptor.
///
/// # Safety
///
/// As for [`bpf_call`].
unsafe fn sys_bpf(cmd: bpf_cmd, attr: &mut bpf_attr) -> std::io::Result<OwnedFd> {
    // SAFETY: passed on to our caller.
    let r = unsafe { bpf_call(cmd, attr) }?;
    let fd = i32::try_from(r).map_err(|_| std::io::Error::other("bad fd"))?;
    // SAFETY: the kernel returned a new file descriptor that we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The map aya created, by variant.
fn map_data(m: &Map) -> Option<&aya::maps::MapData> {
    match m {
        Map::Array(d)
        | Map::HashMap(d)
        | Map::LruHashMap(d)
        | Map::PerCpuArray(d)
        | Map::PerCpuHashMap(d)
        | Map::PerCpuLruHashMap(d)
        | Map::RingBuf(d)
        | Map::StackTraceMap(d) => Some(d),
        _ => None,
    }
}

/// The file descriptor of a map aya created.
pub(super) fn map_fd(m: &Map) -> Option<i32> {
    Some(map_data(m)?.fd().as_fd().as_raw_fd())
}

/// Copies of some programs, loaded for uprobe_multi links.
#[derive(Debug, Default)]
pub struct MultiPrograms {
    fds: HashMap<&'static str, OwnedFd>,
}

impl MultiPrograms {
    /// Loads `names` from `object` for uprobe_multi links, sharing the maps
    /// of `ebpf` (call before any map is taken out of it). An error means
    /// the kernel has no uprobe_multi (or refused the copy): the caller
    /// keeps perf-event links.
    pub fn load(object: &[u8], ebpf: &Ebpf, names: &[&'static str]) -> Result<Self> {
        let mut obj = aya_obj::Object::parse(object).context("parsing the eBPF object")?;
        let defs = obj.maps.clone();
        let mut fds = Vec::new();
        for (name, def) in &defs {
            let m = ebpf
                .map(name)
                .ok_or_else(|| anyhow!("map {name} not loaded"))?;
            let fd = map_fd(m).ok_or_else(|| anyhow!("map {name}: unexpected type"))?;
            fds.push((name.as_str(), fd, def));
        }
        let text: HashSet<usize> = obj.functions.keys().map(|(s, _)| *s).collect();
        obj.relocate_maps(fds.into_iter(), &text)
            .context("relocating maps")?;
        obj.relocate_calls(&text).context("relocating calls")?;
        let mut out = Self::default();
        for &name in names {
            let prog = obj
                .programs
                .get(name)
                .ok_or_else(|| anyhow!("program {name} missing"))?;
            let func = obj
                .functions
                .get(&prog.function_key())
                .ok_or_else(|| anyhow!("program {name}: no code"))?;
            let fd = load_one(name, &func.instructions, &prog.license)?;
            if out.fds.is_empty() {
                probe_link(&fd)?;
            }
            out.fds.insert(name, fd);
        }
        Ok(out)
    }

    /// Whether `program` has a copy.
    #[must_use]
    pub fn has(&self, program: &str) -> bool {
        self.fds.contains_key(program)
    }

    /// Every copy, with its program's name.
    pub(super) fn copies(&self) -> impl Iterator<Item = (&'static str, BorrowedFd<'_>)> {
        self.fds.iter().map(|(&name, fd)| (name, fd.as_fd()))
    }

    /// Attaches `program` at `offsets` of `exe` for process `pid`, one
    /// cookie per offset. Dropping the returned link removes them all.
    pub fn attach(
        &self,
        program: &str,
        exe: &Path,
        pid: u32,
        offsets: &[u64],
        cookies: &[u64],
    ) -> Result<OwnedFd> {
        let prog = self
            .fds
            .get(program)
            .ok_or_else(|| anyhow!("{program} not loaded for uprobe_multi"))?;
        if offsets.is_empty() || offsets.len() != cookies.len() {
            bail!(
                "uprobe_multi: {} offsets, {} cookies",
                offsets.len(),
                cookies.len()
            );
        }
        let path = CString::new(exe.as_os_str().as_encoded_bytes())
            .context("executable path contains a NUL byte")?;
        // SAFETY: an all-zero bpf_attr is valid (unused fields must be 0).
        let mut attr: bpf_attr = unsafe { std::mem::zeroed() };
        // SAFETY: writing plain integer fields of the link_create member.
        unsafe {
            let lc = &mut attr.link_create;
            lc.__bindgen_anon_1.prog_fd = prog.as_raw_fd() as u32;
            lc.attach_type = bpf_attach_type::BPF_TRACE_UPROBE_MULTI as u32;
            let um = &mut lc.__bindgen_anon_3.uprobe_multi;
            um.path = path.as_ptr() as u64;
            um.offsets = offsets.as_ptr() as u64;
            um.cookies = cookies.as_ptr() as u64;
            um.cnt = u32::try_from(offsets.len())?;
            um.pid = pid;
        }
        // SAFETY: path, offsets and cookies outlive the call and hold `cnt`
        // entries (the path NUL-terminated).
        unsafe { sys_bpf(bpf_cmd::BPF_LINK_CREATE, &mut attr) }
            .with_context(|| format!("uprobe_multi link for {program} ({} sites)", offsets.len()))
    }
}

/// `BPF_LINK_CREATE` of a uprobe_multi link for `prog` on path `/` (a
/// directory: never attached), one offset, for process `pid`; the error.
fn try_link_on_root(prog: &OwnedFd, pid: u32) -> std::io::Error {
    let path = c"/";
    let offsets = [0u64];
    // SAFETY: an all-zero bpf_attr is valid (unused fields must be 0).
    let mut attr: bpf_attr = unsafe { std::mem::zeroed() };
    // SAFETY: writing plain integer fields of the link_create member.
    unsafe {
        let lc = &mut attr.link_create;
        lc.__bindgen_anon_1.prog_fd = prog.as_raw_fd() as u32;
        lc.attach_type = bpf_attach_type::BPF_TRACE_UPROBE_MULTI as u32;
        let um = &mut lc.__bindgen_anon_3.uprobe_multi;
        um.path = path.as_ptr() as u64;
        um.offsets = offsets.as_ptr() as u64;
        um.cnt = 1;
        um.pid = pid;
    }
    // SAFETY: path and offsets outlive the call (one NUL-terminated path,
    // one offset).
    match unsafe { sys_bpf(bpf_cmd::BPF_LINK_CREATE, &mut attr) } {
        // Not expected (`/` is no file to probe): drop the link at once.
        Ok(_link) => std::io::Error::other("a uprobe_multi link on / was created"),
        Err(e) => e,
    }
}

/// Whether the kernel has working uprobe_multi links, by behaviour, as
/// libbpf's `probe_uprobe_multi_link` (tools/lib/bpf/features.c) does: the
/// program load alone proves nothing (Linux 6.1 accepts a kprobe program
/// with `expected_attach_type = BPF_TRACE_UPROBE_MULTI`, then every link
/// fails with EINVAL).
/// - A link on path `/` must fail with EBADF (the path is resolved, and
///   is no regular file): the link type exists.
/// - The same with pid -1 must fail with EINVAL: the kernel checks the pid
///   (the first uprobe_multi kernels filtered by thread, not by process,
///   and this tracer filters by process).
fn probe_link(prog: &OwnedFd) -> Result<()> {
    let e = try_link_on_root(prog, 0);
    if e.raw_os_error() != Some(libc::EBADF) {
        bail!("the kernel has no uprobe_multi links (probe link: {e})");
    }
    let e = try_link_on_root(prog, u32::MAX);
    if e.raw_os_error() != Some(libc::EINVAL) {
        bail!("the kernel's uprobe_multi links filter by thread, not process (probe link: {e})");
    }
    Ok(())
}

/// Loads one program copy: without a verifier log first (as libbpf does: a
/// log can outgrow its buffer and fail a load that would pass), and again
/// with one only to say why a load failed.
fn load_one(name: &str, insns: &[bpf_insn], license: &CString) -> Result<OwnedFd> {
    match load_with_log(name, insns, license, None) {
        Ok(fd) => Ok(fd),
        Err(first) => {
            let mut log = vec![0u8; 1 << 16];
            match load_with_log(name, insns, license, Some(&mut log)) {
                Ok(fd) => Ok(fd),
                Err(e) => {
                    let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
                    let tail =
                        String::from_utf8_lossy(&log[end.saturating_sub(600)..end]).into_owned();
                    Err(anyhow!(
                        "loading {name} for uprobe_multi: {first} (with the verifier's log: {e}): {tail}"
                    ))
                }
            }
        }
    }
}

fn load_with_log(
    name: &str,
    insns: &[bpf_insn],
    license: &CString,
    log: Option<&mut [u8]>,
) -> Result<OwnedFd, std::io::Error> {
    // SAFETY: an all-zero bpf_attr is valid (unused fields must be 0).
    let mut attr: bpf_attr = unsafe { std::mem::zeroed() };
    // SAFETY: writing plain integer fields of the prog-load member.
    unsafe {
        let u = &mut attr.__bindgen_anon_3;
        u.prog_type = bpf_prog_type::BPF_PROG_TYPE_KPROBE as u32;
        u.expected_attach_type = bpf_attach_type::BPF_TRACE_UPROBE_MULTI as u32;
        u.insn_cnt = u32::try_from(insns.len()).unwrap_or(u32::MAX);
        u.insns = insns.as_ptr() as u64;
        u.license = license.as_ptr() as u64;
        if let Some(log) = log {
            u.log_level = 1;
            u.log_size = u32::try_from(log.len()).unwrap_or(u32::MAX);
            u.log_buf = log.as_mut_ptr() as u64;
        }
        for (d, s) in u.prog_name.iter_mut().zip(name.bytes().take(15)) {
            *d = s as libc::c_char;
        }
    }
    // SAFETY: insns (insn_cnt of them), the NUL-terminated license and the
    // log buffer (log_size bytes), if any, outlive the call.
    unsafe { sys_bpf(bpf_cmd::BPF_PROG_LOAD, &mut attr) }
}

/// Reads the first `n` slots of a per-CPU array of u64 in one
/// `BPF_MAP_LOOKUP_BATCH` call (Linux 5.6+) and sums each slot over CPUs.
/// `None` when the kernel refuses (the caller reads slot by slot).
pub(super) fn sum_per_cpu_batch(m: &Map, n: u32) -> Option<Vec<u64>> {
    sum_per_cpu_batch_fd(map_fd(m)?, n)
}

/// Key and value sizes of the map behind `fd` (`BPF_OBJ_GET_INFO_BY_FD`).
fn map_key_value_sizes(fd: i32) -> Option<(u32, u32)> {
    // SAFETY: bpf_map_info is plain old data; all-zero is a valid value.
    let mut info: aya_obj::generated::bpf_map_info = unsafe { std::mem::zeroed() };
    // SAFETY: as above, for bpf_attr.
    let mut attr: bpf_attr = unsafe { std::mem::zeroed() };
    attr.info.bpf_fd = u32::try_from(fd).ok()?;
    attr.info.info_len = u32::try_from(size_of::<aya_obj::generated::bpf_map_info>()).ok()?;
    attr.info.info = std::ptr::from_mut(&mut info) as u64;
    // SAFETY: `info` is a bpf_map_info of the length given, valid for the
    // call; the kernel writes at most info_len bytes.
    unsafe { bpf_call(bpf_cmd::BPF_OBJ_GET_INFO_BY_FD, &mut attr) }.ok()?;
    Some((info.key_size, info.value_size))
}

/// [`sum_per_cpu_batch`] through any file descriptor of the map.
pub(super) fn sum_per_cpu_batch_fd(fd: i32, n: u32) -> Option<Vec<u64>> {
    let cpus = aya::util::nr_cpus().ok()?;
    if n == 0 {
        return Some(Vec::new());
    }
    // The buffers below hold u32 keys and u64 per-CPU values: a map of
    // other sizes would make the kernel write past them.
    if map_key_value_sizes(fd)? != (4, 8) {
        return None;
    }
    let mut keys = vec![0u32; n as usize];
    let mut values = vec![0u64; n as usize * cpus];
    let mut out_batch = 0u32;
    // SAFETY: bpf_attr is plain old data; all-zero is its documented default.
    let mut attr: bpf_attr = unsafe { std::mem::zeroed() };
    // in_batch stays 0: start at the first slot.
    attr.batch.out_batch = std::ptr::from_mut(&mut out_batch) as u64;
    attr.batch.keys = keys.as_mut_ptr() as u64;
    attr.batch.values = values.as_mut_ptr() as u64;
    attr.batch.count = n;
    attr.batch.map_fd = u32::try_from(fd).ok()?;
    // SAFETY: keys and values hold `n` entries (values: `n` times the
    // possible CPUs, 8 bytes each) and out_batch one u32, for the call.
    let r = unsafe { bpf_call(bpf_cmd::BPF_MAP_LOOKUP_BATCH, &mut attr) };
    // ENOENT: the end of the map was reached; `count` says how many were read.
    if r.is_err_and(|e| e.raw_os_error() != Some(libc::ENOENT)) {
        return None;
    }
    // SAFETY: the batch member is the one written above and by the kernel.
    let got = (unsafe { attr.batch.count } as usize).min(n as usize);
    let mut sums = vec![0u64; n as usize];
    for (i, &k) in keys.iter().take(got).enumerate() {
        if let Some(slot) = sums.get_mut(k as usize) {
            *slot = values[i * cpus..(i + 1) * cpus].iter().sum();
        }
    }
    Some(sums)
}

/// Most entries moved by one `BPF_MAP_LOOKUP_AND_DELETE_BATCH` call.
const DRAIN_CHUNK: usize = 1024;

/// Reads and deletes every entry of a per-CPU hash map (plain or LRU) in
/// `BPF_MAP_LOOKUP_AND_DELETE_BATCH` calls (Linux 5.6+), `DRAIN_CHUNK`
/// entries each, handing `f` each key with its per-CPU values. The one-key
/// way costs three system calls per entry (next key, lookup, delete); a
/// write window on a busy service leaves thousands. `None` when the kernel
/// refuses the first call (nothing was deleted: the caller drains key by
/// key), also when the map's key or value size is not `K`'s or `V`'s;
/// entries already handed to `f` stay drained if a later call fails.
pub(super) fn drain_per_cpu_hash<K: aya::Pod + Default, V: aya::Pod + Default>(
    m: &Map,
    mut f: impl FnMut(&K, &[V]),
) -> Option<usize> {
    // The kernel lays out per-CPU values 8-byte aligned, one per possible CPU.
    const { assert!(std::mem::size_of::<V>().is_multiple_of(8)) };
    let d = map_data(m)?;
    // The kernel writes key_size and value_size bytes per entry: they must
    // be exactly K and V.
    let info = d.info().ok()?;
    if info.key_size() as usize != std::mem::size_of::<K>()
        || info.value_size() as usize != std::mem::size_of::<V>()
    {
        return None;
    }
    let fd = u32::try_from(d.fd().as_fd().as_raw_fd()).ok()?;
    let cpus = aya::util::nr_cpus().ok()?;
    let mut chunk = DRAIN_CHUNK;
    let mut keys = vec![K::default(); chunk];
    let mut values = vec![V::default(); chunk * cpus];
    // Opaque position tokens (a bucket index for hash maps).
    let (mut in_batch, mut out_batch) = (0u64, 0u64);
    let mut first = true;
    let mut drained = 0;
    loop {
        // SAFETY: bpf_attr is plain old data; all-zero is its documented default.
        let mut attr: bpf_attr = unsafe { std::mem::zeroed() };
        // in_batch stays 0 (null) on the first call: start at the beginning.
        if !first {
            attr.batch.in_batch = std::ptr::from_mut(&mut in_batch) as u64;
        }
        attr.batch.out_batch = std::ptr::from_mut(&mut out_batch) as u64;
        attr.batch.keys = keys.as_mut_ptr() as u64;
        attr.batch.values = values.as_mut_ptr() as u64;
        attr.batch.count = u32::try_from(chunk).ok()?;
        attr.batch.map_fd = fd;
        // SAFETY: keys and values hold `chunk` entries of the map's key and
        // value sizes (values: `chunk` times the possible CPUs), in_batch and
        // out_batch one u64 each (the hash map's token is a u32), for the
        // call.
        let r = unsafe { bpf_call(bpf_cmd::BPF_MAP_LOOKUP_AND_DELETE_BATCH, &mut attr) };
        let errno = r.err().map(|e| e.raw_os_error());
        // SAFETY: the batch member is the one written above and by the kernel.
        let got = (unsafe { attr.batch.count } as usize).min(chunk);
        match errno {
            // ENOENT: the end of the map; `count` says how many were read.
            None | Some(Some(libc::ENOENT)) => {}
            // ENOSPC: one bucket holds more entries than `chunk`.
            Some(Some(libc::ENOSPC)) if got == 0 && chunk < 64 * DRAIN_CHUNK => {
                chunk *= 4;
                keys.resize(chunk, K::default());
                values.resize(chunk * cpus, V::default());
                continue;
            }
            Some(_) if first => return None,
            Some(_) => return Some(drained),
        }
        for (i, k) in keys.iter().take(got).enumerate() {
            f(k, &values[i * cpus..(i + 1) * cpus]);
        }
        drained += got;
        if errno.is_some() {
            return Some(drained);
        }
        first = false;
        in_batch = out_batch;
    }
}
