//! Prints a line through `write` and exits 0.
#![no_std]
#![no_main]

urt::entry!(main);

fn main(_arg: u64) -> i32 {
    urt::println!("hello from user mode, pid {}", urt::getpid());
    0
}
