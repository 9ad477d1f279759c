//! Tests of header decoding and sampling: hmap and Swiss headers, batched reads of this process, caps.
use super::*;

fn hmap_layout() -> RuntimeLayout {
    RuntimeLayout {
        hmap_count: Some(0),
        hmap_flags: Some(8),
        hmap_b: Some(9),
        hmap_noverflow: Some(10),
        hmap_hash0: Some(12),
        hmap_buckets: Some(16),
        hmap_oldbuckets: Some(24),
        hmap_size: Some(48),
        ..Default::default()
    }
}

/// An hmap header decodes into len, capacity (8 slots per bucket) and bytes.
#[test]
fn hmap_header() {
    let mut b = [0u8; 48];
    b[0..8].copy_from_slice(&100u64.to_le_bytes());
    b[9] = 4;
    b[12..16].copy_from_slice(&7u32.to_le_bytes());
    b[16..24].copy_from_slice(&0xc000_0000u64.to_le_bytes());
    let s = decode_hmap(
        &b,
        &hmap_layout(),
        TypeSizes {
            bucket_size: 144,
            group_size: 0,
        },
    )
    .unwrap();
    assert_eq!(
        s,
        HeaderSample {
            len: 100,
            capacity: 128,
            bytes: 16 * 144,
            seed: 7,
            storage: 0xc000_0000,
        }
    );
    // Garbage: B far too large, or count impossible for B.
    b[9] = 200;
    assert!(decode_hmap(&b, &hmap_layout(), TypeSizes::default()).is_none());
    b[9] = 1;
    b[0..8].copy_from_slice(&1_000_000u64.to_le_bytes());
    assert!(decode_hmap(&b, &hmap_layout(), TypeSizes::default()).is_none());
    // Reused memory: B = 46 with a count that fits it (seen on a real
    // service), undefined flag bits, a misaligned bucket pointer.
    let ok = |b: &[u8]| decode_hmap(b, &hmap_layout(), TypeSizes::default()).is_some();
    b[0..8].copy_from_slice(&5u64.to_le_bytes());
    assert!(ok(&b));
    b[9] = 46;
    assert!(!ok(&b));
    b[9] = 1;
    b[8] = 0x20;
    assert!(!ok(&b));
    b[8] = 0;
    b[16..24].copy_from_slice(&0xc000_0004u64.to_le_bytes());
    assert!(!ok(&b));
    // Entries without a bucket array (seen on prometheus: len 38, no
    // buckets), or more entries than slots.
    b[9] = 0;
    b[16..24].copy_from_slice(&0u64.to_le_bytes());
    b[0..8].copy_from_slice(&38u64.to_le_bytes());
    assert!(!ok(&b));
    b[9] = 1;
    b[16..24].copy_from_slice(&0xc000_0000u64.to_le_bytes());
    b[0..8].copy_from_slice(&17u64.to_le_bytes());
    assert!(!ok(&b));
    b[0..8].copy_from_slice(&5u64.to_le_bytes());
    // A map with capacity and an unknown type still counts its bucket
    // array at the smallest bucket size.
    b[16..24].copy_from_slice(&0xc000_0000u64.to_le_bytes());
    let s = decode_hmap(&b, &hmap_layout(), TypeSizes::default()).unwrap();
    assert_eq!(s.bytes, 2 * MIN_BUCKET);
}

/// Reading our own memory through process_vm_readv works, and an unmapped
/// address fails cleanly.
#[test]
fn read_self() {
    let data: Vec<u8> = (0..=255).collect();
    let m = Memory::new(std::process::id());
    let mut buf = [0u8; 16];
    assert!(m.read(data.as_ptr() as u64 + 10, &mut buf));
    assert_eq!(buf[0], 10);
    assert!(!m.read(8, &mut buf));
    let many = m.read_many(&[
        (data.as_ptr() as u64, 4),
        (8, 4),
        (data.as_ptr() as u64 + 100, 2),
    ]);
    assert_eq!(many[0].as_deref(), Some(&[0u8, 1, 2, 3][..]));
    assert!(many[1].is_none());
    assert_eq!(many[2].as_deref(), Some(&[100u8, 101][..]));
}

fn swiss_layout() -> RuntimeLayout {
    RuntimeLayout {
        swiss_used: Some(0),
        swiss_seed: Some(8),
        swiss_dir_ptr: Some(16),
        swiss_dir_len: Some(24),
        swiss_global_depth: Some(32),
        swiss_map_size: Some(48),
        table_capacity: Some(2),
        ..Default::default()
    }
}

