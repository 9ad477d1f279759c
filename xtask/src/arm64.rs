//! `cargo xtask arm64-e2e`: the end-to-end suite (the host's e2e test files
//! but the two that need host-only tools, [`VM_TESTS`]; the same tests and
//! assertions) on a real arm64 kernel, in qemu-system-aarch64 (TCG) on any
//! host.
//!
//! 1. Cross-builds mapleak-trace and the e2e test binaries for
//!    aarch64-unknown-linux-gnu, statically linked (`+crt-static`), and the
//!    Go fixtures (`cargo xtask fixtures` builds the arm64 ones).
//! 2. Fetches Debian's arm64 kernel (the one `linux-image-arm64` names: 6.1;
//!    `linux-image-6.12-arm64` with `--kernel 6.12`), busybox-static, and
//!    bpftool with its libraries, through a private APT configuration
//!    (`APT::Architecture "arm64"`, the host's own Debian mirrors), into a
//!    cache directory. What the mirror has is what is used; what was
//!    downloaded stays cached, so a kernel the mirror dropped (superseded by
//!    a security update) still runs; with neither, the run fails and says so.
//! 3. Builds an initramfs (busybox, the 9p and virtio modules, bpftool,
//!    glibc) whose `/init` mounts the host's share and runs `run.sh` there.
//! 4. Boots it with 2 vCPUs, runs the suite as root with `CI=true` and
//!    `--test-threads=1`, and reads the exit status and the test output
//!    back through the 9p share. A test that fails is run once more, alone
//!    (a loaded moment under TCG can starve the tracer of samples); the
//!    output says so, and a second failure fails the tier.
//!
//! The paths compiled into the test binary (`CARGO_MANIFEST_DIR`,
//! `CARGO_BIN_EXE_mapleak-trace`, `target/fixtures`) are recreated in the
//! VM's tmpfs, so the tests run unchanged.
use std::{
    fs,
    io::{BufRead as _, BufReader},
    os::unix::{fs::PermissionsExt as _, process::CommandExt as _},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

const TARGET: &str = "aarch64-unknown-linux-gnu";

/// The e2e test files run in the VM: every one of the host's but
/// `e2e_pprof` (it runs `go tool pprof`, and the VM has no Go toolchain),
/// `e2e_distro` (Debian's amd64 `prometheus` and `etcd` binaries) and
/// `e2e_fleet` (both).
const VM_TESTS: &[&str] = &[
    "e2e",
    "e2e_lifecycle",
    "e2e_multi",
    "e2e_bpflog",
    "e2e_families",
    "e2e_syncmap",
    "e2e_holders",
];

/// Packages unpacked into the initramfs besides the kernel: busybox for
/// the shell and tools the tests call (`sh`, `kill`, `sleep`, `unshare`,
/// `mount`), bpftool (the tests list loaded programs with it) and the
/// shared libraries bpftool needs.
const USER_DEBS: &[&str] = &[
    "busybox-static",
    "bpftool",
    "libc6",
    "libcap2",
    "libelf1",
    "zlib1g",
    "libzstd1",
];

/// The kernel modules `/init` loads (with their dependencies), when they
/// are not built in: the 9p share over virtio-pci.
const MODULES: &[&str] = &["virtio_pci", "9pnet_virtio", "9p"];

/// Arguments of `cargo xtask arm64-e2e`.
#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// Debian arm64 kernel series: 6.1 (bookworm's, no uprobe_multi) or 6.12
    /// (bookworm-security's linux-image-6.12-arm64, uprobe_multi).
    #[arg(long, default_value = "6.1")]
    kernel: String,
    /// Cache for downloaded debs, APT lists and unpacked kernels (default:
    /// target/arm64-e2e/cache; `MAPLEAK_ARM64_CACHE` overrides it too).
    #[arg(long)]
    cache: Option<PathBuf>,
    /// Only these tests (a filter passed to the test binary).
    #[arg(long)]
    filter: Option<String>,
    /// Hard limit for the VM run, in minutes.
    #[arg(long, default_value_t = 40)]
    timeout_min: u64,
    /// NAME=VALUE set for the tests in the VM (and the tracers they run),
    /// e.g. MAPLEAK_DEBUG_TIMING=1; repeatable.
    #[arg(long, value_name = "NAME=VALUE")]
    env: Vec<String>,
}

