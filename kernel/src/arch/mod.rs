//! x86-64 specifics: entry, descriptor tables, traps, system call entry,
//! context switch, page tables.

pub mod boot;
pub mod context;
pub mod gdt;
pub mod percpu;
pub mod pmap;
pub mod syscall;
pub mod trap;
