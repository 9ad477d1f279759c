//! `bpf`: the only module that touches aya. Loads the embedded object, writes
//! per-process configuration and per-probe specs into BPF maps, attaches the
//! planned uprobes, and reads back events, creation records, stacks and
//! counters.
//!
//! Every kernel object belongs to [`Tracer`]: dropping it (or the process
//! dying, even by SIGKILL) closes the file descriptors, and the kernel
//! removes the probes. Nothing is pinned.
//!
//! With [`LoadOptions::bpf_log`], the programs' own diagnostics (aya-log)
//! are handed to the caller as a [`BpfLog`] to poll.
use std::os::fd::{AsFd as _, AsRawFd as _};

mod execs;
mod hits;
mod multi;
mod per_process;
mod run_stats;

pub use hits::{HitsReader, ProbeSwitch};
pub use run_stats::{ProgramRun, RunStats};

use anyhow::{Context as _, Result, anyhow, bail};
use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap, MapData, PerCpuArray, PerCpuHashMap, RingBuf, StackTraceMap},
    programs::{
        UProbe,
        uprobe::{UProbeAttachLocation, UProbeAttachPoint, UProbeLinkId, UProbeScope},
    },
};
use tracer_common::{
    ABI_SECTION, ABI_VERSION, AddrKey, COUNTER_SLOTS, CreateRecord, MAP_COUNTERS, MAP_CREATED,
    MAP_EVENTS, MAP_PIDNS, MAP_PROBE_HITS, MAP_PROBE_SPECS, MAP_STACKS, MAP_WRITES, MAX_PROBES,
    PidNs, ProbeSpec, WriteKey, WriteStat, programs,
};

/// The eBPF object for x86-64 targets.
pub static OBJECT_X86_64: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/x86_64/mapleak"));
/// The eBPF object for arm64 targets.
pub static OBJECT_AARCH64: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/aarch64/mapleak"));

/// The object for the architecture this binary runs on.
#[must_use]
pub fn object() -> &'static [u8] {
    if cfg!(target_arch = "aarch64") {
        OBJECT_AARCH64
    } else {
        OBJECT_X86_64
    }
}

/// One attached probe.
#[derive(Debug)]
pub struct AttachedProbe {
    /// Global probe id (the cookie).
    pub id: u32,
    /// Program name.
    pub program: &'static str,
    /// Link to detach.
    link: Option<UProbeLinkId>,
}

/// The loaded object and everything attached through it.
pub struct Tracer {
    ebpf: Ebpf,
    /// Copies of the grouped programs for uprobe_multi links (empty when
    /// the kernel has none: every probe then gets its own perf link).
    multi: multi::MultiPrograms,
    /// Why `multi` is empty, if it is.
    multi_error: Option<String>,
    events: Option<RingBuf<MapData>>,
    /// The programs' log, until the caller takes it.
    bpf_log: Option<BpfLog>,
    next_id: u32,
    /// Ids of probes released ([`Tracer::release`]), given out again
    /// before new ones: a node-wide trace sees processes come and go.
    free_ids: Vec<u32>,
    /// The probes' hit counts, mapped ([`hits::HitCounts`]), shared with
    /// the [`HitsReader`]s.
    hits: std::sync::Arc<hits::HitCounts>,
    /// `next_id`, shared with the [`HitsReader`]s (the governor's thread
    /// reads the counts of probes registered after it started).
    hits_n: std::sync::Arc<std::sync::atomic::AtomicU32>,
    /// Execs on the host are reported ([`Tracer::watch_execs`]).
    execs_watched: bool,
}

/// How [`Tracer::load_with`] loads the programs.
#[derive(Debug, Clone, Copy, Default)]
pub struct LoadOptions {
    /// Let the programs log (aya-log, at debug level and above) and keep a
    /// [`BpfLog`] to read them: see [`Tracer::take_bpf_log`]. Off, the
    /// logging code is removed by the verifier at load time.
    pub bpf_log: bool,
}

/// The programs' log level when logging is on: debug, so that every GC
/// cycle shows; trace-level calls stay compiled out by the verifier.
const BPF_LOG_LEVEL: aya_log::Level = aya_log::Level::Debug;

