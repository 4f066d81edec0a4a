//! Console output and input: the PV console ring and Xen's debug I/O port.
//!
//! The ring (`io/console.h`) is what xenconsoled reads into
//! `/var/log/xen/console/guest-NAME.log` and `xl console` shows. Port 0xE9
//! costs one VM exit per byte and ends up in Xen's own log (`xl dmesg`,
//! the serial line): good for early boot and crash dumps only.
//!
//! [`ConsoleRings`] is the ring logic on any memory (host-tested);
//! [`ConsoleRing`] adds the event channel and waiting.

use core::arch::asm;
use core::ptr::addr_of_mut;

use crate::abi::Port;
use crate::abi::console::{IN_RING_SIZE, OUT_RING_SIZE, XenconsInterface};
use crate::ring::ByteRing;
use crate::{event_channel, sched};

/// Writes bytes to Xen's own console (`console_io`, `CONSOLEIO_write`),
/// which `xl dmesg` shows: for a PV guest before its console ring is
/// known (a PV guest has no port 0xE9).
pub fn hypervisor_write(bytes: &[u8]) {
    // SAFETY: the buffer is readable for its length during the call.
    unsafe {
        crate::hypercall::raw(
            crate::abi::op::CONSOLE_IO,
            u64::from(crate::abi::console::CONSOLEIO_WRITE),
            bytes.len() as u64,
            bytes.as_ptr() as u64,
            0,
            0,
        )
    };
}

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

/// The guest's two directions of a console page, without signalling.
#[derive(Debug)]
pub struct ConsoleRings {
    output: ByteRing,
    input: ByteRing,
}

// SAFETY: the page is shared with the backend only; the owner serialises
// access (`&mut self`).
unsafe impl Send for ConsoleRings {}

impl ConsoleRings {
    /// The rings of the console page at `page`.
    ///
    /// # Safety
    /// `page` must be valid for reads and writes for as long as this value
    /// lives, and only this value may produce output or consume input.
    pub unsafe fn new(page: *mut XenconsInterface) -> Self {
        // SAFETY: the caller guarantees `page`; the fields are inside it and
        // both sizes are powers of two.
        unsafe {
            Self {
                output: ByteRing::new(
                    addr_of_mut!((*page).output).cast(),
                    OUT_RING_SIZE,
                    addr_of_mut!((*page).out_cons),
                    addr_of_mut!((*page).out_prod),
                ),
                input: ByteRing::new(
                    addr_of_mut!((*page).input).cast(),
                    IN_RING_SIZE,
                    addr_of_mut!((*page).in_cons),
                    addr_of_mut!((*page).in_prod),
                ),
            }
        }
    }

    /// Queues as much of `bytes` as fits; returns the count.
    pub fn write_some(&mut self, bytes: &[u8]) -> usize {
        self.output.produce(bytes)
    }

    /// Takes up to `buf.len()` input bytes; returns the count (0: none).
    pub fn read(&mut self, buf: &mut [u8]) -> usize {
        self.input.consume(buf)
    }

    /// Input bytes waiting.
    pub fn input_pending(&self) -> usize {
        self.input.used()
    }

    /// Output bytes the backend has not consumed yet.
    pub fn output_pending(&self) -> usize {
        self.output.used()
    }
}

/// The guest side of the PV console ring.
pub struct ConsoleRing {
    rings: ConsoleRings,
    port: Port,
}

impl ConsoleRing {
    /// Wraps the console page mapped at `ring`, signalled through `port`.
    ///
    /// # Safety
    /// `ring` must point to the console page named by
    /// `HVM_PARAM_CONSOLE_PFN`, mapped writable for as long as this value
    /// lives, and only this value may produce on its output ring.
    pub unsafe fn new(ring: *mut XenconsInterface, port: Port) -> Self {
        Self {
            // SAFETY: forwarded to the caller's contract.
            rings: unsafe { ConsoleRings::new(ring) },
            port,
        }
    }

    /// Tells the backend there is output, or room for input. A failed send
    /// cannot be reported anywhere but this console; the backend still
    /// finds the bytes the next time it looks.
    fn kick(&self) {
        let _ = event_channel::send(self.port);
    }

