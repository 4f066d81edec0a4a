//! The PVH entry point: from 32-bit protected mode to 64-bit Rust.
//!
//! Xen enters `pvh_start32` (named by the `XEN_ELFNOTE_PHYS32_ENTRY` note)
//! with paging off, a flat 32-bit code segment and `ebx` pointing at
//! `hvm_start_info`; nothing else is defined, not even a usable GDT. The
//! stub loads its own GDT, identity-maps the first 4 GiB with 2 MiB pages
//! (Xen's console, xenstore and grant pages sit just below 4 GiB), enables
//! PAE, long mode and NX, jumps to 64-bit code, sets up the boot stack and
//! calls `kernel_main(start_info_paddr)`.

use core::arch::global_asm;

/// Size of the boot stack.
const BOOT_STACK_SIZE: usize = 64 * 1024;

global_asm!(
    // The PVH entry note: owner "Xen", type 18 (XEN_ELFNOTE_PHYS32_ENTRY),
    // a 4-byte physical address; Xen's loader pads to 4 even in 64-bit ELF.
    ".pushsection .note.Xen, \"a\", @note",
    ".balign 4",
    ".long 4",
    ".long 4",
    ".long 18",
    ".asciz \"Xen\"",
    ".balign 4",
    ".long pvh_start32",
    ".balign 4",
    ".popsection",

    ".pushsection .text.boot32, \"ax\", @progbits",
    ".code32",
    ".globl pvh_start32",
    "pvh_start32:",
    "cli",
    "cld",
    "mov esi, ebx",
    // No stack is defined at entry: use ours before anything pushes.
    "mov esp, offset boot_stack_top",
    "lgdt [boot_gdt_ptr]",
    // Page tables: PML4[0] -> PDPT, PDPT[0..4] -> four PDs, 2048 2 MiB pages.
    "mov eax, offset boot_pdpt",
    "or eax, 0x3",
    "mov [boot_pml4], eax",
    "mov ecx, 0",
    "2:",
    "mov eax, ecx",
    "shl eax, 12",
    "add eax, offset boot_pd",
    "or eax, 0x3",
    "mov [boot_pdpt + ecx * 8], eax",
    "inc ecx",
    "cmp ecx, 4",
    "jne 2b",
    "mov ecx, 0",
    "3:",
    "mov eax, ecx",
    "shl eax, 21",
    "or eax, 0x83",
    "mov [boot_pd + ecx * 8], eax",
    "mov dword ptr [boot_pd + ecx * 8 + 4], 0",
    "inc ecx",
    "cmp ecx, 2048",
    "jne 3b",
    "mov eax, offset boot_pml4",
    "mov cr3, eax",
    // CR4.PAE
    "mov eax, cr4",
    "or eax, 0x20",
    "mov cr4, eax",
    // EFER.LME | EFER.NXE
    "mov ecx, 0xc0000080",
    "rdmsr",
    "or eax, 0x900",
    "wrmsr",
    // CR0.PG | CR0.WP | CR0.PE
    "mov eax, cr0",
    "or eax, 0x80010001",
    "mov cr0, eax",
    "mov eax, offset boot_long_mode",
    "push 0x08",
    "push eax",
    "retf",
    ".code64",
    "boot_long_mode:",
    "mov ax, 0x10",
    "mov ds, ax",
    "mov es, ax",
    "mov ss, ax",
    "xor eax, eax",
    "mov fs, ax",
    "mov gs, ax",
    "lea rsp, [rip + boot_stack_top]",
    "mov edi, esi",
    "call kernel_main",
    "ud2",
    ".popsection",

    ".pushsection .rodata.boot_gdt, \"a\", @progbits",
    ".balign 16",
    "boot_gdt:",
    ".quad 0",
    ".quad 0x00af9a000000ffff",
    ".quad 0x00cf92000000ffff",
    "boot_gdt_end:",
    "boot_gdt_ptr:",
    ".word boot_gdt_end - boot_gdt - 1",
    ".long boot_gdt",
    ".popsection",

    ".pushsection .bss.boot, \"aw\", @nobits",
    ".balign 4096",
    "boot_pml4: .skip 4096",
    "boot_pdpt: .skip 4096",
    "boot_pd: .skip 4096 * 4",
    ".balign 16",
    "boot_stack: .skip {stack}",
    // The PV entry (`pv`) starts on this stack too.
    ".globl boot_stack_top",
    "boot_stack_top:",
    ".popsection",
    stack = const BOOT_STACK_SIZE,
);
