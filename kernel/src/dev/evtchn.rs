//! `/dev/xen/evtchn`: user access to event channels, with FreeBSD's
//! `sys/xen/evtchn.h` ioctls (group `'E'`, structs of u32 copied in and
//! out by the system call layer).
//!
//! | ioctl | struct (u32 fields) | what |
//! |---|---|---|
//! | `_IOWR('E', 5)` `BIND_INTERDOMAIN` | remote_domain, remote_port, OUT port | bind to a peer's unbound port |
//! | `_IOWR('E', 6)` `BIND_UNBOUND_PORT` | remote_domain, OUT port | allocate a port for the peer to bind |
//! | `_IOW('E', 7)` `UNBIND` | port | close one of this open's ports |
//! | `_IOW('E', 8)` `NOTIFY` | port | signal one of this open's ports |
//! | `_IOW('E', 10)` `SET_READ_TIMEOUT` (ours) | u64 ns | bound each `read`; 0: no bound |
//! | `_IOWR('E', 11)` `STATUS` (ours) | port, OUT status | `EVTCHNOP_status` of one of this open's ports |
//!
//! `read` returns the ports of this open that fired since the last read,
//! as native-endian u32s (at least one; the buffer must hold one), and
//! blocks the calling thread in the scheduler until one fires or the read
//! timeout passes (`ETIMEDOUT`). Ports not bound by this open are
//! `EINVAL`; closing the device closes its ports.
//!
//! After the domain resumes in a new domain (`xl restore`, `xl migrate`),
//! every port bound before is gone with the old domain: `NOTIFY`,
//! `STATUS` and a `read` with only such ports fail with `ENOTCONN`, which
//! is how a program learns of the move (the peer must be found and the
//! channel set up again); `UNBIND` of one just forgets it. Its number may
//! meanwhile name a port bound anew, which then counts.

use alloc::sync::Arc;
use alloc::vec::Vec;

use spin::Mutex;
use vm::Errno;
use xen::abi::{DomId, Port};

use uapi::evtchn::{
    IOCTL_EVTCHN_BIND_INTERDOMAIN, IOCTL_EVTCHN_BIND_UNBOUND_PORT, IOCTL_EVTCHN_NOTIFY,
    IOCTL_EVTCHN_SET_READ_TIMEOUT, IOCTL_EVTCHN_STATUS, IOCTL_EVTCHN_UNBIND,
};

use super::DevFile;
use crate::syscall::errno;
use crate::{events, sched};

/// How long a read sleeps before it looks at its other ports again.
const POLL_SLICE_NS: u64 = 5_000_000;

/// One open: its ports, the fired ones not yet read, the read timeout.
struct EvtchnFile {
    state: Mutex<State>,
}

struct State {
    ports: Vec<Port>,
    fired: Vec<Port>,
    timeout_ns: u64,
    /// The domain generation `ports` belong to (`events::generation`).
    generation: u64,
    /// Ports of an earlier domain, gone.
    stale: Vec<Port>,
}

impl State {
    /// Moves the ports of an earlier domain to `stale`.
    fn refresh(&mut self) {
        let now = events::generation();
        if self.generation != now {
            self.generation = now;
            let gone = core::mem::take(&mut self.ports);
            self.stale.extend(gone);
            self.fired.clear();
        }
    }
}

/// Opens the device.
pub fn open(_flags: u32) -> Result<Arc<dyn DevFile>, Errno> {
    Ok(Arc::new(EvtchnFile {
        state: Mutex::new(State {
            ports: Vec::new(),
            fired: Vec::new(),
            timeout_ns: 0,
            generation: events::generation(),
            stale: Vec::new(),
        }),
    }))
}

fn u32_at(data: &[u8], i: usize) -> Result<u32, Errno> {
    data.get(i * 4..i * 4 + 4)
        .map(|b| u32::from_ne_bytes(b.try_into().expect("4 bytes")))
        .ok_or(Errno::EINVAL)
}

fn xerr(e: xen::hypercall::XenErrno) -> Errno {
    Errno(e.0.unsigned_abs() as i32)
}

fn domid(v: u32) -> Result<DomId, Errno> {
    DomId::try_from(v).map_err(|_| Errno::EINVAL)
}

impl EvtchnFile {
    fn add(&self, port: Port) {
        events::bind(port, events::mark);
        let mut st = self.state.lock();
        st.refresh();
        st.ports.push(port);
    }