    /// Writes all of `bytes`, waiting for the backend when the ring is full
    /// (no byte is dropped).
    pub fn write(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let n = self.rings.write_some(bytes);
            if n == 0 {
                // Full: kick the backend and let it run.
                self.kick();
                sched::yield_now();
                continue;
            }
            self.kick();
            bytes = &bytes[n..];
        }
    }

    /// Waits until the backend has consumed everything written, giving up
    /// after `max_yields` scheduler yields. Returns whether the ring drained.
    /// Used before shutting down, so the last lines reach the log.
    pub fn flush(&mut self, max_yields: u32) -> bool {
        for _ in 0..max_yields {
            if self.rings.output_pending() == 0 {
                return true;
            }
            self.kick();
            sched::yield_now();
        }
        false
    }

    /// Reads up to `buf.len()` typed bytes without waiting; 0 when none.
    /// The console's event channel fires when input arrives.
    pub fn read(&mut self, buf: &mut [u8]) -> usize {
        let n = self.rings.read(buf);
        if n > 0 {
            // The backend may wait for room.
            self.kick();
        }
        n
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::boxed::Box;
    use std::vec::Vec;

    use super::*;

    fn page() -> Box<XenconsInterface> {
        Box::new(XenconsInterface {
            input: [0; IN_RING_SIZE],
            output: [0; OUT_RING_SIZE],
            in_cons: 0,
            in_prod: 0,
            out_cons: 0,
            out_prod: 0,
        })
    }

    #[test]
    fn output_wraps_and_stops_when_full() {
        let mut p = page();
        // Start near the end, and near u32 wrap, to cross both.
        p.out_cons = u32::MAX - 10;
        p.out_prod = u32::MAX - 10;
        let raw: *mut XenconsInterface = &mut *p;
        // SAFETY: the box outlives the rings; the test plays the backend
        // through the same raw pointer only between calls.
        let mut r = unsafe { ConsoleRings::new(raw) };
        let data: Vec<u8> = (0..3000u32).map(|i| i as u8).collect();
        let n = r.write_some(&data);
        assert_eq!(n, OUT_RING_SIZE);
        assert_eq!(r.write_some(&data[n..]), 0, "full");
        assert_eq!(r.output_pending(), OUT_RING_SIZE);
        // The backend consumes 100 bytes, checking them.
        // SAFETY: no reference into the page is live.
        let (cons, prod) = unsafe { ((*raw).out_cons, (*raw).out_prod) };
        assert_eq!(prod.wrapping_sub(cons) as usize, OUT_RING_SIZE);
        for i in 0..100u32 {
            let at = (cons.wrapping_add(i) as usize) % OUT_RING_SIZE;
            // SAFETY: as above.
            assert_eq!(unsafe { (*raw).output[at] }, data[i as usize]);
        }
        // SAFETY: as above.
        unsafe { (*raw).out_cons = cons.wrapping_add(100) };
        assert_eq!(r.write_some(&data[n..]), 100);
    }

    #[test]
    fn input_wraps() {
        let mut p = page();
        p.in_cons = 1000;
        p.in_prod = 1000;
        let raw: *mut XenconsInterface = &mut *p;
        // SAFETY: as in the test above.
        let mut r = unsafe { ConsoleRings::new(raw) };
        let mut buf = [0u8; 64];
        assert_eq!(r.read(&mut buf), 0);
        // The backend types 50 bytes across the end of the 1024-byte ring.
        for i in 0..50u32 {
            // SAFETY: as above.
            unsafe { (*raw).input[(1000 + i) as usize % IN_RING_SIZE] = b'a' + (i % 26) as u8 };
        }
        // SAFETY: as above.
        unsafe { (*raw).in_prod = 1050 };
        assert_eq!(r.input_pending(), 50);
        assert_eq!(r.read(&mut buf[..30]), 30);
        assert_eq!(r.read(&mut buf[30..]), 20);
        assert!((0..50).all(|i| buf[i] == b'a' + (i % 26) as u8));
        // SAFETY: as above.
        assert_eq!(unsafe { (*raw).in_cons }, 1050);
    }
}
