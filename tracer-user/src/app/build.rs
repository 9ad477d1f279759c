//! `app::build`: the report of one process, from its model and the
//! budget's figures, and the symbolization of the sites of the maps that
//! matter (suspects, and the maps a report shows in full).
//!
//! Building a report holds what it shows, not a copy of every map: the
//! maps in full are chosen in one pass, the others counted per type and
//! site without a string each.
#![allow(
    clippy::wildcard_imports,
    reason = "the app modules share one set of imports and items"
)]
use super::*;
use crate::{
    model::{
        RawSite, SiteRef, TrackedMap,
        families::{FamilyKey, FamilySite},
    },
    report::families::{FamilyReport, MAX_FAMILIES_IN_REPORT},
};

pub(super) fn build_report(s: &mut Session, tracer: &Tracer, duration_s: f64) -> Report {
    // Suspects and the largest maps in full; the others grouped by type and
    // site (all in full with --all-maps). The selection keeps only what it
    // selects: no list of every map.
    let mut sel = summary::Selection::new(s.all_maps);
    for m in s.model.maps.values() {
        if m.is_sync_generation() {
            continue;
        }
        if let Some(last) = m.last() {
            sel.add(summary::Candidate {
                addr: m.addr,
                verdict: m.verdict(),
                bytes: last.bytes,
            });
        }
    }
    let suspects_left_out = sel.suspects_left_out;
    let detail = sel.finish();
    // Only the maps shown in full get symbolized sites; a group's site is
    // symbolized once (100,000 maps made at one site share it).
    resolve_sites(s, tracer, |m| detail.contains(&m.addr));
    let hits = tracer.probe_hits();
    let mut overhead = Overhead::default();
    let b = lock(&s.budget);
    for (i, sp) in s.probes.iter().enumerate() {
        let (p, func, addr) = (&sp.probe, &sp.function, sp.address);
        let n = hits.get(p.id as usize).copied().unwrap_or(0);
        *overhead
            .probe_hits
            .entry(format!("{func}@{addr:#x}"))
            .or_default() += n;
        overhead.estimated_target_cpu_s += n as f64 * b.probes[i].hit_cost;
    }
    let counters = tracer.counters();
    for (name, c) in [
        ("ring_buffer_full", Counter::RingBufFull),
        ("read_failed", Counter::ReadFailed),
        ("stack_failed", Counter::StackFailed),
        ("no_config", Counter::NoConfig),
        ("bad_cookie", Counter::BadCookie),
        ("create_without_entry", Counter::CreateNoEntry),
        ("created", Counter::Created),
        ("write_table_full", Counter::WritesFull),
        ("other_caller", Counter::OtherCaller),
        ("stack_check_restart", Counter::Restart),
        ("stack_not_walked", Counter::StackNotWalked),
    ] {
        overhead.counters.insert(
            name.to_owned(),
            counters.get(c as usize).copied().unwrap_or(0),
        );
    }
    overhead.creation_probes_paused = b.gov.pauses;
    overhead.creation_probes_resumed = b.gov.resumes;
    overhead.creation_probes_paused_s = b.gov.paused_s(Instant::now());
    overhead.governed_probes_attached_share = if duration_s > 0.0 {
        (1.0 - overhead.creation_probes_paused_s / duration_s).clamp(0.0, 1.0)
    } else {
        1.0
    };
    overhead.program_run_ns = b
        .program_run_s
        .iter()
        .map(|(p, s)| ((*p).to_owned(), (s * 1e9).round()))
        .collect();
    overhead.large_growth_probes_paused = b.gov.large.pauses;
    overhead.large_growth_probes_paused_for_debt = b.gov.large.debt_pauses;
    overhead.large_growth_probes_resumed = b.gov.large.resumes;
    overhead.large_growth_probes_paused_s = b.gov.large.paused_s(Instant::now());
    overhead.write_windows = b.gov.windows;
    overhead.write_windows_s = (b.gov.window_total
        + b.gov.window_open.map_or(Duration::ZERO, |at| at.elapsed()))
    .as_secs_f64();
    overhead.write_windows_closed_over_budget = b.gov.windows_over_budget;
    overhead.maps_found_by_write_windows = s.discovered_by_writes;
    overhead.runs_while_detaching = b.off_runs_total;
    overhead.governed_runs_past_grant = b.denied_total;
    overhead.budget_spent_target_cpu_s = b.gov.spent;
    overhead.budget_tracer_cpu_s = b.tracer_cpu_debited;
    overhead.budget_rate = b.gov.rate;
    overhead.budget_rate_mean = b.gov.mean_rate();
    overhead.key_reads_deferred = s.keys_deferred;
    overhead.samples_cut_short = s.samples_cut_short;
    overhead.sync_map_walks = s.sync_walks;
    overhead.holder_search = s.holder_stats;
    overhead.uprobe_multi_unavailable = tracer.multi_error().map(str::to_owned);
    drop(b);
    overhead.gc_cycles_not_sampled_late = s.clock.late_cycles;
    overhead.gc_cycles_sampled = s.clock.sampled_cycles;
    overhead.gc_cycles_skipped = s.clock.skipped_cycles;
    overhead.timer_samples = s.clock.timer_samples;
    overhead.gc_counter_reads = s.gc_poll.as_ref().map(|p| p.reads);
    let (cpu, rss) = self_usage();
    overhead.tracer_cpu_s = cpu;
    overhead.tracer_max_rss_bytes = rss;
    let (groups, summarized) = group_others(s, tracer, &detail);
    let groups_n = groups.len();
    let mut maps: Vec<MapReport> = Vec::new();
    let mut ids: Vec<u64> = detail.into_iter().collect();
    ids.sort_unstable();
    for addr in ids {
        let Some(tp) = s.model.maps.get(&addr).map(|m| m.type_ptr) else {
            continue;
        };
        let types = (tp != 0).then(|| type_entry(s, tp));
        if let Some(r) = map_report(s, addr, types) {
            maps.push(r);
        }
    }
    maps.sort_by(|a, b| {
        a.verdict
            .cmp(&b.verdict)
            .then(b.bytes.cmp(&a.bytes))
            .then(a.id.cmp(&b.id))
    });
    let (families, families_left_out) = family_reports(s, tracer);
    let caps_reached = caps_reached(s, &overhead, suspects_left_out, groups_n, families_left_out);
    Report {
        target: TargetInfo {
            pid: s.target.pid,
            exe: s.target.exe_display.clone(),
            go_version: s.info.go_version.raw.clone(),
            goarch: s.info.goarch.as_str().to_owned(),
            map_impl: s.info.map_impl.as_str().to_owned(),
            stripped: !s.info.has_symtab,
        },
        duration_s,
        ended: s
            .ended
            .clone()
            .unwrap_or_else(|| "still running".to_owned()),
        gc_cycles: s.model.cycles.iter().copied().collect(),
        gc_triggers: s.gc_causes.counts(),
        maps,
        maps_summarized: summarized,
        map_groups: groups.finish(),
        families,
        finalizers: finalizer_report(s),
        overhead,
        maps_retired: s.model.retired,
        maps_evicted: s.model.evicted,
        maps_reused: s.model.reused,
        caps_reached,
    }
}

