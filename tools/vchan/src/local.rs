//! Both ends of a vchan inside one process, over anonymous memory: the
//! in-domain baseline of the benchmark (the same rings, copies and
//! notify bits; no grants, and kicks go nowhere).

use urt::PAGE;
use urt::mman::{MAP_ANON, MAP_PRIVATE, PROT_READ, PROT_WRITE};

use crate::Error;
use crate::ring::Ring;
use crate::shared::{
    CLI_LIVE, LEFT, LIVE_OPEN, Layout, NOTIFY_WRITE, Place, RIGHT, SRV_NOTIFY, Shared,
};
use crate::stream::{Events, Vchan};

/// The events of a loopback: nobody to kick, nobody to die.
pub struct Loop;

impl Events for Loop {
    fn notify(&mut self) -> Result<(), Error> {
        Ok(())
    }

    fn wait(&mut self) -> Result<bool, Error> {
        // One thread drives both ends: a wait means it has nothing to do.
        Err(Error::Protocol)
    }

    fn peer_alive(&mut self, _connected: bool) -> bool {
        true
    }
}

/// Anonymous memory, unmapped on drop.
struct Anon {
    addr: u64,
    len: usize,
}

impl Drop for Anon {
    fn drop(&mut self) {
        let _ = urt::munmap(self.addr, self.len);
    }
}

/// A server and a client joined in one process (fields drop in order:
/// the ends before their memory).
pub struct Loopback {
    /// The server's end.
    pub server: Vchan<Loop>,
    /// The client's end.
    pub client: Vchan<Loop>,
    _mem: Anon,
}

/// A loopback whose two rings are of order `order` (10 and 11 give
/// libxenvchan's in-page pair whatever `order` says).
pub fn loopback(order: u16) -> Result<Loopback, Error> {
    let layout = if order < 12 {
        Layout::for_sizes(0, 0)
    } else {
        Layout::new(order, order)
    }
    .map_err(Error::Layout)?;
    let ring_pages = |p: Place| match p {
        Place::InPage(_) => 0,
        Place::Pages(n) => n,
    };
    let (lp, rp) = (ring_pages(layout.left()), ring_pages(layout.right()));
    let len = (1 + lp + rp) * PAGE;
    let addr = urt::mmap(0, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANON, 0, 0)
        .map_err(|e| Error::Sys("mmap", e))?;
    let mem = Anon { addr, len };
    let base = addr as usize;
    let at = |p: Place, first_page: usize| match p {
        Place::InPage(off) => (base + off) as *mut u8,
        Place::Pages(_) => (base + first_page * PAGE) as *mut u8,
    };
    let (left, right) = (at(layout.left(), 1), at(layout.right(), 1 + lp));
    // SAFETY: `mem` maps the page and both rings read-write, and outlives
    // both ends (`Loopback`'s field order).
    let (server, client) = unsafe { join(base as *mut u8, left, right, layout, Loop, Loop) };
    Ok(Loopback {
        server,
        client,
        _mem: mem,
    })
}

/// Sets up the shared page at `page` for `layout` as a server does, and
/// joins a server's end (events `srv`) and a connected client's (`cli`)
/// over it and the rings at `left` and `right`.
///
/// # Safety
/// `page` maps a page and `left` and `right` their rings (as `layout`
/// places them), read-write, for as long as the ends are used.
pub(crate) unsafe fn join<E: Events>(
    page: *mut u8,
    left: *mut u8,
    right: *mut u8,
    layout: Layout,
    srv: E,
    cli: E,
) -> (Vchan<E>, Vchan<E>) {
    // SAFETY: the caller's contract.
    let shared = unsafe { Shared::new(page) };
    shared.init_server(layout.left_order, layout.right_order);
    let (lo, ro) = (layout.left_order, layout.right_order);
    // SAFETY: as above.
    let server = unsafe {
        Vchan::new(
            shared,
            Ring::new(shared, LEFT, left, lo),
            Ring::new(shared, RIGHT, right, ro),
            true,
            srv,
        )
    };
    shared.set_byte(CLI_LIVE, LIVE_OPEN);
    shared.set_byte(SRV_NOTIFY, NOTIFY_WRITE);
    // SAFETY: as above.
    let client = unsafe {
        Vchan::new(
            shared,
            Ring::new(shared, RIGHT, right, ro),
            Ring::new(shared, LEFT, left, lo),
            false,
            cli,
        )
    };
    (server, client)
}
