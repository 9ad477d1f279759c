//! eBPF programs of mapleak-trace: uprobes on the Go runtime, and a raw
//! tracepoint on exec for node-wide mode.
//!
//! Every program is attached by user space at an address chosen by the probe
//! plan, with a cookie equal to the probe's id. The cookie indexes
//! `PROBE_SPECS`, which tells the program which ABIInternal registers hold the
//! map and its type, so one object serves every Go version.
//!
//! Rules for this file (see DESIGN.md section 3): no loops, only rare events
//! go to the ring buffer; creation records are aggregated in an LRU hash that
//! user space reads only for maps that grow.
//!
//! Logging (aya-log) only on failure paths and rare events, never on a path
//! every hit takes. It is off unless `mapleak-trace --bpf-log`: each call
//! first compares its level with the global `AYA_LOG_LEVEL`, which the
//! loader sets (0 = off) in `.rodata`; aya freezes that map, so the verifier
//! knows the value, follows only the branch taken and removes the logging
//! code (and its loop) from the loaded program.
//!
//! # Minimum kernel version
//! 5.15 (uprobe cookies, ring buffer).
#![no_std]
#![no_main]
// Inline assembly for the atomic add in `bump` (as aya-ebpf does for its
// bounds checks).
#![feature(asm_experimental_arch)]

use aya_ebpf::{
    EbpfContext,
    bindings::{BPF_F_MMAPABLE, BPF_F_USER_STACK},
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns, bpf_probe_read_user, generated},
    macros::{map, raw_tracepoint, uprobe},
    maps::{Array, HashMap, LruHashMap, LruPerCpuHashMap, PerCpuArray, RingBuf},
    programs::{ProbeContext, RawTracePointContext},
};
use aya_log_ebpf::{debug, error, warn};
use tracer_common::{
    ABI_VERSION, AddrKey, COUNTER_SLOTS, CREATED_ENTRIES, Counter, CreateRecord, EVENTS_BYTES,
    EventHeader, EventKind, FinEvent, GRANT_UNBOUNDED, GcEvent, GrowKind, MAX_PROBES, MAX_PROCS,
    MapGrowEvent, NO_ARG, NO_SP_OFF, PROBE_DENIED_ROW, PROBE_GRANT_ROW, PROBE_OFF_ROW,
    PROBE_OFF_RUNS_ROW, PROBE_SWITCH_ROWS, PendingCreate, PidNs, ProbeSpec, ProcConfig,
    RESTART_COND, STACK_ENTRIES, WRITES_ENTRIES, WriteKey, WriteStat,
    stacks::{SITE_SLOTS, site_slot, walks_stack},
};

mod regs;
mod stack_map;

use stack_map::ShallowStackTrace;

/// `bpf_ringbuf_submit` flag: do not wake the reader.
const BPF_RB_NO_WAKEUP: u64 = 1;
/// `bpf_ringbuf_submit` flag: wake the reader now.
const BPF_RB_FORCE_WAKEUP: u64 = 2;
/// `bpf_ringbuf_query` flag: bytes written and not yet consumed.
const BPF_RB_AVAIL_DATA: u64 = 0;
/// Unread bytes from which an event wakes the tracer at once (a quarter of
/// the buffer: a burst still has three quarters to fill while it drains).
const WAKE_AT_BYTES: u64 = EVENTS_BYTES as u64 / 4;

/// The submit flag of every event: no wakeup, unless the buffer is filling.
/// A wakeup costs the probed thread far more than its hit (an irq_work and
/// a cross-CPU wakeup of the tracer, each a VM exit under a hypervisor):
/// with the kernel's default (wake when the reader has caught up), a
/// service growing 4,000 large maps a second paid one for nearly every
/// event. The tracer drains the buffer at least every 100 ms anyway.
#[inline(always)]
fn wakeup_flag() -> u64 {
    if EVENTS.query(BPF_RB_AVAIL_DATA) >= WAKE_AT_BYTES {
        BPF_RB_FORCE_WAKEUP
    } else {
        BPF_RB_NO_WAKEUP
    }
}

