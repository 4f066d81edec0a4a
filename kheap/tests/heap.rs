//! The heap from outside: blocks, counts, reclaim, random sequences on
//! simulated CPUs (proptest) and threads freeing each other's blocks.

use std::alloc::Layout;
use std::collections::BTreeMap;
use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::mpsc;
use std::thread;

use kheap::{CLASSES, Heap, InitError, MAX_SMALL, PAGE_SIZE};
use proptest::prelude::*;

/// CPUs of the simulated machine.
const CPUS: usize = 4;

/// A heap over a buffer it owns.
struct Fixture {
    heap: Heap<CPUS>,
    /// The region's memory; kept alive, never touched by the tests.
    buf: Vec<u8>,
}

impl Fixture {
    /// A heap over `pages` pages (and one more, for alignment).
    fn new(pages: usize) -> Box<Fixture> {
        let mut f = Box::new(Fixture {
            heap: Heap::new(),
            buf: vec![0; (pages + 1) * PAGE_SIZE],
        });
        let base = NonNull::new(f.buf.as_mut_ptr()).unwrap();
        // SAFETY: the buffer lives as long as the heap, in the same box,
        // and nothing else writes it.
        unsafe { f.heap.init(base, f.buf.len()) }.unwrap();
        f
    }

    /// Whether `p..p + len` lies in the region.
    fn holds(&self, p: *mut u8, len: usize) -> bool {
        let start = self.buf.as_ptr() as usize;
        let end = start + self.buf.len();
        p as usize >= start && p as usize + len <= end
    }
}

/// The bytes a block of `layout` counts for: its class's size, or its
/// pages.
fn charged(layout: Layout) -> usize {
    let size = layout.size().max(1);
    CLASSES
        .iter()
        .copied()
        .find(|&c| c >= size && c & c.wrapping_neg() >= layout.align())
        .unwrap_or(size.next_multiple_of(PAGE_SIZE))
}

/// A live block of a test, filled with its own byte.
struct Block {
    ptr: *mut u8,
    layout: Layout,
    fill: u8,
}

impl Block {
    /// Writes the fill byte into every byte of the block.
    fn fill(&self) {
        // SAFETY: the block is ours, `layout.size()` bytes.
        unsafe { self.ptr.write_bytes(self.fill, self.layout.size()) };
    }

    /// Whether every byte still holds the fill byte.
    fn intact(&self) -> bool {
        // SAFETY: as in `fill`.
        let b = unsafe { std::slice::from_raw_parts(self.ptr, self.layout.size()) };
        b.iter().all(|&x| x == self.fill)
    }
}

// SAFETY: a block is memory the test owns, moved between threads whole.
unsafe impl Send for Block {}

/// Allocates `layout` on `cpu` and checks the block: in the region,
/// aligned, filled.
fn alloc(f: &Fixture, cpu: usize, layout: Layout, fill: u8) -> Block {
    let ptr = f.heap.alloc(cpu, layout);
    assert!(!ptr.is_null(), "no room for {layout:?}");
    assert!(f.holds(ptr, layout.size()), "{ptr:p} outside the region");
    assert_eq!(ptr as usize % layout.align(), 0, "{ptr:p} for {layout:?}");
    let b = Block { ptr, layout, fill };
    b.fill();
    b
}

/// Checks a block and frees it on `cpu`.
fn free(f: &Fixture, cpu: usize, b: Block) {
    assert!(b.intact(), "block {:p} {:?} overwritten", b.ptr, b.layout);
    // SAFETY: the block came from `alloc` with its layout.
    unsafe { f.heap.dealloc(cpu, b.ptr, b.layout) };
}

/// Checks that everything is back: nothing in use, and after reclaim no
/// slab left and one run of every free page.
fn assert_all_back(f: &Fixture, free_at_start: usize) {
    assert_eq!(f.heap.in_use(), 0);
    f.heap.reclaim();
    assert!(
        f.heap
            .class_stats()
            .iter()
            .all(|s| s.slabs == 0 && s.in_use == 0 && s.cached == 0)
    );
    assert_eq!(f.heap.free(), free_at_start);
    assert_eq!(f.heap.free_pages(), free_at_start);
    let all = Layout::from_size_align(free_at_start, PAGE_SIZE).unwrap();
    let b = alloc(f, 0, all, 0x5a);
    free(f, 0, b);
}

