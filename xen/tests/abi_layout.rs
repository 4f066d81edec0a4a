//! Pins every ABI structure and constant of `xen::abi` to Xen's own public
//! headers: a C program built against `libxen-dev` prints `sizeof`,
//! `offsetof` and constant values, and each must equal the Rust side.
//!
//! The headers are looked up in `$XEN_INCLUDE`, then in the project's
//! emulated-host cache (which `scripts/test` fills), then in `/usr/include`.

use std::path::{Path, PathBuf};
use std::process::Command;

use xen::abi::{self, console, event_channel, hvm, op, sched, start_info};

/// One fact to compare: a C expression and the value Rust has for it.
struct Fact {
    c: String,
    rust: u64,
}

/// `layout!(RustType, "struct c_name", rust_field => "c_field", ...)`:
/// the size and every listed field offset.
macro_rules! layout {
    ($facts:ident, $t:ty, $c:literal $(, $rf:ident => $cf:literal)* $(,)?) => {
        $facts.push(Fact { c: format!("sizeof({})", $c), rust: std::mem::size_of::<$t>() as u64 });
        $(
            $facts.push(Fact {
                c: format!("offsetof({}, {})", $c, $cf),
                rust: std::mem::offset_of!($t, $rf) as u64,
            });
        )*
    };
}

/// `constant!(facts, RUST_VALUE => "C_NAME", ...)`.
macro_rules! constant {
    ($facts:ident $(, $r:expr => $c:literal)* $(,)?) => {
        $( $facts.push(Fact { c: $c.to_string(), rust: $r as u64 }); )*
    };
}

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
    f
}

const HEADERS: &[&str] = &[
    "xen/xen.h",
    "xen/sched.h",
    "xen/event_channel.h",
    "xen/memory.h",
    "xen/grant_table.h",
    "xen/vcpu.h",
    "xen/hvm/hvm_op.h",
    "xen/hvm/params.h",
    "xen/arch-x86/hvm/start_info.h",
    "xen/arch-x86/cpuid.h",
    "xen/io/console.h",
];

fn include_dir() -> PathBuf {
    let cache = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.cache/xenhost/root/usr/include");
    let candidates = std::env::var_os("XEN_INCLUDE")
        .map(PathBuf::from)
        .into_iter()
        .chain([cache, PathBuf::from("/usr/include")]);
    for dir in candidates {
        if dir.join("xen/xen.h").exists() {
            return dir;
        }
    }
    panic!(
        "Xen's public headers (Debian's libxen-dev) were not found: run scripts/test, \
         which fetches them into .cache/xenhost, or set XEN_INCLUDE"
    );
}

#[test]
fn abi_matches_xen_public_headers() {
    let facts = facts();
    let out_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("abi_layout");
    std::fs::create_dir_all(&out_dir).unwrap();
    let mut src = String::from("#include <stddef.h>\n#include <stdint.h>\n#include <stdio.h>\n");
    for h in HEADERS {
        src += &format!("#include <{h}>\n");
    }
    src += "int main(void) {\n";
    for fact in &facts {
        src += &format!(
            "    printf(\"%llu\\n\", (unsigned long long)({}));\n",
            fact.c
        );
    }
    src += "    return 0;\n}\n";
    let c_file = out_dir.join("layout.c");
    let exe = out_dir.join("layout");
    std::fs::write(&c_file, src).unwrap();
    let cc = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()))
        .arg("-D__XEN_TOOLS__")
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
    let values: Vec<u64> = String::from_utf8(run.stdout)
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    assert_eq!(values.len(), facts.len());
    let wrong: Vec<String> = facts
        .iter()
        .zip(&values)
        .filter(|(f, c)| f.rust != **c)
        .map(|(f, c)| format!("{}: C says {c}, Rust says {}", f.c, f.rust))
        .collect();
    assert!(wrong.is_empty(), "ABI mismatches:\n{}", wrong.join("\n"));
    eprintln!("{} ABI facts match Xen's headers", facts.len());
}
