//! The workload's binaries: `testdata/go/bench` built with each Go
//! release (plain, and stripped for the per-hit microbenchmark), what
//! `mapleak-trace inspect` says about them, and where the microbenchmark's
//! probes go (the ELF PT_LOAD headers, the Go prologue).
use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context as _, Result, bail};
use serde_json::Value;

/// A build of `testdata/go/bench` with one Go release, and where
/// mapleak-trace puts its probes in it.
pub(super) struct GoBin {
    pub(super) tag: String,
    pub(super) map_impl: String,
    pub(super) bin: PathBuf,
    pub(super) stripped: PathBuf,
    /// Functions default mode keeps probed (creation, growth, GC,
    /// finalizers; from `mapleak-trace inspect`): what bpftrace probes.
    pub(super) functions: Vec<String>,
    /// Write-path functions, probed only in the governor's write windows.
    pub(super) write_functions: Vec<String>,
    /// Default-mode probe addresses that are RET sites (single-stepped).
    pub(super) ret_sites: Vec<u64>,
    /// Addresses of the write-path probes.
    pub(super) write_sites: Vec<u64>,
    pub(super) micro: Micro,
}

/// Where the microbenchmark puts its probes, in the stripped binary.
pub(super) struct Micro {
    pub(super) func: String,
    pub(super) addr: u64,
    pub(super) file_offset: u64,
    pub(super) jbe: u64,
    pub(super) push: u64,
}

fn build_go(root: &Path, out_dir: &Path, tag: &str, stripped: bool) -> Result<PathBuf> {
    let name = if stripped {
        format!("bench-{tag}-stripped")
    } else {
        format!("bench-{tag}")
    };
    let bin = out_dir.join(name);
    let mut cmd = Command::new("go");
    cmd.current_dir(root.join("testdata/go"))
        .env("GOTOOLCHAIN", tag)
        .env("CGO_ENABLED", "0")
        .env("GOFLAGS", "-buildvcs=false")
        .arg("build")
        .arg("-o")
        .arg(&bin);
    if stripped {
        cmd.arg("-ldflags=-s -w");
    }
    cmd.arg("./bench");
    let st = cmd
        .status()
        .with_context(|| format!("running go ({tag}); scripts/setup.sh installs the toolchains"))?;
    if !st.success() {
        bail!("go build of testdata/go/bench with {tag} failed: {st}");
    }
    Ok(bin)
}

