//! Tests of the model: verdicts, samples, identity after address reuse, caps.
use super::*;

fn hist(lens: &[u64], cap: u64) -> Vec<Sample> {
    lens.iter()
        .enumerate()
        .map(|(i, &len)| Sample {
            cycle: i as u64 + 1,
            len,
            capacity: cap.max(len * 2),
            bytes: 0,
            t_ms: 0,
            timer: false,
        })
        .collect()
}

fn ok(len: u64, seed: u64) -> HeaderRead {
    at_storage(len, seed, 0x100)
}

/// A header of `len` entries, hash seed `seed`, entries at `storage`.
fn at_storage(len: u64, seed: u64, storage: u64) -> HeaderRead {
    HeaderRead::Ok(HeaderSample {
        len,
        capacity: 64,
        bytes: 0,
        seed,
        storage,
    })
}

fn raw(pc: u64) -> Option<RawSite> {
    Some(RawSite { stack_id: 1, pc })
}

/// A leak slower than the GC rises every other cycle: still growing.
/// A bounded map that wanders up and down is not.
#[test]
fn slow_leak_and_wandering_map() {
    let slow = hist(&[12, 14, 14, 16, 18, 18, 20, 20], 64);
    assert_eq!(verdict(&slow), Verdict::Growing);
    let wander = hist(&[990, 1000, 995, 1000, 992, 999, 994, 1000], 2048);
    assert_ne!(verdict(&wander), Verdict::Growing);
    let stopped = hist(&[10, 12, 14, 16, 18, 18, 18, 18], 64);
    assert_ne!(verdict(&stopped), Verdict::Growing);
}

/// A cache that only grows is growing; a plateau is not.
#[test]
fn growing_vs_plateau() {
    assert_eq!(verdict(&hist(&[100, 200, 300, 400], 0)), Verdict::Growing);
    assert_eq!(
        verdict(&hist(&[1000, 1000, 1000, 1000], 2048)),
        Verdict::Idle
    );
    assert_eq!(
        verdict(&hist(&[990, 1000, 995, 1000, 998], 2048)),
        Verdict::Stable
    );
    // Grew, then stopped for two cycles: no longer growing.
    assert_eq!(
        verdict(&hist(&[100, 200, 300, 300, 300], 1024)),
        Verdict::Stable
    );
    // Too few samples.
    assert_eq!(verdict(&hist(&[100, 200], 0)), Verdict::Stable);
    // Saw-tooth (grows, then is cut back): not growing.
    assert_eq!(
        verdict(&hist(&[100, 200, 300, 50, 100, 200], 1024)),
        Verdict::Stable
    );
}

/// Emptied after growth: bloated.
#[test]
fn bloated() {
    let mut s = hist(&[1_000_000, 10, 10], 0);
    for x in &mut s {
        x.capacity = 2_097_152;
    }
    assert_eq!(verdict(&s), Verdict::Bloated);
}

/// The compact window judges as the full samples do: the same lengths
/// and capacities give the same verdict.
#[test]
fn window_verdict_matches_samples() {
    let cases: [&[u64]; 5] = [
        &[12, 14, 14, 16, 18, 18, 20, 20],
        &[1000, 1000, 1000, 1000],
        &[100, 200, 300, 300, 300],
        &[7, 7, 7, 7, 7, 7, 7, 7, 7, 7],
        &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12],
    ];
    for (i, lens) in cases.iter().enumerate() {
        for cap in [64, 4096] {
            let mut m = Model::default();
            m.on_grow(0x10, 1, 0, None);
            for (c, &len) in lens.iter().enumerate() {
                m.on_sample(
                    0x10,
                    SampleAt::gc(c as u64 + 1),
                    HeaderRead::Ok(HeaderSample {
                        len,
                        capacity: cap.max(len * 2),
                        bytes: 0,
                        seed: 5,
                        storage: 0x100,
                    }),
                );
            }
            let want = verdict(&hist(lens, cap));
            assert_eq!(m.maps[&0x10].verdict(), want, "case {i}, cap {cap}");
        }
    }
}

