//! `/dev/xen/gntdev`: the `gntdev` crate's device over the kernel's
//! services. Each open is a [`gntdev::GntdevFile`]; the one
//! [`gntdev::Gntdev`] is made at the first open.
//!
//! The adapters: user memory through `usercopy` (the one checked path:
//! `EFAULT`), guest-physical memory through the identity map, pages from
//! the VM domain (zeroed, wired, in no object), holes from
//! `layout::alloc_hole`, the caller's map entries from
//! `proc::vmspace::lookup_object` and its pages (`GRANT_USER`) from
//! `proc::vmspace::share_current`, grant copies and the table from
//! `grants`, events from Xen. gntdev copies its ioctl structs itself, so
//! the device takes the raw argument pointer (`DevFile::ioctl_user`).
//!
//! Deferred grants (ended while the peer still mapped them) are reaped,
//! and failed unmaps retried (with gntdev's back-off), by the device's
//! reaper thread, started with the device: every `REAP_PERIOD_NS` while
//! any is pending, else every `REAP_IDLE_NS`
//! (and by [`reap`], e.g. before the counters are read); completed grants
//! that are not gntdev's go to `grants::route_reaped`.

use alloc::sync::Arc;
use alloc::vec::Vec;

use gntdev::{
    DomainIdentity, Errno, Gntdev, GntdevFile, GntdevStats, GrantCopier, HoleSource, MapEntry,
    MapLookup, PageSource, PhysMemory, Services, UserMemory,
};
use spin::Once;
use vm::Prot;
use vm::loan::{Sharing, UserPages};
use vm::page::{PageId, PageQueue};
use vm::phys::FreePool;
use xen::abi::DomId;
use xen::grant::{CopyOp, GrantError, GrantOps, Hole};

use super::{DevFile, DevMapping};
use crate::arch::pv_grant;
use crate::layout::{self, HoleRun, PAGE_SIZE};
use crate::{events, grants, mem, sched, usercopy};

/// How often the reaper retries deferred grants while any is pending.
const REAP_PERIOD_NS: u64 = 100_000_000;
/// How often the reaper looks when none is.
const REAP_IDLE_NS: u64 = 1_000_000_000;

/// The device, made at the first open.
static DEVICE: Once<Arc<Gntdev>> = Once::new();

/// User memory of the calling process, through `usercopy`.
struct User;

impl UserMemory for User {
    fn copy_in(&self, uaddr: u64, buf: &mut [u8]) -> Result<(), Errno> {
        usercopy::copyin(uaddr, buf)
    }

    fn copy_out(&self, uaddr: u64, buf: &[u8]) -> Result<(), Errno> {
        usercopy::copyout(buf, uaddr)
    }
}

/// Guest-physical memory through the boot identity map (RAM and the hole
/// both lie below 4 GiB).
struct Phys;

/// Checks that `[gpa, gpa + len)` lies within one page below 4 GiB.
fn one_page(gpa: u64, len: usize) -> Result<(), Errno> {
    let end = gpa.checked_add(len as u64).ok_or(Errno::EINVAL)?;
    if end > 1 << 32 || (len > 0 && gpa / PAGE_SIZE != (end - 1) / PAGE_SIZE) {
        return Err(Errno::EINVAL);
    }
    Ok(())
}

impl PhysMemory for Phys {
    fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), Errno> {
        one_page(gpa, buf.len())?;
        pv_grant::access(gpa, |src| {
            for (i, b) in buf.iter_mut().enumerate() {
                // SAFETY: the range is inside one page that gntdev owns (a
                // granted page or a mapped hole frame), mapped at `src`;
                // the peer may write it concurrently, so it is read with
                // volatile loads, never through a reference.
                *b = unsafe { src.add(i).read_volatile() };
            }
        })
    }

    fn write(&self, gpa: u64, bytes: &[u8]) -> Result<(), Errno> {
        one_page(gpa, bytes.len())?;
        pv_grant::access(gpa, |dst| {
            for (i, &b) in bytes.iter().enumerate() {
                // SAFETY: as in `read`, with volatile stores.
                unsafe { dst.add(i).write_volatile(b) };
            }
        })
    }
}

/// Zeroed, wired pages of the kernel's VM domain.
struct Pages;

impl PageSource for Pages {
    fn alloc_zeroed(&self) -> Result<PageId, Errno> {
        let d = mem::domain();
        let id = d.alloc_page(FreePool::Default).ok_or(Errno::ENOMEM)?;
        d.zero_page(id);
        d.wire(id);
        Ok(id)
    }

    fn free(&self, page: PageId) {
        // The last wiring of a page in no object frees it.
        if !mem::domain().unwire(page, PageQueue::None) {
            log::warn!("gntdev: a freed page is still referenced");
        }
    }
}

/// Holes of the guest-physical layout.
struct Holes;

impl HoleSource for Holes {
    fn alloc(&self, frames: u64, align: u64) -> Result<Hole, Errno> {
        let run = layout::alloc_hole_aligned(frames, align).map_err(|_| Errno::ENOMEM)?;
        // SAFETY: the run is unpopulated hole space that the allocator
        // handed to us alone; it returns there only in `free`, after the
        // `Hole` and every mapping in it are gone.
        Ok(unsafe { Hole::new(run.gfn, run.frames) })
    }

