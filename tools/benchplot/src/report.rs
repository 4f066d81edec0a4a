//! `report.md`: the run's figures and the goals, for people.

use std::fmt::Write;

use crate::goals::Goal;
use crate::model::{Bench, MAP_WAYS, TRANSFER_WAYS};
use crate::plot::{map_label, transfer_label};

/// A count as the tables show it: `-` when the way cannot count it.
fn count(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.0}"))
}

/// The report of `b` with its `goals`; `plots` are the plot files' names.
pub fn write(b: &Bench, goals: &[Goal], plots: &[&str]) -> String {
    let mut r = String::new();
    let cfg = |k: &str| b.config.get(k).map_or("?", String::as_str);
    let host = |k: &str| b.host.get(k).map_or("?", String::as_str);
    let _ = writeln!(r, "# Benchmark report (scripts/bench)\n");
    let _ = writeln!(
        r,
        "One boot of the emulated Xen host: Xen {} on QEMU's software emulation ({} emulated CPUs, cpu_mhz {} as Xen reports it), dom0 Linux {} ({} guest). \
         Every figure is the median of {} rounds, with the smallest and largest round in brackets. \
         Absolute times are the emulation's, not a real machine's: compare the ways with each other.\n",
        host("xen_version"),
        host("nr_cpus"),
        host("cpu_mhz"),
        host("dom0_kernel"),
        host("dom0_type"),
        cfg("rounds")
    );
    for n in &b.notes {
        let _ = writeln!(r, "- Note: {n}");
    }
    if !b.notes.is_empty() {
        r.push('\n');
    }

    let _ = writeln!(r, "## Goals (issue 13), as measured in this run\n");
    let _ = writeln!(r, "| goal | target | measured | met |\n|---|---|---|---|");
    for g in goals {
        // In the target's unit: a percentage, a ratio or a count.
        let value = g.value.map_or("not measured".into(), |v| {
            if g.target.ends_with('%') {
                format!("{v:.1}%")
            } else if g.target.ends_with('x') {
                format!("{v:.3}x")
            } else {
                format!("{v:.0}")
            }
        });
        let met = match g.met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "-",
        };
        let _ = writeln!(
            r,
            "| {} | {} | {value} ({}) | {met} |",
            g.name, g.target, g.detail
        );
    }

    let _ = writeln!(r, "\n## Time source\n");
    match &b.clock {
        Some(c) => {
            let _ = writeln!(
                r,
                "Every guest figure is timed with the pvclock (Xen's `vcpu_time_info`, the kernel's `clock()` system call): TSC frequency {:.3} MHz (`CLOCK_TSC_HZ`). \
                 One `clock()` read costs {} ns; the smallest step between two reads is {} ns. dom0's figures use `clock_gettime(CLOCK_MONOTONIC)`. \
                 On the emulated host Xen emulates the guests' `rdtsc` (scripts/lib/xl.sh says why), which makes a read this dear: \
                 a figure should span many reads, and the two reads the kernel makes around each map and unmap hypercall are in its figures.\n",
                c.tsc_hz / 1e6,
                c.read_ns.show(0),
                c.step_ns.show(0)
            );
        }
        None => {
            let _ = writeln!(r, "Not measured in this run.\n");
        }
    }

    let _ = writeln!(
        r,
        "## Map sweep: map + touch every page + unmap\n\n\
         Our gnt-map maps the first N of the grants our gnt-share in domain A gave it, reads one word of every page and unmaps them \
         (libxengnttab's calls: `MAP_GRANT_REF`, `mmap`; `GET_OFFSET_FOR_VADDR`, `munmap`, `UNMAP_GRANT_REF`); dom0's xen-interop does the same \
         through Linux's gntdev with libxengnttab, with grants another gnt-share gave dom0. \
         Hypercalls, faults and page-table entries are the kernel's counters (sysctls); Linux's dom0 has no such counters, and its faults are the \
         minor faults of the reads (`getrusage`). Our per-page way's 4 KiB entries are promoted to a 2 MiB entry once an aligned run of 512 \
         is in, which its PTE count shows. \"outside hypercalls\" is the share of the time spent outside the map and unmap hypercalls \
         (the kernel times them: `GRANT_MAP_NS`, `GRANT_UNMAP_NS`).\n"
    );
    for (plot, alt) in plots.iter().zip(["ns per page against N", "transfer MB/s"]) {
        if plot.starts_with("map") {
            let _ = writeln!(r, "![{alt}]({plot})\n");
        }
    }
    let _ = writeln!(
        r,
        "| way | N | ns per page | map hypercalls | unmap hypercalls | faults | PTEs (2 MiB) | outside hypercalls |\n|---|---|---|---|---|---|---|---|"
    );
    for way in MAP_WAYS {
        for p in b.series(way) {
            let _ = writeln!(
                r,
                "| {} | {} | {} | {} | {} | {} | {} ({}) | {} |",
                map_label(way),
                p.n,
                p.ns_per_page.show(0),
                count(p.map_hypercalls),
                count(p.unmap_hypercalls),
                count(p.faults),
                count(p.ptes),
                count(p.large),
                p.outside_hypercalls.map_or("-".into(), |s| format!(
                    "{:.1}% ({:.1}–{:.1})",
                    s.median * 100.0,
                    s.min * 100.0,
                    s.max * 100.0
                )),
            );
        }
        if b.series(way).is_empty() {
            let _ = writeln!(
                r,
                "| {} | not measured in this run | | | | | | |",
                map_label(way)
            );
        }
    }

    let _ = writeln!(
        r,
        "\n## Transfer from domain A to B\n\n\
         A's gnt-share filled the pages; B copies them into a buffer of its own: through a mapping of them (map, copy, unmap; the copy alone, \
         after the first read has mapped every grant, in the last column), with `GRANT_COPY` (one 4 KiB segment per page, our gntdev batches them), and, as the yardstick, the same bytes \
         between two buffers of B's own (`memcpy`). Each round checks the bytes copied.\n"
    );
    for plot in plots.iter().filter(|p| p.starts_with("transfer")) {
        let _ = writeln!(r, "![transfer MB/s]({plot})\n");
    }
    let memcpy = b.transfer_of("memcpy").map(|m| m.mb_s.median);
    let _ = writeln!(
        r,
        "| way | MiB | MB/s | vs memcpy | hypercalls | copy alone, MB/s |\n|---|---|---|---|---|---|"
    );
    for way in TRANSFER_WAYS {
        match b.transfer_of(way) {
            Some(p) => {
                let _ = writeln!(
                    r,
                    "| {} | {} | {} | {} | {} | {} |",
                    transfer_label(way),
                    p.bytes >> 20,
                    p.mb_s.show(0),
                    memcpy.map_or("-".into(), |m| format!("{:.3}x", p.mb_s.median / m)),
                    count(p.hypercalls),
                    p.copy_mb_s.map_or("-".into(), |s| s.show(0)),
                );
            }
            None => {
                let _ = writeln!(
                    r,
                    "| {} | not measured in this run | | | | |",
                    transfer_label(way)
                );
            }
        }
    }

    let _ = writeln!(
        r,
        "\n## Allocator (host, `vm/benches`)\n\n\
         Our physical allocator (per-CPU page caches over buddy queues; and the buddy queues alone) against `buddy_system_allocator`'s \
         `LockedFrameAllocator`, on the host: criterion's median time per iteration (its 95% interval in brackets), and callgrind's \
         instructions per 4 KiB alloc+free pair.\n"
    );
    if b.criterion.is_empty() {
        let _ = writeln!(r, "criterion: not run.\n");
    } else {
        let _ = writeln!(
            r,
            "| workload | allocator | ns per iteration |\n|---|---|---|"
        );
        for e in &b.criterion {
            let _ = writeln!(
                r,
                "| {} | {} | {:.1} ({:.1}–{:.1}) |",
                e.bench, e.group, e.median_ns, e.lower_ns, e.upper_ns
            );
        }
        r.push('\n');
    }
    if let Some((ours, peer, of)) = b.contig {
        let _ = writeln!(
            r,
            "Contiguous allocations that succeeded after churn: ours {ours:.0} of {of:.0}, buddy_system_allocator {peer:.0} of {of:.0}.\n"
        );
    }
    if b.callgrind.is_empty() {
        let _ = writeln!(r, "callgrind: not run.\n");
    } else {
        let _ = writeln!(
            r,
            "| allocator (callgrind) | instructions per alloc+free |\n|---|---|"
        );
        for (v, i) in &b.callgrind {
            let _ = writeln!(r, "| {v} | {i:.0} |");
        }
        r.push('\n');
    }

    let _ = writeln!(r, "## The emulated host's parts\n");
    for l in &b.results {
        let _ = writeln!(r, "- {l}");
    }
    if b.results.is_empty() {
        let _ = writeln!(r, "- no result line: the run did not finish");
    }
    r
}
