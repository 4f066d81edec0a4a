//! The benchmark's figures, gathered from its lines: one point per way
//! and size, each a [`Summary`] of its rounds.

use std::collections::BTreeMap;

use crate::criterion::Estimate;
use crate::lines::{Input, Line};
use crate::stats::Summary;

/// The ways of the map sweep, in the order the report shows them.
pub const MAP_WAYS: [&str; 3] = ["populate", "per-page", "linux"];
/// The ways of the transfer.
pub const TRANSFER_WAYS: [&str; 3] = ["mapped", "grant-copy", "memcpy"];

/// The time source's figures.
#[derive(Debug, Clone)]
pub struct Clock {
    /// The pvclock's TSC frequency, Hz.
    pub tsc_hz: f64,
    /// ns per `clock()` read.
    pub read_ns: Summary,
    /// Smallest non-zero step between two reads, ns.
    pub step_ns: Summary,
}

/// One way and size of the map sweep.
#[derive(Debug, Clone)]
pub struct MapPoint {
    /// `populate`, `per-page` or `linux`.
    pub way: String,
    /// Grants mapped.
    pub n: u64,
    /// ns per page of map + touch + unmap.
    pub ns_per_page: Summary,
    /// The counts of one round (medians; every round has the same in a
    /// healthy run); `None` where the way cannot count them.
    pub map_hypercalls: Option<f64>,
    /// Unmap hypercalls.
    pub unmap_hypercalls: Option<f64>,
    /// Faults the mapping took.
    pub faults: Option<f64>,
    /// Leaf page-table entries the mapping stood in.
    pub ptes: Option<f64>,
    /// How many of them were 2 MiB entries.
    pub large: Option<f64>,
    /// The share of the time spent outside the map and unmap hypercalls.
    pub outside_hypercalls: Option<Summary>,
}

/// One way of the transfer.
#[derive(Debug, Clone)]
pub struct TransferPoint {
    /// `mapped`, `grant-copy` or `memcpy`.
    pub way: String,
    /// Bytes moved per round.
    pub bytes: u64,
    /// MB/s (10^6 bytes) of the whole round (for `mapped`: map, copy,
    /// unmap).
    pub mb_s: Summary,
    /// For `mapped`, MB/s of the copy alone.
    pub copy_mb_s: Option<Summary>,
    /// For `grant-copy`, the copy hypercalls of a round.
    pub hypercalls: Option<f64>,
}

/// Everything one run measured.
#[derive(Debug, Default)]
pub struct Bench {
    /// `BENCH config` fields (sizes, rounds, RAM).
    pub config: BTreeMap<String, String>,
    /// `BENCH host` fields (Xen, CPU, dom0 kernel).
    pub host: BTreeMap<String, String>,
    /// The time source.
    pub clock: Option<Clock>,
    /// The map sweep, by way then size.
    pub map: Vec<MapPoint>,
    /// The transfer, by way.
    pub transfer: Vec<TransferPoint>,
    /// The allocator's criterion estimates.
    pub criterion: Vec<Estimate>,
    /// Instructions per alloc+free pair, by variant (callgrind).
    pub callgrind: Vec<(String, f64)>,
    /// Contiguous allocations that succeeded, ours and the peer's, of how
    /// many.
    pub contig: Option<(f64, f64, f64)>,
    /// Result lines of the emulated host's parts.
    pub results: Vec<String>,
    /// What the run says it left out (`BENCH note text=...`).
    pub notes: Vec<String>,
}

/// The values of `key` in `lines`, rounds in order.
fn values(lines: &[&Line], key: &str) -> Result<Vec<f64>, String> {
    lines.iter().map(|l| l.num(key)).collect()
}

/// The median of `key` over `lines`, if every line has it.
fn count(lines: &[&Line], key: &str) -> Result<Option<f64>, String> {
    if lines.iter().any(|l| l.get(key).is_none()) {
        return Ok(None);
    }
    Ok(Summary::of(&values(lines, key)?).map(|s| s.median))
}

/// MB/s of `bytes` in each of `ns`.
fn rates(bytes: f64, ns: &[f64]) -> Vec<f64> {
    ns.iter().map(|&t| bytes * 1000.0 / t.max(1.0)).collect()
}

