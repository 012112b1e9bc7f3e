//! Pods through hyperctl, as a user runs them: output and exit codes, pre-booted VMs, and
//! removal that leaves nothing behind.

use std::time::Duration;

use hyper_tests::daemon::TestDaemon;
use hyper_tests::processes_mentioning;

#[test]
fn run_prints_the_output_and_propagates_the_exit_code() {
    let d = TestDaemon::start();
    d.import_busybox();

    let out = d.hyperctl(&["run", "busybox", "echo", "hello"]);
    assert_eq!(
        (out.stdout.as_str(), out.code),
        ("hello\n", 0),
        "{out:?}\n{}",
        d.log()
    );

    let out = d.hyperctl(&[
        "run",
        "--rm",
        "busybox",
        "sh",
        "-c",
        "echo oops >&2; exit 7",
    ]);
    assert_eq!(out.code, 7, "{out:?}\n{}", d.log());
    assert_eq!(out.stderr, "oops\n");

    // The first pod stays (stopped once its container exited), the --rm one is gone.
    d.wait_until(Duration::from_secs(30), "the finished pod to stop", || {
        d.list("pod")
            .iter()
            .all(|row| row.last().map(String::as_str) == Some("stopped"))
    });
    assert_eq!(d.list("pod").len(), 1);
    let containers = d.list("container");
    assert_eq!(containers[0][3], "succeeded", "{containers:?}");

    // A pod file works the same way.
    let pod = d.dir.path().join("pod.json");
    std::fs::write(
        &pod,
        r#"{"id":"fromfile","containers":[{"image":"busybox","command":["sh","-c","echo $GREETING from $(hostname)"],"envs":[{"env":"GREETING","value":"hi"}]}]}"#,
    )
    .unwrap();
    let out = d.hyperctl(&["run", "--rm", "--podfile", pod.to_str().unwrap()]);
    assert_eq!(
        (out.stdout.as_str(), out.code),
        ("hi from fromfile\n", 0),
        "{out:?}"
    );

    // Errors go to stderr with a non-zero status. A missing image is pulled first; the test
    // daemon's Docker Hub is a closed loopback port, so the pull fails and says where it tried.
    let out = d.hyperctl(&["run", "nosuchimage", "true"]);
    assert_eq!(out.code, 255);
    assert!(
        out.stderr
            .contains("Unable to find image 'nosuchimage:latest' locally"),
        "{out:?}"
    );
    assert!(out.stderr.contains("127.0.0.1:1"), "{out:?}");
}

#[test]
fn rm_leaves_no_process_mount_socket_or_directory_behind() {
    let d = TestDaemon::start();
    d.import_busybox();
    d.ok(&["run", "-d", "--name", "web", "busybox", "sleep", "600"]);
    let pods = d.list("pod");
    assert_eq!(pods[0][0], "web");
    assert_eq!(pods[0][3], "running");
    let vm_id = pods[0][2].clone();
    let container_id = d.list("container")[0][0].clone();

    // While it runs: a shim and a VMM for it, a socket, a run dir, the container's dir.
    let vm_run_dir = d.run_dir.join("vms").join(&vm_id);
    let vm_socket = d.run_dir.join("vms").join(format!("{vm_id}.sock"));
    let container_dir = d.root.join("containers").join(&container_id);
    assert!(!processes_mentioning(&vm_run_dir).is_empty());
    assert!(vm_socket.exists() && vm_run_dir.exists() && container_dir.exists());

    let out = d.ok(&["rm", "web"]);
    assert_eq!(out, "Pod(web) is successfully deleted!\n");

    assert_eq!(processes_mentioning(&vm_run_dir), vec![]);
    assert!(!vm_socket.exists(), "socket left");
    assert!(!vm_run_dir.exists(), "vm run dir left");
    assert!(!container_dir.exists(), "container dir left");
    let vms_dir: Vec<_> = std::fs::read_dir(d.run_dir.join("vms")).unwrap().collect();
    assert!(vms_dir.is_empty(), "left in the run dir: {vms_dir:?}");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let tmp = d.dir.path().to_string_lossy().into_owned();
    assert!(!mounts.contains(&tmp), "a mount is left:\n{mounts}");
    assert!(d.list("pod").is_empty());
    assert!(d.list("vm").is_empty());
    let out = d.hyperctl(&["rm", "web"]);
    assert_eq!(out.code, 255);
    assert!(out.stderr.contains("no such pod: web"), "{out:?}");
}

