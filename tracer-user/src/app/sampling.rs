//! `app::sampling`: when map headers, keys and owners are read (at GC
//! cycles, or on a timer when cycles are rare), paced by the budget.
#![allow(
    clippy::wildcard_imports,
    reason = "the app modules share one set of imports and items"
)]
use super::*;

/// A GC event processed later than this is not sampled (see `sample_due`).
pub(super) const MAX_SAMPLE_LAG_NS: u64 = 150_000_000;

/// Shortest time between two samples: a GC-heavy program (hundreds of
/// cycles a second) is sampled at most this often.
pub(super) const MIN_SAMPLE_GAP: Duration = Duration::from_millis(100);

/// A sample's header reads are followed by a pause of at least this many
/// times their length.
pub(super) const SAMPLE_GAP_FACTOR: u32 = 9;

/// Share of the overhead budget the tracer's header reads may take (the
/// governor debits the tracer's CPU with the probes' cost). Samples are
/// what sees a map grow, so they are paced rather than made to wait for
/// credit; the governed probes get what is left, and key reads come last.
pub(super) const HEADER_SHARE: f64 = 0.3;

/// Longest pause between two header samples, unless one sample takes more
/// than a tenth of it.
pub(super) const MAX_SAMPLE_GAP: Duration = Duration::from_secs(10);

/// Longest time keys go unread while samples are taken.
pub(super) const MAX_KEYS_GAP: Duration = Duration::from_secs(60);

/// How long after its start the next sample may start, when its header
/// reads took `took`: paced to [`HEADER_SHARE`] of a budget of `rate` CPUs,
/// within [`MIN_SAMPLE_GAP`]..[`MAX_SAMPLE_GAP`], and never less than ten
/// times `took`.
pub(super) fn sample_gap(took: Duration, rate: f64) -> Duration {
    let base = MIN_SAMPLE_GAP.max(took * (SAMPLE_GAP_FACTOR + 1));
    let r = rate * HEADER_SHARE;
    let paced = if r > 0.0 {
        Duration::from_secs_f64((took.as_secs_f64() / r).min(3600.0))
    } else {
        MAX_SAMPLE_GAP
    };
    paced.min(MAX_SAMPLE_GAP).max(base)
}

/// Time left of the gap after `s`'s last sample (zero: a sample may start).
pub(super) fn gap_left(s: &Session) -> Duration {
    s.last_sample.map_or(Duration::ZERO, |(start, took)| {
        sample_gap(took, s.rate).saturating_sub(start.elapsed())
    })
}

/// Whether keys may be read at this sample: when the budget has credit to
/// spare after the governed probes and the write window (keys are the
/// tracer's costliest work, and come last), and at least every
/// [`MAX_KEYS_GAP`].
pub(super) fn keys_due(s: &Session) -> bool {
    lock(&s.budget).spare_for_tracer()
        || s.last_keys
            .is_none_or(|(start, _)| start.elapsed() >= MAX_KEYS_GAP)
}

/// A sample waiting for the gap after the previous one.
#[derive(Debug, Clone, Copy)]
pub(super) struct PendingSample {
    /// GC cycle (a timer sample: the latest one seen).
    pub(super) cycle: u64,
    /// Its GC event's time, or when the timer sample was asked for (ns).
    pub(super) ts_ns: u64,
    /// It came before the gap after the previous sample had passed.
    pub(super) early: bool,
    /// Taken on the timer, not at a GC cycle.
    pub(super) timer: bool,
}

/// Time until `s` may take its pending sample (zero: now), or the time
/// until a timer sample is due when nothing is pending.
pub(super) fn sample_wait(s: &Session) -> Option<Duration> {
    if s.ended.is_some() {
        return None;
    }
    match s.pending_sample {
        Some(_) => Some(gap_left(s)),
        None => Some(timer_left(s).max(gap_left(s))),
    }
}

/// Time until a timer sample is due: `timer_every` after the last sample
/// started (GC samples reset it, so a program whose GC runs more often than
/// that gets none).
pub(super) fn timer_left(s: &Session) -> Duration {
    s.last_sample.map_or(Duration::ZERO, |(start, _)| {
        s.timer_every.saturating_sub(start.elapsed())
    })
}

/// Asks for a timer sample when no GC cycle brought one for `timer_every`.
pub(super) fn timer_due(s: &mut Session) {
    if s.pending_sample.is_none() && timer_left(s).is_zero() {
        s.pending_sample = Some(PendingSample {
            cycle: s.model.cycles.back().map_or(0, |c| c.cycle),
            ts_ns: now_ns(),
            early: false,
            timer: true,
        });
    }
}

