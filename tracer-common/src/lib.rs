//! Wire ABI between `tracer-ebpf` and `tracer-user`.
//!
//! Every type here is `#[repr(C)]`, made of fixed-width integers with explicit
//! padding, and checked by `const` size/offset assertions that compile for the
//! host and for the BPF target alike. Changing a layout means bumping
//! [`ABI_VERSION`]. Enumerations travel as plain `u32` and are converted with
//! `TryFrom` on the user side, so an out-of-range value from the kernel is an
//! error, never undefined behaviour.
#![no_std]
#![warn(missing_docs)]

/// Version of this ABI. User space refuses an object built for another one.
pub const ABI_VERSION: u32 = 8;

/// The ELF section of the eBPF object that holds the [`ABI_VERSION`] it was
/// built for, as 4 little-endian bytes (the BPF target is little-endian on
/// every host this runs on). A section of its own, not a global in
/// `.rodata`: user space reads it with any ELF reader before loading, and
/// the kernel never sees it. (`#[link_section]` needs a literal, so
/// tracer-ebpf repeats the name; a tracer-user test checks they agree.)
pub const ABI_SECTION: &str = "mapleak_abi";

/// Ring buffer of rare events (map growth, GC cycles).
pub const MAP_EVENTS: &str = "EVENTS";
/// Per-process configuration, keyed by tgid: [`ProcConfig`].
pub const MAP_PROC_CONFIG: &str = "PROC_CONFIG";
/// Per-process time (`bpf_ktime_get_ns`) from which a GC cycle's marked
/// event wakes the tracer, keyed by tgid: a `u64`. Before it, the tracer
/// is not ready for a new sample, and the event waits in the ring buffer
/// like any other; with no entry, every such event wakes it.
pub const MAP_GC_WAKE: &str = "GC_WAKE";
/// Per-probe description, indexed by the uprobe cookie: [`ProbeSpec`].
pub const MAP_PROBE_SPECS: &str = "PROBE_SPECS";
/// The tracer's PID namespace, one [`PidNs`] at index 0.
pub const MAP_PIDNS: &str = "PIDNS";
/// Hit counters per probe, indexed by the uprobe cookie: after
/// [`PROBE_SWITCH_ROWS`] rows of switches, one row of [`MAX_PROBES`]
/// counters per possible CPU.
pub const MAP_PROBE_HITS: &str = "PROBE_HITS";
/// Rows of `PROBE_HITS` before the per-CPU counters: row
/// [`PROBE_OFF_ROW`] holds each probe's off switch (non-zero: its program
/// returns at once, uncounted: its link is being closed), row
/// [`PROBE_OFF_RUNS_ROW`] the runs that returned so (for the programs' run
/// time, which the kernel counts for them too). Row [`PROBE_GRANT_ROW`]
/// holds the grants ([`ProbeSpec::grant`]): hits a group of probes may
/// still run in full, as an `i64` the programs count down; row
/// [`PROBE_DENIED_ROW`] the runs, per probe, that found their grant spent
/// and returned at once.
pub const PROBE_SWITCH_ROWS: u32 = 4;
/// See [`PROBE_SWITCH_ROWS`].
pub const PROBE_OFF_ROW: u32 = 0;
/// See [`PROBE_SWITCH_ROWS`].
pub const PROBE_OFF_RUNS_ROW: u32 = 1;
/// See [`PROBE_SWITCH_ROWS`].
pub const PROBE_GRANT_ROW: u32 = 2;
/// See [`PROBE_SWITCH_ROWS`].
pub const PROBE_DENIED_ROW: u32 = 3;
/// A grant of at least this many runs is unbounded (the limit lifted):
/// the programs run in full without counting it down (no atomic add on a
/// word shared by every CPU for each call).
pub const GRANT_UNBOUNDED: u64 = 1 << 62;
/// Per-CPU error and health counters, indexed by [`Counter`].
pub const MAP_COUNTERS: &str = "COUNTERS";
/// Creation records, keyed by map address: [`CreateRecord`]. An LRU hash, so
/// thousands of short-lived maps per second cost no user-space work at all.
pub const MAP_CREATED: &str = "CREATED";
/// Type pointer seen at a creation function's entry, keyed by goroutine
/// pointer, until the matching RET-site probe consumes it.
pub const MAP_PENDING_CREATE: &str = "PENDING_CREATE";
/// User stacks, as `bpf_get_stackid` stores them.
pub const MAP_STACKS: &str = "STACKS";
/// Write-path hits aggregated in the kernel (a per-CPU LRU hash), keyed by [`WriteKey`]: [`WriteStat`].
/// Only filled while a write window is open; user space drains it.
pub const MAP_WRITES: &str = "WRITES";