#[map(name = "EVENTS")]
static EVENTS: RingBuf = RingBuf::with_byte_size(EVENTS_BYTES, 0);

#[map(name = "PROC_CONFIG")]
static PROC_CONFIG: HashMap<u32, ProcConfig> = HashMap::with_max_entries(MAX_PROCS, 0);

#[map(name = "GC_WAKE")]
static GC_WAKE: HashMap<u32, u64> = HashMap::with_max_entries(MAX_PROCS, 0);

#[map(name = "PIDNS")]
static PIDNS: Array<PidNs> = Array::with_max_entries(1, 0);

#[map(name = "PROBE_SPECS")]
static PROBE_SPECS: Array<ProbeSpec> = Array::with_max_entries(MAX_PROBES, 0);

/// Hits per probe, one row of [`MAX_PROBES`] counters per possible CPU
/// (slot `(PROBE_SWITCH_ROWS + cpu) * MAX_PROBES + cookie`): each CPU adds to
/// its own row, and the tracer maps the array into its memory and reads it
/// without a system call (a per-CPU array is read with one, copying every
/// CPU's value of every probe, for each check of the budget). User space
/// sets the number of rows at load time; a CPU beyond them does not count.
/// The first rows are the probes' off switches and their runs while off
/// ([`tracer_common::PROBE_SWITCH_ROWS`]), which the tracer writes and
/// reads through the same mapping.
#[map(name = "PROBE_HITS")]
static PROBE_HITS: Array<u64> = Array::with_max_entries(MAX_PROBES, BPF_F_MMAPABLE);

#[map(name = "COUNTERS")]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTER_SLOTS, 0);

#[map(name = "CREATED")]
static CREATED: LruHashMap<AddrKey, CreateRecord> =
    LruHashMap::with_max_entries(CREATED_ENTRIES, 0);

#[map(name = "PENDING_CREATE")]
static PENDING_CREATE: LruHashMap<AddrKey, PendingCreate> = LruHashMap::with_max_entries(4096, 0);

#[map(name = "STACKS")]
static STACKS: ShallowStackTrace = ShallowStackTrace::with_max_entries(STACK_ENTRIES);

/// Calls by creation site, per CPU ([`tracer_common::stacks`]).
#[map(name = "SITE_CALLS")]
static SITE_CALLS: PerCpuArray<u32> = PerCpuArray::with_max_entries(SITE_SLOTS, 0);

#[map(name = "WRITES")]
static WRITES: LruPerCpuHashMap<WriteKey, WriteStat> =
    LruPerCpuHashMap::with_max_entries(WRITES_ENTRIES, 0);

/// Adds one to a `u64` slot of a per-CPU map (or of a CPU's own row) with a BPF atomic add
/// (`lock *(u64 *)(r + 0) += r`, the instruction once called XADD).
///
/// A plain `*slot += 1` is not enough: uprobe programs run under
/// `migrate_disable()`, not `preempt_disable()`, so on a PREEMPT kernel
/// another task on the same CPU can run the program between the load and
/// the store, and one hit is lost.
///
/// Inline assembly, because `core::sync::atomic` has no read-modify-write
/// operations on `bpfel-unknown-none` (the target spec says `atomic-cas:
/// false`, so `AtomicU64::fetch_add` does not exist there); the other way,
/// `core::intrinsics::atomic_xadd`, is an internal API whose signature
/// changes between nightlies.
#[inline(always)]
fn bump(slot: *mut u64) {
    add(slot, 1);
}

/// Adds `v` to the `u64` at `slot` atomically, wrapping (`u64::MAX`
/// subtracts one); see [`bump`].
#[inline(always)]
fn add(slot: *mut u64, v: u64) {
    // SAFETY: `slot` is a map value pointer the verifier has checked
    // (8-aligned, live for the program's run); the instruction only adds to
    // those 8 bytes.
    unsafe {
        core::arch::asm!(
            "lock *(u64 *)({slot} + 0) += {v}",
            slot = in(reg) slot,
            v = in(reg) v,
            options(nostack),
        );
    }
}

#[inline(always)]
fn count(c: Counter) {
    if let Some(slot) = COUNTERS.get_ptr_mut(c as u32) {
        bump(slot);
    }
}

