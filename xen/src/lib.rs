//! Everything that talks to the Xen hypervisor: ABI types, hypercalls and
//! the guest-side services built on them.
//!
//! Unsafe code lives here (and in the kernel's arch code) and nowhere else
//! in the project; each block carries a `// SAFETY:` comment. The ABI types
//! in [`abi`] are checked against Xen's own public headers by
//! `tests/abi_layout.rs`.
//!
//! The services are written over traits or plain memory so that host tests
//! run them: [`grant::GrantTable`] over [`grant::GrantHypercalls`],
//! [`event_channel::EventChannels`] over a [`abi::shared_info::SharedInfo`],
//! [`xenstore::Xenstore`] and the console over their ring pages, and the
//! simulated hypervisor `sim` (feature `sim`) behind the same traits.
//!
//! Features: `alloc` builds the services that need a heap ([`grant`],
//! [`xenstore`], [`event_channel::EventChannels`]); `sim` (implies `alloc`)
//! adds the simulated hypervisor. The ABI, the hypercall wrappers and the
//! console need neither.
#![no_std]

#[cfg(any(test, feature = "alloc"))]
extern crate alloc;

pub mod abi;
pub mod console;
pub mod control;
pub mod cpuid;
pub mod event_channel;
pub mod gnttab;
#[cfg(any(test, feature = "alloc"))]
pub mod grant;
pub mod hvm;
pub mod hypercall;
pub mod memory;
pub mod pv;
mod ring;
pub mod sched;
#[cfg(any(test, feature = "sim"))]
pub mod sim;
pub mod time;
pub mod vcpu;
#[cfg(any(test, feature = "alloc"))]
pub mod xenstore;
