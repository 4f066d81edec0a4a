//! Xen system time from the per-vCPU pvclock (`vcpu_time_info`).
//!
//! Xen publishes, per vCPU, a system time in nanoseconds at a TSC stamp and
//! the scale from TSC ticks to nanoseconds; the guest extrapolates with its
//! own TSC. The record is versioned like a seqlock: an odd or changed
//! version means Xen was updating it, so read again.

use core::arch::x86_64::_rdtsc;
use core::sync::atomic::{Ordering, fence};

use crate::abi::shared_info::VcpuTimeInfo;

/// The TSC-to-nanoseconds conversion of one `vcpu_time_info` snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pvclock {
    /// TSC value at which `system_time` was taken.
    pub tsc_timestamp: u64,
    /// Xen system time, ns, at `tsc_timestamp`.
    pub system_time: u64,
    /// Multiplier, a 32.32 fixed-point fraction.
    pub mul: u32,
    /// Power of two applied to the TSC delta before multiplying.
    pub shift: i8,
}

impl Pvclock {
    /// Reads a consistent snapshot of `info` and calls `stamp` inside the
    /// same version window. Xen rewrites the record (and bumps the
    /// version) when the vCPU moves to another physical CPU, whose TSC may
    /// be behind the old one: a TSC read after the window could belong to
    /// another CPU than the record and lie before its `tsc_timestamp`.
    pub fn read_with(info: &VcpuTimeInfo, mut stamp: impl FnMut() -> u64) -> (Self, u64) {
        loop {
            let v1 = info.version.load(Ordering::Acquire);
            fence(Ordering::Acquire);
            let snap = Self {
                tsc_timestamp: info.tsc_timestamp.load(Ordering::Relaxed),
                system_time: info.system_time.load(Ordering::Relaxed),
                mul: info.tsc_to_system_mul.load(Ordering::Relaxed),
                shift: info.tsc_shift.load(Ordering::Relaxed) as i8,
            };
            let tsc = stamp();
            fence(Ordering::Acquire);
            let v2 = info.version.load(Ordering::Acquire);
            if v1 & 1 == 0 && v1 == v2 {
                return (snap, tsc);
            }
            core::hint::spin_loop();
        }
    }

    /// System time, ns, at TSC value `tsc`. A `tsc` before the record's
    /// stamp (another CPU's TSC, a little behind) counts as the stamp
    /// itself: the unsigned difference would be a jump of centuries.
    pub fn at(&self, tsc: u64) -> u64 {
        let mut delta = tsc.saturating_sub(self.tsc_timestamp);
        if self.shift < 0 {
            delta >>= -self.shift;
        } else {
            delta <<= self.shift;
        }
        let scaled = ((u128::from(delta) * u128::from(self.mul)) >> 32) as u64;
        self.system_time.wrapping_add(scaled)
    }

    /// The TSC frequency, Hz, that the scale stands for (0 if `mul` is
    /// 0): one tick is `mul / 2^32` ns after the shift.
    pub fn tsc_hz(&self) -> u64 {
        if self.mul == 0 {
            return 0;
        }
        let mut hz = (1_000_000_000u128 << 32) / u128::from(self.mul);
        if self.shift < 0 {
            hz <<= -self.shift;
        } else {
            hz >>= self.shift;
        }
        hz as u64
    }
}

/// The TSC frequency, Hz, of `info`'s scale.
pub fn tsc_hz(info: &VcpuTimeInfo) -> u64 {
    Pvclock::read_with(info, || 0).0.tsc_hz()
}

/// Xen system time now, ns since the domain's time base.
pub fn now(info: &VcpuTimeInfo) -> u64 {
    let (clock, tsc) = Pvclock::read_with(info, || {
        // SAFETY: LFENCE and RDTSC have no memory effects; PVH guests may
        // execute both. The fence keeps the TSC read after the record's
        // loads (RDTSC is not ordered with loads on its own).
        unsafe {
            core::arch::x86_64::_mm_lfence();
            _rdtsc()
        }
    });
    clock.at(tsc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_with_shift_and_fraction() {
        // 2 GHz TSC: 0.5 ns per tick = mul 0x8000_0000, shift 0.
        let c = Pvclock {
            tsc_timestamp: 1000,
            system_time: 5_000,
            mul: 0x8000_0000,
            shift: 0,
        };
        assert_eq!(c.at(1000), 5_000);
        assert_eq!(c.at(3000), 6_000);
        assert_eq!(c.tsc_hz(), 2_000_000_000);
        // The same clock expressed with shift 1 and mul 0.25.
        let d = Pvclock {
            mul: 0x4000_0000,
            shift: 1,
            ..c
        };
        assert_eq!(d.at(3000), 6_000);
        // Negative shift: 4 GHz as delta >> 1 times 0.5.
        let e = Pvclock {
            mul: 0x8000_0000,
            shift: -1,
            ..c
        };
        assert_eq!(e.at(5000), 6_000);
    }

    #[test]
    fn odd_version_is_not_returned() {
        let info = VcpuTimeInfo::default();
        info.version.store(2, Ordering::Relaxed);
        info.system_time.store(42, Ordering::Relaxed);
        assert_eq!(Pvclock::read_with(&info, || 0).0.system_time, 42);
    }

    #[test]
    fn a_tsc_before_the_stamp_is_the_stamp() {
        let c = Pvclock {
            tsc_timestamp: 10_000,
            system_time: 7_000,
            mul: 0x8000_0000,
            shift: 0,
        };
        assert_eq!(c.at(9_000), 7_000);
        assert_eq!(c.at(0), 7_000);
    }

    #[test]
    fn the_stamp_is_read_inside_the_version_window() {
        let info = VcpuTimeInfo::default();
        info.version.store(2, Ordering::Relaxed);
        info.tsc_timestamp.store(100, Ordering::Relaxed);
        let mut calls = 0;
        // The first stamp sees the record being rewritten (the version
        // moves under it): the pair is read again.
        let (snap, tsc) = Pvclock::read_with(&info, || {
            calls += 1;
            if calls == 1 {
                info.version.store(4, Ordering::Relaxed);
                info.tsc_timestamp.store(200, Ordering::Relaxed);
            }
            200 + calls
        });
        assert_eq!(calls, 2);
        assert_eq!((snap.tsc_timestamp, tsc), (200, 202));
    }
}
