//! A xenstore client over `/dev/xen/xenstore` (the wire format: an
//! `xsd_sockmsg` header and payload per request, the reply likewise), and
//! watches ([`Watch`], `xs_watch`/`xs_read_watch`), each on an open of
//! its own so that its events never come between a request and its reply,
//! and transactions ([`Xs::transaction_start`]: the requests that follow
//! belong to it until [`Xs::transaction_end`]).

use urt::SysResult;
use urt::xenstore::IOCTL_XENSTORE_SET_READ_TIMEOUT as SET_READ_TIMEOUT;

/// `XS_READ`.
const XS_READ: u32 = 2;
/// `XS_WRITE`.
const XS_WRITE: u32 = 11;
/// `XS_RM`.
const XS_RM: u32 = 13;
/// `XS_WATCH`.
const XS_WATCH: u32 = 4;
/// `XS_TRANSACTION_START`.
const XS_TRANSACTION_START: u32 = 6;
/// `XS_TRANSACTION_END`.
const XS_TRANSACTION_END: u32 = 7;
/// `XS_SET_PERMS`.
const XS_SET_PERMS: u32 = 14;
/// `XS_WATCH_EVENT`.
const XS_WATCH_EVENT: u32 = 15;
/// `XS_ERROR`.
const XS_ERROR: u32 = 16;
/// Largest payload.
pub const PAYLOAD_MAX: usize = 4096;
/// Header size.
const HDR: usize = 16;

/// An open of the device.
pub struct Xs {
    fd: u64,
    next_id: u32,
    /// The transaction requests go in (0: none).
    tx: u32,
    /// Watch events read while waiting for a reply (not kept: a watcher
    /// re-reads what it watches).
    events_skipped: u32,
}

/// A xenstore failure: a system call's errno, or xenstored's error name.
#[derive(Clone, Copy, Debug)]
pub enum XsError {
    /// A system call failed with this errno.
    Sys(i32),
    /// xenstored answered `XS_ERROR` with this name (e.g. `ENOENT`).
    Xs([u8; 16]),
    /// The request does not fit one message, or the reply its buffer.
    TooLong,
    /// The node a wait watched was written and is gone again: its owner's
    /// home was removed (the toolstack does that when the domain dies).
    Gone,
}

impl XsError {
    /// Whether xenstored answered the error `name` (e.g. `"EAGAIN"`).
    pub fn is(&self, name: &str) -> bool {
        matches!(self, Self::Xs(n) if n.split(|&b| b == 0).next() == Some(name.as_bytes()))
    }
}

impl Xs {
    /// Opens `/dev/xen/xenstore`.
    pub fn open() -> Result<Self, XsError> {
        let fd = urt::open(b"/dev/xen/xenstore\0", urt::fcntl::O_RDWR).map_err(XsError::Sys)?;
        Ok(Self {
            fd,
            next_id: 1,
            tx: 0,
            events_skipped: 0,
        })
    }

    fn read_exact(&self, buf: &mut [u8]) -> Result<(), XsError> {
        let mut got = 0;
        while got < buf.len() {
            let n = urt::read(self.fd, &mut buf[got..]).map_err(XsError::Sys)? as usize;
            if n == 0 {
                return Err(XsError::Sys(urt::errno::EINVAL));
            }
            got += n;
        }
        Ok(())
    }

    /// Reads the next message: its type and payload length (the payload
    /// goes to `body`).
    fn read_message(&self, body: &mut [u8; PAYLOAD_MAX]) -> Result<(u32, usize), XsError> {
        let mut h = [0u8; HDR];
        self.read_exact(&mut h)?;
        let word = |i: usize| u32::from_ne_bytes(h[i * 4..i * 4 + 4].try_into().expect("4"));
        let (rty, rlen) = (word(0), word(3) as usize);
        if rlen > PAYLOAD_MAX {
            return Err(XsError::TooLong);
        }
        self.read_exact(&mut body[..rlen])?;
        Ok((rty, rlen))
    }

    /// Sends request `ty` with `parts` as payload; the reply payload goes
    /// to `out`; returns its length.
    fn request(&mut self, ty: u32, parts: &[&[u8]], out: &mut [u8]) -> Result<usize, XsError> {
        let mut msg = [0u8; HDR + PAYLOAD_MAX];
        let mut len = 0;
        for p in parts {
            let end = len + p.len();
            if end > PAYLOAD_MAX {
                return Err(XsError::TooLong);
            }
            msg[HDR + len..HDR + end].copy_from_slice(p);
            len = end;
        }
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        for (i, v) in [ty, id, self.tx, len as u32].iter().enumerate() {
            msg[i * 4..i * 4 + 4].copy_from_slice(&v.to_ne_bytes());
        }
        urt::write(self.fd, &msg[..HDR + len]).map_err(XsError::Sys)?;
        let mut body = [0u8; PAYLOAD_MAX];
        let (rty, rlen) = loop {
            let (rty, rlen) = self.read_message(&mut body)?;
            if rty != XS_WATCH_EVENT {
                break (rty, rlen);
            }
            self.events_skipped += 1;
        };
        if rty == XS_ERROR {
            let mut name = [0u8; 16];
            let n = rlen.saturating_sub(1).min(16);
            name[..n].copy_from_slice(&body[..n]);
            return Err(XsError::Xs(name));
        }
        if rlen > out.len() {
            return Err(XsError::TooLong);
        }
        out[..rlen].copy_from_slice(&body[..rlen]);
        Ok(rlen)
    }