/// Names of the eBPF programs; one per probe role.
pub mod programs {
    /// Entry of a map-creating function that takes the type (`makemap`, `NewMap`).
    pub const CREATE_ENTRY: &str = "map_create_entry";
    /// RET site of a map-creating function: the map pointer is the result.
    pub const CREATE_RET: &str = "map_create_ret";
    /// Entry of a growth function (`hashGrow`, Swiss `growToTable`, `grow`, `split`).
    pub const GROW: &str = "map_grow";
    /// `runtime.gcSweep` entry: the cycle has been marked.
    pub const GC_SWEEP: &str = "gc_sweep";
    /// Entry of a write-path function (`mapassign*`, `mapdelete*`, Swiss
    /// `(*Map).Delete`), attached only in bounded windows.
    pub const WRITE: &str = "map_write";
    /// Entry of a finalizer or cleanup function (`SetFinalizer`,
    /// `queuefinalizer`, `addCleanup`, the cleanup queue, `Cleanup.Stop`).
    pub const FIN: &str = "fin_hook";
    /// Programs whose probes are attached and detached as groups (the
    /// governed probes: creation, growth, finalizers and cleanups; the write
    /// window): also loaded for uprobe_multi links.
    pub const GROUPED: &[&str] = &[CREATE_ENTRY, CREATE_RET, GROW, FIN, WRITE];
    /// Every uprobe program the object must contain.
    pub const ALL: [&str; 6] = [CREATE_ENTRY, CREATE_RET, GROW, GC_SWEEP, WRITE, FIN];
    /// Raw tracepoint program on [`EXEC_TRACEPOINT`], loaded and attached
    /// only in node-wide mode (`--all`): each exec on the host sends its
    /// process id, so new processes are found without scanning `/proc`.
    pub const EXEC: &str = "exec_seen";
    /// The scheduler tracepoint [`EXEC`] is attached to (by name: a raw
    /// tracepoint needs no tracefs).
    pub const EXEC_TRACEPOINT: &str = "sched_process_exec";
}

/// Every map the object must contain.
pub const ALL_MAPS: [&str; 11] = [
    MAP_EVENTS,
    MAP_WRITES,
    MAP_PENDING_CREATE,
    MAP_PROC_CONFIG,
    MAP_GC_WAKE,
    MAP_PROBE_SPECS,
    MAP_PROBE_HITS,
    MAP_COUNTERS,
    MAP_CREATED,
    MAP_STACKS,
    MAP_PIDNS,
];

/// Maximum number of probes registered at once, over every traced process
/// (size of the spec and hit arrays): about 20 per process, so that
/// [`MAX_PROCS`] processes fit.
pub const MAX_PROBES: u32 = 2048;
/// Processes configured at once (entries of the per-process configuration).
pub const MAX_PROCS: u32 = 64;
/// Entries in the creation LRU.
pub const CREATED_ENTRIES: u32 = 1 << 17;
/// Entries in the stack-trace map.
pub const STACK_ENTRIES: u32 = 1 << 14;
/// Ring buffer size in bytes.
pub const EVENTS_BYTES: u32 = 1 << 23;
/// Entries in the write-path aggregation map.
pub const WRITES_ENTRIES: u32 = 1 << 13;

/// Sentinel for "this register is not used" in [`ProbeSpec`].
pub const NO_ARG: u8 = 0xff;

