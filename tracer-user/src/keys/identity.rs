//! A key's identity: how its bytes are hashed (its type's leaves, padding
//! left out, strings by content, floats with -0 = +0), so that one key hashes
//! the same from snapshot to snapshot.
#![allow(
    clippy::wildcard_imports,
    reason = "a part of keys/mod.rs, with its items"
)]
use super::*;

/// One piece of a key's identity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Seg {
    /// Bytes hashed as they are.
    Bytes { off: u64, len: u64 },
    /// A string header: its content (and length) is hashed.
    Str { off: u64 },
    /// A float: -0 and +0 hash the same (they are the same key).
    Float { off: u64, size: u64 },
}

/// How to hash a key: the leaves of its type, padding left out, so that a key
/// hashes the same whatever is in its padding and wherever its strings live
/// (assigning an existing string key stores the new header in the slot).
#[derive(Clone, Debug, Default)]
pub(super) struct Plan {
    pub(super) segs: Vec<Seg>,
    /// Offsets of the string headers, in leaf order.
    pub(super) strs: Vec<u64>,
}

/// Most hashing segments per key; more falls back to hashing the raw bytes.
const MAX_SEGS: usize = 64;

impl Plan {
    pub(super) fn new(kt: &KeyType) -> Self {
        let mut p = Self::default();
        if p.flatten(kt, 0) && p.segs.len() <= MAX_SEGS {
            return p;
        }
        Self {
            segs: vec![Seg::Bytes {
                off: 0,
                len: kt.size,
            }],
            strs: Vec::new(),
        }
    }

    pub(super) fn push_bytes(&mut self, off: u64, len: u64) {
        if len == 0 {
            return;
        }
        if let Some(Seg::Bytes { off: o, len: l }) = self.segs.last_mut()
            && *o + *l == off
        {
            *l += len;
            return;
        }
        self.segs.push(Seg::Bytes { off, len });
    }

    pub(super) fn flatten(&mut self, kt: &KeyType, base: u64) -> bool {
        if self.segs.len() > MAX_SEGS {
            return false;
        }
        match &kt.kind {
            KeyKind::String => {
                self.segs.push(Seg::Str { off: base });
                self.strs.push(base);
            }
            KeyKind::Float => self.segs.push(Seg::Float {
                off: base,
                size: kt.size,
            }),
            KeyKind::Complex => {
                let h = kt.size / 2;
                self.segs.push(Seg::Float { off: base, size: h });
                self.segs.push(Seg::Float {
                    off: base + h,
                    size: h,
                });
            }
            KeyKind::Struct(fs) => {
                for f in fs {
                    if !self.flatten(&f.ty, base + f.offset) {
                        return false;
                    }
                }
            }
            KeyKind::Array { elem, len } => {
                if elem.string_leaves() == 0 && !has_float(elem) {
                    // Arrays of plain scalars: one run of bytes (arrays of
                    // structs with padding are rare; hash their padding).
                    self.push_bytes(base, kt.size);
                } else {
                    for i in 0..*len {
                        if !self.flatten(elem, base + i * elem.size) {
                            return false;
                        }
                    }
                }
            }
            _ => self.push_bytes(base, kt.size),
        }
        true
    }
}

pub(super) fn has_float(kt: &KeyType) -> bool {
    match &kt.kind {
        KeyKind::Float | KeyKind::Complex => true,
        KeyKind::Struct(fs) => fs.iter().any(|f| has_float(&f.ty)),
        KeyKind::Array { elem, .. } => has_float(elem),
        _ => false,
    }
}

/// The 64-bit identity hash: a word-at-a-time mix with the splitmix64
/// finalizer (a bijection, so distinct words from one state give distinct
/// states). Not cryptographic; stable across runs and platforms.
#[derive(Clone, Copy, Debug)]
pub(crate) struct IdHasher {
    h: u64,
    n: u64,
}

const fn mix(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

impl IdHasher {
    pub(crate) const fn new() -> Self {
        Self {
            h: 0x243f_6a88_85a3_08d3,
            n: 0,
        }
    }

    pub(crate) fn write(&mut self, b: &[u8]) {
        let mut chunks = b.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.word(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            // Tag the tail with its length so "a" and "a\0" differ.
            self.word(u64::from_le_bytes(w) ^ ((rest.len() as u64) << 59));
        }
        self.n = self.n.wrapping_add(b.len() as u64);
    }

    pub(crate) fn word(&mut self, w: u64) {
        self.h = mix(self.h.rotate_left(17) ^ w);
    }

    pub(crate) const fn finish(&self) -> u64 {
        mix(self.h ^ self.n.wrapping_mul(0x9e37_79b9_7f4a_7c15))
    }
}
