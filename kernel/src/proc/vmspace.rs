//! A process's address space until `vm::map` (VmMap) and `vm::fault` land:
//! a sorted list of regions over VM objects, and the fault handler that
//! fills the pmap from them. Deliberately small and replaceable: regions
//! are FreeBSD map entries without the tree, and [`VmSpace::fault`]
//! follows `vm_fault` (populate first, then the shadow chain with
//! copy-on-write) for the object types we have.
//!
//! Locking: a `VmSpace` lives in its process's mutex (the map lock).

use alloc::collections::BTreeMap;
use alloc::sync::Arc;
use core::sync::atomic::{AtomicBool, Ordering};

use vm::grab::{GrabFlags, grab, grab_valid};
use vm::object::{ObjectFlags, VmObject};
use vm::page::{MemAttr, PageId};
use vm::pager::PagerResult;
use vm::{Errno, Prot};

use crate::arch::pmap::{LARGE, LARGE_PAGES, PAGE, Pmap, PmapFlags, USER_END, USER_MIN};

/// Where mappings without a fixed address start looking.
pub const MMAP_BASE: u64 = 0x0000_1000_0000_0000;

/// Whether faults use the pager's populate (a test knob, `vm.populate`).
pub static POPULATE_ENABLED: AtomicBool = AtomicBool::new(true);

/// A mapped range (a map entry).
#[derive(Clone)]
pub struct Region {
    /// One past the last byte.
    pub end: u64,
    /// Current rights.
    pub prot: Prot,
    /// Rights `mprotect` may raise to.
    pub max_prot: Prot,
    /// The object mapped; a shadow for a private mapping of another object.
    pub object: Arc<VmObject>,
    /// Page of the object at the region's start.
    pub pindex: u64,
}

/// What [`VmSpace::map`] maps.
pub struct Mapping {
    /// Rights.
    pub prot: Prot,
    /// Rights `mprotect` may raise to.
    pub max_prot: Prot,
    /// The object.
    pub object: Arc<VmObject>,
    /// Its page at the mapping's start.
    pub pindex: u64,
}

/// An address space: page tables and regions.
pub struct VmSpace {
    /// The page tables.
    pub pmap: Arc<Pmap>,
    /// Regions by start address; they never overlap.
    regions: BTreeMap<u64, Region>,
}

fn pages(len: u64) -> Result<u64, Errno> {
    if len == 0 {
        return Err(Errno::EINVAL);
    }
    Ok(len.checked_next_multiple_of(PAGE).ok_or(Errno::EINVAL)? / PAGE)
}

impl VmSpace {
    /// An empty address space.
    pub fn new() -> Result<Self, Errno> {
        Ok(Self {
            pmap: Pmap::new()?,
            regions: BTreeMap::new(),
        })
    }

    /// Maps `len` bytes of `m.object` from page `m.pindex` at `addr`
    /// (exactly there, replacing what was mapped, if `fixed`; else the
    /// first free range at or above it). Returns the address.
    pub fn map(&mut self, addr: u64, len: u64, fixed: bool, m: Mapping) -> Result<u64, Errno> {
        let Mapping {
            prot,
            max_prot,
            object,
            pindex,
        } = m;
        let size = pages(len)? * PAGE;
        if !max_prot.contains(prot) {
            return Err(crate::syscall::errno::EACCES);
        }
        let start = if fixed {
            if !addr.is_multiple_of(PAGE) {
                return Err(Errno::EINVAL);
            }
            crate::usercopy::check_range(addr, size).map_err(|_| Errno::EINVAL)?;
            self.unmap(addr, size)?;
            addr
        } else {
            self.find_space(addr.max(MMAP_BASE) & !(PAGE - 1), size)?
        };
        self.regions.insert(
            start,
            Region {
                end: start + size,
                prot,
                max_prot,
                object,
                pindex,
            },
        );
        Ok(start)
    }

    /// Whether anything is mapped in `[start, end)`.
    pub fn overlaps(&self, start: u64, end: u64) -> bool {
        self.regions
            .range(..end)
            .next_back()
            .is_some_and(|(_, r)| r.end > start)
    }

    fn find_space(&self, from: u64, size: u64) -> Result<u64, Errno> {
        let mut at = from;
        for (&s, r) in self.regions.range(..) {
            if r.end <= at {
                continue;
            }
            if s >= at + size {
                break;
            }
            at = r.end;
        }
        match at.checked_add(size) {
            Some(e) if e <= USER_END => Ok(at),
            _ => Err(Errno::ENOMEM),
        }
    }

