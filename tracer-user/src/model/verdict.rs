//! Verdicts: growing, bloated, stable or idle, judged over a map's latest
//! samples.
#![allow(
    clippy::wildcard_imports,
    reason = "a part of model/mod.rs, with its items"
)]
use super::*;

/// Judges a sample history (oldest first).
#[must_use]
pub fn verdict(samples: &[Sample]) -> Verdict {
    let w = &samples[samples.len().saturating_sub(WINDOW)..];
    let Some(last) = w.last() else {
        return Verdict::Idle;
    };
    let mut lens = [0u64; WINDOW];
    for (l, s) in lens.iter_mut().zip(w) {
        *l = s.len;
    }
    let constant = w.iter().all(|s| s.capacity == last.capacity);
    judge(&lens[..w.len()], last.capacity, constant)
}

/// The verdict on the lengths of the window (oldest first, at most
/// [`WINDOW`]), the latest capacity and whether it was the same throughout.
pub(super) fn judge(w: &[u64], capacity: u64, capacity_constant: bool) -> Verdict {
    let Some(&last) = w.last() else {
        return Verdict::Idle;
    };
    if w.len() >= MIN_SAMPLES_GROWING {
        let first = w[0];
        let max = w.iter().copied().max().unwrap_or(0);
        let ups = w.windows(2).filter(|p| p[1] > p[0]).count();
        let downs = w.windows(2).filter(|p| p[1] < p[0]).count();
        let big_drop = w.windows(2).any(|p| p[1] * 20 < p[0] * 19);
        // Still rising: the cycles it has been level at the end are no more
        // than its longest level run before. A map that grows slower than
        // the GC runs rises only every few cycles and stays level in
        // between; one that stopped stays level longer than it ever did.
        let mut level_at = [false; WINDOW];
        for (slot, p) in level_at.iter_mut().zip(w.windows(2)) {
            *slot = p[1] == p[0];
        }
        let steps = &level_at[..w.len() - 1];
        let tail = steps.iter().rev().take_while(|&&level| level).count();
        let mut prev_max = 0;
        let mut run = 0;
        for &level in &steps[..steps.len() - tail] {
            run = if level { run + 1 } else { 0 };
            prev_max = prev_max.max(run);
        }
        let recent = tail == 0 || tail <= prev_max;
        if last > first
            && ups >= 2
            && downs * 3 <= ups
            && !big_drop
            && last * 20 >= max * 19
            && recent
        {
            return Verdict::Growing;
        }
    }
    if capacity >= 2048 && last * 16 <= capacity {
        return Verdict::Bloated;
    }
    if capacity_constant && w.iter().all(|&l| l == last) {
        Verdict::Idle
    } else {
        Verdict::Stable
    }
}
