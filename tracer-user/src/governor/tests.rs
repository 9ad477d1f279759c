//! Unit tests of the governor's decisions (pure: no probes).
use super::*;

#[test]
fn split_follows_the_cpu_each_process_uses() {
    let b = 0.01;
    // 20 busy processes sharing 2 CPUs: 0.1 CPU each, 1/20 of the
    // budget each (0.05 % of one CPU, 1 % of what each uses / 2).
    let r = split_rates(b, &[0.1; 20]);
    assert!(r.iter().all(|&x| (x - b / 20.0).abs() < 1e-15), "{r:?}");
    assert!((r.iter().sum::<f64>() - b).abs() < 1e-12);
    // Under one CPU in all: each gets the budget times what it uses,
    // never more than the budget of its own CPU.
    let r = split_rates(b, &[0.5, 0.25]);
    assert!((r[0] - 0.005).abs() < 1e-15 && (r[1] - 0.0025).abs() < 1e-15);
    // One process alone, using 1.5 CPUs: the whole budget, never a
    // rounding above it (0.01 × c / c is 0.010000000000000002 for this c).
    assert!((split_rates(b, &[1.5])[0] - b).abs() < 1e-15);
    assert!(split_rates(b, &[1.0 + 566.0 / 1000.0])[0] <= b);
    // Idle processes (or unreadable figures) get the floor.
    let r = split_rates(b, &[2.0, 0.0, f64::NAN, -1.0]);
    assert!((r[0] - b).abs() < 1e-15);
    for x in &r[1..] {
        assert!((x - b * SPLIT_FLOOR).abs() < 1e-15, "{r:?}");
    }
    assert!(split_rates(b, &[]).is_empty());
}

#[test]
fn a_new_rate_resizes_the_bucket() {
    let mut g = Governor::new(0.01);
    assert!((g.credit - 0.05).abs() < 1e-12);
    g.set_rate(0.001);
    assert!((g.max() - 0.005).abs() < 1e-12 && (g.credit - 0.005).abs() < 1e-12);
    // A higher rate: the bucket grows and fills at it.
    g.set_rate(0.002);
    assert!((g.credit - 0.005).abs() < 1e-12);
    g.account(1.0, 0.0, 0.0);
    assert!((g.credit - 0.007).abs() < 1e-12);
    g.set_rate(f64::NAN);
    assert!((g.rate - 0.002).abs() < 1e-15);
    // The mean rate over the seconds accounted.
    g.set_rate(0.004);
    g.account(1.0, 0.0, 0.0);
    assert!((g.mean_rate() - 0.003).abs() < 1e-12, "{}", g.mean_rate());
}

/// The holder search's credit: full at first (120 ms at 1 %), spent by
/// a search, refilled at a fifth of the rate, resized with the rate.
#[test]
fn the_search_has_a_share_of_its_own() {
    let mut g = Governor::new(0.01);
    assert!((g.search_credit - 0.12).abs() < 1e-12);
    g.search_spent(0.1);
    g.search_spent(f64::NAN);
    assert!((g.search_credit - 0.02).abs() < 1e-12);
    // The main bucket's debts do not touch it: 10 s at 1 % refill 20 ms.
    g.account(10.0, 0.2, 0.0);
    assert!(g.credit < 0.0);
    assert!(
        (g.search_credit - 0.04).abs() < 1e-12,
        "{}",
        g.search_credit
    );
    g.account(1000.0, 0.0, 0.0);
    assert!((g.search_credit - 0.12).abs() < 1e-12);
    g.set_rate(0.001);
    assert!((g.search_credit - search_max(0.001)).abs() < 1e-15);
}

#[test]
fn window_period_follows_the_rate() {
    assert_eq!(window_period(0.0), PERIOD_WINDOW_MAX);
    assert_eq!(window_period(f64::NAN), PERIOD_WINDOW_MAX);
    // mapwrite: ~120k write hits/s at 1 µs: as often as allowed.
    assert_eq!(window_period(0.12), PERIOD_WINDOW);
    // 62.5k hits/s: 16 ms spends 1 ms; slower still, the longest period.
    assert_eq!(window_period(0.0625), Duration::from_millis(16));
    assert_eq!(window_period(0.04), PERIOD_WINDOW_MAX);
}

#[test]
fn windows_are_spaced_on_an_idle_target() {
    let t0 = Instant::now();
    let mut g = Governor::new(0.01);
    assert!(g.decide(t0, false, false, false, true).open_window);
    g.opened(t0);
    // No write: closed after WINDOW_IDLE, not WINDOW_MAX.
    let t1 = t0 + WINDOW_IDLE;
    assert!(
        !g.decide(t1 - PERIOD_WINDOW, false, false, false, true)
            .close_window
    );
    assert!(g.decide(t1, false, false, false, true).close_window);
    g.closed(t1);
    // Nothing was spent: the bucket is full, but the gap has not passed.
    assert!(
        !g.decide(t1 + WINDOW_GAP / 2, false, false, false, true)
            .open_window
    );
    assert!(
        g.decide(t1 + WINDOW_GAP, false, false, false, true)
            .open_window
    );
}