    /// Splits the region containing `at` so that a region starts there.
    fn split(&mut self, at: u64) {
        let Some((&s, r)) = self.regions.range(..at).next_back() else {
            return;
        };
        if r.end <= at {
            return;
        }
        let mut right = r.clone();
        right.pindex += (at - s) / PAGE;
        self.regions.get_mut(&s).expect("found").end = at;
        self.regions.insert(at, right);
    }

    /// Checks and page-aligns a range of user addresses.
    fn range(addr: u64, len: u64) -> Result<(u64, u64), Errno> {
        if !addr.is_multiple_of(PAGE) {
            return Err(Errno::EINVAL);
        }
        let end = addr.checked_add(pages(len)? * PAGE).ok_or(Errno::EINVAL)?;
        if addr < USER_MIN || end > USER_END {
            return Err(Errno::EINVAL);
        }
        Ok((addr, end))
    }

    /// Unmaps `[addr, addr + len)` (`munmap`); unmapped parts are fine.
    pub fn unmap(&mut self, addr: u64, len: u64) -> Result<(), Errno> {
        let (start, end) = Self::range(addr, len)?;
        self.split(start);
        self.split(end);
        let doomed: alloc::vec::Vec<u64> =
            self.regions.range(start..end).map(|(&s, _)| s).collect();
        // Page tables first: the objects' pages must not be mapped when
        // the last reference to an object goes.
        self.pmap.remove(start, end);
        for s in doomed {
            self.regions.remove(&s);
        }
        Ok(())
    }

    /// Changes the rights of `[addr, addr + len)` (`mprotect`): `ENOMEM` if
    /// part of it is not mapped, `EACCES` beyond a region's maximum.
    pub fn protect(&mut self, addr: u64, len: u64, prot: Prot) -> Result<(), Errno> {
        let (start, end) = Self::range(addr, len)?;
        let mut at = start;
        for (&s, r) in self.regions.range(..end) {
            if r.end <= at {
                continue;
            }
            if s > at {
                return Err(Errno::ENOMEM);
            }
            if !r.max_prot.contains(prot) {
                return Err(crate::syscall::errno::EACCES);
            }
            at = r.end;
        }
        if at < end {
            return Err(Errno::ENOMEM);
        }
        self.split(start);
        self.split(end);
        for (_, r) in self.regions.range_mut(start..end) {
            r.prot = prot;
        }
        self.pmap.protect(start, end, prot);
        Ok(())
    }

    /// Unmaps everything.
    pub fn clear(&mut self) {
        self.pmap.remove(USER_MIN, USER_END);
        self.regions.clear();
    }

    /// Resolves a fault at `va` for `access` (`vm_fault`).
    pub fn fault(&self, va: u64, access: Prot) -> Result<(), Errno> {
        let va = va & !(PAGE - 1);
        let (&start, r) = self
            .regions
            .range(..=va)
            .next_back()
            .filter(|(_, r)| va < r.end)
            .ok_or(Errno::EFAULT)?;
        if !r.prot.contains(access) {
            return Err(Errno::EFAULT);
        }
        let obj = &r.object;
        let d = obj.domain();
        d.counters.faults.add(1);
        let pindex = r.pindex + (va - start) / PAGE;
        let populate = obj.lock().flags().contains(ObjectFlags::POPULATE)
            && obj.backing().is_none()
            && POPULATE_ENABLED.load(Ordering::Relaxed);
        if populate {
            let bounds = (r.pindex, r.pindex + (r.end - start) / PAGE - 1);
            match obj
                .pager()
                .populate(obj, pindex, access, r.max_prot, bounds)
            {
                Ok((first, last)) => return self.enter_run(start, r, first, last),
                Err(PagerResult::Bad) => {}
                Err(_) => return Err(Errno::EFAULT),
            }
        }
        let pager_err = |e: PagerResult| e.to_errno().err().unwrap_or(Errno::EFAULT);
        let Some((backing, offset)) = obj.backing() else {
            let id = grab_valid(obj, pindex, GrabFlags::empty())
                .map_err(pager_err)?
                .ok_or(Errno::EFAULT)?;
            return self.enter_busied(va, id, r.prot);
        };
        // A private mapping: our own copy if we made one, else the page of
        // the first object down the chain that has it (the last one pages
        // it in), copied on a write (`vm_fault`'s copy-on-write).
        if let Some(id) = grab(obj, pindex, GrabFlags::NOCREAT).map_err(|_| Errno::EFAULT)? {
            return self.enter_busied(va, id, r.prot);
        }
        let (mut src_obj, mut src_idx) = (backing, pindex + offset);
        while src_obj.lock().lookup(src_idx).is_none() {
            match src_obj.backing() {
                Some((b, off)) => {
                    src_idx += off;
                    src_obj = b;
                }
                None => break,
            }
        }
        let src = grab_valid(&src_obj, src_idx, GrabFlags::empty())
            .map_err(pager_err)?
            .ok_or(Errno::EFAULT)?;
        if !access.contains(Prot::WRITE) {
            return self.enter_busied(va, src, r.prot - Prot::WRITE);
        }
        let copy = grab(obj, pindex, GrabFlags::empty());
        let copy = match copy {
            Ok(Some(id)) => id,
            _ => {
                d.page(src).xunbusy(d.wait());
                return Err(Errno::ENOMEM);
            }
        };
        d.copy_page(src, copy);
        d.page(copy).set_all_valid();
        d.page(src).xunbusy(d.wait());
        self.enter_busied(va, copy, r.prot)
    }

