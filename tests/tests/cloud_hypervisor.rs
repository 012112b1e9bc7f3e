//! Cloud Hypervisor end to end, through the shim's gRPC socket. Tests that need a real
//! `cloud-hypervisor` take it from `CLOUD_HYPERVISOR` or `PATH` and otherwise print one skip
//! line each. On a host where KVM cannot run a stock guest (the nested PVM development
//! machines) CH's API works but the guest never comes up; each test says which case it saw
//! and asserts what a user would see in that case.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hyper_proto::shim::{CreateVmRequest, VmState};
use hyper_proto::types::Empty;
use hyper_tests::*;
use tonic::Code;

/// The cloud-hypervisor binary to test with, or `None` after printing the skip line.
fn cloud_hypervisor(test: &str) -> Option<PathBuf> {
    let given = std::env::var_os("CLOUD_HYPERVISOR").filter(|v| !v.is_empty());
    let found = match &given {
        Some(p) if Path::new(p).components().count() > 1 => {
            Some(PathBuf::from(p)).filter(|p| p.is_file())
        }
        name => {
            let name = name.clone().unwrap_or_else(|| "cloud-hypervisor".into());
            std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
                .map(|d| d.join(&name))
                .find(|p| p.is_file())
        }
    };
    if found.is_none() {
        println!(
            "SKIP {test}: no cloud-hypervisor binary (set CLOUD_HYPERVISOR or put one on PATH)"
        );
    }
    found
}

fn ch_args(binary: &Path, vmm: &str) -> Vec<String> {
    vec![
        format!("--vmm={vmm}"),
        format!("--cloud-hypervisor={}", binary.display()),
    ]
}

/// Processes started for this shim's VM (everything but the shim).
fn vm_processes(shim: &ShimHandle) -> Vec<(u32, String)> {
    let shim_pid = shim.pid();
    processes_mentioning(&shim.run_dir)
        .into_iter()
        .filter(|(pid, _)| *pid != shim_pid)
        .collect()
}

async fn wait_no_vm_processes(shim: &ShimHandle) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !vm_processes(shim).is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(vm_processes(shim), vec![], "left running\n{}", shim.log());
}

/// Sockets, locks and FIFOs of a VM in the run dir (logs and the share stay until the shim
/// exits).
fn vm_files_left(run_dir: &Path) -> Vec<String> {
    [
        "api.sock",
        "api.sock.lock",
        "vsock.sock",
        "ch-events.fifo",
        "virtiofs.sock",
        "virtiofs.sock.pid",
    ]
    .into_iter()
    .filter(|f| run_dir.join(f).exists())
    .map(String::from)
    .collect()
}

async fn state(shim: &mut ShimHandle) -> i32 {
    shim.client.info(Empty {}).await.unwrap().into_inner().state
}