/// An hmap header of `count` entries, `B` = 1, seed `seed`.
fn hmap(count: u64, seed: u32) -> [u8; 48] {
    let mut b = [0u8; 48];
    b[0..8].copy_from_slice(&count.to_le_bytes());
    b[9] = 1;
    b[12..16].copy_from_slice(&seed.to_le_bytes());
    b[16..24].copy_from_slice(&0xc000_0000u64.to_le_bytes());
    b
}

/// Many regions read into one buffer, in order; an unreadable one is
/// marked and the others still read.
#[test]
fn read_flat_self() {
    let data: Vec<u8> = (0..=255).collect();
    let m = Memory::new(std::process::id());
    let p = data.as_ptr() as u64;
    let mut buf = Vec::new();
    let ok = m.read_flat(&[(p, 4), (8, 4), (p + 100, 2)], &mut buf);
    assert_eq!(ok, [true, false, true]);
    assert_eq!(&buf[0..4], &[0, 1, 2, 3]);
    assert_eq!(&buf[8..10], &[100, 101]);
    // More regions than one system call takes.
    let regions: Vec<(u64, usize)> = (0..3000).map(|i| (p + (i % 200), 1)).collect();
    let ok = m.read_flat(&regions, &mut buf);
    assert!(ok.iter().all(|&x| x));
    assert_eq!(buf[2999], (2999 % 200) as u8);
}

/// A sample of hmap headers in this process's memory: live ones are
/// recorded; a header that stops making sense retires its map only
/// after RETIRE_AFTER samples; when every read fails (the process is
/// gone) nothing changes.
#[test]
fn sample_model_hmap() {
    use crate::model::{RETIRE_AFTER, SampleAt};
    let mem = Memory::new(std::process::id());
    let l = hmap_layout();
    let mut headers: Vec<[u8; 48]> = (0..3000).map(|i| hmap(i % 16, 7)).collect();
    let addr = |h: &[[u8; 48]], i: usize| h[i].as_ptr() as u64;
    let mut model = Model::default();
    for i in 0..headers.len() {
        model.on_grow(addr(&headers, i), 0, 0, None);
    }
    let st = sample_model(
        &mut model,
        &mem,
        &l,
        MapImpl::Hmap,
        |_| TypeSizes::default(),
        SampleAt::gc(1),
    );
    assert_eq!((st.read, st.skipped), (3000, 0));
    let m = &model.maps[&addr(&headers, 17)];
    assert_eq!(m.last().map(|x| x.len), Some(1));
    // Garbage at one map: B far too large.
    headers[5][9] = 200;
    for c in 2..(1 + u64::from(RETIRE_AFTER)) {
        sample_model(
            &mut model,
            &mem,
            &l,
            MapImpl::Hmap,
            |_| TypeSizes::default(),
            SampleAt::gc(c),
        );
        assert_eq!(model.maps.len(), 3000);
    }
    sample_model(
        &mut model,
        &mem,
        &l,
        MapImpl::Hmap,
        |_| TypeSizes::default(),
        SampleAt::gc(9),
    );
    assert_eq!(model.maps.len(), 2999);
    assert_eq!(model.retired, 1);
    // A sample out of time reads one batch and leaves the rest to the
    // next, which starts there.
    let c = model.caps.reads_unreached;
    let st = sample_model_within(
        &mut model,
        &mem,
        &l,
        MapImpl::Hmap,
        |_| TypeSizes::default(),
        SampleAt::gc(20),
        Duration::ZERO,
    );
    assert_eq!((st.read, st.unreached), (BATCH as u64, 2999 - BATCH as u64));
    assert_eq!(model.caps.reads_unreached - c, st.unreached);
    let cursor = model.sample_cursor;
    let st = sample_model_within(
        &mut model,
        &mem,
        &l,
        MapImpl::Hmap,
        |_| TypeSizes::default(),
        SampleAt::gc(21),
        Duration::ZERO,
    );
    assert_eq!(st.read, BATCH as u64);
    assert_eq!(model.sample_cursor, (cursor + BATCH) % 2999);
    let at_20 = model
        .maps
        .values()
        .filter(|m| m.last().is_some_and(|x| x.cycle == 20))
        .count();
    assert_eq!(at_20, BATCH);
    // Nothing readable: the process is gone, the history stays.
    let gone = Model::default();
    let mut only_bad = gone;
    only_bad.on_grow(8, 0, 0, None);
    only_bad.on_grow(16, 0, 0, None);
    sample_model(
        &mut only_bad,
        &mem,
        &l,
        MapImpl::Hmap,
        |_| TypeSizes::default(),
        SampleAt::gc(1),
    );
    assert_eq!(only_bad.maps.len(), 2);
    // One readable among unreadable ones: the unreadable are dead.
    only_bad.on_grow(addr(&headers, 0), 0, 0, None);
    sample_model(
        &mut only_bad,
        &mem,
        &l,
        MapImpl::Hmap,
        |_| TypeSizes::default(),
        SampleAt::gc(2),
    );
    assert_eq!(only_bad.maps.len(), 1);
}

