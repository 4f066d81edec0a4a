//! x86-64 specifics: entry, descriptor tables, traps.

pub mod boot;
pub mod gdt;
pub mod trap;
