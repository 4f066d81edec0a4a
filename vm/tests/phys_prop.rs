//! Property tests of the buddy allocator.
#![cfg(not(loom))]

use std::collections::BTreeMap;

use proptest::prelude::*;
use vm::PAGE_SIZE;
use vm::phys::{FreePool, PhysAllocator};

#[derive(Clone, Debug)]
enum Op {
    Alloc {
        direct: bool,
        order: u8,
    },
    Free {
        pick: usize,
    },
    Contig {
        npages: u64,
        low: u64,
        high: u64,
        align_shift: u32,
        bound_shift: u32,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (any::<bool>(), 0u8..7).prop_map(|(direct, order)| Op::Alloc { direct, order }),
        3 => any::<usize>().prop_map(|pick| Op::Free { pick }),
        2 => (1u64..40, 0u64..1200, 0u64..1300, 0u32..7, prop_oneof![Just(0u32), 3u32..9])
            .prop_map(|(npages, low, high, align_shift, bound_shift)| Op::Contig { npages, low, high, align_shift, bound_shift }),
    ]
}

/// Up to three segments, in page frames, with gaps between them.
fn segments() -> impl Strategy<Value = Vec<(u64, u64)>> {
    prop::collection::vec((0u64..70, 1u64..500), 1..4).prop_map(|v| {
        let mut at = 0;
        v.into_iter()
            .map(|(gap, len)| {
                let s = at + gap;
                at = s + len;
                (s, at)
            })
            .collect()
    })
}

/// Live allocations: first frame -> (number of pages, how to free it).
type Live = BTreeMap<u64, (u64, Option<u8>)>;

fn free_frames(p: &PhysAllocator) -> Vec<u64> {
    let mut v: Vec<u64> = p
        .free_blocks()
        .iter()
        .flat_map(|&(pa, o)| (pa / PAGE_SIZE)..(pa / PAGE_SIZE + (1 << o)))
        .collect();
    v.sort_unstable();
    v
}

/// Whether any run of `n` free frames fits the constraints (brute force).
fn contig_possible(free: &[u64], n: u64, lo: u64, hi: u64, align: u64, bound: u64) -> bool {
    let set: std::collections::BTreeSet<u64> = free.iter().copied().collect();
    free.iter().any(|&s| {
        s >= lo
            && s + n <= hi
            && s % align == 0
            && (bound == 0 || s / bound == (s + n - 1) / bound)
            && (s..s + n).all(|f| set.contains(&f))
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn buddy_invariants(segs in segments(), ops in prop::collection::vec(op(), 1..120)) {
        let bytes: Vec<(u64, u64)> = segs.iter().map(|&(s, e)| (s * PAGE_SIZE, e * PAGE_SIZE)).collect();
        let p = PhysAllocator::new(&bytes, 0).unwrap();
        let total: u64 = segs.iter().map(|&(s, e)| e - s).sum();
        let initial = p.free_blocks();
        let mut live = Live::new();
        for op in ops {
            match op {
                Op::Alloc { direct, order } => {
                    let pool = if direct { FreePool::Direct } else { FreePool::Default };
                    if let Some(id) = p.alloc_pages(pool, order) {
                        let pfn = p.page(id).phys_addr() / PAGE_SIZE;
                        prop_assert_eq!(pfn % (1 << order), 0, "block aligned");
                        live.insert(pfn, (1 << order, Some(order)));
                    } else {
                        let free = free_frames(&p);
                        prop_assert!(!contig_possible(&free, 1 << order, 0, u64::MAX, 1 << order, 0), "alloc failed with a free block");
                    }
                }
                Op::Free { pick } => {
                    if !live.is_empty() {
                        let pfn = *live.keys().nth(pick % live.len()).unwrap();
                        let (n, order) = live.remove(&pfn).unwrap();
                        let id = p.phys_to_page(pfn * PAGE_SIZE).unwrap();
                        match order {
                            Some(o) => p.free_pages(id, o),
                            None => p.free_contig(id, n),
                        }
                    }
                }
                Op::Contig { npages, low, high, align_shift, bound_shift } => {
                    let align = 1u64 << align_shift;
                    let bound = if bound_shift == 0 { 0 } else { 1u64 << bound_shift };
                    let free = free_frames(&p);
                    let got = p.alloc_contig(npages, low * PAGE_SIZE, high * PAGE_SIZE, align * PAGE_SIZE, bound * PAGE_SIZE);
                    match got {
                        Some(id) => {
                            let s = p.page(id).phys_addr() / PAGE_SIZE;
                            prop_assert!(s >= low && s + npages <= high, "within [low, high)");
                            prop_assert_eq!(s % align, 0, "aligned");
                            prop_assert!(bound == 0 || s / bound == (s + npages - 1) / bound, "boundary");
                            for k in 0..npages {
                                prop_assert_eq!(p.page(id + k as u32).phys_addr(), (s + k) * PAGE_SIZE, "contiguous");
                            }
                            live.insert(s, (npages, None));
                        }
                        None => prop_assert!(!contig_possible(&free, npages, low, high, align, bound), "missed a fitting run"),
                    }
                }
            }
            // No two live allocations overlap; free count is conserved.
            let mut end = 0;
            for (&s, &(n, _)) in &live {
                prop_assert!(s >= end, "overlap at frame {}", s);
                end = s + n;
            }
            let used: u64 = live.values().map(|&(n, _)| n).sum();
            prop_assert_eq!(p.free_count(), total - used);
            prop_assert_eq!(free_frames(&p).len() as u64, total - used);
        }
        for (pfn, (n, order)) in std::mem::take(&mut live) {
            let id = p.phys_to_page(pfn * PAGE_SIZE).unwrap();
            match order {
                Some(o) => p.free_pages(id, o),
                None => p.free_contig(id, n),
            }
        }
        prop_assert_eq!(p.free_blocks(), initial, "everything coalesced back");
        prop_assert_eq!(p.free_count(), total);
    }
}
