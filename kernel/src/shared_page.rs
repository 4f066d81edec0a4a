//! A page that another domain (or Xen) may read and write at any time: a
//! granted page, or a hole frame mapping a peer's grant. No Rust
//! reference ever points into it; every access is one volatile load or
//! store of a word (as the rings in `xen::ring` and gntdev's
//! `PhysMemory` do), so a concurrent write by the peer is never a data
//! race in the compiler's model and is seen by the next read.

use core::marker::PhantomData;

use crate::layout::PAGE_SIZE;

/// Words in a page.
pub const WORDS: usize = (PAGE_SIZE / 4) as usize;

/// The 1024 words of one identity-mapped page, borrowed for `'a` from
/// whatever keeps the page mapped (a `mem::Frame`, a foreign mapping).
#[derive(Debug)]
pub struct SharedPage<'a> {
    base: *mut u32,
    _owner: PhantomData<&'a ()>,
}

impl SharedPage<'_> {
    /// The page at guest-physical `gpa`.
    ///
    /// # Safety
    /// `gpa` must be page-aligned, below 4 GiB (identity-mapped) and hold
    /// RAM or a foreign mapping for as long as the value lives.
    pub unsafe fn new(gpa: u64) -> Self {
        debug_assert_eq!(gpa % PAGE_SIZE, 0);
        Self {
            base: gpa as *mut u32,
            _owner: PhantomData,
        }
    }

    /// Word `k` (panics unless `k < WORDS`).
    pub fn read(&self, k: usize) -> u32 {
        assert!(k < WORDS, "word {k} outside the page");
        // SAFETY: inside the page `new`'s caller keeps mapped; aligned.
        unsafe { self.base.add(k).read_volatile() }
    }

    /// Sets word `k` (panics unless `k < WORDS`).
    pub fn write(&self, k: usize, v: u32) {
        assert!(k < WORDS, "word {k} outside the page");
        // SAFETY: as in `read`.
        unsafe { self.base.add(k).write_volatile(v) }
    }
}
