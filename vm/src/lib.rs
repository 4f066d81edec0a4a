//! Machine-independent virtual memory, after FreeBSD's `sys/vm`.
#![no_std]
#![deny(unsafe_code)]

extern crate alloc;

pub mod extent;