/// Takes the pending sample (the newest GC cycle seen, or a timer sample)
/// if the gap since the previous sample has passed: map headers, then keys,
/// then owners.
pub(super) fn sample_due(s: &mut Session, tracer: &Tracer) {
    timer_due(s);
    if s.pending_sample.is_none() || !gap_left(s).is_zero() {
        return;
    }
    let Some(PendingSample {
        cycle,
        ts_ns,
        early,
        timer,
    }) = s.pending_sample.take()
    else {
        return;
    };
    // Lengths read long after the cycle belong to a later moment: a cycle
    // whose event is processed late is not sampled. When it came during
    // the gap, the gap made it late (the tracer did not fall behind).
    let age_ns = now_ns().saturating_sub(ts_ns);
    if age_ns > MAX_SAMPLE_LAG_NS {
        if early {
            s.skipped_cycles += 1;
        } else {
            s.late_cycles += 1;
        }
        return;
    }
    let t = Instant::now();
    let start_ms = now_ns() as f64 / 1e6;
    let at = SampleAt {
        cycle,
        t_ms: u32::try_from(s.started.elapsed().as_millis()).unwrap_or(u32::MAX),
        timer,
    };
    sample_all(s, at);
    if timer {
        s.timer_samples += 1;
    } else {
        s.sampled_cycles += 1;
    }
    resolve_sites(s, tracer, |m| {
        matches!(m.verdict(), Verdict::Growing | Verdict::Bloated)
    });
    let headers = t.elapsed();
    s.last_sample = Some((t, headers));
    if let Some(d) = test_sample_delay() {
        std::thread::sleep(d);
    }
    if keys_due(s) {
        let k = Instant::now();
        // They spend at most the credit above half the bucket: the governed
        // probes, paused below half, are not starved by them.
        let spare = {
            let b = lock(&s.budget);
            (b.gov.credit - b.gov.max() / 2.0).max(0.0)
        };
        let limit =
            Duration::from_secs_f64(spare.min(SNAPSHOT_TIME.as_secs_f64())).max(MIN_SNAPSHOT_TIME);
        snapshot_keys(s, cycle, limit);
        s.last_keys = Some((k, k.elapsed()));
    } else {
        s.keys_deferred += 1;
    }
    find_owners(s, false);
    if debug_timing() {
        eprintln!(
            "gc {cycle}: event age {:.1} ms, headers {headers:?}, all {:?}, {} maps; sample from {start_ms:.1} ms to {:.1} ms",
            age_ns as f64 / 1e6,
            t.elapsed(),
            s.model.maps.len(),
            now_ns() as f64 / 1e6,
        );
    }
}

