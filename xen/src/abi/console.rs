//! The PV console ring (`io/console.h`).

/// `CONSOLEIO_write`: `console_io` writes to Xen's own console.
pub const CONSOLEIO_WRITE: u32 = 0;

/// Size of the guest-to-backend ring.
pub const OUT_RING_SIZE: usize = 2048;
/// Size of the backend-to-guest ring.
pub const IN_RING_SIZE: usize = 1024;

/// `struct xencons_interface`: the shared console page.
#[repr(C)]
pub struct XenconsInterface {
    /// Input bytes, written by the backend.
    pub input: [u8; IN_RING_SIZE],
    /// Output bytes, written by the guest.
    pub output: [u8; OUT_RING_SIZE],
    /// Input consumer index (guest).
    pub in_cons: u32,
    /// Input producer index (backend).
    pub in_prod: u32,
    /// Output consumer index (backend).
    pub out_cons: u32,
    /// Output producer index (guest).
    pub out_prod: u32,
}
