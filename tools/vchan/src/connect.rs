//! Setting a vchan up over our devices, as libxenvchan's `init.c` does
//! over Linux's: [`server`] shares the pages and publishes them,
//! [`client`] finds and maps them. [`Xen`] holds what each end set up and
//! releases it when the [`Vchan`] is dropped.
//!
//! Server (`libxenvchan_server_init`): an unbound event channel for the
//! peer; the shared page, shared writable with an unmap notify that
//! clears `srv_live` and kicks the port; rings of order 12 and more in
//! pages of their own, their references in `grants[]`; then, in ONE
//! xenstore transaction (started again on `EAGAIN`), `<path>/ring-ref`
//! and `<path>/event-channel` in decimal, each with the permissions
//! `[{self, none}, {peer, read}]`. Dropping the end removes `<path>`.
//!
//! Client (`libxenvchan_client_init`): reads both keys (a value that is
//! not a non-zero decimal number is refused, as libxenvchan refuses 0),
//! binds the event channel, maps the shared page writable with an unmap
//! notify on `cli_live`, checks the orders and grant list, maps its write
//! ring (left) writable and its read ring (right) read-only, then sets
//! `cli_live` and `srv_notify` and kicks the server.

use crate::ring::Ring;
use crate::shared::{
    CLI_LIVE, LEFT, LIVE_OPEN, Layout, LayoutError, MAX_RING_SHIFT, NOTIFY_WRITE, PAGE_SHIFT,
    Place, RIGHT, SRV_LIVE, SRV_NOTIFY, Shared,
};
use crate::stream::{Events, Vchan};
use crate::{Error, parse_key};
use gnttab::evtchn::Evtchn;
use gnttab::xs::{Fmt, Xs, XsError};
use gnttab::{Buf, Gnttab, Notify};
use urt::evtchn::{EVTCHN_STATUS_INTERDOMAIN, EVTCHN_STATUS_UNBOUND};

/// How long one wait for the peer's kick lasts before the stream looks
/// whether the peer's domain still exists.
pub const POLL_NS: u64 = 50_000_000;
/// Transaction attempts before the server gives up on `EAGAIN`.
const TX_ATTEMPTS: usize = 16;

/// The set-up of one end: the devices and everything to release.
pub struct Xen {
    gnt: Gnttab,
    ev: Evtchn,
    xs: Xs,
    /// The peer's domain.
    peer: u32,
    /// The server's end: pages are shares (else mappings of the peer's).
    server: bool,
    /// Our port of the event channel (0: none yet).
    port: u32,
    /// The shared page (0: none yet).
    page: u64,
    /// Rings in pages of their own: address and pages (0: none).
    rings: [(u64, usize); 2],
    /// The server's xenstore directory, removed at close.
    path: Option<Fmt>,
}

impl Xen {
    fn open(peer: u32, server: bool) -> Result<Self, Error> {
        let ev = Evtchn::open().map_err(|e| Error::Sys("open /dev/xen/evtchn", e))?;
        ev.set_timeout(POLL_NS)
            .map_err(|e| Error::Sys("evtchn timeout", e))?;
        Ok(Self {
            gnt: Gnttab::open().map_err(|e| Error::Sys("open /dev/xen/gntdev", e))?,
            ev,
            xs: Xs::open().map_err(|e| Error::Store("open /dev/xen/xenstore", e))?,
            peer,
            server,
            port: 0,
            page: 0,
            rings: [(0, 0); 2],
            path: None,
        })
    }

    /// Releases a share (server) or a mapping (client) of `pages` at `addr`.
    fn release(&self, addr: u64, pages: usize) {
        let _ = if self.server {
            self.gnt.unshare(addr, pages)
        } else {
            self.gnt.unmap(addr, pages)
        };
    }

    /// A ring's bytes: in the page, or the `i`th ring of its own pages.
    fn ring_at(&self, place: Place, i: usize) -> *mut u8 {
        match place {
            Place::InPage(off) => (self.page as usize + off) as *mut u8,
            Place::Pages(_) => self.rings[i].0 as *mut u8,
        }
    }
}

impl Events for Xen {
    fn notify(&mut self) -> Result<(), Error> {
        self.ev
            .notify(self.port)
            .map(drop)
            .map_err(|e| Error::Sys("evtchn notify", e))
    }