#[test]
fn sequence_keeps_kernel_operations_apart() {
    let t0 = Instant::now();
    let g = Governor::new(0.01);
    let open = Actions {
        open_window: true,
        ..Actions::default()
    };
    // Costly creation probes: paused first, no window yet.
    let a = g.sequence(
        open,
        InFlight {
            creation_rate: 0.5,
            ..InFlight::default()
        },
    );
    assert!(a.pause_creation && !a.open_window, "{a:?}");
    // Cheap ones stay on with the window.
    let a = g.sequence(
        open,
        InFlight {
            creation_rate: 0.001,
            ..InFlight::default()
        },
    );
    assert!(a.open_window && !a.pause_creation, "{a:?}");
    // With the limit lifted, costly ones stay on too.
    let lifted = Governor::new(1.0);
    let a = lifted.sequence(
        open,
        InFlight {
            creation_rate: 3.0,
            ..InFlight::default()
        },
    );
    assert!(a.open_window && !a.pause_creation, "{a:?}");
    // No attach while creation breakpoints are still going.
    for f in [
        InFlight {
            busy_creation: true,
            ..InFlight::default()
        },
        InFlight {
            creation_tail: true,
            ..InFlight::default()
        },
    ] {
        assert!(!g.sequence(open, f).open_window);
    }
    // No resume while a window is open or closing.
    let resume = Actions {
        resume_creation: true,
        ..Actions::default()
    };
    let mut w = Governor::new(0.01);
    w.opened(t0);
    assert!(!w.sequence(resume, InFlight::default()).resume_creation);
    let busy_w = InFlight {
        busy_window: true,
        ..InFlight::default()
    };
    assert!(!g.sequence(resume, busy_w).resume_creation);
    // A pause waits for busy window breakpoints, unless the window
    // closes in the same step (one ordered close).
    let hot = InFlight {
        window_hot_tail: true,
        ..InFlight::default()
    };
    let pause = Actions {
        pause_creation: true,
        ..Actions::default()
    };
    assert!(!g.sequence(pause, hot).pause_creation);
    let both = Actions {
        pause_creation: true,
        close_window: true,
        ..Actions::default()
    };
    assert!(g.sequence(both, hot).pause_creation);
}

/// Drives the governor with a simulated target: `create_cost` and
/// `write_cost` are what each group costs per second while attached,
/// `lag` how many ticks a detach takes. Returns the cost share over the
/// run, and whether windows opened.
fn simulate(create_cost: f64, write_cost: f64, lag: u32, secs: u32) -> (f64, u64, f64) {
    let t0 = Instant::now();
    let mut g = Governor::new(0.01);
    let dt = PERIOD.as_secs_f64();
    let mut create_live = true;
    let mut window_live = false;
    let mut create_detach = 0u32;
    let mut window_detach = 0u32;
    let ticks = secs * 10;
    for i in 1..=ticks {
        let now = t0 + PERIOD * i;
        let cost = dt
            * (if create_live || create_detach > 0 {
                create_cost
            } else {
                0.0
            } + if window_live || window_detach > 0 {
                write_cost
            } else {
                0.0
            });
        create_detach = create_detach.saturating_sub(1);
        window_detach = window_detach.saturating_sub(1);
        g.account(dt, cost, 0.0);
        if window_live && write_cost > 0.0 {
            g.written(now);
        }
        let a = g.decide(now, create_detach > 0, window_detach > 0, false, true);
        if a.close_window {
            window_live = false;
            window_detach = lag;
            g.closed(now);
        }
        if a.pause_creation {
            create_live = false;
            create_detach = lag;
            g.paused(now);
        }
        if a.open_window {
            window_live = true;
            g.opened(now);
        }
        if a.resume_creation {
            create_live = true;
            g.resumed(now);
        }
    }
    (
        g.spent / f64::from(secs),
        g.windows,
        g.paused_s(t0 + PERIOD * ticks),
    )
}

#[test]
fn cheap_probes_stay_on() {
    let (share, windows, paused) = simulate(0.001, 0.001, 1, 60);
    assert!(share < 0.01, "{share}");
    // Back to back but spaced: a window of WINDOW_MAX every WINDOW_GAP.
    let every = (WINDOW_MAX + WINDOW_GAP).as_secs();
    assert!(
        windows + 1 >= 60 / every && windows <= 60 / every + 1,
        "{windows}"
    );
    assert!(paused < 0.01, "{paused}");
}

