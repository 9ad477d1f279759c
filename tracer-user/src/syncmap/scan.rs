//! Finding the sync.Maps first used before attach (their `initSlow` is
//! past) among the target's globals, whatever the binary kept: one pass
//! over its writable globals for initialised HashTrieMap headers whose hash
//! and equality functions are `runtime.nilinterhash` and
//! `runtime.nilinterequal` (the `[any, any]` instantiation's: `initSlow`
//! takes them from the `map[any]any` type,
//! `golang/go@go1.24.0:src/internal/sync/hashtriemap.go#L46`). Those two
//! functions are in the pclntab, so stripped and PIE binaries work, and a
//! sync.Map embedded in a global struct is found too (its owner is then
//! `symbol+offset`).
//!
//! `keyHash` and `valEqual` are func values: pointers to a funcval whose
//! first word is the code. The pass keeps every 8-byte aligned 48-byte
//! window shaped like an initialised header ([`candidates`], pure), then
//! reads each distinct funcval once and keeps the windows whose code is
//! those functions'. Bounded: at most [`MAX_SCAN_BYTES`] of globals,
//! [`MAX_CANDIDATES`] windows and [`MAX_FUNCVALS`] funcvals.
use std::{collections::HashMap, time::Instant};

use super::{GlobalSyncMap, TrieLayout, walk::plausible_ptr};
use crate::{inspect::BinaryInfo, sample::Memory};

/// Bytes of globals read at most (as the owner search).
pub const MAX_SCAN_BYTES: u64 = 64 << 20;
/// Header-shaped windows kept at most.
pub const MAX_CANDIDATES: usize = 65_536;
/// Distinct funcvals read at most.
pub const MAX_FUNCVALS: usize = 4_096;
/// Bytes of globals read per system call.
const CHUNK: usize = 1 << 20;

/// An initialised HashTrieMap header's shape at `addr`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// Where the header is (run-time).
    pub addr: u64,
    /// `keyHash`: the funcval's address.
    pub key_hash: u64,
    /// `valEqual`: the funcval's address.
    pub val_equal: u64,
}

/// The windows of `bytes` (globals at run-time `base`, 8-byte aligned)
/// shaped like an initialised header: `inited` 1, and root, `keyHash` and
/// `valEqual` plausible pointers. At most `max` are added to `out`.
pub fn candidates(bytes: &[u8], base: u64, l: &TrieLayout, max: usize, out: &mut Vec<Candidate>) {
    let size = l.map_size as usize;
    let word = |o: usize| -> u64 {
        bytes
            .get(o..o + 8)
            .and_then(|b| b.try_into().ok())
            .map_or(0, u64::from_le_bytes)
    };
    let mut o = 0usize;
    while o + size <= bytes.len() && out.len() < max {
        let inited = word(o + l.map_inited as usize) & 0xffff_ffff;
        if inited == 1 {
            let root = word(o + l.map_root as usize);
            // keyHash and valEqual follow root (`#L21`).
            let key_hash = word(o + l.map_root as usize + 8);
            let val_equal = word(o + l.map_root as usize + 16);
            if plausible_ptr(root) && plausible_ptr(key_hash) && plausible_ptr(val_equal) {
                out.push(Candidate {
                    addr: base + o as u64,
                    key_hash,
                    val_equal,
                });
            }
        }
        o += 8;
    }
}

