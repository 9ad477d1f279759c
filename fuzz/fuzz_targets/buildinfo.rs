//! `.go.buildinfo` parsing never panics, and a parsed version is well formed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mapleak::inspect::buildinfo;

fuzz_target!(|data: &[u8]| {
    if let Ok(info) = buildinfo::parse(data) {
        let _ = buildinfo::parse_version(&info.version);
        let _ = info.experiments();
    }
    let _ = buildinfo::find_magic(data);
});