fn log(t0: Instant, what: &str) {
    eprintln!("arm64-e2e [{:6.1}s] {what}", t0.elapsed().as_secs_f64());
}

pub(crate) fn run(args: &Args) -> Result<()> {
    let t0 = Instant::now();
    let (meta, kglob) = match args.kernel.as_str() {
        "6.1" => ("linux-image-arm64", "linux-image-6.1."),
        "6.12" => ("linux-image-6.12-arm64", "linux-image-6.12."),
        k => bail!("--kernel {k}: 6.1 or 6.12"),
    };
    for (tool, pkg) in [
        ("qemu-system-aarch64", "qemu-system-arm"),
        ("aarch64-linux-gnu-gcc", "gcc-aarch64-linux-gnu"),
        ("cpio", "cpio"),
        ("xz", "xz-utils"),
        ("dpkg-deb", "dpkg"),
        ("apt-get", "apt"),
    ] {
        if !crate::fixtures::on_path(tool) {
            bail!("{tool} not found (Debian package {pkg}): run scripts/setup.sh");
        }
    }
    let root = crate::root();
    let work = root.join("target/arm64-e2e");
    let cache = args
        .cache
        .clone()
        .or_else(|| std::env::var_os("MAPLEAK_ARM64_CACHE").map(PathBuf::from))
        .unwrap_or_else(|| work.join("cache"));
    fs::create_dir_all(&cache)?;
    let cache = fs::canonicalize(&cache)?;

    // 1. Builds.
    let (tracer, tests) = cross_build(&root)?;
    log(t0, &format!("cross build: {}", VM_TESTS.join(", ")));
    crate::fixtures::run(&crate::fixtures::Args {
        full: false,
        programs: vec!["target".into(), "mapzoo".into()],
        go: Vec::new(),
    })?;
    log(t0, "fixtures");

    // 2. Debs.
    let debs = fetch_debs(&cache, meta, kglob)?;
    log(
        t0,
        &format!(
            "debs: {}",
            debs.iter()
                .filter_map(|d| d.file_name()?.to_str())
                .collect::<Vec<_>>()
                .join(" ")
        ),
    );

    // 3. Kernel and initramfs.
    let kdeb = &debs[0];
    let kdir = cache.join(format!(
        "k-{}",
        kdeb.file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("kernel")
    ));
    if !kdir.join(".done").exists() {
        let _ = fs::remove_dir_all(&kdir);
        fs::create_dir_all(&kdir)?;
        dpkg_x(kdeb, &kdir)?;
        fs::write(kdir.join(".done"), "")?;
    }
    let vmlinuz = only_entry(&kdir.join("boot"), "vmlinuz-")?;
    let initrd = work.join(format!("initrd-{}.cpio.gz", args.kernel));
    build_initramfs(&kdir, &debs[1..], &work, &initrd)?;
    log(
        t0,
        &format!(
            "initramfs {} ({} KiB), kernel {}",
            initrd.display(),
            fs::metadata(&initrd)?.len() / 1024,
            vmlinuz.display()
        ),
    );

    // 4. The share: binaries, fixtures, sources the tests read, run.sh.
    let share = work.join(format!("share-{}", args.kernel));
    let _ = fs::remove_dir_all(&share);
    fs::create_dir_all(share.join("out"))?;
    fs::copy(&tracer, share.join("mapleak-trace"))?;
    fs::create_dir_all(share.join("tests"))?;
    for (name, exe) in &tests {
        fs::copy(exe, share.join("tests").join(name))?;
    }
    let fixtures = share.join("fixtures");
    fs::create_dir_all(&fixtures)?;
    for e in fs::read_dir(root.join("target/fixtures"))? {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        // The e2e targets (`target`, `syncmap`) in every variant, and the
        // binary one test puts in its place.
        let wanted = ((name.starts_with("target-") || name.starts_with("syncmap-"))
            && name.contains("-arm64-"))
            || name == "mapzoo-go1.26.8-arm64-default";
        if wanted && !name.ends_with(".stamp") {
            // Hard links: no copy on the host (the VM copies to its tmpfs).
            if fs::hard_link(e.path(), fixtures.join(&name)).is_err() {
                fs::copy(e.path(), fixtures.join(&name))?;
            }
        }
    }
    let run_sh = share.join("run.sh");
    fs::write(
        &run_sh,
        run_script(&root, &tracer, args.filter.as_deref(), &args.env)?,
    )?;
    fs::set_permissions(&run_sh, fs::Permissions::from_mode(0o755))?;

    // 5. Boot and run.
    let serial = work.join(format!("serial-{}.log", args.kernel));
    let status = boot(
        &vmlinuz,
        &initrd,
        &share,
        &serial,
        Duration::from_secs(args.timeout_min * 60),
    )?;
    log(t0, &format!("VM exited ({status})"));
    let out = share.join("out");
    let rc = fs::read_to_string(out.join("status")).ok();
    let text = fs::read_to_string(out.join("test.log")).unwrap_or_default();
    let summary: Vec<&str> = text
        .lines()
        .filter(|l| {
            l.starts_with("test result:")
                || l.contains("panicked")
                || l.starts_with("vm: passed on retry")
        })
        .collect();
    eprintln!(
        "arm64-e2e: kernel {}, test output in {}",
        args.kernel,
        out.join("test.log").display()
    );
    for l in summary {
        eprintln!("  {l}");
    }
    match rc.as_deref().map(str::trim) {
        Some("0") => {
            log(t0, "PASS");
            Ok(())
        }
        Some(code) => bail!(
            "the e2e suite failed in the arm64 VM (kernel {}): exit status {code}; see {}",
            args.kernel,
            out.join("test.log").display()
        ),
        None => bail!(
            "the arm64 VM (kernel {}) gave no test result: see {} (console)",
            args.kernel,
            serial.display()
        ),
    }
}

