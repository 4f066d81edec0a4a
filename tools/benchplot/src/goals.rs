//! Issue 13's goals, judged on one run's figures: each measured, and met
//! or not (or not measured, when the run left its figures out).

use crate::model::{Bench, MapPoint};

/// One goal's verdict.
#[derive(Debug, Clone, PartialEq)]
pub struct Goal {
    /// What is measured.
    pub name: &'static str,
    /// The target, as the issue words it.
    pub target: &'static str,
    /// The figure, if measured.
    pub value: Option<f64>,
    /// How the figure was taken (sizes, worst case, ...).
    pub detail: String,
    /// Met, not met, or `None` when not measured.
    pub met: Option<bool>,
}

/// The worst ratio of `way`'s median ns per page to `other`'s over the
/// sizes >= 1024 both measured, with a detail naming the sizes.
fn worst_ratio(b: &Bench, way: &str, other: &str) -> (Option<f64>, String) {
    let ratios: Vec<(u64, f64)> = b
        .series(way)
        .into_iter()
        .filter(|p| p.n >= 1024)
        .filter_map(|p| {
            let q = b.point(other, p.n)?;
            Some((p.n, p.ns_per_page.median / q.ns_per_page.median))
        })
        .collect();
    let worst = ratios
        .iter()
        .map(|r| r.1)
        .fold(None, |m: Option<f64>, r| Some(m.map_or(r, |m| m.max(r))));
    let detail = ratios
        .iter()
        .map(|(n, r)| format!("N={n}: {r:.3}"))
        .collect::<Vec<_>>()
        .join(", ");
    (
        worst,
        if detail.is_empty() {
            "no size >= 1024 with both".into()
        } else {
            format!("worst of {detail}")
        },
    )
}

/// The goals of issue 13 on `b`.
pub fn judge(b: &Bench) -> Vec<Goal> {
    let mut goals = Vec::new();

    let four_mib = b.point("populate", 1024);
    goals.push(Goal {
        name: "page-table entries for one aligned 4 MiB grant mapping (N = 1024, populate)",
        target: "2",
        value: four_mib.and_then(|p| p.ptes),
        detail: four_mib.map_or("N = 1024 not measured".into(), |p| {
            format!(
                "{} of them 2 MiB entries",
                p.large.map_or("?".into(), |l| format!("{l:.0}"))
            )
        }),
        met: four_mib.and_then(|p| p.ptes).map(|v| v == 2.0),
    });

    for (other, target, limit, name) in [
        (
            "linux",
            "<= 0.7x",
            0.7,
            "ns per page, populate vs Linux dom0's gntdev, N >= 1024",
        ),
        (
            "per-page",
            "<= 0.2x",
            0.2,
            "ns per page, populate vs our per-page faults, N >= 1024",
        ),
    ] {
        let (value, detail) = worst_ratio(b, "populate", other);
        goals.push(Goal {
            name,
            target,
            value,
            detail,
            met: value.map(|v| v <= limit),
        });
    }

    let flat: Vec<&MapPoint> = b
        .series("populate")
        .into_iter()
        .filter(|p| (16..=65536).contains(&p.n))
        .collect();
    let (lo, hi) = flat.iter().fold((f64::INFINITY, 0.0f64), |(lo, hi), p| {
        (lo.min(p.ns_per_page.median), hi.max(p.ns_per_page.median))
    });
    let spread = (flat.len() >= 2).then(|| hi / lo);
    goals.push(Goal {
        name: "cost per page flat from N = 16 to 65536 (populate: largest / smallest median)",
        target: "<= 1.2x",
        value: spread,
        detail: match (flat.first(), flat.last()) {
            (Some(a), Some(z)) => format!("N = {} to {} measured", a.n, z.n),
            _ => "fewer than two sizes measured".into(),
        },
        met: spread.map(|v| v <= 1.2),
    });

    let (mapped, memcpy) = (b.transfer_of("mapped"), b.transfer_of("memcpy"));
    let size = mapped.map_or("not measured".into(), |m| format!("{} MiB", m.bytes >> 20));
    let whole = mapped
        .zip(memcpy)
        .map(|(m, c)| m.mb_s.median / c.mb_s.median);
    goals.push(Goal {
        name: "grant-mapped transfer, the whole (map, copy, unmap) vs in-domain memcpy",
        target: ">= 0.8x",
        value: whole,
        detail: size.clone(),
        met: whole.map(|v| v >= 0.8),
    });
    let copy = mapped
        .and_then(|m| m.copy_mb_s)
        .zip(memcpy)
        .map(|(c, m)| c.median / m.mb_s.median);
    goals.push(Goal {
        name: "grant-mapped transfer, the copy through the mapping once mapped vs in-domain memcpy",
        target: ">= 0.8x",
        value: copy,
        detail: size,
        met: copy.map(|v| v >= 0.8),
    });

    let shares: Vec<(u64, f64)> = b
        .series("populate")
        .into_iter()
        .filter(|p| p.n >= 1024)
        .filter_map(|p| Some((p.n, p.outside_hypercalls?.median)))
        .collect();
    let worst = shares
        .iter()
        .map(|s| s.1)
        .fold(None, |m: Option<f64>, s| Some(m.map_or(s, |m| m.max(s))));
    goals.push(Goal {
        name: "our kernel's share of a mapping's cost outside the map and unmap hypercalls, N >= 1024 (populate)",
        target: "<= 10%",
        value: worst.map(|w| w * 100.0),
        detail: if shares.is_empty() {
            "no size >= 1024 measured".into()
        } else {
            format!(
                "worst of {}",
                shares
                    .iter()
                    .map(|(n, s)| format!("N={n}: {:.1}%", s * 100.0))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        },
        met: worst.map(|w| w <= 0.10),
    });
    goals
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lines::parse;

    #[test]
    fn judges_measured_goals_and_leaves_the_rest_open() {
        let text = "\
BENCH map way=populate n=16 round=0 ns=16000 ptes=16 large=0 hypercall_ns=8000
BENCH map way=populate n=1024 round=0 ns=1024000 ptes=2 large=2 hypercall_ns=950000
BENCH map way=linux n=1024 round=0 ns=2048000
BENCH map way=per-page n=1024 round=0 ns=4096000
";
        let b = Bench::gather(&parse(text).unwrap(), Vec::new()).unwrap();
        let g = judge(&b);
        assert_eq!(g[0].met, Some(true));
        assert_eq!((g[1].value, g[1].met), (Some(0.5), Some(true)));
        assert_eq!((g[2].value, g[2].met), (Some(0.25), Some(false)));
        assert_eq!((g[3].value, g[3].met), (Some(1.0), Some(true)));
        assert_eq!((g[4].met, g[5].met), (None, None));
        assert!(g[6].value.unwrap() > 7.2 && g[6].value.unwrap() < 7.3);
        assert_eq!(g[6].met, Some(true));
    }
}