/// Where aya-log's ring buffer of records is (`aya_log_ebpf`'s map name).
const MAP_AYA_LOGS: &str = "AYA_LOGS";

/// The eBPF programs' log (`--bpf-log`): records written by `aya_log_ebpf`
/// calls in tracer-ebpf, read from their ring buffer.
///
/// Its file descriptor (the ring buffer's) becomes readable when records
/// are pending: a caller polls it (or registers it with an event loop) and
/// calls [`BpfLog::flush`], which prints them to stderr as `bpf: LEVEL
/// message` lines.
pub struct BpfLog {
    logger: aya_log::EbpfLogger<StderrLog>,
}

impl std::fmt::Debug for BpfLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BpfLog")
            .field("fd", &self.logger.as_raw_fd())
            .finish()
    }
}

impl BpfLog {
    /// Prints every pending record to stderr, one `bpf: ` line each.
    pub fn flush(&mut self) {
        self.logger.flush();
    }
}

impl std::os::fd::AsFd for BpfLog {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.logger.as_fd()
    }
}

impl std::os::fd::AsRawFd for BpfLog {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.logger.as_raw_fd()
    }
}

/// A `log::Log` of its own for aya-log's records (aya-log hands each record
/// to a `log::Log`): straight to stderr, whatever the process's global
/// logger is (there is none).
#[derive(Debug, Clone, Copy)]
struct StderrLog;

impl log::Log for StderrLog {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        use std::io::Write as _;
        // A closed stderr loses the line; it must not end the trace.
        let _ = writeln!(
            std::io::stderr().lock(),
            "bpf: {} {}",
            record.level(),
            record.args()
        );
    }

    fn flush(&self) {}
}

impl std::fmt::Debug for Tracer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracer")
            .field("next_id", &self.next_id)
            .finish_non_exhaustive()
    }
}

/// A link taken out to be closed (see [`close_links`]): one probe's perf
/// event, or a uprobe_multi link holding a group of probes.
#[derive(Debug)]
pub enum Link {
    /// One probe (closed when dropped).
    Perf(aya::programs::uprobe::UProbeLink),
    /// A group (closed when dropped).
    Multi(std::os::fd::OwnedFd),
}

/// Closes links on a thread, in the given order, and returns at once; the
/// handle finishes when every probe is gone.
///
/// Closing a uprobe's perf event removes its breakpoint first, then waits
/// for RCU grace periods, and the kernel does all of it under one global
/// mutex (`event_mutex`), so closes serialize however many threads issue
/// them: 70-150 ms each here, about 1 s for a dozen. A breakpoint that
/// waits its turn keeps trapping (the program no longer runs), so the
/// caller puts the busiest probe first and closes nothing else while the
/// busy ones wait.
///
/// A uprobe_multi link removes all its breakpoints before it waits, and
/// waits outside any global lock: each is closed on a thread of its own,
/// so that every group's breakpoints go at once rather than one group per
/// grace period (closed one after the other, a window and the governed
/// probes' four links took 220 ms to clear on creators, Go 1.26, the
/// busiest link 50 ms, and their calls meanwhile cost 48 ms of CPU).
#[must_use]
pub fn close_links(links: Vec<Link>) -> Option<std::thread::JoinHandle<()>> {
    if links.is_empty() {
        return None;
    }
    std::thread::Builder::new()
        .name("detach".into())
        .spawn(move || {
            std::thread::scope(|s| {
                let mut serial = Vec::new();
                for l in links {
                    match l {
                        Link::Multi(fd) => {
                            let spawned = std::thread::Builder::new()
                                .name("detach-multi".into())
                                .spawn_scoped(s, move || drop(fd));
                            // No thread to be had: closed here, in turn.
                            if let Err(e) = spawned {
                                log::debug!("closing a probe group in turn: {e}");
                            }
                        }
                        perf @ Link::Perf(_) => serial.push(perf),
                    }
                }
                for l in serial {
                    drop(l);
                }
            });
        })
        .ok()
}

/// A uprobe to attach: where, with which program and spec.
#[derive(Debug, Clone)]
pub struct ProbeRequest {
    /// Program name (see `tracer_common::programs`).
    pub program: &'static str,
    /// File offset of the instruction in the executable.
    pub file_offset: u64,
    /// What the program reads.
    pub spec: ProbeSpec,
}