/// Cross-builds the tracer and the e2e test binaries; returns the tracer's
/// path and each test's name and path.
fn cross_build(root: &Path) -> Result<(PathBuf, Vec<(String, PathBuf)>)> {
    let ok = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .is_ok_and(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .any(|l| l == TARGET)
        });
    if !ok {
        bail!("rust target {TARGET} not installed: run scripts/setup.sh");
    }
    let out = Command::new(env!("CARGO"))
        .current_dir(root)
        .env(
            "CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER",
            "aarch64-linux-gnu-gcc",
        )
        .env(
            "CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUSTFLAGS",
            "-C target-feature=+crt-static",
        )
        .args([
            "test",
            "--locked",
            "--release",
            "--no-run",
            "-p",
            "tracer-user",
        ])
        .args(VM_TESTS.iter().flat_map(|t| ["--test", t]))
        .args([
            "--target",
            TARGET,
            "--message-format=json-render-diagnostics",
        ])
        .stderr(Stdio::inherit())
        .output()
        .context("running cargo")?;
    if !out.status.success() {
        bail!("cross build for {TARGET} failed: {}", out.status);
    }
    let mut tests = Vec::new();
    for l in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(l) else {
            continue;
        };
        if v["reason"] == "compiler-artifact"
            && let Some(name) = v["target"]["name"].as_str()
            && VM_TESTS.contains(&name)
            && let Some(x) = v["executable"].as_str()
        {
            tests.push((name.to_owned(), PathBuf::from(x)));
        }
    }
    for t in VM_TESTS {
        if !tests.iter().any(|(n, _)| n == t) {
            bail!("cargo named no executable for the test {t}");
        }
    }
    let tracer = root.join(format!("target/{TARGET}/release/mapleak-trace"));
    if !tracer.exists() {
        bail!("{} missing after the build", tracer.display());
    }
    Ok((tracer, tests))
}

