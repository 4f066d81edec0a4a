//! Pins every ABI structure and constant of `xen::abi` to Xen's own public
//! headers: a C program built against `libxen-dev` prints `sizeof`,
//! `offsetof` and constant values, and each must equal the Rust side.
//!
//! The headers are found as `abicheck::xen_include_dir` says
//! (`$XEN_INCLUDE`, the emulated-host cache, `/usr/include`).

use std::path::PathBuf;

use abicheck::{Fact, constant, layout};

use xen::abi::{
    self, console, event_channel, grant_table as gt, hvm, memory, op, pv, sched, shared_info as si,
    start_info, vcpu, xs_wire as xs,
};

fn facts() -> Vec<Fact> {
    let mut f = Vec::new();
    layout!(f, start_info::HvmStartInfo, "struct hvm_start_info",
        magic => "magic", version => "version", flags => "flags", nr_modules => "nr_modules",
        modlist_paddr => "modlist_paddr", cmdline_paddr => "cmdline_paddr",
        rsdp_paddr => "rsdp_paddr", memmap_paddr => "memmap_paddr",
        memmap_entries => "memmap_entries", reserved => "reserved");
    layout!(f, start_info::HvmModlistEntry, "struct hvm_modlist_entry",
        paddr => "paddr", size => "size", cmdline_paddr => "cmdline_paddr", reserved => "reserved");
    layout!(f, start_info::HvmMemmapEntry, "struct hvm_memmap_table_entry",
        addr => "addr", size => "size", kind => "type", reserved => "reserved");
    layout!(f, hvm::HvmParam, "struct xen_hvm_param",
        domid => "domid", index => "index", value => "value");
    layout!(f, sched::SchedShutdown, "struct sched_shutdown", reason => "reason");
    layout!(f, event_channel::EvtchnSend, "struct evtchn_send", port => "port");
    layout!(f, console::XenconsInterface, "struct xencons_interface",
        input => "in", output => "out", in_cons => "in_cons", in_prod => "in_prod",
        out_cons => "out_cons", out_prod => "out_prod");
    constant!(f,
        start_info::START_MAGIC => "XEN_HVM_START_MAGIC_VALUE",
        start_info::MEMMAP_TYPE_RAM => "XEN_HVM_MEMMAP_TYPE_RAM",
        start_info::MEMMAP_TYPE_RESERVED => "XEN_HVM_MEMMAP_TYPE_RESERVED",
        start_info::MEMMAP_TYPE_ACPI => "XEN_HVM_MEMMAP_TYPE_ACPI",
        abi::DOMID_SELF => "DOMID_SELF",
        op::SCHED_OP => "__HYPERVISOR_sched_op",
        op::EVENT_CHANNEL_OP => "__HYPERVISOR_event_channel_op",
        op::HVM_OP => "__HYPERVISOR_hvm_op",
        op::MEMORY_OP => "__HYPERVISOR_memory_op",
        op::GRANT_TABLE_OP => "__HYPERVISOR_grant_table_op",
        op::VCPU_OP => "__HYPERVISOR_vcpu_op",
        op::SET_TIMER_OP => "__HYPERVISOR_set_timer_op",
        op::XEN_VERSION => "__HYPERVISOR_xen_version",
        sched::SCHEDOP_yield => "SCHEDOP_yield",
        sched::SCHEDOP_block => "SCHEDOP_block",
        sched::SCHEDOP_shutdown => "SCHEDOP_shutdown",
        sched::SCHEDOP_poll => "SCHEDOP_poll",
        sched::ShutdownReason::Poweroff => "SHUTDOWN_poweroff",
        sched::ShutdownReason::Reboot => "SHUTDOWN_reboot",
        sched::ShutdownReason::Suspend => "SHUTDOWN_suspend",
        sched::ShutdownReason::Crash => "SHUTDOWN_crash",
        event_channel::EVTCHNOP_send => "EVTCHNOP_send",
        hvm::HVMOP_SET_PARAM => "HVMOP_set_param",
        hvm::HVMOP_GET_PARAM => "HVMOP_get_param",
        hvm::PARAM_CALLBACK_IRQ => "HVM_PARAM_CALLBACK_IRQ",
        hvm::PARAM_STORE_PFN => "HVM_PARAM_STORE_PFN",
        hvm::PARAM_STORE_EVTCHN => "HVM_PARAM_STORE_EVTCHN",
        hvm::PARAM_CONSOLE_PFN => "HVM_PARAM_CONSOLE_PFN",
        hvm::PARAM_CONSOLE_EVTCHN => "HVM_PARAM_CONSOLE_EVTCHN",
        console::IN_RING_SIZE => "sizeof(((struct xencons_interface *)0)->in)",
        console::OUT_RING_SIZE => "sizeof(((struct xencons_interface *)0)->out)",
    );
    grant_table(&mut f);
    memory_vcpu_evtchn(&mut f);
    pv(&mut f);
    shared_info(&mut f);
    xenstore(&mut f);
    f
}

