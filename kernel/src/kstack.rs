//! Kernel stacks with guard pages.
//!
//! Each stack lives in a slot of its own in a kernel virtual region above
//! the identity map, mapped with 4 KiB pages ([`pmap::kernel_enter_run`]) of
//! a page-aligned block of the kernel heap (identity-mapped RAM, as the
//! stacks were before they had guards, so free page counts are not
//! touched by threads coming and going):
//! the lower half of a slot is never mapped, so a thread that runs off
//! the bottom of its stack faults on that guard instead of overwriting
//! whatever lies below. The fault cannot be delivered on the overflowed
//! stack, so the CPU raises a double fault, which runs on its own IST
//! stack (`arch::gdt`); its handler (`arch::trap`) asks [`guard_page`]
//! whether the faulting address (CR2) is a guard and reports the overflow
//! with a crash shutdown.
//!
//! | addresses | what |
//! |---|---|
//! | [`REGION`] `+ i *` [`SLOT`] `..` `+ GUARD` | slot `i`'s guard: never mapped |
//! | `+ GUARD ..` `+ SLOT` | slot `i`'s stack, [`STACK_SIZE`] bytes |
//!
//! Locking: the slot allocator is (s), its own spin lock; the page
//! tables are `pmap`'s (k).

use alloc::alloc::{Layout, alloc_zeroed, dealloc};
use alloc::vec::Vec;
use core::ops::Range;

use spin::Mutex;
use vm::Errno;

use crate::arch::pmap::{self, PAGE};

/// Bytes of a kernel stack (8 pages).
pub const STACK_SIZE: u64 = 32 * 1024;
/// The heap block behind a stack.
const BLOCK: Layout = match Layout::from_size_align(STACK_SIZE as usize, PAGE as usize) {
    Ok(l) => l,
    Err(_) => panic!("a stack is whole pages"),
};
/// Bytes of unmapped guard below each stack: a frame up to this size
/// cannot jump over it.
const GUARD: u64 = 32 * 1024;
/// Bytes of one slot: the guard, then the stack.
const SLOT: u64 = GUARD + STACK_SIZE;
/// Start of the region: 384 GiB, in PML4 slot 0 above the 4 GiB identity
/// map and clear of the address the `fault` self-test reads (256 GiB).
const REGION: u64 = 0x60_0000_0000;
/// Slots in the region (1 GiB).
const SLOTS: u64 = (1 << 30) / SLOT;

/// (s) Slots handed out: the next never used, and those given back.
struct Slots {
    next: u64,
    free: Vec<u64>,
}

static SLOT_ALLOC: Mutex<Slots> = Mutex::new(Slots {
    next: 0,
    free: Vec::new(),
});

/// A kernel stack of [`STACK_SIZE`] bytes with an unmapped guard below
/// it. Dropping it unmaps the stack and frees its pages; the stack must
/// not be in use any more (the scheduler drops a dead thread's stack only
/// while another thread runs).
#[derive(Debug)]
pub struct KernelStack {
    /// The slot's number.
    slot: u64,
    /// The heap block mapped as the stack (its identity-mapped address,
    /// which is also its physical address).
    block: *mut u8,
}

// SAFETY: the block is owned by this value alone; only the thread
// running on the stack uses it through the mapping.
unsafe impl Send for KernelStack {}
// SAFETY: a shared reference gives only the stack's addresses (`top`),
// never access to the block.
unsafe impl Sync for KernelStack {}

impl KernelStack {
    /// A new stack: a slot, and a heap block mapped there. `ENOMEM` when
    /// the region or the heap is exhausted (nothing is kept then).
    pub fn new() -> Result<Self, Errno> {
        let slot = {
            let mut s = SLOT_ALLOC.lock();
            match s.free.pop() {
                Some(i) => i,
                None if s.next < SLOTS => {
                    s.next += 1;
                    s.next - 1
                }
                None => return Err(Errno::ENOMEM),
            }
        };
        // SAFETY: `BLOCK` has a nonzero size.
        let block = unsafe { alloc_zeroed(BLOCK) };
        if block.is_null() {
            SLOT_ALLOC.lock().free.push(slot);
            return Err(Errno::ENOMEM);
        }
        // On failure its drop unmaps what was mapped and frees the block.
        let stack = Self { slot, block };
        pmap::kernel_enter_run(stack.bottom(), block as u64, STACK_SIZE / PAGE)?;
        Ok(stack)
    }

    /// The lowest address of the stack (just above its guard).
    fn bottom(&self) -> u64 {
        REGION + self.slot * SLOT + GUARD
    }

    /// The address just above the stack: a new thread's first stack
    /// pointer (16-byte aligned).
    pub fn top(&self) -> u64 {
        self.bottom() + STACK_SIZE
    }

    /// The first `max` words from `rsp` up to the top that lie in `text`:
    /// the return addresses, most recent first, of a thread switched away
    /// at `rsp` (with the odd stale word), for the reports of a hang.
    /// Nothing when `rsp` is not inside the stack.
    pub fn return_addresses(&self, rsp: u64, text: &Range<u64>, max: usize) -> Vec<u64> {
        if !(self.bottom()..self.top()).contains(&rsp) || !rsp.is_multiple_of(8) {
            return Vec::new();
        }
        (rsp..self.top())
            .step_by(8)
            .map(|a| {
                let word = self.block.wrapping_add((a - self.bottom()) as usize);
                // SAFETY: `word` is an aligned word of the block behind
                // this stack (`a` lies in the stack), which lives as long
                // as `self`; a volatile read, since the block's thread
                // may run meanwhile (the words are then only stale).
                unsafe { word.cast::<u64>().read_volatile() }
            })
            .filter(|w| text.contains(w))
            .take(max)
            .collect()
    }
}

impl Drop for KernelStack {
    fn drop(&mut self) {
        pmap::kernel_remove(self.bottom(), STACK_SIZE / PAGE);
        // SAFETY: `block` came from `alloc_zeroed(BLOCK)` and, unmapped
        // from the slot, nothing uses it any more.
        unsafe { dealloc(self.block, BLOCK) };
        SLOT_ALLOC.lock().free.push(self.slot);
    }
}

/// The guard page containing `addr`, if `addr` lies in the guard of a
/// kernel stack's slot (a stack overflow ran into it).
pub fn guard_page(addr: u64) -> Option<u64> {
    let off = addr.checked_sub(REGION)?;
    (off < SLOTS * SLOT && off % SLOT < GUARD).then_some(addr & !(PAGE - 1))
}