/// Event discriminants. Never reuse a number; retire one with a comment.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// A map grew (`hashGrow`, Swiss table growth or split).
    MapGrow = 1,
    // 2 was `GcStart` (`runtime.gcStart` entered), retired: the forced
    // cycles are counted from `memstats.numforcedgc` at the marked event.
    /// `runtime.gcSweep` was entered: the cycle's marking is done.
    GcMarked = 3,
    /// A finalizer or cleanup function was entered: [`FinEvent`].
    Fin = 4,
    /// A process on the host ran `execve` (node-wide mode): the header
    /// alone, its `tgid` the process.
    Exec = 5,
}

impl TryFrom<u32> for EventKind {
    type Error = u32;
    fn try_from(v: u32) -> Result<Self, u32> {
        match v {
            1 => Ok(Self::MapGrow),
            3 => Ok(Self::GcMarked),
            4 => Ok(Self::Fin),
            5 => Ok(Self::Exec),
            other => Err(other),
        }
    }
}

/// Health counters kept per CPU in [`MAP_COUNTERS`].
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// An event was dropped because the ring buffer was full.
    RingBufFull = 0,
    /// A `bpf_probe_read_user` failed.
    ReadFailed = 1,
    /// `bpf_get_stackid` failed.
    StackFailed = 2,
    /// A probe fired for a process with no configuration.
    NoConfig = 3,
    /// A probe fired with a cookie outside the spec table.
    BadCookie = 4,
    /// A RET-site probe found no pending entry record.
    CreateNoEntry = 5,
    /// Creation records written.
    Created = 6,
    /// A write-path hit found [`MAP_WRITES`] full.
    WritesFull = 7,
    /// A probe with [`ProbeSpec::ret_delta`] fired for another caller.
    OtherCaller = 8,
    /// A hit on a stack-check branch that is about to be taken: the
    /// function calls morestack and restarts, so the hit is repeated and
    /// this one is left out (see [`ProbeSpec::restart_cond`]).
    Restart = 9,
    /// A creation recorded its site without walking the stack (see
    /// [`stacks::walks_stack`]).
    StackNotWalked = 10,
}

/// Number of [`Counter`] slots.
pub const COUNTER_SLOTS: u32 = 11;

/// Role of a probe: selects the eBPF program.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeRole {
    /// See [`programs::CREATE_ENTRY`].
    CreateEntry = 1,
    /// See [`programs::CREATE_RET`].
    CreateRet = 2,
    /// See [`programs::GROW`].
    Grow = 3,
    // 4 was `GcStart`, retired with its program.
    /// See [`programs::GC_SWEEP`].
    GcSweep = 5,
    /// See [`programs::WRITE`].
    Write = 6,
    /// See [`programs::FIN`].
    Fin = 7,
}

impl ProbeRole {
    /// The eBPF program that serves this role.
    #[must_use]
    pub const fn program(self) -> &'static str {
        match self {
            Self::CreateEntry => programs::CREATE_ENTRY,
            Self::CreateRet => programs::CREATE_RET,
            Self::Grow => programs::GROW,
            Self::GcSweep => programs::GC_SWEEP,
            Self::Write => programs::WRITE,
            Self::Fin => programs::FIN,
        }
    }
}

