//! Scheduler operations (`sched.h`).

pub use xen_sys::{SCHEDOP_block, SCHEDOP_poll, SCHEDOP_shutdown, SCHEDOP_yield};

/// `struct sched_shutdown`: argument of `SCHEDOP_shutdown`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SchedShutdown {
    /// One of [`ShutdownReason`] as an integer.
    pub reason: u32,
}

/// `SHUTDOWN_*`: why a domain stops.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShutdownReason {
    /// `SHUTDOWN_poweroff`: a clean stop.
    Poweroff = 0,
    /// `SHUTDOWN_reboot`.
    Reboot = 1,
    /// `SHUTDOWN_suspend`.
    Suspend = 2,
    /// `SHUTDOWN_crash`: the toolstack applies `on_crash`.
    Crash = 3,
}
