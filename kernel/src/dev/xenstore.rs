//! `/dev/xen/xenstore`: user access to xenstore in its wire format, as
//! Xen's `/dev/xen/xenstore` (Linux's xenbus device, FreeBSD's
//! `xenstore_dev`).
//!
//! `write` takes requests: an `xsd_sockmsg` header (`type`, `req_id`,
//! `tx_id`, `len`: four native-endian u32) and `len` payload bytes, in one
//! or several writes. Each complete request is sent through the kernel's
//! xenstore connection at once (the writer waits for xenstored) and its
//! reply queued: `read` returns the queued messages, header (`req_id` and
//! `tx_id` as the request's) then payload, in as many reads as the caller
//! needs; an error is an `XS_ERROR` reply carrying the error's name.
//! Types served: `DIRECTORY`, `READ`, `GET_PERMS`,
//! `TRANSACTION_START`/`_END`, `WRITE`, `MKDIR`, `RM`, `SET_PERMS`,
//! `WATCH` and `UNWATCH`; others are answered `EINVAL`. A payload above
//! 4096 bytes is `E2BIG` on the `write`.
//!
//! Watches: `WATCH` (payload `path\0token\0`) registers the watch with
//! xenstored under a token private to this open (the kernel's
//! `xenstore::sink_token`), so opens never see each other's events; each
//! event is queued as an `XS_WATCH_EVENT` message (`req_id` and `tx_id`
//! 0, payload `path\0token\0` with the caller's token), interleaved with
//! replies as on Linux. Closing the device removes its watches.
//!
//! `read` blocks the calling thread until a message is queued, or for at
//! most the read timeout (`ETIMEDOUT`), set with our
//! `_IOW('X', 10, u64)` `SET_READ_TIMEOUT` (ns; 0, the default: no bound).

use alloc::collections::VecDeque;
use alloc::sync::{Arc, Weak};
use alloc::vec::Vec;

use spin::Mutex;
use vm::Errno;
use xen::abi::xs_wire::{XENSTORE_PAYLOAD_MAX, XSD_ERRORS, XSD_SOCKMSG_SIZE, msg};
use xen::hypercall::XenErrno;
use xen::xenstore::TxId;

use uapi::xenstore::IOCTL_XENSTORE_SET_READ_TIMEOUT;

use super::DevFile;
use crate::xenstore::WatchSink;
use crate::{sched, xenstore};

/// How long a blocked `read` sleeps before it looks for events again
/// (the store port's wake-up may be taken by a request in progress).
const POLL_SLICE_NS: u64 = 20_000_000;

/// Request types passed to xenstored as they are.
const SERVED: &[u32] = &[
    msg::DIRECTORY,
    msg::READ,
    msg::GET_PERMS,
    msg::TRANSACTION_START,
    msg::TRANSACTION_END,
    msg::WRITE,
    msg::MKDIR,
    msg::RM,
    msg::SET_PERMS,
];

/// One open: the partial request, the queued messages and the watches.
struct XsFile {
    /// Its sink id with the kernel's xenstore connection.
    sink: u64,
    state: Mutex<XsState>,
}

/// Locking: `XsFile::state` protects every field; it is never held
/// while the kernel's xenstore connection is used.
struct XsState {
    /// Bytes of a request not complete yet.
    request: Vec<u8>,
    /// Replies and watch events not read yet.
    queued: VecDeque<u8>,
    /// Watches of this open: path and the caller's token.
    watches: Vec<(Vec<u8>, Vec<u8>)>,
    /// Bound of each `read` in ns (0: none).
    timeout_ns: u64,
}

/// Opens the device.
pub fn open(_flags: u32) -> Result<Arc<dyn DevFile>, Errno> {
    Ok(Arc::new_cyclic(|me: &Weak<XsFile>| XsFile {
        sink: xenstore::add_sink(me.clone()),
        state: Mutex::new(XsState {
            request: Vec::new(),
            queued: VecDeque::new(),
            watches: Vec::new(),
            timeout_ns: 0,
        }),
    }))
}

fn word(b: &[u8], i: usize) -> u32 {
    u32::from_ne_bytes(b[i * 4..i * 4 + 4].try_into().expect("4 bytes"))
}

/// A message: header words and payload.
fn message(ty: u32, id: u32, tx: u32, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(XSD_SOCKMSG_SIZE + body.len());
    for v in [ty, id, tx, body.len() as u32] {
        out.extend_from_slice(&v.to_ne_bytes());
    }
    out.extend_from_slice(body);
    out
}

/// `path` and `token` of a `WATCH`/`UNWATCH` payload.
fn watch_args(payload: &[u8]) -> Option<(&[u8], &[u8])> {
    let mut parts = payload.split(|&b| b == 0);
    let (path, token) = (parts.next()?, parts.next()?);
    (!path.is_empty()).then_some((path, token))
}

