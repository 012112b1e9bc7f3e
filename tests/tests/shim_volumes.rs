//! hyper-shim end to end, the pod spec's volumes, disks and container options: host
//! directories and files shared into the VM, raw ext4 disks given at boot, a read-only rootfs,
//! rlimits, sysctls and injected files, as the container sees them. Real VMs, no hyperd.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use hyper_proto::shim::{AddContainerRequest, ContainerRef, CreateVmRequest, VolumeMount};
use hyper_proto::types::{
    ContainerOptions, DiskSpec, ExecRequest, FileInjection, ProcessRef, Rlimit,
};
use hyper_tests::*;
use tonic::Code;

fn init_of(id: &str) -> ProcessRef {
    ProcessRef {
        container_id: id.into(),
        exec_id: String::new(),
    }
}

fn volume(source: &Path, destination: &str) -> VolumeMount {
    VolumeMount {
        source: source.to_string_lossy().into(),
        destination: destination.into(),
        ..Default::default()
    }
}

/// The shim's mounts (they live in its private mount namespace, never in ours).
fn shim_mounts(shim: &ShimHandle) -> String {
    std::fs::read_to_string(format!("/proc/{}/mountinfo", shim.pid())).unwrap()
}

/// The mountinfo line whose mount point is `share/<suffix>` of this shim.
fn share_mount(shim: &ShimHandle, suffix: &str) -> Option<String> {
    let point = shim.run_dir.join("share").join(suffix);
    let point = point.to_string_lossy().into_owned();
    shim_mounts(shim)
        .lines()
        .find(|l| l.split(' ').nth(4) == Some(point.as_str()))
        .map(str::to_string)
}

async fn add_and_run(shim: &mut ShimHandle, req: AddContainerRequest) -> Output {
    let id = req.id.clone();
    if let Err(e) = shim.client.add_container(req).await {
        panic!("add container {id}: {e}\nshim log:\n{}", shim.log());
    }
    shim.client
        .start_container(ContainerRef { id: id.clone() })
        .await
        .unwrap();
    collect_output(&mut shim.client, init_of(&id)).await
}

