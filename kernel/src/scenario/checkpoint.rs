//! Checkpoints of the kernel's own scenarios, as `tools/utest`'s
//! `checkpoint` for user programs: a test that must act at one step (the
//! `xl destroy` of the peer there) writes the step's name in the
//! domain's `data/xenguest-checkpoint` before the domain runs; the
//! scenario, at that step, writes `data/xenguest-at` = the name and waits
//! until the test removes the checkpoint node.

use xen::xenstore::TxId;

use crate::{events, sched, xenstore};

/// The node that names the step to stop at (written by dom0).
const CHECKPOINT: &str = "data/xenguest-checkpoint";
/// How long a scenario waits at its checkpoint at most.
const TIMEOUT_NS: u64 = 120_000_000_000;
/// How often it looks whether it was released.
const POLL_NS: u64 = 100_000_000;

/// Step `step`: if the domain's checkpoint names it, says so in
/// `data/xenguest-at` and waits until the checkpoint node is removed.
pub(super) fn checkpoint(step: &str) -> Result<(), &'static str> {
    if xenstore::read_string(CHECKPOINT).ok().as_deref() != Some(step) {
        return Ok(());
    }
    xenstore::with(|xs| xs.write(TxId::NONE, "data/xenguest-at", step.as_bytes()))
        .map_err(|_| "write data/xenguest-at")?;
    crate::kprintln!("checkpoint: at {step}, waiting for the test");
    let deadline = events::now_ns().saturating_add(TIMEOUT_NS);
    while xenstore::read_string(CHECKPOINT).is_ok() {
        if events::now_ns() >= deadline {
            return Err("the test never released its checkpoint");
        }
        sched::sleep_until(events::now_ns().saturating_add(POLL_NS));
    }
    crate::kprintln!("checkpoint: released at {step}");
    Ok(())
}
