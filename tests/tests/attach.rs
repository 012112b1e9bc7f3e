//! The hijacked protocol over the unix socket, driven by hand as a Docker client would:
//! exec with stdin echoed through `cat`, stdout and stderr in separate frames, exit codes
//! from `/exitcode`, two clients attached at once, and bad input answered with a clear 4xx.

use hyper_tests::daemon::TestDaemon;
use hyper_tests::hijack::{frames, stream_text};
use hyper_tests::url_encode;

fn exec_create(d: &TestDaemon, container: &str, command: &str, tty: bool) -> String {
    let r = d.curl(
        "POST",
        &format!(
            "/exec/create?container={container}&command={}&tty={tty}",
            url_encode(command)
        ),
        None,
    );
    assert_eq!(r.status, 201, "{r:?}\n{}", d.log());
    serde_json::from_str(&r.body).unwrap()
}

/// A main process started with `stdin` (no TTY) reads what an attached client sends, sees
/// the end of file when that client half-closes, and its output comes back in stdcopy frames;
/// `hyperctl run -i` does the same with hyperctl's own stdin.
#[test]
fn a_main_process_takes_stdin_without_a_tty() {
    let d = TestDaemon::start();
    d.import_busybox();
    d.ok(&[
        "run",
        "-d",
        "-i",
        "--name",
        "reader",
        "busybox",
        "sh",
        "-c",
        "cat; echo eof >&2; exit 4",
    ]);
    let mut h = d.hijack("/attach?container=reader&stdin=1").unwrap();
    h.write(b"one line\n");
    h.close_stdin();
    let fr = frames(&h.read_to_end());
    assert_eq!(stream_text(&fr, 1), "one line\n");
    assert_eq!(stream_text(&fr, 2), "eof\n");
    assert_eq!(d.exit_code("reader"), 4);

    let out = d.hyperctl_with_stdin(
        &["run", "--rm", "-i", "busybox", "sh", "-c", "wc -l; exit 7"],
        Some(b"a\nb\nc\n"),
    );
    assert_eq!((out.code, out.stdout.trim()), (7, "3"), "{out:?}");

    // /container/info says it takes stdin; hyperctl attach forwards its own stdin to such a
    // container and half-closes it at its end (the loop then ends, and so does hyperctl).
    let r = d.curl("GET", "/container/info?container=reader", None);
    assert!(r.body.contains(r#""stdin":true"#), "{r:?}");
    d.ok(&[
        "run",
        "-d",
        "-i",
        "--name",
        "icat2",
        "busybox",
        "sh",
        "-c",
        "while read l; do echo got:$l; done",
    ]);
    let out = d.hyperctl_with_stdin(&["attach", "icat2"], Some(b"single\n"));
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (0, "got:single\n"),
        "{out:?}"
    );

    // -i -t with a piped stdin is refused before any pod is made, as Docker does.
    let pods = d.list("pod").len();
    let out = d.hyperctl_with_stdin(&["run", "-it", "--rm", "busybox", "sh"], Some(b"true\n"));
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains("the input device is not a TTY"),
        "{out:?}"
    );
    assert_eq!(d.list("pod").len(), pods);
}

