//! Key snapshots of live keyzoo processes (testdata/go/keyzoo), for every
//! keyzoo fixture of the host's GOARCH in `target/fixtures/manifest.json`:
//! every Go version and variant, stripped and PIE included.
//!
//! Reading another process needs ptrace permission: our own child is
//! readable as the same user (Yama ptrace_scope <= 1) and as root. When
//! reading fails with EPERM the tests print a SKIP line, unless `CI` is set,
//! where they fail.

mod inspect_common;

use std::{
    collections::{BTreeSet, HashMap, HashSet},
    io::{BufRead, BufReader},
    process::{Child, ChildStdin, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use inspect_common::{Fixture, fixtures, open};
use mapleak::{
    discover::Target,
    inspect::{BinaryInfo, MapImpl},
    keys::{self, KeyKind, KeyLayout, KeyTracker, Snapshot},
    sample::Memory,
};

const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// A running keyzoo, killed on drop (also when a test fails).
struct Zoo {
    child: Child,
    _stdin: ChildStdin,
    maps: HashMap<String, (u64, u64, u64)>,
    ptrs: Vec<u64>,
}

impl Drop for Zoo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn hex(s: &str) -> u64 {
    u64::from_str_radix(s.trim_start_matches("0x"), 16).unwrap_or_else(|e| panic!("{s}: {e}"))
}

impl Zoo {
    fn start(f: &Fixture, args: &[&str]) -> Self {
        let mut child = Command::new(&f.path)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e}", f.path.display()));
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let mut zoo = Self {
            child,
            _stdin: stdin,
            maps: HashMap::new(),
            ptrs: Vec::new(),
        };
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx
                .recv_timeout(left)
                .unwrap_or_else(|e| panic!("{}: no \"ready\" ({e})", f.path.display()));
            let w: Vec<&str> = line.split_whitespace().collect();
            match w.as_slice() {
                ["ready"] => break,
                ["map", name, addr, typ, len] => {
                    let len: u64 = len.parse().expect("len");
                    zoo.maps
                        .insert((*name).to_owned(), (hex(addr), hex(typ), len));
                }
                ["ptr", "ptrs", p] => zoo.ptrs.push(hex(p)),
                _ => panic!("{}: unexpected line {line:?}", f.path.display()),
            }
        }
        zoo
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

fn host_goarch() -> &'static str {
    match std::env::consts::ARCH {
        "aarch64" => "arm64",
        _ => "amd64",
    }
}

fn keyzoo_fixtures() -> Vec<Fixture> {
    let all: Vec<Fixture> = fixtures()
        .into_iter()
        .filter(|f| f.program == "keyzoo" && f.goarch == host_goarch())
        .collect();
    assert!(
        !all.is_empty(),
        "no keyzoo fixtures for {}: run `cargo xtask fixtures`",
        host_goarch()
    );
    all
}

/// Load bias of the running fixture (0 unless PIE).
fn bias(info: &BinaryInfo, pid: u32) -> u64 {
    let main = info.func_by_name("main.main").expect("main.main");
    let off = info.va_to_file_offset(main.entry).expect("file offset");
    Target::discover(pid)
        .expect("discover")
        .load_bias(off, main.entry)
        .expect("bias")
}

/// Whether we may read `pid`'s memory; prints SKIP (or panics under CI) when not.
fn can_read(pid: u32, addr: u64) -> bool {
    let mut b = [0u8; 8];
    let local = libc::iovec {
        iov_base: b.as_mut_ptr().cast(),
        iov_len: 8,
    };
    let remote = libc::iovec {
        iov_base: addr as *mut libc::c_void,
        iov_len: 8,
    };
    // SAFETY: `local` points at `b`, alive for the call.
    let n = unsafe {
        libc::process_vm_readv(
            i32::try_from(pid).expect("pid"),
            &raw const local,
            1,
            &raw const remote,
            1,
            0,
        )
    };
    if n == 8 {
        return true;
    }
    let err = std::io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::EPERM)
        && std::env::var_os("CI").is_none()
        && std::env::var_os("MAPLEAK_ALLOW_SKIP").is_some()
    {
        eprintln!(
            "\n*** SKIP: cannot read child memory ({err}): needs ptrace permission \
             (kernel.yama.ptrace_scope <= 1, or root) ***\n"
        );
        return false;
    }
    panic!("process_vm_readv({pid}, {addr:#x}): {err}");
}

