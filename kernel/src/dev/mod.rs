//! The device switch: the namespace `open` looks paths up in, and the
//! operations a device gives each open of it (FreeBSD's `cdevsw`).
//!
//! A device is a [`DevSw`]: a path and an `open` that returns the per-open
//! state, a [`DevFile`]. The system call layer does the user copies: `read`
//! and `write` get kernel buffers, `ioctl` gets the argument struct already
//! copied in (and copies it back out) by the size and direction encoded in
//! the command, as FreeBSD's `ioctl` does ([`uapi::ioc`]); a driver copies any
//! array the struct points to itself with `usercopy`. `mmap_single`
//! returns the VM object and page the mapping starts at, as FreeBSD's
//! `d_mmap_single`; the VM maps it and faults pages in through the
//! object's pager (populate first, if the object has `POPULATE`). `close`
//! runs when the last descriptor of the open goes; mappings made from it
//! keep their object alive past that.
//!
//! Extension: a device whose portable core copies its own ioctl arguments
//! (gntdev) says so with [`DevFile::copies_ioctl_arg`] and gets the raw
//! user pointer in [`DevFile::ioctl_user`]; the system call layer then
//! copies nothing.

mod evtchn;
mod gntdev;
mod physobj;
mod xenstore;

pub use gntdev::{grant_refs, reap as reap_gntdev, stats as gntdev_stats};

use alloc::sync::Arc;

use vm::object::VmObject;
use vm::{Errno, Prot};

use crate::syscall::errno;

/// What a mapping of a device maps.
pub struct DevMapping {
    /// The object.
    pub object: Arc<VmObject>,
    /// The object page at the mapping's start.
    pub pindex: u64,
    /// The most a mapping of it may ever allow: `mmap` caps the map
    /// entry's maximum protection with it, so `mprotect` cannot go
    /// beyond (e.g. gntdev's grants mapped read-only).
    pub max_prot: Prot,
}

/// The operations of one open of a device.
pub trait DevFile: Send + Sync {
    /// Reads into `buf`; returns the bytes read (0: end of file).
    fn read(&self, _buf: &mut [u8]) -> Result<usize, Errno> {
        Err(errno::ENODEV)
    }

    /// Writes `buf`; returns the bytes taken.
    fn write(&self, _buf: &[u8]) -> Result<usize, Errno> {
        Err(errno::ENODEV)
    }

    /// Runs ioctl `cmd` on `data`, its argument, already copied in if the
    /// command says `IN`, and copied out afterwards if it says `OUT`.
    fn ioctl(&self, _cmd: u32, _data: &mut [u8]) -> Result<(), Errno> {
        Err(errno::ENOTTY)
    }

    /// Whether this device copies its ioctl arguments itself: then the
    /// system call layer passes the raw user pointer to
    /// [`ioctl_user`](Self::ioctl_user) instead of copying the struct in
    /// and out around [`ioctl`](Self::ioctl) (a driver whose portable core
    /// does the copies through the checked path, as gntdev's).
    fn copies_ioctl_arg(&self) -> bool {
        false
    }

    /// Runs ioctl `cmd` with the user address `arg` of its argument, for a
    /// device whose [`copies_ioctl_arg`](Self::copies_ioctl_arg) is true.
    fn ioctl_user(&self, _cmd: u32, _arg: u64) -> Result<(), Errno> {
        Err(errno::ENOTTY)
    }

    /// The object and first page for a mapping of `size` bytes at `offset`
    /// with at most `prot`; `EINVAL` for a range outside the device.
    fn mmap_single(&self, _offset: u64, _size: u64, _prot: Prot) -> Result<DevMapping, Errno> {
        Err(errno::ENODEV)
    }

    /// The last descriptor of this open is gone.
    fn close(&self) {}

    /// Whether this open holds foreign grant mappings, which cannot
    /// survive a move of the domain (gntdev's `MAP_GRANT_REF` records).
    fn holds_foreign_maps(&self) -> bool {
        false
    }
}

/// A device in the namespace.
pub struct DevSw {
    /// Its path, e.g. `/dev/null`.
    pub path: &'static str,
    /// Makes the per-open state; `flags` are `open`'s.
    pub open: fn(flags: u32) -> Result<Arc<dyn DevFile>, Errno>,
}

/// Every device.
static DEVICES: &[DevSw] = &[
    DevSw {
        path: "/dev/console",
        open: |_| Ok(Arc::new(Console)),
    },
    DevSw {
        path: "/dev/null",
        open: |_| Ok(Arc::new(Null)),
    },
    DevSw {
        path: "/dev/zero",
        open: |_| Ok(Arc::new(Zero)),
    },
    DevSw {
        path: "/dev/physobj",
        open: physobj::open,
    },
    DevSw {
        path: "/dev/xen/gntdev",
        open: gntdev::open,
    },
    DevSw {
        path: "/dev/xen/xenstore",
        open: xenstore::open,
    },
    DevSw {
        path: "/dev/xen/evtchn",
        open: evtchn::open,
    },
];

/// An open file: a device's per-open state and the open mode.
pub struct File {
    /// The device's state.
    pub dev: Arc<dyn DevFile>,
    /// `open`'s flags.
    pub flags: u32,
}

impl Drop for File {
    fn drop(&mut self) {
        self.dev.close();
    }
}

/// Opens `path` (`ENOENT` when no device has it).
pub fn open(path: &str, flags: u32) -> Result<File, Errno> {
    let sw = DEVICES
        .iter()
        .find(|d| d.path == path)
        .ok_or(Errno::ENOENT)?;
    Ok(File {
        dev: (sw.open)(flags)?,
        flags,
    })
}

/// `/dev/console`: writes go to the console; reads see end of file.
struct Console;

impl DevFile for Console {
    fn read(&self, _buf: &mut [u8]) -> Result<usize, Errno> {
        Ok(0)
    }

    fn write(&self, buf: &[u8]) -> Result<usize, Errno> {
        crate::console::print(format_args!(
            "{}",
            alloc::string::String::from_utf8_lossy(buf)
        ));
        Ok(buf.len())
    }
}

/// `/dev/null`: writes vanish; reads see end of file.
struct Null;

impl DevFile for Null {
    fn read(&self, _buf: &mut [u8]) -> Result<usize, Errno> {
        Ok(0)
    }

    fn write(&self, buf: &[u8]) -> Result<usize, Errno> {
        Ok(buf.len())
    }
}

/// `/dev/zero`: reads see zeroes; writes vanish.
struct Zero;

impl DevFile for Zero {
    fn read(&self, buf: &mut [u8]) -> Result<usize, Errno> {
        buf.fill(0);
        Ok(buf.len())
    }

    fn write(&self, buf: &[u8]) -> Result<usize, Errno> {
        Ok(buf.len())
    }
}
