//! Error numbers of the user ABI beyond those `vm::Errno` names, as
//! `vm::Errno`s (the values are `uapi::errno`'s).

use uapi::errno as e;
use vm::Errno;

/// Bad file descriptor.
pub const EBADF: Errno = Errno(e::EBADF);
/// Permission denied (rights beyond a mapping's maximum).
pub const EACCES: Errno = Errno(e::EACCES);
/// Operation not supported by the device.
pub const ENODEV: Errno = Errno(e::ENODEV);
/// Too many open files.
pub const EMFILE: Errno = Errno(e::EMFILE);
/// Not an ioctl of this device.
pub const ENOTTY: Errno = Errno(e::ENOTTY);
/// Path too long.
pub const ENAMETOOLONG: Errno = Errno(e::ENAMETOOLONG);
/// No such system call.
pub const ENOSYS: Errno = Errno(e::ENOSYS);
/// A blocking read's timeout passed (the evtchn and xenstore devices).
pub const ETIMEDOUT: Errno = Errno(e::ETIMEDOUT);
/// An event channel of the domain before a restore or migration.
pub const ENOTCONN: Errno = Errno(e::ENOTCONN);
/// Interrupted: the process is being killed.
pub const EINTR: Errno = Errno(e::EINTR);
