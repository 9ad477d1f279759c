//! The governor's thread: checks every budget on its own clock.
use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use super::{
    Budget, SPLIT_EVERY,
    clocks::{WorkerClocks, self_cpu_s, threads_burst, threads_cpu_ns},
    lock_budget,
};
use crate::{
    bpf::{HitsReader, RunStats},
    runcost::{RunCosts, without_off_runs},
};

/// How often the programs' run statistics are read (each read is one
/// system call per loaded program, about 50 µs in all).
pub const RUN_STATS_EVERY: Duration = Duration::from_secs(1);

/// `MAPLEAK_DEBUG_TIMING`: the tracer's CPU between two checks from which
/// its threads are listed (a check is 10-250 ms apart).
const DEBUG_BURST_S: f64 = 0.015;
const DEBUG_THREADS_EVERY: Duration = Duration::from_millis(500);

/// The budgets the governor's thread checks: added and removed while it
/// runs (a node-wide trace attaches and lets go of processes).
pub type Budgets = Arc<Mutex<Vec<Arc<Mutex<Budget>>>>>;

/// Node-wide mode: splits `node` among the live `budgets`
/// ([`crate::governor::split_rates`]) when [`SPLIT_EVERY`] has passed since
/// `last` (when, among how many) or the number of live budgets changed;
/// returns when it last split.
fn split(
    node: f64,
    budgets: &[Arc<Mutex<Budget>>],
    last: Option<(Instant, usize)>,
    now: Instant,
) -> Option<(Instant, usize)> {
    let live: Vec<&Arc<Mutex<Budget>>> = budgets.iter().filter(|b| !lock_budget(b).ended).collect();
    if last.is_some_and(|(at, n)| n == live.len() && now.duration_since(at) < SPLIT_EVERY) {
        return last;
    }
    let cpu: Vec<f64> = live.iter().map(|b| lock_budget(b).cpu_used(now)).collect();
    let rates = crate::governor::split_rates(node, &cpu);
    for (b, r) in live.iter().zip(rates) {
        lock_budget(b).gov.set_rate(r);
    }
    Some((now, live.len()))
}

/// A budget's part of `shared` seconds of the tracer's CPU spent for every
/// process at once (the loop, the governor's thread, scans, scrapes): in
/// proportion to its `rate` among the `live` budgets' (`rates`, their sum;
/// equal parts when no rate is known).
///
/// Node-wide mode (`node`, the node's whole budget): in proportion to its
/// share of `node`, when the rates given add up to less. They do when the
/// processes traced use less than one CPU together
/// ([`crate::governor::split_rates`]): the node's CPU is then partly idle,
/// and the part of the tracer's shared work that no process was given a
/// budget for runs beside them, paid from the node's budget that no process
/// was given. Without this, quiet processes (an idle daemon uses 0.02 % of
/// a CPU) are given less than the tracer's own floor, so their governed
/// probes never come back and their samples wait for the 10 s cap. The
/// tracer's whole cost stays within `node` as long as its shared work does.
fn shared_part(shared: f64, rate: f64, rates: f64, live: usize, node: Option<f64>) -> f64 {
    let whole = node.map_or(rates, |n| rates.max(n));
    if whole > 0.0 && rates > 0.0 {
        shared * rate / whole
    } else {
        shared / live.max(1) as f64
    }
}

/// The governor's thread and its stop switch.
#[derive(Debug)]
pub struct GovernorThread {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
    budgets: Budgets,
}

