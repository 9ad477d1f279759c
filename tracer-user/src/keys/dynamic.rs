//! Interface keys shown by the value they hold: `string("key-…" (len 9,
//! #1a2b3c4d))`, `int(42)`, `0xc000123000 (*main.conn)`, rather than their
//! two words. A `sync.Map`'s keys are all `any`, and so are the keys of
//! `map[any]V`.
//!
//! Only examples are rendered this way (at most [`super::POOL`] per map,
//! when its pool of examples is refilled): each costs a read of the value
//! and one per string in it, and a read of its type descriptor the first
//! time that type is seen. The value is read when the example is rendered,
//! not when the key was found; an example is a key still present then, and
//! interface keys are immutable, so it reads the same.
#![allow(
    clippy::wildcard_imports,
    reason = "a part of keys/mod.rs, with its items"
)]
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use super::*;
use crate::keys::{
    identity::Plan,
    snapshot::{RAW_CAP, STR_READ, str_hash},
};

/// Types resolved per reader, at most (then the cache starts over).
const MAX_CACHED_TYPES: usize = 1024;
/// `abi.KindDirectIface` in the kind byte (to Go 1.25), and
/// `abi.TFlagDirectIface` in the tflag byte (Go 1.26+): the interface's
/// data word is the value itself (a pointer-shaped type).
const DIRECT_IFACE: u8 = 0x20;
/// `runtime.itab`: the dynamic type at 8 (after the interface type).
const ITAB_TYPE_OFF: u64 = 8;

/// Shows what an interface value holds (see the module doc).
pub trait InterfaceValues: Send + Sync + std::fmt::Debug {
    /// The value of an interface whose words are `tab` (its type, or for
    /// a non-empty interface its itab) and `data`; `empty`: an `any`.
    /// `None` when its type or value cannot be read.
    fn render(&self, tab: u64, data: u64, empty: bool, show_keys: bool) -> Option<String>;
}

/// A dynamic type, resolved once.
#[derive(Debug)]
struct Dynamic {
    kt: KeyType,
    /// Offsets of its string headers.
    strs: Vec<u64>,
    /// The data word is the value.
    direct: bool,
}

/// What rendering needs of one process: its memory, the runtime layout, the
/// Go minor version and type names; the types seen so far.
pub(crate) struct Resolver<R> {
    r: R,
    layout: RuntimeLayout,
    minor: u32,
    names: Box<dyn Fn(u64) -> Option<String> + Send + Sync>,
    types: Mutex<HashMap<u64, Option<Arc<Dynamic>>>>,
}

impl<R> std::fmt::Debug for Resolver<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolver")
            .field("minor", &self.minor)
            .finish_non_exhaustive()
    }
}

/// The resolver of a live process.
#[derive(Debug)]
pub struct LiveInterfaces(Resolver<Memory>);

impl LiveInterfaces {
    /// For the process `mem` reads, running `bin` loaded at `bias`.
    #[must_use]
    pub fn live(mem: Memory, bin: Arc<BinaryInfo>, bias: u64) -> Self {
        let (layout, minor) = (bin.layout.clone(), bin.go_version.minor);
        let m = mem.clone();
        let names = move |rt: u64| type_name_at(&m, &bin, bias, rt);
        Self(Resolver::new(mem, layout, minor, Box::new(names)))
    }
}

impl InterfaceValues for LiveInterfaces {
    fn render(&self, tab: u64, data: u64, empty: bool, show_keys: bool) -> Option<String> {
        self.0.show(tab, data, empty, show_keys)
    }
}

impl<R: Reader> Resolver<R> {
    pub(crate) fn new(
        r: R,
        layout: RuntimeLayout,
        minor: u32,
        names: Box<dyn Fn(u64) -> Option<String> + Send + Sync>,
    ) -> Self {
        Self {
            r,
            layout,
            minor,
            names,
            types: Mutex::new(HashMap::new()),
        }
    }

    fn dynamic(&self, t: u64) -> Option<Arc<Dynamic>> {
        let mut cache = self
            .types
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(d) = cache.get(&t) {
            return d.clone();
        }
        if cache.len() >= MAX_CACHED_TYPES {
            cache.clear();
        }
        let d = self.resolve(t).map(Arc::new);
        cache.insert(t, d.clone());
        d
    }

    fn resolve(&self, t: u64) -> Option<Dynamic> {
        let mut hdr = [0u8; 24];
        if !self.r.read(t, &mut hdr) {
            return None;
        }
        let kind_off = usize::try_from(self.layout.type_kind.unwrap_or(23)).ok()?;
        let tflag_off = usize::try_from(self.layout.type_tflag.unwrap_or(20)).ok()?;
        let direct = if self.minor >= 26 {
            hdr.get(tflag_off)? & DIRECT_IFACE != 0
        } else {
            hdr.get(kind_off)? & DIRECT_IFACE != 0
        };
        let mut budget = MAX_TYPES;
        let kt = resolve_type(
            &self.r,
            &self.layout,
            self.minor,
            &*self.names,
            t,
            0,
            &mut budget,
        )?;
        let strs = Plan::new(&kt).strs;
        Some(Dynamic { kt, strs, direct })
    }