/// Looks up the probe's spec by cookie and counts the hit. `None` also for
/// a hit on a stack-check branch that is about to be taken: the function
/// restarts after morestack and the probe fires again, so exactly one hit
/// per call (the one whose branch falls through into the body) is used.
/// `None`, uncounted, when the probe is switched off or its group's grant
/// is spent ([`granted`]).
#[inline(always)]
fn spec(ctx: &ProbeContext) -> Option<(u32, ProbeSpec)> {
    // SAFETY: the helper only reads the attach cookie of the current link.
    let cookie = unsafe { generated::bpf_get_attach_cookie(ctx.as_ptr()) } as u32;
    // SAFETY: the helper takes no arguments and reads the current CPU's id.
    let cpu = unsafe { generated::bpf_get_smp_processor_id() };
    let Some(s) = PROBE_SPECS.get(cookie).filter(|s| s.role != 0) else {
        count(Counter::BadCookie);
        error!(ctx, "probe cookie {} has no spec", cookie);
        return None;
    };
    if cookie < MAX_PROBES {
        // Switched off: its link is being closed (the kernel takes 10-200
        // ms to remove every breakpoint of a group, and until then each
        // call would run the program in full: a stack walk and an event).
        if PROBE_HITS
            .get(PROBE_OFF_ROW * MAX_PROBES + cookie)
            .is_some_and(|&off| off != 0)
        {
            if let Some(runs) = PROBE_HITS.get_ptr_mut(PROBE_OFF_RUNS_ROW * MAX_PROBES + cookie) {
                bump(runs);
            }
            return None;
        }
        if !granted(s.grant) {
            if let Some(runs) = PROBE_HITS.get_ptr_mut(PROBE_DENIED_ROW * MAX_PROBES + cookie) {
                bump(runs);
            }
            return None;
        }
        let row = PROBE_SWITCH_ROWS.wrapping_add(cpu);
        if let Some(hits) = PROBE_HITS.get_ptr_mut(row.wrapping_mul(MAX_PROBES) + cookie) {
            bump(hits);
        }
    }
    if s.restart_cond & RESTART_COND != 0 && regs::branch_taken(ctx, s.restart_cond) {
        count(Counter::Restart);
        return None;
    }
    Some((cookie, *s))
}

/// Whether a probe of grant `grant` ([`ProbeSpec::grant`]; 0: none) may run
/// in full, taking one run from its group's grant. The tracer sets the
/// grant from the budget's credit at each check; a burst of calls between
/// two checks (the governed probes are checked every 10-20 ms, and a busy
/// service creates thousands of maps in that time) then stops in the
/// kernel once the credit is spent, at the trap's cost, rather than running
/// a stack walk and an event for each call until the next check. The load
/// and the atomic add are apart: CPUs racing at the last runs may take a
/// few more than granted.
#[inline(always)]
fn granted(grant: u32) -> bool {
    if grant == 0 || grant > MAX_PROBES {
        return true;
    }
    let Some(left) = PROBE_HITS.get_ptr_mut(PROBE_GRANT_ROW * MAX_PROBES + (grant - 1)) else {
        return true;
    };
    // SAFETY: a map value pointer the verifier has checked, 8-aligned.
    let n = unsafe { core::ptr::read_volatile(left) } as i64;
    if n <= 0 {
        return false;
    }
    if n as u64 >= GRANT_UNBOUNDED {
        return true;
    }
    add(left, u64::MAX);
    true
}
/// The current process's pid as the tracer sees it: the kernel's own tgid,
/// or, when the tracer runs in another PID namespace (a container), the
/// pid in that namespace (0 when the process is not in it).
#[inline(always)]
fn tgid() -> u32 {
    if let Some(ns) = PIDNS.get(0)
        && ns.ino != 0
    {
        let mut info = aya_ebpf::bindings::bpf_pidns_info { pid: 0, tgid: 0 };
        // SAFETY: info is a valid bpf_pidns_info of the size given.
        let r = unsafe {
            generated::bpf_get_ns_current_pid_tgid(
                ns.dev,
                ns.ino,
                &raw mut info,
                core::mem::size_of::<aya_ebpf::bindings::bpf_pidns_info>() as u32,
            )
        };
        return if r == 0 { info.tgid } else { 0 };
    }
    (bpf_get_current_pid_tgid() >> 32) as u32
}

