//! The vchan scenarios: `tools/utest`'s `vchan-cat` streams over a
//! libxenvchan-compatible channel (`tools/vchan`) with a peer domain, our
//! kernel or dom0's `vchan-socket-proxy`. The kernel starts it, waits for
//! it, reports the gntdev counters and checks the baseline (free pages,
//! grant references, hole frames), as the gntdev scenarios do; a server
//! must also have removed its xenstore directory.
//!
//! Command line: `scenario=vchan role=server|client [peer=DOMID]
//! [port=N] [kib=N] [mode=duplex|echo|send|recv] [order=O]
//! [until-closed=1]`: the peer's domain (else `data/xenguest-peer`), the
//! path's port (`/local/domain/<server>/data/vchan/<client>/<port>`),
//! KiB to stream (4096), what to stream (`vchan-cat`'s modes; `local`
//! needs no peer and streams through a loopback), the rings'
//! order (10..=20; none: libxenvchan's in-page default), and whether the
//! peer's close before the end is the expected end.

use super::{Outcome, gntdev, share};
use crate::cmdline::Options;
use crate::{kprintln, xenstore};

/// Runs `vchan-cat` with the command line's role, peer and stream.
pub fn run(opts: &Options<'_>) -> Outcome {
    let local = opts.get("mode") == Some("local");
    let peer = if local { 0 } else { share::peer(opts)? };
    let client = match opts.get("role") {
        Some("server") => false,
        Some("client") => true,
        None if local => false,
        _ => return Err("role=server or role=client"),
    };
    let port = opts.get_u64("port").unwrap_or(1);
    let kib = opts.get_u64("kib").unwrap_or(4096);
    let mode = match opts.get("mode").unwrap_or("duplex") {
        "duplex" => 0,
        "echo" => 1,
        "send" => 2,
        "recv" => 3,
        "local" => 4,
        _ => return Err("mode=duplex|echo|send|recv|local"),
    };
    let order = match opts.get_u64("order") {
        None => 0,
        Some(o @ 10..=20) => o - 9,
        Some(_) => return Err("order= must be 10..=20"),
    };
    if port > 0xffff || kib > 0x7f_ffff {
        return Err("port= or kib= too large");
    }
    let until_closed = opts.get_u64("until-closed").unwrap_or(0) & 1;
    let arg = u64::from(peer)
        | port << 16
        | kib << 32
        | u64::from(client) << 55
        | mode << 56
        | until_closed << 59
        | order << 60;
    gntdev::run("vchan", "vchan-cat", arg, &[0])?;
    if !client && !local {
        let me = xenstore::read_u64("domid").map_err(|_| "cannot read our domid")?;
        let path = alloc::format!("/local/domain/{me}/data/vchan/{peer}/{port}");
        if xenstore::read_string(&alloc::format!("{path}/ring-ref")).is_ok() {
            return Err("the server left its xenstore keys behind");
        }
        kprintln!("vchan: {path} removed");
    }
    Ok(())
}