    /// `port`, if this open bound it in this domain; `ENOTCONN` for one
    /// of an earlier domain.
    fn owned(&self, port: u32) -> Result<Port, Errno> {
        let mut st = self.state.lock();
        st.refresh();
        if st.ports.contains(&port) {
            Ok(port)
        } else if st.stale.contains(&port) {
            Err(errno::ENOTCONN)
        } else {
            Err(Errno::EINVAL)
        }
    }

    /// Moves this open's fired ports to `fired`; whether there are any.
    fn collect(&self) -> bool {
        let mut st = self.state.lock();
        st.refresh();
        let newly: Vec<Port> = st
            .ports
            .iter()
            .copied()
            .filter(|&p| events::take(p))
            .collect();
        for p in newly {
            if !st.fired.contains(&p) {
                st.fired.push(p);
            }
        }
        !st.fired.is_empty()
    }
}

impl DevFile for EvtchnFile {
    fn ioctl(&self, cmd: u32, data: &mut [u8]) -> Result<(), Errno> {
        match cmd {
            IOCTL_EVTCHN_BIND_INTERDOMAIN => {
                let (dom, remote) = (domid(u32_at(data, 0)?)?, u32_at(data, 1)?);
                let port = xen::event_channel::bind_interdomain(dom, remote).map_err(xerr)?;
                self.add(port);
                data[8..12].copy_from_slice(&port.to_ne_bytes());
                Ok(())
            }
            IOCTL_EVTCHN_BIND_UNBOUND_PORT => {
                let dom = domid(u32_at(data, 0)?)?;
                let port = xen::event_channel::alloc_unbound(dom).map_err(xerr)?;
                self.add(port);
                data[4..8].copy_from_slice(&port.to_ne_bytes());
                Ok(())
            }
            IOCTL_EVTCHN_UNBIND => {
                let port = match self.owned(u32_at(data, 0)?) {
                    Err(errno::ENOTCONN) => {
                        let gone = u32_at(data, 0)?;
                        self.state.lock().stale.retain(|&p| p != gone);
                        return Ok(());
                    }
                    r => r?,
                };
                let mut st = self.state.lock();
                st.ports.retain(|&p| p != port);
                st.fired.retain(|&p| p != port);
                drop(st);
                events::unbind(port).map_err(xerr)
            }
            IOCTL_EVTCHN_NOTIFY => {
                let port = self.owned(u32_at(data, 0)?)?;
                xen::event_channel::send(port).map_err(xerr)
            }
            IOCTL_EVTCHN_STATUS => {
                let port = self.owned(u32_at(data, 0)?)?;
                let st = xen::event_channel::status(port).map_err(xerr)?;
                data[4..8].copy_from_slice(&st.to_ne_bytes());
                Ok(())
            }
            IOCTL_EVTCHN_SET_READ_TIMEOUT => {
                let ns = u64::from_ne_bytes(data.try_into().map_err(|_| Errno::EINVAL)?);
                self.state.lock().timeout_ns = ns;
                Ok(())
            }
            _ => Err(errno::ENOTTY),
        }
    }

    fn read(&self, buf: &mut [u8]) -> Result<usize, Errno> {
        if buf.len() < 4 {
            return Err(Errno::EINVAL);
        }
        let deadline = sched::deadline_after(self.state.lock().timeout_ns);
        while !self.collect() {
            let first = {
                let st = self.state.lock();
                if st.ports.is_empty() && !st.stale.is_empty() {
                    return Err(errno::ENOTCONN);
                }
                st.ports.first().copied()
            };
            let woke = sched::block_step(first, deadline, POLL_SLICE_NS)?;
            if woke == sched::Wakeup::Event
                && let Some(p) = first
            {
                let mut st = self.state.lock();
                if !st.fired.contains(&p) {
                    st.fired.push(p);
                }
            }
        }
        let mut st = self.state.lock();
        let n = (buf.len() / 4).min(st.fired.len());
        for (i, p) in st.fired.drain(..n).enumerate() {
            buf[i * 4..i * 4 + 4].copy_from_slice(&p.to_ne_bytes());
        }
        Ok(n * 4)
    }

    fn close(&self) {
        let ports = {
            let mut st = self.state.lock();
            st.refresh();
            core::mem::take(&mut st.ports)
        };
        for p in ports {
            let _ = events::unbind(p);
        }
    }
}
