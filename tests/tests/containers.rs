//! Containers in a live pod: one added with `/container/create` + `/container/start` shares
//! the pod's hostname, stops on its own, and freezes with the pod; exit codes as Docker gives
//! them for `run` and `exec` (the process's own, 128+N, 127, 126, 137 when the VMM dies); and
//! `hyperctl run -it` under a real pseudo-terminal.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hyper_tests::daemon::{TestDaemon, hyperctl_binary};
use hyper_tests::processes_mentioning;

fn lines_of(d: &TestDaemon, container: &str) -> usize {
    d.hyperctl(&["logs", container]).stdout.lines().count()
}

#[test]
fn a_container_added_to_a_running_pod_shares_it_and_stops_alone() {
    let d = TestDaemon::start();
    d.import_busybox();
    d.ok(&[
        "run",
        "-d",
        "--name",
        "base",
        "busybox",
        "sh",
        "-c",
        "i=0; while true; do echo b$i; i=$((i+1)); usleep 200000; done",
    ]);

    let r = d.curl_body(
        "POST",
        "/container/create?podId=base",
        r#"{"name":"side","image":"busybox","command":["sh","-c","hostname; i=0; while true; do echo s$i; i=$((i+1)); usleep 200000; done"]}"#,
    );
    assert_eq!(r.status, 201, "{r:?}\n{}", d.log());
    let id = serde_json::from_str::<serde_json::Value>(&r.body).unwrap()["ID"]
        .as_str()
        .unwrap()
        .to_string();
    let info = d.curl("GET", "/container/info?container=side", None);
    assert_eq!(info.status, 200, "{info:?}");
    let info: serde_json::Value = serde_json::from_str(&info.body).unwrap();
    assert_eq!(info["podID"], "base");
    assert_eq!(info["status"]["phase"], "pending");
    assert_eq!(info["container"]["containerID"], id.as_str());

    // Bad specs and pods are named; nothing half-made is left.
    let r = d.curl_body("POST", "/container/create?podId=base", r#"{"image":5}"#);
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.body.contains("image"), "{r:?}");
    let r = d.curl_body(
        "POST",
        "/container/create?podId=base",
        r#"{"image":"nosuchimage"}"#,
    );
    assert_eq!(r.status, 404, "{r:?}");
    let r = d.curl_body(
        "POST",
        "/container/create?podId=nosuch",
        r#"{"image":"busybox"}"#,
    );
    assert_eq!(r.status, 404, "{r:?}");
    assert_eq!(d.list("container").len(), 2, "{:?}", d.list("container"));

    let r = d.curl("POST", "/container/start?container=side", None);
    assert_eq!(r.status, 200, "{r:?}\n{}", d.log());
    let hostname = d.hyperctl(&["exec", "base", "hostname"]).stdout;
    d.wait_until(Duration::from_secs(60), "side's first lines", || {
        lines_of(&d, "side") > 2
    });
    let side = d.hyperctl(&["logs", "side"]).stdout;
    assert_eq!(side.lines().next(), Some(hostname.trim()), "{side}");

    // A unique id prefix finds it; a taken name cannot be given to it.
    let by_prefix = d.hyperctl(&["logs", "--tail", "1", &id[..12]]);
    assert_eq!(by_prefix.code, 0, "{by_prefix:?}");
    let r = d.curl("POST", "/container/rename?oldName=side&newName=base", None);
    assert_eq!(r.status, 409, "{r:?}");
    // Its own name again is refused, as Docker does.
    let r = d.curl("POST", "/container/rename?oldName=side&newName=side", None);
    assert_eq!(r.status, 409, "{r:?}");
    assert!(r.body.contains("same name"), "{r:?}");
    d.ok(&["rename", "side", "sidecar"]);

    // Stopping the added container leaves the other running.
    d.ok(&["container", "stop", "-t", "2", "sidecar"]);
    let code = d.exit_code("sidecar");
    assert!(code == 143 || code == 137, "{code}");
    let rows = d.list("container");
    let state = |name: &str| rows.iter().find(|r| r[1] == name).map(|r| r[3].clone());
    assert_eq!(state("base").as_deref(), Some("running"), "{rows:?}");
    assert_eq!(state("sidecar").as_deref(), Some("failed"), "{rows:?}");
    let still = d.hyperctl(&["exec", "base", "echo", "still here"]);
    assert_eq!(still.stdout, "still here\n", "{still:?}");

    // Removed: gone from the pod, its dir with it.
    d.ok(&["container", "rm", "sidecar"]);
    assert!(!d.root.join("containers").join(&id).exists());
    assert_eq!(
        d.curl("GET", "/container/info?container=sidecar", None)
            .status,
        404
    );
}

