//! Pins the shared page's layout (`vchan::shared`) to Xen's
//! `xen/io/libxenvchan.h` from Debian's libxen-dev.

use std::path::PathBuf;

use abicheck::{Fact, constant};
use vchan::shared::*;

#[test]
fn shared_page_matches_libxenvchan_h() {
    let s = "struct vchan_interface";
    let mut f: Vec<Fact> = Vec::new();
    constant!(f,
        LEFT => format!("offsetof({s}, left)"),
        RIGHT => format!("offsetof({s}, right)"),
        CONS => "offsetof(struct ring_shared, cons)",
        PROD => "offsetof(struct ring_shared, prod)",
        LEFT_ORDER => format!("offsetof({s}, left_order)"),
        RIGHT_ORDER => format!("offsetof({s}, right_order)"),
        CLI_LIVE => format!("offsetof({s}, cli_live)"),
        SRV_LIVE => format!("offsetof({s}, srv_live)"),
        CLI_NOTIFY => format!("offsetof({s}, cli_notify)"),
        SRV_NOTIFY => format!("offsetof({s}, srv_notify)"),
        GRANTS => format!("offsetof({s}, grants)"),
        GRANTS => format!("sizeof({s})"),
        NOTIFY_WRITE => "VCHAN_NOTIFY_WRITE",
        NOTIFY_READ => "VCHAN_NOTIFY_READ",
    );
    let wrong = abicheck::check(
        &PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("vchan_abi_layout"),
        &abicheck::xen_include_dir("xen/io/libxenvchan.h"),
        &[],
        &["xen/io/libxenvchan.h"],
        "",
        &f,
    );
    assert!(wrong.is_empty(), "ABI mismatches:\n{}", wrong.join("\n"));
}
