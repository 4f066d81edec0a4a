//! Pins Rust ABI definitions to C headers, for the host tests of `xen`
//! and `gntdev`: each [`Fact`] is a C expression (`sizeof`, `offsetof`, a
//! constant) and the value the Rust side has for it; [`check`] compiles a
//! C program that prints every expression, runs it and lists the facts on
//! which C and Rust disagree.
//!
//! Xen's headers (Debian's `libxen-dev`) are found by [`xen_include_dir`]:
//! `$XEN_INCLUDE`, then the project's emulated-host cache
//! (`$XENHOST_CACHE`, by default `.cache/xenhost`, which `scripts/test`
//! fills), then `/usr/include`.

use std::path::{Path, PathBuf};
use std::process::Command;

/// One fact to compare: a C expression and the value Rust has for it.
#[derive(Clone, Debug)]
pub struct Fact {
    /// The C expression, e.g. `sizeof(struct evtchn_send)`.
    pub c: String,
    /// The Rust side's value.
    pub rust: u64,
}

/// `layout!(facts, RustType, "struct c_name", rust_field => "c_field", ...)`:
/// pushes the size and every listed field offset.
#[macro_export]
macro_rules! layout {
    ($facts:ident, $t:ty, $c:literal $(, $rf:ident => $cf:literal)* $(,)?) => {
        $facts.push($crate::Fact {
            c: format!("sizeof({})", $c),
            rust: std::mem::size_of::<$t>() as u64,
        });
        $(
            $facts.push($crate::Fact {
                c: format!("offsetof({}, {})", $c, $cf),
                rust: std::mem::offset_of!($t, $rf) as u64,
            });
        )*
    };
}

/// `constant!(facts, RUST_VALUE => "C_EXPRESSION", ...)`.
#[macro_export]
macro_rules! constant {
    ($facts:ident $(, $r:expr => $c:expr)* $(,)?) => {
        $( $facts.push($crate::Fact { c: $c.to_string(), rust: $r as u64 }); )*
    };
}

/// The first include directory holding `probe` (e.g. `xen/xen.h`).
///
/// # Panics
/// When none does, with how to get the headers.
pub fn xen_include_dir(probe: &str) -> PathBuf {
    let cache = std::env::var_os("XENHOST_CACHE")
        .map_or_else(
            || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.cache/xenhost"),
            PathBuf::from,
        )
        .join("root/usr/include");
    std::env::var_os("XEN_INCLUDE")
        .map(PathBuf::from)
        .into_iter()
        .chain([cache, PathBuf::from("/usr/include")])
        .find(|d| d.join(probe).exists())
        .unwrap_or_else(|| {
            panic!(
                "{probe} (Debian's libxen-dev) not found: run scripts/test, which fetches \
                 Xen's headers into .cache/xenhost, or set XEN_INCLUDE"
            )
        })
}

/// Compiles (in `out_dir`, with `$CC` or `cc`, `-I include` and `cflags`)
/// a program that includes `headers`, then `prelude`, and prints every
/// fact's C value; runs it and returns one line per fact on which C and
/// Rust disagree (empty: all agree).
///
/// # Panics
/// When the program cannot be built or run.
pub fn check(
    out_dir: &Path,
    include: &Path,
    cflags: &[&str],
    headers: &[&str],
    prelude: &str,
    facts: &[Fact],
) -> Vec<String> {
    std::fs::create_dir_all(out_dir).expect("create the output directory");
    let mut src = String::from(
        "#include <errno.h>\n#include <stddef.h>\n#include <stdint.h>\n#include <stdio.h>\n\
         #include <string.h>\n",
    );
    for h in headers {
        src += &format!("#include <{h}>\n");
    }
    src += prelude;
    src += "int main(void) {\n";
    for fact in facts {
        src += &format!(
            "    printf(\"%llu\\n\", (unsigned long long)({}));\n",
            fact.c
        );
    }
    src += "    return 0;\n}\n";
    let c_file = out_dir.join("layout.c");
    let exe = out_dir.join("layout");
    std::fs::write(&c_file, src).expect("write the C program");
    let cc = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()))
        .args(cflags)
        .arg("-I")
        .arg(include)
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
    assert!(run.status.success(), "the layout program failed");
    let values: Vec<u64> = String::from_utf8(run.stdout)
        .expect("decimal output")
        .lines()
        .map(|l| l.parse().expect("a decimal number"))
        .collect();
    assert_eq!(values.len(), facts.len(), "one value per fact");
    facts
        .iter()
        .zip(&values)
        .filter(|(f, c)| f.rust != **c)
        .map(|(f, c)| format!("{}: C says {c}, Rust says {}", f.c, f.rust))
        .collect()
}
