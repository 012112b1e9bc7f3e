//! QEMU's command line for a [`VmSpec`], as data.

use std::os::fd::AsRawFd;
use std::path::Path;

use crate::disk::Disk;
use crate::vmm::{Accel, SHARE_TAG, VmSpec};

/// Sockets the QEMU process connects to or serves.
pub struct QemuSockets<'a> {
    pub qmp: &'a Path,
    pub vhost_vsock: &'a Path,
    pub console_log: &'a Path,
}

pub fn qemu_args(spec: &VmSpec, sockets: &QemuSockets<'_>) -> Vec<String> {
    let mem = spec.memory_mib;
    let mut args: Vec<String> = Vec::new();
    let mut push = |parts: &[&str]| args.extend(parts.iter().map(|s| s.to_string()));
    // microvm: virtio-mmio only, no PCI and no firmware, the quickest QEMU machine to boot.
    push(&["-M", "microvm,x-option-roms=off,rtc=on"]);
    match spec.accel {
        Accel::Kvm => push(&["-accel", "kvm", "-cpu", "host"]),
        Accel::Tcg => push(&["-accel", "tcg,thread=multi", "-cpu", "max"]),
    }
    push(&["-smp", &spec.cpus.to_string(), "-m", &format!("{mem}M")]);
    push(&[
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-monitor",
        "none",
    ]);
    // Power-off or a guest panic ends the QEMU process instead of rebooting.
    push(&["-no-reboot"]);
    // Modern virtio-mmio: vhost-user back-ends refuse legacy devices.
    push(&["-global", "virtio-mmio.force-legacy=false"]);
    // vhost-user devices need guest memory they can map: a shared memfd.
    push(&[
        "-object",
        &format!("memory-backend-memfd,id=mem,size={mem}M,share=on"),
        "-machine",
        "memory-backend=mem",
    ]);
    push(&["-kernel", &spec.kernel.to_string_lossy()]);
    push(&["-initrd", &spec.initrd.to_string_lossy()]);
    push(&["-append", &spec.cmdline]);
    push(&[
        "-serial",
        &format!("file:{}", sockets.console_log.display()),
    ]);
    push(&[
        "-chardev",
        &format!("socket,id=vsock,path={}", sockets.vhost_vsock.display()),
        "-device",
        "vhost-user-vsock-device,chardev=vsock",
    ]);
    push(&[
        "-chardev",
        &format!("socket,id=fs,path={}", spec.virtiofs_socket.display()),
        "-device",
        &format!("vhost-user-fs-device,chardev=fs,tag={SHARE_TAG}"),
    ]);
    if let Some(nic) = &spec.nic {
        // The tap is the shim's fd, inherited under the same number (see Child::spawn_inheriting).
        // QEMU reads IFF_VNET_HDR from the fd itself and refuses `vnet_hdr=` next to `fd=`.
        push(&[
            "-netdev",
            &format!("tap,id=net0,fd={}", nic.tap.as_raw_fd()),
            "-device",
            &format!("virtio-net-device,netdev=net0,mac={}", nic.mac),
        ]);
    }
    for (i, disk) in spec.disks.iter().enumerate() {
        let (blockdev, device) = disk_args(i, disk);
        push(&["-blockdev", &blockdev, "-device", &device]);
    }
    push(&[
        "-qmp",
        &format!("unix:{},server=on,wait=off", sockets.qmp.display()),
    ]);
    // Start paused: the control socket is up before the guest runs; `cont` boots it.
    push(&["-S"]);
    args
}