#[tokio::test]
async fn cloud_hypervisor_without_a_binary_is_a_clear_error() {
    let mut shim = ShimHandle::start_with(
        "ch-none",
        &ch_args(Path::new("/no/such/cloud-hypervisor"), "cloud-hypervisor"),
    )
    .await;
    let e = shim
        .client
        .create_vm(CreateVmRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{e}");
    if Path::new("/dev/kvm").exists() {
        assert_eq!(
            e.message(),
            "no cloud-hypervisor binary (/no/such/cloud-hypervisor not found; set \
             CLOUD_HYPERVISOR or --cloud-hypervisor)"
        );
    } else {
        assert_eq!(
            e.message(),
            "cloud-hypervisor needs /dev/kvm, and this host has none"
        );
    }
    assert_eq!(state(&mut shim).await, VmState::NotCreated as i32);
    assert_eq!(vm_processes(&shim), vec![]);
}

#[tokio::test]
async fn auto_without_a_binary_boots_qemu_and_says_why() {
    let mut shim = ShimHandle::start_with(
        "auto-none",
        &ch_args(Path::new("/no/such/cloud-hypervisor"), "auto"),
    )
    .await;
    let info = shim.boot().await;
    assert_eq!(info.state, VmState::Running as i32);
    assert_eq!(info.vmm, "qemu");
    assert!(
        info.vmm_reason
            .starts_with("auto: no cloud-hypervisor binary")
            || info.vmm_reason.starts_with("auto: no /dev/kvm"),
        "{}",
        info.vmm_reason
    );
    assert!(
        info.vmm_reason
            .contains(&format!("; {}: ", info.acceleration)),
        "the reason names the acceleration too: {}",
        info.vmm_reason
    );
    assert!(
        shim.log().contains("vmm chosen"),
        "the choice is logged:\n{}",
        shim.log()
    );
}

/// vm.create, vm.boot and vm.info succeed against the real binary; where the guest cannot
/// boot, the agent deadline ends the attempt and the teardown's vm.shutdown, vm.delete and
/// vmm.shutdown succeed too. The shim logs each step only when CH answered it with success.
#[tokio::test]
async fn api_calls_create_boot_info_shutdown_delete_succeed() {
    let test = "api_calls_create_boot_info_shutdown_delete_succeed";
    let Some(binary) = cloud_hypervisor(test) else {
        return;
    };
    let mut shim = ShimHandle::start_with("ch-api", &ch_args(&binary, "cloud-hypervisor")).await;
    let run_dir = shim.run_dir.clone();
    let created = shim
        .client
        .create_vm(CreateVmRequest {
            boot_timeout_ms: 15_000,
            ..Default::default()
        })
        .await;
    let log = shim.log();
    for step in [
        "cloud-hypervisor started",
        "cloud-hypervisor vm created",
        "cloud-hypervisor vm booted (vm.info: Running)",
    ] {
        assert!(log.contains(step), "no {step:?} in the shim log:\n{log}");
    }
    match created {
        Ok(info) => {
            let info = info.into_inner();
            println!("{test}: the guest booted under cloud-hypervisor (working KVM)");
            assert_eq!(info.vmm, "cloud-hypervisor");
            assert_eq!(info.acceleration, "kvm");
            assert_eq!(info.vmm_reason, "cloud-hypervisor requested");
            shim.shutdown_cleanly().await;
        }
        Err(e) => {
            println!(
                "{test}: the guest did not boot here (no working KVM): {}",
                e.message()
            );
            assert_eq!(e.code(), Code::DeadlineExceeded, "{e}");
            let log = shim.log();
            for step in [
                "cloud-hypervisor vm shut down",
                "cloud-hypervisor vm deleted",
                "cloud-hypervisor vmm shut down",
            ] {
                assert!(log.contains(step), "no {step:?} in the shim log:\n{log}");
            }
            assert!(
                !log.contains("did not exit; killing it"),
                "vmm.shutdown made it exit:\n{log}"
            );
        }
    }
    wait_no_vm_processes(&shim).await;
    assert_eq!(vm_files_left(&run_dir), Vec::<String>::new());
}

/// A VM with a NIC: the tap is cold-added with `vm.add-net` (its fd sent over the API
/// socket) between vm.create and vm.boot, and goes away with the VM whether the guest booted
/// or not.
#[tokio::test]
async fn a_nic_is_added_before_boot_and_its_tap_goes_with_the_vm() {
    use hyper_proto::types::NicSpec;
    use hyper_tests::netns::{BRIDGE, NetNs};

    let test = "a_nic_is_added_before_boot_and_its_tap_goes_with_the_vm";
    let Some(binary) = cloud_hypervisor(test) else {
        return;
    };
    let ns = NetNs::with_bridge("ch");
    let tap = "tap-hyt-ch";
    let mut shim =
        ShimHandle::start_in_netns_with("ch-nic", ns.name(), &ch_args(&binary, "cloud-hypervisor"))
            .await;
    let created = shim
        .client
        .create_vm(CreateVmRequest {
            boot_timeout_ms: 15_000,
            nic: Some(NicSpec {
                bridge: BRIDGE.into(),
                tap: tap.into(),
                mac: "52:54:00:ab:cd:02".into(),
                mtu: 0,
            }),
            ..Default::default()
        })
        .await;
    let log = shim.log();
    assert!(
        log.contains("cloud-hypervisor vm created"),
        "vm.create and vm.add-net succeed:\n{log}"
    );
    match created {
        Ok(info) => {
            println!("{test}: the guest booted under cloud-hypervisor (working KVM)");
            let nic = info.into_inner().nic.expect("VmInfo.nic");
            assert_eq!(nic.mac, "52:54:00:ab:cd:02");
            let shown = ns.ip(&["link", "show", tap]);
            assert!(shown.contains(&format!("master {BRIDGE}")), "{shown}");
            shim.shutdown_cleanly().await;
        }
        Err(e) => {
            println!(
                "{test}: the guest did not boot here (no working KVM): {}",
                e.message()
            );
            assert_eq!(e.code(), Code::DeadlineExceeded, "{e}");
        }
    }
    wait_no_vm_processes(&shim).await;
    assert!(!ns.links().iter().any(|l| l == tap), "{:?}", ns.links());
}

#[tokio::test]
async fn an_agent_that_never_answers_times_out_and_leaves_nothing() {
    let test = "an_agent_that_never_answers_times_out_and_leaves_nothing";
    let Some(binary) = cloud_hypervisor(test) else {
        return;
    };
    let mut shim = ShimHandle::start_with("ch-silent", &ch_args(&binary, "cloud-hypervisor")).await;
    assert_silent_guest_times_out(&mut shim).await;
    // No cloud-hypervisor or virtiofsd left, no socket, and the shim still serves.
    wait_no_vm_processes(&shim).await;
    assert_eq!(vm_files_left(&shim.run_dir), Vec::<String>::new());
    assert_eq!(state(&mut shim).await, VmState::NotCreated as i32);
    shim.shutdown_cleanly().await;
}

/// `--vmm auto` probes the binary once, caches the answer, and uses CH only if our guest
/// booted under it. Where it cannot (no working KVM), QEMU runs the VM and the reason says
/// why, in `VmInfo` and in the log; the probe leaves no process behind.
#[tokio::test]
async fn auto_probes_once_and_falls_back_to_qemu_with_a_reason() {
    let test = "auto_probes_once_and_falls_back_to_qemu_with_a_reason";
    let Some(binary) = cloud_hypervisor(test) else {
        return;
    };
    let cache = tempfile::tempdir().unwrap();
    let mut args = ch_args(&binary, "auto");
    args.push(format!("--cache-dir={}", cache.path().display()));

    let mut first = ShimHandle::start_with("auto-1", &args).await;
    let info = first.boot().await;
    assert_eq!(info.state, VmState::Running as i32);
    assert!(
        first
            .log()
            .contains("probing cloud-hypervisor with a guest boot"),
        "{}",
        first.log()
    );
    let probe_dir = first.run_dir.join("probe");
    assert!(!probe_dir.exists(), "probe scratch left behind");
    assert_eq!(processes_mentioning(&probe_dir), vec![]);
    match info.vmm.as_str() {
        "qemu" => {
            println!("{test}: the probe failed here: {}", info.vmm_reason);
            assert!(
                info.vmm_reason.contains("failed its boot probe")
                    && info.vmm_reason.contains("falling back to qemu"),
                "{}",
                info.vmm_reason
            );
            assert!(
                first.log().contains("falling back to qemu"),
                "the reason is logged:\n{}",
                first.log()
            );
        }
        "cloud-hypervisor" => {
            println!("{test}: the probe booted the guest: {}", info.vmm_reason);
            assert!(
                info.vmm_reason.contains("booted our guest in a boot probe"),
                "{}",
                info.vmm_reason
            );
        }
        other => panic!("vmm {other:?}"),
    }
    let cached = std::fs::read_to_string(cache.path().join("vmm-probe.json")).unwrap();
    assert!(cached.contains("\"booted\""), "{cached}");
    drop(first);

    // A second VM on the same host and binary reuses the answer instead of probing again.
    let mut second = ShimHandle::start_with("auto-2", &args).await;
    let again = second.boot().await;
    assert_eq!(again.vmm, info.vmm);
    assert!(
        again.vmm_reason.contains("cached boot probe"),
        "{}",
        again.vmm_reason
    );
    assert!(!second.log().contains("probing cloud-hypervisor"));
}

/// Asks the shim's CH for `vm.reboot` behind the shim's back, as a guest reset would.
async fn reboot_behind_the_shims_back(api_socket: &Path) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::UnixStream::connect(api_socket).await.unwrap();
    s.write_all(b"PUT /api/v1/vm.reboot HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n")
        .await
        .unwrap();
    let mut head = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut head))
        .await
        .unwrap()
        .unwrap();
    String::from_utf8_lossy(&head[..n])
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// A guest reset (our guests reset on a kernel panic) makes CH reboot the VM in place; the
/// event monitor turns that into a dead VMM at once, with the cause in the error.
#[tokio::test]
async fn a_guest_reboot_marks_the_vm_dead_at_once() {
    let test = "a_guest_reboot_marks_the_vm_dead_at_once";
    let Some(binary) = cloud_hypervisor(test) else {
        return;
    };
    let mut shim = ShimHandle::start_with("ch-reboot", &ch_args(&binary, "cloud-hypervisor")).await;
    let mut client = shim.client.clone();
    let create = tokio::spawn(async move {
        client
            .create_vm(CreateVmRequest {
                boot_timeout_ms: 60_000,
                ..Default::default()
            })
            .await
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    while !shim.log().contains("cloud-hypervisor vm booted") {
        assert!(Instant::now() < deadline, "no boot:\n{}", shim.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let booted_already = create.is_finished();
    let answer = reboot_behind_the_shims_back(&shim.run_dir.join("api.sock")).await;
    // CH may be killed on its "rebooting" event before it answers.
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 204"),
        "vm.reboot: {answer}"
    );
    let rebooted = Instant::now();
    if booted_already {
        println!("{test}: the guest had booted; the reboot came after");
        create.await.unwrap().unwrap();
        while state(&mut shim).await != VmState::Stopped as i32 {
            assert!(
                rebooted.elapsed() < Duration::from_secs(10),
                "{}",
                shim.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    } else {
        println!("{test}: the reboot came while the shim waited for the agent");
        let e = create.await.unwrap().unwrap_err();
        assert_eq!(e.code(), Code::Unavailable, "{e}");
        assert!(
            e.message().starts_with("cloud-hypervisor exited")
                && e.message().contains(
                    "the guest rebooted (kernel panic or reset); cloud-hypervisor stopped"
                ),
            "{}",
            e.message()
        );
        assert_eq!(state(&mut shim).await, VmState::NotCreated as i32);
    }
    assert!(
        rebooted.elapsed() < Duration::from_secs(10),
        "noticed after {:?}",
        rebooted.elapsed()
    );
    wait_no_vm_processes(&shim).await;
    assert_eq!(vm_files_left(&shim.run_dir), Vec::<String>::new());
}
