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

    // The exec joins a's namespaces: a's rootfs, hostname, and its sleep as the first child
    // of the container's init (pid 1, which forwards signals and reaps, as `docker --init`).
    shim.client
        .exec(ExecRequest {
            container_id: "a".into(),
            exec_id: "e1".into(),
            process: Some(process(&[
                "sh",
                "-c",
                "cat /etc/marker; hostname; cat /proc/2/cmdline",
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
    let rootfs = busybox_rootfs(shim.dir.path());
    start_container(&mut shim, "c", &rootfs, process(&["sleep", "600"])).await;
    let mut client = shim.client.clone();
    let waiting = tokio::spawn(async move { client.wait(init_of("c")).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The VMM dies under the shim (a crash, a guest panic with panic=-1, an OOM kill).
    // SAFETY: plain kill(2) of the VMM this test's shim started.
    unsafe { libc::kill(info.vmm_pid as i32, libc::SIGKILL) };
    // A Wait in progress says the VM died: the process's status is lost, not 0.
    let e = within(waiting).await.unwrap().unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{e}");
    assert!(
        e.message().starts_with("vm vmmdeath: the VMM exited (")
            && e.message().ends_with(") while the process ran"),
        "{e}"
    );
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

// ---- live containers: attach by sequence, exit codes, cwd, TTY, execvm, stats, pause ----

fn exec_ref(container: &str, exec: &str) -> ProcessRef {
    ProcessRef {
        container_id: container.into(),
        exec_id: exec.into(),
    }
}

/// Adds and starts a container from `rootfs`.
async fn start_container(
    shim: &mut ShimHandle,
    id: &str,
    rootfs: &Path,
    p: hyper_proto::types::Process,
) {
    within(shim.client.add_container(AddContainerRequest {
        id: id.into(),
        rootfs: rootfs.to_string_lossy().into(),
        process: Some(p),
        ..Default::default()
    }))
    .await
    .unwrap();
    within(shim.client.start_container(ContainerRef { id: id.into() }))
        .await
        .unwrap();
}

async fn exec_in(
    shim: &mut ShimHandle,
    container: &str,
    exec: &str,
    p: hyper_proto::types::Process,
) -> Result<(), tonic::Status> {
    within(shim.client.exec(ExecRequest {
        container_id: container.into(),
        exec_id: exec.into(),
        process: Some(p),
    }))
    .await
    .map(|_| ())
}

/// Every chunk of a process's output from `from_seq` on, until it ends.
async fn chunks_from(
    shim: &mut ShimHandle,
    target: ProcessRef,
    from_seq: u64,
) -> Vec<hyper_proto::types::AttachOutput> {
    use hyper_proto::types::{AttachFrom, AttachInput, attach_input::Input};
    use tokio_stream::StreamExt;
    let first = AttachInput {
        input: Some(Input::Resume(AttachFrom {
            process: Some(target),
            from_seq,
        })),
    };
    let mut stream = within(shim.client.attach(tokio_stream::iter(vec![first])))
        .await
        .unwrap()
        .into_inner();
    let mut chunks = Vec::new();
    within(async {
        while let Some(c) = stream.next().await {
            chunks.push(c.unwrap());
        }
    })
    .await;
    chunks
}

#[tokio::test]
async fn attach_resumes_by_sequence_number_and_dropped_output_shows_as_a_gap() {
    let mut shim = ShimHandle::start("seq").await;
    shim.boot().await;
    let rootfs = busybox_rootfs(shim.dir.path());
    // Output in separate writes, so separate chunks.
    let lines = process(&[
        "sh",
        "-c",
        "for i in 0 1 2 3 4 5; do echo line$i; sleep 0.2; done",
    ]);
    let out = run_container(&mut shim.client, "lines", &rootfs, lines).await;
    assert_eq!(out.exit_code, 0, "{out:?}");
    let all = chunks_from(&mut shim, init_of("lines"), 0).await;
    let seqs: Vec<u64> = all.iter().map(|c| c.seq).collect();
    assert_eq!(seqs, (0..all.len() as u64).collect::<Vec<_>>());
    assert!(all.len() >= 3, "{all:?}");
    let text = |cs: &[hyper_proto::types::AttachOutput]| {
        cs.iter()
            .flat_map(|c| c.data.clone())
            .map(char::from)
            .collect::<String>()
    };
    assert_eq!(text(&all), out.stdout);

    // A reader that recorded chunks 0 and 1 resumes at 2 and gets exactly the rest.
    let rest = chunks_from(&mut shim, init_of("lines"), 2).await;
    assert_eq!(rest, all[2..].to_vec());
    assert!(
        chunks_from(&mut shim, init_of("lines"), all.len() as u64)
            .await
            .is_empty()
    );

    // 6 MiB through a 4 MiB buffer: the oldest chunks are gone, and the first kept chunk's
    // sequence number says how many.
    let flood = process(&["sh", "-c", "head -c 6291456 /dev/zero; echo end"]);
    let out = run_container(&mut shim.client, "flood", &rootfs, flood).await;
    assert_eq!(out.exit_code, 0);
    let kept = chunks_from(&mut shim, init_of("flood"), 0).await;
    let first = kept[0].seq;
    assert!(first > 0, "nothing was dropped from 6 MiB");
    let seqs: Vec<u64> = kept.iter().map(|c| c.seq).collect();
    assert_eq!(seqs, (first..first + kept.len() as u64).collect::<Vec<_>>());
    let bytes: usize = kept.iter().map(|c| c.data.len()).sum();
    assert!(bytes <= (4 << 20) + (64 << 10), "kept {bytes} bytes");
    assert!(kept.last().unwrap().data.ends_with(b"end\n"));
}

#[tokio::test]
async fn exit_codes_are_dockers_and_a_missing_workdir_is_created() {
    let mut shim = ShimHandle::start("exitcodes").await;
    shim.boot().await;
    let rootfs = busybox_rootfs(shim.dir.path());

    // A container's init killed by a signal: 128 + N, not 0.
    let out = run_container(
        &mut shim.client,
        "killed",
        &rootfs,
        process(&["sh", "-c", "kill -9 $$"]),
    )
    .await;
    assert_eq!(out.exit_code, 137, "{out:?}");
    let out = run_container(
        &mut shim.client,
        "exit42",
        &rootfs,
        process(&["sh", "-c", "exit 42"]),
    )
    .await;
    assert_eq!(out.exit_code, 42, "{out:?}");

    // Not found and not executable: the container starts, ends with 127 / 126, and says why
    // on its stderr.
    let out = run_container(
        &mut shim.client,
        "notfound",
        &rootfs,
        process(&["nosuchcmd", "x"]),
    )
    .await;
    assert_eq!(out.exit_code, 127, "{out:?}");
    assert_eq!(
        out.stderr,
        "nosuchcmd: executable file not found in $PATH\n"
    );
    let out = run_container(
        &mut shim.client,
        "notexec",
        &rootfs,
        process(&["/etc/passwd"]),
    )
    .await;
    assert_eq!(out.exit_code, 126, "{out:?}");
    assert!(out.stderr.starts_with("/etc/passwd: "), "{out:?}");

    // The same for execs into a running container.
    start_container(&mut shim, "live", &rootfs, process(&["sleep", "600"])).await;
    let cases: [(&str, &[&str], i32); 4] = [
        ("kill", &["sh", "-c", "kill -9 $$"], 137),
        ("missing", &["/no/such/binary"], 127),
        ("passwd", &["/etc/passwd"], 126),
        ("three", &["sh", "-c", "exit 3"], 3),
    ];
    for (id, args, want) in cases {
        exec_in(&mut shim, "live", id, process(args)).await.unwrap();
        let out = collect_output(&mut shim.client, exec_ref("live", id)).await;
        assert_eq!(out.exit_code, want, "{id}: {out:?}");
        if (126..=127).contains(&want) {
            assert!(out.stderr.contains(args[0]), "{id}: {out:?}");
        }
    }

    // SIGKILL from outside: 137 for the whole container.
    within(shim.client.signal(hyper_proto::types::SignalRequest {
        process: Some(init_of("live")),
        signal: libc::SIGKILL,
    }))
    .await
    .unwrap();
    let code = within(shim.client.wait(init_of("live"))).await.unwrap();
    assert_eq!(code.into_inner().exit_code, 137);

    // A working directory missing from the image is created, owned by the user.
    let mut pwd = process(&["pwd"]);
    pwd.cwd = "/does/not/exist".into();
    pwd.user = "app".into();
    let out = run_container(&mut shim.client, "cwd", &rootfs, pwd).await;
    assert_eq!(
        (out.stdout.as_str(), out.exit_code),
        ("/does/not/exist\n", 0)
    );
    use std::os::unix::fs::MetadataExt;
    let made = std::fs::metadata(rootfs.join("does/not/exist")).unwrap();
    assert_eq!((made.uid(), made.gid()), (1000, 1000));
}

/// Output of a terminal session, read in the background.
struct Terminal {
    stdin: tokio::sync::mpsc::Sender<hyper_proto::types::AttachInput>,
    seen: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
}

impl Terminal {
    async fn open(shim: &mut ShimHandle, target: ProcessRef) -> Self {
        use hyper_proto::types::{AttachInput, OutputStream, attach_input::Input};
        use tokio_stream::StreamExt;
        let (stdin, rx) = tokio::sync::mpsc::channel(16);
        stdin
            .send(AttachInput {
                input: Some(Input::Open(target)),
            })
            .await
            .unwrap();
        let input = tokio_stream::wrappers::ReceiverStream::new(rx);
        let mut output = within(shim.client.attach(input))
            .await
            .unwrap()
            .into_inner();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = seen.clone();
        tokio::spawn(async move {
            while let Some(Ok(chunk)) = output.next().await {
                // A terminal merges stdout and stderr into one stream.
                assert_eq!(chunk.stream, OutputStream::Stdout as i32);
                sink.lock().unwrap().extend(chunk.data);
            }
        });
        Self { stdin, seen }
    }

    async fn type_in(&self, text: &[u8]) {
        use hyper_proto::types::{AttachInput, attach_input::Input};
        self.stdin
            .send(AttachInput {
                input: Some(Input::Stdin(text.to_vec())),
            })
            .await
            .unwrap();
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.seen.lock().unwrap()).into_owned()
    }

    /// Waits until the output contains `what`, counted after `from` bytes.
    async fn expect(&self, from: usize, what: &str) -> usize {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let text = self.text();
            if let Some(at) = text.get(from..).and_then(|t| t.find(what)) {
                return from + at + what.len();
            }
            assert!(
                Instant::now() < deadline,
                "no {what:?} in terminal output: {text:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test]
async fn a_terminal_has_job_control_a_window_size_and_ctrl_c() {
    use hyper_proto::types::ResizeRequest;
    let mut shim = ShimHandle::start("tty").await;
    shim.boot().await;
    let rootfs = busybox_rootfs(shim.dir.path());
    let mut sh = process(&["sh"]);
    sh.terminal = true;
    sh.stdin = true;
    start_container(&mut shim, "tty", &rootfs, sh).await;
    let resize = |target: ProcessRef, rows, cols| ResizeRequest {
        process: Some(target),
        rows,
        cols,
    };
    within(shim.client.resize(resize(init_of("tty"), 30, 100)))
        .await
        .unwrap();
    let term = Terminal::open(&mut shim, init_of("tty")).await;

    // The shell is a session leader on its terminal; stderr comes through the terminal too.
    term.type_in(b"stty size; read a b c d e sid r < /proc/$$/stat; [ $sid = $$ ] && echo leader-$((1+1)); echo oops >&2\n")
        .await;
    let at = term.expect(0, "30 100").await;
    let at = term.expect(at, "leader-2").await;
    let at = term.expect(at, "oops").await;
    // Its terminal is one of the container's own, so `tty` names it (as with runc).
    term.type_in(b"t=$(tty) && test -e $t && echo tty-ok-$t\n")
        .await;
    let at = term.expect(at, "tty-ok-/dev/pts/").await;

    // Ctrl-C interrupts the foreground job, not the shell.
    term.type_in(b"sleep 600\n").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    term.type_in(b"\x03").await;
    term.type_in(b"echo alive-$?\n").await;
    let at = term.expect(at, "alive-130").await;

    // A resize while it runs is what the next `stty size` sees.
    within(shim.client.resize(resize(init_of("tty"), 12, 34)))
        .await
        .unwrap();
    term.type_in(b"stty size\n").await;
    term.expect(at, "12 34").await;

    // An exec with its own terminal.
    let mut exec = process(&[
        "sh",
        "-c",
        "read x; stty size; [ -t 1 ] && echo on-a-tty; t=$(tty) && test -e $t && echo tty-ok-$t",
    ]);
    exec.terminal = true;
    exec_in(&mut shim, "tty", "e1", exec).await.unwrap();
    within(shim.client.resize(resize(exec_ref("tty", "e1"), 20, 50)))
        .await
        .unwrap();
    let exec_term = Terminal::open(&mut shim, exec_ref("tty", "e1")).await;
    exec_term.type_in(b"\n").await;
    let at = exec_term.expect(0, "20 50").await;
    let at = exec_term.expect(at, "on-a-tty").await;
    exec_term.expect(at, "tty-ok-/dev/pts/").await;
    let code = within(shim.client.wait(exec_ref("tty", "e1")))
        .await
        .unwrap();
    assert_eq!(code.into_inner().exit_code, 0);

    term.type_in(b"exit 3\n").await;
    let code = within(shim.client.wait(init_of("tty"))).await.unwrap();
    assert_eq!(code.into_inner().exit_code, 3);

    // Resizing what does not exist, or what has no terminal.
    let e = shim
        .client
        .resize(resize(exec_ref("tty", "ghost"), 10, 10))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e}");
    assert_eq!(e.message(), "agent: no such exec: ghost");
    start_container(&mut shim, "plain", &rootfs, process(&["sleep", "600"])).await;
    let e = shim
        .client
        .resize(resize(init_of("plain"), 10, 10))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e}");
    assert!(e.message().ends_with("has no terminal to resize"), "{e}");
}

#[tokio::test]
async fn execvm_runs_in_the_vm_outside_every_container() {
    let mut shim = ShimHandle::start("execvm").await;
    shim.boot().await;
    let rootfs = busybox_rootfs(shim.dir.path());
    start_container(&mut shim, "c1", &rootfs, process(&["sleep", "600"])).await;
    // The VM's own busybox on the default PATH, not the container's rootfs (which has an
    // /etc/passwd).
    let script = "cat /proc/1/comm; echo $PATH; cat /proc/self/cgroup; ls /run/hyper; \
                  [ -e /etc/passwd ] || echo no-passwd";
    exec_in(&mut shim, "", "vm1", process(&["sh", "-c", script]))
        .await
        .unwrap();
    let out = collect_output(&mut shim.client, exec_ref("", "vm1")).await;
    assert_eq!(out.exit_code, 0, "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        lines[0], "init",
        "pid 1 of its pid namespace is the agent: {out:?}"
    );
    assert_eq!(
        lines[1],
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    );
    assert_eq!(
        lines[2], "0::/",
        "outside every container's cgroup: {out:?}"
    );
    assert!(lines.contains(&"no-passwd"), "{out:?}");
    assert!(out.stdout.contains("share"), "{out:?}");

    // Signals and exit codes as for any process; a missing command ends with 127.
    exec_in(&mut shim, "", "sleeper", process(&["sleep", "600"]))
        .await
        .unwrap();
    within(shim.client.signal(hyper_proto::types::SignalRequest {
        process: Some(exec_ref("", "sleeper")),
        signal: libc::SIGKILL,
    }))
    .await
    .unwrap();
    let code = within(shim.client.wait(exec_ref("", "sleeper")))
        .await
        .unwrap();
    assert_eq!(code.into_inner().exit_code, 137);
    exec_in(&mut shim, "", "missing", process(&["nosuchcmd"]))
        .await
        .unwrap();
    let out = collect_output(&mut shim.client, exec_ref("", "missing")).await;
    assert_eq!(out.exit_code, 127);
    assert_eq!(
        out.stderr,
        "nosuchcmd: executable file not found in $PATH\n"
    );
    let e = exec_in(&mut shim, "", "missing", process(&["true"]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e}");
    let e = shim.client.wait(exec_ref("", "ghost")).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e}");
}

#[tokio::test]
async fn stats_of_a_busy_container_grow() {
    let mut shim = ShimHandle::start("stats").await;
    shim.boot().await;
    let rootfs = busybox_rootfs(shim.dir.path());
    start_container(
        &mut shim,
        "busy",
        &rootfs,
        process(&["sh", "-c", "while :; do :; done"]),
    )
    .await;
    let stats = |shim: &mut ShimHandle| {
        let mut client = shim.client.clone();
        async move {
            within(client.stats(ContainerRef { id: "busy".into() }))
                .await
                .unwrap()
                .into_inner()
        }
    };
    let before = stats(&mut shim).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = stats(&mut shim).await;
    assert!(
        after.cpu_usage_ns > before.cpu_usage_ns + 100_000_000,
        "{before:?} -> {after:?}"
    );
    assert!(after.system_cpu_ns > before.system_cpu_ns);
    assert!(after.memory_usage_bytes > 0, "{after:?}");
    assert!(after.memory_limit_bytes > 0, "{after:?}");
    assert!(after.pids_current >= 2, "init and the shell: {after:?}");
    assert_eq!(after.online_cpus, 1);
    let e = shim
        .client
        .stats(ContainerRef { id: "ghost".into() })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e}");
    assert_eq!(e.message(), "agent: no such container: ghost");
}

#[tokio::test]
async fn pause_freezes_the_vm_and_resume_thaws_it() {
    use hyper_proto::types::Empty;
    use tokio_stream::StreamExt;
    let mut shim = ShimHandle::start("pause").await;
    shim.boot().await;
    let rootfs = busybox_rootfs(shim.dir.path());
    let counter = process(&[
        "sh",
        "-c",
        "i=0; while :; do i=$((i+1)); echo $i; sleep 0.1; done",
    ]);
    start_container(&mut shim, "counter", &rootfs, counter).await;
    let open = hyper_proto::types::AttachInput {
        input: Some(hyper_proto::types::attach_input::Input::Open(init_of(
            "counter",
        ))),
    };
    let mut output = within(shim.client.attach(tokio_stream::iter(vec![open])))
        .await
        .unwrap()
        .into_inner();
    let last = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let sink = last.clone();
    tokio::spawn(async move {
        while let Some(Ok(chunk)) = output.next().await {
            let text = String::from_utf8_lossy(&chunk.data).into_owned();
            if let Some(n) = text.lines().filter_map(|l| l.parse().ok()).next_back() {
                sink.store(n, std::sync::atomic::Ordering::SeqCst);
            }
        }
    });
    let value = || last.load(std::sync::atomic::Ordering::SeqCst);
    let advancing = |from: u64| async move {
        let deadline = Instant::now() + Duration::from_secs(30);
        while value() <= from + 3 {
            assert!(
                Instant::now() < deadline,
                "the counter is stuck at {}",
                value()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    advancing(0).await;

    within(shim.client.pause_vm(Empty {})).await.unwrap();
    within(shim.client.pause_vm(Empty {})).await.unwrap();
    let info = within(shim.client.info(Empty {}))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.state, VmState::Paused as i32);
    // Let what was already on its way arrive, then watch the counter stand still.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let frozen = value();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(value(), frozen, "the counter advanced while paused");

    // Calls that need the guest fail at once instead of hanging.
    let started = Instant::now();
    let e = exec_in(&mut shim, "counter", "e1", process(&["true"]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e}");
    assert_eq!(e.message(), "vm pause is paused");
    let e = shim.client.wait(init_of("counter")).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e}");
    assert!(started.elapsed() < Duration::from_secs(2));

    within(shim.client.resume_vm(Empty {})).await.unwrap();
    within(shim.client.resume_vm(Empty {})).await.unwrap();
    let info = within(shim.client.info(Empty {}))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.state, VmState::Running as i32);
    advancing(frozen).await;

    // A paused VM still shuts down cleanly.
    within(shim.client.pause_vm(Empty {})).await.unwrap();
    shim.shutdown_cleanly().await;
    assert!(!shim.socket.exists(), "socket left behind");
    assert_eq!(processes_mentioning(shim.dir.path()), vec![]);
}
