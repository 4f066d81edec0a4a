//! Console output: the PV console ring and Xen's debug I/O port.
//!
//! The ring (`io/console.h`) is what xenconsoled reads into
//! `/var/log/xen/console/guest-NAME.log` and `xl console` shows. Port 0xE9
//! costs one VM exit per byte and ends up in Xen's own log (`xl dmesg`,
//! the serial line): good for early boot and crash dumps only.

use core::arch::asm;
use core::ptr::{addr_of, addr_of_mut};
use core::sync::atomic::{Ordering, fence};

use crate::abi::Port;
use crate::abi::console::{OUT_RING_SIZE, XenconsInterface};
use crate::{event_channel, sched};

/// Writes bytes to Xen's debug port 0xE9.
pub fn debug_port_write(bytes: &[u8]) {
    for &b in bytes {
        // SAFETY: port 0xE9 is Xen's HVM debug console; writing to it has
        // no effect on memory or on any device we drive.
        unsafe {
            asm!("out dx, al", in("dx") 0xe9u16, in("al") b, options(nomem, nostack, preserves_flags))
        };
    }
}

/// The guest side of the PV console ring.
pub struct ConsoleRing {
    ring: *mut XenconsInterface,
    port: Port,
}

// SAFETY: the ring is a page shared with the backend only; callers
// serialise writers (the kernel keeps the ring behind a lock).
unsafe impl Send for ConsoleRing {}

impl ConsoleRing {
    /// Wraps the console page mapped at `ring`, signalled through `port`.
    ///
    /// # Safety
    /// `ring` must point to the console page named by
    /// `HVM_PARAM_CONSOLE_PFN`, mapped writable for as long as this value
    /// lives, and only this value may produce on its output ring.
    pub unsafe fn new(ring: *mut XenconsInterface, port: Port) -> Self {
        Self { ring, port }
    }

    fn out_indices(&self) -> (u32, u32) {
        // SAFETY: `ring` is valid (see `new`); the backend updates
        // `out_cons` concurrently, so it is read volatile.
        unsafe {
            (
                addr_of!((*self.ring).out_cons).read_volatile(),
                addr_of!((*self.ring).out_prod).read_volatile(),
            )
        }
    }

    /// Tells the backend there is output. A failed send cannot be reported
    /// anywhere but this console; the backend still finds the bytes the next
    /// time it looks.
    fn kick(&self) {
        let _ = event_channel::send(self.port);
    }

    /// Writes all of `bytes`, waiting for the backend when the ring is full
    /// (no byte is dropped).
    pub fn write(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let (cons, prod) = self.out_indices();
            fence(Ordering::Acquire);
            let used = prod.wrapping_sub(cons) as usize;
            let space = OUT_RING_SIZE.saturating_sub(used);
            if space == 0 {
                // Full: kick the backend and let it run.
                self.kick();
                sched::yield_now();
                continue;
            }
            let n = space.min(bytes.len());
            for (i, &b) in bytes[..n].iter().enumerate() {
                let idx = (prod as usize + i) % OUT_RING_SIZE;
                // SAFETY: `idx` is inside the output array of the valid
                // ring, in the free part that only we write.
                unsafe { addr_of_mut!((*self.ring).output[idx]).write_volatile(b) };
            }
            // The bytes must be visible before the producer index moves.
            fence(Ordering::Release);
            // SAFETY: as above; we are the only producer.
            unsafe {
                addr_of_mut!((*self.ring).out_prod).write_volatile(prod.wrapping_add(n as u32))
            };
            self.kick();
            bytes = &bytes[n..];
        }
    }

    /// Waits until the backend has consumed everything written, giving up
    /// after `max_yields` scheduler yields. Returns whether the ring drained.
    /// Used before shutting down, so the last lines reach the log.
    pub fn flush(&mut self, max_yields: u32) -> bool {
        for _ in 0..max_yields {
            let (cons, prod) = self.out_indices();
            if cons == prod {
                return true;
            }
            self.kick();
            sched::yield_now();
        }
        false
    }
}
