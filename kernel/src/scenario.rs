//! Scenarios selected with `scenario=NAME` on the command line.
//!
//! Each one prints `RESULT NAME PASS` (or `FAIL` with a reason) as its last
//! line; the `xl` scenario scripts look for that line in the guest's
//! console log. A crash prints `RESULT NAME CRASH` from the fatal path.

use crate::boot_info::BootInfo;

/// The scenario that runs when none is named: the banner only.
pub const DEFAULT: &str = "banner";

/// Outcome of a scenario.
pub type Outcome = Result<(), &'static str>;

/// A named scenario.
struct Scenario {
    name: &'static str,
    run: fn(&BootInfo) -> Outcome,
}

const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "banner",
        run: |_| Ok(()),
    },
    // Harness self-tests: each must be reported as a failure.
    Scenario {
        name: "fault",
        run: |_| fault(),
    },
    Scenario {
        name: "panic",
        run: |_| panic!("panic requested by scenario=panic"),
    },
];

/// Touches an address the boot page tables do not map: a page fault in
/// kernel mode, which must end in a register dump and a crashed domain.
fn fault() -> Outcome {
    let unmapped = 0x40_0000_0000usize as *const u64;
    // SAFETY: deliberately unsound - this read is meant to fault, and the
    // fault handler never returns here.
    let v = unsafe { unmapped.read_volatile() };
    log::error!("read {v:#x} from an unmapped address without a fault");
    Err("unmapped read did not fault")
}

/// The currently running scenario's name, for the fatal path's RESULT line.
pub static CURRENT: spin::Once<&'static str> = spin::Once::new();

/// Runs scenario `name`, printing its result line.
pub fn run(name: &str, boot: &BootInfo) -> Outcome {
    let Some(s) = SCENARIOS.iter().find(|s| s.name == name) else {
        crate::kprintln!("RESULT {name} FAIL unknown scenario");
        return Err("unknown scenario");
    };
    CURRENT.call_once(|| s.name);
    let outcome = (s.run)(boot);
    match outcome {
        Ok(()) => crate::kprintln!("RESULT {} PASS", s.name),
        Err(why) => crate::kprintln!("RESULT {} FAIL {why}", s.name),
    }
    outcome
}
