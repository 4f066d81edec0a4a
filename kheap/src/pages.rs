//! The region's pages and the page-run allocator.
//!
//! The region is an array of 4 KiB pages; its first pages hold the side
//! table, one [`PageMeta`] per page of the region (its own pages
//! included). An entry has two halves with different owners: the run tag
//! ([`RunTag`], the pages lock) and the slab record
//! ([`SlabInfo`](crate::class::SlabInfo), the lock of the slab's class).
//!
//! Every page belongs to one block: the side table's own pages, a free
//! run, a slab (one page) or a large run. The first and the last page of
//! each block carry its tag (kind and length): boundary tags, so that a
//! run being freed finds in O(1) whether the block just before it (tag on
//! the page before) and the one just after it (tag on the page after) are
//! free, and merges with them. The tags of inner pages are stale and never
//! read.
//!
//! Free runs sit on one doubly linked list (links in the head tag), in no
//! order. Allocation is first fit over it, carving the block from the end
//! of the run (the front part stays on the list as it is); a one-page
//! request (a new slab) is thus O(1), a large one O(free runs).

use core::mem::size_of;
use core::ptr::NonNull;

use crate::PAGE_SIZE;
use crate::class::SlabInfo;

/// No page: the end of a list. Page 0 holds the side table, so it is
/// never on a list; and a heap with every list empty is all zeros (the
/// kernel's static heap costs the image no bytes).
pub(crate) const NIL: u32 = 0;

/// What a block of pages is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
pub(crate) enum Kind {
    /// The side table's pages.
    Meta,
    /// A free run, on the free list.
    Free,
    /// A slab: one page of one size class.
    Slab,
    /// A run handed out whole for a large allocation.
    Large,
}

/// The boundary tag of a block, on its first and last page.
#[derive(Clone, Copy, Debug)]
#[repr(C)]
pub(crate) struct RunTag {
    /// The block's kind.
    kind: Kind,
    /// Pages in the block.
    len: u32,
    /// Head tag of a free run: the next run on the free list.
    next: u32,
    /// Head tag of a free run: the previous run on the free list.
    prev: u32,
}

impl RunTag {
    /// The tag of a block of `len` pages of `kind`, off any list.
    const fn block(kind: Kind, len: u32) -> Self {
        RunTag {
            kind,
            len,
            next: NIL,
            prev: NIL,
        }
    }
}

/// One page's side-table entry.
#[repr(C)]
pub(crate) struct PageMeta {
    /// (p) The page's run tag.
    run: RunTag,
    /// (k) The page's slab record, while the page is a slab.
    slab: SlabInfo,
}

/// Where the region and its side table are; constant after `Heap::init`.
pub(crate) struct Region {
    /// The first page.
    base: NonNull<u8>,
    /// Pages in the region.
    pages: u32,
    /// Pages the side table takes, at the start.
    meta_pages: u32,
}

// SAFETY: a `Region` is constant; the memory it names is reached only
// under the locks the module docs give (the pages lock for run tags and
// free runs, a class lock for its slabs), whichever thread holds them.
unsafe impl Send for Region {}
// SAFETY: as for `Send`: shared reads of constant fields only.
unsafe impl Sync for Region {}

impl Region {
    /// Makes the pages of `base..base + len` a region: writes the side
    /// table into its first pages, every other page one large run (for
    /// [`Pages::init`] to free). `None` if it holds no page beyond the
    /// side table.
    ///
    /// # Safety
    ///
    /// `base..base + len` is writable memory that nothing else uses from
    /// now on.
    pub(crate) unsafe fn new(base: NonNull<u8>, len: usize) -> Option<Region> {
        let skip = base.as_ptr().align_offset(PAGE_SIZE);
        let pages = u32::try_from(len.checked_sub(skip)? / PAGE_SIZE).ok()?;
        let meta_pages = (pages as usize * size_of::<PageMeta>()).div_ceil(PAGE_SIZE) as u32;
        if meta_pages >= pages {
            return None;
        }
        // SAFETY: `skip < len` (checked above), so the first page is in
        // the caller's memory.
        let base = unsafe { base.add(skip) };
        let r = Region {
            base,
            pages,
            meta_pages,
        };
        for page in 0..pages {
            let kind = if page < meta_pages {
                Kind::Meta
            } else {
                Kind::Large
            };
            // SAFETY: entry `page` lies in the first `meta_pages` pages,
            // which are the caller's; the base is page-aligned, and an
            // entry's size is a multiple of its alignment.
            unsafe {
                r.meta(page).write(PageMeta {
                    run: RunTag::block(kind, 0),
                    slab: SlabInfo::NONE,
                })
            };
        }
        // The side table is one block, tagged on its last page.
        // SAFETY: `meta_pages - 1` is a page of the region; nothing else
        // can see the region yet.
        unsafe { r.set_tag(meta_pages - 1, RunTag::block(Kind::Meta, meta_pages)) };
        Some(r)
    }

