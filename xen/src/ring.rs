//! A byte ring shared with another domain (`io/ring.h`'s byte flavour):
//! the console and xenstore pages. Indices are free-running `u32`s; the
//! position in the buffer is `index % size` (size a power of two).
//!
//! Each side owns one index: the producer writes bytes, then (release)
//! moves `prod`; the consumer reads `prod` (acquire), the bytes, then
//! (release) moves `cons`. Accesses are volatile because the other side
//! is outside the program.

use core::ptr::NonNull;
use core::sync::atomic::{Ordering, fence};

/// One direction of a shared byte ring.
#[derive(Debug)]
pub(crate) struct ByteRing {
    buf: NonNull<u8>,
    size: u32,
    cons: NonNull<u32>,
    prod: NonNull<u32>,
}

impl ByteRing {
    /// A ring of `size` bytes at `buf` with indices at `cons` and `prod`.
    ///
    /// # Safety
    /// All three must be valid (read/write) for the life of the value,
    /// `size` a power of two, and only this value may act as the side(s)
    /// it is used for.
    pub(crate) unsafe fn new(buf: *mut u8, size: usize, cons: *mut u32, prod: *mut u32) -> Self {
        debug_assert!(size.is_power_of_two());
        // SAFETY: the caller passes valid, hence non-null, pointers.
        let (buf, cons, prod) = unsafe {
            (
                NonNull::new_unchecked(buf),
                NonNull::new_unchecked(cons),
                NonNull::new_unchecked(prod),
            )
        };
        Self {
            buf,
            size: size as u32,
            cons,
            prod,
        }
    }

    fn indices(&self) -> (u32, u32) {
        // SAFETY: valid for the value's life (see `new`).
        let v = unsafe { (self.cons.read_volatile(), self.prod.read_volatile()) };
        fence(Ordering::Acquire);
        v
    }

    /// Bytes waiting for the consumer. A peer that moved the indices more
    /// than `size` apart is clamped to `size`.
    pub(crate) fn used(&self) -> usize {
        let (c, p) = self.indices();
        (p.wrapping_sub(c).min(self.size)) as usize
    }

    /// Producer: copies as much of `bytes` as fits; returns the count.
    pub(crate) fn produce(&mut self, bytes: &[u8]) -> usize {
        let (c, p) = self.indices();
        let used = p.wrapping_sub(c).min(self.size);
        let n = ((self.size - used) as usize).min(bytes.len());
        for (i, &b) in bytes[..n].iter().enumerate() {
            let at = (p.wrapping_add(i as u32) & (self.size - 1)) as usize;
            // SAFETY: `at < size`, inside the buffer, in the free part only
            // the producer writes.
            unsafe { self.buf.add(at).write_volatile(b) };
        }
        // The bytes must be visible before the index moves.
        fence(Ordering::Release);
        // SAFETY: valid; we are the only producer.
        unsafe { self.prod.write_volatile(p.wrapping_add(n as u32)) };
        n
    }

    /// Consumer: copies up to `out.len()` waiting bytes; returns the count.
    pub(crate) fn consume(&mut self, out: &mut [u8]) -> usize {
        let n = self.peek(out);
        self.advance(n);
        n
    }

    /// Consumer: copies up to `out.len()` waiting bytes without consuming.
    pub(crate) fn peek(&self, out: &mut [u8]) -> usize {
        let (c, p) = self.indices();
        let n = (p.wrapping_sub(c).min(self.size) as usize).min(out.len());
        for (i, o) in out[..n].iter_mut().enumerate() {
            let at = (c.wrapping_add(i as u32) & (self.size - 1)) as usize;
            // SAFETY: `at < size`, in the part the producer published.
            *o = unsafe { self.buf.add(at).read_volatile() };
        }
        n
    }

    /// Consumer: drops `n` bytes (at most those waiting).
    pub(crate) fn advance(&mut self, n: usize) {
        let (c, _) = self.indices();
        // Our reads of the bytes complete before the producer may reuse them.
        fence(Ordering::Release);
        // SAFETY: valid; we are the only consumer.
        unsafe { self.cons.write_volatile(c.wrapping_add(n as u32)) };
    }
}
