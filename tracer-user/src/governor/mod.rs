//! `governor`: keeps the probes' cost within `--overhead-budget`.
//!
//! A token bucket in seconds of target CPU: it fills at `budget` (0.01 = 1%
//! of one CPU) up to [`BURST_S`] seconds' worth, and every probe hit is
//! debited at its measured cost (emulated or single-stepped, DESIGN.md 3.2).
//! Hits are counted in the kernel per probe while its program runs; the
//! traps after a link is closed and before the kernel removes the
//! breakpoint are not, so the caller measures that tail (`budget::tail`)
//! and debits it too: whatever the detach latency, the long-run cost stays
//! within the budget.
//!
//! Two groups of probes spend the credit (`plan::ProbeClass`):
//! - the **governed** probes, called "creation" here after the first of them
//!   (on by default: map creation and Swiss small-map growth, whose rates
//!   follow what a busy service does per request): paused when the
//!   credit falls to their close reserve, resumed when half of the bucket
//!   is back;
//! - the **write window** (`mapassign*`, `mapdelete*`: off by default): opened
//!   when the bucket is full and [`WINDOW_GAP`] has passed since the last
//!   one, closed when the credit falls to its close reserve or after
//!   [`WINDOW_MAX`]. When the creation probes keep the bucket from filling, a
//!   window is still opened every [`WINDOW_EVERY`] by keeping them paused
//!   until the bucket is full.
//!
//! - the **large-growth** probes (Swiss `(*table).split`, hmap
//!   `makeBucketArray` for large arrays: one hit per so much map memory
//!   allocated), a second tier: on by default and while the other probes
//!   are paused, with a bucket of their own filled at [`LARGE_GROWTH_SHARE`]
//!   of the budget. A service that allocates large maps fast (a 1,000-key
//!   map per request) empties it: they are paused until half of it is back,
//!   so that they never cost more than that share. Their cost is debited
//!   from the main bucket too, and when that is empty (what cannot be
//!   paused, the GC probes and the tracer's own work, spends the rest of
//!   the budget) while they cost [`LARGE_DEBT_PAUSE_MIN_SHARE`] of the
//!   budget or more on average, they are paused until
//!   [`LARGE_RESUME_SHARE`] of it is back: one budget covers everything.
//!
//! A group is closed before the credit is gone, at its **close reserve**
//! ([`Reserve`]): a closed group's breakpoints keep trapping until the
//! kernel removes them (10-40 ms measured, a write window's at about one
//! CPU on a write loop), and that tail is debited after the close. Closing
//! at zero left every window's tail as debt: at 0.5 % the write-heavy
//! workloads were debited 0.96-1.31 % of one CPU over 9 s where the
//! budget allows 0.78 %. The caller measures each group's tails and sets
//! the reserve to what the next one will cost at the trap's rate (a tail
//! runs no program).
//!
//! The decision is pure ([`Governor::decide`]); the caller attaches and
//! detaches.
use std::time::{Duration, Instant};

// The bucket's size, the write windows' bounds and the per-hit costs are
// shared with `cargo xtask bench`, which quotes them.
pub use tracer_common::governor::{
    BURST_S, EMULATED_HIT_S, GOVERNED_IN_SITU, GOVERNED_RUN_PRIOR_S, SINGLE_STEP_HIT_S, WINDOW_GAP,
    WINDOW_MAX, WRITE_HIT_S,
};

/// A window in which no write was seen for this long is closed: a target
/// that writes no map has nothing for it to find, and an open window is
/// checked every [`PERIOD_WINDOW_MAX`] at most (on an idle target, most
/// of the tracer's own floor).
pub const WINDOW_IDLE: Duration = Duration::from_secs(1);

/// A write window is due when the last one ended this long ago.
pub const WINDOW_EVERY: Duration = Duration::from_secs(10);
/// Share of the budget the large-growth probes may spend (their own
/// bucket fills at this share of the rate): the rest covers the GC probes
/// and the tracer's own CPU, and what is left of it the governed probes and
/// the write windows.
pub const LARGE_GROWTH_SHARE: f64 = 0.5;