#[test]
fn exec_and_attach_over_the_hijacked_socket() {
    let d = TestDaemon::start();
    d.import_busybox();
    d.ok(&[
        "run",
        "-d",
        "--name",
        "talk",
        "busybox",
        "sh",
        "-c",
        "i=0; while true; do echo tick $i; echo tock $i >&2; i=$((i+1)); usleep 200000; done",
    ]);

    // stdin goes through cat and comes back on stdout; stderr comes in its own frames; the
    // server closes once the process is done, and /exitcode has its status.
    let id = exec_create(
        &d,
        "talk",
        r#"["sh","-c","cat; echo done >&2; exit 3"]"#,
        false,
    );
    let mut h = d
        .hijack(&format!("/exec/start?container=talk&exec={id}"))
        .unwrap();
    h.write(b"hello through cat\n");
    h.write(b"and a second line\n");
    h.close_stdin();
    let fr = frames(&h.read_to_end());
    assert_eq!(
        stream_text(&fr, 1),
        "hello through cat\nand a second line\n"
    );
    assert_eq!(stream_text(&fr, 2), "done\n");
    let code = d.curl("GET", &format!("/exitcode?container=talk&exec={id}"), None);
    assert_eq!((code.status, code.body.trim()), (200, "3"), "{code:?}");

    // /exitcode waits for an exec however long it runs (past hyperd 1.1's 10 s limit).
    let slow = exec_create(&d, "talk", r#"["sh","-c","sleep 11; exit 5"]"#, false);
    let started = std::time::Instant::now();
    let _session = d
        .hijack(&format!("/exec/start?container=talk&exec={slow}"))
        .unwrap();
    let code = d.curl(
        "GET",
        &format!("/exitcode?container=talk&exec={slow}"),
        None,
    );
    assert_eq!((code.status, code.body.trim()), (200, "5"), "{code:?}");
    assert!(started.elapsed() >= std::time::Duration::from_secs(11));

    // Two clients attached at once both get the output (replayed from the start, then live),
    // each stream in its own frames.
    let mut a = d.hijack("/attach?container=talk").unwrap();
    let mut b = d.hijack("/attach?container=talk&stderr=0").unwrap();
    let got_a = a.read_until(b"tick 8\n");
    let got_b = b.read_until(b"tick 8\n");
    for got in [&got_a, &got_b] {
        let text = String::from_utf8_lossy(got);
        for i in 0..=8 {
            assert!(text.contains(&format!("tick {i}\n")), "{text}");
        }
    }
    assert!(String::from_utf8_lossy(&got_a).contains("tock 0\n"));
    assert!(
        !String::from_utf8_lossy(&got_b).contains("tock"),
        "stderr=0"
    );
    drop((a, b));

    // Bad input: a clear 4xx before any hijack, never a hang or a 500.
    let missing = d.hijack("/attach?container=nosuch").err().unwrap();
    assert_eq!(missing.status, 404, "{missing:?}");
    assert!(missing.body.contains("nosuch"), "{missing:?}");
    let no_stdin = d.hijack("/attach?container=talk&stdin=1").err().unwrap();
    assert_eq!(no_stdin.status, 409, "{no_stdin:?}");
    let keys = d
        .hijack("/attach?container=talk&detachKeys=ctrl-pp")
        .err()
        .unwrap();
    assert_eq!(keys.status, 400, "{keys:?}");
    assert!(keys.body.contains("detachKeys"), "{keys:?}");
    let r = d.curl(
        "POST",
        "/tty/resize?container=talk&exec=exec-nosuchexec&h=10&w=10",
        None,
    );
    assert_eq!(r.status, 404, "{r:?}");
    let r = d.curl("POST", "/tty/resize?container=talk&h=ten&w=10", None);
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.body.contains("h:") || r.body.contains(" h"), "{r:?}");
    let r = d.curl(
        "POST",
        "/container/kill?container=talk&signal=SIGNOPE",
        None,
    );
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.body.contains("signal"), "{r:?}");
    let r = d.curl("POST", "/container/kill?container=talk&signal=99", None);
    assert_eq!(r.status, 400, "{r:?}");

    // The pod stops; exec into its stopped container is refused.
    d.ok(&["stop", "talk"]);
    let r = d.curl(
        "POST",
        "/exec/create?container=talk&command=%5B%22true%22%5D",
        None,
    );
    assert_eq!(r.status, 409, "{r:?}");
    assert!(r.body.contains("not running"), "{r:?}");
    let r = d.curl("POST", "/container/kill?container=talk&signal=KILL", None);
    assert_eq!(r.status, 409, "{r:?}");
    // The daemon is still up.
    assert_eq!(d.curl("GET", "/_ping", None).status, 200);
}

