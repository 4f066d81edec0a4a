//! The ioctl of `/dev/physobj` (ours: a test device backed by
//! guest-physical pages).

use crate::ioc::{IOC_IN, ioc};

/// `_IOW('P', 1, u64)`: create the object with this many pages (once).
pub const PHYSOBJ_SET_SIZE: u32 = ioc(IOC_IN, b'P', 1, 8);