/// A failed read retires a map at once; an implausible header only
/// after RETIRE_AFTER in a row (a read caught mid-update is not a
/// death); a skipped read changes nothing.
#[test]
fn retire_after_repeated_implausible_headers() {
    let mut m = Model::default();
    m.on_grow(0x10, 1, 0, None);
    m.on_sample(0x10, SampleAt::gc(1), ok(10, 5));
    for c in 2..(1 + u64::from(RETIRE_AFTER)) {
        m.on_sample(0x10, SampleAt::gc(c), HeaderRead::Implausible);
        m.on_sample(0x10, SampleAt::gc(c), HeaderRead::Skipped);
    }
    assert!(m.maps.contains_key(&0x10), "not yet");
    // A good header in between starts the count over.
    m.on_sample(0x10, SampleAt::gc(10), ok(12, 5));
    for c in 11..(10 + u64::from(RETIRE_AFTER)) {
        m.on_sample(0x10, SampleAt::gc(c), HeaderRead::Implausible);
    }
    assert!(m.maps.contains_key(&0x10));
    assert_eq!(m.maps[&0x10].samples_len(), 2);
    m.on_sample(0x10, SampleAt::gc(20), HeaderRead::Implausible);
    assert!(m.maps.is_empty());
    assert_eq!(m.retired, 1);

    m.on_grow(0x20, 1, 0, None);
    m.on_sample(0x20, SampleAt::gc(21), HeaderRead::Failed);
    assert!(m.maps.is_empty());
    assert_eq!(m.retired, 2);
}

/// A new map at a dead map's address (a seed change with entries, in
/// other storage) retires the old one: its header gives no type, so it is
/// tracked again at its next growth (or write window), with nothing of the
/// old one (samples, creation and growth sites, owner, write counts), a
/// new id, and its creation record looked up again, the old one's refused.
#[test]
fn address_reuse_forgets_the_old_map() {
    let mut m = Model::default();
    assert!(m.on_grow(0x10, 7, 1_000, raw(0x40)));
    assert!(!m.on_grow(0x10, 7, 2_000, raw(0x41)), "looked up once");
    let sites = m.maps[&0x10]
        .grow_sites()
        .map(|r| m.sites.raw(r).map(|r| r.pc));
    assert_eq!(
        sites,
        [Some(0x41), Some(0x40)],
        "the latest, then the one before"
    );
    assert!(m.on_created(
        0x10,
        500,
        7,
        RawSite {
            stack_id: 2,
            pc: 0x50
        }
    ));
    m.maps
        .get_mut(&0x10)
        .unwrap()
        .set_owner("main.cache".into());
    m.on_write(0x10, 7, true, 0x99, 3);
    assert_eq!(m.write_records, 1);
    m.on_sample(0x10, SampleAt::gc(1), ok(10, 5));
    m.on_sample(0x10, SampleAt::gc(2), ok(20, 5));
    let old_id = m.maps[&0x10].id;
    assert_eq!(m.maps[&0x10].samples_len(), 2);

    // Emptied by deletes: Go draws a new seed; the same map.
    m.on_sample(0x10, SampleAt::gc(3), ok(0, 6));
    assert_eq!(m.maps[&0x10].id, old_id);
    assert_eq!(m.maps[&0x10].samples_len(), 3);

    // Emptied and refilled between two samples: another seed with
    // entries, in the same storage; the same map.
    m.on_sample(0x10, SampleAt::gc(4), ok(4, 8));
    assert_eq!(m.maps[&0x10].id, old_id);
    assert_eq!(m.maps[&0x10].samples_len(), 4);

    // Another seed, with entries elsewhere: a new map, of a type the
    // header does not give. The old one is retired; the new one is not
    // tracked from its header.
    m.on_sample(0x10, SampleAt::gc(5), at_storage(3, 9, 0x200));
    assert!(m.maps.get(&0x10).is_none(), "no map of unknown type");
    assert_eq!(m.reused, 1);
    assert_eq!(m.retired, 1);
    assert_eq!(m.write_records, 0);

    // Its first growth asks for the creation record again; the old
    // map's record (older than the old map's last growth) is refused.
    assert!(m.on_grow(0x10, 8, 9_000, raw(0x42)));
    let t = &m.maps[&0x10];
    assert_ne!(t.id, old_id);
    assert_eq!((t.samples_len(), t.owner(), t.writes()), (0, None, (0, 0)));
    assert_eq!(t.type_ptr, 8);
    assert!(!m.on_created(
        0x10,
        500,
        7,
        RawSite {
            stack_id: 2,
            pc: 0x50
        }
    ));
    assert!(!m.maps[&0x10].created_site().is_some());
    assert!(m.on_created(
        0x10,
        5_000,
        8,
        RawSite {
            stack_id: 3,
            pc: 0x60
        }
    ));
    let t = &m.maps[&0x10];
    assert_eq!(
        m.sites.raw(t.created_site()),
        Some(RawSite {
            stack_id: 3,
            pc: 0x60
        })
    );
    assert_eq!(t.type_ptr, 8);
}

