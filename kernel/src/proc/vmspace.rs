//! A process's address space (FreeBSD's `struct vmspace`): the VM's
//! address map ([`vm::map::VmMap`]) over the x86 page tables
//! ([`crate::arch::pmap::Pmap`], which implements [`vm::pmap::Pmap`]).
//!
//! The system calls become map operations (`mmap` an insert after
//! `find_space`, `munmap` a [`VmMap::remove`], `mprotect` a
//! [`VmMap::protect`]) and user page faults, from user mode or from the
//! copy routines, go to [`vm::fault::vm_fault`].
//!
//! # Locking
//!
//! The map has its own lock, so a `VmSpace` is shared (`Arc`) and used
//! through `&self`; the process's `vm` mutex only guards the pointer and
//! is never held across a fault. That matters on our one vCPU: a fault may
//! wait for a busy page ([`crate::mem`]'s busy wait yields to the holder),
//! and the scheduler locks the process's `vm` to switch address spaces.

use alloc::sync::Arc;
use core::sync::atomic::{AtomicBool, Ordering};

use vm::fault::{FaultFlags, vm_fault};
use vm::map::{EntryFlags, Inheritance, KernResult, MapEntry, VmMap};
use vm::object::VmObject;
use vm::{Errno, Prot};

use crate::arch::pmap::{PAGE, Pmap, USER_END, USER_MIN};

/// Where mappings without a fixed address start looking.
pub const MMAP_BASE: u64 = 0x0000_1000_0000_0000;

/// Whether faults use the pager's populate (a test knob, `vm.populate`);
/// off, faults pass [`FaultFlags::NOPOPULATE`].
pub static POPULATE_ENABLED: AtomicBool = AtomicBool::new(true);

/// Searches for space one `mmap` makes before it gives up: each retry
/// means another thread took the space found.
const FIND_RETRIES: usize = 16;

/// What [`VmSpace::map`] maps.
#[derive(Clone)]
pub struct Mapping {
    /// Rights.
    pub prot: Prot,
    /// Rights `mprotect` may raise to.
    pub max_prot: Prot,
    /// The object and its page at the mapping's start; `None` for
    /// anonymous memory, whose default object the first fault makes.
    pub object: Option<(Arc<VmObject>, u64)>,
    /// A private mapping of `object`: copy-on-write, the shadow object
    /// made by the first write fault (`MAP_ENTRY_NEEDS_COPY`).
    pub private: bool,
}

/// An address space: the map and its page tables.
pub struct VmSpace {
    map: VmMap,
    /// The page tables.
    pub pmap: Arc<Pmap>,
}

/// The errno of a failed map operation.
pub fn errno(k: KernResult) -> Errno {
    k.to_errno().err().unwrap_or(Errno::EFAULT)
}

/// Bytes of `len` rounded up to pages; `EINVAL` for 0 or on overflow.
fn round(len: u64) -> Result<u64, Errno> {
    if len == 0 {
        return Err(Errno::EINVAL);
    }
    len.checked_next_multiple_of(PAGE).ok_or(Errno::EINVAL)
}

impl VmSpace {
    /// An empty address space.
    pub fn new() -> Result<Self, Errno> {
        Ok(Self {
            map: VmMap::new(crate::mem::domain().clone(), USER_MIN, USER_END),
            pmap: Pmap::new()?,
        })
    }

    /// Maps `len` bytes at `addr` (`mmap`): exactly there, replacing what
    /// was mapped, if `fixed`; else the first free range at or above it
    /// (and above [`MMAP_BASE`]), 2 MiB-aligned for a populate-capable
    /// object of at least 2 MiB ([`VmMap::find_space_for`]). Returns the
    /// address.
    pub fn map(&self, addr: u64, len: u64, fixed: bool, m: Mapping) -> Result<u64, Errno> {
        let size = round(len)?;
        let start = if fixed {
            if !addr.is_multiple_of(PAGE) {
                return Err(Errno::EINVAL);
            }
            crate::usercopy::check_range(addr, size).map_err(|_| Errno::EINVAL)?;
            // Check before the old mappings go.
            if !m.max_prot.contains(m.prot) {
                return Err(crate::syscall::errno::EACCES);
            }
            self.map
                .remove(&*self.pmap, addr, addr + size)
                .map_err(errno)?;
            addr
        } else {
            let hint = addr.max(MMAP_BASE) & !(PAGE - 1);
            // Another thread of the process may take the space between the
            // search and the insert: search again then.
            for _ in 0..FIND_RETRIES {
                let object = m.object.as_ref().map(|(o, _)| &**o);
                let start = self.map.find_space_for(object, size, hint).map_err(errno)?;
                match self.insert(start, size, m.clone()) {
                    Err(KernResult::NoSpace) => continue,
                    r => return r.map(|()| start).map_err(errno),
                }
            }
            return Err(Errno::ENOMEM);
        };
        self.insert(start, size, m).map_err(errno)?;
        Ok(start)
    }