#[tokio::test]
async fn host_directories_and_files_are_shared_read_write_or_read_only() {
    let mut shim = ShimHandle::start("vols").await;
    let info = shim.boot().await;
    let rootfs = busybox_rootfs(shim.dir.path());
    std::fs::create_dir_all(rootfs.join("var/lib/app/sub")).unwrap();
    std::fs::write(rootfs.join("var/lib/app/sub/seed"), "from the image\n").unwrap();
    std::os::unix::fs::symlink("sub/seed", rootfs.join("var/lib/app/link")).unwrap();
    std::os::unix::fs::lchown(rootfs.join("var/lib/app/sub"), Some(1000), Some(50)).unwrap();

    let host = shim.dir.path().join("host");
    let (rw, ro, empty, full) = (
        host.join("rw"),
        host.join("ro"),
        host.join("empty"),
        host.join("full"),
    );
    for d in [&rw, &ro, &empty, &full] {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::write(ro.join("given"), "read me\n").unwrap();
    std::fs::write(full.join("mine"), "kept\n").unwrap();
    let conf = host.join("app.conf");
    std::fs::write(&conf, "key=value\n").unwrap();

    let script = "echo written > /data/out; cat /ro/given; touch /ro/x; echo ro=$?; \
                  cat /etc/app.conf; echo more >> /etc/app.conf; \
                  cat /var/lib/app/sub/seed; readlink /var/lib/app/link; \
                  stat -c '%u:%g' /var/lib/app/sub; ls /full";
    let mut ro_mount = volume(&ro, "/ro");
    ro_mount.read_only = true;
    let mut populated = volume(&empty, "/var/lib/app");
    populated.populate = true;
    let mut not_populated = volume(&full, "/full");
    not_populated.populate = true;
    let req = AddContainerRequest {
        id: "c1".into(),
        rootfs: rootfs.to_string_lossy().into(),
        process: Some(process(&["sh", "-c", script])),
        mounts: vec![
            volume(&rw, "/data"),
            ro_mount,
            volume(&conf, "/etc/app.conf"),
            populated,
            not_populated,
        ],
        ..Default::default()
    };
    let out = add_and_run(&mut shim, req).await;
    // A host dir volume written by the container is seen on the host.
    assert_eq!(
        std::fs::read_to_string(rw.join("out")).unwrap(),
        "written\n"
    );

    // The host side of a read-only volume is a read-only bind too (the mounts stay until the
    // container is removed).
    let line = share_mount(&shim, "c1/volumes/1").expect("volume 1 mounted in the share");
    let options = line.split(' ').nth(5).unwrap();
    assert!(options.split(',').any(|o| o == "ro"), "{line}");
    let line = share_mount(&shim, "c1/volumes/0").expect("volume 0 mounted in the share");
    assert!(line.split(' ').nth(5).unwrap().starts_with("rw"), "{line}");
    // virtiofsd's sandbox, which serves the guest, sees the volume read-only as well.
    let virtiofsd = info
        .helper_pids
        .iter()
        .copied()
        .chain([info.vmm_pid])
        .find(|p| {
            std::fs::read_to_string(format!("/proc/{p}/comm"))
                .is_ok_and(|c| c.starts_with("virtiofsd"))
        })
        .expect("virtiofsd among the helpers");
    let theirs = std::fs::read_to_string(format!("/proc/{virtiofsd}/mountinfo")).unwrap();
    let line = theirs
        .lines()
        .find(|l| {
            l.split(' ')
                .nth(4)
                .is_some_and(|p| p.ends_with("c1/volumes/1"))
        })
        .unwrap_or_else(|| panic!("virtiofsd does not see volume 1: {theirs}"));
    assert!(
        line.split(' ')
            .nth(5)
            .unwrap()
            .split(',')
            .any(|o| o == "ro"),
        "{line}"
    );

    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        lines,
        [
            "read me",
            "ro=1",
            "key=value",
            "from the image",
            "sub/seed",
            "1000:50",
            "mine"
        ],
        "{out:?}"
    );
    assert!(out.stderr.contains("Read-only file system"), "{out:?}");
    assert!(!ro.join("x").exists());
    // The file volume is the host file itself.
    assert_eq!(std::fs::read_to_string(&conf).unwrap(), "key=value\nmore\n");
    // populate: the empty volume got the image's content, modes and owners kept; the other
    // one was left as it was.
    assert_eq!(
        std::fs::read_to_string(empty.join("sub/seed")).unwrap(),
        "from the image\n"
    );
    assert_eq!(std::fs::metadata(empty.join("sub")).unwrap().uid(), 1000);
    assert_eq!(
        std::fs::read_link(empty.join("link")).unwrap(),
        Path::new("sub/seed")
    );
    let full_entries: Vec<_> = std::fs::read_dir(&full).unwrap().flatten().collect();
    assert_eq!(full_entries.len(), 1);

    // Removing the container unmounts its volumes and removes their mount points.
    shim.client
        .remove_container(ContainerRef { id: "c1".into() })
        .await
        .unwrap();
    let share = shim.run_dir.join("share");
    assert!(
        !shim_mounts(&shim).contains(&*share.join("c1").to_string_lossy()),
        "{}",
        shim_mounts(&shim)
    );
    assert!(!share.join("c1").exists());
    assert_eq!(
        std::fs::read_to_string(ro.join("given")).unwrap(),
        "read me\n"
    );
}