fn grant_table(f: &mut Vec<Fact>) {
    layout!(f, gt::GrantEntryV1, "struct grant_entry_v1",
        flags => "flags", domid => "domid", frame => "frame");
    layout!(f, gt::GrantEntry, "struct grant_entry_v1",
        flags => "flags", domid => "domid", frame => "frame");
    layout!(f, gt::GnttabMapGrantRef, "struct gnttab_map_grant_ref",
        host_addr => "host_addr", flags => "flags", ref_ => "ref", dom => "dom",
        status => "status", handle => "handle", dev_bus_addr => "dev_bus_addr");
    layout!(f, gt::GnttabUnmapGrantRef, "struct gnttab_unmap_grant_ref",
        host_addr => "host_addr", dev_bus_addr => "dev_bus_addr", handle => "handle",
        status => "status");
    layout!(f, gt::GnttabSetupTable, "struct gnttab_setup_table",
        dom => "dom", nr_frames => "nr_frames", status => "status", frame_list => "frame_list");
    layout!(f, gt::GnttabQuerySize, "struct gnttab_query_size",
        dom => "dom", nr_frames => "nr_frames", max_nr_frames => "max_nr_frames",
        status => "status");
    layout!(f, gt::GnttabCopyPtr, "struct gnttab_copy_ptr",
        u => "u", domid => "domid", offset => "offset");
    layout!(f, gt::GnttabCopy, "struct gnttab_copy",
        source => "source", dest => "dest", len => "len", flags => "flags", status => "status");
    constant!(f,
        std::mem::size_of::<gt::GrantFrame>() => "4096",
        gt::ENTRIES_PER_FRAME => "4096 / sizeof(grant_entry_v1_t)",
        gt::GNTTAB_NR_RESERVED_ENTRIES => "GNTTAB_NR_RESERVED_ENTRIES",
        gt::GNTTAB_RESERVED_CONSOLE => "GNTTAB_RESERVED_CONSOLE",
        gt::GNTTAB_RESERVED_XENSTORE => "GNTTAB_RESERVED_XENSTORE",
        gt::GTF_invalid => "GTF_invalid",
        gt::GTF_permit_access => "GTF_permit_access",
        gt::GTF_accept_transfer => "GTF_accept_transfer",
        gt::GTF_transitive => "GTF_transitive",
        gt::GTF_type_mask => "GTF_type_mask",
        gt::GTF_readonly => "GTF_readonly",
        gt::GTF_reading => "GTF_reading",
        gt::GTF_writing => "GTF_writing",
        gt::GTF_PWT => "GTF_PWT",
        gt::GTF_PCD => "GTF_PCD",
        gt::GTF_PAT => "GTF_PAT",
        gt::GTF_sub_page => "GTF_sub_page",
        gt::GTF_transfer_committed => "GTF_transfer_committed",
        gt::GTF_transfer_completed => "GTF_transfer_completed",
        gt::GNTTABOP_map_grant_ref => "GNTTABOP_map_grant_ref",
        gt::GNTTABOP_unmap_grant_ref => "GNTTABOP_unmap_grant_ref",
        gt::GNTTABOP_setup_table => "GNTTABOP_setup_table",
        gt::GNTTABOP_dump_table => "GNTTABOP_dump_table",
        gt::GNTTABOP_transfer => "GNTTABOP_transfer",
        gt::GNTTABOP_copy => "GNTTABOP_copy",
        gt::GNTTABOP_query_size => "GNTTABOP_query_size",
        gt::GNTTABOP_unmap_and_replace => "GNTTABOP_unmap_and_replace",
        gt::GNTTABOP_set_version => "GNTTABOP_set_version",
        gt::GNTTABOP_get_status_frames => "GNTTABOP_get_status_frames",
        gt::GNTTABOP_get_version => "GNTTABOP_get_version",
        gt::GNTMAP_device_map => "GNTMAP_device_map",
        gt::GNTMAP_host_map => "GNTMAP_host_map",
        gt::GNTMAP_readonly => "GNTMAP_readonly",
        gt::GNTMAP_application_map => "GNTMAP_application_map",
        gt::GNTMAP_contains_pte => "GNTMAP_contains_pte",
        gt::GNTCOPY_source_gref => "GNTCOPY_source_gref",
        gt::GNTCOPY_dest_gref => "GNTCOPY_dest_gref",
    );
    // Statuses are negative: compare them as sign-extended 64-bit values.
    let statuses = [
        (gt::GNTST_okay, "GNTST_okay"),
        (gt::GNTST_general_error, "GNTST_general_error"),
        (gt::GNTST_bad_domain, "GNTST_bad_domain"),
        (gt::GNTST_bad_gntref, "GNTST_bad_gntref"),
        (gt::GNTST_bad_handle, "GNTST_bad_handle"),
        (gt::GNTST_bad_virt_addr, "GNTST_bad_virt_addr"),
        (gt::GNTST_bad_dev_addr, "GNTST_bad_dev_addr"),
        (gt::GNTST_no_device_space, "GNTST_no_device_space"),
        (gt::GNTST_permission_denied, "GNTST_permission_denied"),
        (gt::GNTST_bad_page, "GNTST_bad_page"),
        (gt::GNTST_bad_copy_arg, "GNTST_bad_copy_arg"),
        (gt::GNTST_address_too_big, "GNTST_address_too_big"),
        (gt::GNTST_eagain, "GNTST_eagain"),
        (gt::GNTST_no_space, "GNTST_no_space"),
    ];
    for (v, c) in statuses {
        f.push(Fact {
            c: format!("(long long)({c})"),
            rust: i64::from(v) as u64,
        });
    }
    // Xen's message table, string by string (compared as equality flags).
    for (i, msg) in gt::GNTTABOP_ERROR_MSGS.iter().enumerate() {
        f.push(Fact {
            c: format!("strcmp(gnttab_msgs[{i}], \"{msg}\") == 0"),
            rust: 1,
        });
    }
    constant!(f, gt::GNTTABOP_ERROR_MSGS.len() => "sizeof(gnttab_msgs) / sizeof(gnttab_msgs[0])");
}

