//! `report::pprof`: a report as a pprof profile (gzipped `profile.proto`)
//! that `go tool pprof`, Pyroscope and Parca read. Pure: reports in,
//! bytes out.
//!
//! Sample types (columns): `inuse_objects/count` (maps), `inuse_space/bytes`
//! (their buckets or groups), `entries/count`, `growth/count` (entries
//! gained per GC cycle) and `retained_keys/count` (keys never released).
//! The first four are by creation stack (the last growth's when creation
//! was not seen), with the map type as a leaf pseudo-frame; the last by insert site (a map's never-released keys are
//! shared among its insert sites in proportion to the inserts each made,
//! or put on its growth site when no write window saw an insert). Each
//! sample carries the process as a `pid` label (numeric) and its
//! executable as an `exe` label, and a map held by a global its name as a
//! `holder` label (`-tagroot=holder`); string labels are bounded (a
//! program has few globals), never keys or addresses. The default column
//! is `inuse_space`, as in Go's heap profile; the period type is
//! `gc_cycles/count` with period 1 (values are not sampled).
use std::collections::HashMap;

use super::{MapReport, Report};
use crate::inspect::Frame;

/// Column indexes.
const MAPS: usize = 0;
const SPACE: usize = 1;
const ENTRIES: usize = 2;
const GROWTH: usize = 3;
const RETAINED: usize = 4;
const COLUMNS: [(&str, &str); 5] = [
    ("inuse_objects", "count"),
    ("inuse_space", "bytes"),
    ("entries", "count"),
    ("growth", "count"),
    ("retained_keys", "count"),
];

/// A profile of `reports`, gzipped, taken at `time_nanos` (Unix) over
/// `duration_nanos`.
pub fn profile(reports: &[Report], time_nanos: i64, duration_nanos: i64) -> Vec<u8> {
    let mut b = Builder::default();
    // String 0 is "" by the format's rule.
    b.string("");
    for r in reports {
        let pid = Proc {
            pid: i64::from(r.target.pid),
            exe: &r.target.exe,
        };
        for m in &r.maps {
            let mut values = [0i64; COLUMNS.len()];
            values[MAPS] = 1;
            values[SPACE] = clamp(m.bytes);
            values[ENTRIES] = clamp(m.len_last);
            values[GROWTH] = m.growth_per_cycle.max(0.0).round() as i64;
            // Where it was made; else where it last grew (made before the
            // trace, or while the governed probes were paused).
            let site = if m.created_at.is_empty() {
                &m.grown_at
            } else {
                &m.created_at
            };
            let stack = b.stack(&m.type_name, site, None);
            b.sample(stack, values, &pid, m.owner.as_deref());
            retained(&mut b, m, &pid);
        }
        for g in &r.map_groups {
            let mut values = [0i64; COLUMNS.len()];
            values[MAPS] = clamp(g.maps);
            values[SPACE] = clamp(g.bytes);
            values[ENTRIES] = clamp(g.entries);
            let stack = b.stack(&g.type_name, &[], g.site.as_deref());
            b.sample(stack, values, &pid, None);
        }
    }
    b.finish(time_nanos, duration_nanos)
}

/// The process a sample belongs to.
struct Proc<'a> {
    pid: i64,
    exe: &'a str,
}

