//! Size classes and their slabs.
//!
//! A request of at most [`MAX_SMALL`] bytes is served from the smallest
//! class that holds its size and whose alignment (the largest power of
//! two dividing the class's size) is at least the request's; a request no
//! class fits takes a page run.
//!
//! A slab is one page of one class, carved into `PAGE_SIZE / size`
//! objects from its start (the rest of the page is waste). Its free
//! objects are linked through their first word (the offset of the next
//! free object in the page), the head in its side-table record
//! ([`SlabInfo`]). A class lists its partly used slabs; full slabs are on
//! no list; of its empty slabs it keeps one (`empty`) and gives the others
//! back to the page-run allocator at once, so that a class whose use goes
//! up and down by a few objects does not take and free a page each time.

use core::sync::atomic::{AtomicUsize, Ordering};

use spin::Mutex;

use crate::PAGE_SIZE;
use crate::cache::{DEPTH, Magazine};
use crate::pages::{Kind, NIL, Pages, Region};

/// The sizes of the classes, in bytes.
pub const CLASSES: [usize; COUNT] = [
    16, 32, 48, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384, 448, 512, 640, 768, 1024, 1344,
    2048,
];

/// The number of classes.
pub const COUNT: usize = 21;

/// The largest request a class serves; larger ones take page runs.
pub const MAX_SMALL: usize = CLASSES[COUNT - 1];

/// Every class size is a multiple of this.
const GRAIN: usize = 16;

/// The class of each size, by `(size - 1) / GRAIN`: the smallest class
/// at least that big.
static BY_SIZE: [u8; MAX_SMALL / GRAIN] = by_size();

const fn by_size() -> [u8; MAX_SMALL / GRAIN] {
    let mut t = [0; MAX_SMALL / GRAIN];
    let mut i = 0;
    let mut c = 0;
    while i < t.len() {
        while CLASSES[c] < (i + 1) * GRAIN {
            c += 1;
        }
        t[i] = c as u8;
        i += 1;
    }
    t
}

/// The alignment of each class's objects: slabs start on a page, so an
/// object is aligned to the largest power of two dividing the size.
static ALIGN: [usize; COUNT] = {
    let mut t = [0; COUNT];
    let mut c = 0;
    while c < COUNT {
        t[c] = CLASSES[c] & CLASSES[c].wrapping_neg();
        c += 1;
    }
    t
};

/// The class for `size` bytes aligned to `align` (a power of two), or
/// `None` if the request takes a page run.
#[inline]
pub(crate) fn class_for(size: usize, align: usize) -> Option<usize> {
    let c = *BY_SIZE.get(size.saturating_sub(1) / GRAIN)? as usize;
    if align <= GRAIN {
        // Every class is aligned to `GRAIN` at least.
        return Some(c);
    }
    (c..COUNT).find(|&c| align <= ALIGN[c])
}

/// Objects in one slab of class `c`.
const fn per_slab(c: usize) -> u16 {
    (PAGE_SIZE / CLASSES[c]) as u16
}

/// Bytes at the end of a slab of class `c` that hold no object.
pub(crate) const fn waste(c: usize) -> usize {
    PAGE_SIZE % CLASSES[c]
}

/// No free object: the end of a slab's free list.
const NO_OBJECT: u16 = u16::MAX;

/// A slab's record in the side table (the slab half of `PageMeta`).
#[derive(Clone, Copy)]
#[repr(C)]
pub(crate) struct SlabInfo {
    /// Objects handed out of the slab (to a cache or a caller).
    in_use: u16,
    /// Offset of the first free object in the page, or [`NO_OBJECT`].
    free: u16,
    /// The next slab on the class's partial list.
    next: u32,
    /// The previous slab on the class's partial list.
    prev: u32,
}

impl SlabInfo {
    /// The record of a page that is no slab.
    pub(crate) const NONE: SlabInfo = SlabInfo {
        in_use: 0,
        free: NO_OBJECT,
        next: NIL,
        prev: NIL,
    };
}