/// What a probe reads, indexed by its cookie in [`MAP_PROBE_SPECS`].
///
/// Register numbers are positions in Go's ABIInternal integer sequence
/// (amd64: RAX RBX RCX RDI RSI R8 R9 R10 R11; arm64: R0..R15), not the C
/// convention that `ProbeContext::arg` follows.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProbeSpec {
    /// [`ProbeRole`] as u32.
    pub role: u32,
    /// Argument register holding the map pointer, or [`NO_ARG`].
    pub map_arg: u8,
    /// Argument register holding the map type descriptor, or [`NO_ARG`].
    pub type_arg: u8,
    /// Argument register holding a size (new capacity, hint), or [`NO_ARG`].
    pub size_arg: u8,
    /// Role-specific: the [`GrowKind`] for [`ProbeRole::Grow`]; for
    /// [`ProbeRole::CreateRet`], 1 when a [`ProbeRole::CreateEntry`] probe on
    /// the same function left a pending record to consume.
    pub aux: u8,
    /// When not [`NO_SP_OFF`]: the map pointer is the word at `SP + map_sp_off`
    /// (a caller's stack slot), not a register.
    pub map_sp_off: i32,
    /// Where the return address is: [`NO_SP_OFF`] at a function entry or a
    /// RET (`[SP]` on amd64, the link register on arm64); otherwise the word
    /// at `SP + ret_sp_off` (a probe inside the function body).
    pub ret_sp_off: i32,
    /// When not 0: the probe counts only when the return address minus the
    /// probed address equals this (the function was called from one known
    /// call site), bias-free because both are in the same binary.
    pub ret_delta: i64,
    /// When not [`NO_RESTART`]: the probe sits on the conditional branch of
    /// the function's stack check, which is taken when the goroutine stack
    /// must grow (or a preemption is pending). The function then calls
    /// morestack and restarts from its entry, so the probe fires again:
    /// a hit whose branch is about to be taken is left out, in the kernel,
    /// and the hit that runs the function's body counts once.
    /// [`RESTART_COND`] plus the branch's condition code: on amd64 the
    /// `Jcc` condition nibble (`0x6` = JBE/JLS), on arm64 the `B.cond`
    /// field (`0x9` = B.LS).
    pub restart_cond: u8,
    /// Zero.
    pub _pad: [u8; 3],
    /// When not 0: the probe belongs to a group whose full runs are
    /// granted in the kernel: slot `grant - 1` of row [`PROBE_GRANT_ROW`]
    /// holds how many the group may still run (an `i64`, set by the tracer
    /// at each check of its budget, counted down by the programs). A run
    /// that finds it at 0 or below returns at once, counted in row
    /// [`PROBE_DENIED_ROW`]: a burst between two checks costs the trap, not
    /// the stack walk and the event.
    pub grant: u32,
}
const _: () = assert!(core::mem::size_of::<ProbeSpec>() == 32);
const _: () = assert!(core::mem::offset_of!(ProbeSpec, grant) == 28);

/// [`ProbeSpec::restart_cond`]: the probe is not on a stack-check branch.
pub const NO_RESTART: u8 = 0;
/// [`ProbeSpec::restart_cond`]: flag bit set with a condition code.
pub const RESTART_COND: u8 = 0x80;

/// [`ProbeSpec::map_sp_off`] and [`ProbeSpec::ret_sp_off`]: not used.
pub const NO_SP_OFF: i32 = -1;

impl Default for ProbeSpec {
    /// No role, no registers, no stack slots.
    fn default() -> Self {
        Self {
            role: 0,
            map_arg: NO_ARG,
            type_arg: NO_ARG,
            size_arg: NO_ARG,
            aux: 0,
            map_sp_off: NO_SP_OFF,
            ret_sp_off: NO_SP_OFF,
            ret_delta: 0,
            restart_cond: NO_RESTART,
            _pad: [0; 3],
            grant: 0,
        }
    }
}

/// Which growth function fired.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GrowKind {
    /// Not a growth probe.
    None = 0,
    /// hmap `runtime.hashGrow`.
    HashGrow = 1,
    /// Swiss `(*Map).growToSmall`.
    ToSmall = 2,
    /// Swiss `(*Map).growToTable`.
    ToTable = 3,
    /// Swiss `(*table).grow`.
    TableGrow = 4,
    /// Swiss `(*table).split`.
    TableSplit = 5,
    /// hmap: `runtime.makeBucketArray` allocating a bucket array too large
    /// for a size class (32 KiB or more), called by `hashGrow`; size is the
    /// new B.
    BucketArray = 6,
}

/// What a write-path probe counts ([`ProbeSpec::aux`] of [`ProbeRole::Write`]).
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteKind {
    /// `mapassign*`: an insert or an update.
    Assign = 1,
    /// `mapdelete*`, Swiss `(*Map).Delete`.
    Delete = 2,
}