#[test]
fn init_refuses_small_and_second_regions() {
    let h: Heap<1> = Heap::new();
    let mut buf = vec![0u8; PAGE_SIZE];
    let base = NonNull::new(buf.as_mut_ptr()).unwrap();
    // SAFETY: the buffer outlives the heap and is not used otherwise.
    assert_eq!(unsafe { h.init(base, buf.len()) }, Err(InitError::TooSmall));
    assert!(h.alloc(0, Layout::new::<u64>()).is_null());
    let f = Fixture::new(8);
    // SAFETY: refused before the memory is touched.
    let again = unsafe { f.heap.init(base, buf.len()) };
    assert_eq!(again, Err(InitError::Again));
}

#[test]
fn counts_follow_blocks() {
    let f = Fixture::new(64);
    let (size, start) = (f.heap.size(), f.heap.free());
    assert_eq!(size, 64 * PAGE_SIZE);
    assert!(start < size && start > size - 2 * PAGE_SIZE);
    let small = Layout::from_size_align(100, 8).unwrap();
    let big = Layout::from_size_align(3 * PAGE_SIZE + 1, 8).unwrap();
    let a = alloc(&f, 0, small, 1);
    let b = alloc(&f, 1, big, 2);
    assert_eq!(f.heap.in_use(), 112 + 4 * PAGE_SIZE);
    assert_eq!(f.heap.peak(), f.heap.in_use());
    let s = f.heap.class_stats();
    let c = CLASSES.iter().position(|&c| c == 112).unwrap();
    assert_eq!((s[c].slabs, s[c].in_use), (1, 1));
    assert_eq!(s[c].cached, kheap_batch(112) - 1);
    // The slab's unused end does not count as free.
    assert_eq!(
        f.heap.free(),
        start - (PAGE_SIZE % 112) - 112 - 4 * PAGE_SIZE
    );
    free(&f, 1, a);
    free(&f, 0, b);
    assert_eq!(f.heap.peak(), 112 + 4 * PAGE_SIZE);
    assert_all_back(&f, start);
}

/// Objects one magazine refill of class `size` moves (the crate's
/// private `batch`: 4096 bytes of objects, 4..=32, halved).
fn kheap_batch(size: usize) -> usize {
    (4096 / size).clamp(4, 32) / 2
}

#[test]
fn large_blocks_honour_alignment() {
    let f = Fixture::new(256);
    let start = f.heap.free();
    let mut live = Vec::new();
    for (i, (size, align)) in [
        (MAX_SMALL + 1, 8),
        (100, PAGE_SIZE),
        (5 * PAGE_SIZE, 8 * PAGE_SIZE),
        (PAGE_SIZE, 64 * PAGE_SIZE),
    ]
    .into_iter()
    .enumerate()
    {
        let l = Layout::from_size_align(size, align).unwrap();
        live.push(alloc(&f, 0, l, i as u8));
    }
    for b in live {
        free(&f, 0, b);
    }
    assert_all_back(&f, start);
}

#[test]
fn a_full_heap_takes_back_cached_objects_for_a_large_block() {
    let f = Fixture::new(32);
    let start = f.heap.free();
    let l = Layout::from_size_align(64, 8).unwrap();
    let mut live = Vec::new();
    while let ptr = f.heap.alloc(1, l)
        && !ptr.is_null()
    {
        let b = Block {
            ptr,
            layout: l,
            fill: 7,
        };
        b.fill();
        live.push(b);
    }
    assert_eq!(f.heap.free_pages(), 0);
    // Freed on CPU 2: the objects sit in its magazine and in slabs.
    for b in live {
        free(&f, 2, b);
    }
    assert!(f.heap.free_pages() < start);
    // A large block needs every page: the allocation reclaims them.
    let all = Layout::from_size_align(start, PAGE_SIZE).unwrap();
    let b = alloc(&f, 3, all, 1);
    free(&f, 3, b);
    assert_all_back(&f, start);
}

/// One step of a random sequence.
#[derive(Clone, Debug)]
enum Op {
    /// Allocate `size` bytes aligned to `1 << align` on `cpu`.
    Alloc { cpu: usize, size: usize, align: u32 },
    /// Free the live block at `index` (modulo their number) on `cpu`.
    Free { cpu: usize, index: usize },
    /// Give cached objects and empty slabs back.
    Reclaim,
}