    /// Bytes in the region.
    pub(crate) fn size(&self) -> usize {
        self.pages as usize * PAGE_SIZE
    }

    /// Bytes the side table takes.
    pub(crate) fn meta_bytes(&self) -> usize {
        self.meta_pages as usize * PAGE_SIZE
    }

    /// The first page's address, as a page number of the address space.
    fn base_frame(&self) -> usize {
        self.base.as_ptr() as usize / PAGE_SIZE
    }

    /// The address of page `page`.
    pub(crate) fn addr(&self, page: u32) -> *mut u8 {
        debug_assert!(page < self.pages);
        self.base.as_ptr().wrapping_add(page as usize * PAGE_SIZE)
    }

    /// The page that holds `p`, an address inside the region.
    pub(crate) fn page_of(&self, p: *mut u8) -> u32 {
        let off = (p as usize).wrapping_sub(self.base.as_ptr() as usize);
        debug_assert!(off < self.size(), "{p:p} is not in the heap");
        (off / PAGE_SIZE) as u32
    }

    /// Page `page`'s side-table entry.
    fn meta(&self, page: u32) -> *mut PageMeta {
        assert!(page < self.pages);
        self.base
            .as_ptr()
            .cast::<PageMeta>()
            .wrapping_add(page as usize)
    }

    /// Page `page`'s slab record: read and written only under the lock
    /// of the class whose slab the page is.
    pub(crate) fn slab(&self, page: u32) -> *mut SlabInfo {
        // SAFETY: `meta` checks that the entry is in the side table,
        // which `new` initialised; no reference is made.
        unsafe { &raw mut (*self.meta(page)).slab }
    }

    /// Page `page`'s run tag.
    ///
    /// # Safety
    ///
    /// The caller holds the pages lock (or is `new`).
    unsafe fn tag(&self, page: u32) -> RunTag {
        // SAFETY: the entry is in the initialised side table (`meta`
        // checks), and the caller holds the lock that serialises tags.
        unsafe { (*self.meta(page)).run }
    }

    /// Sets page `page`'s run tag.
    ///
    /// # Safety
    ///
    /// As for [`Region::tag`].
    unsafe fn set_tag(&self, page: u32, t: RunTag) {
        // SAFETY: as in `tag`; only the run half of the entry is written,
        // so a class lock holder using the slab half is not disturbed.
        unsafe { (&raw mut (*self.meta(page)).run).write(t) }
    }
}

/// The page-run allocator: the free runs of a region.
pub(crate) struct Pages {
    /// (p) The first free run on the list, or [`NIL`].
    head: u32,
    /// (p) Pages in free runs.
    free: u32,
}

impl Pages {
    /// No free runs, until [`Pages::init`].
    pub(crate) const fn new() -> Self {
        Pages { head: NIL, free: 0 }
    }

    /// Frees every page of `r` but the side table's. Called once, with the
    /// region from [`Region::new`].
    pub(crate) fn init(&mut self, r: &Region) {
        self.release(r, r.meta_pages, r.pages - r.meta_pages);
    }

    /// Pages in free runs.
    pub(crate) fn free_pages(&self) -> u32 {
        self.free
    }

