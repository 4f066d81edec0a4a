//! The PVH boot protocol (`arch-x86/hvm/start_info.h`).

/// `hvm_start_info.magic`: "xEn3" with the 0x80 bit of the "E" set.
pub const START_MAGIC: u32 = 0x336e_c578;

/// `struct hvm_start_info`: what Xen hands a PVH guest in `ebx`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct HvmStartInfo {
    /// Must be [`START_MAGIC`].
    pub magic: u32,
    /// 0, or 1 and later when the memory map fields are present.
    pub version: u32,
    /// `SIF_*` flags.
    pub flags: u32,
    /// Number of entries at `modlist_paddr`.
    pub nr_modules: u32,
    /// Physical address of an array of [`HvmModlistEntry`].
    pub modlist_paddr: u64,
    /// Physical address of the NUL-terminated command line, or 0.
    pub cmdline_paddr: u64,
    /// Physical address of the ACPI RSDP.
    pub rsdp_paddr: u64,
    /// Physical address of an array of [`HvmMemmapEntry`] (version >= 1).
    pub memmap_paddr: u64,
    /// Number of memory map entries (version >= 1).
    pub memmap_entries: u32,
    /// Must be zero.
    pub reserved: u32,
}

/// `struct hvm_modlist_entry`: one module (xl's `ramdisk=`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct HvmModlistEntry {
    /// Physical address of the module's bytes.
    pub paddr: u64,
    /// Size in bytes.
    pub size: u64,
    /// Physical address of the module's command line, or 0.
    pub cmdline_paddr: u64,
    /// Must be zero.
    pub reserved: u64,
}

/// `struct hvm_memmap_table_entry`: one E820-style memory region.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HvmMemmapEntry {
    /// Base physical address.
    pub addr: u64,
    /// Length in bytes.
    pub size: u64,
    /// One of the `MEMMAP_TYPE_*` values.
    pub kind: u32,
    /// Must be zero.
    pub reserved: u32,
}

/// Usable RAM (`XEN_HVM_MEMMAP_TYPE_RAM`).
pub const MEMMAP_TYPE_RAM: u32 = 1;
/// Reserved by firmware or Xen (`XEN_HVM_MEMMAP_TYPE_RESERVED`).
pub const MEMMAP_TYPE_RESERVED: u32 = 2;
/// ACPI tables (`XEN_HVM_MEMMAP_TYPE_ACPI`).
pub const MEMMAP_TYPE_ACPI: u32 = 3;
