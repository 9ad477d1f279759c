use std::time::Duration;

use super::*;
use crate::holders::heap::Snapshot;

fn mapping(start: u64, end: u64, perms: &str, inode: u64, path: Option<&str>) -> Mapping {
    Mapping {
        start,
        end,
        perms: perms.into(),
        offset: 0,
        inode,
        path: path.map(str::to_owned),
    }
}

/// Memory made of a few ranges of words; reads count their calls.
struct Words {
    ranges: Vec<(u64, Vec<u8>)>,
    reads: Cell<usize>,
}

impl Words {
    fn new(ranges: Vec<(u64, Vec<u64>)>) -> Self {
        Self {
            ranges: ranges
                .into_iter()
                .map(|(a, w)| (a, w.iter().flat_map(|v| v.to_le_bytes()).collect()))
                .collect(),
            reads: Cell::new(0),
        }
    }
}

impl Reader for Words {
    fn read(&self, addr: u64, buf: &mut [u8]) -> bool {
        self.read_some(addr, buf) == buf.len()
    }
    fn read_some(&self, addr: u64, buf: &mut [u8]) -> usize {
        self.reads.set(self.reads.get() + 1);
        for (a, b) in &self.ranges {
            if addr >= *a && addr < a + b.len() as u64 {
                let o = usize::try_from(addr - a).unwrap();
                let n = (b.len() - o).min(buf.len());
                buf[..n].copy_from_slice(&b[o..o + n]);
                return n;
            }
        }
        0
    }
    fn read_many(&self, regions: &[(u64, usize)]) -> Vec<Option<Vec<u8>>> {
        regions
            .iter()
            .map(|&(a, n)| {
                let mut b = vec![0u8; n];
                self.read(a, &mut b).then_some(b)
            })
            .collect()
    }
}

/// Anonymous writable mappings only, the suspects' first, the globals
/// left out.
#[test]
fn which_mappings() {
    let maps = [
        mapping(0x40_0000, 0x50_0000, "r-xp", 7, Some("/bin/x")),
        mapping(0x50_0000, 0x51_0000, "rw-p", 7, Some("/bin/x")),
        mapping(0x51_0000, 0x52_0000, "rw-p", 0, None),
        mapping(0x100_0000, 0x200_0000, "rw-p", 0, None),
        mapping(0xc0_0000_0000, 0xc0_0040_0000, "rw-p", 0, None),
        mapping(0xc0_0040_0000, 0xc4_0000_0000, "---p", 0, None),
        mapping(0x7fff_0000, 0x7fff_1000, "rw-p", 0, Some("[stack]")),
    ];
    let got = heap_mappings(&maps, &[0xc0_0000_1000], (0x50_0000, 0x52_0000));
    assert_eq!(
        got,
        vec![(0xc0_0000_0000, 0xc0_0040_0000), (0x100_0000, 0x200_0000)]
    );
}

/// Present pages are joined into runs; absent and swapped ones split them;
/// stacks are cut out of a run.
#[test]
fn runs_of_present_pages() {
    let p = 1u64 << 63;
    let s = 1u64 << 62;
    let runs = present_runs(0x1000, &[p, p, 0, s, p, p | 5, 0]);
    assert_eq!(runs, vec![(0x1000, 0x3000), (0x5000, 0x7000)]);
    assert!(present_runs(0, &[]).is_empty());
    assert_eq!(
        subtract(
            0x1000,
            0x9000,
            &[(0, 0x1800), (0x3000, 0x4000), (0x8000, 0xa000)]
        ),
        vec![(0x1800, 0x3000), (0x4000, 0x8000)]
    );
    assert_eq!(subtract(0x1000, 0x2000, &[]), vec![(0x1000, 0x2000)]);
    assert!(subtract(0x1000, 0x2000, &[(0x800, 0x2000)]).is_empty());
}