/// A map in full. `types`: its type's names, when its descriptor is known.
fn map_report(
    s: &Session,
    addr: u64,
    types: Option<(String, Option<String>, Option<String>, TypeSizes)>,
) -> Option<MapReport> {
    let m = s.model.maps.get(&addr)?;
    let latest = m.last()?;
    let hist = s.model.history(m);
    let last = *hist.last()?;
    let first = hist.first().copied().unwrap_or(last);
    let span = last.cycle.saturating_sub(first.cycle).max(1) as f64;
    let entry_types = sync_entry_types(s, addr);
    let (type_name, key_type, elem_type) = match types {
        Some((t, k, e, _)) => (t, k, e),
        // A sync.Map: the types of its entries, when one pair holds them.
        None => match entry_types.as_slice() {
            [one] => (
                m.type_name().unwrap_or("unknown").to_owned(),
                Some(one.key.clone()),
                Some(one.value.clone()),
            ),
            _ => (m.type_name().unwrap_or("unknown").to_owned(), None, None),
        },
    };
    let frames = |r| {
        s.model
            .sites
            .frames(r)
            .map_or_else(Vec::new, <[Frame]>::to_vec)
    };
    let (assigns, deletes) = m.writes();
    Some(MapReport {
        id: m.id,
        addr: format!("{addr:#x}"),
        kind: if m.is_sync_map() {
            crate::syncmap::TYPE_NAME
        } else {
            "map"
        },
        type_name,
        key_type,
        elem_type,
        created_at: frames(m.created_site()),
        grown_at: m
            .grow_sites()
            .into_iter()
            .map(&frames)
            .find(|f| !f.is_empty())
            .unwrap_or_default(),
        owner: m.owner().map(str::to_owned),
        held_by: m.held_by(),
        len_by_cycle: hist
            .iter()
            .filter(|x| !x.timer)
            .map(|x| (x.cycle, x.len))
            .collect(),
        timer_samples: hist
            .iter()
            .filter(|x| x.timer)
            .map(|x| (f64::from(x.t_ms) / 1e3, x.len))
            .collect(),
        growth_per_s: growth_per_s(&first, &last),
        len_first: m.first_len().unwrap_or(last.len),
        len_last: latest.len,
        capacity: latest.capacity,
        bytes: latest.bytes,
        growth_events: m.growth_events(),
        growth_per_cycle: (last.len as f64 - first.len as f64) / span,
        verdict: m.verdict(),
        // Only while it follows this map (not one that lived at this
        // address before).
        retained_keys: s
            .key_trackers
            .get(&addr)
            .or_else(|| s.sync_key_trackers.get(&addr))
            .filter(|t| t.follows(m.seed(), latest.len))
            .and_then(|t| serde_json::to_value(t.stats()).ok()),
        inserted_at: m
            .insert_sites()
            .iter()
            .filter_map(|&(pc, count)| {
                let frame = s
                    .info
                    .frame_for_pc(pc.wrapping_sub(s.bias).wrapping_sub(1))?;
                Some(report::InsertSite { frame, count })
            })
            .collect(),
        writes_seen: report::WritesSeen { assigns, deletes },
        entry_types,
    })
}

