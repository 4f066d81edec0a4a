//! Checkpoints: a test that must act at one exact step of a program (the
//! `xl destroy` of its peer domain there, say) names the step in the
//! domain's `data/xenguest-checkpoint` node before the domain runs. The
//! program, at that step, writes `data/xenguest-at` = the step's name and
//! waits until the test removes `data/xenguest-checkpoint`. Without the
//! node, a step costs one xenstore read.

use gnttab::xs::{Watch, Xs};

/// The node that names the step to stop at (written by dom0).
const CHECKPOINT: &str = "data/xenguest-checkpoint";
/// The node the program writes once it stopped there.
const AT: &str = "data/xenguest-at";
/// How long a program waits at its checkpoint at most.
const TIMEOUT_NS: u64 = 120_000_000_000;
/// How often the wait reads the node again whether a watch event came or
/// not.
const POLL_NS: u64 = 500_000_000;

/// Step `step` of the running program: if the domain's checkpoint names
/// it, says so in `data/xenguest-at` and waits until the checkpoint node
/// is removed (at most two minutes).
pub fn checkpoint(xs: &mut Xs, step: &str) -> Result<(), &'static str> {
    let mut value = [0u8; 64];
    match xs.read(CHECKPOINT, &mut value) {
        Ok(n) if &value[..n] == step.as_bytes() => {}
        _ => return Ok(()),
    }
    let mut watch = Watch::new(CHECKPOINT, "checkpoint").map_err(|_| "watch the checkpoint")?;
    xs.write(AT, step.as_bytes())
        .map_err(|_| "write data/xenguest-at")?;
    urt::println!("checkpoint: at {step}, waiting for the test");
    let deadline = urt::clock_ns().saturating_add(TIMEOUT_NS);
    while xs.read(CHECKPOINT, &mut value).is_ok() {
        let now = urt::clock_ns();
        if now >= deadline {
            return Err("the test never released its checkpoint");
        }
        let _ = watch.wait(POLL_NS.min(deadline - now));
    }
    urt::println!("checkpoint: released at {step}");
    Ok(())
}