/// Share of the main bucket that must be back before the large-growth
/// probes, paused because it was empty, come back (whatever their own
/// credit). They pause when it is empty: the GC probes and the tracer's
/// own work, which cannot be paused, plus their share, can cost more than
/// the whole budget. They used to pause only half a bucket into debt,
/// which over a 9 s trace of permaps1000 debited 0.88-0.90 % of one CPU
/// at the 0.5 % default (0.78 % allowed). The governed probes pause at
/// their close reserve, above zero, and come back at half a bucket, so
/// they go first and come back after these.
pub const LARGE_RESUME_SHARE: f64 = 0.25;

/// Share of the budget the large-growth probes must have been costing
/// (their mean while attached, `budget::LARGE_RATE_TAU_S`: one burst, a
/// map grown to a million entries, does not count as a rate) for an empty
/// main bucket to pause them: cheaper,
/// pausing them pays nothing back and only blinds them (on the JSON
/// workload, where they hit a few times a second, pausing them whenever
/// the GC probes and the governed probes' tails emptied the bucket left
/// them attached 22 % of the time).
pub const LARGE_DEBT_PAUSE_MIN_SHARE: f64 = 0.1;

/// Share of the budget the holder search may spend over time (its own
/// credit fills at this share of the rate).
pub const SEARCH_SHARE: f64 = 0.2;

/// Seconds of its share the holder search's credit holds at most: at the
/// default 0.5 % budget, 60 ms of CPU, a search over about 20 MiB of heap
/// (3 ms a MiB measured on the holders fixture), once a minute at most (a
/// larger heap is searched in turns).
pub const SEARCH_BURST_S: f64 = 60.0;

/// Size of the holder search's bucket at `rate`.
#[must_use]
pub fn search_max(rate: f64) -> f64 {
    rate * SEARCH_SHARE * SEARCH_BURST_S
}

/// How often hit counts are read.
pub const PERIOD: Duration = Duration::from_millis(100);
/// How often while nothing needs watching ([`crate::budget::Budget::quiet`]):
/// each check wakes the tracer, about 0.1 ms of CPU on a virtual machine,
/// so at [`PERIOD`] the checks alone were a tenth of the default budget.
pub const PERIOD_IDLE: Duration = Duration::from_millis(250);
/// How often while a write window is open (a write-heavy target can spend
/// the whole bucket within one [`PERIOD`]).
pub const PERIOD_WINDOW: Duration = Duration::from_millis(10);
/// Longest check period while a window is open: its hits may start at any
/// time (see [`window_period`]).
pub const PERIOD_WINDOW_MAX: Duration = Duration::from_millis(20);
/// Check period while the creation probes are attached: a service that
/// starts creating maps fast (a request burst) makes them cost a CPU or
/// more at once, which the next check must see soon.
pub const PERIOD_CREATION: Duration = Duration::from_millis(20);
/// Target CPU a window may spend between two checks, at its last rate.
pub const WINDOW_OVERSHOOT_S: f64 = 1.0e-3;

/// Check period while a window is open and its probes cost `rate` CPUs:
/// short enough that at that rate it spends at most
/// [`WINDOW_OVERSHOOT_S`] between two checks, within
/// [`PERIOD_WINDOW`]..[`PERIOD_WINDOW_MAX`].
#[must_use]
pub fn window_period(rate: f64) -> Duration {
    if rate.is_nan() || rate <= 0.0 {
        return PERIOD_WINDOW_MAX;
    }
    Duration::from_secs_f64((WINDOW_OVERSHOOT_S / rate).min(1.0))
        .clamp(PERIOD_WINDOW, PERIOD_WINDOW_MAX)
}

/// What the caller must do now.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Actions {
    /// Detach the creation probes.
    pub pause_creation: bool,
    /// Attach the creation probes again.
    pub resume_creation: bool,
    /// Attach the write-path probes.
    pub open_window: bool,
    /// Detach the write-path probes.
    pub close_window: bool,
    /// Detach the large-growth probes.
    pub pause_large: bool,
    /// Attach the large-growth probes again.
    pub resume_large: bool,
}

/// Attaches and closes still going on, as the caller sees them (see
/// [`Governor::sequence`]).
#[derive(Debug, Default, Clone, Copy)]
pub struct InFlight {
    /// A close of the creation probes is in progress.
    pub busy_creation: bool,
    /// A close of the write-window probes is in progress.
    pub busy_window: bool,
    /// Creation breakpoints are still in the target after their close.
    pub creation_tail: bool,
    /// Write-window breakpoints that were being hit are still in the target.
    pub window_hot_tail: bool,
    /// Cost of the creation probes over the last check (CPUs).
    pub creation_rate: f64,
}