    /// The value's bytes (the first [`RAW_CAP`]) and its strings.
    fn read_value(&self, d: &Dynamic, data: u64) -> Option<Key> {
        let raw: Vec<u8> = if d.direct {
            data.to_le_bytes().to_vec()
        } else if d.kt.size == 0 {
            Vec::new()
        } else {
            let n = usize::try_from(d.kt.size).ok()?.min(RAW_CAP);
            let mut v = vec![0u8; n];
            if data == 0 || !self.r.read(data, &mut v) {
                return None;
            }
            v
        };
        let mut strs = Vec::new();
        for &off in d.strs.iter().take(MAX_STR_LEAVES) {
            let (Some(p), Some(n)) = (le64(&raw, off), le64(&raw, off + 8)) else {
                break;
            };
            let text = if n == 0 {
                Some(Box::default())
            } else if p == 0 || n >= 1 << 48 {
                None
            } else {
                let mut t = vec![0u8; usize::try_from(n.min(STR_READ)).ok()?];
                self.r.read(p, &mut t).then(|| t.into_boxed_slice())
            };
            let hash = text
                .as_deref()
                .map_or_else(|| str_hash(&p.to_le_bytes(), n), |t| str_hash(t, n));
            strs.push(StrVal { len: n, hash, text });
        }
        Some(Key {
            id: 0,
            raw: RawKey::new(&raw),
            ptr: None,
            strs,
        })
    }
}

impl<R: Reader> Resolver<R> {
    /// See [`InterfaceValues::render`].
    pub(crate) fn show(&self, tab: u64, data: u64, empty: bool, show_keys: bool) -> Option<String> {
        if tab == 0 {
            return Some("nil".to_owned());
        }
        let t = if empty {
            tab
        } else {
            let mut w = [0u8; 8];
            if !self.r.read(tab.checked_add(ITAB_TYPE_OFF)?, &mut w) {
                return None;
            }
            u64::from_le_bytes(w)
        };
        let d = self.dynamic(t)?;
        let key = self.read_value(&d, data)?;
        let text = render(&key, &d.kt, show_keys);
        // Pointers already name their type: `0xc000… (*main.T)`.
        if text.ends_with(&format!("({})", d.kt.name)) {
            Some(text)
        } else {
            Some(format!("{}({text})", d.kt.name))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{super::testmem::FakeMem, *};

    fn ty(m: &FakeMem, addr: u64, size: u64, kind_byte: u8, tflag: u8) {
        let mut d = vec![0u8; 72];
        d[0..8].copy_from_slice(&size.to_le_bytes());
        d[20] = tflag;
        d[23] = kind_byte;
        m.put(addr, d);
    }

    fn resolver(m: FakeMem, minor: u32) -> Resolver<FakeMem> {
        let layout = RuntimeLayout::builtin(minor, MapImpl::Swiss, crate::inspect::GoArch::Amd64);
        let names = |a: u64| {
            Some(
                match a {
                    0x1000 => "string",
                    0x1100 => "int",
                    0x1200 => "*main.conn",
                    _ => return None,
                }
                .to_owned(),
            )
        };
        Resolver::new(m, layout, minor, Box::new(names))
    }

    /// A string, an int and a pointer held by `any` keys, on Go 1.24 (the
    /// direct flag in the kind byte) and 1.26 (in tflag); a non-empty
    /// interface through its itab; nil; an unreadable value.
    #[test]
    fn values_of_interface_keys() {
        for minor in [24, 26] {
            let m = FakeMem::default();
            let (direct_kind, direct_tflag) = if minor >= 26 {
                (0, DIRECT_IFACE)
            } else {
                (DIRECT_IFACE, 0)
            };
            ty(&m, 0x1000, 16, kind::STRING, 0);
            ty(&m, 0x1100, 8, kind::INT, 0);
            ty(&m, 0x1200, 8, kind::POINTER | direct_kind, direct_tflag);
            // A string header at 0x5000 pointing at "key-12345".
            let mut s = 0x6000u64.to_le_bytes().to_vec();
            s.extend_from_slice(&9u64.to_le_bytes());
            m.put(0x5000, s);
            m.put(0x6000, b"key-12345".to_vec());
            m.put(0x5100, 42i64.to_le_bytes().to_vec());
            // An itab whose dynamic type is int.
            let mut itab = vec![0u8; 8];
            itab.extend_from_slice(&0x1100u64.to_le_bytes());
            m.put(0x7000, itab);
            let r = resolver(m, minor);
            assert_eq!(
                r.show(0x1000, 0x5000, true, true).as_deref(),
                Some("string(\"key-12345\")")
            );
            let redacted = r.show(0x1000, 0x5000, true, false).unwrap();
            assert!(
                redacted.starts_with("string(\"key-…\" (len 9, #"),
                "{redacted}"
            );
            assert_eq!(
                r.show(0x1100, 0x5100, true, false).as_deref(),
                Some("int(42)")
            );
            assert_eq!(
                r.show(0x1200, 0xc000_1000, true, false).as_deref(),
                Some("0xc0001000 (*main.conn)"),
                "go1.{minor}: a pointer is the data word itself"
            );
            assert_eq!(
                r.show(0x7000, 0x5100, false, false).as_deref(),
                Some("int(42)")
            );
            assert_eq!(r.show(0, 0, true, false).as_deref(), Some("nil"));
            assert_eq!(r.show(0x1100, 0x9999_0000, true, false), None);
            assert_eq!(r.show(0x4444, 0x5100, true, false), None, "no type there");
        }
    }
}
