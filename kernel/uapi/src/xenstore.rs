//! The ioctl of `/dev/xen/xenstore` (ours; the device otherwise speaks
//! xenstored's `xsd_sockmsg` wire format through `read` and `write`).

use crate::ioc::{IOC_IN, ioc};

/// `_IOW('X', 10, u64)`: bound each `read` to this many ns (0: none).
pub const IOCTL_XENSTORE_SET_READ_TIMEOUT: u32 = ioc(IOC_IN, b'X', 10, 8);
