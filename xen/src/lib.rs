//! Everything that talks to the Xen hypervisor.
#![no_std]