#[test]
fn tty_sessions_detach_resize_and_execvm() {
    let d = TestDaemon::start();
    d.import_busybox();
    d.ok(&["run", "-d", "-t", "--name", "term", "busybox", "cat"]);

    // A TTY container takes stdin through /attach: raw bytes both ways; the detach keys end
    // the session and leave cat running; a later attach still reaches it.
    let mut a = d.hijack("/attach?container=term&stdin=1").unwrap();
    a.write(b"first line\r");
    a.read_until(b"first line\r\n");
    a.write(b"\x10\x11");
    let rest = a.read_to_end();
    assert!(
        !String::from_utf8_lossy(&rest).contains('\u{10}'),
        "{rest:?}"
    );
    let rows = d.list("container");
    assert_eq!(rows[0][3], "running", "{rows:?}");
    let mut b = d
        .hijack("/attach?container=term&stdin=1&detachKeys=ctrl-a,x")
        .unwrap();
    b.write(b"second\r");
    b.read_until(b"second\r\n");
    b.write(b"\x01x");
    b.read_to_end();
    assert_eq!(d.list("container")[0][3], "running");
    // hyperctl attach forwards piped stdin to a TTY container; on the detach keys it says so.
    let out = d.hyperctl_with_stdin(&["attach", "term"], Some(b"third\r\x10\x11"));
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.stderr, "read escape sequence\n", "{out:?}");
    assert_eq!(d.list("container")[0][3], "running");
    d.wait_until(
        std::time::Duration::from_secs(30),
        "third in the log",
        || d.hyperctl(&["logs", "term"]).stdout.contains("third"),
    );

    // A process on a terminal gets TERM=xterm (its env has none), as with Docker.
    let out = d.hyperctl(&["exec", "-t", "term", "sh", "-c", "echo \"[$TERM]\""]);
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (0, "[xterm]\r\n"),
        "{out:?}"
    );

    // An exec on a TTY gets the size sent with /tty/resize.
    let id = exec_create(&d, "term", r#"["sh","-c","sleep 2; stty size"]"#, true);
    let mut e = d
        .hijack(&format!("/exec/start?container=term&exec={id}"))
        .unwrap();
    let r = d.curl(
        "POST",
        &format!("/tty/resize?container=term&exec={id}&h=21&w=77"),
        None,
    );
    assert_eq!(r.status, 200, "{r:?}\n{}", d.log());
    let out = String::from_utf8_lossy(&e.read_to_end()).into_owned();
    assert!(out.contains("21 77"), "{out:?}");
    // Resizing a process without a terminal is refused.
    let plain = exec_create(&d, "term", r#"["true"]"#, false);
    let r = d.curl(
        "POST",
        &format!("/tty/resize?container=term&exec={plain}&h=21&w=77"),
        None,
    );
    assert_eq!(r.status, 409, "{r:?}");

    // /execvm runs in the VM itself, raw output.
    let mut vm = d
        .hijack("/execvm?podId=term&command=%5B%22uname%22%2C%22-s%22%5D")
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&vm.read_to_end()), "Linux\n");
    let r = d
        .hijack("/execvm?podId=nosuch&command=%5B%22true%22%5D")
        .err()
        .unwrap();
    assert_eq!(r.status, 404, "{r:?}");
}

/// `run --rm` removes its pod when a signal ends hyperctl mid-session (best effort, bounded).
#[test]
fn run_rm_removes_the_pod_when_hyperctl_is_terminated() {
    let d = TestDaemon::start();
    d.import_busybox();
    let run = std::process::Command::new(hyper_tests::daemon::hyperctl_binary())
        .args(["run", "--rm", "--name", "doomed", "busybox", "sleep", "600"])
        .env("HYPER_HOST", format!("unix://{}", d.socket.display()))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    d.wait_until(std::time::Duration::from_secs(60), "doomed runs", || {
        d.list("container")
            .iter()
            .any(|r| r[1] == "doomed" && r[3] == "running")
    });
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(run.id() as i32, libc::SIGTERM) }, 0);
    let out = run.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(255), "{out:?}");
    assert!(d.list("pod").is_empty(), "{:?}", d.list("pod"));
}
