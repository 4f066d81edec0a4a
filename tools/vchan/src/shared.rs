//! The shared page of a vchan, `struct vchan_interface` of Xen's
//! `xen/include/public/io/libxenvchan.h` (offsets pinned by
//! `tests/abi_layout.rs`), and the ring layout it describes.
//!
//! | offset | field | written by |
//! |---|---|---|
//! | 0 | `left {u32 cons, prod}` | cons: server, prod: client |
//! | 8 | `right {u32 cons, prod}` | cons: client, prod: server |
//! | 16, 18 | `u16 left_order, right_order` | server, at set-up |
//! | 20, 21 | `u8 cli_live, srv_live` | each its own (and its kernel's unmap notify) |
//! | 22, 23 | `u8 cli_notify, srv_notify` | both: `X_notify` holds what X must kick the other for |
//! | 24 | `u32 grants[]` | server: the left ring's pages, then the right ring's |
//!
//! Every field can be written by the peer at any time: [`Shared`] reads
//! and writes them only with atomics, and [`Layout::read`] checks what
//! the set-up fields say before anything uses them.

use core::sync::atomic::{AtomicU8, AtomicU16, AtomicU32, Ordering};

use urt::PAGE;

/// Offset of the left ring's indexes (client to server).
pub const LEFT: usize = 0;
/// Offset of the right ring's indexes (server to client).
pub const RIGHT: usize = 8;
/// Offset of `cons` within a ring's indexes.
pub const CONS: usize = 0;
/// Offset of `prod` within a ring's indexes.
pub const PROD: usize = 4;
/// Offset of `left_order`.
pub const LEFT_ORDER: usize = 16;
/// Offset of `right_order`.
pub const RIGHT_ORDER: usize = 18;
/// Offset of `cli_live`.
pub const CLI_LIVE: usize = 20;
/// Offset of `srv_live`.
pub const SRV_LIVE: usize = 21;
/// Offset of `cli_notify`.
pub const CLI_NOTIFY: usize = 22;
/// Offset of `srv_notify`.
pub const SRV_NOTIFY: usize = 23;
/// Offset of `grants[]`.
pub const GRANTS: usize = 24;

/// Notify bit: kick the other side when data was written (`VCHAN_NOTIFY_WRITE`).
pub const NOTIFY_WRITE: u8 = 0x1;
/// Notify bit: kick the other side when data was read (`VCHAN_NOTIFY_READ`).
pub const NOTIFY_READ: u8 = 0x2;

/// Live byte: closed.
pub const LIVE_CLOSED: u8 = 0;
/// Live byte: connected.
pub const LIVE_OPEN: u8 = 1;
/// `cli_live` before the client connects.
pub const LIVE_WAITING: u8 = 2;

/// The smallest ring, 1024 bytes inside the shared page (`SMALL_RING_SHIFT`).
pub const SMALL_RING_SHIFT: u16 = 10;
/// The in-page ring of 2048 bytes (`LARGE_RING_SHIFT`).
pub const LARGE_RING_SHIFT: u16 = 11;
/// The largest ring, 1 MiB (`MAX_RING_SHIFT`).
pub const MAX_RING_SHIFT: u16 = 20;
/// Rings of this order and above have pages of their own.
pub const PAGE_SHIFT: u16 = 12;
/// Where the order-10 ring lies in the shared page.
pub const SMALL_RING_OFFSET: usize = 1024;
/// Where the order-11 ring lies in the shared page.
pub const LARGE_RING_OFFSET: usize = 2048;

/// The shared page, accessed only through atomics.
#[derive(Clone, Copy)]
pub(crate) struct Shared {
    base: *mut u8,
}

impl Shared {
    /// The page at `base`.
    ///
    /// # Safety
    /// `base` is page-aligned and maps [`PAGE`] bytes, readable and
    /// writable, for as long as the value (and its copies) is used.
    pub(crate) unsafe fn new(base: *mut u8) -> Self {
        Self { base }
    }

    fn u8_at(&self, off: usize) -> &AtomicU8 {
        assert!(off < PAGE);
        // SAFETY: `off` is inside the mapped page (`new`'s contract); any
        // byte is a valid `AtomicU8`, and the peer's concurrent writes are
        // what atomics are for.
        unsafe { AtomicU8::from_ptr(self.base.add(off)) }
    }

    fn u16_at(&self, off: usize) -> &AtomicU16 {
        assert!(off.is_multiple_of(2) && off + 2 <= PAGE);
        // SAFETY: as `u8_at`; `off` is even and the page aligned, so the
        // pointer is aligned for `u16`.
        unsafe { AtomicU16::from_ptr(self.base.add(off).cast()) }
    }

    pub(crate) fn u32_at(&self, off: usize) -> &AtomicU32 {
        assert!(off.is_multiple_of(4) && off + 4 <= PAGE);
        // SAFETY: as `u16_at`, for 4-byte alignment.
        unsafe { AtomicU32::from_ptr(self.base.add(off).cast()) }
    }

    /// Reads byte `off` (a live or notify byte).
    pub(crate) fn byte(&self, off: usize) -> u8 {
        self.u8_at(off).load(Ordering::Acquire)
    }

    /// Writes byte `off`.
    pub(crate) fn set_byte(&self, off: usize, v: u8) {
        self.u8_at(off).store(v, Ordering::Release)
    }

    /// Sets `bits` in byte `off`, with a full barrier.
    pub(crate) fn or_byte(&self, off: usize, bits: u8) {
        self.u8_at(off).fetch_or(bits, Ordering::SeqCst);
    }

    /// Clears `bits` in byte `off`; returns the byte as it was.
    pub(crate) fn take_bits(&self, off: usize, bits: u8) -> u8 {
        self.u8_at(off).fetch_and(!bits, Ordering::SeqCst)
    }

