//! hyper-shim end to end: a real VM under QEMU, the agent in it, containers from a busybox
//! rootfs. Driven over the shim's gRPC socket with no hyperd (the shim is its own product
//! boundary).

use std::path::Path;
use std::time::{Duration, Instant};

use hyper_proto::shim::{AddContainerRequest, ContainerRef, CreateVmRequest, VmState};
use hyper_proto::types::{ExecRequest, ProcessRef};
use hyper_tests::*;
use tonic::Code;

fn init_of(id: &str) -> ProcessRef {
    ProcessRef {
        container_id: id.into(),
        exec_id: String::new(),
    }
}

#[tokio::test]
async fn echo_hello_in_a_container() {
    let mut shim = ShimHandle::start("echo").await;
    let info = shim.boot().await;
    assert_eq!(info.state, VmState::Running as i32);
    assert_eq!(info.vmm, test_vmm());
    let rootfs = busybox_rootfs(shim.dir.path());
    let out = run_container(&mut shim.client, "c1", &rootfs, process(&["echo", "hello"])).await;
    assert_eq!(out.stdout, "hello\n");
    assert_eq!(out.stderr, "");
    assert_eq!(out.exit_code, 0);
}

#[tokio::test]
async fn stderr_and_exit_code_come_back_separately() {
    let mut shim = ShimHandle::start("stderr").await;
    shim.boot().await;
    let rootfs = busybox_rootfs(shim.dir.path());
    let out = run_container(
        &mut shim.client,
        "c1",
        &rootfs,
        process(&["sh", "-c", "echo err >&2; exit 3"]),
    )
    .await;
    assert_eq!(out.stdout, "");
    assert_eq!(out.stderr, "err\n");
    assert_eq!(out.exit_code, 3);
}

#[tokio::test]
async fn two_containers_in_one_vm_and_an_exec_into_a_running_one() {
    let mut shim = ShimHandle::start("two").await;
    shim.boot().await;
    let rootfs_a = busybox_rootfs(&shim.dir.path().join("a"));
    let rootfs_b = busybox_rootfs(&shim.dir.path().join("b"));
    std::fs::write(rootfs_a.join("etc/marker"), "I am a\n").unwrap();

    // A long-running container...
    shim.client
        .add_container(AddContainerRequest {
            id: "a".into(),
            rootfs: rootfs_a.to_string_lossy().into(),
            process: Some(process(&["sleep", "600"])),
            hostname: "host-a".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    shim.client
        .start_container(ContainerRef { id: "a".into() })
        .await
        .unwrap();

    // ...and a second one beside it, with its own rootfs and user.
    let mut whoami = process(&[
        "sh",
        "-c",
        "id -u; cat /etc/marker 2>&1; hostname; echo $GREETING $HOME; pwd",
    ]);
    whoami.user = "app".into();
    whoami.env = vec!["GREETING=hi".into()];
    whoami.cwd = "/tmp".into();
    let out = run_container(&mut shim.client, "b", &rootfs_b, whoami).await;
    assert_eq!(out.exit_code, 0, "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines[0], "1000");
    assert!(
        lines[1].contains("No such file"),
        "b must not see a's rootfs: {out:?}"
    );
    assert_eq!(lines[2], "b");
    assert_eq!(lines[3], "hi /home/app");
    assert_eq!(lines[4], "/tmp");

    // The exec joins a's namespaces: a's rootfs, hostname, and its sleep as pid 1.
    shim.client
        .exec(ExecRequest {
            container_id: "a".into(),
            exec_id: "e1".into(),
            process: Some(process(&[
                "sh",
                "-c",
                "cat /etc/marker; hostname; cat /proc/1/cmdline",
            ])),
        })
        .await
        .unwrap();
    let exec = collect_output(
        &mut shim.client,
        ProcessRef {
            container_id: "a".into(),
            exec_id: "e1".into(),
        },
    )
    .await;
    assert_eq!(exec.exit_code, 0, "{exec:?}");
    assert_eq!(exec.stdout, "I am a\nhost-a\nsleep\x00600\x00");

    // a still runs; removing it kills it.
    shim.client
        .remove_container(ContainerRef { id: "a".into() })
        .await
        .unwrap();
    shim.client
        .remove_container(ContainerRef { id: "b".into() })
        .await
        .unwrap();
    let gone = shim.client.wait(init_of("a")).await.unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);

    // Shutdown: the shim exits and takes its run dir and socket with it.
    shim.shutdown_cleanly().await;
    assert!(!shim.socket.exists(), "socket left behind");
    assert_eq!(processes_mentioning(shim.dir.path()), vec![]);
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
            s.split(") ")
                .nth(1)
                .is_some_and(|rest| rest.starts_with('Z'))
        })
}