/// A map found again by a write window at a reused address (with the type
/// its writes give) refuses the old map's creation record as well.
#[test]
fn a_reused_address_found_by_writes_refuses_the_old_record() {
    let mut m = Model::default();
    let site = |pc| RawSite { stack_id: 1, pc };
    m.on_grow(0x10, 7, 1_000, raw(0x40));
    m.on_sample(0x10, SampleAt::gc(1), ok(10, 5));
    m.on_sample(0x10, SampleAt::gc(2), at_storage(3, 9, 0x200));
    assert!(m.maps.get(&0x10).is_none());
    assert!(m.on_discovered(0x10, None, 0, None));
    m.on_write(0x10, 8, true, 0x99, 300);
    assert_eq!(m.maps[&0x10].type_ptr, 8);
    assert!(!m.on_created(0x10, 900, 7, site(0x50)), "the old map's");
    assert!(m.on_created(0x10, 2_000, 8, site(0x60)));
    // An address never reused has no floor.
    assert!(m.on_grow(0x20, 7, 1_000, raw(0x40)));
    assert!(m.on_created(0x20, 900, 7, site(0x50)));
}

/// Without GC cycles, timer samples make the history: all of them count
/// (one GC cycle keeps only its latest sample), and a map that grows
/// between them is growing.
#[test]
fn timer_samples_judge_quiet_programs() {
    let mut m = Model::default();
    m.on_grow(0x10, 1, 0, None);
    let timer = |t_ms| SampleAt {
        cycle: 7,
        t_ms,
        timer: true,
    };
    m.on_sample(0x10, SampleAt::gc(7), ok(5, 5));
    m.on_sample(0x10, SampleAt::gc(7), ok(6, 5));
    assert_eq!(m.maps[&0x10].samples_len(), 1, "one sample per GC cycle");
    assert_eq!(m.maps[&0x10].last().map(|l| l.len), Some(6));
    for (i, len) in [10, 20, 30].into_iter().enumerate() {
        m.on_sample(0x10, timer(2_000 * (i as u32 + 1)), ok(len, 5));
    }
    let t = &m.maps[&0x10];
    assert_eq!(t.samples_len(), 4);
    let h = m.history(t);
    assert_eq!(h.iter().filter(|x| x.timer).count(), 3);
    assert_eq!(h.last().map(|x| (x.t_ms, x.len)), Some((6_000, 30)));
    assert_eq!(t.verdict(), Verdict::Growing);
}

/// A quiet map keeps the window; a growing one the long history, up to
/// MAX_SAMPLES.
#[test]
fn history_is_bounded_by_verdict() {
    let mut m = Model::default();
    m.on_grow(0x10, 1, 0, None);
    m.on_grow(0x20, 1, 0, None);
    for c in 1..=200u64 {
        m.on_sample(0x10, SampleAt::gc(c), ok(7, 5));
        m.on_sample(0x20, SampleAt::gc(c), ok(c * 10, 5));
    }
    let idle = &m.maps[&0x10];
    assert_eq!(idle.samples_len(), QUIET_SAMPLES);
    assert_eq!(idle.first_len(), Some(7));
    assert_eq!(idle.verdict(), Verdict::Idle);
    let growing = &m.maps[&0x20];
    assert_eq!(growing.samples_len(), MAX_SAMPLES);
    let h = m.history(growing);
    assert_eq!(h.len(), MAX_SAMPLES);
    assert_eq!(h.last().map(|s| s.cycle), Some(200));
    assert_eq!(h[0].cycle, 200 - MAX_SAMPLES as u64 + 1);
    assert_eq!(growing.first_len(), Some(10));
    // It stops growing: back to the window, and the long history is
    // given back.
    for c in 201..=220u64 {
        m.on_sample(0x20, SampleAt::gc(c), ok(2000, 5));
    }
    assert_eq!(m.maps[&0x20].samples_len(), WINDOW);
    assert_eq!(m.long_histories, 0);
}

