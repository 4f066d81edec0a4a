//! Pins every ioctl struct of the user ABI (`uapi::gntdev`; the other
//! devices' arguments are plain `u32`/`u64` words).
//!
//! FreeBSD's structs: FreeBSD's `sys/xen/gntdev.h` is not installed
//! anywhere we can compile against, so their sizes and offsets are
//! asserted as read from that header (freebsd-src, `sys/xen/gntdev.h`,
//! x86_64: `uint64_t` aligned to 8, pointers 8 bytes).
//!
//! The Linux-derived structs (`GRANT_COPY` and its segment,
//! `SET_MAX_GRANTS`): a C program built against Xen's `xen/sys/gntdev.h`
//! from Debian's `libxen-dev` prints `sizeof`/`offsetof`, and each must
//! equal the Rust side (`abicheck`, which also finds the headers).

use std::mem::{offset_of, size_of};
use std::path::PathBuf;

use abicheck::{Fact, constant, layout};

use uapi::gntdev::*;
use uapi::ioc::*;

#[test]
fn freebsd_structs_match_freebsd_header() {
    // struct ioctl_gntdev_unmap_notify { uint64_t index; uint32_t action;
    //     uint32_t event_channel_port; };
    assert_eq!(size_of::<UnmapNotify>(), 16);
    assert_eq!(offset_of!(UnmapNotify, index), 0);
    assert_eq!(offset_of!(UnmapNotify, action), 8);
    assert_eq!(offset_of!(UnmapNotify, event_channel_port), 12);
    // struct ioctl_gntdev_alloc_gref { uint16_t domid; uint16_t flags;
    //     uint32_t count; uint64_t index; uint32_t *gref_ids; };
    assert_eq!(size_of::<AllocGref>(), 24);
    assert_eq!(offset_of!(AllocGref, domid), 0);
    assert_eq!(offset_of!(AllocGref, flags), 2);
    assert_eq!(offset_of!(AllocGref, count), 4);
    assert_eq!(offset_of!(AllocGref, index), 8);
    assert_eq!(offset_of!(AllocGref, gref_ids), 16);
    // struct ioctl_gntdev_dealloc_gref { uint64_t index; uint32_t count; };
    // (4 bytes of tail padding)
    assert_eq!(size_of::<DeallocGref>(), 16);
    assert_eq!(offset_of!(DeallocGref, index), 0);
    assert_eq!(offset_of!(DeallocGref, count), 8);
    // struct ioctl_gntdev_grant_ref { uint32_t domid; uint32_t ref; };
    assert_eq!(size_of::<GrantRefArg>(), 8);
    assert_eq!(offset_of!(GrantRefArg, domid), 0);
    assert_eq!(offset_of!(GrantRefArg, gref), 4);
    // struct ioctl_gntdev_map_grant_ref { uint32_t count; uint32_t pad0;
    //     uint64_t index; struct ioctl_gntdev_grant_ref *refs; };
    assert_eq!(size_of::<MapGrantRef>(), 24);
    assert_eq!(offset_of!(MapGrantRef, count), 0);
    assert_eq!(offset_of!(MapGrantRef, pad0), 4);
    assert_eq!(offset_of!(MapGrantRef, index), 8);
    assert_eq!(offset_of!(MapGrantRef, refs), 16);
    // struct ioctl_gntdev_unmap_grant_ref { uint64_t index; uint32_t count; };
    assert_eq!(size_of::<UnmapGrantRef>(), 16);
    assert_eq!(offset_of!(UnmapGrantRef, index), 0);
    assert_eq!(offset_of!(UnmapGrantRef, count), 8);
    // struct ioctl_gntdev_get_offset_for_vaddr { uint64_t vaddr;
    //     uint64_t offset; uint32_t count; };
    assert_eq!(size_of::<GetOffsetForVaddr>(), 24);
    assert_eq!(offset_of!(GetOffsetForVaddr, vaddr), 0);
    assert_eq!(offset_of!(GetOffsetForVaddr, offset), 8);
    assert_eq!(offset_of!(GetOffsetForVaddr, count), 16);
    // The numbers: _IOW/_IOWR('E', nr, struct) with FreeBSD's ioccom.h.
    let e = u32::from(b'E') << 8;
    assert_eq!(IOCTL_GNTDEV_SET_UNMAP_NOTIFY, IOC_IN | 16 << 16 | e);
    assert_eq!(IOCTL_GNTDEV_ALLOC_GREF, IOC_INOUT | 24 << 16 | e | 1);
    assert_eq!(IOCTL_GNTDEV_DEALLOC_GREF, IOC_IN | 16 << 16 | e | 2);
    assert_eq!(IOCTL_GNTDEV_MAP_GRANT_REF, IOC_INOUT | 24 << 16 | e | 3);
    assert_eq!(IOCTL_GNTDEV_UNMAP_GRANT_REF, IOC_IN | 16 << 16 | e | 4);
    assert_eq!(
        IOCTL_GNTDEV_GET_OFFSET_FOR_VADDR,
        IOC_INOUT | 24 << 16 | e | 5
    );
    assert_eq!(
        (
            GNTDEV_ALLOC_FLAG_WRITABLE,
            UNMAP_NOTIFY_CLEAR_BYTE,
            UNMAP_NOTIFY_SEND_EVENT
        ),
        (1, 1, 2)
    );
}

