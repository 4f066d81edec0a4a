//! The grant device, `/dev/xen/gntdev`, after FreeBSD's
//! `sys/dev/xen/gntdev` with Linux's `GRANT_COPY` and `SET_MAX_GRANTS`.
//!
//! Portable and safe: the crate makes no hypercall and touches no memory
//! itself. It reaches Xen through [`xen::grant::GrantOps`] and
//! [`xen::event_channel::EventOps`], user memory through [`UserMemory`],
//! guest-physical memory through [`PhysMemory`], and the kernel's page and
//! hole allocators and address space through [`PageSource`],
//! [`HoleSource`] and [`MapLookup`]. The VM side is the `vm` crate's
//! managed device pager: an `mmap` returns a [`vm::object::VmObject`] with
//! `POPULATE`, whose first fault maps every grant of the region with ONE
//! batched map and installs the whole region.
//!
//! | module | what |
//! |---|---|
//! | [`abi`] | ioctl numbers and structs (FreeBSD `sys/xen/gntdev.h`, plus `GRANT_COPY`, `SET_MAX_GRANTS` and our `GRANT_USER`), from `uapi::gntdev` |
//! | [`device`] | [`Gntdev`] (one per kernel: services, deferred grants, counters) and [`GntdevFile`] (one per open) |
//! | `extent` | the first-fit allocator of file offsets (private) |
//! | `pager` | the managed device pagers of mapped and allocated grants (private) |
//! | `copy` | `GRANT_COPY` (private) |
//! | `unmap` | batched unmaps, and the retry of those that failed (private) |
//!
//! Entry points for the kernel: [`Gntdev::new`], [`Gntdev::open`],
//! [`GntdevFile::ioctl`], [`GntdevFile::mmap`] (munmap is dropping the
//! object it returned; close is dropping the file), [`Gntdev::reap`].
#![no_std]
#![deny(unsafe_code)]

extern crate alloc;

/// The device's user ABI, defined once in `uapi` (its ioctl structs and
/// numbers, and the ioctl numbering they are built with).
pub mod abi {
    pub use uapi::gntdev::*;
    pub use uapi::ioc::*;
}
mod copy;
pub mod device;
mod extent;
mod pager;
mod unmap;

use alloc::sync::Arc;

use alloc::vec::Vec;
pub use device::{DeviceMapping, DomainIdentity, Gntdev, GntdevFile, GntdevStats, Services};
pub use vm::Errno;
use vm::loan::{Sharing, UserPages};
use vm::object::VmObject;
use vm::page::PageId;
use xen::grant::{CopyOp, GrantError, Hole};

/// Error numbers this crate returns beyond [`vm::Errno`]'s (Linux numbers,
/// as there).
pub mod errno {
    use vm::Errno;

    /// Argument list too long: a limit above the maximum.
    pub const E2BIG: Errno = Errno(7);
    /// Permission denied: a writable `mmap` of a region mapped read-only.
    pub const EACCES: Errno = Errno(13);
    /// No space left: the offset space or the per-open grant limit.
    pub const ENOSPC: Errno = Errno(28);
    /// Function not implemented: an unknown ioctl.
    pub const ENOSYS: Errno = Errno(38);
}

/// User memory of the calling process, through the kernel's one checked
/// copy path (`copyin`/`copyout`). Both fail with `EFAULT` on any address
/// that is not user memory mapped with the needed access: null, unmapped,
/// kernel addresses, or a range that wraps.
pub trait UserMemory {
    /// Copies `buf.len()` bytes from user address `uaddr` (`copyin`).
    fn copy_in(&self, uaddr: u64, buf: &mut [u8]) -> Result<(), Errno>;
    /// Copies `buf` to user address `uaddr` (`copyout`).
    fn copy_out(&self, uaddr: u64, buf: &[u8]) -> Result<(), Errno>;
}

/// Guest-physical memory, within one page per call (the kernel's direct
/// map, `pmap_quick_enter_page`). Used for the notify byte and the bounce
/// pages of `GRANT_COPY`; the address may be a hole frame that holds a
/// foreign mapping.
pub trait PhysMemory: Send + Sync {
    /// Reads `buf.len()` bytes at `gpa`.
    fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), Errno>;
    /// Writes `bytes` at `gpa`.
    fn write(&self, gpa: u64, bytes: &[u8]) -> Result<(), Errno>;
}

/// Pages of our own RAM to grant (the kernel: `vm::phys` through its
/// [`vm::domain::VmDomain`], `VM_ALLOC_WIRED | VM_ALLOC_ZERO`).
pub trait PageSource: Send + Sync {
    /// A zeroed page, wired once, in no object. `ENOMEM` when none is left.
    fn alloc_zeroed(&self) -> Result<PageId, Errno>;
    /// Gives back a page from [`alloc_zeroed`](Self::alloc_zeroed), in no
    /// object any more, unwiring it.
    fn free(&self, page: PageId);
}

/// Ranges of unpopulated guest-physical frames for foreign mappings
/// (FreeBSD's `xenmem_alloc`).
pub trait HoleSource: Send + Sync {
    /// A hole of `frames` frames whose first frame number is a multiple
    /// of `align` (a power of two). `ENOMEM` when the space is exhausted.
    fn alloc(&self, frames: u64, align: u64) -> Result<Hole, Errno>;
    /// Gives a hole back; nothing is mapped in it any more.
    fn free(&self, hole: Hole);
}

/// Grant copies (`GNTTABOP_copy`) whose [`xen::grant::CopySide::Local`] frames are
/// only ever gntdev's bounce pages from its [`PageSource`]: wired RAM in
/// no object, which no Rust reference points to (the crate reaches it
/// through [`PhysMemory`] only, never during a copy). The kernel
/// implements it with [`xen::grant::GrantOps::copy`], whose safety
/// condition that contract meets; the adapter keeps `unsafe` out of this
/// crate.
pub trait GrantCopier: Send + Sync {
    /// Copies a batch with one hypercall (plus `GNTST_eagain` retries);
    /// the result of op `i` is at index `i`.
    fn copy(&self, ops: &[CopyOp]) -> Vec<Result<(), GrantError>>;
}

/// The entry of the calling process's address space containing an address
/// (what `vm_map_lookup` finds), for `GET_OFFSET_FOR_VADDR`.
#[derive(Clone, Debug)]
pub struct MapEntry {
    /// The object the entry maps.
    pub object: Arc<VmObject>,
    /// Byte offset in the object of the entry's first page.
    pub offset: u64,
    /// Size of the entry in bytes.
    pub size: u64,
}

/// The calling process's address space (the kernel: its `vm_map`).
pub trait MapLookup {
    /// The entry containing `vaddr`, if any.
    fn lookup(&self, vaddr: u64) -> Option<MapEntry>;
    /// The pages of `[vaddr, vaddr + len)`, lent or held as `sharing`
    /// says, for `GRANT_USER` ([`vm::loan::share`] on the process's map
    /// and pmap, with its errors).
    fn share(&self, vaddr: u64, len: u64, sharing: Sharing) -> Result<UserPages, Errno>;
}
