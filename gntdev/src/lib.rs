//! The grant-table device: ioctl ABI, per-open state and grant mapping.
#![no_std]
#![deny(unsafe_code)]

extern crate alloc;
