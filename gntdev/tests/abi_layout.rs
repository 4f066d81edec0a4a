//! Pins every ioctl struct of `gntdev::abi`.
//!
//! FreeBSD's structs: FreeBSD's `sys/xen/gntdev.h` is not installed
//! anywhere we can compile against, so their sizes and offsets are
//! asserted as read from that header (freebsd-src, `sys/xen/gntdev.h`,
//! x86_64: `uint64_t` aligned to 8, pointers 8 bytes).
//!
//! The Linux-derived structs (`GRANT_COPY` and its segment,
//! `SET_MAX_GRANTS`): a C program built against Xen's `xen/sys/gntdev.h`
//! from Debian's `libxen-dev` prints `sizeof`/`offsetof`, and each must
//! equal the Rust side. The headers are looked up as in
//! `xen/tests/abi_layout.rs`: `$XEN_INCLUDE`, the emulated-host cache,
//! `/usr/include`.

use std::mem::{offset_of, size_of};
use std::path::{Path, PathBuf};
use std::process::Command;

use gntdev::abi::*;

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

fn include_dir() -> PathBuf {
    let cache = std::env::var_os("XENHOST_CACHE")
        .map_or_else(
            || Path::new(env!("CARGO_MANIFEST_DIR")).join("../.cache/xenhost"),
            PathBuf::from,
        )
        .join("root/usr/include");
    std::env::var_os("XEN_INCLUDE")
        .map(PathBuf::from)
        .into_iter()
        .chain([cache, PathBuf::from("/usr/include")])
        .find(|d| d.join("xen/sys/gntdev.h").exists())
        .expect(
            "xen/sys/gntdev.h (Debian's libxen-dev) not found: run scripts/test or set XEN_INCLUDE",
        )
}

#[test]
fn linux_structs_match_xen_tools_header() {
    let seg = "struct ioctl_gntdev_grant_copy_segment";
    let facts: Vec<(String, usize)> = vec![
        (format!("sizeof({seg})"), size_of::<GrantCopySegment>()),
        (
            format!("offsetof({seg}, source)"),
            offset_of!(GrantCopySegment, source),
        ),
        (
            format!("offsetof({seg}, dest)"),
            offset_of!(GrantCopySegment, dest),
        ),
        (
            format!("offsetof({seg}, len)"),
            offset_of!(GrantCopySegment, len),
        ),
        (
            format!("offsetof({seg}, flags)"),
            offset_of!(GrantCopySegment, flags),
        ),
        (
            format!("offsetof({seg}, status)"),
            offset_of!(GrantCopySegment, status),
        ),
        // The union's foreign member, as CopySideArg packs it.
        (format!("offsetof({seg}, source.foreign.ref)"), 0),
        (format!("offsetof({seg}, source.foreign.offset)"), 4),
        (format!("offsetof({seg}, source.foreign.domid)"), 6),
        (format!("sizeof((({seg} *)0)->source)"), 8),
        (
            "sizeof(struct ioctl_gntdev_grant_copy)".into(),
            size_of::<GrantCopy>(),
        ),
        (
            "offsetof(struct ioctl_gntdev_grant_copy, count)".into(),
            offset_of!(GrantCopy, count),
        ),
        (
            "offsetof(struct ioctl_gntdev_grant_copy, segments)".into(),
            offset_of!(GrantCopy, segments),
        ),
        (
            "sizeof(struct ioctl_gntdev_set_max_grants)".into(),
            size_of::<SetMaxGrants>(),
        ),
        (
            "offsetof(struct ioctl_gntdev_set_max_grants, count)".into(),
            offset_of!(SetMaxGrants, count),
        ),
        (
            "UNMAP_NOTIFY_CLEAR_BYTE".into(),
            UNMAP_NOTIFY_CLEAR_BYTE as usize,
        ),
        (
            "UNMAP_NOTIFY_SEND_EVENT".into(),
            UNMAP_NOTIFY_SEND_EVENT as usize,
        ),
    ];
    // The packing of CopySideArg, checked on the Rust side too.
    let raw = CopySideArg::Foreign {
        gref: 0x0403_0201,
        offset: 0x0605,
        domid: 0x0807,
    }
    .encode();
    assert_eq!(raw.to_ne_bytes(), [1, 2, 3, 4, 5, 6, 7, 8]);

    let out_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("gntdev_abi_layout");
    std::fs::create_dir_all(&out_dir).unwrap();
    let mut src = String::from(
        "#include <stddef.h>\n#include <stdint.h>\n#include <stdio.h>\n#include <xen/sys/gntdev.h>\nint main(void) {\n",
    );
    for (c, _) in &facts {
        src += &format!("    printf(\"%llu\\n\", (unsigned long long)({c}));\n");
    }
    src += "    return 0;\n}\n";
    let c_file = out_dir.join("layout.c");
    let exe = out_dir.join("layout");
    std::fs::write(&c_file, src).unwrap();
    let cc = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()))
        .arg("-I")
        .arg(include_dir())
        .arg(&c_file)
        .arg("-o")
        .arg(&exe)
        .output()
        .expect("run the C compiler");
    assert!(
        cc.status.success(),
        "C compile failed:\n{}",
        String::from_utf8_lossy(&cc.stderr)
    );
    let run = Command::new(&exe).output().expect("run the layout program");
    assert!(run.status.success());
    let values: Vec<usize> = String::from_utf8(run.stdout)
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    assert_eq!(values.len(), facts.len());
    let wrong: Vec<String> = facts
        .iter()
        .zip(&values)
        .filter(|((_, r), c)| r != *c)
        .map(|((f, r), c)| format!("{f}: C says {c}, Rust says {r}"))
        .collect();
    assert!(wrong.is_empty(), "ABI mismatches:\n{}", wrong.join("\n"));
}