/// Swiss maps whose headers claim the largest directories cost the
/// sample at most MAX_TABLE_BYTES_PER_SAMPLE: the maps past it are
/// skipped and counted, not read; the others are sampled.
#[test]
fn swiss_directories_are_capped_per_sample() {
    use crate::model::SampleAt;
    let mem = Memory::new(std::process::id());
    let l = swiss_layout();
    // One table of capacity 1024, and a directory of 2^16 entries
    // pointing to it.
    let mut table = [0u8; 32];
    table[2..4].copy_from_slice(&1024u16.to_le_bytes());
    let dir: Vec<u64> = vec![table.as_ptr() as u64; MAX_DIR_LEN as usize];
    let big = |seed: u64| {
        let mut b = [0u8; 48];
        b[0..8].copy_from_slice(&500u64.to_le_bytes());
        b[8..16].copy_from_slice(&seed.to_le_bytes());
        b[16..24].copy_from_slice(&(dir.as_ptr() as u64).to_le_bytes());
        b[24..32].copy_from_slice(&MAX_DIR_LEN.to_le_bytes());
        b[32] = 16;
        b
    };
    let headers: Vec<[u8; 48]> = (0..40).map(big).collect();
    let mut model = Model::default();
    for h in &headers {
        model.on_grow(h.as_ptr() as u64, 0, 0, None);
    }
    let st = sample_model(
        &mut model,
        &mem,
        &l,
        MapImpl::Swiss,
        |_| TypeSizes::default(),
        SampleAt::gc(1),
    );
    let per_map = MAX_DIR_LEN * 8 + MAX_DIR_LEN * TABLE_HEADER as u64;
    let fit = MAX_TABLE_BYTES_PER_SAMPLE / per_map;
    assert_eq!(st.read, 40);
    assert_eq!(st.skipped, 40 - fit);
    assert_eq!(model.caps.reads_skipped, 40 - fit);
    assert!(st.table_bytes <= MAX_TABLE_BYTES_PER_SAMPLE);
    let sampled: Vec<_> = model
        .maps
        .values()
        .filter_map(crate::model::TrackedMap::last)
        .collect();
    assert_eq!(sampled.len() as u64, fit);
    // One distinct table: its capacity, once.
    assert!(sampled.iter().all(|x| x.capacity == 1024 && x.len == 500));
    // A header claiming more entries than its directory's tables hold
    // is not a live map.
    let mut b = big(1);
    b[24..32].copy_from_slice(&1u64.to_le_bytes());
    b[32] = 0;
    b[0..8].copy_from_slice(&1025u64.to_le_bytes());
    assert!(decode_swiss(&b, &l).is_none());
    b[0..8].copy_from_slice(&1024u64.to_le_bytes());
    assert!(decode_swiss(&b, &l).is_some());
}

/// A Swiss map one of whose tables cannot be read gives no sample (not a
/// capacity of the tables that could): the map keeps its last one.
#[test]
fn a_swiss_table_that_cannot_be_read_gives_no_sample() {
    use crate::model::SampleAt;
    let mem = Memory::new(std::process::id());
    let l = swiss_layout();
    let mut table = [0u8; 32];
    table[2..4].copy_from_slice(&1024u16.to_le_bytes());
    let mut dir: Vec<u64> = vec![table.as_ptr() as u64; 2];
    let mut h = [0u8; 48];
    h[0..8].copy_from_slice(&10u64.to_le_bytes());
    h[16..24].copy_from_slice(&(dir.as_ptr() as u64).to_le_bytes());
    h[24..32].copy_from_slice(&2u64.to_le_bytes());
    h[32] = 1;
    let addr = h.as_ptr() as u64;
    let mut model = Model::default();
    model.on_grow(addr, 0, 0, None);
    let sample = |model: &mut Model, cycle| {
        sample_model(
            model,
            &mem,
            &l,
            MapImpl::Swiss,
            |_| TypeSizes::default(),
            SampleAt::gc(cycle),
        )
    };
    sample(&mut model, 1);
    let last = |model: &Model| model.maps[&addr].last().map(|x| (x.cycle, x.capacity));
    assert_eq!(last(&model), Some((1, 1024)));
    // Its second table is now at an address nothing is mapped at.
    dir[1] = 8;
    std::hint::black_box(&dir);
    sample(&mut model, 2);
    assert_eq!(last(&model), Some((1, 1024)), "a capacity of 1024 counted");
    assert!(model.maps.contains_key(&addr), "retired at once");
}
