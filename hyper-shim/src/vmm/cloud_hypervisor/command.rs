//! Cloud Hypervisor's command line and the body of `vm.create` for a [`VmSpec`], as data.
//! The process gets only its sockets on the command line; the VM itself is defined through
//! the API, so every setting goes through one typed path.

use std::path::{Path, PathBuf};

use crate::disk::Disk;
use crate::vmm::cloud_hypervisor::api::{
    ConsoleConfig, CpusConfig, DiskConfig, FsConfig, MemoryConfig, PayloadConfig, VmConfig,
    VsockConfig,
};
use crate::vmm::{SHARE_TAG, VmSpec};
use crate::vsock::GUEST_CID;

/// virtio-fs queue settings CH and Kata use by default.
pub const FS_NUM_QUEUES: u32 = 1;
pub const FS_QUEUE_SIZE: u32 = 1024;

/// The files a CH instance uses in its run dir.
#[derive(Debug, Clone, PartialEq)]
pub struct ChPaths {
    pub api_socket: PathBuf,
    /// CH locks `<api socket>.lock` while it serves the socket; it stays behind when CH exits.
    pub api_lock: PathBuf,
    /// A FIFO CH writes its event stream into (`--event-monitor`).
    pub events: PathBuf,
    /// Hybrid vsock: the shim connects here to reach the agent.
    pub vsock: PathBuf,
    /// The guest's serial console (ttyS0), never the shim's terminal.
    pub console_log: PathBuf,
    /// CH's own stdout and stderr.
    pub log: PathBuf,
}

impl ChPaths {
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            api_socket: dir.join("api.sock"),
            api_lock: dir.join("api.sock.lock"),
            events: dir.join("ch-events.fifo"),
            vsock: dir.join("vsock.sock"),
            console_log: dir.join("console.log"),
            log: dir.join("cloud-hypervisor.log"),
        }
    }
}

pub fn ch_args(paths: &ChPaths) -> Vec<String> {
    vec![
        "--api-socket".into(),
        format!("path={}", paths.api_socket.display()),
        "--event-monitor".into(),
        format!("path={}", paths.events.display()),
    ]
}

fn mib(n: u32) -> u64 {
    u64::from(n) << 20
}

/// The `vm.create` body: direct PVH kernel boot, shared memory for virtiofsd, the share, the
/// agent's vsock, serial to a file and the virtio console off.
pub fn vm_config(spec: &VmSpec, paths: &ChPaths) -> VmConfig {
    VmConfig {
        payload: PayloadConfig {
            kernel: spec.kernel.clone(),
            initramfs: Some(spec.initrd.clone()),
            cmdline: spec.cmdline.clone(),
        },
        cpus: CpusConfig {
            boot_vcpus: spec.cpus,
            max_vcpus: spec.cpus,
        },
        memory: MemoryConfig {
            size: mib(spec.memory_mib),
            shared: true,
        },
        fs: vec![FsConfig {
            tag: SHARE_TAG.into(),
            socket: spec.virtiofs_socket.clone(),
            num_queues: FS_NUM_QUEUES,
            queue_size: FS_QUEUE_SIZE,
            id: None,
        }],
        net: vec![],
        disks: spec.disks.iter().enumerate().map(disk_config).collect(),
        vsock: Some(VsockConfig {
            cid: GUEST_CID.into(),
            socket: paths.vsock.clone(),
        }),
        serial: ConsoleConfig::file(&paths.console_log),
        console: ConsoleConfig::off(),
    }
}

/// A disk of the VM: CH has no write-through mode of its own, so `writethrough` and
/// `directsync` differ from `writeback` and `none` only in QEMU.
pub fn disk_config((index, disk): (usize, &Disk)) -> DiskConfig {
    let d = &disk.spec;
    DiskConfig {
        path: disk.vmm_path.clone(),
        readonly: d.read_only,
        direct: matches!(d.cache.as_str(), "none" | "directsync"),
        serial: d.serial.clone(),
        id: format!("disk{index}"),
        image_type: if d.format == "qcow2" { "Qcow2" } else { "Raw" }.into(),
        backing_files: false,
    }
}

