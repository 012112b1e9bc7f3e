//! Pod networking end to end through the shim: a VM whose tap joins a bridge in a network
//! namespace the test made (no traffic leaves it), the guest configured over ConfigureNetwork
//! and WriteEtcFiles, and containers that see both.

use std::process::Command;
use std::time::{Duration, Instant};

use hyper_proto::shim::{AddContainerRequest, ContainerRef, CreateVmRequest};
use hyper_proto::types::{EtcFiles, InterfaceConfig, NicSpec, PodNetwork, Process, RouteConfig};
use hyper_tests::netns::{BRIDGE, GATEWAY, NetNs};
use hyper_tests::*;
use tonic::Code;

const MAC: &str = "52:54:00:AB:CD:01";

fn nic(tap: &str) -> NicSpec {
    NicSpec {
        bridge: BRIDGE.into(),
        tap: tap.into(),
        mac: MAC.into(),
        mtu: 0,
    }
}

fn pod_network() -> PodNetwork {
    PodNetwork {
        interfaces: vec![InterfaceConfig {
            mac: MAC.into(),
            address: "192.168.77.2/24".into(),
            mtu: 0,
        }],
        routes: vec![RouteConfig {
            destination: String::new(),
            gateway: GATEWAY.into(),
        }],
    }
}