#[inline(always)]
fn read_u64(ctx: &ProbeContext, addr: u64) -> Option<u64> {
    if addr == 0 {
        return None;
    }
    // SAFETY: bpf_probe_read_user checks the address and fails cleanly.
    match unsafe { bpf_probe_read_user(addr as *const u64) } {
        Ok(v) => Some(v),
        Err(e) => {
            count(Counter::ReadFailed);
            warn!(
                ctx,
                "bpf_probe_read_user of 8 bytes at {:x}: error {}", addr, e
            );
            None
        }
    }
}

#[inline(always)]
fn read_u32(ctx: &ProbeContext, addr: u64) -> u32 {
    if addr == 0 {
        return u32::MAX;
    }
    // SAFETY: bpf_probe_read_user checks the address and fails cleanly.
    match unsafe { bpf_probe_read_user(addr as *const u32) } {
        Ok(v) => v,
        Err(e) => {
            count(Counter::ReadFailed);
            warn!(
                ctx,
                "bpf_probe_read_user of 4 bytes at {:x}: error {}", addr, e
            );
            u32::MAX
        }
    }
}

#[inline(always)]
fn stack_id(ctx: &ProbeContext) -> i32 {
    // SAFETY: STACKS is a stack-trace map; the helper walks the user stack.
    let id = unsafe {
        generated::bpf_get_stackid(ctx.as_ptr(), STACKS.as_ptr(), u64::from(BPF_F_USER_STACK))
    };
    if id < 0 {
        count(Counter::StackFailed);
        debug!(ctx, "bpf_get_stackid: error {}", id);
        -1
    } else {
        id as i32
    }
}

#[inline(always)]
fn goid(ctx: &ProbeContext, cfg: &ProcConfig) -> u64 {
    if cfg.goid_offset == 0 {
        return 0;
    }
    read_u64(ctx, regs::g(ctx).wrapping_add(u64::from(cfg.goid_offset))).unwrap_or(0)
}

#[inline(always)]
fn arg_or_zero(ctx: &ProbeContext, n: u8) -> u64 {
    if n == NO_ARG { 0 } else { regs::arg(ctx, n) }
}

/// The probed function's return address: at an entry or a RET where the
/// architecture keeps it, inside a body from the stack slot the plan found.
#[inline(always)]
fn caller_pc(ctx: &ProbeContext, s: &ProbeSpec) -> u64 {
    if s.ret_sp_off == NO_SP_OFF {
        regs::caller_pc(ctx)
    } else {
        read_u64(ctx, regs::sp(ctx).wrapping_add(s.ret_sp_off as u64)).unwrap_or(0)
    }
}

/// `false` when the spec names one call site and this call came from
/// another (counted).
#[inline(always)]
fn from_expected_caller(ctx: &ProbeContext, s: &ProbeSpec, caller: u64) -> bool {
    if s.ret_delta == 0 || caller.wrapping_sub(regs::ip(ctx)) == s.ret_delta as u64 {
        true
    } else {
        count(Counter::OtherCaller);
        false
    }
}

/// The map pointer: a register, or a caller's stack slot.
#[inline(always)]
fn map_of(ctx: &ProbeContext, s: &ProbeSpec) -> u64 {
    if s.map_sp_off == NO_SP_OFF {
        arg_or_zero(ctx, s.map_arg)
    } else {
        read_u64(ctx, regs::sp(ctx).wrapping_add(s.map_sp_off as u64)).unwrap_or(0)
    }
}

/// The stack of a creation from the site at return address `caller`, or
/// -1 for a call whose stack is not walked ([`walks_stack`]; counted).
#[inline(always)]
fn creation_stack_id(ctx: &ProbeContext, caller: u64) -> i32 {
    if let Some(calls) = SITE_CALLS.get_ptr_mut(site_slot(caller)) {
        // SAFETY: this CPU's copy of a live array slot. A program preempted
        // between the load and the store loses one count; harmless.
        let n = unsafe { *calls };
        unsafe { *calls = n.wrapping_add(1) };
        if !walks_stack(n) {
            count(Counter::StackNotWalked);
            return -1;
        }
    }
    stack_id(ctx)
}

