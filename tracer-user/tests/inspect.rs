//! Tier-1 `inspect` tests over every fixture in `target/fixtures/manifest.json`.

mod inspect_common;

use std::collections::HashMap;

use inspect_common::{fixtures, is_pie, is_stripped, open, twin};
use mapleak::inspect::{FoundBy, GoArch, LayoutSource, MapImpl, RuntimeLayout};

/// Build info gives the toolchain's version, GOARCH and map implementation.
#[test]
fn version_arch_and_map_impl_match_the_toolchain() {
    for f in fixtures() {
        let info = open(&f);
        assert_eq!(info.go_version.raw, f.go_version, "{}", f.path.display());
        assert_eq!(info.goarch.as_str(), f.goarch, "{}", f.path.display());
        if let Some(m) = &f.map_impl {
            assert_eq!(info.map_impl.as_str(), m, "{}", f.path.display());
        }
        let expect_magic = if info.go_version.minor < 20 {
            0xffff_fff0
        } else {
            0xffff_fff1
        };
        assert_eq!(info.pclntab_magic, expect_magic, "{}", f.path.display());
        assert_eq!(info.has_symtab, !is_stripped(&f), "{}", f.path.display());
        assert_eq!(info.pie, is_pie(&f), "{}", f.path.display());
    }
}

/// pclntab function addresses equal the `.symtab` addresses of the
/// unstripped twin (what `go tool nm` prints).
#[test]
fn pclntab_functions_match_symtab() {
    let all = fixtures();
    let mut cache: HashMap<std::path::PathBuf, Vec<(String, u64, u64)>> = HashMap::new();
    for f in &all {
        let Some(t) = twin(&all, f) else { continue };
        let syms = cache.entry(t.path.clone()).or_insert_with(|| {
            open(t)
                .symtab_functions()
                .into_iter()
                .map(|(n, a, s)| (n.to_owned(), a, s))
                .collect()
        });
        let by_name: HashMap<&str, (u64, u64)> = syms
            .iter()
            .map(|(n, a, s)| (n.as_str(), (*a, *s)))
            .collect();
        let info = open(f);
        let mut matched = 0usize;
        let mut pcln_names: HashMap<&str, usize> = HashMap::new();
        for func in info.functions() {
            *pcln_names.entry(func.name.as_str()).or_default() += 1;
        }
        for func in info.functions() {
            assert!(
                func.entry < func.end,
                "{}: {} empty",
                f.path.display(),
                func.name
            );
            let abi0 = format!("{}.abi0", func.name);
            let hit = by_name
                .get(func.name.as_str())
                .filter(|v| v.0 == func.entry || pcln_names[func.name.as_str()] > 1);
            if let Some(&(addr, size)) = hit
                .or_else(|| by_name.get(abi0.as_str()))
                .or_else(|| by_name.get(func.name.as_str()))
            {
                if pcln_names[func.name.as_str()] > 1 {
                    // ABI0 wrapper and ABIInternal body share a pclntab name;
                    // .symtab calls the wrapper `name.abi0`.
                    assert!(
                        info.functions()
                            .iter()
                            .any(|g| g.name == func.name && g.entry == addr)
                    );
                    continue;
                }
                assert_eq!(func.entry, addr, "{}: {}", f.path.display(), func.name);
                assert!(
                    size <= func.end - func.entry,
                    "{}: {} symtab size {size} > pclntab",
                    f.path.display(),
                    func.name
                );
                matched += 1;
            }
        }
        let n = info.functions().len();
        assert!(
            matched * 100 >= n * 95,
            "{}: only {matched}/{n} functions in .symtab",
            f.path.display()
        );
        for name in [
            "runtime.gcStart",
            "runtime.gcSweep",
            "runtime.makemap_small",
            "runtime.mapassign",
        ] {
            let func = info
                .func_by_name(name)
                .unwrap_or_else(|| panic!("{}: no {name}", f.path.display()));
            assert_eq!(
                Some(func.entry),
                by_name.get(name).map(|v| v.0),
                "{}: {name}",
                f.path.display()
            );
            assert_eq!(
                info.func_by_pc(func.entry + 1).map(|g| g.name.as_str()),
                Some(name)
            );
            assert_eq!(
                info.func_by_pc(func.end - 1).map(|g| g.name.as_str()),
                Some(name)
            );
            let frame = info.frame_for_pc(func.entry).expect("frame");
            assert_eq!(frame.function, name);
            assert!(
                frame.file.ends_with(".go") || frame.file.ends_with(".s"),
                "{}: {frame:?}",
                f.path.display()
            );
            assert!(frame.line > 0, "{}: {frame:?}", f.path.display());
        }
        let main = info.func_by_name("main.main").expect("main.main");
        let frame = info.frame_for_pc(main.entry).expect("frame");
        assert!(
            frame.file.ends_with("main.go"),
            "{}: {frame:?}",
            f.path.display()
        );
        assert!(info.va_to_file_offset(main.entry).is_some());
    }
}

