//! The xenstore wire protocol (`io/xs_wire.h`).

/// Message types (`enum xsd_sockmsg_type`), as `xsd_sockmsg.type`.
pub mod msg {
    /// `XS_CONTROL` (also `XS_DEBUG`).
    pub const CONTROL: u32 = 0;
    /// `XS_DIRECTORY`.
    pub const DIRECTORY: u32 = 1;
    /// `XS_READ`.
    pub const READ: u32 = 2;
    /// `XS_GET_PERMS`.
    pub const GET_PERMS: u32 = 3;
    /// `XS_WATCH`.
    pub const WATCH: u32 = 4;
    /// `XS_UNWATCH`.
    pub const UNWATCH: u32 = 5;
    /// `XS_TRANSACTION_START`.
    pub const TRANSACTION_START: u32 = 6;
    /// `XS_TRANSACTION_END`.
    pub const TRANSACTION_END: u32 = 7;
    /// `XS_INTRODUCE`.
    pub const INTRODUCE: u32 = 8;
    /// `XS_RELEASE`.
    pub const RELEASE: u32 = 9;
    /// `XS_GET_DOMAIN_PATH`.
    pub const GET_DOMAIN_PATH: u32 = 10;
    /// `XS_WRITE`.
    pub const WRITE: u32 = 11;
    /// `XS_MKDIR`.
    pub const MKDIR: u32 = 12;
    /// `XS_RM`.
    pub const RM: u32 = 13;
    /// `XS_SET_PERMS`.
    pub const SET_PERMS: u32 = 14;
    /// `XS_WATCH_EVENT`: asynchronous, payload "path\0token\0".
    pub const WATCH_EVENT: u32 = 15;
    /// `XS_ERROR`: payload is an error name from [`super::XSD_ERRORS`].
    pub const ERROR: u32 = 16;
    /// `XS_IS_DOMAIN_INTRODUCED`.
    pub const IS_DOMAIN_INTRODUCED: u32 = 17;
    /// `XS_RESUME`.
    pub const RESUME: u32 = 18;
    /// `XS_SET_TARGET`.
    pub const SET_TARGET: u32 = 19;
    /// `XS_RESET_WATCHES`.
    pub const RESET_WATCHES: u32 = 21;
    /// `XS_DIRECTORY_PART`.
    pub const DIRECTORY_PART: u32 = 22;
    /// `XS_TYPE_COUNT`.
    pub const TYPE_COUNT: u32 = 23;
    /// `XS_INVALID`.
    pub const INVALID: u32 = 0xffff;
}

/// `XS_WATCH_PATH`: index of the path in a watch event's payload.
pub const XS_WATCH_PATH: u32 = 0;
/// `XS_WATCH_TOKEN`: index of the token in a watch event's payload.
pub const XS_WATCH_TOKEN: u32 = 1;

/// `xsd_errors`: the error names xenstored sends in `XS_ERROR` replies,
/// with their (Linux) errno values, in the header's order.
pub const XSD_ERRORS: [(i32, &str); 16] = [
    (22, "EINVAL"),
    (13, "EACCES"),
    (17, "EEXIST"),
    (21, "EISDIR"),
    (2, "ENOENT"),
    (12, "ENOMEM"),
    (28, "ENOSPC"),
    (5, "EIO"),
    (39, "ENOTEMPTY"),
    (38, "ENOSYS"),
    (30, "EROFS"),
    (16, "EBUSY"),
    (11, "EAGAIN"),
    (106, "EISCONN"),
    (7, "E2BIG"),
    (1, "EPERM"),
];

/// `struct xsd_sockmsg`: the header of every message.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XsdSockmsg {
    /// `XS_*` ([`msg`]).
    pub type_: u32,
    /// Request id, echoed in the reply.
    pub req_id: u32,
    /// Transaction id, 0 outside a transaction.
    pub tx_id: u32,
    /// Payload bytes after the header.
    pub len: u32,
}

/// Bytes of an [`XsdSockmsg`] on the wire.
pub const XSD_SOCKMSG_SIZE: usize = core::mem::size_of::<XsdSockmsg>();

/// `XENSTORE_RING_SIZE`: bytes in each direction's ring (a power of two).
pub const XENSTORE_RING_SIZE: usize = 1024;
/// `XENSTORE_PAYLOAD_MAX`: largest payload of one message.
pub const XENSTORE_PAYLOAD_MAX: usize = 4096;
/// `XENSTORE_ABS_PATH_MAX`.
pub const XENSTORE_ABS_PATH_MAX: usize = 3072;
/// `XENSTORE_REL_PATH_MAX`.
pub const XENSTORE_REL_PATH_MAX: usize = 2048;
/// `XENSTORE_SERVER_FEATURE_RECONNECTION`.
pub const XENSTORE_SERVER_FEATURE_RECONNECTION: u32 = 1;
/// `XENSTORE_SERVER_FEATURE_ERROR`.
pub const XENSTORE_SERVER_FEATURE_ERROR: u32 = 2;
/// `XENSTORE_CONNECTED`.
pub const XENSTORE_CONNECTED: u32 = 0;
/// `XENSTORE_RECONNECT`.
pub const XENSTORE_RECONNECT: u32 = 1;

/// `struct xenstore_domain_interface`: the shared xenstore page.
#[repr(C)]
#[derive(Debug)]
pub struct XenstoreDomainInterface {
    /// Requests to xenstored.
    pub req: [u8; XENSTORE_RING_SIZE],
    /// Replies and watch events.
    pub rsp: [u8; XENSTORE_RING_SIZE],
    /// Request consumer index (xenstored).
    pub req_cons: u32,
    /// Request producer index (guest).
    pub req_prod: u32,
    /// Reply consumer index (guest).
    pub rsp_cons: u32,
    /// Reply producer index (xenstored).
    pub rsp_prod: u32,
    /// `XENSTORE_SERVER_FEATURE_*`.
    pub server_features: u32,
    /// `XENSTORE_CONNECTED` or `XENSTORE_RECONNECT`.
    pub connection: u32,
    /// `XENSTORE_ERROR_*`.
    pub error: u32,
}

impl Default for XenstoreDomainInterface {
    fn default() -> Self {
        Self {
            req: [0; XENSTORE_RING_SIZE],
            rsp: [0; XENSTORE_RING_SIZE],
            req_cons: 0,
            req_prod: 0,
            rsp_cons: 0,
            rsp_prod: 0,
            server_features: 0,
            connection: 0,
            error: 0,
        }
    }
}
