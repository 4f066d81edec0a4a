//! Everything that talks to the Xen hypervisor: ABI types, hypercalls and
//! the guest-side services built on them.
//!
//! Unsafe code lives here (and in the kernel's arch code) and nowhere else
//! in the project; each block carries a `// SAFETY:` comment. The ABI types
//! in [`abi`] are checked against Xen's own public headers by
//! `tests/abi_layout.rs`.
#![no_std]

pub mod abi;
pub mod console;
pub mod cpuid;
pub mod event_channel;
pub mod hvm;
pub mod hypercall;
pub mod sched;