fn clamp(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The map's never-released keys, by insert site.
fn retained(b: &mut Builder, m: &MapReport, pid: &Proc<'_>) {
    let keys = m
        .retained_keys
        .as_ref()
        .and_then(|k| k["never_released"].as_u64())
        .unwrap_or(0);
    if keys == 0 {
        return;
    }
    let total: u64 = m.inserted_at.iter().map(|s| s.count).sum();
    let mut shares: Vec<(&Frame, u64)> = if total == 0 {
        m.grown_at.first().map(|f| (f, keys)).into_iter().collect()
    } else {
        m.inserted_at
            .iter()
            .map(|s| {
                (
                    &s.frame,
                    (u128::from(keys) * u128::from(s.count) / u128::from(total)) as u64,
                )
            })
            .collect()
    };
    // The rounding's remainder goes to the busiest site.
    let given: u64 = shares.iter().map(|s| s.1).sum();
    if let Some(first) = shares.first_mut() {
        first.1 += keys - given;
    }
    for (frame, n) in shares {
        let stack = b.stack(&m.type_name, std::slice::from_ref(frame), None);
        let mut values = [0i64; COLUMNS.len()];
        values[RETAINED] = clamp(n);
        b.sample(stack, values, pid, m.owner.as_deref());
    }
}

#[derive(Default)]
struct Builder {
    strings: Vec<String>,
    string_ids: HashMap<String, i64>,
    /// (name, file) -> function id.
    functions: HashMap<(i64, i64), u64>,
    /// (function id, line) -> location id.
    locations: HashMap<(u64, i64), u64>,
    /// Encoded `Function` and `Location` messages.
    function_msgs: Vec<Vec<u8>>,
    location_msgs: Vec<Vec<u8>>,
    sample_msgs: Vec<Vec<u8>>,
}

impl Builder {
    fn string(&mut self, s: &str) -> i64 {
        if let Some(&i) = self.string_ids.get(s) {
            return i;
        }
        let i = self.strings.len() as i64;
        self.strings.push(s.to_owned());
        self.string_ids.insert(s.to_owned(), i);
        i
    }

    fn location(&mut self, function: &str, file: &str, line: i64) -> u64 {
        let key = (self.string(function), self.string(file));
        let next_fn = self.functions.len() as u64 + 1;
        let fid = *self.functions.entry(key).or_insert(next_fn);
        if fid == next_fn {
            let mut f = Vec::new();
            field_varint(&mut f, 1, fid);
            field_varint(&mut f, 2, key.0 as u64);
            field_varint(&mut f, 3, key.0 as u64);
            field_varint(&mut f, 4, key.1 as u64);
            self.function_msgs.push(f);
        }
        let next_loc = self.locations.len() as u64 + 1;
        let lid = *self.locations.entry((fid, line)).or_insert(next_loc);
        if lid == next_loc {
            let mut l = Vec::new();
            field_varint(&mut l, 1, lid);
            field_varint(&mut l, 2, 1);
            let mut ln = Vec::new();
            field_varint(&mut ln, 1, fid);
            field_varint(&mut ln, 2, line as u64);
            field_bytes(&mut l, 4, &ln);
            self.location_msgs.push(l);
        }
        lid
    }

    /// Location ids, leaf first: the map type as a pseudo-frame, then the
    /// frames (innermost first), or a site given as text.
    fn stack(&mut self, type_name: &str, frames: &[Frame], site: Option<&str>) -> Vec<u64> {
        let mut ids = vec![self.location(type_name, "", 0)];
        for f in frames {
            ids.push(self.location(&f.function, &f.file, i64::from(f.line)));
        }
        if let Some(s) = site {
            ids.push(self.location(s, "", 0));
        }
        ids
    }

    fn sample(
        &mut self,
        stack: Vec<u64>,
        values: [i64; COLUMNS.len()],
        p: &Proc<'_>,
        holder: Option<&str>,
    ) {
        let mut s = Vec::new();
        packed(&mut s, 1, stack.iter().copied());
        packed(&mut s, 2, values.iter().map(|&v| v as u64));
        let mut label = Vec::new();
        let key = self.string("pid");
        field_varint(&mut label, 1, key as u64);
        field_varint(&mut label, 3, p.pid as u64);
        field_bytes(&mut s, 3, &label);
        for (k, v) in [("exe", Some(p.exe)), ("holder", holder)] {
            let Some(v) = v else { continue };
            let mut label = Vec::new();
            let (k, v) = (self.string(k), self.string(v));
            field_varint(&mut label, 1, k as u64);
            field_varint(&mut label, 2, v as u64);
            field_bytes(&mut s, 3, &label);
        }
        self.sample_msgs.push(s);
    }

    fn finish(mut self, time_nanos: i64, duration_nanos: i64) -> Vec<u8> {
        let types: Vec<(i64, i64)> = COLUMNS
            .iter()
            .map(|(t, u)| (self.string(t), self.string(u)))
            .collect();
        let comment = self.string("mapleak-trace: Go maps by creation stack (map type as leaf); retained_keys by insert site");
        let default = types[SPACE].0;
        // period_type gc_cycles/count, period 1: nothing is sampled.
        let (pt, pu) = (self.string("gc_cycles"), self.string("count"));
        let mut period_type = Vec::new();
        field_varint(&mut period_type, 1, pt as u64);
        field_varint(&mut period_type, 2, pu as u64);
        let mut p = Vec::new();
        for (t, u) in &types {
            let mut v = Vec::new();
            field_varint(&mut v, 1, *t as u64);
            field_varint(&mut v, 2, *u as u64);
            field_bytes(&mut p, 1, &v);
        }
        for s in &self.sample_msgs {
            field_bytes(&mut p, 2, s);
        }
        // One mapping for every location: already symbolized.
        let mut mapping = Vec::new();
        field_varint(&mut mapping, 1, 1);
        for f in [7, 8, 9, 10] {
            // has_functions, has_filenames, has_line_numbers, has_inline_frames
            field_varint(&mut mapping, f, 1);
        }
        field_bytes(&mut p, 3, &mapping);
        for l in &self.location_msgs {
            field_bytes(&mut p, 4, l);
        }
        for f in &self.function_msgs {
            field_bytes(&mut p, 5, f);
        }
        for s in &self.strings {
            field_bytes(&mut p, 6, s.as_bytes());
        }
        field_varint(&mut p, 9, time_nanos as u64);
        field_varint(&mut p, 10, duration_nanos as u64);
        field_bytes(&mut p, 11, &period_type);
        field_varint(&mut p, 12, 1);
        field_varint(&mut p, 13, comment as u64);
        field_varint(&mut p, 14, default as u64);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        // Writing to a Vec cannot fail.
        let _ = std::io::Write::write_all(&mut gz, &p);
        gz.finish().unwrap_or_default()
    }
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn field_varint(out: &mut Vec<u8>, field: u32, v: u64) {
    varint(out, u64::from(field) << 3);
    varint(out, v);
}

fn field_bytes(out: &mut Vec<u8>, field: u32, b: &[u8]) {
    varint(out, (u64::from(field) << 3) | 2);
    varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

fn packed(out: &mut Vec<u8>, field: u32, vs: impl Iterator<Item = u64>) {
    let mut b = Vec::new();
    for v in vs {
        varint(&mut b, v);
    }
    field_bytes(out, field, &b);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_are_protobuf_varints() {
        let mut b = Vec::new();
        varint(&mut b, 1);
        varint(&mut b, 300);
        varint(&mut b, u64::MAX);
        assert_eq!(&b[..3], &[0x01, 0xac, 0x02]);
        assert_eq!(b.len(), 3 + 10);
        assert_eq!(b[b.len() - 1], 0x01);
    }

    #[test]
    fn strings_and_locations_are_shared() {
        let mut b = Builder::default();
        b.string("");
        let f = Frame {
            function: "main.newCache".into(),
            file: "main.go".into(),
            line: 10,
        };
        let s1 = b.stack("map[string]int", std::slice::from_ref(&f), None);
        let s2 = b.stack("map[string]int", std::slice::from_ref(&f), None);
        assert_eq!(s1, s2);
        assert_eq!(s1.len(), 2);
        assert_eq!(b.location_msgs.len(), 2);
        assert_eq!(b.function_msgs.len(), 2);
        assert_eq!(b.strings[0], "");
    }
}
