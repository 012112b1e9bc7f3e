//! hyper-agent: PID 1 of the guest.
//!
//! Boot order: base mounts ([`boot`]), kernel modules ([`modules`]), the shared filesystem, then
//! the gRPC server ([`server`]) on vsock port [`hyper_proto::AGENT_VSOCK_PORT`]. Containers are
//! created with youki's libcontainer ([`container`]); their processes are reaped by [`reaper`].
//!
//! The runtime is single-threaded on purpose: libcontainer clones the calling process with the
//! raw `clone3` syscall, which is only safe when no other thread can hold a libc lock.

pub mod boot;
pub mod container;
pub mod error;
pub mod etc_files;
pub mod files;
pub mod modules;
pub mod network;
pub mod output;
pub mod process;
pub mod reaper;
pub mod rootfs;
pub mod server;
pub mod spec;
pub mod stats;
pub mod user;
pub mod volumes;
pub mod workload;

use std::time::Duration;

/// Where the VM's shared directory (virtio-fs tag [`SHARE_TAG`]) is mounted in the guest.
pub const SHARE_DIR: &str = "/run/hyper/share";
/// The virtio-fs tag the shim gives the shared directory.
pub const SHARE_TAG: &str = "share";
/// libcontainer's state directory.
pub const STATE_DIR: &str = "/run/hyper/containers";
/// OCI bundles (config.json) of the containers.
pub const BUNDLE_DIR: &str = "/run/hyper/bundles";
/// The parent cgroup of the containers' cgroups (`cgroupsPath` /hyper/<id>).
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup/hyper";
/// The pod's hostname, hosts and resolv.conf, bind-mounted into every container's /etc.
pub const ETC_DIR: &str = "/run/hyper/etc";
/// Kernel modules packed into the initramfs.
pub const MODULE_DIR: &str = "/lib/modules";

pub fn main() {
    tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("HYPER_AGENT_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .init();
    let is_init = std::process::id() == 1;
    if is_init {
        // The first line on the console: the benchmark measures boot-to-/init by it.
        eprintln!("hyper-agent: /init started uptime_ms={}", boot::uptime_ms());
        if let Err(e) = boot::init_system() {
            tracing::error!("guest boot failed: {e}");
            boot::power_off();
        }
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let result = runtime.block_on(server::serve());
    if let Err(e) = result {
        tracing::error!("agent stopped: {e}");
    }
    if is_init {
        // PID 1 must never exit: that panics the kernel. Power off instead.
        std::thread::sleep(Duration::from_millis(10));
        boot::power_off();
    }
}