/// Credit each group's close must leave for the tail of its breakpoints
/// (seconds of target CPU): set by the caller from the group's current
/// cost rate and its tails measured so far.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Reserve {
    /// The governed (creation) probes.
    pub creation: f64,
    /// The write window.
    pub window: f64,
}

/// Share of the bucket a close reserve may hold at most: a group whose
/// tail alone would cost more is still closed at this much credit, not
/// kept from ever running (the governed probes resume at half a bucket).
pub const RESERVE_MAX_SHARE: f64 = 0.4;

/// Whether a budget of `rate` (share of one CPU) is a whole CPU or more,
/// which lifts the limit (`--overhead-budget 100`): nothing is paused,
/// no window is cut short and no sample is held ([`Governor::account`]).
/// In node-wide mode a process's share of the node's budget is what
/// counts: from the first split of the budget (the governor's thread
/// splits it as soon as a process is added), `--all --overhead-budget
/// 100` holds each process to its share of one CPU.
#[must_use]
pub fn lifts_limit(rate: f64) -> bool {
    rate >= 1.0
}

/// Governor state of one process.
#[derive(Debug)]
pub struct Governor {
    /// Budget, share of one CPU.
    pub rate: f64,
    /// Credit, seconds of target CPU.
    pub credit: f64,
    /// Creation probes attached.
    pub creation_on: bool,
    /// When the open window opened.
    pub window_open: Option<Instant>,
    /// When the last window closed.
    pub last_window_end: Option<Instant>,
    /// Latest check at which the open window's probes had hits.
    pub window_written: Option<Instant>,
    /// Times the creation probes were paused.
    pub pauses: u64,
    /// Times they were attached again after a pause.
    pub resumes: u64,
    /// Time they spent paused (closed pauses).
    pub paused_total: Duration,
    /// Start of the current pause.
    pub paused_at: Option<Instant>,
    /// Windows opened.
    pub windows: u64,
    /// Time windows were open.
    pub window_total: Duration,
    /// Windows closed because the credit fell to their reserve (not at
    /// [`WINDOW_MAX`] or idle).
    pub windows_over_budget: u64,
    /// Total cost debited, seconds of target CPU.
    pub spent: f64,
    /// Budget credited so far (the rate over time), seconds of CPU: over
    /// the seconds accounted, the mean rate (it changes with
    /// [`Governor::set_rate`]).
    pub granted: f64,
    /// Seconds accounted.
    pub accounted_s: f64,
    /// The large-growth probes: their own bucket, whether they are
    /// attached, and their pauses.
    pub large: LargeGrowth,
    /// The holder search's own credit, seconds of target CPU: fills at
    /// [`SEARCH_SHARE`] of the rate up to [`search_max`]. The search's CPU
    /// is the tracer's, debited from the main bucket like the rest of it;
    /// this bucket only decides when one may start, so that searches run
    /// at the default budget even while the governed probes and the write
    /// windows keep the main bucket low, and never take more than their
    /// share of it over time.
    pub search_credit: f64,
    /// The tracer's own work is most of what the budget spends (the
    /// caller sets it, as for `budget::Budget::holds_samples`): a debt is
    /// then paid back by spacing the samples, and does not pause the
    /// large-growth probes. On an emulated arm64 VM, with the tracer ten
    /// times slower, pausing them for its debt left a map that grew to
    /// 15,000 entries unseen.
    pub debt_is_tracers: bool,
    /// Credit the closes leave for their tails ([`Governor::set_reserve`]).
    pub reserve: Reserve,
    /// What the large-growth probes cost, CPUs: their mean while attached
    /// (the caller sets it; see [`LARGE_DEBT_PAUSE_MIN_SHARE`]).
    pub large_rate: f64,
}