#[tokio::test]
async fn volume_sources_are_checked_and_a_refused_one_leaves_nothing_mounted() {
    let mut shim = ShimHandle::start("volcheck").await;
    shim.boot().await;
    let rootfs = busybox_rootfs(shim.dir.path());
    let good = shim.dir.path().join("good");
    let real = shim.dir.path().join("real");
    std::fs::create_dir_all(&good).unwrap();
    std::fs::create_dir_all(&real).unwrap();
    // hyperd checked this path; then it was swapped for a symlink.
    let swapped = shim.dir.path().join("swapped");
    std::os::unix::fs::symlink(&real, &swapped).unwrap();
    let through = swapped.join("inner");
    std::fs::create_dir_all(real.join("inner")).unwrap();
    let add = |mounts: Vec<VolumeMount>| AddContainerRequest {
        id: "c1".into(),
        rootfs: rootfs.to_string_lossy().into(),
        process: Some(process(&["true"])),
        mounts,
        ..Default::default()
    };

    for bad in [&swapped, &through] {
        let e = shim
            .client
            .add_container(add(vec![volume(&good, "/good"), volume(bad, "/bad")]))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{e}");
        assert!(
            e.message().contains(&*bad.to_string_lossy()) && e.message().contains("symbolic link"),
            "{}",
            e.message()
        );
    }
    let missing = shim.dir.path().join("missing");
    let e = shim
        .client
        .add_container(add(vec![volume(&good, "/good"), volume(&missing, "/m")]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e}");
    assert!(
        e.message().contains(&*missing.to_string_lossy()),
        "{}",
        e.message()
    );
    let e = shim
        .client
        .add_container(add(vec![VolumeMount {
            block_serial: "nodisk".into(),
            destination: "/d".into(),
            ..Default::default()
        }]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e}");
    assert_eq!(
        e.message(),
        "mounts[0]: block_serial \"nodisk\": the VM has no such disk"
    );
    // A failure in the guest (the destination is a file in the image) undoes the host mounts.
    let e = shim
        .client
        .add_container(add(vec![
            volume(&good, "/good"),
            volume(&real, "/etc/passwd"),
        ]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e}");

    // Nothing of those stayed mounted or made in the share.
    let share = shim.run_dir.join("share");
    assert!(
        !shim_mounts(&shim).contains(&*share.join("c1").to_string_lossy()),
        "{}",
        shim_mounts(&shim)
    );
    assert!(!share.join("c1").exists());

    // And the same id works with good volumes.
    let out = add_and_run(
        &mut shim,
        AddContainerRequest {
            process: Some(process(&["sh", "-c", "echo ok > /good/f; cat /good/f"])),
            ..add(vec![volume(&good, "/good")])
        },
    )
    .await;
    assert_eq!(out.stdout, "ok\n", "{out:?}");
}

#[tokio::test]
async fn a_raw_ext4_disk_keeps_its_data_across_two_vms() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("data.raw");
    std::fs::File::create(&image)
        .unwrap()
        .set_len(32 << 20)
        .unwrap();
    run_tool(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&image));
    let blank = dir.path().join("blank.raw");
    std::fs::File::create(&blank)
        .unwrap()
        .set_len(1 << 20)
        .unwrap();
    let disk = DiskSpec {
        path: image.to_string_lossy().into(),
        format: "raw".into(),
        serial: "data".into(),
        ..Default::default()
    };
    let disk_mount = VolumeMount {
        block_serial: "data".into(),
        destination: "/data".into(),
        ..Default::default()
    };

    for (round, script) in [
        (1, "echo kept > /data/f; cat /data/f; ls /data"),
        (2, "cat /data/f; mount | grep -c ' /data '"),
    ] {
        let mut shim = ShimHandle::start(&format!("disk{round}")).await;
        let info = shim
            .boot_with(CreateVmRequest {
                disks: vec![
                    disk.clone(),
                    DiskSpec {
                        path: blank.to_string_lossy().into(),
                        serial: "blank".into(),
                        read_only: true,
                        ..disk.clone()
                    },
                ],
                ..Default::default()
            })
            .await;
        let serials: Vec<_> = info.disks.iter().map(|d| d.serial.as_str()).collect();
        assert_eq!(serials, ["data", "blank"]);
        assert_eq!(info.disks[0].cache, "writeback");
        let rootfs = busybox_rootfs(shim.dir.path());
        // Clear errors before the good mount: a disk without the filesystem, a filesystem
        // the guest kernel lacks.
        for (mount, want) in [
            (
                VolumeMount {
                    block_serial: "blank".into(),
                    ..disk_mount.clone()
                },
                "disk blank: /dev/vdb holds no ext4 filesystem",
            ),
            (
                VolumeMount {
                    fstype: "xfs".into(),
                    ..disk_mount.clone()
                },
                "disk data: fstype xfs: not supported by the guest kernel",
            ),
        ] {
            let e = shim
                .client
                .add_container(AddContainerRequest {
                    id: "c0".into(),
                    rootfs: rootfs.to_string_lossy().into(),
                    process: Some(process(&["true"])),
                    mounts: vec![mount],
                    ..Default::default()
                })
                .await
                .unwrap_err();
            assert_eq!(e.code(), Code::InvalidArgument, "{e}");
            assert_eq!(e.message(), format!("agent: {want}"));
        }
        let out = add_and_run(
            &mut shim,
            AddContainerRequest {
                id: "c1".into(),
                rootfs: rootfs.to_string_lossy().into(),
                process: Some(process(&["sh", "-c", script])),
                mounts: vec![disk_mount.clone()],
                ..Default::default()
            },
        )
        .await;
        assert_eq!(out.exit_code, 0, "round {round}: {out:?}");
        let want = if round == 1 {
            "kept\nf\nlost+found\n"
        } else {
            "kept\n1\n"
        };
        assert_eq!(out.stdout, want, "round {round}: {out:?}");
        shim.shutdown_cleanly().await;
    }

    // The same disk given read-only: its data is there, and it cannot be written.
    let mut shim = ShimHandle::start("diskro").await;
    shim.boot_with(CreateVmRequest {
        disks: vec![DiskSpec {
            read_only: true,
            ..disk.clone()
        }],
        ..Default::default()
    })
    .await;
    let rootfs = busybox_rootfs(shim.dir.path());
    let out = add_and_run(
        &mut shim,
        AddContainerRequest {
            id: "c1".into(),
            rootfs: rootfs.to_string_lossy().into(),
            process: Some(process(&["sh", "-c", "cat /data/f; touch /data/g"])),
            mounts: vec![disk_mount.clone()],
            ..Default::default()
        },
    )
    .await;
    assert_eq!(out.stdout, "kept\n", "{out:?}");
    assert!(out.stderr.contains("Read-only file system"), "{out:?}");
    shim.shutdown_cleanly().await;

    // The same filesystem as a qcow2 image, written and read back; the qcow2 names a
    // backing file, which QEMU never opens ("backing": null).
    let qcow2 = dir.path().join("data.qcow2");
    run_tool(
        Command::new("qemu-img")
            .args(["convert", "-q", "-f", "raw", "-O", "qcow2"])
            .arg(&image)
            .arg(&qcow2),
    );
    run_tool(
        Command::new("qemu-img")
            .args([
                "rebase",
                "-q",
                "-u",
                "-F",
                "raw",
                "-b",
                "/nonexistent/backing",
                "-f",
                "qcow2",
            ])
            .arg(&qcow2),
    );
    let mut shim = ShimHandle::start("diskq").await;
    shim.boot_with(CreateVmRequest {
        disks: vec![DiskSpec {
            path: qcow2.to_string_lossy().into(),
            format: "qcow2".into(),
            ..disk.clone()
        }],
        ..Default::default()
    })
    .await;
    let rootfs = busybox_rootfs(shim.dir.path());
    let out = add_and_run(
        &mut shim,
        AddContainerRequest {
            id: "c1".into(),
            rootfs: rootfs.to_string_lossy().into(),
            process: Some(process(&[
                "sh",
                "-c",
                "cat /data/f; echo q > /data/q; cat /data/q",
            ])),
            mounts: vec![disk_mount.clone()],
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        (out.exit_code, out.stdout.as_str()),
        (0, "kept\nq\n"),
        "{out:?}"
    );
    shim.shutdown_cleanly().await;

    // Bad disks are refused before anything boots.
    let mut shim = ShimHandle::start("baddisk").await;
    for (bad, want) in [
        (
            DiskSpec {
                serial: "has,comma".into(),
                ..disk.clone()
            },
            "disks[0]: serial \"has,comma\"",
        ),
        (
            DiskSpec {
                path: dir.path().join("none.raw").to_string_lossy().into(),
                ..disk.clone()
            },
            "disks[0]: path",
        ),
    ] {
        let e = shim
            .client
            .create_vm(CreateVmRequest {
                disks: vec![bad],
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert!(e.message().starts_with(want), "{}", e.message());
    }
}

#[tokio::test]
async fn options_read_only_rootfs_rlimits_sysctls_and_files() {
    let mut shim = ShimHandle::start("opts").await;
    shim.boot().await;
    let rootfs = busybox_rootfs(shim.dir.path());
    let data = shim.dir.path().join("data");
    let tmp = shim.dir.path().join("tmp");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::create_dir_all(&tmp).unwrap();
    let file = |path: &str, mode: u32, user: &str, group: &str| FileInjection {
        path: path.into(),
        content: b"s3cret".to_vec(),
        mode,
        user: user.into(),
        group: group.into(),
    };
    let options = ContainerOptions {
        read_only_rootfs: true,
        rlimits: vec![
            Rlimit {
                name: "nofile".into(),
                soft: 1000,
                hard: 2000,
            },
            Rlimit {
                name: "core".into(),
                soft: 0,
                hard: 0,
            },
        ],
        sysctls: [
            ("kernel.shmmax".to_string(), "123456789".to_string()),
            (
                "net.ipv4.ip_unprivileged_port_start".to_string(),
                "80".to_string(),
            ),
        ]
        .into(),
        files: vec![
            file("/run/secrets/key", 0o600, "1000", "1000"),
            file("/etc/app/owned", 0o640, "app", "staff"),
        ],
    };
    let script = "touch /x; echo root=$?; touch /data/y /tmp/z /dev/shm/w; echo vols=$?; \
                  echo ok > /etc/hosts; echo etc=$?; \
                  ulimit -n; ulimit -Hn; ulimit -c; \
                  cat /proc/sys/kernel/shmmax /proc/sys/net/ipv4/ip_unprivileged_port_start; \
                  stat -c '%a %u:%g' /run/secrets/key /etc/app/owned /etc/app; \
                  cat /run/secrets/key; echo; touch /tmp/done; sleep 600";
    shim.client
        .add_container(AddContainerRequest {
            id: "c1".into(),
            rootfs: rootfs.to_string_lossy().into(),
            process: Some(process(&["sh", "-c", script])),
            mounts: vec![volume(&data, "/data"), volume(&tmp, "/tmp")],
            options: Some(options.clone()),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("add container: {e}\n{}", shim.log()));
    shim.client
        .start_container(ContainerRef { id: "c1".into() })
        .await
        .unwrap();
    let mut client = shim.client.clone();
    let init = tokio::spawn(async move { collect_output(&mut client, init_of("c1")).await });

    // An exec inherits the init's rlimits.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !tmp.join("done").exists() && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    shim.client
        .exec(ExecRequest {
            container_id: "c1".into(),
            exec_id: "e1".into(),
            process: Some(process(&["sh", "-c", "ulimit -n; ulimit -c"])),
        })
        .await
        .unwrap();
    let exec = collect_output(
        &mut shim.client,
        ProcessRef {
            container_id: "c1".into(),
            exec_id: "e1".into(),
        },
    )
    .await;
    assert_eq!(exec.stdout, "1000\n0\n", "{exec:?}");

    shim.client
        .signal(hyper_proto::types::SignalRequest {
            process: Some(init_of("c1")),
            signal: 9,
        })
        .await
        .unwrap();
    let out = init.await.unwrap();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        lines,
        [
            "root=1",
            "vols=0",
            "etc=0",
            "1000",
            "2000",
            "0",
            "123456789",
            "80",
            "600 1000:1000",
            "640 1000:50",
            "755 0:0",
            "s3cret",
        ],
        "{out:?}"
    );
    assert!(out.stderr.contains("Read-only file system"), "{out:?}");
    assert!(data.join("y").exists() && tmp.join("z").exists());
    // The files were written into the container's rootfs on the host side.
    let meta = std::fs::metadata(rootfs.join("run/secrets/key")).unwrap();
    assert_eq!(meta.mode() & 0o7777, 0o600);

    // An unknown rlimit is refused, naming it.
    let e = shim
        .client
        .add_container(AddContainerRequest {
            id: "c2".into(),
            rootfs: rootfs.to_string_lossy().into(),
            process: Some(process(&["true"])),
            options: Some(ContainerOptions {
                rlimits: vec![Rlimit {
                    name: "bogus".into(),
                    soft: 1,
                    hard: 1,
                }],
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e}");
    assert!(e.message().contains("rlimit \"bogus\""), "{}", e.message());
}
