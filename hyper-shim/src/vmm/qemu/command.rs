//! QEMU's command line for a [`VmSpec`], as data.

use std::os::fd::AsRawFd;
use std::path::Path;

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
    push(&[
        "-qmp",
        &format!("unix:{},server=on,wait=off", sockets.qmp.display()),
    ]);
    // Start paused: the control socket is up before the guest runs; `cont` boots it.
    push(&["-S"]);
    args
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
}
