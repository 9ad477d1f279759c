//! `model::sites`: where maps were created and grown, as the kernel gave
//! them (a user stack id and a return address), interned.
//!
//! 100,000 maps made at one site share one stack: each map keeps a 4-byte
//! [`SiteRef`], not its own copy of the stack or of its symbolized frames.
//! A reference is symbolized once, when a map that uses it matters (a
//! suspect, or a map the report shows in full), and the frames are kept
//! with it.
use std::collections::HashMap;

use crate::inspect::Frame;

/// Most distinct (stack id, return address) pairs interned. The kernel's
/// stack map holds 16,384 stacks (`tracer_common::STACK_ENTRIES`), and a
/// return address is a call site in the binary, so real programs stay far
/// below; beyond it new sites are not kept (the map shows none) and the
/// report lists the cap as reached.
pub const MAX_SITE_REFS: usize = 1 << 16;

/// A site in [`Sites`], or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SiteRef(u32);

impl SiteRef {
    /// No site known.
    pub const NONE: Self = Self(u32::MAX);

    /// Whether a site is known.
    #[must_use]
    pub const fn is_some(self) -> bool {
        self.0 != u32::MAX
    }
}

impl Default for SiteRef {
    fn default() -> Self {
        Self::NONE
    }
}

/// A site as the kernel gave it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RawSite {
    /// User stack id in the kernel's stack map (negative: none).
    pub stack_id: i32,
    /// Return address of the call into the runtime (0: none).
    pub pc: u64,
}

/// Interned sites.
#[derive(Debug, Default)]
pub struct Sites {
    raw: Vec<RawSite>,
    by_raw: HashMap<RawSite, u32>,
    /// The first reference interned with each return address.
    by_pc: HashMap<u64, u32>,
    /// Frames of each site once symbolized.
    frames: Vec<Option<Box<[Frame]>>>,
    /// Sites not interned because [`MAX_SITE_REFS`] was reached.
    pub dropped: u64,
}

impl Sites {
    /// The reference of `raw`, interned if new.
    pub fn intern(&mut self, raw: RawSite) -> SiteRef {
        if let Some(&i) = self.by_raw.get(&raw) {
            return SiteRef(i);
        }
        if self.raw.len() >= MAX_SITE_REFS {
            self.dropped += 1;
            return SiteRef::NONE;
        }
        let i = self.raw.len() as u32;
        self.raw.push(raw);
        self.frames.push(None);
        self.by_raw.insert(raw, i);
        self.by_pc.entry(raw.pc).or_insert(i);
        SiteRef(i)
    }

    /// The call site of `r`: the first reference interned with its return
    /// address, so that one line's sites are one whatever their stacks
    /// (the kernel walks a busy site's stack on some calls only:
    /// `tracer_common::stacks`). `r` itself when it has no address.
    #[must_use]
    pub fn call_site(&self, r: SiteRef) -> SiteRef {
        match self.raw(r) {
            Some(raw) if raw.pc != 0 => self.by_pc.get(&raw.pc).map_or(r, |&i| SiteRef(i)),
            _ => r,
        }
    }

    /// The site as the kernel gave it.
    #[must_use]
    pub fn raw(&self, r: SiteRef) -> Option<RawSite> {
        self.raw.get(r.0 as usize).copied()
    }

    /// Its frames, innermost first, once symbolized (`Some(&[])`: nothing
    /// outside the runtime on its stack).
    #[must_use]
    pub fn frames(&self, r: SiteRef) -> Option<&[Frame]> {
        self.frames.get(r.0 as usize)?.as_deref()
    }

    /// Whether `r` is a site still to symbolize.
    #[must_use]
    pub fn unresolved(&self, r: SiteRef) -> bool {
        self.frames.get(r.0 as usize).is_some_and(Option::is_none)
    }

    /// Records the frames of `r`.
    pub fn resolve(&mut self, r: SiteRef, frames: Vec<Frame>) {
        if let Some(f) = self.frames.get_mut(r.0 as usize) {
            *f = Some(frames.into_boxed_slice());
        }
    }

    /// Distinct sites interned.
    #[must_use]
    pub fn len(&self) -> usize {
        self.raw.len()
    }

    /// None interned.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One site shared by many maps is stored once; its frames are kept
    /// once resolved; past the cap new sites are dropped and counted.
    #[test]
    fn interned_and_capped() {
        let mut s = Sites::default();
        let a = s.intern(RawSite {
            stack_id: 3,
            pc: 0x10,
        });
        assert_eq!(
            s.intern(RawSite {
                stack_id: 3,
                pc: 0x10
            }),
            a
        );
        assert!(s.unresolved(a));
        assert!(!s.unresolved(SiteRef::NONE));
        s.resolve(
            a,
            vec![Frame {
                function: "main.f".into(),
                file: "a.go".into(),
                line: 1,
            }],
        );
        assert_eq!(s.frames(a).map(<[Frame]>::len), Some(1));
        assert_eq!(s.frames(SiteRef::NONE), None);
        for i in 1..MAX_SITE_REFS as u64 {
            s.intern(RawSite { stack_id: 5, pc: i });
        }
        assert_eq!(s.len(), MAX_SITE_REFS);
        assert_eq!(s.dropped, 0);
        assert_eq!(s.intern(RawSite { stack_id: 4, pc: 0 }), SiteRef::NONE);
        assert_eq!(s.dropped, 1);
    }

    /// A call's sites with different stacks, or with none (a busy site's
    /// call the kernel did not walk), are one call site: the first
    /// interned with that return address.
    #[test]
    fn one_call_site_whatever_the_stack() {
        let mut s = Sites::default();
        let walked = s.intern(RawSite {
            stack_id: 7,
            pc: 0x40,
        });
        let other = s.intern(RawSite {
            stack_id: 9,
            pc: 0x40,
        });
        let bare = s.intern(RawSite {
            stack_id: -1,
            pc: 0x40,
        });
        assert_ne!(walked, other);
        assert_ne!(walked, bare);
        for r in [walked, other, bare] {
            assert_eq!(s.call_site(r), walked);
        }
        let elsewhere = s.intern(RawSite {
            stack_id: 7,
            pc: 0x48,
        });
        assert_eq!(s.call_site(elsewhere), elsewhere);
        let no_pc = s.intern(RawSite { stack_id: 3, pc: 0 });
        assert_eq!(s.call_site(no_pc), no_pc);
        assert_eq!(s.call_site(SiteRef::NONE), SiteRef::NONE);
    }
}