/// `PROC_PID_INIT_INO`: the inode of the initial PID namespace.
const INIT_PID_NS_INO: u64 = 0xEFFF_FFFC;

/// This process's PID namespace, zero for the initial one (or when it
/// cannot be read: the kernel's tgid is then used as it is).
fn own_pid_namespace() -> PidNs {
    use std::os::unix::fs::MetadataExt as _;
    match std::fs::metadata("/proc/self/ns/pid") {
        Ok(m) if m.ino() != INIT_PID_NS_INO => PidNs {
            dev: m.dev(),
            ino: m.ino(),
        },
        _ => PidNs::default(),
    }
}

impl Tracer {
    /// Loads the embedded object and its programs into the kernel, with the
    /// programs' logging off.
    pub fn load() -> Result<Self> {
        Self::load_with(LoadOptions::default())
    }

    /// Loads the embedded object and its programs into the kernel.
    pub fn load_with(opts: LoadOptions) -> Result<Self> {
        let obj = object();
        if obj.is_empty() {
            bail!(
                "this mapleak-trace was built without its eBPF object (MAPLEAK_SKIP_EBPF=1): rebuild after running scripts/setup.sh"
            );
        }
        check_abi(obj)?;
        // The log level is a global in `.rodata`, which aya freezes after
        // writing it: the verifier then knows it and drops the logging
        // code of the levels it disables (all of them when 0).
        let level: u8 = if opts.bpf_log {
            BPF_LOG_LEVEL.into()
        } else {
            0
        };
        let mut loader = EbpfLoader::new();
        loader.override_global(aya_log::LEVEL, &level, true);
        if !opts.bpf_log {
            // The records' ring buffer stays empty: one page, not 128 KiB.
            loader.map_max_entries(MAP_AYA_LOGS, 1);
        }
        // A row of hit counts per possible CPU (the programs index it by
        // the CPU they run on).
        let cpus = aya::util::nr_cpus()
            .map_err(|(path, e)| anyhow!("reading the possible CPUs from {path}: {e}"))?;
        let hit_slots = hits::slots(cpus)
            .ok_or_else(|| anyhow!("{cpus} possible CPUs: too many rows of hit counts"))?;
        loader.map_max_entries(MAP_PROBE_HITS, hit_slots);
        let mut ebpf = loader
            .load(obj)
            .context("loading the eBPF object into the kernel")?;
        for name in programs::ALL {
            let prog: &mut UProbe = ebpf
                .program_mut(name)
                .ok_or_else(|| anyhow!("eBPF program {name} missing from the object"))?
                .try_into()?;
            prog.load()
                .with_context(|| format!("verifying eBPF program {name}"))?;
        }
        // MAPLEAK_NO_UPROBE_MULTI: the pre-6.6 path (tests, or a kernel
        // whose uprobe_multi misbehaves).
        let (multi, multi_error) = if std::env::var_os("MAPLEAK_NO_UPROBE_MULTI").is_some() {
            (
                multi::MultiPrograms::default(),
                Some("disabled by MAPLEAK_NO_UPROBE_MULTI".to_owned()),
            )
        } else {
            match multi::MultiPrograms::load(obj, &ebpf, programs::GROUPED) {
                Ok(m) => (m, None),
                Err(e) => (multi::MultiPrograms::default(), Some(format!("{e:#}"))),
            }
        };
        // Pids as this process sees them, in the programs too (a tracer in
        // a container with its own PID namespace).
        let ns = own_pid_namespace();
        if ns != PidNs::default() {
            let mut m: Array<_, PidNs> = Array::try_from(
                ebpf.map_mut(MAP_PIDNS)
                    .ok_or_else(|| anyhow!("map {MAP_PIDNS} missing"))?,
            )?;
            m.set(0, ns, 0).context("writing the PID namespace")?;
        }
        let events = RingBuf::try_from(
            ebpf.take_map(MAP_EVENTS)
                .ok_or_else(|| anyhow!("map {MAP_EVENTS} missing"))?,
        )?;
        let hits = {
            let map = ebpf
                .map(MAP_PROBE_HITS)
                .ok_or_else(|| anyhow!("map {MAP_PROBE_HITS} missing"))?;
            let fd = multi::map_fd(map).ok_or_else(|| anyhow!("map {MAP_PROBE_HITS}: no fd"))?;
            // SAFETY: fd is open (the map is alive) for the duration of the call.
            let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
            hits::HitCounts::map(fd, cpus).with_context(|| {
                format!("mapping the hit counts ({MAP_PROBE_HITS}, {cpus} CPUs) into memory")
            })?
        };
        // After the uprobe_multi copies: they look up every map by name.
        let bpf_log = if opts.bpf_log {
            let logger = aya_log::EbpfLogger::init_with_logger(&mut ebpf, StderrLog)
                .context("reading the eBPF programs' log")?;
            Some(BpfLog { logger })
        } else {
            None
        };
        Ok(Self {
            ebpf,
            multi,
            multi_error,
            events: Some(events),
            bpf_log,
            next_id: 0,
            free_ids: Vec::new(),
            hits: std::sync::Arc::new(hits),
            hits_n: std::sync::Arc::default(),
            execs_watched: false,
        })
    }

