//! A kernel heap over one region of memory: size classes served from
//! slabs, with per-CPU caches, in the shape of FreeBSD's UMA and Linux's
//! SLUB.
//!
//! - `pages`: the region is cut into 4 KiB pages, with a side table of
//!   one entry per page at its start; a page-run allocator (first fit
//!   over a list of free runs, boundary tags to merge them) hands out
//!   runs: one page for a slab, or the pages of a large block (more than
//!   [`MAX_SMALL`] bytes, or aligned more than any class), its alignment
//!   honoured.
//! - `class`: [`CLASSES`] sizes; each class has slabs of one page
//!   carved into objects, free objects linked through their first word,
//!   and finds a slab from an object's address through the side table.
//! - `cache`: each CPU has, for each class, a magazine of free objects,
//!   refilled and drained in batches from the class: an allocation or a
//!   free takes only the CPU's own lock in the common case.
//!
//! The caller says which CPU it runs on ([`Heap::alloc`]'s `cpu`), below
//! the `CPUS` the heap was made for; two threads may use the same index
//! (they then share its lock).
//!
//! # Memory
//!
//! A block counts as in use ([`Heap::in_use`]) for its class's size, or
//! its run's pages. [`Heap::free`] is what new blocks can still get: the
//! free pages, the free objects of slabs and those in the CPUs' caches
//! (taken back by [`Heap::reclaim`], which an allocation that finds no
//! free page calls before it fails). It leaves out the side table (about
//! 0.7% of the region) and the ends of slabs no object fits in. Each class
//! keeps at most one empty slab; [`Heap::reclaim`] frees those too.
//!
//! # Locking
//!
//! | state | protection |
//! |---|---|
//! | the region, the side table's place | (i) set once by [`Heap::init`] |
//! | a CPU's magazines | (c) the CPU's cache lock |
//! | a CPU's count of bytes taken from the slabs (by the batch) | (c) written under the CPU's cache lock; atomic for readers |
//! | a class's slab lists and counts, its slabs' side-table records and free objects | (k) the class's lock |
//! | the free runs, the side table's run tags | (p) the pages lock |
//! | bytes in large blocks, slab waste, the peak | (a) atomic |
//!
//! Lock order: (c) before (k) before (p). A thread holds at most one (c):
//! [`Heap::reclaim`], which takes every CPU's in turn, is called with
//! none held. The counts are read without locks, so a report made while
//! other CPUs allocate is not an exact snapshot. The peak is sampled when
//! an allocation reaches a class's or the pages' lock, so it can miss a
//! rise served from the caches alone (at most their contents).
#![no_std]

mod cache;
mod class;
mod pages;

use core::alloc::Layout;
use core::ptr::{NonNull, null_mut};
use core::sync::atomic::{AtomicUsize, Ordering};

use spin::{Mutex, Once};

use cache::{CpuCache, Magazine, batch};
use class::{Backing, Class, class_for};
use pages::{Kind, Pages, Region};

pub use class::{CLASSES, COUNT, ClassStats, MAX_SMALL};

/// The size of a page of the region.
pub const PAGE_SIZE: usize = 4096;

/// Why [`Heap::init`] refused a region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InitError {
    /// The heap already has a region.
    Again,
    /// The region holds no page beyond its side table (or more than
    /// `u32::MAX` pages).
    TooSmall,
}

/// The heap, for up to `CPUS` CPUs.
pub struct Heap<const CPUS: usize> {
    /// (i) The region.
    region: Once<Region>,
    /// (p) The page-run allocator.
    pages: Mutex<Pages>,
    /// (k) The classes' slabs.
    classes: [Mutex<Class>; COUNT],
    /// (c) The CPUs' caches.
    cpus: [CpuCache; CPUS],
    /// (a) Bytes in large blocks.
    large: AtomicUsize,
    /// (a) Bytes at the ends of slabs that hold no object.
    waste: AtomicUsize,
    /// (a) The most bytes in use seen.
    peak: AtomicUsize,
}

