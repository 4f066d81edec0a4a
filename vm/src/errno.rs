//! Error numbers.
//!
//! We use the Linux (and Xen public header) numbers: the guest's user ABI
//! and Xen's own `errno.h` agree on them, which FreeBSD's do not for
//! `EAGAIN` (35 there) and `ERESTART` (-1 there, kernel-internal).

use core::fmt;

/// An error number (positive, Linux numbering).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Errno(pub i32);

impl Errno {
    /// Operation not permitted.
    pub const EPERM: Self = Self(1);
    /// No such entry.
    pub const ENOENT: Self = Self(2);
    /// I/O error: the pager failed.
    pub const EIO: Self = Self(5);
    /// Try again: a transient shortage.
    pub const EAGAIN: Self = Self(11);
    /// Out of memory.
    pub const ENOMEM: Self = Self(12);
    /// Bad address: outside what the object or pager backs.
    pub const EFAULT: Self = Self(14);
    /// Resource busy.
    pub const EBUSY: Self = Self(16);
    /// Already exists.
    pub const EEXIST: Self = Self(17);
    /// Invalid argument.
    pub const EINVAL: Self = Self(22);
    /// Result out of range (offset arithmetic wrapped).
    pub const ERANGE: Self = Self(34);
    /// Restart the operation (Linux `ERESTART`).
    pub const ERESTART: Self = Self(85);

    /// The symbolic name, when known.
    pub const fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            1 => "EPERM",
            2 => "ENOENT",
            5 => "EIO",
            11 => "EAGAIN",
            12 => "ENOMEM",
            14 => "EFAULT",
            16 => "EBUSY",
            17 => "EEXIST",
            22 => "EINVAL",
            34 => "ERANGE",
            85 => "ERESTART",
            _ => return None,
        })
    }
}

impl fmt::Debug for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => f.write_str(n),
            None => write!(f, "Errno({})", self.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;

    #[test]
    fn debug_names() {
        assert_eq!(format!("{:?}", Errno::EAGAIN), "EAGAIN");
        assert_eq!(format!("{:?}", Errno(999)), "Errno(999)");
        assert_eq!(Errno::ERESTART.0, 85);
    }
}
