//! The user ABI of `/dev/xen/gntdev`: FreeBSD's `sys/xen/gntdev.h` (ioctl
//! group `'E'`, numbers 0-5, same directions and layouts), plus two
//! commands FreeBSD lacks, in the same group:
//!
//! | nr | command | dir | from |
//! |---|---|---|---|
//! | 0 | [`IOCTL_GNTDEV_SET_UNMAP_NOTIFY`] | W | FreeBSD |
//! | 1 | [`IOCTL_GNTDEV_ALLOC_GREF`] | WR | FreeBSD |
//! | 2 | [`IOCTL_GNTDEV_DEALLOC_GREF`] | W | FreeBSD |
//! | 3 | [`IOCTL_GNTDEV_MAP_GRANT_REF`] | WR | FreeBSD |
//! | 4 | [`IOCTL_GNTDEV_UNMAP_GRANT_REF`] | W | FreeBSD |
//! | 5 | [`IOCTL_GNTDEV_GET_OFFSET_FOR_VADDR`] | WR | FreeBSD |
//! | 8 | [`IOCTL_GNTDEV_GRANT_COPY`] | W | Linux's semantics and segment layout (Xen's `xen/sys/gntdev.h`); nr 8 as Linux's |
//! | 9 | [`IOCTL_GNTDEV_SET_MAX_GRANTS`] | W | Linux's `SET_MAX_GRANTS` (its nr 3 is taken in `'E'`); 9 is the first free nr after 8 |
//! | 10 | [`IOCTL_GNTDEV_GRANT_USER`] | WR | ours: grant pages the caller already has, without a copy (NetBSD-style loans for read-only grants) |
//!
//! Arrays are passed by pointer (`gref_ids`, `refs`, `segments`), never as
//! trailing flexible arrays: the ioctl number encodes a fixed struct size
//! (Xen commit af7e907c33). Pointers are user addresses, held as `u64`
//! (the guest is x86_64, so `sizeof(void *) == 8`).
//!
//! The structs are `#[repr(C)]` with the C layouts (pinned by
//! the crate's `tests/abi_layout.rs`); they are converted to and from the bytes user
//! space passes with [`IoctlArg`], field by field, without `unsafe`.

use crate::ioc::{iow, iowr};

/// The ioctl group of gntdev.
pub const GNTDEV_GROUP: u8 = b'E';

/// Notify action: clear the byte at `index` (`UNMAP_NOTIFY_CLEAR_BYTE`).
pub const UNMAP_NOTIFY_CLEAR_BYTE: u32 = 0x1;
/// Notify action: signal `event_channel_port` (`UNMAP_NOTIFY_SEND_EVENT`).
pub const UNMAP_NOTIFY_SEND_EVENT: u32 = 0x2;
/// `ALLOC_GREF` flag: the peer may write the pages (`GNTDEV_ALLOC_FLAG_WRITABLE`).
pub const GNTDEV_ALLOC_FLAG_WRITABLE: u16 = 1;
/// [`GrantCopySegment::flags`]: the source is a grant (Xen's
/// `GNTCOPY_source_gref`).
pub const GNTCOPY_SOURCE_GREF: u16 = 1;
/// [`GrantCopySegment::flags`]: the destination is a grant (Xen's
/// `GNTCOPY_dest_gref`).
pub const GNTCOPY_DEST_GREF: u16 = 2;
/// The default and largest per-open grant limit (Linux gntdev's default
/// `limit`).
pub const DEFAULT_MAX_GRANTS: u32 = 65536;

/// A struct passed to an ioctl, read from and written to user bytes.
pub trait IoctlArg: Sized {
    /// `sizeof` the C struct.
    const SIZE: usize;
    /// The struct from its native-endian bytes (`bytes.len() == SIZE`).
    fn decode(bytes: &[u8]) -> Self;
    /// Writes the struct's fields into `bytes` (`bytes.len() == SIZE`);
    /// padding is left as it is.
    fn encode(&self, bytes: &mut [u8]);
}