/// The host's Debian mirror URIs for `suite` (from its own APT sources).
fn mirror(suite: &str) -> Option<String> {
    let out = Command::new("apt-get")
        .args([
            "indextargets",
            "--format",
            "$(REPO_URI) $(RELEASE)",
            "Created-By: Packages",
        ])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout).lines().find_map(|l| {
        let (uri, rel) = l.split_once(' ')?;
        (rel == suite).then(|| uri.to_owned())
    })
}

/// Writes the private APT configuration (arm64 only, its own state).
fn apt_config(cache: &Path) -> Result<PathBuf> {
    let a = cache.join("apt");
    for d in [
        "etc/apt/apt.conf.d",
        "etc/apt/preferences.d",
        "etc/apt/sources.list.d",
        "var/lib/apt/lists/partial",
        "var/cache/apt/archives/partial",
        "var/lib/dpkg",
    ] {
        fs::create_dir_all(a.join(d))?;
    }
    let status = a.join("var/lib/dpkg/status");
    if !status.exists() {
        fs::write(&status, "")?;
    }
    let main = mirror("bookworm").unwrap_or_else(|| "http://deb.debian.org/debian".into());
    let sec = mirror("bookworm-security")
        .unwrap_or_else(|| "http://deb.debian.org/debian-security".into());
    let key = "/usr/share/keyrings/debian-archive-keyring.gpg";
    fs::write(
        a.join("etc/apt/sources.list"),
        format!(
            "deb [signed-by={key}] {main} bookworm main\n\
             deb [signed-by={key}] {main} bookworm-updates main\n\
             deb [signed-by={key}] {sec} bookworm-security main\n"
        ),
    )?;
    let conf = a.join("apt.conf");
    fs::write(
        &conf,
        format!(
            "Dir \"{a}/\";\nDir::State::status \"{a}/var/lib/dpkg/status\";\n\
             Dir::Etc \"{a}/etc/apt/\";\nDir::Etc::TrustedParts \"/etc/apt/trusted.gpg.d/\";\n\
             APT::Architecture \"arm64\";\nAPT::Architectures {{ \"arm64\"; }};\n",
            a = a.display()
        ),
    )?;
    Ok(conf)
}

fn apt(conf: &Path, args: &[&str], dir: &Path) -> Result<String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .env("APT_CONFIG", conf)
        .current_dir(dir)
        .output()
        .with_context(|| format!("running {}", args[0]))?;
    if !out.status.success() {
        bail!(
            "{}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The newest cached deb of `pkg` (by file name) in `dir`.
fn cached_deb(dir: &Path, prefix: &str) -> Option<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(prefix) && n.ends_with("_arm64.deb"))
        })
        .collect();
    v.sort();
    v.pop()
}

