//! `.gopclntab` parsing and line lookups never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mapleak::inspect::pclntab;

fuzz_target!(|data: &[u8]| {
    // The first 8 bytes pick the text start, the rest is the table.
    let (text, table) = if data.len() >= 8 {
        let mut a = [0u8; 8];
        a.copy_from_slice(&data[..8]);
        (u64::from_le_bytes(a), &data[8..])
    } else {
        (0x401000, data)
    };
    if let Ok(t) = pclntab::parse(table, text) {
        for (i, f) in t.funcs.iter().enumerate().take(64) {
            let _ = t.index_for_pc(f.entry);
            let _ = t.file_line(i, f.entry);
            let _ = t.file_line(i, f.end.wrapping_sub(1));
        }
    }
});
