//! A bad grant reference in a mapping, as a broken or hostile peer would
//! publish: the process shares three pages with its own domain and maps
//! them through gntdev together with a reference that does not exist
//! (dom0's grant 0x7fff_fff0, beyond any table), then touches the mapping.
//! The populate's one batched map fails for that grant; the kernel must
//! undo the grants that did map, fail the fault (SIGSEGV, as FreeBSD's
//! `vm_fault_populate`) and tear everything down at exit (the
//! `gntdev-bad` scenario expects status 139 and the baseline back).
#![no_std]
#![no_main]

use gnttab::Gnttab;
use gnttab::xs::Xs;
use urt::println;

urt::entry!(main);

/// A grant reference beyond any grant table.
const BAD_REF: u32 = 0x7fff_fff0;

fn main(_arg: u64) -> i32 {
    match run() {
        Ok(()) => 0,
        Err(e) => {
            println!("gnt-badref: FAIL {e}");
            1
        }
    }
}

fn run() -> Result<(), &'static str> {
    let me = Xs::open()
        .and_then(|mut xs| xs.read_u64("domid"))
        .map_err(|_| "read domid")? as u32;
    let gnt = Gnttab::open().map_err(|_| "open /dev/xen/gntdev")?;
    let mut own = [0u32; 3];
    gnt.share_pages(me as u16, &mut own, true, None)
        .map_err(|_| "share_pages")?;
    let refs = [own[0], own[1], BAD_REF, own[2]];
    let domids = [me, me, 0, me];
    let addr = gnt
        .map_grant_refs(&domids, &refs, false, None)
        .map_err(|_| "map_grant_refs (records only: must succeed)")?;
    println!("gnt-badref: touching a mapping of 4 grants whose third does not exist");
    // SAFETY: word 0 of the mapping; the fault that maps it must fail.
    let v = unsafe { (addr as *const u32).read_volatile() };
    println!("gnt-badref: read {v:#x} through a mapping with a bad grant");
    Err("the fault on a mapping with a bad grant succeeded")
}
