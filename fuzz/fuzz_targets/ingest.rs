//! Ring-buffer records: decoding any bytes never panics, and a decoded
//! record belongs to a known kind.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mapleak::ingest::{Event, decode};

fuzz_target!(|data: &[u8]| {
    if let Ok(ev) = decode(data) {
        // Every kind carries the header it was decoded from.
        let _ = ev.tgid();
        match ev {
            Event::MapGrow(_) | Event::Fin(_) | Event::GcMarked(_) | Event::Exec(_) => {}
        }
    }
});
