//! Container logs as Docker's json-file, recorded by hyperd: `--tail`, `--since`, `-f`
//! through hyperctl, rotation by the pod's log config, and no line lost or doubled across a
//! hyperd kill -9.

use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hyper_tests::daemon::{TestDaemon, hyperctl_binary};

/// The container id of a pod's only container.
fn container_id(d: &TestDaemon, pod: &str) -> String {
    d.list("container")
        .into_iter()
        .find(|r| r[2] == pod)
        .map(|r| r[0].clone())
        .unwrap_or_else(|| panic!("no container of pod {pod}"))
}

#[test]
fn tail_since_and_follow() {
    let d = TestDaemon::start();
    d.import_busybox();
    d.ok(&[
        "run",
        "-d",
        "--name",
        "chatty",
        "busybox",
        "sh",
        "-c",
        "echo one; echo two; echo oops >&2; echo three; sleep 3; echo late; sleep 600",
    ]);
    d.wait_until(Duration::from_secs(60), "the first lines", || {
        d.hyperctl(&["logs", "chatty"]).stdout.contains("three")
    });
    let between = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let all = d.hyperctl(&["logs", "chatty"]);
    assert_eq!(all.code, 0, "{all:?}");
    assert!(all.stdout.starts_with("one\ntwo\nthree\n"), "{all:?}");
    assert_eq!(all.stderr, "oops\n");

    let tail = d.hyperctl(&["logs", "--tail", "2", "chatty"]);
    assert_eq!(
        (tail.stdout.as_str(), tail.stderr.as_str()),
        ("three\n", "oops\n"),
        "{tail:?}"
    );

    d.wait_until(Duration::from_secs(60), "the late line", || {
        d.hyperctl(&["logs", "chatty"]).stdout.contains("late")
    });
    let since = d.hyperctl(&["logs", "--since", &format!("{between:.3}"), "chatty"]);
    assert_eq!(
        (since.stdout.as_str(), since.stderr.as_str()),
        ("late\n", ""),
        "{since:?}"
    );
    // RFC 3339 times and a negative tail (every line), as Docker takes them.
    let old = d.hyperctl(&[
        "logs",
        "--since",
        "2000-01-01T00:00:00Z",
        "--tail",
        "-1",
        "chatty",
    ]);
    assert_eq!(
        old.stdout,
        d.hyperctl(&["logs", "chatty"]).stdout,
        "{old:?}"
    );
    let future = d.hyperctl(&["logs", "--since", "2100-01-01T00:00:00+01:00", "chatty"]);
    assert_eq!((future.code, future.stdout.as_str()), (0, ""), "{future:?}");
    let ts = d.hyperctl(&["logs", "-t", "--tail", "1", "chatty"]);
    let (time, line) = ts.stdout.split_once(' ').unwrap();
    assert_eq!(line, "late\n");
    assert!(
        time.ends_with('Z') && time.contains('T') && time.contains('.'),
        "{ts:?}"
    );

    // The raw records are Docker's json-file lines.
    let id = container_id(&d, "chatty");
    let raw =
        std::fs::read_to_string(d.root.join("containers").join(&id).join("json.log")).unwrap();
    let first: serde_json::Value = serde_json::from_str(raw.lines().next().unwrap()).unwrap();
    assert_eq!(first["log"], "one\n");
    assert_eq!(first["stream"], "stdout");

    // -f streams new lines and ends when the container exits.
    d.ok(&[
        "run",
        "-d",
        "--name",
        "counter",
        "busybox",
        "sh",
        "-c",
        "for i in 1 2 3 4 5; do echo n$i; usleep 500000; done",
    ]);
    let follow = Command::new(hyperctl_binary())
        .args(["logs", "-f", "counter"])
        .env("HYPER_HOST", format!("unix://{}", d.socket.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = follow.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "n1\nn2\nn3\nn4\nn5\n");

    let bad = d.curl("GET", "/container/logs?container=chatty&tail=few", None);
    assert_eq!(bad.status, 400, "{bad:?}");
    let bad = d.curl(
        "GET",
        "/container/logs?container=chatty&since=yesterday",
        None,
    );
    assert_eq!(bad.status, 400, "{bad:?}");
    let bad = d.curl("GET", "/container/logs?container=nosuch", None);
    assert_eq!(bad.status, 404, "{bad:?}");
}

#[test]
fn no_line_is_lost_or_doubled_across_a_hyperd_kill_9() {
    let mut d = TestDaemon::start();
    d.import_busybox();
    d.ok(&[
        "run",
        "-d",
        "--name",
        "steady",
        "busybox",
        "sh",
        "-c",
        "i=0; while [ $i -lt 120 ]; do echo line $i; i=$((i+1)); usleep 100000; done",
    ]);
    d.wait_until(Duration::from_secs(60), "some lines", || {
        d.hyperctl(&["logs", "steady"]).stdout.contains("line 10\n")
    });
    // An exec running across the restart still gets its exit code recorded.
    let r = d.curl(
        "POST",
        "/exec/create?container=steady&command=%5B%22sh%22%2C%22-c%22%2C%22sleep%204%3B%20exit%205%22%5D",
        None,
    );
    assert_eq!(r.status, 201, "{r:?}");
    let exec: String = serde_json::from_str(&r.body).unwrap();
    let session = d
        .hijack(&format!("/exec/start?container=steady&exec={exec}"))
        .unwrap();
    d.kill9();
    drop(session);
    std::thread::sleep(Duration::from_secs(2));
    d.restart();
    let code = d.curl(
        "GET",
        &format!("/exitcode?container=steady&exec={exec}"),
        None,
    );
    assert_eq!(
        (code.status, code.body.trim()),
        (200, "5"),
        "{code:?}\n{}",
        d.log()
    );
    assert_eq!(d.exit_code("steady"), 0, "{}", d.log());
    let logs = d.hyperctl(&["logs", "steady"]);
    let want: String = (0..120).map(|i| format!("line {i}\n")).collect();
    assert_eq!(logs.stdout, want, "{}", d.log());
}

#[test]
fn rotation_keeps_max_file_files() {
    let d = TestDaemon::start();
    d.import_busybox();
    let pod = d.dir.path().join("pod.json");
    std::fs::write(
        &pod,
        r#"{"id":"rot","log":{"type":"json-file","config":{"max-size":"2k","max-file":"3"}},
            "containers":[{"image":"busybox","command":["sh","-c","i=0; while [ $i -lt 300 ]; do echo rotating line number $i; i=$((i+1)); done"]}]}"#,
    )
    .unwrap();
    d.ok(&["run", "-d", "--podfile", pod.to_str().unwrap()]);
    let id = container_id(&d, "rot");
    assert_eq!(d.exit_code(&id), 0);
    let dir = d.root.join("containers").join(&id);
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("json.log"))
        .collect();
    files.sort();
    assert_eq!(files, ["json.log", "json.log.1", "json.log.2"]);
    for f in &files {
        let size = std::fs::metadata(dir.join(f)).unwrap().len();
        assert!(size <= 2048, "{f}: {size} bytes");
    }
    // What is kept is the newest output, in order, ending with the last line.
    let logs = d.hyperctl(&["logs", &id]).stdout;
    assert!(logs.ends_with("rotating line number 299\n"), "{logs}");
    let numbers: Vec<u32> = logs
        .lines()
        .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
        .collect();
    assert!(numbers.windows(2).all(|w| w[1] == w[0] + 1), "{numbers:?}");

    // A log config hyperd cannot honour is refused, naming the field.
    let bad = d.curl_body(
        "POST",
        "/pod/create",
        r#"{"id":"badlog","log":{"type":"syslog"},"containers":[{"image":"busybox"}]}"#,
    );
    assert_eq!(bad.status, 400, "{bad:?}");
    assert!(bad.body.contains("log.type"), "{bad:?}");
}