#[tokio::test]
async fn a_killed_shim_leaves_no_vmm_or_helper_behind() {
    let mut shim = ShimHandle::start("sigkill").await;
    let info = shim.boot().await;
    let rootfs = busybox_rootfs(shim.dir.path());
    shim.client
        .add_container(AddContainerRequest {
            id: "c".into(),
            rootfs: rootfs.to_string_lossy().into(),
            process: Some(process(&["sleep", "600"])),
            ..Default::default()
        })
        .await
        .unwrap();
    shim.client
        .start_container(ContainerRef { id: "c".into() })
        .await
        .unwrap();

    let mut pids = vec![info.vmm_pid];
    pids.extend(&info.helper_pids);
    // Process names as /proc/<pid>/comm shows them (at most 15 bytes).
    let expected: &[&str] = match info.vmm.as_str() {
        "qemu" => &["qemu-system", "virtiofsd", "vhost-device"],
        _ => &["cloud-hyperviso", "virtiofsd"],
    };
    assert_eq!(pids.len(), expected.len(), "{expected:?}: {info:?}");
    assert!(pids.iter().all(|p| alive(*p)));
    let names: Vec<String> = pids
        .iter()
        .map(|p| {
            std::fs::read_to_string(format!("/proc/{p}/comm"))
                .unwrap()
                .trim()
                .to_string()
        })
        .collect();
    for want in expected {
        assert!(names.iter().any(|n| n.starts_with(want)), "{names:?}");
    }

    shim.kill();
    let deadline = Instant::now() + Duration::from_secs(10);
    while pids.iter().any(|p| alive(*p)) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let left: Vec<_> = pids.iter().filter(|p| alive(**p)).collect();
    assert!(
        left.is_empty(),
        "still running after the shim was killed: {left:?}"
    );
    assert_eq!(processes_mentioning(shim.dir.path()), vec![]);
}

