//! Wire contracts shared by hyperd, hyper-shim, hyper-agent and hyperctl.
//!
//! - [`types`]: messages both gRPC protocols use (processes, stdio, exit status).
//! - [`agent`]: the shim -> guest agent protocol, served on vsock port [`AGENT_VSOCK_PORT`].
//! - [`shim`]: the hyperd -> shim protocol, served on a unix socket.
//! - [`rest`]: the JSON bodies of hyperd's REST API (serde only), for hyperd and hyperctl.
//! - [`dockerignore`]: which files of a build context `.dockerignore` leaves out, for
//!   `hyperctl build` (what it sends) and hyperd (what it uses).

pub mod types {
    tonic::include_proto!("hyper.types");
}

pub mod agent {
    tonic::include_proto!("hyper.agent");
}

pub mod dockerignore;
pub mod mac;
pub mod rest;

pub mod shim {
    tonic::include_proto!("hyper.shim");
}

/// setrlimit(2)'s resources by the name the pod spec's `ulimits` use (lower case, without
/// `RLIMIT_`; Docker's `--ulimit`): what hyperd accepts and the agent applies.
pub const RLIMIT_NAMES: &[&str] = &[
    "as",
    "core",
    "cpu",
    "data",
    "fsize",
    "locks",
    "memlock",
    "msgqueue",
    "nice",
    "nofile",
    "nproc",
    "rss",
    "rtprio",
    "rttime",
    "sigpending",
    "stack",
];

/// The vsock port the guest agent listens on.
pub const AGENT_VSOCK_PORT: u32 = 1024;

/// The host port the agent connects to once it listens, so that the host only ever connects
/// to a listening agent: connection requests sent while the guest's vsock device is still
/// coming up can leave the vhost-user back-end stuck for good.
pub const AGENT_READY_PORT: u32 = 1025;