impl GovernorThread {
    /// Starts checking `budgets` with hit counts from `hits`. The tracer's
    /// own CPU is split: what its workers spent reading a process's memory
    /// (read from their thread CPU clocks at every check, [`WorkerClocks`])
    /// is debited to that process, and the rest (the loop, this thread,
    /// scans, scrapes: work for every process at once) among the budgets
    /// still live in proportion to their rates ([`shared_part`]: equal
    /// shares when the rates are equal, as with `--pid`; in node-wide mode
    /// by their shares of the node's budget), but for the start-up work of
    /// processes attached while others are traced
    /// ([`WorkerClocks::run_unbudgeted`]), debited to none. The two figures are read a
    /// moment apart; the difference is carried, so that over time the
    /// debits add up to the tracer's CPU, no more.
    ///
    /// `node`: node-wide mode's budget (share of one CPU) for all the
    /// processes together: every [`SPLIT_EVERY`], and whenever a process
    /// comes or goes, each live budget's rate is set to its share
    /// ([`crate::governor::split_rates`] of the CPU each process used over
    /// the last [`SPLIT_WINDOW`]). `None`: each budget keeps its own rate.
    ///
    /// `runs`: the kernel's run statistics of the tracer's programs, read
    /// every [`RUN_STATS_EVERY`]: each hit is then debited at its trap plus
    /// its program's measured mean run ([`RunCosts`]). `None` (the kernel
    /// refused): at the fixed prices.
    ///
    /// `wake`: notified when a check leaves an attach for the main loop to
    /// do ([`Budget::wants_attach`]): the loop sleeps long between its own
    /// turns, and a resumed probe class or an opened write window should
    /// not wait for one.
    pub fn spawn(
        budgets: Vec<Arc<Mutex<Budget>>>,
        hits: HitsReader,
        workers: Arc<WorkerClocks>,
        node: Option<f64>,
        runs: Option<RunStats>,
        wake: Arc<tokio::sync::Notify>,
    ) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let shared: Budgets = Arc::new(Mutex::new(budgets));
        let list = shared.clone();
        let handle = std::thread::Builder::new()
            .name("governor".into())
            .spawn(move || {
                let mut cpu0 = self_cpu_s();
                // MAPLEAK_DEBUG_TIMING: each thread's CPU at the last
                // reading (and when, with the process's), to name the
                // threads of a check that used much CPU.
                let dbg = crate::app::debug_timing();
                let mut threads0 = if dbg { threads_cpu_ns() } else { Vec::new() };
                // Shared CPU already debited ahead of the workers' own.
                let mut carry = 0.0f64;
                // Node-wide mode: when the budget was last split, and among
                // how many processes.
                let mut split_at: Option<(Instant, usize)> = None;
                let mut costs = RunCosts::new();
                // Runs per program that found their probe switched off.
                let mut off_runs: std::collections::HashMap<&'static str, u64> =
                    std::collections::HashMap::new();
                let mut runs_read: Option<Instant> = None;
                // Readings of the run statistics so far.
                let mut reading = 0u64;
                let (mut threads_at, mut cpu_at) = (Instant::now(), cpu0);
                while !flag.load(Ordering::Relaxed) {
                    let now = Instant::now();
                    // The prices change only when the statistics are read:
                    // handed to each budget once per reading (a budget
                    // attached since the last one gets them at its first
                    // check), not at every check (a lookup per probe of
                    // every process).
                    if let Some(r) = &runs
                        && runs_read.is_none_or(|t| now.duration_since(t) >= RUN_STATS_EVERY)
                    {
                        let budgets: Vec<Arc<Mutex<Budget>>> = list
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .clone();
                        // Taken from the checks' readings of the same rows.
                        for b in &budgets {
                            for (name, n) in lock_budget(b).returned_runs() {
                                *off_runs.entry(name).or_default() += n;
                            }
                        }
                        costs.update(&without_off_runs(&r.read(), &off_runs));
                        runs_read = Some(now);
                        reading += 1;
                    }
                    let counts = hits.read();
                    let denied = hits.denied();
                    let off = hits.off_runs();
                    workers.collect();
                    let cpu = self_cpu_s();
                    let delta = (cpu - cpu0).max(0.0);
                    cpu0 = cpu;
                    // The threads' figures are read at a burst and at
                    // most every DEBUG_THREADS_EVERY besides (a reading of
                    // /proc per thread at every 10 ms check would itself be
                    // a few % of one CPU): a burst is named against the
                    // last reading, up to that long before it.
                    if dbg {
                        let burst = delta >= DEBUG_BURST_S;
                        if burst || now.duration_since(threads_at) >= DEBUG_THREADS_EVERY {
                            let threads = threads_cpu_ns();
                            if burst {
                                eprintln!(
                                    "tracer cpu: {:.1} ms in one check; over the last {:?}: {}",
                                    delta * 1e3,
                                    now.duration_since(threads_at),
                                    threads_burst(&threads0, &threads, cpu - cpu_at)
                                );
                            }
                            threads0 = threads;
                            threads_at = now;
                            cpu_at = cpu;
                        }
                    }
                    // A copy of the list: the loop may add or remove one
                    // while a check runs.
                    let budgets: Vec<Arc<Mutex<Budget>>> = list
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .clone();
                    if let Some(node) = node {
                        split_at = split(node, &budgets, split_at, now);
                    }
                    let (mut live, mut own, mut rates) = (0usize, 0.0f64, 0.0f64);
                    for b in &budgets {
                        if let Ok(b) = b.lock()
                            && !b.ended
                        {
                            live += 1;
                            own += b.own_cpu;
                            rates += b.gov.rate;
                        }
                    }
                    // Start-up work (a process attached while others are
                    // traced) is no process's: left out of the shared part.
                    let mut shared = delta + carry - own - workers.take_unbudgeted();
                    carry = shared.min(0.0);
                    shared = shared.max(0.0);
                    let part = |rate: f64| shared_part(shared, rate, rates, live, node);
                    let mut next = crate::governor::PERIOD_IDLE;
                    let mut attach = false;
                    for b in &budgets {
                        let Ok(mut b) = b.lock() else { continue };
                        if b.ended {
                            continue;
                        }
                        // Taken even when the counts could not be read
                        // (as the shared part, it is then not debited).
                        let mine = std::mem::take(&mut b.own_cpu);
                        if !counts.is_empty() {
                            // In this machine's time: what the tracer
                            // costs here is what the target loses here.
                            let debit = mine + part(b.gov.rate);
                            let prices =
                                (reading > 0 && b.prices_reading != reading).then_some(&costs);
                            b.prices_reading = reading;
                            b.denied_since(&denied);
                            b.switched_off_since(&off);
                            b.check(&counts, prices, debit, now);
                        }
                        next = next.min(b.period(Instant::now()));
                        attach |= b.wants_attach();
                    }
                    if attach {
                        wake.notify_one();
                    }
                    std::thread::park_timeout(next);
                }
            })?;
        Ok(Self {
            stop,
            handle: Some(handle),
            budgets: shared,
        })
    }

    /// Checks `b` from now on (a process attached while the trace runs).
    pub fn add(&self, b: Arc<Mutex<Budget>>) {
        self.budgets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(b);
        if let Some(h) = &self.handle {
            h.thread().unpark();
        }
    }

    /// Stops checking `b` (a process let go of).
    pub fn remove(&self, b: &Arc<Mutex<Budget>>) {
        self.budgets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|x| !Arc::ptr_eq(x, b));
    }

    /// Stops the thread and waits for it.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            h.thread().unpark();
            let _ = h.join();
        }
    }
}

