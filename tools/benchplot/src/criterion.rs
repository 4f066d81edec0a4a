//! The allocator's criterion figures: `DIR/GROUP/BENCH/new/estimates.json`
//! as `cargo bench -p vm` leaves them (criterion 0.5).

use std::fs;
use std::path::Path;

use serde_json::Value;

/// One benchmark's time per iteration.
#[derive(Debug, Clone, PartialEq)]
pub struct Estimate {
    /// The group: the allocator (`ours`, `buddy_system_allocator`, ...).
    pub group: String,
    /// The workload (`single_4k_alloc_free`, ...).
    pub bench: String,
    /// Median ns per iteration, and its confidence interval.
    pub median_ns: f64,
    /// Lower bound of the interval.
    pub lower_ns: f64,
    /// Upper bound of the interval.
    pub upper_ns: f64,
}

/// The estimates under `dir`, by group and workload; none if `dir` does
/// not exist. A file that is not criterion's JSON is an error.
pub fn read(dir: &Path) -> Result<Vec<Estimate>, String> {
    let mut out = Vec::new();
    let Ok(groups) = fs::read_dir(dir) else {
        return Ok(out);
    };
    for g in groups.flatten() {
        let Ok(benches) = fs::read_dir(g.path()) else {
            continue;
        };
        for b in benches.flatten() {
            let file = b.path().join("new").join("estimates.json");
            let Ok(text) = fs::read_to_string(&file) else {
                continue;
            };
            let bad = |why: &str| format!("{}: {why}", file.display());
            let v: Value = serde_json::from_str(&text).map_err(|e| bad(&e.to_string()))?;
            let num = |p: &str| v.pointer(p).and_then(Value::as_f64).ok_or_else(|| bad(p));
            out.push(Estimate {
                group: g.file_name().to_string_lossy().into_owned(),
                bench: b.file_name().to_string_lossy().into_owned(),
                median_ns: num("/median/point_estimate")?,
                lower_ns: num("/median/confidence_interval/lower_bound")?,
                upper_ns: num("/median/confidence_interval/upper_bound")?,
            });
        }
    }
    out.sort_by(|a, b| (&a.bench, &a.group).cmp(&(&b.bench, &b.group)));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_medians_and_rejects_other_json() {
        let dir = std::env::temp_dir().join(format!("benchplot-crit-{}", std::process::id()));
        let b = dir.join("ours").join("single").join("new");
        fs::create_dir_all(&b).unwrap();
        fs::write(
            b.join("estimates.json"),
            r#"{"median":{"point_estimate":12.5,"confidence_interval":{"lower_bound":12.0,"upper_bound":13.0}}}"#,
        )
        .unwrap();
        let e = read(&dir).unwrap();
        assert_eq!(e.len(), 1);
        assert_eq!((e[0].group.as_str(), e[0].median_ns), ("ours", 12.5));
        fs::write(b.join("estimates.json"), "{}").unwrap();
        assert!(read(&dir).unwrap_err().contains("/median/point_estimate"));
        fs::remove_dir_all(&dir).unwrap();
        assert!(read(&dir).unwrap().is_empty());
    }
}
