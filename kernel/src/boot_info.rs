//! What Xen tells us at boot: `hvm_start_info`, copied into the kernel
//! before anything can overwrite it (Xen places it just past our image),
//! or what the PV start of day gathered (`arch::pv`).

use core::fmt;

use xen::abi::start_info::{
    HvmMemmapEntry, HvmModlistEntry, HvmStartInfo, MEMMAP_TYPE_RAM, START_MAGIC,
};

/// Most memory map entries kept; Xen gives a PVH guest a handful.
pub const MAX_MEMMAP: usize = 64;
/// Longest command line kept, in bytes.
pub const MAX_CMDLINE: usize = 1024;
/// Most modules kept.
pub const MAX_MODULES: usize = 8;

/// Why the start info was rejected.
#[derive(Debug)]
pub enum BootInfoError {
    /// The magic number is not `XEN_HVM_START_MAGIC_VALUE`.
    BadMagic(u32),
    /// Version 0 carries no memory map, which we need.
    NoMemoryMap(u32),
}

impl fmt::Display for BootInfoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadMagic(m) => {
                write!(f, "hvm_start_info magic {m:#x}, expected {START_MAGIC:#x}")
            }
            Self::NoMemoryMap(v) => write!(f, "hvm_start_info version {v} has no memory map"),
        }
    }
}

/// The boot information, owned by the kernel.
pub struct BootInfo {
    memmap: [HvmMemmapEntry; MAX_MEMMAP],
    memmap_len: usize,
    cmdline: [u8; MAX_CMDLINE],
    cmdline_len: usize,
    modules: [HvmModlistEntry; MAX_MODULES],
    modules_len: usize,
    boot_region_end: u64,
}

impl BootInfo {
    /// Boot information with nothing in it yet.
    fn empty() -> Self {
        Self {
            memmap: [HvmMemmapEntry {
                addr: 0,
                size: 0,
                kind: 0,
                reserved: 0,
            }; MAX_MEMMAP],
            memmap_len: 0,
            cmdline: [0; MAX_CMDLINE],
            cmdline_len: 0,
            modules: [HvmModlistEntry {
                paddr: 0,
                size: 0,
                cmdline_paddr: 0,
                reserved: 0,
            }; MAX_MODULES],
            modules_len: 0,
            boot_region_end: 0,
        }
    }

    /// Checks and copies the start info at physical address `paddr`.
    ///
    /// # Safety
    /// `paddr` must be the address Xen passed in `ebx`, identity-mapped,
    /// with the structures it points to not yet overwritten.
    pub unsafe fn copy_from(paddr: u64) -> Result<Self, BootInfoError> {
        // SAFETY: the caller guarantees the start info is mapped and intact.
        let si = unsafe { (paddr as *const HvmStartInfo).read() };
        if si.magic != START_MAGIC {
            return Err(BootInfoError::BadMagic(si.magic));
        }
        if si.version < 1 {
            return Err(BootInfoError::NoMemoryMap(si.version));
        }
        let mut info = Self {
            memmap_len: (si.memmap_entries as usize).min(MAX_MEMMAP),
            modules_len: (si.nr_modules as usize).min(MAX_MODULES),
            ..Self::empty()
        };
        for i in 0..info.memmap_len {
            // SAFETY: Xen wrote `memmap_entries` entries at `memmap_paddr`.
            info.memmap[i] = unsafe { (si.memmap_paddr as *const HvmMemmapEntry).add(i).read() };
        }
        for i in 0..info.modules_len {
            // SAFETY: Xen wrote `nr_modules` entries at `modlist_paddr`.
            info.modules[i] = unsafe { (si.modlist_paddr as *const HvmModlistEntry).add(i).read() };
        }
        if si.cmdline_paddr != 0 {
            let p = si.cmdline_paddr as *const u8;
            while info.cmdline_len < MAX_CMDLINE {
                // SAFETY: the command line is NUL-terminated; we stop at the
                // NUL or at our buffer's end, whichever comes first.
                let b = unsafe { p.add(info.cmdline_len).read() };
                if b == 0 {
                    break;
                }
                info.cmdline[info.cmdline_len] = b;
                info.cmdline_len += 1;
            }
        }
        Ok(info)
    }

    /// The boot information of a PV guest: RAM is pfns `0..nr_pages`
    /// (Xen gives a PV domain no memory map), the module and the command
    /// line come from the start info, and everything below `boot_end`
    /// past the image (Xen's boot region and the tables the start of day
    /// added) is the kernel's.
    pub fn from_pv(
        nr_pages: u64,
        cmdline: &[u8],
        module: Option<(u64, u64)>,
        boot_end: u64,
    ) -> Self {
        let mut info = Self {
            memmap_len: 1,
            boot_region_end: boot_end,
            ..Self::empty()
        };
        info.memmap[0] = HvmMemmapEntry {
            addr: 0,
            size: nr_pages * 4096,
            kind: MEMMAP_TYPE_RAM,
            reserved: 0,
        };
        if let Some((paddr, size)) = module {
            info.modules[0] = HvmModlistEntry {
                paddr,
                size,
                cmdline_paddr: 0,
                reserved: 0,
            };
            info.modules_len = 1;
        }
        for &b in cmdline.iter().take_while(|&&b| b != 0).take(MAX_CMDLINE) {
            info.cmdline[info.cmdline_len] = b;
            info.cmdline_len += 1;
        }
        info
    }

    /// End of the boot region the kernel keeps past its image (PV: Xen's
    /// start-of-day pages and the direct map's tables), or 0.
    pub fn boot_region_end(&self) -> u64 {
        self.boot_region_end
    }

    /// The memory map, as Xen gave it.
    pub fn memmap(&self) -> &[HvmMemmapEntry] {
        &self.memmap[..self.memmap_len]
    }

    /// The modules (xl's `ramdisk=`), as Xen gave them.
    pub fn modules(&self) -> &[HvmModlistEntry] {
        &self.modules[..self.modules_len]
    }

    /// Total bytes of RAM in the memory map.
    pub fn ram_bytes(&self) -> u64 {
        self.memmap()
            .iter()
            .filter(|e| e.kind == MEMMAP_TYPE_RAM)
            .map(|e| e.size)
            .sum()
    }

    /// The kernel command line (invalid UTF-8 is cut at the first bad byte).
    pub fn cmdline(&self) -> &str {
        let bytes = &self.cmdline[..self.cmdline_len];
        match core::str::from_utf8(bytes) {
            Ok(s) => s,
            Err(e) => core::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or(""),
        }
    }
}