/// The second tier's state: the large-growth probes (see the module's
/// documentation).
#[derive(Debug)]
pub struct LargeGrowth {
    /// Their own credit, seconds of target CPU; fills at
    /// [`LARGE_GROWTH_SHARE`] of the rate, up to [`BURST_S`] of that.
    pub credit: f64,
    /// Attached.
    pub on: bool,
    /// Times paused.
    pub pauses: u64,
    /// Of those, pauses with credit of their own left: the main bucket was
    /// empty.
    pub debt_pauses: u64,
    /// Times attached again after a pause.
    pub resumes: u64,
    /// Time spent paused (closed pauses).
    pub paused_total: Duration,
    /// Start of the current pause.
    pub paused_at: Option<Instant>,
}

impl LargeGrowth {
    fn new(rate: f64) -> Self {
        Self {
            credit: large_max(rate),
            on: true,
            pauses: 0,
            debt_pauses: 0,
            resumes: 0,
            paused_total: Duration::ZERO,
            paused_at: None,
        }
    }

    /// Seconds paused so far, including a pause in progress.
    #[must_use]
    pub fn paused_s(&self, now: Instant) -> f64 {
        paused_secs(self.paused_total, self.paused_at, now)
    }
}

/// Seconds paused: `total` of closed pauses, plus the one in progress
/// since `at`, if any.
fn paused_secs(total: Duration, at: Option<Instant>, now: Instant) -> f64 {
    (total + at.map_or(Duration::ZERO, |at| now.duration_since(at))).as_secs_f64()
}

/// Size of the large-growth probes' bucket at `rate`.
fn large_max(rate: f64) -> f64 {
    rate * LARGE_GROWTH_SHARE * BURST_S
}

impl Governor {
    /// A governor with a full bucket and the creation probes on.
    #[must_use]
    pub fn new(rate: f64) -> Self {
        Self {
            rate,
            credit: rate * BURST_S,
            creation_on: true,
            window_open: None,
            last_window_end: None,
            window_written: None,
            pauses: 0,
            resumes: 0,
            paused_total: Duration::ZERO,
            paused_at: None,
            windows: 0,
            window_total: Duration::ZERO,
            windows_over_budget: 0,
            spent: 0.0,
            granted: 0.0,
            accounted_s: 0.0,
            large: LargeGrowth::new(rate),
            search_credit: search_max(rate),
            debt_is_tracers: false,
            reserve: Reserve::default(),
            large_rate: 0.0,
        }
    }

    /// Sets the close reserves, each at most [`RESERVE_MAX_SHARE`] of the
    /// bucket (a value that is not a finite positive number counts as 0).
    pub fn set_reserve(&mut self, r: Reserve) {
        let cap = self.max() * RESERVE_MAX_SHARE;
        let bound = |v: f64| {
            if v.is_finite() && v > 0.0 {
                v.min(cap)
            } else {
                0.0
            }
        };
        self.reserve = Reserve {
            creation: bound(r.creation),
            window: bound(r.window),
        };
    }

    /// Changes the budget to `rate` from now on (node-wide mode splits one
    /// budget among the processes, [`split_rates`]): the bucket follows
    /// ([`BURST_S`] of the new rate), so credit above it is dropped.
    pub fn set_rate(&mut self, rate: f64) {
        if rate.is_finite() && rate >= 0.0 {
            self.rate = rate;
            self.credit = self.credit.min(self.max());
            self.large.credit = self.large.credit.min(large_max(rate));
            self.search_credit = self.search_credit.min(search_max(rate));
        }
    }

    /// A holder search spent `cpu_s` seconds.
    pub fn search_spent(&mut self, cpu_s: f64) {
        if cpu_s.is_finite() && cpu_s > 0.0 {
            self.search_credit -= cpu_s;
        }
    }

    /// The mean rate over the seconds accounted (the rate given, before
    /// any).
    #[must_use]
    pub fn mean_rate(&self) -> f64 {
        if self.accounted_s > 0.0 {
            self.granted / self.accounted_s
        } else {
            self.rate
        }
    }

    /// Whether the budget lifts the limit ([`lifts_limit`]).
    #[must_use]
    pub fn limitless(&self) -> bool {
        lifts_limit(self.rate)
    }

    /// Bucket size.
    #[must_use]
    pub fn max(&self) -> f64 {
        self.rate * BURST_S
    }

