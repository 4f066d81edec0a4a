//! Error numbers of the user ABI beyond those `vm::Errno` names (Linux
//! numbering, as `vm::Errno`'s).

use vm::Errno;

/// Bad file descriptor.
pub const EBADF: Errno = Errno(9);
/// Permission denied (rights beyond a mapping's maximum).
pub const EACCES: Errno = Errno(13);
/// Operation not supported by the device.
pub const ENODEV: Errno = Errno(19);
/// Too many open files.
pub const EMFILE: Errno = Errno(24);
/// Not an ioctl of this device.
pub const ENOTTY: Errno = Errno(25);
/// Path too long.
pub const ENAMETOOLONG: Errno = Errno(36);
/// No such system call.
pub const ENOSYS: Errno = Errno(38);
/// Interrupted: the process is being killed.
pub const EINTR: Errno = Errno(4);
/// A wait's timeout passed.
pub const ETIMEDOUT: Errno = Errno(110);
