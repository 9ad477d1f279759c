//! Unit tests of the budget's pure accounting: prices, debits, class pauses.

use super::*;

/// Gives `b` one probe of `class` (id 0) at 1 µs a hit, trap included.
fn add_probe(b: &mut Budget, class: ProbeClass, program: &'static str) {
    b.probes.push(ProbeCost {
        id: 0,
        class,
        hit_cost: 1e-6,
        trap_cost: 1e-6,
        in_situ: in_situ_factor(class),
        program,
        addr: 0x1000,
        orig: None,
    });
    b.last_hits.push(0);
    b.last_site_rate.push(0.0);
    b.last_site_trap_rate.push(0.0);
    b.last_denied.push(0);
    b.denied_pending.push(0);
    b.last_off_seen.push(0);
    b.off_pending.push(0);
}

/// Runs that found the governed probes' grant spent cost their trap alone,
/// debited at the next check, and are counted.
#[test]
fn runs_past_the_grant_are_debited_at_the_trap() {
    let mut b = Budget::new(u32::MAX, 0.01, Vec::new());
    add_probe(&mut b, ProbeClass::Governed, "map_create");
    b.probes[0].hit_cost = 12e-6;
    let t0 = Instant::now();
    b.check(&[0], None, 0.0, t0 + Duration::from_secs(1));
    let spent = b.gov.spent;
    b.denied_since(&[1000]);
    b.check(&[0], None, 0.0, t0 + Duration::from_secs(2));
    assert!((b.gov.spent - spent - 1000.0 * 1e-6).abs() < 1e-12);
    b.denied_since(&[1500]);
    b.denied_since(&[1500]);
    assert_eq!(b.denied_total, 1500);
}

/// In debt through the probes alone, the samples go on; through the
/// tracer's own work (2 % of a CPU against a 1 % budget), they wait.
#[test]
fn samples_held_only_for_the_tracers_own_debt() {
    let mut b = Budget::new(u32::MAX, 0.01, Vec::new());
    let t0 = Instant::now();
    b.check(&[0], None, 0.0, t0 + Duration::from_secs(1));
    assert!(!b.holds_samples(), "credit left");
    b.gov.credit = -0.01;
    assert!(!b.holds_samples(), "the probes' debt");
    for s in 2..8 {
        b.check(&[0], None, 0.02, t0 + Duration::from_secs(s));
    }
    assert!(b.gov.credit < 0.0);
    assert!(
        b.tracer_rate > 0.01 && b.tracer_rate < 0.02,
        "{}",
        b.tracer_rate
    );
    assert!(b.holds_samples());
    // Its work falls off: the average follows within a few seconds.
    for s in 8..30 {
        b.check(&[0], None, 0.0, t0 + Duration::from_secs(s));
        b.gov.credit = -0.01;
    }
    assert!(!b.holds_samples(), "{}", b.tracer_rate);
}

/// A budget with nothing to watch is checked every PERIOD_IDLE; one
/// whose governed probes may overdraw it, or with an attach asked for,
/// at the usual periods.
#[test]
fn quiet_budgets_are_checked_less_often() {
    use crate::governor::{PERIOD, PERIOD_IDLE, PERIOD_WINDOW};
    let mut b = Budget::new(u32::MAX, 0.01, Vec::new());
    let t0 = Instant::now();
    // Just attached: closely.
    assert!(b.period(t0) < PERIOD);
    let later = t0 + Duration::from_secs(1);
    b.check(&[0], None, 0.0, later);
    assert!(b.quiet());
    assert_eq!(b.period(later), PERIOD_IDLE);
    // Less than half a bucket while the governed probes are on.
    b.gov.credit = 0.4 * b.gov.max();
    assert!(!b.quiet());
    assert_eq!(b.period(later), PERIOD);
    // Paused, only memory-bounded probes are left: quiet again.
    b.gov.creation_on = false;
    assert!(b.quiet());
    // An attach asked of the main loop: not quiet, and the loop is woken;
    // checked closely from then on, so that the first check after the
    // links are installed is near whenever the main loop installs them.
    b.want[0] = true;
    assert!(b.wants_attach());
    assert!(!b.quiet());
    assert_eq!(b.period(later), PERIOD_WINDOW);
    assert_eq!(b.wants(), vec![ProbeClass::Governed]);
    assert!(!b.wants_attach());
    assert!(!b.quiet(), "being attached");
    assert_eq!(b.period(later), PERIOD_WINDOW, "being attached");
}