/// The built-in layout table agrees with the DWARF of every fixture that has DWARF.
#[test]
fn builtin_layout_matches_dwarf() {
    let mut checked = 0;
    for f in fixtures() {
        let info = open(&f);
        let builtin = RuntimeLayout::builtin(info.go_version.minor, info.map_impl, info.goarch);
        if !info.has_dwarf {
            assert_eq!(info.layout_source, LayoutSource::Builtin);
            assert_eq!(info.layout, builtin);
            continue;
        }
        let dwarf = info.dwarf_layout().expect("DWARF layout");
        let mut present = 0;
        for ((name, b), (_, d)) in builtin.fields().into_iter().zip(dwarf.fields()) {
            if let Some(d) = d {
                present += 1;
                assert_eq!(
                    b,
                    Some(d),
                    "{}: {name}: built-in {b:?}, DWARF {d}",
                    f.path.display()
                );
            }
        }
        let want = match info.map_impl {
            MapImpl::Hmap => [
                "hmap.count",
                "hmap.buckets",
                "maptype.bucketsize",
                "work.cycles",
                "memstats.numgc",
                "gcController.heapMarked",
                "g.goid",
                "g.sched.sp",
                "g.startpc",
                "moduledata.types",
            ],
            MapImpl::Swiss => [
                "Map.used",
                "Map.dirPtr",
                "MapType.GroupSize",
                "work.cycles",
                "memstats.numgc",
                "gcController.heapMarked",
                "g.goid",
                "g.sched.sp",
                "g.startpc",
                "moduledata.types",
            ],
        };
        for w in want {
            assert!(
                dwarf.fields().iter().any(|(n, v)| *n == w && v.is_some()),
                "{}: DWARF lacks {w}",
                f.path.display()
            );
        }
        assert!(
            present >= 20,
            "{}: DWARF gave only {present} fields",
            f.path.display()
        );
        assert_eq!(info.layout_source, LayoutSource::Dwarf);
        checked += 1;
    }
    assert!(checked > 0, "no fixture with DWARF");
}

/// Globals and moduledata are found with and without `.symtab`, and type
/// names decoded from descriptors equal DWARF's names.
#[test]
fn globals_moduledata_and_type_names() {
    let all = fixtures();
    for f in &all {
        let info = open(f);
        let md = info
            .moduledata
            .as_ref()
            .unwrap_or_else(|| panic!("{}: no moduledata", f.path.display()));
        assert!(md.types < md.etypes);
        assert_eq!(
            info.globals.firstmoduledata,
            Some(md.addr),
            "{}",
            f.path.display()
        );
        if info.has_symtab || info.has_dwarf {
            assert!(
                info.globals.work.is_some()
                    && info.globals.memstats.is_some()
                    && info.globals.gc_controller.is_some(),
                "{}",
                f.path.display()
            );
        }
        let (lo, hi) = info.data_range().expect("data range");
        if info.has_dwarf {
            let maps = info.global_maps();
            assert!(
                !maps.is_empty(),
                "{}: no map globals in DWARF",
                f.path.display()
            );
            for (name, addr, ty) in &maps {
                assert!(ty.starts_with("map["), "{name}: {ty}");
                assert!(
                    *addr >= lo && *addr < hi,
                    "{name} at {addr:#x} outside data"
                );
                if info.has_symtab {
                    let (sym, off) = info
                        .data_symbol_at(*addr)
                        .unwrap_or_else(|| panic!("{}: no symbol at {name}", f.path.display()));
                    assert_eq!((sym.name.as_str(), off), (name.as_str(), 0));
                }
            }
            let mut decoded = 0;
            for (va, name) in info.dwarf_type_names() {
                if !name.starts_with("map[") || !info.is_map_type(va) {
                    continue;
                }
                // DWARF names carry import paths, descriptors package names.
                assert_eq!(
                    info.decode_type_name(va).as_deref(),
                    Some(short_pkg(name).as_str()),
                    "{}: {va:#x}",
                    f.path.display()
                );
                let mt = info
                    .map_type_info(va)
                    .unwrap_or_else(|| panic!("{}: {name}", f.path.display()));
                assert_eq!(mt.name, name);
                assert!(
                    mt.key_size > 0 || mt.key.contains("struct {}"),
                    "{}: {name}: {mt:?}",
                    f.path.display()
                );
                match info.map_impl {
                    MapImpl::Hmap => {
                        // go1.22.0:src/cmd/compile/internal/reflectdata/reflect.go:MapBucketType
                        let slot = |s: u64| if s > 128 { 8 } else { s };
                        assert_eq!(
                            mt.bucket_size,
                            8 + 8 * slot(mt.key_size) + 8 * slot(mt.elem_size) + 8,
                            "{}: {name}: {mt:?}",
                            f.path.display()
                        );
                    }
                    MapImpl::Swiss => {
                        assert_eq!(
                            mt.group_size,
                            8 + 8 * mt.slot_size,
                            "{}: {name}: {mt:?}",
                            f.path.display()
                        )
                    }
                }
                decoded += 1;
            }
            assert!(decoded > 0, "{}: no map type decoded", f.path.display());
        }
    }
}