/// The boot probe's VM: our kernel and initramfs with nothing attached, its serial console
/// to a file where the agent's first words show that the guest reached userspace.
pub fn probe_config(kernel: &Path, initrd: &Path, cmdline: &str, paths: &ChPaths) -> VmConfig {
    VmConfig {
        payload: PayloadConfig {
            kernel: kernel.to_path_buf(),
            initramfs: Some(initrd.to_path_buf()),
            cmdline: cmdline.into(),
        },
        cpus: CpusConfig {
            boot_vcpus: 1,
            max_vcpus: 1,
        },
        memory: MemoryConfig {
            size: mib(256),
            shared: false,
        },
        fs: vec![],
        net: vec![],
        disks: vec![],
        vsock: None,
        serial: ConsoleConfig::file(&paths.console_log),
        console: ConsoleConfig::off(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vmm::Accel;
    use crate::vmm::cloud_hypervisor::openapi_check::Schema;
    use serde_json::json;

    fn spec() -> VmSpec {
        VmSpec {
            cpus: 2,
            memory_mib: 512,
            kernel: "/g/vmlinux".into(),
            initrd: "/g/initramfs.img".into(),
            cmdline: "console=ttyS0 quiet".into(),
            accel: Accel::Kvm,
            virtiofs_socket: "/r/virtiofs.sock".into(),
            run_dir: PathBuf::from("/r"),
            nic: None,
            disks: Vec::new(),
        }
    }

    #[test]
    fn the_create_body_is_exactly_our_vm() {
        let body =
            serde_json::to_value(vm_config(&spec(), &ChPaths::in_dir(Path::new("/r")))).unwrap();
        assert_eq!(
            body,
            json!({
                "payload": {
                    "kernel": "/g/vmlinux",
                    "initramfs": "/g/initramfs.img",
                    "cmdline": "console=ttyS0 quiet",
                },
                "cpus": {"boot_vcpus": 2, "max_vcpus": 2},
                "memory": {"size": 512u64 << 20, "shared": true},
                "fs": [{
                    "tag": "share",
                    "socket": "/r/virtiofs.sock",
                    "num_queues": 1,
                    "queue_size": 1024,
                }],
                "vsock": {"cid": 3, "socket": "/r/vsock.sock"},
                "serial": {"mode": "File", "file": "/r/console.log"},
                "console": {"mode": "Off"},
            })
        );
    }

    #[test]
    fn the_create_body_matches_the_openapi_schema() {
        let schema = Schema::load();
        let paths = ChPaths::in_dir(Path::new("/r"));
        schema.check("VmConfig", &vm_config(&spec(), &paths));
        schema.check(
            "VmConfig",
            &probe_config(Path::new("/k"), Path::new("/i"), "console=ttyS0", &paths),
        );
        // The serial port's schema is SerialConfig, a subset of ConsoleConfig.
        schema.check("SerialConfig", &ConsoleConfig::file(Path::new("/r/c.log")));
        schema.check("ConsoleConfig", &ConsoleConfig::off());
    }

    #[test]
    fn the_process_only_gets_its_sockets() {
        let args = ch_args(&ChPaths::in_dir(Path::new("/r")));
        assert_eq!(
            args,
            [
                "--api-socket",
                "path=/r/api.sock",
                "--event-monitor",
                "path=/r/ch-events.fifo"
            ]
        );
    }

    #[test]
    fn disks_are_the_shims_descriptors_with_their_serial() {
        let fd: std::os::fd::OwnedFd = std::fs::File::open("/dev/null").unwrap().into();
        let mut s = spec();
        s.disks = vec![crate::disk::Disk {
            spec: hyper_proto::types::DiskSpec {
                path: "/img/data.qcow2".into(),
                format: "qcow2".into(),
                read_only: true,
                serial: "data".into(),
                cache: "none".into(),
            },
            fd: std::sync::Arc::new(fd),
            vmm_path: PathBuf::from("/proc/42/fd/7"),
        }];
        let config = vm_config(&s, &ChPaths::in_dir(Path::new("/r")));
        let body = serde_json::to_value(&config).unwrap();
        assert_eq!(
            body["disks"],
            json!([{
                "path": "/proc/42/fd/7",
                "readonly": true,
                "direct": true,
                "serial": "data",
                "id": "disk0",
                "image_type": "Qcow2",
                "backing_files": false,
            }])
        );
        Schema::load().check("VmConfig", &config);
    }
}