impl Bench {
    /// Gathers the figures of `input`, with the allocator's criterion
    /// estimates `criterion`.
    pub fn gather(input: &Input, criterion: Vec<Estimate>) -> Result<Self, String> {
        let mut b = Bench {
            criterion,
            results: input.results.clone(),
            ..Default::default()
        };
        let of = |kind: &'static str| input.bench.iter().filter(move |l| l.kind == kind);
        for l in of("config") {
            b.config.extend(l.fields.clone());
        }
        for l in of("host") {
            b.host.extend(l.fields.clone());
        }
        for l in of("note") {
            b.notes.push(l.text("text")?.replace('_', " "));
        }
        let clock: Vec<&Line> = of("clock").collect();
        if let (Some(first), Some(read), Some(step)) = (
            clock.first(),
            Summary::of(&values(&clock, "read_ns")?),
            Summary::of(&values(&clock, "step_ns")?),
        ) {
            b.clock = Some(Clock {
                tsc_hz: first.num("tsc_hz")?,
                read_ns: read,
                step_ns: step,
            });
        }
        let mut groups: BTreeMap<(String, u64), Vec<&Line>> = BTreeMap::new();
        for l in of("map") {
            groups
                .entry((l.text("way")?.to_string(), l.num("n")? as u64))
                .or_default()
                .push(l);
        }
        for ((way, n), lines) in &groups {
            let ns = values(lines, "ns")?;
            let per_page: Vec<f64> = ns.iter().map(|t| t / *n as f64).collect();
            let outside = if lines.iter().all(|l| l.get("hypercall_ns").is_some()) {
                let hyp = values(lines, "hypercall_ns")?;
                let shares: Vec<f64> = ns
                    .iter()
                    .zip(&hyp)
                    .map(|(t, h)| (t - h) / t.max(1.0))
                    .collect();
                Summary::of(&shares)
            } else {
                None
            };
            b.map.push(MapPoint {
                way: way.clone(),
                n: *n,
                ns_per_page: Summary::of(&per_page).ok_or("no rounds")?,
                map_hypercalls: count(lines, "map_hypercalls")?,
                unmap_hypercalls: count(lines, "unmap_hypercalls")?,
                faults: count(lines, "faults")?,
                ptes: count(lines, "ptes")?,
                large: count(lines, "large")?,
                outside_hypercalls: outside,
            });
        }
        b.map.sort_by_key(|p| {
            let w = MAP_WAYS
                .iter()
                .position(|&w| w == p.way)
                .unwrap_or(MAP_WAYS.len());
            (w, p.n)
        });
        for way in TRANSFER_WAYS {
            let lines: Vec<&Line> = of("transfer")
                .filter(|l| l.get("way") == Some(way))
                .collect();
            let Some(first) = lines.first() else {
                continue;
            };
            let bytes = first.num("bytes")?;
            let copy = if lines.iter().all(|l| l.get("copy_ns").is_some()) {
                Summary::of(&rates(bytes, &values(&lines, "copy_ns")?))
            } else {
                None
            };
            b.transfer.push(TransferPoint {
                way: way.to_string(),
                bytes: bytes as u64,
                mb_s: Summary::of(&rates(bytes, &values(&lines, "ns")?)).ok_or("no rounds")?,
                copy_mb_s: copy,
                hypercalls: count(&lines, "hypercalls")?,
            });
        }
        for l in of("callgrind") {
            b.callgrind
                .push((l.text("variant")?.to_string(), l.num("instructions")?));
        }
        if let Some(l) = of("alloc-contig").next_back() {
            b.contig = Some((l.num("ours")?, l.num("peer")?, l.num("of")?));
        }
        Ok(b)
    }

    /// The sweep's point of `way` at `n`.
    pub fn point(&self, way: &str, n: u64) -> Option<&MapPoint> {
        self.map.iter().find(|p| p.way == way && p.n == n)
    }

    /// The sweep's points of `way`, by size.
    pub fn series(&self, way: &str) -> Vec<&MapPoint> {
        self.map.iter().filter(|p| p.way == way).collect()
    }

    /// The transfer's point of `way`.
    pub fn transfer_of(&self, way: &str) -> Option<&TransferPoint> {
        self.transfer.iter().find(|p| p.way == way)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lines::parse;

    #[test]
    fn gathers_rounds_into_points() {
        let text = "\
BENCH config pages=1024 rounds=3
BENCH clock round=0 tsc_hz=2000000000 read_ns=50 step_ns=10
BENCH map way=populate n=1024 round=0 ns=1024000 map_hypercalls=1 unmap_hypercalls=1 faults=1 ptes=2 large=2 hypercall_ns=512000
BENCH map way=populate n=1024 round=1 ns=2048000 map_hypercalls=1 unmap_hypercalls=1 faults=1 ptes=2 large=2 hypercall_ns=1024000
BENCH map way=linux n=16 round=0 ns=1600 faults=0
BENCH transfer way=memcpy round=0 bytes=1000000 ns=1000000
BENCH transfer way=mapped round=0 bytes=1000000 ns=2000000 copy_ns=1000000
BENCH callgrind variant=ours instructions=120
";
        let b = Bench::gather(&parse(text).unwrap(), Vec::new()).unwrap();
        assert_eq!(b.config["pages"], "1024");
        assert_eq!(b.clock.as_ref().unwrap().tsc_hz, 2e9);
        let p = b.point("populate", 1024).unwrap();
        assert_eq!(p.ns_per_page.median, 1500.0);
        assert_eq!(p.ptes, Some(2.0));
        assert_eq!(p.outside_hypercalls.unwrap().median, 0.5);
        let l = b.point("linux", 16).unwrap();
        assert_eq!((l.ns_per_page.median, l.map_hypercalls), (100.0, None));
        assert_eq!(b.map[0].way, "populate");
        assert_eq!(b.transfer_of("memcpy").unwrap().mb_s.median, 1000.0);
        assert_eq!(
            b.transfer_of("mapped").unwrap().copy_mb_s.unwrap().median,
            1000.0
        );
        assert_eq!(b.callgrind, vec![("ours".to_string(), 120.0)]);
    }
}