#[test]
fn costly_probes_hold_the_budget() {
    // Creation probes at 100% of a CPU (an HTTP server), writes at 50%,
    // detaches taking 300 ms: the long-run share stays near 1%.
    let (share, windows, paused) = simulate(1.0, 0.5, 3, 600);
    assert!(share < 0.0125, "{share}");
    assert!(windows >= 10, "windows still open: {windows}");
    assert!(paused > 500.0, "{paused}");
}

#[test]
fn window_closes_at_max() {
    let t0 = Instant::now();
    let mut g = Governor::new(0.01);
    assert!(g.decide(t0, false, false, false, true).open_window);
    g.opened(t0);
    // Written all along: open until WINDOW_MAX.
    let mut t = t0;
    while t + PERIOD_WINDOW_MAX < t0 + WINDOW_MAX {
        t += PERIOD_WINDOW_MAX;
        g.written(t);
        assert!(!g.decide(t, false, false, false, true).close_window);
    }
    assert!(
        g.decide(t0 + WINDOW_MAX, false, false, false, true)
            .close_window
    );
    // No write probes at all: never a window.
    let g = Governor::new(0.01);
    assert!(!g.decide(t0, false, false, false, false).open_window);
}

#[test]
fn groups_close_at_their_reserve() {
    let t0 = Instant::now();
    let mut g = Governor::new(0.01);
    g.opened(t0);
    g.written(t0);
    // A window costing one CPU whose tails last 20 ms: closed with 20 ms
    // of credit left, not at zero.
    g.set_reserve(Reserve {
        creation: 0.0,
        window: 0.02,
    });
    g.credit = 0.021;
    assert!(!g.decide(t0, false, false, false, true).close_window);
    g.credit = 0.019;
    assert!(g.decide(t0, false, false, false, true).close_window);
    g.closed(t0);
    assert_eq!(g.windows_over_budget, 1);
    // The governed probes likewise.
    let mut g = Governor::new(0.01);
    g.set_reserve(Reserve {
        creation: 0.005,
        window: 0.0,
    });
    g.credit = 0.006;
    assert!(!g.decide(t0, false, false, false, false).pause_creation);
    g.credit = 0.004;
    assert!(g.decide(t0, false, false, false, false).pause_creation);
}

#[test]
fn a_reserve_never_holds_a_group_off_for_good() {
    let mut g = Governor::new(0.01);
    // A tail costlier than the bucket: capped below the half bucket at
    // which the governed probes come back.
    g.set_reserve(Reserve {
        creation: 1.0,
        window: f64::NAN,
    });
    assert!(g.reserve.creation <= g.max() * RESERVE_MAX_SHARE);
    assert!(g.reserve.creation < g.max() / 2.0);
    assert_eq!(g.reserve.window, 0.0);
    let t0 = Instant::now();
    g.paused(t0);
    g.credit = g.max() / 2.0;
    let a = g.decide(t0, false, false, false, false);
    assert!(a.resume_creation && !a.pause_creation, "{a:?}");
}

#[test]
fn tracer_work_comes_after_probes_and_windows() {
    let t0 = Instant::now();
    let mut g = Governor::new(0.01);
    // Full bucket, probes on, no window due (none exist): spare.
    assert!(g.spare_for_tracer(t0, false));
    // A window is due (never opened yet): it waits for the full bucket.
    assert!(!g.spare_for_tracer(t0, true));
    g.closed(t0);
    assert!(g.spare_for_tracer(t0 + Duration::from_secs(1), true));
    assert!(!g.spare_for_tracer(t0 + WINDOW_EVERY, true));
    // Less than 90% of the bucket: not spare.
    g.account(0.0, g.max() * 0.2, 0.0);
    assert!(!g.spare_for_tracer(t0, false));
    // Governed probes paused: the credit coming back is theirs.
    let mut p = Governor::new(0.01);
    p.paused(t0);
    assert!(!p.spare_for_tracer(t0, false));
}

/// Drives only the large-growth tier: probes costing `cost` CPUs while
/// attached, detached at once. Returns their share of one CPU over the
/// run and how often they were paused.
fn simulate_large(cost: f64, secs: u32) -> (f64, u64) {
    let (share, g) = simulate_large_beside(cost, 0.0, secs);
    (share, g.large.pauses)
}