/// The name of the Go type whose descriptor is at run-time `tp`.
fn dynamic_type_name(s: &Session, tp: u64) -> String {
    if tp == 0 {
        return "nil".to_owned();
    }
    s.info
        .type_name(tp.wrapping_sub(s.bias))
        .unwrap_or_else(|| format!("type at {tp:#x}"))
}

/// A sync.Map's entries by dynamic type, most first.
fn sync_entry_types(s: &Session, addr: u64) -> Vec<report::EntryTypes> {
    let Some(e) = s.sync_entries.get(&addr) else {
        return Vec::new();
    };
    let mut out: Vec<report::EntryTypes> = e
        .types
        .iter()
        .map(|&((k, v), n)| report::EntryTypes {
            key: dynamic_type_name(s, k),
            value: dynamic_type_name(s, v),
            entries: n,
        })
        .collect();
    out.sort_by(|a, b| b.entries.cmp(&a.entries).then(a.key.cmp(&b.key)));
    if e.other_types > 0 {
        out.push(report::EntryTypes {
            key: "other".to_owned(),
            value: "other".to_owned(),
            entries: e.other_types,
        });
    }
    out
}

/// The maps not in `detail`, counted by type and site. They are counted
/// per (type, creation site, growth site) first, without a string per map;
/// each distinct site is symbolized once.
fn group_others(
    s: &mut Session,
    tracer: &Tracer,
    detail: &std::collections::HashSet<u64>,
) -> (summary::Grouper, u64) {
    type Key = (u64, Option<String>, SiteRef, SiteRef);
    let mut counts: HashMap<Key, summary::MapGroup> = HashMap::new();
    let mut summarized = 0u64;
    for m in s.model.maps.values() {
        if detail.contains(&m.addr) || m.is_sync_generation() {
            continue;
        }
        let Some(last) = m.last() else {
            continue;
        };
        summarized += 1;
        // A name only for maps without a type descriptor (globals named by
        // DWARF): no string is made for the others.
        let name = if m.type_ptr == 0 {
            m.type_name().map(str::to_owned)
        } else {
            None
        };
        counts
            .entry((m.type_ptr, name, m.created_site(), m.grow_site()))
            .or_default()
            .count(m.verdict(), last.len, last.bytes);
    }
    let mut groups = summary::Grouper::default();
    for ((tp, name, created, grown), g) in counts {
        let name = if tp == 0 {
            name.unwrap_or_else(|| "unknown".to_owned())
        } else {
            type_entry(s, tp).0
        };
        let site = site_text(s, tracer, created).or_else(|| site_text(s, tracer, grown));
        groups.add_group(&name, site, &g);
    }
    (groups, summarized)
}

