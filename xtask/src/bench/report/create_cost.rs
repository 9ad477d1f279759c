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
         allocated. Untraced, mapleak-trace at the default budget (what default mode pays for creation \
         tracking: the governor detaches the creation probes while they are over budget, so its hits \
         per map fall below 1 and its cost with them), mapleak-trace at `--overhead-budget 100` (every \
         creation probed: the cost of a hit), and bpftrace counting at each function's entry \
         (single-stepped). From Go 1.22 the new map is taken at the emulated CALL that seeds its hash \
         (Go 1.19-1.21: a single-stepped RET site); a map made with a hint also hits an emulated entry \
         probe (type and hint). The program records the caller and, on a site's first 8 calls on a \
         CPU and one call in 16 after those, walks the user stack (`tracer_common::stacks`).\n",
        create.first().map_or(0, |c| c.ops)
    );
    let _ = writeln!(
        o,
        "| Go | creation | untraced µs/map | mapleak-trace: µs added/map | its probe hits/map | no budget: µs added/map | its hits/map | bpftrace: µs added/map | its hits/map |"
    );
    let _ = writeln!(o, "|---|---|---:|---:|---:|---:|---:|---:|---:|");
    for g in gos {
        for (kind, _) in CREATIONS {
            if !create.iter().any(|c| c.go == g.tag && c.kind == kind) {
                continue;
            }
            let (u, _) = create_cost(create, &g.tag, kind, Mode::Untraced);
            let (ml, mlh) = create_cost(create, &g.tag, kind, Mode::Mapleak);
            let (nb, nbh) = create_cost(create, &g.tag, kind, Mode::Unbudgeted);
            let (bt, bth) = create_cost(create, &g.tag, kind, Mode::Bpftrace);
            let _ = writeln!(
                o,
                "| {} | {kind} | {u:.3} | **{ml:.2}** | {mlh:.2} | **{nb:.2}** | {nbh:.2} | {bt:.2} | {bth:.2} |",
                g.tag
            );
        }
    }
    let _ = writeln!(o);
}