    /// The programs' log, once: `Some` when loaded with
    /// [`LoadOptions::bpf_log`]. The caller polls its descriptor and calls
    /// [`BpfLog::flush`]; the programs keep logging into the ring buffer
    /// whether or not anyone reads it (records that do not fit are dropped).
    pub fn take_bpf_log(&mut self) -> Option<BpfLog> {
        self.bpf_log.take()
    }

    /// Gives the ids of probes whose links are closed back, for
    /// [`Tracer::register`] to hand out again, with their hit counts set to
    /// zero (a budget starts counting a new probe from zero).
    pub fn release(&mut self, ids: impl IntoIterator<Item = u32>) {
        for id in ids {
            self.hits.zero(id);
            if !self.free_ids.contains(&id) {
                self.free_ids.push(id);
            }
        }
    }

    /// Attaches `req` to the executable at `exe` (normally `/proc/PID/exe`)
    /// for process `pid` only. Returns the probe's global id.
    pub fn attach(
        &mut self,
        exe: &std::path::Path,
        pid: u32,
        req: &ProbeRequest,
    ) -> Result<AttachedProbe> {
        let mut p = self.register(req)?;
        self.reattach(exe, pid, &mut p, req)?;
        Ok(p)
    }

    /// Gives `req` an id and writes its spec, without attaching it (see
    /// [`Tracer::reattach`]).
    pub fn register(&mut self, req: &ProbeRequest) -> Result<AttachedProbe> {
        let (id, fresh) = match self.free_ids.pop() {
            Some(id) => (id, false),
            None => (self.next_id, true),
        };
        if id >= MAX_PROBES {
            bail!("more than {MAX_PROBES} probes: trace fewer processes at once");
        }
        self.set_spec(id, req.spec)?;
        if fresh {
            self.next_id += 1;
            self.hits_n
                .store(self.next_id, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(AttachedProbe {
            id,
            program: req.program,
            link: None,
        })
    }

    /// Writes probe `id`'s spec (its program reads it at each hit).
    pub fn set_spec(&mut self, id: u32, spec: ProbeSpec) -> Result<()> {
        let mut specs: Array<_, ProbeSpec> = Array::try_from(
            self.ebpf
                .map_mut(MAP_PROBE_SPECS)
                .ok_or_else(|| anyhow!("map {MAP_PROBE_SPECS} missing"))?,
        )?;
        specs.set(id, spec, 0)?;
        Ok(())
    }

    /// Attaches a detached probe again, with the same id (cookie and spec).
    pub fn reattach(
        &mut self,
        exe: &std::path::Path,
        pid: u32,
        p: &mut AttachedProbe,
        req: &ProbeRequest,
    ) -> Result<()> {
        if p.link.is_some() {
            return Ok(());
        }
        let prog: &mut UProbe = self
            .ebpf
            .program_mut(req.program)
            .ok_or_else(|| anyhow!("eBPF program {} missing", req.program))?
            .try_into()?;
        let pid_nz = std::num::NonZeroU32::new(pid).ok_or_else(|| anyhow!("pid 0"))?;
        let link = prog
            .attach(
                UProbeAttachPoint {
                    location: UProbeAttachLocation::AbsoluteOffset(req.file_offset),
                    cookie: Some(u64::from(p.id)),
                },
                exe,
                UProbeScope::OneProcess(pid_nz),
            )
            .with_context(|| {
                format!(
                    "attaching {} at file offset {:#x} of {}",
                    req.program,
                    req.file_offset,
                    exe.display()
                )
            })?;
        p.link = Some(link);
        Ok(())
    }

    /// Why groups fall back to one perf link per probe (`None`: they do not).
    #[must_use]
    pub fn multi_error(&self) -> Option<&str> {
        self.multi_error.as_deref()
    }

    /// Attaches probes that share `program` behind one uprobe_multi link:
    /// `sites` are (file offset, probe id). Fails when the kernel has no
    /// uprobe_multi; the caller then attaches them one by one.
    pub fn attach_group(
        &self,
        exe: &std::path::Path,
        pid: u32,
        program: &str,
        sites: &[(u64, u32)],
    ) -> Result<Link> {
        if !self.multi.has(program) {
            bail!("{program}: no uprobe_multi copy");
        }
        let offsets: Vec<u64> = sites.iter().map(|s| s.0).collect();
        let cookies: Vec<u64> = sites.iter().map(|s| u64::from(s.1)).collect();
        self.multi
            .attach(program, exe, pid, &offsets, &cookies)
            .map(Link::Multi)
    }

    /// Takes a probe's link out (the probe stays registered, with its id and
    /// spec, and can be attached again once the link is closed).
    pub fn take_link(&mut self, p: &mut AttachedProbe) -> Option<Link> {
        let link_id = p.link.take()?;
        let prog = <&mut UProbe>::try_from(self.ebpf.program_mut(p.program)?).ok()?;
        prog.take_link(link_id).ok().map(Link::Perf)
    }

    /// Reads and clears the write-path counts, summed over CPUs: in batches
    /// where the kernel has them (Linux 5.6+), else key by key.
    pub fn drain_writes(&mut self) -> Vec<(WriteKey, WriteStat)> {
        fn sum(vals: &[WriteStat]) -> WriteStat {
            let mut st = WriteStat::default();
            for v in vals {
                st.count += v.count;
                if st.type_ptr == 0 {
                    st.type_ptr = v.type_ptr;
                }
            }
            st
        }
        let Some(map) = self.ebpf.map_mut(MAP_WRITES) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let batched = multi::drain_per_cpu_hash::<WriteKey, WriteStat>(map, |k, vals| {
            let st = sum(vals);
            if st.count > 0 {
                out.push((*k, st));
            }
        });
        if batched.is_some() {
            return out;
        }
        let Ok(mut m) = PerCpuHashMap::<_, WriteKey, WriteStat>::try_from(map) else {
            return Vec::new();
        };
        let keys: Vec<WriteKey> = m.keys().filter_map(Result::ok).collect();
        for k in keys {
            if let Ok(vals) = m.get(&k, 0) {
                let st = sum(&vals);
                if st.count > 0 {
                    out.push((k, st));
                }
            }
            let _ = m.remove(&k);
        }
        out
    }

    /// Drains ready events into `f`. Returns how many were read.
    pub fn drain(&mut self, mut f: impl FnMut(&[u8])) -> usize {
        let Some(rb) = self.events.as_mut() else {
            return 0;
        };
        let mut n = 0;
        while let Some(item) = rb.next() {
            f(&item);
            n += 1;
        }
        n
    }

    /// A second descriptor of the event ring buffer, to wait on (readable
    /// when events were written with a wakeup).
    pub fn events_fd(&self) -> Result<std::os::fd::OwnedFd> {
        let rb = self
            .events
            .as_ref()
            .ok_or_else(|| anyhow!("the event ring buffer is gone"))?;
        rb.as_fd()
            .try_clone_to_owned()
            .context("duplicating the ring buffer's descriptor")
    }

    /// The creation record of the map at `addr` in `tgid`, if still in the LRU.
    #[must_use]
    pub fn created(&self, tgid: u32, addr: u64) -> Option<CreateRecord> {
        let m: HashMap<_, AddrKey, CreateRecord> =
            HashMap::try_from(self.ebpf.map(MAP_CREATED)?).ok()?;
        m.get(
            &AddrKey {
                addr,
                tgid,
                _pad: 0,
            },
            0,
        )
        .ok()
    }

    /// The user stack `id` (innermost first).
    #[must_use]
    pub fn stack(&self, id: i32) -> Vec<u64> {
        let Ok(id) = u32::try_from(id) else {
            return Vec::new();
        };
        let Some(map) = self.ebpf.map(MAP_STACKS) else {
            return Vec::new();
        };
        let Ok(st) = StackTraceMap::try_from(map) else {
            return Vec::new();
        };
        st.get(&id, 0)
            .map(|s| s.frames().iter().map(|f| f.ip).collect())
            .unwrap_or_default()
    }

    /// Hits per probe id, summed over CPUs.
    #[must_use]
    pub fn probe_hits(&self) -> Vec<u64> {
        self.hits.sums(self.next_id)
    }

    /// The probes' off switches ([`ProbeSwitch`]).
    #[must_use]
    pub fn probe_switch(&self) -> ProbeSwitch {
        ProbeSwitch::new(self.hits.clone())
    }

    /// A reader of the probe hit counts for another thread (the governor's):
    /// its own descriptor of the map, for the probes registered so far.
    pub fn hits_reader(&self) -> Result<HitsReader> {
        Ok(HitsReader::new(self.hits.clone(), self.hits_n.clone()))
    }

    /// The kernel's run counts and times of every loaded program (the
    /// uprobe_multi copies included), for another thread: counted from now
    /// until the handle is dropped. Fails when the kernel will not count.
    pub fn run_stats(&self) -> Result<RunStats> {
        RunStats::new(&self.ebpf, &self.multi)
    }

    /// Health counters, summed over CPUs (index = `tracer_common::Counter`).
    #[must_use]
    pub fn counters(&self) -> Vec<u64> {
        sum_per_cpu(&self.ebpf, MAP_COUNTERS, COUNTER_SLOTS)
    }
}

/// Slots `0..n` of a per-CPU u64 array, each summed over CPUs: one batched
/// system call (this runs every 10-100 ms), else one call per slot.
fn sum_per_cpu(ebpf: &Ebpf, name: &str, n: u32) -> Vec<u64> {
    let Some(map) = ebpf.map(name) else {
        return vec![0; n as usize];
    };
    if let Some(v) = multi::sum_per_cpu_batch(map, n) {
        return v;
    }
    let Ok(arr) = PerCpuArray::<_, u64>::try_from(map) else {
        return vec![0; n as usize];
    };
    (0..n)
        .map(|i| arr.get(&i, 0).map(|v| v.iter().sum()).unwrap_or(0))
        .collect()
}

/// The ABI version an eBPF object was built for: the 4 little-endian bytes
/// of its `tracer_common::ABI_SECTION` section.
pub fn object_abi_version(obj: &[u8]) -> Result<u32> {
    use object::{Object as _, ObjectSection as _};
    let file = object::File::parse(obj).context("parsing the eBPF object")?;
    let section = file.section_by_name(ABI_SECTION).ok_or_else(|| {
        anyhow!("the eBPF object has no {ABI_SECTION} section (the ABI version it was built for)")
    })?;
    let data = section
        .data()
        .context("reading the eBPF object's ABI version")?;
    let bytes: [u8; 4] = data.try_into().map_err(|_| {
        anyhow!(
            "the eBPF object's {ABI_SECTION} section holds {} bytes, not 4",
            data.len()
        )
    })?;
    Ok(u32::from_le_bytes(bytes))
}

/// Refuses an object built for another ABI than this binary's: its maps
/// and events would be misread.
pub fn check_abi(obj: &[u8]) -> Result<()> {
    let found = object_abi_version(obj).map_err(|e| anyhow!("{e:#}: {REBUILD}"))?;
    if found != ABI_VERSION {
        bail!(
            "the eBPF object was built for ABI version {found}, this mapleak-trace reads version {ABI_VERSION}: {REBUILD}"
        );
    }
    Ok(())
}

/// What to do when the embedded object does not match.
const REBUILD: &str = "rebuild mapleak-trace from one checkout (`cargo clean -p tracer-user && cargo build --release`) so that its eBPF object and user space come from the same tracer-common";

/// Checks, without the kernel, that an object is for this ABI and carries
/// every program and map the plan uses.
pub fn check_object(obj: &[u8]) -> Result<()> {
    check_abi(obj)?;
    let parsed = aya_obj::Object::parse(obj).context("parsing the eBPF object")?;
    for p in programs::ALL.into_iter().chain([programs::EXEC]) {
        if !parsed.programs.contains_key(p) {
            bail!("program {p} missing from the eBPF object");
        }
    }
    for m in tracer_common::ALL_MAPS.into_iter().chain([MAP_AYA_LOGS]) {
        if !parsed.maps.contains_key(m) {
            bail!("map {m} missing from the eBPF object");
        }
    }
    // The loader sets it (logging on or off) and fails without it.
    {
        use object::{Object as _, ObjectSymbol as _};
        let file = object::File::parse(obj).context("parsing the eBPF object")?;
        if !file.symbols().any(|s| s.name() == Ok(aya_log::LEVEL)) {
            bail!("global {} missing from the eBPF object", aya_log::LEVEL);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    /// Both embedded objects (x86_64 and aarch64) parse and carry every
    /// program and map, and aya-log's level global.
    #[test]
    fn embedded_objects_complete() {
        for obj in [super::OBJECT_X86_64, super::OBJECT_AARCH64] {
            assert!(
                !obj.is_empty(),
                "built with MAPLEAK_SKIP_EBPF=1: the eBPF object is a stub"
            );
            super::check_object(obj).unwrap();
            let no_level = patched(obj, b"AYA_LOG_LEVEL\0", b"AYA_LOG_LEVEX\0");
            let err = format!("{:#}", super::check_object(&no_level).unwrap_err());
            assert!(err.contains("global AYA_LOG_LEVEL missing"), "{err}");
        }
        assert!(super::check_object(b"not an elf").is_err());
    }

    /// Copies of `obj` with every occurrence of `from` replaced by `to`
    /// (same length).
    fn patched(obj: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
        assert_eq!(from.len(), to.len());
        let mut out = obj.to_vec();
        let mut n = 0;
        let mut i = 0;
        while let Some(p) = out[i..].windows(from.len()).position(|w| w == from) {
            out[i + p..i + p + to.len()].copy_from_slice(to);
            i += p + to.len();
            n += 1;
        }
        assert!(n > 0, "{:?} not found", String::from_utf8_lossy(from));
        out
    }

    /// Both embedded objects carry this binary's ABI version, and one with
    /// another version, or with none, is refused with a hint to rebuild.
    #[test]
    fn abi_version_checked() {
        use object::{Object as _, ObjectSection as _};
        use tracer_common::{ABI_SECTION, ABI_VERSION};
        for obj in [super::OBJECT_X86_64, super::OBJECT_AARCH64] {
            assert_eq!(super::object_abi_version(obj).unwrap(), ABI_VERSION);
            super::check_abi(obj).unwrap();

            // Another version, written where the section's bytes are.
            let file = object::File::parse(obj).unwrap();
            let (off, len) = file
                .section_by_name(ABI_SECTION)
                .unwrap()
                .file_range()
                .unwrap();
            assert_eq!(len, 4);
            let off = usize::try_from(off).unwrap();
            let mut other = obj.to_vec();
            other[off..off + 4].copy_from_slice(&(ABI_VERSION + 1).to_le_bytes());
            let err = format!("{:#}", super::check_object(&other).unwrap_err());
            assert!(
                err.contains(&format!(
                    "built for ABI version {}, this mapleak-trace reads version {ABI_VERSION}",
                    ABI_VERSION + 1
                )) && err.contains("rebuild"),
                "{err}"
            );

            // No version at all (the section renamed, in the section
            // names and in the BTF strings alike).
            let mut renamed = ABI_SECTION.as_bytes().to_vec();
            *renamed.last_mut().unwrap() ^= 0x20;
            let none = patched(obj, ABI_SECTION.as_bytes(), &renamed);
            let err = format!("{:#}", super::check_abi(&none).unwrap_err());
            assert!(
                err.contains(&format!("no {ABI_SECTION} section")) && err.contains("rebuild"),
                "{err}"
            );
        }
    }
}
