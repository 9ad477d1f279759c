//! `report::summary`: which maps the report details, and the rest grouped
//! by type and site. A service with 100,000 small maps gets a report that
//! leads with its suspects and stays a few megabytes, not a row per map.
//!
//! The selection sees the maps one at a time ([`Selection::add`]) and
//! keeps only what it selects: building a report of 1,000,000 maps holds no
//! list of them all.
use std::{
    cmp::Reverse,
    collections::{BinaryHeap, HashMap, HashSet},
};

use serde::Serialize;

use crate::{inspect::Frame, model::Verdict};

/// Maps detailed beyond the suspects: the largest by bytes.
pub const TOP_BY_BYTES: usize = 20;
/// Suspects detailed at most (the largest by bytes); the others are counted
/// in their group. Each takes up to a few kilobytes of the report (128
/// samples, sites, keys).
pub const MAX_SUSPECTS_IN_FULL: usize = 1000;
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

/// Chooses the maps to report in full: every growing or bloated one (the
/// [`MAX_SUSPECTS_IN_FULL`] largest), and the [`TOP_BY_BYTES`] largest of
/// the others; all of them with `all`.
#[derive(Debug)]
pub struct Selection {
    all: Option<Vec<u64>>,
    /// Smallest on top: (bytes, smaller address first).
    suspects: BinaryHeap<Reverse<(u64, Reverse<u64>)>>,
    others: BinaryHeap<Reverse<(u64, Reverse<u64>)>>,
    /// Suspects left out because [`MAX_SUSPECTS_IN_FULL`] were in.
    pub suspects_left_out: u64,
}

impl Selection {
    /// A selection; `all`: every map (`--all-maps`).
    #[must_use]
    pub fn new(all: bool) -> Self {
        Self {
            all: all.then(Vec::new),
            suspects: BinaryHeap::new(),
            others: BinaryHeap::new(),
            suspects_left_out: 0,
        }
    }

    /// Considers one map.
    pub fn add(&mut self, c: Candidate) {
        if let Some(all) = &mut self.all {
            all.push(c.addr);
            return;
        }
        let (heap, cap) = if c.verdict.is_suspect() {
            (&mut self.suspects, MAX_SUSPECTS_IN_FULL)
        } else {
            (&mut self.others, TOP_BY_BYTES)
        };
        heap.push(Reverse((c.bytes, Reverse(c.addr))));
        if heap.len() > cap {
            heap.pop();
            if c.verdict.is_suspect() {
                self.suspects_left_out += 1;
            }
        }
    }

    /// The addresses chosen.
    #[must_use]
    pub fn finish(self) -> HashSet<u64> {
        if let Some(all) = self.all {
            return all.into_iter().collect();
        }
        self.suspects
            .into_iter()
            .chain(self.others)
            .map(|Reverse((_, Reverse(a)))| a)
            .collect()
    }
}

/// The maps to report in full among `cands` (see [`Selection`]).
#[must_use]
pub fn detailed(cands: &[Candidate], all: bool) -> HashSet<u64> {
    let mut s = Selection::new(all);
    for &c in cands {
        s.add(c);
    }
    s.finish()
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
    /// Growing and bloated maps not in full (past
    /// [`MAX_SUSPECTS_IN_FULL`]).
    pub growing: u64,
    /// See `growing`.
    pub bloated: u64,
}

impl MapGroup {
    /// Counts one map into the group.
    pub fn count(&mut self, verdict: Verdict, len: u64, bytes: u64) {
        self.maps += 1;
        self.entries += len;
        self.bytes += bytes;
        match verdict {
            Verdict::Idle => self.idle += 1,
            Verdict::Stable => self.stable += 1,
            Verdict::Growing => self.growing += 1,
            Verdict::Bloated => self.bloated += 1,
        }
    }

    fn merge(&mut self, g: &Self) {
        self.maps += g.maps;
        self.entries += g.entries;
        self.bytes += g.bytes;
        self.stable += g.stable;
        self.idle += g.idle;
        self.growing += g.growing;
        self.bloated += g.bloated;
    }
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
        let mut g = MapGroup::default();
        g.count(verdict, len, bytes);
        self.add_group(type_name, site, &g);
    }

    /// Adds the counts of `g` (maps of one type and site counted
    /// elsewhere) to the group of `type_name` and `site`.
    pub fn add_group(&mut self, type_name: &str, site: Option<String>, g: &MapGroup) {
        self.groups
            .entry((type_name.to_owned(), site.clone()))
            .or_insert_with(|| MapGroup {
                type_name: type_name.to_owned(),
                site,
                ..MapGroup::default()
            })
            .merge(g);
    }

    /// Distinct groups so far (more than [`MAX_GROUPS`]: [`Grouper::finish`]
    /// merges the smallest).
    #[must_use]
    pub fn len(&self) -> usize {
        self.groups.len()
    }

    /// No group.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
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
            for g in &rest {
                other.merge(g);
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

    /// Past MAX_SUSPECTS_IN_FULL suspects the smallest are left out, and
    /// counted.
    #[test]
    fn suspects_in_full_are_capped() {
        let mut s = Selection::new(false);
        for a in 0..(MAX_SUSPECTS_IN_FULL as u64 + 5) {
            s.add(c(a, Verdict::Growing, a));
        }
        s.add(c(1 << 40, Verdict::Idle, 1));
        assert_eq!(s.suspects_left_out, 5);
        let d = s.finish();
        assert_eq!(d.len(), MAX_SUSPECTS_IN_FULL + 1);
        assert!(!d.contains(&4) && d.contains(&5) && d.contains(&(1 << 40)));
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
