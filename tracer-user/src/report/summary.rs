//! `report::summary`: which maps the report details, and the rest grouped
//! by type and site. A service with 100,000 small maps gets a report that
//! leads with its suspects and stays a few megabytes, not a row per map.
use std::collections::{HashMap, HashSet};

use serde::Serialize;

use crate::{inspect::Frame, model::Verdict};

/// Maps detailed beyond the suspects: the largest by bytes.
pub const TOP_BY_BYTES: usize = 20;
/// Groups listed; the smallest beyond it are merged into one.
pub const MAX_GROUPS: usize = 200;

/// One map as the selection sees it.
#[derive(Debug, Clone, Copy)]
pub struct Candidate {
    /// Header address.
    pub addr: u64,
    /// Its verdict.
    pub verdict: Verdict,
    /// Bytes at the last sample.
    pub bytes: u64,
}

/// The maps to report in full: every growing or bloated one, and the
/// [`TOP_BY_BYTES`] largest of the others (all of them with `all`).
#[must_use]
pub fn detailed(cands: &[Candidate], all: bool) -> HashSet<u64> {
    if all {
        return cands.iter().map(|c| c.addr).collect();
    }
    let mut out: HashSet<u64> = cands
        .iter()
        .filter(|c| matches!(c.verdict, Verdict::Growing | Verdict::Bloated))
        .map(|c| c.addr)
        .collect();
    let mut rest: Vec<&Candidate> = cands.iter().filter(|c| !out.contains(&c.addr)).collect();
    if rest.len() > TOP_BY_BYTES {
        rest.select_nth_unstable_by(TOP_BY_BYTES, |a, b| {
            b.bytes.cmp(&a.bytes).then(a.addr.cmp(&b.addr))
        });
        rest.truncate(TOP_BY_BYTES);
    }
    out.extend(rest.into_iter().map(|c| c.addr));
    out
}

/// Maps not detailed, by type and the site that created (or grew) them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MapGroup {
    /// Map type (`unknown` when not known).
    #[serde(rename = "type")]
    pub type_name: String,
    /// `function (file:line)` of the creation site, else of the last growth,
    /// if seen.
    pub site: Option<String>,
    /// Maps in the group.
    pub maps: u64,
    /// Their entries at the last sample.
    pub entries: u64,
    /// Their bytes at the last sample.
    pub bytes: u64,
    /// Of the maps: stable (changing, bounded) and idle (unchanged).
    pub stable: u64,
    /// See `stable`.
    pub idle: u64,
}

/// Collects the maps that are not detailed.
#[derive(Debug, Default)]
pub struct Grouper {
    groups: HashMap<(String, Option<String>), MapGroup>,
}

/// The text of a site: `function (file:line)`.
#[must_use]
pub fn site_text(f: &Frame) -> String {
    let file = f.file.rsplit('/').next().unwrap_or(&f.file);
    format!("{} ({file}:{})", f.function, f.line)
}

impl Grouper {
    /// Adds one map.
    pub fn add(
        &mut self,
        type_name: &str,
        site: Option<String>,
        verdict: Verdict,
        len: u64,
        bytes: u64,
    ) {
        let g = self
            .groups
            .entry((type_name.to_owned(), site.clone()))
            .or_insert_with(|| MapGroup {
                type_name: type_name.to_owned(),
                site,
                ..MapGroup::default()
            });
        g.maps += 1;
        g.entries += len;
        g.bytes += bytes;
        match verdict {
            Verdict::Idle => g.idle += 1,
            _ => g.stable += 1,
        }
    }

    /// The groups, largest first by bytes; beyond [`MAX_GROUPS`] the rest
    /// are merged into one group of type `(other types and sites)`.
    #[must_use]
    pub fn finish(self) -> Vec<MapGroup> {
        let mut v: Vec<MapGroup> = self.groups.into_values().collect();
        v.sort_by(|a, b| {
            b.bytes
                .cmp(&a.bytes)
                .then(b.maps.cmp(&a.maps))
                .then(a.type_name.cmp(&b.type_name))
                .then(a.site.cmp(&b.site))
        });
        if v.len() > MAX_GROUPS {
            let rest = v.split_off(MAX_GROUPS - 1);
            let mut other = MapGroup {
                type_name: "(other types and sites)".to_owned(),
                ..MapGroup::default()
            };
            for g in rest {
                other.maps += g.maps;
                other.entries += g.entries;
                other.bytes += g.bytes;
                other.stable += g.stable;
                other.idle += g.idle;
            }
            v.push(other);
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(addr: u64, verdict: Verdict, bytes: u64) -> Candidate {
        Candidate {
            addr,
            verdict,
            bytes,
        }
    }

    #[test]
    fn suspects_and_the_largest_are_detailed() {
        let mut cands = vec![c(1, Verdict::Growing, 10), c(2, Verdict::Bloated, 5)];
        for a in 100..200 {
            cands.push(c(a, Verdict::Stable, a));
        }
        let d = detailed(&cands, false);
        assert_eq!(d.len(), 2 + TOP_BY_BYTES);
        assert!(d.contains(&1) && d.contains(&2));
        // The 20 largest of the others: 180..199.
        assert!((180..200).all(|a| d.contains(&a)));
        assert!(!d.contains(&179));
        assert_eq!(detailed(&cands, true).len(), cands.len());
    }

    #[test]
    fn groups_add_up_and_are_capped() {
        let mut g = Grouper::default();
        g.add(
            "map[int]int",
            Some("main.f (a.go:1)".into()),
            Verdict::Idle,
            3,
            100,
        );
        g.add(
            "map[int]int",
            Some("main.f (a.go:1)".into()),
            Verdict::Stable,
            4,
            200,
        );
        g.add("map[int]int", None, Verdict::Idle, 1, 50);
        let v = g.finish();
        assert_eq!(v.len(), 2);
        assert_eq!(
            (v[0].maps, v[0].entries, v[0].bytes, v[0].stable, v[0].idle),
            (2, 7, 300, 1, 1)
        );
        assert_eq!(v[1].site, None);

        let mut g = Grouper::default();
        for i in 0..(MAX_GROUPS as u64 + 10) {
            g.add(&format!("map[t{i}]int"), None, Verdict::Idle, 1, 1000 + i);
        }
        let v = g.finish();
        assert_eq!(v.len(), MAX_GROUPS);
        let other = v.last().unwrap();
        assert_eq!(other.type_name, "(other types and sites)");
        assert_eq!(other.maps, 11);
        assert_eq!(
            v.iter().map(|g| g.maps).sum::<u64>(),
            MAX_GROUPS as u64 + 10
        );
    }

    #[test]
    fn site_text_is_short() {
        let f = Frame {
            function: "main.build".into(),
            file: "/src/app/x.go".into(),
            line: 12,
        };
        assert_eq!(site_text(&f), "main.build (x.go:12)");
    }
}
