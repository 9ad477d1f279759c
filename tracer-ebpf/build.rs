//! Rebuild the eBPF object when bpf-linker changes (a new LLVM, say).
//!
//! The object itself is built by `tracer-user`'s build script through
//! aya-build; this only makes cargo's fingerprint notice the linker.
fn main() {
    println!("cargo::rustc-check-cfg=cfg(bpf_target_arch, values(\"x86_64\", \"aarch64\"))");
    if let Ok(linker) = which::which("bpf-linker") {
        println!("cargo:rerun-if-changed={}", linker.display());
    }
}
