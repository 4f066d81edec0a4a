//! `results.json`: the run's figures for programs (`docs/benchmarks.md`
//! describes its fields).

use serde_json::{Value, json};

use crate::goals::Goal;
use crate::model::Bench;
use crate::stats::Summary;

fn summary(s: &Summary) -> Value {
    json!({ "median": s.median, "min": s.min, "max": s.max, "rounds": s.rounds })
}

/// The JSON document of `b`, its `goals` and its `plots`.
pub fn document(b: &Bench, goals: &[Goal], plots: &[&str]) -> Value {
    json!({
        "config": b.config,
        "host": b.host,
        "clock": b.clock.as_ref().map(|c| json!({
            "source": "pvclock",
            "tsc_hz": c.tsc_hz,
            "read_ns": summary(&c.read_ns),
            "step_ns": summary(&c.step_ns),
        })),
        "map_sweep": b.map.iter().map(|p| json!({
            "way": p.way,
            "n": p.n,
            "ns_per_page": summary(&p.ns_per_page),
            "map_hypercalls": p.map_hypercalls,
            "unmap_hypercalls": p.unmap_hypercalls,
            "faults": p.faults,
            "ptes": p.ptes,
            "large_entries": p.large,
            "outside_hypercalls": p.outside_hypercalls.as_ref().map(summary),
        })).collect::<Vec<_>>(),
        "transfer": b.transfer.iter().map(|p| json!({
            "way": p.way,
            "bytes": p.bytes,
            "mb_per_s": summary(&p.mb_s),
            "copy_mb_per_s": p.copy_mb_s.as_ref().map(summary),
            "hypercalls": p.hypercalls,
        })).collect::<Vec<_>>(),
        "allocator": {
            "criterion": b.criterion.iter().map(|e| json!({
                "group": e.group, "bench": e.bench,
                "median_ns": e.median_ns, "lower_ns": e.lower_ns, "upper_ns": e.upper_ns,
            })).collect::<Vec<_>>(),
            "callgrind": b.callgrind.iter().map(|(v, i)| json!({
                "variant": v, "instructions_per_pair": i,
            })).collect::<Vec<_>>(),
            "contig": b.contig.map(|(o, p, of)| json!({ "ours": o, "peer": p, "of": of })),
        },
        "goals": goals.iter().map(|g| json!({
            "goal": g.name, "target": g.target, "value": g.value, "detail": g.detail, "met": g.met,
        })).collect::<Vec<_>>(),
        "notes": b.notes,
        "results": b.results,
        "plots": plots,
    })
}