fn inspect(tracer: &Path, bin: &Path) -> Result<Value> {
    let out = Command::new(tracer)
        .arg("inspect")
        .arg(bin)
        .arg("--json")
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {} inspect", tracer.display()))?;
    if !out.status.success() {
        bail!(
            "mapleak-trace inspect {} failed: {}",
            bin.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    serde_json::from_slice(&out.stdout).context("parsing mapleak-trace inspect --json")
}

pub(super) fn hex(v: &Value) -> Option<u64> {
    let s = v.as_str()?;
    u64::from_str_radix(s.trim_start_matches("0x"), 16).ok()
}

/// Builds the workload with `tag` (plain and stripped) and inspects both.
pub(super) fn prepare(
    root: &Path,
    out_dir: &Path,
    tracer: &Path,
    tag: &str,
    map_impl: &str,
) -> Result<GoBin> {
    eprintln!("bench: building testdata/go/bench with {tag}");
    let bin = build_go(root, out_dir, tag, false)?;
    let stripped = build_go(root, out_dir, tag, true)?;
    let info = inspect(tracer, &bin)?;
    let got = info.get("map_impl").and_then(Value::as_str).unwrap_or("?");
    if got != map_impl {
        bail!("{} uses {got} maps, expected {map_impl}", bin.display());
    }
    // Probes by group: the write path (role "Write", attached only in the
    // governor's windows) and the rest.
    let probes: Vec<&Value> = info
        .get("probes")
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    let is_write = |p: &Value| p.get("role").and_then(Value::as_str) == Some("Write");
    let mut functions: Vec<String> = Vec::new();
    let mut write_functions: Vec<String> = Vec::new();
    let mut write_sites = Vec::new();
    for p in &probes {
        let Some(name) = p.get("function").and_then(Value::as_str) else {
            continue;
        };
        let list = if is_write(p) {
            if let Some(a) = p.get("address").and_then(hex) {
                write_sites.push(a);
            }
            &mut write_functions
        } else {
            &mut functions
        };
        if !list.iter().any(|f| f == name) {
            list.push(name.to_owned());
        }
    }
    if functions.is_empty() {
        bail!(
            "mapleak-trace inspect lists no probed function in {}",
            bin.display()
        );
    }
    let ret_sites: Vec<u64> = probes
        .iter()
        .filter(|p| p.get("ret_site").and_then(Value::as_bool).unwrap_or(false))
        .filter_map(|p| p.get("address").and_then(hex))
        .collect();
    // The microbenchmark's function, located in the stripped binary (whose
    // text is the same as the other's, but bpftrace must not see symbols:
    // see run_probe_cost).
    let sinfo = inspect(tracer, &stripped)?;
    let func = "runtime.mapassign_fast64";
    let addr = sinfo
        .get("write_path_functions")
        .and_then(Value::as_array)
        .and_then(|a| {
            a.iter()
                .find(|f| f.get("name").and_then(Value::as_str) == Some(func))
        })
        .and_then(|f| f.get("address"))
        .and_then(hex)
        .with_context(|| format!("{func} not found by inspect in {}", stripped.display()))?;
    let elf = fs::read(&stripped)?;
    let file_offset = va_to_file_offset(&elf, addr)?;
    let start = usize::try_from(file_offset)?;
    let code = elf
        .get(start..start + 32)
        .context("function outside the file")?;
    let (jbe, push) = prologue(code).with_context(|| format!("decoding the prologue of {func}"))?;
    Ok(GoBin {
        tag: tag.to_owned(),
        map_impl: map_impl.to_owned(),
        bin,
        stripped,
        functions,
        write_functions,
        ret_sites,
        write_sites,
        micro: Micro {
            func: func.to_owned(),
            addr,
            file_offset,
            jbe,
            push,
        },
    })
}

/// Virtual address to file offset, from the PT_LOAD headers of an ELF64 LE file.
fn va_to_file_offset(elf: &[u8], va: u64) -> Result<u64> {
    let u16_at = |o: usize| -> Option<u64> {
        elf.get(o..o + 2)
            .map(|b| u64::from(u16::from_le_bytes([b[0], b[1]])))
    };
    let u32_at = |o: usize| -> Option<u64> {
        elf.get(o..o + 4)
            .map(|b| u64::from(u32::from_le_bytes([b[0], b[1], b[2], b[3]])))
    };
    let u64_at = |o: usize| -> Option<u64> {
        elf.get(o..o + 8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes)
    };
    if elf.get(..6) != Some(b"\x7fELF\x02\x01".as_slice()) {
        bail!("not a little-endian ELF64 file");
    }
    let phoff = u64_at(0x20).context("short ELF header")?;
    let phentsize = u16_at(0x36).context("short ELF header")?;
    let phnum = u16_at(0x38).context("short ELF header")?;
    for i in 0..phnum {
        let ph = usize::try_from(phoff + i * phentsize)?;
        let (Some(ty), Some(off), Some(vaddr), Some(filesz)) =
            (u32_at(ph), u64_at(ph + 8), u64_at(ph + 16), u64_at(ph + 32))
        else {
            bail!("truncated program header");
        };
        if ty == 1 && va >= vaddr && va < vaddr + filesz {
            return Ok(va - vaddr + off);
        }
    }
    bail!("{va:#x} is in no PT_LOAD segment")
}

/// Offsets of the `JBE` and the `PUSHQ BP` in a Go amd64 prologue:
/// `[LEAQ -n(SP), R12]; CMPQ SP|R12, 16(R14); JBE morestack; PUSHQ BP`.
fn prologue(code: &[u8]) -> Result<(u64, u64)> {
    let mut i = 0usize;
    if code.starts_with(&[0x4c, 0x8d, 0x64, 0x24]) {
        i = 5;
    } else if code.starts_with(&[0x4c, 0x8d, 0xa4, 0x24]) {
        i = 8;
    }
    let cmp = code.get(i..i + 4).context("short function")?;
    if cmp != [0x49, 0x3b, 0x66, 0x10] && cmp != [0x4d, 0x3b, 0x66, 0x10] {
        bail!(
            "no stack check at the entry: {:02x?}",
            &code[..code.len().min(16)]
        );
    }
    i += 4;
    let jbe = i;
    match code.get(i..i + 2) {
        Some([0x0f, 0x86]) => i += 6,
        Some([0x76, _]) => i += 2,
        _ => bail!(
            "no JBE after the stack check: {:02x?}",
            &code[..code.len().min(16)]
        ),
    }
    if code.get(i) != Some(&0x55) {
        bail!(
            "no PUSHQ BP after the JBE: {:02x?}",
            &code[..code.len().min(16)]
        );
    }
    Ok((jbe as u64, i as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prologue_short_and_long_forms() {
        // CMPQ SP, 16(R14); JBE rel8; PUSHQ BP.
        let code = [0x49, 0x3b, 0x66, 0x10, 0x76, 0x2a, 0x55, 0x48];
        assert_eq!(prologue(&code).unwrap(), (4, 6));
        // LEAQ -16(SP), R12; CMPQ R12, 16(R14); JBE rel32; PUSHQ BP.
        let code = [
            0x4c, 0x8d, 0x64, 0x24, 0xf0, 0x4d, 0x3b, 0x66, 0x10, 0x0f, 0x86, 0, 0, 0, 0, 0x55,
        ];
        assert_eq!(prologue(&code).unwrap(), (9, 15));
        assert!(prologue(&[0x55, 0x48, 0x89, 0xe5]).is_err());
    }

    #[test]
    fn va_to_file_offset_needs_an_elf64() {
        assert!(va_to_file_offset(b"not an ELF", 0x401000).is_err());
    }
}