impl XsFile {
    /// Runs one complete request; returns its reply message.
    fn serve(&self, req: &[u8]) -> Vec<u8> {
        let (ty, id, tx) = (word(req, 0), word(req, 1), word(req, 2));
        let payload = &req[XSD_SOCKMSG_SIZE..];
        let r = match ty {
            msg::WATCH | msg::UNWATCH => self.watch(ty, payload),
            _ if SERVED.contains(&ty) => xenstore::with(|xs| xs.request(ty, TxId(tx), &[payload])),
            _ => Err(XenErrno::EINVAL),
        };
        match r {
            Ok(body) => message(ty, id, tx, &body),
            Err(e) => {
                let name = XSD_ERRORS
                    .iter()
                    .find(|(n, _)| *n == e.0)
                    .map_or("EIO", |&(_, s)| s);
                let mut b = Vec::from(name.as_bytes());
                b.push(0);
                message(msg::ERROR, id, tx, &b)
            }
        }
    }

    /// Sends `WATCH` or `UNWATCH` (`ty`) of `path` to xenstored, with
    /// `token` made private to this open.
    fn xenstored_watch(&self, ty: u32, path: &[u8], token: &[u8]) -> Result<Vec<u8>, XenErrno> {
        let routed = xenstore::sink_token(self.sink, token);
        xenstore::with(|xs| xs.request(ty, TxId::NONE, &[path, b"\0", &routed, b"\0"]))
    }

    /// `WATCH` or `UNWATCH` with this open's private token.
    fn watch(&self, ty: u32, payload: &[u8]) -> Result<Vec<u8>, XenErrno> {
        let (path, token) = watch_args(payload).ok_or(XenErrno::EINVAL)?;
        let body = self.xenstored_watch(ty, path, token)?;
        let mut st = self.state.lock();
        let w = (Vec::from(path), Vec::from(token));
        if ty == msg::WATCH {
            st.watches.push(w);
        } else if let Some(i) = st.watches.iter().position(|x| *x == w) {
            st.watches.swap_remove(i);
        }
        Ok(body)
    }
}

impl WatchSink for XsFile {
    fn deliver(&self, path: &[u8], token: &[u8]) {
        let mut body = Vec::with_capacity(path.len() + token.len() + 2);
        body.extend_from_slice(path);
        body.push(0);
        body.extend_from_slice(token);
        body.push(0);
        self.state
            .lock()
            .queued
            .extend(message(msg::WATCH_EVENT, 0, 0, &body));
    }
}

impl DevFile for XsFile {
    fn write(&self, buf: &[u8]) -> Result<usize, Errno> {
        let mut requests = Vec::new();
        {
            let mut st = self.state.lock();
            st.request.extend_from_slice(buf);
            while st.request.len() >= XSD_SOCKMSG_SIZE {
                let len = word(&st.request, 3) as usize;
                if len > XENSTORE_PAYLOAD_MAX {
                    st.request.clear();
                    return Err(gntdev::errno::E2BIG);
                }
                if st.request.len() < XSD_SOCKMSG_SIZE + len {
                    break;
                }
                let rest = st.request.split_off(XSD_SOCKMSG_SIZE + len);
                requests.push(core::mem::replace(&mut st.request, rest));
            }
        }
        for req in requests {
            let reply = self.serve(&req);
            self.state.lock().queued.extend(reply);
        }
        Ok(buf.len())
    }

    fn read(&self, buf: &mut [u8]) -> Result<usize, Errno> {
        let deadline = sched::deadline_after(self.state.lock().timeout_ns);
        loop {
            xenstore::dispatch_watches().map_err(|_| Errno::EIO)?;
            {
                let mut st = self.state.lock();
                if !st.queued.is_empty() {
                    let n = buf.len().min(st.queued.len());
                    for (d, s) in buf.iter_mut().zip(st.queued.drain(..n)) {
                        *d = s;
                    }
                    return Ok(n);
                }
            }
            sched::block_step(Some(xenstore::port()), deadline, POLL_SLICE_NS)?;
        }
    }

    fn ioctl(&self, cmd: u32, data: &mut [u8]) -> Result<(), Errno> {
        match cmd {
            IOCTL_XENSTORE_SET_READ_TIMEOUT => {
                let ns = u64::from_ne_bytes(data.try_into().map_err(|_| Errno::EINVAL)?);
                self.state.lock().timeout_ns = ns;
                Ok(())
            }
            _ => Err(crate::syscall::errno::ENOTTY),
        }
    }

    fn close(&self) {
        let watches = core::mem::take(&mut self.state.lock().watches);
        for (path, token) in watches {
            let _ = self.xenstored_watch(msg::UNWATCH, &path, &token);
        }
        xenstore::remove_sink(self.sink);
    }
}
