//! The report's account of what the tracer cost and left out.
use serde::Serialize;

/// What walking the sync.Map tries cost and left out, over all samples.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct SyncMapWalks {
    /// Trie nodes read (one `process_vm_readv` region each, up to 1,024
    /// per call).
    pub nodes_read: u64,
    /// Walks whose tries were larger than the node cap of a sample:
    /// their length is estimated from an even sample of their levels.
    pub estimated: u64,
    /// Walks stopped by the sample's deadline (no length for that sample).
    pub cut_short: u64,
    /// Instances not walked at a sample: its node cap was spent.
    pub skipped: u64,
    /// Nodes that were not what they should be (changed while read):
    /// left out.
    pub bad_nodes: u64,
    /// Walks that could not read some node (the process was exiting): no
    /// length, and the earlier walk's entries stand.
    pub unreadable: u64,
    /// Walks made, entries they read, and the wall time they took (the
    /// reads and the counting, on the sampling worker).
    pub walks: u64,
    pub entries_read: u64,
    pub seconds: f64,
}

/// The tracer's cost.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Overhead {
    /// Hits per probe (`function@0xaddr`).
    pub probe_hits: std::collections::BTreeMap<String, u64>,
    /// Estimated CPU seconds taken from the target by probe hits.
    pub estimated_target_cpu_s: f64,
    /// Mean cost of one run of each eBPF program, nanoseconds (reference
    /// machine), as the kernel measured it (`BPF_ENABLE_STATS`): debited on
    /// top of each hit's trap. Empty when the kernel gave no statistics
    /// (the hits were then debited at fixed prices).
    pub program_run_ns: std::collections::BTreeMap<String, f64>,
    /// Health counters from the kernel side (ring buffer full, failed reads…).
    pub counters: std::collections::BTreeMap<String, u64>,
    /// The tracer's own CPU seconds (user + system).
    pub tracer_cpu_s: f64,
    /// The tracer's peak resident memory, bytes.
    pub tracer_max_rss_bytes: u64,
    /// Times the governed probes (creation, Swiss small-map growth) were
    /// paused to stay within the budget.
    pub creation_probes_paused: u64,
    /// Times they were attached again after a pause.
    pub creation_probes_resumed: u64,
    /// Seconds they were paused (maps created then have no creation site;
    /// small maps' growths then are not seen).
    pub creation_probes_paused_s: f64,
    /// Share of the run the governed probes were attached: what they saw
    /// (creation sites, small-map growths) is a sample of that share.
    pub governed_probes_attached_share: f64,
    /// Times the large-growth probes (hmap bucket arrays of 32 KiB or
    /// more, Swiss table splits) were paused: they spent their share of
    /// the budget (half), or the budget as a whole was in debt.
    pub large_growth_probes_paused: u64,
    /// Of those, pauses because the budget as a whole was in debt (what
    /// cannot be paused, the GC probes and the tracer's own work, spent
    /// it), not their own share.
    pub large_growth_probes_paused_for_debt: u64,
    /// Times they were attached again after a pause.
    pub large_growth_probes_resumed: u64,
    /// Seconds they were paused (a large map that first grew then is found
    /// at its next growth while attached, or by the samples once known).
    pub large_growth_probes_paused_s: f64,

    /// Write-path windows opened (`mapassign*`/`mapdelete*` probes attached).
    pub write_windows: u64,
    /// Seconds the write-path probes were attached.
    pub write_windows_s: f64,
    /// Of the windows, those closed because the budget ran out (the others
    /// closed after their longest time, 2 s).
    pub write_windows_closed_over_budget: u64,
    /// Maps first found through the write windows (they had not grown).
    pub maps_found_by_write_windows: u64,
    /// Probe calls that came while their link was being closed: the
    /// program, switched off first, returned at once (the trap is still
    /// paid, and debited as the group's tail).
    pub runs_while_detaching: u64,
    /// Governed probe calls that found the probes' grant in the kernel
    /// spent (the credit above their close reserve, set at each check):
    /// the program returned at once; each is debited at the trap's price.
    pub governed_runs_past_grant: u64,
    /// Seconds the governor debited to the budget: every probe hit (target
    /// CPU) and the tracer's own CPU.
    pub budget_spent_target_cpu_s: f64,
    /// Of that, the tracer process's own CPU.
    pub budget_tracer_cpu_s: f64,
    /// The budget's rate at the report (share of one CPU): `--overhead-budget`,
    /// or in node-wide mode this process's share of it, which follows the
    /// CPU it uses.
    pub budget_rate: f64,
    /// Its mean over the trace (the budget credited over the seconds
    /// traced).
    pub budget_rate_mean: f64,
    /// GC cycles sampled without reading keys or searching owners, to keep
    /// the tracer's own CPU within its share of the budget.
    pub key_reads_deferred: u64,
    /// GC cycles whose event reached the tracer more than 150 ms late, or,
    /// where the GC counters are read, that may have ended 150 ms or more
    /// before the read that found them, while a sample could have started
    /// (a starved or busy tracer): their map lengths were not read. One
    /// that may have ended during the gap after a sample is counted in
    /// `gc_cycles_skipped` instead.
    pub gc_cycles_not_sampled_late: u64,
    /// GC cycles whose map headers were read.
    pub gc_cycles_sampled: u64,
    /// Samples taken on the timer: no GC cycle came for `--interval`.
    pub timer_samples: u64,
    /// Reads of the runtime's GC counters (`memstats.numgc`), which replace
    /// the `gcSweep` probe where they are located: null when the probe was
    /// used. Between two reads the cycles are counted, not listed in
    /// `gc_cycles`.
    pub gc_counter_reads: Option<u64>,
    /// Why the probes are attached with one perf link each rather than
    /// uprobe_multi links (null: uprobe_multi is used). Detaching is then
    /// slower (the kernel closes links one at a time).
    pub uprobe_multi_unavailable: Option<String>,
    /// Samples whose header reads ran past their deadline (2 s): the maps
    /// not read by then have no length for that sample.
    pub samples_cut_short: u64,
    /// sync.Map tries walked (Go 1.24+), over all samples.
    pub sync_map_walks: SyncMapWalks,
    /// Holder searches (for suspects no global holds directly): how many,
    /// the heap bytes they copied, and how many a bound cut short.
    pub holder_search: crate::holders::SearchStats,
    /// GC cycles not sampled to bound the tracer's own CPU: it samples at
    /// most every 100 ms, and waits 9 times a sample's length after it, so
    /// a newer cycle came first (or the wait made this one late).
    pub gc_cycles_skipped: u64,
}