    fn wait(&mut self) -> Result<bool, Error> {
        match self.ev.wait() {
            Ok(_) => Ok(true),
            Err(urt::errno::ETIMEDOUT) => Ok(false),
            Err(e) => Err(Error::Sys("evtchn wait", e)),
        }
    }

    fn peer_alive(&mut self, connected: bool) -> bool {
        // Xen unbinds our end when the peer closes its end or dies; a
        // status we cannot read counts as alive (the live byte decides).
        match self.ev.status(self.port) {
            Ok(EVTCHN_STATUS_UNBOUND) => !connected,
            Ok(s) => s == EVTCHN_STATUS_INTERDOMAIN,
            Err(_) => true,
        }
    }
}

impl Drop for Xen {
    fn drop(&mut self) {
        for (addr, pages) in self.rings {
            if addr != 0 {
                self.release(addr, pages);
            }
        }
        if self.page != 0 {
            self.release(self.page, 1);
        }
        if self.port != 0 {
            let _ = self.ev.unbind(self.port);
        }
        if let Some(p) = &self.path {
            let _ = self.xs.rm(p.as_str());
        }
    }
}

/// Offers a vchan to domain `peer` at xenstore directory `path`, with
/// rings of at least `left_min` (client to server) and `right_min`
/// (server to client) bytes (`libxenvchan_server_init`; 0 and 0 give
/// libxenvchan's in-page rings of 1024 and 2048 bytes). The client may
/// connect later: until then [`Vchan::is_open`] is true and writes fill
/// the ring.
pub fn server(
    peer: u16,
    path: &str,
    left_min: usize,
    right_min: usize,
) -> Result<Vchan<Xen>, Error> {
    let layout = Layout::for_sizes(left_min, right_min).map_err(Error::Layout)?;
    let mut x = Xen::open(u32::from(peer), true)?;
    let me =
        x.xs.read_u64("domid")
            .map_err(|e| Error::Store("read domid", e))? as u32;
    x.port = nonzero(x.ev.bind_unbound_port(u32::from(peer)), "bind_unbound_port")?;
    let mut ring_ref = 0;
    let notify = Notify {
        offset: Some(SRV_LIVE as u64),
        port: Some(x.port),
    };
    x.page = x
        .gnt
        .share_page_notify(peer, true, notify, &mut ring_ref)
        .map_err(|e| Error::Sys("share the ring page", e))?;
    nonzero(Ok(ring_ref), "ring page grant")?;
    // SAFETY: the page was just shared with us read-write and stays
    // mapped until `x` is dropped, after the Vchan that uses it.
    let shared = unsafe { Shared::new(x.page as *mut u8) };
    shared.init_server(layout.left_order, layout.right_order);
    let mut next = 0;
    for (i, place) in [layout.left(), layout.right()].into_iter().enumerate() {
        if let Place::Pages(n) = place {
            let mut refs = Buf::<u32>::new(n).map_err(|e| Error::Sys("grant list", e))?;
            let addr = x
                .gnt
                .share_pages(peer, refs.values(), true, None)
                .map_err(|e| Error::Sys("share the ring pages", e))?;
            x.rings[i] = (addr, n);
            for &r in refs.values().iter() {
                shared.set_grant(next, nonzero(Ok(r), "ring grant")?);
                next += 1;
            }
        }
    }
    publish(&mut x, path, me, ring_ref)?;
    // SAFETY: the rings lie in the page or in their own shares, mapped
    // read-write until `x` is dropped.
    let (rx, tx) = unsafe {
        (
            Ring::new(shared, LEFT, x.ring_at(layout.left(), 0), layout.left_order),
            Ring::new(
                shared,
                RIGHT,
                x.ring_at(layout.right(), 1),
                layout.right_order,
            ),
        )
    };
    Ok(Vchan::new(shared, rx, tx, true, x))
}

