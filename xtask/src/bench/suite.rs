//! The workloads of part 1b (`--workload W`, or `--workload suite` for all
//! of them in turn), and what is read from the tracer's report after each
//! traced phase.
//!
//! Every workload is one mode of `testdata/go/bench` that ticks its
//! operations (`tick UNIX_NS OPS GC`) and grows a map planted in a global,
//! `main.planted`, of one type for all (`map[int64][64]byte`) at a slow
//! steady rate: the leak the tracer must report whatever else the program
//! does.
use serde_json::Value;

/// One workload of the suite.
pub(super) struct Workload {
    pub(super) name: &'static str,
    /// Arguments of `bench` besides `-seconds`, `-tick` and `-wait`.
    pub(super) args: &'static [&'static str],
    /// What the ticks count.
    pub(super) unit: &'static str,
    /// For the report.
    pub(super) what: &'static str,
}

/// The suite, in the order `--workload suite` runs it.
pub(super) const WORKLOADS: [Workload; 9] = [
    Workload {
        name: "json",
        args: &["-mode=http", "-json", "-plant", "100"],
        unit: "req",
        what: "loopback HTTP service (4 keep-alive clients in the process) decoding POSTed JSON documents \
               (objects of 10 to 50 keys, nested objects) into `map[string]any`; planted map: +1 entry every \
               100 requests",
    },
    Workload {
        name: "permaps10",
        args: &["-mode=http", "-words", "10", "-plant", "100"],
        unit: "req",
        what: "the same service, POSTing texts of 10 distinct words (each 1 to 3 times) that the handler \
               counts into a fresh `map[string]int` (10 keys, no size hint) and drops; +1 planted entry \
               every 100 requests",
    },
    Workload {
        name: "permaps100",
        args: &["-mode=http", "-words", "100", "-plant", "100"],
        unit: "req",
        what: "as permaps10 with 100 distinct words per request (a map of 100 keys)",
    },
    Workload {
        name: "permaps1000",
        args: &["-mode=http", "-words", "1000", "-plant", "100"],
        unit: "req",
        what: "as permaps10 with 1,000 distinct words per request (a map of 1,000 keys)",
    },
    Workload {
        name: "mapwrite",
        args: &["-mode=mapwrite", "-plant-period", "10ms"],
        unit: "writes",
        what: "part 1's map-write loop (16 full `map[int64]int64` of 256 keys, no growth), ticked in writes, \
               with 16 MB/s of garbage on another goroutine so that GC cycles come (a few a second); planted \
               map: +1 entry every 10 ms",
    },
    Workload {
        name: "http",
        args: &["-mode=http", "-plant", "100"],
        unit: "req",
        what: "part 1's HTTP service (GETs, a bounded per-path counter map); +1 planted entry every 100 \
               requests",
    },
    Workload {
        name: "gcheavy",
        args: &[
            "-mode=gcheavy",
            "-gc-percent",
            "10",
            "-live-kb",
            "6144",
            "-plant-period",
            "10ms",
        ],
        unit: "chains",
        what: "GOGC=10 (`debug.SetGCPercent`) over a 6 MiB live heap of records, one worker per CPU \
               building chains of 4 short-lived records: well over 100 GC cycles a second; planted map: +1 \
               entry every 10 ms",
    },
    Workload {
        name: "creators",
        args: &["-mode=creators", "-plant-period", "10ms"],
        unit: "maps",
        what: "one goroutine per CPU creating `map[int64]int64` of 1 to 200 keys without a size hint (they \
               grow as they fill) and dropping them; planted map: +1 entry every 10 ms",
    },
    Workload {
        name: "livemaps",
        args: &[
            "-mode=livemaps",
            "-n",
            "100000",
            "-entries",
            "150",
            "-plant-period",
            "10ms",
        ],
        unit: "updates",
        what: "100,000 live `map[int32]int32` of 150 entries (built before the first phase), one worker \
               per CPU updating 8 keys of a random one and building a 1 KiB reply per update (its garbage paces \
               the GC); planted map: +1 entry every 10 ms",
    },
];

/// Accepted by `--workload`: every workload, and `suite` (or `all`) for all
/// of them in turn.
pub(super) const NAMES: [&str; 11] = [
    "json",
    "permaps10",
    "permaps100",
    "permaps1000",
    "mapwrite",
    "http",
    "gcheavy",
    "creators",
    "livemaps",
    "suite",
    "all",
];

