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

/// Answers one request with `status` and `body`; returns the request's head and body.
fn serve_one(
    listener: UnixListener,
    status: &'static str,
    body: &'static str,
) -> std::thread::JoinHandle<(String, String)> {
    std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && conn.read(&mut byte).unwrap() == 1 {
            head.push(byte[0]);
        }
        let head = String::from_utf8(head).unwrap();
        let len: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().unwrap())
            })
            .unwrap_or(0);
        let mut req_body = vec![0u8; len];
        conn.read_exact(&mut req_body).unwrap();
        let answer = format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        conn.write_all(answer.as_bytes()).unwrap();
        (head, String::from_utf8(req_body).unwrap())
    })
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

#[test]
fn port_prints_the_pods_mappings_as_docker_port_does() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("hyper.sock");
    let server = serve_one(
        UnixListener::bind(&sock).unwrap(),
        "200 OK",
        r#"{"portMappings":[{"containerPort":"80","hostPort":"8080","protocol":"tcp"},{"containerPort":"53-54","hostPort":"5353-5354","protocol":"udp"}]}"#,
    );
    let out = hyperctl(&sock).args(["port", "web"]).output().unwrap();
    let (head, _) = server.join().unwrap();
    assert!(
        head.starts_with("GET /v1.1.0/pod/web/portmappings "),
        "{head}"
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "53/udp -> 0.0.0.0:5353\n54/udp -> 0.0.0.0:5354\n80/tcp -> 0.0.0.0:8080\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success());
}

#[test]
fn portmap_rm_puts_the_mappings_to_delete_and_shows_a_conflict() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("hyper.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    let server = serve_one(listener, "204 No Content", "");
    let out = hyperctl(&sock)
        .args(["portmap", "rm", "web", "8080:80", "53:53/udp"])
        .output()
        .unwrap();
    let (head, body) = server.join().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        head.starts_with("PUT /v1.1.0/pod/web/portmappings/delete "),
        "{head}"
    );
    let sent: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        sent,
        serde_json::json!([
            {"containerPort": "80", "hostPort": "8080", "protocol": "tcp"},
            {"containerPort": "53", "hostPort": "53", "protocol": "udp"},
        ])
    );
    std::fs::remove_file(&sock).unwrap();
    let server = serve_one(
        UnixListener::bind(&sock).unwrap(),
        "409 Conflict",
        "host port 8080/tcp is taken by pod db",
    );
    let out = hyperctl(&sock)
        .args(["portmap", "add", "web", "8080:80"])
        .output()
        .unwrap();
    let (head, _) = server.join().unwrap();
    assert!(head.contains("/pod/web/portmappings/add "), "{head}");
    assert_eq!(out.status.code(), Some(255));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("host port 8080/tcp is taken by pod db"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