fn memory_vcpu_evtchn(f: &mut Vec<Fact>) {
    layout!(f, memory::XenAddToPhysmap, "struct xen_add_to_physmap",
        domid => "domid", size => "size", space => "space", idx => "idx", gpfn => "gpfn");
    layout!(f, memory::XenRemoveFromPhysmap, "struct xen_remove_from_physmap",
        domid => "domid", gpfn => "gpfn");
    layout!(f, vcpu::VcpuSetSingleshotTimer, "struct vcpu_set_singleshot_timer",
        timeout_abs_ns => "timeout_abs_ns", flags => "flags");
    layout!(f, event_channel::EvtchnAllocUnbound, "struct evtchn_alloc_unbound",
        dom => "dom", remote_dom => "remote_dom", port => "port");
    layout!(f, event_channel::EvtchnBindInterdomain, "struct evtchn_bind_interdomain",
        remote_dom => "remote_dom", remote_port => "remote_port", local_port => "local_port");
    layout!(f, event_channel::EvtchnBindVirq, "struct evtchn_bind_virq",
        virq => "virq", vcpu => "vcpu", port => "port");
    layout!(f, event_channel::EvtchnClose, "struct evtchn_close", port => "port");
    layout!(f, event_channel::EvtchnBindIpi, "struct evtchn_bind_ipi",
        vcpu => "vcpu", port => "port");
    layout!(f, vcpu::VcpuRegisterVcpuInfo, "struct vcpu_register_vcpu_info",
        mfn => "mfn", offset => "offset", rsvd => "rsvd");
    layout!(f, vcpu::VcpuHvmX86_64, "struct vcpu_hvm_x86_64",
        rax => "rax", rcx => "rcx", rdx => "rdx", rbx => "rbx", rsp => "rsp", rbp => "rbp",
        rsi => "rsi", rdi => "rdi", rip => "rip", rflags => "rflags", cr0 => "cr0",
        cr3 => "cr3", cr4 => "cr4", efer => "efer");
    layout!(f, vcpu::VcpuHvmContext, "struct vcpu_hvm_context",
        mode => "mode", pad => "pad", x86_64 => "cpu_regs.x86_64");
    layout!(f, event_channel::EvtchnUnmask, "struct evtchn_unmask", port => "port");
    layout!(f, event_channel::EvtchnStatus, "struct evtchn_status",
        dom => "dom", port => "port", status => "status", vcpu => "vcpu", u => "u");
    constant!(f,
        abi::DOMID_FIRST_RESERVED => "DOMID_FIRST_RESERVED",
        memory::XENMEM_increase_reservation => "XENMEM_increase_reservation",
        memory::XENMEM_decrease_reservation => "XENMEM_decrease_reservation",
        memory::XENMEM_populate_physmap => "XENMEM_populate_physmap",
        memory::XENMEM_add_to_physmap => "XENMEM_add_to_physmap",
        memory::XENMEM_remove_from_physmap => "XENMEM_remove_from_physmap",
        memory::XENMAPSPACE_shared_info => "XENMAPSPACE_shared_info",
        memory::XENMAPSPACE_grant_table => "XENMAPSPACE_grant_table",
        memory::XENMAPSPACE_gmfn => "XENMAPSPACE_gmfn",
        memory::XENMAPSPACE_gmfn_range => "XENMAPSPACE_gmfn_range",
        memory::XENMAPIDX_grant_table_status => "XENMAPIDX_grant_table_status",
        vcpu::VCPUOP_initialise => "VCPUOP_initialise",
        vcpu::VCPU_HVM_MODE_64B => "VCPU_HVM_MODE_64B",
        event_channel::EVTCHNOP_bind_ipi => "EVTCHNOP_bind_ipi",
        vcpu::VCPUOP_up => "VCPUOP_up",
        vcpu::VCPUOP_down => "VCPUOP_down",
        vcpu::VCPUOP_is_up => "VCPUOP_is_up",
        vcpu::VCPUOP_set_periodic_timer => "VCPUOP_set_periodic_timer",
        vcpu::VCPUOP_stop_periodic_timer => "VCPUOP_stop_periodic_timer",
        vcpu::VCPUOP_set_singleshot_timer => "VCPUOP_set_singleshot_timer",
        vcpu::VCPUOP_stop_singleshot_timer => "VCPUOP_stop_singleshot_timer",
        vcpu::VCPUOP_register_vcpu_info => "VCPUOP_register_vcpu_info",
        vcpu::VCPU_SSHOTTMR_future => "VCPU_SSHOTTMR_future",
        event_channel::EVTCHNOP_alloc_unbound => "EVTCHNOP_alloc_unbound",
        event_channel::EVTCHNOP_bind_interdomain => "EVTCHNOP_bind_interdomain",
        event_channel::EVTCHNOP_bind_virq => "EVTCHNOP_bind_virq",
        event_channel::EVTCHNOP_close => "EVTCHNOP_close",
        event_channel::EVTCHNOP_unmask => "EVTCHNOP_unmask",
        event_channel::NR_VIRQS => "NR_VIRQS",
        event_channel::VIRQ_TIMER => "VIRQ_TIMER",
        event_channel::VIRQ_DEBUG => "VIRQ_DEBUG",
        event_channel::VIRQ_CONSOLE => "VIRQ_CONSOLE",
        event_channel::VIRQ_DOM_EXC => "VIRQ_DOM_EXC",
    );
}

