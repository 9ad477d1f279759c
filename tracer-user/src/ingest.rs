//! `ingest`: bytes from the ring buffer in, typed [`Event`]s out. Pure and
//! fuzzable: a short buffer or an unknown kind is an error, never a panic.
use thiserror::Error;
use tracer_common::{EventHeader, EventKind, FinEvent, GcEvent, MapGrowEvent};

/// A decoded event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A map grew.
    MapGrow(MapGrowEvent),
    /// `gcSweep` entered: cycle marked.
    GcMarked(GcEvent),
    /// A finalizer or cleanup function was entered.
    Fin(FinEvent),
    /// A process ran `execve` (node-wide mode).
    Exec(EventHeader),
}

impl Event {
    /// The process the event came from.
    #[must_use]
    pub fn tgid(&self) -> u32 {
        match self {
            Self::MapGrow(e) => e.hdr.tgid,
            Self::GcMarked(e) => e.hdr.tgid,
            Self::Fin(e) => e.hdr.tgid,
            Self::Exec(h) => h.tgid,
        }
    }
}

/// Why bytes could not be decoded.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum DecodeError {
    /// Fewer bytes than the kind needs.
    #[error("event of {got} bytes, {need} needed")]
    Short {
        /// Bytes present.
        got: usize,
        /// Bytes needed.
        need: usize,
    },
    /// Unknown kind: the object and this binary disagree on the ABI.
    #[error("unknown event kind {0}")]
    UnknownKind(u32),
}

fn read<T: aya::Pod>(b: &[u8]) -> Result<T, DecodeError> {
    let need = size_of::<T>();
    if b.len() < need {
        return Err(DecodeError::Short { got: b.len(), need });
    }
    // SAFETY: length checked; T is Pod (repr(C), no padding, every bit
    // pattern valid); read_unaligned tolerates any alignment.
    Ok(unsafe { core::ptr::read_unaligned(b.as_ptr().cast::<T>()) })
}

/// Decodes one ring-buffer record.
pub fn decode(b: &[u8]) -> Result<Event, DecodeError> {
    let hdr: EventHeader = read(b)?;
    match EventKind::try_from(hdr.kind).map_err(DecodeError::UnknownKind)? {
        EventKind::MapGrow => Ok(Event::MapGrow(read(b)?)),
        EventKind::GcMarked => Ok(Event::GcMarked(read(b)?)),
        EventKind::Fin => Ok(Event::Fin(read(b)?)),
        EventKind::Exec => Ok(Event::Exec(hdr)),
    }
}

/// Encodes a wire struct to bytes (tests). Only for the padding-free wire
/// structs: reading the padding bytes of another `T` would be undefined.
#[cfg(test)]
#[must_use]
fn encode<T: Copy>(v: &T) -> Vec<u8> {
    // SAFETY: T is a repr(C) wire type without padding (size-asserted in
    // tracer-common), so all its bytes are initialized.
    unsafe { core::slice::from_raw_parts((v as *const T).cast::<u8>(), size_of::<T>()) }.to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every kind round-trips; short and unknown inputs are typed errors.
    #[test]
    fn round_trip_and_errors() {
        let ev = MapGrowEvent {
            hdr: EventHeader {
                kind: EventKind::MapGrow as u32,
                tgid: 7,
                ts_ns: 99,
            },
            map_addr: 0xc000_1000,
            type_ptr: 0x4a_0000,
            stack_id: -1,
            probe_id: 3,
            ..Default::default()
        };
        assert_eq!(decode(&encode(&ev)), Ok(Event::MapGrow(ev)));
        let gc = GcEvent {
            hdr: EventHeader {
                kind: EventKind::GcMarked as u32,
                tgid: 7,
                ts_ns: 5,
            },
            work_cycles: 12,
            ..Default::default()
        };
        assert_eq!(decode(&encode(&gc)), Ok(Event::GcMarked(gc)));
        let fin = FinEvent {
            hdr: EventHeader {
                kind: EventKind::Fin as u32,
                tgid: 7,
                ts_ns: 6,
            },
            args: [1, 2, 3, 4, 5],
            probe_id: 9,
            fin_kind: 2,
            _pad: [0; 5],
        };
        assert_eq!(decode(&encode(&fin)), Ok(Event::Fin(fin)));
        let exec = EventHeader {
            kind: EventKind::Exec as u32,
            tgid: 4242,
            ts_ns: 8,
        };
        assert_eq!(decode(&encode(&exec)), Ok(Event::Exec(exec)));
        assert_eq!(Event::Exec(exec).tgid(), 4242);
        assert!(matches!(
            decode(&encode(&exec)[..12]),
            Err(DecodeError::Short { .. })
        ));
        assert!(matches!(
            decode(&encode(&ev)[..20]),
            Err(DecodeError::Short { .. })
        ));
        let mut bad = encode(&gc);
        bad[0] = 77;
        assert_eq!(decode(&bad), Err(DecodeError::UnknownKind(77)));
        // A retired kind (2, the cycle start's) is unknown too.
        bad[0] = 2;
        assert_eq!(decode(&bad), Err(DecodeError::UnknownKind(2)));
        assert!(decode(&[]).is_err());
    }

    /// Random bytes never panic.
    #[test]
    fn random_bytes() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for len in 0..200 {
            let b: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            let _ = decode(&b);
        }
    }
}
