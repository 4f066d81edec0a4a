//! Scenarios selected with `scenario=NAME` on the command line.
//!
//! Each one ends by printing `RESULT NAME PASS` (or `FAIL` with a reason);
//! the `xl` scenario scripts look for that line in the guest's console
//! log. A crash prints `RESULT NAME CRASH` from the fatal path.

mod checkpoint;
mod gntdev;
mod pmap;
mod process;
mod share;
mod smp;
mod vchan;

use crate::boot_info::BootInfo;
use crate::cmdline::Options;

/// The scenario that runs when none is named: the banner only.
pub const DEFAULT: &str = "banner";

/// Outcome of a scenario.
pub type Outcome = Result<(), &'static str>;

/// A named scenario.
struct Scenario {
    name: &'static str,
    run: fn(&BootInfo, &Options<'_>) -> Outcome,
}

const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "banner",
        run: |_, _| Ok(()),
    },
    Scenario {
        name: "share-sharer",
        run: |_, o| share::sharer(o, false),
    },
    Scenario {
        name: "share-mapper",
        run: |_, o| share::mapper(o, false),
    },
    Scenario {
        name: "revoke-sharer",
        run: |_, o| share::sharer(o, true),
    },
    Scenario {
        name: "revoke-mapper",
        run: |_, o| share::mapper(o, true),
    },
    Scenario {
        name: "gntdev-share",
        run: |_, o| gntdev::share(o),
    },
    Scenario {
        name: "gntdev-map",
        run: |_, o| gntdev::map(o),
    },
    Scenario {
        name: "gntdev-lend",
        run: |_, o| gntdev::lend(o),
    },
    Scenario {
        name: "gntdev-borrow",
        run: |_, o| gntdev::borrow(o),
    },
    Scenario {
        name: "gntdev-bad",
        run: |_, o| gntdev::bad(o),
    },
    Scenario {
        name: "vchan",
        run: |_, o| vchan::run(o),
    },
    Scenario {
        name: "fuzz",
        run: |_, o| gntdev::fuzz(o),
    },
    Scenario {
        name: "chaos",
        run: |_, o| gntdev::chaos(o),
    },
    Scenario {
        name: "pmap",
        run: |_, _| pmap::run(),
    },
    Scenario {
        name: "user-hello",
        run: |_, _| process::run_program("hello", 0),
    },
    Scenario {
        name: "user-anon",
        run: |_, _| process::run_program("anon", 0),
    },
    Scenario {
        name: "user-cow",
        run: |_, _| process::run_program("cow", 0),
    },
    Scenario {
        name: "user-munmap",
        run: |_, _| process::run_all(&[("munmap", process::KILLED_SEGV), ("hello", 0)]),
    },
    Scenario {
        name: "user-mprotect",
        run: |_, _| process::run_all(&[("mprotect", process::KILLED_SEGV), ("hello", 0)]),
    },
    Scenario {
        name: "user-efault",
        run: |_, _| process::run_program("efault", 0),
    },
    Scenario {
        name: "user-populate",
        run: |_, _| process::run_program("populate", 0),
    },
    Scenario {
        name: "user-contig",
        run: |_, _| process::run_program("contig", 0),
    },
    Scenario {
        name: "user-loan",
        run: |_, _| process::run_program("loan", 0),
    },
    Scenario {
        name: "smp-boot",
        run: |_, _| smp::boot(),
    },
    Scenario {
        name: "smp-preempt",
        run: |_, _| smp::preempt(),
    },
    Scenario {
        name: "smp-threads",
        run: |_, _| smp::threads(),
    },
    // Harness self-tests: each must be reported as a failure.
    Scenario {
        name: "fault",
        run: |_, _| fault(),
    },
    Scenario {
        name: "panic",
        run: |_, _| panic!("panic requested by scenario=panic"),
    },
    Scenario {
        name: "pass-then-crash",
        run: |_, _| pass_then(End::Crash),
    },
    Scenario {
        name: "pass-then-hang",
        run: |_, _| pass_then(End::Hang),
    },
    Scenario {
        name: "guard-overflow",
        run: |_, _| guard_overflow(),
    },
    Scenario {
        name: "triple-fault",
        run: |_, _| triple_fault(),
    },
];