/// `-blockdev` and `-device` values of a disk: QEMU opens the shim's descriptor of the image
/// (`/proc/<shim pid>/fd/<n>`); a qcow2 never opens a backing file named inside the image.
/// The cache mode maps onto `cache.direct`, `cache.no-flush` and the device's `write-cache`
/// as `-drive cache=` would.
pub fn disk_args(index: usize, disk: &Disk) -> (String, String) {
    let d = &disk.spec;
    let on = |b: bool| if b { "on" } else { "off" };
    let (direct, no_flush, write_cache) = match d.cache.as_str() {
        "none" => (true, false, true),
        "writethrough" => (false, false, false),
        "directsync" => (true, false, false),
        "unsafe" => (false, true, true),
        _ => (false, false, true),
    };
    // JSON, not key=value: only JSON can say `"backing": null` (key=value would name a node
    // called "null").
    let mut blockdev = serde_json::json!({
        "driver": d.format,
        "node-name": format!("disk{index}"),
        "file": { "driver": "file", "filename": disk.vmm_path },
        "read-only": d.read_only,
        "cache": { "direct": direct, "no-flush": no_flush },
    });
    if d.format == "qcow2" {
        blockdev["backing"] = serde_json::Value::Null;
    }
    let blockdev = blockdev.to_string();
    let device = format!(
        "virtio-blk-device,drive=disk{index},serial={},write-cache={}",
        d.serial,
        on(write_cache)
    );
    (blockdev, device)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vmm::Nic;
    use std::os::fd::OwnedFd;
    use std::path::PathBuf;
    use std::sync::Arc;

    fn spec(accel: Accel) -> VmSpec {
        VmSpec {
            cpus: 2,
            memory_mib: 512,
            kernel: "/g/vmlinux".into(),
            initrd: "/g/initramfs.img".into(),
            cmdline: "console=ttyS0".into(),
            accel,
            virtiofs_socket: "/r/virtiofs.sock".into(),
            run_dir: PathBuf::from("/r"),
            nic: None,
            disks: Vec::new(),
        }
    }

    fn args(accel: Accel) -> Vec<String> {
        args_of(&spec(accel))
    }

    fn args_of(spec: &VmSpec) -> Vec<String> {
        qemu_args(
            spec,
            &QemuSockets {
                qmp: Path::new("/r/qmp.sock"),
                vhost_vsock: Path::new("/r/vhost-vsock.sock"),
                console_log: Path::new("/r/console.log"),
            },
        )
    }

    fn value_of(args: &[String], flag: &str) -> Vec<String> {
        args.windows(2)
            .filter(|w| w[0] == flag)
            .map(|w| w[1].clone())
            .collect()
    }

    #[test]
    fn shared_memory_matches_the_vm_size() {
        let a = args(Accel::Tcg);
        assert_eq!(value_of(&a, "-m"), ["512M"]);
        assert_eq!(value_of(&a, "-smp"), ["2"]);
        assert!(
            value_of(&a, "-object")
                .contains(&"memory-backend-memfd,id=mem,size=512M,share=on".into())
        );
    }

    #[test]
    fn tcg_uses_cpu_max_and_kvm_uses_host() {
        let tcg = args(Accel::Tcg);
        assert_eq!(value_of(&tcg, "-cpu"), ["max"]);
        assert_eq!(value_of(&tcg, "-accel"), ["tcg,thread=multi"]);
        assert_eq!(value_of(&args(Accel::Kvm), "-cpu"), ["host"]);
    }

    #[test]
    fn devices_point_at_the_run_dir_sockets() {
        let a = args(Accel::Tcg);
        let chardevs = value_of(&a, "-chardev");
        assert!(chardevs.contains(&"socket,id=vsock,path=/r/vhost-vsock.sock".into()));
        assert!(chardevs.contains(&"socket,id=fs,path=/r/virtiofs.sock".into()));
        assert!(
            value_of(&a, "-device").contains(&"vhost-user-fs-device,chardev=fs,tag=share".into())
        );
        assert_eq!(
            value_of(&a, "-qmp"),
            ["unix:/r/qmp.sock,server=on,wait=off"]
        );
        assert_eq!(value_of(&a, "-serial"), ["file:/r/console.log"]);
        assert!(a.contains(&"-S".to_string()), "starts paused");
        // Nothing goes to the shim's own terminal.
        assert!(!a.iter().any(|x| x.contains("stdio")));
    }

    #[test]
    fn a_nic_is_the_inherited_tap_fd_with_the_guest_mac() {
        let fd: OwnedFd = std::fs::File::open("/dev/null").unwrap().into();
        let n = fd.as_raw_fd();
        let mut with_nic = spec(Accel::Tcg);
        with_nic.nic = Some(Nic {
            tap: Arc::new(fd),
            mac: "52:54:00:12:34:56".into(),
            mtu: 1500,
        });
        let a = args_of(&with_nic);
        assert_eq!(value_of(&a, "-netdev"), [format!("tap,id=net0,fd={n}")]);
        assert!(
            value_of(&a, "-device")
                .contains(&"virtio-net-device,netdev=net0,mac=52:54:00:12:34:56".into())
        );
        // Without one, QEMU adds no network device of its own (-nodefaults).
        let plain = args(Accel::Tcg);
        assert!(value_of(&plain, "-netdev").is_empty());
        assert!(!plain.iter().any(|x| x.contains("virtio-net")));
        assert!(plain.contains(&"-nodefaults".to_string()));
    }

    #[test]
    fn disks_are_blockdevs_on_the_shims_descriptor_with_their_serial() {
        let fd: OwnedFd = std::fs::File::open("/dev/null").unwrap().into();
        let disk = |serial: &str, format: &str, ro: bool, cache: &str| Disk {
            spec: hyper_proto::types::DiskSpec {
                path: "/img/x".into(),
                format: format.into(),
                read_only: ro,
                serial: serial.into(),
                cache: cache.into(),
            },
            fd: Arc::new(fd.try_clone().unwrap()),
            vmm_path: PathBuf::from("/proc/42/fd/7"),
        };
        let mut s = spec(Accel::Tcg);
        s.disks = vec![
            disk("data", "raw", false, "writeback"),
            disk("base", "qcow2", true, "none"),
        ];
        let a = args_of(&s);
        let blockdevs: Vec<serde_json::Value> = value_of(&a, "-blockdev")
            .iter()
            .map(|b| serde_json::from_str(b).unwrap())
            .collect();
        assert_eq!(
            blockdevs,
            [
                serde_json::json!({"driver": "raw", "node-name": "disk0",
                    "file": {"driver": "file", "filename": "/proc/42/fd/7"},
                    "read-only": false, "cache": {"direct": false, "no-flush": false}}),
                serde_json::json!({"driver": "qcow2", "node-name": "disk1",
                    "file": {"driver": "file", "filename": "/proc/42/fd/7"},
                    "read-only": true, "cache": {"direct": true, "no-flush": false},
                    "backing": null}),
            ]
        );
        let devices = value_of(&a, "-device");
        assert!(
            devices.contains(&"virtio-blk-device,drive=disk0,serial=data,write-cache=on".into())
        );
        assert!(
            devices.contains(&"virtio-blk-device,drive=disk1,serial=base,write-cache=on".into())
        );
        let (_, wt) = disk_args(0, &disk("d", "raw", false, "writethrough"));
        assert!(wt.ends_with("write-cache=off"), "{wt}");
        assert!(value_of(&args(Accel::Tcg), "-blockdev").is_empty());
    }
}
