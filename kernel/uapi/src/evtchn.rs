//! The ioctls of `/dev/xen/evtchn`: FreeBSD's `sys/xen/evtchn.h` (group
//! `'E'`, structs of `u32`), plus our read timeout and port status. The kernel's
//! `dev::evtchn` documents what each does.

use crate::ioc::{IOC_IN, IOC_INOUT, ioc};

/// `_IOWR('E', 5, {u32 remote_domain; u32 remote_port; u32 port})`.
pub const IOCTL_EVTCHN_BIND_INTERDOMAIN: u32 = ioc(IOC_INOUT, b'E', 5, 12);
/// `_IOWR('E', 6, {u32 remote_domain; u32 port})`.
pub const IOCTL_EVTCHN_BIND_UNBOUND_PORT: u32 = ioc(IOC_INOUT, b'E', 6, 8);
/// `_IOW('E', 7, {u32 port})`.
pub const IOCTL_EVTCHN_UNBIND: u32 = ioc(IOC_IN, b'E', 7, 4);
/// `_IOW('E', 8, {u32 port})`.
pub const IOCTL_EVTCHN_NOTIFY: u32 = ioc(IOC_IN, b'E', 8, 4);
/// `_IOW('E', 10, u64)`: the read timeout in ns (0: none).
pub const IOCTL_EVTCHN_SET_READ_TIMEOUT: u32 = ioc(IOC_IN, b'E', 10, 8);
/// `_IOWR('E', 11, {u32 port; u32 status})` (ours): the state of one of
/// this open's ports, Xen's `EVTCHNSTAT_*` ([`EVTCHN_STATUS_UNBOUND`]:
/// the peer's end is closed or its domain gone).
pub const IOCTL_EVTCHN_STATUS: u32 = ioc(IOC_INOUT, b'E', 11, 8);

/// Port status: closed (`EVTCHNSTAT_closed`).
pub const EVTCHN_STATUS_CLOSED: u32 = 0;
/// Port status: waiting for a peer to bind (`EVTCHNSTAT_unbound`).
pub const EVTCHN_STATUS_UNBOUND: u32 = 1;
/// Port status: connected to a peer (`EVTCHNSTAT_interdomain`).
pub const EVTCHN_STATUS_INTERDOMAIN: u32 = 2;
