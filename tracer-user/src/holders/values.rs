//! Maps held as values of other maps: `main.tenants → ["acme"]`. The
//! search gets the tracked maps whose elements are maps (the containers);
//! each is walked once per search with the key snapshot's readers
//! ([`crate::keys::values`]), and every element that holds a map the
//! search may look for (a suspect, or another container) is indexed by
//! that map pointer with its key, rendered as the report renders keys
//! (redacted unless `--show-keys`).
use std::{collections::HashMap, time::Instant};

use crate::{
    inspect::BinaryInfo,
    keys::{self, Reader, values},
    sample::Memory,
};

/// A map's element that holds a map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ValueRef {
    /// The map holding it (header address) and its type descriptor.
    pub(crate) container: u64,
    pub(crate) container_type: u64,
    /// The element type descriptor: the held map's type.
    pub(crate) elem_type: u64,
    /// Address of the element.
    pub(crate) at: u64,
    /// The step, e.g. `["acme"]`.
    pub(crate) step: String,
}

/// Elements indexed by the map pointer they hold.
#[derive(Debug, Default)]
pub(crate) struct Values {
    pub(crate) by_word: HashMap<u64, Vec<ValueRef>>,
    /// Entries read, over all containers.
    pub(crate) entries_read: u64,
    /// A bound or the deadline left a container unread or partly read.
    pub(crate) cut_short: bool,
}

/// Containers walked per search (the caller gives the largest first).
pub const MAX_CONTAINERS: usize = 64;
/// Entries read per container.
const MAX_ENTRIES: usize = 200_000;
/// Entries read per search, over all containers.
const MAX_TOTAL_ENTRIES: u64 = 1_000_000;
/// Bytes one container's walk reads at most.
const MAX_BYTES: u64 = 16 << 20;
/// Elements indexed per held map.
const MAX_REFS: usize = 4;

/// Walks `containers` (map, type descriptor) and indexes their elements
/// that hold one of `wanted` (map pointers).
pub(crate) fn read(
    mem: &Memory,
    info: &BinaryInfo,
    bias: u64,
    containers: &[(u64, u64)],
    wanted: &std::collections::HashSet<u64>,
    show_keys: bool,
    deadline: Instant,
) -> Values {
    let mut out = Values::default();
    for (i, &(map, ty)) in containers.iter().enumerate() {
        if i >= MAX_CONTAINERS
            || out.entries_read >= MAX_TOTAL_ENTRIES
            || Instant::now() >= deadline
        {
            out.cut_short = true;
            break;
        }
        let Some(kl) = keys::key_layout(mem, info, bias, ty) else {
            continue;
        };
        let Some(el) = values::elem_layout(mem, &info.layout, &kl, ty) else {
            continue;
        };
        index(
            mem,
            &info.layout,
            &kl,
            el,
            (map, ty),
            wanted,
            show_keys,
            &mut out,
        );
    }
    out
}

/// Walks one container into `out`.
#[allow(clippy::too_many_arguments, reason = "one walk's inputs")]
pub(crate) fn index<R: Reader>(
    r: &R,
    l: &crate::inspect::RuntimeLayout,
    kl: &keys::KeyLayout,
    el: values::ElemLayout,
    (map, ty): (u64, u64),
    wanted: &std::collections::HashSet<u64>,
    show_keys: bool,
    out: &mut Values,
) {
    let Some((entries, walked)) = values::entries(r, l, kl, el, map, MAX_ENTRIES, MAX_BYTES) else {
        return;
    };
    out.entries_read += entries.len() as u64;
    out.cut_short |= !matches!(walked, values::Walked::Whole | values::Walked::Near);
    for e in entries {
        if e.word == 0 || e.word == map || !wanted.contains(&e.word) {
            continue;
        }
        let refs = out.by_word.entry(e.word).or_default();
        if refs.len() < MAX_REFS {
            refs.push(ValueRef {
                container: map,
                container_type: ty,
                elem_type: el.elem_type,
                at: e.at,
                step: values::key_step(&e.key, &kl.key_type, show_keys),
            });
        }
    }
}

/// Whether the map type named `name` (`map[K]V`) has map elements.
#[must_use]
pub fn elem_is_map(name: &str) -> bool {
    let Some(rest) = name.strip_prefix("map[") else {
        return false;
    };
    // The key type ends at the `]` that closes `map[`.
    let mut depth = 1usize;
    for (i, c) in rest.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => {
                depth -= 1;
                if depth == 0 {
                    return rest[i + 1..].starts_with("map[");
                }
            }
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_elements_by_name() {
        assert!(elem_is_map("map[string]map[string]int"));
        assert!(elem_is_map("map[[2]int]map[int]int"));
        assert!(!elem_is_map("map[string]int"));
        assert!(!elem_is_map("map[string][]map[int]int"));
        assert!(!elem_is_map("map[string]*map[int]int"));
        assert!(!elem_is_map("[]map[int]int"));
        assert!(!elem_is_map("map[string"));
    }
}
