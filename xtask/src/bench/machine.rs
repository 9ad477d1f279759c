//! What the report says about the machine.
use std::{
    collections::BTreeMap,
    fs,
    process::{Command, Stdio},
    thread,
};

/// A command's trimmed stdout, if it succeeded and printed something.
pub(super) fn cmd_out(prog: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(prog)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .ok()?;
    let s = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    (out.status.success() && !s.is_empty()).then_some(s)
}

/// The machine table of the report.
pub(super) fn machine() -> BTreeMap<&'static str, String> {
    let mut m = BTreeMap::new();
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown".to_owned(), |(_, v)| v.trim().to_owned());
    m.insert("cpu", model);
    let hv = cpuinfo
        .lines()
        .any(|l| l.starts_with("flags") && l.contains(" hypervisor"));
    m.insert(
        "virtualized",
        if hv {
            "yes (hypervisor flag)"
        } else {
            "no hypervisor flag"
        }
        .to_owned(),
    );
    m.insert(
        "nproc",
        thread::available_parallelism().map_or("?".to_owned(), |n| n.to_string()),
    );
    m.insert(
        "kernel",
        fs::read_to_string("/proc/sys/kernel/osrelease")
            .map_or("?".to_owned(), |s| s.trim().to_owned()),
    );
    let mem = fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or("?".to_owned(), |kb| format!("{:.1} GiB", kb / 1048576.0));
    m.insert("memory", mem);
    m.insert(
        "bpftrace",
        cmd_out("bpftrace", &["--version"]).unwrap_or_else(|| "?".to_owned()),
    );
    m.insert(
        "date",
        cmd_out("date", &["-u", "+%Y-%m-%d %H:%M UTC"]).unwrap_or_else(|| "?".to_owned()),
    );
    m
}

/// The load averages over 1, 5 and 15 minutes.
pub(super) fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".to_owned())
}
