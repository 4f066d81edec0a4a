//! `alloc_count {ours|buddy|peer} N`: set up a 64 MiB allocator, then do N
//! single-page alloc+free pairs (`buddy`: ours without the per-CPU cache). Run under callgrind with N and with 0:
//! the difference divided by N is the cost of one pair
//! (`benches/callgrind.sh`).

#[path = "../benches/common/workload.rs"]
#[allow(dead_code)]
mod workload;
use workload::{Frames, single};

fn pairs<A: Frames>(a: &A, n: u64) {
    for _ in 0..n {
        single(a);
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let which = args.next().expect("ours|buddy|peer");
    let n: u64 = args.next().expect("N").parse().expect("N");
    match which.as_str() {
        "ours" => pairs(&workload::ours(), n),
        "buddy" => pairs(&workload::Buddy(workload::ours()), n),
        "peer" => pairs(&workload::peer(), n),
        _ => panic!("ours|buddy|peer"),
    }
}