/// Which finalizer or cleanup function fired ([`ProbeSpec::aux`] of
/// [`ProbeRole::Fin`]). The registers mean different things per kind and Go
/// version; user space interprets them (go-runtime.md section 5).
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinKind {
    /// `runtime.SetFinalizer(obj any, finalizer any)`: a0 obj type, a1 obj,
    /// a2 finalizer type (0: the finalizer is removed).
    SetFinalizer = 1,
    /// `runtime.queuefinalizer(p, fn, nret, fint, ot)`: a0 p (0 on 1.24
    /// for a cleanup, then a1 is its funcval).
    QueueFinalizer = 2,
    /// `runtime.addCleanup(p, …)`: a0 p; a1 the funcval (1.24, 1.25) or
    /// a3 the argument box (1.26+).
    AddCleanup = 3,
    /// `runtime.(*cleanupQueue).enqueue`: a1 the funcval (1.25) or a3 the
    /// argument box (1.26+).
    CleanupQueued = 4,
    /// `runtime.Cleanup.Stop`: a0 id, a1 ptr.
    CleanupStop = 5,
    /// Not a finalizer: `internal/sync.(*HashTrieMap[…]).initSlow`, a new
    /// `sync.Map` (Go 1.24+): a0 the instance. The program sends the
    /// argument registers whatever the kind, so this needs no program of
    /// its own (and no ABI change: the value is only passed through).
    SyncMapInit = 6,
}

/// Key of [`MAP_WRITES`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct WriteKey {
    /// Map header address.
    pub map_addr: u64,
    /// Return address into the code that wrote (the insert site).
    pub caller_pc: u64,
    /// Process id (tgid).
    pub tgid: u32,
    /// [`WriteKind`] as u32.
    pub kind: u32,
}
const _: () = assert!(core::mem::size_of::<WriteKey>() == 24);

/// Value of [`MAP_WRITES`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteStat {
    /// Hits.
    pub count: u64,
    /// Map type descriptor seen with the first hit.
    pub type_ptr: u64,
}
const _: () = assert!(core::mem::size_of::<WriteStat>() == 16);

/// Per-process configuration in [`MAP_PROC_CONFIG`]. Addresses are run-time
/// virtual addresses (load bias already added); zero means "unknown, skip".
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcConfig {
    /// Address of `gcController.heapMarked`.
    pub heap_marked_addr: u64,
    /// Address of `gcController.heapLive`.
    pub heap_live_addr: u64,
    /// Address of `work.cycles` (u32).
    pub work_cycles_addr: u64,
    /// Address of `memstats.numgc` (u32).
    pub numgc_addr: u64,
    /// Offset of `goid` in `runtime.g`, or 0.
    pub goid_offset: u32,
    /// Offset of `hmap.B` (hmap builds), or 0: lets `hashGrow` skip small maps.
    pub hmap_b_offset: u32,
    /// Growth events for tables smaller than this many slots (after growth)
    /// are not sent: short-lived small maps cost no user-space work.
    pub min_grow_slots: u32,
    /// Reserved, zero.
    pub _pad: u32,
}
const _: () = assert!(core::mem::size_of::<ProcConfig>() == 48);

/// Key of [`MAP_CREATED`] and [`MAP_PENDING_CREATE`]: an address (map header
/// or goroutine) within one process.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct AddrKey {
    /// The address.
    pub addr: u64,
    /// Process id (tgid).
    pub tgid: u32,
    /// Reserved, zero.
    pub _pad: u32,
}
const _: () = assert!(core::mem::size_of::<AddrKey>() == 16);

/// What a creation function's entry leaves for its RET-site probe.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PendingCreate {
    /// Map type descriptor.
    pub type_ptr: u64,
    /// Size hint.
    pub hint: u64,
}
const _: () = assert!(core::mem::size_of::<PendingCreate>() == 16);

/// A creation record in [`MAP_CREATED`], keyed by map address.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CreateRecord {
    /// `bpf_ktime_get_ns` at creation.
    pub ts_ns: u64,
    /// Map type descriptor, or 0 (`makemap_small` takes none).
    pub type_ptr: u64,
    /// Return address of the creating call (the immediate caller).
    pub caller_pc: u64,
    /// Size hint passed to `make`, or 0.
    pub hint: u64,
    /// Goroutine id, or 0.
    pub goid: u64,
    /// Process id (tgid).
    pub tgid: u32,
    /// User stack id in [`MAP_STACKS`], or -1.
    pub stack_id: i32,
}
const _: () = assert!(core::mem::size_of::<CreateRecord>() == 48);

