//! `report::families`: families of maps (one type, one site) in the report,
//! and their text rendering, shown right after the line that leads the
//! report: 100,000 maps that each grow too slowly to be suspects can still
//! hold most of the heap and gain thousands of entries a cycle together.
use std::io::{self, Write};

use serde::Serialize;

use super::{human_bytes, sparkline};
use crate::model::{Verdict, families::SiteKind};

/// Families in `families[]` at most: the growing ones first, then the
/// largest by bytes.
pub const MAX_FAMILIES_IN_REPORT: usize = 100;
/// Families the text report shows.
pub const FAMILY_ROWS: usize = 5;

/// Maps of one type made (or grown, or inserted into) at one site, judged
/// on their total entries per sampled GC cycle.
#[derive(Debug, Clone, Serialize)]
pub struct FamilyReport {
    /// Map type, e.g. `map[string]int`, or `unknown`.
    #[serde(rename = "type")]
    pub type_name: String,
    /// `function (file:line)` of the site, if known.
    pub site: Option<String>,
    /// Which site `site` is.
    pub site_kind: SiteKind,
    /// Maps in the family at the latest sample.
    pub count: u64,
    /// Their entries.
    pub entries: u64,
    /// Their bytes (buckets or groups).
    pub bytes: u64,
    /// The verdict on the total entries, by the rules for one map.
    pub verdict: Verdict,
    /// Entries gained per GC cycle over the last 8 samples (what the
    /// verdict looks at).
    pub entries_per_cycle: f64,
    /// `[cycle, total entries]`, downsampled to at most 32 points (the first
    /// and the latest always in).
    pub entries_by_cycle: Vec<(u64, u64)>,
}

impl FamilyReport {
    /// The report's order: growing first (then bloated, stable, idle), the
    /// largest first within each.
    #[must_use]
    pub fn order(&self, o: &Self) -> std::cmp::Ordering {
        self.verdict
            .cmp(&o.verdict)
            .then(o.bytes.cmp(&self.bytes))
            .then(o.count.cmp(&self.count))
            .then_with(|| self.site.cmp(&o.site))
    }
}

/// Families of two maps or more that grow.
#[must_use]
pub fn growing(families: &[FamilyReport]) -> usize {
    families
        .iter()
        .filter(|f| f.count >= 2 && f.verdict == Verdict::Growing)
        .count()
}

/// The families block of the text report: the first [`FAMILY_ROWS`]
/// families of two maps or more (`families` is in the report's order).
pub fn render(w: &mut dyn Write, families: &[FamilyReport]) -> io::Result<()> {
    let shown: Vec<&FamilyReport> = families.iter().filter(|f| f.count >= 2).collect();
    if shown.is_empty() {
        return Ok(());
    }
    writeln!(w)?;
    writeln!(
        w,
        "Families of maps (one type, one site; {} of {}, growing and largest first; all in --json):",
        shown.len().min(FAMILY_ROWS),
        shown.len()
    )?;
    for f in shown.iter().take(FAMILY_ROWS) {
        let site = f.site.as_deref().unwrap_or("(no site seen)");
        let kind = match f.site_kind {
            SiteKind::Created => "created at",
            SiteKind::Grown => "grown at",
            SiteKind::Inserted => "inserted into at",
        };
        writeln!(
            w,
            "  {} maps {}  {}  {kind} {site}",
            f.count,
            f.type_name,
            f.verdict.as_str().to_uppercase()
        )?;
        let cycles = match (f.entries_by_cycle.first(), f.entries_by_cycle.last()) {
            (Some(a), Some(b)) => b.0.saturating_sub(a.0),
            _ => 0,
        };
        writeln!(
            w,
            "     {} entries ({:+.0}/cycle lately; followed over {cycles} cycles), {}",
            f.entries,
            f.entries_per_cycle,
            human_bytes(f.bytes)
        )?;
        let vals: Vec<u64> = f.entries_by_cycle.iter().map(|p| p.1).collect();
        writeln!(
            w,
            "     entries/cycle: {} {:?}",
            sparkline(&vals),
            vals.iter().rev().take(6).rev().collect::<Vec<_>>()
        )?;
    }
    Ok(())
}
