//! Event channels over `/dev/xen/evtchn` (FreeBSD's `sys/xen/evtchn.h`
//! ioctls, plus our read timeout).

use urt::SysResult;

use urt::evtchn::{
    IOCTL_EVTCHN_BIND_INTERDOMAIN as BIND_INTERDOMAIN,
    IOCTL_EVTCHN_BIND_UNBOUND_PORT as BIND_UNBOUND_PORT, IOCTL_EVTCHN_NOTIFY as NOTIFY,
    IOCTL_EVTCHN_SET_READ_TIMEOUT as SET_READ_TIMEOUT, IOCTL_EVTCHN_STATUS as STATUS,
    IOCTL_EVTCHN_UNBIND as UNBIND,
};

/// An open of the device; its ports close with it.
pub struct Evtchn {
    fd: u64,
}

impl Evtchn {
    /// Opens `/dev/xen/evtchn`.
    pub fn open() -> Result<Self, i32> {
        Ok(Self {
            fd: urt::open(b"/dev/xen/evtchn\0", urt::fcntl::O_RDWR)?,
        })
    }

    fn call<const N: usize>(&self, cmd: u32, mut a: [u32; N]) -> Result<[u32; N], i32> {
        urt::ioctl(self.fd, cmd, a.as_mut_ptr() as u64)?;
        Ok(a)
    }

    /// A new port for domain `remote` to bind (`xenevtchn_bind_unbound_port`).
    pub fn bind_unbound_port(&self, remote: u32) -> Result<u32, i32> {
        Ok(self.call(BIND_UNBOUND_PORT, [remote, 0])?[1])
    }

    /// Binds to `remote`'s port `remote_port` (`xenevtchn_bind_interdomain`);
    /// returns the local port.
    pub fn bind_interdomain(&self, remote: u32, remote_port: u32) -> Result<u32, i32> {
        Ok(self.call(BIND_INTERDOMAIN, [remote, remote_port, 0])?[2])
    }

    /// Signals `port` (`xenevtchn_notify`).
    pub fn notify(&self, port: u32) -> SysResult {
        self.call(NOTIFY, [port]).map(|_| 0)
    }

    /// Closes `port` (`xenevtchn_unbind`).
    pub fn unbind(&self, port: u32) -> SysResult {
        self.call(UNBIND, [port]).map(|_| 0)
    }

    /// The state of `port` (`EVTCHNOP_status`): `urt::evtchn::EVTCHN_STATUS_*`.
    pub fn status(&self, port: u32) -> Result<u32, i32> {
        Ok(self.call(STATUS, [port, 0])?[1])
    }

    /// Bounds each [`wait`](Self::wait) to `ns` (0: no bound).
    pub fn set_timeout(&self, ns: u64) -> SysResult {
        let mut v = ns;
        urt::ioctl(self.fd, SET_READ_TIMEOUT, &mut v as *mut u64 as u64)
    }

    /// Blocks until a port of this open fires (`xenevtchn_pending`);
    /// returns it. `ETIMEDOUT` after the timeout.
    pub fn wait(&self) -> Result<u32, i32> {
        let mut p = [0u8; 4];
        urt::read(self.fd, &mut p)?;
        Ok(u32::from_ne_bytes(p))
    }
}

impl Drop for Evtchn {
    fn drop(&mut self) {
        let _ = urt::close(self.fd);
    }
}
