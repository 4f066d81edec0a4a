//! Per-CPU caches: for each class, a magazine of free objects.
//!
//! A CPU allocates by popping its magazine and frees by pushing onto it.
//! An empty magazine is refilled, and a full one half drained, in one
//! batch of half its capacity, under the class's lock: the CPU takes a
//! shared lock once per batch, not per object (as FreeBSD UMA's buckets,
//! SLUB's per-CPU partial slabs). A block freed on another CPU than its
//! allocator's goes into the freeing CPU's magazine.
//!
//! A magazine holds at most [`DEPTH`] objects and at most about
//! [`MAG_BYTES`] (at least 4 objects), so one CPU's caches hold at most
//! about 75 KiB over all classes (counted as free: an allocation that
//! finds no free page takes them back first).

use core::ptr::null_mut;
use core::sync::atomic::{AtomicIsize, Ordering};

use spin::Mutex;

use crate::class::{CLASSES, COUNT};

/// The most objects a magazine holds.
pub(crate) const DEPTH: usize = 32;

/// The bytes a magazine is sized for.
const MAG_BYTES: usize = 4096;

/// The capacity of each class's magazines.
static CAPACITY: [usize; COUNT] = {
    let mut t = [0; COUNT];
    let mut c = 0;
    while c < COUNT {
        let n = MAG_BYTES / CLASSES[c];
        t[c] = if n < 4 {
            4
        } else if n > DEPTH {
            DEPTH
        } else {
            n
        };
        c += 1;
    }
    t
};

/// The capacity of class `c`'s magazines.
#[inline]
pub(crate) fn capacity(c: usize) -> usize {
    CAPACITY[c]
}

/// The objects one refill or drain of class `c`'s magazine moves.
pub(crate) fn batch(c: usize) -> usize {
    CAPACITY[c] / 2
}

/// A stack of free objects of one class.
pub(crate) struct Magazine {
    /// Objects held: `objs[..len]`.
    len: usize,
    /// The objects, last pushed on top.
    objs: [*mut u8; DEPTH],
}

// SAFETY: the pointers name free objects the magazine owns; moving the
// magazine to another thread moves that ownership with it.
unsafe impl Send for Magazine {}

impl Magazine {
    /// An empty magazine.
    const EMPTY: Magazine = Magazine {
        len: 0,
        objs: [null_mut(); DEPTH],
    };

    /// Objects held.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Takes the object on top.
    #[inline]
    pub(crate) fn pop(&mut self) -> Option<*mut u8> {
        self.len = self.len.checked_sub(1)?;
        Some(self.objs[self.len])
    }

    /// Puts `obj` on top; the magazine is below [`DEPTH`].
    #[inline]
    pub(crate) fn push(&mut self, obj: *mut u8) {
        self.objs[self.len] = obj;
        self.len += 1;
    }

    /// The `n` objects at the bottom (the coldest), for draining.
    pub(crate) fn bottom(&self, n: usize) -> &[*mut u8] {
        &self.objs[..n]
    }

    /// Forgets the `n` objects at the bottom, moving the rest down.
    pub(crate) fn drop_bottom(&mut self, n: usize) {
        self.objs.copy_within(n..self.len, 0);
        self.len -= n;
    }
}

/// One CPU's cache, on its own cache line.
#[repr(align(64))]
pub(crate) struct CpuCache {
    /// (c) The magazines, by class.
    pub(crate) mags: Mutex<[Magazine; COUNT]>,
    /// (c) Bytes this CPU handed out minus bytes it took back (negative
    /// when it frees more blocks of other CPUs than it allocates): written
    /// under `mags` by this CPU only, read by anyone.
    in_use: AtomicIsize,
}

impl CpuCache {
    /// Empty magazines.
    pub(crate) const fn new() -> Self {
        CpuCache {
            mags: Mutex::new([Magazine::EMPTY; COUNT]),
            in_use: AtomicIsize::new(0),
        }
    }

    /// Adds `bytes` to the CPU's count; the caller holds `mags`.
    #[inline]
    pub(crate) fn count(&self, bytes: isize) {
        // Load and store, not an atomic add: only the holder of `mags`
        // writes the count.
        let n = self.in_use.load(Ordering::Relaxed);
        self.in_use.store(n + bytes, Ordering::Relaxed);
    }

    /// The CPU's count.
    pub(crate) fn in_use(&self) -> isize {
        self.in_use.load(Ordering::Relaxed)
    }
}