/// Common header of every ring-buffer event.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EventHeader {
    /// [`EventKind`] as u32.
    pub kind: u32,
    /// Process id (tgid).
    pub tgid: u32,
    /// `bpf_ktime_get_ns`.
    pub ts_ns: u64,
}
const _: () = assert!(core::mem::size_of::<EventHeader>() == 16);

/// [`EventKind::MapGrow`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MapGrowEvent {
    /// Header.
    pub hdr: EventHeader,
    /// Map header address.
    pub map_addr: u64,
    /// Type descriptor address.
    pub type_ptr: u64,
    /// Immediate caller of the growth function.
    pub caller_pc: u64,
    /// Size argument (Swiss `grow`'s new capacity), or 0.
    pub size: u64,
    /// Goroutine id, or 0.
    pub goid: u64,
    /// User stack id, or -1.
    pub stack_id: i32,
    /// Probe id (cookie).
    pub probe_id: u16,
    /// [`GrowKind`].
    pub grow_kind: u8,
    /// Reserved, zero.
    pub _pad: u8,
}
const _: () = assert!(core::mem::size_of::<MapGrowEvent>() == 64);

/// [`EventKind::GcMarked`]: the runtime's GC counters as `runtime.gcSweep`
/// is entered. The two `memstats` counters do not count this cycle yet
/// (`gcMarkTermination` increments them after `gcSweep`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GcEvent {
    /// Header.
    pub hdr: EventHeader,
    /// `work.cycles` (started cycles), or `u32::MAX` when unknown.
    pub work_cycles: u32,
    /// `memstats.numgc` (completed cycles), or `u32::MAX` when unknown.
    pub numgc: u32,
    /// `gcController.heapMarked`, or 0 when unknown.
    pub heap_marked: u64,
    /// `gcController.heapLive`, or 0 when unknown.
    pub heap_live: u64,
    /// `memstats.numforcedgc` (completed cycles forced by `runtime.GC`),
    /// or `u32::MAX` when unknown: the field after `numgc` on Go 1.19 to
    /// 1.27, read with it.
    pub numforcedgc: u32,
    /// Reserved, zero.
    pub _pad: u32,
}
const _: () = assert!(core::mem::size_of::<GcEvent>() == 48);

/// [`EventKind::Fin`]: the first five ABIInternal argument registers.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FinEvent {
    /// Header.
    pub hdr: EventHeader,
    /// Argument registers 0 to 4 (amd64 RAX RBX RCX RDI RSI; arm64 R0-R4).
    pub args: [u64; 5],
    /// Probe id (cookie).
    pub probe_id: u16,
    /// [`FinKind`].
    pub fin_kind: u8,
    /// Reserved, zero.
    pub _pad: [u8; 5],
}
const _: () = assert!(core::mem::size_of::<FinEvent>() == 64);

/// The PID namespace whose pids the programs report and match (the
/// tracer's), as `stat(/proc/self/ns/pid)` gives it: all zero for the
/// initial namespace, where the kernel's own tgid is that pid already.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PidNs {
    /// `st_dev` of the namespace file.
    pub dev: u64,
    /// `st_ino` of the namespace file.
    pub ino: u64,
}
const _: () = assert!(core::mem::size_of::<PidNs>() == 16);

#[cfg(feature = "user")]
mod pod {
    // SAFETY: as below.
    unsafe impl aya::Pod for super::PidNs {}
    // SAFETY: as below.
    unsafe impl aya::Pod for super::WriteKey {}
    // SAFETY: as below.
    unsafe impl aya::Pod for super::WriteStat {}
    // SAFETY: each type is repr(C), Copy, has no implicit padding (checked by
    // the size assertions above) and every bit pattern is a valid value.
    unsafe impl aya::Pod for super::ProbeSpec {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::ProcConfig {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::CreateRecord {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::AddrKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::PendingCreate {}
    // SAFETY: as above (the ring-buffer records user space decodes).
    unsafe impl aya::Pod for super::EventHeader {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::MapGrowEvent {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::GcEvent {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::FinEvent {}
}

pub mod governor;
pub mod stacks;