/// Entry of `runtime.makemap` (hmap) or `internal/runtime/maps.NewMap`
/// (Swiss): remember the type for the RET-site probe, keyed by goroutine.
#[uprobe]
pub fn map_create_entry(ctx: ProbeContext) -> u32 {
    let Some((_, s)) = spec(&ctx) else { return 0 };
    let key = AddrKey {
        addr: regs::g(&ctx),
        tgid: tgid(),
        _pad: 0,
    };
    let pending = PendingCreate {
        type_ptr: arg_or_zero(&ctx, s.type_arg),
        hint: arg_or_zero(&ctx, s.size_arg),
    };
    let _ = PENDING_CREATE.insert(&key, &pending, 0);
    0
}

/// A creation function's map, once allocated: at a RET site (result
/// register) or at the emulated call that seeds the new map's hash (the
/// register the plan found; the return address from the frame).
#[uprobe]
pub fn map_create_ret(ctx: ProbeContext) -> u32 {
    let Some((_, s)) = spec(&ctx) else { return 0 };
    let tgid = tgid();
    let map = if s.map_arg == NO_ARG {
        regs::arg(&ctx, 0)
    } else {
        map_of(&ctx, &s)
    };
    if map == 0 {
        return 0;
    }
    let caller = caller_pc(&ctx, &s);
    let mut rec = CreateRecord {
        // SAFETY: plain helper call.
        ts_ns: unsafe { bpf_ktime_get_ns() },
        type_ptr: 0,
        caller_pc: caller,
        hint: 0,
        goid: 0,
        tgid,
        stack_id: creation_stack_id(&ctx, caller),
    };
    if s.aux == 1 {
        let gkey = AddrKey {
            addr: regs::g(&ctx),
            tgid,
            _pad: 0,
        };
        // SAFETY: the value is copied out before the entry is removed.
        match unsafe { PENDING_CREATE.get(&gkey) } {
            Some(p) => {
                rec.type_ptr = p.type_ptr;
                rec.hint = p.hint;
                let _ = PENDING_CREATE.remove(&gkey);
            }
            None => {
                count(Counter::CreateNoEntry);
                debug!(
                    &ctx,
                    "pid {}: map {:x} made with no entry record", tgid, map
                );
            }
        }
    }
    let key = AddrKey {
        addr: map,
        tgid,
        _pad: 0,
    };
    let _ = CREATED.insert(&key, &rec, 0);
    count(Counter::Created);
    0
}