struct Live {
    zoo: Zoo,
    info: BinaryInfo,
    mem: Memory,
    bias: u64,
}

impl Live {
    fn start(f: &Fixture, args: &[&str]) -> Option<Self> {
        let info = open(f);
        let zoo = Zoo::start(f, args);
        let pid = zoo.pid();
        let probe = zoo.maps.values().next().expect("maps").0;
        if !can_read(pid, probe) {
            return None;
        }
        Some(Self {
            bias: bias(&info, pid),
            mem: Memory::new(pid),
            info,
            zoo,
        })
    }

    fn layout(&self, f: &Fixture, name: &str) -> (KeyLayout, u64, u64) {
        let &(addr, typ, len) = self
            .zoo
            .maps
            .get(name)
            .unwrap_or_else(|| panic!("{}: no map {name}", f.path.display()));
        let kl = keys::key_layout(&self.mem, &self.info, self.bias, typ)
            .unwrap_or_else(|| panic!("{}: {name}: no key layout", f.path.display()));
        (kl, addr, len)
    }

    fn snap(&self, f: &Fixture, name: &str) -> (KeyLayout, Snapshot) {
        let (kl, addr, len) = self.layout(f, name);
        let s = keys::snapshot(&self.mem, &self.info.layout, &kl, addr, 1 << 20)
            .unwrap_or_else(|| panic!("{}: {name}: no snapshot", f.path.display()));
        let what = format!("{} {name}", f.path.display());
        assert!(!s.partial, "{what}: partial");
        assert!(!s.truncated, "{what}: truncated");
        assert_eq!(s.header_len, len, "{what}: header len");
        assert_eq!(s.keys.len() as u64, len, "{what}: keys");
        let ids: HashSet<u64> = s.keys.iter().map(|k| k.id).collect();
        assert_eq!(ids.len(), s.keys.len(), "{what}: duplicate ids");
        (kl, s)
    }

    fn rendered(&self, f: &Fixture, name: &str, show: bool) -> BTreeSet<String> {
        let (kl, s) = self.snap(f, name);
        s.keys
            .iter()
            .map(|k| keys::render(k, &kl.key_type, show))
            .collect()
    }
}

fn set<I: IntoIterator<Item = String>>(i: I) -> BTreeSet<String> {
    i.into_iter().collect()
}