/// The kernel deb first, then [`USER_DEBS`]: what the mirror has now
/// (downloaded once), else what an earlier run cached.
fn fetch_debs(cache: &Path, meta: &str, kglob: &str) -> Result<Vec<PathBuf>> {
    let debs = cache.join("debs");
    fs::create_dir_all(&debs)?;
    let conf = apt_config(cache)?;
    let update = apt(&conf, &["apt-get", "update", "-qq"], &debs);
    let mut out = Vec::new();
    // The kernel: the package the meta package depends on now.
    let mut wanted: Vec<(String, String)> = Vec::new();
    let kpkg = update.as_ref().ok().and_then(|_| {
        let deps = apt(&conf, &["apt-cache", "depends", meta], &debs).ok()?;
        deps.lines()
            .filter_map(|l| l.trim().strip_prefix("Depends: "))
            .find(|p| p.starts_with("linux-image-"))
            .map(str::to_owned)
    });
    wanted.push((
        kpkg.clone().unwrap_or_default(),
        kpkg.map_or_else(|| kglob.to_owned(), |p| format!("{p}_")),
    ));
    for p in USER_DEBS {
        wanted.push(((*p).to_owned(), format!("{p}_")));
    }
    for (i, (pkg, prefix)) in wanted.into_iter().enumerate() {
        let mut err = update.as_ref().err().map(|e| format!("{e:#}"));
        if err.is_none() && !pkg.is_empty() {
            // The exact version the mirror has now: cached, or downloaded.
            match apt(&conf, &["apt-cache", "policy", &pkg], &debs) {
                Ok(pol) => {
                    let ver = pol
                        .lines()
                        .find_map(|l| l.trim().strip_prefix("Candidate: "))
                        .unwrap_or("")
                        .replace(':', "%3a");
                    let name = format!("{pkg}_{ver}_arm64.deb");
                    if ver.is_empty() || ver == "(none)" {
                        err = Some(format!("the mirror has no {pkg} for arm64"));
                    } else if !debs.join(&name).exists()
                        && let Err(e) = apt(&conf, &["apt-get", "download", "-qq", &pkg], &debs)
                    {
                        err = Some(format!("{e:#}"));
                    }
                }
                Err(e) => err = Some(format!("{e:#}")),
            }
        }
        // The kernel the mirror names now could not be had: an older one
        // of the same series, if one was cached.
        let cached = cached_deb(&debs, &prefix).or_else(|| {
            if i == 0 {
                cached_deb(&debs, kglob)
            } else {
                None
            }
        });
        match cached {
            Some(d) => {
                if let Some(e) = err {
                    eprintln!(
                        "arm64-e2e: {e}; using the cached {}",
                        d.file_name().unwrap_or_default().to_string_lossy()
                    );
                }
                out.push(d);
            }
            None => bail!(
                "no {} deb for arm64: the Debian mirror did not provide it ({}) and none is \
                 cached in {}; check the network and /etc/apt/sources.list, or put the deb there",
                if pkg.is_empty() { meta } else { &pkg },
                err.unwrap_or_else(|| "download gave no file".into()),
                debs.display()
            ),
        }
    }
    Ok(out)
}

fn dpkg_x(deb: &Path, dir: &Path) -> Result<()> {
    let st = Command::new("dpkg-deb")
        .arg("-x")
        .arg(deb)
        .arg(dir)
        .status()?;
    if !st.success() {
        bail!("dpkg-deb -x {} failed: {st}", deb.display());
    }
    Ok(())
}

/// The one entry of `dir` whose name starts with `prefix`.
fn only_entry(dir: &Path, prefix: &str) -> Result<PathBuf> {
    fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(prefix))
        })
        .with_context(|| format!("no {prefix}* in {}", dir.display()))
}

/// Finds module `name` under `kernel/`, decompresses it into `out` (with
/// the modules it depends on first), and lists it in `order`.
fn add_module(kmods: &Path, name: &str, out: &Path, order: &mut Vec<String>) -> Result<()> {
    if order.iter().any(|m| m == name) {
        return Ok(());
    }
    let Some(file) = find_module(&kmods.join("kernel"), name) else {
        return Ok(()); // built in
    };
    let dst = out.join(format!("{name}.ko"));
    if file.extension().is_some_and(|e| e == "xz") {
        let o = Command::new("xz").arg("-dc").arg(&file).output()?;
        if !o.status.success() {
            bail!("xz -dc {} failed", file.display());
        }
        fs::write(&dst, o.stdout)?;
    } else {
        fs::copy(&file, &dst)?;
    }
    let bytes = fs::read(&dst)?;
    let deps = bytes
        .split(|&b| b == 0)
        .find_map(|s| s.strip_prefix(b"depends="))
        .map(|d| String::from_utf8_lossy(d).into_owned())
        .unwrap_or_default();
    for d in deps.split(',').filter(|d| !d.is_empty()) {
        add_module(kmods, d, out, order)?;
    }
    order.push(name.to_owned());
    Ok(())
}