/// Entry of a growth function: a rare event, sent to user space whole.
#[uprobe]
pub fn map_grow(ctx: ProbeContext) -> u32 {
    let Some((id, s)) = spec(&ctx) else { return 0 };
    let tgid = tgid();
    // SAFETY: the map is only read.
    let Some(cfg) = (unsafe { PROC_CONFIG.get(&tgid) }) else {
        count(Counter::NoConfig);
        warn!(
            &ctx,
            "pid {}: probe {} hit, no PROC_CONFIG for it", tgid, id
        );
        return 0;
    };
    // The return address is read before the small-table filter only when
    // the probe must tell its callers apart (one memory read per hit).
    let mut caller = 0;
    if s.ret_delta != 0 {
        caller = caller_pc(&ctx, &s);
        if !from_expected_caller(&ctx, &s, caller) {
            return 0;
        }
    }
    let map_addr = map_of(&ctx, &s);
    if map_addr == 0 {
        return 0;
    }
    let size = arg_or_zero(&ctx, s.size_arg);
    // Small tables first: skip before the costly stack walk.
    let min = u64::from(cfg.min_grow_slots);
    if min != 0 {
        let new_slots = if s.aux == GrowKind::HashGrow as u8 {
            if cfg.hmap_b_offset == 0 {
                u64::MAX
            } else {
                // SAFETY: bpf_probe_read_user checks the address.
                match unsafe {
                    bpf_probe_read_user((map_addr + u64::from(cfg.hmap_b_offset)) as *const u8)
                } {
                    Ok(b) if b < 40 => 16u64 << b,
                    _ => u64::MAX,
                }
            }
        } else if s.aux == GrowKind::TableGrow as u8 {
            size & 0xffff
        } else if s.aux == GrowKind::ToTable as u8 {
            16
        } else if s.aux == GrowKind::ToSmall as u8 {
            8
        } else if s.aux == GrowKind::BucketArray as u8 && s.size_arg != NO_ARG && size < 40 {
            8u64 << size
        } else {
            u64::MAX
        };
        if new_slots < min {
            return 0;
        }
    }
    if s.ret_delta == 0 {
        caller = caller_pc(&ctx, &s);
    }
    let Some(mut entry) = EVENTS.reserve::<MapGrowEvent>(0) else {
        count(Counter::RingBufFull);
        warn!(
            &ctx,
            "pid {}: ring buffer full, growth of map {:x} lost", tgid, map_addr
        );
        return 0;
    };
    let ev = MapGrowEvent {
        hdr: EventHeader {
            kind: EventKind::MapGrow as u32,
            tgid,
            // SAFETY: plain helper call.
            ts_ns: unsafe { bpf_ktime_get_ns() },
        },
        map_addr,
        type_ptr: arg_or_zero(&ctx, s.type_arg),
        caller_pc: caller,
        size,
        goid: goid(&ctx, cfg),
        stack_id: stack_id(&ctx),
        probe_id: id as u16,
        grow_kind: s.aux,
        _pad: 0,
    };
    entry.write(ev);
    entry.submit(wakeup_flag());
    0
}

/// `runtime.gcSweep` entry: marking of the cycle is complete. The one GC
/// probe: a cycle's start is not probed (`gcStart` is called more often
/// than cycles start, 480 calls a second for 385 cycles on permaps1000),
/// and what started the cycles is counted from `memstats.numforcedgc`.
#[uprobe]
pub fn gc_sweep(ctx: ProbeContext) -> u32 {
    let ctx = &ctx;
    let Some((id, _)) = spec(ctx) else { return 0 };
    let tgid = tgid();
    // SAFETY: the map is only read.
    let Some(cfg) = (unsafe { PROC_CONFIG.get(&tgid) }) else {
        count(Counter::NoConfig);
        warn!(ctx, "pid {}: probe {} hit, no PROC_CONFIG for it", tgid, id);
        return 0;
    };
    let Some(mut entry) = EVENTS.reserve::<GcEvent>(0) else {
        count(Counter::RingBufFull);
        warn!(ctx, "pid {}: ring buffer full, GC event lost", tgid);
        return 0;
    };
    // SAFETY: plain helper call.
    let ts_ns = unsafe { bpf_ktime_get_ns() };
    let hdr = EventHeader {
        kind: EventKind::GcMarked as u32,
        tgid,
        ts_ns,
    };
    // `memstats.numgc` and the `numforcedgc` after it, in one read.
    let (numgc, numforcedgc) = read_u64(ctx, cfg.numgc_addr)
        .map_or((u32::MAX, u32::MAX), |v| (v as u32, (v >> 32) as u32));
    let ev = GcEvent {
        hdr,
        work_cycles: read_u32(ctx, cfg.work_cycles_addr),
        numgc,
        heap_marked: read_u64(ctx, cfg.heap_marked_addr).unwrap_or(0),
        heap_live: read_u64(ctx, cfg.heap_live_addr).unwrap_or(0),
        numforcedgc,
        _pad: 0,
    };
    entry.write(ev);
    // A cycle's marked event wakes the tracer at once when it is ready for
    // a new sample (the sample starts on it); until then (a sample under
    // way, or the gap after it) the event waits like any other. A JSON
    // service's 60 cycles a second woke it 60 times a second when every
    // marked event did; samples come at most 10 times a second.
    // SAFETY: the map is only read.
    let flag = if ts_ns >= unsafe { GC_WAKE.get(&tgid) }.copied().unwrap_or(0) {
        BPF_RB_FORCE_WAKEUP
    } else {
        wakeup_flag()
    };
    entry.submit(flag);
    debug!(
        ctx,
        "pid {}: gc marked: work cycles {} numgc {} forced {} heap_live {}",
        tgid,
        ev.work_cycles,
        ev.numgc,
        ev.numforcedgc,
        ev.heap_live
    );
    0
}

