//! Spins in user mode forever, never entering the kernel: only preemption
//! by the timer gives its CPU to anyone else, and only a kill ends it.
#![no_std]
#![no_main]

urt::entry!(main);

fn main(_arg: u64) -> i32 {
    let mut n: u64 = 0;
    loop {
        n = core::hint::black_box(n.wrapping_add(1));
    }
}