/// The families of two maps or more, in the report's order (at most
/// [`MAX_FAMILIES_IN_REPORT`]), and how many were left out. Each family's
/// site is symbolized once.
fn family_reports(s: &mut Session, tracer: &Tracer) -> (Vec<FamilyReport>, u64) {
    let mut picked: Vec<(FamilyKey, FamilyReport)> = s
        .families
        .iter()
        .filter(|(_, f)| f.latest.maps >= 2)
        .map(|(k, f)| {
            let r = FamilyReport {
                type_name: String::new(),
                site: None,
                site_kind: k.site.kind(),
                count: f.latest.maps,
                entries: f.latest.entries,
                bytes: f.latest.bytes,
                verdict: f.verdict(),
                entries_per_cycle: f.entries_per_cycle(),
                entries_by_cycle: f.entries_by_cycle.points().collect(),
            };
            (*k, r)
        })
        .collect();
    // Ordered before the names are known: by verdict and size, then key.
    picked.sort_by(|a, b| a.1.order(&b.1).then(a.0.cmp(&b.0)));
    let left_out = picked.len().saturating_sub(MAX_FAMILIES_IN_REPORT) as u64;
    picked.truncate(MAX_FAMILIES_IN_REPORT);
    let mut out = Vec::with_capacity(picked.len());
    for (k, mut r) in picked {
        r.type_name = if k.type_ptr == 0 {
            "unknown".to_owned()
        } else {
            type_entry(s, k.type_ptr).0
        };
        r.site = match k.site {
            FamilySite::Created(site) | FamilySite::Grown(site) => site_text(s, tracer, site),
            FamilySite::Inserted(pc) => s
                .info
                .frame_for_pc(pc.wrapping_sub(s.bias).wrapping_sub(1))
                .map(|f| summary::site_text(&f)),
        };
        out.push(r);
    }
    out.sort_by(FamilyReport::order);
    (out, left_out)
}

/// `function (file:line)` of a site's innermost frame, symbolizing it if
/// it was not yet.
fn site_text(s: &mut Session, tracer: &Tracer, r: SiteRef) -> Option<String> {
    resolve_site(s, tracer, r);
    s.model.sites.frames(r)?.first().map(summary::site_text)
}

/// Symbolizes site `r` (once).
fn resolve_site(s: &mut Session, tracer: &Tracer, r: SiteRef) {
    if !s.model.sites.unresolved(r) {
        return;
    }
    if let Some(raw) = s.model.sites.raw(r) {
        let frames = symbolize(s, &tracer.stack(raw.stack_id), raw.pc);
        s.model.sites.resolve(r, frames);
    }
}

