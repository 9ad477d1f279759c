//! The overhead governor's costs and bucket (tracer-user's `governor`,
//! which re-exports them): here so that `cargo xtask bench` quotes the
//! values the tracer uses without building it. Not part of the wire ABI.
use core::time::Duration;

/// Seconds of the budget that can be spent at once.
pub const BURST_S: f64 = 5.0;
/// Longest write window.
pub const WINDOW_MAX: Duration = Duration::from_secs(2);
/// Least time between a window's close and the next one's opening: on an
/// idle or write-light target the bucket stays full, and back-to-back
/// windows would cost the tracer (attach, checks, close) for nothing.
pub const WINDOW_GAP: Duration = Duration::from_secs(5);

/// Cost of one probe hit, measured by `cargo xtask bench` on this kind of VM
/// (docs/benchmarks.md: 0.7-0.9 µs emulated, 9.4-11.6 µs single-stepped).
pub const EMULATED_HIT_S: f64 = 0.8e-6;
/// See [`EMULATED_HIT_S`].
pub const SINGLE_STEP_HIT_S: f64 = 11.0e-6;
/// A write-path hit: the trap plus the program's per-CPU hash update.
/// Measured on a loop of `m[k]++` (mapassign_fast64, emulated entry
/// placement): 0.97 µs per call inside a window, 0.77 µs per call while the
/// breakpoint waits to be removed (no program), against 8 ns untraced.
pub const WRITE_HIT_S: f64 = 1.0e-6;

/// A governed probe's program run (seconds, reference machine), before
/// the kernel has timed it: a session's first second, which holds its
/// first burst. Means the kernel measured on the creators workload (Go
/// 1.26, 2026-12-05, on a VM the calibration put at 1.7 times the
/// reference): `map_create_ret` 3.1 µs, `map_grow` 0.9 µs. Without it,
/// that burst was priced at the trap alone (times [`GOVERNED_IN_SITU`]),
/// a third of what it was debited once the runs were timed, and the
/// governed probes' grant in the kernel let four times the credit's worth
/// of runs through.
pub const GOVERNED_RUN_PRIOR_S: f64 = 2.0e-6;

/// What a governed probe's hit (creation, small-map growth) costs the
/// target, as a multiple of the trap and its program's run as the kernel
/// times it. Those probes send an event on almost every hit: a user-stack
/// walk into the stack map, a ring-buffer record, and the tracer woken to
/// read it. Their effect on the target's caches and its CPUs is not in the
/// kernel's run time. Measured by hand on permaps1000, in twin processes
/// with user and system CPU read apart (scripts/twinsplit.py, governed
/// probes attached throughout; docs/benchmarks.md 1h): the target lost
/// 2.28x (Go 1.23) and 2.38x (Go 1.26) what the trap and run prices
/// debited, 12.4 and 13.8 µs a hit. The large-growth probes, which skip
/// small tables before any stack walk, lost about 1.1x and keep their
/// price; the write-path price was measured in place (a write loop).
pub const GOVERNED_IN_SITU: f64 = 2.3;

/// `--overhead-budget`'s default, in percent of one CPU: what tracing may
/// cost, the probes' cost to the target and the tracer's own CPU in one
/// budget. Half of the 1 % promised: the governor spends its whole budget
/// when there is map activity to see, and the target loses more than the
/// debit prices (the traps' effect on its caches and the tails of closed
/// probes). The whole workload suite in twin processes on one day
/// (docs/benchmarks.md 1h, 2026-12-03): at 1 % the median loss pooled over
/// 108 rounds was +1.55 % (95 % interval +1.2 .. +1.8 %), 5 of 18 medians
/// at or under 1 %; at 0.5 %, +0.4 % (+0.2 .. +0.6 %), 15 of 18.
pub const DEFAULT_BUDGET_PCT: f64 = 0.5;
