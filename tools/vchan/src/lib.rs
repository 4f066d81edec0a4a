//! Byte streams between domains, wire-compatible with Xen's libxenvchan
//! (`xen/include/public/io/libxenvchan.h`, `tools/libs/vchan`): a shared
//! page with two rings' indexes, the rings in it or in granted pages of
//! their own, an event channel, and two xenstore keys. A program in our
//! domain talks to Debian's unmodified `vchan-socket-proxy` (or any
//! libxenvchan program) in dom0, or to another of our domains.
//!
//! | module | what |
//! |---|---|
//! | [`shared`] | the shared page's layout and the rings' places |
//! | `ring` | one ring: free-running indexes, masked positions, volatile copies |
//! | [`stream`] | [`Vchan`]: read, write, the notify-bit protocol, liveness |
//! | [`connect`] | [`server`] and [`client`]: the set-up over gntdev, evtchn and xenstore |
//! | [`local`] | [`local::loopback`]: both ends in one process, the benchmark's baseline |
//!
//! libxenvchan calls and ours: `libxenvchan_server_init` [`server`],
//! `libxenvchan_client_init` [`client`], `libxenvchan_read`/`_write`
//! [`Vchan::read`]/[`Vchan::write`] (`blocking`:
//! [`Vchan::set_blocking`]), `libxenvchan_data_ready`/`_buffer_space`
//! [`Vchan::data_ready`]/[`Vchan::buffer_space`], `libxenvchan_is_open`
//! [`Vchan::is_open`], `libxenvchan_wait` [`Vchan::wait`],
//! `libxenvchan_close` dropping the [`Vchan`]. Packet calls (`send`,
//! `recv`) and the persistent server are not provided.
//!
//! Everything the peer can write (indexes, orders, grant list, live and
//! notify bytes, the xenstore keys) is read with atomic or volatile
//! accessors and checked: bad values are an [`Error`], never an access
//! outside the rings.
#![no_std]

pub mod connect;
pub mod local;
mod ring;
pub mod shared;
pub mod stream;

#[cfg(test)]
mod tests;

use core::fmt;

use gnttab::xs::XsError;

pub use connect::{Xen, client, server};
pub use stream::{Events, Vchan};

/// What went wrong.
#[derive(Clone, Copy, Debug)]
pub enum Error {
    /// A system call failed: what, and its errno.
    Sys(&'static str, i32),
    /// A xenstore request failed.
    Store(&'static str, XsError),
    /// A xenstore key held something other than a non-zero decimal `u32`.
    BadKey(&'static str),
    /// Xen handed out reference or port 0, which libxenvchan takes for
    /// failure.
    Zero(&'static str),
    /// The shared page's orders or grant list are not a valid layout.
    Layout(shared::LayoutError),
    /// The peer's ring indexes are inconsistent (more data than the ring
    /// holds): the peer broke the protocol.
    Protocol,
    /// The peer closed, or its domain is gone.
    Closed,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sys(what, e) => write!(f, "{what}: errno {e}"),
            Self::Store(what, e) => match e {
                XsError::Xs(n) => {
                    let end = n.iter().position(|&b| b == 0).unwrap_or(n.len());
                    let name = core::str::from_utf8(&n[..end]).unwrap_or("?");
                    write!(f, "xenstore {what}: {name}")
                }
                XsError::Sys(e) => write!(f, "xenstore {what}: errno {e}"),
                XsError::TooLong => write!(f, "xenstore {what}: too long"),
                XsError::Gone => write!(f, "xenstore {what}: the node's owner is gone"),
            },
            Self::BadKey(k) => write!(f, "xenstore key {k} is not a non-zero number"),
            Self::Zero(what) => write!(f, "{what}: Xen handed out 0"),
            Self::Layout(e) => write!(f, "bad shared page: {e:?}"),
            Self::Protocol => f.write_str("the peer's ring indexes are inconsistent"),
            Self::Closed => f.write_str("the peer closed"),
        }
    }
}

/// A xenstore key's value as a grant reference or port: decimal digits
/// only (at most 10), non-zero, within `u32`.
pub fn parse_key(name: &'static str, v: &[u8]) -> Result<u32, Error> {
    if v.is_empty() || v.len() > 10 || !v.iter().all(u8::is_ascii_digit) {
        return Err(Error::BadKey(name));
    }
    let n = v.iter().fold(0u64, |n, &d| n * 10 + u64::from(d - b'0'));
    u32::try_from(n)
        .ok()
        .filter(|&n| n != 0)
        .ok_or(Error::BadKey(name))
}