/// Symbolizes the creation and growth sites of the maps `pick` selects
/// (each distinct site once), and looks up the creation record of those
/// whose address came to hold a new map.
pub(super) fn resolve_sites(s: &mut Session, tracer: &Tracer, pick: impl Fn(&TrackedMap) -> bool) {
    let mut refs: Vec<SiteRef> = Vec::new();
    let mut creations: Vec<u64> = Vec::new();
    for m in s.model.maps.values().filter(|m| pick(m)) {
        let [grow, grow_prev] = m.grow_sites();
        for r in [m.created_site(), grow, grow_prev] {
            if s.model.sites.unresolved(r) {
                refs.push(r);
            }
        }
        if m.wants_creation() {
            creations.push(m.addr);
        }
    }
    for addr in creations {
        if let Some(rec) = tracer.created(s.target.pid, addr) {
            let site = RawSite {
                stack_id: rec.stack_id,
                pc: rec.caller_pc,
            };
            s.model.on_created(addr, rec.ts_ns, rec.type_ptr, site);
        }
        s.model.creation_looked_up(addr);
        if let Some(m) = s.model.maps.get(&addr) {
            refs.push(m.created_site());
        }
    }
    refs.sort_unstable();
    refs.dedup();
    for r in refs {
        resolve_site(s, tracer, r);
    }
}

/// The caps reached in this run, with what each left out.
fn caps_reached(
    s: &Session,
    overhead: &Overhead,
    suspects_left_out: u64,
    groups: usize,
    families_left_out: u64,
) -> Vec<report::CapReached> {
    use report::CapReached as C;
    let m = &s.model;
    let keys = crate::keys::KeyBudget::global();
    let counter = |name: &str| overhead.counters.get(name).copied().unwrap_or(0);
    let keys_per_map = s
        .key_trackers
        .values()
        .chain(s.sync_key_trackers.values())
        .filter(|t| t.len() >= crate::keys::MAX_TRACKED_KEYS)
        .count() as u64;
    [
        C::new(
            "tracked_maps",
            m.max_tracked as u64,
            m.evicted,
            "maps evicted (the smallest that were not growing first)",
        ),
        C::new(
            "long_histories",
            crate::model::MAX_LONG_HISTORIES as u64,
            m.caps.long_history_refused,
            "samples of growing or bloated maps not kept beyond the last 8",
        ),
        C::new(
            "table_bytes_per_sample",
            crate::sample::MAX_TABLE_BYTES_PER_SAMPLE,
            m.caps.reads_skipped,
            "map reads skipped (Swiss directories and tables past what one sample reads)",
        ),
        C::new(
            "sample_time_ms",
            crate::sample::MAX_SAMPLE_TIME.as_millis() as u64,
            m.caps.reads_unreached,
            "map reads left to the next sample (the maps after those a sample read in its time)",
        ),
        C::new(
            "write_records",
            crate::model::MAX_WRITE_RECORDS as u64,
            m.caps.writes_dropped,
            "writes seen in write windows not counted (maps past those with a record)",
        ),
        C::new(
            crate::report::GC_CYCLES_CAP,
            crate::model::MAX_CYCLES as u64,
            m.caps.cycles_dropped,
            "GC cycles dropped from gc_cycles (the oldest)",
        ),
        C::new(
            "sites",
            crate::model::sites::MAX_SITE_REFS as u64,
            m.sites.dropped,
            "creation or growth sites not kept",
        ),
        C::new(
            "keys_per_map",
            crate::keys::MAX_TRACKED_KEYS as u64,
            keys_per_map,
            "maps whose keys were not all followed",
        ),
        C::new(
            "keys_total",
            keys.limit() as u64,
            keys.refused(),
            "keys not followed (all maps of all traced processes share this cap)",
        ),
        C::new(
            "pending_finalizers_and_cleanups",
            finalizers::MAX_PENDING as u64,
            s.fin.dropped,
            "finalizers or cleanups counted but not remembered",
        ),
        C::new(
            "maps_in_full",
            summary::MAX_SUSPECTS_IN_FULL as u64,
            suspects_left_out,
            "growing or bloated maps counted in map_groups instead of in full",
        ),
        C::new(
            "map_groups",
            summary::MAX_GROUPS as u64,
            groups.saturating_sub(summary::MAX_GROUPS - 1) as u64
                * u64::from(groups > summary::MAX_GROUPS),
            "groups merged into \"(other types and sites)\"",
        ),
        C::new(
            "families",
            crate::model::families::MAX_FAMILIES as u64,
            s.families.not_followed,
            "families of two maps or more not followed at the latest sample (the smallest new ones)",
        ),
        C::new(
            "families_in_report",
            MAX_FAMILIES_IN_REPORT as u64,
            families_left_out,
            "families left out of families[] (the smallest that were not growing)",
        ),
        C::new(
            "ring_buffer_bytes",
            u64::from(tracer_common::EVENTS_BYTES),
            counter("ring_buffer_full"),
            "events lost (the ring buffer was full)",
        ),
        C::new(
            "write_table",
            u64::from(tracer_common::WRITES_ENTRIES),
            counter("write_table_full"),
            "write counts not recorded (the kernel's write table was full)",
        ),
    ]
    .into_iter()
    .flatten()
    .collect()
}

