//! Event channel operations (`event_channel.h`) and virtual IRQs
//! (`xen.h`).

use super::{DomId, Port};

pub use xen_sys::{
    EVTCHNOP_alloc_unbound, EVTCHNOP_bind_interdomain, EVTCHNOP_bind_ipi, EVTCHNOP_bind_virq,
    EVTCHNOP_close, EVTCHNOP_send, EVTCHNOP_status, EVTCHNOP_unmask, NR_VIRQS, VIRQ_CONSOLE,
    VIRQ_DEBUG, VIRQ_DOM_EXC, VIRQ_TIMER,
};

/// `struct evtchn_send`: argument of `EVTCHNOP_send`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct EvtchnSend {
    /// The local port to signal.
    pub port: Port,
}

/// `struct evtchn_alloc_unbound`: argument of `EVTCHNOP_alloc_unbound`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvtchnAllocUnbound {
    /// IN: the domain getting the port, usually
    /// [`DOMID_SELF`](super::DOMID_SELF).
    pub dom: DomId,
    /// IN: the domain allowed to bind to it.
    pub remote_dom: DomId,
    /// OUT: the new port.
    pub port: Port,
}

/// `struct evtchn_bind_interdomain`: argument of
/// `EVTCHNOP_bind_interdomain`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvtchnBindInterdomain {
    /// IN: the peer.
    pub remote_dom: DomId,
    /// IN: the peer's unbound port.
    pub remote_port: Port,
    /// OUT: our new port.
    pub local_port: Port,
}

/// `struct evtchn_bind_virq`: argument of `EVTCHNOP_bind_virq`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvtchnBindVirq {
    /// IN: `VIRQ_*`.
    pub virq: u32,
    /// IN: the vCPU to notify.
    pub vcpu: u32,
    /// OUT: the new port.
    pub port: Port,
}

/// `struct evtchn_close`: argument of `EVTCHNOP_close`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvtchnClose {
    /// The port to close.
    pub port: Port,
}

/// `struct evtchn_unmask`: argument of `EVTCHNOP_unmask`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvtchnUnmask {
    /// The port to unmask.
    pub port: Port,
}

/// `struct evtchn_status`: argument of `EVTCHNOP_status`. The union that
/// follows `vcpu` (8 bytes: the peer of an unbound or interdomain port,
/// or a pirq, virq) is kept raw.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvtchnStatus {
    /// IN: the port's domain, usually [`DOMID_SELF`](super::DOMID_SELF).
    pub dom: DomId,
    /// IN: the port.
    pub port: Port,
    /// OUT: `EVTCHNSTAT_*`.
    pub status: u32,
    /// OUT: the vCPU it notifies.
    pub vcpu: u32,
    /// OUT: the union, raw.
    pub u: [u32; 2],
}

/// `struct evtchn_bind_ipi`: argument of `EVTCHNOP_bind_ipi`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvtchnBindIpi {
    /// IN: the vCPU the port notifies.
    pub vcpu: u32,
    /// OUT: the new port.
    pub port: Port,
}