/// As [`simulate_large`], with `fixed` CPUs of cost that cannot be
/// paused (GC probes, the tracer's own work) debited from the main
/// bucket beside them. Returns their share and the governor at the end.
fn simulate_large_beside(cost: f64, fixed: f64, secs: u32) -> (f64, Governor) {
    let t0 = Instant::now();
    let mut g = Governor::new(0.01);
    let dt = PERIOD.as_secs_f64();
    let mut spent = 0.0;
    for i in 1..=secs * 10 {
        let now = t0 + PERIOD * i;
        let c = if g.large.on { cost * dt } else { 0.0 };
        spent += c;
        g.account(dt, c + fixed * dt, c);
        g.large_rate = c / dt;
        let a = g.decide(now, false, false, false, false);
        assert!(!(a.pause_large && a.resume_large));
        if a.pause_large {
            g.large_paused(now);
        }
        if a.resume_large {
            g.large_resumed(now);
        }
    }
    (spent / f64::from(secs), g)
}

#[test]
fn large_growth_pauses_while_the_main_bucket_is_empty() {
    // Their share is half the budget; what cannot be paused takes 0.7
    // of it. Alone, their bucket would let them spend 0.5 of it and the
    // whole 1.2 times the budget, the main bucket sinking for ever.
    let (share, g) = simulate_large_beside(0.005, 0.007, 300);
    let (pauses, credit) = (g.large.pauses, g.credit);
    assert!(pauses >= 2, "{pauses} pauses");
    // Their own credit never ran out: every pause was for the debt.
    assert_eq!(g.large.debt_pauses, pauses);
    // Held to what is left of the budget (0.3 of it), plus the first
    // bucket spread over the run.
    let left = 0.01 - 0.007;
    let cap = left + 0.01 * BURST_S / 300.0;
    assert!(share <= cap * 1.05, "{share} > {cap}");
    assert!(share >= left * 0.5, "{share}: starved");
    // The main bucket stays about empty: never in debt by more than one
    // check's spending (0.012 CPUs for 0.1 s).
    assert!(credit >= -0.012 * PERIOD.as_secs_f64() * 1.01, "{credit}");
    // They come back only once a quarter of the bucket is back: not at
    // every check that sees the bucket above zero.
    assert!(pauses <= 300 / 5, "{pauses} pauses in 300 s");
    // Whatever cannot be paused costing the whole budget: they stay
    // paused after the first bucket is spent.
    let (share, _) = simulate_large_beside(0.005, 0.011, 300);
    assert!(share <= 0.01 * BURST_S * 2.0 / 300.0, "{share}");
    // Costing next to nothing, they are not paused for a debt they do
    // not make (pausing them would only blind them).
    let (_, g) = simulate_large_beside(0.0005, 0.011, 300);
    assert_eq!(g.large.pauses, 0);
    assert!(g.large.on);
    // A debt that is the tracer's own does not pause them.
    let mut g = Governor::new(0.01);
    g.account(1.0, g.max() * 2.0, 0.0);
    g.large_rate = 0.005;
    assert!(
        g.decide(Instant::now(), false, false, false, false)
            .pause_large
    );
    g.debt_is_tracers = true;
    assert!(
        !g.decide(Instant::now(), false, false, false, false)
            .pause_large
    );
}

#[test]
fn large_growth_within_its_share() {
    // Cheaper than their share: never paused.
    assert_eq!(simulate_large(0.004, 120).1, 0);
    // Dearer: paused and resumed, held to their share over time (plus
    // the first bucket, 5 s of it, spread over the run).
    for cost in [0.008, 0.05, 1.0] {
        let (share, pauses) = simulate_large(cost, 300);
        assert!(pauses >= 2, "{cost}: {pauses} pauses");
        let cap = 0.01 * LARGE_GROWTH_SHARE * (1.0 + BURST_S / 300.0)
            + cost * 0.1 / 300.0 * f64::from(u32::try_from(pauses).unwrap());
        assert!(share <= cap * 1.01, "{cost}: {share} > {cap}");
        assert!(share >= 0.01 * LARGE_GROWTH_SHARE * 0.8, "{cost}: {share}");
    }
}

/// `--overhead-budget 100` lifts the limit: spending several CPUs'
/// worth pauses nothing (the cost is still counted), where a budget just
/// under a whole CPU pauses the creation and large-growth probes.
#[test]
fn a_whole_cpu_lifts_the_limit() {
    let now = Instant::now();
    let spend = |rate: f64| {
        let mut g = Governor::new(rate);
        g.large_rate = rate;
        g.search_spent(100.0);
        g.account(1.0, 20.0, 10.0);
        (g.decide(now, false, false, false, false), g)
    };
    let (a, g) = spend(1.0);
    assert!(g.limitless());
    assert!(!a.pause_creation && !a.pause_large, "{a:?}");
    assert!((g.spent - 20.0).abs() < 1e-12, "{}", g.spent);
    assert!(g.credit >= g.max() && g.search_credit >= search_max(1.0));
    let (a, g) = spend(0.99);
    assert!(!g.limitless());
    assert!(a.pause_creation && a.pause_large, "{a:?}");
}