/// What a class's slabs need from the rest of the heap.
pub(crate) struct Backing<'a> {
    /// The region.
    pub region: &'a Region,
    /// The page-run allocator, for new slabs and empty ones.
    pub pages: &'a Mutex<Pages>,
    /// Bytes lost at the ends of slabs, all classes.
    pub waste: &'a AtomicUsize,
}

/// One class's shared state: its slabs.
pub(crate) struct Class {
    /// (k) The first partly used slab, or [`NIL`].
    partial: u32,
    /// (k) The empty slab kept, or [`NIL`].
    empty: u32,
    /// (k) Slabs of the class.
    slabs: u32,
    /// (k) Objects out of the slabs: in caches or handed out.
    out: usize,
}

/// A class's counts for a report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClassStats {
    /// The class's object size in bytes.
    pub size: usize,
    /// Slabs (pages) the class has.
    pub slabs: usize,
    /// Objects handed out to callers.
    pub in_use: usize,
    /// Free objects held in the CPUs' caches.
    pub cached: usize,
}

impl Class {
    /// A class with no slabs.
    pub(crate) const fn new() -> Self {
        Class {
            partial: NIL,
            empty: NIL,
            slabs: 0,
            out: 0,
        }
    }

    /// Slabs of the class, and objects out of them.
    pub(crate) fn counts(&self) -> (usize, usize) {
        (self.slabs as usize, self.out)
    }

    /// Moves up to `want` free objects of class `c` into `mag`, making
    /// slabs as needed; returns how many moved (fewer if the region has no
    /// free page for a new slab, or `mag` has no room for that many).
    pub(crate) fn take(&mut self, c: usize, b: &Backing, mag: &mut Magazine, want: usize) -> usize {
        let want = want.min(DEPTH - mag.len());
        let mut got = 0;
        while got < want {
            let s = if self.partial != NIL {
                self.partial
            } else if let Some(s) = self.refill_partial(c, b) {
                s
            } else {
                break;
            };
            let page = b.region.addr(s);
            // SAFETY: `s` is a slab of class `c` and `&mut self` is that
            // class's lock, which owns its record.
            let info = unsafe { &mut *b.region.slab(s) };
            while info.free != NO_OBJECT && got < want {
                let obj = page.wrapping_add(info.free as usize);
                // SAFETY: a free object of the slab holds the offset of
                // the next in its first word, 2-byte aligned as every
                // object is 16-byte aligned.
                info.free = unsafe { obj.cast::<u16>().read() };
                info.in_use += 1;
                // SAFETY: `want` is at most the magazine's room.
                unsafe { mag.push(obj) };
                got += 1;
            }
            if info.free == NO_OBJECT {
                self.unlink(b.region, s);
            }
        }
        self.out += got;
        got
    }

    /// Puts the objects `objs` of class `c` back into their slabs.
    pub(crate) fn put(&mut self, c: usize, b: &Backing, objs: &[*mut u8]) {
        for &obj in objs {
            let s = b.region.page_of(obj);
            // SAFETY: `obj` came out of a slab of class `c` (the heap's
            // contract), whose record `&mut self`, that class's lock, owns.
            let info = unsafe { &mut *b.region.slab(s) };
            // SAFETY: the object is free and ours; its first word links it.
            unsafe { obj.cast::<u16>().write(info.free) };
            let full = info.free == NO_OBJECT;
            info.free = (obj as usize - b.region.addr(s) as usize) as u16;
            info.in_use -= 1;
            let empty = info.in_use == 0;
            if full && !empty {
                self.link(b.region, s);
            } else if empty {
                if !full {
                    self.unlink(b.region, s);
                }
                if self.empty == NIL {
                    self.empty = s;
                } else {
                    self.free_slab(c, b, s);
                }
            }
        }
        self.out -= objs.len();
    }