#[tokio::test]
async fn a_nic_on_a_bridge_reaches_its_gateway_and_containers_see_the_pods_etc_files() {
    let ns = NetNs::with_bridge("shim");
    let tap = "tap-hyt-net";
    let mut shim = ShimHandle::start_in_netns("net", ns.name()).await;
    let info = shim
        .boot_with(CreateVmRequest {
            nic: Some(nic(tap)),
            ..Default::default()
        })
        .await;
    assert_eq!(
        info.nic,
        Some(NicSpec {
            mac: MAC.to_lowercase(),
            mtu: 1500,
            ..nic(tap)
        }),
        "VmInfo names the NIC the VM got"
    );
    let shown = ns.ip(&["-d", "link", "show", tap]);
    assert!(
        shown.contains(&format!("master {BRIDGE}"))
            && shown.contains("mtu 1500")
            && shown.contains("hairpin on"),
        "{shown}"
    );

    // Applying the same network twice is the same as once.
    for _ in 0..2 {
        within(shim.client.configure_network(pod_network()))
            .await
            .unwrap_or_else(|e| panic!("configure network: {e}\n{}", shim.log()));
    }
    let files = EtcFiles {
        hostname: "pod-net\n".into(),
        hosts: "127.0.0.1\tlocalhost\n192.168.77.2\tpod-net\n".into(),
        resolv_conf: format!("nameserver {GATEWAY}\nsearch example.test\n"),
    };
    within(shim.client.write_etc_files(files.clone()))
        .await
        .unwrap();

    let rootfs = busybox_rootfs(shim.dir.path());
    let script = format!(
        "ping -c1 -W5 {GATEWAY} >/dev/null; echo ping=$?; \
         cat /etc/hosts /etc/resolv.conf /etc/hostname; \
         ip -4 -o addr show; ip route"
    );
    let out = within(run_container(
        &mut shim.client,
        "c1",
        &rootfs,
        process(&["sh", "-c", &script]),
    ))
    .await;
    assert_eq!(out.exit_code, 0, "{out:?}");
    let expected_files = format!("{}{}{}", files.hosts, files.resolv_conf, files.hostname);
    assert!(out.stdout.starts_with("ping=0\n"), "{out:?}");
    assert!(out.stdout.contains(&expected_files), "{out:?}");
    assert!(
        out.stdout.contains("inet 192.168.77.2/24"),
        "the NIC has the address: {out:?}"
    );
    assert!(out.stdout.contains("inet 127.0.0.1/8"), "lo is up: {out:?}");
    assert!(
        out.stdout.contains(&format!("default via {GATEWAY}")),
        "{out:?}"
    );
    // The reverse path, from the namespace's own address (traffic stays on the bridge); the
    // host has no ping of its own, busybox-static has one.
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("busybox-static is installed");
    run_tool(Command::new("ip").args([
        "netns",
        "exec",
        ns.name(),
        busybox,
        "ping",
        "-c1",
        "-W5",
        "192.168.77.2",
    ]));

    // An image without /etc gets the files too (the runtime creates the mount points).
    let bare = shim.dir.path().join("bare");
    std::fs::create_dir_all(&bare).unwrap();
    let bare_rootfs = busybox_rootfs(&bare);
    std::fs::remove_dir_all(bare_rootfs.join("etc")).unwrap();
    let out = within(run_container(
        &mut shim.client,
        "c2",
        &bare_rootfs,
        process(&["cat", "/etc/hostname", "/etc/resolv.conf"]),
    ))
    .await;
    assert_eq!(out.exit_code, 0, "{out:?}");
    assert_eq!(
        out.stdout,
        format!("{}{}", files.hostname, files.resolv_conf)
    );

    // A rewrite reaches a container that is already running (same file, new contents).
    shim.client
        .add_container(AddContainerRequest {
            id: "c3".into(),
            rootfs: rootfs.to_string_lossy().into_owned(),
            process: Some(Process {
                stdin: true,
                ..process(&["sh", "-c", "read _; cat /etc/resolv.conf"])
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    shim.client
        .start_container(ContainerRef { id: "c3".into() })
        .await
        .unwrap();
    let updated = EtcFiles {
        resolv_conf: "nameserver 192.168.77.53\n".into(),
        ..files
    };
    within(shim.client.write_etc_files(updated)).await.unwrap();
    let out = within(send_line_and_collect(&mut shim, "c3")).await;
    assert_eq!(out.stdout, "nameserver 192.168.77.53\n", "{out:?}");

    shim.shutdown_cleanly().await;
    let links = ns.links();
    assert!(
        !links.iter().any(|l| l == tap),
        "the tap went with the VM: {links:?}"
    );
}

/// Sends one line to the container's init and collects what it prints until it exits.
async fn send_line_and_collect(shim: &mut ShimHandle, id: &str) -> Output {
    use hyper_proto::types::{AttachInput, ProcessRef, attach_input};
    let target = ProcessRef {
        container_id: id.into(),
        exec_id: String::new(),
    };
    let messages = vec![
        AttachInput {
            input: Some(attach_input::Input::Open(target.clone())),
        },
        AttachInput {
            input: Some(attach_input::Input::Stdin(b"go\n".to_vec())),
        },
    ];
    let mut stream = shim
        .client
        .attach(tokio_stream::iter(messages))
        .await
        .expect("attach")
        .into_inner();
    let mut out = Output::default();
    while let Some(chunk) = stream.message().await.expect("attach stream") {
        out.stdout.push_str(&String::from_utf8_lossy(&chunk.data));
    }
    out.exit_code = shim
        .client
        .wait(target)
        .await
        .unwrap()
        .into_inner()
        .exit_code;
    out
}

/// The tap is not persistent: a shim killed with SIGKILL (its VMM dies with it) leaves no
/// device behind, with no cleanup by anyone.
#[tokio::test]
async fn a_killed_shim_leaves_no_tap() {
    let ns = NetNs::with_bridge("shim");
    let tap = "tap-hyt-kill";
    let mut shim = ShimHandle::start_in_netns("net-kill", ns.name()).await;
    shim.boot_with(CreateVmRequest {
        nic: Some(nic(tap)),
        ..Default::default()
    })
    .await;
    assert!(ns.links().iter().any(|l| l == tap), "{:?}", ns.links());
    shim.kill();
    let left = wait_no_process_mentions(shim.dir.path(), Duration::from_secs(10));
    assert_eq!(left, vec![], "the VMM and helpers died with the shim");
    let deadline = Instant::now() + Duration::from_secs(5);
    while ns.links().iter().any(|l| l == tap) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!ns.links().iter().any(|l| l == tap), "{:?}", ns.links());
}

#[tokio::test]
async fn without_a_nic_the_guest_has_only_loopback() {
    let mut shim = ShimHandle::start("no-nic").await;
    let info = shim.boot().await;
    assert_eq!(info.nic, None);
    // No interfaces: loopback only, which is not an error.
    within(shim.client.configure_network(PodNetwork::default()))
        .await
        .unwrap();
    let rootfs = busybox_rootfs(shim.dir.path());
    let out = within(run_container(
        &mut shim.client,
        "c1",
        &rootfs,
        process(&[
            "sh",
            "-c",
            "ip -o link show; ip -4 -o addr show; cat /etc/hosts",
        ]),
    ))
    .await;
    assert_eq!(out.exit_code, 0, "{out:?}");
    let links: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| l.contains("link/"))
        .filter_map(|l| l.split(':').nth(1))
        .map(str::trim)
        .collect();
    assert_eq!(links, ["lo"], "{out:?}");
    assert!(out.stdout.contains("inet 127.0.0.1/8"), "{out:?}");
    // The boot-time defaults: a container never finds the files missing.
    assert!(out.stdout.contains("127.0.0.1\tlocalhost\n"), "{out:?}");

    // A NIC the VM does not have is named.
    let e = within(shim.client.configure_network(pod_network()))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e}");
    assert!(e.message().contains("52:54:00:ab:cd:01"), "{e}");
    shim.shutdown_cleanly().await;
}

#[tokio::test]
async fn bad_nics_are_refused_before_anything_starts() {
    let ns = NetNs::with_bridge("shim");
    let mut shim = ShimHandle::start_in_netns("bad-nic", ns.name()).await;
    let create = |nic: NicSpec| CreateVmRequest {
        nic: Some(nic),
        ..Default::default()
    };
    let e = shim
        .client
        .create_vm(create(NicSpec {
            mac: "52:54:00:zz:00:01".into(),
            ..nic("tap-hyt-bad")
        }))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e}");
    assert!(e.message().contains("mac \"52:54:00:zz:00:01\""), "{e}");
    let e = shim
        .client
        .create_vm(create(NicSpec {
            tap: "a-tap-name-too-long".into(),
            ..nic("x")
        }))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e}");
    assert!(e.message().contains("tap \"a-tap-name-too-long\""), "{e}");

    let e = shim
        .client
        .create_vm(create(NicSpec {
            bridge: "br-missing".into(),
            ..nic("tap-hyt-bad")
        }))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e}");
    assert!(e.message().contains("bridge br-missing"), "{e}");
    // Nothing was left: no tap, no VMM, and the shim can still boot a VM.
    assert!(
        !ns.links().iter().any(|l| l.starts_with("tap-hyt")),
        "{:?}",
        ns.links()
    );
    let left = processes_mentioning(shim.dir.path());
    assert!(
        left.iter().all(|(pid, _)| *pid == shim.pid()),
        "only the shim runs: {left:?}"
    );
}