/// Entry of a write-path function, attached only inside a write window:
/// counted in the kernel per (map, insert site), never sent as an event.
#[uprobe]
pub fn map_write(ctx: ProbeContext) -> u32 {
    let Some((_, s)) = spec(&ctx) else { return 0 };
    let key = WriteKey {
        map_addr: arg_or_zero(&ctx, s.map_arg),
        caller_pc: regs::caller_pc(&ctx),
        tgid: tgid(),
        kind: u32::from(s.aux),
    };
    if let Some(stat) = WRITES.get_ptr_mut(&key) {
        // SAFETY: `stat` is this CPU's copy of a live map value; the field
        // pointer is derived without creating a reference.
        bump(unsafe { &raw mut (*stat).count });
        return 0;
    }
    let stat = WriteStat {
        count: 1,
        type_ptr: arg_or_zero(&ctx, s.type_arg),
    };
    // Per-CPU values: this sets this CPU's copy; the others start at zero.
    // An LRU: the short-lived maps of a busy service age out.
    if let Err(e) = WRITES.insert(&key, &stat, 0) {
        count(Counter::WritesFull);
        warn!(&ctx, "write counts: insert failed: error {}", e);
    }
    0
}

/// Entry of a finalizer or cleanup function: a rare event, sent whole.
#[uprobe]
pub fn fin_hook(ctx: ProbeContext) -> u32 {
    let Some((id, s)) = spec(&ctx) else { return 0 };
    let Some(mut entry) = EVENTS.reserve::<FinEvent>(0) else {
        count(Counter::RingBufFull);
        warn!(
            &ctx,
            "ring buffer full, finalizer event of probe {} lost", id
        );
        return 0;
    };
    let ev = FinEvent {
        hdr: EventHeader {
            kind: EventKind::Fin as u32,
            tgid: tgid(),
            // SAFETY: plain helper call.
            ts_ns: unsafe { bpf_ktime_get_ns() },
        },
        args: [
            regs::arg(&ctx, 0),
            regs::arg(&ctx, 1),
            regs::arg(&ctx, 2),
            regs::arg(&ctx, 3),
            regs::arg(&ctx, 4),
        ],
        probe_id: id as u16,
        fin_kind: s.aux,
        _pad: [0; 5],
    };
    entry.write(ev);
    // Every net.Conn and os.File gets a finalizer, so a busy service makes
    // many.
    entry.submit(wakeup_flag());
    0
}

/// `sched_process_exec` (node-wide mode only): a process on the host now
/// runs a new executable. Its process id goes to user space, which checks
/// that one process instead of scanning `/proc` every second. It reads no
/// memory, and execs are rare next to map operations: tens a second on a
/// busy node, a few thousand during a build, each costing the kernel far
/// more than this program. No wakeup (unless the buffer is filling): the
/// tracer drains the buffer at least every 500 ms.
#[raw_tracepoint(tracepoint = "sched_process_exec")]
pub fn exec_seen(_ctx: RawTracePointContext) -> i32 {
    let Some(mut entry) = EVENTS.reserve::<EventHeader>(0) else {
        count(Counter::RingBufFull);
        return 0;
    };
    entry.write(EventHeader {
        kind: EventKind::Exec as u32,
        tgid: tgid(),
        // SAFETY: plain helper call.
        ts_ns: unsafe { bpf_ktime_get_ns() },
    });
    entry.submit(wakeup_flag());
    0
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    loop {}
}

/// The ABI version this object was built for, in the section
/// `tracer_common::ABI_SECTION` (see there): user space refuses to load an
/// object built for another one.
#[unsafe(link_section = "mapleak_abi")]
#[unsafe(no_mangle)]
#[used]
static MAPLEAK_ABI_VERSION: [u8; 4] = ABI_VERSION.to_le_bytes();

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
