//! A xenstore client over the shared ring page (`io/xs_wire.h`).
//!
//! Messages are a [`XsdSockmsg`] header and `len` payload bytes, written
//! into the 1 KiB request ring and read from the reply ring in as many
//! pieces as the rings allow (a message may be larger than a ring). Each
//! request carries a fresh id; the reply with that id answers it.
//! `XS_WATCH_EVENT` messages arrive at any time on the reply ring: they are
//! queued apart from replies ([`Xenstore::poll_watch`]).
//!
//! The client is generic over [`XsHooks`]: how to notify xenstored (the
//! store event channel) and how to wait for it (block on that channel in
//! the kernel; run a fake xenstored in host tests).

use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec::Vec;
use core::ptr::addr_of_mut;

use crate::abi::xs_wire::{
    XENSTORE_PAYLOAD_MAX, XENSTORE_RING_SIZE, XSD_ERRORS, XSD_SOCKMSG_SIZE,
    XenstoreDomainInterface, XsdSockmsg, msg,
};
use crate::abi::{DomId, Port};
use crate::hypercall::XenErrno;
use crate::ring::ByteRing;

/// A transaction id; [`TxId::NONE`] outside a transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxId(pub u32);

impl TxId {
    /// No transaction.
    pub const NONE: Self = Self(0);
}

/// How the client signals and waits for xenstored.
pub trait XsHooks {
    /// Tells xenstored the rings changed (send on the store channel).
    fn notify(&mut self);
    /// Waits until xenstored may have made progress.
    fn wait(&mut self);
}

/// The hooks for a real guest: send on the store event channel, yield
/// while waiting (a kernel with an event-driven wait supplies its own).
#[derive(Clone, Copy, Debug)]
pub struct XenHooks {
    /// The store event channel (`HVM_PARAM_STORE_EVTCHN`).
    pub port: Port,
}

impl XsHooks for XenHooks {
    fn notify(&mut self) {
        // A failed send is retried by the next notify; xenstored also polls.
        let _ = crate::event_channel::send(self.port);
    }
    fn wait(&mut self) {
        crate::sched::yield_now();
    }
}

/// A watch firing: `path` changed; `token` is the watch's token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchEvent {
    /// The path that changed (at or below the watched path).
    pub path: String,
    /// The token given to [`Xenstore::watch`].
    pub token: String,
}

/// Access a domain has to a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// `n`: none.
    None,
    /// `r`: read.
    Read,
    /// `w`: write.
    Write,
    /// `b`: read and write.
    Both,
}

/// One entry of a node's permissions: the first names the owner and the
/// default access of everyone else.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Perm {
    /// The domain.
    pub domid: DomId,
    /// Its access.
    pub access: Access,
}

impl Perm {
    fn parse(s: &str) -> Option<Self> {
        let access = match s.as_bytes().first()? {
            b'n' => Access::None,
            b'r' => Access::Read,
            b'w' => Access::Write,
            b'b' => Access::Both,
            _ => return None,
        };
        Some(Self {
            domid: s[1..].parse().ok()?,
            access,
        })
    }

    fn encode(&self, out: &mut Vec<u8>) {
        out.push(match self.access {
            Access::None => b'n',
            Access::Read => b'r',
            Access::Write => b'w',
            Access::Both => b'b',
        });
        out.extend_from_slice(alloc::format!("{}", self.domid).as_bytes());
        out.push(0);
    }
}

/// The errno for an `XS_ERROR` name (`EINVAL` for an unknown one, as
/// Linux's xenbus does).
pub fn errno_of(name: &str) -> XenErrno {
    XSD_ERRORS
        .iter()
        .find(|(_, n)| *n == name)
        .map_or(XenErrno::EINVAL, |&(e, _)| XenErrno(e))
}

/// Counters of the client.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XsStats {
    /// Requests sent.
    pub requests: u64,
    /// Watch events received.
    pub watch_events: u64,
    /// Transactions restarted after `EAGAIN`.
    pub tx_retries: u64,
    /// Calls of [`XsHooks::wait`].
    pub waits: u64,
}