#[test]
fn pause_freezes_every_container_and_unpause_resumes_them() {
    let d = TestDaemon::start();
    d.import_busybox();
    let counter = "i=0; while true; do echo n$i; i=$((i+1)); usleep 200000; done";
    d.ok(&[
        "run", "-d", "--name", "frozen", "busybox", "sh", "-c", counter,
    ]);
    d.ok(&[
        "container",
        "create",
        "--name",
        "second",
        "frozen",
        "busybox",
        "sh",
        "-c",
        counter,
    ]);
    d.ok(&["container", "start", "second"]);
    d.wait_until(Duration::from_secs(60), "both counters", || {
        lines_of(&d, "frozen") > 2 && lines_of(&d, "second") > 2
    });
    d.ok(&["pause", "frozen"]);
    assert_eq!(d.list("pod")[0][3], "paused", "{:?}", d.list("pod"));
    let (b0, s0) = (lines_of(&d, "frozen"), lines_of(&d, "second"));
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!((lines_of(&d, "frozen"), lines_of(&d, "second")), (b0, s0));
    let r = d.curl(
        "POST",
        "/exec/create?container=frozen&command=%5B%22true%22%5D",
        None,
    );
    assert_eq!(r.status, 409, "exec into a paused pod: {r:?}");
    let r = d.curl("POST", "/pod/pause?podId=frozen", None);
    assert_eq!(r.status, 409, "pausing a paused pod: {r:?}");
    d.ok(&["unpause", "frozen"]);
    d.wait_until(Duration::from_secs(30), "both counters to go on", || {
        lines_of(&d, "frozen") > b0 && lines_of(&d, "second") > s0
    });
    let r = d.curl("POST", "/pod/unpause?podId=frozen", None);
    assert_eq!(r.status, 409, "unpausing a running pod: {r:?}");

    // A paused pod can still be stopped.
    d.ok(&["pause", "frozen"]);
    d.ok(&["stop", "frozen"]);
    assert_eq!(d.list("pod")[0].last().unwrap(), "stopped");
}

#[test]
fn exit_codes_as_docker_gives_them() {
    let d = TestDaemon::start();
    d.import_busybox();
    let run = |args: &[&str]| {
        let mut all = vec!["run", "--rm", "busybox"];
        all.extend_from_slice(args);
        d.hyperctl(&all)
    };
    assert_eq!(run(&["sh", "-c", "exit 42"]).code, 42);
    assert_eq!(run(&["sh", "-c", "kill -9 $$"]).code, 137);
    let nf = run(&["/no/such/binary"]);
    assert_eq!(nf.code, 127, "{nf:?}");
    assert!(!nf.stderr.is_empty(), "a message on stderr: {nf:?}");
    let nx = run(&["/etc/passwd"]);
    assert_eq!(nx.code, 126, "{nx:?}");
    assert!(!nx.stderr.is_empty(), "a message on stderr: {nx:?}");

    d.ok(&["run", "-d", "--name", "live", "busybox", "sleep", "600"]);
    assert_eq!(
        d.hyperctl(&["exec", "live", "sh", "-c", "exit 42"]).code,
        42
    );
    assert_eq!(
        d.hyperctl(&["exec", "live", "sh", "-c", "kill -9 $$"]).code,
        137
    );
    assert_eq!(d.hyperctl(&["exec", "live", "/no/such/binary"]).code, 127);
    assert_eq!(d.hyperctl(&["exec", "live", "/etc/passwd"]).code, 126);
}

