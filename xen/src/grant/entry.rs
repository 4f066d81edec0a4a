//! The guest's side of a version 1 grant entry, on any memory: Xen's
//! table frame in the guest, a plain `GrantFrame` in a host test.
//!
//! Protocol (as Linux's `gnttab_update_entry_v1` and
//! `gnttab_end_foreign_access_ref_v1`): to grant, write `frame` and
//! `domid`, then publish `flags` with release ordering so Xen never sees
//! the flags before the frame; to end, clear `flags` with a compare-and-
//! swap that fails while Xen has set `GTF_reading`/`GTF_writing` (the
//! peer maps the frame).

use core::sync::atomic::Ordering;

use crate::abi::DomId;
use crate::abi::grant_table::{
    GTF_permit_access, GTF_reading, GTF_readonly, GTF_writing, GrantEntry,
};

impl GrantEntry {
    /// Grants `domid` access to `frame`.
    pub fn grant(&self, domid: DomId, frame: u32, readonly: bool) {
        self.frame.store(frame, Ordering::Relaxed);
        self.domid.store(domid, Ordering::Relaxed);
        let flags = GTF_permit_access | if readonly { GTF_readonly } else { 0 };
        // Release: frame and domid are visible before the flags (the
        // write barrier of the v1 protocol).
        self.flags.store(flags, Ordering::Release);
    }

    /// Whether the peer maps the frame now.
    pub fn in_use(&self) -> bool {
        self.flags.load(Ordering::Acquire) & (GTF_reading | GTF_writing) != 0
    }

    /// Ends the grant unless the peer maps the frame; `true` if ended.
    pub fn try_end(&self) -> bool {
        let mut flags = self.flags.load(Ordering::Acquire);
        loop {
            if flags & (GTF_reading | GTF_writing) != 0 {
                return false;
            }
            match self
                .flags
                .compare_exchange(flags, 0, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return true,
                Err(now) => flags = now,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grant_then_end() {
        let e = GrantEntry::default();
        e.grant(3, 0x1234, true);
        assert_eq!(
            e.flags.load(Ordering::Relaxed),
            GTF_permit_access | GTF_readonly
        );
        assert_eq!(e.domid.load(Ordering::Relaxed), 3);
        assert_eq!(e.frame.load(Ordering::Relaxed), 0x1234);
        assert!(!e.in_use());
        assert!(e.try_end());
        assert_eq!(e.flags.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn end_fails_while_mapped() {
        let e = GrantEntry::default();
        e.grant(3, 7, false);
        // What Xen does when the peer maps it writable.
        e.flags
            .fetch_or(GTF_reading | GTF_writing, Ordering::AcqRel);
        assert!(e.in_use());
        assert!(!e.try_end());
        e.flags
            .fetch_and(!(GTF_reading | GTF_writing), Ordering::AcqRel);
        assert!(e.try_end());
    }
}
