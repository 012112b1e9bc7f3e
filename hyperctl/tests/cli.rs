//! hyperctl as a user runs it, against a stand-in daemon on a unix socket where one is
//! needed: a closed stdout ends it quietly, and `-i -t` with piped stdin is refused at once.

use std::io::{Read as _, Write as _};
use std::os::unix::net::UnixListener;
use std::os::unix::process::ExitStatusExt as _;
use std::process::{Command, Stdio};

fn hyperctl(sock: &std::path::Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_hyperctl"));
    c.env("HYPER_HOST", format!("unix://{}", sock.display()));
    c
}

/// Answers one request with `body` (200, `content-length`).
fn serve_once(listener: UnixListener, body: Vec<u8>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && conn.read(&mut byte).unwrap() == 1 {
            head.push(byte[0]);
        }
        let status = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", body.len());
        // hyperctl may be gone before it reads it all: that is the point.
        let _ = conn.write_all(status.as_bytes());
        let _ = conn.write_all(&body);
    })
}

#[test]
fn a_closed_stdout_ends_hyperctl_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("hyper.sock");
    let server = serve_once(UnixListener::bind(&sock).unwrap(), vec![b'x'; 1 << 20]);
    let mut child = hyperctl(&sock)
        .arg("api-spec")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The reader of our stdout is gone before hyperctl writes (as `| head -c 0` would be).
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    server.join().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.signal() == Some(libc::SIGPIPE) || out.status.code() == Some(0),
        "{:?} {stderr}",
        out.status
    );
    assert_eq!(stderr, "");
}

#[test]
fn run_and_exec_with_i_and_t_refuse_a_piped_stdin() {
    let dir = tempfile::tempdir().unwrap();
    // No daemon: the refusal comes before any request.
    let sock = dir.path().join("none.sock");
    for args in [
        &["run", "-it", "--rm", "busybox", "sh"][..],
        &["exec", "-i", "-t", "web", "sh"][..],
    ] {
        let mut child = hyperctl(&sock)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // hyperctl may have ended already: a failed write is not the point.
        let _ = child.stdin.take().unwrap().write_all(b"echo hi\n");
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert_eq!(
            stderr, "hyperctl ERROR: the input device is not a TTY\n",
            "{args:?}"
        );
    }
}

#[test]
fn a_bad_publish_value_fails_before_anything_is_created() {
    let dir = tempfile::tempdir().unwrap();
    // No daemon: a request would fail with "cannot connect" instead.
    let sock = dir.path().join("none.sock");
    for (args, says) in [
        (&["run", "-p", "99999:80", "busybox"][..], "\"99999\""),
        (&["create", "-p", "8080:80/sctp", "busybox"][..], "\"sctp\""),
        (
            &["run", "-d", "-p", "8000-8010:80", "busybox"][..],
            "same size",
        ),
        (&["portmap", "add", "web", "80"][..], "HOST:CONTAINER"),
    ] {
        let out = hyperctl(&sock).args(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(255), "{args:?}: {stderr}");
        assert!(
            stderr.starts_with("hyperctl ERROR: publish ") && stderr.contains(says),
            "{args:?}: {stderr}"
        );
    }
}