/// At most MAX_LONG_HISTORIES maps keep more than the window; the
/// others are counted.
#[test]
fn long_histories_are_capped() {
    let mut m = Model::default();
    let n = MAX_LONG_HISTORIES as u64 + 5;
    for a in 1..=n {
        m.on_grow(a * 16, 1, 0, None);
    }
    for c in 1..=12u64 {
        for a in 1..=n {
            m.on_sample(a * 16, SampleAt::gc(c), ok(c * 10, 5));
        }
    }
    assert_eq!(m.long_histories, MAX_LONG_HISTORIES);
    let long = m.maps.values().filter(|t| t.samples_len() > WINDOW).count();
    assert_eq!(long, MAX_LONG_HISTORIES);
    assert!(m.caps.long_history_refused >= 5);
}

/// At the cap the smallest non-growing maps go first, a hundredth of
/// the cap at a time.
#[test]
fn eviction_spares_growing_maps() {
    let mut m = Model::with_max_tracked(200);
    for a in 1..=200u64 {
        m.on_grow(a * 16, 1, 0, None);
    }
    for c in 1..=4u64 {
        for a in 1..=200u64 {
            // Map 1 grows; the others are idle, map 2 the smallest.
            let len = if a == 1 { c * 100 } else { a };
            m.on_sample(a * 16, SampleAt::gc(c), ok(len, 5));
        }
    }
    m.on_grow(0x10_0000, 1, 0, None);
    assert_eq!(m.evicted, 2);
    assert_eq!(m.maps.len(), 199);
    assert!(m.maps.contains_key(&16), "the growing map stays");
    assert!(!m.maps.contains_key(&32) && !m.maps.contains_key(&48));
    assert!(m.maps.contains_key(&0x10_0000));
}

/// Writes are recorded for at most MAX_WRITE_RECORDS maps; past it,
/// writes to other maps are counted as dropped, and a map that goes
/// gives its record back.
#[test]
fn write_records_are_capped() {
    let mut m = Model::default();
    let n = MAX_WRITE_RECORDS as u64 + 1;
    for a in 1..=n {
        m.on_grow(a * 16, 0, 0, None);
        m.on_write(a * 16, 5, true, 0x40, 2);
    }
    assert_eq!(m.write_records, MAX_WRITE_RECORDS);
    assert_eq!(m.caps.writes_dropped, 2);
    assert_eq!(m.maps[&16].writes(), (2, 0));
    assert_eq!(m.maps[&16].insert_sites(), [(0x40, 2)]);
    assert_eq!(m.maps[&(n * 16)].writes(), (0, 0));
    assert_eq!(m.maps[&(n * 16)].type_ptr, 5);
    m.on_write(16, 5, false, 0, 1);
    assert_eq!(m.maps[&16].writes(), (2, 1));
    m.retire(16);
    m.on_write(n * 16, 5, true, 0x40, 1);
    assert_eq!(m.maps[&(n * 16)].writes(), (1, 0));
    assert_eq!(m.write_records, MAX_WRITE_RECORDS);
}

/// Cycle numbers come from the runtime when known, else are counted.
#[test]
fn cycles() {
    let mut m = Model::default();
    assert_eq!(m.on_gc_marked(None, 0.0, None), 1);
    assert_eq!(m.on_gc_marked(None, 0.05, None), 2);
    assert_eq!(m.on_gc_marked(Some(41), 0.1, None), 41);
    // A cycle whose number could not be read follows the last one.
    assert_eq!(m.on_gc_marked(None, 0.2, None), 42);
    assert_eq!(m.cycles.len(), 4);
}

/// What a tracked map costs: its slab entry (the 1,000,000-map goal
/// of 300 MiB rests on it) and, in a model of 100,000 quiet maps read
/// 20 times, the table's heap per map.
#[test]
fn per_map_memory() {
    assert!(
        std::mem::size_of::<TrackedMap>() <= 160,
        "{}",
        std::mem::size_of::<TrackedMap>()
    );
    let mut m = Model::default();
    let n = 100_000u64;
    for a in 1..=n {
        m.on_grow(a * 64, 1, 0, raw(0x40));
    }
    for c in 1..=20u64 {
        for a in 1..=n {
            m.on_sample(a * 64, SampleAt::gc(c), ok(150, a));
        }
    }
    let per_map = m.maps.heap_bytes() as u64 / n;
    assert!(per_map <= 230, "{per_map} bytes per map");
    assert_eq!(m.long_histories, 0);
    assert_eq!(m.sites.len(), 1);
}
