//! Grant statuses as a typed error, with the errno user space sees.

use core::fmt;

use crate::abi::grant_table::*;
use crate::hypercall::XenErrno;

/// Why one grant operation failed: a `GNTST_*` status, or the hypercall
/// carrying it failed before Xen looked at the op.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[doc(alias = "GNTST")]
pub enum GrantError {
    /// `GNTST_general_error`.
    General,
    /// `GNTST_bad_domain`: no such domain (or it is dying).
    BadDomain,
    /// `GNTST_bad_gntref`: no such reference, or not granted to us.
    BadGntref,
    /// `GNTST_bad_handle`: no such mapping handle.
    BadHandle,
    /// `GNTST_bad_virt_addr`: the address to map at or unmap is wrong.
    BadVirtAddr,
    /// `GNTST_bad_dev_addr`.
    BadDevAddr,
    /// `GNTST_no_device_space`: IOMMU out of space.
    NoDeviceSpace,
    /// `GNTST_permission_denied`: e.g. a writable map of a read-only grant.
    PermissionDenied,
    /// `GNTST_bad_page`: the granted frame is not valid.
    BadPage,
    /// `GNTST_bad_copy_arg`: a copy crosses a page boundary.
    BadCopyArg,
    /// `GNTST_address_too_big`.
    AddressTooBig,
    /// `GNTST_eagain`: not done, try again (still so after the retries).
    Eagain,
    /// `GNTST_no_space`: out of maptrack handles, or (guest side) out of
    /// grant references.
    NoSpace,
    /// A status this code does not know.
    Unknown(i16),
    /// The hypercall failed before Xen processed this op.
    Hypercall(XenErrno),
}

impl GrantError {
    /// The error for a failed (non-zero) `GNTST_*` status.
    // The patterns are Xen's C names.
    #[allow(non_upper_case_globals)]
    pub fn from_status(status: i16) -> Self {
        match status {
            GNTST_general_error => Self::General,
            GNTST_bad_domain => Self::BadDomain,
            GNTST_bad_gntref => Self::BadGntref,
            GNTST_bad_handle => Self::BadHandle,
            GNTST_bad_virt_addr => Self::BadVirtAddr,
            GNTST_bad_dev_addr => Self::BadDevAddr,
            GNTST_no_device_space => Self::NoDeviceSpace,
            GNTST_permission_denied => Self::PermissionDenied,
            GNTST_bad_page => Self::BadPage,
            GNTST_bad_copy_arg => Self::BadCopyArg,
            GNTST_address_too_big => Self::AddressTooBig,
            GNTST_eagain => Self::Eagain,
            GNTST_no_space => Self::NoSpace,
            other => Self::Unknown(other),
        }
    }

    /// `Ok` for `GNTST_okay`, the error otherwise.
    pub fn check(status: i16) -> Result<(), Self> {
        if status == GNTST_okay {
            Ok(())
        } else {
            Err(Self::from_status(status))
        }
    }

    /// The `GNTST_*` value (`GNTST_general_error` for a failed hypercall).
    pub fn status(self) -> i16 {
        match self {
            Self::General | Self::Hypercall(_) => GNTST_general_error,
            Self::BadDomain => GNTST_bad_domain,
            Self::BadGntref => GNTST_bad_gntref,
            Self::BadHandle => GNTST_bad_handle,
            Self::BadVirtAddr => GNTST_bad_virt_addr,
            Self::BadDevAddr => GNTST_bad_dev_addr,
            Self::NoDeviceSpace => GNTST_no_device_space,
            Self::PermissionDenied => GNTST_permission_denied,
            Self::BadPage => GNTST_bad_page,
            Self::BadCopyArg => GNTST_bad_copy_arg,
            Self::AddressTooBig => GNTST_address_too_big,
            Self::Eagain => GNTST_eagain,
            Self::NoSpace => GNTST_no_space,
            Self::Unknown(s) => s,
        }
    }

    /// The errno to give user space (gntdev's ioctls and faults).
    ///
    /// | status | errno | why |
    /// |---|---|---|
    /// | general_error, unknown | `EIO` | nothing more precise is known |
    /// | bad_domain | `ESRCH` | "no such process": the peer does not exist |
    /// | bad_gntref, bad_handle, bad_copy_arg, address_too_big | `EINVAL` | a bad argument from the caller |
    /// | bad_virt_addr, bad_dev_addr, bad_page | `EFAULT` | a bad address |
    /// | permission_denied | `EACCES` | as `mmap(2)` when the protection asked exceeds what the object allows |
    /// | eagain | `EAGAIN` | transient; the caller may try again |
    /// | no_space, no_device_space | `ENOMEM` / `ENOSPC` | handles / IOMMU slots exhausted |
    /// | hypercall failed | its own errno | |
    pub fn errno(self) -> XenErrno {
        match self {
            Self::General | Self::Unknown(_) => XenErrno::EIO,
            Self::BadDomain => XenErrno::ESRCH,
            Self::BadGntref | Self::BadHandle | Self::BadCopyArg | Self::AddressTooBig => {
                XenErrno::EINVAL
            }
            Self::BadVirtAddr | Self::BadDevAddr | Self::BadPage => XenErrno::EFAULT,
            Self::PermissionDenied => XenErrno::EACCES,
            Self::Eagain => XenErrno::EAGAIN,
            Self::NoSpace => XenErrno::ENOMEM,
            Self::NoDeviceSpace => XenErrno::ENOSPC,
            Self::Hypercall(e) => e,
        }
    }
}

impl fmt::Display for GrantError {
    /// Xen's own text (`GNTTABOP_error_msgs`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Hypercall(e) => write!(f, "grant hypercall failed: errno {}", e.0),
            Self::Unknown(s) => write!(f, "unknown grant status {s}"),
            other => f.write_str(GNTTABOP_ERROR_MSGS[usize::from((-other.status()) as u16)]),
        }
    }
}
