//! hyperd can die and come back without its pods noticing; a pod whose VM dies is `failed`,
//! never silently gone, and leaves nothing running.

use std::time::Duration;

use hyper_tests::daemon::TestDaemon;
use hyper_tests::{processes_mentioning, wait_no_process_mentions};

fn status_of(d: &TestDaemon, pod: &str) -> String {
    d.list("pod")
        .into_iter()
        .find(|row| row[0] == pod)
        .and_then(|row| row.last().cloned())
        .unwrap_or_else(|| panic!("pod {pod} is not listed"))
}

#[test]
fn pods_survive_a_killed_hyperd_and_a_dead_shim_fails_only_its_pod() {
    let mut d = TestDaemon::start();
    d.import_busybox();
    d.ok(&["run", "-d", "--name", "one", "busybox", "sleep", "600"]);
    d.ok(&["run", "-d", "--name", "two", "busybox", "sleep", "600"]);
    let vm_of = |d: &TestDaemon, pod: &str| {
        d.list("pod")
            .into_iter()
            .find(|r| r[0] == pod)
            .map(|r| r[2].clone())
            .unwrap()
    };
    let (vm_one, vm_two) = (vm_of(&d, "one"), vm_of(&d, "two"));

    // SIGKILL hyperd: the pods run on; a new hyperd on the same root re-adopts them.
    d.kill9();
    assert!(!processes_mentioning(&d.run_dir.join("vms").join(&vm_one)).is_empty());
    d.restart();
    assert_eq!(status_of(&d, "one"), "running");
    assert_eq!(status_of(&d, "two"), "running");
    for pod in ["one", "two"] {
        let out = d.hyperctl(&["exec", pod, "hostname"]);
        assert_eq!(
            (out.stdout.trim(), out.code),
            (pod, 0),
            "{out:?}\n{}",
            d.log()
        );
    }

    // SIGTERM stops hyperd cleanly and leaves the pods running too.
    assert!(d.terminate().success(), "{}", d.log());
    assert!(!processes_mentioning(&d.run_dir.join("vms").join(&vm_two)).is_empty());
    d.restart();
    assert_eq!(status_of(&d, "one"), "running");
    assert_eq!(status_of(&d, "two"), "running");

    // SIGKILL one pod's shim: that pod fails, its VM's processes are gone, the other runs on.
    let shim_socket = format!(
        "--socket={}",
        d.run_dir
            .join("vms")
            .join(format!("{vm_one}.sock"))
            .display()
    );
    let shim: Vec<u32> = processes_mentioning(&d.run_dir.join("vms").join(&vm_one))
        .into_iter()
        .filter(|(_, cmd)| cmd.contains("hyper-shim") && cmd.contains(&shim_socket))
        .map(|(pid, _)| pid)
        .collect();
    assert_eq!(shim.len(), 1, "one shim for {vm_one}");
    // SAFETY: plain kill(2) of the shim this test's daemon started.
    unsafe { libc::kill(shim[0] as i32, libc::SIGKILL) };
    d.wait_until(Duration::from_secs(20), "pod one to fail", || {
        status_of(&d, "one") == "failed"
    });
    let left = wait_no_process_mentions(
        &d.run_dir.join("vms").join(&vm_one),
        Duration::from_secs(15),
    );
    assert_eq!(left, vec![], "processes of the dead vm");
    assert_eq!(status_of(&d, "two"), "running");
    let vms = d.list("vm");
    assert!(
        vms.contains(&vec![vm_one.clone(), "one".into(), "failed".into()]),
        "{vms:?}"
    );
    assert!(
        vms.contains(&vec![vm_two.clone(), "two".into(), "associated".into()]),
        "{vms:?}"
    );
    let out = d.hyperctl(&["exec", "two", "echo", "still here"]);
    assert_eq!(
        (out.stdout.as_str(), out.code),
        ("still here\n", 0),
        "{out:?}"
    );
    let out = d.hyperctl(&["exec", "one", "true"]);
    assert_ne!(out.code, 0, "exec into a failed pod: {out:?}");

    // The failed pod can be removed, and nothing of its VM is left.
    d.ok(&["rm", "one"]);
    assert!(!d.run_dir.join("vms").join(&vm_one).exists());
    assert!(
        !d.run_dir
            .join("vms")
            .join(format!("{vm_one}.sock"))
            .exists()
    );
    assert_eq!(d.list("pod").len(), 1);

    // A restart with the shim already gone marks the pod failed too.
    d.kill9();
    let shim_two = format!(
        "--socket={}",
        d.run_dir
            .join("vms")
            .join(format!("{vm_two}.sock"))
            .display()
    );
    for (pid, cmd) in processes_mentioning(&d.run_dir.join("vms").join(&vm_two)) {
        if cmd.contains("hyper-shim") && cmd.contains(&shim_two) {
            // SAFETY: as above.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
    }
    wait_no_process_mentions(
        &d.run_dir.join("vms").join(&vm_two),
        Duration::from_secs(15),
    );
    d.restart();
    assert_eq!(status_of(&d, "two"), "failed");
    d.ok(&["rm", "two"]);
    assert!(d.list("pod").is_empty());
}

#[test]
fn a_pod_whose_vmm_crashes_is_failed_at_once() {
    let d = TestDaemon::start();
    d.import_busybox();
    d.ok(&["run", "-d", "--name", "crash", "busybox", "sleep", "600"]);
    let vm = d
        .list("pod")
        .into_iter()
        .find(|r| r[0] == "crash")
        .map(|r| r[2].clone())
        .unwrap();
    // The VMM dies while its shim lives (a guest panic with panic=-1, an OOM kill, a crash).
    let vmm: Vec<u32> = processes_mentioning(&d.run_dir.join("vms").join(&vm))
        .into_iter()
        .filter(|(_, cmd)| cmd.contains("qemu-system") || cmd.contains("cloud-hypervisor "))
        .map(|(pid, _)| pid)
        .collect();
    assert_eq!(vmm.len(), 1, "one VMM for {vm}");
    // SAFETY: plain kill(2) of the VMM this test's daemon started.
    unsafe { libc::kill(vmm[0] as i32, libc::SIGKILL) };
    d.wait_until(Duration::from_secs(20), "the pod to fail", || {
        status_of(&d, "crash") == "failed"
    });
    let left = wait_no_process_mentions(&d.run_dir.join("vms").join(&vm), Duration::from_secs(15));
    assert_eq!(left, vec![], "processes of the dead vm");
    let out = d.hyperctl(&["exec", "crash", "true"]);
    assert_ne!(out.code, 0, "exec into a failed pod: {out:?}");
    d.ok(&["rm", "crash"]);
}