#[test]
fn a_vmm_killed_under_run_and_exec_gives_137_and_says_so() {
    let d = TestDaemon::start();
    d.import_busybox();
    let spawn = |args: &[&str]| {
        Command::new(hyperctl_binary())
            .args(args)
            .env("HYPER_HOST", format!("unix://{}", d.socket.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    // An attached `run` and an exec in its container, then the VMM is killed under both:
    // both end with 137 and say why.
    let run = spawn(&["run", "--name", "live", "busybox", "sleep", "600"]);
    d.wait_until(Duration::from_secs(120), "the pod to run", || {
        d.list("pod")
            .first()
            .is_some_and(|r| r.last().map(String::as_str) == Some("running"))
    });
    let vm = d.list("pod")[0][2].clone();
    let exec = spawn(&["exec", "live", "sleep", "600"]);
    std::thread::sleep(Duration::from_secs(3));
    let vmm = processes_mentioning(&d.run_dir.join("vms").join(&vm))
        .into_iter()
        .find(|(_, cmd)| cmd.contains("qemu") || cmd.contains("cloud-hypervisor"))
        .expect("the pod's VMM runs");
    // SAFETY: kill(2) of the VMM this test's daemon started.
    unsafe { libc::kill(vmm.0 as i32, libc::SIGKILL) };
    for child in [run, exec] {
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(137), "{stderr}\n{}", d.log());
        assert!(stderr.contains("died"), "{stderr}");
    }
    assert_eq!(d.exit_code("live"), 137);
}

/// A pseudo-terminal of `rows` × `cols`: (master, slave).
fn pty(rows: u16, cols: u16) -> (OwnedFd, OwnedFd) {
    let (mut master, mut slave) = (0, 0);
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: openpty writes two fds; the name and termios pointers may be null.
    let r = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            &ws,
        )
    };
    assert_eq!(r, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: openpty gave us these two fds, owned by nobody else.
    unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) }
}