fn find_module(dir: &Path, name: &str) -> Option<PathBuf> {
    for e in fs::read_dir(dir).ok()?.flatten() {
        let p = e.path();
        if p.is_dir() {
            if let Some(f) = find_module(&p, name) {
                return Some(f);
            }
        } else if let Some(n) = p.file_name().and_then(|n| n.to_str())
            && (n == format!("{name}.ko") || n == format!("{name}.ko.xz"))
        {
            return Some(p);
        }
    }
    None
}

const INIT: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin:/usr/bin:/usr/sbin:/sbin
mount -t proc proc /proc; mount -t sysfs sysfs /sys; mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
mkdir -p /sys/kernel/tracing /sys/fs/bpf
mount -t tracefs tracefs /sys/kernel/tracing; mount -t bpf bpf /sys/fs/bpf
for m in $(cat /lib/modules/order); do insmod /lib/modules/$m.ko; done
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 host0 /host
echo "init: $(uname -r) up at $(cut -d' ' -f1 /proc/uptime)s"
sh /host/run.sh
poweroff -f
"#;

fn build_initramfs(kdir: &Path, user_debs: &[PathBuf], work: &Path, out: &Path) -> Result<()> {
    let r = work.join("initramfs-root");
    let _ = fs::remove_dir_all(&r);
    for d in [
        "bin",
        "proc",
        "sys",
        "dev",
        "tmp",
        "host",
        "lib/modules",
        "work",
    ] {
        fs::create_dir_all(r.join(d))?;
    }
    for deb in user_debs {
        dpkg_x(deb, &r)?;
    }
    // busybox-static ships /bin/busybox; nothing else is needed from docs.
    for d in ["usr/share", "usr/lib/aarch64-linux-gnu/gconv"] {
        let _ = fs::remove_dir_all(r.join(d));
    }
    let kmods = only_entry(&kdir.join("lib/modules"), "")?;
    let mut order = Vec::new();
    for m in MODULES {
        add_module(&kmods, m, &r.join("lib/modules"), &mut order)?;
    }
    fs::write(r.join("lib/modules/order"), order.join("\n") + "\n")?;
    let init = r.join("init");
    fs::write(&init, INIT)?;
    fs::set_permissions(&init, fs::Permissions::from_mode(0o755))?;
    let st = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "cd '{}' && find . | cpio -o -H newc --quiet | gzip -1 > '{}'",
            r.display(),
            out.display()
        ))
        .status()?;
    if !st.success() {
        bail!("cpio/gzip failed: {st}");
    }
    fs::remove_dir_all(&r)?;
    Ok(())
}

