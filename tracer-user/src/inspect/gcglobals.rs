//! The runtime's GC globals (`runtime.work`, `runtime.memstats`,
//! `runtime.gcController`) in a binary whose symbols are gone: recovered
//! from the code of runtime functions that use them, which pclntab still
//! names. Each address is taken from one function and confirmed by a second
//! use; when the code does not have the expected shape the global stays
//! unknown (the tracer then counts cycles from attach) rather than guessed.
//!
//! The shapes, checked on Go 1.19 to 1.27, amd64 and arm64, by the tier-1
//! tests against the unstripped twin of every fixture:
//! - `runtime.GC` starts with `n := work.cycles.Load()` and loads
//!   `work.cycles` again later: its first 32-bit load of a global, seen at
//!   least twice, is `&work.cycles` (`1.26:src/runtime/mgc.go:GC`). Programs
//!   that never call `runtime.GC` do not have it; every program has
//!   `gcTrigger.test`, which reads `work.cycles`, and `gcStart`, which
//!   increments it: the one global both use is `&work.cycles`.
//! - `runtime.gcMarkTermination` runs `memstats.numgc++` and, right after
//!   it, `memstats.numforcedgc++` (the next field): the lowest of two 32-bit
//!   increments four bytes apart is `&memstats.numgc`.
//! - `runtime.gcControllerCommit` calls `gcController.commit(...)`: the
//!   first address passed as the first argument is `&gcController`, and
//!   `runtime.gcStart` passes the same address to `gcController.startCycle`.

use std::collections::BTreeSet;

use super::BinaryInfo;
use super::coderefs::{self, Access, CodeRefs};

/// What [`BinaryInfo::gc_globals_from_code`] found (link-time addresses).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CodeGlobals {
    /// `runtime.work`.
    pub work: Option<u64>,
    /// `runtime.memstats`.
    pub memstats: Option<u64>,
    /// `runtime.gcController`.
    pub gc_controller: Option<u64>,
}

/// The function that gives `runtime.work`.
pub const WORK_FROM: &str = "runtime.GC";
/// The function that gives `runtime.work` in every program (with `runtime.gcStart`).
pub const WORK_FROM_TRIGGER: &str = "runtime.gcTrigger.test";
/// The function that gives `runtime.memstats`.
pub const MEMSTATS_FROM: &str = "runtime.gcMarkTermination";
/// The function that gives `runtime.gcController`.
pub const GC_CONTROLLER_FROM: &str = "runtime.gcControllerCommit";

impl BinaryInfo {
    fn code_refs(&self, name: &str) -> Option<CodeRefs> {
        let f = self.func_by_name(name)?;
        let len = usize::try_from(f.end.checked_sub(f.entry)?).ok()?;
        // The largest of these functions is a few KiB; refuse nonsense.
        if len > 1 << 20 {
            return None;
        }
        Some(coderefs::scan(
            self.goarch,
            self.read_va(f.entry, len)?,
            f.entry,
        ))
    }

    /// Recovers the GC globals from code (see the module documentation).
    #[must_use]
    pub fn gc_globals_from_code(&self) -> CodeGlobals {
        let Some((lo, hi)) = self.data_range() else {
            return CodeGlobals::default();
        };
        let in_data = |a: u64| a >= lo && a < hi;
        let l = &self.layout;
        // Both `work` and `gcController` are confirmed by gcStart: decode it once.
        let start = self.code_refs("runtime.gcStart");
        CodeGlobals {
            work: self
                .work_cycles_from_code(start.as_ref(), &in_data)
                .and_then(|ea| ea.checked_sub(u64::from(l.work_cycles?))),
            memstats: self
                .code_refs(MEMSTATS_FROM)
                .and_then(|r| adjacent_increments(&r, &in_data))
                .and_then(|ea| ea.checked_sub(u64::from(l.memstats_numgc?))),
            gc_controller: self.code_refs(GC_CONTROLLER_FROM).and_then(|r| {
                let a = first_call_argument(&r, &in_data)?;
                let start = start.as_ref()?;
                start.calls.iter().any(|c| c.arg0 == Some(a)).then_some(a)
            }),
        }
    }
}

impl BinaryInfo {
    /// `&work.cycles`: from `runtime.GC` when the program calls it (the
    /// linker drops it otherwise), and from `runtime.gcTrigger.test` and
    /// `runtime.gcStart`, which every program has: the one global that the
    /// first reads as 32 bits (`t.n - work.cycles`) and the second adds to
    /// (`work.cycles.Add(1)`; `work.cycles++` up to 1.19). When both give
    /// an answer they must agree.
    fn work_cycles_from_code(
        &self,
        start: Option<&CodeRefs>,
        in_data: &dyn Fn(u64) -> bool,
    ) -> Option<u64> {
        let from_gc = self
            .code_refs(WORK_FROM)
            .and_then(|r| first_repeated_load(&r, in_data));
        let from_trigger = (|| {
            let test = self.code_refs(WORK_FROM_TRIGGER)?;
            read_and_updated(&test, start?, in_data)
        })();
        match (from_gc, from_trigger) {
            (Some(a), Some(b)) if a != b => None,
            (a, b) => a.or(b),
        }
    }
}