    /// Grant list entry `i`, if it lies in the page.
    pub(crate) fn grant(&self, i: usize) -> Option<u32> {
        let off = GRANTS.checked_add(i.checked_mul(4)?)?;
        (off + 4 <= PAGE).then(|| self.u32_at(off).load(Ordering::Acquire))
    }

    /// Zeroes the page and writes what a server sets up (libxenvchan's
    /// `init_gnt_srv`): the orders, `cli_live` waiting, `srv_live` open,
    /// and a request to be kicked when the client writes.
    pub(crate) fn init_server(&self, left_order: u16, right_order: u16) {
        for off in (0..PAGE).step_by(4) {
            self.u32_at(off).store(0, Ordering::Relaxed);
        }
        self.u16_at(LEFT_ORDER).store(left_order, Ordering::Relaxed);
        self.u16_at(RIGHT_ORDER)
            .store(right_order, Ordering::Relaxed);
        self.set_byte(CLI_LIVE, LIVE_WAITING);
        self.set_byte(SRV_LIVE, LIVE_OPEN);
        self.set_byte(CLI_NOTIFY, NOTIFY_WRITE);
    }

    /// Writes grant list entry `i` (the server, at set-up).
    pub(crate) fn set_grant(&self, i: usize, gref: u32) {
        self.u32_at(GRANTS + 4 * i).store(gref, Ordering::Release)
    }

    /// The orders the page says, read once.
    pub(crate) fn orders(&self) -> (u16, u16) {
        (
            self.u16_at(LEFT_ORDER).load(Ordering::Acquire),
            self.u16_at(RIGHT_ORDER).load(Ordering::Acquire),
        )
    }
}

/// Where one ring's bytes are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    /// Inside the shared page at this offset (orders 10 and 11).
    InPage(usize),
    /// In this many pages of their own, granted and listed in `grants[]`.
    Pages(usize),
}

/// The layout of both rings, as checked from their orders.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// The left ring's order (client to server).
    pub left_order: u16,
    /// The right ring's order (server to client).
    pub right_order: u16,
}

/// What is wrong with a layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayoutError {
    /// An order outside 10..=20.
    Order(u16),
    /// Both rings want the same in-page slot.
    SameSlot,
    /// The grant list would run into an in-page ring or off the page.
    GrantsOverflow,
}

impl Layout {
    /// The layout of orders `left_order` and `right_order`, if it is one
    /// libxenvchan's client accepts (`init_gnt_cli`) and its grant list
    /// fits the page before any in-page ring.
    pub fn new(left_order: u16, right_order: u16) -> Result<Self, LayoutError> {
        for o in [left_order, right_order] {
            if !(SMALL_RING_SHIFT..=MAX_RING_SHIFT).contains(&o) {
                return Err(LayoutError::Order(o));
            }
        }
        if left_order == right_order && left_order < PAGE_SHIFT {
            return Err(LayoutError::SameSlot);
        }
        let l = Self {
            left_order,
            right_order,
        };
        let end = [l.left(), l.right()]
            .iter()
            .filter_map(|p| match p {
                Place::InPage(off) => Some(*off),
                Place::Pages(_) => None,
            })
            .min()
            .unwrap_or(PAGE);
        if GRANTS + 4 * l.grant_count() > end {
            return Err(LayoutError::GrantsOverflow);
        }
        Ok(l)
    }

    /// The layout a page says (read once; the peer may change it after).
    pub(crate) fn read(page: &Shared) -> Result<Self, LayoutError> {
        let (left, right) = page.orders();
        Self::new(left, right)
    }

    /// The layout libxenvchan's server picks for rings of at least
    /// `left_min` and `right_min` bytes (`libxenvchan_server_init`): both
    /// in the page when they fit (order 10 for the left, 11 for the right,
    /// or the other way round), else the smallest orders that hold them.
    pub fn for_sizes(left_min: usize, right_min: usize) -> Result<Self, LayoutError> {
        const SMALL: usize = 1 << SMALL_RING_SHIFT;
        const LARGE: usize = 1 << LARGE_RING_SHIFT;
        let min_order = |size: usize| {
            let mut o = PAGE_SHIFT;
            while size > 1 << o && o <= MAX_RING_SHIFT {
                o += 1;
            }
            o
        };
        let (mut left, mut right) = (min_order(left_min), min_order(right_min));
        if left_min <= SMALL && right_min <= LARGE {
            (left, right) = (SMALL_RING_SHIFT, LARGE_RING_SHIFT);
        } else if left_min <= LARGE && right_min <= SMALL {
            (left, right) = (LARGE_RING_SHIFT, SMALL_RING_SHIFT);
        } else if left_min <= LARGE {
            left = LARGE_RING_SHIFT;
        } else if right_min <= LARGE {
            right = LARGE_RING_SHIFT;
        }
        Self::new(left, right)
    }

    /// Where the left ring lies.
    pub fn left(&self) -> Place {
        place(self.left_order)
    }

    /// Where the right ring lies.
    pub fn right(&self) -> Place {
        place(self.right_order)
    }

    /// Entries of the grant list (the left ring's pages, then the right's).
    pub fn grant_count(&self) -> usize {
        [self.left(), self.right()]
            .iter()
            .map(|p| match p {
                Place::InPage(_) => 0,
                Place::Pages(n) => *n,
            })
            .sum()
    }
}

fn place(order: u16) -> Place {
    match order {
        SMALL_RING_SHIFT => Place::InPage(SMALL_RING_OFFSET),
        LARGE_RING_SHIFT => Place::InPage(LARGE_RING_OFFSET),
        o => Place::Pages(1 << (o - PAGE_SHIFT)),
    }
}