/// What runs in the VM: recreates the host paths compiled into the test
/// binary in tmpfs, runs the suite, and writes the exit status and the
/// output to the share.
fn run_script(root: &Path, tracer: &Path, filter: Option<&str>, env: &[String]) -> Result<String> {
    let mut exports = String::new();
    for e in env {
        let ok = e.split_once('=').is_some_and(|(k, v)| {
            !k.is_empty()
                && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !v.contains('\'')
        });
        if !ok {
            bail!("--env {e:?}: expected NAME=VALUE (no single quote in the value)");
        }
        let (k, v) = e.split_once('=').unwrap_or_default();
        exports.push_str(&format!("export {k}='{v}'\n"));
    }
    let root = root.display();
    let tracer = tracer.display();
    let filter = filter.unwrap_or("");
    let tests = VM_TESTS.join(" ");
    Ok(format!(
        r#"#!/bin/sh
# Written by `cargo xtask arm64-e2e`.
set -u
R='{root}'
mkdir -p "$R"
mount -t tmpfs tmpfs "$R"
mkdir -p "$R/tracer-user" "$R/target/fixtures" "$R/testdata/go" "$(dirname '{tracer}')"
cp /host/mapleak-trace '{tracer}'
cp -r /host/tests /tmp/tests
cp /host/fixtures/* "$R/target/fixtures/"
cp -r /host/testdata-target "$R/testdata/go/target"
echo "vm: $(uname -r), $(nproc) CPUs, $(free -m | awk '/Mem:/ {{print $2}}') MiB; setup done at $(cut -d' ' -f1 /proc/uptime)s"
cd "$R/tracer-user"
{exports}{{
  rc=0
  for t in {tests}; do
    echo "vm: test binary $t at $(cut -d' ' -f1 /proc/uptime)s"
    {{ CI=true /tmp/tests/$t --test-threads=1 {filter}; echo $? > /tmp/$t.rc; }} 2>&1 | tee /tmp/$t.log
    [ "$(cat /tmp/$t.rc)" = 0 ] && continue
    # A test that failed is run once more, alone: under TCG a loaded
    # moment can starve the tracer of samples. Said in the output; a
    # failure that repeats fails the tier.
    failed=$(sed -n 's/^test \(.*\) \.\.\. FAILED$/\1/p' /tmp/$t.log)
    if [ -n "$failed" ] && CI=true /tmp/tests/$t --test-threads=1 --exact $failed; then
      echo "vm: passed on retry ($t):" $failed
    else
      rc=1
    fi
  done
  echo $rc > /host/out/status
}} 2>&1 | tee /host/out/test.log
echo "vm: suite done at $(cut -d' ' -f1 /proc/uptime)s, status $(cat /host/out/status)"
"#
    ))
}

/// Kills qemu (and its process group) when dropped.
struct Vm(Option<Child>);

impl Drop for Vm {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn boot(
    vmlinuz: &Path,
    initrd: &Path,
    share: &Path,
    serial: &Path,
    limit: Duration,
) -> Result<std::process::ExitStatus> {
    // The sources the tests read (`source_line`).
    let src = crate::root().join("testdata/go/target");
    let dst = share.join("testdata-target");
    fs::create_dir_all(&dst)?;
    for e in fs::read_dir(&src)? {
        let e = e?;
        fs::copy(e.path(), dst.join(e.file_name()))?;
    }
    let mut cmd = Command::new("nice");
    cmd.args(["-n", "19", "qemu-system-aarch64"])
        .args(["-M", "virt", "-cpu", "max,pauth-impdef=on", "-smp", "2"])
        .args(["-m", "4096", "-accel", "tcg,thread=multi"])
        .arg("-kernel")
        .arg(vmlinuz)
        .arg("-initrd")
        .arg(initrd)
        .args([
            "-append",
            "console=ttyAMA0 rdinit=/init panic=-1 loglevel=4",
        ])
        .arg("-virtfs")
        .arg(format!(
            "local,path={},mount_tag=host0,security_model=none,id=host0",
            share.display()
        ))
        .args([
            "-display",
            "none",
            "-serial",
            "stdio",
            "-monitor",
            "none",
            "-no-reboot",
            "-nodefaults",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    // SAFETY: prctl in the child before exec, async-signal-safe: qemu dies
    // with this process, also when it is killed.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().context("starting qemu-system-aarch64")?;
    let stdout = child.stdout.take().context("qemu stdout")?;
    let mut vm = Vm(Some(child));
    // The console goes to the terminal and to the serial log.
    let serial = serial.to_owned();
    let copier = std::thread::spawn(move || -> Result<()> {
        let mut log = fs::File::create(&serial)?;
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap_or_default();
            eprintln!("vm| {line}");
            use std::io::Write as _;
            writeln!(log, "{line}")?;
        }
        Ok(())
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        let c = vm.0.as_mut().context("qemu")?;
        if let Some(st) = c.try_wait()? {
            vm.0 = None;
            break st;
        }
        if Instant::now() > deadline {
            drop(vm);
            let _ = copier.join();
            bail!("the arm64 VM ran past {} min: killed", limit.as_secs() / 60);
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let _ = copier.join();
    Ok(status)
}