/// Declares a `#[repr(C)]` ioctl struct and its [`IoctlArg`] impl from
/// the field list (offsets by `offset_of!`, so the layout is Rust's
/// `repr(C)` one, which the layout test pins to the C headers).
macro_rules! ioctl_struct {
    ($(#[$m:meta])* $name:ident { $($(#[$fm:meta])* $f:ident: $t:ty),* $(,)? }) => {
        $(#[$m])*
        #[repr(C)]
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        pub struct $name {
            $($(#[$fm])* pub $f: $t,)*
        }

        impl IoctlArg for $name {
            const SIZE: usize = core::mem::size_of::<Self>();
            fn decode(bytes: &[u8]) -> Self {
                Self {
                    $($f: {
                        let at = core::mem::offset_of!($name, $f);
                        const N: usize = core::mem::size_of::<$t>();
                        let mut raw = [0u8; N];
                        raw.copy_from_slice(&bytes[at..at + N]);
                        <$t>::from_ne_bytes(raw)
                    },)*
                }
            }
            fn encode(&self, bytes: &mut [u8]) {
                $({
                    let at = core::mem::offset_of!($name, $f);
                    let raw = self.$f.to_ne_bytes();
                    bytes[at..at + raw.len()].copy_from_slice(&raw);
                })*
            }
        }
    };
}

ioctl_struct!(
    /// `struct ioctl_gntdev_unmap_notify`.
    UnmapNotify {
        /// IN: file offset of the byte to clear (its page selects the region).
        index: u64,
        /// IN: `UNMAP_NOTIFY_*` bits.
        action: u32,
        /// IN: local event channel port to signal.
        event_channel_port: u32,
    }
);

ioctl_struct!(
    /// `struct ioctl_gntdev_alloc_gref`.
    AllocGref {
        /// IN: the domain given access.
        domid: u16,
        /// IN: [`GNTDEV_ALLOC_FLAG_WRITABLE`].
        flags: u16,
        /// IN: pages to allocate and grant.
        count: u32,
        /// OUT: file offset to `mmap`.
        index: u64,
        /// IN: user pointer to `count` `uint32_t` where the references go.
        gref_ids: u64,
    }
);

ioctl_struct!(
    /// `struct ioctl_gntdev_grant_user` (ours): grant `count` pages of the
    /// caller's memory at `vaddr` as they are. Read-only grants lend the
    /// pages (the caller's writes then go to a copy: the peer keeps the
    /// contents at grant time, and never-touched pages share one zero
    /// page); writable grants share them, both sides seeing each other's
    /// writes. `DEALLOC_GREF` of `index` ends the grants; the pages stay
    /// for the peer until it unmaps them, whatever the caller does
    /// meanwhile.
    GrantUser {
        /// IN: the domain given access.
        domid: u16,
        /// IN: [`GNTDEV_ALLOC_FLAG_WRITABLE`].
        flags: u16,
        /// IN: pages to grant.
        count: u32,
        /// OUT: the offset that `DEALLOC_GREF` ends.
        index: u64,
        /// IN: user pointer to `count` `uint32_t` where the references go.
        gref_ids: u64,
        /// IN: page-aligned user address of the first page.
        vaddr: u64,
    }
);

ioctl_struct!(
    /// `struct ioctl_gntdev_dealloc_gref`.
    DeallocGref {
        /// IN: the offset `ALLOC_GREF` returned.
        index: u64,
        /// IN: its count.
        count: u32,
    }
);

ioctl_struct!(
    /// `struct ioctl_gntdev_grant_ref`: one foreign grant.
    GrantRefArg {
        /// The granting domain.
        domid: u32,
        /// Its reference.
        gref: u32,
    }
);

ioctl_struct!(
    /// `struct ioctl_gntdev_map_grant_ref`.
    MapGrantRef {
        /// IN: grants to map.
        count: u32,
        /// Padding.
        pad0: u32,
        /// OUT: file offset to `mmap`.
        index: u64,
        /// IN: user pointer to `count` [`GrantRefArg`].
        refs: u64,
    }
);

ioctl_struct!(
    /// `struct ioctl_gntdev_unmap_grant_ref`.
    UnmapGrantRef {
        /// IN: the offset `MAP_GRANT_REF` returned.
        index: u64,
        /// IN: its count.
        count: u32,
    }
);

ioctl_struct!(
    /// `struct ioctl_gntdev_get_offset_for_vaddr`.
    GetOffsetForVaddr {
        /// IN: an address inside the mapping.
        vaddr: u64,
        /// OUT: the file offset that was mapped.
        offset: u64,
        /// OUT: its number of grants.
        count: u32,
    }
);

ioctl_struct!(
    /// `struct ioctl_gntdev_set_max_grants` (Linux's layout).
    SetMaxGrants {
        /// IN: the new per-open limit, at most [`DEFAULT_MAX_GRANTS`].
        count: u32,
    }
);

ioctl_struct!(
    /// `struct ioctl_gntdev_grant_copy` (Linux's layout: `unsigned int`
    /// count, then the pointer).
    GrantCopy {
        /// IN: number of segments.
        count: u32,
        /// IN: user pointer to `count` [`GrantCopySegment`].
        segments: u64,
    }
);

ioctl_struct!(
    /// `struct ioctl_gntdev_grant_copy_segment`. Each side is a union in C:
    /// `void *virt` (a user address) or `{u32 ref; u16 offset; u16 domid}`
    /// (a foreign grant), as the `GNTCOPY_source_gref`/`GNTCOPY_dest_gref`
    /// bits of `flags` say; [`CopySideArg`] reads it.
    GrantCopySegment {
        /// The source union, as 8 raw bytes.
        source: u64,
        /// The destination union, as 8 raw bytes.
        dest: u64,
        /// Bytes to copy.
        len: u16,
        /// `GNTCOPY_*` bits.
        flags: u16,
        /// OUT: the `GNTST_*` status of this segment.
        status: i16,
    }
);

/// One side of a [`GrantCopySegment`], decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CopySideArg {
    /// A user address (`virt`).
    Virt(u64),
    /// A foreign grant (`foreign`).
    Foreign {
        /// Its reference.
        gref: u32,
        /// Byte offset in the granted page.
        offset: u16,
        /// The granting domain.
        domid: u16,
    },
}

impl CopySideArg {
    /// Reads a side's union: a grant when `is_gref`, else a user address.
    pub fn decode(raw: u64, is_gref: bool) -> Self {
        if !is_gref {
            return Self::Virt(raw);
        }
        let b = raw.to_ne_bytes();
        Self::Foreign {
            gref: u32::from_ne_bytes([b[0], b[1], b[2], b[3]]),
            offset: u16::from_ne_bytes([b[4], b[5]]),
            domid: u16::from_ne_bytes([b[6], b[7]]),
        }
    }

    /// The union's 8 bytes for this side.
    pub fn encode(self) -> u64 {
        match self {
            Self::Virt(a) => a,
            Self::Foreign {
                gref,
                offset,
                domid,
            } => {
                let mut b = [0u8; 8];
                b[..4].copy_from_slice(&gref.to_ne_bytes());
                b[4..6].copy_from_slice(&offset.to_ne_bytes());
                b[6..].copy_from_slice(&domid.to_ne_bytes());
                u64::from_ne_bytes(b)
            }
        }
    }
}

/// `IOCTL_GNTDEV_SET_UNMAP_NOTIFY`: `_IOW('E', 0, ...)`.
pub const IOCTL_GNTDEV_SET_UNMAP_NOTIFY: u32 = iow::<UnmapNotify>(GNTDEV_GROUP, 0);
/// `IOCTL_GNTDEV_ALLOC_GREF`: `_IOWR('E', 1, ...)`.
pub const IOCTL_GNTDEV_ALLOC_GREF: u32 = iowr::<AllocGref>(GNTDEV_GROUP, 1);
/// `IOCTL_GNTDEV_DEALLOC_GREF`: `_IOW('E', 2, ...)`.
pub const IOCTL_GNTDEV_DEALLOC_GREF: u32 = iow::<DeallocGref>(GNTDEV_GROUP, 2);
/// `IOCTL_GNTDEV_MAP_GRANT_REF`: `_IOWR('E', 3, ...)`.
pub const IOCTL_GNTDEV_MAP_GRANT_REF: u32 = iowr::<MapGrantRef>(GNTDEV_GROUP, 3);
/// `IOCTL_GNTDEV_UNMAP_GRANT_REF`: `_IOW('E', 4, ...)`.
pub const IOCTL_GNTDEV_UNMAP_GRANT_REF: u32 = iow::<UnmapGrantRef>(GNTDEV_GROUP, 4);
/// `IOCTL_GNTDEV_GET_OFFSET_FOR_VADDR`: `_IOWR('E', 5, ...)`.
pub const IOCTL_GNTDEV_GET_OFFSET_FOR_VADDR: u32 = iowr::<GetOffsetForVaddr>(GNTDEV_GROUP, 5);
/// `IOCTL_GNTDEV_GRANT_COPY`: `_IOW('E', 8, ...)` (ours; see the table).
pub const IOCTL_GNTDEV_GRANT_COPY: u32 = iow::<GrantCopy>(GNTDEV_GROUP, 8);
/// `IOCTL_GNTDEV_SET_MAX_GRANTS`: `_IOW('E', 9, ...)` (ours; see the table).
pub const IOCTL_GNTDEV_SET_MAX_GRANTS: u32 = iow::<SetMaxGrants>(GNTDEV_GROUP, 9);
/// `IOCTL_GNTDEV_GRANT_USER`: `_IOWR('E', 10, ...)` (ours; see the table).
pub const IOCTL_GNTDEV_GRANT_USER: u32 = iowr::<GrantUser>(GNTDEV_GROUP, 10);

#[cfg(test)]
mod tests {
    use super::*;

    use crate::ioc::iocparm_len;

    #[test]
    fn numbers_follow_ioccom() {
        // _IOW('E', 0, 16 bytes) = IOC_IN | 16 << 16 | 'E' << 8 | 0.
        assert_eq!(IOCTL_GNTDEV_SET_UNMAP_NOTIFY, 0x8010_4500);
        assert_eq!(IOCTL_GNTDEV_ALLOC_GREF, 0xc018_4501);
        assert_eq!(IOCTL_GNTDEV_DEALLOC_GREF, 0x8010_4502);
        assert_eq!(IOCTL_GNTDEV_MAP_GRANT_REF, 0xc018_4503);
        assert_eq!(IOCTL_GNTDEV_UNMAP_GRANT_REF, 0x8010_4504);
        assert_eq!(IOCTL_GNTDEV_GET_OFFSET_FOR_VADDR, 0xc018_4505);
        assert_eq!(IOCTL_GNTDEV_GRANT_COPY, 0x8010_4508);
        assert_eq!(IOCTL_GNTDEV_SET_MAX_GRANTS, 0x8004_4509);
        assert_eq!(IOCTL_GNTDEV_GRANT_USER, 0xc020_450a);
        assert_eq!(iocparm_len(IOCTL_GNTDEV_ALLOC_GREF), AllocGref::SIZE);
    }

    #[test]
    fn encode_decode_round_trip() {
        let a = AllocGref {
            domid: 7,
            flags: 1,
            count: 3,
            index: 0x1000,
            gref_ids: 0xdead_b000,
        };
        let mut b = [0xaau8; AllocGref::SIZE];
        a.encode(&mut b);
        assert_eq!(AllocGref::decode(&b), a);
        let f = CopySideArg::Foreign {
            gref: 9,
            offset: 12,
            domid: 3,
        };
        assert_eq!(CopySideArg::decode(f.encode(), true), f);
        assert_eq!(CopySideArg::decode(42, false), CopySideArg::Virt(42));
    }
}