    /// Credits `dt` seconds of budget and debits `cost`, of which `large`
    /// was spent by the large-growth probes (debited from their own bucket
    /// too).
    ///
    /// A budget of a whole CPU or more (`--overhead-budget 100`) lifts the
    /// limit: what is spent is still counted, and the buckets stay full,
    /// so nothing is paused, no window is cut short and no sample is held.
    pub fn account(&mut self, dt: f64, cost: f64, large: f64) {
        self.spent += cost;
        self.granted += self.rate * dt;
        self.accounted_s += dt;
        if self.limitless() {
            self.credit = self.max();
            self.large.credit = large_max(self.rate);
            self.search_credit = search_max(self.rate);
            return;
        }
        self.credit = (self.credit + self.rate * dt - cost).min(self.max());
        self.large.credit = (self.large.credit + self.rate * LARGE_GROWTH_SHARE * dt - large)
            .min(large_max(self.rate));
        self.search_credit =
            (self.search_credit + self.rate * SEARCH_SHARE * dt).min(search_max(self.rate));
    }

    /// A write window is due ([`WINDOW_EVERY`] since the last one).
    #[must_use]
    pub fn window_due(&self, now: Instant, have_window: bool) -> bool {
        have_window
            && self
                .last_window_end
                .is_none_or(|t| now.duration_since(t) >= WINDOW_EVERY)
    }

    /// Whether the tracer's own optional work (key reads) may spend credit
    /// now: last in line, after the governed probes (on, not waiting to
    /// resume) and a write window that is due but not open yet (it waits for
    /// a full bucket).
    #[must_use]
    pub fn spare_for_tracer(&self, now: Instant, have_window: bool) -> bool {
        let window_waits = self.window_open.is_none() && self.window_due(now, have_window);
        self.creation_on && !window_waits && self.credit >= self.max() * 0.9
    }

    /// Decides what to change. `busy_creation` / `busy_window` /
    /// `busy_large`: a detach of that group is still in progress (do not
    /// attach it again yet); `have_window`: there are write-path probes at
    /// all.
    #[must_use]
    pub fn decide(
        &self,
        now: Instant,
        busy_creation: bool,
        busy_window: bool,
        busy_large: bool,
        have_window: bool,
    ) -> Actions {
        let mut a = Actions::default();
        let max = self.max();
        // The main bucket pays for them too: once it is empty (the
        // governed probes have paused at their reserve; the GC probes and
        // the tracer's own work are spending it), they pause as well, and
        // come back once a quarter of it is back; not when they cost next
        // to nothing (pausing them would pay nothing back).
        // A debt that is the tracer's own work is paid back by spacing the
        // samples instead (`debt_is_tracers`).
        let main_empty = self.credit < 0.0
            && !self.debt_is_tracers
            && self.large_rate >= self.rate * LARGE_DEBT_PAUSE_MIN_SHARE;
        if self.large.on && (self.large.credit < 0.0 || main_empty) {
            a.pause_large = true;
        } else if !self.large.on
            && !busy_large
            && self.large.credit >= large_max(self.rate) / 2.0
            && (self.credit >= max * LARGE_RESUME_SHARE || self.debt_is_tracers)
        {
            a.resume_large = true;
        }
        if let Some(open) = self.window_open
            && (self.credit < self.reserve.window
                || now.duration_since(open) >= WINDOW_MAX
                || now.duration_since(self.window_written.unwrap_or(open).max(open)) >= WINDOW_IDLE)
        {
            a.close_window = true;
        }
        if self.creation_on && self.credit < self.reserve.creation {
            a.pause_creation = true;
        }
        let window_due = self.window_due(now, have_window);
        let window_closed = self.window_open.is_none() && !busy_window;
        let gap_passed = self
            .last_window_end
            .is_none_or(|t| now.duration_since(t) >= WINDOW_GAP);
        if have_window && window_closed && self.credit >= max && gap_passed {
            a.open_window = true;
        } else if !self.creation_on
            && !busy_creation
            && self.window_open.is_none()
            && self.credit >= max / 2.0
            && !(window_due && window_closed)
        {
            a.resume_creation = true;
        }
        a
    }