    /// Takes `n` pages whose first address is a multiple of `align` (a
    /// power of two, at least [`PAGE_SIZE`]) and tags them `kind`: first
    /// fit, carved from the end of the first free run that holds them.
    /// Returns the first page.
    pub(crate) fn take(&mut self, r: &Region, n: u32, align: usize, kind: Kind) -> Option<u32> {
        debug_assert!(n > 0 && align.is_power_of_two() && align >= PAGE_SIZE);
        let mask = !(align / PAGE_SIZE - 1);
        let base = r.base_frame();
        let mut at = self.head;
        while at != NIL {
            // SAFETY: `&mut self` is the pages lock.
            let t = unsafe { r.tag(at) };
            if t.len >= n {
                // The highest aligned start that leaves room for `n`.
                let start = (base + (at + t.len - n) as usize) & mask;
                if start >= base + at as usize {
                    let start = (start - base) as u32;
                    self.carve(r, at, t.len, start, n, kind);
                    return Some(start);
                }
            }
            at = t.next;
        }
        None
    }

    /// Frees the `n` pages from `first`, merging them with the free runs
    /// on either side.
    pub(crate) fn release(&mut self, r: &Region, first: u32, n: u32) {
        let mut end = first + n;
        self.free += n;
        if end < r.pages {
            // SAFETY: `&mut self` is the pages lock.
            let next = unsafe { r.tag(end) };
            if next.kind == Kind::Free {
                self.unlink(r, end);
                end += next.len;
            }
        }
        // SAFETY: as above.
        let prev = unsafe { r.tag(first - 1) };
        if prev.kind == Kind::Free {
            // The run before stays on the list, grown.
            let head = first - prev.len;
            self.resize(r, head, end - head);
        } else {
            self.push(r, first, end - first);
        }
    }

    /// Cuts `start..start + n` out of the listed free run of `len` pages
    /// at `at`, and tags it `kind`.
    fn carve(&mut self, r: &Region, at: u32, len: u32, start: u32, n: u32, kind: Kind) {
        let end = at + len;
        if start == at {
            self.unlink(r, at);
        } else {
            self.resize(r, at, start - at);
        }
        if start + n < end {
            self.push(r, start + n, end - (start + n));
        }
        let t = RunTag::block(kind, n);
        // SAFETY: `&mut self` is the pages lock; tail first, so that the
        // head's tag wins for a one-page block.
        unsafe {
            r.set_tag(start + n - 1, t);
            r.set_tag(start, t);
        }
        self.free -= n;
    }

    /// Sets the length of the listed free run at `head` to `len`.
    fn resize(&mut self, r: &Region, head: u32, len: u32) {
        // SAFETY: `&mut self` is the pages lock.
        unsafe {
            let mut t = r.tag(head);
            t.len = len;
            r.set_tag(head, t);
            if len > 1 {
                r.set_tag(head + len - 1, RunTag::block(Kind::Free, len));
            }
        }
    }

    /// Tags `first..first + len` a free run and puts it first on the list.
    fn push(&mut self, r: &Region, first: u32, len: u32) {
        // SAFETY: `&mut self` is the pages lock.
        unsafe {
            if len > 1 {
                r.set_tag(first + len - 1, RunTag::block(Kind::Free, len));
            }
            r.set_tag(
                first,
                RunTag {
                    next: self.head,
                    ..RunTag::block(Kind::Free, len)
                },
            );
            if self.head != NIL {
                let mut h = r.tag(self.head);
                h.prev = first;
                r.set_tag(self.head, h);
            }
        }
        self.head = first;
    }