    /// Gives the kept empty slab back to the page-run allocator.
    pub(crate) fn release_empty(&mut self, c: usize, b: &Backing) {
        if self.empty != NIL {
            self.free_slab(c, b, self.empty);
            self.empty = NIL;
        }
    }

    /// Puts a slab with free objects on the partial list, the kept empty
    /// one or a new one; returns it, or `None` if no page is free.
    fn refill_partial(&mut self, c: usize, b: &Backing) -> Option<u32> {
        let s = if self.empty != NIL {
            core::mem::replace(&mut self.empty, NIL)
        } else {
            let s = b.pages.lock().take(b.region, 1, PAGE_SIZE, Kind::Slab)?;
            self.slabs += 1;
            b.waste.fetch_add(waste(c), Ordering::Relaxed);
            let page = b.region.addr(s);
            let size = CLASSES[c] as u16;
            let n = per_slab(c);
            for i in 0..n {
                let next = if i + 1 == n {
                    NO_OBJECT
                } else {
                    (i + 1) * size
                };
                // SAFETY: the page is a new slab of ours; object `i` is
                // inside it and 16-byte aligned.
                unsafe {
                    page.wrapping_add((i * size) as usize)
                        .cast::<u16>()
                        .write(next)
                };
            }
            // SAFETY: the page became a slab of class `c` under its lock
            // (`&mut self`), which owns its record from now on.
            unsafe {
                b.region.slab(s).write(SlabInfo {
                    free: 0,
                    ..SlabInfo::NONE
                })
            };
            s
        };
        self.link(b.region, s);
        Some(s)
    }

    /// Frees the empty slab `s`'s page.
    fn free_slab(&mut self, c: usize, b: &Backing, s: u32) {
        self.slabs -= 1;
        b.waste.fetch_sub(waste(c), Ordering::Relaxed);
        b.pages.lock().release(b.region, s, 1);
    }

    /// Puts slab `s` first on the partial list.
    fn link(&mut self, r: &Region, s: u32) {
        // SAFETY: `s` and the list's slabs are this class's; `&mut self`
        // is its lock. One record is referenced at a time.
        unsafe {
            let info = &mut *r.slab(s);
            info.next = self.partial;
            info.prev = NIL;
            if self.partial != NIL {
                (*r.slab(self.partial)).prev = s;
            }
        }
        self.partial = s;
    }

    /// Takes slab `s` off the partial list.
    fn unlink(&mut self, r: &Region, s: u32) {
        // SAFETY: as in `link`.
        unsafe {
            let SlabInfo { next, prev, .. } = *r.slab(s);
            if prev == NIL {
                self.partial = next;
            } else {
                (*r.slab(prev)).next = next;
            }
            if next != NIL {
                (*r.slab(next)).prev = prev;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_grow_and_fill_the_table() {
        assert!(CLASSES.windows(2).all(|w| w[0] < w[1]));
        assert!(CLASSES.iter().all(|&s| s % GRAIN == 0));
        assert!(CLASSES.iter().all(|&s| s <= PAGE_SIZE / 2));
    }

    #[test]
    fn class_for_picks_the_smallest_that_fits() {
        for size in 0..=MAX_SMALL {
            let c = class_for(size, 1).unwrap();
            assert!(CLASSES[c] >= size);
            assert!(c == 0 || CLASSES[c - 1] < size.max(1));
        }
        assert_eq!(class_for(MAX_SMALL + 1, 1), None);
    }

    #[test]
    fn class_for_honours_alignment() {
        let cases = [
            (48, 16, Some(48)),
            (48, 32, Some(64)),
            (80, 64, Some(128)),
            (100, 64, Some(128)),
            (300, 128, Some(384)),
            (520, 256, Some(768)),
            (1100, 128, Some(2048)),
            (16, 2048, Some(2048)),
            (16, 4096, None),
        ];
        for (size, align, want) in cases {
            assert_eq!(
                class_for(size, align).map(|c| CLASSES[c]),
                want,
                "{size} aligned {align}"
            );
        }
    }
}