    /// Orders [`Governor::decide`]'s actions around the kernel: attaches and
    /// closes serialize there, each waiting for RCU grace periods, and the
    /// caller's loop is blocked while it attaches. So a window does not open
    /// while creation probes costing more than the budget are on (they are
    /// paused first; the window opens once their breakpoints are gone);
    /// nothing is attached while a group is being closed; and the creation
    /// probes are not closed on their own while busy window breakpoints
    /// still wait for removal (closed together, they share one ordered
    /// close).
    #[must_use]
    pub fn sequence(&self, mut a: Actions, f: InFlight) -> Actions {
        // With the limit lifted nothing is paused, a window's sake
        // included: at `--overhead-budget 100` the first second's price of
        // 25,000 maps made at once read as more than a CPU, and the
        // creation probes were paused for the window's 2 s.
        if a.open_window && self.creation_on && f.creation_rate > self.rate && !self.limitless() {
            a.open_window = false;
            a.pause_creation = true;
        }
        if f.busy_creation || f.creation_tail {
            a.open_window = false;
        }
        if self.window_open.is_some() || f.busy_window {
            a.resume_creation = false;
        }
        if a.pause_creation && !a.close_window && f.window_hot_tail {
            a.pause_creation = false;
        }
        a
    }

    /// Records that the creation probes were paused at `now`.
    pub fn paused(&mut self, now: Instant) {
        self.creation_on = false;
        self.pauses += 1;
        self.paused_at = Some(now);
    }

    /// Records that the creation probes were attached again at `now`.
    pub fn resumed(&mut self, now: Instant) {
        self.creation_on = true;
        self.resumes += 1;
        if let Some(at) = self.paused_at.take() {
            self.paused_total += now.duration_since(at);
        }
    }

    /// Records that a window opened at `now`.
    pub fn opened(&mut self, now: Instant) {
        self.window_open = Some(now);
        self.windows += 1;
    }

    /// Records that the open window's probes had hits by `now`.
    pub fn written(&mut self, now: Instant) {
        if self.window_open.is_some() {
            self.window_written = Some(now);
        }
    }

    /// Records that the window closed at `now`.
    pub fn closed(&mut self, now: Instant) {
        self.windows_over_budget += u64::from(self.credit < self.reserve.window);
        if let Some(at) = self.window_open.take() {
            self.window_total += now.duration_since(at);
        }
        self.last_window_end = Some(now);
    }

    /// Records that the large-growth probes were paused at `now`.
    pub fn large_paused(&mut self, now: Instant) {
        self.large.on = false;
        self.large.pauses += 1;
        self.large.debt_pauses += u64::from(self.large.credit >= 0.0);
        self.large.paused_at = Some(now);
    }

    /// Records that the large-growth probes were attached again at `now`.
    pub fn large_resumed(&mut self, now: Instant) {
        self.large.on = true;
        self.large.resumes += 1;
        if let Some(at) = self.large.paused_at.take() {
            self.large.paused_total += now.duration_since(at);
        }
    }

    /// Seconds the governed probes were paused so far, including a pause in
    /// progress.
    #[must_use]
    pub fn paused_s(&self, now: Instant) -> f64 {
        paused_secs(self.paused_total, self.paused_at, now)
    }
}

/// Least share of the node's budget a process is given in node-wide mode
/// (1/50, 2 %), however little CPU it uses: enough for its header samples
/// and its always-on probes.
pub const SPLIT_FLOOR: f64 = 0.02;

/// Node-wide mode (`--all`): splits the budget `node` (share of one CPU)
/// among the processes traced, in proportion to the CPU each used
/// (`cpu[i]`, CPUs, over the last seconds): process i gets
/// `node × cpu[i] / max(1, Σ cpu)`, and at least `node ×` [`SPLIT_FLOOR`].
/// So no process is given more than `node` of the CPU it uses itself
/// (unless it is at the floor), and the rates add up to at most `node`
/// (plus the floors of the processes at it): `node` of one CPU for the
/// whole node, whether its processes keep one CPU busy or many. A figure
/// that is not a finite number counts as 0.
#[must_use]
pub fn split_rates(node: f64, cpu: &[f64]) -> Vec<f64> {
    let used = |c: f64| if c.is_finite() { c.max(0.0) } else { 0.0 };
    let total: f64 = cpu.iter().map(|&c| used(c)).sum();
    let denom = total.max(1.0);
    cpu.iter()
        // `min`: c / total may round a hair above 1 (a process alone).
        .map(|&c| (node * used(c) / denom).min(node).max(node * SPLIT_FLOOR))
        .collect()
}

#[cfg(test)]
mod tests;
