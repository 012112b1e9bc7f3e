//! The VMMs behind one small trait. Each driver lives in its own module with the same file
//! names: `mod.rs` (the trait impl), `command.rs` (VmSpec -> the VMM's configuration, pure),
//! and the control client. Process supervision, virtiofsd and the hybrid-vsock connector are
//! shared and live outside the drivers.

pub mod cloud_hypervisor;
pub mod qemu;
pub mod select;

use std::fmt;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::child::Child;
use crate::config::{ShimConfig, find_program};
use crate::error::Result;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VmmKind {
    Qemu,
    CloudHypervisor,
}

impl fmt::Display for VmmKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            VmmKind::Qemu => "qemu",
            VmmKind::CloudHypervisor => "cloud-hypervisor",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    Kvm,
    /// QEMU's software emulation: slow, but it runs any guest anywhere.
    Tcg,
}

impl fmt::Display for Accel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        })
    }
}

/// Everything a driver needs to define the VM.
#[derive(Debug, Clone)]
pub struct VmSpec {
    pub cpus: u32,
    pub memory_mib: u32,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub cmdline: String,
    pub accel: Accel,
    /// virtiofsd's vhost-user socket, shared with the guest under [`SHARE_TAG`].
    pub virtiofs_socket: PathBuf,
    pub run_dir: PathBuf,
    /// The VM's network card, if it has one (no card: the guest has loopback only).
    pub nic: Option<Nic>,
    /// Block volumes, in order (virtio-blk; the guest finds each by its serial).
    pub disks: Vec<crate::disk::Disk>,
}

/// A network card given at boot: a tap the shim opened and the guest side's MAC. The VMM gets
/// its own copy of the fd (inherited, or sent over its API socket).
#[derive(Debug, Clone)]
pub struct Nic {
    pub tap: Arc<OwnedFd>,
    /// `52:54:00:xx:xx:xx`.
    pub mac: String,
    /// Bytes.
    pub mtu: u32,
}

/// The virtio-fs tag of the shared directory; the agent mounts it by this name.
pub const SHARE_TAG: &str = "share";

#[derive(Debug, Clone)]
pub struct VmmInfo {
    pub kind: VmmKind,
    pub accel: Accel,
    pub pid: u32,
    /// Helpers the driver started besides the VMM (QEMU's vsock back-end).
    pub helper_pids: Vec<u32>,
}

#[async_trait]
pub trait Vmm: Send + Sync {
    /// Starts the VMM process with the VM defined but not running.
    async fn create(&mut self, spec: &VmSpec) -> Result<()>;
    /// Lets the guest run.
    async fn boot(&mut self) -> Result<()>;
    /// Freezes the whole VM (vCPUs stop; memory and devices stay). Errors:
    /// [`Error::Unsupported`](crate::error::Error::Unsupported) where the VMM cannot.
    async fn pause(&mut self) -> Result<()> {
        Err(crate::error::Error::Unsupported(format!(
            "{}: pausing the vm",
            self.info().kind
        )))
    }
    /// Lets a paused VM run again. Errors as [`Vmm::pause`].
    async fn resume(&mut self) -> Result<()> {
        Err(crate::error::Error::Unsupported(format!(
            "{}: resuming the vm",
            self.info().kind
        )))
    }
    /// Waits up to `grace` for the VMM to exit (the caller asked the guest to power off), then
    /// forces it down; helpers go with it.
    async fn shutdown(&mut self, grace: Duration) -> Result<()>;
    fn info(&self) -> VmmInfo;
    /// The hybrid-vsock unix socket through which the agent is reached.
    fn vsock_socket(&self) -> PathBuf;
    /// The VMM process, to watch for its exit.
    fn process(&self) -> Option<&Child>;
}

/// The driver for `kind`, with its programs found from the shim's configuration.
pub fn driver(kind: VmmKind, config: &ShimConfig) -> Result<Box<dyn Vmm>> {
    Ok(match kind {
        VmmKind::Qemu => Box::new(qemu::Qemu::new(
            find_program(&config.qemu)?,
            find_program(&config.vhost_device_vsock)?,
        )),
        VmmKind::CloudHypervisor => Box::new(cloud_hypervisor::CloudHypervisor::new(find_program(
            &config.cloud_hypervisor,
        )?)),
    })
}

/// The guest kernel's command line. Under TCG the guest calibrates its clock against timers
/// that a busy host makes unreliable, and hangs; giving it the TSC frequency avoids that.
pub fn kernel_cmdline(accel: Accel, tsc_khz: Option<u64>) -> String {
    let mut cmdline = String::from("console=ttyS0 quiet panic=-1 reboot=t");
    if let (Accel::Tcg, Some(khz)) = (accel, tsc_khz) {
        cmdline.push_str(&format!(" tsc_early_khz={khz} tsc=reliable"));
    }
    cmdline
}

/// The host's TSC frequency in kHz from /proc/cpuinfo (the guest's equals it under TCG).
pub fn host_tsc_khz(cpuinfo: &str) -> Option<u64> {
    cpuinfo
        .lines()
        .find(|l| l.starts_with("cpu MHz"))
        .and_then(|l| l.split(':').nth(1))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|mhz| (mhz * 1000.0) as u64)
}

/// Whether KVM can run our stock guest kernel: /dev/kvm must exist and the CPU must have
/// hardware virtualization. A nested PVM host has /dev/kvm without vmx/svm, and stock
/// kernels crash under it. Returns the choice and the reason to log.
pub fn choose_accel(kvm_device: bool, cpuinfo: &str, forced: Option<Accel>) -> (Accel, String) {
    if let Some(accel) = forced {
        return (accel, format!("{accel} forced by configuration"));
    }
    if !kvm_device {
        return (Accel::Tcg, "no /dev/kvm".into());
    }
    let hw_virt = cpuinfo
        .lines()
        .filter(|l| l.starts_with("flags"))
        .any(|l| l.split_whitespace().any(|f| f == "vmx" || f == "svm"));
    if hw_virt {
        (Accel::Kvm, "/dev/kvm with hardware virtualization".into())
    } else {
        (
            Accel::Tcg,
            "/dev/kvm without vmx/svm (nested paravirtual KVM cannot run stock guests)".into(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CPUINFO: &str = "processor\t: 0\ncpu MHz\t\t: 2596.124\nflags\t\t: fpu vme sse2\n";

    #[test]
    fn tcg_cmdline_carries_the_tsc_frequency() {
        assert_eq!(host_tsc_khz(CPUINFO), Some(2_596_124));
        let c = kernel_cmdline(Accel::Tcg, Some(2_596_124));
        assert!(c.ends_with("tsc_early_khz=2596124 tsc=reliable"), "{c}");
        assert!(!kernel_cmdline(Accel::Kvm, Some(1)).contains("tsc_early_khz"));
    }

    #[test]
    fn kvm_needs_the_device_and_hardware_virtualization() {
        assert_eq!(choose_accel(false, CPUINFO, None).0, Accel::Tcg);
        let (accel, why) = choose_accel(true, CPUINFO, None);
        assert_eq!(accel, Accel::Tcg);
        assert!(why.contains("without vmx/svm"));
        let vmx = CPUINFO.replace("sse2", "sse2 vmx");
        assert_eq!(choose_accel(true, &vmx, None).0, Accel::Kvm);
        assert_eq!(choose_accel(true, &vmx, Some(Accel::Tcg)).0, Accel::Tcg);
    }
}