/// A scan stopped by its deadline after each chunk goes on from its
/// cursor and finds what one whole scan finds, in the same order, and no
/// word twice; single words are read live, within the runs only.
#[test]
fn a_scan_resumes_where_it_stopped() {
    // Three runs of 2.5 MiB, 1 MiB and 8 bytes short of a page; the wanted
    // value at both ends of each chunk and across run boundaries.
    let chunk_words = (CHUNK / 8) as usize;
    let want = 0x00c0_dead_beef_u64;
    let mut a = vec![7u64; chunk_words * 5 / 2];
    for i in [
        0,
        chunk_words - 1,
        chunk_words,
        2 * chunk_words + 3,
        a.len() - 1,
    ] {
        a[i] = want;
    }
    let mut b = vec![9u64; chunk_words];
    b[0] = want;
    b[chunk_words - 1] = want + 8;
    let mut c = vec![0u64; 511];
    c[510] = want;
    let (ra, rb, rc) = (
        0x00c0_0000_0000_u64,
        0x00c0_1000_0000_u64,
        0x00c0_2000_0000_u64,
    );
    let mem = Words::new(vec![(ra, a.clone()), (rb, b.clone()), (rc, c.clone())]);
    let runs = [
        (ra, ra + a.len() as u64 * 8),
        (rb, rb + b.len() as u64 * 8),
        (rc, rc + c.len() as u64 * 8),
    ];
    let m = Matcher::new([want].into_iter(), &[(want + 8, want + 8)], usize::MAX);
    let live = LiveHeap::new(&mem, &runs);

    let far = Instant::now() + Duration::from_secs(60);
    let (mut whole, mut per, mut cursor) = (Vec::new(), HashMap::new(), 0);
    assert!(live.scan(&m, &mut cursor, &mut per, &mut whole, far));
    assert_eq!(cursor, runs[2].1);
    assert_eq!(whole.len(), 8, "{whole:x?}");
    assert!(whole.contains(&(ra + 8 * (chunk_words as u64 - 1), want, RegionKind::Heap)));
    assert!(whole.contains(&(
        rb + 8 * (chunk_words as u64 - 1),
        want + 8,
        RegionKind::Heap
    )));
    assert!(whole.contains(&(rc + 510 * 8, want, RegionKind::Heap)));

    let past = Instant::now();
    let (mut parts, mut per, mut cursor, mut turns) = (Vec::new(), HashMap::new(), 0, 0);
    while !live.scan(&m, &mut cursor, &mut per, &mut parts, past) {
        turns += 1;
        assert!(turns < 100, "no progress at {cursor:#x}");
    }
    // One chunk per turn: 3 chunks of the first run, 1 of each other,
    // the last turn returning true.
    assert_eq!(turns, 4);
    assert_eq!(parts, whole);

    // A scan that starts past the end finds nothing.
    let mut none = Vec::new();
    assert!(live.scan(&m, &mut cursor, &mut HashMap::new(), &mut none, past));
    assert!(none.is_empty());

    // A second scan of the same heap reads nothing: it was kept.
    let before = mem.reads.get();
    let (mut again, mut cursor) = (Vec::new(), 0);
    assert!(live.scan(&m, &mut cursor, &mut HashMap::new(), &mut again, far));
    assert_eq!(again, whole);
    assert_eq!(mem.reads.get(), before);
    assert_eq!(live.word(rb), Some(want));
    assert_eq!(mem.reads.get(), before);

    // Words not kept: read live by the page, in a run only, aligned only.
    let live = LiveHeap::new(&mem, &runs);
    let before = mem.reads.get();
    assert_eq!(live.word(ra + 8 * (chunk_words as u64 - 1)), Some(want));
    assert_eq!(live.word(ra + 8 * (chunk_words as u64 - 2)), Some(7));
    assert_eq!(mem.reads.get(), before + 1, "one page read for both");
    assert_eq!(live.word(ra + 4), None);
    assert_eq!(live.word(rc + 511 * 8), None);
    assert!(live.holds(rb, 16) && !live.holds(rb - 8, 16));
    assert!(!live.holds(runs[0].1 - 8, 16));

    // The snapshot over it: kinds and words from the copy first, then live.
    let snap = Snapshot::from_regions(vec![crate::holders::heap::Region {
        addr: 0x1000,
        bytes: want.to_le_bytes().to_vec(),
        kind: RegionKind::Globals,
    }])
    .with_live(LiveHeap::new(&mem, &runs));
    assert_eq!(snap.kind_of(0x1000, 8), Some(RegionKind::Globals));
    assert_eq!(snap.kind_of(rb, 8), Some(RegionKind::Heap));
    assert_eq!(snap.kind_of(0x2000, 8), None);
    assert_eq!(snap.word(rb), Some(want));
    let targets: HashMap<u64, ()> = [(want, ())].into();
    let hits = snap.find(&targets, &[], usize::MAX);
    assert_eq!(hits[0], (0x1000, want, RegionKind::Globals));
    // The copy's word, and the live ones but the range's.
    assert_eq!(hits.len(), 8, "{hits:x?}");
}