fn pv(f: &mut Vec<Fact>) {
    layout!(f, pv::StartInfo, "struct start_info",
        magic => "magic", nr_pages => "nr_pages", shared_info => "shared_info",
        flags => "flags", store_mfn => "store_mfn", store_evtchn => "store_evtchn",
        console_mfn => "console.domU.mfn", console_evtchn => "console.domU.evtchn",
        pt_base => "pt_base", nr_pt_frames => "nr_pt_frames", mfn_list => "mfn_list",
        mod_start => "mod_start", mod_len => "mod_len", cmd_line => "cmd_line",
        first_p2m_pfn => "first_p2m_pfn", nr_p2m_frames => "nr_p2m_frames");
    layout!(f, pv::MmuUpdate, "struct mmu_update", ptr => "ptr", val => "val");
    layout!(f, pv::MmuextOp, "struct mmuext_op",
        cmd => "cmd", arg1 => "arg1", arg2 => "arg2");
    layout!(f, pv::TrapInfo, "struct trap_info",
        vector => "vector", flags => "flags", cs => "cs", address => "address");
    layout!(f, pv::CallbackRegister, "struct callback_register",
        kind => "type", flags => "flags", address => "address");
    constant!(f,
        pv::MAX_GUEST_CMDLINE => "MAX_GUEST_CMDLINE",
        pv::SIF_MOD_START_PFN => "SIF_MOD_START_PFN",
        pv::MMU_NORMAL_PT_UPDATE => "MMU_NORMAL_PT_UPDATE",
        pv::MMUEXT_PIN_L1_TABLE => "MMUEXT_PIN_L1_TABLE",
        pv::MMUEXT_PIN_L4_TABLE => "MMUEXT_PIN_L4_TABLE",
        pv::MMUEXT_UNPIN_TABLE => "MMUEXT_UNPIN_TABLE",
        pv::MMUEXT_NEW_BASEPTR => "MMUEXT_NEW_BASEPTR",
        pv::MMUEXT_TLB_FLUSH_LOCAL => "MMUEXT_TLB_FLUSH_LOCAL",
        pv::MMUEXT_INVLPG_LOCAL => "MMUEXT_INVLPG_LOCAL",
        pv::MMUEXT_NEW_USER_BASEPTR => "MMUEXT_NEW_USER_BASEPTR",
        pv::MMUEXT_TLB_FLUSH_ALL => "MMUEXT_TLB_FLUSH_ALL",
        pv::UVMF_INVLPG => "UVMF_INVLPG",
        pv::TI_MASK_EVENTS => "4",
        pv::FLAT_KERNEL_CS => "FLAT_KERNEL_CS",
        pv::FLAT_USER_CS => "FLAT_USER_CS",
        pv::FLAT_USER_SS => "FLAT_USER_SS",
        pv::FLAT_KERNEL_SS => "FLAT_KERNEL_SS",
        pv::SEGBASE_GS_KERNEL => "SEGBASE_GS_KERNEL",
        pv::CALLBACKTYPE_EVENT => "CALLBACKTYPE_event",
        pv::CALLBACKTYPE_FAILSAFE => "CALLBACKTYPE_failsafe",
        pv::CALLBACKTYPE_SYSCALL => "CALLBACKTYPE_syscall",
        pv::CALLBACKF_MASK_EVENTS => "CALLBACKF_mask_events",
        pv::CALLBACKOP_REGISTER => "CALLBACKOP_register",
        pv::MACH2PHYS_VIRT_START => "MACH2PHYS_VIRT_START",
        pv::HYPERVISOR_VIRT_END => "HYPERVISOR_VIRT_END",
        pv::MACH2PHYS_NR_ENTRIES => "MACH2PHYS_NR_ENTRIES",
        pv::XENVER_VERSION => "XENVER_version",
        op::SET_TRAP_TABLE => "__HYPERVISOR_set_trap_table",
        op::MMU_UPDATE => "__HYPERVISOR_mmu_update",
        op::STACK_SWITCH => "__HYPERVISOR_stack_switch",
        op::UPDATE_VA_MAPPING => "__HYPERVISOR_update_va_mapping",
        op::IRET => "__HYPERVISOR_iret",
        op::SET_SEGMENT_BASE => "__HYPERVISOR_set_segment_base",
        op::MMUEXT_OP => "__HYPERVISOR_mmuext_op",
        op::CALLBACK_OP => "__HYPERVISOR_callback_op",
        op::CONSOLE_IO => "__HYPERVISOR_console_io",
        console::CONSOLEIO_WRITE => "CONSOLEIO_write",
    );
    layout!(f, pv::CpuUserRegs, "struct cpu_user_regs",
        r15 => "r15", rbp => "rbp", rbx => "rbx", r11 => "r11", rax => "rax", rcx => "rcx",
        rdi => "rdi", error_code => "error_code", entry_vector => "entry_vector", rip => "rip",
        cs => "cs", saved_upcall_mask => "saved_upcall_mask", rflags => "rflags", rsp => "rsp",
        ss => "ss", es => "es", ds => "ds", fs => "fs", gs => "gs");
    layout!(f, pv::VcpuGuestContext, "struct vcpu_guest_context",
        fpu_ctxt => "fpu_ctxt", flags => "flags", user_regs => "user_regs",
        trap_ctxt => "trap_ctxt", ldt_base => "ldt_base", ldt_ents => "ldt_ents",
        gdt_frames => "gdt_frames", gdt_ents => "gdt_ents", kernel_ss => "kernel_ss",
        kernel_sp => "kernel_sp", ctrlreg => "ctrlreg", debugreg => "debugreg",
        event_callback_eip => "event_callback_eip",
        failsafe_callback_eip => "failsafe_callback_eip",
        syscall_callback_eip => "syscall_callback_eip", vm_assist => "vm_assist",
        fs_base => "fs_base", gs_base_kernel => "gs_base_kernel",
        gs_base_user => "gs_base_user");
    constant!(f,
        pv::VGCF_I387_VALID => "VGCF_I387_VALID",
        pv::VGCF_IN_KERNEL => "VGCF_in_kernel",
        pv::VGCF_FAILSAFE_DISABLES_EVENTS => "VGCF_failsafe_disables_events",
        pv::VGCF_SYSCALL_DISABLES_EVENTS => "VGCF_syscall_disables_events",
        pv::VGCF_ONLINE => "VGCF_online",
    );
    assert_eq!(std::mem::size_of::<pv::StartInfo>(), 1168);
}