/// Stripped binaries, internally and externally linked (cgo), PIE or not:
/// moduledata and the GC globals are where the unstripped twin's `.symtab`
/// puts them, and type descriptors decode to the names in the twin's DWARF.
/// On every fixture, the globals recovered from runtime code alone equal
/// the symbols (so the code shapes are checked on every release and arch).
#[test]
fn stripped_binaries_find_moduledata_globals_and_type_names() {
    let all = fixtures();
    let mut stripped = 0;
    for f in &all {
        let Some(t) = twin(&all, f) else {
            panic!("{}: no unstripped twin in the manifest", f.path.display())
        };
        let (info, tinfo) = (open(f), open(t));
        let g = &tinfo.globals;
        let by = &g.found_by;
        assert_eq!(
            (by.work, by.memstats, by.gc_controller),
            (
                Some(FoundBy::Symbol),
                Some(FoundBy::Symbol),
                Some(FoundBy::Symbol)
            ),
            "{}: the twin's globals come from .symtab",
            t.path.display()
        );
        let code = tinfo.gc_globals_from_code();
        assert_eq!(
            (code.work, code.memstats, code.gc_controller),
            (g.work, g.memstats, g.gc_controller),
            "{}: globals from runtime code vs .symtab",
            t.path.display()
        );
        if !is_stripped(f) {
            continue;
        }
        stripped += 1;
        let name = f.path.display();
        // `-s -w` is recorded in the build info, which shifts the data that
        // follows it: compare each address by its offset in its section.
        let at = |va: Option<u64>| -> Option<(String, u64)> {
            let (sec, start) = tinfo.section_of(va?)?;
            Some((sec.to_owned(), va? - start))
        };
        let here = |va: Option<u64>| -> Option<(String, u64)> {
            let (sec, start) = info.section_of(va?)?;
            Some((sec.to_owned(), va? - start))
        };
        for (what, mine, theirs) in [
            ("runtime.work", info.globals.work, g.work),
            ("runtime.memstats", info.globals.memstats, g.memstats),
            (
                "runtime.gcController",
                info.globals.gc_controller,
                g.gc_controller,
            ),
            (
                "runtime.firstmoduledata",
                info.globals.firstmoduledata,
                g.firstmoduledata,
            ),
        ] {
            assert!(mine.is_some(), "{name}: {what} not found");
            assert_eq!(here(mine), at(theirs), "{name}: {what} (section, offset)");
        }
        let (md, tmd) = (
            info.moduledata.as_ref().unwrap(),
            tinfo.moduledata.as_ref().unwrap(),
        );
        assert_eq!(
            here(Some(md.types)),
            at(Some(tmd.types)),
            "{name}: moduledata.types"
        );
        assert_eq!(md.text, tmd.text, "{name}: moduledata.text");
        // Type descriptors: the twin's DWARF names, found at the same
        // offset of the stripped binary's type section.
        let shift = md.types.wrapping_sub(tmd.types);
        let mut named = 0;
        for (va, dwarf_name) in tinfo.dwarf_type_names() {
            if !dwarf_name.starts_with("map[") || !tinfo.is_map_type(va) {
                continue;
            }
            let sva = va.wrapping_add(shift);
            assert_eq!(
                info.type_name(sva).as_deref(),
                Some(short_pkg(dwarf_name).as_str()),
                "{name}: type at {sva:#x}"
            );
            let mt = info.map_type_info(sva);
            let tmt = tinfo.map_type_info(va).expect("twin map type");
            let mt = mt.unwrap_or_else(|| panic!("{name}: {dwarf_name}: no map type info"));
            assert_eq!(
                (mt.key_size, mt.elem_size, mt.bucket_size, mt.group_size),
                (tmt.key_size, tmt.elem_size, tmt.bucket_size, tmt.group_size),
                "{name}: {dwarf_name}"
            );
            named += 1;
        }
        assert!(named > 0, "{name}: no map type in the twin's DWARF");
    }
    assert!(stripped > 0, "no stripped fixture");
}