    /// Enters the resident pages of the `[start, end)` ranges ahead of
    /// any fault, in one pmap batch (`vm::fault::prefault`, FreeBSD's
    /// `vm_map_pmap_enter`): exec's image, before any thread runs in the
    /// address space. Returns how many pages it entered.
    pub fn prefault(&self, ranges: &[(u64, u64)]) -> u64 {
        vm::fault::prefault(&self.map, &*self.pmap, ranges)
    }

    /// Maps `[start, start + size)` (page-aligned), which must be free:
    /// `NoSpace` if it overlaps a mapping.
    pub fn insert(&self, start: u64, size: u64, m: Mapping) -> Result<(), KernResult> {
        let (object, offset) = match m.object {
            Some((o, pindex)) => (
                Some(o),
                pindex
                    .checked_mul(PAGE)
                    .ok_or(KernResult::InvalidArgument)?,
            ),
            None => (None, 0),
        };
        let flags = if m.private && object.is_some() {
            EntryFlags::COW | EntryFlags::NEEDS_COPY
        } else {
            EntryFlags::empty()
        };
        self.map.insert(MapEntry {
            start,
            end: start.checked_add(size).ok_or(KernResult::InvalidArgument)?,
            object,
            offset,
            protection: m.prot,
            max_protection: m.max_prot,
            inheritance: Inheritance::default(),
            flags,
        })
    }

    /// Checks and page-aligns a range of user addresses.
    fn range(addr: u64, len: u64) -> Result<(u64, u64), Errno> {
        if !addr.is_multiple_of(PAGE) {
            return Err(Errno::EINVAL);
        }
        let end = addr.checked_add(round(len)?).ok_or(Errno::EINVAL)?;
        if addr < USER_MIN || end > USER_END {
            return Err(Errno::EINVAL);
        }
        Ok((addr, end))
    }

    /// Unmaps `[addr, addr + len)` (`munmap`); unmapped parts are fine.
    pub fn unmap(&self, addr: u64, len: u64) -> Result<(), Errno> {
        let (start, end) = Self::range(addr, len)?;
        self.map.remove(&*self.pmap, start, end).map_err(errno)
    }

    /// Changes the rights of `[addr, addr + len)` (`mprotect`): `ENOMEM` if
    /// part of it is not mapped, `EACCES` beyond a mapping's maximum.
    pub fn protect(&self, addr: u64, len: u64, prot: Prot) -> Result<(), Errno> {
        let (start, end) = Self::range(addr, len)?;
        self.map
            .protect(&*self.pmap, start, end, prot, false)
            .map_err(errno)
    }

    /// Unmaps everything (process exit). The page tables go with the pmap.
    pub fn clear(&self) {
        self.map
            .remove(&*self.pmap, USER_MIN, USER_END)
            .expect("the user range is valid");
    }

    /// Resolves a fault at `va` for `access` (`vm_fault`), with populate
    /// unless `vm.populate` is off.
    pub fn fault(&self, va: u64, access: Prot) -> Result<(), KernResult> {
        let flags = if POPULATE_ENABLED.load(Ordering::Relaxed) {
            FaultFlags::empty()
        } else {
            FaultFlags::NOPOPULATE
        };
        vm_fault(&self.map, &*self.pmap, va, access, flags).map(|_| ())
    }

    /// The entry mapping `va` (a copy).
    fn entry_at(&self, va: u64) -> Option<MapEntry> {
        self.map
            .entries()
            .into_iter()
            .find(|e| e.start <= va && va < e.end)
    }
}

/// For the running process: the map entry containing `va` - its object,
/// the byte offset in the object of the entry's first page, and the
/// entry's size in bytes (what `vm_map_lookup` finds). `None` outside a
/// process, where nothing is mapped, or for anonymous memory not yet
/// touched (it has no object yet). A private mapping reports the object
/// it maps until its first write, its shadow afterwards.
///
/// The calling process's pages of `[va, va + len)`, lent or held as
/// `sharing` says ([`vm::loan::share`]): gntdev's `GRANT_USER`.
pub fn share_current(
    va: u64,
    len: u64,
    sharing: vm::loan::Sharing,
) -> Result<vm::loan::UserPages, Errno> {
    let p = crate::proc::current().ok_or(Errno::EFAULT)?;
    p.with_vm(|vm| vm::loan::share(&vm.map, &*vm.pmap, va, len, sharing))
}

/// For drivers that identify a mapping by its address: gntdev's
/// `GET_OFFSET_FOR_VADDR` compares the object with its own and checks the
/// entry covers exactly one grant run.
pub fn lookup_object(va: u64) -> Option<(Arc<VmObject>, u64, u64)> {
    let p = crate::proc::current()?;
    let page = va & !(PAGE - 1);
    let e = p.with_vm(|vm| Ok(vm.entry_at(page))).ok().flatten()?;
    let object = e.object?;
    Some((object, e.offset, e.end - e.start))
}