/// How [`pass_then`] ends instead of powering off.
enum End {
    /// Shut down with reason crash.
    Crash,
    /// Never shut down.
    Hang,
}

/// Prints the running scenario's PASS line and then does not power off:
/// the harness must judge by how the domain ends, as XTF's runner does,
/// and report a failure.
fn pass_then(end: End) -> Outcome {
    let name = CURRENT.get().copied().unwrap_or("?");
    crate::kprintln!("RESULT {name} PASS");
    crate::console::flush();
    match end {
        End::Crash => xen::sched::shutdown(xen::abi::sched::ShutdownReason::Crash),
        // Idle, a second at a time (a deadline far out would overflow
        // Xen's signed timer).
        End::Hang => loop {
            crate::sched::sleep_until(crate::events::now_ns().saturating_add(1_000_000_000));
        },
    }
}

/// Runs a kernel thread whose recursion overflows its stack: the guard
/// page below it must catch it and the double-fault handler report the
/// thread, rip and guard address with a crash shutdown.
fn guard_overflow() -> Outcome {
    let tid = crate::sched::spawn_kernel(overflow, 0, None);
    crate::kprintln!("guard-overflow: thread {tid} recurses without end");
    crate::sched::sleep_until(crate::events::now_ns().saturating_add(5_000_000_000));
    Err("the stack overflow was not caught")
}

/// A thread that never stops recursing (512 bytes of frame per level).
extern "C" fn overflow(_: usize) -> ! {
    let depth = recurse(0);
    log::error!("recursion returned at depth {depth}");
    crate::sched::exit_current()
}

/// Uses a frame, then recurses; only a depth no stack reaches ends it.
#[inline(never)]
fn recurse(depth: u64) -> u64 {
    let pad = core::hint::black_box([depth; 64]);
    if depth == u64::MAX {
        return pad[0];
    }
    recurse(depth + 1).wrapping_add(pad[63])
}

/// Faults with an empty IDT: the exception, then the double fault cannot
/// be delivered, so the vCPU triple-faults, which Xen turns into a reboot
/// of a PVH domain. Nothing in the guest can report it: the harness must
/// show Xen's dump of the vCPU instead.
fn triple_fault() -> Outcome {
    crate::kprintln!("triple-fault: loading an empty IDT, then ud2");
    crate::console::flush();
    let empty = x86_64::structures::DescriptorTablePointer {
        limit: 0,
        base: x86_64::VirtAddr::zero(),
    };
    // SAFETY: deliberately unsound - with no IDT entry the `ud2` below
    // can be delivered neither as #UD nor as #DF, and the vCPU stops; it
    // never returns here.
    unsafe {
        crate::arch::interrupts::disable();
        x86_64::instructions::tables::lidt(&empty);
        core::arch::asm!("ud2", options(nomem, nostack));
    }
    Err("ud2 with an empty IDT did not stop the vCPU")
}

/// Touches an address the boot page tables do not map: a page fault in
/// kernel mode, which must end in a register dump and a crashed domain.
fn fault() -> Outcome {
    let v = crate::control::fault_on_purpose();
    log::error!("read {v:#x} from an unmapped address without a fault");
    Err("unmapped read did not fault")
}

/// The currently running scenario's name, for the fatal path's RESULT line.
pub static CURRENT: spin::Once<&'static str> = spin::Once::new();

/// Runs scenario `name`, printing its result line.
pub fn run(name: &str, boot: &BootInfo, opts: &Options<'_>) -> Outcome {
    let Some(s) = SCENARIOS.iter().find(|s| s.name == name) else {
        crate::kprintln!("RESULT {name} FAIL unknown scenario");
        return Err("unknown scenario");
    };
    CURRENT.call_once(|| s.name);
    let outcome = (s.run)(boot, opts);
    match (crate::control::requested(), outcome) {
        // Its processes were killed for a shutdown: no verdict.
        (Some(reason), _) => crate::kprintln!(
            "RESULT {} STOPPED by the toolstack's {reason:?} request",
            s.name
        ),
        (None, Ok(())) => crate::kprintln!("RESULT {} PASS", s.name),
        (None, Err(why)) => crate::kprintln!("RESULT {} FAIL {why}", s.name),
    }
    outcome
}
