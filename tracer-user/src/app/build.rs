//! `app::build`: the report of one process, from its model and the
//! budget's figures.
#![allow(
    clippy::wildcard_imports,
    reason = "the app modules share one set of imports and items"
)]
use super::*;

pub(super) fn build_report(
    s: &mut Session,
    tracer: &Tracer,
    duration_s: f64,
    final_report: bool,
) -> Report {
    // Suspects and the largest maps in full; the others grouped by type and
    // site (all in full with --all-maps).
    let cands: Vec<summary::Candidate> = s
        .model
        .maps
        .values()
        .filter_map(|m| {
            Some(summary::Candidate {
                addr: m.addr,
                verdict: m.verdict(),
                bytes: m.last()?.bytes,
            })
        })
        .collect();
    let detail = summary::detailed(&cands, s.all_maps);
    // Only the maps shown in full keep symbolized sites; a group's site is
    // symbolized once per stack (100,000 maps made at one site share it).
    resolve_sites(s, tracer, |m| detail.contains(&m.addr));
    find_owners(s, final_report);
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
    overhead.write_windows = b.gov.windows;
    overhead.write_windows_s = (b.gov.window_total
        + b.gov.window_open.map_or(Duration::ZERO, |at| at.elapsed()))
    .as_secs_f64();
    overhead.write_windows_closed_over_budget = b.gov.windows_over_budget;
    overhead.maps_found_by_write_windows = s.discovered_by_writes;
    overhead.budget_spent_target_cpu_s = b.gov.spent;
    overhead.budget_tracer_cpu_s = b.tracer_cpu_debited;
    overhead.key_reads_deferred = s.keys_deferred;
    drop(b);
    overhead.gc_cycles_not_sampled_late = s.late_cycles;
    overhead.gc_cycles_sampled = s.sampled_cycles;
    overhead.gc_cycles_skipped = s.skipped_cycles;
    overhead.timer_samples = s.timer_samples;
    let (cpu, rss) = self_usage();
    overhead.tracer_cpu_s = cpu;
    overhead.tracer_max_rss_bytes = rss;
    let others: Vec<_> = s
        .model
        .maps
        .values()
        .filter(|m| !detail.contains(&m.addr))
        .filter_map(|m| {
            let last = m.last()?;
            let site = m
                .created_at
                .first()
                .or_else(|| m.grow_site.first())
                .map(summary::site_text);
            Some((
                m.addr,
                m.type_ptr,
                m.type_name.clone(),
                site,
                m.verdict(),
                last.len,
                last.bytes,
            ))
        })
        .collect();
    let summarized = others.len() as u64;
    let mut groups = summary::Grouper::default();
    let mut sites: HashMap<(i32, u64), Option<String>> = HashMap::new();
    for (addr, tp, name, site, verdict, len, bytes) in others {
        let site = site.or_else(|| group_site(s, tracer, &mut sites, addr));
        let name = if tp == 0 {
            name.unwrap_or_else(|| "unknown".to_owned())
        } else {
            type_entry(s, tp).0
        };
        groups.add(&name, site, verdict, len, bytes);
    }
    let mut maps: Vec<MapReport> = Vec::new();
    let mut ids: Vec<u64> = detail.into_iter().collect();
    ids.sort_unstable();
    for addr in ids {
        let Some(m) = s.model.maps.get(&addr).cloned() else {
            continue;
        };
        let Some(last) = m.last().copied() else {
            continue;
        };
        let (type_name, key, elem, _) = if m.type_ptr == 0 {
            (
                m.type_name.clone().unwrap_or_else(|| "unknown".to_owned()),
                None,
                None,
                TypeSizes::default(),
            )
        } else {
            type_entry(s, m.type_ptr)
        };
        let first = m.samples.front().copied().unwrap_or(last);
        let span = last.cycle.saturating_sub(first.cycle).max(1) as f64;
        maps.push(MapReport {
            id: m.id,
            addr: format!("{addr:#x}"),
            type_name,
            key_type: key,
            elem_type: elem,
            created_at: m.created_at.clone(),
            grown_at: m.grow_site.clone(),
            owner: m.owner.clone(),
            len_by_cycle: m
                .samples
                .iter()
                .filter(|x| !x.timer)
                .map(|x| (x.cycle, x.len))
                .collect(),
            timer_samples: m
                .samples
                .iter()
                .filter(|x| x.timer)
                .map(|x| (f64::from(x.t_ms) / 1e3, x.len))
                .collect(),
            growth_per_s: growth_per_s(&first, &last),
            len_first: m.first.map_or(last.len, |f| f.len),
            len_last: last.len,
            capacity: last.capacity,
            bytes: last.bytes,
            growth_events: m.growth_events,
            growth_per_cycle: (last.len as f64 - first.len as f64) / span,
            verdict: m.verdict(),
            retained_keys: s
                .key_trackers
                .get(&addr)
                .and_then(|t| serde_json::to_value(t.stats()).ok()),
            inserted_at: m
                .insert_sites
                .iter()
                .filter_map(|&(pc, count)| {
                    let frame = s
                        .info
                        .frame_for_pc(pc.wrapping_sub(s.bias).wrapping_sub(1))?;
                    Some(report::InsertSite { frame, count })
                })
                .collect(),
            writes_seen: report::WritesSeen {
                assigns: m.assigns,
                deletes: m.deletes,
            },
        });
    }
    maps.sort_by(|a, b| {
        a.verdict
            .cmp(&b.verdict)
            .then(b.bytes.cmp(&a.bytes))
            .then(a.id.cmp(&b.id))
    });
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
        maps,
        maps_summarized: summarized,
        map_groups: groups.finish(),
        finalizers: finalizer_report(s),
        overhead,
        maps_retired: s.model.retired,
        maps_evicted: s.model.evicted,
    }
}

