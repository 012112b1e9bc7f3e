//! A container's options in a real VM, as the container sees them: a read-only rootfs,
//! ulimits, sysctls, the pod's files (inline base64, `file://`, `http://127.0.0.1`) with their
//! mode and owner, the run-as user, and the stop signal taken from the image.

use std::io::{Read, Write};
use std::net::TcpListener;

use serde_json::{Value, json};

use hyper_tests::daemon::TestDaemon;

fn create_and_start(d: &TestDaemon, pod: &Value) -> String {
    let r = d.curl_body("POST", "/pod/create", &pod.to_string());
    assert_eq!(r.status, 201, "create: {r:?}\n{}", d.log());
    let id = pod["id"].as_str().unwrap().to_string();
    d.ok(&["start", &id]);
    id
}

/// `sh -c script` in `container`: (stdout, stderr, exit code).
fn exec(d: &TestDaemon, container: &str, script: &str) -> (String, String, i32) {
    let out = d.hyperctl(&["exec", container, "sh", "-c", script]);
    (out.stdout, out.stderr, out.code)
}

#[test]
fn read_only_rootfs_ulimits_and_sysctls() {
    let d = TestDaemon::start();
    d.import_busybox();
    create_and_start(
        &d,
        &json!({"id": "opts", "volumes": [{"name": "ro-tmp"}],
            "containers": [{"name": "ro", "image": "busybox",
            "command": ["sleep", "600"], "readOnly": true,
            "volumes": [{"volume": "ro-tmp", "path": "/tmp"}],
            "ulimits": [{"Name": "NOFILE", "Hard": 2000, "Soft": 1000}],
            "sysctl": {"kernel.shmmax": "123456789", "net.ipv4.ip_forward": "1"}}]}),
    );
    let (_, err, code) = exec(&d, "ro", "touch /written");
    assert_ne!(code, 0, "a write to / succeeded");
    assert!(err.contains("Read-only file system"), "{err}");
    let (out, _, code) = exec(&d, "ro", "touch /dev/shm/ok && echo ok");
    assert_eq!((out.trim(), code), ("ok", 0));
    // A volume the spec adds at /tmp stays writable.
    let (out, _, code) = exec(&d, "ro", "echo kept > /tmp/f && cat /tmp/f");
    assert_eq!((out.trim(), code), ("kept", 0));
    let (out, _, _) = exec(&d, "ro", "ulimit -n; ulimit -Hn");
    assert_eq!(out, "1000\n2000\n");
    let (out, _, _) = exec(
        &d,
        "ro",
        "cat /proc/sys/kernel/shmmax /proc/sys/net/ipv4/ip_forward",
    );
    assert_eq!(out, "123456789\n1\n");
}

/// Serves `body` to every request on 127.0.0.1, for as long as the test runs.
fn serve(body: &'static [u8]) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf);
            let _ = write!(
                conn,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = conn.write_all(body);
        }
    });
    format!("http://{addr}/conf")
}

#[test]
fn files_reach_the_container_as_specified() {
    let d = TestDaemon::start();
    d.import_busybox();
    let host = d.dir.path().join("from-host");
    std::fs::write(&host, "host content\n").unwrap();
    let url = serve(b"http content\n");
    create_and_start(
        &d,
        &json!({"id": "files",
            "files": [
                {"name": "token", "encoding": "base64", "content": "c2VjcmV0LXRva2VuCg=="},
                {"name": "local", "uri": format!("file://{}", host.display())},
                {"name": "remote", "uri": url}],
            "containers": [{"name": "reader", "image": "busybox", "command": ["sleep", "600"],
                "user": {"name": "1000", "group": "1000"},
                "files": [
                    {"path": "/run/secrets/", "filename": "token", "perm": "0600",
                     "user": "1000", "group": "1000"},
                    {"path": "/etc/local.conf", "filename": "local", "perm": "0644"},
                    {"path": "/etc/remote.conf", "filename": "remote"},
                    {"path": "/etc/inline", "detail": {"name": "inline", "content": "inline\n"},
                     "perm": "0"}]}]}),
    );
    let (out, err, code) = exec(
        &d,
        "reader",
        "stat -c '%a %u:%g' /run/secrets/token; cat /run/secrets/token; \
         stat -c '%a %u:%g' /etc/local.conf; cat /etc/local.conf; \
         stat -c '%a' /etc/remote.conf; cat /etc/remote.conf; stat -c '%a' /etc/inline; \
         id -u; id -g",
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        "600 1000:1000\nsecret-token\n644 0:0\nhost content\n755\nhttp content\n0\n1000\n1000\n"
    );
}

#[test]
fn stop_signal_comes_from_the_image() {
    let d = TestDaemon::start();
    d.import_busybox();
    let ctx = d.dir.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("Dockerfile"), "FROM busybox\nSTOPSIGNAL SIGUSR1\n").unwrap();
    d.ok(&["build", "-t", "usr1:1", ctx.to_str().unwrap()]);
    // PID 1 ignores a signal it has no handler for: only the image's USR1 ends it cleanly.
    create_and_start(
        &d,
        &json!({"id": "sig", "containers": [{"name": "trap", "image": "usr1:1",
            "command": ["sh", "-c",
                "trap 'echo got-usr1; exit 0' USR1; echo ready; while true; do sleep 0.2; done"]}]}),
    );
    d.wait_until(std::time::Duration::from_secs(30), "the trap", || {
        d.hyperctl(&["logs", "trap"]).stdout.contains("ready")
    });
    d.ok(&["stop", "sig"]);
    assert_eq!(d.exit_code("trap"), 0, "{}", d.log());
    assert!(d.hyperctl(&["logs", "trap"]).stdout.contains("got-usr1"));
    // The spec's StopSignal wins over the image's; a bad one in the image is a 400 at create.
    std::fs::write(ctx.join("Dockerfile"), "FROM busybox\nSTOPSIGNAL NOPE\n").unwrap();
    d.ok(&["build", "-t", "badsig:1", ctx.to_str().unwrap()]);
    let r = d.curl_body(
        "POST",
        "/pod/create",
        r#"{"containers":[{"image":"badsig:1","command":["true"]}]}"#,
    );
    assert_eq!(r.status, 400, "{r:?}");
    assert!(
        r.body.contains("StopSignal") && r.body.contains("NOPE"),
        "{r:?}"
    );
    let r = d.curl_body(
        "POST",
        "/pod/create",
        r#"{"containers":[{"image":"badsig:1","command":["true"],"StopSignal":"TERM"}]}"#,
    );
    assert_eq!(r.status, 201, "{r:?}");
}
