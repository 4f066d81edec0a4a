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

/// The objects one refill or drain of class `c`'s magazine moves.
pub(crate) fn batch(c: usize) -> usize {
    CAPACITY[c] / 2
}

/// A stack of free objects of one class.
pub(crate) struct Magazine {
    /// Objects held: `objs[..len]`.
    len: usize,
    /// The most objects it holds (its class's `CAPACITY`, at most
    /// [`DEPTH`]).
    cap: usize,
    /// The objects, last pushed on top.
    objs: [*mut u8; DEPTH],
}

// SAFETY: the pointers name free objects the magazine owns; moving the
// magazine to another thread moves that ownership with it.
unsafe impl Send for Magazine {}

impl Magazine {
    /// Empty magazines, one per class.
    const EMPTY: [Magazine; COUNT] = {
        let mut m = [const {
            Magazine {
                len: 0,
                cap: 0,
                objs: [null_mut(); DEPTH],
            }
        }; COUNT];
        let mut c = 0;
        while c < COUNT {
            m[c].cap = CAPACITY[c];
            c += 1;
        }
        m
    };

    /// Objects held.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Whether it holds all it may.
    #[inline]
    pub(crate) fn is_full(&self) -> bool {
        self.len == self.cap
    }

    /// Takes the object on top.
    #[inline]
    pub(crate) fn pop(&mut self) -> Option<*mut u8> {
        self.len = self.len.checked_sub(1)?;
        // SAFETY: `len` never exceeds `DEPTH` (`push`'s contract), and it
        // was just lowered.
        Some(unsafe { *self.objs.get_unchecked(self.len) })
    }

    /// Puts `obj` on top.
    ///
    /// # Safety
    ///
    /// The magazine holds fewer than [`DEPTH`] objects.
    #[inline]
    pub(crate) unsafe fn push(&mut self, obj: *mut u8) {
        debug_assert!(self.len < DEPTH);
        // SAFETY: `len` < `DEPTH` by the caller's contract.
        unsafe { *self.objs.get_unchecked_mut(self.len) = obj };
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
    /// (c) Bytes this CPU's magazines took from the slabs minus bytes they
    /// gave back (negative when it frees more blocks of other CPUs than
    /// it allocates): counted by the batch, not by the block, so that an
    /// allocation or a free served by the magazine writes nothing else.
    /// Written under `mags` by this CPU only, read by anyone.
    taken: AtomicIsize,
}

impl CpuCache {
    /// Empty magazines.
    pub(crate) const fn new() -> Self {
        CpuCache {
            mags: Mutex::new(Magazine::EMPTY),
            taken: AtomicIsize::new(0),
        }
    }

    /// Adds `n` objects of class `c` to the bytes taken from the slabs
    /// (negative: given back); the caller holds `mags`.
    #[inline]
    pub(crate) fn count(&self, c: usize, n: isize) {
        // Load and store, not an atomic add: only the holder of `mags`
        // writes the count.
        let t = self.taken.load(Ordering::Relaxed);
        self.taken
            .store(t + n * CLASSES[c] as isize, Ordering::Relaxed);
    }

    /// Bytes of this CPU's blocks in use: taken from the slabs and not in
    /// its magazines. Takes `mags`.
    pub(crate) fn in_use(&self) -> isize {
        let mags = self.mags.lock();
        let cached: usize = mags
            .iter()
            .zip(CLASSES)
            .map(|(m, size)| m.len() * size)
            .sum();
        self.taken.load(Ordering::Relaxed) - cached as isize
    }
}