impl<const CPUS: usize> Default for Heap<CPUS> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const CPUS: usize> Heap<CPUS> {
    /// A heap with no memory until [`Heap::init`].
    pub const fn new() -> Self {
        Heap {
            region: Once::new(),
            pages: Mutex::new(Pages::new()),
            classes: [const { Mutex::new(Class::new()) }; COUNT],
            cpus: [const { CpuCache::new() }; CPUS],
            large: AtomicUsize::new(0),
            waste: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
        }
    }

    /// Gives the heap the whole pages of `base..base + len`.
    ///
    /// # Safety
    ///
    /// The memory is writable and nothing else uses it for as long as the
    /// heap lives. Called before any other thread uses the heap.
    pub unsafe fn init(&self, base: NonNull<u8>, len: usize) -> Result<(), InitError> {
        if self.region.is_completed() {
            return Err(InitError::Again);
        }
        // SAFETY: the caller gives us the memory.
        let r = unsafe { Region::new(base, len) }.ok_or(InitError::TooSmall)?;
        let r = self.region.call_once(|| r);
        self.pages.lock().init(r);
        Ok(())
    }

    /// A block for `layout` from CPU `cpu`'s caches (or a page run), or
    /// null if the heap has no room.
    ///
    /// # Panics
    ///
    /// If `cpu` is not below `CPUS`.
    #[inline]
    pub fn alloc(&self, cpu: usize, layout: Layout) -> *mut u8 {
        let cache = &self.cpus[cpu];
        let Some(c) = class_for(layout.size(), layout.align()) else {
            return self.alloc_large(layout);
        };
        let mut mags = cache.mags.lock();
        // SAFETY: `class_for` gives a class below `COUNT`.
        match unsafe { mags.get_unchecked_mut(c) }.pop() {
            Some(p) => p,
            None => {
                drop(mags);
                self.alloc_refill(cache, c)
            }
        }
    }

    /// Frees a block on CPU `cpu`.
    ///
    /// # Safety
    ///
    /// `ptr` came from [`Heap::alloc`] of this heap with this `layout`
    /// (on any CPU), and is not used after.
    ///
    /// # Panics
    ///
    /// If `cpu` is not below `CPUS`.
    #[inline]
    pub unsafe fn dealloc(&self, cpu: usize, ptr: *mut u8, layout: Layout) {
        let cache = &self.cpus[cpu];
        let Some(c) = class_for(layout.size(), layout.align()) else {
            return self.free_large(ptr, layout);
        };
        let mut mags = cache.mags.lock();
        // SAFETY: `class_for` gives a class below `COUNT`.
        let mag = unsafe { mags.get_unchecked_mut(c) };
        if mag.is_full() {
            self.drain(cache, c, mag);
        }
        // SAFETY: not full, and a magazine holds at most `DEPTH`.
        unsafe { mag.push(ptr) };
    }

    /// Gives the free objects of every CPU's caches back to their slabs,
    /// and every empty slab back to the page-run allocator. An allocation
    /// that finds no free page calls it before it gives up.
    pub fn reclaim(&self) {
        let Some(region) = self.region.get() else {
            return;
        };
        let b = self.backing_of(region);
        for cpu in &self.cpus {
            let mut mags = cpu.mags.lock();
            for (c, mag) in mags.iter_mut().enumerate() {
                let n = mag.len();
                if n > 0 {
                    self.classes[c].lock().put(c, &b, mag.bottom(n));
                    mag.drop_bottom(n);
                    cpu.count(c, -(n as isize));
                }
            }
        }
        for (c, class) in self.classes.iter().enumerate() {
            class.lock().release_empty(c, &b);
        }
    }

    /// Bytes in the region (its side table included).
    pub fn size(&self) -> usize {
        self.region.get().map_or(0, Region::size)
    }

    /// Bytes handed out now: each block at its class's size or its run's
    /// pages. Takes each CPU's cache lock in turn: not to be called with
    /// one held, nor where an allocation on this CPU could interrupt it.
    pub fn in_use(&self) -> usize {
        let small: isize = self.cpus.iter().map(CpuCache::in_use).sum();
        (self.large.load(Ordering::Relaxed) as isize + small).max(0) as usize
    }