/// arm64 binaries report arm64 and a 4-byte instruction quantum.
#[test]
fn arm64_fixtures_present() {
    let all = fixtures();
    assert!(all.iter().any(|f| f.goarch == "arm64"), "no arm64 fixture");
    for f in all.iter().filter(|f| f.goarch == "arm64").take(2) {
        assert_eq!(open(f).goarch, GoArch::Arm64);
    }
}

/// `map[string]*net/http.Request` → `map[string]*http.Request`.
fn short_pkg(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if c == '/' {
            while out
                .chars()
                .last()
                .is_some_and(|p| p.is_alphanumeric() || matches!(p, '_' | '.' | '-'))
            {
                out.pop();
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A running process's executable is mapped, not read (`open_executable`),
/// and its pages given back after parsing: it answers exactly as the copy
/// in memory does, for every function and every map global.
#[test]
fn a_mapped_executable_answers_as_a_copy_does() {
    for f in fixtures().iter().filter(|f| f.goarch == "amd64").take(6) {
        let copy = open(f);
        let mapped = mapleak::inspect::BinaryInfo::open_executable(&f.path)
            .unwrap_or_else(|e| panic!("{}: {e}", f.path.display()));
        let what = f.path.display();
        assert_eq!(mapped.go_version.raw, copy.go_version.raw, "{what}");
        assert_eq!(mapped.layout, copy.layout, "{what}");
        assert_eq!(mapped.global_maps(), copy.global_maps(), "{what}");
        assert_eq!(mapped.data_range(), copy.data_range(), "{what}");
        let funcs = copy.functions();
        assert!(funcs.len() > 1000, "{what}: {} functions", funcs.len());
        for func in funcs.iter().step_by(97) {
            assert_eq!(
                mapped.frame_for_pc(func.entry),
                copy.frame_for_pc(func.entry),
                "{what}: {}",
                func.name
            );
        }
    }
}

/// The wrapper `go privateWorker(steps, done)` starts (Go 1.21+:
/// `main.main.gowrapN`) is seen to call `main.privateWorker`, on amd64
/// and arm64: a running goroutine's holder is named by it.
#[test]
fn go_wrappers_name_the_function_they_run() {
    let mut checked = Vec::new();
    for f in fixtures().iter().filter(|f| f.program == "target") {
        let info = open(f);
        let wrappers: Vec<_> = info
            .functions()
            .iter()
            .filter(|g| g.name.starts_with("main.main.gowrap"))
            .collect();
        if wrappers.is_empty() {
            continue;
        }
        let callees: Vec<&str> = wrappers
            .iter()
            .filter_map(|w| info.first_callee(w))
            .map(|g| g.name.as_str())
            .collect();
        assert!(
            callees.contains(&"main.privateWorker"),
            "{}: wrappers {:?} call {callees:?}",
            f.path.display(),
            wrappers.iter().map(|w| &w.name).collect::<Vec<_>>()
        );
        assert!(callees.iter().all(|c| !c.starts_with("runtime.")));
        checked.push(f.goarch.clone());
    }
    assert!(
        checked.iter().any(|a| a == "amd64") && checked.iter().any(|a| a == "arm64"),
        "wrappers checked on {checked:?}"
    );
}
