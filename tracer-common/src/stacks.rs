//! User stacks: how deep the kernel walks them, and which creations walk
//! one at all.
//!
//! A creation probe's hit cost about 2.3-2.6 µs on this machine with a
//! stack walk, 1.3 µs without (`bench -mode=makemap`, Go 1.23 and 1.26,
//! 2026-12-06): the walk is most of the program's run. A busy service makes
//! most of its maps at a few sites (a JSON decoder's objects, net/http's
//! headers), tens of thousands a second, each with the same few stacks. So
//! on each CPU the first [`SITE_FIRST_WALKS`] calls from a site (its
//! return address) walk the stack, and after those one call in
//! [`SITE_WALK_EVERY`]; the others record the site alone, which names the
//! function and line that made the map. A site called a few times (where a
//! long-lived map is made, the one that leaks) always has its stacks.
//!
//! Sites share [`SITE_SLOTS`] counters per CPU by a hash of the return
//! address; two sites in one slot count together, so a rare site that
//! shares a slot with a busy one may lose its stack (not its site).

/// Frames kept of a user stack (the stack map's value: 8 bytes a frame).
/// The report and the profiles keep the innermost six frames outside the
/// runtime, and a probe sits at most three runtime frames deep; the rest
/// of a deep stack (a JSON decoder's recursion, an HTTP server's) was
/// walked and hashed for nothing.
pub const STACK_DEPTH: u32 = 24;

/// Per-CPU counters of calls by creation site.
pub const SITE_SLOTS: u32 = 1024;

/// Calls from a site, on each CPU, whose stack is always walked.
pub const SITE_FIRST_WALKS: u32 = 8;

/// After the first [`SITE_FIRST_WALKS`], one call in this many walks the
/// stack (a power of two).
pub const SITE_WALK_EVERY: u32 = 16;

/// The counter slot of the site with return address `caller_pc`.
#[must_use]
pub const fn site_slot(caller_pc: u64) -> u32 {
    // Return addresses differ in their low bits; fold the higher ones in.
    let h = caller_pc ^ (caller_pc >> 10) ^ (caller_pc >> 20);
    (h as u32) & (SITE_SLOTS - 1)
}

/// Whether the call that finds `calls_before` earlier calls counted in its
/// site's slot walks the stack.
#[must_use]
pub const fn walks_stack(calls_before: u32) -> bool {
    calls_before < SITE_FIRST_WALKS || calls_before & (SITE_WALK_EVERY - 1) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sites_first_calls_walk_and_then_one_in_sixteen() {
        let walked = (0..8 + 16 * 100).filter(|&n| walks_stack(n)).count();
        // 8 first calls, then 16, 32, .. 1600 (100 of them; 0 is among the first).
        assert_eq!(walked, 8 + 100);
        assert!((0..SITE_FIRST_WALKS).all(walks_stack));
        assert!(!walks_stack(SITE_FIRST_WALKS + 1));
        // The count wraps after 2^32 calls: the walks go on.
        assert!(walks_stack(0u32.wrapping_add(u32::MAX).wrapping_add(1)));
    }

    #[test]
    fn neighbouring_call_sites_take_different_slots() {
        let base = 0x4a_1000u64;
        let mut seen = [false; SITE_SLOTS as usize];
        for i in 0..64 {
            let slot = site_slot(base + i * 37);
            assert!(slot < SITE_SLOTS);
            assert!(!seen[slot as usize], "call site {i} shares slot {slot}");
            seen[slot as usize] = true;
        }
    }
}