#[tokio::test]
async fn bad_container_input_gets_clear_errors_and_the_vm_keeps_working() {
    let mut shim = ShimHandle::start("badinput").await;
    shim.boot().await;
    let rootfs = busybox_rootfs(shim.dir.path());
    let add = |id: &str, rootfs: &str, args: &[&str]| AddContainerRequest {
        id: id.into(),
        rootfs: rootfs.into(),
        process: Some(process(args)),
        ..Default::default()
    };

    let e = shim
        .client
        .add_container(add("c1", "/no/such/rootfs", &["true"]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert_eq!(e.message(), "rootfs /no/such/rootfs: no such directory");

    let rootfs_str = rootfs.to_string_lossy().into_owned();
    let e = shim
        .client
        .add_container(add("c1", &rootfs_str, &["nosuchcmd", "x"]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert_eq!(
        e.message(),
        "agent: nosuchcmd: executable file not found in $PATH"
    );

    let e = shim
        .client
        .add_container(add("c1", &rootfs_str, &[]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("no command"), "{}", e.message());

    let mut bad_user = process(&["true"]);
    bad_user.user = "nobody".into();
    let e = shim
        .client
        .add_container(AddContainerRequest {
            process: Some(bad_user),
            ..add("c1", &rootfs_str, &[])
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("user nobody"), "{}", e.message());

    let e = shim
        .client
        .start_container(ContainerRef { id: "ghost".into() })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert_eq!(e.message(), "agent: no such container: ghost");

    // None of that left anything half-made: the same id works now.
    let out = run_container(
        &mut shim.client,
        "c1",
        &rootfs,
        process(&["echo", "still", "fine"]),
    )
    .await;
    assert_eq!(out.stdout, "still fine\n");
    let e = shim
        .client
        .add_container(add("c1", &rootfs_str, &["true"]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e}");
}

#[tokio::test]
async fn an_agent_that_never_answers_times_out_and_leaves_nothing() {
    let mut shim = ShimHandle::start("silent").await;
    assert_silent_guest_times_out(&mut shim).await;
    // The VMM and helpers of the failed boot are gone; the shim itself still serves.
    let shim_pid = shim.pid();
    let deadline = Instant::now() + Duration::from_secs(10);
    let helpers = || {
        processes_mentioning(&shim.run_dir)
            .into_iter()
            .filter(|(pid, _)| *pid != shim_pid)
            .collect::<Vec<_>>()
    };
    while !helpers().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(helpers(), vec![]);
    let info = shim
        .client
        .info(hyper_proto::types::Empty {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.state, VmState::NotCreated as i32);
}

#[tokio::test]
async fn a_guest_that_cannot_boot_is_reported_at_once() {
    let mut shim = ShimHandle::start("panic").await;
    let garbage = shim.dir.path().join("garbage.img");
    std::fs::write(&garbage, vec![0x5a; 4096]).unwrap();
    let started = Instant::now();
    let e = shim
        .client
        .create_vm(CreateVmRequest {
            initrd: garbage.to_string_lossy().into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    // The kernel panics without a root filesystem and the VMM exits (QEMU by itself, Cloud
    // Hypervisor stopped on its reboot event): no waiting for a deadline.
    assert_eq!(e.code(), Code::Unavailable, "{e}");
    let exited = format!("{} exited", test_vmm());
    assert!(e.message().starts_with(&exited), "{}", e.message());
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn bad_vm_shapes_are_refused_before_booting() {
    let mut shim = ShimHandle::start("shape").await;
    let e = shim
        .client
        .create_vm(CreateVmRequest {
            cpus: 1000,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert_eq!(e.message(), "cpus 1000: at most 64");
    let e = shim
        .client
        .create_vm(CreateVmRequest {
            kernel: "/no/vmlinux".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert_eq!(e.message(), "kernel /no/vmlinux: no such file");
    let e = shim
        .client
        .add_container(AddContainerRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unavailable);
    assert_eq!(e.message(), "vm shape is not running");
}

#[tokio::test]
async fn an_overlay_rootfs_keeps_the_image_layer_untouched() {
    let mut shim = ShimHandle::start("overlay").await;
    shim.boot().await;
    let image = busybox_rootfs(&shim.dir.path().join("image"));
    std::fs::write(image.join("etc/motd"), "from the image\n").unwrap();
    let container = shim.dir.path().join("c1");
    let (upper, work) = (container.join("upper"), container.join("work"));
    shim.client
        .add_container(AddContainerRequest {
            id: "c1".into(),
            layers: vec![image.to_string_lossy().into()],
            upper_dir: upper.to_string_lossy().into(),
            work_dir: work.to_string_lossy().into(),
            process: Some(process(&[
                "sh",
                "-c",
                "cat /etc/motd; echo changed > /etc/motd; echo new > /new; rm /etc/group",
            ])),
            ..Default::default()
        })
        .await
        .unwrap();
    shim.client
        .start_container(ContainerRef { id: "c1".into() })
        .await
        .unwrap();
    let out = collect_output(&mut shim.client, init_of("c1")).await;
    assert_eq!(out.stdout, "from the image\n", "{out:?}");
    assert_eq!(out.exit_code, 0, "{out:?}");

    // Writes went to the container's upper dir; the image layer is as it was.
    assert_eq!(
        std::fs::read_to_string(upper.join("etc/motd")).unwrap(),
        "changed\n"
    );
    assert_eq!(std::fs::read_to_string(upper.join("new")).unwrap(), "new\n");
    assert_eq!(
        std::fs::read_to_string(image.join("etc/motd")).unwrap(),
        "from the image\n"
    );
    assert!(image.join("etc/group").exists());
    assert!(!image.join("new").exists());

    // The overlay lives in the shim's mount namespace only, never in ours.
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(&*shim.dir.path().to_string_lossy()),
        "{mounts}"
    );
    shim.client
        .remove_container(ContainerRef { id: "c1".into() })
        .await
        .unwrap();
}

#[tokio::test]
async fn resources_become_the_containers_cgroup_limits() {
    let mut shim = ShimHandle::start("cgroup").await;
    shim.boot().await;
    let rootfs = busybox_rootfs(shim.dir.path());
    shim.client
        .add_container(AddContainerRequest {
            id: "limited".into(),
            rootfs: rootfs.to_string_lossy().into(),
            process: Some(process(&[
                "sh",
                "-c",
                "cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/pids.max /sys/fs/cgroup/cpu.max",
            ])),
            resources: Some(hyper_proto::types::Resources {
                memory_bytes: 64 << 20,
                cpu_millis: 500,
                pids_limit: 32,
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    shim.client
        .start_container(ContainerRef {
            id: "limited".into(),
        })
        .await
        .unwrap();
    let out = collect_output(&mut shim.client, init_of("limited")).await;
    assert_eq!(out.stdout, "67108864\n32\n50000 100000\n", "{out:?}");
}

#[tokio::test]
async fn stdin_reaches_the_process_and_signals_end_it() {
    use hyper_proto::types::{AttachInput, SignalRequest, attach_input::Input};
    use tokio_stream::StreamExt;

    let mut shim = ShimHandle::start("stdin").await;
    shim.boot().await;
    let rootfs = busybox_rootfs(shim.dir.path());
    let mut cat = process(&["cat"]);
    cat.stdin = true;
    // A pid namespace's init ignores signals it has no handler for, as in Docker: the
    // sleeper traps SIGTERM.
    let sleeper = process(&[
        "sh",
        "-c",
        "trap 'exit 42' TERM; echo ready; while :; do sleep 1; done",
    ]);
    for (id, p) in [("cat", cat), ("sleeper", sleeper)] {
        let add = shim.client.add_container(AddContainerRequest {
            id: id.into(),
            rootfs: rootfs.to_string_lossy().into(),
            process: Some(p),
            ..Default::default()
        });
        within(add).await.unwrap();
        within(shim.client.start_container(ContainerRef { id: id.into() }))
            .await
            .unwrap();
    }

    let input = vec![
        AttachInput {
            input: Some(Input::Open(init_of("cat"))),
        },
        AttachInput {
            input: Some(Input::Stdin(b"ping\n".to_vec())),
        },
        AttachInput {
            input: Some(Input::CloseStdin(true)),
        },
    ];
    let attach = shim.client.attach(tokio_stream::iter(input));
    let mut output = within(attach).await.unwrap().into_inner();
    let mut echoed = Vec::new();
    within(async {
        while let Some(chunk) = output.next().await {
            echoed.extend(chunk.unwrap().data);
        }
    })
    .await;
    assert_eq!(echoed, b"ping\n");
    let cat_exit = within(shim.client.wait(init_of("cat"))).await.unwrap();
    assert_eq!(cat_exit.into_inner().exit_code, 0);

    let term = SignalRequest {
        process: Some(init_of("sleeper")),
        signal: libc::SIGTERM,
    };
    // Signal only once the trap is set: before that, SIGTERM would be ignored.
    let open = AttachInput {
        input: Some(Input::Open(init_of("sleeper"))),
    };
    let attach = shim.client.attach(tokio_stream::iter(vec![open]));
    let mut output = within(attach).await.unwrap().into_inner();
    let first = within(output.next()).await.unwrap().unwrap();
    assert_eq!(first.data, b"ready\n");
    within(shim.client.signal(term.clone())).await.unwrap();
    let code = within(shim.client.wait(init_of("sleeper"))).await.unwrap();
    assert_eq!(code.into_inner().exit_code, 42);
    let e = shim.client.signal(term).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e}");
}

#[tokio::test]
async fn a_vmm_that_dies_ends_its_shim_and_leaves_nothing() {
    let mut shim = ShimHandle::start("vmmdeath").await;
    let info = shim.boot().await;
    // The VMM dies under the shim (a crash, a guest panic with panic=-1, an OOM kill).
    // SAFETY: plain kill(2) of the VMM this test's shim started.
    unsafe { libc::kill(info.vmm_pid as i32, libc::SIGKILL) };
    let status = shim.wait_exit(Duration::from_secs(30)).await;
    assert!(!status.success(), "a shim whose VM died must not exit 0");
    assert!(
        shim.log().contains("the VMM exited unexpectedly"),
        "{}",
        shim.log()
    );
    assert!(!shim.run_dir.exists(), "run dir left behind");
    assert_eq!(processes_mentioning(shim.dir.path()), vec![]);
}
