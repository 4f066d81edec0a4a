//! `benchplot --check DIR`: what a written report lacks (scripts/test's
//! bench-smoke): the files non-empty, and every series present in the
//! JSON and in its plot.

use std::fs;
use std::path::Path;

use serde_json::Value;

use crate::model::{MAP_WAYS, TRANSFER_WAYS};
use crate::plot::{map_label, transfer_label};

/// What `dir` lacks, one item each; empty when it is complete.
pub fn missing(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let read = |name: &str, out: &mut Vec<String>| match fs::read_to_string(dir.join(name)) {
        Ok(t) if !t.trim().is_empty() => Some(t),
        Ok(_) => {
            out.push(format!("{name} is empty"));
            None
        }
        Err(e) => {
            out.push(format!("{name}: {e}"));
            None
        }
    };
    read("report.md", &mut out);
    let Some(json) = read("results.json", &mut out) else {
        return out;
    };
    let doc: Value = match serde_json::from_str(&json) {
        Ok(v) => v,
        Err(e) => {
            out.push(format!("results.json: {e}"));
            return out;
        }
    };
    let ways = |key: &str| -> Vec<String> {
        doc[key]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|p| p["way"].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    let (map, transfer) = (ways("map_sweep"), ways("transfer"));
    if doc["clock"].is_null() {
        out.push("no clock figures".into());
    }
    let mut series = vec![("map-sweep.svg", Vec::new()), ("transfer.svg", Vec::new())];
    for w in MAP_WAYS {
        if !map.iter().any(|m| m == w) {
            out.push(format!("no map sweep of way {w}"));
        }
        series[0].1.push(map_label(w));
    }
    for w in TRANSFER_WAYS {
        if !transfer.iter().any(|m| m == w) {
            out.push(format!("no transfer of way {w}"));
        }
        series[1].1.push(transfer_label(w));
    }
    let alloc = &doc["allocator"];
    if alloc["criterion"].as_array().is_none_or(Vec::is_empty) {
        out.push("no criterion figures".into());
    }
    let no_valgrind = doc["notes"].as_array().is_some_and(|n| {
        n.iter()
            .any(|t| t.as_str().is_some_and(|t| t.contains("no valgrind")))
    });
    if alloc["callgrind"].as_array().is_none_or(Vec::is_empty) && !no_valgrind {
        out.push("no callgrind figures".into());
    }
    for (plot, labels) in series {
        let Some(svg) = read(plot, &mut out) else {
            continue;
        };
        for l in labels {
            if !svg.contains(l) {
                out.push(format!("{plot} has no series \"{l}\""));
            }
        }
    }
    out
}
