//! Rounds of the share protocol (`docs/share-protocol.md`, rounds): each
//! side names the round it is in, in a node the other side waits on.

use gnttab::xs::{Absent, Fmt, Watch, Xs, XsError};

/// Waits, for at most `timeout_ns`, until the node at `path` reads the
/// decimal `round`; `absent` says what the node's absence means
/// ([`Xs::wait_for`]).
pub fn wait_round(
    xs: &mut Xs,
    path: &str,
    round: u64,
    timeout_ns: u64,
    absent: Absent,
) -> Result<(), XsError> {
    let mut want = Fmt::new();
    want.num(round);
    let mut watch = Watch::new(path, "round")?;
    let mut value = [0u8; 32];
    xs.wait_for(
        &mut watch,
        path,
        &[want.as_bytes()],
        b"\xff",
        &mut value,
        timeout_ns,
        absent,
    )
    .map(drop)
}
