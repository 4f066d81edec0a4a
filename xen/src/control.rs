//! The toolstack's requests through a domain's `control/` nodes in
//! xenstore (Xen's `docs/misc/xenstore-paths`; what `xl shutdown`, `xl
//! reboot` and `xl sysrq` write): their paths, and what a value asks for.
//!
//! The guest advertises what it answers in `control/feature-*` ("1": it
//! will respond), watches `control/shutdown` and `control/sysrq`, and
//! acknowledges a request by writing an empty value back in a transaction,
//! as Linux's `drivers/xen/manage.c` does. xl writes only `poweroff`,
//! `reboot` and `suspend` to `control/shutdown`; Linux also accepts
//! `halt`. A watch fires once when it is registered and again on the
//! guest's own acknowledgement: an empty value is no request.

/// The node `xl shutdown`, `xl reboot` and `xl save` write.
pub const SHUTDOWN: &str = "control/shutdown";
/// The node `xl sysrq` writes (one character).
pub const SYSRQ: &str = "control/sysrq";
/// Feature nodes this kind of guest answers: poweroff, reboot and suspend
/// (`xl save`, `xl migrate`). `feature-s3`/`-s4` are not written: they
/// are not true of it.
pub const FEATURES_ANSWERED: [&str; 3] = [
    "control/feature-poweroff",
    "control/feature-reboot",
    "control/feature-suspend",
];

/// What a value of `control/shutdown` asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShutdownRequest {
    /// `poweroff` (`xl shutdown`) or `halt`: stop with reason poweroff.
    Poweroff,
    /// `reboot` (`xl reboot`): stop with reason reboot, so that the
    /// domain's `on_reboot` action applies.
    Reboot,
    /// `suspend` (`xl save`, `xl migrate`).
    Suspend,
}

impl ShutdownRequest {
    /// The request a value of `control/shutdown` makes: `None` for an
    /// empty value (no request, or our own acknowledgement), `Err` with
    /// the text for a value no guest is asked for (logged and ignored, as
    /// Linux does). Surrounding whitespace and a trailing NUL are ignored.
    pub fn parse(value: &[u8]) -> Option<Result<Self, &[u8]>> {
        let v = trim(value);
        match v {
            b"" => None,
            b"poweroff" | b"halt" => Some(Ok(Self::Poweroff)),
            b"reboot" => Some(Ok(Self::Reboot)),
            b"suspend" => Some(Ok(Self::Suspend)),
            other => Some(Err(other)),
        }
    }
}

/// What a key written to `control/sysrq` asks for (the Linux keys that
/// make sense in this kernel).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SysrqRequest {
    /// `c`: crash the domain on purpose through a kernel fault, with the
    /// register dump a real crash prints (Linux's `sysrq-c`).
    Crash,
    /// `t` (tasks) or `m` (memory): print the kernel's report of
    /// processes, threads, memory, grants and gntdev mappings.
    Report,
    /// `h` or any other key: print the keys this kernel answers.
    Help(u8),
}

impl SysrqRequest {
    /// The request a value of `control/sysrq` makes: `None` for an empty
    /// value (no request, or our own acknowledgement). Only the first
    /// character counts, as in Linux.
    pub fn parse(value: &[u8]) -> Option<Self> {
        let key = *trim(value).first()?;
        Some(match key {
            b'c' => Self::Crash,
            b't' | b'm' => Self::Report,
            k => Self::Help(k),
        })
    }
}

/// The keys [`SysrqRequest::parse`] knows, for the help line.
pub const SYSRQ_HELP: &str =
    "c: crash the domain with a register dump; t, m: report processes, memory, grants and mappings";

/// `value` without a trailing NUL and surrounding ASCII whitespace.
fn trim(value: &[u8]) -> &[u8] {
    let v = value.strip_suffix(b"\0").unwrap_or(value);
    v.trim_ascii()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What [`ShutdownRequest::parse`] returns.
    type Parsed<'a> = Option<Result<ShutdownRequest, &'a [u8]>>;

    #[test]
    fn shutdown_values() {
        use ShutdownRequest::*;
        let cases: [(&[u8], Parsed<'_>); 10] = [
            (b"", None),
            (b"\0", None),
            (b" \n", None),
            (b"poweroff", Some(Ok(Poweroff))),
            (b"halt\0", Some(Ok(Poweroff))),
            (b"reboot", Some(Ok(Reboot))),
            (b"suspend", Some(Ok(Suspend))),
            (b"crash", Some(Err(b"crash"))),
            (b"poweroffx", Some(Err(b"poweroffx"))),
            (b"\xff\xfe", Some(Err(b"\xff\xfe"))),
        ];
        for (value, want) in cases {
            assert_eq!(ShutdownRequest::parse(value), want, "{value:?}");
        }
    }

    #[test]
    fn sysrq_keys() {
        use SysrqRequest::*;
        let cases: [(&[u8], Option<SysrqRequest>); 7] = [
            (b"", None),
            (b"c", Some(Crash)),
            (b"t", Some(Report)),
            (b"m\0", Some(Report)),
            (b"tx", Some(Report)),
            (b"h", Some(Help(b'h'))),
            (b"\x01", Some(Help(1))),
        ];
        for (value, want) in cases {
            assert_eq!(SysrqRequest::parse(value), want, "{value:?}");
        }
    }
}
