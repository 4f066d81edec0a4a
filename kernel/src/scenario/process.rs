//! User-program scenarios: each runs programs of the archive as processes
//! and checks their exit status, and that the free page count is back to
//! its starting value once they are gone.
//!
//! Command line: `scenario=user-NAME`; the program archive is the boot
//! module (`ramdisk=`).

use crate::{kprintln, mem, proc};

use super::Outcome;

/// Exit status of a process killed by a page fault (128 + SIGSEGV).
pub const KILLED_SEGV: i32 = 139;

/// Runs program `name`, expecting exit status `want`; checks the free
/// page count.
pub fn run_program(name: &str, want: i32) -> Outcome {
    let before = mem::free_pages();
    let (updates0, calls0) = xen::pv::update_counts();
    let p = proc::spawn(name, 0).map_err(|e| {
        log::error!("spawn {name}: {e}");
        "cannot start the program"
    })?;
    // The exec's own page-table writes (the image, prefaulted).
    let (exec_updates, exec_calls) = xen::pv::update_counts();
    let (exec_updates, exec_calls) = (exec_updates - updates0, exec_calls - calls0);
    let status = proc::wait(&p);
    let pid = p.pid;
    drop(p);
    let after = mem::free_pages();
    kprintln!(
        "process {pid} ({name}) exited with status {status}; free pages {before} before, {after} after"
    );
    if crate::arch::is_pv() {
        // The page-table writes of its life (exec, faults, unmaps, exit)
        // and the `mmu_update` calls that made them.
        let (updates, calls) = xen::pv::update_counts();
        let (updates, calls) = (updates - updates0, calls - calls0);
        kprintln!(
            "COUNTERS pv-{name} mmu_updates={updates} mmu_update_calls={calls} per_call={} exec_updates={exec_updates} exec_calls={exec_calls}",
            updates.checked_div(calls).unwrap_or(0)
        );
    }
    if status != want {
        log::error!("{name}: status {status}, expected {want}");
        return Err("unexpected exit status");
    }
    if after != before {
        return Err("free page count did not return to its starting value");
    }
    Ok(())
}

/// Runs each `(program, expected status)` in turn.
pub fn run_all(list: &[(&str, i32)]) -> Outcome {
    list.iter()
        .try_for_each(|&(name, want)| run_program(name, want))
}
