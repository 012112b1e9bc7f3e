//! The REST API with curl over the socket, exactly as the seed writes the calls; bad input;
//! and the daemon's own start-up rules (one per root, socket mode, stale sockets).

use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;

use hyper_tests::daemon::TestDaemon;
use hyper_tests::test_vmm;
use hyper_tests::url_encode;

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

#[test]
fn the_seed_calls_work_with_curl() {
    let d = TestDaemon::start();
    d.import_busybox();
    let pod = r#"{"id":"seed","containers":[{"image":"busybox","command":["sleep","600"]}]}"#;

    let r = d.curl(
        "POST",
        &format!("/pod/create?podArgs={}", url_encode(pod)),
        None,
    );
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(json(&r.body), json(r#"{"ID":"seed","Code":0,"Cause":""}"#));

    let r = d.curl("POST", "/vm/create", None);
    assert_eq!(r.status, 201, "{r:?}\n{}", d.log());
    let vm = json(&r.body)["ID"].as_str().unwrap().to_string();
    let r = d.curl("GET", "/list?item=vm", None);
    assert_eq!(json(&r.body)["vmData"], json(&format!(r#"["{vm}::idle"]"#)));

    let r = d.curl("POST", &format!("/pod/start?podId=seed&vmId={vm}"), None);
    assert_eq!(r.status, 200, "{r:?}\n{}", d.log());

    let r = d.curl("GET", "/list?item=pod", None);
    assert_eq!(r.status, 201);
    assert_eq!(
        json(&r.body),
        json(&format!(
            r#"{{"item":"pod","podData":["seed:seed:{vm}:running"]}}"#
        ))
    );
    let r = d.curl("GET", "/v1.1.0/list?item=container", None);
    let rows = json(&r.body)["cData"].clone();
    let row = rows[0].as_str().unwrap();
    assert!(row.ends_with(":seed-busybox-0:seed:running"), "{row}");
    let r = d.curl("GET", "/list?item=vm", None);
    assert_eq!(
        json(&r.body)["vmData"],
        json(&format!(r#"["{vm}:seed:associated"]"#))
    );
    let r = d.curl("GET", &format!("/list?item=pod&vm={vm}"), None);
    assert_eq!(json(&r.body)["podData"].as_array().unwrap().len(), 1);
    let r = d.curl("GET", "/list?item=pod&pod=other", None);
    assert_eq!(json(&r.body)["podData"], json("[]"));

    let r = d.curl("GET", "/info", None);
    assert_eq!(r.status, 200);
    let info = json(&r.body);
    assert_eq!(
        (
            info["Pods"].as_u64(),
            info["Containers"].as_u64(),
            info["Images"].as_u64()
        ),
        (Some(1), Some(1), Some(1))
    );
    // Which VMM runs the VMs, with which acceleration, and why.
    assert_eq!(info["Vmm"], test_vmm(), "{info}");
    assert!(
        ["kvm", "tcg"].contains(&info["Acceleration"].as_str().unwrap()),
        "{info}"
    );
    let reason = info["VmmReason"].as_str().unwrap();
    assert!(
        reason.contains(&format!("{} requested", test_vmm())),
        "{reason}"
    );
    let r = d.curl("GET", "/pod/info?podName=seed", None);
    assert_eq!(json(&r.body)["status"]["phase"], "Running");
    let r = d.curl("GET", "/version", None);
    assert_eq!(json(&r.body)["Version"], env!("CARGO_PKG_VERSION"));

    let r = d.curl("POST", "/pod/stop?podId=seed&stopVM=yes", None);
    assert_eq!(r.status, 200, "{r:?}");
    let r = d.curl("GET", "/list?item=vm", None);
    assert_eq!(
        json(&r.body)["vmData"],
        json("[]"),
        "stopVM=yes destroys the vm"
    );
    let r = d.curl("GET", "/list?item=pod", None);
    assert_eq!(json(&r.body)["podData"], json(r#"["seed:seed::stopped"]"#));

    let r = d.curl("POST", "/pod/remove?podId=seed", None);
    assert_eq!(r.status, 200, "{r:?}");
    let r = d.curl("GET", "/list?item=pod", None);
    assert_eq!(json(&r.body)["podData"], json("[]"));

    // An empty vmId boots a new VM for the pod.
    let cold = r#"{"id":"cold","containers":[{"image":"busybox","command":["sleep","600"]}]}"#;
    let r = d.curl(
        "POST",
        &format!("/pod/create?podArgs={}", url_encode(cold)),
        None,
    );
    assert_eq!(r.status, 201, "{r:?}");
    let r = d.curl("POST", "/pod/start?podId=cold&vmId=", None);
    assert_eq!(r.status, 200, "{r:?}\n{}", d.log());
    let r = d.curl("GET", "/list?item=vm", None);
    let rows = json(&r.body)["vmData"].clone();
    assert!(
        rows[0].as_str().unwrap().ends_with(":cold:associated"),
        "{rows}"
    );
    let r = d.curl("POST", "/pod/remove?podId=cold", None);
    assert_eq!(r.status, 200, "{r:?}");

    // A VM from /vm/create can be killed.
    let r = d.curl("POST", "/v1.17/vm/create", None);
    let vm = json(&r.body)["ID"].as_str().unwrap().to_string();
    let r = d.curl("POST", &format!("/vm/kill?vm={vm}"), None);
    assert_eq!(r.status, 200, "{r:?}");
    let r = d.curl("GET", "/list?item=vm", None);
    assert_eq!(json(&r.body)["vmData"], json("[]"));
}

#[test]
fn bad_requests_are_4xx_with_a_message_and_the_daemon_keeps_serving() {
    let d = TestDaemon::start();
    d.import_busybox();
    let cases: &[(&str, &str, Option<&str>, u16, &str)] = &[
        (
            "POST",
            "/pod/create",
            Some(r#"{"id":"x","containers":[{"image":"busybox""#),
            400,
            "malformed JSON",
        ),
        (
            "POST",
            "/pod/create",
            Some(r#"{"resource":{"vcpu":"two"}}"#),
            400,
            "resource.vcpu: invalid type",
        ),
        (
            "POST",
            "/pod/create",
            Some(r#"{"containers":[{"image":"busybox","command":"ls"}]}"#),
            400,
            "containers[0].command",
        ),
        (
            "POST",
            "/pod/create",
            Some(r#"{"hostname":"Not_A_Host"}"#),
            400,
            "hostname",
        ),
        (
            "POST",
            "/pod/create",
            Some(r#"{"containers":[{"image":"nginx","command":["x"]}]}"#),
            404,
            "no such image: nginx",
        ),
        (
            "POST",
            "/pod/create",
            Some(r#"{"containers":[{"image":"busybox"}]}"#),
            400,
            "no command given",
        ),
        (
            "POST",
            "/pod/start?podId=nope",
            None,
            404,
            "no such pod: nope",
        ),
        (
            "POST",
            "/pod/stop?podId=nope",
            None,
            404,
            "no such pod: nope",
        ),
        ("DELETE", "/pod?podId=nope", None, 404, "no such pod: nope"),
        (
            "GET",
            "/pod/info?podName=nope",
            None,
            404,
            "no such pod: nope",
        ),
        ("POST", "/pod/start", None, 400, "podId: required"),
        ("GET", "/list?item=bogus", None, 400, "item \"bogus\""),
        (
            "POST",
            "/vm/kill?vm=vm-nope",
            None,
            404,
            "no such vm: vm-nope",
        ),
        (
            "POST",
            "/exec/create?container=nope&command=%5B%22ls%22%5D",
            None,
            404,
            "no such container: nope",
        ),
        (
            "GET",
            "/exitcode?container=nope",
            None,
            404,
            "no such container: nope",
        ),
        (
            "POST",
            "/image/create?fromSrc=-&repo=junk",
            Some("not a tarball at all, just text"),
            400,
            "not a valid tar archive",
        ),
    ];
    for (method, path, body, status, message) in cases {
        let r = match body {
            Some(b) => d.curl_body(method, path, b),
            None => d.curl(method, path, None),
        };
        assert_eq!(r.status, *status, "{method} {path}: {r:?}");
        assert!(
            r.body.contains(message),
            "{method} {path}: want {message:?} in {:?}",
            r.body
        );
    }
    // A pod that exists is a conflict when created again or started twice? Created again:
    let pod = r#"{"id":"dup","containers":[{"image":"busybox","command":["true"]}]}"#;
    assert_eq!(d.curl_body("POST", "/pod/create", pod).status, 201);
    let r = d.curl_body("POST", "/pod/create", pod);
    assert_eq!(
        (r.status, r.body.as_str()),
        (409, "pod dup already exists\n")
    );
    // Unknown fields are ignored (open schema).
    let r = d.curl_body(
        "POST",
        "/pod/create",
        r#"{"id":"open","future":{"x":1},"containers":[]}"#,
    );
    assert_eq!(r.status, 201, "{r:?}");
    // Still serving.
    let r = d.curl("GET", "/_ping", None);
    assert_eq!((r.status, r.body.as_str()), (200, "OK"));
}

#[test]
fn one_daemon_per_root_a_0660_socket_and_stale_sockets_replaced() {
    let mut d = TestDaemon::start();
    let mode = std::fs::metadata(&d.socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660);
    // State and run dirs are the owner's only; so is the database.
    let mode_of = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode_of(&d.root), 0o700);
    assert_eq!(mode_of(&d.run_dir), 0o700);
    assert_eq!(mode_of(&d.root.join("hyperd.db")), 0o600);

    let second = d.command().stdin(Stdio::null()).output().unwrap();
    assert!(!second.status.success());
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(
        err.contains("another hyperd is already running on root"),
        "{err}"
    );

    // SIGTERM stops it and removes its socket; a socket left by a killed daemon is replaced.
    assert!(d.terminate().success());
    assert!(!d.socket.exists());
    d.restart();
    d.kill9();
    assert!(d.socket.exists(), "a killed daemon leaves its socket");
    d.restart();
    assert_eq!(d.curl("GET", "/_ping", None).status, 200);
}