/// `MAPLEAK_TEST_SAMPLE_DELAY_MS`: a pause inside every sample, for tests
/// that check the governor does not wait for the main loop's work.
pub(super) fn test_sample_delay() -> Option<Duration> {
    static D: std::sync::OnceLock<Option<Duration>> = std::sync::OnceLock::new();
    *D.get_or_init(|| {
        std::env::var("MAPLEAK_TEST_SAMPLE_DELAY_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .map(Duration::from_millis)
    })
}

/// Reads every tracked map's header (and Swiss tables), a sample at `at`.
pub(super) fn sample_all(s: &mut Session, at: SampleAt) {
    for tp in s.model.unknown_types(|tp| s.types.contains_key(&tp)) {
        type_entry(s, tp);
    }
    let types = &s.types;
    let sizes = |tp| types.get(&tp).map_or_else(TypeSizes::default, |e| e.3);
    sample::sample_model(
        &mut s.model,
        &s.mem,
        &s.info.layout,
        s.info.map_impl,
        sizes,
        at,
    );
}

/// Keys read per GC cycle, over all maps: bounds the tracer's memory and the
/// time a cycle takes.
pub(super) const MAX_KEYS_PER_CYCLE: u64 = 1_000_000;

/// Maps that are not suspects whose keys are read per cycle (the largest).
pub(super) const MAX_OTHER_SNAPSHOTS: usize = 64;

/// Largest map that is not a suspect whose keys are read.
pub(super) const MAX_OTHER_LEN: u64 = 20_000;

/// Wall time for key snapshots per GC cycle; maps left out go first next
/// cycle. Reading keys must not delay the next cycle's header reads.
pub(super) const SNAPSHOT_TIME: Duration = Duration::from_millis(100);

/// Least time given to key snapshots when they are due.
pub(super) const MIN_SNAPSHOT_TIME: Duration = Duration::from_millis(5);

/// Reads the keys of suspects (growing, bloated) and of a bounded number of
/// other maps, and follows them across cycles.
pub(super) fn snapshot_keys(s: &mut Session, cycle: u64, limit: Duration) {
    let started = Instant::now();
    crate::keys::retain_trackers(&mut s.key_trackers, &s.model);
    s.snap_cycle
        .retain(|addr, _| s.model.maps.contains_key(addr));
    // Suspects first; within a rank, the longest without a snapshot first.
    let last = |a: u64| s.snap_cycle.get(&a).copied().unwrap_or(0);
    let followed = |a: u64| s.key_trackers.contains_key(&a);
    let cands = crate::keys::snapshot_candidates(
        &s.model,
        cycle,
        last,
        followed,
        MAX_OTHER_SNAPSHOTS,
        MAX_OTHER_LEN,
    );
    let mut budget = MAX_KEYS_PER_CYCLE;
    let mut others = 0;
    for (rank, len, addr, tp) in cands {
        if started.elapsed() >= limit {
            break;
        }
        if rank == 2 {
            if others >= MAX_OTHER_SNAPSHOTS || len == 0 || len > MAX_OTHER_LEN {
                continue;
            }
            others += 1;
        }
        if !s.key_trackers.contains_key(&addr) && !crate::keys::room_for_tracker(rank < 2) {
            continue;
        }
        if len > budget {
            continue;
        }
        let (mem, info, bias) = (&s.mem, &s.info, s.bias);
        let Some(kl) = s
            .key_layouts
            .entry(tp)
            .or_insert_with(|| crate::keys::key_layout(mem, info, bias, tp))
            .as_ref()
        else {
            continue;
        };
        let max = MAX_TRACKED_KEYS.min(budget as usize);
        let Some(snap) = crate::keys::snapshot(&s.mem, &s.info.layout, kl, addr, max) else {
            continue;
        };
        budget = budget.saturating_sub(snap.keys.len() as u64);
        s.snap_cycle.insert(addr, cycle);
        let show = s.show_keys;
        s.key_trackers
            .entry(addr)
            .or_insert_with(|| KeyTracker::new(kl.key_type.clone(), show))
            .update(cycle, &snap);
    }
}

/// Names the global variable holding each suspicious map, by scanning the
/// target's writable globals for the map pointer.
pub(super) fn find_owners(s: &mut Session, force: bool) {
    let cands: Vec<u64> = s
        .model
        .maps
        .values()
        .filter(|m| {
            m.owner().is_none() && matches!(m.verdict(), Verdict::Growing | Verdict::Bloated)
        })
        .filter(|m| {
            force
                || s.owners_searched
                    .get(&m.addr)
                    .is_none_or(|&c| s.sampled_cycles >= c + 4)
        })
        .map(|m| m.addr)
        .collect();
    if cands.is_empty() {
        return;
    }
    let Some((lo, hi)) = s.info.data_range() else {
        return;
    };
    let hi = hi.min(lo + (64 << 20));
    let mut found: HashMap<u64, String> = HashMap::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut a = lo;
    while a < hi {
        let want = ((hi - a) as usize).min(buf.len()) & !7;
        if want == 0 {
            break;
        }
        let n = s.mem.read_some(a + s.bias, &mut buf[..want]) & !7;
        if n == 0 {
            // Unmapped page: skip it.
            a = (a + 4096) & !4095;
            continue;
        }
        {
            for (i, w) in buf[..n].chunks_exact(8).enumerate() {
                let v = u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
                if cands.contains(&v) && !found.contains_key(&v) {
                    let va = a + (i as u64) * 8;
                    if let Some((sym, off)) = s.info.data_symbol_at(va) {
                        let name = if off == 0 {
                            sym.name.clone()
                        } else {
                            format!("{}+{off}", sym.name)
                        };
                        found.insert(v, name);
                    } else {
                        found.insert(v, format!("global at {va:#x} (no symbol: stripped binary)"));
                    }
                }
            }
        }
        a += n as u64;
    }
    for c in cands {
        s.owners_searched.insert(c, s.sampled_cycles);
        if let Some(name) = found.remove(&c)
            && let Some(m) = s.model.maps.get_mut(&c)
        {
            m.set_owner(name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_gap_paces_header_reads_by_the_budget() {
        assert_eq!(sample_gap(Duration::ZERO, 0.01), MIN_SAMPLE_GAP);
        assert_eq!(sample_gap(Duration::from_micros(200), 0.01), MIN_SAMPLE_GAP);
        // 3 ms of reads at a 1% budget take 30% of it when 1 s apart.
        let g = sample_gap(Duration::from_millis(3), 0.01);
        assert!((g.as_secs_f64() - 1.0).abs() < 1e-9, "{g:?}");
        // Never more than 10 s without a sample, unless one takes a tenth
        // of that.
        assert_eq!(sample_gap(Duration::from_millis(140), 0.01), MAX_SAMPLE_GAP);
        assert_eq!(
            sample_gap(Duration::from_secs(2), 0.01),
            Duration::from_secs(20)
        );
        // A larger budget samples more often, down to ten times the reads;
        // none (or NaN), the longest gap.
        assert_eq!(
            sample_gap(Duration::from_millis(140), 1.0),
            Duration::from_millis(1400)
        );
        assert_eq!(sample_gap(Duration::from_millis(3), 0.0), MAX_SAMPLE_GAP);
        assert_eq!(
            sample_gap(Duration::from_millis(3), f64::NAN),
            MAX_SAMPLE_GAP
        );
    }
}
