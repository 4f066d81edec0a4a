//! The byte stream over a vchan's two rings, with libxenvchan's
//! notification protocol (`tools/libs/vchan/io.c`):
//! - before sleeping for data, a side sets `NOTIFY_WRITE` in the PEER's
//!   notify byte (a full barrier) and looks at the indexes again, so a
//!   write that came in between is not missed; before sleeping for space,
//!   `NOTIFY_READ` likewise;
//! - after moving `prod` (a write) or `cons` (a read), a side fetches and
//!   clears that bit in ITS OWN byte and kicks the event channel only if
//!   it was set: a peer that is not waiting costs no event.
//!
//! A side is open while the peer's live byte is non-zero (`cli_live` for
//! the server, `srv_live` for the client) and the peer's domain exists:
//! the peer's close, or its kernel's unmap notify when its process dies,
//! clears the byte and kicks; a destroyed domain cannot, so a blocked
//! call also asks [`Events::peer_alive`] each time its wait times out
//! (Xen unbinds the peer's end of the event channel when it dies).

use crate::shared::{
    CLI_LIVE, CLI_NOTIFY, LIVE_CLOSED, LIVE_WAITING, NOTIFY_READ, NOTIFY_WRITE, SRV_LIVE,
    SRV_NOTIFY, Shared,
};
use crate::{Error, ring::Ring};

/// The event channel of a vchan and the peer's liveness, as the stream
/// needs them (the Xen set-up in `connect`, a simulated peer in tests).
pub trait Events {
    /// Kicks the peer.
    fn notify(&mut self) -> Result<(), Error>;
    /// Waits for a kick from the peer, for at most the poll interval:
    /// `Ok(true)` when one came, `Ok(false)` when the time ran out.
    fn wait(&mut self) -> Result<bool, Error>;
    /// Whether the peer still holds its end of the event channel (its
    /// domain is alive); `connected`: the peer connected once (a server
    /// waiting for its client sees an unbound port).
    fn peer_alive(&mut self, connected: bool) -> bool;
}

/// One end of a vchan: libxenvchan's `struct libxenvchan`.
pub struct Vchan<E: Events> {
    /// The shared page.
    shared: Shared,
    /// The ring this side reads.
    rx: Ring,
    /// The ring this side writes.
    tx: Ring,
    /// The server's end (else the client's).
    server: bool,
    /// Whether `read` and `write` wait.
    blocking: bool,
    /// The peer's domain was found gone.
    peer_gone: bool,
    /// Events sent to the peer.
    kicks: u64,
    /// The event channel and the resources behind the rings.
    events: E,
}

impl<E: Events> Vchan<E> {
    /// The end whose shared page is `shared` and rings `rx` and `tx`.
    pub(crate) fn new(shared: Shared, rx: Ring, tx: Ring, server: bool, events: E) -> Self {
        Self {
            shared,
            rx,
            tx,
            server,
            blocking: true,
            peer_gone: false,
            kicks: 0,
            events,
        }
    }

    /// Makes `read` and `write` wait (the default) or return what they
    /// can at once.
    pub fn set_blocking(&mut self, blocking: bool) {
        self.blocking = blocking;
    }

    /// The resources behind the stream, to use.
    pub(crate) fn events_mut(&mut self) -> &mut E {
        &mut self.events
    }

    /// Events this end has sent the peer (data and space kicks).
    pub fn kicks(&self) -> u64 {
        self.kicks
    }

    /// The sizes of the read and write rings.
    pub fn ring_sizes(&self) -> (usize, usize) {
        (self.rx.size() as usize, self.tx.size() as usize)
    }

    /// `(own notify byte, peer's notify byte)`.
    fn notify_bytes(&self) -> (usize, usize) {
        if self.server {
            (SRV_NOTIFY, CLI_NOTIFY)
        } else {
            (CLI_NOTIFY, SRV_NOTIFY)
        }
    }

    /// Asks the peer to kick us for `bit` (libxenvchan's `request_notify`).
    fn request_notify(&self, bit: u8) {
        self.shared.or_byte(self.notify_bytes().1, bit);
    }

    /// Kicks the peer if it asked for `bit` (libxenvchan's `send_notify`).
    fn send_notify(&mut self, bit: u8) -> Result<(), Error> {
        if self.shared.take_bits(self.notify_bytes().0, bit) & bit != 0 {
            self.kicks += 1;
            self.events.notify()?;
        }
        Ok(())
    }

    /// Whether the peer is still there (`libxenvchan_is_open`).
    pub fn is_open(&self) -> bool {
        let live = if self.server { CLI_LIVE } else { SRV_LIVE };
        !self.peer_gone && self.shared.byte(live) != LIVE_CLOSED
    }

