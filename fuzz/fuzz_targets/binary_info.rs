//! Whole executables: `BinaryInfo::from_bytes` (ELF, build info, pclntab,
//! symbols, DWARF, moduledata) never panics on any input, and what it
//! answers about an address never panics either.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mapleak::inspect::BinaryInfo;

fuzz_target!(|data: &[u8]| {
    let Ok(info) = BinaryInfo::from_bytes("fuzz".into(), data.to_vec()) else {
        return;
    };
    let _ = info.global_maps();
    let _ = info.data_range();
    for pc in [0u64, 0x40_1000, 0x45_0000, u64::MAX] {
        let _ = info.frame_for_pc(pc);
        let _ = info.type_name(pc);
        let _ = info.map_type_info(pc);
        let _ = info.va_to_file_offset(pc);
        let _ = info.data_symbol_at(pc);
    }
});