/// A closed group's tail is debited and measured: the next close's
/// reserve is its rate times the tail's length.
#[test]
fn tails_set_the_close_reserve() {
    // At 10 %: the bucket (0.5 s) caps no reserve here.
    let mut b = Budget::new(u32::MAX, 0.1, Vec::new());
    add_probe(&mut b, ProbeClass::Window, "map_write");
    let t0 = Instant::now();
    // A window closed at 1 CPU whose breakpoints (unreadable here: the
    // pid does not exist, so gone at the first check) trapped 30,000
    // times (30 ms at 1 µs) after their probe was switched off.
    b.tails[1] = Tail::new(vec![(0x1000, [0xcc, 0, 0, 0], 1.0)]);
    let credit = b.gov.credit;
    b.switched_off_since(&[30_000]);
    b.check(&[0], None, 0.0, t0 + Duration::from_millis(30));
    assert!(b.tails[1].sites.is_empty());
    let debited = credit + b.gov.rate * 0.03 - b.gov.credit;
    assert!((debited - 0.03).abs() < 1e-4, "tail debited {debited} s");
    let s = b.tail_length[1].seconds();
    assert!(s > TAIL_PRIOR_S, "{s}");
    // A window whose probe costs one CPU (10,000 hits of 1 µs in 10
    // ms) now closes with `s` seconds of that left.
    b.check(&[10_000], None, 0.0, t0 + Duration::from_millis(40));
    let r = b.gov.reserve;
    assert!((r.window - s).abs() < 0.1 * s, "{r:?} {s}");
    assert_eq!(r.creation, 0.0);
}

/// A burst of large-growth hits (a map grown to a million entries at
/// once) does not count as their rate when an empty main bucket
/// decides whether to pause them; a steady rate does, within a few
/// seconds.
#[test]
fn a_burst_of_large_growth_does_not_pause_them_for_debt() {
    let mut b = Budget::new(u32::MAX, 0.01, Vec::new());
    add_probe(&mut b, ProbeClass::LargeGrowth, "map_grow");
    let t0 = Instant::now();
    let ms = |n: u64| t0 + Duration::from_millis(n);
    b.check(&[0], None, 0.0, ms(1000));
    // The main bucket in debt (what cannot be paused spent it) when
    // 1,000 splits (1 ms of CPU) come within 10 ms: 10 % of a CPU then.
    b.gov.credit = -0.001;
    b.check(&[1000], None, 0.0, ms(1010));
    assert!(b.last_rate[2] > 0.05, "{:?}", b.last_rate);
    assert!(b.gov.large.on, "paused at {}", b.gov.large_rate);
    assert_eq!(b.gov.large.debt_pauses, 0);
    // 2,000 a second (2 ms of CPU a second, a fifth of the budget):
    // paused once the mean has caught up.
    let mut hits = 1000;
    let mut paused = None;
    for k in 1..=300u64 {
        hits += 20;
        b.gov.credit = -0.001;
        b.check(&[hits], None, 0.0, ms(1010 + 10 * k));
        if !b.gov.large.on {
            paused = Some(k);
            break;
        }
    }
    let k = paused.expect("a steady rate pauses them");
    assert!((10..=300).contains(&k), "{k}");
    assert_eq!(b.gov.large.debt_pauses, 1);
    // Paused, their mean is kept: what they cost when attached, which
    // pauses them at once should they come back into a debt.
    let mean = b.gov.large_rate;
    for j in 1..=500u64 {
        b.gov.credit = -0.001;
        b.check(&[hits], None, 0.0, ms(1010 + 10 * k + 10 * j));
    }
    assert!(!b.gov.large.on);
    assert_eq!(b.gov.large_rate, mean);
}

/// Once the kernel has timed a program's runs, a hit costs its trap and
/// its run, and a governed probe's hit that times the in-situ factor.
#[test]
fn governed_hits_are_priced_in_situ() {
    let mut b = Budget::new(u32::MAX, 0.01, Vec::new());
    add_probe(&mut b, ProbeClass::Governed, "map_create_ret");
    add_probe(&mut b, ProbeClass::LargeGrowth, "map_grow");
    let mut runs = crate::runcost::RunCosts::new();
    let run = crate::runcost::ProgramRun {
        run_time_ns: 2_000 * 1_000,
        run_cnt: 1_000,
    };
    runs.update(&[("map_create_ret", run), ("map_grow", run)]);
    let t0 = Instant::now();
    b.check(&[0], Some(&runs), 0.0, t0 + Duration::from_millis(10));
    let (gov, large) = (b.probes[0].hit_cost, b.probes[1].hit_cost);
    assert!(
        (large - 3e-6).abs() < 1e-9,
        "large-growth hit: {large} s, not the trap and the run"
    );
    assert!(
        (gov - crate::governor::GOVERNED_IN_SITU * 3e-6).abs() < 1e-9,
        "governed hit: {gov} s, not {} times the trap and the run",
        crate::governor::GOVERNED_IN_SITU
    );
}

