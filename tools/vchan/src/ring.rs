//! One ring of a vchan: free-running `u32` indexes in the shared page
//! (`cons` advanced by the reader, `prod` by the writer; position =
//! index & (size - 1)) and `size = 2^order` bytes of data, in the shared
//! page or in pages of its own.
//!
//! The peer can write both indexes and the data at any time, so they are
//! read with atomics and volatile loads only, every position is masked
//! into the ring, and a fill level above the size (indexes no writer and
//! reader could have produced) reads as "inconsistent": `None`, which the
//! stream turns into libxenvchan's answer (no data, no space).

use core::sync::atomic::{Ordering, fence};

use crate::shared::{CONS, PROD, Shared};

/// One ring.
pub(crate) struct Ring {
    /// The page holding the indexes.
    shared: Shared,
    /// Offset of this ring's `{cons, prod}` in it.
    idx: usize,
    /// The data.
    buf: *mut u8,
    /// `2^order` bytes of data.
    size: u32,
}

impl Ring {
    /// The ring whose indexes are at offset `idx` of `shared` and whose
    /// `2^order` data bytes are at `buf`.
    ///
    /// # Safety
    /// `buf` maps `2^order` bytes, readable (and writable if the ring is
    /// written through), for as long as the ring is used.
    pub(crate) unsafe fn new(shared: Shared, idx: usize, buf: *mut u8, order: u16) -> Self {
        Self {
            shared,
            idx,
            buf,
            size: 1 << order,
        }
    }

    /// Its size in bytes.
    pub(crate) fn size(&self) -> u32 {
        self.size
    }

    fn cons(&self) -> u32 {
        self.shared.u32_at(self.idx + CONS).load(Ordering::Acquire)
    }

    fn prod(&self) -> u32 {
        self.shared.u32_at(self.idx + PROD).load(Ordering::Acquire)
    }

    /// Bytes written and not yet read; `None` if the indexes say more
    /// than the ring holds.
    pub(crate) fn filled(&self) -> Option<u32> {
        let n = self.prod().wrapping_sub(self.cons());
        fence(Ordering::SeqCst);
        (n <= self.size).then_some(n)
    }

    /// Free bytes; `None` as [`filled`](Self::filled).
    pub(crate) fn space(&self) -> Option<u32> {
        self.filled().map(|n| self.size - n)
    }

    /// Copies `dst.len()` bytes (at most what [`filled`](Self::filled)
    /// said) out from `cons`, then advances it (libxenvchan's `do_recv`).
    pub(crate) fn read(&self, dst: &mut [u8]) {
        let cons = self.cons();
        fence(Ordering::Acquire);
        self.copy_out(cons, dst);
        fence(Ordering::SeqCst);
        self.shared
            .u32_at(self.idx + CONS)
            .store(cons.wrapping_add(dst.len() as u32), Ordering::Release);
    }

    /// Copies `src` (at most what [`space`](Self::space) said) in at
    /// `prod`, then advances it (libxenvchan's `do_send`).
    pub(crate) fn write(&self, src: &[u8]) {
        let prod = self.prod();
        fence(Ordering::SeqCst);
        self.copy_in(prod, src);
        fence(Ordering::Release);
        self.shared
            .u32_at(self.idx + PROD)
            .store(prod.wrapping_add(src.len() as u32), Ordering::Release);
    }

    /// The two pieces, offset and length, of `len` bytes from index `at`.
    fn pieces(&self, at: u32, len: usize) -> [(usize, usize); 2] {
        let pos = (at & (self.size - 1)) as usize;
        let len = len.min(self.size as usize);
        let first = len.min(self.size as usize - pos);
        [(pos, first), (0, len - first)]
    }

    fn copy_out(&self, at: u32, dst: &mut [u8]) {
        let mut done = 0;
        for (pos, len) in self.pieces(at, dst.len()) {
            // SAFETY: `pos + len <= size` (`pieces`), inside `buf` (`new`).
            unsafe { volatile_read(self.buf.add(pos), &mut dst[done..done + len]) };
            done += len;
        }
    }

    fn copy_in(&self, at: u32, src: &[u8]) {
        let mut done = 0;
        for (pos, len) in self.pieces(at, src.len()) {
            // SAFETY: as `copy_out`; the ring is writable (`new`).
            unsafe { volatile_write(self.buf.add(pos), &src[done..done + len]) };
            done += len;
        }
    }
}

/// Copies `dst.len()` bytes from `src` with volatile loads, 8 at a time
/// where `src` is aligned.
///
/// # Safety
/// `src..src + dst.len()` is mapped and readable.
unsafe fn volatile_read(src: *const u8, dst: &mut [u8]) {
    let n = dst.len();
    let head = src.align_offset(8).min(n);
    let mut i = 0;
    while i < n {
        if i >= head && i + 8 <= n {
            // SAFETY: inside the range (caller), aligned (`head`).
            let w = unsafe { src.add(i).cast::<u64>().read_volatile() };
            dst[i..i + 8].copy_from_slice(&w.to_ne_bytes());
            i += 8;
        } else {
            // SAFETY: inside the range.
            dst[i] = unsafe { src.add(i).read_volatile() };
            i += 1;
        }
    }
}

/// Copies `src` to `dst` with volatile stores, 8 at a time where `dst`
/// is aligned.
///
/// # Safety
/// `dst..dst + src.len()` is mapped and writable.
unsafe fn volatile_write(dst: *mut u8, src: &[u8]) {
    let n = src.len();
    let head = dst.align_offset(8).min(n);
    let mut i = 0;
    while i < n {
        if i >= head && i + 8 <= n {
            let w = u64::from_ne_bytes(src[i..i + 8].try_into().expect("8 bytes"));
            // SAFETY: inside the range (caller), aligned (`head`).
            unsafe { dst.add(i).cast::<u64>().write_volatile(w) };
            i += 8;
        } else {
            // SAFETY: inside the range.
            unsafe { dst.add(i).write_volatile(src[i]) };
            i += 1;
        }
    }
}
