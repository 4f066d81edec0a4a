//! Which object holds each page: the `object` field of FreeBSD's
//! `vm_page`, kept beside the page array, so that contiguous reclaim
//! ([`crate::reclaim`]) can find the object of a page it wants to move.
//!
//! Every object has a slot in the domain's object table for its life
//! ([`VmObject`] registers at creation and leaves when dropped). A page's
//! owner word names the slot of the object it was last inserted in, and
//! whether that object's pages may be relocated (a default object). The
//! word is a hint: reclaim reads it without a lock, then checks under the
//! object lock that the page is still at its index in that object.
//!
//! # Locking
//!
//! | state | protection |
//! |---|---|
//! | a page's owner word | (o) written under the lock of the object that inserts the page; (a) read by anyone |
//! | the object table | `objects` spin lock, a leaf: taken when an object is created or dropped, and by reclaim to reach an object |

use alloc::boxed::Box;
use alloc::sync::{Arc, Weak};
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, Ordering};

use spin::Mutex;

use crate::object::VmObject;
use crate::page::PageId;

/// Owner word bit: the object's pages may be relocated.
const MOVABLE: u32 = 1 << 31;

/// The object table behind its lock.
#[derive(Default)]
struct ObjectTable {
    slots: Vec<Weak<VmObject>>,
    /// Slots of dropped objects, for reuse.
    free: Vec<u32>,
}

/// The owners of the pages of one domain.
pub struct PageOwners {
    /// (o) per page: the owner's slot, and `MOVABLE`.
    owner: Box<[AtomicU32]>,
    objects: Mutex<ObjectTable>,
}

impl core::fmt::Debug for PageOwners {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PageOwners")
            .field("pages", &self.owner.len())
            .finish_non_exhaustive()
    }
}

impl PageOwners {
    /// A table for the first `npages` pages of the page array (the real
    /// ones: fictitious pages are never relocated).
    pub fn new(npages: u32) -> Self {
        Self {
            owner: (0..npages).map(|_| AtomicU32::new(0)).collect(),
            objects: Mutex::new(ObjectTable::default()),
        }
    }

    /// Give `object` a slot, for its life.
    pub(crate) fn register(&self, object: Weak<VmObject>) -> u32 {
        let mut t = self.objects.lock();
        if let Some(slot) = t.free.pop() {
            t.slots[slot as usize] = object;
            return slot;
        }
        let slot = t.slots.len() as u32;
        assert!(slot < MOVABLE, "object table full");
        t.slots.push(object);
        slot
    }

    /// Give back the slot of a dropped object.
    pub(crate) fn unregister(&self, slot: u32) {
        let mut t = self.objects.lock();
        t.slots[slot as usize] = Weak::new();
        t.free.push(slot);
    }

    /// Record that page `id` is now in the object of `slot`; the caller
    /// holds that object's lock.
    pub(crate) fn set(&self, id: PageId, slot: u32, movable: bool) {
        if let Some(w) = self.owner.get(id as usize) {
            w.store(slot | if movable { MOVABLE } else { 0 }, Ordering::Relaxed);
        }
    }

    /// Whether the object page `id` was last inserted in lets its pages
    /// be relocated (a hint).
    pub fn movable(&self, id: PageId) -> bool {
        self.owner
            .get(id as usize)
            .is_some_and(|w| w.load(Ordering::Relaxed) & MOVABLE != 0)
    }

    /// The object page `id` was last inserted in, if it is still alive (a
    /// hint: check under its lock that it still holds the page).
    pub fn object(&self, id: PageId) -> Option<Arc<VmObject>> {
        let slot = self.owner.get(id as usize)?.load(Ordering::Relaxed) & !MOVABLE;
        self.objects.lock().slots.get(slot as usize)?.upgrade()
    }
}