impl Drop for GovernorThread {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_cpu_parts() {
        let close = |a: f64, b: f64| (a - b).abs() < 1e-12;
        // `--pid`: equal rates, equal parts, all of it.
        assert!(close(shared_part(0.01, 0.005, 0.01, 2, None), 0.005));
        // No rate known: equal parts.
        assert!(close(shared_part(0.01, 0.0, 0.0, 4, None), 0.0025));
        // A busy node (the rates add up to the node's budget): all of it,
        // by rate.
        let node = Some(0.01);
        assert!(close(shared_part(0.002, 0.0075, 0.01, 2, node), 0.0015));
        assert!(close(shared_part(0.002, 0.0025, 0.01, 2, node), 0.0005));
        // Two idle processes given 0.08 % and 0.02 % of a CPU of a 1 %
        // node budget: a tenth of the shared work is theirs.
        let (a, b) = (0.0008, 0.0002);
        let parts = [a, b].map(|r| shared_part(0.0016, r, a + b, 2, node));
        assert!(close(parts[0] + parts[1], 0.00016), "{parts:?}");
        assert!(close(parts[0], 4.0 * parts[1]), "{parts:?}");
        // Processes at the split's floor may be given more than the node:
        // by rate again, all of it.
        let over = shared_part(0.001, 0.006, 0.012, 2, node);
        assert!(close(over, 0.0005), "{over}");
    }

    #[test]
    fn split_among_live_budgets() {
        use crate::governor::SPLIT_FLOOR;
        let node = 0.01;
        let me = Arc::new(Mutex::new(Budget::new(
            std::process::id(),
            node,
            Vec::new(),
        )));
        let gone = Arc::new(Mutex::new(Budget::new(u32::MAX, node, Vec::new())));
        let ended = Arc::new(Mutex::new(Budget::new(u32::MAX, node, Vec::new())));
        lock_budget(&ended).ended = true;
        let list = vec![me.clone(), gone.clone(), ended.clone()];
        let t0 = Instant::now();
        let at = split(node, &list, None, t0);
        assert_eq!(at.map(|a| a.1), Some(2));
        let floor = node * SPLIT_FLOOR;
        assert!((lock_budget(&gone).gov.rate - floor).abs() < 1e-15);
        // This process: at most the whole budget, at least the floor.
        let mine = lock_budget(&me).gov.rate;
        assert!((floor..=node).contains(&mine), "{mine}");
        // Not an ended one's.
        assert!((lock_budget(&ended).gov.rate - node).abs() < 1e-15);
        // Not due yet, same budgets: unchanged.
        lock_budget(&gone).gov.set_rate(0.5);
        assert_eq!(split(node, &list, at, t0), at);
        assert!((lock_budget(&gone).gov.rate - 0.5).abs() < 1e-15);
        // One fewer: split again at once.
        lock_budget(&me).ended = true;
        let again = split(node, &list, at, t0);
        assert_eq!(again.map(|a| a.1), Some(1));
        assert!((lock_budget(&gone).gov.rate - floor).abs() < 1e-15);
    }
}
