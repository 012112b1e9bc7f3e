//! The shim's command line, resolved once into a [`ShimConfig`].

use std::path::{Path, PathBuf};

use clap::{Parser, ValueEnum};

use crate::error::{Error, Result};
use crate::vmm::{Accel, VmmKind};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum AccelArg {
    Auto,
    Kvm,
    Tcg,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum VmmArg {
    Auto,
    Qemu,
    CloudHypervisor,
}

/// hyper-shim: owns one VM and serves hyperd's gRPC calls for it.
#[derive(Debug, Parser)]
#[command(version)]
pub struct Args {
    /// Unix socket to serve shim.proto on.
    #[arg(long)]
    pub socket: PathBuf,
    /// Directory for this VM's sockets and logs; removed when the shim exits.
    #[arg(long)]
    pub run_dir: PathBuf,
    /// VM id, for logs.
    #[arg(long, default_value = "vm")]
    pub id: String,
    /// Directory with the guest's vmlinux and initramfs.img [default: ../guest next to this
    /// binary, then /usr/local/lib/hyper/guest].
    #[arg(long, env = "HYPER_GUEST_DIR")]
    pub guest_dir: Option<PathBuf>,
    #[arg(long, env = "HYPER_QEMU", default_value = "qemu-system-x86_64")]
    pub qemu: PathBuf,
    #[arg(long, env = "HYPER_VIRTIOFSD", default_value = "virtiofsd")]
    pub virtiofsd: PathBuf,
    #[arg(
        long,
        env = "HYPER_VHOST_DEVICE_VSOCK",
        default_value = "vhost-device-vsock"
    )]
    pub vhost_device_vsock: PathBuf,
    /// Hardware acceleration; auto uses KVM only where it can run a stock guest kernel.
    #[arg(long, env = "HYPER_ACCEL", value_enum, default_value = "auto")]
    pub accel: AccelArg,
    /// Which VMM runs the VM; auto picks Cloud Hypervisor when a boot probe of the guest under
    /// it succeeds (cached per host and binary version), else QEMU.
    #[arg(long, env = "HYPER_VMM", value_enum, default_value = "auto")]
    pub vmm: VmmArg,
    /// The cloud-hypervisor binary: a path, or a name looked up on PATH.
    #[arg(long, env = "CLOUD_HYPERVISOR", default_value = "cloud-hypervisor")]
    pub cloud_hypervisor: PathBuf,
    /// Where the Cloud Hypervisor boot probe's result is cached [default: $XDG_CACHE_HOME/hyper,
    /// /var/cache/hyper for root, else ~/.cache/hyper].
    #[arg(long, env = "HYPER_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Log filter (tracing syntax).
    #[arg(long, env = "HYPER_SHIM_LOG", default_value = "info")]
    pub log: String,
}

#[derive(Debug, Clone)]
pub struct ShimConfig {
    pub id: String,
    pub socket: PathBuf,
    pub run_dir: PathBuf,
    pub guest_dir: PathBuf,
    pub qemu: PathBuf,
    pub virtiofsd: PathBuf,
    pub vhost_device_vsock: PathBuf,
    pub accel: Option<Accel>,
    /// `None`: auto.
    pub vmm: Option<VmmKind>,
    pub cloud_hypervisor: PathBuf,
    pub cache_dir: PathBuf,
}

/// Unix socket paths must fit sun_path (108 bytes with the NUL).
const MAX_SOCKET_PATH: usize = 107;

fn default_guest_dir() -> PathBuf {
    let beside_binary = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.join("guest")));
    match beside_binary {
        Some(dir) if dir.join("vmlinux").exists() => dir,
        _ => PathBuf::from("/usr/local/lib/hyper/guest"),
    }
}

fn default_cache_dir() -> PathBuf {
    if let Some(xdg) = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(xdg).join("hyper");
    }
    match std::env::var_os("HOME") {
        Some(home) if !nix::unistd::geteuid().is_root() => PathBuf::from(home).join(".cache/hyper"),
        _ => PathBuf::from("/var/cache/hyper"),
    }
}

impl ShimConfig {
    pub fn from_args(args: Args) -> Result<Self> {
        // The longest socket the shim creates in its run dir.
        let longest = args.run_dir.join("vhost-vsock.sock");
        for path in [&args.socket, &longest] {
            if path.as_os_str().len() > MAX_SOCKET_PATH {
                return Err(Error::InvalidArgument(format!(
                    "socket path {} is longer than {MAX_SOCKET_PATH} bytes",
                    path.display()
                )));
            }
        }
        Ok(Self {
            id: args.id,
            socket: args.socket,
            run_dir: args.run_dir,
            guest_dir: args.guest_dir.unwrap_or_else(default_guest_dir),
            qemu: args.qemu,
            virtiofsd: args.virtiofsd,
            vhost_device_vsock: args.vhost_device_vsock,
            accel: match args.accel {
                AccelArg::Auto => None,
                AccelArg::Kvm => Some(Accel::Kvm),
                AccelArg::Tcg => Some(Accel::Tcg),
            },
            vmm: match args.vmm {
                VmmArg::Auto => None,
                VmmArg::Qemu => Some(VmmKind::Qemu),
                VmmArg::CloudHypervisor => Some(VmmKind::CloudHypervisor),
            },
            cloud_hypervisor: args.cloud_hypervisor,
            cache_dir: args.cache_dir.unwrap_or_else(default_cache_dir),
        })
    }
}

/// Finds a helper program: a path as given, else on PATH, else where `cargo install` puts it.
pub fn find_program(program: &Path) -> Result<PathBuf> {
    if program.components().count() > 1 {
        return if program.exists() {
            Ok(program.to_path_buf())
        } else {
            Err(Error::Unavailable(format!(
                "{}: no such file",
                program.display()
            )))
        };
    }
    let cargo_bin = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .map(|d| d.join("bin"));
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(cargo_bin)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            Error::Unavailable(format!(
                "{} not found on PATH; scripts/install-deps.sh installs it",
                program.display()
            ))
        })
}
