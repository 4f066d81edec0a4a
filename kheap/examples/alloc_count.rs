//! `alloc_count {ours|peer} N`: fill a 16 MiB heap with 20,000 blocks of
//! mixed sizes and free every other one (10,000 live blocks, and as many
//! holes between them), then do N 64-byte alloc+free pairs. Ours is
//! `kheap::Heap` on CPU 0; the peer is `linked_list_allocator::Heap`
//! (first fit) behind a spin lock, as the kernel used it. Run under
//! callgrind with N and with 0: the difference divided by N is the cost
//! of one pair (`benches/callgrind.sh`).

use std::alloc::Layout;
use std::hint::black_box;
use std::ptr::NonNull;

use kheap::{Heap, PAGE_SIZE};
use spin::Mutex;

/// Bytes of the heap.
const SIZE: usize = 16 << 20;

/// Blocks made before the measured pairs; every other one is freed.
const SETUP: usize = 20_000;

/// An allocator under test.
trait Alloc {
    fn alloc(&self, l: Layout) -> NonNull<u8>;
    fn free(&self, p: NonNull<u8>, l: Layout);
}

impl Alloc for Heap<1> {
    #[inline]
    fn alloc(&self, l: Layout) -> NonNull<u8> {
        NonNull::new(Heap::alloc(self, 0, l)).expect("heap full")
    }
    #[inline]
    fn free(&self, p: NonNull<u8>, l: Layout) {
        // SAFETY: `p` came from `alloc` with `l`.
        unsafe { self.dealloc(0, p.as_ptr(), l) }
    }
}

impl Alloc for Mutex<linked_list_allocator::Heap> {
    #[inline]
    fn alloc(&self, l: Layout) -> NonNull<u8> {
        self.lock().allocate_first_fit(l).expect("heap full")
    }
    #[inline]
    fn free(&self, p: NonNull<u8>, l: Layout) {
        // SAFETY: `p` came from `allocate_first_fit` with `l`.
        unsafe { self.lock().deallocate(p, l) }
    }
}

/// The sizes of the setup's blocks, drawn in turn: mostly small, as a
/// kernel's records are.
const SIZES: [usize; 12] = [16, 24, 32, 40, 48, 64, 96, 128, 200, 256, 512, 1024];

/// Makes the live set, then runs `n` pairs.
fn run(a: &impl Alloc, n: u64) {
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut blocks = Vec::with_capacity(SETUP);
    for _ in 0..SETUP {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let l = Layout::from_size_align(SIZES[(x % SIZES.len() as u64) as usize], 8).unwrap();
        blocks.push((a.alloc(l), l));
    }
    for &(p, l) in blocks.iter().step_by(2) {
        a.free(p, l);
    }
    let l = Layout::from_size_align(64, 8).unwrap();
    for _ in 0..n {
        let p = black_box(a.alloc(l));
        a.free(p, l);
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let which = args.next().expect("ours|peer");
    let n: u64 = args.next().expect("N").parse().expect("N");
    let mut buf = vec![0u8; SIZE + PAGE_SIZE];
    let base = NonNull::new(buf.as_mut_ptr()).unwrap();
    match which.as_str() {
        "ours" => {
            let h: Heap<1> = Heap::new();
            // SAFETY: the buffer outlives the heap and nothing else uses it.
            unsafe { h.init(base, buf.len()) }.unwrap();
            run(&h, n);
        }
        "peer" => {
            // SAFETY: as above.
            let h = unsafe { linked_list_allocator::Heap::new(base.as_ptr(), buf.len()) };
            run(&Mutex::new(h), n);
        }
        _ => panic!("ours|peer"),
    }
}
