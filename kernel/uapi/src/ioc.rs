//! ioctl numbers, as FreeBSD's `sys/sys/ioccom.h`: the direction, the
//! argument's size, a group letter and a number in one `u32`. Every
//! device of the kernel numbers its ioctls with these.

/// Bits of the size field (`IOCPARM_SHIFT`).
pub const IOCPARM_SHIFT: u32 = 13;
/// Mask of the size field (`IOCPARM_MASK`).
pub const IOCPARM_MASK: u32 = (1 << IOCPARM_SHIFT) - 1;
/// No parameters (`IOC_VOID`).
pub const IOC_VOID: u32 = 0x2000_0000;
/// Copy the parameters out to user space after the call (`IOC_OUT`).
pub const IOC_OUT: u32 = 0x4000_0000;
/// Copy the parameters in from user space before the call (`IOC_IN`).
pub const IOC_IN: u32 = 0x8000_0000;
/// Both directions (`IOC_INOUT`).
pub const IOC_INOUT: u32 = IOC_IN | IOC_OUT;
/// The direction bits (`IOC_DIRMASK`).
pub const IOC_DIRMASK: u32 = IOC_VOID | IOC_OUT | IOC_IN;

/// An ioctl number, as FreeBSD's `_IOC(inout, group, num, len)`.
pub const fn ioc(inout: u32, group: u8, num: u8, len: usize) -> u32 {
    inout | ((len as u32 & IOCPARM_MASK) << 16) | ((group as u32) << 8) | num as u32
}

/// `_IOW(group, num, T)`: the kernel reads a `T`.
pub const fn iow<T>(group: u8, num: u8) -> u32 {
    ioc(IOC_IN, group, num, core::mem::size_of::<T>())
}

/// `_IOWR(group, num, T)`: the kernel reads and writes back a `T`.
pub const fn iowr<T>(group: u8, num: u8) -> u32 {
    ioc(IOC_INOUT, group, num, core::mem::size_of::<T>())
}

/// The parameter size of ioctl `cmd` (`IOCPARM_LEN`).
pub const fn iocparm_len(cmd: u32) -> usize {
    ((cmd >> 16) & IOCPARM_MASK) as usize
}
