//! A stack-trace map whose values hold [`STACK_DEPTH`] frames.
//!
//! aya-ebpf's `StackTrace` always holds `PERF_MAX_STACK_DEPTH` (127)
//! frames, and `bpf_get_stackid` walks as many frames as the map's value
//! holds: a deep Go stack (a JSON decoder's recursion) was walked, hashed
//! and copied to its last frame, and 16,384 stacks took 16 MiB of kernel
//! memory. The definition below is the same legacy `maps`-section record
//! aya-ebpf writes, with a smaller value.
use core::cell::UnsafeCell;

use aya_ebpf::bindings::{bpf_map_def, bpf_map_type::BPF_MAP_TYPE_STACK_TRACE};
use tracer_common::stacks::STACK_DEPTH;

/// The map's definition, as the loader reads it from the object.
#[repr(transparent)]
pub struct ShallowStackTrace(UnsafeCell<bpf_map_def>);

// SAFETY: the definition is only read, by the loader, before any program
// runs; programs use the map through its address.
unsafe impl Sync for ShallowStackTrace {}

impl ShallowStackTrace {
    /// A map of `max_entries` stacks.
    pub const fn with_max_entries(max_entries: u32) -> Self {
        Self(UnsafeCell::new(bpf_map_def {
            type_: BPF_MAP_TYPE_STACK_TRACE,
            key_size: 4,
            value_size: STACK_DEPTH * 8,
            max_entries,
            map_flags: 0,
            id: 0,
            pinning: 0,
        }))
    }

    /// The map, for `bpf_get_stackid`.
    pub const fn as_ptr(&self) -> *mut core::ffi::c_void {
        self.0.get().cast()
    }
}
