//! `benchplot`: the host half of `scripts/bench` (`docs/benchmarks.md`).
//!
//!     benchplot LINES OUT_DIR [CRITERION_DIR]
//!
//! reads the benchmark's `BENCH` and result lines from the file LINES (the
//! emulated host's output, with the host's allocator lines), criterion's
//! estimates from CRITERION_DIR (`target/criterion`) if given, and writes
//! `OUT_DIR/report.md`, `OUT_DIR/results.json` and the plots
//! `OUT_DIR/map-sweep.svg` and `OUT_DIR/transfer.svg`. A part the run left
//! out is said so in the report; an input line it cannot read is an error
//! (exit 1), as is a call with other arguments (exit 2).
//!
//!     benchplot --check OUT_DIR
//!
//! says what a written OUT_DIR lacks (a file empty or missing, a series
//! absent from the JSON or from its plot), one line each, and exits 1 if
//! anything (scripts/test's bench-smoke).

mod check;
mod criterion;
mod goals;
mod json;
mod lines;
mod model;
mod plot;
mod report;
mod stats;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The plot files, by what they draw.
const MAP_PLOT: &str = "map-sweep.svg";
const TRANSFER_PLOT: &str = "transfer.svg";

fn run(input: &Path, out: &Path, criterion_dir: Option<&Path>) -> Result<(), String> {
    let text = fs::read_to_string(input).map_err(|e| format!("{}: {e}", input.display()))?;
    let parsed = lines::parse(&text)?;
    let estimates = match criterion_dir {
        Some(d) => criterion::read(d)?,
        None => Vec::new(),
    };
    let bench = model::Bench::gather(&parsed, estimates)?;
    fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let mut plots = Vec::new();
    if !bench.map.is_empty() {
        plot::map_sweep(&bench, &out.join(MAP_PLOT)).map_err(|e| format!("{MAP_PLOT}: {e}"))?;
        plots.push(MAP_PLOT);
    }
    if !bench.transfer.is_empty() {
        plot::transfer(&bench, &out.join(TRANSFER_PLOT))
            .map_err(|e| format!("{TRANSFER_PLOT}: {e}"))?;
        plots.push(TRANSFER_PLOT);
    }
    let goals = goals::judge(&bench);
    let write = |name: &str, body: String| {
        let p = out.join(name);
        fs::write(&p, body).map_err(|e| format!("{}: {e}", p.display()))
    };
    write("report.md", report::write(&bench, &goals, &plots))?;
    let doc = json::document(&bench, &goals, &plots);
    write(
        "results.json",
        serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())? + "\n",
    )?;
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    if args.len() == 2 && args[0].as_os_str() == "--check" {
        let missing = check::missing(&args[1]);
        for m in &missing {
            println!("{m}");
        }
        return if missing.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        };
    }
    if !(2..=3).contains(&args.len()) {
        eprintln!("usage: benchplot LINES OUT_DIR [CRITERION_DIR] | benchplot --check OUT_DIR");
        return ExitCode::from(2);
    }
    match run(&args[0], &args[1], args.get(2).map(PathBuf::as_path)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("benchplot: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lines with every series, as a healthy run prints them.
    fn complete_lines() -> String {
        let mut t = String::from(
            "BENCH config pages=1024 rounds=1\nBENCH clock round=0 tsc_hz=1000 read_ns=9 step_ns=1\n",
        );
        for way in model::MAP_WAYS {
            for n in [1, 1024] {
                t += &format!("BENCH map way={way} n={n} round=0 ns={}\n", n * 1000 + 5000);
            }
        }
        for way in model::TRANSFER_WAYS {
            t += &format!("BENCH transfer way={way} round=0 bytes=1048576 ns=1000000\n");
        }
        t + "BENCH callgrind variant=ours instructions=150\nPASS bench-ours\n"
    }

    #[test]
    fn writes_everything_and_check_finds_what_is_missing() {
        let dir = std::env::temp_dir().join(format!("benchplot-run-{}", std::process::id()));
        let crit = dir
            .join("criterion")
            .join("ours")
            .join("single")
            .join("new");
        fs::create_dir_all(&crit).unwrap();
        fs::write(
            crit.join("estimates.json"),
            r#"{"median":{"point_estimate":1.0,"confidence_interval":{"lower_bound":0.9,"upper_bound":1.1}}}"#,
        )
        .unwrap();
        let input = dir.join("lines.txt");
        fs::write(&input, complete_lines()).unwrap();
        let out = dir.join("out");
        run(&input, &out, Some(&dir.join("criterion"))).unwrap();
        assert_eq!(check::missing(&out), Vec::<String>::new());
        // Without Linux's series and the memcpy yardstick.
        let partial: String = complete_lines()
            .lines()
            .filter(|l| !l.contains("way=linux") && !l.contains("way=memcpy"))
            .map(|l| format!("{l}\n"))
            .collect();
        fs::write(&input, partial).unwrap();
        run(&input, &out, None).unwrap();
        let missing = check::missing(&out);
        assert!(missing.contains(&"no map sweep of way linux".to_string()));
        assert!(missing.contains(&"no transfer of way memcpy".to_string()));
        assert!(missing.contains(&"no criterion figures".to_string()));
        assert!(
            missing
                .iter()
                .any(|m| m.starts_with("map-sweep.svg has no series"))
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}