fn shared_info(f: &mut Vec<Fact>) {
    layout!(f, si::VcpuTimeInfo, "struct vcpu_time_info",
        version => "version", pad0 => "pad0", tsc_timestamp => "tsc_timestamp",
        system_time => "system_time", tsc_to_system_mul => "tsc_to_system_mul",
        tsc_shift => "tsc_shift", flags => "flags", pad1 => "pad1");
    layout!(f, si::ArchVcpuInfo, "struct arch_vcpu_info", cr2 => "cr2", pad => "pad");
    layout!(f, si::VcpuInfo, "struct vcpu_info",
        evtchn_upcall_pending => "evtchn_upcall_pending",
        evtchn_upcall_mask => "evtchn_upcall_mask",
        evtchn_pending_sel => "evtchn_pending_sel", arch => "arch", time => "time");
    layout!(f, si::ArchSharedInfo, "struct arch_shared_info",
        max_pfn => "max_pfn", pfn_to_mfn_frame_list_list => "pfn_to_mfn_frame_list_list",
        nmi_reason => "nmi_reason", p2m_cr3 => "p2m_cr3", p2m_vaddr => "p2m_vaddr",
        p2m_generation => "p2m_generation");
    layout!(f, si::SharedInfo, "struct shared_info",
        vcpu_info => "vcpu_info", evtchn_pending => "evtchn_pending",
        evtchn_mask => "evtchn_mask", wc_version => "wc_version", wc_sec => "wc_sec",
        wc_nsec => "wc_nsec", wc_sec_hi => "wc_sec_hi", arch => "arch");
    constant!(f,
        si::LEGACY_MAX_VCPUS => "XEN_LEGACY_MAX_VCPUS",
        si::EVTCHN_WORDS => "sizeof(((struct shared_info *)0)->evtchn_pending) / sizeof(xen_ulong_t)",
        si::BITS_PER_EVTCHN_WORD => "sizeof(xen_ulong_t) * 8",
        si::EVTCHN_2L_NR_CHANNELS => "EVTCHN_2L_NR_CHANNELS",
    );
}

