//! The grant-reference allocator: an O(1) free list over the references of
//! the table's frames, plus the list of references whose end of access is
//! deferred because the peer still maps them.
//!
//! Reference states (one per reference, `RefState`):
//!
//! ```text
//!   Reserved (0..GNTTAB_NR_RESERVED_ENTRIES: never leave this state)
//!   Free --alloc--> Live --free--> Free
//!                    \--defer--> Pending --reaped--> Free
//! ```

use alloc::vec::Vec;

use crate::abi::grant_table::{GNTTAB_NR_RESERVED_ENTRIES, GrantRef};

/// End of the free list.
const NIL: u32 = u32::MAX;

/// What a reference is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefState {
    /// Owned by the toolstack (console, xenstore, ...).
    Reserved,
    /// On the free list.
    Free,
    /// Handed out; its entry may grant access.
    Live,
    /// Access ended by the owner but the peer still maps it: waits for
    /// a reap.
    Pending,
}

/// Allocates grant references in O(1).
#[derive(Debug, Default)]
pub struct RefAllocator {
    /// Per reference: its state.
    state: Vec<RefState>,
    /// Per free reference: the next free one, or `NIL`.
    next: Vec<u32>,
    /// First free reference, or `NIL`.
    head: u32,
    /// Free references.
    free: usize,
    /// Live references.
    live: usize,
    /// References waiting for the peer to unmap.
    pending: Vec<GrantRef>,
}

impl RefAllocator {
    /// An allocator with no references (grow it with each table frame).
    pub fn new() -> Self {
        Self {
            head: NIL,
            ..Default::default()
        }
    }

    /// Heap bytes its vectors hold (their capacity).
    pub fn heap_bytes(&self) -> usize {
        self.state.capacity() * core::mem::size_of::<RefState>()
            + self.next.capacity() * core::mem::size_of::<u32>()
            + self.pending.capacity() * core::mem::size_of::<GrantRef>()
    }

    /// References the allocator covers (the table's entries).
    pub fn capacity(&self) -> u32 {
        self.state.len() as u32
    }

    /// Extends the allocator to `total` references (a bigger table); the
    /// reserved ones stay out of the free list.
    pub fn grow(&mut self, total: u32) {
        let old = self.capacity();
        for r in old..total {
            if r < GNTTAB_NR_RESERVED_ENTRIES {
                self.state.push(RefState::Reserved);
                self.next.push(NIL);
            } else {
                self.state.push(RefState::Free);
                self.next.push(NIL);
            }
        }
        // Push in reverse so the lowest new reference is handed out first.
        for r in (old.max(GNTTAB_NR_RESERVED_ENTRIES)..total).rev() {
            self.next[r as usize] = self.head;
            self.head = r;
            self.free += 1;
        }
    }

    /// Takes a free reference, `None` when the allocator must grow.
    pub fn alloc(&mut self) -> Option<GrantRef> {
        if self.head == NIL {
            return None;
        }
        let r = self.head;
        self.head = self.next[r as usize];
        debug_assert_eq!(self.state[r as usize], RefState::Free);
        self.state[r as usize] = RefState::Live;
        self.free -= 1;
        self.live += 1;
        Some(r)
    }

    /// The state of `r` (`None` past the table's end).
    pub fn state(&self, r: GrantRef) -> Option<RefState> {
        self.state.get(r as usize).copied()
    }

    /// Returns live reference `r` to the free list. `false` (and nothing
    /// done) if it is not live.
    pub fn free(&mut self, r: GrantRef) -> bool {
        if self.state(r) != Some(RefState::Live) {
            return false;
        }
        self.live -= 1;
        self.push_free(r);
        true
    }

    fn push_free(&mut self, r: GrantRef) {
        self.state[r as usize] = RefState::Free;
        self.next[r as usize] = self.head;
        self.head = r;
        self.free += 1;
    }

    /// Moves live reference `r` to the pending list. `false` (and nothing
    /// done) if it is not live.
    pub fn defer(&mut self, r: GrantRef) -> bool {
        if self.state(r) != Some(RefState::Live) {
            return false;
        }
        self.state[r as usize] = RefState::Pending;
        self.live -= 1;
        self.pending.push(r);
        true
    }

    /// Retries every pending reference: those for which `try_end` says the
    /// access has ended go back to the free list and are returned.
    pub fn reap(&mut self, mut try_end: impl FnMut(GrantRef) -> bool) -> Vec<GrantRef> {
        let mut done = Vec::new();
        self.pending.retain(|&r| {
            let ended = try_end(r);
            if ended {
                done.push(r);
            }
            !ended
        });
        for &r in &done {
            self.push_free(r);
        }
        done
    }

    /// Live references.
    pub fn live(&self) -> usize {
        self.live
    }

    /// References waiting for a reap.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// References on the free list.
    pub fn free_count(&self) -> usize {
        self.free
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heap_bytes_follow_growth_and_stay() {
        let mut a = RefAllocator::new();
        assert_eq!(a.heap_bytes(), 0);
        a.grow(1024);
        let grown = a.heap_bytes();
        assert!(grown >= 1024 * 5, "{grown}");
        let r: Vec<_> = (0..100).map(|_| a.alloc().unwrap()).collect();
        for g in r {
            a.free(g);
        }
        // Handing out and taking back references allocates nothing.
        assert_eq!(a.heap_bytes(), grown);
    }

    #[test]
    fn reserved_refs_are_never_handed_out() {
        let mut a = RefAllocator::new();
        a.grow(512);
        let mut got = Vec::new();
        while let Some(r) = a.alloc() {
            got.push(r);
        }
        assert_eq!(got.len(), 512 - 8);
        assert!(got.iter().all(|&r| r >= GNTTAB_NR_RESERVED_ENTRIES));
        assert_eq!(got[0], 8, "lowest first");
        assert_eq!(a.live(), 504);
        assert_eq!(a.state(0), Some(RefState::Reserved));
        assert!(!a.free(0), "a reserved ref cannot be freed");
    }

    #[test]
    fn free_list_is_lifo_and_grows() {
        let mut a = RefAllocator::new();
        a.grow(10);
        assert_eq!(a.alloc(), Some(8));
        assert_eq!(a.alloc(), Some(9));
        assert_eq!(a.alloc(), None);
        assert!(a.free(8));
        assert!(!a.free(8), "double free is refused");
        assert_eq!(a.alloc(), Some(8));
        a.grow(12);
        assert_eq!(a.free_count(), 2);
        assert_eq!(a.alloc(), Some(10));
        assert_eq!(a.alloc(), Some(11));
        assert_eq!(a.alloc(), None);
        assert_eq!(a.live(), 4);
    }

    #[test]
    fn deferred_refs_are_not_reused_until_reaped() {
        let mut a = RefAllocator::new();
        a.grow(10);
        let r = a.alloc().unwrap();
        assert!(a.defer(r));
        assert_eq!((a.live(), a.pending()), (0, 1));
        assert_eq!(a.alloc(), Some(9));
        assert_eq!(a.alloc(), None, "the pending ref is not free");
        assert!(a.reap(|_| false).is_empty());
        assert_eq!(a.pending(), 1);
        assert_eq!(a.reap(|x| x == r), [r]);
        assert_eq!((a.live(), a.pending(), a.free_count()), (1, 0, 1));
        assert_eq!(a.alloc(), Some(r));
    }
}