    /// Starts a transaction: the requests that follow are part of it until
    /// [`transaction_end`](Self::transaction_end).
    pub fn transaction_start(&mut self) -> Result<(), XsError> {
        let mut id = [0u8; 16];
        let n = self.request(XS_TRANSACTION_START, &[b"\0"], &mut id)?;
        let tx = parse_u64(id[..n].strip_suffix(b"\0").unwrap_or(&id[..n]))
            .and_then(|t| u32::try_from(t).ok())
            .filter(|&t| t != 0)
            .ok_or(XsError::Sys(urt::errno::EPROTO))?;
        self.tx = tx;
        Ok(())
    }

    /// Ends the transaction, committing it when `commit`; xenstored's
    /// `EAGAIN` says another change came between: start again.
    pub fn transaction_end(&mut self, commit: bool) -> Result<(), XsError> {
        let r = self.request(
            XS_TRANSACTION_END,
            &[if commit { b"T\0" } else { b"F\0" }],
            &mut [0u8; 16],
        );
        self.tx = 0;
        r.map(drop)
    }

    /// Reads `path` into `out`; returns the value's length.
    pub fn read(&mut self, path: &str, out: &mut [u8]) -> Result<usize, XsError> {
        self.request(XS_READ, &[path.as_bytes(), b"\0"], out)
    }

    /// Reads `path` as a decimal number.
    pub fn read_u64(&mut self, path: &str) -> Result<u64, XsError> {
        let mut b = [0u8; 24];
        let n = self.read(path, &mut b)?;
        parse_u64(&b[..n]).ok_or(XsError::Sys(urt::errno::EINVAL))
    }

    /// Writes `value` at `path`.
    pub fn write(&mut self, path: &str, value: &[u8]) -> Result<(), XsError> {
        self.request(XS_WRITE, &[path.as_bytes(), b"\0", value], &mut [0u8; 16])
            .map(drop)
    }

    /// Removes `path` and its children.
    pub fn rm(&mut self, path: &str) -> Result<(), XsError> {
        self.request(XS_RM, &[path.as_bytes(), b"\0"], &mut [0u8; 16])
            .map(drop)
    }

    /// Makes `owner` the owner of `path` with no access for others, and
    /// gives `reader` read access (`nOWNER`, `rREADER`).
    pub fn set_perms_owner_reader(
        &mut self,
        path: &str,
        owner: u32,
        reader: u32,
    ) -> Result<(), XsError> {
        let mut a = Fmt::new();
        a.push(b"n");
        a.num(u64::from(owner));
        a.push(b"\0r");
        a.num(u64::from(reader));
        a.push(b"\0");
        self.request(
            XS_SET_PERMS,
            &[path.as_bytes(), b"\0", a.as_bytes()],
            &mut [0u8; 16],
        )
        .map(drop)
    }

    /// Waits until `path`'s value is one of `wanted` or starts with
    /// `fail_prefix`, for at most `timeout_ns`, woken by `watch`: a
    /// [`Watch`] on `path`, not waited on yet, set before anything that
    /// makes the peer write the node (so that no change of it can come
    /// before the watch). The value goes to `out`, its length is
    /// returned.
    ///
    /// [`XsError::Gone`] when the node's absence says its owner's domain
    /// died (the toolstack removes a dead domain's nodes), as `absent`
    /// tells: waiting on would only wait out the timeout.
    #[allow(clippy::too_many_arguments)]
    pub fn wait_for(
        &mut self,
        watch: &mut Watch,
        path: &str,
        wanted: &[&[u8]],
        fail_prefix: &[u8],
        out: &mut [u8],
        timeout_ns: u64,
        absent: Absent,
    ) -> Result<usize, XsError> {
        let deadline = urt::clock_ns().saturating_add(timeout_ns);
        // Watch events taken: xenstored fires the first when the watch is
        // set, every later one is a change at the node.
        let mut events = 0u32;
        // `events` at the read that last found the node absent, once the
        // watch's first event was taken.
        let mut absent_at = None;
        let mut seen = false;
        loop {
            match self.read(path, out) {
                Ok(n) if wanted.contains(&&out[..n]) || out[..n].starts_with(fail_prefix) => {
                    return Ok(n);
                }
                Ok(_) => (absent_at, seen) = (None, true),
                Err(_) if absent == Absent::MeansGone && seen => return Err(XsError::Gone),
                Err(_) if absent == Absent::NotYet => {}
                Err(_) => match absent_at {
                    Some(at) if events > at => return Err(XsError::Gone),
                    None if events > 0 => absent_at = Some(events),
                    _ => {}
                },
            }
            let now = urt::clock_ns();
            if now >= deadline {
                return Err(XsError::Sys(urt::errno::ETIMEDOUT));
            }
            // The node is read again at least every `RECHECK_NS`, event or
            // not: in one run of 100 rounds a change of the node brought
            // no watch event, and the wait ran out.
            match watch.wait((deadline - now).min(RECHECK_NS)) {
                Ok(()) => events = events.saturating_add(1),
                Err(XsError::Sys(urt::errno::ETIMEDOUT)) => {}
                Err(e) => return Err(e),
            }
        }
    }
}

