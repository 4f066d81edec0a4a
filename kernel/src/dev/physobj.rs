//! `/dev/physobj`: each open owns one phys-pager VM object (FreeBSD
//! `phys_pager.c`: anonymous, never paged out, populated 1024 pages at a
//! time), sized with [`PHYSOBJ_SET_SIZE`] and mapped with `mmap` at file
//! offsets inside it: shared mappings see one another's writes, private
//! ones are copy-on-write. The kernel's populate path is measured with it.

use alloc::sync::Arc;

use spin::Mutex;
use vm::object::{VmObject, offset_range_to_pages};
use vm::pager::phys::phys_pager_allocate;
use vm::{Errno, PAGE_SIZE, Prot};

use uapi::physobj::PHYSOBJ_SET_SIZE;

use super::{DevFile, DevMapping};

/// One open.
struct PhysObj {
    /// The object, once sized (its own lock).
    object: Mutex<Option<Arc<VmObject>>>,
}

/// Opens a new, unsized object.
pub fn open(_flags: u32) -> Result<Arc<dyn DevFile>, Errno> {
    Ok(Arc::new(PhysObj {
        object: Mutex::new(None),
    }))
}

impl DevFile for PhysObj {
    fn ioctl(&self, cmd: u32, data: &mut [u8]) -> Result<(), Errno> {
        match cmd {
            PHYSOBJ_SET_SIZE => {
                let pages = u64::from_le_bytes(data.try_into().map_err(|_| Errno::EINVAL)?);
                if pages == 0 || pages > crate::mem::phys().free_count() {
                    return Err(Errno::EINVAL);
                }
                let mut o = self.object.lock();
                if o.is_some() {
                    return Err(Errno::EBUSY);
                }
                *o = Some(phys_pager_allocate(crate::mem::domain().clone(), pages));
                Ok(())
            }
            _ => Err(crate::syscall::errno::ENOTTY),
        }
    }

    fn mmap_single(&self, offset: u64, size: u64, _prot: Prot) -> Result<DevMapping, Errno> {
        let object = self.object.lock().clone().ok_or(Errno::EINVAL)?;
        let (first, n) = offset_range_to_pages(offset, size).map_err(|_| Errno::EINVAL)?;
        let end = first.checked_add(n).ok_or(Errno::EINVAL)?;
        if end > object.lock().size() || !size.is_multiple_of(PAGE_SIZE) {
            return Err(Errno::EINVAL);
        }
        Ok(DevMapping {
            object,
            pindex: first,
            max_prot: Prot::all(),
        })
    }
}
