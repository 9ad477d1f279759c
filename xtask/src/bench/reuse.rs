//! `--merge`: the parts not measured now are kept from the report already
//! in docs/benchmarks.md (their sections and their lines of the reading,
//! verbatim), so that a partial rerun updates the report without making the
//! others again. The report is the record: the raw runs of older figures
//! may be gone.
use std::{collections::BTreeMap, fs, path::Path};

use anyhow::{Context as _, Result, bail};

/// Section headings of the report, by part.
const HEADINGS: [(&str, &str); 5] = [
    ("## 1. ", "throughput"),
    ("## 1b. ", "phases"),
    ("## 2. ", "probe-cost"),
    ("## 2b. ", "create-cost"),
    ("## 3. ", "manymaps"),
];

/// What is kept of an earlier report.
#[derive(Default)]
pub(super) struct Kept {
    /// Sections by part, heading included, each saying what run made it.
    pub(super) sections: BTreeMap<String, String>,
    /// Lines of the reading by part (without the leading `- `).
    pub(super) reading: Vec<(String, String)>,
    /// Part 2's µs per hit by Go: (entry, single-stepped; `PUSHQ BP`,
    /// emulated), both with the counting program.
    pub(super) per_hit: BTreeMap<String, (f64, f64)>,
    /// Part 2b's µs mapleak-trace added per map by Go (mean over kinds).
    pub(super) per_map: BTreeMap<String, f64>,
}

/// Which part a line of the reading is about.
fn reading_part(line: &str) -> Option<&'static str> {
    let l = line.trim_start_matches("**");
    if l.starts_with("mapwrite on") || l.starts_with("http on") {
        Some("throughput")
    } else if l.starts_with("HTTP in alternating phases") || l.starts_with("Alternating phases,") {
        Some("phases")
    } else if l.starts_with("Per hit,") {
        Some("probe-cost")
    } else if l.starts_with("Per creation,") {
        Some("create-cost")
    } else if l
        .split_once(' ')
        .is_some_and(|(_, r)| r.starts_with("live maps,"))
    {
        Some("manymaps")
    } else {
        None
    }
}

/// `**11.35**` or `11.35`.
fn cell_num(c: &str) -> Option<f64> {
    c.trim().trim_matches('*').replace(',', "").parse().ok()
}

fn cells(row: &str) -> Vec<&str> {
    row.trim()
        .trim_matches('|')
        .split('|')
        .map(str::trim)
        .collect()
}

pub(super) fn load(doc: &Path, parts: &[&str]) -> Result<Kept> {
    let text = fs::read_to_string(doc).with_context(|| {
        format!(
            "--merge keeps the other parts from {}: run the full `cargo xtask bench` once first",
            doc.display()
        )
    })?;
    // What made the report: its first line, without the fixed parenthesis.
    let made_by = text
        .lines()
        .find_map(|l| l.strip_prefix("Written by "))
        .and_then(|l| l.split(". Rerun").next())
        .map_or_else(
            || "an earlier run".to_owned(),
            |l| l.replace(" (xtask/src/bench.rs; workload testdata/go/bench)", ""),
        );
    let mut kept = Kept::default();
    // Sections: heading, then body lines.
    let mut cur: Option<(&str, Vec<&str>)> = None;
    let mut done: Vec<(&str, Vec<&str>)> = Vec::new();
    let mut reading = false;
    for line in text.lines() {
        if line.starts_with("## ") {
            done.extend(cur.take());
            reading = line.starts_with("## Reading");
            cur = HEADINGS
                .iter()
                .find(|(h, part)| line.starts_with(h) && parts.contains(part))
                .map(|(_, part)| (*part, vec![line]));
            continue;
        }
        if let Some((_, ls)) = cur.as_mut() {
            ls.push(line);
        }
        if reading
            && let Some(l) = line.strip_prefix("- ")
            && let Some(part) = reading_part(l)
            && parts.contains(&part)
        {
            kept.reading.push((part.to_owned(), l.to_owned()));
        }
    }
    done.extend(cur.take());
    for (part, ls) in done {
        let heading = ls[0];
        let body = ls[1..].join("\n");
        let body = body.trim();
        let mut s = format!("{heading}\n\n");
        if !body.starts_with("*Measured by an earlier run") {
            s.push_str(&format!(
                "*Measured by an earlier run, {made_by}, and kept: not rerun for this report.*\n\n"
            ));
        }
        s.push_str(body);
        s.push_str("\n\n");
        kept.sections.insert(part.to_owned(), s);
    }
    for p in parts {
        if !kept.sections.contains_key(*p) {
            bail!(
                "{} has no section for {p}: rerun that part (--only) or the whole bench",
                doc.display()
            );
        }
    }
    // Figures the rest of the report uses.
    if let Some(s) = kept.sections.get("probe-cost") {
        let mut m: BTreeMap<String, (f64, f64)> = BTreeMap::new();
        for row in s.lines().filter(|l| l.starts_with("| go")) {
            let c = cells(row);
            if c.len() < 7 {
                continue;
            }
            let e = m.entry(c[0].to_owned()).or_insert((f64::NAN, f64::NAN));
            if c[1] == "entry `CMPQ SP, 16(R14)`" {
                e.0 = cell_num(c[6]).unwrap_or(f64::NAN);
            } else if c[1] == "`PUSHQ BP`" {
                e.1 = cell_num(c[6]).unwrap_or(f64::NAN);
            }
        }
        kept.per_hit = m;
    }
    if let Some(s) = kept.sections.get("create-cost") {
        let mut m: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        for row in s.lines().filter(|l| l.starts_with("| go")) {
            let c = cells(row);
            if let Some(v) = c.get(3).and_then(|x| cell_num(x)) {
                m.entry(c[0].to_owned()).or_default().push(v);
            }
        }
        kept.per_map = m
            .into_iter()
            .map(|(g, v)| (g, v.iter().sum::<f64>() / v.len() as f64))
            .collect();
    }
    Ok(kept)
}

/// Part 2's closing paragraph as reports before the token-bucket governor
/// wrote it: no longer true, replaced when the section is kept.
pub(super) fn fix_probe_cost(section: &str, footnote: &str) -> String {
    let mut out = String::new();
    for para in section.split("\n\n") {
        if para.is_empty() {
            continue;
        }
        if para.starts_with("mapleak-trace's own estimate") {
            out.push_str(footnote.trim());
        } else {
            out.push_str(para);
        }
        out.push_str("\n\n");
    }
    out
}
