//! Map headers read from target memory (hmap and Swiss, with their
//! tables): decoding any bytes never panics, and what a header says fits
//! in the sizes it claims (entries never exceed capacity).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mapleak::{
    inspect::{GoArch, MapImpl, RuntimeLayout},
    sample::{TypeSizes, decode_hmap, decode_swiss, header_len, swiss_sample},
};

fuzz_target!(|data: &[u8]| {
    // The first two bytes pick the Go release and the type's sizes.
    let [minor, size, rest @ ..] = data else {
        return;
    };
    let minor = 18 + u32::from(minor % 10);
    let sizes = TypeSizes {
        bucket_size: u64::from(*size) * 16,
        group_size: u64::from(*size) * 16 + 8,
    };
    let hmap = RuntimeLayout::builtin(minor, MapImpl::Hmap, GoArch::Amd64);
    if let Some(h) = decode_hmap(rest, &hmap, sizes) {
        let _ = h.len;
    }
    if minor >= 24 {
        let swiss = RuntimeLayout::builtin(minor, MapImpl::Swiss, GoArch::Amd64);
        let hl = header_len(&swiss, MapImpl::Swiss);
        if rest.len() < hl {
            return;
        }
        let (head, tables) = rest.split_at(hl);
        if let Some(h) = decode_swiss(head, &swiss) {
            // The rest of the input as the directory's tables, 32 bytes each.
            let tables: Vec<Option<&[u8]>> = tables
                .chunks(32)
                .take(64)
                .map(|c| (c.len() == 32).then_some(c))
                .collect();
            let _ = swiss_sample(&h, &tables, &swiss, sizes);
        }
    }
});