/// A real scan of this process (no root needed to read oneself): a word
/// written into an anonymous mapping (a large allocation) is found at its
/// address, among present pages only.
#[test]
fn scans_this_process() {
    let marker = 0x6d61_706c_6561_6b21_u64;
    // 4 MiB of an anonymous mapping, as Go's heap is. (A Vec of that size
    // may come from the brk heap, which is left out: malloc raises its
    // mmap threshold after other tests free large blocks.)
    let len = 4 << 20;
    // SAFETY: a new private anonymous mapping, unmapped below.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(base, libc::MAP_FAILED);
    let slot = base.cast::<u64>().wrapping_add(12_345);
    // SAFETY: within the mapping, aligned, writable.
    unsafe { slot.write_volatile(marker) };
    let at = slot as u64;
    let mem = crate::sample::Memory::new(std::process::id());
    let (runs, cut) = runs(std::process::id(), (0, 0), &[], &[at]);
    assert!(!cut);
    // The touched page of the mapping is present.
    let page = at & !(PAGE - 1);
    assert!(runs.iter().any(|r| r.0 <= page && page + PAGE <= r.1));
    let snap = Snapshot::default().with_live(LiveHeap::new(&mem, &runs));
    let targets: HashMap<u64, ()> = [(marker, ())].into();
    // The heap holds copies of the marker too (this test's own buffers
    // are in this process): all hits.
    let hits = snap.find(&targets, &[], usize::MAX);
    assert!(
        hits.contains(&(at, marker, RegionKind::Heap)),
        "{hits:x?} (marker at {at:#x})"
    );
    assert!(snap.live_bytes() > 0);
    // SAFETY: the mapping made above, no longer used.
    unsafe { libc::munmap(base, len) };
}

/// Time of a live scan of 256 MiB of this process's memory (a third of its
/// words pointers into it), 300 wanted values: `cargo test --release -p
/// tracer-user --lib live_scan_speed -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement, not a check"]
fn live_scan_speed() {
    let len = 256usize << 20;
    let mut words = vec![0u64; len / 8];
    let base = words.as_ptr() as u64;
    let mut x = 0x1234_5678_9abc_def1u64;
    for w in &mut words {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *w = if x.is_multiple_of(3) {
            (base + (x >> 8) % len as u64) & !7
        } else {
            x % 1000
        };
    }
    let runs = [(base, base + len as u64)];
    let mem = crate::sample::Memory::new(std::process::id());
    let live = LiveHeap::new(&mem, &runs);
    let m = Matcher::new(
        (0..300u64).map(|i| base + i * 0x10_0000 + 0x40),
        &[(base + 0x100, base + 0x4100)],
        16,
    );
    let far = Instant::now() + Duration::from_secs(600);
    let t = Instant::now();
    let (mut out, mut cursor) = (Vec::new(), 0);
    assert!(live.scan(&m, &mut cursor, &mut HashMap::new(), &mut out, far));
    let took = t.elapsed();
    eprintln!(
        "live scan: {} hits in {took:?} over 256 MiB ({} MiB read): {:.0} ms per GiB",
        out.len(),
        live.bytes_read() >> 20,
        took.as_secs_f64() * 1e3 * 4.0
    );
    drop(words);
}
