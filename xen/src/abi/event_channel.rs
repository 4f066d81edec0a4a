//! Event channel operations (`event_channel.h`).

use super::Port;

pub use xen_sys::EVTCHNOP_send;

/// `struct evtchn_send`: argument of `EVTCHNOP_send`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct EvtchnSend {
    /// The local port to signal.
    pub port: Port,
}