/// Entries per second between two samples (0 when they are less than
/// 100 ms apart).
/// The site of a map not shown in full, from its unsymbolized creation
/// record (else its latest growth), symbolized once per stack.
fn group_site(
    s: &Session,
    tracer: &Tracer,
    cache: &mut HashMap<(i32, u64), Option<String>>,
    addr: u64,
) -> Option<String> {
    let u = s.unresolved.get(&addr)?;
    let key = u.created.map(|r| (r.stack_id, r.caller_pc)).or(u.grow)?;
    cache
        .entry(key)
        .or_insert_with(|| {
            symbolize(s, &tracer.stack(key.0), key.1)
                .first()
                .map(summary::site_text)
        })
        .clone()
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
    let cleanup_objs = f.cleanup_objects();
    let mut held = Vec::new();
    if !f.finalizers.is_empty() || !cleanup_objs.is_empty() {
        let mut addrs: Vec<&u64> = s.key_trackers.keys().collect();
        addrs.sort_unstable();
        for addr in addrs {
            let (Some(t), Some(m)) = (s.key_trackers.get(addr), s.model.maps.get(addr)) else {
                continue;
            };
            let h = finalizers::held_keys(f, &cleanup_objs, t.present_pointers());
            if h.finalizers + h.cleanups + h.unverified == 0 {
                continue;
            }
            let layout = s.key_layouts.get(&m.type_ptr).and_then(Option::as_ref);
            let key_type = layout.map_or("?", |l| l.key_type.name.as_str());
            held.push(report::HeldAsMapKeys {
                map_id: m.id,
                map_type: layout.map_or_else(|| "unknown".to_owned(), |l| l.map_type.clone()),
                owner: m.owner.clone(),
                count: h.finalizers.max(h.cleanups),
                finalizers: h.finalizers,
                cleanups: h.cleanups,
                unverified: h.unverified,
                type_name: key_type.strip_prefix('*').unwrap_or(key_type).to_owned(),
            });
        }
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
