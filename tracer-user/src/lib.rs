//! mapleak-trace: find Go maps that leak, in a running process, with eBPF.
//!
//! ```text
//! discover -> inspect -> plan -> bpf (load, attach) -> ingest -> model -> report
//! (pid)       (binary)   (probes)  (links, RAII)      (events)  (maps,    (text, json)
//!                                                      sample ->  GC)
//!                                                      (process_vm_readv)
//! ```
//!
//! Every stage before `bpf` is pure and needs no privileges.
pub mod app;
pub mod bpf;
pub mod budget;
pub mod color;
pub mod discover;
pub mod doctor;
pub mod finalizers;
pub mod generate;
pub mod governor;
pub mod holders;
pub mod ingest;
pub mod inspect;
pub mod inspect_cmd;
pub mod keys;
pub mod metrics;
pub mod model;
pub mod output;
pub mod plan;
pub mod progress;
pub mod report;
pub mod runcost;
pub mod sample;
pub mod speed;
pub mod syncmap;
