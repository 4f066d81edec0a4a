//! Event channel operations.

use crate::abi::Port;
use crate::abi::event_channel::{EVTCHNOP_send, EvtchnSend};
use crate::abi::op::EVENT_CHANNEL_OP;
use crate::hypercall::{self, XenErrno};

/// Signals the remote end of local `port` (`EVTCHNOP_send`).
pub fn send(port: Port) -> Result<(), XenErrno> {
    let mut arg = EvtchnSend { port };
    // SAFETY: `arg` is a valid `evtchn_send` for the whole call.
    XenErrno::check(unsafe { hypercall::op_arg(EVENT_CHANNEL_OP, EVTCHNOP_send, &raw mut arg) })
        .map(drop)
}
