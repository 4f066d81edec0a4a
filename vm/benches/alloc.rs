//! Our buddy allocator against `buddy_system_allocator`'s
//! `LockedFrameAllocator` on the same workloads (see `common/workload.rs`).
// criterion_group! makes an undocumented public function.
#![allow(missing_docs)]

use criterion::{Criterion, criterion_group, criterion_main};
use std::time::Duration;

#[path = "common/reclaim.rs"]
mod reclaim;
#[path = "common/workload.rs"]
mod workload;
use workload::{Frames, Rng, churn_contig, mixed, peer, single};

fn run<A: Frames>(c: &mut Criterion, name: &str, a: &A) {
    let mut g = c.benchmark_group(name);
    g.bench_function("single_4k_alloc_free", |b| b.iter(|| single(a)));
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    g.bench_function("mixed_orders_64", |b| b.iter(|| mixed(a, &mut rng)));
    g.sample_size(10);
    let mut rng = Rng(42);
    g.bench_function("churn_then_contig", |b| {
        b.iter(|| churn_contig(a, &mut rng))
    });
    g.finish();
}

fn benches(c: &mut Criterion) {
    let ours = workload::ours();
    let peer = peer();
    run(c, "ours", &ours);
    run(
        c,
        "ours_without_cpu_cache",
        &workload::Buddy(workload::ours()),
    );
    run(c, "buddy_system_allocator", &peer);
    let mut g = c.benchmark_group("ours_reclaim");
    g.sample_size(10);
    let mut seed = 0;
    g.bench_function("churn_then_contig_reclaim", |b| {
        b.iter(|| {
            seed += 1;
            reclaim::churn_contig_reclaim(seed, true, false)
        })
    });
    g.finish();
    // Contiguous success rate over the same request streams.
    let (mut got_ours, mut got_peer) = (0, 0);
    for seed in 1..=20u64 {
        got_ours += churn_contig(&ours, &mut Rng(seed * 7919));
        got_peer += churn_contig(&peer, &mut Rng(seed * 7919));
    }
    println!("contig success: ours {got_ours}/1280, buddy_system_allocator {got_peer}/1280");
    // The same churn with two pages in three in default objects: without
    // and with contiguous reclaim, against the brute-force count of the
    // requests relocation can satisfy.
    let (mut without, mut with) = (reclaim::Outcome::default(), reclaim::Outcome::default());
    for seed in 1..=20u64 {
        without += reclaim::churn_contig_reclaim(seed * 7919, false, false);
        with += reclaim::churn_contig_reclaim(seed * 7919, true, true);
    }
    println!(
        "contig success after churn with movable pages: without reclaim {}/{}, with reclaim {}/{} \
         (satisfiable by relocation: {}), buddy_system_allocator {got_peer}/1280; \
         {} pages relocated, {} passes, {} candidates failed",
        without.granted,
        without.requests,
        with.granted,
        with.requests,
        with.satisfiable,
        with.relocated,
        with.passes,
        with.failed,
    );
}

criterion_group! {
    name = alloc;
    config = Criterion::default()
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500));
    targets = benches
}
criterion_main!(alloc);