/// The xenstore client.
pub struct Xenstore<H> {
    req: ByteRing,
    rsp: ByteRing,
    hooks: H,
    next_id: u32,
    /// The message being received: header then payload.
    rx: Vec<u8>,
    replies: VecDeque<(XsdSockmsg, Vec<u8>)>,
    watches: VecDeque<WatchEvent>,
    /// The watches registered (path, token), for [`Self::reconnect`].
    registered: Vec<(String, String)>,
    /// Set when xenstored broke the protocol; every call fails then.
    broken: bool,
    stats: XsStats,
}

// SAFETY: the page is shared with xenstored only; `&mut self` serialises
// our side.
unsafe impl<H: Send> Send for Xenstore<H> {}

impl<H> core::fmt::Debug for Xenstore<H> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Xenstore")
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl<H: XsHooks> Xenstore<H> {
    /// A client on the xenstore page at `page`.
    ///
    /// # Safety
    /// `page` must be the xenstore page (`HVM_PARAM_STORE_PFN`, or a test's
    /// memory), valid for reads and writes while this value lives, and no
    /// other client may use it.
    pub unsafe fn new(page: *mut XenstoreDomainInterface, hooks: H) -> Self {
        // SAFETY: the caller guarantees `page`; the fields are inside it
        // and the ring size is a power of two.
        let (req, rsp) = unsafe {
            (
                ByteRing::new(
                    addr_of_mut!((*page).req).cast(),
                    XENSTORE_RING_SIZE,
                    addr_of_mut!((*page).req_cons),
                    addr_of_mut!((*page).req_prod),
                ),
                ByteRing::new(
                    addr_of_mut!((*page).rsp).cast(),
                    XENSTORE_RING_SIZE,
                    addr_of_mut!((*page).rsp_cons),
                    addr_of_mut!((*page).rsp_prod),
                ),
            )
        };
        Self {
            req,
            rsp,
            hooks,
            next_id: 1,
            rx: Vec::new(),
            replies: VecDeque::new(),
            watches: VecDeque::new(),
            registered: Vec::new(),
            broken: false,
            stats: XsStats::default(),
        }
    }

    /// The hooks.
    pub fn hooks(&mut self) -> &mut H {
        &mut self.hooks
    }

    /// The counters.
    pub fn stats(&self) -> XsStats {
        self.stats
    }

    fn wait(&mut self) {
        self.stats.waits += 1;
        self.hooks.wait();
    }

    /// Moves whatever the reply ring holds into the queues.
    fn pump(&mut self) -> Result<(), XenErrno> {
        if self.broken {
            return Err(XenErrno::EPROTO);
        }
        let mut took = false;
        loop {
            let want = if self.rx.len() < XSD_SOCKMSG_SIZE {
                XSD_SOCKMSG_SIZE - self.rx.len()
            } else {
                let len = header(&self.rx).len as usize;
                if len > XENSTORE_PAYLOAD_MAX {
                    self.broken = true;
                    return Err(XenErrno::EPROTO);
                }
                XSD_SOCKMSG_SIZE + len - self.rx.len()
            };
            if want > 0 {
                let mut chunk = [0u8; XENSTORE_RING_SIZE];
                let n = self.rsp.consume(&mut chunk[..want.min(XENSTORE_RING_SIZE)]);
                if n == 0 {
                    break;
                }
                took = true;
                self.rx.extend_from_slice(&chunk[..n]);
                continue;
            }
            // A whole message (possibly with an empty payload).
            let h = header(&self.rx);
            let body = self.rx.split_off(XSD_SOCKMSG_SIZE);
            self.rx.clear();
            if h.type_ == msg::WATCH_EVENT {
                let mut parts = body.split(|&b| b == 0);
                let path = parts.next().unwrap_or_default();
                let token = parts.next().unwrap_or_default();
                self.stats.watch_events += 1;
                self.watches.push_back(WatchEvent {
                    path: String::from_utf8_lossy(path).into_owned(),
                    token: String::from_utf8_lossy(token).into_owned(),
                });
            } else {
                self.replies.push_back((h, body));
            }
        }
        if took {
            // xenstored may wait for room in the reply ring.
            self.hooks.notify();
        }
        Ok(())
    }

    /// Sends one message made of `parts` and returns its reply payload.
    pub fn request(&mut self, ty: u32, tx: TxId, parts: &[&[u8]]) -> Result<Vec<u8>, XenErrno> {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        if len > XENSTORE_PAYLOAD_MAX {
            return Err(XenErrno::E2BIG);
        }
        self.pump()?;
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        let h = XsdSockmsg {
            type_: ty,
            req_id: id,
            tx_id: tx.0,
            len: len as u32,
        };
        let mut hb = [0u8; XSD_SOCKMSG_SIZE];
        for (i, v) in [h.type_, h.req_id, h.tx_id, h.len].iter().enumerate() {
            hb[i * 4..i * 4 + 4].copy_from_slice(&v.to_ne_bytes());
        }
        self.stats.requests += 1;
        for mut bytes in core::iter::once(&hb[..]).chain(parts.iter().copied()) {
            while !bytes.is_empty() {
                let n = self.req.produce(bytes);
                bytes = &bytes[n..];
                if n == 0 {
                    self.hooks.notify();
                    // Keep draining replies: xenstored may be blocked on
                    // a full reply ring before it reads more requests.
                    self.pump()?;
                    self.wait();
                }
            }
        }
        self.hooks.notify();
        loop {
            self.pump()?;
            if let Some(i) = self.replies.iter().position(|(r, _)| r.req_id == id) {
                let (r, body) = self.replies.remove(i).expect("found");
                // Replies nobody waits for any more are stale: drop them.
                self.replies.clear();
                if r.type_ == msg::ERROR {
                    let name = body.split(|&b| b == 0).next().unwrap_or_default();
                    return Err(errno_of(core::str::from_utf8(name).unwrap_or("")));
                }
                if r.type_ != ty {
                    return Err(XenErrno::EPROTO);
                }
                return Ok(body);
            }
            self.wait();
        }
    }

    /// The value at `path`.
    pub fn read(&mut self, tx: TxId, path: &str) -> Result<Vec<u8>, XenErrno> {
        self.request(msg::READ, tx, &[path.as_bytes(), b"\0"])
    }

    /// Sets `path` to `value`, creating it (and its parents).
    pub fn write(&mut self, tx: TxId, path: &str, value: &[u8]) -> Result<(), XenErrno> {
        self.request(msg::WRITE, tx, &[path.as_bytes(), b"\0", value])
            .map(drop)
    }

    /// Creates `path` with an empty value if it does not exist.
    pub fn mkdir(&mut self, tx: TxId, path: &str) -> Result<(), XenErrno> {
        self.request(msg::MKDIR, tx, &[path.as_bytes(), b"\0"])
            .map(drop)
    }

    /// Removes `path` and everything below it.
    pub fn rm(&mut self, tx: TxId, path: &str) -> Result<(), XenErrno> {
        self.request(msg::RM, tx, &[path.as_bytes(), b"\0"])
            .map(drop)
    }

    /// The names of `path`'s children.
    pub fn directory(&mut self, tx: TxId, path: &str) -> Result<Vec<String>, XenErrno> {
        let body = self.request(msg::DIRECTORY, tx, &[path.as_bytes(), b"\0"])?;
        Ok(strings(&body))
    }

    /// `path`'s permissions (owner first).
    pub fn get_perms(&mut self, tx: TxId, path: &str) -> Result<Vec<Perm>, XenErrno> {
        let body = self.request(msg::GET_PERMS, tx, &[path.as_bytes(), b"\0"])?;
        strings(&body)
            .iter()
            .map(|s| Perm::parse(s).ok_or(XenErrno::EPROTO))
            .collect()
    }

    /// Sets `path`'s permissions (owner first).
    pub fn set_perms(&mut self, tx: TxId, path: &str, perms: &[Perm]) -> Result<(), XenErrno> {
        let mut enc = Vec::new();
        for p in perms {
            p.encode(&mut enc);
        }
        self.request(msg::SET_PERMS, tx, &[path.as_bytes(), b"\0", &enc])
            .map(drop)
    }

    /// Watches `path` (and below); events carry `token`. xenstored fires
    /// the watch once at once.
    pub fn watch(&mut self, path: &str, token: &str) -> Result<(), XenErrno> {
        self.send_watch(path, token)?;
        self.registered
            .push((String::from(path), String::from(token)));
        Ok(())
    }

    fn send_watch(&mut self, path: &str, token: &str) -> Result<(), XenErrno> {
        self.request(
            msg::WATCH,
            TxId::NONE,
            &[path.as_bytes(), b"\0", token.as_bytes(), b"\0"],
        )
        .map(drop)
    }

    /// Removes a watch.
    pub fn unwatch(&mut self, path: &str, token: &str) -> Result<(), XenErrno> {
        self.request(
            msg::UNWATCH,
            TxId::NONE,
            &[path.as_bytes(), b"\0", token.as_bytes(), b"\0"],
        )?;
        if let Some(i) = self
            .registered
            .iter()
            .position(|(p, t)| p == path && t == token)
        {
            self.registered.swap_remove(i);
        }
        Ok(())
    }

    /// Starts over after a move (a domain resumed after a save or a
    /// migration: xenstored knows nothing of us) on a ring that the
    /// toolstack cleared (PVH) or left as saved (PV, whose indices go
    /// on): forgets the message half received, the replies nobody waits
    /// for and any bytes of the old connection left in the reply ring
    /// (Linux's `xb_init_comms` does the same), then registers every
    /// watch again. Each fires
    /// once at registration, so its owner looks at what it watches, which
    /// may have changed meanwhile. Queued watch events are kept. Returns
    /// how many watches were registered again; a watch xenstored refuses
    /// now is dropped.
    pub fn reconnect(&mut self) -> Result<usize, XenErrno> {
        let stale = self.rsp.used();
        self.rsp.advance(stale);
        self.rx.clear();
        self.replies.clear();
        self.broken = false;
        let mut kept = Vec::with_capacity(self.registered.len());
        for (path, token) in core::mem::take(&mut self.registered) {
            match self.send_watch(&path, &token) {
                Ok(()) => kept.push((path, token)),
                Err(XenErrno::EPROTO) => return Err(XenErrno::EPROTO),
                Err(_) => {}
            }
        }
        self.registered = kept;
        Ok(self.registered.len())
    }

    /// The next watch event received, without waiting.
    pub fn poll_watch(&mut self) -> Result<Option<WatchEvent>, XenErrno> {
        self.pump()?;
        Ok(self.watches.pop_front())
    }

    /// The next watch event, waiting for one.
    pub fn wait_watch(&mut self) -> Result<WatchEvent, XenErrno> {
        loop {
            if let Some(e) = self.poll_watch()? {
                return Ok(e);
            }
            self.wait();
        }
    }

    /// Starts a transaction.
    pub fn transaction_start(&mut self) -> Result<TxId, XenErrno> {
        let body = self.request(msg::TRANSACTION_START, TxId::NONE, &[b"\0"])?;
        let s = strings(&body);
        s.first()
            .and_then(|id| id.parse().ok())
            .map(TxId)
            .ok_or(XenErrno::EPROTO)
    }

    /// Ends a transaction: commits it, or aborts it. A commit fails with
    /// `EAGAIN` when another writer got in first: redo the transaction.
    pub fn transaction_end(&mut self, tx: TxId, commit: bool) -> Result<(), XenErrno> {
        let flag: &[u8] = if commit { b"T\0" } else { b"F\0" };
        self.request(msg::TRANSACTION_END, tx, &[flag]).map(drop)
    }

    /// Runs `body` in a transaction and commits it, redoing the whole
    /// transaction when the commit fails with `EAGAIN`, at most
    /// `max_tries` times. An error from `body` aborts the transaction.
    pub fn transaction<T>(
        &mut self,
        max_tries: u32,
        mut body: impl FnMut(&mut Self, TxId) -> Result<T, XenErrno>,
    ) -> Result<T, XenErrno> {
        for attempt in 0..max_tries {
            if attempt > 0 {
                self.stats.tx_retries += 1;
            }
            let tx = self.transaction_start()?;
            let value = match body(self, tx) {
                Ok(v) => v,
                Err(e) => {
                    // The body's error is what matters; the abort's is not.
                    let _ = self.transaction_end(tx, false);
                    return Err(e);
                }
            };
            match self.transaction_end(tx, true) {
                Ok(()) => return Ok(value),
                Err(XenErrno::EAGAIN) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(XenErrno::EAGAIN)
    }
}

fn header(b: &[u8]) -> XsdSockmsg {
    let w = |i: usize| u32::from_ne_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    XsdSockmsg {
        type_: w(0),
        req_id: w(4),
        tx_id: w(8),
        len: w(12),
    }
}

/// The NUL-terminated strings of a payload.
fn strings(body: &[u8]) -> Vec<String> {
    let body = body.strip_suffix(b"\0").unwrap_or(body);
    if body.is_empty() {
        return Vec::new();
    }
    body.split(|&b| b == 0)
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

#[cfg(test)]
mod tests;