fn op() -> impl Strategy<Value = Op> {
    let size = prop_oneof![
        8 => 1usize..=256,
        3 => 257usize..=MAX_SMALL,
        1 => MAX_SMALL + 1..=4 * PAGE_SIZE,
    ];
    prop_oneof![
        10 => (0..CPUS, size, prop_oneof![8 => 0u32..=4, 1 => 5u32..=13])
            .prop_map(|(cpu, size, align)| Op::Alloc { cpu, size, align }),
        8 => (0..CPUS, any::<usize>()).prop_map(|(cpu, index)| Op::Free { cpu, index }),
        1 => Just(Op::Reclaim),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn random_sequences_keep_blocks_apart(ops in prop::collection::vec(op(), 1..400)) {
        let f = Fixture::new(1024);
        let start = f.heap.free();
        let mut live: Vec<Block> = Vec::new();
        // Live blocks by address, to check that none overlaps another.
        let mut spans: BTreeMap<usize, usize> = BTreeMap::new();
        let mut charged_now = 0;
        let mut peak = 0;
        for (i, op) in ops.into_iter().enumerate() {
            match op {
                Op::Alloc { cpu, size, align } => {
                    let l = Layout::from_size_align(size, 1 << align).unwrap();
                    let b = alloc(&f, cpu, l, i as u8);
                    let at = b.ptr as usize;
                    if let Some((&s, &len)) = spans.range(..=at).next_back() {
                        prop_assert!(s + len <= at, "{at:#x} inside the block at {s:#x}");
                    }
                    if let Some((&s, _)) = spans.range(at..).next() {
                        prop_assert!(at + size <= s, "{at:#x}+{size} over the block at {s:#x}");
                    }
                    spans.insert(at, size);
                    charged_now += charged(l);
                    peak = peak.max(charged_now);
                    live.push(b);
                }
                Op::Free { cpu, index } => {
                    if live.is_empty() {
                        continue;
                    }
                    let b = live.swap_remove(index % live.len());
                    spans.remove(&(b.ptr as usize));
                    charged_now -= charged(b.layout);
                    free(&f, cpu, b);
                }
                Op::Reclaim => f.heap.reclaim(),
            }
            prop_assert_eq!(f.heap.in_use(), charged_now);
            prop_assert!(f.heap.peak() <= peak);
            prop_assert!(f.heap.free() + charged_now <= start);
            let stats = f.heap.class_stats();
            let small: usize = stats.iter().map(|s| s.size * s.in_use).sum();
            let slabs: usize = stats.iter().map(|s| s.slabs).sum();
            prop_assert!(small <= charged_now);
            prop_assert!(f.heap.free_pages() + slabs * PAGE_SIZE <= start);
        }
        for b in live.drain(..) {
            free(&f, 0, b);
        }
        assert_all_back(&f, start);
    }
}

#[test]
fn threads_free_each_others_blocks() {
    const ROUNDS: usize = 20_000;
    let f: Arc<Fixture> = Fixture::new(4096).into();
    let start = f.heap.free();
    let (senders, receivers): (Vec<_>, Vec<_>) =
        (0..CPUS).map(|_| mpsc::channel::<Block>()).unzip();
    let workers: Vec<_> = receivers
        .into_iter()
        .enumerate()
        .map(|(cpu, inbox)| {
            let f = f.clone();
            let peers = senders.clone();
            thread::spawn(move || {
                let mut live = Vec::new();
                let mut x = cpu as u64 * 0x9e37_79b9 + 1;
                for i in 0..ROUNDS {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let size = if x.is_multiple_of(50) {
                        3 * PAGE_SIZE
                    } else {
                        1 + (x as usize >> 8) % 700
                    };
                    let l = Layout::from_size_align(size, 1 << ((x >> 40) % 6)).unwrap();
                    live.push(alloc(&f, cpu, l, (cpu * 16 + i) as u8));
                    if live.len() > 64 {
                        let b = live.swap_remove((x >> 20) as usize % live.len());
                        if x.is_multiple_of(3) {
                            // Freed by another CPU.
                            let _ =
                                peers[(cpu + 1 + (x >> 30) as usize % (CPUS - 1)) % CPUS].send(b);
                        } else {
                            free(&f, cpu, b);
                        }
                    }
                    while let Ok(b) = inbox.try_recv() {
                        free(&f, cpu, b);
                    }
                }
                (live, inbox)
            })
        })
        .collect();
    drop(senders);
    let done: Vec<_> = workers.into_iter().map(|w| w.join().unwrap()).collect();
    for (cpu, (live, inbox)) in done.into_iter().enumerate() {
        for b in live.into_iter().chain(inbox.try_iter()) {
            free(&f, cpu, b);
        }
    }
    assert!(f.heap.peak() > 0);
    assert_all_back(&f, start);
}
