//! Part 2b of the report: cost per map creation, per tracer.
use std::fmt::Write as _;

use crate::bench::{
    binaries::GoBin,
    parts::{
        Mode,
        create_cost::{CREATIONS, CreateSample, create_cost},
    },
};

/// Writes section 2b.
pub(super) fn render(o: &mut String, gos: &[GoBin], create: &[CreateSample]) {
    let _ = writeln!(o, "## 2b. Cost per map creation, per tracer\n");
    let _ = writeln!(
        o,
        "`bench -mode=makemap -ops {} [-hint 16]`: that many `make(map[int64]int64)` (Go calls \
         `runtime.makemap_small`) or `make(map[int64]int64, 16)` (`runtime.makemap`, which in Swiss builds \
         calls `internal/runtime/maps.NewMap`) in a timed loop, the map kept in a global so it is heap \
         allocated. Same three configurations as part 1. This is what default mode pays for creation \
         tracking: an emulated probe at the entry of `makemap`/`NewMap` (type and hint), and a \
         single-stepped probe on each RET site (the new map's address is the return value), where the \
         program also records a stack. bpftrace counts at each function's entry (single-stepped). When \
         mapleak-trace's overhead governor detaches the creation probes for a while, its hits per map \
         fall below 1 and its cost with them.\n",
        create.first().map_or(0, |c| c.ops)
    );
    let _ = writeln!(
        o,
        "| Go | creation | untraced µs/map | mapleak-trace: µs added/map | its probe hits/map | bpftrace: µs added/map | its hits/map |"
    );
    let _ = writeln!(o, "|---|---|---:|---:|---:|---:|---:|");
    for g in gos {
        for (kind, _) in CREATIONS {
            if !create.iter().any(|c| c.go == g.tag && c.kind == kind) {
                continue;
            }
            let (u, _) = create_cost(create, &g.tag, kind, Mode::Untraced);
            let (ml, mlh) = create_cost(create, &g.tag, kind, Mode::Mapleak);
            let (bt, bth) = create_cost(create, &g.tag, kind, Mode::Bpftrace);
            let _ = writeln!(
                o,
                "| {} | {kind} | {u:.3} | **{ml:.2}** | {mlh:.2} | {bt:.2} | {bth:.2} |",
                g.tag
            );
        }
    }
    let _ = writeln!(o);
}