/// The workloads `--workload arg` stands for (none for an unknown name).
pub(super) fn select(arg: &str) -> Vec<&'static Workload> {
    if arg == "suite" || arg == "all" {
        WORKLOADS.iter().collect()
    } else {
        WORKLOADS.iter().filter(|w| w.name == arg).collect()
    }
}

/// The planted map's type as the tracer names it (`byte` is `uint8`).
pub(super) const PLANTED_TYPE: &str = "map[int64][64]uint8";

/// What one traced phase's report says.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Traced {
    /// `overhead.budget_spent_target_cpu_s`.
    pub(super) debit_s: f64,
    /// `overhead.governed_probes_attached_share`.
    pub(super) attached_share: f64,
    /// Share of the trace the large-growth probes were attached (1 -
    /// `overhead.large_growth_probes_paused_s` / `duration_s`).
    pub(super) large_share: f64,
    /// A map of `PLANTED_TYPE` reported with verdict `growing`.
    pub(super) planted: bool,
    /// GC cycles the trace spanned (last cycle number - first + 1; the
    /// cycles listed when the numbers are missing) and those whose map
    /// lengths the tracer read.
    pub(super) gc_cycles: u64,
    pub(super) gc_sampled: u64,
}

impl Traced {
    pub(super) fn from_report(rep: &Value) -> Traced {
        let ov = &rep["overhead"];
        let num = |v: &Value| v.as_f64().unwrap_or(f64::NAN);
        let planted = rep["maps"].as_array().is_some_and(|ms| {
            ms.iter()
                .any(|m| m["type"] == PLANTED_TYPE && m["verdict"] == "growing")
        });
        let cycles = rep["gc_cycles"].as_array().map_or(&[][..], Vec::as_slice);
        let nums: Vec<u64> = cycles.iter().filter_map(|c| c["cycle"].as_u64()).collect();
        let gc_cycles = match (nums.first(), nums.last()) {
            (Some(a), Some(b)) if nums.len() == cycles.len() && b >= a => b - a + 1,
            _ => cycles.len() as u64,
        };
        Traced {
            debit_s: num(&ov["budget_spent_target_cpu_s"]),
            attached_share: num(&ov["governed_probes_attached_share"]),
            large_share: {
                let d = num(&rep["duration_s"]);
                let p = ov["large_growth_probes_paused_s"].as_f64().unwrap_or(0.0);
                if d > 0.0 {
                    (1.0 - p / d).clamp(0.0, 1.0)
                } else {
                    f64::NAN
                }
            },
            planted,
            gc_cycles,
            gc_sampled: ov["gc_cycles_sampled"].as_u64().unwrap_or(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn names_are_the_workloads_and_suite() {
        let names: Vec<&str> = WORKLOADS.iter().map(|w| w.name).collect();
        assert_eq!(&NAMES[..names.len()], &names[..]);
        assert_eq!(select("suite").len(), WORKLOADS.len());
        assert_eq!(select("all").len(), WORKLOADS.len());
        assert_eq!(select("permaps100")[0].args[2], "100");
        assert!(select("nope").is_empty());
        // Every workload plants the map: by requests or by time.
        for w in &WORKLOADS {
            assert!(
                w.args.contains(&"-plant") || w.args.contains(&"-plant-period"),
                "{}",
                w.name
            );
        }
    }

    #[test]
    fn traced_figures_from_a_report() {
        let rep = json!({
            "gc_cycles": [{"cycle": 79}, {"cycle": 80}, {"cycle": 83}],
            "maps": [
                {"type": "map[string]int", "verdict": "growing"},
                {"type": PLANTED_TYPE, "verdict": "growing"},
            ],
            "overhead": {
                "budget_spent_target_cpu_s": 0.07,
                "governed_probes_attached_share": 0.25,
                "gc_cycles_sampled": 2,
            },
        });
        let t = Traced::from_report(&rep);
        assert!(t.planted);
        // 79..=83, though one cycle in between was not listed.
        assert_eq!(t.gc_cycles, 5);
        assert_eq!(t.gc_sampled, 2);
        assert!((t.debit_s - 0.07).abs() < 1e-12);
        assert!((t.attached_share - 0.25).abs() < 1e-12);
    }

    #[test]
    fn planted_must_be_growing() {
        let rep = json!({
            "gc_cycles": [{"cycle": 1}, {"t_s": 0.5}],
            "maps": [{"type": PLANTED_TYPE, "verdict": "stable"}],
            "overhead": {},
        });
        let t = Traced::from_report(&rep);
        assert!(!t.planted);
        // A cycle without its number: the cycles listed.
        assert_eq!(t.gc_cycles, 2);
        assert!(t.debit_s.is_nan());
    }
}