/// How long [`Xs::wait_for`] trusts its watch before it reads the node
/// again anyway.
pub const RECHECK_NS: u64 = 1_000_000_000;

/// What [`Xs::wait_for`] makes of the node it waits on being absent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Absent {
    /// Its owner never removes it while it lives: absent after it was
    /// seen, its owner's domain is gone.
    MeansGone,
    /// Absent at one read after the watch's first event, changed since
    /// and absent again: its owner wrote it and its domain is gone,
    /// perhaps before we could read what it wrote. A node found present
    /// and then removed is not gone: a peer may clear an old share before
    /// it writes a new one.
    WrittenThenGone,
    /// Its owner removes and writes it again (a share's directory,
    /// cleared before each round), so an absence says nothing: wait.
    NotYet,
}

/// A watch on `path` and below (`xs_watch`), on an open of its own; the
/// device removes it when the open closes (on drop).
pub struct Watch {
    xs: Xs,
}

impl Watch {
    /// Watches `path`, its events carrying `token`. xenstored fires a new
    /// watch once at once: the first [`wait`](Self::wait) returns at once.
    pub fn new(path: &str, token: &str) -> Result<Self, XsError> {
        let mut xs = Xs::open()?;
        xs.request(
            XS_WATCH,
            &[path.as_bytes(), b"\0", token.as_bytes(), b"\0"],
            &mut [0u8; 16],
        )?;
        Ok(Self { xs })
    }

    /// Waits for the next event of the watch, for at most `timeout_ns`
    /// (`ETIMEDOUT`).
    pub fn wait(&mut self, timeout_ns: u64) -> Result<(), XsError> {
        if self.xs.events_skipped > 0 {
            self.xs.events_skipped -= 1;
            return Ok(());
        }
        let mut ns = timeout_ns.max(1);
        urt::ioctl(self.xs.fd, SET_READ_TIMEOUT, &mut ns as *mut u64 as u64)
            .map_err(XsError::Sys)?;
        let mut body = [0u8; PAYLOAD_MAX];
        loop {
            if self.xs.read_message(&mut body)?.0 == XS_WATCH_EVENT {
                return Ok(());
            }
        }
    }
}

impl Drop for Xs {
    fn drop(&mut self) {
        let _: SysResult = urt::close(self.fd);
    }
}

/// Parses a decimal number (surrounding whitespace allowed).
pub fn parse_u64(b: &[u8]) -> Option<u64> {
    let s = core::str::from_utf8(b).ok()?;
    s.trim().parse().ok()
}

/// A small text buffer for building xenstore paths and values without a
/// heap.
pub struct Fmt {
    buf: [u8; PAYLOAD_MAX],
    len: usize,
}

impl Default for Fmt {
    fn default() -> Self {
        Self::new()
    }
}

impl Fmt {
    /// Empty.
    pub const fn new() -> Self {
        Self {
            buf: [0; PAYLOAD_MAX],
            len: 0,
        }
    }

    /// Appends bytes (truncated at the capacity).
    pub fn push(&mut self, b: &[u8]) -> &mut Self {
        let n = b.len().min(PAYLOAD_MAX - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&b[..n]);
        self.len += n;
        self
    }

    /// Appends a decimal number.
    pub fn num(&mut self, mut v: u64) -> &mut Self {
        let mut d = [0u8; 20];
        let mut i = d.len();
        loop {
            i -= 1;
            d[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        self.push(&d[i..])
    }

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// The text (always UTF-8: only ASCII and given `&str`s go in).
    pub fn as_str(&self) -> &str {
        core::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }

    /// Empties it.
    pub fn clear(&mut self) -> &mut Self {
        self.len = 0;
        self
    }
}