    /// Takes the free run at `head` off the list.
    fn unlink(&mut self, r: &Region, head: u32) {
        // SAFETY: `&mut self` is the pages lock.
        unsafe {
            let t = r.tag(head);
            if t.prev == NIL {
                self.head = t.next;
            } else {
                let mut p = r.tag(t.prev);
                p.next = t.next;
                r.set_tag(t.prev, p);
            }
            if t.next != NIL {
                let mut n = r.tag(t.next);
                n.prev = t.prev;
                r.set_tag(t.next, n);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::vec;
    use std::vec::Vec;

    use super::*;

    /// A region of `pages` pages (plus one for alignment) over `buf`.
    fn region(buf: &mut Vec<u8>) -> Region {
        let base = NonNull::new(buf.as_mut_ptr()).unwrap();
        // SAFETY: the buffer is ours and outlives the region in each test.
        unsafe { Region::new(base, buf.len()) }.unwrap()
    }

    /// A region over `buf`, its pages all free.
    fn fresh(buf: &mut Vec<u8>) -> (Region, Pages) {
        let r = region(buf);
        let mut p = Pages::new();
        p.init(&r);
        (r, p)
    }

    /// The free runs on the list, as (first, len), sorted.
    fn runs(p: &Pages, r: &Region) -> Vec<(u32, u32)> {
        let mut v = Vec::new();
        let mut at = p.head;
        while at != NIL {
            // SAFETY: the test owns `p`.
            let t = unsafe { r.tag(at) };
            assert_eq!(t.kind, Kind::Free);
            v.push((at, t.len));
            at = t.next;
        }
        v.sort();
        v
    }

    #[test]
    fn region_skips_unaligned_start_and_holds_its_table() {
        let mut buf = vec![0u8; 65 * PAGE_SIZE];
        let r = region(&mut buf);
        assert_eq!(r.base.as_ptr() as usize % PAGE_SIZE, 0);
        assert!(r.pages == 64 || r.pages == 65);
        assert_eq!(r.meta_pages, 1);
        let mut tiny = vec![0u8; PAGE_SIZE];
        let base = NonNull::new(tiny.as_mut_ptr()).unwrap();
        // SAFETY: the buffer is ours.
        assert!(unsafe { Region::new(base, tiny.len()) }.is_none());
    }

    #[test]
    fn runs_are_carved_from_the_end_and_merge_back() {
        let mut buf = vec![0u8; 65 * PAGE_SIZE];
        let (r, mut p) = fresh(&mut buf);
        let all = r.pages - 1;
        assert_eq!(runs(&p, &r), [(1, all)]);
        let a = p.take(&r, 3, PAGE_SIZE, Kind::Large).unwrap();
        assert_eq!(a, r.pages - 3);
        let b = p.take(&r, 1, PAGE_SIZE, Kind::Slab).unwrap();
        let c = p.take(&r, 2, PAGE_SIZE, Kind::Large).unwrap();
        assert_eq!((b, c), (a - 1, a - 3));
        assert_eq!(p.free_pages(), all - 6);
        // Free the middle, then the others: one run again.
        p.release(&r, b, 1);
        assert_eq!(runs(&p, &r), [(1, all - 6), (b, 1)]);
        p.release(&r, a, 3);
        assert_eq!(runs(&p, &r), [(1, all - 6), (b, 4)]);
        p.release(&r, c, 2);
        assert_eq!(runs(&p, &r), [(1, all)]);
        assert_eq!(p.free_pages(), all);
    }

    #[test]
    fn aligned_runs_leave_both_remainders_free() {
        // The region starts a page past a 16-page boundary, whatever the
        // buffer's address, so that the aligned run has pages below it.
        let mut buf = vec![0u8; (129 + 32) * PAGE_SIZE];
        let align = 16 * PAGE_SIZE;
        let skip =
            (buf.as_ptr() as usize).next_multiple_of(align) + PAGE_SIZE - buf.as_ptr() as usize;
        let base = NonNull::new(buf[skip..].as_mut_ptr()).unwrap();
        // SAFETY: the buffer is ours and outlives the region.
        let r = unsafe { Region::new(base, 129 * PAGE_SIZE) }.unwrap();
        let mut p = Pages::new();
        p.init(&r);
        let tail = p.take(&r, 1, PAGE_SIZE, Kind::Slab).unwrap();
        let a = p.take(&r, 2, 16 * PAGE_SIZE, Kind::Large).unwrap();
        assert_eq!(r.addr(a) as usize % (16 * PAGE_SIZE), 0);
        let free = runs(&p, &r);
        assert_eq!(free.len(), 2, "{free:?}");
        assert_eq!(free[1], (a + 2, tail - (a + 2)));
        assert_eq!(p.take(&r, r.pages, PAGE_SIZE, Kind::Large), None);
        p.release(&r, a, 2);
        p.release(&r, tail, 1);
        assert_eq!(runs(&p, &r), [(1, r.pages - 1)]);
    }
}