/// Every map of keyzoo: exact key sets, lengths, type names, pointer keys,
/// redaction; on hmap builds the "midgrow" map is read mid-grow.
#[test]
fn snapshots_match_the_keys_keyzoo_put() {
    let mut checked = 0;
    for f in keyzoo_fixtures() {
        let Some(live) = Live::start(&f, &[]) else {
            return;
        };
        let p = f.path.display().to_string();

        let (kl, _) = live.snap(&f, "strs");
        assert_eq!(kl.map_type, "map[string]int", "{p}");
        assert_eq!(kl.key_type.kind, KeyKind::String, "{p}");
        assert_eq!(
            live.rendered(&f, "strs", true),
            set((0..5000).map(|i| format!("\"key-{i:05}\""))),
            "{p}"
        );
        for r in live.rendered(&f, "strs", false) {
            assert!(r.starts_with("\"key-…\" (len 9, #"), "{p}: {r}");
        }

        assert_eq!(
            live.rendered(&f, "ints", true),
            set((0..1000i64).map(|i| ((i - 500) * 1_000_003).to_string())),
            "{p}"
        );

        let (kl, s) = live.snap(&f, "ptrs");
        assert_eq!(kl.key_type.name, "*main.T", "{p}");
        assert_eq!(kl.key_type.kind, KeyKind::Pointer, "{p}");
        let got: BTreeSet<u64> = s.keys.iter().map(|k| k.ptr.expect("ptr")).collect();
        assert_eq!(got, live.zoo.ptrs.iter().copied().collect(), "{p}");
        assert_eq!(
            live.rendered(&f, "ptrs", false),
            set(live.zoo.ptrs.iter().map(|x| format!("{x:#x} (*main.T)"))),
            "{p}"
        );

        let (kl, _) = live.snap(&f, "structs");
        assert_eq!(kl.key_type.name, "struct { A int32; S string }", "{p}");
        assert_eq!(
            live.rendered(&f, "structs", true),
            set((0..500).map(|i| format!("{{A: {i}, S: \"s-{i}\"}}"))),
            "{p}"
        );
        let whole: Vec<String> = (0..500).map(|i| format!("\"s-{i}\"")).collect();
        for r in live.rendered(&f, "structs", false) {
            assert!(r.contains("…\" (len "), "{p}: {r}");
            assert!(
                !whole.iter().any(|w| r.contains(w.as_str())),
                "{p}: not redacted: {r}"
            );
        }

        // Keys over 128 bytes are stored indirectly; the first RAW_CAP bytes
        // are rendered (ID, Name, 5 of Pad's 18 elements).
        let (kl, _) = live.snap(&f, "bigkeys");
        assert!(kl.indirect_key, "{p}");
        assert_eq!((kl.key_size, kl.slot_key_size), (168, 8), "{p}");
        let got = live.rendered(&f, "bigkeys", true);
        let want = set((0..200).map(|i| {
            format!(
                "{{ID: {i}, Name: \"big-{i}\", Pad: [{}, {}, {}, {}, {}, …, …, …, …, …, …, …, …, …, …, …, … (2 more)]}}",
                i,
                i + 1,
                i + 2,
                i + 3,
                i + 4
            )
        }));
        assert_eq!(got, want, "{p}");

        assert_eq!(
            live.rendered(&f, "arrays", true),
            set((0..64).map(|i| format!("[{i}, {}, {}]", 2 * i, 65535 - i))),
            "{p}"
        );
        assert_eq!(
            live.rendered(&f, "floats", true),
            set(["-1.5", "0.25", "3"].map(String::from)),
            "{p}"
        );

        let strange = live.rendered(&f, "strange", true);
        let long_prefix = format!("\"{}…\" (len 300, #", "L".repeat(256));
        let want_short =
            set(["\"\"", r#""q\"uote""#, r#""tab\t""#, "\"é✓\"", r#""\xff""#].map(String::from));
        assert!(
            strange.iter().any(|s| s.starts_with(&long_prefix)),
            "{p}: {strange:?}"
        );
        let short: BTreeSet<String> = strange
            .into_iter()
            .filter(|s| !s.starts_with(&long_prefix))
            .collect();
        assert_eq!(short, want_short, "{p}");

        assert_eq!(
            live.rendered(&f, "small", true),
            set(["\"a\"", "\"bb\"", "\"ccc\""].map(String::from)),
            "{p}"
        );
        assert!(live.rendered(&f, "empty", true).is_empty(), "{p}");

        assert_eq!(
            live.rendered(&f, "midgrow", true),
            set((0..209).map(|i| (i * 3).to_string())),
            "{p}"
        );
        if live.info.map_impl == MapImpl::Hmap {
            let (_, addr, _) = live.layout(&f, "midgrow");
            let old = live
                .mem
                .u64(addr + u64::from(live.info.layout.hmap_oldbuckets.expect("oldbuckets")))
                .expect("hmap");
            assert_ne!(
                old, 0,
                "{p}: midgrow is not growing: the grow path is untested"
            );
        }

        // Two snapshots a moment apart: every key survived.
        let (kl, s1) = live.snap(&f, "strs");
        let (_, s2) = live.snap(&f, "strs");
        let mut t = KeyTracker::new(kl.key_type.clone(), false);
        t.update(1, &s1);
        t.update(2, &s2);
        let st = t.stats();
        assert_eq!(
            (st.tracked, st.never_released, st.released),
            (5000, 5000, 0),
            "{p}"
        );
        assert_eq!(st.examples.len(), 5, "{p}");
        assert!(
            st.examples.iter().all(|e| e.starts_with("\"key-…\"")),
            "{p}"
        );
        checked += 1;
    }
    eprintln!("checked {checked} keyzoo fixtures");
}

/// A map mutated while it is read: every snapshot is either complete and
/// consistent or marked partial, and reading never panics.
#[test]
fn churning_map_is_complete_or_partial() {
    /// keyzoo -churn keys live in [0, SPACE).
    const SPACE: i64 = 1 << 20;
    for f in keyzoo_fixtures() {
        // One binary per Go version and map implementation is enough.
        if f.variant != "default" && f.variant != "noswiss" {
            continue;
        }
        let Some(live) = Live::start(&f, &["-churn"]) else {
            return;
        };
        let p = f.path.display().to_string();
        let (kl, addr, _) = live.layout(&f, "churn");
        let (mut complete, mut partial, mut none) = (0, 0, 0);
        let deadline = Instant::now() + Duration::from_millis(1500);
        while Instant::now() < deadline {
            let Some(s) = keys::snapshot(&live.mem, &live.info.layout, &kl, addr, 1 << 20) else {
                none += 1;
                continue;
            };
            assert!(!s.truncated, "{p}");
            if s.partial {
                partial += 1;
                continue;
            }
            complete += 1;
            assert_eq!(s.keys.len() as u64, s.header_len, "{p}");
            let ids: HashSet<u64> = s.keys.iter().map(|k| k.id).collect();
            assert_eq!(ids.len(), s.keys.len(), "{p}: duplicate keys");
            let mut vals: Vec<i64> = Vec::with_capacity(s.keys.len());
            for k in &s.keys {
                let v: i64 = keys::render(k, &kl.key_type, true)
                    .parse()
                    .expect("an int key");
                assert!((0..SPACE).contains(&v), "{p}: key {v} out of range");
                vals.push(v);
            }
            // The live keys at any moment are a window of consecutive keys
            // (mod SPACE): a complete snapshot must be one too.
            if vals.iter().any(|&v| v < SPACE / 4) && vals.iter().any(|&v| v > SPACE / 4 * 3) {
                for v in &mut vals {
                    if *v < SPACE / 2 {
                        *v += SPACE;
                    }
                }
            }
            vals.sort_unstable();
            if let (Some(lo), Some(hi)) = (vals.first(), vals.last()) {
                assert_eq!(
                    (hi - lo + 1) as usize,
                    vals.len(),
                    "{p}: complete snapshot is not a window of keys: {lo}..={hi}"
                );
            }
        }
        eprintln!("{p}: churn: {complete} complete, {partial} partial, {none} unreadable");
        // The window property above is checked on complete snapshots only:
        // there must be some.
        assert!(
            complete > 0,
            "{p}: no complete snapshot ({partial} partial)"
        );
    }
}

/// Speed of a 100k-key map[string]int on the oldest and newest map
/// implementations (figures printed; correctness asserted).
#[test]
fn big_map_snapshot_speed() {
    let all = keyzoo_fixtures();
    let picks: Vec<&Fixture> = all
        .iter()
        .filter(|f| f.variant == "default")
        .filter(|f| {
            f.go_version.starts_with("go1.19")
                || f.go_version.starts_with("go1.23")
                || f.go_version.starts_with("go1.26")
                || f.go_version.starts_with("go1.27")
        })
        .collect();
    assert!(!picks.is_empty(), "no default keyzoo fixtures");
    const N: usize = 100_000;
    for f in picks {
        let Some(live) = Live::start(f, &["-big", &N.to_string()]) else {
            return;
        };
        let p = f.path.display().to_string();
        let (kl, addr, _) = live.layout(f, "strs");
        let t0 = Instant::now();
        let s = keys::snapshot(&live.mem, &live.info.layout, &kl, addr, 1 << 20).expect("snapshot");
        let dt = t0.elapsed();
        assert!(!s.partial && s.keys.len() == 5000, "{p}");
        eprintln!(
            "{p}: 5000 keys in {:.2} ms ({:.0} keys/s)",
            dt.as_secs_f64() * 1e3,
            5000.0 / dt.as_secs_f64()
        );
        let (kl, addr, len) = live.layout(f, "big");
        assert_eq!(len, N as u64);
        let t0 = Instant::now();
        let s = keys::snapshot(&live.mem, &live.info.layout, &kl, addr, 1 << 20).expect("snapshot");
        let dt = t0.elapsed();
        assert!(!s.partial && !s.truncated, "{p}");
        let got: HashSet<String> = s
            .keys
            .iter()
            .map(|k| keys::render(k, &kl.key_type, true))
            .collect();
        assert_eq!(got.len(), N, "{p}");
        for i in [0, 1, N / 2, N - 1] {
            assert!(got.contains(&format!("\"k{i:07}\"")), "{p}: k{i:07}");
        }
        eprintln!(
            "{p}: {N} keys in {:.1} ms ({:.0} keys/s, {} KiB read, {} attempt(s))",
            dt.as_secs_f64() * 1e3,
            N as f64 / dt.as_secs_f64(),
            s.bytes_read / 1024,
            s.attempts
        );
    }
}