/// The sync.Maps initialised in the globals of the process `mem` reads
/// (`bias`: its load bias), named by the data symbol they are in. Stops at
/// `deadline` with what it found.
#[must_use]
pub fn scan_globals(
    info: &BinaryInfo,
    mem: &Memory,
    bias: u64,
    l: &TrieLayout,
    deadline: Instant,
) -> Vec<GlobalSyncMap> {
    let code = |name: &str| -> Vec<u64> {
        info.functions()
            .iter()
            .filter(|f| f.name == name)
            .map(|f| f.entry.wrapping_add(bias))
            .collect()
    };
    let (hash, equal) = (code("runtime.nilinterhash"), code("runtime.nilinterequal"));
    let Some((lo, hi)) = info.data_range() else {
        return Vec::new();
    };
    if hash.is_empty() || equal.is_empty() {
        return Vec::new();
    }
    let hi = hi.min(lo.saturating_add(MAX_SCAN_BYTES));
    let size = l.map_size as usize;
    let mut cands = Vec::new();
    let mut buf = vec![0u8; CHUNK + size];
    let mut a = lo & !7;
    while a < hi && cands.len() < MAX_CANDIDATES && Instant::now() < deadline {
        // Each chunk overlaps the next by a header, so a header across
        // the boundary is seen whole (and once: windows start in the chunk).
        let want = ((hi - a) as usize + size).min(buf.len()) & !7;
        let n = mem.read_some(a.wrapping_add(bias), &mut buf[..want]) & !7;
        if n == 0 {
            // An unmapped page: skip it.
            a = (a + 4096) & !4095;
            continue;
        }
        let step = n.min(CHUNK);
        let mut found = Vec::new();
        candidates(
            &buf[..n],
            a.wrapping_add(bias),
            l,
            MAX_CANDIDATES - cands.len(),
            &mut found,
        );
        let end = a.wrapping_add(bias) + step as u64;
        cands.extend(found.into_iter().filter(|c| c.addr < end));
        a += step as u64;
    }
    let code_of = funcval_code(mem, &cands);
    cands
        .into_iter()
        .filter(|c| {
            code_of.get(&c.key_hash).is_some_and(|p| hash.contains(p))
                && code_of.get(&c.val_equal).is_some_and(|p| equal.contains(p))
        })
        .map(|c| GlobalSyncMap {
            name: super::owner_of(info, bias, c.addr)
                .unwrap_or_else(|| format!("global at {:#x}", c.addr)),
            addr: c.addr,
        })
        .collect()
}

/// The code pointer of each distinct funcval the candidates point to (at
/// most [`MAX_FUNCVALS`], in one batched read).
fn funcval_code(mem: &Memory, cands: &[Candidate]) -> HashMap<u64, u64> {
    let mut fvs: Vec<u64> = cands
        .iter()
        .flat_map(|c| [c.key_hash, c.val_equal])
        .collect();
    fvs.sort_unstable();
    fvs.dedup();
    fvs.truncate(MAX_FUNCVALS);
    let regions: Vec<(u64, usize)> = fvs.iter().map(|&f| (f, 8)).collect();
    let mut buf = Vec::new();
    let ok = mem.read_flat(&regions, &mut buf);
    fvs.iter()
        .zip(ok)
        .enumerate()
        .filter(|(_, (_, ok))| *ok)
        .filter_map(|(i, (&f, _))| {
            let w = buf.get(i * 8..i * 8 + 8)?.try_into().ok()?;
            Some((f, u64::from_le_bytes(w)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Initialised headers are found at any 8-byte offset; never-used ones,
    /// and windows with a null or unaligned pointer, are not.
    #[test]
    fn candidates_are_initialised_header_shapes() {
        let l = TrieLayout::for_minor(26).unwrap();
        let mut g = vec![0u8; 512];
        let put = |g: &mut Vec<u8>, o: usize, v: u64| g[o..o + 8].copy_from_slice(&v.to_le_bytes());
        // At 16: a live header.
        put(&mut g, 16, 1);
        put(&mut g, 32, 0xc000_1000);
        put(&mut g, 40, 0x5a_0010);
        put(&mut g, 48, 0x5a_0018);
        put(&mut g, 56, 1234);
        // At 200: inited but its root unaligned (not a header).
        put(&mut g, 200, 1);
        put(&mut g, 216, 0xc000_1003);
        put(&mut g, 224, 0x5a_0010);
        put(&mut g, 232, 0x5a_0018);
        // At 400: never used (all zero but a seed).
        put(&mut g, 440, 99);
        let mut out = Vec::new();
        candidates(&g, 0x60_0000, &l, 100, &mut out);
        assert_eq!(
            out,
            vec![Candidate {
                addr: 0x60_0010,
                key_hash: 0x5a_0010,
                val_equal: 0x5a_0018
            }]
        );
        out.clear();
        candidates(&g, 0x60_0000, &l, 0, &mut out);
        assert!(out.is_empty());
        candidates(&g[..20], 0, &l, 100, &mut out);
        assert!(out.is_empty());
    }
}