/// Reads the pty's master until `want` shows (or panics after `timeout`).
fn expect(master: &mut std::fs::File, seen: &mut String, want: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 4096];
    while !seen.contains(want) {
        assert!(Instant::now() < deadline, "no {want:?} in {seen:?}");
        let mut fds = [libc::pollfd {
            fd: master.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        // SAFETY: one valid pollfd.
        if unsafe { libc::poll(fds.as_mut_ptr(), 1, 200) } <= 0 {
            continue;
        }
        match master.read(&mut buf) {
            Ok(0) | Err(_) => panic!("the terminal closed before {want:?}: {seen:?}"),
            Ok(n) => seen.push_str(&String::from_utf8_lossy(&buf[..n])),
        }
    }
}

#[test]
fn run_it_under_a_real_terminal() {
    let d = TestDaemon::start();
    d.import_busybox();
    let (master, slave) = pty(33, 101);
    let mut cmd = Command::new(hyperctl_binary());
    cmd.args(["run", "-i", "-t", "--rm", "busybox", "sh"])
        .env("HYPER_HOST", format!("unix://{}", d.socket.display()))
        .stdin(Stdio::from(slave.try_clone().unwrap()))
        .stdout(Stdio::from(slave.try_clone().unwrap()))
        .stderr(Stdio::from(slave));
    // SAFETY: setsid and TIOCSCTTY are async-signal-safe; nothing else runs before exec.
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(|| {
            libc::setsid();
            libc::ioctl(0, libc::TIOCSCTTY, 0);
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    let mut master = std::fs::File::from(master);
    let mut seen = String::new();
    // The shell prompt, then the size we set, through the guest's pty.
    expect(&mut master, &mut seen, "# ", Duration::from_secs(120));
    master.write_all(b"stty size\r").unwrap();
    expect(&mut master, &mut seen, "33 101", Duration::from_secs(30));
    // A new window size (SIGWINCH to hyperctl) reaches the guest's pty.
    let ws = libc::winsize {
        ws_row: 40,
        ws_col: 120,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize; the fd is our pty's master.
    assert_eq!(
        unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws) },
        0
    );
    std::thread::sleep(Duration::from_secs(1));
    master.write_all(b"stty size\r").unwrap();
    expect(&mut master, &mut seen, "40 120", Duration::from_secs(30));
    // Ctrl-C interrupts a sleep and the shell lives on.
    master.write_all(b"sleep 100\r").unwrap();
    std::thread::sleep(Duration::from_secs(2));
    master.write_all(b"\x03").unwrap();
    master.write_all(b"echo alive $((40+2))\r").unwrap();
    expect(&mut master, &mut seen, "alive 42", Duration::from_secs(30));
    master.write_all(b"exit 3\r").unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        // Keep draining the terminal so hyperctl never blocks on a full pty.
        let mut buf = [0u8; 4096];
        let mut fds = [libc::pollfd {
            fd: master.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        // SAFETY: one valid pollfd.
        if unsafe { libc::poll(fds.as_mut_ptr(), 1, 100) } > 0
            && let Ok(n) = master.read(&mut buf)
        {
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        assert!(Instant::now() < deadline, "hyperctl did not exit: {seen:?}");
    };
    assert_eq!(status.code(), Some(3), "{seen:?}\n{}", d.log());
}

#[test]
fn stats_labels_and_pod_kill() {
    let d = TestDaemon::start();
    d.import_busybox();
    d.ok(&[
        "run",
        "-d",
        "--name",
        "busy",
        "busybox",
        "sh",
        "-c",
        "trap 'echo got USR1' USR1; while true; do usleep 100000; done",
    ]);

    let r = d.curl("GET", "/pod/stats?podId=busy", None);
    assert_eq!(r.status, 200, "{r:?}\n{}", d.log());
    let stats: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    let one = &stats[0];
    assert_eq!(one["name"], "/busy");
    assert!(one["memory_stats"]["usage"].as_u64().unwrap() > 0, "{one}");
    assert!(
        one["cpu_stats"]["cpu_usage"]["total_usage"]
            .as_u64()
            .unwrap()
            > 0,
        "{one}"
    );
    assert!(one["pids_stats"]["current"].as_u64().unwrap() >= 1, "{one}");
    // stream=true: one array a line, every second.
    let streamed = Command::new("curl")
        .args(["-s", "--max-time", "3.5", "--unix-socket"])
        .arg(&d.socket)
        .arg("http://hyperd/pod/stats?podId=busy&stream=true")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&streamed.stdout);
    let samples: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(samples.len() >= 3, "{text}");
    assert_eq!(samples[1][0]["preread"], samples[0][0]["read"]);
    let table = d.ok(&["stats", "--no-stream", "busy"]);
    assert!(
        table.starts_with("CONTAINER") && table.contains("busy"),
        "{table}"
    );

    let r = d.curl(
        "POST",
        "/pod/labels?podId=busy&labels=%7B%22tier%22%3A%22web%22%7D",
        None,
    );
    assert_eq!(r.status, 201, "{r:?}");
    let r = d.curl(
        "POST",
        "/pod/labels?podId=busy&labels=%7B%22tier%22%3A%22db%22%7D",
        None,
    );
    assert_eq!(r.status, 409, "{r:?}");
    assert!(r.body.contains("tier"), "{r:?}");
    let r = d.curl(
        "POST",
        "/pod/labels?podId=busy&labels=%7B%22tier%22%3A%22db%22%7D&override=true",
        None,
    );
    assert_eq!(r.status, 201, "{r:?}");
    let info = d.curl("GET", "/pod/info?podName=busy", None);
    assert!(info.body.contains(r#""tier":"db""#), "{info:?}");
    let r = d.curl("POST", "/pod/labels?podId=busy&labels=notjson", None);
    assert_eq!(r.status, 400, "{r:?}");

    d.ok(&["kill", "-s", "USR1", "busy"]);
    d.wait_until(Duration::from_secs(30), "the trap to run", || {
        d.hyperctl(&["logs", "busy"]).stdout.contains("got USR1")
    });
    let r = d.curl("POST", "/pod/kill?podId=busy&signal=KILL", None);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(d.exit_code("busy"), 137);
}
