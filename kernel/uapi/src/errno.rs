//! Error numbers of the user ABI (Linux's values): a system call returns
//! `-errno` on failure. `vm::Errno` and the kernel's tables wrap these.

/// Operation not permitted.
pub const EPERM: i32 = 1;
/// No such file or directory (or xenstore node).
pub const ENOENT: i32 = 2;
/// I/O error.
pub const EIO: i32 = 5;
/// Interrupted system call.
pub const EINTR: i32 = 4;
/// Argument list too long.
pub const E2BIG: i32 = 7;
/// Bad file descriptor.
pub const EBADF: i32 = 9;
/// Try again.
pub const EAGAIN: i32 = 11;
/// Out of memory.
pub const ENOMEM: i32 = 12;
/// Permission denied.
pub const EACCES: i32 = 13;
/// Bad address.
pub const EFAULT: i32 = 14;
/// Device or resource busy.
pub const EBUSY: i32 = 16;
/// File exists.
pub const EEXIST: i32 = 17;
/// No such device (or operation not supported by it).
pub const ENODEV: i32 = 19;
/// Invalid argument.
pub const EINVAL: i32 = 22;
/// Too many open files.
pub const EMFILE: i32 = 24;
/// Not an ioctl of this device.
pub const ENOTTY: i32 = 25;
/// No space left.
pub const ENOSPC: i32 = 28;
/// Broken pipe: the peer closed.
pub const EPIPE: i32 = 32;
/// Result out of range.
pub const ERANGE: i32 = 34;
/// Name too long.
pub const ENAMETOOLONG: i32 = 36;
/// No such system call, or function not implemented.
pub const ENOSYS: i32 = 38;
/// Protocol error: the peer broke the protocol.
pub const EPROTO: i32 = 71;
/// Not connected: an event channel bound before the domain was restored
/// or migrated (its port is gone with the old domain).
pub const ENOTCONN: i32 = 107;
/// Connection timed out.
pub const ETIMEDOUT: i32 = 110;