/// Writes `<path>/ring-ref` and `<path>/event-channel` with libxenvchan's
/// permissions in one transaction; `x` removes `path` from then on.
fn publish(x: &mut Xen, path: &str, me: u32, ring_ref: u32) -> Result<(), Error> {
    let mut dir = Fmt::new();
    dir.push(path.as_bytes());
    x.path = Some(dir);
    let mut key = Fmt::new();
    let mut val = Fmt::new();
    for attempt in 1.. {
        x.xs.transaction_start()
            .map_err(|e| Error::Store("transaction start", e))?;
        let mut r: Result<(), XsError> = Ok(());
        for (name, v) in [("/ring-ref", ring_ref), ("/event-channel", x.port)] {
            key.clear().push(path.as_bytes()).push(name.as_bytes());
            val.clear().num(u64::from(v));
            r = r
                .and_then(|()| x.xs.write(key.as_str(), val.as_bytes()))
                .and_then(|()| x.xs.set_perms_owner_reader(key.as_str(), me, x.peer));
        }
        if let Err(e) = r {
            let _ = x.xs.transaction_end(false);
            return Err(Error::Store("publish the keys", e));
        }
        match x.xs.transaction_end(true) {
            Ok(()) => return Ok(()),
            Err(e) if e.is("EAGAIN") && attempt < TX_ATTEMPTS => {}
            Err(e) => return Err(Error::Store("transaction end", e)),
        }
    }
    unreachable!("the loop returns")
}

/// Connects to the vchan domain `peer` offers at xenstore directory
/// `path` (`libxenvchan_client_init`).
pub fn client(peer: u16, path: &str) -> Result<Vchan<Xen>, Error> {
    let mut x = Xen::open(u32::from(peer), false)?;
    let mut key = Fmt::new();
    let mut val = [0u8; 32];
    let mut read = |name: &'static str| -> Result<u32, Error> {
        key.clear()
            .push(path.as_bytes())
            .push(b"/")
            .push(name.as_bytes());
        let n =
            x.xs.read(key.as_str(), &mut val)
                .map_err(|e| Error::Store(name, e))?;
        parse_key(name, &val[..n])
    };
    let (ring_ref, remote_port) = (read("ring-ref")?, read("event-channel")?);
    x.port = nonzero(
        x.ev.bind_interdomain(u32::from(peer), remote_port),
        "bind_interdomain",
    )?;
    let notify = Notify {
        offset: Some(CLI_LIVE as u64),
        port: Some(x.port),
    };
    x.page = x
        .gnt
        .map_grant_refs(&[u32::from(peer)], &[ring_ref], true, Some(notify))
        .map_err(|e| Error::Sys("map the ring page", e))?;
    // SAFETY: mapped read-write until `x` is dropped, after the Vchan.
    let shared = unsafe { Shared::new(x.page as *mut u8) };
    let layout = Layout::read(&shared).map_err(Error::Layout)?;
    // The grant list, read once, left ring's pages first.
    let mut refs = [0u32; 2 << (MAX_RING_SHIFT - PAGE_SHIFT)];
    let count = layout.grant_count();
    for (i, r) in refs[..count].iter_mut().enumerate() {
        *r = shared
            .grant(i)
            .ok_or(Error::Layout(LayoutError::GrantsOverflow))?;
    }
    let mut next = 0;
    for (i, place) in [layout.left(), layout.right()].into_iter().enumerate() {
        if let Place::Pages(n) = place {
            // The client writes the left ring and only reads the right.
            let addr = x
                .gnt
                .map_domain_grant_refs(u32::from(peer), &refs[next..next + n], i == 0)
                .map_err(|e| Error::Sys("map the ring pages", e))?;
            x.rings[i] = (addr, n);
            next += n;
        }
    }
    // SAFETY: the rings lie in the page or in their own mappings (the
    // right one read-only: the client only reads it), mapped until `x`
    // is dropped.
    let (rx, tx) = unsafe {
        (
            Ring::new(
                shared,
                RIGHT,
                x.ring_at(layout.right(), 1),
                layout.right_order,
            ),
            Ring::new(shared, LEFT, x.ring_at(layout.left(), 0), layout.left_order),
        )
    };
    shared.set_byte(CLI_LIVE, LIVE_OPEN);
    shared.set_byte(SRV_NOTIFY, NOTIFY_WRITE);
    let mut v = Vchan::new(shared, rx, tx, false, x);
    v.events_mut().notify()?;
    Ok(v)
}

/// A reference or port Xen handed out, refused when 0 (libxenvchan's
/// peer takes 0 for failure).
fn nonzero(r: Result<u32, i32>, what: &'static str) -> Result<u32, Error> {
    match r {
        Ok(0) => Err(Error::Zero(what)),
        Ok(v) => Ok(v),
        Err(e) => Err(Error::Sys(what, e)),
    }
}
