//! `/dev/xen/xenstore`: user access to xenstore in its wire format, as
//! Xen's `/dev/xen/xenstore` (Linux's xenbus device, FreeBSD's
//! `xenstore_dev`).
//!
//! `write` takes requests: an `xsd_sockmsg` header (`type`, `req_id`,
//! `tx_id`, `len`: four native-endian u32) and `len` payload bytes, in one
//! or several writes. Each complete request is sent through the kernel's
//! xenstore connection at once (the writer waits for xenstored) and its
//! reply queued: `read` returns the reply, header (`req_id` and `tx_id` as
//! the request's) then payload, in as many reads as the caller needs; an
//! error is an `XS_ERROR` reply carrying the error's name. `read` with no
//! reply queued is `EAGAIN`. Types served: `DIRECTORY`, `READ`,
//! `GET_PERMS`, `TRANSACTION_START`/`_END`, `WRITE`, `MKDIR`, `RM`,
//! `SET_PERMS`; others (watches included: poll with `sleep` instead) are
//! answered `EINVAL`. A payload above 4096 bytes is `E2BIG` on the
//! `write`.

use alloc::collections::VecDeque;
use alloc::sync::Arc;
use alloc::vec::Vec;

use spin::Mutex;
use vm::Errno;
use xen::abi::xs_wire::{XENSTORE_PAYLOAD_MAX, XSD_ERRORS, XSD_SOCKMSG_SIZE, msg};
use xen::xenstore::TxId;

use super::DevFile;

/// Request types passed to xenstored.
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

/// One open: the partial request and the replies not yet read.
struct XsFile {
    state: Mutex<XsState>,
}

struct XsState {
    request: Vec<u8>,
    replies: VecDeque<u8>,
}

/// Opens the device.
pub fn open(_flags: u32) -> Result<Arc<dyn DevFile>, Errno> {
    Ok(Arc::new(XsFile {
        state: Mutex::new(XsState {
            request: Vec::new(),
            replies: VecDeque::new(),
        }),
    }))
}

fn word(b: &[u8], i: usize) -> u32 {
    u32::from_ne_bytes(b[i * 4..i * 4 + 4].try_into().expect("4 bytes"))
}

/// Runs one complete request; returns its reply message.
fn serve(req: &[u8]) -> Vec<u8> {
    let (ty, id, tx) = (word(req, 0), word(req, 1), word(req, 2));
    let payload = &req[XSD_SOCKMSG_SIZE..];
    let r = if SERVED.contains(&ty) {
        crate::xenstore::with(|xs| xs.request(ty, TxId(tx), &[payload]))
    } else {
        Err(xen::hypercall::XenErrno::EINVAL)
    };
    let (rty, body) = match r {
        Ok(body) => (ty, body),
        Err(e) => {
            let name = XSD_ERRORS
                .iter()
                .find(|(n, _)| *n == e.0)
                .map_or("EIO", |&(_, s)| s);
            let mut b = Vec::from(name.as_bytes());
            b.push(0);
            (msg::ERROR, b)
        }
    };
    let mut out = Vec::with_capacity(XSD_SOCKMSG_SIZE + body.len());
    for v in [rty, id, tx, body.len() as u32] {
        out.extend_from_slice(&v.to_ne_bytes());
    }
    out.extend_from_slice(&body);
    out
}

impl DevFile for XsFile {
    fn write(&self, buf: &[u8]) -> Result<usize, Errno> {
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
            let req = core::mem::replace(&mut st.request, rest);
            let reply = serve(&req);
            st.replies.extend(reply);
        }
        Ok(buf.len())
    }

    fn read(&self, buf: &mut [u8]) -> Result<usize, Errno> {
        let mut st = self.state.lock();
        if st.replies.is_empty() {
            return Err(Errno::EAGAIN);
        }
        let n = buf.len().min(st.replies.len());
        for (d, s) in buf.iter_mut().zip(st.replies.drain(..n)) {
            *d = s;
        }
        Ok(n)
    }
}