pub(super) fn growth_per_s(first: &crate::model::Sample, last: &crate::model::Sample) -> f64 {
    let dt = f64::from(last.t_ms.saturating_sub(first.t_ms)) / 1e3;
    if dt < 0.1 {
        return 0.0;
    }
    (last.len as f64 - first.len as f64) / dt
}

pub(super) fn finalizer_report(s: &Session) -> report::Finalizers {
    let f = &s.fin;
    let cycle = s.model.cycles.back().map_or(0, |c| c.cycle);
    let mut held = Vec::new();
    let mut addrs: Vec<&u64> = s.held_keys.keys().collect();
    addrs.sort_unstable();
    for addr in addrs {
        let (Some(t), Some(m), Some(&(as_of_cycle, h))) = (
            s.key_trackers.get(addr),
            s.model.maps.get(addr),
            s.held_keys.get(addr),
        ) else {
            continue;
        };
        if !t.follows(m.seed(), m.last().map_or(0, |l| l.len))
            || h.finalizers + h.cleanups + h.unverified == 0
        {
            continue;
        }
        let layout = s.key_layouts.get(&m.type_ptr).and_then(Option::as_ref);
        let key_type = layout.map_or("?", |l| l.key_type.name.as_str());
        held.push(report::HeldAsMapKeys {
            map_id: m.id,
            map_type: layout.map_or_else(|| "unknown".to_owned(), |l| l.map_type.clone()),
            owner: m.owner().map(str::to_owned),
            count: h.finalizers.max(h.cleanups),
            finalizers: h.finalizers,
            cleanups: h.cleanups,
            unverified: h.unverified,
            type_name: key_type.strip_prefix('*').unwrap_or(key_type).to_owned(),
            as_of_cycle,
        });
    }
    // sync.Maps whose keys are objects with finalizers, as of their walks.
    let mut sync: Vec<(&u64, &SyncEntries)> = s.sync_entries.iter().collect();
    sync.sort_unstable_by_key(|x| *x.0);
    for (addr, e) in sync {
        let h = e.held;
        let Some(m) = s.model.maps.get(addr) else {
            continue;
        };
        if h.finalizers + h.cleanups + h.unverified == 0 {
            continue;
        }
        let key = if h.type_ptr == 0 {
            "unknown".to_owned()
        } else {
            dynamic_type_name(s, h.type_ptr)
        };
        held.push(report::HeldAsMapKeys {
            map_id: m.id,
            map_type: crate::syncmap::TYPE_NAME.to_owned(),
            owner: m.owner().map(str::to_owned),
            count: h.finalizers.max(h.cleanups),
            finalizers: h.finalizers,
            cleanups: h.cleanups,
            unverified: h.unverified,
            type_name: key.strip_prefix('*').unwrap_or(&key).to_owned(),
            as_of_cycle: e.cycle,
        });
    }
    report::Finalizers {
        set: f.set,
        removed: f.removed,
        ran: f.ran + f.ran_unknown,
        ran_set_before_trace: f.ran_unknown,
        pending: f.pending(),
        pending_unverified: f.pending_unverified(),
        probe_pauses: f.pauses,
        pending_age_cycles_histogram: f.pending_age_histogram(cycle),
        cleanups_added: f.cleanups_added,
        cleanups_ran: f.cleanups_ran,
        cleanups_stopped: f.cleanups_stopped,
        dropped: f.dropped,
        held_as_map_keys: held,
    }
}