    fn free(&self, hole: Hole) {
        let run = HoleRun {
            gfn: hole.base_gfn(),
            frames: hole.frames(),
        };
        if layout::free_hole(run).is_err() {
            log::warn!("gntdev: hole at gfn {:#x} not freed", run.gfn);
        }
    }
}

/// Grant copies through the kernel's table.
struct Copier;

impl GrantCopier for Copier {
    fn copy(&self, ops: &[CopyOp]) -> Vec<Result<(), GrantError>> {
        // SAFETY: gntdev's local frames are its bounce pages: wired RAM in
        // no object that no Rust reference points to (`GrantCopier`'s
        // contract), so Xen may write them.
        unsafe { grants::table().copy(ops) }
    }
}

/// The calling process's map entries.
struct Maps;

impl MapLookup for Maps {
    fn lookup(&self, vaddr: u64) -> Option<MapEntry> {
        let (object, offset, size) = crate::proc::vmspace::lookup_object(vaddr)?;
        Some(MapEntry {
            object,
            offset,
            size,
        })
    }

    fn share(&self, vaddr: u64, len: u64, sharing: Sharing) -> Result<UserPages, Errno> {
        crate::proc::vmspace::share_current(vaddr, len, sharing)
    }
}

/// The domain's identity for the device: the id and the generation,
/// which a move changes (`crate::suspend`).
struct Identity;

impl DomainIdentity for Identity {
    fn domid(&self) -> Option<DomId> {
        crate::suspend::domid()
    }
    fn generation(&self) -> u64 {
        events::generation()
    }
}

/// The device, made (with its reaper thread) on first use.
fn device() -> &'static Arc<Gntdev> {
    DEVICE.call_once(|| {
        sched::spawn_kernel(reaper, 0, None);
        Gntdev::new(Services {
            vm: mem::domain().clone(),
            grants: grants::ops(),
            events: Arc::new(xen::event_channel::Xen),
            pages: Arc::new(Pages),
            holes: Arc::new(Holes),
            phys: Arc::new(Phys),
            copier: Arc::new(Copier),
            // One grant per page of RAM: what the heap is sized for
            // (`crate::heap`).
            max_grants: u64::from(mem::phys().page_count()),
            domain: Arc::new(Identity),
        })
    })
}

/// Reaps the device's deferred grants (when it exists) and routes the
/// completed grants that are not gntdev's to their owners.
pub fn reap() {
    if let Some(d) = DEVICE.get() {
        grants::route_reaped(d.reap());
    }
}

/// The reaper thread: retries the deferred grants until the peers that
/// mapped them let go (unmap, or their domain dies and Xen releases its
/// mappings), so that pages and references return without any program
/// using the device again.
extern "C" fn reaper(_: usize) -> ! {
    loop {
        reap();
        let s = stats();
        let period = if s.pending_grants != 0 || s.pending_unmaps != 0 {
            REAP_PERIOD_NS
        } else {
            REAP_IDLE_NS
        };
        sched::sleep_until(events::now_ns().saturating_add(period));
    }
}

/// The device's counters (zero before its first open). Under PV its map
/// and unmap hypercalls include the pmap's: a PV kernel maps gntdev's
/// grants in the page-table entries that map them (`arch::pv_grant`).
pub fn stats() -> GntdevStats {
    let mut s = DEVICE.get().map(|d| d.stats()).unwrap_or_default();
    let pv = crate::arch::pv_grant::stats();
    s.map_hypercalls += pv.map_calls;
    s.unmap_hypercalls += pv.unmap_calls;
    s
}

/// One open.
struct File(GntdevFile);

/// Opens the device.
pub fn open(_flags: u32) -> Result<Arc<dyn DevFile>, Errno> {
    Ok(Arc::new(File(device().open())))
}

impl DevFile for File {
    fn copies_ioctl_arg(&self) -> bool {
        true
    }

    fn ioctl_user(&self, cmd: u32, arg: u64) -> Result<(), Errno> {
        self.0.ioctl(&User, &Maps, cmd, arg).inspect_err(|e| {
            log::debug!("gntdev: ioctl {cmd:#x}: {e:?}");
        })
    }

    fn holds_foreign_maps(&self) -> bool {
        self.0.foreign_maps() != 0
    }

    fn mmap_single(&self, offset: u64, size: u64, prot: Prot) -> Result<DevMapping, Errno> {
        let m = self.0.mmap(offset, size, prot).inspect_err(|e| {
            log::debug!("gntdev: mmap of {size} bytes at offset {offset:#x}: {e:?}");
        })?;
        Ok(DevMapping {
            object: m.object,
            pindex: offset / PAGE_SIZE,
            max_prot: m.max_prot,
        })
    }
}

/// The grant table's live and pending references (for the scenarios'
/// baseline checks).
pub fn grant_refs() -> (u64, u64) {
    let s = grants::table().stats();
    (s.live_refs as u64, s.pending_refs as u64)
}