    /// Bytes ready to read (`libxenvchan_data_ready`): asks to be kicked
    /// when more come; 0 if the ring's indexes are inconsistent.
    pub fn data_ready(&self) -> usize {
        self.request_notify(NOTIFY_WRITE);
        self.rx.filled().unwrap_or(0) as usize
    }

    /// Bytes that can be written (`libxenvchan_buffer_space`): asks to be
    /// kicked when the peer reads; 0 if the indexes are inconsistent.
    pub fn buffer_space(&self) -> usize {
        self.request_notify(NOTIFY_READ);
        self.tx.space().unwrap_or(0) as usize
    }

    /// Waits for a kick from the peer (`libxenvchan_wait`), or until its
    /// domain is found gone.
    pub fn wait(&mut self) -> Result<(), Error> {
        while !self.wait_once()? {}
        Ok(())
    }

    /// One wait of at most the poll interval; true when a kick came or
    /// the peer is gone (then `is_open` is false).
    fn wait_once(&mut self) -> Result<bool, Error> {
        if self.events.wait()? {
            return Ok(true);
        }
        let connected = !self.server || self.shared.byte(CLI_LIVE) != LIVE_WAITING;
        if !self.events.peer_alive(connected) {
            self.peer_gone = true;
            return Ok(true);
        }
        Ok(false)
    }

    /// `level()` (data ready or space), asking for the kick of `bit` and
    /// looking again when it is below `want` (libxenvchan's
    /// `fast_get_data_ready` and `fast_get_buffer_space`: a change between
    /// the first look and the request would bring no kick).
    fn fast(&self, level: impl Fn() -> Option<u32>, bit: u8, want: usize) -> Option<u32> {
        match level() {
            Some(n) if n as usize >= want => Some(n),
            _ => {
                self.request_notify(bit);
                level()
            }
        }
    }

    /// Reads up to `buf.len()` bytes (`libxenvchan_read`): what is ready,
    /// waiting for some when blocking. `Ok(0)` only when not blocking and
    /// nothing is ready (or `buf` is empty); [`Error::Closed`] once the
    /// peer is gone and its data read; [`Error::Protocol`] when the
    /// peer's indexes are inconsistent (libxenvchan would wait forever).
    pub fn read(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            let ready = self
                .fast(|| self.rx.filled(), NOTIFY_WRITE, buf.len())
                .ok_or(Error::Protocol)? as usize;
            if ready > 0 {
                let n = ready.min(buf.len());
                self.rx.read(&mut buf[..n]);
                self.send_notify(NOTIFY_READ)?;
                return Ok(n);
            }
            if !self.is_open() {
                return Err(Error::Closed);
            }
            if !self.blocking {
                return Ok(0);
            }
            self.wait_once()?;
        }
    }

    /// Writes `buf` (`libxenvchan_write`): all of it when blocking, what
    /// fits when not; [`Error::Closed`] when the peer is gone,
    /// [`Error::Protocol`] as [`read`](Self::read).
    pub fn write(&mut self, buf: &[u8]) -> Result<usize, Error> {
        let mut done = 0;
        loop {
            if !self.is_open() {
                return Err(Error::Closed);
            }
            let rest = &buf[done..];
            let space = self
                .fast(|| self.tx.space(), NOTIFY_READ, rest.len())
                .ok_or(Error::Protocol)? as usize;
            let n = space.min(rest.len());
            if n > 0 {
                self.tx.write(&rest[..n]);
                self.send_notify(NOTIFY_WRITE)?;
                done += n;
            }
            if done == buf.len() || !self.blocking {
                return Ok(done);
            }
            if n == 0 {
                self.wait_once()?;
            }
        }
    }
}

impl<E: Events> Vchan<E> {
    /// Waits until the peer has read everything written: closing loses
    /// nothing then (libxenvchan's readers drop what is left in the ring
    /// when they see the close). [`Error::Closed`] if the peer goes first.
    pub fn flush(&mut self) -> Result<(), Error> {
        let size = self.tx.size();
        loop {
            let space = self
                .fast(|| self.tx.space(), NOTIFY_READ, size as usize)
                .ok_or(Error::Protocol)?;
            if space == size {
                return Ok(());
            }
            if !self.is_open() {
                return Err(Error::Closed);
            }
            self.wait_once()?;
        }
    }
}

impl<E: Events> Drop for Vchan<E> {
    /// Closes this end (`libxenvchan_close`): its live byte to 0 and a
    /// kick, so the peer's blocked calls return; then `E` releases the
    /// rings, the page, the event channel and the xenstore keys.
    fn drop(&mut self) {
        let own = if self.server { SRV_LIVE } else { CLI_LIVE };
        self.shared.set_byte(own, LIVE_CLOSED);
        if !self.peer_gone {
            let _ = self.events.notify();
        }
    }
}