fn xenstore(f: &mut Vec<Fact>) {
    layout!(f, xs::XsdSockmsg, "struct xsd_sockmsg",
        type_ => "type", req_id => "req_id", tx_id => "tx_id", len => "len");
    layout!(f, xs::XenstoreDomainInterface, "struct xenstore_domain_interface",
        req => "req", rsp => "rsp", req_cons => "req_cons", req_prod => "req_prod",
        rsp_cons => "rsp_cons", rsp_prod => "rsp_prod", server_features => "server_features",
        connection => "connection", error => "error");
    constant!(f,
        xs::msg::CONTROL => "XS_CONTROL",
        xs::msg::DIRECTORY => "XS_DIRECTORY",
        xs::msg::READ => "XS_READ",
        xs::msg::GET_PERMS => "XS_GET_PERMS",
        xs::msg::WATCH => "XS_WATCH",
        xs::msg::UNWATCH => "XS_UNWATCH",
        xs::msg::TRANSACTION_START => "XS_TRANSACTION_START",
        xs::msg::TRANSACTION_END => "XS_TRANSACTION_END",
        xs::msg::INTRODUCE => "XS_INTRODUCE",
        xs::msg::RELEASE => "XS_RELEASE",
        xs::msg::GET_DOMAIN_PATH => "XS_GET_DOMAIN_PATH",
        xs::msg::WRITE => "XS_WRITE",
        xs::msg::MKDIR => "XS_MKDIR",
        xs::msg::RM => "XS_RM",
        xs::msg::SET_PERMS => "XS_SET_PERMS",
        xs::msg::WATCH_EVENT => "XS_WATCH_EVENT",
        xs::msg::ERROR => "XS_ERROR",
        xs::msg::IS_DOMAIN_INTRODUCED => "XS_IS_DOMAIN_INTRODUCED",
        xs::msg::RESUME => "XS_RESUME",
        xs::msg::SET_TARGET => "XS_SET_TARGET",
        xs::msg::RESET_WATCHES => "XS_RESET_WATCHES",
        xs::msg::DIRECTORY_PART => "XS_DIRECTORY_PART",
        xs::msg::TYPE_COUNT => "XS_TYPE_COUNT",
        xs::msg::INVALID => "XS_INVALID",
        xs::XS_WATCH_PATH => "XS_WATCH_PATH",
        xs::XS_WATCH_TOKEN => "XS_WATCH_TOKEN",
        xs::XSD_SOCKMSG_SIZE => "sizeof(struct xsd_sockmsg)",
        xs::XENSTORE_RING_SIZE => "XENSTORE_RING_SIZE",
        xs::XENSTORE_PAYLOAD_MAX => "XENSTORE_PAYLOAD_MAX",
        xs::XENSTORE_ABS_PATH_MAX => "XENSTORE_ABS_PATH_MAX",
        xs::XENSTORE_REL_PATH_MAX => "XENSTORE_REL_PATH_MAX",
        xs::XENSTORE_SERVER_FEATURE_RECONNECTION => "XENSTORE_SERVER_FEATURE_RECONNECTION",
        xs::XENSTORE_SERVER_FEATURE_ERROR => "XENSTORE_SERVER_FEATURE_ERROR",
        xs::XENSTORE_CONNECTED => "XENSTORE_CONNECTED",
        xs::XENSTORE_RECONNECT => "XENSTORE_RECONNECT",
        xs::XSD_ERRORS.len() => "sizeof(xsd_errors) / sizeof(xsd_errors[0])",
    );
    for (i, (errno, name)) in xs::XSD_ERRORS.iter().enumerate() {
        constant!(f, *errno => format!("xsd_errors[{i}].errnum"));
        f.push(Fact {
            c: format!("strcmp(xsd_errors[{i}].errstring, \"{name}\") == 0"),
            rust: 1,
        });
    }
}

const HEADERS: &[&str] = &[
    "xen/xen.h",
    "xen/sched.h",
    "xen/event_channel.h",
    "xen/memory.h",
    "xen/grant_table.h",
    "xen/vcpu.h",
    "xen/hvm/hvm_op.h",
    "xen/hvm/hvm_vcpu.h",
    "xen/hvm/params.h",
    "xen/arch-x86/hvm/start_info.h",
    "xen/arch-x86/cpuid.h",
    "xen/io/console.h",
    "xen/io/xs_wire.h",
    "xen/event_channel.h",
    "xen/callback.h",
    "xen/version.h",
];

/// C definitions the facts refer to (after the headers).
const PRELUDE: &str = "static const char *gnttab_msgs[] = GNTTABOP_error_msgs;\n";

#[test]
fn abi_matches_xen_public_headers() {
    let facts = facts();
    let wrong = abicheck::check(
        &PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("abi_layout"),
        &abicheck::xen_include_dir("xen/xen.h"),
        &["-D__XEN_TOOLS__"],
        HEADERS,
        PRELUDE,
        &facts,
    );
    assert!(wrong.is_empty(), "ABI mismatches:\n{}", wrong.join("\n"));
    eprintln!("{} ABI facts match Xen's headers", facts.len());
}