/// A closed governed group's breakpoints are debited at the trap's price
/// while they wait to be removed: their program, most of a governed hit's
/// price, no longer runs.
#[test]
fn a_closed_groups_tail_is_debited_at_the_traps_price() {
    let mut b = Budget::new(u32::MAX, 0.01, Vec::new());
    add_probe(&mut b, ProbeClass::Governed, "map_create_ret");
    b.probes[0].hit_cost = 10e-6;
    b.probes[0].trap_cost = 1e-6;
    b.probes[0].orig = Some([0x55, 0, 0, 0]);
    let t0 = Instant::now();
    let ms = |n: u64| t0 + Duration::from_millis(n);
    // 10,000 hits in 10 ms: 10 CPUs at the governed price (twice the
    // bucket), 1 at the trap's.
    b.check(&[0], None, 0.0, ms(10));
    b.check(&[10_000], None, 0.0, ms(20));
    assert!(!b.gov.creation_on, "over the bucket: paused");
    // What its close leaves (no link is attached here to close).
    let [sites, ..] = b.tail_sites(&[0]);
    b.tails[0] = Tail::new(sites);
    assert_eq!(b.tails[0].sites.len(), 1);
    let tail = b.tails[0].rate();
    assert!((tail - 1.0).abs() < 1e-9, "tail rate {tail} CPUs, not 1");
    // Its close reserve was set from the trap rate too.
    assert!(
        (b.gov.reserve.creation - b.tail_length[0].reserve(1.0)).abs() < 1e-12,
        "{:?}",
        b.gov.reserve
    );
    // 10 ms of tail (the breakpoint is unreadable here, so gone at
    // once), 10,000 calls that found the probe switched off: 10 ms of
    // CPU, not 100 (the governed price), and counted once.
    let credit = b.gov.credit;
    b.switched_off_since(&[10_000]);
    b.switched_off_since(&[10_000]);
    b.check(&[10_000], None, 0.0, ms(30));
    let debited = credit + b.gov.rate * 0.01 - b.gov.credit;
    assert!(
        (debited - 0.01).abs() < 1e-6,
        "tail debited {debited} s, not 0.01"
    );
    assert!(b.tail_length[0].seconds() != TAIL_PRIOR_S, "measured");
}

/// Runs that returned at once (probe switched off, grant spent) are summed
/// per program from the checks' readings, handed out once, and totalled.
#[test]
fn returned_runs_are_summed_per_program_since_the_last_reading() {
    let mut b = Budget::new(u32::MAX, 0.01, Vec::new());
    add_probe(&mut b, ProbeClass::Governed, "map_create_ret");
    add_probe(&mut b, ProbeClass::Governed, "map_grow");
    add_probe(&mut b, ProbeClass::Governed, "map_grow");
    for (i, p) in b.probes.iter_mut().enumerate() {
        p.id = i as u32;
    }
    b.switched_off_since(&[5, 7, 3]);
    assert_eq!(
        b.returned_runs(),
        vec![("map_create_ret", 5), ("map_grow", 10)]
    );
    assert!(b.returned_runs().is_empty(), "handed out once");
    b.switched_off_since(&[5, 9, 3]);
    b.denied_since(&[0, 0, 4]);
    assert_eq!(b.returned_runs(), vec![("map_grow", 6)]);
    // A shorter list (fewer probes registered) counts as nothing new, and
    // leaves the probes past it where they were.
    b.switched_off_since(&[5]);
    assert!(b.returned_runs().is_empty());
    b.switched_off_since(&[5, 9, 4]);
    assert_eq!(b.returned_runs(), vec![("map_grow", 1)]);
    // A reading taken twice is counted once.
    b.switched_off_since(&[5, 9, 4]);
    assert!(b.returned_runs().is_empty());
    assert_eq!(b.off_runs_total, 18);
    assert_eq!(b.denied_total, 4);
}

/// A session's governed and large-growth probes are attached by the main
/// loop once the governor's thread checks their budget: the first attach
/// is asked for, is not a resume, and a pause decided before the loop
/// served it cancels it (the next attach is then a resume).
#[test]
fn first_attaches_wait_for_the_loop_and_are_not_resumes() {
    let mut b = Budget::new(u32::MAX, 0.01, Vec::new());
    add_probe(&mut b, ProbeClass::Governed, "map_create");
    b.attach_at_start(ProbeClass::Governed);
    b.attach_at_start(ProbeClass::LargeGrowth);
    assert!(b.wants_attach());
    assert_eq!(
        b.wants(),
        vec![ProbeClass::Governed, ProbeClass::LargeGrowth]
    );
    assert!(b.attaching_first(ProbeClass::Governed));
    assert!(
        !b.install(ProbeClass::Governed, Vec::new()),
        "a first attach"
    );
    assert!(
        !b.install(ProbeClass::LargeGrowth, Vec::new()),
        "a first attach"
    );
    assert!(!b.attaching_first(ProbeClass::Governed));
    assert_eq!(b.gov.resumes, 0);
    assert!(b.gov.creation_on);

    // Paused by a check before the loop served the first attach.
    let mut b = Budget::new(u32::MAX, 0.01, Vec::new());
    add_probe(&mut b, ProbeClass::Governed, "map_create");
    b.attach_at_start(ProbeClass::Governed);
    let t0 = Instant::now();
    // 100,000 hits of 1 µs in 10 ms: ten CPUs, the bucket gone at once.
    b.check(&[100_000], None, 0.0, t0 + Duration::from_millis(10));
    assert!(!b.gov.creation_on, "paused: credit {}", b.gov.credit);
    assert!(!b.wants_attach(), "the first attach was cancelled");
    b.want[0] = true;
    assert_eq!(b.wants(), vec![ProbeClass::Governed]);
    assert!(!b.attaching_first(ProbeClass::Governed));
    assert!(b.install(ProbeClass::Governed, Vec::new()), "a resume");
}
