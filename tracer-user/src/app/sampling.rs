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
    // A sample in flight wakes the loop when its job is done.
    if s.ended.is_some() || s.in_flight.is_some() {
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

/// Starts the pending sample (the newest GC cycle seen, or a timer sample)
/// if no sample is in flight and the gap since the previous one has
/// passed: returns the header reads to run on a worker thread.
pub(super) fn sample_due(s: &mut Session) -> Option<Job> {
    if s.in_flight.is_some() {
        return None;
    }
    timer_due(s);
    if s.pending_sample.is_none() || !gap_left(s).is_zero() {
        return None;
    }
    let PendingSample {
        cycle,
        ts_ns,
        early,
        timer,
    } = s.pending_sample.take()?;
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
        return None;
    }
    let at = SampleAt {
        cycle,
        t_ms: u32::try_from(s.started.elapsed().as_millis()).unwrap_or(u32::MAX),
        timer,
    };
    // Type sizes first (a type not seen yet is read here, once per type).
    let tps: Vec<(u64, u64)> = s
        .model
        .maps
        .values()
        .map(|m| (m.addr, m.type_ptr))
        .collect();
    let maps: Vec<(u64, TypeSizes)> = tps
        .into_iter()
        .map(|(addr, tp)| {
            let sizes = if tp == 0 {
                TypeSizes::default()
            } else if let Some(e) = s.types.get(&tp) {
                e.3
            } else {
                type_entry(s, tp).3
            };
            (addr, sizes)
        })
        .collect();
    let started = Instant::now();
    s.in_flight = Some(InFlight {
        at,
        started,
        age_ns,
    });
    Some(Job::Headers(HeaderJob {
        mem: s.mem.clone(),
        info: s.info.clone(),
        maps,
        deadline: started + HEADER_DEADLINE,
        test_delay: test_sample_delay(),
    }))
}

/// A sample whose reads are on a worker thread.
#[derive(Debug, Clone, Copy)]
pub(super) struct InFlight {
    pub(super) at: SampleAt,
    /// When its header reads started.
    pub(super) started: Instant,
    /// Age of its GC event when they started (ns).
    pub(super) age_ns: u64,
}