/// Our own struct has no C header yet: its layout is pinned here, as
/// the C a user program would declare it:
/// `struct ioctl_gntdev_grant_user { uint16_t domid; uint16_t flags;
/// uint32_t count; uint64_t index; uint32_t *gref_ids; uint64_t vaddr; };`
#[test]
fn own_structs_keep_their_layout() {
    assert_eq!(size_of::<GrantUser>(), 32);
    assert_eq!(offset_of!(GrantUser, domid), 0);
    assert_eq!(offset_of!(GrantUser, flags), 2);
    assert_eq!(offset_of!(GrantUser, count), 4);
    assert_eq!(offset_of!(GrantUser, index), 8);
    assert_eq!(offset_of!(GrantUser, gref_ids), 16);
    assert_eq!(offset_of!(GrantUser, vaddr), 24);
    let e = u32::from(b'E') << 8;
    assert_eq!(IOCTL_GNTDEV_GRANT_USER, IOC_INOUT | 32 << 16 | e | 10);
}

#[test]
fn linux_structs_match_xen_tools_header() {
    let mut f: Vec<Fact> = Vec::new();
    layout!(f, GrantCopySegment, "struct ioctl_gntdev_grant_copy_segment",
        source => "source", dest => "dest", len => "len", flags => "flags",
        status => "status");
    let seg = "struct ioctl_gntdev_grant_copy_segment";
    // The union's foreign member, as CopySideArg packs it.
    constant!(f,
        0 => format!("offsetof({seg}, source.foreign.ref)"),
        4 => format!("offsetof({seg}, source.foreign.offset)"),
        6 => format!("offsetof({seg}, source.foreign.domid)"),
        8 => format!("sizeof((({seg} *)0)->source)"),
    );
    layout!(f, GrantCopy, "struct ioctl_gntdev_grant_copy",
        count => "count", segments => "segments");
    layout!(f, SetMaxGrants, "struct ioctl_gntdev_set_max_grants", count => "count");
    constant!(f,
        UNMAP_NOTIFY_CLEAR_BYTE => "UNMAP_NOTIFY_CLEAR_BYTE",
        UNMAP_NOTIFY_SEND_EVENT => "UNMAP_NOTIFY_SEND_EVENT",
        GNTCOPY_SOURCE_GREF => "GNTCOPY_source_gref",
        GNTCOPY_DEST_GREF => "GNTCOPY_dest_gref",
        uapi::evtchn::EVTCHN_STATUS_CLOSED => "EVTCHNSTAT_closed",
        uapi::evtchn::EVTCHN_STATUS_UNBOUND => "EVTCHNSTAT_unbound",
        uapi::evtchn::EVTCHN_STATUS_INTERDOMAIN => "EVTCHNSTAT_interdomain",
    );
    // The packing of CopySideArg, checked on the Rust side too.
    let raw = CopySideArg::Foreign {
        gref: 0x0403_0201,
        offset: 0x0605,
        domid: 0x0807,
    }
    .encode();
    assert_eq!(raw.to_ne_bytes(), [1, 2, 3, 4, 5, 6, 7, 8]);

    let wrong = abicheck::check(
        &PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("uapi_abi_layout"),
        &abicheck::xen_include_dir("xen/sys/gntdev.h"),
        &[],
        &[
            "xen/xen.h",
            "xen/grant_table.h",
            "xen/event_channel.h",
            "xen/sys/gntdev.h",
        ],
        "",
        &f,
    );
    assert!(wrong.is_empty(), "ABI mismatches:\n{}", wrong.join("\n"));
}