#[test]
fn a_pod_starts_in_a_prebooted_vm_and_exec_runs_in_it() {
    let d = TestDaemon::start();
    d.import_busybox();
    let vm_id = d.ok(&["vm", "create"]).trim().to_string();
    assert!(vm_id.starts_with("vm-"), "{vm_id}");
    assert_eq!(d.list("vm"), vec![vec![vm_id.clone(), "idle".to_string()]]);

    d.ok(&[
        "run", "-d", "--vm", &vm_id, "--name", "warm", "busybox", "sleep", "600",
    ]);
    assert_eq!(
        d.list("vm"),
        vec![vec![
            vm_id.clone(),
            "warm".to_string(),
            "associated".to_string()
        ]]
    );
    assert_eq!(d.list("pod")[0][2], vm_id);

    let out = d.hyperctl(&["exec", "warm", "sh", "-c", "hostname; echo err >&2; exit 4"]);
    assert_eq!(
        (out.stdout.as_str(), out.stderr.as_str(), out.code),
        ("warm\n", "err\n", 4),
        "{out:?}"
    );
    // Not found: 127, as Docker answers, with the guest's message on stderr.
    let out = d.hyperctl(&["exec", "warm", "nosuchcmd"]);
    assert_eq!(out.code, 127, "{out:?}");
    assert!(out.stderr.contains("executable file not found"), "{out:?}");

    // Stopped with --keep-vm, the VM goes back to idle and takes the next pod.
    d.ok(&["stop", "--keep-vm", "warm"]);
    assert_eq!(d.list("vm"), vec![vec![vm_id.clone(), "idle".to_string()]]);
    let out = d.hyperctl(&["run", "--rm", "--vm", &vm_id, "busybox", "echo", "again"]);
    assert_eq!((out.stdout.as_str(), out.code), ("again\n", 0), "{out:?}");
    // The VM went with the pod that used it last.
    d.wait_until(Duration::from_secs(30), "the vm to go", || {
        d.list("vm").is_empty()
    });
    assert_eq!(
        processes_mentioning(&d.run_dir.join("vms").join(&vm_id)),
        vec![]
    );
}

#[test]
fn hyperctl_import_images_create_info_version_without_booting() {
    let d = TestDaemon::start();
    // import from a file, as a user would.
    let rootfs = hyper_tests::busybox_rootfs(&d.dir.path().join("img"));
    let tarball = d.dir.path().join("bb.tar");
    let tar = std::process::Command::new("tar")
        .arg("-C")
        .arg(&rootfs)
        .arg("-cf")
        .arg(&tarball)
        .arg(".")
        .status()
        .unwrap();
    assert!(tar.success());
    let id = d.ok(&["import", tarball.to_str().unwrap(), "busybox:1.0"]);
    let id = id
        .trim()
        .strip_prefix("sha256:")
        .expect("a sha256 image id");
    assert_eq!(id.len(), 64, "{id}");

    let images = d.ok(&["images"]);
    let lines: Vec<&str> = images.lines().collect();
    assert!(
        lines[0].starts_with("REPOSITORY          TAG                 IMAGE ID"),
        "{images}"
    );
    let row: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(&row[..3], ["busybox", "1.0", &id.trim()[..12]], "{images}");
    assert!(lines[1].ends_with(" MB"), "{images}");

    let pod = d.dir.path().join("pod.json");
    std::fs::write(
        &pod,
        r#"{"id":"later","containers":[{"image":"busybox:1.0","command":["true"]}]}"#,
    )
    .unwrap();
    assert_eq!(
        d.ok(&["create", "--podfile", pod.to_str().unwrap()]),
        "Pod ID is later\n"
    );
    assert_eq!(
        d.ok(&["create", "--name", "c2", "busybox:1.0", "true"]),
        "Pod ID is c2\n"
    );
    let pods = d.ok(&["list"]);
    assert!(pods.contains("later") && pods.contains("pending"), "{pods}");
    assert_eq!(d.ok(&["list", "-q"]), "later\nc2\n");

    let info = d.ok(&["info"]);
    assert!(
        info.starts_with("Images: 1\nContainers: 2\nPODs: 2\n"),
        "{info}"
    );
    assert!(
        info.contains(&format!("Hyper Root Dir: {}", d.root.display())),
        "{info}"
    );
    // No VM booted yet: the configured VMM, and when the choice is made.
    assert!(
        info.contains(&format!(
            "VMM: {}\nVMM Reason: decided when the first VM boots\n",
            hyper_tests::test_vmm()
        )),
        "{info}"
    );
    let version = d.ok(&["version"]);
    assert!(version.starts_with("The hyperctl version is "), "{version}");

    assert_eq!(
        d.ok(&["rm", "later", "c2"]),
        "Pod(later) is successfully deleted!\nPod(c2) is successfully deleted!\n"
    );
    // A daemon that is not there is a clear error.
    let out = std::process::Command::new(hyper_tests::daemon::hyperctl_binary())
        .args(["-H", "unix:///tmp/no-such-hyperd.sock", "list"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(255));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot connect to hyperd"));
}