    /// Maps the exclusively busied page `id` at `va` and unbusies it.
    fn enter_busied(&self, va: u64, id: PageId, prot: Prot) -> Result<(), Errno> {
        let d = crate::mem::domain();
        let m = d.page(id);
        let r = self.pmap.enter(va, id, m.phys_addr(), prot, flags_of(id));
        m.xunbusy(d.wait());
        r
    }

    /// Maps the busied pages `[first, last]` populate installed, 2 MiB at a
    /// time where an aligned run of 512 physically contiguous pages allows,
    /// and unbusies them (`vm_fault_populate`'s second half).
    fn enter_run(&self, start: u64, r: &Region, first: u64, last: u64) -> Result<(), Errno> {
        let d = r.object.domain();
        let ids: alloc::vec::Vec<PageId> = {
            let g = r.object.lock();
            (first..=last)
                .map(|p| g.lookup(p).expect("populated page is resident"))
                .collect()
        };
        let va_of = |p: u64| start + (p - r.pindex) * PAGE;
        let mut result = Ok(());
        let mut i = 0;
        while i < ids.len() {
            let va = va_of(first + i as u64);
            let pa = d.page(ids[i]).phys_addr();
            let run = ids.len() - i >= LARGE_PAGES as usize
                && va % LARGE == 0
                && pa.is_multiple_of(LARGE)
                && (1..LARGE_PAGES as usize)
                    .all(|k| d.page(ids[i + k]).phys_addr() == pa + k as u64 * PAGE);
            if run
                && result.is_ok()
                && self
                    .pmap
                    .enter_large(va, ids[i], pa, r.prot, flags_of(ids[i]))
                    == Ok(true)
            {
                i += LARGE_PAGES as usize;
                continue;
            }
            if result.is_ok() {
                result = self.pmap.enter(va, ids[i], pa, r.prot, flags_of(ids[i]));
            }
            i += 1;
        }
        for id in ids {
            d.page(id).xunbusy(d.wait());
        }
        result
    }
}

/// Pmap flags for page `id`: managed, uncached unless write-back.
fn flags_of(id: PageId) -> PmapFlags {
    let m = crate::mem::domain().page(id);
    let mut f = PmapFlags::MANAGED;
    if m.memattr() != MemAttr::WriteBack {
        f |= PmapFlags::UNCACHED;
    }
    f
}

// --- Stand-in until vm::map::VmMap lands (the w7 branch provides the real
// one with this exact signature; keep it small so the merge is trivial).

/// The map entry of the current process containing user address `va`:
/// its object, the byte offset in the object of the entry's first page,
/// and the entry's size in bytes (what `vm_map_lookup` finds; gntdev's
/// `GET_OFFSET_FOR_VADDR` uses it). `None` outside any entry or without a
/// current process.
pub fn lookup_object(va: u64) -> Option<(Arc<VmObject>, u64, u64)> {
    let p = crate::sched::current_process()?;
    p.with_vm(|vm| {
        let (&start, r) = vm
            .regions
            .range(..=va)
            .next_back()
            .filter(|(_, r)| va < r.end)
            .ok_or(Errno::EFAULT)?;
        Ok((r.object.clone(), r.pindex * PAGE, r.end - start))
    })
    .ok()
}