    /// The most bytes in use seen (sampled: see the module's doc).
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::Relaxed)
    }

    /// Bytes new blocks can still get: free pages, and free objects in
    /// slabs and caches (see the module's doc).
    pub fn free(&self) -> usize {
        let Some(r) = self.region.get() else {
            return 0;
        };
        let used = r.meta_bytes() + self.waste.load(Ordering::Relaxed) + self.in_use();
        r.size().saturating_sub(used)
    }

    /// Bytes in free runs of pages: what a large block can come from (less
    /// what [`Heap::reclaim`] would free).
    pub fn free_pages(&self) -> usize {
        self.pages.lock().free_pages() as usize * PAGE_SIZE
    }

    /// The counts of each class, in the order of [`CLASSES`].
    pub fn class_stats(&self) -> [ClassStats; COUNT] {
        let mut s: [ClassStats; COUNT] = core::array::from_fn(|c| ClassStats {
            size: CLASSES[c],
            ..ClassStats::default()
        });
        for cpu in &self.cpus {
            let mags = cpu.mags.lock();
            for (s, mag) in s.iter_mut().zip(mags.iter()) {
                s.cached += mag.len();
            }
        }
        for (s, class) in s.iter_mut().zip(&self.classes) {
            let (slabs, out) = class.lock().counts();
            s.slabs = slabs;
            s.in_use = out.saturating_sub(s.cached);
        }
        s
    }

    /// An object of class `c` for a CPU whose magazine was empty: refills
    /// it, reclaiming cached objects and empty slabs if the region has no
    /// page for a new slab; null if even that finds none.
    #[cold]
    #[inline(never)]
    fn alloc_refill(&self, cache: &CpuCache, c: usize) -> *mut u8 {
        let Some(region) = self.region.get() else {
            return null_mut();
        };
        let b = self.backing_of(region);
        let refill = || {
            let mut mags = cache.mags.lock();
            let mag = &mut mags[c];
            if mag.len() == 0 {
                let got = self.classes[c].lock().take(c, &b, mag, batch(c));
                cache.count(c, got as isize);
            }
            mag.pop()
        };
        let Some(p) = refill().or_else(|| {
            self.reclaim();
            refill()
        }) else {
            return null_mut();
        };
        self.note_peak();
        p
    }

    /// Moves the bottom half of class `c`'s full magazine `mag` back to
    /// the class's slabs; the caller holds `cache`'s magazines.
    #[cold]
    #[inline(never)]
    fn drain(&self, cache: &CpuCache, c: usize, mag: &mut Magazine) {
        let n = batch(c);
        self.classes[c]
            .lock()
            .put(c, &self.backing(), mag.bottom(n));
        mag.drop_bottom(n);
        cache.count(c, -(n as isize));
    }

    /// A large block: a run of pages.
    #[inline(never)]
    fn alloc_large(&self, layout: Layout) -> *mut u8 {
        let Some(region) = self.region.get() else {
            return null_mut();
        };
        let Ok(n) = u32::try_from(layout.size().div_ceil(PAGE_SIZE)) else {
            return null_mut();
        };
        let align = layout.align().max(PAGE_SIZE);
        let take = || self.pages.lock().take(region, n, align, Kind::Large);
        let Some(first) = take().or_else(|| {
            self.reclaim();
            take()
        }) else {
            return null_mut();
        };
        self.large
            .fetch_add(n as usize * PAGE_SIZE, Ordering::Relaxed);
        self.note_peak();
        region.addr(first)
    }

    /// Frees a large block.
    #[inline(never)]
    fn free_large(&self, ptr: *mut u8, layout: Layout) {
        let Some(region) = self.region.get() else {
            return;
        };
        let n = layout.size().div_ceil(PAGE_SIZE);
        self.pages
            .lock()
            .release(region, region.page_of(ptr), n as u32);
        self.large.fetch_sub(n * PAGE_SIZE, Ordering::Relaxed);
    }

    /// Raises the peak to the bytes in use now.
    fn note_peak(&self) {
        self.peak.fetch_max(self.in_use(), Ordering::Relaxed);
    }

    /// What the classes need, once the heap has a region.
    fn backing(&self) -> Backing<'_> {
        self.backing_of(self.region.get().expect("a block freed before init"))
    }

    /// What the classes need, for `region`.
    fn backing_of<'a>(&'a self, region: &'a Region) -> Backing<'a> {
        Backing {
            region,
            pages: &self.pages,
            waste: &self.waste,
        }
    }
}