/// The one global that `reader` reads as 32 bits and `updater` adds to
/// (plainly or atomically); `None` unless exactly one.
fn read_and_updated(
    reader: &CodeRefs,
    updater: &CodeRefs,
    in_data: &dyn Fn(u64) -> bool,
) -> Option<u64> {
    let read: BTreeSet<u64> = reader
        .refs
        .iter()
        .filter(|d| d.access == Access::Load32 && in_data(d.ea))
        .map(|d| d.ea)
        .collect();
    let both: BTreeSet<u64> = updater
        .refs
        .iter()
        .filter(|d| matches!(d.access, Access::Inc32 | Access::AtomicAdd32) && read.contains(&d.ea))
        .map(|d| d.ea)
        .collect();
    let mut it = both.into_iter();
    match (it.next(), it.next()) {
        (Some(a), None) => Some(a),
        _ => None,
    }
}

/// The first 32-bit load of a global that the function loads again.
fn first_repeated_load(r: &CodeRefs, in_data: &dyn Fn(u64) -> bool) -> Option<u64> {
    let loads: Vec<u64> = r
        .refs
        .iter()
        .filter(|d| d.access == Access::Load32 && in_data(d.ea))
        .map(|d| d.ea)
        .collect();
    let first = *loads.first()?;
    (loads.iter().filter(|&&a| a == first).count() >= 2).then_some(first)
}

/// The lowest address `a` such that both `a` and `a + 4` are incremented.
fn adjacent_increments(r: &CodeRefs, in_data: &dyn Fn(u64) -> bool) -> Option<u64> {
    let incs: BTreeSet<u64> = r
        .refs
        .iter()
        .filter(|d| d.access == Access::Inc32 && in_data(d.ea))
        .map(|d| d.ea)
        .collect();
    incs.iter()
        .copied()
        .find(|a| a.checked_add(4).is_some_and(|b| incs.contains(&b)))
}

/// The first global passed by address as a call's first argument.
fn first_call_argument(r: &CodeRefs, in_data: &dyn Fn(u64) -> bool) -> Option<u64> {
    r.calls.iter().filter_map(|c| c.arg0).find(|&a| in_data(a))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::coderefs::{CallSite, DataRef};

    fn dr(ea: u64, access: Access) -> DataRef {
        DataRef { pc: 0, ea, access }
    }

    #[test]
    fn picks_the_repeated_first_load_only() {
        let in_data = |a: u64| a >= 0x1000;
        let r = CodeRefs {
            refs: vec![
                dr(0x10, Access::Load32),
                dr(0x2000, Access::Load32),
                dr(0x3000, Access::Load32),
                dr(0x2000, Access::Load32),
            ],
            calls: vec![],
        };
        assert_eq!(first_repeated_load(&r, &in_data), Some(0x2000));
        let once = CodeRefs {
            refs: vec![dr(0x2000, Access::Load32), dr(0x3000, Access::Load32)],
            calls: vec![],
        };
        assert_eq!(first_repeated_load(&once, &in_data), None);
    }

    #[test]
    fn adjacent_increments_need_both_fields() {
        let in_data = |_: u64| true;
        let r = CodeRefs {
            refs: vec![
                dr(0x5004, Access::Inc32),
                dr(0x4000, Access::Inc32),
                dr(0x5000, Access::Inc32),
                dr(0x4000, Access::Load32),
            ],
            calls: vec![],
        };
        assert_eq!(adjacent_increments(&r, &in_data), Some(0x5000));
        let lone = CodeRefs {
            refs: vec![dr(0x5000, Access::Inc32), dr(0x5008, Access::Inc32)],
            calls: vec![],
        };
        assert_eq!(adjacent_increments(&lone, &in_data), None);
    }

    #[test]
    fn first_call_argument_skips_code_addresses() {
        let in_data = |a: u64| a >= 0x1000;
        let r = CodeRefs {
            refs: vec![],
            calls: vec![
                CallSite {
                    pc: 1,
                    arg0: None,
                    target: None,
                },
                CallSite {
                    pc: 2,
                    arg0: Some(0x10),
                    target: None,
                },
                CallSite {
                    pc: 3,
                    arg0: Some(0x1800),
                    target: None,
                },
            ],
        };
        assert_eq!(first_call_argument(&r, &in_data), Some(0x1800));
    }
}
