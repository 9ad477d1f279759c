//! Terminal histograms in the text report: log buckets (×4), a bar per
//! bucket, counts at the end.
use std::io::{self, Write};

use hdrhistogram::Histogram;

/// Renders a terminal histogram of `values` (hdrhistogram, log buckets).
pub fn histogram(w: &mut dyn Write, title: &str, values: &[u64], width: usize) -> io::Result<()> {
    histogram_counts(w, title, values.iter().map(|&v| (v, 1)), width)
}

/// [`histogram`] of `(value, count)` pairs: each pair is recorded once
/// with its count (`record_n`), never expanded into `count` values.
pub fn histogram_counts(
    w: &mut dyn Write,
    title: &str,
    pairs: impl IntoIterator<Item = (u64, u64)>,
    width: usize,
) -> io::Result<()> {
    let Ok(mut h) = Histogram::<u64>::new(3) else {
        return Ok(());
    };
    for (v, n) in pairs {
        let _ = h.record_n(v, n);
    }
    writeln!(
        w,
        "  {title} (n={}, p50={}, p90={}, max={})",
        h.len(),
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.9),
        h.max()
    )?;
    if h.is_empty() {
        return Ok(());
    }
    let mut rows: Vec<(u64, u64, u64)> = Vec::new();
    let mut lo = 0u64;
    let mut hi = 1u64;
    while lo <= h.max() {
        let c = h.count_between(lo, hi.saturating_sub(1).max(lo));
        if c > 0 {
            rows.push((lo, hi.saturating_sub(1).max(lo), c));
        }
        lo = hi;
        hi = hi.saturating_mul(4);
        if hi == u64::MAX {
            break;
        }
    }
    let maxc = rows.iter().map(|r| r.2).max().unwrap_or(1).max(1);
    for (a, b, c) in rows {
        let bar = "█".repeat(((c * width as u64).div_ceil(maxc)) as usize);
        writeln!(w, "    {a:>10} .. {b:<10} {bar} {c}")?;
    }
    Ok(())
}