/// `MAPLEAK_TEST_SAMPLE_DELAY_MS`: a pause inside every sample's reads,
/// for tests that check the governor and the loop do not wait for them.
pub(super) fn test_sample_delay() -> Option<Duration> {
    static D: std::sync::OnceLock<Option<Duration>> = std::sync::OnceLock::new();
    *D.get_or_init(|| {
        std::env::var("MAPLEAK_TEST_SAMPLE_DELAY_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .map(Duration::from_millis)
    })
}

/// Applies what a worker found; returns the next job of the same sample
/// (the keys and owners after the headers).
pub(super) fn on_done(s: &mut Session, tracer: &Tracer, done: Done) -> Option<Job> {
    match done {
        Done::Headers(r) => on_headers(s, tracer, r),
        Done::Keys(r) => {
            on_keys(s, r);
            None
        }
    }
}

fn on_headers(s: &mut Session, tracer: &Tracer, r: HeaderResult) -> Option<Job> {
    let InFlight {
        at,
        started,
        age_ns,
    } = s.in_flight?;
    // Every read failing means the process is gone (or going), not that
    // every map died: keep the history for the final report.
    if !r.all_failed {
        for (addr, h) in r.samples {
            s.model.on_sample(addr, at, h);
        }
    }
    if r.cut_short {
        s.samples_cut_short += 1;
    }
    if at.timer {
        s.timer_samples += 1;
    } else {
        s.sampled_cycles += 1;
    }
    s.last_sample = Some((started, r.took));
    resolve_sites(s, tracer, |m| {
        matches!(m.verdict(), Verdict::Growing | Verdict::Bloated)
    });
    if debug_timing() {
        let now_ms = now_ns() as f64 / 1e6;
        let start_ms = now_ms - started.elapsed().as_secs_f64() * 1e3;
        eprintln!(
            "gc {}: event age {:.1} ms, headers {:?}, {} maps; sample from {start_ms:.1} ms to {now_ms:.1} ms",
            at.cycle,
            age_ns as f64 / 1e6,
            r.took,
            s.model.maps.len(),
        );
    }
    if s.ended.is_some() {
        s.in_flight = None;
        return None;
    }
    let cands = if keys_due(s) {
        Some(key_candidates(s, at.cycle))
    } else {
        s.keys_deferred += 1;
        None
    };
    // They spend at most the credit above half the bucket: the governed
    // probes, paused below half, are not starved by them.
    let spare = {
        let b = lock(&s.budget);
        (b.gov.credit - b.gov.max() / 2.0).max(0.0)
    };
    let limit =
        Duration::from_secs_f64(spare.min(SNAPSHOT_TIME.as_secs_f64())).max(MIN_SNAPSHOT_TIME);
    s.last_keys_start = cands.as_ref().map(|_| Instant::now());
    Some(Job::Keys(KeysJob {
        mem: s.mem.clone(),
        info: s.info.clone(),
        bias: s.bias,
        cycle: at.cycle,
        limit,
        show_keys: s.show_keys,
        cands,
        state: take_key_state(s),
        owner_cands: owner_candidates(s, false),
    }))
}

fn on_keys(s: &mut Session, r: KeysResult) {
    s.in_flight = None;
    put_key_state(s, r.state);
    if let (Some(start), Some(took)) = (s.last_keys_start.take(), r.keys_took) {
        s.last_keys = Some((start, took));
    }
    apply_owners(s, r.owners, &r.owners_searched);
}

/// Moves the key state out of the session for a keys job.
fn take_key_state(s: &mut Session) -> KeyState {
    KeyState {
        layouts: std::mem::take(&mut s.key_layouts),
        trackers: std::mem::take(&mut s.key_trackers),
        snap_cycle: std::mem::take(&mut s.snap_cycle),
    }
}

/// Puts back what a keys job carried (maps retired meanwhile are dropped).
fn put_key_state(s: &mut Session, mut k: KeyState) {
    k.trackers.retain(|addr, _| s.model.maps.contains_key(addr));
    k.snap_cycle
        .retain(|addr, _| s.model.maps.contains_key(addr));
    s.key_layouts = k.layouts;
    s.key_trackers = k.trackers;
    s.snap_cycle = k.snap_cycle;
}

/// Wall time for key snapshots per GC cycle; maps left out go first next
/// cycle. Reading keys must not delay the next cycle's header reads.
pub(super) const SNAPSHOT_TIME: Duration = Duration::from_millis(100);

/// Least time given to key snapshots when they are due.
pub(super) const MIN_SNAPSHOT_TIME: Duration = Duration::from_millis(5);

/// Maps sampled at `cycle` whose keys may be read: suspects first; within
/// a rank, the longest without a snapshot first, then the largest.
fn key_candidates(s: &mut Session, cycle: u64) -> Vec<KeyCandidate> {
    s.key_trackers
        .retain(|addr, _| s.model.maps.contains_key(addr));
    s.snap_cycle
        .retain(|addr, _| s.model.maps.contains_key(addr));
    let mut cands: Vec<KeyCandidate> = s
        .model
        .maps
        .values()
        .filter(|m| m.type_ptr != 0 && m.last().is_some_and(|x| x.cycle == cycle))
        .map(|m| {
            let rank = match m.verdict() {
                Verdict::Growing => 0,
                Verdict::Bloated => 1,
                _ => 2,
            };
            (rank, m.last().map_or(0, |x| x.len), m.addr, m.type_ptr)
        })
        .collect();
    let last = |a: u64| s.snap_cycle.get(&a).copied().unwrap_or(0);
    cands.sort_by(|a, b| {
        a.0.cmp(&b.0)
            .then(last(a.2).cmp(&last(b.2)))
            .then(b.1.cmp(&a.1))
            .then(a.2.cmp(&b.2))
    });
    cands
}

/// Suspects (growing, bloated) without an owner, not searched in the last
/// four samples (`force`: whatever the last search).
pub(super) fn owner_candidates(s: &Session, force: bool) -> Vec<u64> {
    s.model
        .maps
        .values()
        .filter(|m| m.owner.is_none() && matches!(m.verdict(), Verdict::Growing | Verdict::Bloated))
        .filter(|m| {
            force
                || s.owners_searched
                    .get(&m.addr)
                    .is_none_or(|&c| s.sampled_cycles >= c + 4)
        })
        .map(|m| m.addr)
        .collect()
}

/// Records an owner search's result.
pub(super) fn apply_owners(s: &mut Session, mut found: HashMap<u64, String>, searched: &[u64]) {
    for &c in searched {
        s.owners_searched.insert(c, s.sampled_cycles);
        if let Some(name) = found.remove(&c)
            && let Some(m) = s.model.maps.get_mut(&c)
        {
            m.owner = Some(name);
        }
    }
}

/// The owner search before the final report, for every suspect without
/// one (the loop is over: nothing waits behind it but the report).
pub(super) fn final_owner_search(s: &mut Session) {
    let cands = owner_candidates(s, true);
    let (found, _) = jobs::find_owners(
        &s.mem,
        &s.info,
        s.bias,
        &cands,
        Instant::now() + jobs::OWNERS_DEADLINE,
    );
    apply_owners(s, found, &cands);
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
